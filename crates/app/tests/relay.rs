//! End-to-end tests of the HTTP/1.1 relay (the gateway's fast path) at the byte level: a raw
//! TCP client in front of the gateway, a scripted raw TCP replica behind it. What hyper-based
//! clients and servers would smooth over — framing, keep-alive, pipelining, interim
//! responses, replicas that close idle connections, and the hand-over of unusual requests to
//! the full HTTP stack — is checked here byte for byte.
//!
//! Every story runs twice: over plain TCP (`::tcp`) and over TLS (`::tls`, an HTTPS
//! entrypoint and a client offering no ALPN, so HTTP/1.1), since the relay serves both and
//! only its reads and writes differ (TLS records that must be flushed, a `close_notify`).
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shoal_test_support::{DEADLINE, Service, StackBuilder, TestCerts, TestGateway};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// A replica that answers by path with hand-written responses, and counts connections.
struct RawReplica {
    url: String,
    connections: Arc<AtomicUsize>,
    /// Connections the gateway closed while a `/hang` request waited for its answer.
    abandoned: Arc<AtomicUsize>,
}

/// What the replica does after answering.
#[derive(Clone, Copy, PartialEq)]
enum AfterAnswer {
    KeepOpen,
    /// Close the connection without having said so (an idle-timeout race).
    Close,
}

impl RawReplica {
    async fn start(after: AfterAnswer) -> RawReplica {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let abandoned = Arc::new(AtomicUsize::new(0));
        let (counted, hung_up) = (connections.clone(), abandoned.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(replica_connection(stream, after, hung_up.clone()));
            }
        });
        RawReplica {
            url,
            connections,
            abandoned,
        }
    }
}

async fn replica_connection(
    mut stream: TcpStream,
    after: AfterAnswer,
    abandoned: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    loop {
        let Some((head, body)) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let first = head.lines().next().unwrap_or("").to_owned();
        let mut parts = first.split(' ');
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let writes: Vec<Vec<u8>> = match path {
            "/chunked" => vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: x-private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n\r\n".to_vec(),
                b"5\r\nhello\r\n".to_vec(),
                b"6;ext=1\r\n world\r\n".to_vec(),
                b"0\r\nX-Trailer: t\r\n\r\n".to_vec(),
            ],
            "/until-close" => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nstreamed ")
                    .await;
                let _ = stream.write_all(b"until close").await;
                return;
            }
            "/no-content" => vec![b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()],
            // More than a TLS record (16 KiB) and than one read: many writes to the client.
            "/large" => vec![
                format!("HTTP/1.1 200 OK\r\nContent-Length: {LARGE}\r\n\r\n").into_bytes(),
                vec![b'L'; LARGE / 2],
                vec![b'L'; LARGE - LARGE / 2],
            ],
            "/echo-head" => vec![
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
                    head.len()
                )
                .into_bytes(),
            ],
            "/hang" => {
                // Never answer; note when the gateway gives up the connection.
                let mut rest = [0u8; 64];
                while matches!(stream.read(&mut rest).await, Ok(n) if n > 0) {}
                abandoned.fetch_add(1, Ordering::SeqCst);
                return;
            }
            "/early-hints" => vec![
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n".to_vec(),
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            ],
            _ if method == "HEAD" => {
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n".to_vec()]
            }
            _ => {
                let text = format!("{method} {path} body={}", body.len());
                vec![
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    )
                    .into_bytes(),
                ]
            }
        };
        for w in writes {
            if stream.write_all(&w).await.is_err() {
                return;
            }
            // Separate segments: the gateway must not assume a body arrives in one read.
            tokio::task::yield_now().await;
        }
        if after == AfterAnswer::Close {
            return;
        }
    }
}

