//! Long-lived traffic across rollouts (issue 21): a WebSocket opened on a replica before a
//! rollout still echoes after the rollout has replaced every other replica, and goes on
//! until it is closed (its replica's drain then ends at once) or the service's
//! `stop.drain_timeout` passes (then the replica's own shutdown closes it, 1001); a long
//! download started before a rollout ends in full, every byte, after it. Meanwhile the new
//! replicas serve new connections, and each answer says which version served it, so a test
//! tells the old socket from the new ones. Each story runs across a reload that changes the
//! spec and across `shoal rollout restart` (same spec, a new "binary" on disk); and a drain
//! longer than `rollout.progress_deadline` does not get the rollout rolled back.
//!
//! The replicas are supervised `python3` processes ([`REPLICA`]): a WebSocket echo that
//! prefixes each echo with its version, a paced download, and a note of when SIGTERM came
//! (the drain's end), as a user's app would be.
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use http_body_util::BodyExt;
use shoal_core::EventKind;
use shoal_test_support::{Client, DEADLINE, Service, StackBuilder, TestGateway, body, eventually};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The services' `stop.drain_timeout`.
const DRAIN: Duration = Duration::from_secs(3);
/// The pause between two WebSocket messages.
const PACE: Duration = Duration::from_millis(100);

/// The replica every test runs: `python3 replica.py`. Its version comes from `VERSION`, or
/// else from the file `VERSION_FILE` names (read once, at start: a new "binary" on disk).
/// `GET /download?chunks=N&size=S&ms=P`: N chunks of S bytes, P ms apart, with a
/// `Content-Length`; `/ws`: a WebSocket echo answering `vVERSION: MESSAGE`; anything else:
/// `version VERSION pid PID`. Every answer carries `X-Version`. On SIGTERM it writes the
/// time (ms) to `NOTES/sigterm-PID`, sends a 1001 close on its open WebSockets and exits.
const REPLICA: &str = r#"
import base64, hashlib, os, signal, struct, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("VERSION") or open(os.environ["VERSION_FILE"]).read().strip()
NOTES = os.environ["NOTES"]
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
open_sockets = set()
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/ws":
            return self.websocket()
        if path == "/download":
            args = dict(p.split("=", 1) for p in query.split("&"))
            return self.download(int(args["chunks"]), int(args["size"]), int(args["ms"]))
        body = b"ok\n" if path == "/health" else f"version {VERSION} pid {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Version", VERSION)
        self.end_headers()
        self.wfile.write(body)

    def download(self, chunks, size, ms):
        self.send_response(200)
        self.send_header("Content-Length", str(chunks * size))
        self.send_header("X-Version", VERSION)
        self.end_headers()
        for i in range(chunks):
            if i:
                time.sleep(ms / 1000)
            self.wfile.write(b"x" * size)

    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"].strip()
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("X-Version", VERSION)
        self.end_headers()
        self.close_connection = True
        self.send_lock = threading.Lock()
        with lock:
            open_sockets.add(self)
        try:
            while True:
                head = self.rfile.read(2)
                if len(head) < 2:
                    return
                opcode, n = head[0] & 0x0F, head[1] & 0x7F
                if n == 126:
                    n = struct.unpack(">H", self.rfile.read(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", self.rfile.read(8))[0]
                mask = self.rfile.read(4) if head[1] & 0x80 else bytes(4)
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
                if opcode == 8:
                    self.frame(8, data[:2])
                    return
                if opcode == 9:
                    self.frame(10, data)
                elif opcode in (1, 2):
                    self.frame(opcode, f"v{VERSION}: ".encode() + data)
        finally:
            with lock:
                open_sockets.discard(self)

    def frame(self, opcode, data):
        n = len(data)
        size = bytes([n]) if n < 126 else bytes([126]) + struct.pack(">H", n)
        with self.send_lock:
            self.wfile.write(bytes([0x80 | opcode]) + size + data)


def on_sigterm(_signum, _frame):
    with open(os.path.join(NOTES, f"sigterm-{os.getpid()}"), "w") as f:
        f.write(str(int(time.time() * 1000)))
    with lock:
        sessions = list(open_sockets)
    for ws in sessions:
        try:
            ws.frame(8, struct.pack(">H", 1001) + b"going away")
        except OSError:
            pass
    os._exit(0)


signal.signal(signal.SIGTERM, on_sigterm)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// Wall-clock milliseconds: the clock events (`at_ms`) and the replicas' notes share.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// Where a test's replica script and notes live.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("replica.py"), REPLICA).expect("write the replica");
        Dir { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// When the replica with `pid` got SIGTERM (wall-clock ms), if it did.
    fn sigterm_at(&self, pid: u64) -> Option<u64> {
        std::fs::read_to_string(self.path().join(format!("sigterm-{pid}")))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }
}

/// How a replica learns its version.
#[derive(Debug, Clone, Copy)]
enum Version {
    /// `VERSION` in the service's `env`, and the label `version: vN`: changing it rolls the
    /// service.
    Env(u32),
    /// Read at start from the file `version.txt`, which the spec only names: the same spec,
    /// a new "binary" on disk (what `shoal rollout restart` is for).
    File,
}

/// A stack of one service `web`: `replicas` python replicas, health-checked every 100 ms,
/// drained for [`DRAIN`], with `extra` (raw YAML, e.g. a `rollout:`), behind `PathPrefix(/)`.
fn stack(dir: &Dir, replicas: u32, version: Version, extra: &str) -> StackBuilder {
    let quote = |s: &Path| serde_json::to_string(&s.display().to_string()).expect("a string");
    let mut service = Service::command(&format!(
        "[python3, {}]",
        quote(&dir.path().join("replica.py"))
    ))
    .with(&format!("replicas: {replicas}"))
    .with("health: { path: /health, interval: 100ms }")
    .with(&format!(
        "stop: {{ drain_timeout: {}ms, grace: 2s }}",
        DRAIN.as_millis()
    ));
    let notes = quote(dir.path());
    service = match version {
        Version::Env(n) => service
            .with(&format!("env: {{ NOTES: {notes}, VERSION: '{n}' }}"))
            .with(&format!("version: v{n}")),
        Version::File => {
            let file = quote(&dir.path().join("version.txt"));
            service.with(&format!("env: {{ NOTES: {notes}, VERSION_FILE: {file} }}"))
        }
    };
    if !extra.is_empty() {
        service = service.with(extra);
    }
    StackBuilder::new()
        .service_with("web", service)
        .route("PathPrefix(`/`)", "web")
}

/// `GET /api/v1/services/web`.
async fn web_status(gw: &TestGateway) -> serde_json::Value {
    let admin = gw.shoal().admin_addr();
    let answer = Client::http1()
        .get(&format!("http://{admin}/api/v1/services/web"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    answer.json()
}

/// `index → pid` of the ready replicas of `web`.
async fn ready_pids(gw: &TestGateway) -> BTreeMap<u64, u64> {
    web_status(gw).await["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .filter(|r| r["state"] == "ready")
        .filter_map(|r| Some((r["index"].as_u64()?, r["pid"].as_u64()?)))
        .collect()
}

/// Wait until `web` has `n` ready replicas, none of them one of `not`; their pids by index.
async fn wait_ready(gw: &TestGateway, n: usize, not: &BTreeMap<u64, u64>) -> BTreeMap<u64, u64> {
    let old: BTreeSet<u64> = not.values().copied().collect();
    eventually(DEADLINE, || async {
        let pids = ready_pids(gw).await;
        if pids.len() == n && pids.values().all(|p| !old.contains(p)) {
            Ok(pids)
        } else {
            Err(pids)
        }
    })
    .await
}

/// Events of `kind` about `web` after sequence number `after`: replica index → (at_ms,
/// message), the first of each index.
fn events_of(gw: &TestGateway, kind: EventKind, after: u64) -> BTreeMap<u32, (u64, String)> {
    let mut by_index = BTreeMap::new();
    for e in gw.shoal().events().since(after) {
        if e.service == "web" && e.kind == kind {
            by_index
                .entry(e.replica.unwrap_or(u32::MAX))
                .or_insert((e.at_ms, e.message));
        }
    }
    by_index
}

/// Wait until `n` replicas of `web` have had an event of `kind` since `after`.
async fn wait_events(
    gw: &TestGateway,
    kind: EventKind,
    after: u64,
    n: usize,
) -> BTreeMap<u32, (u64, String)> {
    eventually(DEADLINE, || async {
        let seen = events_of(gw, kind, after);
        if seen.len() >= n { Ok(seen) } else { Err(seen) }
    })
    .await
}

/// A client's WebSocket.
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open a WebSocket to `/ws` through the gateway. Returns it with the replica that took it
/// (`X-Shoal-Replica`'s index) and its version (`X-Version`).
async fn open_ws(gw: SocketAddr) -> (Ws, u32, String) {
    let (ws, answer) = tokio_tungstenite::connect_async(format!("ws://{gw}/ws"))
        .await
        .expect("the WebSocket handshake through the gateway");
    assert_eq!(answer.status(), StatusCode::SWITCHING_PROTOCOLS);
    let header = |name: &str| {
        answer
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{name} on the 101"))
            .to_owned()
    };
    let index = header("x-shoal-replica")
        .rsplit('/')
        .next()
        .and_then(|i| i.parse().ok())
        .expect("web/N");
    (ws, index, header("x-version"))
}

/// Send `text` and return the echo (within a second).
async fn echo(ws: &mut Ws, text: &str) -> String {
    ws.send(Message::text(text)).await.expect("send");
    match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
        Ok(Some(Ok(Message::Text(echo)))) => echo.as_str().to_owned(),
        other => panic!("no echo of {text:?}: {other:?}"),
    }
}

/// What one WebSocket session saw.
#[derive(Debug, Default)]
struct Session {
    /// The replica index that took it.
    index: u32,
    /// Each echo: when it came back (wall-clock ms) and its text.
    echoes: Vec<(u64, String)>,
    /// When the client closed it (asked to by the test), if it did.
    closed_by_client: Option<u64>,
    /// When the server closed it, and the close frame's code.
    closed_by_server: Option<(u64, Option<CloseCode>)>,
    /// A transport error, a wrong echo, or one that did not come back.
    error: Option<String>,
}

impl Session {
    /// Echoes that came back at or after `ms`.
    fn echoes_after(&self, ms: u64) -> usize {
        self.echoes.iter().filter(|(at, _)| *at >= ms).count()
    }

    fn last_echo_ms(&self) -> u64 {
        self.echoes.last().map_or(0, |(at, _)| *at)
    }
}

/// Echo a message every [`PACE`] until the server closes the session, or `close` fires
/// (then the client closes it, 1000), or 30 s. Every echo must come back within a second
/// and say `v{version}: `.
async fn ws_session(
    mut ws: Ws,
    index: u32,
    version: String,
    mut close: oneshot::Receiver<()>,
) -> Session {
    let mut session = Session {
        index,
        ..Session::default()
    };
    let mut pace = tokio::time::interval(PACE);
    let give_up = Instant::now() + Duration::from_secs(30);
    for n in 0u64.. {
        tokio::select! {
            _ = pace.tick() => {}
            _ = &mut close => {
                session.closed_by_client = Some(now_ms());
                let _ = ws.close(None).await;
                while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {}
                return session;
            }
            () = tokio::time::sleep_until(give_up) => {
                session.error = Some("still open after 30 s".into());
                return session;
            }
        }
        let text = format!("message {n} on web/{index}");
        if let Err(e) = ws.send(Message::text(text.clone())).await {
            session.error = Some(format!("send {n}: {e}"));
            return session;
        }
        match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
            Ok(Some(Ok(Message::Text(echo)))) if echo.as_str() == format!("v{version}: {text}") => {
                session.echoes.push((now_ms(), echo.as_str().to_owned()));
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
    unreachable!("the loop returns")
}

/// `GET /` through the gateway: the version that answered.
async fn version_of_a_new_request(gw: &TestGateway) -> String {
    let answer = gw.get("/").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    answer.header("x-version").expect("x-version").to_owned()
}

/// The replicas' `(state, version)` as the admin API shows them: what `shoal status`
/// lists.
async fn versions_by_state(gw: &TestGateway) -> BTreeSet<(String, String)> {
    web_status(gw).await["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .map(|r| {
            (
                r["state"].as_str().unwrap_or("?").to_owned(),
                r["version"].as_str().unwrap_or("none").to_owned(),
            )
        })
        .collect()
}

/// One open WebSocket session: its task, and the sender that makes its client close it.
type Running = (tokio::task::JoinHandle<Session>, oneshot::Sender<()>);

/// Open one WebSocket on each of the `n` ready replicas (round robin), check that each
/// echoes with version `version`, and start a session on each, by replica index.
async fn sessions_on_each_replica(
    gw: &TestGateway,
    n: u32,
    version: &str,
) -> BTreeMap<u32, Running> {
    let mut sessions = BTreeMap::new();
    for _ in 0..n {
        let (mut ws, index, v) = open_ws(gw.addr()).await;
        assert_eq!(v, version, "web/{index}");
        assert_eq!(echo(&mut ws, "hello").await, format!("v{version}: hello"));
        let (close, closed) = oneshot::channel();
        let task = tokio::spawn(ws_session(ws, index, v, closed));
        assert!(
            sessions.insert(index, (task, close)).is_none(),
            "round robin put two sessions on web/{index}"
        );
    }
    // Each open session holds its replica's in-flight count (the tunnel's pick).
    gw.wait_in_flight(&["web"], u64::from(n)).await;
    sessions
}

/// A rollout under way (after a reload or a restart) of `web`, whose replicas `old` each
/// hold one WebSocket session, to version `new`.
struct Rolling<'a> {
    gw: &'a TestGateway,
    dir: &'a Dir,
    /// The old replicas' pids, by index.
    old: BTreeMap<u64, u64>,
    sessions: BTreeMap<u32, Running>,
    /// The last event before the rollout.
    before: u64,
    /// What the new replicas answer (`X-Version`).
    new: &'static str,
    /// What the admin API shows for old and new replicas, if they differ.
    labels: Option<(&'static str, &'static str)>,
    /// Whether the client of the first old replica to drain hangs up a second into the
    /// drain (else every session runs to the drain limit).
    hang_up_first: bool,
}

impl Rolling<'_> {
    /// The story: each session echoes from its old replica through the rollout, until its
    /// client hangs up (the drain then ends at once) or the drain limit (then the replica
    /// closes it, 1001, at SIGTERM); the last one to drain still echoes after every replica
    /// has been replaced, while new connections reach new replicas. The rollout completes
    /// and is not rolled back.
    async fn check(mut self) {
        let gw = self.gw;
        let drain_ms = DRAIN.as_millis() as u64;
        let mut hung_up = None;
        if self.hang_up_first {
            let (first, (drained_at, _)) = wait_events(gw, EventKind::Draining, self.before, 1)
                .await
                .into_iter()
                .next()
                .expect("a draining event");
            let (task, close) = self.sessions.remove(&first).expect("a session on each");
            tokio::time::sleep_until(Instant::now() + Duration::from_secs(1)).await;
            close.send(()).expect("the session is still running");
            let s = task.await.expect("a session task");
            hung_up = Some((first, drained_at, s));
        }

        // Every replica replaced: new connections reach the new version.
        let new_pids = wait_ready(gw, self.old.len(), &self.old).await;
        let replaced_at = now_ms();
        assert_eq!(
            version_of_a_new_request(gw).await,
            self.new,
            "a new request reaches a new replica"
        );
        let (mut fresh, fresh_index, fresh_version) = open_ws(gw.addr()).await;
        assert_eq!(
            fresh_version, self.new,
            "a new WebSocket reaches a new replica"
        );
        assert!(new_pids.contains_key(&u64::from(fresh_index)));
        let text = format!("v{}: new", self.new);
        assert_eq!(echo(&mut fresh, "new").await, text);
        // Old and new side by side, as `shoal status` shows them.
        if let Some((old_label, new_label)) = self.labels {
            let want: BTreeSet<(String, String)> = [("draining", old_label), ("ready", new_label)]
                .into_iter()
                .map(|(s, v)| (s.to_owned(), v.to_owned()))
                .collect();
            eventually(DEADLINE, || async {
                let seen = versions_by_state(gw).await;
                if seen == want { Ok(()) } else { Err(seen) }
            })
            .await;
        }

        let mut rest = Vec::new();
        for (_, (task, _close)) in std::mem::take(&mut self.sessions) {
            rest.push(task.await.expect("a session task"));
        }
        let _ = fresh.close(None).await;
        let drained = events_of(gw, EventKind::Draining, self.before);
        let stopped = wait_events(gw, EventKind::Stopped, self.before, self.old.len()).await;

        // The session its client closed: never cut, and its replica's drain ended with it.
        if let Some((index, drained_at, s)) = hung_up {
            let hung_up = s.closed_by_client.expect("closed by the client");
            let (stopped_at, how) = &stopped[&index];
            eprintln!(
                "web/{index}: {} echoes; the client hung up {} ms into the drain, the replica stopped {} ms into it",
                s.echoes.len(),
                hung_up - drained_at,
                stopped_at.saturating_sub(drained_at)
            );
            assert_eq!((&s.error, s.closed_by_server), (&None, None), "{s:?}");
            assert!(
                s.echoes_after(drained_at) >= 5,
                "echoes while draining: {s:?}"
            );
            assert!(
                !how.contains("drain timeout"),
                "web/{index}: the drain ended with the session: {how}"
            );
            assert!(
                *stopped_at + 50 >= hung_up && *stopped_at < drained_at + drain_ms,
                "web/{index} stopped {} ms into its drain, the client hung up {} ms into it",
                stopped_at.saturating_sub(drained_at),
                hung_up - drained_at
            );
        }

        // The others: working until the drain limit, closed then by the replica.
        let last_drained = rest.iter().map(|s| drained[&s.index].0).max();
        for s in &rest {
            let index = s.index;
            let (drained_at, _) = drained[&index];
            let (closed_at, code) = s
                .closed_by_server
                .unwrap_or_else(|| panic!("the replica did not close the session: {s:?}"));
            eprintln!(
                "web/{index}: {} echoes, {} after every replica was replaced; the last {} ms and the close {} ms into the drain",
                s.echoes.len(),
                s.echoes_after(replaced_at),
                s.last_echo_ms().saturating_sub(drained_at),
                closed_at.saturating_sub(drained_at)
            );
            assert_eq!(s.error, None, "{s:?}");
            assert_eq!(code, Some(CloseCode::Away), "closed with 1001: {s:?}");
            if Some(drained_at) == last_drained {
                assert!(
                    s.echoes_after(replaced_at) >= 3,
                    "it echoed after the rollout replaced every replica: {s:?}"
                );
            }
            assert!(
                closed_at + 50 >= drained_at + drain_ms,
                "closed {} ms into the drain, before its {drain_ms} ms limit: {s:?}",
                closed_at.saturating_sub(drained_at)
            );
            assert!(
                closed_at <= drained_at + drain_ms + 3_000,
                "closed {} ms into the drain: {s:?}",
                closed_at - drained_at
            );
            assert!(
                s.last_echo_ms() + 500 >= drained_at + drain_ms,
                "last echo {} ms into the drain: {s:?}",
                s.last_echo_ms().saturating_sub(drained_at)
            );
            let sigterm = self.dir.sigterm_at(self.old[&u64::from(index)]);
            let sigterm = sigterm.expect("SIGTERM noted");
            assert!(
                sigterm + 50 >= drained_at + drain_ms,
                "SIGTERM {} ms into the drain",
                sigterm.saturating_sub(drained_at)
            );
            let how = &stopped[&index].1;
            assert!(
                how.contains("drain timeout with 1 in flight"),
                "web/{index}: {how}"
            );
        }

        // The rollout completed, and was never rolled back.
        let complete = eventually(DEADLINE, || async {
            gw.shoal()
                .events()
                .since(self.before)
                .into_iter()
                .find(|e| {
                    e.service == "web"
                        && e.kind == EventKind::Rollout
                        && e.message.contains("complete")
                })
                .ok_or("no `rollout ... complete` event yet")
        })
        .await;
        eprintln!("event: {}", complete.message);
        let rolled_back: Vec<String> = gw
            .shoal()
            .events()
            .since(self.before)
            .into_iter()
            .filter(|e| e.kind == EventKind::RolledBack)
            .map(|e| e.message)
            .collect();
        assert_eq!(rolled_back, Vec::<String>::new(), "rolled back");
    }
}

/// How a test starts its rollout.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// A reload of the file with `VERSION` 1 → 2.
    Reload,
    /// `shoal rollout restart` (the admin API's), `version.txt` now saying 2.
    Restart,
}

impl Trigger {
    /// The stack the test starts with: version 1.
    fn stack(self, dir: &Dir, replicas: u32) -> StackBuilder {
        match self {
            Trigger::Reload => stack(dir, replicas, Version::Env(1), ""),
            Trigger::Restart => {
                std::fs::write(dir.path().join("version.txt"), "1").expect("write the version");
                stack(dir, replicas, Version::File, "")
            }
        }
    }

    /// Start the rollout to version 2.
    async fn roll(self, gw: &TestGateway, dir: &Dir, replicas: u32) {
        match self {
            Trigger::Reload => {
                let answer = gw
                    .reload(&stack(dir, replicas, Version::Env(2), ""))
                    .expect("the reload");
                assert!(!answer.contains("restart"), "{answer}");
            }
            Trigger::Restart => {
                std::fs::write(dir.path().join("version.txt"), "2").expect("write the version");
                let admin = gw.shoal().admin_addr();
                let restart =
                    http::Request::post(format!("http://{admin}/api/v1/services/web/rollout"))
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(body::full(r#"{"action":"restart"}"#))
                        .expect("a request");
                let answer = Client::http1().request(restart).await;
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
            }
        }
    }
}

/// (a) "A WebSocket opened before a rollout still echoes after it": a reload that changes
/// `VERSION` rolls the two replicas; each session echoes `v1` from its old replica while
/// new connections get `v2`, until its client hangs up or the drain limit passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_outlives_a_rollout_until_closed_or_the_drain_limit() {
    websocket_story(Trigger::Reload, Some(("v1", "v2"))).await;
}

/// (c) The same across `shoal rollout restart` (same spec, a new "binary" on disk): the
/// old replicas answered 1, the file now says 2; the sessions on the old ones still echo
/// `v1` while the restarted replicas answer 2. (Same spec, same version in the status: no
/// labels to compare.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_outlives_a_rollout_restart() {
    websocket_story(Trigger::Restart, None).await;
}

async fn websocket_story(trigger: Trigger, labels: Option<(&'static str, &'static str)>) {
    let dir = Dir::new();
    let gw = trigger.stack(&dir, 2).start().await;
    let old = wait_ready(&gw, 2, &BTreeMap::new()).await;
    let sessions = sessions_on_each_replica(&gw, 2, "1").await;
    let before = gw.last_event_seq();
    trigger.roll(&gw, &dir, 2).await;
    Rolling {
        gw: &gw,
        dir: &dir,
        old,
        sessions,
        before,
        new: "2",
        labels,
        hang_up_first: true,
    }
    .check()
    .await;
    gw.shutdown().await;
}

/// What one download saw.
#[derive(Debug)]
struct Download {
    status: StatusCode,
    version: String,
    received: u64,
    ended_ms: u64,
    error: Option<String>,
}

/// (b) A long download (2.4 s, paced by the replica) started before a rollout ends in
/// full after it: every byte, from the old version, while the new replica answers
/// everything else; the old replica is stopped only once the download is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_download_started_before_a_rollout_ends_in_full_after_it() {
    download_story(Trigger::Reload).await;
}

/// (c) The same across `shoal rollout restart`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_download_started_before_a_rollout_restart_ends_in_full_after_it() {
    download_story(Trigger::Restart).await;
}

