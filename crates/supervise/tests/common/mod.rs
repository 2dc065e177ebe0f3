//! The harness shared by the supervisor's end-to-end tests: a recording endpoint sink, a
//! supervisor over a temporary directory with a small `python3` HTTP server, fast
//! policies, and polling helpers (every wait has a deadline; every port comes from the
//! driver). Each test crate uses a part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use shoal_core::{Driver, Endpoint, EndpointSink, Event, EventKind, EventLog, ServiceStatus};
use shoal_supervise::{
    LogPolicy, Probe, Readiness, RestartMode, RestartPolicy, ServiceSpec, StopPolicy, Supervisor,
};
use tokio::time::Instant;

/// Records what the supervisor publishes and lets tests set in-flight counts.
#[derive(Default)]
pub(crate) struct TestSink {
    pub(crate) current: Mutex<HashMap<String, Vec<Endpoint>>>,
    pub(crate) calls: Mutex<Vec<(Instant, String, Vec<Endpoint>)>>,
    pub(crate) in_flight: Mutex<HashMap<String, usize>>,
}

impl EndpointSink for TestSink {
    fn set_endpoints(&self, service: &str, endpoints: Vec<Endpoint>) {
        self.calls
            .lock()
            .unwrap()
            .push((Instant::now(), service.to_owned(), endpoints.clone()));
        self.current
            .lock()
            .unwrap()
            .insert(service.to_owned(), endpoints);
    }
    fn in_flight(&self, _service: &str, key: &str) -> usize {
        self.in_flight
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

impl TestSink {
    pub(crate) fn keys(&self, service: &str) -> Vec<String> {
        let current = self.current.lock().unwrap();
        current
            .get(service)
            .map(|e| e.iter().map(|e| e.key.clone()).collect())
            .unwrap_or_default()
    }
    pub(crate) fn endpoints(&self, service: &str) -> Vec<Endpoint> {
        self.current
            .lock()
            .unwrap()
            .get(service)
            .cloned()
            .unwrap_or_default()
    }
    pub(crate) fn set_in_flight(&self, key: &str, n: usize) {
        self.in_flight.lock().unwrap().insert(key.to_owned(), n);
    }
}

pub(crate) struct Harness {
    pub(crate) sup: Arc<Supervisor>,
    pub(crate) sink: Arc<TestSink>,
    pub(crate) events: Arc<EventLog>,
    pub(crate) dir: tempfile::TempDir,
}

impl Harness {
    pub(crate) fn new() -> Harness {
        Harness::with_logs(|_| {})
    }

    pub(crate) fn with_logs(tune: impl FnOnce(&mut LogPolicy)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(TestSink::default());
        let events = Arc::new(EventLog::new(1000));
        let mut logs = LogPolicy::new(dir.path().join("logs"));
        tune(&mut logs);
        let sup = Supervisor::new(sink.clone(), events.clone(), logs);
        std::fs::write(dir.path().join("server.py"), SERVER_PY).unwrap();
        Harness {
            sup,
            sink,
            events,
            dir,
        }
    }

    /// A python HTTP server replica that waits `delay` seconds before listening.
    pub(crate) fn server(&self, name: &str, replicas: u32) -> ServiceSpec {
        let mut spec = fast(name, vec!["python3".into(), self.server_py()]);
        spec.replicas = replicas;
        spec.readiness.probe = Probe::http("/health");
        spec
    }

    pub(crate) fn server_py(&self) -> String {
        self.dir.path().join("server.py").display().to_string()
    }

    pub(crate) fn status(&self, name: &str) -> Option<ServiceStatus> {
        self.sup.status().into_iter().find(|s| s.name == name)
    }

    pub(crate) fn events_of(&self, kind: EventKind) -> Vec<Event> {
        self.events
            .since(0)
            .into_iter()
            .filter(|e| e.kind == kind)
            .collect()
    }

    pub(crate) async fn shutdown(&self) {
        tokio::time::timeout(Duration::from_secs(20), self.sup.shutdown())
            .await
            .expect("shutdown hangs");
    }
}

pub(crate) const SERVER_PY: &str = r#"
import http.server, os, sys, time
time.sleep(float(os.environ.get("DELAY", "0")))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("%s/%s" % (os.environ["SHOAL_SERVICE"], os.environ["SHOAL_REPLICA"])).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
print("listening on", os.environ["PORT"], flush=True)
server.serve_forever()
"#;

/// Small intervals so the suite stays fast.
pub(crate) fn fast(name: &str, command: Vec<String>) -> ServiceSpec {
    let mut spec = ServiceSpec::new(name, command);
    spec.readiness = Readiness {
        probe: Probe::Tcp,
        interval: Duration::from_millis(50),
        fast_interval: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
        success_threshold: 1,
        failure_threshold: 2,
        start_period: Duration::ZERO,
        start_timeout: Duration::from_secs(20),
        liveness: Some(Duration::from_secs(30)),
    };
    spec.restart = RestartPolicy {
        mode: RestartMode::OnFailure,
        delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(400),
        reset_after: Duration::from_secs(30),
        max_attempts: 5,
        window: Duration::from_secs(60),
    };
    spec.stop = StopPolicy {
        drain_timeout: Duration::from_secs(2),
        grace: Duration::from_secs(2),
    };
    spec
}

pub(crate) fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// Poll `f` until it returns `Some`, or panic after `secs` seconds naming `what`: the
/// shared [`shoal_test_support::eventually`], for this crate's synchronous checks.
pub(crate) async fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let within = Duration::from_secs(secs);
    shoal_test_support::eventually(within, || std::future::ready(f().ok_or(what))).await
}

/// Wait for an event matching `pred`, at most `within`; `None` if none came.
pub(crate) async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<Event>,
    within: Duration,
    pred: impl Fn(&Event) -> bool,
) -> Option<Event> {
    tokio::time::timeout(within, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return Some(e),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

pub(crate) fn get(endpoint: &Endpoint) -> String {
    let mut s = TcpStream::connect(endpoint.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.rsplit("\r\n\r\n").next().unwrap_or_default().to_owned()
}

/// Is `pid` a live (non-zombie) process?
pub(crate) fn alive(pid: u32) -> bool {
    match kill(Pid::from_raw(pid as i32), None) {
        Err(Errno::ESRCH) => false,
        _ => std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s[s.rfind(')').unwrap() + 1..].trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

pub(crate) fn pids(status: &ServiceStatus) -> Vec<u32> {
    status.replicas.iter().filter_map(|r| r.pid).collect()
}
