//! The `compress` middleware end to end: a gateway (relay and full stack) in front of a
//! hand-written hyper replica, and real clients — hyper over HTTP/1.1 keep-alive (the relay
//! path, handed to the full stack for compressed responses) and HTTP/2 (h2c), and
//! `curl --compressed`. Bodies are decoded in the test (flate2, brotli, zstd) and compared
//! byte for byte.
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use shoal_config::{Compress, Encoding, Middleware, Stack};
use shoal_proxy::{Gateway, Listeners, ServeSettings, Serving, TlsEntrypoints};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type TestBody = UnsyncBoxBody<Bytes, BoxError>;

/// How long any one step may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

const ALL: [Encoding; 3] = [Encoding::Zstd, Encoding::Brotli, Encoding::Gzip];

/// About 100 KiB of JSON, the same every time: records with varied numbers and words, as an
/// API listing would return.
fn json_body() -> Bytes {
    let mut rng = fastrand::Rng::with_seed(17);
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
    ];
    let mut records = Vec::new();
    let mut size = 0;
    let mut id = 0_u64;
    while size < 100 * 1024 {
        let name = format!(
            "{} {}",
            words[rng.usize(..words.len())],
            words[rng.usize(..words.len())]
        );
        let record = serde_json::json!({
            "id": id,
            "name": name,
            "email": format!("{}{}@example.com", words[rng.usize(..words.len())], rng.u32(..10_000)),
            "score": rng.f64() * 100.0,
            "active": rng.bool(),
            "tags": [words[rng.usize(..words.len())], words[rng.usize(..words.len())]],
            "created": format!("2024-{:02}-{:02}T{:02}:{:02}:00Z", rng.u8(1..13), rng.u8(1..29), rng.u8(..24), rng.u8(..60)),
        });
        size += record.to_string().len() + 1;
        records.push(record);
        id += 1;
    }
    Bytes::from(serde_json::to_vec(&records).unwrap())
}

// ---- The replica ----

/// A hyper replica answering by path:
/// - `/json`: ~100 KiB of JSON with `Content-Length`, a strong `ETag` and `Vary: Origin`;
/// - `/small`: 100 bytes of text; `/image`: 10 KiB of `image/png`; `/encoded`: JSON already
///   gzipped; `/no-transform`: JSON with `Cache-Control: no-transform`;
/// - `/chunked`: the JSON in 4 KiB frames without a length;
/// - `/stream`: server-sent events: a first event, then — once the test adds a permit to
///   `release` — the rest.
struct Replica {
    addr: SocketAddr,
    release: Arc<Semaphore>,
}

const FIRST_EVENT: &[u8] = b"data: {\"event\": 1, \"text\": \"the first event\"}\n\n";

fn rest_events() -> Vec<Bytes> {
    (2..50)
        .map(|i| Bytes::from(format!("data: {{\"event\": {i}, \"text\": \"more\"}}\n\n")))
        .collect()
}

async fn start_replica() -> Replica {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let release = Arc::new(Semaphore::new(0));
    let json = json_body();
    let gate = release.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (json, gate) = (json.clone(), gate.clone());
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (json, gate) = (json.clone(), gate.clone());
                async move { Ok::<_, BoxError>(answer(req, json, gate)) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Replica { addr, release }
}

fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn answer(req: Request<Incoming>, json: Bytes, gate: Arc<Semaphore>) -> Response<TestBody> {
    let with = |ct: &str, body: Bytes| {
        Response::builder()
            .header(header::CONTENT_TYPE, ct)
            .header(header::CONTENT_LENGTH, body.len())
            .body(full(body))
            .unwrap()
    };
    match req.uri().path() {
        "/json" => {
            let mut r = with("application/json", json);
            let h = r.headers_mut();
            h.insert(header::ETAG, "\"v1\"".parse().unwrap());
            h.insert(header::VARY, "Origin".parse().unwrap());
            h.insert(header::ACCEPT_RANGES, "bytes".parse().unwrap());
            h.insert("x-replica", "kept".parse().unwrap());
            r
        }
        "/small" => with("text/plain", Bytes::from(vec![b'a'; 100])),
        "/image" => with("image/png", Bytes::from(vec![b'p'; 10 * 1024])),
        "/encoded" => {
            let mut r = with("application/json", gzip(&json));
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
            r
        }
        "/no-transform" => {
            let mut r = with("application/json", json);
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                "public, no-transform".parse().unwrap(),
            );
            r
        }
        "/chunked" => {
            let frames: Vec<Result<Frame<Bytes>, BoxError>> = json
                .chunks(4096)
                .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                .collect();
            Response::builder()
                .header(header::CONTENT_TYPE, "text/html")
                .body(StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync())
                .unwrap()
        }
        "/stream" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(FIRST_EVENT)).await;
                // The rest only once the test has seen the first.
                let Ok(permit) = gate.acquire().await else {
                    return;
                };
                permit.forget();
                for event in rest_events() {
                    let _ = tx.send(event).await;
                }
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, BoxError>(Frame::data(b)), rx))
            });
            Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .header(header::CACHE_CONTROL, "no-cache")
                .body(StreamBody::new(stream).boxed_unsync())
                .unwrap()
        }
        "/no-content" => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(full(Bytes::new()))
            .unwrap(),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(full(Bytes::new()))
            .unwrap(),
    }
}