/// Read one request (head + Content-Length body) off `stream`; `None` at end of stream.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            if header_of(&head, "transfer-encoding").is_some() {
                // Chunked (as the full stack forwards a chunked upload): up to the last chunk.
                let body_end = loop {
                    if let Some(i) = find(&buf[end + 4..], b"0\r\n\r\n") {
                        break end + 4 + i + 5;
                    }
                    let mut chunk = [0u8; 4096];
                    let n = stream.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                };
                let body = dechunk(&buf[end + 4..body_end]).into_bytes();
                buf.drain(..body_end);
                return Some((head, body));
            }
            let len = header_of(&head, "content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return Some((head, body));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header_of<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// A response as a raw client sees it.
#[derive(Debug)]
struct Raw {
    head: String,
    /// The body, de-chunked.
    body: String,
    /// The body's bytes as they came (chunked framing included).
    wire: String,
}

impl Raw {
    fn status(&self) -> u16 {
        self.head[9..12].parse().unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.head, name)
    }
}

/// Length of the replica's `/large` body.
const LARGE: usize = 1024 * 1024 + 7;

/// A client's connection: TCP, or TLS over it.
trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

/// A raw client connection to the gateway.
struct RawClient {
    stream: Box<dyn ClientIo>,
    buf: Vec<u8>,
}

impl RawClient {
    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let n = timeout(DEADLINE, self.stream.read(&mut chunk))
            .await
            .expect("the gateway answers within the deadline")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Read one response to a request with method `method`.
    async fn response(&mut self, method: &str) -> Raw {
        let end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end;
            }
            assert!(
                self.fill().await,
                "connection closed before a response head"
            );
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let status: u16 = head[9..12].parse().unwrap();
        let (body, wire) = if method == "HEAD" || status < 200 || status == 204 || status == 304 {
            (String::new(), String::new())
        } else if header_of(&head, "transfer-encoding").is_some() {
            let wire_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n0\r\n")
                    .map(|i| i + 2)
                    .or_else(|| self.buf.starts_with(b"0\r\n").then_some(0))
                    && let Some(j) = find(&self.buf[i..], b"\r\n\r\n")
                {
                    break i + j + 4;
                }
                assert!(self.fill().await, "connection closed mid-body");
            };
            let wire: Vec<u8> = self.buf.drain(..wire_end).collect();
            (dechunk(&wire), String::from_utf8_lossy(&wire).into_owned())
        } else if let Some(len) = header_of(&head, "content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                assert!(self.fill().await, "connection closed mid-body");
            }
            let body: Vec<u8> = self.buf.drain(..len).collect();
            let body = String::from_utf8_lossy(&body).into_owned();
            (body.clone(), body)
        } else {
            while self.fill().await {}
            let body = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            (body.clone(), body)
        };
        Raw { head, body, wire }
    }

    /// Whether the gateway closed the connection (end of stream, nothing more sent).
    async fn closed(&mut self) -> bool {
        !self.fill().await && self.buf.is_empty()
    }
}

fn dechunk(mut wire: &[u8]) -> String {
    let mut out = Vec::new();
    loop {
        let line_end = find(wire, b"\r\n").unwrap();
        let line = std::str::from_utf8(&wire[..line_end]).unwrap();
        let size = usize::from_str_radix(line.split(';').next().unwrap(), 16).unwrap();
        if size == 0 {
            return String::from_utf8(out).unwrap();
        }
        out.extend_from_slice(&wire[line_end + 2..line_end + 2 + size]);
        wire = &wire[line_end + 2 + size + 2..];
    }
}

/// How the client reaches the gateway.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Over {
    Tcp,
    Tls,
}

/// A gateway, and how its clients connect.
struct Front {
    gw: TestGateway,
    /// The test CA and certificate (TLS only).
    certs: Option<TestCerts>,
}

impl Front {
    /// A gateway routing everything to `replica`, with `settings` in its `gateway:` section.
    async fn start(over: Over, settings: &[&str], replica: &RawReplica) -> Front {
        let stack = settings
            .iter()
            .fold(StackBuilder::new(), |stack, s| stack.gateway(s))
            .service("raw", replica.url.as_str())
            .route("PathPrefix(`/`)", "raw");
        Front::with_stack(over, stack).await
    }

