//! The driver trait: what the reconciler asks of whatever makes replicas exist.
use std::future::Future;
use std::pin::Pin;

use crate::{Endpoint, ServiceStatus};

/// Errors a driver reports to its caller.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// No service of that name is managed by this driver.
    #[error("no service named `{0}`")]
    UnknownService(String),
    /// The request is not valid for this service (e.g. a scale beyond its limits).
    #[error("{0}")]
    Invalid(String),
}

/// Receives a service's ready endpoints whenever they change. The gateway implements it; drivers
/// call it. Implementations must be cheap and non-blocking: they are called from driver tasks.
pub trait EndpointSink: Send + Sync + 'static {
    /// Replace the set of ready endpoints of `service`.
    fn set_endpoints(&self, service: &str, endpoints: Vec<Endpoint>);
    /// Requests currently in flight to the endpoint with this key (used to drain before a stop).
    fn in_flight(&self, service: &str, key: &str) -> usize;
    /// What still uses exactly `endpoint` (its key *and* address): requests in flight,
    /// response bodies still streaming, upgraded connections (WebSockets), counted also
    /// once the endpoint has left the set. A drain waits for it to reach 0; a replacement
    /// that took over the key at another address is not counted. Default: [`in_flight`]
    /// by key.
    ///
    /// [`in_flight`]: EndpointSink::in_flight
    fn in_use(&self, service: &str, endpoint: &Endpoint) -> usize {
        self.in_flight(service, &endpoint.key)
    }
}

/// A boxed future, for object-safe async trait methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Makes N replicas of each service exist and reports them. Local processes
/// (`shoal-supervise`'s `Supervisor`) and Kubernetes (`shoal-k8s`'s `KubeDriver`) implement
/// it; the admin API, the autoscaler and shutdown only see this trait. What is not a driver
/// operation — how a new stack is handed over, which needs each driver's own spec type —
/// stays with the wiring that picked the driver.
pub trait Driver: Send + Sync + 'static {
    /// Set the desired replica count of a service.
    fn scale(&self, service: &str, replicas: u32) -> Result<(), DriverError>;
    /// Current status of every service this driver manages, sorted by name.
    fn status(&self) -> Vec<ServiceStatus>;
    /// Stop every replica (drain, then terminate) and return when all are gone.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
    /// Go back to the service's previous spec (`shoal rollout undo`), rolling its replicas
    /// as any change does; says which version it goes back to.
    fn rollout_undo(&self, service: &str) -> Result<String, DriverError> {
        let _ = service;
        Err(DriverError::Invalid(
            "this runtime does not roll replicas back".into(),
        ))
    }
    /// Replace every replica of the service with a fresh one of the same spec (`shoal
    /// rollout restart`: e.g. a new binary on disk), as a rollout.
    fn rollout_restart(&self, service: &str) -> Result<String, DriverError> {
        let _ = service;
        Err(DriverError::Invalid(
            "this runtime does not restart replicas".into(),
        ))
    }
    /// Whether this process should apply its own scaling decisions now. Several gateways
    /// may share one driver's replicas (Kubernetes: every gateway measures and decides) and
    /// only one of them must scale. Default: always.
    fn may_scale(&self) -> bool {
        true
    }
}
