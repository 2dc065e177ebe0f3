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
    /// The newest read of the backlog of the queue the service consumes, for a
    /// [`Target::Backlog`](crate::Target::Backlog); `None` before the first read completes
    /// (or without a backlog target). Pass the newest read at every tick, the same one
    /// again if no read completed since the previous tick: the engine tells reads apart by
    /// [`BacklogRead::at`], so each read (and each failed read) counts once however the
    /// poll interval and the tick compare.
    pub backlog: Option<BacklogRead>,
}

/// One read of a queue's backlog from its broker.
#[derive(Debug, Clone, PartialEq)]
pub struct BacklogRead {
    /// When the read completed, on the same clock as [`Sample::now`]. Consumption rates are
    /// measured between the `at`s of successful reads, so they are exact whatever the
    /// tick.
    pub at: Duration,
    /// What the broker said, or why it could not be read (the broker's message, shown in
    /// the decision's reason: it must not contain credentials).
    pub result: Result<BacklogSample, String>,
}

impl BacklogRead {
    /// A successful read at `at`.
    pub fn ok(at: Duration, sample: BacklogSample) -> BacklogRead {
        BacklogRead {
            at,
            result: Ok(sample),
        }
    }

    /// A failed read at `at`, with the broker's (or the connection's) message.
    pub fn failed(at: Duration, error: impl Into<String>) -> BacklogRead {
        BacklogRead {
            at,
            result: Err(error.into()),
        }
    }
}

/// What a broker says about a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogSample {
    /// Messages waiting to be consumed (Kafka consumer-group lag, Redis Streams group lag,
    /// RabbitMQ ready messages).
    pub messages: u64,
    /// A counter of messages consumed so far, monotonic while the broker keeps its state
    /// (Kafka's summed committed offsets, Redis' `entries-read`); `None` when the broker
    /// does not tell. Consumption rates come from its deltas; without it, from the
    /// backlog's decrease. The arrival rate, and with it the keep-up floor, needs it (see
    /// [`crate::backlog`]).
    pub consumed: Option<u64>,
    /// Partitions of the topic (Kafka): the cap on useful consumers.
    pub partitions: Option<u32>,
}

impl BacklogSample {
    /// `messages` waiting, nothing else known.
    pub fn new(messages: u64) -> BacklogSample {
        BacklogSample {
            messages,
            consumed: None,
            partitions: None,
        }
    }

    /// With this consumed counter.
    pub fn with_consumed(mut self, consumed: u64) -> BacklogSample {
        self.consumed = Some(consumed);
        self
    }

    /// With this many partitions.
    pub fn with_partitions(mut self, partitions: u32) -> BacklogSample {
        self.partitions = Some(partitions);
        self
    }
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