// ---- The gateway ----

/// A gateway on 127.0.0.1:0 in front of `replica`: `/plain/…` without middlewares (the
/// prefix stripped), everything else through `compress`.
struct Gw {
    addr: SocketAddr,
    serving: Option<Serving>,
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(s) = self.serving.take() {
            tokio::spawn(s.shutdown(Duration::from_secs(1)));
        }
    }
}

fn stack_for(replica: SocketAddr) -> Stack {
    let yaml = format!(
        "gateway:\n  listen: 127.0.0.1:0\n\
         services:\n  web:\n    servers: [http://{replica}]\n\
         routes:\n\
         \x20 - match: PathPrefix(`/plain`)\n    service: web\n    strip_prefix: /plain\n\
         \x20 - match: PathPrefix(`/`)\n    service: web\n"
    );
    shoal_config::parse(&yaml, "shoal.yaml").unwrap_or_else(|e| panic!("{e}"))
}

async fn start_gateway(replica: SocketAddr, compress: Compress) -> Gw {
    let mut stack = stack_for(replica);
    stack.routes[1]
        .middlewares
        .push(Middleware::Compress(compress));
    serve(stack)
}

fn serve(stack: Stack) -> Gw {
    let gateway = Gateway::new(&stack);
    let listeners = Listeners::bind(&stack.gateway.entrypoints).expect("bind 127.0.0.1:0");
    let addr = listeners.local_addrs()[0].1;
    let settings = ServeSettings::of(&stack.gateway);
    let serving = Serving::start(gateway, listeners, settings, &TlsEntrypoints::default());
    Gw {
        addr,
        serving: Some(serving),
    }
}

// ---- Clients ----

