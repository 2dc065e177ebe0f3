//! Memory and CPU limits of local replicas, with real processes. Where this machine gives
//! shoal no cgroup for a controller, the cgroup assertions are skipped with the reason
//! printed; the rlimit path is tested in the `limits` module's unit tests, always.
mod common;

use common::{Harness, eventually, fast};
use shoal_core::{EventKind, ReplicaState};
use shoal_supervise::{ResourceLimits, RestartMode, ServiceSpec, enforcement, log_file};

fn worker(name: &str, script: &str, limits: ResourceLimits) -> ServiceSpec {
    let mut spec = fast(name, vec!["python3".into(), "-c".into(), script.into()]);
    spec.kind = shoal_supervise::ServiceKind::Worker;
    spec.restart.mode = RestartMode::No;
    spec.limits = limits;
    spec
}

/// Over its memory limit, a replica is killed by the kernel and shows `OOM` in its
/// status message and in the `exited` event.
#[tokio::test]
async fn a_replica_over_its_memory_limit_shows_oom() {
    let limits = ResourceLimits {
        memory_bytes: Some(64 << 20),
        cpu_millis: None,
    };
    if let Err(why) = enforcement(&limits) {
        println!("SKIPPED: no memory cgroup on this machine: {why}");
        return;
    }
    let h = Harness::new();
    // 8 MiB at a time, touched, up to 400 MiB: far past the limit.
    let script = "import time\nb = []\nfor i in range(50):\n    b.append(bytearray(8 << 20))\nprint('survived', flush=True)\ntime.sleep(30)";
    h.sup.apply(vec![worker("hog", script, limits)]).await;
    let message = eventually(20, "hog exits", || {
        let r = h.status("hog")?.replicas.into_iter().next()?;
        (r.state == ReplicaState::Exited).then_some(r.message.unwrap_or_default())
    })
    .await;
    assert!(
        message.starts_with("OOM: killed by the kernel"),
        "{message}"
    );
    assert!(message.contains("signal 9"), "{message}");
    let exited = h.events_of(EventKind::Exited);
    assert!(
        exited.iter().any(|e| e.message.starts_with("OOM")),
        "{exited:?}"
    );
    let scaled = h.events_of(EventKind::Scaled);
    assert!(
        scaled
            .iter()
            .any(|e| e.message.contains("limits: memory 64MiB (cgroup")),
        "{scaled:?}"
    );
    h.shutdown().await;
}

/// The same program under a generous limit runs on, and nothing says OOM.
#[tokio::test]
async fn a_replica_under_its_memory_limit_runs() {
    let limits = ResourceLimits {
        memory_bytes: Some(256 << 20),
        cpu_millis: None,
    };
    let h = Harness::new();
    let script = "import time\nb = [bytearray(8 << 20) for i in range(4)]\nprint('survived', flush=True)\ntime.sleep(30)";
    h.sup.apply(vec![worker("ok", script, limits)]).await;
    let path = log_file(&h.dir.path().join("logs"), "ok", 0);
    eventually(20, "it allocated", || {
        std::fs::read_to_string(&path)
            .ok()
            .filter(|t| t.contains("survived"))
    })
    .await;
    let r = h.status("ok").unwrap().replicas.remove(0);
    assert_eq!(r.state, ReplicaState::Ready, "{r:?}");
    assert!(h.events_of(EventKind::Exited).is_empty());
    h.shutdown().await;
}

/// `cpu: 0.2`: a busy loop gets about a fifth of a core.
#[tokio::test]
async fn a_cpu_limit_throttles_a_busy_loop() {
    let limits = ResourceLimits {
        memory_bytes: None,
        cpu_millis: Some(200),
    };
    if let Err(why) = enforcement(&limits) {
        println!("SKIPPED: no cpu cgroup on this machine: {why}");
        return;
    }
    let h = Harness::new();
    // Spin for 1.5 s of wall time, then say how much CPU that took.
    let script = "import time\nend = time.monotonic() + 1.5\nwhile time.monotonic() < end: pass\nprint('cpu', time.process_time(), flush=True)\ntime.sleep(30)";
    h.sup.apply(vec![worker("spin", script, limits)]).await;
    let path = log_file(&h.dir.path().join("logs"), "spin", 0);
    let cpu: f64 = eventually(20, "the loop reports", || {
        let text = std::fs::read_to_string(&path).ok()?;
        let line = text.lines().find(|l| l.contains("cpu "))?;
        line.rsplit(' ').next()?.parse().ok()
    })
    .await;
    println!("CPU used in 1.5 s of wall time at cpu 0.2: {cpu:.2} s");
    // Unthrottled it would be ~1.5 s; at 0.2 of a core ~0.3 s (+ start-up, jitter).
    assert!(cpu < 0.6, "not throttled: {cpu} s");
    h.shutdown().await;
}