    /// A gateway on `stack`, with HTTPS on its entrypoint when `over` is TLS.
    async fn with_stack(over: Over, stack: StackBuilder) -> Front {
        let certs = (over == Over::Tls).then(TestCerts::new);
        let stack = match &certs {
            Some(certs) => stack.https(certs),
            None => stack,
        };
        Front {
            gw: stack.start().await,
            certs,
        }
    }

    /// A new client connection.
    async fn client(&self) -> RawClient {
        let stream: Box<dyn ClientIo> = match &self.certs {
            None => Box::new(TcpStream::connect(self.gw.addr()).await.unwrap()),
            Some(certs) => Box::new(certs.connect(self.gw.addr()).await.unwrap()),
        };
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }
}

impl std::ops::Deref for Front {
    type Target = TestGateway;
    fn deref(&self) -> &TestGateway {
        &self.gw
    }
}

/// Each story as two tests, `NAME::tcp` and `NAME::tls`.
macro_rules! over_tcp_and_tls {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn tcp() {
                super::$name(super::Over::Tcp).await
            }
            #[tokio::test]
            async fn tls() {
                super::$name(super::Over::Tls).await
            }
        }
    )*};
}

const GET: fn(&str) -> Vec<u8> =
    |path| format!("GET {path} HTTP/1.1\r\nHost: relay.test\r\n\r\n").into_bytes();

over_tcp_and_tls!(
    chunked_bodies_pass_through_with_trailers_on_reused_connections,
    a_body_delimited_by_close_closes_the_client_connection_after_it,
    head_no_content_and_interim_responses_keep_the_connection_in_step,
    pipelined_requests_are_answered_in_order,
    a_replica_that_closes_idle_connections_costs_no_request,
    connection_close_from_the_client_is_honoured,
    requests_the_relay_does_not_carry_are_served_by_the_full_stack,
    gateway_errors_are_short_complete_responses,
    idle_client_connections_are_closed_after_client_idle,
    shutdown_closes_idle_relay_connections_and_finishes_busy_ones,
    a_client_that_goes_away_abandons_its_request,
    one_connection_times_out_and_recovers_again_and_again,
    large_bodies_arrive_whole_and_the_scheme_is_forwarded,
    a_refused_head_is_answered_before_the_connection_closes,
);

async fn chunked_bodies_pass_through_with_trailers_on_reused_connections(over: Over) {
    let replica = RawReplica::start(AfterAnswer::KeepOpen).await;
    let gw = Front::start(over, &[], &replica).await;
    let mut client = gw.client().await;
    for _ in 0..3 {
        client.send(&GET("/chunked")).await;
        let r = client.response("GET").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.body, "hello world");
        assert!(
            r.wire.contains("6;ext=1\r\n"),
            "chunks as sent: {:?}",
            r.wire
        );
        assert!(
            r.wire.ends_with("0\r\nX-Trailer: t\r\n\r\n"),
            "trailers kept: {:?}",
            r.wire
        );
        assert_eq!(r.header("x-kept"), Some("yes"));
        for hop in ["x-private", "keep-alive", "connection"] {
            assert_eq!(
                r.header(hop),
                None,
                "hop-by-hop `{hop}` removed: {}",
                r.head
            );
        }
    }
    assert_eq!(
        replica.connections.load(Ordering::SeqCst),
        1,
        "one upstream connection carried all three exchanges"
    );
}

async fn a_body_delimited_by_close_closes_the_client_connection_after_it(over: Over) {
    let replica = RawReplica::start(AfterAnswer::KeepOpen).await;
    let gw = Front::start(over, &[], &replica).await;
    let mut client = gw.client().await;
    client.send(&GET("/until-close")).await;
    let r = client.response("GET").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.body, "streamed until close");
    assert_eq!(r.header("connection"), Some("close"), "{}", r.head);
}