/// One client connection: HTTP/1.1 keep-alive or HTTP/2 prior knowledge.
enum Conn {
    H1(hyper::client::conn::http1::SendRequest<TestBody>),
    H2(hyper::client::conn::http2::SendRequest<TestBody>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Proto {
    H1,
    H2,
}

impl Conn {
    async fn open(addr: SocketAddr, proto: Proto) -> Conn {
        let stream = TcpStream::connect(addr).await.unwrap();
        let io = TokioIo::new(stream);
        match proto {
            Proto::H1 => {
                let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                Conn::H1(send)
            }
            Proto::H2 => {
                let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                Conn::H2(send)
            }
        }
    }

    /// Send `method path` with `headers`; the response once its head is in.
    async fn send(
        &mut self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response<Incoming> {
        let uri = match self {
            Conn::H1(_) => path.to_owned(),
            Conn::H2(_) => format!("http://{addr}{path}"),
        };
        let mut req = Request::builder().method(method).uri(uri);
        if let Conn::H1(_) = self {
            req = req.header(header::HOST, addr.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
            .unwrap();
        let sent = async {
            match self {
                Conn::H1(s) => {
                    s.ready().await?;
                    s.send_request(req).await
                }
                Conn::H2(s) => {
                    s.ready().await?;
                    s.send_request(req).await
                }
            }
        };
        timeout(DEADLINE, sent)
            .await
            .expect("response head within the deadline")
            .expect("a response")
    }

    /// `GET path` and read the whole body.
    async fn get(
        &mut self,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (http::response::Parts, Bytes) {
        let resp = self.send(addr, Method::GET, path, headers).await;
        let (parts, body) = resp.into_parts();
        let body = timeout(DEADLINE, body.collect())
            .await
            .expect("body within the deadline")
            .expect("the body")
            .to_bytes();
        (parts, body)
    }
}

fn gzip(bytes: &[u8]) -> Bytes {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    Bytes::from(e.finish().unwrap())
}

fn decode(encoding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap(),
        "br" => brotli::Decompressor::new(bytes, 4096)
            .read_to_end(&mut out)
            .unwrap(),
        "zstd" => zstd::stream::read::Decoder::new(bytes)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap(),
        other => panic!("unexpected content-coding {other:?}"),
    };
    out
}

/// What can be decoded of an unfinished stream.
fn decode_partial(encoding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut reader: Box<dyn Read + '_> = match encoding {
        "gzip" => Box::new(flate2::read::GzDecoder::new(bytes)),
        "br" => Box::new(brotli::Decompressor::new(bytes, 4096)),
        "zstd" => Box::new(zstd::stream::read::Decoder::new(bytes).unwrap()),
        other => panic!("unexpected content-coding {other:?}"),
    };
    let mut out = Vec::new();
    let mut buf = [0_u8; 4096];
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fn header<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

/// The response is the replica's, untouched: no coding, its length, its body.
fn assert_passed_through(parts: &http::response::Parts, body: &[u8], expected: &[u8], what: &str) {
    assert_eq!(parts.status, StatusCode::OK, "{what}");
    assert_eq!(header(&parts.headers, "content-encoding"), None, "{what}");
    assert_eq!(
        header(&parts.headers, "content-length"),
        Some(expected.len().to_string().as_str()),
        "{what}"
    );
    assert_eq!(body, expected, "{what}");
}

// ---- Tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_encoding_round_trips_over_http1_keep_alive_and_h2() {
    let replica = start_replica().await;
    let gw = start_gateway(replica.addr, Compress::default()).await;
    let json = json_body();
    for proto in [Proto::H1, Proto::H2] {
        // One connection for everything: on HTTP/1.1 the relay serves the first request and
        // hands the connection over with the first it would have to compress.
        let mut conn = Conn::open(gw.addr, proto).await;
        let (parts, body) = conn.get(gw.addr, "/json", &[]).await;
        assert_passed_through(&parts, &body, &json, "no Accept-Encoding");
        for encoding in ALL {
            let token = encoding.token();
            let (parts, body) = conn
                .get(gw.addr, "/json", &[("accept-encoding", token)])
                .await;
            let what = format!("{proto:?} {token}");
            let h = &parts.headers;
            assert_eq!(parts.status, StatusCode::OK, "{what}");
            assert_eq!(header(h, "content-encoding"), Some(token), "{what}");
            assert_eq!(header(h, "content-length"), None, "{what}");
            assert_eq!(header(h, "vary"), Some("Origin, Accept-Encoding"), "{what}");
            assert_eq!(header(h, "etag"), Some("W/\"v1\""), "{what}");
            assert_eq!(header(h, "accept-ranges"), None, "{what}");
            assert_eq!(header(h, "x-replica"), Some("kept"), "{what}");
            assert_eq!(
                header(h, "content-type"),
                Some("application/json"),
                "{what}"
            );
            if proto == Proto::H1 {
                assert_eq!(header(h, "transfer-encoding"), Some("chunked"), "{what}");
            }
            assert!(body.len() < json.len() / 3, "{what}: {} bytes", body.len());
            assert_eq!(decode(token, &body), json, "{what}");
            // A body of unknown length too.
            let (parts, body) = conn
                .get(gw.addr, "/chunked", &[("accept-encoding", token)])
                .await;
            assert_eq!(header(&parts.headers, "content-encoding"), Some(token));
            assert_eq!(decode(token, &body), json, "{what} chunked");
        }
        // The same connection still serves uncompressed answers.
        let (parts, body) = conn.get(gw.addr, "/json", &[]).await;
        assert_passed_through(
            &parts,
            &body,
            &json,
            "no Accept-Encoding after compressed ones",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_compressed_decodes_each_encoding() {
    let curl = which_curl();
    let replica = start_replica().await;
    let gw = start_gateway(replica.addr, Compress::default()).await;
    let json = json_body();
    let dir = std::env::temp_dir().join(format!("shoal-compress-curl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // curl's own Accept-Encoding (`deflate, gzip, br, zstd`): zstd, first in the default order.
    let cases: [(Option<&str>, &str); 4] = [
        (None, "zstd"),
        (Some("zstd"), "zstd"),
        (Some("br"), "br"),
        (Some("gzip"), "gzip"),
    ];
    for http in ["--http1.1", "--http2-prior-knowledge"] {
        for (asked, expected) in cases {
            let out = dir.join("body");
            let mut cmd = tokio::process::Command::new(&curl);
            cmd.args(["-sS", "--compressed", http, "-D", "-", "-o"])
                .arg(&out)
                .arg(format!("http://{}/json", gw.addr));
            if let Some(a) = asked {
                cmd.args(["-H", &format!("Accept-Encoding: {a}")]);
            }
            let done = timeout(DEADLINE, cmd.output())
                .await
                .expect("curl within the deadline")
                .expect("curl runs");
            let what = format!("curl {http} asking {asked:?}");
            assert!(done.status.success(), "{what}: {done:?}");
            let head = String::from_utf8_lossy(&done.stdout).to_lowercase();
            assert!(
                head.contains(&format!("content-encoding: {expected}\r\n")),
                "{what}: {head}"
            );
            assert!(
                head.contains("vary: origin, accept-encoding\r\n"),
                "{what}: {head}"
            );
            let got = std::fs::read(&out).unwrap();
            assert!(
                got == json,
                "{what}: curl's decoded body differs from the replica's"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// curl's path; fails the test with a clear message if it is missing.
fn which_curl() -> std::path::PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("curl"))
        .find(|p| p.is_file())
        .expect("curl is needed by this test (apt-get install curl): not found on PATH")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q_values_choose_the_coding_end_to_end() {
    let replica = start_replica().await;
    let gw = start_gateway(replica.addr, Compress::default()).await;
    let json = json_body();
    let cases: [(&str, Option<&str>); 9] = [
        ("gzip, deflate, br, zstd", Some("zstd")),
        ("gzip;q=1.0, br;q=0.9, zstd;q=0.8", Some("gzip")),
        ("br;q=0.5, gzip;q=0.5", Some("br")),
        ("zstd;q=0, *;q=0.3", Some("br")),
        ("*", Some("zstd")),
        ("zstd;q=2, gzip;q=0.1", Some("gzip")),
        ("gzip;q=0.5, identity", None),
        ("deflate, compress", None),
        ("*;q=0", None),
    ];
    for proto in [Proto::H1, Proto::H2] {
        let mut conn = Conn::open(gw.addr, proto).await;
        for (accept, expected) in cases {
            let (parts, body) = conn
                .get(gw.addr, "/json", &[("accept-encoding", accept)])
                .await;
            let what = format!("{proto:?} Accept-Encoding: {accept}");
            match expected {
                Some(token) => {
                    assert_eq!(
                        header(&parts.headers, "content-encoding"),
                        Some(token),
                        "{what}"
                    );
                    assert_eq!(decode(token, &body), json, "{what}");
                }
                None => assert_passed_through(&parts, &body, &json, &what),
            }
        }
    }
    // The route's order breaks ties: gzip first.
    let gw = start_gateway(
        replica.addr,
        Compress {
            encodings: vec![Encoding::Gzip, Encoding::Zstd],
            ..Compress::default()
        },
    )
    .await;
    let mut conn = Conn::open(gw.addr, Proto::H1).await;
    let (parts, _) = conn
        .get(gw.addr, "/json", &[("accept-encoding", "zstd, br, gzip")])
        .await;
    assert_eq!(header(&parts.headers, "content-encoding"), Some("gzip"));
    // Only br accepted, not offered: as it is.
    let (parts, body) = conn
        .get(gw.addr, "/json", &[("accept-encoding", "br")])
        .await;
    assert_passed_through(&parts, &body, &json, "br not offered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_that_must_not_be_compressed_pass_through() {
    let replica = start_replica().await;
    let gw = start_gateway(replica.addr, Compress::default()).await;
    let json = json_body();
    let all = [("accept-encoding", "gzip, br, zstd")];
    for proto in [Proto::H1, Proto::H2] {
        let mut conn = Conn::open(gw.addr, proto).await;
        // Below min_response_body_bytes (1024).
        let (parts, body) = conn.get(gw.addr, "/small", &all).await;
        assert_passed_through(&parts, &body, &[b'a'; 100], "small");
        // An excluded media type (image/png is in the defaults).
        let (parts, body) = conn.get(gw.addr, "/image", &all).await;
        assert_passed_through(&parts, &body, &[b'p'; 10 * 1024], "image/png");
        // Already encoded: the replica's gzip, untouched.
        let (parts, body) = conn.get(gw.addr, "/encoded", &all).await;
        assert_eq!(header(&parts.headers, "content-encoding"), Some("gzip"));
        assert_eq!(decode("gzip", &body), json);
        assert_eq!(
            header(&parts.headers, "content-length"),
            Some(body.len().to_string().as_str())
        );
        // Cache-Control: no-transform.
        let (parts, body) = conn.get(gw.addr, "/no-transform", &all).await;
        assert_passed_through(&parts, &body, &json, "no-transform");
        // A Range request (the replica ignores the range: a 200 with the whole body).
        let ranged = [all[0], ("range", "bytes=0-99")];
        let (parts, body) = conn.get(gw.addr, "/json", &ranged).await;
        assert_passed_through(&parts, &body, &json, "Range");
        // 204.
        let (parts, body) = conn.get(gw.addr, "/no-content", &all).await;
        assert_eq!(parts.status, StatusCode::NO_CONTENT);
        assert_eq!(header(&parts.headers, "content-encoding"), None);
        assert!(body.is_empty());
        // HEAD: the head as the replica sent it, its length included.
        let resp = conn.send(gw.addr, Method::HEAD, "/json", &all).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(resp.headers(), "content-encoding"), None);
        assert_eq!(
            header(resp.headers(), "content-length"),
            Some(json.len().to_string().as_str())
        );
        assert_eq!(header(resp.headers(), "etag"), Some("\"v1\""));
        let _ = resp.into_body().collect().await;
        // A route without compress.
        let (parts, body) = conn.get(gw.addr, "/plain/json", &all).await;
        assert_passed_through(&parts, &body, &json, "route without compress");
        assert_eq!(header(&parts.headers, "vary"), Some("Origin"));
        assert_eq!(header(&parts.headers, "etag"), Some("\"v1\""));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_reaches_the_client_before_it_ends() {
    let replica = start_replica().await;
    let gw = start_gateway(replica.addr, Compress::default()).await;
    let mut whole = FIRST_EVENT.to_vec();
    for e in rest_events() {
        whole.extend_from_slice(&e);
    }
    for proto in [Proto::H1, Proto::H2] {
        for encoding in ALL {
            let token = encoding.token();
            let what = format!("{proto:?} {token}");
            let mut conn = Conn::open(gw.addr, proto).await;
            let resp = conn
                .send(
                    gw.addr,
                    Method::GET,
                    "/stream",
                    &[("accept-encoding", token)],
                )
                .await;
            assert_eq!(
                header(resp.headers(), "content-encoding"),
                Some(token),
                "{what}"
            );
            let mut body = resp.into_body();
            let mut got = Vec::new();
            // The first event, decoded, while the replica holds the rest back.
            let first = async {
                loop {
                    let frame = body
                        .frame()
                        .await
                        .expect("the body goes on")
                        .expect("a frame");
                    if let Some(data) = frame.data_ref() {
                        got.extend_from_slice(data);
                    }
                    if decode_partial(token, &got) == FIRST_EVENT {
                        break;
                    }
                }
            };
            timeout(DEADLINE, first).await.unwrap_or_else(|_| {
                panic!("{what}: the first event did not reach the client while the replica waited")
            });
            replica.release.add_permits(1);
            let rest = async {
                while let Some(frame) = body.frame().await {
                    if let Some(data) = frame.expect("a frame").data_ref() {
                        got.extend_from_slice(data);
                    }
                }
            };
            timeout(DEADLINE, rest)
                .await
                .expect("the rest of the stream");
            assert_eq!(decode(token, &got), whole, "{what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_size_and_excluded_types_are_the_configured_ones() {
    let replica = start_replica().await;
    let gz = [("accept-encoding", "gzip")];
    let small = [b'a'; 100];
    // `/small` is 100 bytes: compressed from a minimum of 100, not from 101.
    for (min, compressed) in [(100, true), (101, false)] {
        let gw = start_gateway(
            replica.addr,
            Compress {
                min_response_body_bytes: min,
                ..Compress::default()
            },
        )
        .await;
        let mut conn = Conn::open(gw.addr, Proto::H1).await;
        let (parts, body) = conn.get(gw.addr, "/small", &gz).await;
        if compressed {
            assert_eq!(header(&parts.headers, "content-encoding"), Some("gzip"));
            assert_eq!(decode("gzip", &body), small);
        } else {
            assert_passed_through(&parts, &body, &small, "below the minimum");
        }
    }
    // A list of our own: `text/*` excludes text/plain; image/png is no longer excluded.
    let gw = start_gateway(
        replica.addr,
        Compress {
            min_response_body_bytes: 0,
            excluded_content_types: vec!["text/*".into()],
            ..Compress::default()
        },
    )
    .await;
    let mut conn = Conn::open(gw.addr, Proto::H1).await;
    let (parts, body) = conn.get(gw.addr, "/small", &gz).await;
    assert_passed_through(&parts, &body, &small, "text/* excluded");
    let (parts, body) = conn.get(gw.addr, "/image", &gz).await;
    assert_eq!(header(&parts.headers, "content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &body), vec![b'p'; 10 * 1024]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_file_middleware_compresses_on_the_routes_that_name_it() {
    let replica = start_replica().await;
    let json = json_body();
    let yaml = format!(
        "gateway:\n  listen: 127.0.0.1:0\n\
         services:\n  web:\n    servers: [http://{}]\n\
         middlewares:\n\
         \x20 gz: {{ compress: {{ encodings: [gzip, br], min_response_body_bytes: 2KiB }} }}\n\
         \x20 all: {{ compress: true }}\n\
         \x20 edge: {{ chain: [all] }}\n\
         routes:\n\
         \x20 - match: PathPrefix(`/gz`)\n    service: web\n    strip_prefix: /gz\n    middlewares: [gz]\n\
         \x20 - match: PathPrefix(`/all`)\n    service: web\n    strip_prefix: /all\n    middlewares: [edge]\n\
         \x20 - match: PathPrefix(`/`)\n    service: web\n",
        replica.addr
    );
    let stack = shoal_config::parse(&yaml, "shoal.yaml").unwrap_or_else(|e| panic!("{e}"));
    let gw = serve(stack);
    let every = [("accept-encoding", "zstd, br, gzip")];
    for proto in [Proto::H1, Proto::H2] {
        let mut conn = Conn::open(gw.addr, proto).await;
        // Offered gzip then br: the client's tie goes to gzip.
        let (parts, body) = conn.get(gw.addr, "/gz/json", &every).await;
        assert_eq!(header(&parts.headers, "content-encoding"), Some("gzip"));
        assert_eq!(decode("gzip", &body), json);
        // 100 bytes < 2 KiB.
        let (parts, body) = conn.get(gw.addr, "/gz/small", &every).await;
        assert_passed_through(&parts, &body, &[b'a'; 100], "below 2KiB");
        // `compress: true` through a chain: the defaults (zstd first).
        let (parts, body) = conn.get(gw.addr, "/all/json", &every).await;
        assert_eq!(header(&parts.headers, "content-encoding"), Some("zstd"));
        assert_eq!(decode("zstd", &body), json);
        let (parts, body) = conn.get(gw.addr, "/all/image", &every).await;
        assert_passed_through(&parts, &body, &[b'p'; 10 * 1024], "image/png by default");
        // A route without it.
        let (parts, body) = conn.get(gw.addr, "/json", &every).await;
        assert_passed_through(&parts, &body, &json, "no compress on the route");
    }
}