async fn download_story(trigger: Trigger) {
    const CHUNKS: u64 = 40;
    const SIZE: u64 = 16_384;
    let dir = Dir::new();
    let gw = trigger.stack(&dir, 1).start().await;
    let old = wait_ready(&gw, 1, &BTreeMap::new()).await;

    let done = Arc::new(AtomicBool::new(false));
    let url = gw.url(&format!("/download?chunks={CHUNKS}&size={SIZE}&ms=60"));
    let download = tokio::spawn({
        let done = done.clone();
        async move {
            let req = http::Request::get(url)
                .body(body::empty())
                .expect("a request");
            let response = Client::http1().send(req).await.expect("the response head");
            let status = response.status();
            let version = response
                .headers()
                .get("x-version")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned();
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
            done.store(true, Ordering::SeqCst);
            Download {
                status,
                version,
                received,
                ended_ms: now_ms(),
                error,
            }
        }
    });
    gw.wait_in_flight(&["web"], 1).await;
    let before = gw.last_event_seq();
    trigger.roll(&gw, &dir, 1).await;

    // The rollout completes while the download goes on: the new replica is ready and
    // answers new requests.
    wait_ready(&gw, 1, &old).await;
    assert_eq!(version_of_a_new_request(&gw).await, "2");
    let complete_at = now_ms();
    assert!(
        !done.load(Ordering::SeqCst),
        "the download ended before the rollout completed: make it longer"
    );

    let d = download.await.expect("the download task");
    eprintln!(
        "{trigger:?}: download of {} bytes ended {} ms after the rollout completed",
        d.received,
        d.ended_ms - complete_at
    );
    assert_eq!(
        (d.status, d.error.as_deref(), d.version.as_str()),
        (StatusCode::OK, None, "1"),
        "{d:?}"
    );
    assert_eq!(d.received, CHUNKS * SIZE, "every byte: {d:?}");

    // The old replica drained until the download was done, then stopped.
    let stopped = wait_events(&gw, EventKind::Stopped, before, 1).await;
    let (stopped_at, how) = &stopped[&0];
    assert!(!how.contains("drain timeout"), "{how}");
    assert!(
        *stopped_at + 50 >= d.ended_ms,
        "stopped before the download ended"
    );
    let sigterm = dir.sigterm_at(old[&0]).expect("SIGTERM noted");
    assert!(
        sigterm + 50 >= d.ended_ms,
        "SIGTERM {} ms before the download ended",
        d.ended_ms - sigterm
    );
    gw.shutdown().await;
}

/// A drain longer than the progress deadline is not a stalled rollout: with WebSockets
/// open on both replicas, each old one drains for the whole [`DRAIN`] (3 s), which holds
/// the next index back (the surge counts it), and the rollout has a 1 s deadline. It
/// completes, and nothing is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_draining_past_the_progress_deadline_do_not_roll_back() {
    let dir = Dir::new();
    let rollout = "rollout: { max_surge: 1, max_unavailable: 0, progress_deadline: 1s }";
    let gw = stack(&dir, 2, Version::Env(1), rollout).start().await;
    let old = wait_ready(&gw, 2, &BTreeMap::new()).await;
    let sessions = sessions_on_each_replica(&gw, 2, "1").await;

    let before = gw.last_event_seq();
    gw.reload(&stack(&dir, 2, Version::Env(2), rollout))
        .expect("the reload");
    Rolling {
        gw: &gw,
        dir: &dir,
        old,
        sessions,
        before,
        new: "2",
        labels: Some(("v1", "v2")),
        hang_up_first: false,
    }
    .check()
    .await;
    gw.shutdown().await;
}
