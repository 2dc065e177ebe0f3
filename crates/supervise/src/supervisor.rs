//! The [`Supervisor`]: desired services in, replica runners out.
//!
//! The supervisor keeps, per service, the spec, the desired count and one
//! [`ReplicaHandle`] per index; every change (apply, scale, shutdown) is a short,
//! synchronous edit of that table under one lock, which starts runners or asks them to
//! stop. The slow parts — draining, grace periods, back-offs, readiness — happen in the
//! runners, never under the lock. A replica being stopped moves to a *retiring* list
//! until its runner reports its process group reaped, so `status()` still shows it
//! draining and `shutdown()` can wait for it.
//!
//! Changing a service's spec (anything but `replicas`) rolls it: for each index in turn,
//! start the new incarnation, wait until it is ready (its endpoint then takes over the
//! index's key in the balancer), then drain and stop the old one. If the new incarnation
//! fails instead, the old one is kept and the roll stops with a `failed` event.
//!
//! A background sampler walks `/proc` every [`SAMPLE_EVERY`] and records each running
//! replica group's CPU and memory.
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use shoal_core::{
    BoxFuture, Driver, DriverError, EndpointSink, EventKind, EventLog, ReplicaState, ServiceState,
    ServiceStatus,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::replica::{ReadySet, ReplicaHandle, Shared, wait_done};
use crate::spec::{LogPolicy, ServiceSpec};

/// Period of the CPU/memory sampler.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Runs the replicas of every service as local processes. See the crate docs.
pub struct Supervisor {
    me: Weak<Supervisor>,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    next_id: AtomicU64,
    table: Mutex<Table>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let table = self.lock();
        f.debug_struct("Supervisor")
            .field("services", &table.services.keys().collect::<Vec<_>>())
            .field("retiring", &table.retiring.len())
            .field("closing", &table.closing)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Table {
    services: BTreeMap<String, Service>,
    retiring: Vec<Retiring>,
    closing: bool,
}

struct Service {
    spec: Arc<ServiceSpec>,
    /// Bumped on every spec change; replicas of an older generation get rolled.
    spec_gen: u64,
    desired: u32,
    replicas: BTreeMap<u32, ReplicaHandle>,
    ready: Arc<ReadySet>,
    rollout: Option<JoinHandle<()>>,
}

struct Retiring {
    service: String,
    handle: ReplicaHandle,
    /// False while an old incarnation keeps serving until its replacement is ready.
    stop_signaled: bool,
}

impl Supervisor {
    /// A supervisor reporting endpoints to `sink` and events to `events`, writing replica
    /// output as `logs` says. It manages nothing until [`Supervisor::apply`].
    ///
    /// # Panics
    /// Outside a tokio runtime: runners and the sampler are spawned on the current one.
    pub fn new(
        sink: Arc<dyn EndpointSink>,
        events: Arc<EventLog>,
        logs: LogPolicy,
    ) -> Arc<Supervisor> {
        let runtime = tokio::runtime::Handle::current();
        let sup = Arc::new_cyclic(|me| Supervisor {
            me: me.clone(),
            shared: Arc::new(Shared { sink, events, logs }),
            runtime: runtime.clone(),
            next_id: AtomicU64::new(1),
            table: Mutex::new(Table::default()),
        });
        runtime.spawn(sample_loop(Arc::downgrade(&sup)));
        sup
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reconcile to these services: start new ones, drain and stop removed ones, roll
    /// changed ones one replica at a time (new ready before old stops; a spec that differs
    /// only in `replicas` is not a change), and set each service's desired count to its
    /// `replicas` (pass the current count to keep a scale decision). Services whose
    /// replicas had failed get a fresh start.
    ///
    /// Returns once every change is under way; follow progress with `status()` and
    /// the event log. Does nothing after `shutdown()`.
    pub async fn apply(self: &Arc<Self>, specs: Vec<ServiceSpec>) {
        let mut table = self.lock();
        if table.closing {
            return;
        }
        let wanted: HashSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let removed: Vec<String> = table
            .services
            .keys()
            .filter(|n| !wanted.contains(n.as_str()))
            .cloned()
            .collect();
        for name in removed {
            let Some(mut svc) = table.services.remove(&name) else {
                continue;
            };
            if let Some(rollout) = svc.rollout.take() {
                rollout.abort();
            }
            self.emit(
                &name,
                EventKind::Scaled,
                format!("{} -> 0 (removed)", svc.desired),
            );
            let handles: Vec<_> = std::mem::take(&mut svc.replicas).into_values().collect();
            for handle in handles {
                self.retire(&mut table, &name, handle, true);
            }
            stop_pending(&mut table, &name);
        }
        for spec in specs {
            let name = spec.name.clone();
            let replicas = spec.replicas;
            let changed = match table.services.get_mut(&name) {
                None => {
                    let ready = Arc::new(ReadySet::new(name.clone(), self.shared.sink.clone()));
                    let svc = Service {
                        spec: Arc::new(spec),
                        spec_gen: 1,
                        desired: 0,
                        replicas: BTreeMap::new(),
                        ready,
                        rollout: None,
                    };
                    table.services.insert(name.clone(), svc);
                    false
                }
                // Only the count differs (e.g. a reload after `shoal scale`): no roll;
                // `set_desired` below scales.
                Some(svc) if svc.spec.runs_like(&spec) => false,
                Some(svc) => {
                    if let Some(rollout) = svc.rollout.take() {
                        rollout.abort();
                    }
                    svc.spec = Arc::new(spec);
                    svc.spec_gen += 1;
                    true
                }
            };
            if changed {
                stop_pending(&mut table, &name);
            }
            self.set_desired(&mut table, &name, replicas);
            if changed {
                let generation = table.services[&name].spec_gen;
                let task = self
                    .runtime
                    .spawn(rollout(self.me.clone(), name.clone(), generation));
                if let Some(svc) = table.services.get_mut(&name) {
                    svc.rollout = Some(task);
                }
            }
        }
    }

    fn emit(&self, service: &str, kind: EventKind, message: String) {
        // The event log is the record (and `shoal up` prints it): a debug line only.
        tracing::debug!(service, kind = ?kind, "{message}");
        self.shared.events.emit(service, None, kind, message);
    }

    fn start_replica(&self, svc: &Service, index: u32) -> ReplicaHandle {
        ReplicaHandle::start(
            self.shared.clone(),
            svc.ready.clone(),
            svc.spec.clone(),
            index,
            self.next_id.fetch_add(1, Ordering::Relaxed),
            svc.spec_gen,
            &self.runtime,
        )
    }

    /// Move `handle` to the retiring list (stopping it now or later) and forget it once
    /// its runner is done.
    fn retire(&self, table: &mut Table, service: &str, handle: ReplicaHandle, stop_now: bool) {
        if stop_now {
            handle.stop();
        }
        let id = handle.id;
        let done = handle.done();
        table.retiring.push(Retiring {
            service: service.to_owned(),
            handle,
            stop_signaled: stop_now,
        });
        let me = self.me.clone();
        self.runtime.spawn(async move {
            wait_done(done).await;
            if let Some(sup) = me.upgrade() {
                sup.lock().retiring.retain(|r| r.handle.id != id);
            }
        });
    }

    /// Set the desired count of `name`: start missing indexes, stop the highest extra
    /// ones, and give failed replicas a fresh start.
    fn set_desired(&self, table: &mut Table, name: &str, desired: u32) {
        let Some(svc) = table.services.get_mut(name) else {
            return;
        };
        let before = svc.desired;
        svc.desired = desired;
        let failed: Vec<u32> = svc
            .replicas
            .iter()
            .filter(|(i, h)| **i < desired && h.state() == ReplicaState::Failed)
            .map(|(i, _)| *i)
            .collect();
        let extra: Vec<u32> = svc
            .replicas
            .range(desired..)
            .map(|(i, _)| *i)
            .rev()
            .collect();
        let mut retired = Vec::new();
        for index in failed {
            let fresh = self.start_replica(svc, index);
            retired.extend(svc.replicas.insert(index, fresh));
        }
        for index in 0..desired {
            if !svc.replicas.contains_key(&index) {
                let handle = self.start_replica(svc, index);
                svc.replicas.insert(index, handle);
            }
        }
        for index in extra {
            retired.extend(svc.replicas.remove(&index));
        }
        if before != desired {
            self.emit(name, EventKind::Scaled, format!("{before} -> {desired}"));
        }
        for handle in retired {
            self.retire(table, name, handle, true);
        }
    }

    /// Handles of every runner, active or retiring, after asking each to stop.
    fn stop_all(&self) -> Vec<tokio::sync::watch::Receiver<()>> {
        let mut table = self.lock();
        table.closing = true;
        let mut done = Vec::new();
        for svc in table.services.values_mut() {
            if let Some(rollout) = svc.rollout.take() {
                rollout.abort();
            }
            for handle in svc.replicas.values() {
                handle.stop();
                done.push(handle.done());
            }
        }
        for r in &mut table.retiring {
            r.handle.stop();
            r.stop_signaled = true;
            done.push(r.handle.done());
        }
        done
    }
}

/// Stop the old incarnations of `service` that were waiting for a replacement.
fn stop_pending(table: &mut Table, service: &str) {
    for r in table
        .retiring
        .iter_mut()
        .filter(|r| r.service == service && !r.stop_signaled)
    {
        r.handle.stop();
        r.stop_signaled = true;
    }
}

/// Roll the replicas of `name` older than `generation`, one index at a time.
async fn rollout(me: Weak<Supervisor>, name: String, generation: u64) {
    loop {
        let Some(sup) = me.upgrade() else { return };
        // Pick the lowest index still on an older spec and start its replacement.
        let (index, new_id, old_id, mut state, new_done) = {
            let mut table = sup.lock();
            if table.closing {
                return;
            }
            let Some(svc) = table.services.get_mut(&name) else {
                return;
            };
            if svc.spec_gen != generation {
                return;
            }
            let Some(index) = svc
                .replicas
                .iter()
                .find(|(_, h)| h.spec_gen < generation)
                .map(|(i, _)| *i)
            else {
                return;
            };
            let fresh = sup.start_replica(svc, index);
            let (new_id, state, new_done) = (fresh.id, fresh.state_watch(), fresh.done());
            let Some(old) = svc.replicas.insert(index, fresh) else {
                continue;
            };
            let old_id = old.id;
            // An old replica that serves nothing is simply replaced.
            let serving = matches!(old.state(), ReplicaState::Ready | ReplicaState::Starting);
            sup.retire(&mut table, &name, old, !serving);
            if !serving {
                continue;
            }
            (index, new_id, old_id, state, new_done)
        };
        drop(sup);
        // Wait for the new incarnation to be ready, or to fail.
        let ready = tokio::select! {
            r = state.wait_for(|s| matches!(s, ReplicaState::Ready | ReplicaState::Failed)) => {
                r.map(|s| *s == ReplicaState::Ready).unwrap_or(false)
            }
            () = wait_done(new_done) => false,
        };
        let Some(sup) = me.upgrade() else { return };
        let old_done = {
            let mut guard = sup.lock();
            let table = &mut *guard;
            let Some(pos) = table.retiring.iter().position(|r| r.handle.id == old_id) else {
                return;
            };
            if ready {
                let old = &mut table.retiring[pos];
                old.handle.stop();
                old.stop_signaled = true;
                old.handle.done()
            } else {
                // The new incarnation failed: put the old one back and stop the new one.
                let Some(svc) = table.services.get_mut(&name) else {
                    return;
                };
                if svc.replicas.get(&index).is_none_or(|h| h.id != new_id) {
                    // The index was scaled away or taken over meanwhile: the old one goes too.
                    let old = &mut table.retiring[pos];
                    old.handle.stop();
                    old.stop_signaled = true;
                    return;
                }
                let old = table.retiring.remove(pos).handle;
                let reason = svc
                    .replicas
                    .get(&index)
                    .and_then(|h| h.status().message)
                    .unwrap_or_default();
                let Some(new) = svc.replicas.insert(index, old) else {
                    return;
                };
                svc.rollout = None; // this task; it ends here
                sup.emit(
                    &name,
                    EventKind::Failed,
                    format!(
                        "update of {name}/{index} failed ({reason}); keeping the previous version"
                    ),
                );
                sup.retire(table, &name, new, true);
                return;
            }
        };
        drop(sup);
        wait_done(old_done).await;
    }
}

/// Sample CPU and memory of every running replica group until the supervisor is gone.
async fn sample_loop(me: Weak<Supervisor>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(sup) = me.upgrade() else { return };
        {
            let table = sup.lock();
            if table.closing {
                return;
            }
            // Nothing to measure: don't walk /proc (it can hold thousands of processes).
            let running = table.services.values().any(|s| !s.replicas.is_empty())
                || !table.retiring.is_empty();
            if !running {
                continue;
            }
        }
        drop(sup);
        let Ok(groups) = tokio::task::spawn_blocking(crate::procfs::sample_all).await else {
            continue;
        };
        let now = Instant::now();
        let Some(sup) = me.upgrade() else { return };
        let table = sup.lock();
        let handles = table
            .services
            .values()
            .flat_map(|s| s.replicas.values())
            .chain(table.retiring.iter().map(|r| &r.handle));
        for handle in handles {
            if let Some(pgid) = handle.pgid()
                && let Some(usage) = groups.get(&pgid)
            {
                handle.record_usage(pgid, now, *usage);
            }
        }
    }
}

impl Driver for Supervisor {
    fn scale(&self, service: &str, replicas: u32) -> Result<(), DriverError> {
        let mut table = self.lock();
        if table.closing {
            return Err(DriverError::Invalid("shutting down".into()));
        }
        if !table.services.contains_key(service) {
            return Err(DriverError::UnknownService(service.to_owned()));
        }
        self.set_desired(&mut table, service, replicas);
        Ok(())
    }

    fn status(&self) -> Vec<ServiceStatus> {
        let table = self.lock();
        table
            .services
            .iter()
            .map(|(name, svc)| {
                let mut replicas: Vec<_> = svc
                    .replicas
                    .values()
                    .map(|h| (h.id, h.status()))
                    .chain(
                        table
                            .retiring
                            .iter()
                            .filter(|r| &r.service == name)
                            .map(|r| (r.handle.id, r.handle.status())),
                    )
                    .collect();
                replicas.sort_by_key(|(id, r)| (r.index, *id));
                let active: Vec<ReplicaState> = svc.replicas.values().map(|h| h.state()).collect();
                // Workers never join the balancer: ready means running.
                let ready = if svc.spec.is_worker() {
                    active.iter().filter(|s| **s == ReplicaState::Ready).count() as u32
                } else {
                    svc.ready.len() as u32
                };
                let state = if svc.desired == 0 {
                    ServiceState::Stopped
                } else if !active.is_empty() && active.iter().all(|s| *s == ReplicaState::Failed) {
                    ServiceState::Failed
                } else if ready >= svc.desired && active.iter().all(|s| *s == ReplicaState::Ready) {
                    ServiceState::Running
                } else {
                    ServiceState::Progressing
                };
                ServiceStatus {
                    name: name.clone(),
                    desired: svc.desired,
                    ready,
                    state,
                    replicas: replicas.into_iter().map(|(_, r)| r).collect(),
                    traffic: None,
                    autoscale: None,
                    worker: svc.spec.is_worker(),
                }
            })
            .collect()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let done = self.stop_all();
            for d in done {
                wait_done(d).await;
            }
            let mut table = self.lock();
            table.services.clear();
            table.retiring.clear();
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::StopPolicy;
    use shoal_core::Endpoint;

    struct NoSink;

    impl EndpointSink for NoSink {
        fn set_endpoints(&self, _service: &str, _endpoints: Vec<Endpoint>) {}
        fn in_flight(&self, _service: &str, _key: &str) -> usize {
            0
        }
    }

    /// A service's spec generation, its active replicas as (index, runner id, generation),
    /// and whether a roll was started.
    fn table_of(sup: &Supervisor, name: &str) -> (u64, Vec<(u32, u64, u64)>, bool) {
        let table = sup.lock();
        let svc = &table.services[name];
        let replicas = svc
            .replicas
            .iter()
            .map(|(i, h)| (*i, h.id, h.spec_gen))
            .collect();
        (svc.spec_gen, replicas, svc.rollout.is_some())
    }

    #[tokio::test]
    async fn a_new_replica_count_alone_rolls_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sup = Supervisor::new(
            Arc::new(NoSink),
            Arc::new(EventLog::new(100)),
            LogPolicy::new(dir.path().join("logs")),
        );
        // It never listens, so its replicas stay `starting`, like a scale-up in progress.
        let mut spec = ServiceSpec::new("web", vec!["sleep".into(), "30".into()]);
        spec.stop = StopPolicy {
            drain_timeout: Duration::ZERO,
            grace: Duration::from_millis(100),
        };
        sup.apply(vec![spec.clone()]).await;
        sup.scale("web", 3).unwrap();
        let scaled = table_of(&sup, "web");
        assert_eq!(scaled.1.len(), 3);

        // What a reload of the unchanged file applies after `shoal scale web 3`.
        let mut reloaded = spec;
        reloaded.replicas = 3;
        sup.apply(vec![reloaded.clone()]).await;
        sup.apply(vec![reloaded.clone()]).await;
        assert_eq!(
            table_of(&sup, "web"),
            scaled,
            "a count change rolled replicas"
        );

        // A change of how replicas run still rolls them.
        reloaded.env.push(("VERSION".into(), "2".into()));
        sup.apply(vec![reloaded]).await;
        let (generation, _, rolling) = table_of(&sup, "web");
        assert_eq!((generation, rolling), (2, true));
        sup.shutdown().await;
    }
}
