//! The in-process end-to-end harness: real backends, the real gateway, a client, and
//! polling helpers, all on `127.0.0.1:0`, so gateway tests read like short stories:
//!
//! ```no_run
//! # async fn story() {
//! use shoal_test_support::{Backends, TestGateway};
//!
//! let backends = Backends::start(3).await;
//! let gw = TestGateway::builder()
//!     .service("web", &backends)
//!     .route("PathPrefix(`/`)", "web")
//!     .start()
//!     .await;
//! let answer = gw.get("/whoami").await;
//! assert_eq!(answer.status, 200);
//! assert_eq!(answer.replica(), backends[0].url());
//! # }
//! ```
//!
//! This crate owns the test vocabulary: [`Backends`] (in-process `shoal-sample-app`
//! instances, named `r1`, `r2`, …) and a [`Recorder`] (answers any path with what it
//! received); [`FakeKube`] (a fake Kubernetes API server for the Kubernetes driver, see
//! [`kube_api`]); [`StackBuilder`] (a stack file written as YAML, so tests go through the parser
//! and validator users meet); [`TestGateway`] (a whole shoal started through
//! [`shoal_app::Shoal::start`], its stack file in a temp dir so reloads work as for users);
//! [`TestCerts`] (a test CA and a `localhost` certificate, for stacks with HTTPS);
//! [`Client`] (pooled, HTTP/1.1 or h2c) and [`Conn`] (one raw HTTP/1.1 keep-alive
//! connection); and [`eventually`] (poll a condition until a deadline: tests never sleep to
//! synchronise). For workers: [`brokers`] (Redis, RabbitMQ and a Kafka-compatible broker,
//! started by the test on free ports, and a small Kafka client) and [`worker`] (the queue
//! consumer a test stack's worker replicas run). For gRPC: [`grpc`] (a real tonic greeter
//! service and client, in-process or as a stack's `h2c` replicas). It asserts nothing about
//! shoal: the proofs live in `crates/app/tests/`.
#![warn(missing_docs)]

#[cfg(feature = "harness")]
mod backends;
#[cfg(feature = "harness")]
pub mod brokers;
#[cfg(feature = "harness")]
mod client;
#[cfg(feature = "harness")]
mod gateway;
#[cfg(feature = "harness")]
pub mod grpc;
#[cfg(feature = "harness")]
pub mod kube_api;
#[cfg(feature = "harness")]
mod observe;
mod poll;
mod port;
#[cfg(feature = "harness")]
mod recorder;
#[cfg(feature = "harness")]
mod stack;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "harness")]
pub mod worker;

#[cfg(feature = "harness")]
pub use backends::{Backend, Backends, ServerList, dead_url, silent_server};
#[cfg(feature = "harness")]
pub use client::{Answer, BoxError, Client, Conn, ReqBody, body, get, tally};
#[cfg(feature = "harness")]
pub use gateway::{TestGateway, start_shoal};
#[cfg(feature = "harness")]
pub use kube_api::{FakeEndpoint, FakeKube};
pub use poll::{DEADLINE, eventually};
pub use port::free_port;
#[cfg(feature = "harness")]
pub use recorder::Recorder;
#[cfg(feature = "harness")]
pub use stack::{Route, Service, StackBuilder};
#[cfg(feature = "tls")]
pub use tls::{TestCerts, test_ca};
