//! The life of one replica: a task that owns its process from spawn to reaping.
//!
//! ```text
//!            spawn ──► Starting ──probe passes──► Ready ──failure_threshold──► Unready
//!              ▲           │                        │   ◄──success_threshold──    │
//!   back-off   │   start timeout / exit            exit                 exit / liveness
//!   (restart)  │           ▼                        ▼                             ▼
//!              └──────── Exited ◄───────────────────┴─────────────────────────────┘
//!                          │ give up / cannot spawn
//!                          ▼
//!                        Failed        stop (any state) ──► Draining ──► reaped
//! ```
//!
//! Liveness (Kubernetes' `livenessProbe`, with the readiness check): once a replica has
//! been ready, a run of failed probes that lasts [`Readiness::liveness`] (30 s by default)
//! with no pass in between gets its process group SIGKILLed. That is a failed exit like
//! any other: the restart policy decides, with its back-off and give-up rule. A replica
//! that is merely slow passes a probe now and then, which ends the run; one that was never
//! ready is bounded by the start timeout instead.
//!
//! A worker ([`ServiceKind::Worker`](crate::ServiceKind::Worker)) takes a shorter path:
//! spawned without a port, it is `Ready` at once (nothing to probe) and never joins the
//! [`ReadySet`]; its `Draining` is SIGTERM right away and the grace period, with no wait
//! for in-flight requests (it has none). Exits, restarts and give-ups are the same.
//!
//! One runner task per replica *incarnation* owns the `Child`, so there is exactly one
//! place that waits on, signals and reaps it. Everything else talks to the runner through
//! its [`ReplicaHandle`]: a stop flag (dropping the handle also stops it), a watch of its
//! state, a shared view read by `status()`, and a "done" channel that closes once the
//! process group is gone.
//!
//! Balancer membership goes through the service's [`ReadySet`], which republishes the full
//! set of ready endpoints to the [`EndpointSink`] on every change, under its lock, so
//! concurrent changes reach the gateway in order. Entries carry the incarnation id: when
//! a rolling update starts a new incarnation of index `i`, its endpoint replaces the old
//! one under the same key, and the old incarnation's later removal does not evict it.
//! The [`ReadySet`] also wakes whoever follows the service as a whole (a rollout) on
//! every state change of one of its replicas and when a runner finishes.
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use shoal_core::{
    Endpoint, EndpointSink, EventKind, EventLog, ExitStatus, ReplicaState, ReplicaStatus,
};
use tokio::process::Child;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep, sleep_until};

use crate::backoff::{Decision, RestartTracker, human};
use crate::logs::{self, Pipe, ReplicaLog};
use crate::process;
use crate::procfs::{CpuMeter, GroupUsage};
use crate::spec::{LogPolicy, Readiness, ServiceSpec};

/// How often a draining replica's in-flight count is polled.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// Floor of the probe interval.
const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// Probe cadence of a replica that has not been ready yet (when shorter than `interval`).
///
/// Like Docker's `start_interval`: most servers listen within milliseconds of their
/// start, and the first probe (sent right after spawn) usually finds nothing listening
/// yet. Waiting a whole `interval` (1 s by default) before the second probe would keep a
/// healthy replica out of the balancer for that long after every start and restart.
/// Once a replica has been ready, probes follow `interval`.
const START_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Delay before the next probe: at most [`START_PROBE_INTERVAL`] until the replica is
/// first ready; then `fast_interval` after a failed probe or while out of the balancer,
/// else `interval` with ±10% jitter; never below [`MIN_PROBE_INTERVAL`].
fn next_probe_delay(readiness: &Readiness, ever_ready: bool, failing: bool) -> Duration {
    let delay = if !ever_ready {
        readiness.interval.min(START_PROBE_INTERVAL)
    } else if failing {
        readiness.fast_interval
    } else {
        shoal_health::jittered(readiness.interval)
    };
    // A zero interval must not turn into a busy loop of connects.
    delay.max(MIN_PROBE_INTERVAL)
}