async fn head_no_content_and_interim_responses_keep_the_connection_in_step(over: Over) {
    let replica = RawReplica::start(AfterAnswer::KeepOpen).await;
    let gw = Front::start(over, &[], &replica).await;
    let mut client = gw.client().await;
    client
        .send(b"HEAD /head HTTP/1.1\r\nHost: relay.test\r\n\r\n")
        .await;
    let r = client.response("HEAD").await;
    assert_eq!(
        (r.status(), r.header("content-length")),
        (200, Some("1234"))
    );
    client.send(&GET("/no-content")).await;
    assert_eq!(client.response("GET").await.status(), 204);
    client.send(&GET("/early-hints")).await;
    let r = client.response("GET").await;
    assert_eq!((r.status(), r.body.as_str()), (200, "ok"), "103 dropped");
    client.send(&GET("/after")).await;
    assert_eq!(client.response("GET").await.body, "GET /after body=0");
}

async fn pipelined_requests_are_answered_in_order(over: Over) {
    let replica = RawReplica::start(AfterAnswer::KeepOpen).await;
    let gw = Front::start(over, &[], &replica).await;
    let mut client = gw.client().await;
    let mut both = GET("/first");
    both.extend_from_slice(
        b"POST /second HTTP/1.1\r\nHost: relay.test\r\nContent-Length: 5\r\n\r\nabcde",
    );
    client.send(&both).await;
    assert_eq!(client.response("GET").await.body, "GET /first body=0");
    assert_eq!(client.response("POST").await.body, "POST /second body=5");
}

async fn a_replica_that_closes_idle_connections_costs_no_request(over: Over) {
    let replica = RawReplica::start(AfterAnswer::Close).await;
    let gw = Front::start(over, &[], &replica).await;
    let mut client = gw.client().await;
    for i in 0..30 {
        client.send(&GET(&format!("/n{i}"))).await;
        let r = client.response("GET").await;
        assert_eq!((r.status(), r.body), (200, format!("GET /n{i} body=0")));
    }
    assert!(
        replica.connections.load(Ordering::SeqCst) >= 30,
        "each answer closed its upstream connection"
    );
}

async fn connection_close_from_the_client_is_honoured(over: Over) {
    let replica = RawReplica::start(AfterAnswer::KeepOpen).await;
    let gw = Front::start(over, &[], &replica).await;
    let mut client = gw.client().await;
    client
        .send(b"GET /bye HTTP/1.1\r\nHost: relay.test\r\nConnection: close\r\n\r\n")
        .await;
    let r = client.response("GET").await;
    assert_eq!(r.body, "GET /bye body=0");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(client.closed().await, "the gateway closed the connection");
}

