//! End-to-end tests of rolling updates with real processes: surge and unavailability
//! limits, automatic rollback (a crash, a progress deadline) with its reason, the memory
//! of a rolled-back spec, undo, restart, and scaling during a rollout. Every wait polls
//! with a deadline; every port comes from the driver.
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Harness, alive, eventually, get, pids, sh};
use shoal_core::{
    Driver, DriverError, Event, EventKind, ReplicaState, RolloutState, ServiceState, ServiceStatus,
};
use shoal_supervise::{Amount, ServiceSpec};
use tokio::time::Instant;

/// The harness's HTTP server, labelled `version`.
fn server(h: &Harness, name: &str, replicas: u32, version: &str) -> ServiceSpec {
    let mut spec = h.server(name, replicas);
    spec.version = Some(version.into());
    spec
}

/// Versions of the replicas that have a process, sorted.
fn versions(st: &ServiceStatus) -> Vec<String> {
    let mut v: Vec<String> = st
        .replicas
        .iter()
        .filter(|r| r.pid.is_some())
        .filter_map(|r| r.version.clone())
        .collect();
    v.sort();
    v
}

/// Every replica is on `version`, ready, and the latest rollout is over in `state`.
fn settled(st: &ServiceStatus, version: &str, desired: usize, state: RolloutState) -> bool {
    st.state == ServiceState::Running
        && st.replicas.len() == desired
        && st
            .replicas
            .iter()
            .all(|r| r.version.as_deref() == Some(version) && r.state == ReplicaState::Ready)
        && st.rollout.as_ref().is_some_and(|r| r.state == state)
}

/// `api` once its rollout is rolled back and two `v1` replicas are left.
async fn rolled_back_to_two_v1(h: &Harness) -> ServiceStatus {
    eventually(10, "rolled back", || {
        h.status("api").filter(|s| {
            s.rollout
                .as_ref()
                .is_some_and(|r| r.state == RolloutState::RolledBack)
                && versions(s) == ["v1", "v1"]
        })
    })
    .await
}