/// What every runner needs from the supervisor.
pub(crate) struct Shared {
    pub(crate) sink: Arc<dyn EndpointSink>,
    pub(crate) events: Arc<EventLog>,
    pub(crate) logs: LogPolicy,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("logs", &self.logs)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The ready endpoints of one service, published to the sink on every change.
pub(crate) struct ReadySet {
    service: String,
    sink: Arc<dyn EndpointSink>,
    /// index → (incarnation id, endpoint).
    members: Mutex<BTreeMap<u32, (u64, Endpoint)>>,
    /// Woken on every replica state change and runner end (see [`ReadySet::changed`]).
    changes: Notify,
}

impl std::fmt::Debug for ReadySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadySet")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl ReadySet {
    pub(crate) fn new(service: String, sink: Arc<dyn EndpointSink>) -> ReadySet {
        ReadySet {
            service,
            sink,
            members: Mutex::new(BTreeMap::new()),
            changes: Notify::new(),
        }
    }

    /// Something about one of the service's replicas changed.
    pub(crate) fn touch(&self) {
        // One waiter at most (the service's rollout); a change with nobody waiting is
        // kept as a permit, so none is lost between a look at the table and the wait.
        self.changes.notify_one();
    }

    /// Wait until a replica of the service changes state or a runner finishes (or until a
    /// change that happened since the last wait).
    pub(crate) async fn changed(&self) {
        self.changes.notified().await;
    }

    /// Add (or take over) slot `index`; a newer incarnation is never displaced by an older one.
    fn join(&self, index: u32, id: u64, endpoint: Endpoint) {
        let mut members = lock(&self.members);
        if members
            .get(&index)
            .is_some_and(|(current, _)| *current > id)
        {
            return;
        }
        members.insert(index, (id, endpoint));
        self.publish(&members);
    }

    /// Remove slot `index` if incarnation `id` holds it; true if it did.
    fn leave(&self, index: u32, id: u64) -> bool {
        let mut members = lock(&self.members);
        if members
            .get(&index)
            .is_none_or(|(current, _)| *current != id)
        {
            return false;
        }
        members.remove(&index);
        self.publish(&members);
        true
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.members).len()
    }

    fn publish(&self, members: &BTreeMap<u32, (u64, Endpoint)>) {
        let endpoints = members.values().map(|(_, e)| e.clone()).collect();
        self.sink.set_endpoints(&self.service, endpoints);
    }
}

/// What `status()` shows of a replica, updated by its runner and by the sampler.
#[derive(Debug)]
struct View {
    state: ReplicaState,
    pid: Option<u32>,
    port: Option<u16>,
    restarts: u32,
    started: Option<Instant>,
    last_exit: Option<ExitStatus>,
    message: Option<String>,
    cpu_percent: Option<f64>,
    rss_bytes: Option<u64>,
    meter: CpuMeter,
}

/// The supervisor's grip on one replica incarnation.
#[derive(Debug)]
pub(crate) struct ReplicaHandle {
    pub(crate) index: u32,
    /// Incarnation id, unique within a supervisor and increasing.
    pub(crate) id: u64,
    /// Generation of the service spec this incarnation runs.
    pub(crate) spec_gen: u64,
    /// The version of that spec ([`ServiceSpec::version`]).
    pub(crate) version: String,
    key: String,
    log: Arc<Mutex<ReplicaLog>>,
    view: Arc<Mutex<View>>,
    state_rx: watch::Receiver<ReplicaState>,
    stop_tx: watch::Sender<bool>,
    done_rx: watch::Receiver<()>,
}

