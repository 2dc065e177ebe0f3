//! The [`Supervisor`]: desired services in, replica runners out.
//!
//! The supervisor keeps, per service, the spec, the desired count and one
//! [`ReplicaHandle`] per index; every change (apply, scale, rollout, shutdown) is a short,
//! synchronous edit of that table under one lock, which starts runners or asks them to
//! stop. The slow parts — draining, grace periods, back-offs, readiness — happen in the
//! runners, never under the lock. A replica being stopped moves to a *retiring* list
//! until its runner reports its process group reaped, so `status()` still shows it
//! draining and `shutdown()` can wait for it.
//!
//! # Rollouts
//!
//! Changing how a service's replicas run (anything but `replicas` and `rollout`, see
//! [`ServiceSpec::runs_like`]) starts a *rollout* to the new spec, a new *generation*;
//! so does [`Driver::rollout_restart`] (same spec, new generation: every process is
//! spawned again, picking up a new binary on disk) and [`Driver::rollout_undo`] (back to
//! the previous spec). Each spec has a version: its `version` label, else a hash of the
//! spec ([`ServiceSpec::version`]). One task per rollout moves it forward, re-examining
//! the table on every replica state change, with the vocabulary of a Deployment's
//! `RollingUpdate` ([`RolloutPolicy`](crate::RolloutPolicy)):
//!
//! - *surge*: while fewer than `desired + max_surge` replicas exist (an old one counts
//!   until it is reaped), the lowest index still on an older generation gets its new
//!   incarnation; the old one keeps serving that index (it is *pending*) until the new
//!   one is ready and takes over the index's key in the balancer, then it is drained and
//!   stopped. An old replica that serves nothing (not ready) is stopped at once.
//! - *unavailability*: while more than `desired - max_unavailable` replicas are ready, an
//!   old one may be stopped before its replacement is ready (a pending one first, else
//!   the lowest old index, which its replacement fills once the surge allows).
//!
//! The defaults (1, 0) are the one-at-a-time roll: new ready, then old drained, and the
//! balancer never loses an index. A rollout emits a `rollout` event when it starts
//! (`OLD -> NEW, N replicas`) and when it completes.
//!
//! A rollout is *rolled back* when one of its new replicas fails (gives up after a crash
//! loop, or cannot be spawned at all), or when no progress (a new replica ready, an old
//! one stopped) happened for `progress_deadline` — not counting time spent waiting, with
//! every new replica ready, for old ones to drain: the previous spec and its generation are
//! restored, new replicas that are not ready are stopped (the old ones kept serving their
//! index are back in place) and indexes already replaced get an old-version replica again,
//! rolled in the same way. The `rolledback` event quotes why: the new replica's message,
//! its last exit and the last line it logged. The rolled-back spec is remembered:
//! applying it again (a reload of the same file) rolls nothing until the spec changes.
//!
//! Scaling during a rollout starts new indexes on the new spec and stops removed ones;
//! the rollout counts the new desired number.
//!
//! # Start order (`depends_on`)
//!
//! A service first applied with [`ServiceSpec::depends_on`] starts no replica until each
//! dependency is there: started (a replica process runs) or, for
//! [`Condition::Healthy`](crate::Condition::Healthy), all its desired replicas ready —
//! Compose's `service_started` / `service_healthy`. Meanwhile the service is *waiting*:
//! it keeps its desired count (a scale or a reload only updates what it will start),
//! `status()` shows its replicas `starting` with the message `waiting for db to be ready`,
//! and a `waiting` event is emitted when it begins and when it ends. One task per waiting
//! service looks again every 100 ms (polling: the dependency's change notifications
//! belong to its own rollout). Like Compose, it is start order only: a service already running (a reload
//! adding `depends_on`, a restart, a rollout) never waits, and a waiting service is not
//! rolled (it has nothing to roll). Cycles and unknown names are refused by the config.
//!
//! A background sampler walks `/proc` every [`SAMPLE_EVERY`] and records each running
//! replica group's CPU and memory; where no memory cgroup enforces a replica's memory
//! limit, it also kills a group whose resident memory is over it (see the `limits`
//! module).
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use shoal_core::{
    BoxFuture, Driver, DriverError, EndpointSink, EventKind, EventLog, ReplicaState, ReplicaStatus,
    RolloutState, RolloutStatus, ServiceState, ServiceStatus,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backoff::human;
use crate::replica::{ReadySet, ReplicaHandle, Shared, wait_done};
use crate::spec::{Condition, LogPolicy, ServiceSpec};

/// Period of the CPU/memory sampler.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// A service waiting for its `depends_on` looks at them this often.
const WAIT_RECHECK: Duration = Duration::from_millis(100);

/// A rollout re-examines its service at least this often, whatever changes.
const ROLLOUT_RECHECK: Duration = Duration::from_secs(1);

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
    /// What the replicas should run: the target of the rollout in progress, if any.
    spec: Arc<ServiceSpec>,
    /// Generation of `spec`; replicas of another generation get rolled. Unique within
    /// the service (taken from `next_gen`); a rollback restores the previous one.
    spec_gen: u64,
    next_gen: u64,
    /// The spec before `spec`: what `rollout_undo` goes back to.
    previous: Option<Arc<ServiceSpec>>,
    /// The target of the last rollout rolled back (or undone): applying a spec that
    /// runs like it rolls nothing.
    rolled_back: Option<Arc<ServiceSpec>>,
    desired: u32,
    /// The newest incarnation of each index.
    replicas: BTreeMap<u32, ReplicaHandle>,
    /// Old incarnations still serving their index while its new one (in `replicas`)
    /// gets ready.
    pending: BTreeMap<u32, ReplicaHandle>,
    ready: Arc<ReadySet>,
    /// The latest rollout, kept once over for `status()`.
    rollout: Option<Rollout>,
    /// Not started yet: waiting for its `depends_on` services. The message `status()`
    /// shows, and the task that ends the wait.
    waiting: Option<(String, JoinHandle<()>)>,
}

