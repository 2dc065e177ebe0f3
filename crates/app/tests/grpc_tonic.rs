//! gRPC through the gateway with a real gRPC stack on both sides (issue 24): tonic's client
//! and server machinery with prost messages ([`shoal_test_support::grpc`]), the replicas
//! behind the gateway as `protocol: h2c`, the gateway on `127.0.0.1:0`.
//!
//! The replicas are in-process servers, except for the failover stories, where they must be
//! processes a test can SIGKILL and SIGSTOP: there they are this test binary run again
//! (`grpc_replica` below runs [`grpc::run`]) as a supervised service of two replicas,
//! health-checked with `GET /health`. The load of a failover story is [`WORKERS`] tasks
//! calling `SayHello` in a loop over **one** tonic channel (one HTTP/2 connection to the
//! gateway), each call with a [`CALL_DEADLINE`] deadline; a call fails when it gets any
//! status but OK, a wrong reply, or no answer within its deadline. Each story asserts that
//! not one call failed, and prints its figures (`--nocapture`).
//!
//! The SIGKILL story's calls carry an `Idempotency-Key`, as the POSTs of the HTTP/1.1
//! kill test do (`crates/shoal/tests/cli/failover.rs`): a call the replica had already read
//! when it died cannot be sent again by any proxy unless the client says it may, so without
//! one a call caught in flight at the instant of the kill fails whatever the gateway does.
//! The calls the killed replica never received (new streams on its dead connection) must
//! be retried whatever the request says. The SIGSTOP and scale-down stories' calls carry
//! nothing: a hung replica's calls may be slow but must answer within their deadline, and
//! a replica stopped on purpose must finish its calls or refuse them (GOAWAY) cleanly.
//!
//! Deadlines that must be enforced by the gateway are sent with [`GreeterClient::plain`]
//! (hyper's HTTP/2 client: the deadline only travels as `grpc-timeout`), since a tonic
//! channel ends its own calls at their deadline (and calls that `CANCELLED`). The codes of
//! the gateway's own errors are gRPC's HTTP-to-gRPC mapping (`doc/http-grpc-status-mapping.md`
//! in grpc/grpc), which Envoy's local replies use too: 502/503 → UNAVAILABLE, 504 →
//! DEADLINE_EXCEEDED, 429 → RESOURCE_EXHAUSTED, 404 (no route) → UNIMPLEMENTED.
//!
//! | test                                                        | rule (issue 24)                                   |
//! |-------------------------------------------------------------|---------------------------------------------------|
//! | `unary_and_1000_message_streams_both_ways`                  | unary, server/client/bidi streaming pass through   |
//! | `error_statuses_and_binary_trailers_pass_through`           | status, message, `-bin` metadata, details, both as trailers-only and after messages |
//! | `a_deadline_longer_than_the_response_timeout_is_honoured`   | defect 2: `grpc-timeout` beyond `response_header` |
//! | `a_deadline_shorter_than_the_call_gets_deadline_exceeded`   | defect 2: the gateway ends the call at its deadline (status 4) and cancels it upstream |
//! | `no_replica_is_unavailable`                                 | defect 3: 503/502 → UNAVAILABLE (14), HTTP 200    |
//! | `no_route_is_unimplemented`                                 | defect 3: no route (404) → UNIMPLEMENTED (12), HTTP 200 |
//! | `a_response_timeout_is_deadline_exceeded`                   | defect 3: 504 → DEADLINE_EXCEEDED (4), HTTP 200   |
//! | `rate_limited_is_resource_exhausted`                        | defect 3: 429 → RESOURCE_EXHAUSTED (8), HTTP 200  |
//! | (each gateway error above)                                  | defect 3: `grpc-message` set; no `x-shoal-replica` or `date` in its metadata |
//! | `sigkill_of_a_replica_under_load_fails_no_call`             | defect 1: SIGKILL under 8 concurrent calls → 0 failed |
//! | `sigstop_of_a_replica_under_load_fails_no_call`             | defect 1: SIGSTOP (hung replica) → 0 failed, out of rotation within 3 s, then new calls go to the other at once |
//! | `scale_down_under_load_fails_no_call`                       | defect 1: 2 → 1 replicas under load → 0 failed    |
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use shoal_test_support::grpc::tonic::transport::Channel;
use shoal_test_support::grpc::tonic::{self, Code, Status};
use shoal_test_support::grpc::{
    self, DETAIL, DETAIL_BIN, DETAILS, GreeterClient, GrpcServer, HelloRequest, Number, hello,
};
use shoal_test_support::{
    Client, DEADLINE, Service, StackBuilder, TestGateway, body, dead_url, eventually,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Concurrent calls of a failover story's load.
const WORKERS: usize = 8;

/// Each failover call's deadline.
const CALL_DEADLINE: Duration = Duration::from_secs(5);

/// A failover story's load stops after this many calls or this long, whatever happens.
const MAX_CALLS: u64 = 20_000;
const LOAD_LIMIT: Duration = Duration::from_secs(20);

/// Messages in each stream of `unary_and_1000_message_streams_both_ways`.
const N: u32 = 1000;

/// The test the replica processes run: this binary again, serving the greeter.
const REPLICA_TEST: &str = "grpc_replica";

#[test]
#[ignore = "a gRPC replica, run by the failover tests of this file as this binary again: not a test"]
fn grpc_replica() {
    grpc::run();
}

/// A gateway in front of `server` (`protocol: h2c`), every path routed to it; `gateway` is
/// extra YAML under `gateway:`.
async fn gateway_for(server: &GrpcServer, gateway: &[&str]) -> TestGateway {
    let mut stack = StackBuilder::new();
    for yaml in gateway {
        stack = stack.gateway(yaml);
    }
    stack
        .service_with("greeter", Service::servers(server).with("protocol: h2c"))
        .route("PathPrefix(`/`)", "greeter")
        .start()
        .await
}

/// A tonic channel to the gateway.
async fn channel(gw: &TestGateway) -> GreeterClient<Channel> {
    GreeterClient::channel(&gw.url(""))
        .await
        .expect("a channel to the gateway")
}

fn with_deadline(msg: HelloRequest, deadline: Duration) -> tonic::Request<HelloRequest> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(deadline);
    req
}