async fn requests_the_relay_does_not_carry_are_served_by_the_full_stack(over: Over) {
    let replica = RawReplica::start(AfterAnswer::KeepOpen).await;
    let gw = Front::start(over, &[], &replica).await;

    // A chunked request body: handed over, then the same connection goes on serving.
    let mut client = gw.client().await;
    client.send(&GET("/before")).await;
    assert_eq!(client.response("GET").await.body, "GET /before body=0");
    client
        .send(b"POST /chunked-upload HTTP/1.1\r\nHost: relay.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
        .await;
    assert_eq!(
        client.response("POST").await.body,
        "POST /chunked-upload body=7"
    );
    client.send(&GET("/after")).await;
    assert_eq!(client.response("GET").await.body, "GET /after body=0");

    // HTTP/1.0.
    let mut client = gw.client().await;
    client
        .send(b"GET /old HTTP/1.0\r\nHost: relay.test\r\n\r\n")
        .await;
    let r = client.response("GET").await;
    assert_eq!((r.status(), r.body.as_str()), (200, "GET /old body=0"));

    // Expect: 100-continue gets its interim response from the full stack.
    let mut client = gw.client().await;
    client
        .send(b"POST /expect HTTP/1.1\r\nHost: relay.test\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        .await;
    assert_eq!(client.response("POST").await.status(), 100);
    client.send(b"xyz").await;
    assert_eq!(client.response("POST").await.body, "POST /expect body=3");

    // A body over the relay's 64 KiB is streamed by the full stack.
    let mut client = gw.client().await;
    let big = vec![b'x'; 200 * 1024];
    client
        .send(
            format!(
                "PUT /big HTTP/1.1\r\nHost: relay.test\r\nContent-Length: {}\r\n\r\n",
                big.len()
            )
            .as_bytes(),
        )
        .await;
    client.send(&big).await;
    assert_eq!(
        client.response("PUT").await.body,
        format!("PUT /big body={}", big.len())
    );

    // Garbage gets the full stack's 400.
    let mut client = gw.client().await;
    client.send(b"NOT HTTP AT ALL\r\n\r\n").await;
    assert_eq!(client.response("GET").await.status(), 400);
}

async fn gateway_errors_are_short_complete_responses(over: Over) {
    let stack = StackBuilder::new()
        .service("dead", shoal_test_support::dead_url().as_str())
        .route("PathPrefix(`/dead`)", "dead");
    let gw = Front::with_stack(over, stack).await;
    let mut client = gw.client().await;
    client.send(&GET("/nowhere")).await;
    let r = client.response("GET").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.header("x-shoal-error"), Some("no-route"));
    client.send(&GET("/dead")).await;
    let r = client.response("GET").await;
    assert_eq!(r.status(), 502, "{}", r.head);
    assert!(r.body.contains("service `dead`"), "{}", r.body);
    client.send(&GET("/nowhere-again")).await;
    assert_eq!(
        client.response("GET").await.status(),
        404,
        "errors keep the connection alive"
    );
}

async fn idle_client_connections_are_closed_after_client_idle(over: Over) {
    let replica = RawReplica::start(AfterAnswer::KeepOpen).await;
    // 1 s idle against a request every 100 ms: a busy machine's stall of the test's own
    // task does not look idle.
    let gw = Front::start(over, &["timeouts: { client_idle: 1s }"], &replica).await;
    let mut client = gw.client().await;
    // Busy for longer than the idle timeout, one request every 100 ms: never cut off.
    let started = tokio::time::Instant::now();
    for i in 0..14 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        client.send(&GET(&format!("/busy{i}"))).await;
        assert_eq!(client.response("GET").await.status(), 200);
    }
    assert!(started.elapsed() > Duration::from_millis(1300));
    // Then quiet: closed about 1 s later, well before the test's deadline.
    let quiet = tokio::time::Instant::now();
    assert!(
        client.closed().await,
        "the gateway closed the idle connection"
    );
    let waited = quiet.elapsed();
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(6),
        "closed after {waited:?}"
    );
}

async fn shutdown_closes_idle_relay_connections_and_finishes_busy_ones(over: Over) {
    let replica = RawReplica::start(AfterAnswer::KeepOpen).await;
    let gw = Front::start(over, &[], &replica).await;
    let mut idle = gw.client().await;
    idle.send(&GET("/warm")).await;
    assert_eq!(idle.response("GET").await.status(), 200);
    let mut busy = gw.client().await;
    // Half a request: the gateway is waiting for its end when the shutdown starts.
    busy.send(b"GET /late HTTP/1.1\r\nHost: relay.test\r\n")
        .await;
    let shutdown = tokio::spawn(gw.gw.shutdown());
    assert!(idle.closed().await, "idle connection closed on shutdown");
    busy.send(b"\r\n").await;
    let r = busy.response("GET").await;
    assert_eq!(r.body, "GET /late body=0");
    assert_eq!(r.header("connection"), Some("close"));
    timeout(DEADLINE, shutdown)
        .await
        .expect("shutdown finished")
        .unwrap();
}

async fn a_client_that_goes_away_abandons_its_request(over: Over) {
    let replica = RawReplica::start(AfterAnswer::KeepOpen).await;
    let gw = Front::start(over, &[], &replica).await;
    let mut client = gw.client().await;
    client.send(&GET("/hang")).await;
    shoal_test_support::eventually(DEADLINE, || async {
        match replica.connections.load(Ordering::SeqCst) {
            1 => Ok(()),
            n => Err(format!("{n} upstream connections")),
        }
    })
    .await;
    assert_eq!(replica.abandoned.load(Ordering::SeqCst), 0);
    drop(client);
    // The replica hears of it long before the 30 s response-header timeout.
    shoal_test_support::eventually(DEADLINE, || async {
        match replica.abandoned.load(Ordering::SeqCst) {
            1 => Ok(()),
            n => Err(format!("{n} abandoned upstream connections")),
        }
    })
    .await;
}

