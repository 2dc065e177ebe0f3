//! Draining waits for what is still open on a replica (issue 24, defect 4): WebSockets open
//! during a rolling replacement keep working until the drain limit and are then closed with
//! 1001 by the replica's own shutdown, never before; streams in flight (a chunked HTTP/1.1
//! body, an HTTP/2 stream, to an HTTP/1.1 and to an h2c service) finish, and the replica is
//! stopped only then; a reload that does not touch the service leaves its WebSockets alone.
//!
//! The replicas are real supervised processes: this test binary run again as its ignored
//! test `sample_app_replica` (as `shoal_test_support::worker` does), serving the sample app
//! and writing down when it got SIGTERM, so that a test can tell when the drain ended.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use shoal_core::EventKind;
use shoal_test_support::{
    BoxError, Client, DEADLINE, ReqBody, Service, StackBuilder, TestGateway, eventually, worker,
};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Set in a replica's environment: the folder where it writes `sigterm-PID`.
const REPLICA_ENV: &str = "SHOAL_TEST_SAMPLE_APP";
/// The services' `stop.drain_timeout`.
const DRAIN: Duration = Duration::from_secs(2);
/// The pause between two WebSocket messages, and between two chunks of a stream.
const PACE: Duration = Duration::from_millis(50);

#[test]
#[ignore = "a replica, run by the tests of this file as this binary again: not a test"]
fn sample_app_replica() {
    let Some(dir) = std::env::var_os(REPLICA_ENV).map(PathBuf::from) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let opts = shoal_sample_app::Options::from_env(|k| std::env::var(k).ok())
            .expect("the replica's environment");
        let app = shoal_sample_app::SampleApp::start(opts)
            .await
            .expect("the replica listens");
        term.recv().await;
        let file = dir.join(format!("sigterm-{}", std::process::id()));
        std::fs::write(&file, now_ms().to_string()).expect("write the SIGTERM time");
        app.shutdown().await;
    });
}

/// Wall-clock milliseconds: the clock events (`at_ms`) and the replicas' notes share.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// A service of `replicas` sample apps, drained for [`DRAIN`]; `version` is only in their
/// environment, so changing it replaces them (a rolling update).
fn sample_service(dir: &Path, replicas: u32, version: u32) -> Service {
    let quote = |s: &str| serde_json::to_string(s).expect("a string");
    let argv: Vec<String> = worker::command("sample_app_replica")
        .iter()
        .map(|a| quote(a))
        .collect();
    Service::command(&format!("[{}]", argv.join(", ")))
        .with(&format!("replicas: {replicas}"))
        .with(&format!(
            "env: {{ {REPLICA_ENV}: {}, VERSION: '{version}' }}",
            quote(&dir.display().to_string())
        ))
        .with("health: { path: /health, interval: 100ms }")
        .with(&format!(
            "stop: {{ drain_timeout: {}ms, grace: 3s }}",
            DRAIN.as_millis()
        ))
}

/// One service `web` behind `PathPrefix(/)`.
fn web_stack(dir: &Path, replicas: u32, version: u32) -> StackBuilder {
    StackBuilder::new()
        .service_with("web", sample_service(dir, replicas, version))
        .route("PathPrefix(`/`)", "web")
}

