//! Wiring: turns a validated stack into a running shoal — gateway listeners, the local
//! replica driver, the admin API — and keeps them in step on reload, scale and shutdown.
//!
//! The binary and the end-to-end tests both start shoal through [`Shoal::start`], so tests
//! exercise exactly what users run. This crate owns the order of start-up and shutdown and the
//! reload rule (validate fully, then swap; a bad file changes nothing). It owns no protocol,
//! algorithm or process handling: those live in the plane crates.
#![warn(missing_docs)]

mod autoscale;
mod backlog;
mod canary;
mod control;
mod metrics;
mod replicas;
mod shoal;

pub use control::ReloadError;
pub use shoal::{Discovery, Shoal, StartError, StartOptions};
pub use shoal_k8s::cluster::ClusterOptions;
