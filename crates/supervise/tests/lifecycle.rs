//! End-to-end tests of the local driver with real processes (`python3` HTTP servers and
//! `sh` crashers). Every wait polls with a deadline; every port comes from the driver.
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Harness, alive, eventually, fast, get, next_event, pids, sh};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use shoal_core::{Driver, DriverError, EventKind, ReplicaState, ServiceState};
use shoal_supervise::{Probe, ServiceKind, ServiceSpec, StopPolicy, log_file};
use tokio::time::Instant;

/// When the process started (clock ticks since boot), to tell a pid from a later process
/// that reused it.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Is the process that had this pid at `started` still alive (and not a zombie)?
fn still_alive(pid: u32, started: u64) -> bool {
    alive(pid) && start_time(pid) == Some(started)
}

/// (pid, ppid, pgrp) of every process.
fn processes() -> Vec<(u32, u32, u32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .collect();
        out.push((pid, f[1].parse().unwrap(), f[2].parse().unwrap()));
    }
    out
}

/// Every process in the groups `pgids`, and every descendant of those.
fn group_and_descendants(pgids: &[u32]) -> BTreeSet<u32> {
    let procs = processes();
    let mut found: BTreeSet<u32> = procs
        .iter()
        .filter(|p| pgids.contains(&p.2))
        .map(|p| p.0)
        .collect();
    loop {
        let more: Vec<u32> = procs
            .iter()
            .filter(|p| found.contains(&p.1) && !found.contains(&p.0))
            .map(|p| p.0)
            .collect();
        if more.is_empty() {
            return found;
        }
        found.extend(more);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_get_distinct_ports_and_join_only_once_ready() {
    let h = Harness::new();
    let mut spec = h.server("users", 3);
    spec.env.push(("DELAY".into(), "1".into()));
    let applied = Instant::now();
    h.sup.apply(vec![spec]).await;

    // Processes exist (pids, ports) while the sink is still empty.
    let st = eventually(5, "3 pids", || {
        h.status("users").filter(|s| pids(s).len() == 3)
    })
    .await;
    assert!(
        h.sink.keys("users").is_empty(),
        "in the sink before listening"
    );
    let ports: BTreeSet<u16> = st.replicas.iter().filter_map(|r| r.port).collect();
    assert_eq!(ports.len(), 3, "ports are distinct: {ports:?}");
    assert!(
        st.replicas
            .iter()
            .all(|r| r.state == ReplicaState::Starting)
    );

    eventually(15, "3 ready endpoints", || {
        (h.sink.keys("users").len() == 3).then_some(())
    })
    .await;
    let first_publish = h
        .sink
        .calls
        .lock()
        .unwrap()
        .iter()
        .find(|c| !c.2.is_empty())
        .unwrap()
        .0;
    assert!(
        first_publish - applied >= Duration::from_secs(1),
        "published before the replica listened"
    );
    let mut keys = h.sink.keys("users");
    keys.sort();
    assert_eq!(keys, ["users/0", "users/1", "users/2"]);
    for e in h.sink.endpoints("users") {
        assert_eq!(get(&e), e.key, "each endpoint is its own replica");
    }
    let st = eventually(5, "running", || {
        h.status("users")
            .filter(|s| s.state == ServiceState::Running)
    })
    .await;
    assert_eq!((st.desired, st.ready), (3, 3));
    assert!(
        st.replicas
            .iter()
            .all(|r| r.uptime_secs > 0.0 && r.restarts == 0)
    );
    assert_eq!(h.events_of(EventKind::Started).len(), 3);
    assert_eq!(h.events_of(EventKind::Ready).len(), 3);
    h.shutdown().await;
    assert!(h.sink.keys("users").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_from_spawn_to_ready_for_a_python_replica() {
    let h = Harness::new();
    let t0 = Instant::now();
    h.sup.apply(vec![h.server("api", 1)]).await;
    eventually(15, "ready", || {
        (h.sink.keys("api").len() == 1).then_some(())
    })
    .await;
    eprintln!(
        "python replica: spawn -> in the balancer in {:?}",
        t0.elapsed()
    );
    let ready = &h.events_of(EventKind::Ready)[0];
    assert!(
        ready.message.starts_with("ready after"),
        "{}",
        ready.message
    );
    // Resource use is sampled every 2 s; CPU needs two samples.
    let r = eventually(10, "resource use sampled", || {
        let r = h.status("api")?.replicas.into_iter().next()?;
        (r.cpu_percent.is_some() && r.rss_bytes.is_some()).then_some(r)
    })
    .await;
    let rss = r.rss_bytes.unwrap();
    assert!(rss > 1 << 20 && rss < 1 << 30, "python's RSS: {rss}");
    assert!(
        r.cpu_percent.unwrap() < 100.0,
        "an idle server: {:?}",
        r.cpu_percent
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_probes_do_not_wait_a_whole_interval() {
    // The first probe, right after spawn, finds nothing listening yet; with a 10 s
    // interval the replica would stay out for 10 s if probes kept that cadence.
    let h = Harness::new();
    let mut spec = h.server("api", 1);
    spec.readiness.interval = Duration::from_secs(10);
    let t0 = Instant::now();
    h.sup.apply(vec![spec]).await;
    eventually(5, "ready well before one interval", || {
        (h.sink.keys("api").len() == 1).then_some(())
    })
    .await;
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_leaves_at_once_and_comes_back_after_backoff() {
    let h = Harness::new();
    let mut spec = h.server("music", 2);
    // A back-off long enough that "out of the sink before it" cannot be a busy machine's
    // scheduling: the removal must come well before the restart.
    spec.restart.delay = Duration::from_secs(2);
    spec.restart.max_delay = Duration::from_secs(2);
    h.sup.apply(vec![spec]).await;
    eventually(15, "2 ready", || {
        (h.sink.keys("music").len() == 2).then_some(())
    })
    .await;
    let victim = h.status("music").unwrap().replicas[0].clone();
    let pid = victim.pid.unwrap();

    let killed = Instant::now();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    eventually(5, "music/0 out of the sink", || {
        (!h.sink.keys("music").contains(&"music/0".to_owned())).then_some(())
    })
    .await;
    let removed = killed.elapsed();
    assert!(
        removed < Duration::from_millis(1500),
        "removed only after {removed:?}: not before the back-off"
    );
    assert_eq!(
        h.sink.keys("music"),
        ["music/1"],
        "the other replica keeps serving"
    );

    let st = eventually(5, "restart counted", || {
        h.status("music").filter(|s| s.replicas[0].restarts == 1)
    })
    .await;
    assert_eq!(
        st.replicas[0].last_exit,
        Some(shoal_core::ExitStatus::Signal(9))
    );
    eventually(15, "music/0 back", || {
        (h.sink.keys("music").len() == 2).then_some(())
    })
    .await;
    let back = killed.elapsed();
    eprintln!("kill -9 -> out of the sink in {removed:?}, back in the sink in {back:?}");
    assert!(
        back >= Duration::from_secs(2),
        "restarted before its back-off"
    );
    let st = h.status("music").unwrap();
    assert_ne!(st.replicas[0].pid, Some(pid));
    let exited = h.events_of(EventKind::Exited);
    assert!(
        exited.iter().any(|e| e.message.starts_with("signal 9")),
        "{exited:?}"
    );
    let restarted = h.events_of(EventKind::Restarted);
    assert_eq!(restarted.len(), 1);
    assert!(
        restarted[0].message.contains("in 2s"),
        "{}",
        restarted[0].message
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_gives_up_and_leaves_other_services_alone() {
    let h = Harness::new();
    let mut crasher = fast("crash", sh("exit 1"));
    crasher.restart.delay = Duration::from_millis(50);
    crasher.restart.max_delay = Duration::from_millis(100);
    crasher.restart.max_attempts = 3;
    let healthy = h.server("healthy", 1);
    let mut rx = h.events.subscribe();
    h.sup.apply(vec![crasher, healthy]).await;

    let st = eventually(10, "crash failed", || {
        h.status("crash")
            .filter(|s| s.state == ServiceState::Failed)
    })
    .await;
    let r = &st.replicas[0];
    assert_eq!((r.state, r.restarts), (ReplicaState::Failed, 3));
    assert_eq!(
        r.message.as_deref(),
        Some("exited 4 times within 60s; last: exit code 1")
    );
    let failed = h.events_of(EventKind::Failed);
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].message,
        "exited 4 times within 60s; last: exit code 1"
    );
    assert_eq!(
        h.events_of(EventKind::Started)
            .iter()
            .filter(|e| e.service == "crash")
            .count(),
        4
    );

    // No further start for a while: the loop has really stopped.
    let again = next_event(&mut rx, Duration::from_millis(600), |e| {
        e.service == "crash" && e.kind == EventKind::Started && e.seq > failed[0].seq
    })
    .await;
    assert!(again.is_none(), "restarted after giving up: {again:?}");
    assert_eq!(h.status("crash").unwrap().replicas[0].restarts, 3);
    eventually(15, "healthy unaffected", || {
        h.status("healthy")
            .filter(|s| s.state == ServiceState::Running)
    })
    .await;

    // Scaling resets a failed service: it tries again.
    h.sup.scale("crash", 1).unwrap();
    let retry = next_event(&mut rx, Duration::from_secs(5), |e| {
        e.service == "crash" && e.kind == EventKind::Started && e.seq > failed[0].seq
    })
    .await;
    assert!(retry.is_some(), "scale did not reset the failed replica");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_command_fails_at_once_without_a_restart_loop() {
    let h = Harness::new();
    h.sup
        .apply(vec![fast(
            "ghost",
            vec!["shoal-no-such-binary-42".into(), "--flag".into()],
        )])
        .await;
    let st = eventually(5, "failed", || {
        h.status("ghost")
            .filter(|s| s.state == ServiceState::Failed)
    })
    .await;
    let r = &st.replicas[0];
    assert_eq!(
        r.message.as_deref(),
        Some("command not found: shoal-no-such-binary-42")
    );
    assert_eq!((r.restarts, r.pid), (0, None));
    let mut rx = h.events.subscribe();
    assert!(
        next_event(&mut rx, Duration::from_millis(300), |e| e.service
            == "ghost")
        .await
        .is_none()
    );
    assert_eq!(h.events_of(EventKind::Failed).len(), 1);
    assert!(h.events_of(EventKind::Started).is_empty());
    assert!(matches!(
        h.sup.scale("nope", 1),
        Err(DriverError::UnknownService(_))
    ));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_never_ready_is_killed_at_start_timeout_and_restarted() {
    let h = Harness::new();
    let mut spec = fast("mute", sh("exec sleep 1000"));
    spec.readiness.start_timeout = Duration::from_millis(300);
    spec.restart.max_attempts = 1;
    spec.stop.grace = Duration::from_millis(500);
    h.sup.apply(vec![spec]).await;

    let st = eventually(10, "failed", || {
        h.status("mute").filter(|s| s.state == ServiceState::Failed)
    })
    .await;
    let exited = h.events_of(EventKind::Exited);
    assert_eq!(exited.len(), 2, "{exited:?}");
    assert_eq!(
        exited[0].message,
        "not ready within 300ms (start timeout): killed (signal 15)"
    );
    assert_eq!(h.events_of(EventKind::Restarted).len(), 1);
    assert_eq!(st.replicas[0].restarts, 1);
    assert!(
        st.replicas[0]
            .message
            .as_deref()
            .unwrap()
            .contains("not ready within 300ms")
    );
    // Both processes are gone.
    for started in h.events_of(EventKind::Started) {
        let pid: u32 = started
            .message
            .split(',')
            .next()
            .unwrap()
            .trim_start_matches("pid ")
            .parse()
            .unwrap();
        assert!(!alive(pid), "pid {pid} survived its start timeout");
    }
    assert!(h.sink.keys("mute").is_empty());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_changes_the_live_set() {
    let h = Harness::new();
    h.sup.apply(vec![h.server("social", 2)]).await;
    eventually(15, "2 ready", || {
        (h.sink.keys("social").len() == 2).then_some(())
    })
    .await;

    h.sup.scale("social", 5).unwrap();
    eventually(15, "5 ready", || {
        (h.sink.keys("social").len() == 5).then_some(())
    })
    .await;
    let st = eventually(5, "running 5", || {
        h.status("social")
            .filter(|s| s.state == ServiceState::Running)
    })
    .await;
    assert_eq!((st.desired, st.ready, st.replicas.len()), (5, 5, 5));
    let all_pids = pids(&st);

    h.sup.scale("social", 1).unwrap();
    eventually(10, "1 in the sink", || {
        (h.sink.keys("social") == ["social/0"]).then_some(())
    })
    .await;
    let st = eventually(10, "4 stopped", || {
        h.status("social").filter(|s| s.replicas.len() == 1)
    })
    .await;
    assert_eq!(
        (st.desired, st.ready, st.state),
        (1, 1, ServiceState::Running)
    );
    assert_eq!(st.replicas[0].pid, Some(all_pids[0]), "replica 0 kept");
    for pid in &all_pids[1..] {
        assert!(!alive(*pid), "scaled-down pid {pid} still alive");
    }
    let scaled: Vec<String> = h
        .events_of(EventKind::Scaled)
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(scaled, ["0 -> 2", "2 -> 5", "5 -> 1"]);
    // Highest indexes go first.
    let mut stopped: Vec<u32> = h
        .events_of(EventKind::Draining)
        .iter()
        .filter_map(|e| e.replica)
        .collect();
    stopped.sort_unstable();
    assert_eq!(stopped, [1, 2, 3, 4], "the highest indexes go");

    // The autoscaler's way: its reason is the change's one event.
    h.sup
        .scale_announced("social", 0, "autoscaler: 1 → 0: idle")
        .unwrap();
    let st = eventually(10, "stopped", || {
        h.status("social").filter(|s| s.replicas.is_empty())
    })
    .await;
    assert_eq!(st.state, ServiceState::Stopped);
    assert!(h.sink.keys("social").is_empty());
    let scaled: Vec<String> = h
        .events_of(EventKind::Scaled)
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(
        scaled,
        ["0 -> 2", "2 -> 5", "5 -> 1", "autoscaler: 1 → 0: idle"]
    );
    // Asking for the count it has is no change and no event.
    h.sup
        .scale_announced("social", 0, "autoscaler: 0 → 0")
        .unwrap();
    assert_eq!(h.events_of(EventKind::Scaled).len(), 4);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_process_behind() {
    let h = Harness::new();
    let script = format!("sleep 1000 & exec python3 {}", h.server_py());
    let mut spec = fast("tree", sh(&script));
    spec.replicas = 2;
    // A SIGTERM-proof service too: grace expires, SIGKILL follows.
    let mut stubborn = fast(
        "stubborn",
        sh("trap '' TERM; sleep 1000 & while :; do sleep 0.1; done"),
    );
    stubborn.stop.grace = Duration::from_millis(300);
    stubborn.readiness.start_timeout = Duration::from_secs(60);
    h.sup.apply(vec![spec, stubborn]).await;
    eventually(15, "2 ready", || {
        (h.sink.keys("tree").len() == 2).then_some(())
    })
    .await;
    let st = eventually(5, "stubborn running", || {
        h.status("stubborn").filter(|s| pids(s).len() == 1)
    })
    .await;

    let mut pgids = pids(&h.status("tree").unwrap());
    pgids.extend(pids(&st));
    let before = eventually(5, "grandchildren visible", || {
        let found = group_and_descendants(&pgids);
        (found.len() >= 2 * pgids.len()).then_some(found)
    })
    .await;

    let stamped: Vec<(u32, u64)> = before
        .iter()
        .filter_map(|p| start_time(*p).map(|t| (*p, t)))
        .collect();

    let t = Instant::now();
    h.shutdown().await;
    eprintln!(
        "shutdown of {} processes took {:?}",
        before.len(),
        t.elapsed()
    );
    // Short-lived children (`sleep 0.1`) exit on their own and their pids can be reused by
    // unrelated processes on a busy machine: compare start times, not just pids. Group
    // members other than the reaped leader may take a moment to act on their SIGKILL.
    eventually(3, "every process of the replicas gone", || {
        let left: Vec<u32> = stamped
            .iter()
            .filter(|(pid, started)| still_alive(*pid, *started))
            .map(|(pid, _)| *pid)
            .collect();
        left.is_empty().then_some(())
    })
    .await;
    assert!(h.sink.keys("tree").is_empty());
    assert!(h.sup.status().is_empty());
    assert!(h.sup.scale("tree", 1).is_err(), "no scaling after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_waits_for_in_flight_requests_up_to_the_timeout() {
    let h = Harness::new();
    let mut spec = h.server("drain", 2);
    spec.stop.drain_timeout = Duration::from_millis(600);
    h.sup.apply(vec![spec]).await;
    eventually(15, "2 ready", || {
        (h.sink.keys("drain").len() == 2).then_some(())
    })
    .await;
    let mut rx = h.events.subscribe();

    // Replica 1 has a request in flight until the test says otherwise.
    h.sink.set_in_flight("drain/1", 1);
    h.sup.scale("drain", 1).unwrap();
    next_event(&mut rx, Duration::from_secs(5), |e| {
        e.kind == EventKind::Draining
    })
    .await
    .unwrap();
    assert_eq!(
        h.sink.keys("drain"),
        ["drain/0"],
        "left the balancer before draining"
    );
    let early = next_event(&mut rx, Duration::from_millis(300), |e| {
        e.kind == EventKind::Stopped
    })
    .await;
    assert!(early.is_none(), "stopped while a request was in flight");
    let pid = h.status("drain").unwrap().replicas[1].pid.unwrap();
    assert!(alive(pid));
    h.sink.set_in_flight("drain/1", 0);
    let stopped = next_event(&mut rx, Duration::from_secs(5), |e| {
        e.kind == EventKind::Stopped
    })
    .await
    .unwrap();
    assert!(
        !stopped.message.contains("drain timeout"),
        "{}",
        stopped.message
    );

    // Replica 0 never finishes its request: the drain ends at drain_timeout.
    h.sink.set_in_flight("drain/0", 1);
    let t = Instant::now();
    h.sup.scale("drain", 0).unwrap();
    let stopped = next_event(&mut rx, Duration::from_secs(5), |e| {
        e.kind == EventKind::Stopped
    })
    .await
    .unwrap();
    let took = t.elapsed();
    assert!(
        stopped.message.contains("drain timeout with 1 in flight"),
        "{}",
        stopped.message
    );
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(3),
        "{took:?}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_goes_to_rotated_log_files() {
    let h = Harness::with_logs(|l| {
        l.max_bytes = 1000;
        l.keep = 2;
    });
    let script = "i=0; while [ $i -lt 70 ]; do echo \"line $i padding-padding-padding\"; i=$((i+1)); done; \
                  echo to-stderr >&2; echo after; exec sleep 1000";
    h.sup.apply(vec![fast("chatty", sh(script))]).await;
    let path = log_file(&h.dir.path().join("logs"), "chatty", 0);
    assert!(path.ends_with("logs/chatty.0.log"));
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    let all = || {
        [path.clone(), rotated(1), rotated(2)]
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .concat()
    };
    // stdout and stderr are separate pipes: their lines interleave in no fixed order.
    eventually(10, "all output logged", || {
        let text = all();
        (text.contains("line 69 ") && text.contains("to-stderr\n") && text.contains("after\n"))
            .then_some(())
    })
    .await;
    assert!(rotated(1).exists() && rotated(2).exists() && !rotated(3).exists());
    let total: u64 = [path.clone(), rotated(1), rotated(2)]
        .iter()
        .map(|p| file_len(p))
        .sum();
    assert!(total <= 3 * 1000, "{total}");
    let live = std::fs::read_to_string(&path).unwrap();
    let newest_old = std::fs::read_to_string(rotated(1)).unwrap();
    assert!(
        live.contains("line 69 ") && !newest_old.contains("line 69 "),
        ".1 holds older lines"
    );
    h.shutdown().await;
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_spec_rolls_replicas_without_emptying_the_balancer() {
    let h = Harness::new();
    let spec = h.server("roll", 2);
    h.sup.apply(vec![spec.clone()]).await;
    eventually(15, "2 ready", || {
        (h.sink.keys("roll").len() == 2).then_some(())
    })
    .await;
    let old = pids(&h.status("roll").unwrap());
    let from = h.sink.calls.lock().unwrap().len();

    let mut changed = spec;
    changed.env.push(("VERSION".into(), "2".into()));
    h.sup.apply(vec![changed]).await;
    let st = eventually(20, "rolled", || {
        h.status("roll").filter(|s| {
            s.replicas.len() == 2
                && s.state == ServiceState::Running
                && pids(s).iter().all(|p| !old.contains(p))
        })
    })
    .await;
    assert_eq!(st.ready, 2);
    for pid in old {
        eventually(5, "old pid gone", || (!alive(pid)).then_some(())).await;
    }
    let emptied = h.sink.calls.lock().unwrap()[from..]
        .iter()
        .any(|c| c.1 == "roll" && c.2.is_empty());
    assert!(!emptied, "the balancer was emptied during the roll");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_readiness_check_takes_a_replica_out_and_back() {
    let h = Harness::new();
    // Healthy while the flag file is absent.
    let flag = h.dir.path().join("sick");
    let script = format!(
        "import http.server,os\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       self.send_response(503 if os.path.exists({flag:?}) else 200); self.end_headers()\n\
         \x20   def log_message(self,*a): pass\n\
         http.server.HTTPServer(('127.0.0.1',int(os.environ['PORT'])),H).serve_forever()\n",
        flag = flag.display().to_string()
    );
    let mut spec = fast("flaky", vec!["python3".into(), "-c".into(), script]);
    spec.readiness.probe = Probe::http("/health");
    spec.readiness.success_threshold = 2;
    h.sup.apply(vec![spec]).await;
    eventually(15, "ready", || {
        (h.sink.keys("flaky").len() == 1).then_some(())
    })
    .await;
    std::fs::write(&flag, "").unwrap();
    eventually(5, "unready", || {
        h.sink.keys("flaky").is_empty().then_some(())
    })
    .await;
    let unready = h.events_of(EventKind::Unready);
    assert!(
        unready[0].message.contains("HTTP status 503"),
        "{}",
        unready[0].message
    );
    assert_eq!(
        h.status("flaky").unwrap().replicas[0].restarts,
        0,
        "unready is not a restart"
    );
    std::fs::remove_file(&flag).unwrap();
    eventually(5, "back", || {
        (h.sink.keys("flaky").len() == 1).then_some(())
    })
    .await;
    assert_eq!(h.events_of(EventKind::Ready).len(), 2);
    h.shutdown().await;
}

/// A worker with `fast`'s policies: no port, no probe.
fn worker(name: &str, command: Vec<String>) -> ServiceSpec {
    let mut spec = fast(name, command);
    spec.kind = ServiceKind::Worker;
    spec
}

impl Harness {
    /// The text of replica `index`'s log file.
    fn log(&self, service: &str, index: u32) -> String {
        std::fs::read_to_string(log_file(&self.dir.path().join("logs"), service, index))
            .unwrap_or_default()
    }

    /// Whether the sink was ever told about `service`.
    fn published(&self, service: &str) -> bool {
        self.sink
            .calls
            .lock()
            .unwrap()
            .iter()
            .any(|(_, s, _)| s == service)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_ready_once_running_and_never_an_endpoint() {
    let h = Harness::new();
    let mut spec = worker(
        "jobs",
        sh("echo port=${PORT-none} replica=$SHOAL_REPLICA; exec sleep 1000"),
    );
    spec.replicas = 2;
    // A probe that could never pass and a start timeout shorter than the test: neither
    // applies to a worker.
    spec.readiness.probe = Probe::http("/never");
    spec.readiness.start_timeout = Duration::from_millis(200);
    let mut rx = h.events.subscribe();
    h.sup.apply(vec![spec, h.server("web", 1)]).await;
    let st = eventually(10, "2 workers running", || {
        h.status("jobs")
            .filter(|s| s.ready == 2 && s.state == ServiceState::Running)
    })
    .await;
    for r in &st.replicas {
        assert_eq!(r.state, ReplicaState::Ready);
        assert!(r.pid.is_some());
        assert_eq!((r.port, &r.endpoint), (None, &None), "no port, no endpoint");
    }
    let started: Vec<_> = h
        .events_of(EventKind::Started)
        .into_iter()
        .filter(|e| e.service == "jobs")
        .collect();
    assert_eq!(started.len(), 2);
    assert!(
        started
            .iter()
            .all(|e| e.message.starts_with("pid ") && !e.message.contains("port")),
        "{started:?}"
    );
    let ready = h.events_of(EventKind::Ready);
    assert!(
        ready
            .iter()
            .any(|e| e.service == "jobs" && e.message == "running (a worker is ready once started)"),
        "{ready:?}"
    );
    eventually(5, "output logged", || {
        (h.log("jobs", 0) == "port=none replica=0\n" && h.log("jobs", 1) == "port=none replica=1\n")
            .then_some(())
    })
    .await;
    // Past the start timeout it still runs: nothing was probed, nothing killed it.
    let exited = next_event(&mut rx, Duration::from_millis(600), |e| {
        e.service == "jobs" && e.kind == EventKind::Exited
    })
    .await;
    assert!(exited.is_none(), "{exited:?}");

    // Scaled like any service; the sink hears of the web service only.
    h.sup.scale("jobs", 3).unwrap();
    eventually(10, "3 workers", || {
        h.status("jobs")
            .filter(|s| s.ready == 3 && s.state == ServiceState::Running)
    })
    .await;
    h.sup.scale("jobs", 1).unwrap();
    eventually(10, "1 worker left", || {
        h.status("jobs")
            .filter(|s| s.ready == 1 && s.replicas.len() == 1)
    })
    .await;
    eventually(15, "web ready", || {
        (h.sink.keys("web").len() == 1).then_some(())
    })
    .await;
    h.shutdown().await;
    assert!(!h.published("jobs"), "a worker reached the balancer");
    assert!(h.published("web"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_gets_sigterm_at_once_and_its_grace_to_finish() {
    let h = Harness::new();
    // On SIGTERM it finishes the message in hand (0.3 s), acks it and exits 0.
    let mut polite = worker(
        "polite",
        sh(
            "trap 'echo finishing; sleep 0.3; echo acked; exit 0' TERM; echo up; \
            while :; do sleep 0.05; done",
        ),
    );
    polite.stop = StopPolicy {
        drain_timeout: Duration::from_secs(30),
        grace: Duration::from_secs(5),
    };
    let mut stubborn = worker(
        "stubborn",
        sh("trap '' TERM; echo up; while :; do sleep 0.05; done"),
    );
    stubborn.stop = StopPolicy {
        drain_timeout: Duration::from_secs(30),
        grace: Duration::from_millis(300),
    };
    h.sup.apply(vec![polite, stubborn]).await;
    eventually(10, "both trapping SIGTERM", || {
        (h.log("polite", 0) == "up\n" && h.log("stubborn", 0) == "up\n").then_some(())
    })
    .await;
    // In-flight requests are a web replica's: a count for the worker's key is never
    // asked for, and its drain timeout (30 s) does not apply.
    h.sink.set_in_flight("polite/0", 1);
    let mut rx = h.events.subscribe();

    let t = Instant::now();
    h.sup.scale("polite", 0).unwrap();
    let draining = next_event(&mut rx, Duration::from_secs(5), |e| {
        e.service == "polite" && e.kind == EventKind::Draining
    })
    .await
    .unwrap();
    assert_eq!(
        draining.message,
        "SIGTERM; up to 5s to finish before SIGKILL"
    );
    let stopped = next_event(&mut rx, Duration::from_secs(5), |e| {
        e.service == "polite" && e.kind == EventKind::Stopped
    })
    .await
    .unwrap();
    let took = t.elapsed();
    assert_eq!(stopped.message, "exit code 0");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // (The shell may also report its `sleep` killed by the group's SIGTERM, on stderr.)
    // Its last lines reach the log file after the exit is seen: the log writer drains the
    // pipe on its own task.
    eventually(5, "the worker's last lines in its log", || {
        let log = h.log("polite", 0);
        (log.contains("\nfinishing\n") && log.contains("\nacked\n")).then_some(())
    })
    .await;

    // One that ignores SIGTERM is killed when its grace is over.
    let t = Instant::now();
    h.sup.scale("stubborn", 0).unwrap();
    let stopped = next_event(&mut rx, Duration::from_secs(5), |e| {
        e.service == "stubborn" && e.kind == EventKind::Stopped
    })
    .await
    .unwrap();
    let took = t.elapsed();
    assert_eq!(stopped.message, "signal 9");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_worker_is_restarted_after_its_backoff() {
    let h = Harness::new();
    let marker = h.dir.path().join("crashed-once");
    let script = format!(
        "if [ -e {m} ]; then echo second; exec sleep 1000; else touch {m}; echo first; exit 3; fi",
        m = marker.display()
    );
    let mut spec = worker("flaky", sh(&script));
    spec.restart.delay = Duration::from_millis(200);
    h.sup.apply(vec![spec]).await;
    let st = eventually(10, "running again after one restart", || {
        h.status("flaky")
            .filter(|s| s.ready == 1 && s.replicas[0].restarts == 1)
    })
    .await;
    assert_eq!(
        st.replicas[0].last_exit,
        Some(shoal_core::ExitStatus::Code(3))
    );
    let restarted = h.events_of(EventKind::Restarted);
    assert_eq!(restarted.len(), 1);
    assert_eq!(restarted[0].message, "restart 1 in 200ms after exit code 3");
    eventually(5, "both runs logged", || {
        (h.log("flaky", 0) == "first\nsecond\n").then_some(())
    })
    .await;

    // A changed spec rolls it like any service: the new one runs, then the old one stops.
    let mut changed = worker("flaky", sh(&script));
    changed.env.push(("VERSION".into(), "2".into()));
    let before = h.status("flaky").unwrap().replicas[0].pid;
    h.sup.apply(vec![changed]).await;
    eventually(10, "rolled", || {
        h.status("flaky")
            .filter(|s| s.replicas.len() == 1 && s.ready == 1 && s.replicas[0].pid != before)
    })
    .await;
    h.shutdown().await;
    assert!(!h.published("flaky"));
}
