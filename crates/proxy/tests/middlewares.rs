//! The edge middlewares, end to end: a real gateway on `127.0.0.1:0` in front of a
//! recording replica, driven by real clients on both request paths — the relay (plain
//! HTTP/1.1 keep-alive) and the full stack (HTTP/2 prior knowledge, HTTP/1.0) — with the
//! exact statuses and headers each middleware promises (docs/middlewares.md).
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shoal_config::{
    BasicAuth, Buffering, ClientKey, Cors, InFlightReq, IpAllowList, IpRange, Middleware, Pattern,
    RateLimit, RedirectRegex, RedirectScheme, ReplacePathRegex, Stack,
};
use shoal_proxy::{Gateway, Listeners, ServeSettings, Serving, TlsEntrypoints};
use shoal_test_support::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Longest any single wait in these tests may take.
const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// The replica: answers with what it received, counts requests, sleeps or reads bodies on
// demand.

#[derive(Debug, Default)]
struct Seen {
    requests: AtomicUsize,
    in_flight: AtomicUsize,
}

struct Replica {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl Replica {
    async fn start() -> Replica {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let state = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(answer(&state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Replica { addr, seen }
    }

    fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }
}

async fn answer(state: &Seen, req: Request<Incoming>) -> Response<Full<Bytes>> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    state.in_flight.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
            )
        })
        .collect();
    if let Some(ms) = path.strip_prefix("/sleep/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
    }
    let body_len = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => usize::MAX,
    };
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let json = serde_json::json!({
        "path": path, "query": query, "headers": headers, "body_len": body_len,
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("vary", "Accept-Encoding")
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// The gateway.

struct Gw {
    addr: SocketAddr,
    gateway: Arc<Gateway>,
    replica: Replica,
    _serving: Serving,
}

impl Gw {
    /// A gateway with one route, `PathPrefix(/)`, with `middlewares`, to a fresh replica.
    async fn start(middlewares: Vec<Middleware>) -> Gw {
        let replica = Replica::start().await;
        let yaml = format!(
            "gateway:\n  listen: 127.0.0.1:0\nservices:\n  web:\n    servers: [http://{}]\n\
             routes:\n  - match: PathPrefix(`/`)\n    service: web\n",
            replica.addr
        );
        let mut stack: Stack = shoal_config::parse(&yaml, "shoal.yaml").unwrap();
        stack.routes[0].middlewares = middlewares;
        Gw::serve(&stack, replica)
    }

    fn serve(stack: &Stack, replica: Replica) -> Gw {
        let gateway = Gateway::new(stack);
        let listeners = Listeners::bind(&stack.gateway.entrypoints).unwrap();
        let addr = listeners.local_addrs()[0].1;
        let tls = TlsEntrypoints::load(&stack.gateway.entrypoints).unwrap();
        let serving = Serving::start(
            Arc::clone(&gateway),
            listeners,
            ServeSettings::of(&stack.gateway),
            &tls,
        );
        Gw {
            addr,
            gateway,
            replica,
            _serving: serving,
        }
    }

    async fn client(&self, transport: Transport) -> Client {
        Client::connect(self.addr, transport).await
    }

    fn metrics(&self) -> String {
        let mut out = String::new();
        self.gateway.render_metrics(&mut out);
        out
    }
}

// ---------------------------------------------------------------------------------------
// Clients: raw HTTP/1.x bytes (so the relay sees exactly what we send) and hyper's HTTP/2.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// HTTP/1.1 keep-alive: the relay.
    Relay,
    /// HTTP/1.0: handed to the full stack.
    Http10,
    /// HTTP/2 prior knowledge: the full stack.
    H2,
}

const ALL: [Transport; 3] = [Transport::Relay, Transport::Http10, Transport::H2];

#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, joined with `, ` (RFC 9110 §5.3).
    fn joined(&self, name: &str) -> String {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// What the replica said it received.
    fn seen(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&self.body));
        })
    }

    fn seen_header(&self, name: &str) -> Option<String> {
        self.seen()["headers"][name].as_str().map(str::to_owned)
    }
}