impl ReplicaHandle {
    /// Start the runner of replica `index` on `runtime`.
    pub(crate) fn start(
        shared: Arc<Shared>,
        ready: Arc<ReadySet>,
        spec: Arc<ServiceSpec>,
        index: u32,
        id: u64,
        spec_gen: u64,
        runtime: &tokio::runtime::Handle,
    ) -> ReplicaHandle {
        let key = format!("{}/{index}", spec.name);
        let view = Arc::new(Mutex::new(View {
            state: ReplicaState::Starting,
            pid: None,
            port: None,
            restarts: 0,
            started: None,
            last_exit: None,
            message: None,
            cpu_percent: None,
            rss_bytes: None,
            meter: CpuMeter::default(),
        }));
        let (state_tx, state_rx) = watch::channel(ReplicaState::Starting);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(());
        let log = Arc::new(Mutex::new(ReplicaLog::open(
            &shared.logs.with_rotation(spec.log_rotation),
            &spec.name,
            index,
        )));
        let version = spec.version();
        let touch = ready.clone();
        let runner = Runner {
            tracker: RestartTracker::new(spec.restart.clone()),
            shared,
            ready,
            spec,
            index,
            id,
            key: key.clone(),
            view: view.clone(),
            state_tx,
            stop_rx,
            log: log.clone(),
        };
        runtime.spawn(async move {
            runner.run().await;
            drop(done_tx);
            touch.touch();
        });
        ReplicaHandle {
            index,
            id,
            spec_gen,
            version,
            key,
            log,
            view,
            state_rx,
            stop_tx,
            done_rx,
        }
    }

    /// Ask the runner to drain and stop its process (idempotent).
    pub(crate) fn stop(&self) {
        self.stop_tx.send_replace(true);
    }

    /// A receiver that reports closed once the runner is finished and its process reaped.
    pub(crate) fn done(&self) -> watch::Receiver<()> {
        self.done_rx.clone()
    }

    /// The last non-blank line this incarnation wrote to its log.
    pub(crate) fn last_log_line(&self) -> Option<String> {
        lock(&self.log).last_line().map(str::to_owned)
    }

    /// Whether the runner is finished and its process reaped.
    pub(crate) fn is_done(&self) -> bool {
        self.done_rx.has_changed().is_err()
    }

    pub(crate) fn state(&self) -> ReplicaState {
        *self.state_rx.borrow()
    }

    /// The process group to sample, while a process runs.
    pub(crate) fn pgid(&self) -> Option<u32> {
        lock(&self.view).pid
    }

    /// Record a resource sample of this replica's group.
    pub(crate) fn record_usage(&self, pgid: u32, now: Instant, usage: GroupUsage) {
        let mut v = lock(&self.view);
        if v.pid != Some(pgid) {
            return;
        }
        v.cpu_percent = v.meter.update(now, usage.cpu_ticks).or(v.cpu_percent);
        v.rss_bytes = Some(usage.rss_bytes);
    }

    pub(crate) fn status(&self) -> ReplicaStatus {
        let v = lock(&self.view);
        let running = v.pid.is_some();
        ReplicaStatus {
            index: self.index,
            state: v.state,
            pid: v.pid,
            port: v.port,
            endpoint: v.port.map(|port| Endpoint {
                key: self.key.clone(),
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            }),
            restarts: v.restarts,
            uptime_secs: match (running, v.started) {
                (true, Some(t)) => t.elapsed().as_secs_f64(),
                _ => 0.0,
            },
            cpu_percent: if running { v.cpu_percent } else { None },
            rss_bytes: if running { v.rss_bytes } else { None },
            last_exit: v.last_exit,
            message: v.message.clone(),
            traffic: None,
            pod: None,
            version: Some(self.version.clone()),
        }
    }
}

/// Wait until a `done()` receiver reports the runner finished.
pub(crate) async fn wait_done(mut done: watch::Receiver<()>) {
    while done.changed().await.is_ok() {}
}

/// How one run of the process ended.
enum Outcome {
    /// A stop was requested and carried out.
    Stopped,
    /// The process ended (or was killed for not becoming ready).
    Exited {
        uptime: Duration,
        failure: bool,
        cause: String,
    },
    /// The process could not be started at all.
    CannotStart(String),
}

type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), shoal_health::ProbeError>> + Send>>;

