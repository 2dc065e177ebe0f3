//! The data plane: listeners, the router, middlewares, balancing, and upstream pools.
//!
//! This crate owns the life of a request, from the accepted connection to the replica and
//! back: HTTP/1.1 keep-alive and HTTP/2 (h2c, or over TLS: [`tls`]) from clients, route matching
//! ([`shoal_route`]), middlewares, choosing a replica ([`shoal_balance`]), forwarding with
//! streamed bodies, upgrades (WebSocket) and gRPC over h2c, and the mapping of every failure
//! to a response (404/502/503/504). It does not decide which replicas exist (drivers push
//! endpoints through [`shoal_core::EndpointSink`], which [`Gateway`] implements) and does not
//! read files: it is given a validated [`shoal_config::Stack`].
//!
//! Hot path rules: the routing table and each service's endpoint set are immutable snapshots
//! behind `ArcSwap`, counters are atomics, and no lock is held across an await.
#![warn(missing_docs)]

mod access_log;
pub mod body;
mod breaker;
mod budget;
mod compress;
mod error;
mod exchange;
mod forward;
mod framing;
mod gateway;
mod grpc;
mod health;
mod hold;
mod https_redirect;
mod hyper_path;
mod latency;
mod metrics;
mod middleware;
mod mirror;
mod pipeline;
mod relay;

mod differential;
/// Entry points for the fuzz targets in `fuzz/` (not an API).
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::differential::{framing_diff_chunked, framing_diff_request};
    pub use crate::relay::wire::check_parsers as relay_wire;
}
/// Entry points for the benchmarks in `benches/` (not an API).
#[doc(hidden)]
pub mod benching {
    pub use crate::middleware::bench::EdgeProbe;
}
mod server;
mod split;
mod table;
pub mod tls;
mod tries;
mod upstream;
mod upstream_tls;

pub use access_log::AccessLogger;
pub use error::ProxyError;
pub use gateway::{ConnInfo, Gateway};
pub use hold::{Activator, HoldSettings, WakeFn};
pub use metrics::ServiceFigures;
pub use server::{BindError, Listeners, LiveSettings, ServeSettings, Serving};
pub use tls::{EntrypointTlsError, TlsEntrypoints};
pub use upstream_tls::probe_tls;
