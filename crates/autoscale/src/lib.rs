//! The autoscaler's decision engine: from one tick's observations of a service to the
//! replica count it should run, and why.
//!
//! This crate owns the *decision*: Kubernetes HPA's replica calculation
//! ([`metrics`]) with its tolerance and its treatment of starting replicas and missing data,
//! HPA's stabilization windows and rate policies ([`rate`]), Knative KPA's panic mode and
//! scale to / from zero ([`autoscaler`]), and KEDA's queue triggers with a time-to-drain
//! target ([`backlog`]). It does no I/O and reads no clock: the wiring
//! collects a [`Sample`] per service every tick (1 s by default) with the time as a
//! [`Duration`](std::time::Duration) since any origin it likes, calls [`Autoscaler::tick`],
//! and asks the driver (local processes or a Kubernetes Deployment) to run
//! [`Decision::desired`] replicas. It does not collect metrics, start or drain replicas, or
//! hold requests, nor read brokers; the gateway calls [`Autoscaler::wake`] on the first
//! request it holds for a service at zero, and the wiring passes each backlog read in
//! [`Sample::backlog`].
//!
//! ```
//! use std::time::Duration;
//! use shoal_autoscale::{Autoscaler, Limit, Policy, ReplicaSample, Sample};
//!
//! let mut scaler = Autoscaler::new(Policy::default(), Duration::ZERO); // concurrency 10
//! let ready = ReplicaSample::ready(Duration::from_secs(60));
//! let sample = Sample {
//!     now: Duration::from_secs(1),
//!     current: 2,
//!     replicas: vec![ready.clone().with_concurrency(13.5); 2],
//!     requests: 400,
//!     ..Sample::default()
//! };
//! let decision = scaler.tick(&sample);
//! assert_eq!(decision.desired, 3); // ceil(1.35 × 2)
//! assert_eq!(decision.targets_column(), "13.5/10");
//! assert_eq!(decision.limited_by, None);
//! ```

#![warn(missing_docs)]

pub mod autoscaler;
pub mod backlog;
pub mod decision;
pub mod metrics;
pub mod policy;
pub mod rate;
pub mod sample;

mod history;

pub use autoscaler::Autoscaler;
pub use decision::{BacklogStatus, Decision, Limit, Reading};
pub use policy::{Backlog, Fallback, InvalidPolicy, Policy, RatePolicy, Target};
pub use sample::{BacklogRead, BacklogSample, ReplicaSample, Sample};