async fn one_connection_times_out_and_recovers_again_and_again(over: Over) {
    // The relay keeps one response-header timer per client connection, moved by each
    // request: after a request that timed out (the timer fired) and after quick ones (the
    // timer left armed), every request must get its own full deadline and no early wake.
    let replica = RawReplica::start(AfterAnswer::KeepOpen).await;
    // A per-try timeout past the deadline: any hedge would be a stray timer's. (The
    // automatic one is 100 ms once the route has an answer: the cold rule of
    // `shoal_proxy`'s latency module.)
    let stack = StackBuilder::new()
        .gateway("timeouts: { response_header: 300ms }")
        .service_with(
            "raw",
            Service::servers(replica.url.as_str()).with("retry: { per_try_timeout: 10s }"),
        )
        .route("PathPrefix(`/`)", "raw");
    let gw = Front::with_stack(over, stack).await;
    let mut client = gw.client().await;
    for round in 0..3 {
        client.send(&GET(&format!("/quick{round}"))).await;
        let r = client.response("GET").await;
        assert_eq!(r.status(), 200, "round {round}: {}", r.head);
        assert_eq!(r.body, format!("GET /quick{round} body=0"));
        let asked = tokio::time::Instant::now();
        client.send(&GET("/hang")).await;
        let r = client.response("GET").await;
        let waited = asked.elapsed();
        assert_eq!(r.status(), 504, "round {round}: {}", r.head);
        assert!(
            waited >= Duration::from_millis(290) && waited < Duration::from_secs(3),
            "round {round}: 504 after {waited:?}, the deadline is 300 ms"
        );
    }
    client.send(&GET("/after")).await;
    assert_eq!(client.response("GET").await.status(), 200);
    let (counters, _) = gw.shoal().gateway().traffic("raw").expect("service exists");
    assert_eq!(
        counters.hedges_total, 0,
        "a timer left from an earlier request must not fire a hedge"
    );
}

async fn large_bodies_arrive_whole_and_the_scheme_is_forwarded(over: Over) {
    let replica = RawReplica::start(AfterAnswer::KeepOpen).await;
    let gw = Front::start(over, &[], &replica).await;
    let mut client = gw.client().await;
    for _ in 0..2 {
        client.send(&GET("/large")).await;
        let r = client.response("GET").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.body.len(), LARGE);
        assert!(
            r.body.bytes().all(|b| b == b'L'),
            "the body is what was sent"
        );
    }
    // The same connection carries on, and the replica hears how the client came.
    client.send(&GET("/echo-head")).await;
    let r = client.response("GET").await;
    let scheme = if over == Over::Tls { "https" } else { "http" };
    assert_eq!(
        header_of(&r.body, "x-forwarded-proto"),
        Some(scheme),
        "{}",
        r.body
    );
}

async fn a_refused_head_is_answered_before_the_connection_closes(over: Over) {
    let replica = RawReplica::start(AfterAnswer::KeepOpen).await;
    let gw = Front::start(over, &["limits: { max_head_size: 8192 }"], &replica).await;
    let mut client = gw.client().await;
    client.send(&GET("/fine")).await;
    assert_eq!(client.response("GET").await.status(), 200);
    let long = format!(
        "GET /long HTTP/1.1\r\nHost: relay.test\r\nX-Long: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    client.send(long.as_bytes()).await;
    let r = client.response("GET").await;
    assert_eq!(r.status(), 431, "{}", r.head);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(client.closed().await, "the gateway closed the connection");
    assert_eq!(
        replica.connections.load(Ordering::SeqCst),
        1,
        "only the first request reached the replica"
    );
}
