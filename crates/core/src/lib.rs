//! The shared vocabulary of shoal's planes: services, replicas, endpoints, events, and the
//! [`Driver`] trait that makes replicas exist.
//!
//! This crate owns the types that cross plane boundaries (a driver reports replicas and
//! endpoints; the gateway consumes endpoints; the admin API shows replicas and events) and
//! the traits drivers implement. It owns no I/O and no policy: drivers (local processes in
//! `shoal-supervise`, Kubernetes in `shoal-k8s`) depend on it, never the reverse. Words are used as
//! defined in `docs/glossary.md`. It also owns [`prom`], the Prometheus text format every
//! `/metrics` renderer writes with (pure string building, so the gateway and the app share
//! it without one depending on the other for it).
#![warn(missing_docs)]

mod driver;
mod event;
pub mod prom;
mod replica;

pub use driver::{BoxFuture, Driver, DriverError, EndpointSink};
pub use event::{Event, EventKind, EventLog};
pub use replica::{
    AutoscaleBacklog, AutoscaleReading, AutoscaleStatus, Endpoint, ExitStatus, HealthState, Pod,
    ReplicaState, ReplicaStatus, ReplicaTraffic, RolloutState, RolloutStatus, ServiceState,
    ServiceStatus, ServiceTraffic,
};

/// Milliseconds since the Unix epoch, for timestamps that leave the process (events, API).
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
