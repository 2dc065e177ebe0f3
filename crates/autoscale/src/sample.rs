//! [`Sample`]: what the wiring observed of one service during the last tick.
//!
//! `None` always means "no data" (a scrape failed, the replica has not reported yet), never
//! zero: the engine treats the two very differently (see [`crate::metrics`]).

use std::time::Duration;

/// One tick's observations of one service.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    /// The time of the tick, since an arbitrary origin shared with [`Autoscaler::new`](crate::Autoscaler::new).
    pub now: Duration,
    /// The replica count the driver is currently asked to run: the last [`Decision::desired`](crate::Decision::desired)
    /// (or [`Autoscaler::wake`](crate::Autoscaler::wake)'s answer) that was applied.
    pub current: u32,
    /// The replicas that exist, starting ones included.
    pub replicas: Vec<ReplicaSample>,
    /// The service's 95th-percentile latency over the last tick, measured at the gateway;
    /// `None` = no data (no request completed, or not measured).
    pub latency_p95: Option<Duration>,
    /// Requests the gateway holds waiting for a replica.
    pub queued: u64,
    /// Requests the service received during the last tick.
    pub requests: u64,
}

/// One replica's observations during the last tick.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSample {
    /// Whether the replica passes its readiness check (receives traffic).
    pub ready: bool,
    /// How long it has been ready (zero if not ready).
    pub ready_for: Duration,
    /// Cores used, averaged over the last tick (0.37 = 37% of one core).
    pub cpu: Option<f64>,
    /// Cores requested; CPU targets are relative to it. Default 1.0.
    pub cpu_request: f64,
    /// Resident set size, in bytes.
    pub memory: Option<u64>,
    /// Requests in flight, averaged over the last tick.
    pub concurrency: Option<f64>,
    /// Requests per second over the last tick.
    pub rps: Option<f64>,
}

impl Default for ReplicaSample {
    /// A replica that is not ready and reports nothing, with a request of one core.
    fn default() -> Self {
        ReplicaSample {
            ready: false,
            ready_for: Duration::ZERO,
            cpu: None,
            cpu_request: 1.0,
            memory: None,
            concurrency: None,
            rps: None,
        }
    }
}

impl ReplicaSample {
    /// A replica that is starting (not ready yet) and reports nothing.
    pub fn starting() -> Self {
        ReplicaSample::default()
    }

    /// A replica that has been ready for `ready_for` and reports nothing yet.
    pub fn ready(ready_for: Duration) -> Self {
        ReplicaSample {
            ready: true,
            ready_for,
            ..ReplicaSample::default()
        }
    }

    /// With this concurrency.
    pub fn with_concurrency(mut self, in_flight: f64) -> Self {
        self.concurrency = Some(in_flight);
        self
    }

    /// With this CPU use, in cores.
    pub fn with_cpu(mut self, cores: f64) -> Self {
        self.cpu = Some(cores);
        self
    }

    /// With this memory use, in bytes.
    pub fn with_memory(mut self, bytes: u64) -> Self {
        self.memory = Some(bytes);
        self
    }

    /// With this request rate.
    pub fn with_rps(mut self, rps: f64) -> Self {
        self.rps = Some(rps);
        self
    }
}
