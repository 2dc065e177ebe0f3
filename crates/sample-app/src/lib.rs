//! A small HTTP backend built into shoal, for demos, examples and tests: `shoal sample-app`
//! runs it as a replica, and the in-process test harness starts it on `127.0.0.1:0`.
//!
//! This crate owns that backend: its [`Options`] (read from the `PORT`, `SHOAL_REPLICA`
//! and `SHOAL_SERVICE` variables a replica is given), its endpoints, and its graceful
//! shutdown. It serves HTTP/1.1 (keep-alive, WebSocket upgrade) and HTTP/2 with prior
//! knowledge (h2c) on one port, with hyper directly; or, with [`Options::tls`] (the
//! `SAMPLE_TLS_CERT` and `SAMPLE_TLS_KEY` variables), HTTPS: HTTP/1.1 or HTTP/2 as ALPN
//! chose. It does not own anything about running
//! replicas (supervise), balancing (balance, proxy) or the CLI (shoal): it is a backend like
//! any user's, and depends on no other shoal crate.
//!
//! # Endpoints
//!
//! Every response carries `X-Sample-Name: NAME` and, with a replica index,
//! `X-Sample-Replica: N`; over TLS, `X-Sample-Tls: ALPN` (`h2`, `http/1.1`, or `none`).
//! Endpoints answer any method. A bad query value gives 400 with a
//! message naming the parameter.
//!
//! | path | answer |
//! | --- | --- |
//! | `/health` | 200 `ok` |
//! | `/whoami` | 200 JSON: `name`, `replica`, `pid`, `port`, `method`, `path`, `query`, `version`, `remote`, `headers` (name → values joined by `", "`), `tls` (`alpn`, `sni`; null without TLS) |
//! | `/work?cpu_ms=N` | busy-loops a blocking thread for N ms (at most 10 000), then 200 JSON `{"cpu_ms":N,"burnt_ms":M}` |
//! | `/sleep?ms=N` | waits N ms (at most 600 000), then 200 JSON `{"slept_ms":N}` |
//! | `/status/CODE` | that status (200..=599), body `status CODE` |
//! | `/fail?rate=R` | 500 with probability R (0..=1), else 200 |
//! | `/echo` | streams the request body back as it arrives, with its `Content-Type` |
//! | `/ws` | WebSocket echo of text and binary messages (HTTP/1.1 upgrade) |
//! | anything else | 200 `hello from NAME\n` |

#![warn(missing_docs)]

mod body;
mod options;
mod routes;
mod server;
mod ws;

pub use options::{
    DEFAULT_NAME, DEFAULT_SHUTDOWN_GRACE, Options, OptionsError, PORT_VAR, REPLICA_VAR,
    SERVICE_VAR, TLS_CERT_VAR, TLS_KEY_VAR, TlsFiles,
};
pub use routes::{MAX_CPU_MS, MAX_SLEEP_MS, NAME_HEADER, REPLICA_HEADER, TLS_HEADER, headers_json};
pub use server::{SampleApp, run_until_signal};