/// `index → pid` of the ready replicas of `service`, from the admin API.
async fn ready_pids(gw: &TestGateway, service: &str) -> BTreeMap<u64, u64> {
    let admin = gw.shoal().admin_addr();
    let answer = Client::http1()
        .get(&format!("http://{admin}/api/v1/services/{service}"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let status = answer.json();
    status["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .filter(|r| r["state"] == "ready")
        .filter_map(|r| Some((r["index"].as_u64()?, r["pid"].as_u64()?)))
        .collect()
}

/// Wait until `service` has `n` ready replicas; their pids by index.
async fn wait_ready(gw: &TestGateway, service: &str, n: usize) -> BTreeMap<u64, u64> {
    eventually(DEADLINE, || async {
        let pids = ready_pids(gw, service).await;
        if pids.len() == n { Ok(pids) } else { Err(pids) }
    })
    .await
}

/// When the replica with `pid` got SIGTERM (wall-clock ms), if it did.
fn sigterm_at(dir: &Path, pid: u64) -> Option<u64> {
    std::fs::read_to_string(dir.join(format!("sigterm-{pid}")))
        .ok()
        .and_then(|t| t.trim().parse().ok())
}

/// Events of `kind` about `service` after sequence number `after`: (replica index, at_ms,
/// message).
fn events_of(
    gw: &TestGateway,
    service: &str,
    kind: EventKind,
    after: u64,
) -> Vec<(u32, u64, String)> {
    gw.shoal()
        .events()
        .since(after)
        .into_iter()
        .filter(|e| e.service == service && e.kind == kind)
        .map(|e| (e.replica.unwrap_or(u32::MAX), e.at_ms, e.message))
        .collect()
}

/// What one WebSocket session saw.
#[derive(Debug, Default)]
struct Session {
    /// `X-Shoal-Replica` of the upgrade's answer.
    replica: String,
    /// Messages echoed back.
    echoes: u64,
    /// Messages echoed back after `counted_from` (wall-clock ms).
    echoes_after: u64,
    /// When the last echo came back (wall-clock ms).
    last_echo_ms: u64,
    /// How the server closed it: when, and the close frame's code.
    closed_by_server: Option<(u64, Option<CloseCode>)>,
    /// A transport error, or an echo that did not come back.
    error: Option<String>,
}

/// A client's WebSocket.
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open a WebSocket to `/ws` through the gateway. Returns the stream and the replica.
async fn open_ws(gw: SocketAddr) -> (Ws, String) {
    let (ws, answer) = tokio_tungstenite::connect_async(format!("ws://{gw}/ws"))
        .await
        .expect("the WebSocket handshake through the gateway");
    assert_eq!(answer.status(), StatusCode::SWITCHING_PROTOCOLS);
    let replica = answer
        .headers()
        .get("x-shoal-replica")
        .and_then(|v| v.to_str().ok())
        .expect("x-shoal-replica on the 101")
        .to_owned();
    (ws, replica)
}

/// Echo a message every [`PACE`] until the server closes the session or `until` (then the
/// client closes it, 1000). Each echo must come back within a second.
async fn ws_session(gw: SocketAddr, until: Instant, counted_from: u64) -> Session {
    let (mut ws, replica) = open_ws(gw).await;
    let mut session = Session {
        replica,
        ..Session::default()
    };
    let mut pace = tokio::time::interval(PACE);
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = pace.tick() => {}
            () = tokio::time::sleep_until(until) => {
                let _ = ws.close(None).await;
                while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {}
                return session;
            }
        }
        n += 1;
        let text = format!("message {n} on {}", session.replica);
        if let Err(e) = ws.send(Message::text(text.clone())).await {
            session.error = Some(format!("send {n}: {e}"));
            return session;
        }
        let answer = tokio::time::timeout(Duration::from_secs(1), ws.next()).await;
        match answer {
            Ok(Some(Ok(Message::Text(echo)))) if echo.as_str() == text => {
                session.echoes += 1;
                session.last_echo_ms = now_ms();
                if session.last_echo_ms >= counted_from {
                    session.echoes_after += 1;
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                session.closed_by_server = Some((now_ms(), frame.map(|f| f.code)));
                // tungstenite answered the close; read on until the connection ends.
                while let Ok(Some(Ok(_))) =
                    tokio::time::timeout(Duration::from_secs(2), ws.next()).await
                {}
                return session;
            }
            other => {
                session.error = Some(format!("message {n}: {other:?}"));
                return session;
            }
        }
    }
}

/// Issue 24: "Replacing replicas (a reload that changes `env`) says 'draining up to 10s' but
/// the old replicas stop within the same second and every open WebSocket gets 1001."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_keep_working_through_a_rolling_replacement_until_the_drain_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gw = web_stack(dir.path(), 2, 1).start().await;
    let old = wait_ready(&gw, "web", 2).await;

    // Four sessions, two on each replica (round robin).
    let end = Instant::now() + Duration::from_secs(30);
    let sessions: Vec<_> = (0..4)
        .map(|_| tokio::spawn(ws_session(gw.addr(), end, 0)))
        .collect();
    // Each open session holds its replica's in-flight count (the tunnel's pick).
    gw.wait_in_flight(&["web"], 4).await;
    let before = gw.last_event_seq();
    let reloaded = gw.reload(&web_stack(dir.path(), 2, 2)).expect("the reload");
    assert!(!reloaded.contains("restart"), "{reloaded}");

    let mut all = Vec::new();
    for s in sessions {
        all.push(s.await.expect("a session task"));
    }
    let new = wait_ready(&gw, "web", 2).await;
    let draining: BTreeMap<u32, u64> = events_of(&gw, "web", EventKind::Draining, before)
        .into_iter()
        .map(|(i, at, _)| (i, at))
        .collect();
    assert_eq!(draining.len(), 2, "both old replicas drained: {draining:?}");
    let drain_ms = DRAIN.as_millis() as u64;
    let mut by_replica: BTreeMap<String, usize> = BTreeMap::new();
    for s in &all {
        *by_replica.entry(s.replica.clone()).or_default() += 1;
        let index: u32 = s
            .replica
            .rsplit('/')
            .next()
            .and_then(|i| i.parse().ok())
            .expect("web/N");
        let drained_at = draining[&index];
        let (closed_at, code) = s.closed_by_server.unwrap_or_else(|| {
            panic!("the replica did not close the session: {s:?}");
        });
        eprintln!(
            "{}: {} echoes, the last {} ms and the close {} ms after the drain began",
            s.replica,
            s.echoes,
            s.last_echo_ms.saturating_sub(drained_at),
            closed_at.saturating_sub(drained_at)
        );
        assert_eq!(s.error, None, "{s:?}");
        assert_eq!(code, Some(CloseCode::Away), "closed with 1001: {s:?}");
        // Never before the drain limit; soon after it (SIGTERM, then the replica's close).
        assert!(
            closed_at + 50 >= drained_at + drain_ms,
            "closed {} ms after the drain began, before its {drain_ms} ms limit: {s:?}",
            closed_at.saturating_sub(drained_at)
        );
        assert!(
            closed_at <= drained_at + drain_ms + 3_000,
            "closed {} ms after the drain began: {s:?}",
            closed_at - drained_at
        );
        // And it was working, not just open, until close to the limit.
        assert!(
            s.last_echo_ms + 500 >= drained_at + drain_ms,
            "last echo {} ms after the drain began: {s:?}",
            s.last_echo_ms.saturating_sub(drained_at)
        );
        let sigterm = sigterm_at(dir.path(), old[&u64::from(index)]).expect("SIGTERM noted");
        assert!(
            sigterm + 50 >= drained_at + drain_ms,
            "SIGTERM {} ms into the drain",
            sigterm.saturating_sub(drained_at)
        );
    }
    assert_eq!(
        by_replica.values().copied().collect::<Vec<_>>(),
        [2, 2],
        "{by_replica:?}"
    );
    // The drains ran to their limit, with the sessions counted.
    let stopped = eventually(DEADLINE, || async {
        let stopped = events_of(&gw, "web", EventKind::Stopped, before);
        if stopped.len() == 2 {
            Ok(stopped)
        } else {
            Err(stopped)
        }
    })
    .await;
    for (index, _, message) in stopped {
        assert!(
            message.contains("drain timeout with 2 in flight"),
            "web/{index}: {message}"
        );
    }
    // The new replicas serve WebSockets.
    for (index, pid) in &new {
        assert_ne!(old.get(index), Some(pid), "web/{index} was replaced");
    }
    let (mut ws, _) = open_ws(gw.addr()).await;
    ws.send(Message::text("after")).await.expect("send");
    let echo = ws.next().await.expect("an answer").expect("a message");
    assert_eq!(echo, Message::text("after"));
    gw.shutdown().await;
}

/// "A reload that does not touch the service leaves them alone."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_leaves_the_service_alone_leaves_its_websockets_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = shoal_test_support::Backend::start("other").await;
    let gw = web_stack(dir.path(), 2, 1).start().await;
    let pids = wait_ready(&gw, "web", 2).await;

    // The sessions run for the drain limit and more after the reload, then close
    // themselves (1000).
    let reload_at = now_ms() + 500;
    let end = Instant::now() + Duration::from_millis(500) + DRAIN + Duration::from_secs(1);
    let sessions: Vec<_> = (0..4)
        .map(|_| tokio::spawn(ws_session(gw.addr(), end, reload_at)))
        .collect();
    eventually(DEADLINE, || async {
        if now_ms() >= reload_at {
            Ok(())
        } else {
            Err("not yet")
        }
    })
    .await;
    let before = gw.last_event_seq();
    // Another service and route, a gateway timeout, the access log: not `web`.
    let changed = web_stack(dir.path(), 2, 1)
        .service("other", &backend)
        .route("PathPrefix(`/other`)", "other")
        .gateway("timeouts: { response_header: 20s, client_idle: 30s }");
    let answer = gw.reload(&changed).expect("the reload");
    assert!(!answer.contains("restart"), "{answer}");
    assert_eq!(
        gw.get("/other/whoami").await.served_by(),
        "other",
        "the reload applied"
    );

    for s in sessions {
        let s = s.await.expect("a session task");
        assert_eq!(s.error, None, "{s:?}");
        assert_eq!(
            s.closed_by_server, None,
            "the gateway or replica closed it: {s:?}"
        );
        // About 50 echoes in the 3 s after the reload; at least half of them.
        assert!(s.echoes_after >= 25, "{s:?}");
    }
    assert_eq!(ready_pids(&gw, "web").await, pids, "no replica replaced");
    assert_eq!(
        events_of(&gw, "web", EventKind::Draining, before),
        Vec::new(),
        "nothing drained"
    );
    gw.shutdown().await;
}