/// Events of `service` and `kind` with an id above `after`.
fn events_since(h: &Harness, after: u64, kind: EventKind) -> Vec<Event> {
    h.events
        .since(after)
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

fn last_event_id(h: &Harness) -> u64 {
    h.events.since(0).last().map_or(0, |e| e.seq)
}

/// The fewest endpoints `service` had in the balancer since the sink's call number
/// `from` (taken while it had all of them): the fewest it was given, or, if it was given
/// nothing new, the ones it has.
fn fewest_endpoints(h: &Harness, service: &str, from: usize) -> usize {
    let given = h.sink.calls.lock().unwrap()[from..]
        .iter()
        .filter(|c| c.1 == service)
        .map(|c| c.2.len())
        .min();
    given.unwrap_or_else(|| h.sink.keys(service).len())
}

/// Start `service` with `spec` and wait until all its replicas are in the balancer.
async fn running(h: &Harness, spec: ServiceSpec) -> ServiceStatus {
    let name = spec.name.clone();
    let n = spec.replicas as usize;
    h.sup.apply(vec![spec]).await;
    eventually(15, "every replica ready", || {
        h.status(&name)
            .filter(|s| s.state == ServiceState::Running && h.sink.keys(&name).len() == n)
    })
    .await
}

/// Watches the most processes a service has at once, until stopped.
struct PeakProcesses {
    peak: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakProcesses {
    fn watch(h: &Harness, service: &str) -> PeakProcesses {
        let (peak, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (sup, service) = (h.sup.clone(), service.to_owned());
        let task = tokio::spawn({
            let (peak, stop) = (peak.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(st) = sup.status().into_iter().find(|s| s.name == service) {
                        peak.fetch_max(pids(&st).len(), Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        });
        PeakProcesses { peak, stop, task }
    }

    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.peak.load(Ordering::Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surge_of_2_keeps_every_replica_in_the_balancer_with_at_most_6_processes() {
    let h = Harness::new();
    let mut spec = server(&h, "api", 4, "v1");
    spec.rollout.max_surge = Amount::Count(2);
    spec.rollout.max_unavailable = Amount::Count(0);
    let before = running(&h, spec.clone()).await;
    let from = h.sink.calls.lock().unwrap().len();
    let after = last_event_id(&h);
    let peak = PeakProcesses::watch(&h, "api");

    let mut v2 = spec;
    v2.version = Some("v2".into());
    h.sup.apply(vec![v2]).await;
    let st = eventually(15, "v2 rolled out", || {
        h.status("api")
            .filter(|s| settled(s, "v2", 4, RolloutState::Complete))
    })
    .await;
    let peak = peak.finish().await;

    assert_eq!(
        peak, 6,
        "4 replicas + a surge of 2 at most, and the surge used"
    );
    assert_eq!(
        fewest_endpoints(&h, "api", from),
        4,
        "the balancer lost a replica"
    );
    assert!(pids(&st).iter().all(|p| !pids(&before).contains(p)));
    let rollout = st.rollout.unwrap();
    assert_eq!(
        (rollout.version.as_str(), rollout.previous.as_deref()),
        ("v2", Some("v1"))
    );
    assert_eq!(
        (rollout.updated, rollout.updated_ready, rollout.desired),
        (4, 4, 4)
    );
    let events: Vec<String> = events_since(&h, after, EventKind::Rollout)
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], "v1 -> v2, 4 replicas");
    assert!(
        events[1].starts_with("v1 -> v2 complete: 4 replicas ready in "),
        "{}",
        events[1]
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_unavailable_stops_an_old_replica_before_its_replacement_is_ready() {
    let h = Harness::new();
    let mut spec = server(&h, "api", 2, "v1");
    spec.rollout.max_surge = Amount::Count(0);
    spec.rollout.max_unavailable = Amount::Count(1);
    running(&h, spec.clone()).await;
    let from = h.sink.calls.lock().unwrap().len();
    let after = last_event_id(&h);
    let peak = PeakProcesses::watch(&h, "api");

    let mut v2 = spec;
    v2.version = Some("v2".into());
    // The new version takes a while to listen: an old one is gone meanwhile.
    v2.env.push(("DELAY".into(), "0.3".into()));
    h.sup.apply(vec![v2]).await;
    eventually(15, "v2 rolled out", || {
        h.status("api")
            .filter(|s| settled(s, "v2", 2, RolloutState::Complete))
    })
    .await;
    let peak = peak.finish().await;

    let events = h.events.since(after);
    let first = |kind: EventKind| {
        events
            .iter()
            .position(|e| e.kind == kind && e.replica.is_some())
            .unwrap_or_else(|| panic!("no {kind:?} event: {events:?}"))
    };
    assert!(
        first(EventKind::Draining) < first(EventKind::Ready),
        "an old replica should drain before any new one is ready: {events:?}"
    );
    assert_eq!(
        fewest_endpoints(&h, "api", from),
        1,
        "one replica out at most"
    );
    assert!(peak <= 2, "no surge: {peak} processes");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_exits_at_once_is_rolled_back_with_its_exit_code_and_last_log_line() {
    let h = Harness::new();
    let spec = server(&h, "api", 2, "v1");
    let before = running(&h, spec.clone()).await;
    let old = pids(&before);
    let from = h.sink.calls.lock().unwrap().len();

    let mut broken = spec;
    broken.version = Some("v2".into());
    broken.command = sh("echo starting; echo 'fatal: no database at db:5432' >&2; exit 3");
    broken.restart.max_attempts = 2;
    h.sup.apply(vec![broken]).await;
    let st = rolled_back_to_two_v1(&h).await;

    let back = h.events_of(EventKind::RolledBack);
    assert_eq!(back.len(), 1, "{back:?}");
    let reason = &back[0].message;
    assert!(
        reason.starts_with("v2 rolled back to v1: api/0 failed"),
        "{reason}"
    );
    assert!(reason.contains("exit code 3"), "{reason}");
    assert!(
        reason.contains("last log line: \"fatal: no database at db:5432\""),
        "{reason}"
    );
    let rollout = st.rollout.clone().unwrap();
    assert_eq!(rollout.message.as_deref(), Some(reason.as_str()));
    assert_eq!(
        (rollout.version.as_str(), rollout.previous.as_deref()),
        ("v2", Some("v1"))
    );
    // The old replicas served throughout, and still do.
    assert_eq!(pids(&st), old);
    assert!(old.iter().all(|p| alive(*p)));
    assert_eq!(fewest_endpoints(&h, "api", from), 2);
    for e in h.sink.endpoints("api") {
        assert_eq!(get(&e), e.key);
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_never_ready_is_rolled_back_after_the_progress_deadline() {
    let h = Harness::new();
    let mut spec = server(&h, "api", 2, "v1");
    spec.rollout.progress_deadline = Duration::from_secs(2);
    let before = running(&h, spec.clone()).await;
    let from = h.sink.calls.lock().unwrap().len();

    let mut mute = spec;
    mute.version = Some("v2".into());
    mute.command = sh("echo 'waiting for the database'; exec sleep 30");
    let started = Instant::now();
    h.sup.apply(vec![mute]).await;
    let st = rolled_back_to_two_v1(&h).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2), "rolled back after {took:?}");

    let back = h.events_of(EventKind::RolledBack);
    assert_eq!(back.len(), 1);
    let reason = &back[0].message;
    assert!(
        reason.starts_with("v2 rolled back to v1: no progress for 2s (progress deadline); api/0"),
        "{reason}"
    );
    assert!(reason.contains("not ready yet"), "{reason}");
    assert!(
        reason.contains("last log line: \"waiting for the database\""),
        "{reason}"
    );
    assert_eq!(pids(&st), pids(&before), "the old replicas kept serving");
    assert_eq!(fewest_endpoints(&h, "api", from), 2);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_spec_applied_again_rolls_nothing_until_it_changes() {
    let h = Harness::new();
    let spec = server(&h, "api", 2, "v1");
    running(&h, spec.clone()).await;
    let mut broken = spec.clone();
    broken.version = Some("v2".into());
    broken.command = sh("exit 4");
    broken.restart.max_attempts = 1;
    h.sup.apply(vec![broken.clone()]).await;
    let st = eventually(10, "rolled back", || {
        h.status("api")
            .filter(|s| settled(s, "v1", 2, RolloutState::RolledBack))
    })
    .await;
    let rollouts = h.events_of(EventKind::Rollout).len();

    // A reload of the same file: nothing rolls, nothing is said, the status still says why.
    h.sup.apply(vec![broken.clone()]).await;
    h.sup.apply(vec![broken.clone()]).await;
    let again = h.status("api").unwrap();
    assert_eq!(h.events_of(EventKind::Rollout).len(), rollouts);
    assert_eq!(h.events_of(EventKind::RolledBack).len(), 1);
    assert_eq!(
        again.rollout.as_ref().map(|r| r.state),
        Some(RolloutState::RolledBack)
    );
    assert_eq!(pids(&again), pids(&st));
    // Nor does a new rollout policy alone.
    let mut policy_only = broken.clone();
    policy_only.rollout.max_surge = Amount::Count(2);
    h.sup.apply(vec![policy_only]).await;
    assert_eq!(h.events_of(EventKind::Rollout).len(), rollouts);

    // Any other spec rolls.
    let mut fixed = spec;
    fixed.version = Some("v3".into());
    h.sup.apply(vec![fixed]).await;
    let rollout = h.events_of(EventKind::Rollout);
    assert_eq!(rollout[rollouts].message, "v1 -> v3, 2 replicas");
    eventually(15, "v3 rolled out", || {
        h.status("api")
            .filter(|s| settled(s, "v3", 2, RolloutState::Complete))
    })
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_after_a_completed_rollout_restores_the_previous_version() {
    let h = Harness::new();
    let spec = server(&h, "api", 2, "v1");
    running(&h, spec.clone()).await;
    assert!(
        matches!(h.sup.rollout_undo("api"), Err(DriverError::Invalid(m)) if m.contains("no previous version")),
        "nothing to undo yet"
    );
    assert!(matches!(
        h.sup.rollout_undo("nope"),
        Err(DriverError::UnknownService(_))
    ));
    let mut v2 = spec;
    v2.version = Some("v2".into());
    h.sup.apply(vec![v2.clone()]).await;
    let on_v2 = eventually(15, "v2 rolled out", || {
        h.status("api")
            .filter(|s| settled(s, "v2", 2, RolloutState::Complete))
    })
    .await;
    let from = h.sink.calls.lock().unwrap().len();

    assert_eq!(h.sup.rollout_undo("api").unwrap(), "v1");
    let st = eventually(15, "back on v1", || {
        h.status("api")
            .filter(|s| settled(s, "v1", 2, RolloutState::Complete))
    })
    .await;
    assert!(pids(&st).iter().all(|p| !pids(&on_v2).contains(p)));
    assert_eq!(fewest_endpoints(&h, "api", from), 2);
    let rollout = h.events_of(EventKind::Rollout);
    assert!(
        rollout
            .iter()
            .any(|e| e.message == "v2 -> v1, 2 replicas (undo)"),
        "{rollout:?}"
    );
    let status = st.rollout.unwrap();
    assert_eq!(
        (status.version.as_str(), status.previous.as_deref()),
        ("v1", Some("v2"))
    );
    // The file still names v2: a reload does not redo what was undone.
    let count = rollout.len();
    h.sup.apply(vec![v2]).await;
    assert_eq!(h.events_of(EventKind::Rollout).len(), count);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replaces_every_process_with_the_same_version() {
    let h = Harness::new();
    // No label: the version is a hash of the spec.
    let spec = h.server("api", 3);
    let before = running(&h, spec).await;
    let version = before.replicas[0].version.clone().unwrap();
    assert_eq!(version.len(), 8, "{version}");
    assert!(
        before
            .replicas
            .iter()
            .all(|r| r.version.as_ref() == Some(&version))
    );
    let from = h.sink.calls.lock().unwrap().len();

    assert_eq!(h.sup.rollout_restart("api").unwrap(), version);
    let st = eventually(15, "restarted", || {
        h.status("api").filter(|s| {
            settled(s, &version, 3, RolloutState::Complete)
                && pids(s).iter().all(|p| !pids(&before).contains(p))
        })
    })
    .await;
    assert_eq!(pids(&st).len(), 3);
    assert_eq!(fewest_endpoints(&h, "api", from), 3);
    for pid in pids(&before) {
        eventually(5, "old pid gone", || (!alive(pid)).then_some(())).await;
    }
    let rollout = h.events_of(EventKind::Rollout);
    assert_eq!(
        rollout[0].message,
        format!("{version} -> {version}, 3 replicas (restart)")
    );
    assert!(matches!(
        h.sup.rollout_restart("nope"),
        Err(DriverError::UnknownService(_))
    ));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_during_a_rollout_scales_the_new_version_and_completes() {
    let h = Harness::new();
    let spec = server(&h, "api", 2, "v1");
    running(&h, spec.clone()).await;
    let mut v2 = spec;
    v2.version = Some("v2".into());
    v2.env.push(("DELAY".into(), "0.3".into()));
    h.sup.apply(vec![v2]).await;
    // Mid-rollout: the first new replica is not ready yet.
    let st = h.status("api").unwrap();
    assert_eq!(
        st.rollout.as_ref().map(|r| r.state),
        Some(RolloutState::Progressing)
    );
    h.sup.scale("api", 4).unwrap();
    let st = eventually(15, "4 on v2", || {
        h.status("api")
            .filter(|s| settled(s, "v2", 4, RolloutState::Complete))
    })
    .await;
    let rollout = st.rollout.unwrap();
    assert_eq!(
        (rollout.updated, rollout.updated_ready, rollout.desired),
        (4, 4, 4)
    );
    assert_eq!(h.sink.keys("api").len(), 4);

    // And down, mid-rollout again.
    let mut v3 = server(&h, "api", 4, "v3");
    v3.env.push(("DELAY".into(), "0.3".into()));
    h.sup.apply(vec![v3]).await;
    h.sup.scale("api", 1).unwrap();
    eventually(15, "1 on v3", || {
        h.status("api")
            .filter(|s| settled(s, "v3", 1, RolloutState::Complete))
    })
    .await;
    assert_eq!(h.sink.keys("api"), ["api/0"]);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_during_a_rollout_rolls_it_back_at_once() {
    let h = Harness::new();
    let spec = server(&h, "api", 2, "v1");
    let before = running(&h, spec.clone()).await;
    let mut mute = spec;
    mute.version = Some("v2".into());
    mute.command = sh("exec sleep 30");
    h.sup.apply(vec![mute.clone()]).await;
    eventually(5, "a v2 replica started", || {
        h.status("api").filter(|s| {
            s.replicas
                .iter()
                .any(|r| r.version.as_deref() == Some("v2"))
        })
    })
    .await;

    assert_eq!(h.sup.rollout_undo("api").unwrap(), "v1");
    let back = h.events_of(EventKind::RolledBack);
    assert_eq!(back.len(), 1);
    assert_eq!(
        back[0].message,
        "v2 rolled back to v1: undone (rollout undo)"
    );
    let st = eventually(10, "v1 only", || {
        h.status("api")
            .filter(|s| settled(s, "v1", 2, RolloutState::RolledBack))
    })
    .await;
    assert_eq!(pids(&st), pids(&before), "the old replicas kept serving");
    // Undone is remembered like rolled back.
    let count = h.events_of(EventKind::Rollout).len();
    h.sup.apply(vec![mute]).await;
    assert_eq!(h.events_of(EventKind::Rollout).len(), count);
    h.shutdown().await;
}
