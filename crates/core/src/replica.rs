//! Replicas, their endpoints and their standing.
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// An address the gateway can send requests to, with the stable key of the replica behind it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// Stable identity, `SERVICE/INDEX` for local replicas (e.g. `users/0`).
    pub key: String,
    /// Where to connect.
    pub addr: SocketAddr,
}

/// Where a replica is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaState {
    /// Process started, readiness check not yet passed: not in the balancer.
    Starting,
    /// Readiness passed: in the balancer.
    Ready,
    /// Was ready, then failed its readiness check: out of the balancer while the process
    /// runs (hung, overloaded, a dependency down). Back to `Ready` when the check passes
    /// again; restarted if it keeps failing past the liveness bound.
    Unready,
    /// Out of the balancer, finishing in-flight requests before it is stopped.
    Draining,
    /// The process has exited; it may be restarted after a back-off.
    Exited,
    /// Given up: restart attempts exhausted, or the command cannot be started.
    Failed,
}

impl std::fmt::Display for ReplicaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplicaState::Starting => "starting",
            ReplicaState::Ready => "ready",
            ReplicaState::Unready => "unready",
            ReplicaState::Draining => "draining",
            ReplicaState::Exited => "exited",
            ReplicaState::Failed => "failed",
        })
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// One replica as a driver reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Index within the service, from 0.
    pub index: u32,
    /// Current state.
    pub state: ReplicaState,
    /// OS process id while running.
    pub pid: Option<u32>,
    /// Port the replica was told to listen on.
    pub port: Option<u16>,
    /// Endpoint, once assigned.
    pub endpoint: Option<Endpoint>,
    /// How many times this replica has been restarted.
    pub restarts: u32,
    /// Seconds since the current process started (0 when not running).
    pub uptime_secs: f64,
    /// CPU use of the process group over the last sample, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Resident memory of the process group, in bytes.
    pub rss_bytes: Option<u64>,
    /// How the last process ended, if one did.
    pub last_exit: Option<ExitStatus>,
    /// Human-readable reason for the current state (e.g. why it failed).
    pub message: Option<String>,
    /// How the gateway sees it, once it is in the balancer.
    #[serde(default)]
    pub traffic: Option<ReplicaTraffic>,
    /// The Kubernetes pod behind it (Kubernetes mode); `None` for local processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
    /// The version it runs: the service's `version:` label, else a short hash of its spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A Kubernetes pod serving as a replica, as its EndpointSlice (and, where the gateway may
/// read pods, the pod itself) describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    /// The pod's name.
    pub name: String,
    /// The node it runs on, if the EndpointSlice says.
    #[serde(default)]
    pub node: Option<String>,
    /// The EndpointSlice's `terminating` condition: it gets no new requests, finishes the
    /// ones in flight.
    #[serde(default)]
    pub terminating: bool,
}

/// Whether the gateway sends requests to a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// In rotation.
    Healthy,
    /// Failing its active health check: out of rotation until it passes.
    Unhealthy,
    /// Ejected by passive health checking: out of rotation for a while.
    Ejected,
}

impl std::fmt::Display for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
            HealthState::Ejected => "ejected",
        })
    }
}

/// A replica as the gateway sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaTraffic {
    /// In rotation or why not.
    pub health: HealthState,
    /// Why it is out of rotation, e.g. "health check: timed out after 500ms".
    pub reason: Option<String>,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Requests sent to it so far.
    pub requests_total: u64,
    /// Times passive health checking ejected it.
    pub ejections_total: u64,
}

/// A service as the gateway sees it: request and failover counters, ready for metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceTraffic {
    /// Requests routed to the service and answered (by a replica or by the gateway).
    #[serde(default)]
    pub requests_total: u64,
    /// Of those, answered with a 5xx status.
    #[serde(default)]
    pub server_errors_total: u64,
    /// Tries sent again after a failure (to another replica, or resent when nothing was sent).
    pub retries_total: u64,
    /// Tries sent to another replica because the first was slow (per-try timeout).
    pub hedges_total: u64,
    /// Retries and hedges the retry budget refused.
    pub retries_refused_total: u64,
    /// Ejections of the service's replicas.
    pub ejections_total: u64,
    /// Circuit breaker state (`closed`, `open`, `half-open`), if the service has one.
    pub breaker: Option<String>,
    /// Times the breaker opened.
    pub breaker_opened_total: u64,
    /// Requests answered 503 by the open breaker.
    pub breaker_rejected_total: u64,
    /// The per-try timeout in force now (the automatic one follows the service's latency),
    /// in milliseconds; None when tries are not hedged.
    pub per_try_timeout_ms: Option<u64>,
    /// 95th percentile of time to response headers over the last 10–20 s, in ms; None
    /// before 10 responses.
    pub latency_p95_ms: Option<f64>,
    /// Requests held now, waiting for the service to wake from zero.
    pub held: u64,
}

