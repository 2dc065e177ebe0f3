//! gRPC calls and the gateway's own answers (docs/grpc.md): what shoal answers a gRPC call
//! itself is a trailers-only gRPC status, never an HTTP error; `grpc-timeout` is honoured
//! (bounded by `gateway.timeouts.grpc_max`) and the time left sent on; timeouts can differ
//! per service and per route, for gRPC and for relayed HTTP/1.1 alike.
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Body as _;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use shoal_test_support::{
    Backends, Client, ReqBody, Service, StackBuilder, TestGateway, body, dead_url, eventually,
};
use tokio::time::Instant;

/// What the gRPC-like replica saw of each call: its `grpc-timeout`, if any.
type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// An HTTP/2-only (prior knowledge) server answering like a gRPC server. `x-delay-ms: N`
/// makes it wait N ms before answering; `x-answer: trailers-only` makes it answer NOT_FOUND
/// in one HEADERS frame; otherwise it answers `ok` then trailers with `grpc-status: 0`. It
/// records the `grpc-timeout` each call came with.
async fn grpc_replica() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let record = Arc::clone(&record);
                    async move {
                        let h = req.headers();
                        let timeout = h
                            .get("grpc-timeout")
                            .map(|v| v.to_str().unwrap().to_owned());
                        record.lock().unwrap().push(timeout);
                        let delay = h
                            .get("x-delay-ms")
                            .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
                        let trailers_only = h.get("x-answer").is_some_and(|v| v == "trailers-only");
                        let _ = req.into_body().collect().await;
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        let resp = Response::builder().header("content-type", "application/grpc");
                        if trailers_only {
                            // An empty body: the HEADERS frame ends the stream.
                            let resp = resp
                                .header("grpc-status", "5")
                                .header("grpc-message", "no such greeting");
                            return Ok::<_, Infallible>(resp.body(Empty::new().boxed()).unwrap());
                        }
                        let mut trailers = HeaderMap::new();
                        trailers.insert("grpc-status", HeaderValue::from_static("0"));
                        let frames = vec![
                            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"ok"))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        Ok(resp
                            .body(StreamBody::new(futures_util::stream::iter(frames)).boxed())
                            .unwrap())
                    }
                });
                // No `Date`, as gRPC servers send none.
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .auto_date_header(false)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

/// A gRPC call (HTTP/2, `content-type: application/grpc`) to `path` with extra headers.
fn call(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Request<ReqBody> {
    let mut req = Request::post(gw.url(path))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body::full(&b"\0\0\0\0\0"[..])).unwrap()
}

/// How a call ended, read the way a gRPC client reads it.
#[derive(Debug)]
struct Outcome {
    http: StatusCode,
    /// The response headers (in a trailers-only answer: the trailers).
    headers: HeaderMap,
    /// Whether the headers ended the stream (a trailers-only answer).
    trailers_only: bool,
    /// `grpc-status`, from the trailers-only headers or the trailers.
    status: Option<String>,
    message: Option<String>,
    took: Duration,
}

async fn grpc(req: Request<ReqBody>) -> Outcome {
    let started = Instant::now();
    let resp = Client::h2c().send(req).await.expect("an HTTP/2 answer");
    let took = started.elapsed();
    let (parts, body) = resp.into_parts();
    let trailers_only = body.is_end_stream();
    let collected = body.collect().await.expect("the body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let field = |name: &str| {
        trailers
            .get(name)
            .or_else(|| parts.headers.get(name))
            .map(|v| v.to_str().unwrap().to_owned())
    };
    Outcome {
        http: parts.status,
        status: field("grpc-status"),
        message: field("grpc-message"),
        headers: parts.headers,
        trailers_only,
        took,
    }
}

/// The call ended with a trailers-only answer from the gateway: HTTP 200, gRPC `code`,
/// `x-shoal-error: reason`, and none of the gateway's other headers.
fn assert_gateway_status(o: &Outcome, code: &str, reason: &str) {
    assert_eq!(o.http, StatusCode::OK, "{o:?}");
    assert!(o.trailers_only, "one HEADERS frame ends the stream: {o:?}");
    assert_eq!(o.status.as_deref(), Some(code), "{o:?}");
    assert_eq!(o.headers["content-type"], "application/grpc", "{o:?}");
    assert_eq!(o.headers["x-shoal-error"], reason, "{o:?}");
    for leak in ["x-shoal-replica", "date", "content-length"] {
        assert!(!o.headers.contains_key(leak), "{leak} in trailers: {o:?}");
    }
}

/// The call took from `took.start` up to (not including) `took.end`.
fn assert_took(o: &Outcome, took: std::ops::Range<Duration>) {
    assert!(took.contains(&o.took), "took {:?}, not {took:?}", o.took);
}

