//! Liveness end to end, with real processes: a hung replica (SIGSTOP) leaves the balancer
//! as `unready`, then, once its check has failed for the liveness bound, its process group
//! is killed and the restart policy brings it back. A replica that recovers in time, one
//! that fails only now and then, and one with liveness off are never restarted. Every wait
//! polls with a deadline; every port comes from the driver.
mod common;

use std::time::Duration;

use common::{Harness, alive, eventually, sh};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use shoal_core::{EventKind, ExitStatus, ReplicaState, ReplicaStatus};
use shoal_supervise::{Probe, ServiceSpec};
use tokio::time::Instant;

/// A python server (HTTP check on `/health`) whose probes time out after 200 ms, killed
/// once its check has failed for `liveness`.
fn hangable(h: &Harness, name: &str, liveness: Option<Duration>) -> ServiceSpec {
    let mut spec = h.server(name, 1);
    spec.readiness.timeout = Duration::from_millis(200);
    spec.readiness.liveness = liveness;
    spec
}

fn replica(h: &Harness, name: &str) -> ReplicaStatus {
    h.status(name).unwrap().replicas[0].clone()
}

async fn ready_pid(h: &Harness, name: &str) -> u32 {
    eventually(15, "ready", || {
        let r = replica(h, name);
        (r.state == ReplicaState::Ready && h.sink.keys(name).len() == 1)
            .then_some(r.pid)
            .flatten()
    })
    .await
}

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(pid as i32), signal).unwrap();
}

