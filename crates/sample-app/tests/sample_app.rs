//! End-to-end tests: each starts a real sample-app on `127.0.0.1:0` and talks to it over
//! TCP (hyper's client, raw hyper connections, or a tokio-tungstenite client).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shoal_sample_app::{Options, SampleApp};
use shoal_test_support::eventually;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

// ---- helpers ----

type ReqBody = UnsyncBoxBody<Bytes, Infallible>;
type HttpClient = Client<HttpConnector, ReqBody>;

/// Long enough for anything that should happen "soon" on a loaded CI machine.
const DEADLINE: Duration = Duration::from_secs(10);

fn options() -> Options {
    Options {
        name: "users".to_owned(),
        replica: Some(2),
        ..Options::default()
    }
}

async fn start() -> SampleApp {
    SampleApp::start(options())
        .await
        .expect("sample-app starts")
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn h2c_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

fn empty() -> ReqBody {
    Empty::new().boxed_unsync()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

async fn send(client: &HttpClient, req: Request<ReqBody>) -> Answer {
    let response = client.request(req).await.expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).expect("UTF-8 body"),
    }
}

/// Wait until `app` has `n` requests in flight; panic with the last count after
/// [`DEADLINE`].
async fn in_flight(app: &SampleApp, n: usize) {
    eventually(DEADLINE, || async {
        match app.in_flight() {
            count if count == n => Ok(()),
            count => Err(format!("{count} requests in flight, not {n}")),
        }
    })
    .await;
}

async fn get(app: &SampleApp, path: &str) -> Answer {
    let uri = format!("http://{}{path}", app.local_addr());
    send(&client(), Request::get(uri).body(empty()).unwrap()).await
}

fn pattern(offset: usize) -> u8 {
    (offset % 251) as u8
}

// ---- endpoints ----

#[tokio::test]
async fn health_answers_ok_with_identity_headers() {
    let app = start().await;
    let answer = get(&app, "/health").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "ok");
    assert_eq!(answer.headers["x-sample-name"], "users");
    assert_eq!(answer.headers["x-sample-replica"], "2");
    app.shutdown().await;
}

#[tokio::test]
async fn replica_header_is_absent_without_a_replica() {
    let app = SampleApp::start(Options {
        name: "r1".to_owned(),
        ..Options::default()
    })
    .await
    .unwrap();
    let answer = get(&app, "/status/404").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.headers["x-sample-name"], "r1");
    assert!(!answer.headers.contains_key("x-sample-replica"));
    app.shutdown().await;
}

