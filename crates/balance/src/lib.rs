//! Choosing a backend for a request, and the lock-free endpoint sets it is chosen from.
//!
//! This crate owns the load-balancing algorithms of shoal ([round robin](round_robin),
//! [least requests by power of two choices](p2c), [consistent hashing](hash_ring) and
//! [sticky sessions](sticky)) and the [`Balancer`] that holds a service's current set of
//! [`Backend`]s as an immutable snapshot behind an `ArcSwap`: the proxy calls
//! [`Balancer::pick`] on every request without taking a lock, while the supervisor or the
//! Kubernetes watcher replace the set with [`Balancer::set_backends`] at any time. Picks are
//! counted per backend (requests in flight, total picks) through the [`Pick`] guard.
//!
//! It does no I/O and has no async runtime: it does not dial, health-check, retry, or read
//! HTTP. The proxy extracts the hash key and the sticky cookie from the request and passes
//! them in a [`PickContext`]; it writes the cookie when [`Pick::set_sticky`] says so; it
//! marks backends that fail health checks or are ejected with [`Backend::set_down`] (the
//! balancer skips them, still without locks), and it puts the backends it already tried in
//! [`PickContext::exclude`] when it retries.
//!
//! ```
//! use shoal_balance::{Backend, Balancer, PickContext, Policy};
//!
//! let lb = Balancer::new(Policy::RoundRobin);
//! lb.set_backends(vec![
//!     Backend::new("users/1", "127.0.0.1:9001", 2),
//!     Backend::new("users/2", "127.0.0.1:9002", 1),
//! ]);
//! let pick = lb.pick(&PickContext::default()).expect("non-empty set");
//! assert_eq!(pick.backend().in_flight(), 1);
//! let addr = pick.backend().addr(); // dial this; drop `pick` when the response is done
//! # let _ = addr;
//! ```

#![warn(missing_docs)]

pub mod backend;
pub mod balancer;
pub mod hash_ring;
pub mod p2c;
pub mod round_robin;
pub mod sticky;

mod hash;

pub use backend::{Backend, Down, Outlier};
pub use balancer::{Balancer, Pick, PickContext, Policy};
