//! The validated stack: what the planes consume. Every field has its default filled in.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use shoal_route::Rule;

/// A whole validated stack file.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The gateway (data plane) settings.
    pub gateway: Gateway,
    /// The admin API settings.
    pub admin: Admin,
    /// Services in file order.
    pub services: Vec<Service>,
    /// Routes, highest priority first (ties keep file order).
    pub routes: Vec<Route>,
}

impl Stack {
    /// The service with this name.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// Gateway settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    /// Where to listen, by entrypoint name. Default: `web` on `127.0.0.1:8000`.
    pub entrypoints: Vec<Entrypoint>,
    /// Worker threads for the runtime; 0 = one per core. Default 0.
    pub workers: usize,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// How long in-flight requests may take to finish at shutdown. Default 10s.
    pub shutdown_grace: Duration,
    /// Response header naming the replica that served the request, if on. Default off.
    pub replica_header: Option<HeaderName>,
    /// Idle upstream connections kept per endpoint. Default 1024.
    pub max_idle_per_upstream: usize,
}

/// A named listen address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entrypoint {
    /// Name routes can refer to.
    pub name: String,
    /// Address to bind.
    pub listen: SocketAddr,
}

/// Gateway timeouts. None of them is unbounded by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect to an upstream. Default 1s.
    pub connect: Duration,
    /// From request sent to upstream response headers received. Default 30s.
    pub response_header: Duration,
    /// Idle upstream connections are closed after this. Default 90s.
    pub upstream_idle: Duration,
    /// Idle client keep-alive connections are closed after this. Default 60s.
    pub client_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(1),
            response_header: Duration::from_secs(30),
            upstream_idle: Duration::from_secs(90),
            client_idle: Duration::from_secs(60),
        }
    }
}

/// Admin API settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Where the admin API listens. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Bearer token required for requests, if set. Required when `listen` is not loopback.
    pub token: Option<String>,
}

/// A named set of interchangeable replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Name routes refer to.
    pub name: String,
    /// Where the replicas come from.
    pub source: Source,
    /// Protocol to speak to the replicas.
    pub protocol: Protocol,
    /// How requests are spread over the replicas.
    pub balance: Balance,
}

/// Where a service's replicas come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Fixed upstream URLs.
    Servers(Vec<Server>),
    /// Local processes run by the supervisor.
    Command(Box<Command>),
}

/// One static upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The URL as written, e.g. `http://127.0.0.1:9001`.
    pub url: String,
    /// `host:port` to connect to.
    pub authority: String,
    /// Relative weight, 1..=1000. Default 1.
    pub weight: u32,
}

/// A service run as local processes.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// argv. `shoal` as argv[0] means this shoal binary.
    pub argv: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Working directory, relative paths resolved against the stack file's folder.
    pub workdir: Option<PathBuf>,
    /// Replica count. Default 1.
    pub replicas: u32,
    /// Variable holding the replica's port. Default `PORT`.
    pub port_env: String,
    /// Variable holding the replica's index. Default `SHOAL_REPLICA`.
    pub replica_env: String,
    /// Readiness check.
    pub health: Health,
    /// Restart policy.
    pub restart: Restart,
    /// Stop behaviour.
    pub stop: Stop,
    /// Rotation of the replicas' log files.
    pub logs: Logs,
}

/// Size-based rotation of each replica's log file (`.shoal/logs/SERVICE.INDEX.log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logs {
    /// A file that would grow past this many bytes is rotated. Default 10 MiB.
    pub max_size: u64,
    /// Rotated files kept per replica (`.1` newest). Default 3.
    pub keep: u32,
}

impl Default for Logs {
    fn default() -> Self {
        Logs {
            max_size: 10 * 1024 * 1024,
            keep: 3,
        }
    }
}

/// Readiness check of a local replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// HTTP GET this path (2xx/3xx passes); None = TCP connect. Default TCP.
    pub path: Option<String>,
    /// Between checks. Default 1s. Until a replica is first ready, checks come at least
    /// every 100ms.
    pub interval: Duration,
    /// Per check. Default 1s.
    pub timeout: Duration,
    /// Passes needed to become ready. Default 1.
    pub healthy_threshold: u32,
    /// Consecutive failures that take a ready replica out. Default 3.
    pub unhealthy_threshold: u32,
    /// Failures in this period after start do not count. Default 0s.
    pub start_period: Duration,
    /// Not ready by then: the start failed. Default 60s.
    pub start_timeout: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            path: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 3,
            start_period: Duration::ZERO,
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// When a replica is restarted (Compose's vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Never.
    No,
    /// After a non-zero exit or a signal. The default.
    OnFailure,
    /// After any exit.
    Always,
}

/// Restart behaviour of local replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// When to restart. Default `on-failure`.
    pub policy: RestartPolicy,
    /// First back-off. Default 500ms; doubles per consecutive restart.
    pub delay: Duration,
    /// Back-off cap. Default 30s.
    pub max_delay: Duration,
    /// Up this long: back-off resets. Default 30s.
    pub reset_after: Duration,
    /// Restarts allowed within `window` before the replica is marked failed; 0 = unlimited. Default 5.
    pub max_attempts: u32,
    /// Default 60s.
    pub window: Duration,
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            policy: RestartPolicy::OnFailure,
            delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            reset_after: Duration::from_secs(30),
            max_attempts: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// How a local replica is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// Wait at most this long for in-flight requests after leaving the balancer. Default 10s.
    pub drain_timeout: Duration,
    /// SIGTERM to SIGKILL. Default 5s.
    pub grace: Duration,
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            drain_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(5),
        }
    }
}

/// Upstream protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive (the default).
    Http1,
    /// HTTP/2 without TLS, prior knowledge (gRPC).
    H2c,
}

/// Load-balancing algorithm of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin (the default).
    RoundRobin,
    /// Fewest in-flight requests among two random choices.
    LeastRequests,
    /// Consistent hashing on a request attribute.
    Hash(HashOn),
    /// Sticky sessions by cookie, round robin for new clients.
    Sticky {
        /// Cookie name. Default `shoal_<service>`.
        cookie: String,
    },
}

/// What consistent hashing hashes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// A request header's value.
    Header(HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// The client's IP address.
    ClientIp,
}

/// A route: a rule that sends matching requests to a service, through middlewares.
#[derive(Debug, Clone)]
pub struct Route {
    /// Name (default `route-N`, N from 0 in file order).
    pub name: String,
    /// The compiled rule.
    pub rule: Rule,
    /// Higher wins. Default: the rule's length.
    pub priority: i64,
    /// Target service.
    pub service: String,
    /// Middlewares in order (the inline `strip_prefix` comes first).
    pub middlewares: Vec<Middleware>,
    /// Entrypoints the route listens on; None = all.
    pub entrypoints: Option<Vec<String>>,
}

/// A request/response transformation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Middleware {
    /// Remove the first matching prefix from the path and set `X-Forwarded-Prefix`.
    StripPrefix(Vec<String>),
    /// Put a prefix in front of the path.
    AddPrefix(String),
    /// Set or remove headers.
    Headers(HeaderRules),
}

/// Header edits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    /// Set on the request to the upstream (replacing existing values).
    pub request_set: Vec<(HeaderName, HeaderValue)>,
    /// Removed from the request to the upstream.
    pub request_remove: Vec<HeaderName>,
    /// Set on the response to the client.
    pub response_set: Vec<(HeaderName, HeaderValue)>,
    /// Removed from the response to the client.
    pub response_remove: Vec<HeaderName>,
}
