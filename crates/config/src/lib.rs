//! The stack file (`shoal.yaml`): its schema, loading, and validation.
//!
//! This crate owns the language users write: the raw serde types (which only parse and reject
//! unknown fields), the validated [`Stack`] every plane consumes, defaults, and diagnostics
//! that name `file:line:column`, the field, what was expected, and the nearest valid name for
//! a typo. It does not act on the configuration: the gateway, supervisor and admin API read
//! the parts they own. The full reference is `docs/configuration.md`.
//!
//! ```
//! let stack = shoal_config::parse(
//!     "services:\n  web:\n    servers: [http://127.0.0.1:9001]\nroutes:\n  - match: PathPrefix(`/`)\n    service: web\n",
//!     "shoal.yaml",
//! ).unwrap();
//! assert_eq!(stack.routes[0].service, "web");
//! ```
#![warn(missing_docs)]

mod demo;
mod duration;
mod edge;
mod error;
mod locate;
mod model;
mod raw;
mod validate;
mod yaml;

pub use demo::DEMO_STACK;
pub use duration::{DurationError, format_duration, parse_duration};
pub use error::{Diagnostic, Diagnostics, nearest};
pub use model::*;
pub use validate::{
    DEFAULT_ADMIN_LISTEN, DEFAULT_GATEWAY_LISTEN, DEFAULT_REPLICA_HEADER, load, load_for, parse,
    parse_for, peek_admin,
};

#[cfg(test)]
mod tests;