/// A request body sent as `chunks` of `chunk`, one every [`PACE`], then as many more as
/// fit in `after` once `go_on` has returned true (checked before each chunk), for at most
/// 30 s. Returns the body and a receiver of (bytes sent, wall-clock ms of the end).
fn paced_body(
    chunk: Bytes,
    after: Duration,
    go_on: impl Fn() -> bool + Send + 'static,
) -> (ReqBody, tokio::sync::oneshot::Receiver<(u64, u64)>) {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        let mut sent = 0u64;
        let mut pace = tokio::time::interval(PACE);
        let give_up = Instant::now() + Duration::from_secs(30);
        let mut stop_at: Option<Instant> = None;
        loop {
            pace.tick().await;
            let now = Instant::now();
            if now >= give_up || stop_at.is_some_and(|at| now >= at) {
                break;
            }
            if stop_at.is_none() && go_on() {
                stop_at = Some(now + after);
            }
            if tx.send(chunk.clone()).await.is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
        drop(tx);
        let _ = done_tx.send((sent, now_ms()));
    });
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, BoxError>(Frame::data(b)), rx))
    });
    (StreamBody::new(frames).boxed_unsync(), done_rx)
}

/// One streamed `POST /echo` through the gateway: what came back and when the body ended.
#[derive(Debug)]
struct Streamed {
    status: StatusCode,
    sent: u64,
    received: u64,
    ended_ms: u64,
    error: Option<String>,
}