/// A `grpc-timeout` value (gRPC over HTTP/2: `TimeoutValue TimeoutUnit`, at most 8 digits).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_and_1000_message_streams_both_ways() {
    let server = GrpcServer::start("g1").await;
    let gw = gateway_for(&server, &[]).await;
    let mut client = channel(&gw).await;

    // Unary.
    let reply = client
        .say_hello(tonic::Request::new(hello("world")))
        .await
        .expect("SayHello")
        .into_inner();
    assert_eq!(reply.message, "Hello, world!");
    assert_eq!(reply.replica, "g1");

    // Server streaming: N replies, in order.
    let mut req = hello("many");
    req.count = N;
    let mut replies = client
        .say_many(tonic::Request::new(req))
        .await
        .expect("SayMany")
        .into_inner();
    let mut got = Vec::new();
    while let Some(reply) = replies.message().await.expect("a reply or the end") {
        got.push(reply.message);
    }
    let expected: Vec<String> = (1..=N).map(|i| format!("Hello, many! #{i}")).collect();
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);

    // Client streaming: N numbers summed.
    let numbers = futures_util::stream::iter((1..=i64::from(N)).map(|value| Number { value }));
    let total = client.sum(numbers).await.expect("Sum").into_inner();
    assert_eq!(total.count, u64::from(N));
    assert_eq!(total.sum, i64::from(N) * i64::from(N + 1) / 2);
    assert_eq!(total.replica, "g1");

    // Bidirectional: each request sent only once the previous reply came back, so the
    // gateway must relay both directions as they happen (nothing buffered to the end).
    let (tx, rx) = mpsc::channel(1);
    tx.send(hello("ping 1")).await.unwrap();
    let mut echoes = client.echo(rx).await.expect("Echo").into_inner();
    for i in 1..=N {
        let echo = tokio::time::timeout(DEADLINE, echoes.message())
            .await
            .unwrap_or_else(|_| panic!("echo {i} did not come back"))
            .expect("an echo")
            .expect("not the end yet");
        assert_eq!(echo.message, format!("ping {i}"));
        if i < N {
            tx.send(hello(&format!("ping {}", i + 1))).await.unwrap();
        }
    }
    drop(tx);
    assert!(
        echoes.message().await.expect("a clean end").is_none(),
        "no echo beyond the {N} pings"
    );
    assert_eq!(server.stats().calls(), 4);
    assert_eq!(server.stats().cancelled(), 0);
}