/// A service's overall standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// All desired replicas ready.
    Running,
    /// Some replicas not ready yet (starting, restarting, scaling).
    Progressing,
    /// Given up on: no further restarts until the service is scaled or reloaded.
    Failed,
    /// Desired replicas is zero.
    Stopped,
}

/// One service as a driver reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// Replicas the driver aims at.
    pub desired: u32,
    /// Replicas in the balancer.
    pub ready: u32,
    /// Overall standing.
    pub state: ServiceState,
    /// The replicas, by index.
    pub replicas: Vec<ReplicaStatus>,
    /// Failover counters from the gateway.
    #[serde(default)]
    pub traffic: Option<ServiceTraffic>,
    /// The autoscaler's view, for an autoscaled service.
    #[serde(default)]
    pub autoscale: Option<AutoscaleStatus>,
    /// Whether its replicas are workers (`kind: worker`): no port, no readiness check, no
    /// requests (no `traffic`). Absent from the JSON for web services.
    #[serde(default, skip_serializing_if = "is_false")]
    pub worker: bool,
    /// The service's latest rollout, once its spec has changed (or was restarted) since it
    /// started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
}

/// A service's rollout, like `kubectl rollout status` sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// The version being rolled out (or, once complete, running).
    pub version: String,
    /// The version it replaces (what `shoal rollout undo` goes back to).
    pub previous: Option<String>,
    /// Where it stands.
    pub state: RolloutState,
    /// Replicas (of the desired count) already on the new version.
    pub updated: u32,
    /// Of those, the ones ready.
    pub updated_ready: u32,
    /// Desired replica count.
    pub desired: u32,
    /// Why it was rolled back or failed, or what it waits for.
    #[serde(default)]
    pub message: Option<String>,
    /// Milliseconds since the Unix epoch when it started.
    pub started_ms: u64,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutState {
    /// Replacing replicas.
    Progressing,
    /// Every replica runs the new version.
    Complete,
    /// Undone: the previous version runs again (past the progress deadline, or `undo`).
    RolledBack,
}

impl std::fmt::Display for RolloutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RolloutState::Progressing => "progressing",
            RolloutState::Complete => "complete",
            RolloutState::RolledBack => "rolledback",
        })
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// An autoscaled service, like `kubectl get hpa` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoscaleStatus {
    /// Lower bound (0 = scales to zero).
    pub min: u32,
    /// Upper bound.
    pub max: u32,
    /// What the last decision asked for.
    pub desired: u32,
    /// Current value / target per metric, e.g. `75%/50%, 23.5/10`.
    pub targets: String,
    /// Each metric: name, current value (per replica; latency in ms), target.
    pub readings: Vec<AutoscaleReading>,
    /// In panic mode (a burst: scaling up at once, no scale-down).
    pub panic: bool,
    /// Why the last decision is what it is.
    pub reason: String,
    /// What held the count back from the raw recommendation, if anything.
    pub limited_by: Option<String>,
    /// When the count last changed (ms since the Unix epoch).
    pub last_scaled_ms: Option<u64>,
    /// Requests held at the gateway waiting for a replica (scale from zero).
    pub held: u64,
    /// The queue behind a `backlog` target, if the service has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<AutoscaleBacklog>,
}

/// The queue an autoscaled service consumes (`autoscale.backlog`), as its broker was last
/// read and as the autoscaler sees it. The consumers are the service's ready replicas
/// ([`ServiceStatus::ready`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoscaleBacklog {
    /// The queue read, e.g. `redis 127.0.0.1:6379 stream sales group agg`; never a
    /// credential.
    pub source: String,
    /// Messages waiting at the last successful read; None before the first.
    pub messages: Option<u64>,
    /// The moving average of the backlog that the autoscaler's proposals use.
    pub smoothed: Option<f64>,
    /// The broker's counter of messages consumed at the last successful read (Redis
    /// `entries-read`, Kafka's summed committed offsets, RabbitMQ's acknowledged messages
    /// through the management API); None when the broker has none.
    pub consumed: Option<u64>,
    /// Partitions of the topic (Kafka).
    pub partitions: Option<u32>,
    /// Messages each replica consumes per second, as last measured; None until measured.
    pub rate_per_replica: Option<f64>,
    /// Whether the backlog is above the activation threshold (keeps a `min: 0` service up).
    pub active: bool,
    /// Failed reads in a row (0 once a read succeeds).
    pub failures: u32,
    /// Why the last read failed, while reads fail (the broker's message; never a
    /// credential).
    pub error: Option<String>,
    /// Whether the fallback replica count is in force (reads have failed too often).
    pub fallback: bool,
    /// When the newest read, successful or not, completed (ms since the Unix epoch); None
    /// before the first.
    pub read_at_ms: Option<u64>,
}

/// One autoscaling metric against its target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoscaleReading {
    /// `cpu`, `memory`, `concurrency`, `rps` or `latency_p95`.
    pub name: String,
    /// Current value (cpu as a fraction of the request, memory in bytes, latency in ms);
    /// None when unknown.
    pub value: Option<f64>,
    /// The target, in the same unit.
    pub target: f64,
}