struct Client {
    transport: Transport,
    addr: SocketAddr,
    raw: Option<TcpStream>,
    h2: Option<hyper::client::conn::http2::SendRequest<Full<Bytes>>>,
}

impl Client {
    async fn connect(addr: SocketAddr, transport: Transport) -> Client {
        let mut client = Client {
            transport,
            addr,
            raw: None,
            h2: None,
        };
        if transport == Transport::H2 {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            client.h2 = Some(send);
        }
        client
    }

    async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(Method::GET, path, headers, None).await
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Answer {
        tokio::time::timeout(DEADLINE, self.send_now(method, path, headers, body))
            .await
            .expect("an answer in time")
    }

    async fn send_now(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Answer {
        if let Some(h2) = &mut self.h2 {
            let mut req = Request::builder()
                .method(method)
                .uri(format!("http://gw.test{path}"));
            for (n, v) in headers {
                req = req.header(*n, *v);
            }
            let body = Full::new(Bytes::copy_from_slice(body.unwrap_or_default()));
            h2.ready().await.unwrap();
            let resp = h2.send_request(req.body(body).unwrap()).await.unwrap();
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            let body = resp
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec();
            return Answer {
                status,
                headers,
                body,
            };
        }
        let version = match self.transport {
            Transport::Http10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        let mut text = format!("{method} {path} {version}\r\nHost: gw.test\r\n");
        for (n, v) in headers {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        if let Some(body) = body {
            text.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        text.push_str("\r\n");
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        let head = method == Method::HEAD;
        self.raw_exchange(&bytes, head).await
    }

    /// Send `bytes` on the keep-alive connection (HTTP/1.0: a new one) and read one answer.
    async fn raw_exchange(&mut self, bytes: &[u8], head: bool) -> Answer {
        if self.raw.is_none() || self.transport == Transport::Http10 {
            self.raw = Some(TcpStream::connect(self.addr).await.unwrap());
        }
        let stream = self.raw.as_mut().unwrap();
        stream.write_all(bytes).await.unwrap();
        let (answer, closed) = read_answer(stream, head).await;
        if closed {
            self.raw = None;
        }
        answer
    }
}

/// Read one HTTP/1.x response; also says whether the connection is done.
async fn read_answer(stream: &mut TcpStream, head_request: bool) -> (Answer, bool) {
    let mut buf = Vec::new();
    let (status, headers, head_len) = loop {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut fields);
        if let httparse::Status::Complete(n) = resp.parse(&buf).unwrap() {
            let headers: Vec<(String, String)> = resp
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            break (resp.code.unwrap(), headers, n);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut body = buf.split_off(head_len);
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let close = find("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let mut closed = close;
    if head_request || status == 204 || status == 304 {
        body.clear();
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().unwrap();
        while body.len() < len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed mid-body");
            body.extend_from_slice(&chunk[..n]);
        }
    } else if find("transfer-encoding").is_some() {
        // Good enough for our replica's bodies: read until the last chunk.
        while !body.ends_with(b"0\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed mid-body");
            body.extend_from_slice(&chunk[..n]);
        }
        body = dechunk(&body);
    } else {
        stream.read_to_end(&mut body).await.unwrap();
        closed = true;
    }
    (
        Answer {
            status,
            headers,
            body,
        },
        closed,
    )
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn pattern(re: &str) -> Pattern {
    Pattern {
        source: re.into(),
        regex: regex::Regex::new(re).unwrap(),
    }
}

fn range(s: &str) -> IpRange {
    let (addr, prefix) = s.split_once('/').unwrap();
    IpRange {
        addr: addr.parse().unwrap(),
        prefix: prefix.parse().unwrap(),
    }
}

fn rate_limit(average: u64, period: Duration, burst: u64, key: ClientKey) -> Middleware {
    Middleware::RateLimit(RateLimit {
        average,
        period,
        burst,
        key,
        max_keys: 1000,
    })
}

// ---------------------------------------------------------------------------------------
// Stories.

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_and_ratelimit_headers() {
    for transport in ALL {
        let gw = Gw::start(vec![rate_limit(
            1,
            Duration::from_secs(10),
            2,
            ClientKey::Ip { depth: 0 },
        )])
        .await;
        let mut c = gw.client(transport).await;
        assert_eq!(c.get("/a", &[]).await.status, 200, "{transport:?}");
        assert_eq!(c.get("/a", &[]).await.status, 200, "{transport:?}");
        let limited = c.get("/a", &[]).await;
        assert_eq!(limited.status, 429, "{transport:?}");
        // One request back in 10 s; the whole burst in 20 s (less the time elapsed).
        assert_eq!(limited.header("retry-after"), Some("10"), "{transport:?}");
        assert_eq!(limited.header("ratelimit-limit"), Some("2"));
        assert_eq!(limited.header("ratelimit-remaining"), Some("0"));
        assert_eq!(limited.header("ratelimit-reset"), Some("20"));
        assert_eq!(limited.header("x-shoal-error"), Some("rate-limited"));
        assert_eq!(
            limited.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(
            gw.replica.requests(),
            2,
            "{transport:?}: the 429 never reached it"
        );
        // Counted like any answer (through Gateway::finish).
        let metrics = gw.metrics();
        assert!(metrics.contains(r#"code="429""#), "{metrics}");
    }
}

#[tokio::test]
async fn rate_limit_accuracy_at_twice_and_half_the_rate() {
    // 20 requests/s with a burst of 3.
    let limit = || rate_limit(20, Duration::from_secs(1), 3, ClientKey::Ip { depth: 0 });
    for (rate, seconds) in [(40.0, 3.0), (10.0, 2.0)] {
        let gw = Gw::start(vec![limit()]).await;
        let mut c = gw.client(Transport::Relay).await;
        let count = (rate * seconds) as usize;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let started = Instant::now();
        let mut limited = 0;
        for _ in 0..count {
            tick.tick().await;
            match c.get("/", &[]).await.status {
                429 => limited += 1,
                200 => {}
                other => panic!("status {other}"),
            }
        }
        let took = started.elapsed().as_secs_f64();
        let share = f64::from(limited) / count as f64;
        eprintln!(
            "rate_limit accuracy: {count} requests at {rate}/s (took {took:.2}s) against 20/s: \
             {limited} refused ({:.0} %)",
            share * 100.0
        );
        // What a 20/s limit with a burst of 3 admits over the time the requests really
        // took (a busy machine sends them slower than asked): the rest is refused.
        if rate < 20.0 {
            assert_eq!(
                limited, 0,
                "at {rate}/s, under the limit, nothing is refused"
            );
        }
        let admitted = (20.0 * took + 3.0).min(count as f64);
        let expected = 1.0 - admitted / count as f64;
        assert!(
            (share - expected).abs() <= 0.1,
            "at {rate}/s over {took:.2}s: {limited}/{count} refused, about {:.0} % expected",
            expected * 100.0
        );
    }
}

#[tokio::test]
async fn rate_limit_keys_by_forwarded_for_depth_and_by_header() {
    for transport in [Transport::Relay, Transport::H2] {
        let gw = Gw::start(vec![rate_limit(
            1,
            Duration::from_secs(60),
            1,
            ClientKey::Ip { depth: 1 },
        )])
        .await;
        let mut c = gw.client(transport).await;
        let from = |ip: &'static str| [("x-forwarded-for", ip)];
        assert_eq!(c.get("/", &from("192.0.2.1")).await.status, 200);
        assert_eq!(c.get("/", &from("192.0.2.1")).await.status, 429);
        // Another client behind the same proxy has its own allowance.
        assert_eq!(c.get("/", &from("192.0.2.2")).await.status, 200);
        // What the client put left of the trusted entry changes nothing.
        assert_eq!(
            c.get("/", &from("203.0.113.50, 192.0.2.1")).await.status,
            429
        );
        // No header: the peer (127.0.0.1) is the key.
        assert_eq!(c.get("/", &[]).await.status, 200);
        assert_eq!(c.get("/", &[]).await.status, 429);
    }
    let gw = Gw::start(vec![rate_limit(
        1,
        Duration::from_secs(60),
        1,
        ClientKey::Header(HeaderName::from_static("x-api-key")),
    )])
    .await;
    let mut c = gw.client(Transport::Relay).await;
    assert_eq!(c.get("/", &[("x-api-key", "a")]).await.status, 200);
    assert_eq!(c.get("/", &[("x-api-key", "a")]).await.status, 429);
    assert_eq!(c.get("/", &[("x-api-key", "b")]).await.status, 200);
    assert_eq!(c.get("/", &[]).await.status, 200);
    assert_eq!(c.get("/", &[]).await.status, 429);
}

#[tokio::test]
async fn in_flight_req_refuses_exactly_the_one_over_the_limit() {
    for transport in [Transport::Relay, Transport::H2] {
        let gw = Gw::start(vec![Middleware::InFlightReq(InFlightReq {
            amount: 2,
            key: ClientKey::Ip { depth: 0 },
        })])
        .await;
        let mut slow = Vec::new();
        for _ in 0..2 {
            let mut c = gw.client(transport).await;
            slow.push(tokio::spawn(async move {
                c.get("/sleep/400", &[]).await.status
            }));
        }
        let seen = Arc::clone(&gw.replica.seen);
        eventually(DEADLINE, || {
            let two = seen.in_flight.load(Ordering::SeqCst) == 2;
            std::future::ready(two.then_some(()).ok_or("two requests in flight"))
        })
        .await;
        let mut c = gw.client(transport).await;
        let refused = c.get("/sleep/400", &[]).await;
        assert_eq!(refused.status, 429, "{transport:?}");
        assert_eq!(refused.header("x-shoal-error"), Some("in-flight-limit"));
        for s in slow {
            assert_eq!(s.await.unwrap(), 200);
        }
        // Their places were given back when their responses were done.
        assert_eq!(c.get("/", &[]).await.status, 200, "{transport:?}");
        assert_eq!(gw.replica.requests(), 3);
    }
}

fn basic(user_pass: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

#[tokio::test]
async fn basic_auth_challenges_checks_and_passes_the_user_upstream() {
    let hash = bcrypt::hash_with_salt("s3cret", 4, [3; 16])
        .unwrap()
        .to_string();
    for transport in ALL {
        let gw = Gw::start(vec![Middleware::BasicAuth(BasicAuth {
            users: vec![("alice".into(), hash.clone())],
            realm: "shoal".into(),
            remove_header: true,
            header_field: Some(HeaderName::from_static("x-auth-user")),
        })])
        .await;
        let mut c = gw.client(transport).await;
        for creds in [None, Some("alice:wrong"), Some("bob:s3cret")] {
            let auth = creds.map(basic);
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("authorization", a.as_str())).collect();
            let refused = c.get("/", &headers).await;
            assert_eq!(refused.status, 401, "{transport:?} {creds:?}");
            assert_eq!(
                refused.header("www-authenticate"),
                Some(r#"Basic realm="shoal", charset="UTF-8""#)
            );
        }
        // Malformed: not base64.
        let refused = c.get("/", &[("authorization", "Basic !!!")]).await;
        assert_eq!(refused.status, 401);
        assert_eq!(gw.replica.requests(), 0, "{transport:?}");
        let good = basic("alice:s3cret");
        let ok = c
            .get(
                "/",
                &[("authorization", &good), ("x-auth-user", "spoofed-admin")],
            )
            .await;
        assert_eq!(ok.status, 200, "{transport:?}");
        assert_eq!(ok.seen_header("x-auth-user").as_deref(), Some("alice"));
        assert_eq!(ok.seen_header("authorization"), None);
        assert_eq!(gw.replica.requests(), 1);
    }
}

#[tokio::test]
async fn ip_allow_list_by_peer_and_by_forwarded_for_depth() {
    let allow = |ranges: &[&str], depth| {
        Middleware::IpAllowList(IpAllowList {
            source_range: ranges.iter().map(|r| range(r)).collect(),
            depth,
        })
    };
    for transport in ALL {
        let gw = Gw::start(vec![allow(&["127.0.0.0/8"], 0)]).await;
        let mut c = gw.client(transport).await;
        assert_eq!(
            c.get("/", &[("x-forwarded-for", "10.0.0.1")]).await.status,
            200
        );

        let gw = Gw::start(vec![allow(&["10.0.0.0/8", "::1/128"], 0)]).await;
        let mut c = gw.client(transport).await;
        let refused = c.get("/", &[("x-forwarded-for", "10.0.0.1")]).await;
        assert_eq!(
            refused.status, 403,
            "{transport:?}: the header is not trusted at depth 0"
        );
        assert_eq!(refused.header("x-shoal-error"), Some("forbidden"));
        assert_eq!(gw.replica.requests(), 0);
    }
    let gw = Gw::start(vec![allow(&["192.0.2.0/24"], 1)]).await;
    let mut c = gw.client(Transport::Relay).await;
    let cases = [
        (Some("192.0.2.7"), 200),
        (Some("198.51.100.1"), 403),
        // The rightmost entry is the one the trusted proxy wrote.
        (Some("192.0.2.7, 198.51.100.1"), 403),
        (Some("198.51.100.1, 192.0.2.7"), 200),
        // Not an address: refused, whatever the peer.
        (Some("junk"), 403),
        // No header: the peer, 127.0.0.1, not in the range.
        (None, 403),
    ];
    for (xff, status) in cases {
        let headers: Vec<(&str, &str)> = xff.iter().map(|x| ("x-forwarded-for", *x)).collect();
        assert_eq!(c.get("/", &headers).await.status, status, "{xff:?}");
    }
    let gw = Gw::start(vec![allow(&["192.0.2.0/24"], 2)]).await;
    let mut c = gw.client(Transport::Relay).await;
    assert_eq!(
        c.get("/", &[("x-forwarded-for", "192.0.2.7, 198.51.100.1")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn redirect_scheme_sends_308_or_307_to_the_other_scheme() {
    for transport in ALL {
        let gw = Gw::start(vec![Middleware::RedirectScheme(RedirectScheme {
            scheme: "https".into(),
            port: Some(8443),
            permanent: true,
        })])
        .await;
        let mut c = gw.client(transport).await;
        let moved = c.send(Method::POST, "/a/b?x=1", &[], Some(b"hi")).await;
        assert_eq!(moved.status, 308, "{transport:?}");
        assert_eq!(
            moved.header("location"),
            Some("https://gw.test:8443/a/b?x=1")
        );
        assert_eq!(gw.replica.requests(), 0);

        let gw = Gw::start(vec![Middleware::RedirectScheme(RedirectScheme {
            scheme: "https".into(),
            port: Some(443),
            permanent: false,
        })])
        .await;
        let mut c = gw.client(transport).await;
        let moved = c.get("/", &[]).await;
        assert_eq!(moved.status, 307);
        assert_eq!(moved.header("location"), Some("https://gw.test/"));

        // Already on the target scheme: forwarded.
        let gw = Gw::start(vec![Middleware::RedirectScheme(RedirectScheme {
            scheme: "http".into(),
            port: None,
            permanent: true,
        })])
        .await;
        let mut c = gw.client(transport).await;
        assert_eq!(c.get("/", &[]).await.status, 200);
    }
}

#[tokio::test]
async fn redirect_regex_and_replace_path_regex() {
    for transport in ALL {
        let gw = Gw::start(vec![
            Middleware::RedirectRegex(RedirectRegex {
                regex: pattern(r"^http://gw\.test/old/(.*)"),
                replacement: "https://new.test/${1}".into(),
                permanent: true,
            }),
            Middleware::ReplacePathRegex(ReplacePathRegex {
                regex: pattern("^/api/(.*)"),
                replacement: "/v2/$1".into(),
            }),
        ])
        .await;
        let mut c = gw.client(transport).await;
        let moved = c.get("/old/page?q=1", &[]).await;
        assert_eq!(moved.status, 308, "{transport:?}");
        assert_eq!(moved.header("location"), Some("https://new.test/page?q=1"));
        assert_eq!(gw.replica.requests(), 0);

        let ok = c
            .get("/api/users?x=1", &[("x-replaced-path", "/spoofed")])
            .await;
        assert_eq!(ok.status, 200, "{transport:?}");
        let seen = ok.seen();
        assert_eq!(seen["path"], "/v2/users");
        assert_eq!(seen["query"], "x=1");
        assert_eq!(
            ok.seen_header("x-replaced-path").as_deref(),
            Some("/api/users")
        );
    }
}

#[tokio::test]
async fn buffering_refuses_an_announced_body_over_the_limit_without_reading_it() {
    let limit = || {
        Middleware::Buffering(Buffering {
            max_request_body_bytes: 16,
        })
    };
    // HTTP/1.1 (the relay's connection): the client sends the head only.
    let gw = Gw::start(vec![limit()]).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"POST /up HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    let (refused, closed) = tokio::time::timeout(DEADLINE, read_answer(&mut stream, false))
        .await
        .expect("413 before the body is sent");
    assert_eq!(refused.status, 413);
    assert_eq!(refused.header("connection"), Some("close"));
    assert_eq!(refused.header("x-shoal-error"), Some("body-too-large"));
    assert!(closed);
    // The connection is closed: the body is never taken for a request.
    let mut rest = Vec::new();
    let n = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest))
        .await
        .expect("closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(gw.replica.requests(), 0);

    for transport in ALL {
        let gw = Gw::start(vec![limit()]).await;
        let mut c = gw.client(transport).await;
        let ok = c
            .send(Method::POST, "/up", &[], Some(b"0123456789abcdef"))
            .await;
        assert_eq!(ok.status, 200, "{transport:?}");
        assert_eq!(ok.seen()["body_len"], 16);
        let refused = c.send(Method::POST, "/up", &[], Some(&[b'x'; 17])).await;
        assert_eq!(refused.status, 413, "{transport:?}");
        assert_eq!(gw.replica.requests(), 1);
    }
}

#[tokio::test]
async fn buffering_counts_a_streamed_body_and_refuses_it_past_the_limit() {
    let gw = Gw::start(vec![Middleware::Buffering(Buffering {
        max_request_body_bytes: 16,
    })])
    .await;
    // Chunked, within the limit.
    let mut c = gw.client(Transport::Relay).await;
    let ok = c
        .raw_exchange(
            b"POST /up HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n\
              8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n",
            false,
        )
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.seen()["body_len"], 16);
    // Chunked, crossing the limit at the third chunk; the last chunk is never sent.
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(
            b"POST /up HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n\
              8\r\n01234567\r\n8\r\n89abcdef\r\n8\r\nghijklmn\r\n",
        )
        .await
        .unwrap();
    let (refused, closed) = tokio::time::timeout(DEADLINE, read_answer(&mut stream, false))
        .await
        .expect("413 when the limit is crossed");
    assert_eq!(refused.status, 413);
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(closed);
    // HTTP/2 without content-length: counted as it streams.
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let (tx, body) = futures_channel_body();
    let req = Request::builder()
        .method(Method::POST)
        .uri("http://gw.test/up")
        .body(body)
        .unwrap();
    let sending = tokio::spawn(async move {
        for _ in 0..4 {
            if tx.send(Bytes::from_static(b"01234567")).await.is_err() {
                break;
            }
        }
        // Keep the stream open until the answer came.
        tx
    });
    h2.ready().await.unwrap();
    let resp = tokio::time::timeout(DEADLINE, h2.send_request(req))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(resp.status(), 413);
    drop(sending.await);
}

/// A request body of frames sent on a channel, as they are sent.
type ChannelBody = http_body_util::StreamBody<
    futures_util::stream::BoxStream<'static, Result<http_body::Frame<Bytes>, Infallible>>,
>;

/// A request body fed through a channel (frames as they are sent).
fn futures_channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok(http_body::Frame::data(b)), rx))
    });
    (
        tx,
        http_body_util::StreamBody::new(futures_util::StreamExt::boxed(stream)),
    )
}

#[tokio::test]
async fn cors_preflights_are_answered_and_responses_get_the_origin() {
    let cors = Middleware::Cors(Cors {
        allow_origins: vec!["https://app.test".into()],
        allow_methods: vec![Method::GET, Method::PUT],
        allow_headers: vec!["X-Token".into()],
        expose_headers: vec!["X-Total".into()],
        allow_credentials: true,
        max_age: Some(Duration::from_secs(600)),
    });
    for transport in ALL {
        let gw = Gw::start(vec![cors.clone()]).await;
        let mut c = gw.client(transport).await;
        let preflight = [
            ("origin", "https://app.test"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-token"),
        ];
        let ok = c.send(Method::OPTIONS, "/things", &preflight, None).await;
        assert_eq!(ok.status, 204, "{transport:?}");
        assert_eq!(
            ok.header("access-control-allow-origin"),
            Some("https://app.test")
        );
        assert_eq!(ok.header("access-control-allow-methods"), Some("GET, PUT"));
        assert_eq!(ok.header("access-control-allow-headers"), Some("x-token"));
        assert_eq!(ok.header("access-control-max-age"), Some("600"));
        assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(
            ok.header("content-length"),
            None,
            "no Content-Length on a 204"
        );

        let evil = [
            ("origin", "https://evil.test"),
            ("access-control-request-method", "PUT"),
        ];
        let refused = c.send(Method::OPTIONS, "/things", &evil, None).await;
        assert_eq!(refused.status, 204);
        assert_eq!(refused.header("access-control-allow-origin"), None);
        assert_eq!(refused.header("access-control-allow-methods"), None);
        assert_eq!(
            gw.replica.requests(),
            0,
            "{transport:?}: preflights are not forwarded"
        );

        let actual = c.get("/things", &[("origin", "https://app.test")]).await;
        assert_eq!(actual.status, 200);
        assert_eq!(
            actual.header("access-control-allow-origin"),
            Some("https://app.test")
        );
        assert_eq!(
            actual.header("access-control-allow-credentials"),
            Some("true")
        );
        assert_eq!(
            actual.header("access-control-expose-headers"),
            Some("X-Total")
        );
        // The replica's Vary is kept, ours added.
        assert_eq!(
            actual.joined("vary"),
            "Accept-Encoding, Origin",
            "{transport:?}"
        );
        let other = c.get("/things", &[("origin", "https://evil.test")]).await;
        assert_eq!(other.status, 200);
        assert_eq!(other.header("access-control-allow-origin"), None);
    }
}

#[tokio::test]
async fn middlewares_run_in_order_and_the_first_answer_wins() {
    let hash = bcrypt::hash_with_salt("pw", 4, [1; 16])
        .unwrap()
        .to_string();
    let auth = Middleware::BasicAuth(BasicAuth {
        users: vec![("u".into(), hash)],
        realm: "r".into(),
        remove_header: false,
        header_field: None,
    });
    let limit = rate_limit(1, Duration::from_secs(60), 1, ClientKey::Route);
    // Rate limit first: even unauthenticated requests spend the allowance.
    let gw = Gw::start(vec![limit.clone(), auth.clone()]).await;
    let mut c = gw.client(Transport::Relay).await;
    assert_eq!(c.get("/", &[]).await.status, 401);
    assert_eq!(c.get("/", &[]).await.status, 429);
    // Auth first: refused requests never reach the limiter.
    let gw = Gw::start(vec![auth, limit]).await;
    let mut c = gw.client(Transport::Relay).await;
    assert_eq!(c.get("/", &[]).await.status, 401);
    assert_eq!(c.get("/", &[]).await.status, 401);
    let good = basic("u:pw");
    assert_eq!(c.get("/", &[("authorization", &good)]).await.status, 200);
    assert_eq!(c.get("/", &[("authorization", &good)]).await.status, 429);
}

#[tokio::test]
async fn state_survives_a_reload_that_keeps_the_route() {
    let gw = Gw::start(vec![rate_limit(
        1,
        Duration::from_secs(60),
        1,
        ClientKey::Route,
    )])
    .await;
    let mut c = gw.client(Transport::Relay).await;
    assert_eq!(c.get("/", &[]).await.status, 200);
    let yaml = format!(
        "gateway:\n  listen: 127.0.0.1:0\nservices:\n  web:\n    servers: [http://{}]\n\
         routes:\n  - match: PathPrefix(`/`)\n    service: web\n",
        gw.replica.addr
    );
    let mut stack = shoal_config::parse(&yaml, "shoal.yaml").unwrap();
    stack.routes[0].middlewares = vec![rate_limit(1, Duration::from_secs(60), 1, ClientKey::Route)];
    gw.gateway.reload(&stack);
    assert_eq!(c.get("/", &[]).await.status, 429, "the allowance was kept");
    stack.routes[0].middlewares = vec![rate_limit(2, Duration::from_secs(60), 1, ClientKey::Route)];
    gw.gateway.reload(&stack);
    assert_eq!(
        c.get("/", &[]).await.status,
        200,
        "a changed limit starts afresh"
    );
}

/// The whole thing as users write it: middlewares defined in the stack file, a chain, and
/// routes naming them.
#[tokio::test]
async fn a_stack_file_with_a_chain_of_middlewares() {
    let hash = bcrypt::hash_with_salt("s3cret", 4, [5; 16])
        .unwrap()
        .to_string();
    for transport in [Transport::Relay, Transport::H2] {
        let replica = Replica::start().await;
        let yaml = format!(
            r#"gateway:
  listen: 127.0.0.1:0
services:
  web:
    servers: [http://{addr}]
middlewares:
  limited:
    rate_limit: {{ average: 1, period: 1m, burst: 2 }}
  staff:
    basic_auth:
      users: ["alice:{hash}"]
      realm: staff
      remove_header: true
      header_field: X-Auth-User
  app-cors:
    cors: {{ allow_origins: ["https://app.test"] }}
  guarded: {{ chain: [app-cors, staff, limited] }}
  small:
    buffering: {{ max_request_body_bytes: 8 }}
routes:
  - match: PathPrefix(`/api`)
    service: web
    middlewares: [guarded, small]
  - match: PathPrefix(`/`)
    service: web
"#,
            addr = replica.addr
        );
        let stack = match shoal_config::parse(&yaml, "shoal.yaml") {
            Ok(stack) => stack,
            Err(e) => panic!("{e}"),
        };
        let gw = Gw::serve(&stack, replica);
        let mut c = gw.client(transport).await;
        let origin = ("origin", "https://app.test");
        let refused = c.get("/api/x", &[origin]).await;
        assert_eq!(refused.status, 401, "{transport:?}");
        assert_eq!(
            refused.header("www-authenticate"),
            Some(r#"Basic realm="staff", charset="UTF-8""#)
        );
        assert_eq!(
            refused.header("access-control-allow-origin"),
            Some("https://app.test"),
            "headers of the checks before the answer"
        );
        let auth = basic("alice:s3cret");
        let ok = c.get("/api/x", &[origin, ("authorization", &auth)]).await;
        assert_eq!(ok.status, 200, "{transport:?}");
        assert_eq!(ok.seen_header("x-auth-user").as_deref(), Some("alice"));
        let big = c
            .send(
                Method::POST,
                "/api/x",
                &[("authorization", &auth)],
                Some(b"123456789"),
            )
            .await;
        assert_eq!(big.status, 413, "{transport:?}");
        // The burst of 2 is spent (the 413 counted: `limited` runs before `small`).
        let limited = c.get("/api/x", &[("authorization", &auth)]).await;
        assert_eq!(limited.status, 429, "{transport:?}");
        // Other routes are untouched.
        assert_eq!(c.get("/else", &[]).await.status, 200);
    }
}