struct Runner {
    shared: Arc<Shared>,
    ready: Arc<ReadySet>,
    spec: Arc<ServiceSpec>,
    index: u32,
    id: u64,
    key: String,
    view: Arc<Mutex<View>>,
    state_tx: watch::Sender<ReplicaState>,
    stop_rx: watch::Receiver<bool>,
    tracker: RestartTracker,
    log: Arc<Mutex<ReplicaLog>>,
}

impl Runner {
    fn emit(&self, kind: EventKind, message: impl Into<String>) {
        let message = message.into();
        // The event log is the record (and `shoal up` prints it): a debug line only.
        tracing::debug!(service = %self.spec.name, replica = self.index, kind = ?kind, "{message}");
        self.shared
            .events
            .emit(&self.spec.name, Some(self.index), kind, message);
    }

    fn set_state(&self, state: ReplicaState, message: Option<String>) {
        {
            let mut v = lock(&self.view);
            v.state = state;
            v.message = message;
        }
        self.state_tx.send_replace(state);
        self.ready.touch();
    }

    /// True once a stop was asked for (or the handle dropped).
    fn stopping(&self) -> bool {
        *self.stop_rx.borrow() || self.stop_rx.has_changed().is_err()
    }

    async fn stop_requested(rx: &mut watch::Receiver<bool>) {
        let _ = rx.wait_for(|stop| *stop).await;
    }