/// SIGSTOP the replica; wait until it is out of the balancer as `unready`, and return how
/// long that took.
async fn hang(h: &Harness, name: &str, pid: u32) -> Duration {
    let stopped = Instant::now();
    signal(pid, Signal::SIGSTOP);
    let r = eventually(5, "unready and out of the balancer", || {
        let r = replica(h, name);
        (r.state == ReplicaState::Unready && h.sink.keys(name).is_empty()).then_some(r)
    })
    .await;
    let left = stopped.elapsed();
    assert_eq!(
        r.pid,
        Some(pid),
        "still the same process, only out of rotation"
    );
    let message = r.message.unwrap_or_default();
    assert!(
        message.starts_with("readiness failed 2 times: ") && message.contains("timed out"),
        "{message}"
    );
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_replica_is_unready_then_killed_and_restarted_after_the_liveness_bound() {
    let h = Harness::new();
    let bound = Duration::from_secs(2);
    // A forked child in the replica's group: the kill must take it too.
    let child_pid = h.dir.path().join("child.pid");
    let mut spec = hangable(&h, "web", Some(bound));
    spec.command = sh(&format!(
        "sleep 1000 & echo $! > {}; exec python3 {}",
        child_pid.display(),
        h.server_py()
    ));
    h.sup.apply(vec![spec]).await;
    let pid = ready_pid(&h, "web").await;
    let forked: u32 = eventually(5, "the forked child's pid", || {
        std::fs::read_to_string(&child_pid)
            .ok()?
            .trim()
            .parse()
            .ok()
    })
    .await;
    let mut events = h.events.subscribe();

    let stopped = Instant::now();
    let left = hang(&h, "web", pid).await;
    // 50 ms interval + 2 × (200 ms timeout + 50 ms) ≈ 0.55 s, with scheduling slack.
    assert!(left < Duration::from_secs(2), "left after {left:?}");
    assert_eq!(replica(&h, "web").restarts, 0, "unready is not a restart");
    let message = replica(&h, "web").message.unwrap_or_default();
    assert!(
        message.ends_with("restarted if still failing 2s after the first failure (liveness)"),
        "{message}"
    );

    let exited = common::next_event(&mut events, Duration::from_secs(10), |e| {
        e.kind == EventKind::Exited
    })
    .await
    .expect("no exit: the hung replica was never killed");
    let killed_after = stopped.elapsed();
    assert!(
        exited
            .message
            .starts_with("health check failing for 2s (liveness): timed out"),
        "{}",
        exited.message
    );
    assert!(
        exited.message.ends_with("killed (signal 9)"),
        "{}",
        exited.message
    );
    // Not before the bound (the first failed probe comes after the stop), and soon after.
    assert!(
        killed_after >= bound && killed_after < bound + Duration::from_secs(2),
        "killed {killed_after:?} after SIGSTOP, bound {bound:?}"
    );
    eventually(5, "the whole group gone", || {
        (!alive(pid) && !alive(forked)).then_some(())
    })
    .await;

    // A failed exit like any other: the back-off, then a new process that serves.
    let restarted = common::next_event(&mut events, Duration::from_secs(5), |e| {
        e.kind == EventKind::Restarted
    })
    .await
    .expect("not restarted");
    assert!(
        restarted
            .message
            .starts_with("restart 1 in 100ms after health check failing for 2s (liveness)"),
        "{}",
        restarted.message
    );
    let new_pid = ready_pid(&h, "web").await;
    assert_ne!(new_pid, pid);
    eprintln!(
        "SIGSTOP → out of the balancer {left:?}, → killed {killed_after:?}, → serving again {:?}",
        stopped.elapsed()
    );
    let r = replica(&h, "web");
    assert_eq!((r.restarts, r.last_exit), (1, Some(ExitStatus::Signal(9))));

    // Hung again soon after its start: it had worked for well under `reset_after`, so the
    // back-off doubles, as for a crash loop.
    hang(&h, "web", new_pid).await;
    let again = common::next_event(&mut events, Duration::from_secs(10), |e| {
        e.kind == EventKind::Restarted
    })
    .await
    .expect("not restarted a second time");
    assert!(
        again
            .message
            .starts_with("restart 2 in 200ms after health check failing"),
        "{}",
        again.message
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_recovers_within_the_bound_is_not_restarted() {
    let h = Harness::new();
    h.sup
        .apply(vec![hangable(&h, "web", Some(Duration::from_secs(4)))])
        .await;
    let pid = ready_pid(&h, "web").await;
    let stopped = Instant::now();
    hang(&h, "web", pid).await;
    signal(pid, Signal::SIGCONT);
    // Back in the balancer, the same process: the pass ended the run of failures.
    assert_eq!(ready_pid(&h, "web").await, pid);
    // Past the bound counted from the stop: a stale failure count would kill it now.
    while stopped.elapsed() < Duration::from_millis(4500) {
        let r = replica(&h, "web");
        assert_eq!((r.pid, r.restarts), (Some(pid), 0), "{r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        h.events
            .since(0)
            .iter()
            .all(|e| e.kind != EventKind::Exited)
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_check_fails_now_and_then_is_never_restarted() {
    let h = Harness::new();
    // Three checks in four fail: out of the balancer and back, over and over, but never a
    // continuous run of failures as long as the bound.
    let script = h.dir.path().join("flaky.py");
    std::fs::write(
        &script,
        r#"
import http.server, os
n = 0
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global n
        n += 1
        self.send_response(200 if n % 4 == 0 else 500)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#,
    )
    .unwrap();
    let mut spec = hangable(&h, "flaky", Some(Duration::from_secs(1)));
    spec.command = vec!["python3".into(), script.display().to_string()];
    spec.readiness.probe = Probe::http("/health");
    h.sup.apply(vec![spec]).await;
    let pid = ready_pid(&h, "flaky").await;
    let watched = Instant::now();
    let mut saw_unready = false;
    while watched.elapsed() < Duration::from_secs(2) {
        let r = replica(&h, "flaky");
        assert_eq!((r.pid, r.restarts), (Some(pid), 0), "{r:?}");
        saw_unready |= r.state == ReplicaState::Unready;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        saw_unready,
        "the failures took it out of the balancer at times"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_liveness_off_a_hung_replica_stays_unready() {
    let h = Harness::new();
    h.sup.apply(vec![hangable(&h, "web", None)]).await;
    let pid = ready_pid(&h, "web").await;
    let stopped = Instant::now();
    hang(&h, "web", pid).await;
    while stopped.elapsed() < Duration::from_secs(2) {
        let r = replica(&h, "web");
        assert_eq!(
            (r.state, r.pid, r.restarts),
            (ReplicaState::Unready, Some(pid), 0)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let message = replica(&h, "web").message.unwrap_or_default();
    assert!(!message.contains("liveness"), "{message}");
    signal(pid, Signal::SIGCONT);
    assert_eq!(ready_pid(&h, "web").await, pid);
    h.shutdown().await;
}