/// One rollout of a service, from a spec to the next.
struct Rollout {
    /// Identifies the task following it.
    id: u64,
    /// The generation rolled out.
    generation: u64,
    version: String,
    previous: String,
    state: RolloutState,
    message: Option<String>,
    started_ms: u64,
    started: Instant,
    /// What a rollback restores: the spec, its generation and the `previous` it had.
    from: Arc<ServiceSpec>,
    from_gen: u64,
    from_previous: Option<Arc<ServiceSpec>>,
    /// When a new replica last became ready, or an old one went away.
    last_progress: Instant,
    /// (new replicas ready, old incarnations left) at `last_progress`.
    seen: (usize, usize),
    task: Option<JoinHandle<()>>,
}

impl Rollout {
    fn abort(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Retiring {
    service: String,
    handle: ReplicaHandle,
}

/// What a rollout's task does next.
enum Step {
    /// Nothing: the rollout is over (or replaced, or its service gone).
    Done,
    /// Look again once a replica of the service changes, or at this instant.
    Wait(Arc<ReadySet>, Instant),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
    /// changed ones (see the module docs: a spec that differs only in `replicas` or
    /// `rollout` is not a change, nor is one that runs like a rolled-back one), and set
    /// each service's desired count to its `replicas` (pass the current count to keep a
    /// scale decision). Services whose replicas had failed get a fresh start.
    ///
    /// Returns once every change is under way; follow progress with `status()` and
    /// the event log. Does nothing after `shutdown()`.
    pub async fn apply(self: &Arc<Self>, specs: Vec<ServiceSpec>) {
        self.apply_now(specs);
    }

    /// [`apply`](Self::apply), without waiting on anything: for callers that are not async
    /// and must have the change under way when they return (a reload's answer, after
    /// which `status()` shows the rollout it started).
    pub fn apply_now(self: &Arc<Self>, specs: Vec<ServiceSpec>) {
        let mut guard = self.lock();
        let table = &mut *guard;
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
            if let Some(rollout) = &mut svc.rollout {
                rollout.abort();
            }
            if let Some((_, task)) = svc.waiting.take() {
                task.abort();
            }
            self.emit(
                &name,
                EventKind::Scaled,
                format!("{} -> 0 (removed)", svc.desired),
            );
            let handles = std::mem::take(&mut svc.replicas)
                .into_values()
                .chain(std::mem::take(&mut svc.pending).into_values());
            for handle in handles {
                self.retire(table, &name, handle);
            }
        }
        let mut new_waits = Vec::new();
        for spec in specs {
            let name = spec.name.clone();
            let replicas = spec.replicas;
            let mut rolls = false;
            match table.services.get_mut(&name) {
                None => {
                    let ready = Arc::new(ReadySet::new(name.clone(), self.shared.sink.clone()));
                    let svc = Service {
                        spec: Arc::new(spec),
                        spec_gen: 1,
                        next_gen: 2,
                        previous: None,
                        rolled_back: None,
                        desired: 0,
                        replicas: BTreeMap::new(),
                        pending: BTreeMap::new(),
                        ready,
                        rollout: None,
                        waiting: None,
                    };
                    let waits = !svc.spec.depends_on.is_empty();
                    table.services.insert(name.clone(), svc);
                    if waits {
                        self.begin_wait(table, &name);
                        new_waits.push(name.clone());
                    }
                }
                // Not started yet: nothing to roll, it starts with this spec.
                Some(svc) if svc.waiting.is_some() => svc.spec = Arc::new(spec),
                // Only the count or the rollout policy differs (e.g. a reload after
                // `shoal scale`): no roll; `set_desired` below scales, and a new policy
                // applies from now on (to the rollout in progress too).
                Some(svc) if svc.spec.runs_like(&spec) => {
                    if svc.spec.rollout != spec.rollout {
                        svc.spec = Arc::new(spec);
                        svc.ready.touch();
                    }
                }
                // Rolled back (or undone) before: not again, and no event each time the
                // file is reloaded; the status keeps saying why.
                Some(svc) if svc.rolled_back.as_ref().is_some_and(|r| r.runs_like(&spec)) => {}
                // The spec the rollout in progress started from, applied again: that
                // rollout is rolled back rather than rolled forward to the same thing.
                Some(svc)
                    if svc.rollout.as_ref().is_some_and(|r| {
                        r.state == RolloutState::Progressing && r.from.runs_like(&spec)
                    }) =>
                {
                    self.roll_back(svc, &name, "its previous spec was applied again".into());
                    // The file no longer names the target: nothing to refuse later.
                    svc.rolled_back = None;
                }
                Some(svc) => {
                    self.begin_rollout(svc, &name, Arc::new(spec), replicas, "");
                    rolls = true;
                }
            }
            self.set_desired(table, &name, replicas, None);
            if rolls {
                self.follow_rollout(table, &name);
            }
        }
        // Said once every service of this apply is in the table (a dependency may be
        // listed after its dependent).
        for name in new_waits {
            let message = Self::unmet(table, &name)
                .map_or_else(|| "its dependencies are there".to_owned(), |(_, m)| m);
            if let Some(svc) = table.services.get_mut(&name)
                && let Some((shown, _)) = &mut svc.waiting
            {
                shown.clone_from(&message);
                self.emit(&name, EventKind::Waiting, message);
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

    /// Stop `handle`, keep it on the retiring list, and forget it once its runner is done.
    fn retire(&self, table: &mut Table, service: &str, handle: ReplicaHandle) {
        handle.stop();
        let id = handle.id;
        let done = handle.done();
        table.retiring.push(Retiring {
            service: service.to_owned(),
            handle,
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
    /// ones (and old incarnations still serving them), and give failed replicas a fresh
    /// start. New replicas run the service's current spec (a rollout's target).
    /// The change's `scaled` event says `announce` when given (the autoscaler's reason),
    /// `before -> desired` otherwise.
    fn set_desired(&self, table: &mut Table, name: &str, desired: u32, announce: Option<&str>) {
        let Some(svc) = table.services.get_mut(name) else {
            return;
        };
        let before = svc.desired;
        svc.desired = desired;
        let change = || announce.map_or_else(|| format!("{before} -> {desired}"), str::to_owned);
        if svc.waiting.is_some() {
            // Started once the dependencies are there.
            if before != desired {
                self.emit(name, EventKind::Scaled, format!("{} (waiting)", change()));
            }
            svc.ready.touch();
            return;
        }
        let failed: Vec<u32> = svc
            .replicas
            .iter()
            .filter(|(i, h)| **i < desired && h.state() == ReplicaState::Failed)
            .map(|(i, _)| *i)
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
        let extra: Vec<u32> = svc.replicas.range(desired..).map(|(i, _)| *i).collect();
        for index in extra.into_iter().rev() {
            retired.extend(svc.replicas.remove(&index));
        }
        let extra: Vec<u32> = svc.pending.range(desired..).map(|(i, _)| *i).collect();
        for index in extra {
            retired.extend(svc.pending.remove(&index));
        }
        // A rollout in progress counts the new number.
        svc.ready.touch();
        if before != desired {
            let mut message = change();
            if before == 0 && svc.spec.limits.is_set() {
                let mechanism = crate::limits::mechanism();
                let note = mechanism.describe(&svc.spec.limits);
                if mechanism.degraded(&svc.spec.limits) {
                    tracing::warn!(service = name, "{note}");
                }
                message.push_str("; ");
                message.push_str(&note);
            }
            self.emit(name, EventKind::Scaled, message);
        }
        for handle in retired {
            self.retire(table, name, handle);
        }
    }

    /// Hold back the first replicas of `name` until its dependencies are there.
    /// (Its task runs once the caller lets go of the table.)
    fn begin_wait(&self, table: &mut Table, name: &str) {
        let Some(svc) = table.services.get_mut(name) else {
            return;
        };
        let task = self
            .runtime
            .spawn(wait_task(self.me.clone(), name.to_owned()));
        svc.waiting = Some(("waiting for its dependencies".to_owned(), task));
    }

    /// The first dependency of `name` that is not there yet: its service, and what
    /// `name` waits for (`waiting for db to be ready`). None once all are there.
    fn unmet(table: &Table, name: &str) -> Option<(String, String)> {
        let svc = table.services.get(name)?;
        svc.spec.depends_on.iter().find_map(|dep| {
            // Removed from the stack meanwhile: nothing to wait for.
            let other = table.services.get(&dep.service)?;
            let what = match dep.condition {
                Condition::Started => "to start",
                Condition::Healthy => "to be ready",
            };
            let there = other.waiting.is_none()
                && match dep.condition {
                    Condition::Started => other.replicas.values().any(|h| {
                        h.pgid().is_some()
                            || matches!(h.state(), ReplicaState::Ready | ReplicaState::Draining)
                    }),
                    Condition::Healthy => {
                        let ready = if other.spec.is_worker() {
                            other
                                .replicas
                                .values()
                                .filter(|h| h.state() == ReplicaState::Ready)
                                .count()
                        } else {
                            other.ready.len()
                        };
                        other.desired > 0 && ready >= other.desired as usize
                    }
                };
            if there {
                return None;
            }
            let mut message = format!("waiting for {} {what}", dep.service);
            if other.waiting.is_some() {
                message.push_str(" (it waits too)");
            } else if other.desired == 0 {
                message.push_str(" (it has 0 replicas)");
            } else if !other.replicas.is_empty()
                && other
                    .replicas
                    .values()
                    .all(|h| h.state() == ReplicaState::Failed)
            {
                message.push_str(" (it has failed)");
            }
            Some((dep.service.clone(), message))
        })
    }

    /// One look at the wait of `name`: start it if its dependencies are there, else say
    /// what it waits for. True while it still waits.
    fn check_wait(&self, table: &mut Table, name: &str) -> bool {
        if table.services.get(name).is_none_or(|s| s.waiting.is_none()) {
            return false;
        }
        if let Some((_, message)) = Self::unmet(table, name) {
            if let Some(svc) = table.services.get_mut(name)
                && let Some((shown, _)) = &mut svc.waiting
                && *shown != message
            {
                *shown = message;
                svc.ready.touch();
            }
            return true;
        }
        let Some(svc) = table.services.get_mut(name) else {
            return false;
        };
        let desired = svc.desired;
        svc.waiting = None;
        let deps: Vec<String> = svc
            .spec
            .depends_on
            .iter()
            .map(|d| format!("{} ({})", d.service, d.condition.name()))
            .collect();
        self.emit(
            name,
            EventKind::Waiting,
            format!("dependencies there: {}; starting", deps.join(", ")),
        );
        // Start what the count asks for now (set_desired starts from zero).
        svc.desired = 0;
        self.set_desired(table, name, desired, None);
        false
    }

    /// Make `target` the spec of `svc`, as a new generation, and record the rollout to it
    /// (its task is started by [`Supervisor::follow_rollout`]). `note` ends the event.
    fn begin_rollout(
        &self,
        svc: &mut Service,
        name: &str,
        target: Arc<ServiceSpec>,
        replicas: u32,
        note: &str,
    ) {
        // A rollout replacing one in progress still rolls back to where that one started.
        let (from, from_gen, from_previous) = match svc.rollout.take() {
            Some(mut r) if r.state == RolloutState::Progressing => {
                r.abort();
                (r.from, r.from_gen, r.from_previous)
            }
            other => {
                if let Some(mut r) = other {
                    r.abort();
                }
                (svc.spec.clone(), svc.spec_gen, svc.previous.clone())
            }
        };
        let generation = svc.next_gen;
        svc.next_gen += 1;
        let version = target.version();
        let previous = from.version();
        svc.previous = Some(from.clone());
        svc.spec = target;
        svc.spec_gen = generation;
        svc.rolled_back = None;
        let now = Instant::now();
        svc.rollout = Some(Rollout {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            generation,
            version: version.clone(),
            previous: previous.clone(),
            state: RolloutState::Progressing,
            message: None,
            started_ms: now_ms(),
            started: now,
            from,
            from_gen,
            from_previous,
            last_progress: now,
            // Nothing old has gone yet: the first look only takes stock.
            seen: (0, usize::MAX),
            task: None,
        });
        self.emit(
            name,
            EventKind::Rollout,
            format!("{previous} -> {version}, {replicas} replicas{note}"),
        );
    }

    /// Start the task that moves the rollout of `name` forward.
    fn follow_rollout(&self, table: &mut Table, name: &str) {
        let Some(rollout) = table
            .services
            .get_mut(name)
            .and_then(|s| s.rollout.as_mut())
        else {
            return;
        };
        rollout.task = Some(self.runtime.spawn(rollout_task(
            self.me.clone(),
            name.to_owned(),
            rollout.id,
        )));
    }

    /// Give up the rollout in progress of `svc`: restore the spec (and generation) it
    /// started from, remember its target, say why. Its task then rolls the previous
    /// version back onto every index.
    fn roll_back(&self, svc: &mut Service, name: &str, why: String) {
        let Some(r) = svc.rollout.as_mut() else {
            return;
        };
        let target = std::mem::replace(&mut svc.spec, r.from.clone());
        svc.spec_gen = r.from_gen;
        svc.previous = r.from_previous.clone();
        // A restart rolled back is not a spec to refuse later.
        if !target.runs_like(&r.from) {
            svc.rolled_back = Some(target);
        }
        let message = format!("{} rolled back to {}: {why}", r.version, r.previous);
        r.state = RolloutState::RolledBack;
        r.message = Some(message.clone());
        self.emit(name, EventKind::RolledBack, message);
        svc.ready.touch();
    }

    /// One look at the rollout `id` of `name`: retire what its progress allows, start what
    /// the surge allows, stop what the unavailability allows; roll back, or complete.
    fn advance(&self, table: &mut Table, name: &str, id: u64) -> Step {
        let mut stop = Vec::new();
        let step = self.plan(table, name, id, &mut stop);
        for handle in stop {
            self.retire(table, name, handle);
        }
        step
    }

    fn plan(&self, table: &mut Table, name: &str, id: u64, stop: &mut Vec<ReplicaHandle>) -> Step {
        let now = Instant::now();
        let Table {
            services, retiring, ..
        } = table;
        let Some(svc) = services.get_mut(name) else {
            return Step::Done;
        };
        if svc.rollout.as_ref().is_none_or(|r| r.id != id) {
            return Step::Done;
        }
        let generation = svc.spec_gen;
        let desired = svc.desired;

        // Old incarnations waiting for their replacement.
        let waiting: Vec<u32> = svc.pending.keys().copied().collect();
        for index in waiting {
            match svc.replicas.get(&index) {
                // Replaced (it is ready: it took over the key), or scaled away.
                None => stop.extend(svc.pending.remove(&index)),
                Some(h) if h.state() == ReplicaState::Ready => {
                    stop.extend(svc.pending.remove(&index));
                }
                // The replacement is not what runs now (a rollback, a newer spec): the old
                // one serves the index again.
                Some(h) if h.spec_gen != generation => {
                    if let Some(old) = svc.pending.remove(&index) {
                        stop.extend(svc.replicas.insert(index, old));
                    }
                }
                Some(_) => {}
            }
        }
        // Outdated replicas that serve nothing are replaced at once.
        let idle: Vec<u32> = svc
            .replicas
            .iter()
            .filter(|(i, h)| {
                h.spec_gen != generation
                    && h.state() != ReplicaState::Ready
                    && !svc.pending.contains_key(i)
            })
            .map(|(i, _)| *i)
            .collect();
        for index in idle {
            stop.extend(svc.replicas.remove(&index));
        }

        let updated_ready = svc
            .replicas
            .values()
            .filter(|h| h.spec_gen == generation && h.state() == ReplicaState::Ready)
            .count();
        let outdated = svc
            .replicas
            .values()
            .chain(svc.pending.values())
            .filter(|h| h.spec_gen != generation)
            .count();
        // No new replica getting ready: the rollout waits for old ones to drain (a
        // WebSocket, a long download: bounded by their drain timeout) before the surge lets
        // it start the next one. Waiting is not a stall: no progress deadline runs then.
        let waiting_for_drains = svc
            .replicas
            .values()
            .all(|h| h.spec_gen != generation || h.state() == ReplicaState::Ready);
        let Some(r) = svc.rollout.as_mut() else {
            return Step::Done;
        };
        let deadline = svc.spec.rollout.progress_deadline;
        if r.state == RolloutState::Progressing {
            // Progress: more new replicas ready, or fewer old ones left.
            if updated_ready > r.seen.0 || outdated < r.seen.1 || waiting_for_drains {
                r.last_progress = now;
            }
            r.seen = (updated_ready, outdated);
            let failed = svc
                .replicas
                .values()
                .find(|h| h.spec_gen == generation && h.state() == ReplicaState::Failed);
            let why = if let Some(h) = failed {
                Some(format!("{name}/{} failed{}", h.index, evidence(h, false)))
            } else if now >= r.last_progress + deadline {
                let culprit = svc
                    .replicas
                    .values()
                    .filter(|h| h.spec_gen == generation && h.state() != ReplicaState::Ready)
                    .max_by_key(|h| h.status().last_exit.is_some());
                Some(format!(
                    "no progress for {} (progress deadline){}",
                    human(deadline),
                    culprit.map_or_else(String::new, |h| format!(
                        "; {name}/{}{}",
                        h.index,
                        evidence(h, true)
                    )),
                ))
            } else {
                None
            };
            if let Some(why) = why {
                self.roll_back(svc, name, why);
                // Look again at once, now towards the previous version.
                return Step::Wait(svc.ready.clone(), now);
            }
        }

        let converged = svc.pending.is_empty()
            && svc.replicas.len() == desired as usize
            && svc
                .replicas
                .values()
                .all(|h| h.spec_gen == generation && h.state() == ReplicaState::Ready);
        if converged {
            if r.state == RolloutState::Progressing {
                r.state = RolloutState::Complete;
                let message = format!(
                    "{} -> {} complete: {desired} replicas ready in {:.2}s",
                    r.previous,
                    r.version,
                    r.started.elapsed().as_secs_f64()
                );
                self.emit(name, EventKind::Rollout, message);
            }
            r.task = None;
            return Step::Done;
        }
        let wake = if r.state == RolloutState::Progressing {
            (r.last_progress + deadline).min(now + ROLLOUT_RECHECK)
        } else {
            now + ROLLOUT_RECHECK
        };

        // Surge: start new incarnations while fewer than desired + surge replicas exist,
        // vacant indexes first, then the lowest old ones (which keep serving meanwhile).
        let (surge, unavailable) = svc.spec.rollout.limits(desired);
        let alive_retiring = retiring
            .iter()
            .filter(|r| r.service == name && !r.handle.is_done())
            .count();
        let exist = svc.replicas.len() + svc.pending.len() + alive_retiring + stop.len();
        let room = (desired.saturating_add(surge) as usize).saturating_sub(exist);
        let vacant: Vec<u32> = (0..desired)
            .filter(|i| !svc.replicas.contains_key(i))
            .collect();
        let old: Vec<u32> = svc
            .replicas
            .iter()
            .filter(|(i, h)| h.spec_gen != generation && !svc.pending.contains_key(i))
            .map(|(i, _)| *i)
            .collect();
        for index in vacant.into_iter().chain(old).take(room) {
            let fresh = self.start_replica(svc, index);
            if let Some(old) = svc.replicas.insert(index, fresh) {
                svc.pending.insert(index, old);
            }
        }

        // Unavailability: stop old replicas before their replacement is ready while more
        // than desired - unavailable are ready (those waiting for a replacement first).
        let min_ready = (desired - unavailable) as usize;
        let mut ready = svc
            .replicas
            .values()
            .chain(svc.pending.values())
            .filter(|h| h.state() == ReplicaState::Ready)
            .count();
        while ready > min_ready {
            let victim = match svc.pending.keys().next().copied() {
                Some(index) => svc.pending.remove(&index),
                None => {
                    let index = svc
                        .replicas
                        .iter()
                        .find(|(_, h)| h.spec_gen != generation)
                        .map(|(i, _)| *i);
                    index.and_then(|i| svc.replicas.remove(&i))
                }
            };
            let Some(victim) = victim else { break };
            if victim.state() == ReplicaState::Ready {
                ready -= 1;
            }
            stop.push(victim);
        }
        Step::Wait(svc.ready.clone(), wake)
    }

    /// Handles of every runner, active or retiring, after asking each to stop.
    fn stop_all(&self) -> Vec<tokio::sync::watch::Receiver<()>> {
        let mut table = self.lock();
        table.closing = true;
        let mut done = Vec::new();
        for svc in table.services.values_mut() {
            if let Some(rollout) = &mut svc.rollout {
                rollout.abort();
            }
            if let Some((_, task)) = svc.waiting.take() {
                task.abort();
            }
            for handle in svc.replicas.values().chain(svc.pending.values()) {
                handle.stop();
                done.push(handle.done());
            }
        }
        for r in &table.retiring {
            r.handle.stop();
            done.push(r.handle.done());
        }
        done
    }
}

/// Why a new replica is a reason to roll back: its message (unless `with_message` is
/// false: the caller quoted it), last exit and last log line, each when known.
fn evidence(h: &ReplicaHandle, with_message: bool) -> String {
    let status = h.status();
    let mut out = String::new();
    if let Some(message) = status.message.filter(|m| !m.is_empty()) {
        if with_message {
            out.push_str(&format!(": {message}"));
        } else {
            out.push_str(&format!(" ({message})"));
        }
    }
    if let Some(exit) = status.last_exit {
        out.push_str(&format!("; last exit: {exit}"));
    }
    if let Some(line) = h.last_log_line() {
        out.push_str(&format!("; last log line: \"{line}\""));
    }
    out
}

/// Start `name` once its dependencies are there.
async fn wait_task(me: Weak<Supervisor>, name: String) {
    loop {
        {
            let Some(sup) = me.upgrade() else { return };
            let mut table = sup.lock();
            if table.closing || !sup.check_wait(&mut table, &name) {
                return;
            }
        }
        // Polled rather than woken by the dependency's `ReadySet`: that wakes one waiter
        // (a rollout of the dependency), whose wake-ups must not be taken.
        tokio::time::sleep(WAIT_RECHECK).await;
    }
}

/// Move the rollout `id` of `name` forward until it is over: complete, rolled back and the
/// previous version running again, or replaced by another.
async fn rollout_task(me: Weak<Supervisor>, name: String, id: u64) {
    loop {
        let (ready, wake) = {
            let Some(sup) = me.upgrade() else { return };
            let mut table = sup.lock();
            if table.closing {
                return;
            }
            match sup.advance(&mut table, &name, id) {
                Step::Done => return,
                Step::Wait(ready, wake) => (ready, wake),
            }
        };
        tokio::select! {
            () = ready.changed() => {}
            () = tokio::time::sleep_until(wake) => {}
        }
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
            .flat_map(|s| s.replicas.values().chain(s.pending.values()))
            .chain(table.retiring.iter().map(|r| &r.handle));
        for handle in handles {
            if let Some(pgid) = handle.pgid()
                && let Some(usage) = groups.get(&pgid)
            {
                handle.record_usage(pgid, now, *usage);
                // Without a memory cgroup, shoal enforces the limit itself.
                crate::limits::check_rss(pgid, usage.rss_bytes);
            }
        }
    }
}

/// The service a rollout command (undo, restart) acts on: known, started, and not during
/// shutdown.
fn started<'t>(table: &'t mut Table, service: &str) -> Result<&'t mut Service, DriverError> {
    if table.closing {
        return Err(DriverError::Invalid("shutting down".into()));
    }
    let svc = table
        .services
        .get_mut(service)
        .ok_or_else(|| DriverError::UnknownService(service.to_owned()))?;
    if let Some((message, _)) = &svc.waiting {
        return Err(DriverError::Invalid(format!(
            "{service} has not started yet: {message}"
        )));
    }
    Ok(svc)
}

impl Supervisor {
    /// [`Driver::scale`], with `event` as the change's one `scaled` event instead of
    /// `before -> after`: the autoscaler's reason, so that `shoal events` shows a change
    /// once, with its why.
    pub fn scale_announced(
        &self,
        service: &str,
        replicas: u32,
        event: &str,
    ) -> Result<(), DriverError> {
        self.scale_with(service, replicas, Some(event))
    }

    fn scale_with(
        &self,
        service: &str,
        replicas: u32,
        announce: Option<&str>,
    ) -> Result<(), DriverError> {
        let mut table = self.lock();
        if table.closing {
            return Err(DriverError::Invalid("shutting down".into()));
        }
        if !table.services.contains_key(service) {
            return Err(DriverError::UnknownService(service.to_owned()));
        }
        self.set_desired(&mut table, service, replicas, announce);
        Ok(())
    }
}

impl Driver for Supervisor {
    fn scale(&self, service: &str, replicas: u32) -> Result<(), DriverError> {
        self.scale_with(service, replicas, None)
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
                    .chain(svc.pending.values())
                    .map(|h| (h.id, h.status()))
                    .chain(
                        table
                            .retiring
                            .iter()
                            .filter(|r| &r.service == name)
                            .map(|r| (r.handle.id, r.handle.status())),
                    )
                    .collect();
                if let Some((message, _)) = &svc.waiting {
                    replicas.extend((0..svc.desired).map(|index| {
                        (
                            0,
                            ReplicaStatus {
                                index,
                                state: ReplicaState::Starting,
                                pid: None,
                                port: None,
                                endpoint: None,
                                restarts: 0,
                                uptime_secs: 0.0,
                                cpu_percent: None,
                                rss_bytes: None,
                                last_exit: None,
                                message: Some(message.clone()),
                                traffic: None,
                                pod: None,
                                version: Some(svc.spec.version()),
                            },
                        )
                    }));
                }
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
                    rollout: svc.rollout.as_ref().map(|r| rollout_status(svc, r)),
                }
            })
            .collect()
    }

    fn rollout_undo(&self, service: &str) -> Result<String, DriverError> {
        let mut guard = self.lock();
        let table = &mut *guard;
        let svc = started(table, service)?;
        // In progress: roll it back (its task restores the previous version).
        if let Some(r) = &svc.rollout
            && r.state == RolloutState::Progressing
        {
            let back = r.previous.clone();
            self.roll_back(svc, service, "undone (rollout undo)".into());
            return Ok(back);
        }
        let Some(previous) = svc.previous.clone() else {
            return Err(DriverError::Invalid(format!(
                "{service} has no previous version to go back to"
            )));
        };
        let undone = svc.spec.clone();
        let back = previous.version();
        let desired = svc.desired;
        self.begin_rollout(svc, service, previous, desired, " (undo)");
        // Like a rollback: a reload of the file that still names it does not redo it.
        svc.rolled_back = Some(undone);
        self.follow_rollout(table, service);
        Ok(back)
    }

    fn rollout_restart(&self, service: &str) -> Result<String, DriverError> {
        let mut guard = self.lock();
        let table = &mut *guard;
        let svc = started(table, service)?;
        let spec = svc.spec.clone();
        let version = spec.version();
        let desired = svc.desired;
        self.begin_rollout(svc, service, spec, desired, " (restart)");
        self.follow_rollout(table, service);
        Ok(version)
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

/// What `status()` says of the latest rollout of `svc`.
fn rollout_status(svc: &Service, r: &Rollout) -> RolloutStatus {
    let updated: Vec<&ReplicaHandle> = svc
        .replicas
        .values()
        .filter(|h| h.spec_gen == r.generation && h.index < svc.desired)
        .collect();
    let updated_ready = updated
        .iter()
        .filter(|h| h.state() == ReplicaState::Ready)
        .count() as u32;
    let updated = updated.len() as u32;
    let message = match r.state {
        RolloutState::Progressing => Some(format!(
            "{updated_ready} of {} updated replicas ready",
            svc.desired
        )),
        RolloutState::Complete | RolloutState::RolledBack => r.message.clone(),
    };
    RolloutStatus {
        version: r.version.clone(),
        previous: Some(r.previous.clone()),
        state: r.state,
        updated,
        updated_ready,
        desired: svc.desired,
        message,
        started_ms: r.started_ms,
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
        (
            svc.spec_gen,
            replicas,
            svc.rollout.as_ref().is_some_and(|r| r.task.is_some()),
        )
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
