//! The gateway inside a cluster: pods as replicas, found through EndpointSlices, scaled
//! through the Deployment's scale subresource, with one gateway at a time elected to scale.
//!
//! [`KubeDriver`] is the Kubernetes counterpart of the local supervisor: it implements
//! [`shoal_core::Driver`] and feeds a [`shoal_core::EndpointSink`] (the gateway). It does not
//! start or stop anything itself: the Deployments own the pods, this module reads them and
//! asks for more or fewer.
//!
//! # What is watched
//!
//! One watch per gateway: every `discovery.k8s.io/v1` EndpointSlice in the namespace that has
//! the label `kubernetes.io/service-name` (the label the EndpointSlice controller puts on the
//! slices of a Service). A store of those slices is kept, and for each *followed* service
//! ([`KubeDriver::set_services`]) the union of its slices' endpoints is computed. One watch
//! rather than one per service because the rendered objects all live in one namespace: one
//! connection and one resourceVersion to resume from whatever the number of services, and a
//! service added by a reload gets its endpoints from the store at once, without a new list.
//! The cost is that slices of services shoal does not route to are read too (and ignored).
//!
//! Each endpoint is one pod (`targetRef.name`; `ip:port` when the slice has no target), at
//! its first address and the slice's port that equals the service's container port (or the
//! slice's only port). The gateway gets the endpoints that are ready (`conditions.ready`
//! true or absent, as the EndpointSlice API says to read it) and not terminating; a
//! terminating endpoint leaves the set — it gets no new requests, the gateway lets the ones in
//! flight finish — and a removed one leaves at once. The sink is called only when a service's
//! set actually changed.
//!
//! # Why a set never empties because the API is unreachable
//!
//! The watch is `kube::runtime::watcher`: it resumes from the last resourceVersion after a
//! disconnect and re-lists when the server answers 410 Gone. The store only changes on what
//! a list or a watch *said*: an error, a cut connection or an API server that is down changes
//! nothing, so the gateway keeps balancing over the pods it last knew (the pods themselves
//! are usually fine when the control plane is not). A re-list is buffered from `Init` to
//! `InitDone` and the whole store swapped at `InitDone`, so there is no moment in between with
//! a partial or empty set. Errors are retried with a bounded, jittered exponential back-off
//! (0.5 s doubling to 10 s, reset by the next event) and reported as one
//! [`EventKind::ApiError`](shoal_core::EventKind::ApiError) per outage — not one per retry —
//! naming the verb, the resource and the API server's message; a 403 says which RBAC verb on
//! which resource the gateway's ServiceAccount lacks. Recovery is logged (`tracing` info).
//!
//! # Status and scaling
//!
//! [`Driver::status`](shoal_core::Driver::status) reports each followed service's pods (name,
//! node, ready / starting / draining), ordered by pod name. The desired count is the
//! Deployment's `spec.replicas`, read every 5 s (`get deployments`: the Role grants it for
//! every replicated service, the scale subresource only for those shoal scales) and from the
//! answer to each scale; the endpoint count until it is known.
//! [`Driver::scale`](shoal_core::Driver::scale) remembers the count and hands it to the
//! service's scale task, which sends a merge patch of `spec.replicas` to the scale
//! subresource; requests made while one is in flight are coalesced into the latest. A 409 is
//! retried once after a fresh read; any other failure is an `ApiError` event (403 names the
//! missing verb `patch` on `deployments/scale`, 404 says there is no such Deployment) and is
//! not retried: the next attempt is the next scale call.
//!
//! # Leader election
//!
//! With several gateway pods only one scales. They share a `coordination.k8s.io/v1` Lease
//! (default name `shoal-gateway`, 15 s duration, renewed every 2 s — [`LeaseSettings`]),
//! written with get / create / replace and resourceVersion optimistic concurrency, as
//! client-go's leaderelection does. Every round: no Lease → create it holding it; held by
//! this gateway → replace it with a new `renewTime`; held by another → take it over (with
//! `leaseTransitions` + 1) only if it has expired: its holder empty, its `renewTime +
//! leaseDurationSeconds` in the past, or the record unchanged for a whole duration by this
//! gateway's own clock (which covers clocks that disagree); otherwise follow. A 409 means
//! someone else wrote first: read again next round. This gateway stops claiming leadership
//! ([`KubeDriver::is_leader`]) as soon as it has failed to renew for a whole duration, counted
//! from the start of its last successful round — by then another gateway may take over. On
//! shutdown the leader releases the Lease (no holder, `leaseDurationSeconds: 1`) so that
//! another takes over at its next round. Each change is an
//! [`EventKind::Leader`](shoal_core::EventKind::Leader) event.
//! [`Driver::scale`](shoal_core::Driver::scale) is not gated on leadership here: the
//! autoscaler asks [`KubeDriver::is_leader`] before it scales, and a manual `shoal scale`
//! goes through on whichever gateway receives it.
//!
//! Timers use tokio's clock; only the Lease's timestamps (`MicroTime`) are wall-clock time.
//!
//! # Identity and namespace
//!
//! [`Cluster::connect`] reads `--kubeconfig` if given, else what `kube`'s `Config::infer`
//! finds (`KUBECONFIG`, `~/.kube/config`, or the in-cluster ServiceAccount). The namespace is
//! the option, else `SHOAL_NAMESPACE`, else the kubeconfig context's (or the ServiceAccount's)
//! namespace. The Lease holder identity is the option, else `POD_NAME`, else the host name
//! (in a pod: the pod's name).
mod connect;
mod driver;
mod lease;
mod problem;
mod scale;
mod slices;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

pub use connect::{Cluster, ClusterError};
pub use driver::KubeDriver;

/// How to reach the cluster, which namespace to work in, and who this gateway is.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// A kubeconfig file to read; default: `KUBECONFIG`, `~/.kube/config`, or the in-cluster
    /// ServiceAccount (kube's `Config::infer`).
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the EndpointSlices, Deployments and the Lease; default: `SHOAL_NAMESPACE`,
    /// else the kubeconfig context's namespace (in a pod: the ServiceAccount's).
    pub namespace: Option<String>,
    /// This gateway's name as the Lease holder; default: `POD_NAME`, else the host name.
    pub identity: Option<String>,
}

/// A service whose pods the gateway follows.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeService {
    /// The name of the Kubernetes Service (whose EndpointSlices are read) and of the
    /// Deployment (which is scaled): both are the shoal service's name.
    pub name: String,
    /// The container port: the slice port equal to it is used, or the slice's only port.
    pub port: u16,
}

/// The Lease through which gateways elect the one that scales.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// Name of the Lease object (`shoal-gateway`).
    pub name: String,
    /// How long a holder's claim lasts without a renewal (15 s); written as
    /// `leaseDurationSeconds`, rounded up to whole seconds.
    pub duration: Duration,
    /// How often the Lease is read and renewed or claimed (2 s).
    pub renew_every: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            name: crate::LEASE_NAME.to_owned(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(2),
        }
    }
}