/// Stream a body to `url`'s `/echo` through `client` until one second after `draining`
/// says the service's old replica drains, and read the echo to its end.
async fn stream_echo(
    client: Client,
    url: String,
    draining: impl Fn() -> bool + Send + 'static,
) -> Streamed {
    let (body, done) = paced_body(
        Bytes::from(vec![b'x'; 1000]),
        Duration::from_secs(1),
        draining,
    );
    let req = Request::post(url).body(body).expect("a request");
    let response = client.send(req).await.expect("the response head");
    let status = response.status();
    let mut body = response.into_body();
    let mut received = 0u64;
    let mut error = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => received += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let (sent, ended_ms) = done.await.expect("the body's end");
    Streamed {
        status,
        sent,
        received,
        ended_ms,
        error,
    }
}

/// Streams in flight during a replacement finish on the old replica, which is stopped only
/// once they have: a chunked HTTP/1.1 body and an HTTP/2 stream from the client, to an
/// HTTP/1.1 service and to an h2c one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_in_flight_during_a_replacement_finish_before_the_replica_stops() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stack = |version| {
        StackBuilder::new()
            .service_with("web", sample_service(dir.path(), 1, version))
            .service_with(
                "grpcish",
                sample_service(dir.path(), 1, version).with("protocol: h2c"),
            )
            .route_with(
                shoal_test_support::Route::new("PathPrefix(`/h2c`)", "grpcish")
                    .strip_prefix("/h2c"),
            )
            .route("PathPrefix(`/`)", "web")
    };
    let gw = stack(1).start().await;
    let old_web = wait_ready(&gw, "web", 1).await[&0];
    let old_h2 = wait_ready(&gw, "grpcish", 1).await[&0];
    let before = gw.last_event_seq();
    let events = gw.shoal().events().clone();
    let drains = move |service: &'static str| {
        let events = events.clone();
        move || {
            events
                .since(before)
                .iter()
                .any(|e| e.service == service && e.kind == EventKind::Draining)
        }
    };

    let streams = [
        (Client::http1(), "", "web"),
        (Client::h2c(), "", "web"),
        (Client::http1(), "/h2c", "grpcish"),
        (Client::h2c(), "/h2c", "grpcish"),
    ]
    .map(|(client, prefix, service)| {
        let url = gw.url(&format!("{prefix}/echo"));
        (
            service,
            tokio::spawn(stream_echo(client, url, drains(service))),
        )
    });
    // The four streams are flowing before the reload.
    gw.wait_in_flight(&["web", "grpcish"], 4).await;
    gw.reload(&stack(2)).expect("the reload");

    for (service, stream) in streams {
        let s = stream.await.expect("a stream task");
        assert_eq!(
            (s.status, s.error.as_deref()),
            (StatusCode::OK, None),
            "{service}: {s:?}"
        );
        assert!(s.sent >= 20_000, "{service}: {s:?}");
        assert_eq!(s.received, s.sent, "{service}: every byte came back: {s:?}");
        let old = if service == "web" { old_web } else { old_h2 };
        let sigterm = eventually(DEADLINE, || async {
            sigterm_at(dir.path(), old).ok_or("no SIGTERM yet")
        })
        .await;
        assert!(
            sigterm + 50 >= s.ended_ms,
            "{service}: SIGTERM {} ms before the stream ended",
            s.ended_ms.saturating_sub(sigterm)
        );
    }
    for service in ["web", "grpcish"] {
        let stopped = eventually(DEADLINE, || async {
            let stopped = events_of(&gw, service, EventKind::Stopped, before);
            stopped.into_iter().next().ok_or("not stopped yet")
        })
        .await;
        assert!(
            !stopped.2.contains("drain timeout"),
            "{service}: the drain ended with the streams: {}",
            stopped.2
        );
        let draining = events_of(&gw, service, EventKind::Draining, before);
        let (_, drained_at, _) = draining.first().cloned().expect("a draining event");
        assert!(
            stopped.1 >= drained_at + 900,
            "{service}: stopped {} ms into the drain, with a stream still running",
            stopped.1 - drained_at
        );
    }
    gw.shutdown().await;
}
