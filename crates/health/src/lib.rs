//! Active health checks, shared by the two places that run them: the supervisor (readiness
//! and liveness of local replicas) and the gateway (health of static servers).
//!
//! [`probe`] sends one check — a TCP connect, or a minimal HTTP `GET` whose status must be
//! in the expected ranges — bounded by a timeout. [`Checker`] is the pure rule that turns
//! a series of results into rotation changes, HAProxy-style: `fall` failures in a row take
//! a replica out, `rise` passes in a row bring it back; after a failure and while a replica
//! is out, checks come at the fast interval; healthy replicas are checked every interval
//! with ±10% jitter so that checks of many replicas do not align.
//!
//! [`tls`] is the client side of TLS to replicas ([`ClientTls`]), used by HTTPS probes here
//! and by the gateway's requests, so both verify a replica the same way.
//!
//! It does not decide what being out of rotation means: the caller removes the replica
//! from its balancer (supervisor) or marks the backend down (gateway), and records events.
#![warn(missing_docs)]

mod checker;
mod probe;
pub mod tls;

pub use checker::{CheckSettings, Checker, Transition, jittered};
pub use probe::{Probe, ProbeError, ProbeTls, check};
pub use tls::ClientTls;
