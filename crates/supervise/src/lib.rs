//! The local-process driver: runs each service's replicas as processes on this machine.
//!
//! This crate owns the life of a local replica — a free loopback port, the spawn (in its
//! own process group, with `PORT`, `SHOAL_REPLICA` and `SHOAL_SERVICE` set), readiness
//! probes that gate balancer membership (or, for a worker, neither port nor probe:
//! [`ServiceKind::Worker`]), restarts with exponential back-off and a
//! crash-loop give-up rule, draining and group-wide termination on the way out, captured
//! and rotated logs, and CPU/memory sampling from `/proc`. It implements
//! [`shoal_core::Driver`] and reports ready endpoints to a [`shoal_core::EndpointSink`]
//! and what happened to the shared [`shoal_core::EventLog`].
//!
//! It doesn't proxy HTTP (the gateway does, and tells it how many requests are in
//! flight), parse configuration (the app wiring turns the stack file into
//! [`ServiceSpec`]s), or decide replica counts (the autoscaler and the reconciler call
//! [`Driver::scale`](shoal_core::Driver::scale)).
//!
//! Modules, one concern each, with the theory in their docs: `spec` (what to run:
//! [`ServiceSpec`] and its policies, the [`RolloutPolicy`] among them), `backoff` (the
//! pure restart/give-up rule), `process` (spawning and signalling process groups), probes
//! from `shoal-health`, `logs` (pipes to rotated files), `procfs` (resource use),
//! `limits` (memory/CPU limits: cgroup v2, cgroup v1, else rlimits and a sampler;
//! telling an OOM kill apart),
//! `replica` (the state machine of one replica, which owns its process) and `supervisor`
//! (the table of services behind [`Supervisor`], and rolling updates: surge,
//! unavailability, progress deadline, automatic rollback, undo and restart).
#![warn(missing_docs)]

mod backoff;
mod limits;
mod logs;
mod process;
mod procfs;
mod replica;
mod spec;
mod supervisor;

pub use limits::{NotEnforced, ResourceLimits, enforcement};
pub use logs::{LogLine, LogReader, MAX_LINE, line_prefix, log_file, rotated_log_file, strip_ansi};
pub use shoal_health::Probe;
pub use spec::{
    Amount, Condition, Dependency, LogPolicy, LogRotation, Readiness, RestartMode, RestartPolicy,
    RolloutPolicy, ServiceKind, ServiceSpec, StopPolicy,
};
pub use supervisor::{SAMPLE_EVERY, Supervisor};