#[tokio::test]
async fn default_page_says_hello() {
    let app = start().await;
    for path in ["/", "/api/users/42", "/healthz"] {
        let answer = get(&app, path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(answer.body, "hello from users\n", "{path}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn whoami_reports_identity_and_the_request() {
    let app = start().await;
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}/whoami?x=1", app.local_addr()))
        .header("x-forwarded-for", "10.1.2.3")
        .header("accept", "a/b")
        .header("accept", "c/d")
        .body(empty())
        .unwrap();
    let answer = send(&client(), req).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "application/json");
    let json = answer.json();
    assert_eq!(json["name"], "users");
    assert_eq!(json["replica"], 2);
    assert_eq!(json["pid"], std::process::id());
    assert_eq!(json["port"], app.local_addr().port());
    assert_eq!(json["method"], "POST");
    assert_eq!(json["path"], "/whoami");
    assert_eq!(json["query"], "x=1");
    assert_eq!(json["version"], "HTTP/1.1");
    assert!(
        json["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{json}"
    );
    assert_eq!(json["headers"]["x-forwarded-for"], "10.1.2.3");
    assert_eq!(json["headers"]["accept"], "a/b, c/d");
    assert_eq!(
        json["headers"]["host"],
        app.local_addr().to_string().as_str()
    );
    app.shutdown().await;
}

#[tokio::test]
async fn serves_h2c_with_prior_knowledge() {
    let app = start().await;
    let uri = format!("http://{}/whoami", app.local_addr());
    let answer = send(&h2c_client(), Request::get(uri).body(empty()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["version"], "HTTP/2.0");
    assert_eq!(answer.headers["x-sample-name"], "users");
    app.shutdown().await;
}

#[tokio::test]
async fn keeps_http1_connections_alive() {
    let app = start().await;
    let stream = TcpStream::connect(app.local_addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    for _ in 0..3 {
        sender.ready().await.unwrap();
        let response = sender
            .send_request(Request::get("/health").body(Empty::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body().collect().await.unwrap();
    }
    drop(sender);
    connection.await.unwrap().unwrap();
    app.shutdown().await;
}

#[tokio::test]
async fn status_answers_with_the_code_asked_for() {
    let app = start().await;
    for code in [200_u16, 201, 204, 302, 404, 418, 500, 503, 599] {
        let answer = get(&app, &format!("/status/{code}")).await;
        assert_eq!(answer.status.as_u16(), code);
        if code != 204 {
            assert_eq!(answer.body, format!("status {code}"));
        }
    }
    app.shutdown().await;
}

#[tokio::test]
async fn status_rejects_codes_it_cannot_send() {
    let app = start().await;
    for (code, message) in [
        ("100", "informational"),
        ("199", "informational"),
        ("99", "not a number in 200..=599"),
        ("600", "not a number in 200..=599"),
        ("abc", "not a number in 200..=599"),
        ("", "not a number in 200..=599"),
    ] {
        let answer = get(&app, &format!("/status/{code}")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{code}");
        assert!(answer.body.contains(message), "{code}: {}", answer.body);
    }
    app.shutdown().await;
}

#[tokio::test]
async fn sleep_waits_then_answers() {
    let app = start().await;
    let started = Instant::now();
    let answer = get(&app, "/sleep?ms=50").await;
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["slept_ms"], 50);
    app.shutdown().await;
}

#[tokio::test]
async fn work_burns_cpu_for_the_time_asked() {
    let app = start().await;
    let started = Instant::now();
    let answer = get(&app, "/work?cpu_ms=40").await;
    assert!(started.elapsed() >= Duration::from_millis(40));
    assert_eq!(answer.status, StatusCode::OK);
    let json = answer.json();
    assert_eq!(json["cpu_ms"], 40);
    assert!(json["burnt_ms"].as_u64().unwrap() >= 40, "{json}");
    app.shutdown().await;
}

#[tokio::test]
async fn fail_follows_its_rate() {
    let app = start().await;
    for _ in 0..10 {
        assert_eq!(get(&app, "/fail?rate=0").await.status, StatusCode::OK);
        let answer = get(&app, "/fail?rate=1.0").await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer.headers["x-sample-name"], "users");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn bad_query_values_are_400_naming_the_parameter() {
    let app = start().await;
    for (path, message) in [
        ("/sleep", "missing query parameter ms"),
        (
            "/sleep?ms=soon",
            "query parameter ms=\"soon\" is not a valid number",
        ),
        ("/sleep?ms=-5", "query parameter ms=\"-5\""),
        ("/sleep?ms=600001", "ms=600001 is above the maximum 600000"),
        ("/work", "missing query parameter cpu_ms"),
        ("/work?cpu_ms=1.5", "query parameter cpu_ms=\"1.5\""),
        (
            "/work?cpu_ms=10001",
            "cpu_ms=10001 is above the maximum 10000",
        ),
        ("/fail", "missing query parameter rate"),
        ("/fail?rate=often", "query parameter rate=\"often\""),
        ("/fail?rate=1.5", "rate=1.5 must be between 0 and 1"),
        ("/fail?rate=NaN", "rate=NaN must be between 0 and 1"),
    ] {
        let answer = get(&app, path).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(answer.body.contains(message), "{path}: {}", answer.body);
        assert_eq!(answer.headers["x-sample-name"], "users", "{path}");
    }
    app.shutdown().await;
}

// ---- echo ----

async fn echo_32_mib(client: HttpClient, app: &SampleApp) {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 512; // 32 MiB
    let chunks = futures_util::stream::iter(0..CHUNKS).map(|i| {
        let bytes: Vec<u8> = (i * CHUNK..(i + 1) * CHUNK).map(pattern).collect();
        Ok::<_, Infallible>(Frame::data(Bytes::from(bytes)))
    });
    let req = Request::post(format!("http://{}/echo", app.local_addr()))
        .header("content-type", "application/octet-stream")
        .body(StreamBody::new(chunks).boxed_unsync())
        .unwrap();
    let response = client.request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    let mut body = response.into_body();
    let mut offset = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.unwrap().into_data() else {
            continue;
        };
        for (i, byte) in data.iter().enumerate() {
            assert_eq!(*byte, pattern(offset + i), "byte {}", offset + i);
        }
        offset += data.len();
    }
    assert_eq!(offset, CHUNK * CHUNKS);
}

#[tokio::test]
async fn echo_streams_32_mib_back_over_http1() {
    let app = start().await;
    echo_32_mib(client(), &app).await;
    app.shutdown().await;
}

#[tokio::test]
async fn echo_streams_32_mib_back_over_h2c() {
    let app = start().await;
    echo_32_mib(h2c_client(), &app).await;
    app.shutdown().await;
}

#[tokio::test]
async fn echo_answers_each_chunk_before_the_request_body_ends() {
    let app = start().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    let req = Request::post(format!("http://{}/echo", app.local_addr()))
        .header("content-type", "text/plain")
        .body(StreamBody::new(chunks).boxed_unsync())
        .unwrap();
    let response = tokio::spawn(client().request(req));
    tx.send(Bytes::from_static(b"ping")).await.unwrap();
    let response = response.await.unwrap().unwrap();
    assert_eq!(response.headers()["content-type"], "text/plain");
    let mut body = response.into_body();

    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "ping");
    // The request is still open, so the echo counts as in flight.
    assert_eq!(app.in_flight(), 1);
    tx.send(Bytes::from_static(b"pong")).await.unwrap();
    let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(second, "pong");
    drop(tx);
    assert!(body.frame().await.is_none());
    in_flight(&app, 0).await;
    app.shutdown().await;
}

// ---- WebSocket ----

async fn ws_connect(
    app: &SampleApp,
) -> (
    tokio_tungstenite::WebSocketStream<TcpStream>,
    tokio_tungstenite::tungstenite::handshake::client::Response,
) {
    let stream = TcpStream::connect(app.local_addr()).await.unwrap();
    tokio_tungstenite::client_async(format!("ws://{}/ws", app.local_addr()), stream)
        .await
        .expect("WebSocket handshake")
}

#[tokio::test]
async fn ws_echoes_text_and_binary_and_answers_ping_and_close() {
    let app = start().await;
    let (mut ws, response) = ws_connect(&app).await;
    assert_eq!(response.headers()["x-sample-name"], "users");

    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    ws.send(Message::binary(vec![0_u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![0_u8, 1, 2, 255])
    );
    ws.send(Message::Ping(Bytes::from_static(b"p")))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Pong(Bytes::from_static(b"p"))
    );

    ws.close(None).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Close(_))) => {}
        other => panic!("expected the server's close, got {other:?}"),
    }
    assert!(ws.next().await.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn ws_without_an_upgrade_is_400() {
    let app = start().await;
    let answer = get(&app, "/ws").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.contains("WebSocket upgrade"), "{}", answer.body);
    app.shutdown().await;
}

// ---- start-up ----

#[tokio::test(start_paused = true)]
async fn startup_delay_comes_before_binding() {
    let delay = Duration::from_secs(30);
    let started = Instant::now();
    let app = SampleApp::start(Options {
        startup_delay: delay,
        ..options()
    })
    .await
    .unwrap();
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    app.shutdown().await;
}

#[tokio::test]
async fn startup_delay_then_serves() {
    let delay = Duration::from_millis(100);
    let started = Instant::now();
    let app = SampleApp::start(Options {
        startup_delay: delay,
        ..options()
    })
    .await
    .unwrap();
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    assert_eq!(get(&app, "/health").await.status, StatusCode::OK);
    app.shutdown().await;
}

#[tokio::test]
async fn start_rejects_a_name_that_cannot_be_a_header() {
    let err = SampleApp::start(Options {
        name: "bad\nname".to_owned(),
        ..Options::default()
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn start_fails_when_the_address_is_taken() {
    let app = start().await;
    let err = SampleApp::start(Options {
        listen: app.local_addr(),
        ..options()
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    app.shutdown().await;
}

// ---- shutdown ----

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let app = SampleApp::start(Options {
        shutdown_grace: Duration::from_secs(30),
        ..options()
    })
    .await
    .unwrap();
    let addr = app.local_addr();
    let request = tokio::spawn(async move {
        let uri = format!("http://{addr}/sleep?ms=300");
        send(&client(), Request::get(uri).body(empty()).unwrap()).await
    });
    in_flight(&app, 1).await;

    let started = Instant::now();
    app.shutdown().await;
    let took = started.elapsed();
    // It waited for the request, not for the whole grace period.
    assert!(took < Duration::from_secs(30), "{took:?}");
    let answer = tokio::time::timeout(DEADLINE, request)
        .await
        .expect("request done")
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["slept_ms"], 300);
    // Nothing listens any more.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_at_once() {
    let app = SampleApp::start(Options {
        shutdown_grace: Duration::from_secs(60),
        ..options()
    })
    .await
    .unwrap();
    let stream = TcpStream::connect(app.local_addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let response = sender
        .send_request(Request::get("/health").body(Empty::new()).unwrap())
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();

    tokio::time::timeout(DEADLINE, app.shutdown())
        .await
        .expect("shutdown does not wait for idle connections");
    tokio::time::timeout(DEADLINE, connection)
        .await
        .expect("the server closed the connection")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period() {
    let grace = Duration::from_millis(200);
    let app = SampleApp::start(Options {
        shutdown_grace: grace,
        ..options()
    })
    .await
    .unwrap();
    let addr = app.local_addr();
    let request = tokio::spawn(async move {
        let uri = format!("http://{addr}/sleep?ms=600000");
        client()
            .request(Request::get(uri).body(empty()).unwrap())
            .await
    });
    in_flight(&app, 1).await;

    let started = Instant::now();
    tokio::time::timeout(DEADLINE, app.shutdown())
        .await
        .expect("shutdown gives up after the grace period");
    assert!(started.elapsed() >= grace, "{:?}", started.elapsed());
    let result = tokio::time::timeout(DEADLINE, request)
        .await
        .expect("request ended")
        .unwrap();
    assert!(result.is_err(), "the aborted request cannot succeed");
}

#[tokio::test]
async fn shutdown_closes_websockets_with_going_away() {
    let app = start().await;
    let (mut ws, _) = ws_connect(&app).await;
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));

    let shutdown = tokio::spawn(app.shutdown());
    match ws.next().await {
        Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) => {
            assert_eq!(code, CloseCode::Away);
        }
        other => panic!("expected a 1001 close, got {other:?}"),
    }
    // Reading on sends our close reply; then the server goes.
    while let Some(message) = ws.next().await {
        message.unwrap();
    }
    tokio::time::timeout(DEADLINE, shutdown)
        .await
        .expect("shutdown ends once the session closed")
        .unwrap();
}

#[tokio::test]
async fn in_flight_counts_requests_until_answered() {
    let app = start().await;
    assert_eq!(app.in_flight(), 0);
    let addr = app.local_addr();
    let requests: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(async move {
                let uri = format!("http://{addr}/sleep?ms=200");
                send(&client(), Request::get(uri).body(empty()).unwrap()).await
            })
        })
        .collect();
    in_flight(&app, 3).await;
    for request in requests {
        assert_eq!(request.await.unwrap().status, StatusCode::OK);
    }
    in_flight(&app, 0).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_limited_capacity_queues_the_requests_beyond_it() {
    let app = SampleApp::start(Options {
        capacity: Some(2),
        ..options()
    })
    .await
    .unwrap();
    let started = Instant::now();
    let answers = futures_util::future::join_all((0..4).map(|_| get(&app, "/sleep?ms=200"))).await;
    for a in &answers {
        assert_eq!(a.status, StatusCode::OK);
    }
    // Two workers, four 200 ms requests: two rounds, not one.
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    // /health does not wait for a worker.
    assert_eq!(get(&app, "/health").await.status, StatusCode::OK);
    app.shutdown().await;
}

#[tokio::test]
async fn a_fault_status_answers_everything_but_health_and_fault() {
    let app = start().await;
    assert_eq!(get(&app, "/fault?status=503").await.status, StatusCode::OK);
    assert_eq!(
        get(&app, "/whoami").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(&app, "/health").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/fault?status=0").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/whoami").await.status, StatusCode::OK);
    assert_eq!(
        get(&app, "/fault?status=99").await.status,
        StatusCode::BAD_REQUEST
    );
    app.shutdown().await;
}