/// The grpc-timeout a replica saw, in milliseconds.
fn millis(seen: &str) -> f64 {
    let (value, unit) = seen.split_at(seen.len() - 1);
    let n: f64 = value.parse().unwrap();
    n * match unit {
        "H" => 3_600_000.0,
        "M" => 60_000.0,
        "S" => 1000.0,
        "m" => 1.0,
        "u" => 0.001,
        "n" => 0.000_001,
        other => panic!("unit {other}"),
    }
}

#[tokio::test]
async fn no_route_is_unimplemented_and_plain_http_keeps_its_404() {
    let (replica, _) = grpc_replica().await;
    let gw = TestGateway::builder()
        .service_with(
            "greeter",
            Service::servers(replica.as_str()).with("protocol: h2c"),
        )
        .route("PathPrefix(`/helloworld.Greeter/`)", "greeter")
        .start()
        .await;

    let o = grpc(call(&gw, "/other.Service/Method", &[])).await;
    assert_gateway_status(&o, "12", "no-route");
    assert_eq!(o.message.as_deref(), Some("no route matches this request"));

    // Not gRPC: HTTP/2 without the content type, and the content type over HTTP/1.1.
    let plain = Client::h2c()
        .request(Request::post(gw.url("/other")).body(body::empty()).unwrap())
        .await;
    assert_eq!(plain.status, StatusCode::NOT_FOUND);
    assert_eq!(plain.header("x-shoal-error"), Some("no-route"));
    assert!(plain.header("date").is_some(), "HTTP/2 answers keep a Date");
    let h1 = Client::http1()
        .request(
            Request::post(gw.url("/other"))
                .header("content-type", "application/grpc")
                .body(body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(h1.status, StatusCode::NOT_FOUND);
    assert!(h1.header("grpc-status").is_none());
}

#[tokio::test]
async fn dead_and_missing_replicas_are_unavailable() {
    let gw = TestGateway::builder()
        .service_with(
            "dead",
            Service::servers(dead_url().as_str()).with("protocol: h2c"),
        )
        .service_with("none", Service::without_replicas().with("protocol: h2c"))
        .route("PathPrefix(`/dead.`)", "dead")
        .route("PathPrefix(`/none.`)", "none")
        .start()
        .await;

    let o = grpc(call(&gw, "/dead.Svc/M", &[])).await;
    assert_gateway_status(&o, "14", "connect-failed");
    assert_eq!(
        o.message.as_deref(),
        Some("could not connect to a replica of service `dead`")
    );

    let o = grpc(call(&gw, "/none.Svc/M", &[])).await;
    assert_gateway_status(&o, "14", "no-ready-replica");
    // Retry-After, as gRPC's retry pushback.
    assert_eq!(o.headers["grpc-retry-pushback-ms"], "1000");

    // The same failures for a plain HTTP/2 request stay HTTP errors.
    let plain = |path: &str| Request::get(gw.url(path)).body(body::empty()).unwrap();
    assert_eq!(
        Client::h2c().request(plain("/dead.x")).await.status,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        Client::h2c().request(plain("/none.x")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn a_replica_slower_than_its_route_timeout_is_deadline_exceeded() {
    let (replica, _) = grpc_replica().await;
    let gw = TestGateway::builder()
        .service_with(
            "greeter",
            Service::servers(replica.as_str())
                .with("protocol: h2c")
                .with("timeouts: { response_header: 10s }"),
        )
        // The route's 300 ms win over the service's 10 s and the gateway's 30 s.
        .top(
            "routes:
  - match: PathPrefix(`/helloworld.Greeter/`)
    service: greeter
    timeouts: { response_header: 300ms }",
        )
        .start()
        .await;

    let o = grpc(call(
        &gw,
        "/helloworld.Greeter/Slow",
        &[("x-delay-ms", "5000")],
    ))
    .await;
    assert_gateway_status(&o, "4", "upstream-timeout");
    assert_took(&o, Duration::from_millis(300)..Duration::from_secs(3));

    // Fast enough: the replica's own answer, with its trailers.
    let o = grpc(call(
        &gw,
        "/helloworld.Greeter/Fast",
        &[("x-delay-ms", "10")],
    ))
    .await;
    assert_eq!((o.http, o.status.as_deref()), (StatusCode::OK, Some("0")));
    assert!(!o.trailers_only);
}

#[tokio::test]
async fn a_short_grpc_timeout_ends_the_call_early_without_blaming_the_replica() {
    let (r1, seen1) = grpc_replica().await;
    let (r2, seen2) = grpc_replica().await;
    let (c1, _) = grpc_replica().await;
    let (c2, _) = grpc_replica().await;
    let passive = "passive: { consecutive_failures: 2 }";
    let gw = TestGateway::builder()
        .service_with(
            "greeter",
            Service::servers(&[r1, r2][..])
                .with("protocol: h2c")
                .with(passive),
        )
        // The control: the same, where the gateway's own timeout runs out.
        .service_with(
            "control",
            Service::servers(&[c1, c2][..])
                .with("protocol: h2c")
                .with(passive)
                .with("timeouts: { response_header: 300ms }"),
        )
        .route("PathPrefix(`/control.`)", "control")
        .route("PathPrefix(`/`)", "greeter")
        .start()
        .await;
    let ejections = |service: &str| {
        let (traffic, _) = gw.shoal().gateway().traffic(service).unwrap();
        traffic.ejections_total
    };

    // Twice as many short deadlines per replica as it takes to eject one that times out.
    for _ in 0..4 {
        let o = grpc(call(
            &gw,
            "/helloworld.Greeter/Slow",
            &[("x-delay-ms", "3000"), ("grpc-timeout", "300m")],
        ))
        .await;
        assert_gateway_status(&o, "4", "deadline-exceeded");
        assert_took(&o, Duration::from_millis(290)..Duration::from_millis(1500));
    }
    // Each replica was told the time left: at most the 300 ms, most of it.
    let told: Vec<Option<String>> = [&seen1, &seen2]
        .iter()
        .flat_map(|s| s.lock().unwrap().clone())
        .collect();
    assert_eq!(told.len(), 4, "{told:?}");
    for t in &told {
        let ms = millis(t.as_deref().expect("grpc-timeout sent on"));
        assert!(ms <= 300.0 && ms > 200.0, "{told:?}");
    }
    // The client's deadline was not the replicas' failure.
    assert_eq!(ejections("greeter"), 0);
    let o = grpc(call(&gw, "/helloworld.Greeter/Fast", &[])).await;
    assert_eq!(
        (o.http, o.status.as_deref()),
        (StatusCode::OK, Some("0")),
        "{o:?}"
    );
    // A call without a deadline sends none on.
    let last = |s: &Seen| s.lock().unwrap().last().cloned();
    assert!(
        [last(&seen1), last(&seen2)].contains(&Some(None)),
        "{seen1:?} {seen2:?}"
    );

    // The control: timeouts of the gateway's own bound are the replica's failures.
    for _ in 0..4 {
        let o = grpc(call(&gw, "/control.Svc/Slow", &[("x-delay-ms", "3000")])).await;
        assert_gateway_status(&o, "4", "upstream-timeout");
    }
    assert_eq!(ejections("control"), 1);
}

#[tokio::test]
async fn a_grpc_timeout_longer_than_response_header_is_honoured_up_to_grpc_max() {
    let (replica, seen) = grpc_replica().await;
    let gw = TestGateway::builder()
        .gateway("timeouts: { response_header: 300ms, grpc_max: 2s }")
        .service_with(
            "greeter",
            Service::servers(replica.as_str()).with("protocol: h2c"),
        )
        .route("PathPrefix(`/`)", "greeter")
        .start()
        .await;
    let slow = [("x-delay-ms", "700")];

    // Without a deadline: the gateway's 300 ms.
    let o = grpc(call(&gw, "/helloworld.Greeter/Slow", &slow)).await;
    assert_gateway_status(&o, "4", "upstream-timeout");

    // A 5 s deadline lengthens the wait to grpc_max (2 s): the 700 ms answer arrives.
    let o = grpc(call(
        &gw,
        "/helloworld.Greeter/Slow",
        &[slow[0], ("grpc-timeout", "5S")],
    ))
    .await;
    assert_eq!(
        (o.http, o.status.as_deref()),
        (StatusCode::OK, Some("0")),
        "{o:?}"
    );
    let told = seen.lock().unwrap().last().cloned().flatten().unwrap();
    let ms = millis(&told);
    assert!(ms <= 2000.0 && ms > 1500.0, "bounded by grpc_max: {told}");

    // Past grpc_max the gateway stops at grpc_max: not the replica's failure to answer in
    // the client's time, but the gateway's bound (upstream-timeout).
    let o = grpc(call(
        &gw,
        "/helloworld.Greeter/Slow",
        &[("x-delay-ms", "4000"), ("grpc-timeout", "10S")],
    ))
    .await;
    assert_gateway_status(&o, "4", "upstream-timeout");
    assert_took(&o, Duration::from_millis(1900)..Duration::from_millis(3500));

    // A malformed grpc-timeout is ignored (the gateway's 300 ms) and not sent on.
    let o = grpc(call(
        &gw,
        "/helloworld.Greeter/Fast",
        &[("grpc-timeout", "1.5S")],
    ))
    .await;
    assert_eq!(o.status.as_deref(), Some("0"), "{o:?}");
    assert_eq!(seen.lock().unwrap().last(), Some(&None));

    // A deadline already passed is answered at once, without a replica.
    let calls = seen.lock().unwrap().len();
    let o = grpc(call(
        &gw,
        "/helloworld.Greeter/Fast",
        &[("grpc-timeout", "0n")],
    ))
    .await;
    assert_gateway_status(&o, "4", "deadline-exceeded");
    assert_eq!(seen.lock().unwrap().len(), calls, "no replica saw it");
}

#[tokio::test]
async fn middleware_refusals_are_grpc_statuses() {
    let (replica, _) = grpc_replica().await;
    let gw = TestGateway::builder()
        .service_with("greeter", Service::servers(replica.as_str()).with("protocol: h2c"))
        .middleware("one-a-minute", "rate_limit: { average: 1, period: 1m, burst: 1 }")
        .middleware(
            "private",
            "basic_auth: { users: ['u:$2y$05$mr2mGoTnzaJ3EqH8xIg0A.XaRjpahsJ7pdeRVDM.KYeYfJ8E2NB0e'] }",
        )
        .route_with(
            shoal_test_support::Route::new("PathPrefix(`/limited.`)", "greeter")
                .middleware("one-a-minute"),
        )
        .route_with(
            shoal_test_support::Route::new("PathPrefix(`/private.`)", "greeter")
                .middleware("private"),
        )
        .start()
        .await;

    let o = grpc(call(&gw, "/limited.Svc/M", &[])).await;
    assert_eq!(
        o.status.as_deref(),
        Some("0"),
        "the first call passes: {o:?}"
    );
    let o = grpc(call(&gw, "/limited.Svc/M", &[])).await;
    assert_gateway_status(&o, "8", "rate-limited");
    assert_eq!(o.message.as_deref(), Some("rate limit exceeded"));
    let pushback: u64 = o.headers["grpc-retry-pushback-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1000..=60_000).contains(&pushback), "{pushback}");
    assert!(!o.headers.contains_key("ratelimit-limit"));
    assert!(!o.headers.contains_key("retry-after"));

    let o = grpc(call(&gw, "/private.Svc/M", &[])).await;
    assert_gateway_status(&o, "16", "unauthorized");
    assert!(!o.headers.contains_key("www-authenticate"));

    // A plain HTTP/2 request over the limit keeps its 429.
    let plain = Client::h2c()
        .request(
            Request::get(gw.url("/limited.x"))
                .body(body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(plain.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_replicas_trailers_only_answer_gets_no_gateway_headers() {
    let (replica, _) = grpc_replica().await;
    let gw = TestGateway::builder()
        .service_with(
            "greeter",
            Service::servers(replica.as_str()).with("protocol: h2c"),
        )
        .route("PathPrefix(`/`)", "greeter")
        .start()
        .await;

    let o = grpc(call(
        &gw,
        "/helloworld.Greeter/Missing",
        &[("x-answer", "trailers-only")],
    ))
    .await;
    assert_eq!(o.http, StatusCode::OK);
    assert!(o.trailers_only, "{o:?}");
    assert_eq!(o.status.as_deref(), Some("5"));
    assert_eq!(o.message.as_deref(), Some("no such greeting"));
    assert!(!o.headers.contains_key("x-shoal-replica"), "{o:?}");
    assert!(!o.headers.contains_key("date"), "{o:?}");

    // A full answer: the gateway's headers are initial metadata, not trailers.
    let o = grpc(call(&gw, "/helloworld.Greeter/Hello", &[])).await;
    assert!(!o.trailers_only);
    assert_eq!(o.status.as_deref(), Some("0"));
    assert!(o.headers.contains_key("x-shoal-replica"), "{o:?}");
}

#[tokio::test]
async fn relayed_http1_requests_get_their_route_and_service_timeouts_and_reload_changes_them() {
    let backends = Backends::start(1).await;
    let stack = |route_timeout: &str| {
        StackBuilder::new()
            .service_with(
                "web",
                Service::servers(&backends).with("timeouts: { response_header: 300ms }"),
            )
            .top(&format!(
                "routes:
  - match: PathPrefix(`/reports`)
    service: web
    strip_prefix: /reports
    timeouts: {{ response_header: {route_timeout} }}
  - match: PathPrefix(`/`)
    service: web"
            ))
    };
    let gw = stack("3s").start().await;

    // The service's 300 ms (over the gateway's 30 s); the relay carries these requests.
    let started = Instant::now();
    let a = gw.get("/sleep?ms=5000").await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(a.header("x-shoal-error"), Some("upstream-timeout"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // The route's 3 s over the service's 300 ms.
    let a = gw.get("/reports/sleep?ms=700").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());

    // A reload that shortens the route's timeout applies to the next request.
    gw.reload(&stack("200ms")).expect("reload");
    eventually(Duration::from_secs(5), || async {
        let a = gw.get("/reports/sleep?ms=700").await;
        if a.status == StatusCode::GATEWAY_TIMEOUT {
            Ok(())
        } else {
            Err(a.status)
        }
    })
    .await;
}
