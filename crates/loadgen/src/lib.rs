//! `shoal load`: an HTTP load generator that tells the truth and shows the spread over
//! replicas.
//!
//! It owns the whole of `shoal load` except argument parsing into [`LoadArgs`] and printing,
//! which the `shoal` binary does: [`Plan::from_args`] validates the arguments (every error
//! names its flag), [`run`] runs the plan and returns a [`Report`], and the report renders as
//! a summary table ([`Report::summary`]), JSON (serde) or an HTML page ([`html::render`]).
//! It does not depend on the gateway: it only reads the replica header from answers and,
//! with `--admin`, shoal's admin API.
//!
//! - [`plan`]: raw arguments → a validated plan (URLs with weights, model, bounds);
//! - [`schedule`]: when each request is due (open model, stages) or each user starts;
//! - [`pick`]: which URL each request goes to (smooth weighted round robin);
//! - [`scenario`]: `--scenario` files of user flows (weighted user types, steps, captures,
//!   think time), validated with file:line:column errors;
//! - [`client`]: connections (HTTP/1.1 via [`h1`], HTTP/2 via hyper), TLS, error kinds;
//! - [`record`]: HdrHistograms and counters per generator thread, merged each second;
//! - [`report`] and [`html`]: the views of the result;
//! - [`cpu`]: the generator watching its own CPU;
//! - `run`: threads, workers, the collector; `admin`: replica counts over time; `progress`:
//!   the live bar.
//!
//! See docs/load.md for the model, the measurements and their limits.
mod admin;
mod args;
pub mod client;
pub mod cpu;
pub mod h1;
pub mod html;
pub mod pick;
pub mod plan;
mod progress;
pub mod record;
pub mod report;
mod run;
pub mod scenario;
pub mod schedule;

pub use admin::{ScaleSample, ServiceCount};
pub use args::LoadArgs;
pub use plan::{Plan, PlanError};
pub use report::Report;
pub use run::{RunError, RunOptions, run};