/// `status` carries what the greeter's failures carry: code, message, binary metadata and
/// details.
fn assert_greeter_failure(status: &Status, code: Code, name: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), format!("failed as asked for {name}"));
    assert_eq!(status.details(), DETAILS, "grpc-status-details-bin");
    let bin = status
        .metadata()
        .get_bin(DETAIL_BIN)
        .unwrap_or_else(|| panic!("no {DETAIL_BIN} in {status:?}"));
    assert_eq!(bin.to_bytes().expect("base64").as_ref(), DETAIL);
    assert_eq!(
        status
            .metadata()
            .get("x-detail")
            .and_then(|v| v.to_str().ok()),
        Some("plain text")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses_and_binary_trailers_pass_through() {
    let server = GrpcServer::start("g1").await;
    let gw = gateway_for(&server, &[]).await;
    let mut client = channel(&gw).await;

    // Unary: tonic answers a failed call trailers-only (status in the response headers).
    let mut req = hello("unary");
    req.fail_code = Code::FailedPrecondition as i32;
    let status = client
        .say_hello(tonic::Request::new(req))
        .await
        .expect_err("asked to fail");
    assert_greeter_failure(&status, Code::FailedPrecondition, "unary");

    // Streaming: 3 replies, then the status in real HTTP/2 trailers.
    let mut req = hello("stream");
    req.count = 3;
    req.fail_code = Code::Aborted as i32;
    let mut replies = client
        .say_many(tonic::Request::new(req))
        .await
        .expect("the stream starts")
        .into_inner();
    for i in 1..=3 {
        let reply = replies.message().await.expect("a reply").expect("a reply");
        assert_eq!(reply.message, format!("Hello, stream! #{i}"));
    }
    let status = replies.message().await.expect_err("the status after 3");
    assert_greeter_failure(&status, Code::Aborted, "stream");

    // Every code passes through as it is (the gateway maps only what it generates).
    for code in [Code::NotFound, Code::Unavailable, Code::ResourceExhausted] {
        let mut req = hello("code");
        req.fail_code = code as i32;
        let status = client
            .say_hello(tonic::Request::new(req))
            .await
            .expect_err("asked to fail");
        assert_greeter_failure(&status, code, "code");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_longer_than_the_response_timeout_is_honoured() {
    let server = GrpcServer::start("g1").await;
    let gw = gateway_for(&server, &["timeouts: { response_header: 1s }"]).await;
    let mut client = channel(&gw).await;
    let mut msg = hello("patient");
    msg.delay_ms = 1500;
    let started = Instant::now();
    let reply = client
        .say_hello(with_deadline(msg, Duration::from_secs(60)))
        .await
        .expect("a 60 s deadline outlives the gateway's 1 s response_header timeout")
        .into_inner();
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(reply.message, "Hello, patient!");
    // The deadline reached the server, at most what the client gave.
    let left = parse_grpc_timeout(&reply.grpc_timeout)
        .unwrap_or_else(|| panic!("grpc-timeout at the server: {:?}", reply.grpc_timeout));
    assert!(
        left <= Duration::from_secs(60) && left > Duration::from_secs(55),
        "grpc-timeout at the server: {:?}",
        reply.grpc_timeout
    );
    assert_eq!(server.stats().cancelled(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_shorter_than_the_call_gets_deadline_exceeded() {
    let server = GrpcServer::start("g1").await;
    let gw = gateway_for(&server, &[]).await;
    // A client that leaves its deadline to the gateway.
    let mut client = GreeterClient::plain(&gw.url(""));
    let mut msg = hello("hurried");
    msg.delay_ms = 5000;
    let started = Instant::now();
    let status = client
        .say_hello(with_deadline(msg, Duration::from_millis(300)))
        .await
        .expect_err("the server is slower than the deadline");
    let took = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(2500),
        "DEADLINE_EXCEEDED must come at the deadline (300 ms); came after {took:?}"
    );
    // The gateway gave up on the call upstream too: the server saw it cancelled.
    eventually(DEADLINE, || async {
        match (server.stats().calls(), server.stats().cancelled()) {
            (1, 1) => Ok(()),
            other => Err(format!("(calls, cancelled) at the server: {other:?}")),
        }
    })
    .await;
}

/// What a raw HTTP/2 gRPC call got: status, headers, trailers.
#[derive(Debug)]
struct Raw {
    status: StatusCode,
    headers: HeaderMap,
    trailers: HeaderMap,
    body: Bytes,
}

/// `SayHello(msg)` through the gateway with hyper's HTTP/2 client, read whole; `extra`
/// headers added.
async fn raw_say_hello(gw: &TestGateway, msg: &HelloRequest, extra: &[(&str, &str)]) -> Raw {
    let mut req = Request::post(gw.url("/shoal.test.Greeter/SayHello"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let req = req.body(body::full(grpc::frame(msg))).unwrap();
    let resp = Client::h2c().send(req).await.expect("an HTTP/2 answer");
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.expect("the whole answer");
    Raw {
        status: parts.status,
        headers: parts.headers,
        trailers: collected.trailers().cloned().unwrap_or_default(),
        body: collected.to_bytes(),
    }
}

/// A gRPC error the gateway made: HTTP 200, `application/grpc`, `grpc-status: code` and a
/// `grpc-message` (trailers-only, or in trailers), and in tonic's eyes the same status with
/// none of the gateway's own headers in its metadata.
fn assert_gateway_error(raw: &Raw, status: &Status, code: Code) {
    assert_eq!(
        raw.status,
        StatusCode::OK,
        "a gRPC error is HTTP 200 with grpc-status: {raw:?}"
    );
    let content_type = raw
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/grpc"),
        "content-type: {raw:?}"
    );
    let field = |name: &str| {
        raw.headers
            .get(name)
            .or_else(|| raw.trailers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        field("grpc-status"),
        Some((code as i32).to_string()),
        "{raw:?}"
    );
    assert!(
        field("grpc-message").is_some_and(|m| !m.is_empty()),
        "grpc-message: {raw:?}"
    );
    assert!(raw.body.is_empty(), "no message in an error: {raw:?}");

    assert_eq!(status.code(), code, "{status:?}");
    assert!(!status.message().is_empty(), "{status:?}");
    for gateway_header in ["x-shoal-replica", "date"] {
        assert!(
            status.metadata().get(gateway_header).is_none(),
            "{gateway_header} leaked into the trailing metadata: {:?}",
            status.metadata()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_replica_is_unavailable() {
    // A service with no replica at all (503), and one whose only server refuses (502).
    let gw = StackBuilder::new()
        .service_with("empty", Service::without_replicas())
        .service_with(
            "dead",
            Service::servers(dead_url().as_str())
                .with("protocol: h2c")
                .with("health: false"),
        )
        .route("Header(`x-to`, `empty`)", "empty")
        .route("Header(`x-to`, `dead`)", "dead")
        .start()
        .await;
    for to in ["empty", "dead"] {
        let raw = raw_say_hello(&gw, &hello("nobody"), &[("x-to", to)]).await;
        let mut client = channel(&gw).await;
        let mut req = tonic::Request::new(hello("nobody"));
        req.metadata_mut().insert("x-to", to.parse().unwrap());
        let status = client.say_hello(req).await.expect_err("no replica");
        assert_gateway_error(&raw, &status, Code::Unavailable);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_unimplemented() {
    let server = GrpcServer::start("g1").await;
    let gw = StackBuilder::new()
        .service_with("greeter", Service::servers(&server).with("protocol: h2c"))
        .route("PathPrefix(`/elsewhere`)", "greeter")
        .start()
        .await;
    let raw = raw_say_hello(&gw, &hello("lost"), &[]).await;
    let status = channel(&gw)
        .await
        .say_hello(tonic::Request::new(hello("lost")))
        .await
        .expect_err("no route");
    // As gRPC's HTTP-to-gRPC mapping (and Envoy) have it: no such method here.
    assert_gateway_error(&raw, &status, Code::Unimplemented);
    assert_eq!(server.stats().calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_timeout_is_deadline_exceeded() {
    let server = GrpcServer::start("g1").await;
    let gw = gateway_for(&server, &["timeouts: { response_header: 1s }"]).await;
    // No deadline from the client: the gateway's response_header timeout ends the call.
    let mut msg = hello("slow");
    msg.delay_ms = 6000;
    let started = Instant::now();
    let raw = raw_say_hello(&gw, &msg, &[]).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "the timeout is 1 s; the answer came after {took:?}"
    );
    let status = GreeterClient::plain(&gw.url(""))
        .say_hello(tonic::Request::new(msg))
        .await
        .expect_err("slower than response_header");
    assert_gateway_error(&raw, &status, Code::DeadlineExceeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_is_resource_exhausted() {
    let server = GrpcServer::start("g1").await;
    let gw = StackBuilder::new()
        .service_with("greeter", Service::servers(&server).with("protocol: h2c"))
        .middleware("one", "rate_limit: { average: 1, period: 1m, burst: 1 }")
        .route_with(shoal_test_support::Route::new("PathPrefix(`/`)", "greeter").middleware("one"))
        .start()
        .await;
    let mut client = channel(&gw).await;
    let first = client
        .say_hello(tonic::Request::new(hello("first")))
        .await
        .expect("the one call allowed")
        .into_inner();
    assert_eq!(first.message, "Hello, first!");
    let status = client
        .say_hello(tonic::Request::new(hello("second")))
        .await
        .expect_err("rate limited");
    let raw = raw_say_hello(&gw, &hello("third"), &[]).await;
    assert_gateway_error(&raw, &status, Code::ResourceExhausted);
    assert_eq!(server.stats().calls(), 1);
}

// ---------------------------------------------------------------------------------------
// Failover under load: replica processes.

/// A gateway in front of `greeter`, two replica processes of the greeter (this binary),
/// both in rotation.
async fn greeters() -> TestGateway {
    let greeter = grpc::replica_service(REPLICA_TEST)
        .with("replicas: 2")
        .with("health: { path: /health, interval: 500ms }")
        .with("restart: { policy: on-failure, delay: 1s }")
        .with("stop: { drain_timeout: 2s, grace: 2s }");
    let gw = StackBuilder::new()
        .service_with("greeter", greeter)
        .route("PathPrefix(`/`)", "greeter")
        .start()
        .await;
    eventually(DEADLINE, || async {
        let svc = service(&gw).await;
        match (0..2).all(|i| in_rotation(&replica(&svc, i))) {
            true => Ok(()),
            false => Err(svc),
        }
    })
    .await;
    gw
}

/// `GET /api/v1/services/greeter` on the admin API.
async fn service(gw: &TestGateway) -> Value {
    let url = format!("http://{}/api/v1/services/greeter", gw.shoal().admin_addr());
    gw.client().get(&url).await.json()
}

fn replica(service: &Value, index: u64) -> Value {
    service["replicas"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["index"] == index).cloned())
        .unwrap_or(Value::Null)
}

/// In rotation: ready in the supervisor and healthy in the gateway.
fn in_rotation(replica: &Value) -> bool {
    replica["state"] == "ready" && replica["traffic"]["health"] == "healthy"
}

async fn pid_of(gw: &TestGateway, index: u64) -> Pid {
    let r = replica(&service(gw).await, index);
    let pid = r["pid"].as_u64().unwrap_or_else(|| panic!("no pid: {r}"));
    Pid::from_raw(i32::try_from(pid).expect("a pid"))
}

/// Sends SIGCONT when dropped, so that a failed assertion leaves no stopped process.
struct Resume(Pid);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// Whether a failover story's calls carry an `Idempotency-Key`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Keys {
    Yes,
    No,
}

#[derive(Debug, Default)]
struct Counts {
    stop: AtomicBool,
    started: AtomicU64,
    ok: AtomicU64,
    slowest_ms: AtomicU64,
    failures: Mutex<Vec<String>>,
    by_replica: Mutex<BTreeMap<String, u64>>,
    /// What the story did, and how many calls had started then.
    marks: Mutex<Vec<(u64, String)>>,
}

/// [`WORKERS`] tasks calling `SayHello` in a loop over one channel.
struct Load {
    counts: Arc<Counts>,
    tasks: Vec<JoinHandle<()>>,
}

/// What a load did.
#[derive(Debug)]
struct Tally {
    ok: u64,
    slowest: Duration,
    failures: Vec<String>,
    by_replica: BTreeMap<String, u64>,
    marks: Vec<(u64, String)>,
}

impl Load {
    fn start(client: &GreeterClient<Channel>, keys: Keys) -> Load {
        let counts = Arc::new(Counts::default());
        let until = Instant::now() + LOAD_LIMIT;
        let tasks = (0..WORKERS)
            .map(|w| {
                let mut client = client.clone();
                let counts = Arc::clone(&counts);
                tokio::spawn(async move {
                    while !counts.stop.load(Ordering::SeqCst) && Instant::now() < until {
                        let i = counts.started.fetch_add(1, Ordering::SeqCst);
                        if i >= MAX_CALLS {
                            break;
                        }
                        let name = format!("{w}-{i}");
                        let mut req = with_deadline(hello(&name), CALL_DEADLINE);
                        if keys == Keys::Yes {
                            let key = name.parse().expect("a header value");
                            req.metadata_mut().insert("idempotency-key", key);
                        }
                        let at = Instant::now();
                        let result = client.say_hello(req).await;
                        let took = at.elapsed();
                        counts
                            .slowest_ms
                            .fetch_max(took.as_millis() as u64, Ordering::SeqCst);
                        let failure = match result {
                            Ok(reply) => {
                                let reply = reply.into_inner();
                                if reply.message == format!("Hello, {name}!")
                                    && took < CALL_DEADLINE
                                {
                                    *counts
                                        .by_replica
                                        .lock()
                                        .unwrap()
                                        .entry(reply.replica)
                                        .or_default() += 1;
                                    counts.ok.fetch_add(1, Ordering::SeqCst);
                                    None
                                } else {
                                    Some(format!("call {name} after {took:?}: {reply:?}"))
                                }
                            }
                            Err(status) => Some(format!(
                                "call {name} after {took:?}: {:?} {:?}",
                                status.code(),
                                status.message()
                            )),
                        };
                        if let Some(f) = failure {
                            counts.failures.lock().unwrap().push(f);
                        }
                    }
                })
            })
            .collect();
        Load { counts, tasks }
    }

    fn ok(&self) -> u64 {
        self.counts.ok.load(Ordering::SeqCst)
    }

    fn ok_from(&self, replica: &str) -> u64 {
        let by_replica = self.counts.by_replica.lock().unwrap();
        by_replica.get(replica).copied().unwrap_or(0)
    }

    /// Note what the story does now (shown with the failures: calls are numbered).
    fn mark(&self, what: &str) {
        let started = self.counts.started.load(Ordering::SeqCst);
        self.counts
            .marks
            .lock()
            .unwrap()
            .push((started, what.to_owned()));
    }

    fn failed(&self) -> usize {
        self.counts.failures.lock().unwrap().len()
    }

    /// Wait until `n` calls have succeeded in all.
    async fn wait_ok(&self, n: u64) {
        eventually(DEADLINE, || async {
            match self.ok() {
                ok if ok >= n => Ok(()),
                ok => Err(format!(
                    "{ok} of {n} calls answered, {} failed",
                    self.failed()
                )),
            }
        })
        .await;
    }

    async fn finish(self) -> Tally {
        self.counts.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("a load task");
        }
        Tally {
            ok: self.counts.ok.load(Ordering::SeqCst),
            slowest: Duration::from_millis(self.counts.slowest_ms.load(Ordering::SeqCst)),
            failures: std::mem::take(&mut *self.counts.failures.lock().unwrap()),
            by_replica: std::mem::take(&mut *self.counts.by_replica.lock().unwrap()),
            marks: std::mem::take(&mut *self.counts.marks.lock().unwrap()),
        }
    }
}

fn assert_none_failed(gw: &TestGateway, tally: &Tally) {
    let events: Vec<String> = gw
        .shoal()
        .events()
        .since(0)
        .iter()
        .filter(|e| e.service == "greeter")
        .map(|e| format!("{:?} {:?}: {}", e.replica, e.kind, e.message))
        .collect();
    assert!(
        tally.failures.is_empty(),
        "{} of {} calls failed: {:#?}\nthe story (calls started then): {:?}\nevents: {events:#?}",
        tally.failures.len(),
        tally.ok + tally.failures.len() as u64,
        &tally.failures[..tally.failures.len().min(10)],
        tally.marks,
    );
    assert!(tally.slowest < CALL_DEADLINE, "{tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_replica_under_load_fails_no_call() {
    let gw = greeters().await;
    let load = Load::start(&channel(&gw).await, Keys::Yes);
    load.wait_ok(200).await;
    let victim = pid_of(&gw, 1).await;
    load.mark("SIGKILL greeter/1");
    kill(victim, Signal::SIGKILL).unwrap();
    let at_kill = load.ok();
    load.wait_ok(at_kill + 500).await;
    // Restarted (after its 1 s back-off), it takes calls again.
    let before = load.ok_from("greeter/1");
    eventually(DEADLINE, || async {
        match load.ok_from("greeter/1") {
            n if n > before + 5 => Ok(()),
            n => Err(format!("greeter/1 answered {} since the kill", n - before)),
        }
    })
    .await;
    let tally = load.finish().await;
    assert_none_failed(&gw, &tally);
    assert_eq!(tally.by_replica.len(), 2, "{tally:?}");
    eprintln!("SIGKILL under load: {tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_of_a_replica_under_load_fails_no_call() {
    let gw = greeters().await;
    let client = channel(&gw).await;
    let load = Load::start(&client, Keys::No);
    load.wait_ok(200).await;
    let victim = pid_of(&gw, 1).await;
    load.mark("SIGSTOP greeter/1");
    kill(victim, Signal::SIGSTOP).unwrap();
    let resume = Resume(victim);
    let stopped = Instant::now();
    let at_stop = load.ok();
    eventually(DEADLINE, || async {
        let r = replica(&service(&gw).await, 1);
        match in_rotation(&r) {
            false => Ok(()),
            true => Err(r),
        }
    })
    .await;
    let left_after = stopped.elapsed();
    load.mark("greeter/1 out of rotation");
    // New calls on the same channel go to greeter/0 at once, though the load's calls may all
    // be waiting for the hung replica (nothing may send them twice).
    for i in 0..20 {
        let at = Instant::now();
        let reply = client
            .clone()
            .say_hello(with_deadline(hello(&format!("probe {i}")), CALL_DEADLINE))
            .await
            .unwrap_or_else(|s| panic!("call {i} after greeter/1 left rotation: {s:?}"))
            .into_inner();
        let took = at.elapsed();
        assert_eq!(
            reply.replica, "greeter/0",
            "call {i} after greeter/1 left rotation"
        );
        assert!(
            took < Duration::from_secs(1),
            "call {i} after greeter/1 left rotation took {took:?}"
        );
    }
    // Hung while the others serve: 300 more calls, or 3 s after the SIGSTOP, so that the
    // calls stuck on it can still make their 5 s deadline once it resumes.
    let more = tokio::time::timeout_at(stopped + Duration::from_secs(3), async {
        while load.ok() < at_stop + 300 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let while_hung = load.ok() - at_stop;
    load.mark("SIGCONT greeter/1");
    drop(resume);
    let resumed = Instant::now();
    eventually(DEADLINE, || async {
        let r = replica(&service(&gw).await, 1);
        match in_rotation(&r) {
            true => Ok(()),
            false => Err(r),
        }
    })
    .await;
    let back_after = resumed.elapsed();
    let before = load.ok_from("greeter/1");
    eventually(DEADLINE, || async {
        match load.ok_from("greeter/1") {
            n if n > before + 5 => Ok(()),
            n => Err(format!("greeter/1 answered {} since SIGCONT", n - before)),
        }
    })
    .await;
    let tally = load.finish().await;
    assert_none_failed(&gw, &tally);
    assert!(
        left_after < Duration::from_secs(3),
        "a hung replica must leave rotation within 3 s; took {left_after:?}"
    );
    assert_eq!(
        replica(&service(&gw).await, 1)["restarts"],
        0,
        "a hang is not a crash"
    );
    eprintln!(
        "SIGSTOP under load: out of rotation after {left_after:?}, {while_hung} calls answered \
         while hung ({}), back {back_after:?} after SIGCONT; {tally:?}",
        if more.is_ok() {
            "the load went on"
        } else {
            "3 s limit"
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_under_load_fails_no_call() {
    let gw = greeters().await;
    let load = Load::start(&channel(&gw).await, Keys::No);
    load.wait_ok(200).await;
    let url = format!(
        "http://{}/api/v1/services/greeter/scale",
        gw.shoal().admin_addr()
    );
    let req = Request::post(url)
        .header("content-type", "application/json")
        .body(body::full(r#"{"replicas": 1}"#))
        .unwrap();
    load.mark("scale to 1");
    let answer = gw.client().request(req).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let scaled = Instant::now();
    // Drained (up to 2 s) and stopped (up to 2 s more).
    eventually(DEADLINE, || async {
        let svc = service(&gw).await;
        let replicas = svc["replicas"].as_array().map_or(0, Vec::len);
        match (svc["desired"].as_u64(), replicas) {
            (Some(1), 1) if in_rotation(&replica(&svc, 0)) => Ok(()),
            _ => Err(svc),
        }
    })
    .await;
    let gone_after = scaled.elapsed();
    load.mark("greeter/1 gone");
    // Only greeter/0 answers from now on.
    let from_1 = load.ok_from("greeter/1");
    let at = load.ok();
    load.wait_ok(at + 300).await;
    assert_eq!(load.ok_from("greeter/1"), from_1, "greeter/1 is gone");
    let tally = load.finish().await;
    assert_none_failed(&gw, &tally);
    eprintln!("scale 2 -> 1 under load: greeter/1 gone after {gone_after:?}; {tally:?}");
}

#[test]
fn grpc_timeouts_parse_as_the_spec_writes_them() {
    assert_eq!(parse_grpc_timeout("60S"), Some(Duration::from_secs(60)));
    assert_eq!(
        parse_grpc_timeout("59999m"),
        Some(Duration::from_millis(59999))
    );
    assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_grpc_timeout("123456789S"), None, "at most 8 digits");
    assert_eq!(parse_grpc_timeout("S"), None);
    assert_eq!(parse_grpc_timeout("-1S"), None);
    assert_eq!(parse_grpc_timeout("10x"), None);
    assert_eq!(parse_grpc_timeout(""), None);
}