    async fn run(mut self) {
        loop {
            if self.stopping() {
                self.emit(EventKind::Stopped, "stopped before it was started");
                break;
            }
            match self.run_once().await {
                Outcome::Stopped => break,
                Outcome::CannotStart(reason) => {
                    self.give_up(reason).await;
                    break;
                }
                Outcome::Exited {
                    uptime,
                    failure,
                    cause,
                } => {
                    match self
                        .tracker
                        .on_exit(Instant::now(), uptime, failure, &cause)
                    {
                        Decision::Stay => {
                            let mode = format!("{:?}", self.spec.restart.mode);
                            self.set_state(
                                ReplicaState::Exited,
                                Some(format!("{cause}; not restarted (restart: {mode})")),
                            );
                            Self::stop_requested(&mut self.stop_rx).await;
                            break;
                        }
                        Decision::GiveUp { reason } => {
                            self.give_up(reason).await;
                            break;
                        }
                        Decision::Restart { delay } => {
                            let restarts = {
                                let mut v = lock(&self.view);
                                v.restarts += 1;
                                v.restarts
                            };
                            self.set_state(
                                ReplicaState::Exited,
                                Some(format!("{cause}; restarting in {}", human(delay))),
                            );
                            self.emit(
                                EventKind::Restarted,
                                format!("restart {restarts} in {} after {cause}", human(delay)),
                            );
                            tokio::select! {
                                () = sleep(delay) => {}
                                () = Self::stop_requested(&mut self.stop_rx) => {
                                    self.emit(EventKind::Stopped, "stopped during restart back-off");
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    async fn give_up(&mut self, reason: String) {
        self.emit(EventKind::Failed, reason.clone());
        self.set_state(ReplicaState::Failed, Some(reason));
        Self::stop_requested(&mut self.stop_rx).await;
        self.emit(EventKind::Stopped, "stopped (had failed)");
    }

    /// Start the process once and follow it until it exits or is stopped.
    async fn run_once(&mut self) -> Outcome {
        let port = if self.spec.is_worker() {
            None
        } else {
            match process::free_port() {
                Ok(port) => Some(port),
                Err(e) => return Outcome::CannotStart(format!("no free loopback port: {e}")),
            }
        };
        let mut child = match process::spawn(&self.spec, self.index, port) {
            Ok(child) => child,
            Err(e) => return Outcome::CannotStart(e.to_string()),
        };
        let Some(pid) = child.id() else {
            return Outcome::CannotStart("process vanished at start".into());
        };
        let started = Instant::now();
        {
            let mut v = lock(&self.view);
            v.pid = Some(pid);
            v.port = port;
            v.started = Some(started);
            v.cpu_percent = None;
            v.rss_bytes = None;
            v.meter = CpuMeter::default();
        }
        self.set_state(ReplicaState::Starting, None);
        self.emit(
            EventKind::Started,
            match port {
                Some(port) => format!("pid {pid}, port {port}"),
                None => format!("pid {pid}"),
            },
        );
        if let Some(out) = child.stdout.take() {
            logs::spawn_reader(out, Pipe::Stdout, self.log.clone());
        }
        if let Some(err) = child.stderr.take() {
            logs::spawn_reader(err, Pipe::Stderr, self.log.clone());
        }

        let outcome = match port {
            Some(port) => self.follow(&mut child, pid, port, started).await,
            None => self.follow_worker(&mut child, pid, started).await,
        };
        let mut v = lock(&self.view);
        v.pid = None;
        drop(v);
        outcome
    }

    fn probe_after(&self, delay: Duration, port: u16) -> ProbeFuture {
        let probe = self.spec.readiness.probe.clone();
        let timeout = self.spec.readiness.timeout;
        Box::pin(async move {
            sleep(delay).await;
            shoal_health::check(&probe, &format!("127.0.0.1:{port}"), timeout).await
        })
    }

    async fn follow(
        &mut self,
        child: &mut Child,
        pgid: u32,
        port: u16,
        started: Instant,
    ) -> Outcome {
        let readiness = self.spec.readiness.clone();
        let start_deadline = started + readiness.start_timeout;
        let grace_end = started + readiness.start_period;
        let endpoint = Endpoint {
            key: self.key.clone(),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        };
        let mut in_balancer = false;
        let mut ever_ready = false;
        let (mut passes, mut failures) = (0u32, 0u32);
        // The first failed probe of the current run of failures, once the replica was ready.
        let mut failing_since: Option<Instant> = None;
        let mut probe = self.probe_after(Duration::ZERO, port);
        let mut stop_rx = self.stop_rx.clone();
        loop {
            tokio::select! {
                biased;
                () = Self::stop_requested(&mut stop_rx) => {
                    self.stop_process(child, pgid, Some(&endpoint)).await;
                    return Outcome::Stopped;
                }
                status = child.wait() => return self.exited(status, pgid, started),
                () = sleep_until(start_deadline), if !ever_ready => {
                    let cause = format!("not ready within {} (start timeout)", human(readiness.start_timeout));
                    let status = process::terminate(child, pgid, self.spec.stop.grace).await;
                    lock(&self.view).last_exit = status;
                    let how = status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string());
                    self.emit(EventKind::Exited, format!("{cause}: killed ({how})"));
                    return Outcome::Exited { uptime: started.elapsed(), failure: true, cause };
                }
                result = &mut probe => {
                    // Decided before this result counts: the probe after the one that
                    // made the replica ready still comes at the start-up cadence.
                    let failing = result.is_err() || (ever_ready && !in_balancer);
                    probe = self.probe_after(next_probe_delay(&readiness, ever_ready, failing), port);
                    match result {
                        Ok(()) => {
                            failures = 0;
                            failing_since = None;
                            passes = passes.saturating_add(1);
                            if !in_balancer && passes >= readiness.success_threshold.max(1) {
                                in_balancer = true;
                                let msg = if ever_ready {
                                    "readiness passes again: back in the balancer".to_owned()
                                } else {
                                    format!("ready after {}", human_secs(started.elapsed()))
                                };
                                ever_ready = true;
                                // The event first: whoever sees the replica in the
                                // balancer or in the status also finds why in the log.
                                self.emit(EventKind::Ready, msg);
                                self.ready.join(self.index, self.id, endpoint.clone());
                                self.set_state(ReplicaState::Ready, None);
                            }
                        }
                        Err(reason) => {
                            passes = 0;
                            if Instant::now() < grace_end {
                                continue;
                            }
                            failures = failures.saturating_add(1);
                            let now = Instant::now();
                            let since = *failing_since.get_or_insert(now);
                            if let Some(bound) = readiness.liveness.filter(|_| ever_ready)
                                && now.duration_since(since) >= bound
                            {
                                // Up, for the back-off, is the time it worked: until the
                                // failures began. A replica that hangs soon after every
                                // start backs off further each time, as a crash loop does.
                                let worked = since.duration_since(started);
                                return self
                                    .not_alive(child, pgid, worked, bound, &reason.to_string())
                                    .await;
                            }
                            if in_balancer && failures >= readiness.failure_threshold.max(1) {
                                in_balancer = false;
                                let mut msg = format!("readiness failed {failures} times: {reason}");
                                self.emit(EventKind::Unready, msg.clone());
                                self.ready.leave(self.index, self.id);
                                if let Some(bound) = readiness.liveness {
                                    msg.push_str(&format!(
                                        "; restarted if still failing {} after the first failure (liveness)",
                                        human(bound)
                                    ));
                                }
                                self.set_state(ReplicaState::Unready, Some(msg));
                            } else if !ever_ready {
                                lock(&self.view).message = Some(format!("not ready yet: {reason}"));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Liveness: the replica was ready, and its probe has failed for `bound` without a pass
    /// since. A hung process would not act on SIGTERM: its group gets SIGKILL (it is
    /// out of the balancer already, so nothing is drained), and the exit is a failure for
    /// the restart policy, back-off and give-up rule included; `worked`: how long it ran
    /// before its probes began to fail.
    async fn not_alive(
        &mut self,
        child: &mut Child,
        pgid: u32,
        worked: Duration,
        bound: Duration,
        reason: &str,
    ) -> Outcome {
        self.ready.leave(self.index, self.id);
        let cause = format!(
            "health check failing for {} (liveness): {reason}",
            human(bound)
        );
        // SIGKILL first; `terminate` then reaps the leader and sweeps the group.
        process::signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
        let status = process::terminate(child, pgid, Duration::ZERO).await;
        lock(&self.view).last_exit = status;
        let how = status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string());
        self.emit(EventKind::Exited, format!("{cause}: killed ({how})"));
        Outcome::Exited {
            uptime: worked,
            failure: true,
            cause,
        }
    }

    /// The process ended on its own: out of the balancer, and why.
    fn exited(
        &mut self,
        status: std::io::Result<std::process::ExitStatus>,
        pgid: u32,
        started: Instant,
    ) -> Outcome {
        // Sweep the group at once: nothing the replica forked outlives it.
        process::signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
        let status = status.ok().map(process::exit_status);
        self.ready.leave(self.index, self.id);
        let uptime = started.elapsed();
        let cause = status.map_or_else(|| "exited (status unknown)".to_owned(), |s| s.to_string());
        // Killed at its memory limit: say so (`OOM: …`) before the signal.
        let cause = match crate::limits::reaped(pgid) {
            Some(oom) => format!("{oom} ({cause})"),
            None => cause,
        };
        lock(&self.view).last_exit = status;
        self.emit(
            EventKind::Exited,
            format!("{cause} after {}", human_secs(uptime)),
        );
        let failure = status != Some(ExitStatus::Code(0));
        Outcome::Exited {
            uptime,
            failure,
            cause,
        }
    }

    /// A worker: ready while it runs, until it exits or is stopped.
    async fn follow_worker(&mut self, child: &mut Child, pgid: u32, started: Instant) -> Outcome {
        self.emit(EventKind::Ready, "running (a worker is ready once started)");
        self.set_state(ReplicaState::Ready, None);
        let mut stop_rx = self.stop_rx.clone();
        tokio::select! {
            biased;
            () = Self::stop_requested(&mut stop_rx) => {
                self.stop_process(child, pgid, None).await;
                Outcome::Stopped
            }
            status = child.wait() => self.exited(status, pgid, started),
        }
    }

    /// Leave the balancer, drain, then terminate the process group and reap it. A worker
    /// has neither balancer nor requests: SIGTERM at once. `endpoint`: where the replica
    /// listens (None for a worker).
    async fn stop_process(&mut self, child: &mut Child, pgid: u32, endpoint: Option<&Endpoint>) {
        let mut note = String::new();
        let mut exited = None;
        if self.spec.is_worker() {
            self.set_state(ReplicaState::Draining, None);
            self.emit(
                EventKind::Draining,
                format!(
                    "SIGTERM; up to {} to finish before SIGKILL",
                    human(self.spec.stop.grace)
                ),
            );
        } else if let Some(endpoint) = endpoint {
            self.drain(child, endpoint, &mut note, &mut exited).await;
        }
        let status = match exited {
            Some(status) => {
                process::signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = crate::limits::reaped(pgid);
                status
            }
            None => process::terminate(child, pgid, self.spec.stop.grace).await,
        };
        let how = status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string());
        {
            let mut v = lock(&self.view);
            v.last_exit = status;
            v.pid = None;
        }
        self.set_state(ReplicaState::Exited, Some(format!("stopped: {how}")));
        self.emit(EventKind::Stopped, format!("{how}{note}"));
    }

    /// Leave the balancer and wait, up to the drain timeout, until nothing uses the
    /// replica's endpoint any more: requests in flight, response bodies still streaming,
    /// upgraded connections (WebSockets) — [`EndpointSink::in_use`], which counts this
    /// incarnation's address only, not a replacement that took over its key. Past the
    /// timeout the replica is stopped all the same (SIGTERM: a WebSocket server closes its
    /// sessions then, e.g. with 1001 "going away"). `exited` is set if the process ended
    /// meanwhile.
    async fn drain(
        &mut self,
        child: &mut Child,
        endpoint: &Endpoint,
        note: &mut String,
        exited: &mut Option<Option<ExitStatus>>,
    ) {
        self.ready.leave(self.index, self.id);
        let drain = self.spec.stop.drain_timeout;
        self.set_state(ReplicaState::Draining, None);
        self.emit(
            EventKind::Draining,
            format!("left the balancer; draining up to {}", human(drain)),
        );
        let deadline = Instant::now() + drain;
        loop {
            let in_use = self.shared.sink.in_use(&self.spec.name, endpoint);
            if in_use == 0 {
                break;
            }
            if Instant::now() >= deadline {
                *note = format!(
                    " (drain timeout with {in_use} in flight: requests, response streams or \
                     upgraded connections)"
                );
                break;
            }
            tokio::select! {
                status = child.wait() => {
                    *exited = Some(status.ok().map(process::exit_status));
                    break;
                }
                () = sleep(DRAIN_POLL) => {}
            }
        }
    }
}

fn human_secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_come_fast_until_first_ready_then_every_interval() {
        let at = |interval: Duration, fast: Duration| Readiness {
            interval,
            fast_interval: fast,
            ..Readiness::default()
        };
        let second = at(Duration::from_secs(1), Duration::from_millis(250));
        assert_eq!(
            next_probe_delay(&second, false, false),
            START_PROBE_INTERVAL
        );
        let d = next_probe_delay(&second, true, false);
        assert!(
            (Duration::from_millis(900)..=Duration::from_millis(1100)).contains(&d),
            "interval with jitter: {d:?}"
        );
        // After a failure or while out of the balancer: the fast interval.
        assert_eq!(
            next_probe_delay(&second, true, true),
            Duration::from_millis(250)
        );
        // A shorter interval is kept during start-up too.
        let short = at(Duration::from_millis(30), Duration::from_millis(30));
        assert_eq!(
            next_probe_delay(&short, false, false),
            Duration::from_millis(30)
        );
        // Zero never becomes a busy loop.
        let zero = at(Duration::ZERO, Duration::ZERO);
        assert_eq!(next_probe_delay(&zero, false, false), MIN_PROBE_INTERVAL);
        assert_eq!(next_probe_delay(&zero, true, true), MIN_PROBE_INTERVAL);
    }
}
