//! The validated stack: what the planes consume. Every field has its default filled in.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use shoal_route::Rule;

pub use crate::edge::*;

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
    /// Request metrics on the admin API's `/metrics`.
    pub metrics: Metrics,
    /// One line per request, if on. Default off.
    pub access_log: Option<AccessLog>,
}

/// Request metrics (`metrics:`), served in Prometheus' text format on the admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Whether requests are counted (`metrics: false` turns counting off). Default on.
    pub enabled: bool,
    /// Prefix of the Traefik-compatible families. Default `shoal`.
    pub prefix: MetricsPrefix,
    /// Upper bounds of the request duration histograms, in seconds, ascending. Default
    /// Traefik's `[0.1, 0.3, 1.2, 5]`.
    pub buckets: Vec<f64>,
}

/// Traefik's default request duration buckets, in seconds.
pub const DEFAULT_BUCKETS: [f64; 4] = [0.1, 0.3, 1.2, 5.0];

/// The most histogram buckets `metrics.buckets` may list.
pub const MAX_BUCKETS: usize = 20;

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            enabled: true,
            prefix: MetricsPrefix::Shoal,
            buckets: DEFAULT_BUCKETS.to_vec(),
        }
    }
}

/// How the Traefik-compatible families are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsPrefix {
    /// `shoal_…`, labels with plain names.
    Shoal,
    /// `traefik_…`, with `router` and `service` labels written `NAME@shoal`, so dashboards
    /// built for Traefik work unchanged.
    Traefik,
}

impl MetricsPrefix {
    /// The prefix without the underscore.
    pub fn name(self) -> &'static str {
        match self {
            MetricsPrefix::Shoal => "shoal",
            MetricsPrefix::Traefik => "traefik",
        }
    }
}

/// The access log (`access_log:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    /// Line format. Default JSON.
    pub format: AccessLogFormat,
    /// File to append to; None = standard output.
    pub path: Option<PathBuf>,
    /// Lines that may wait for the writer; more are dropped (and counted). Default 16384.
    pub buffer: usize,
}

/// Access log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// One JSON object per line, with Traefik's field names.
    Json,
    /// Common Log Format, extended as Traefik does (router, service, replica, duration).
    Common,
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
    /// What one client may send and hold (docs/security.md).
    pub limits: Limits,
}

/// Bounds on what a client may send and hold. Each has a default; none is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request head (request line and header fields), in bytes; longer ones are
    /// answered 431. Default 32 KiB (nginx: 4 × 8 KiB buffers; HAProxy: 16 KiB buffers).
    pub max_head_size: usize,
    /// Most header fields in one request head; more are answered 431. Default 100.
    pub max_headers: usize,
    /// Most client connections open at once per entrypoint; beyond it, new connections
    /// wait in the listen backlog. Default 10000.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_size: 32 * 1024,
            max_headers: 100,
            max_connections: 10_000,
        }
    }
}

/// A named listen address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entrypoint {
    /// Name routes can refer to.
    pub name: String,
    /// Address to bind.
    pub listen: SocketAddr,
    /// TLS termination (HTTPS), if on.
    pub tls: Option<EntrypointTls>,
    /// Answer every request with a redirect to HTTPS on another entrypoint, if set.
    pub redirect_to: Option<RedirectHttps>,
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
    /// From the first byte of a request head to its end; a slower client gets 408 and its
    /// connection is closed (slowloris). Default 10s.
    pub header_read: Duration,
    /// Longest pause while a client sends a request body; then 408 and close. Default 30s.
    pub body_idle: Duration,
    /// How far a gRPC client's `grpc-timeout` may raise the response-header timeout of its
    /// route (it may always lower it): the wait is `min(grpc-timeout, max(route's
    /// response_header, grpc_max))`. Default 5m (docs/grpc.md).
    pub grpc_max: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(1),
            response_header: Duration::from_secs(30),
            upstream_idle: Duration::from_secs(90),
            client_idle: Duration::from_secs(60),
            header_read: Duration::from_secs(10),
            body_idle: Duration::from_secs(30),
            grpc_max: Duration::from_secs(300),
        }
    }
}

/// `timeouts:` of a service or a route. Unset fields fall back: a route's to its service's,
/// a service's to the gateway's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestTimeouts {
    /// From request sent to upstream response headers received; then 504 (gRPC: 4
    /// DEADLINE_EXCEEDED). None: the next level's.
    pub response_header: Option<Duration>,
}

impl RequestTimeouts {
    /// These timeouts over `base`'s: each field set here wins.
    pub fn over(self, base: RequestTimeouts) -> RequestTimeouts {
        RequestTimeouts {
            response_header: self.response_header.or(base.response_header),
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
    /// Active health checks: readiness and liveness of local replicas (run by the
    /// supervisor), health of static servers (run by the gateway).
    pub health: Health,
    /// Retries of failed requests on other replicas.
    pub retry: Retry,
    /// Passive health: ejection of replicas that fail real requests.
    pub passive: Passive,
    /// Fast 503s while the service is failing; off unless configured.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// How the service runs as a container image (on Kubernetes), if `image:` is given.
    pub container: Option<Container>,
    /// TLS to the replicas (`https://` servers or `tls:`), if on.
    pub tls: Option<UpstreamTls>,
    /// The service's request timeouts (over the gateway's; a route's win over these).
    pub timeouts: RequestTimeouts,
}

/// Which runtime a stack file is checked for: a service may have `command:` (local
/// processes), `image:` (containers), or both, and each runtime needs its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Runtime {
    /// `shoal up`: replicas are local processes; a service needs `command:` or `servers:`.
    #[default]
    Local,
    /// `shoal k8s render`: replicas are pods; a replicated service needs `image:`.
    Kubernetes,
}

/// A service's container: what Kubernetes runs for each replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Image reference, e.g. `ghcr.io/acme/users:1.4`.
    pub image: String,
    /// Arguments to the image's entrypoint; empty: the image's own `CMD`.
    pub args: Vec<String>,
    /// Port the container listens on (also given to it as the `port_env` variable). Default
    /// 8080.
    pub port: u16,
    /// CPU and memory requests and limits.
    pub resources: Resources,
}

/// Requests (what the scheduler reserves; what HPA's CPU utilisation is relative to) and
/// limits (the most a container may use).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// Reserved for each replica.
    pub requests: Quantities,
    /// The most each replica may use.
    pub limits: Quantities,
}

/// CPU in millicores and memory in bytes; `None` where not set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quantities {
    /// Millicores (`500m` = 500, `2` = 2000).
    pub cpu_millis: Option<u64>,
    /// Bytes.
    pub memory_bytes: Option<u64>,
}

/// Retries of a request on another replica. On by default for what is safe.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// Tries per request, the first included; 1 = never retry. Default 3.
    pub attempts: u32,
    /// Upstream statuses after which an idempotent request is retried. Default 502, 503, 504.
    pub on_status: Vec<u16>,
    /// When a try has no response headers after this long, an idempotent request is also
    /// sent to another replica and the first answer wins. Default `Auto`.
    pub per_try_timeout: PerTryTimeout,
    /// Request bodies up to this many bytes are kept so the request can be sent again.
    /// Default 64 KiB.
    pub max_replay_body: u64,
    /// Retries allowed, as a fraction of requests over the last 10 s. Default 0.2.
    pub budget_ratio: f64,
    /// Retries allowed per second whatever the ratio (so quiet services can retry). Default 10.
    pub budget_min_per_sec: u32,
    /// Also retry non-idempotent requests (POST, PATCH without `Idempotency-Key`) after they
    /// were sent. Default false: they are retried only when nothing was sent.
    pub non_idempotent: bool,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 3,
            on_status: vec![502, 503, 504],
            per_try_timeout: PerTryTimeout::Auto,
            max_replay_body: 64 * 1024,
            budget_ratio: 0.2,
            budget_min_per_sec: 10,
            non_idempotent: false,
        }
    }
}

/// How long one try may wait for response headers before another replica is tried too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerTryTimeout {
    /// From the service's recent latency: 4 × its p99, at least 100 ms, at most 2 s; 1 s
    /// until 50 responses have been seen.
    Auto,
    /// A fixed time.
    Fixed(Duration),
    /// Never: a try waits for its answer up to `response_header` timeout.
    Off,
}

/// Passive health checking (outlier detection): real requests that fail eject a replica
/// from rotation for a while.
#[derive(Debug, Clone, PartialEq)]
pub struct Passive {
    /// On unless `passive: false`.
    pub enabled: bool,
    /// Consecutive 5xx responses that eject a replica. Default 5.
    pub consecutive_5xx: u32,
    /// Consecutive gateway failures (timeouts, resets after sending) that eject a replica.
    /// A refused connection ejects at once. Default 3.
    pub consecutive_failures: u32,
    /// First ejection; doubles with each ejection in a row, reset by a success. Default 1s.
    pub base_ejection: Duration,
    /// Longest ejection. Default 30s.
    pub max_ejection: Duration,
    /// At most this share of the service's replicas ejected at once (at least one).
    /// Default 50.
    pub max_ejected_percent: u32,
}

impl Default for Passive {
    fn default() -> Self {
        Passive {
            enabled: true,
            consecutive_5xx: 5,
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(30),
            max_ejected_percent: 50,
        }
    }
}

/// A per-service circuit breaker: closed → open (503 at once) → half-open → closed.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreaker {
    /// Outcomes are counted over this sliding window. Default 10s.
    pub window: Duration,
    /// No decision before this many requests in the window. Default 20.
    pub min_requests: u32,
    /// Opens when this share of requests failed (5xx or no answer), if set. Default 0.5
    /// when neither ratio is set.
    pub error_ratio: Option<f64>,
    /// A request slower than this counts as slow. Default 1s.
    pub slow_call: Duration,
    /// Opens when this share of requests was slow, if set.
    pub slow_ratio: Option<f64>,
    /// How long it stays open before letting trial requests through. Default 5s.
    pub open_for: Duration,
    /// Trial requests in half-open; all must succeed to close. Default 5.
    pub half_open_requests: u32,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            window: Duration::from_secs(10),
            min_requests: 20,
            error_ratio: Some(0.5),
            slow_call: Duration::from_secs(1),
            slow_ratio: None,
            open_for: Duration::from_secs(5),
            half_open_requests: 5,
        }
    }
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

/// What a command service's replicas are (`kind:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceKind {
    /// Serves requests on a port (`PORT`), behind the gateway. The default.
    #[default]
    Web,
    /// Serves no requests: no port, no readiness check (ready once its process runs), no
    /// route may name it; stopped with SIGTERM at once (no drain) and `stop.grace` to
    /// finish. A queue consumer, typically scaled on `autoscale.backlog`.
    Worker,
}

impl ServiceKind {
    /// `web` or `worker`, as written in the stack file.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Web => "web",
            ServiceKind::Worker => "worker",
        }
    }
}

impl Service {
    /// Whether the service is a worker (`kind: worker`): no port, no requests.
    pub fn is_worker(&self) -> bool {
        matches!(&self.source, Source::Command(c) if c.kind == ServiceKind::Worker)
    }
}

/// A service run as local processes.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Web (the default) or worker.
    pub kind: ServiceKind,
    /// argv. `shoal` as `argv[0]` means this shoal binary.
    pub argv: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Working directory, relative paths resolved against the stack file's folder.
    pub workdir: Option<PathBuf>,
    /// Replica count. Default 1. With `autoscale`, the starting count (default
    /// `max(min, 1)`), within `[min, max]`.
    pub replicas: u32,
    /// Variable holding the replica's port. Default `PORT`.
    pub port_env: String,
    /// Variable holding the replica's index. Default `SHOAL_REPLICA`.
    pub replica_env: String,
    /// Restart policy.
    pub restart: Restart,
    /// Stop behaviour.
    pub stop: Stop,
    /// Rotation of the replicas' log files.
    pub logs: Logs,
    /// Autoscaling between `min` and `max` replicas, if configured. `replicas` is then the
    /// starting count.
    pub autoscale: Option<Autoscale>,
    /// The queue `autoscale.backlog` reads, exactly when `autoscale.policy.targets` has a
    /// [`Target::Backlog`](shoal_autoscale::Target::Backlog) (which holds the scaling
    /// settings: per replica, activation, drain, fallback). The wiring reads it every
    /// `poll` and passes each read to the autoscaler.
    pub backlog: Option<BacklogTrigger>,
    /// The version label shown for each replica (`version:`); None: a short hash of how
    /// the replicas run (command, environment, policies), so a new spec is a new version.
    pub version: Option<String>,
    /// How a changed spec replaces the replicas (`rollout:`).
    pub rollout: Rollout,
    /// Services whose replicas must be started (or ready) before this one's first
    /// replicas start (`depends_on:`, Compose's semantics). Every name is a service with
    /// `command:`, never this one, and there is no cycle.
    pub depends_on: Vec<Dependency>,
    /// Memory and CPU limits of each local replica (`resources:`: its `limits`, else the
    /// short form / `requests`). None set: unlimited.
    pub limits: Quantities,
}

/// One entry of `depends_on`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The service waited for.
    pub service: String,
    /// `condition: service_healthy`: all its desired replicas ready; else
    /// (`service_started`, the list form's) one of its replicas started.
    pub healthy: bool,
}

/// How a changed spec replaces a service's replicas (`rollout:`), in a Deployment's
/// RollingUpdate vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// Replicas that may run above the desired count while rolling. Default 1.
    pub max_surge: Amount,
    /// Replicas that may be out of the balancer below the desired count while rolling.
    /// Default 0 (a new replica is ready before an old one stops). Not both 0.
    pub max_unavailable: Amount,
    /// A rollout with no new replica becoming ready for this long is rolled back to the
    /// previous spec. Default 60s.
    pub progress_deadline: Duration,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            max_surge: Amount::Count(1),
            max_unavailable: Amount::Count(0),
            progress_deadline: Duration::from_secs(60),
        }
    }
}

/// A number of replicas, as a count (`2`) or a share of the desired count (`25%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// So many replicas.
    Count(u32),
    /// This percentage of the desired count (0..=100).
    Percent(u32),
}

/// Where a backlog target reads its queue (`autoscale.backlog`), and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacklogTrigger {
    /// The broker and the queue.
    pub source: BacklogSource,
    /// Where the password comes from, if the broker needs one. Never in a URL; never
    /// resolved by the configuration (the variable or file is read when connecting).
    pub password: Option<SecretSource>,
    /// Time between reads. Default 1s.
    pub poll: Duration,
}

/// A queue on a broker. URLs are as written, with a user name if one was given, and never
/// a password (refused at validation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BacklogSource {
    /// A Redis Streams consumer group: its lag (`XINFO GROUPS`).
    Redis {
        /// `redis://[user@]host[:port][/db]`.
        url: String,
        /// The stream.
        stream: String,
        /// The consumer group.
        group: String,
    },
    /// A RabbitMQ queue: its ready messages (and unacknowledged ones with
    /// `include_unacked`).
    RabbitMq {
        /// `amqp://[user@]host[:port][/vhost]` (AMQP), or `http://[user@]host:15672[/vhost]`
        /// (the management API).
        url: String,
        /// The queue.
        queue: String,
        /// Count unacknowledged messages too (needs an `http://` management URL). Default
        /// false.
        include_unacked: bool,
    },
    /// A Kafka consumer group on a topic: lag summed over partitions.
    Kafka {
        /// Bootstrap brokers, `host:port` each.
        brokers: Vec<String>,
        /// The topic.
        topic: String,
        /// The consumer group.
        group: String,
    },
}

impl BacklogSource {
    /// `redis`, `rabbitmq` or `kafka`, as written in the stack file.
    pub fn broker(&self) -> &'static str {
        match self {
            BacklogSource::Redis { .. } => "redis",
            BacklogSource::RabbitMq { .. } => "rabbitmq",
            BacklogSource::Kafka { .. } => "kafka",
        }
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable of shoal's own environment, by name.
    Env(String),
    /// A file (its content, without a trailing newline), resolved against the stack file's
    /// folder.
    File(PathBuf),
}

/// Autoscaling of a command service.
#[derive(Debug, Clone, PartialEq)]
pub struct Autoscale {
    /// The decision engine's settings (min, max, targets, behaviour).
    pub policy: shoal_autoscale::Policy,
    /// Cores per replica that the cpu target is relative to. Default 1.0.
    pub cpu_request: f64,
    /// Decision interval. Default 1s.
    pub tick: Duration,
    /// Requests held at the gateway while the service wakes from zero.
    pub hold: Hold,
    /// Which preset the behaviour started from.
    pub preset: Preset,
}

/// Requests held at the gateway while a service scaled to zero starts its first replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// Most requests held at once; more are answered 503 at once. Default 1000.
    pub queue: u32,
    /// Longest wait of a held request; then it is answered 503. Default 30s.
    pub timeout: Duration,
}

impl Default for Hold {
    fn default() -> Self {
        Hold {
            queue: 1000,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Starting values for the autoscaler's behaviour fields (explicit fields override them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preset {
    /// shoal's defaults ([`shoal_autoscale::Policy::default`], a 1 s tick).
    #[default]
    Shoal,
    /// Kubernetes HPA's defaults: a 15 s tick, 300 s scale-down stabilization, no panic mode.
    Hpa,
    /// Knative KPA's defaults in HPA terms: a 2 s tick, 60 s stable window, panic mode.
    Kpa,
}

impl Preset {
    /// All presets, in the order the docs list them.
    pub const ALL: [Preset; 3] = [Preset::Shoal, Preset::Hpa, Preset::Kpa];

    /// The behaviour fields of this preset; `min`, `max` and `targets` are
    /// [`Policy::default`](shoal_autoscale::Policy::default)'s. `panic_threshold` is
    /// `f64::INFINITY` where panic mode is off.
    pub fn policy(self) -> shoal_autoscale::Policy {
        use shoal_autoscale::{Policy, RatePolicy};
        let secs = Duration::from_secs;
        match self {
            Preset::Shoal => Policy::default(),
            // Kubernetes HPA (autoscaling/v2) `behavior` defaults at its 15 s sync period.
            Preset::Hpa => Policy {
                tolerance_up: 0.1,
                tolerance_down: 0.1,
                up_stabilization: Duration::ZERO,
                down_stabilization: secs(300),
                up_policies: vec![
                    RatePolicy::Pods {
                        value: 4,
                        period: secs(15),
                    },
                    RatePolicy::Percent {
                        value: 100,
                        period: secs(15),
                    },
                ],
                down_policies: vec![RatePolicy::Percent {
                    value: 100,
                    period: secs(15),
                }],
                panic_threshold: f64::INFINITY,
                // HPA cannot scale to zero by itself; KEDA's `cooldownPeriod` is 300 s.
                scale_to_zero_after: secs(300),
                warm_up: secs(30),
                ..Policy::default()
            },
            // Knative KPA: 2 s tick, 60 s stable window, scale-down by at most ÷2 per tick,
            // scale-up ×1000 per tick (unlimited here), panic at 200% over 6 s, scale to zero
            // after the stable window plus the 30 s grace period.
            Preset::Kpa => Policy {
                tolerance_up: 0.0,
                tolerance_down: 0.0,
                up_stabilization: Duration::ZERO,
                down_stabilization: secs(60),
                up_policies: Vec::new(),
                down_policies: vec![RatePolicy::Percent {
                    value: 50,
                    period: secs(2),
                }],
                panic_threshold: 2.0,
                panic_window: secs(6),
                panic_hold: secs(60),
                scale_to_zero_after: secs(90),
                warm_up: Duration::ZERO,
                ..Policy::default()
            },
        }
    }

    /// The decision interval of this preset: 1 s (shoal), 15 s (hpa), 2 s (kpa).
    pub fn tick(self) -> Duration {
        match self {
            Preset::Shoal => Duration::from_secs(1),
            Preset::Hpa => Duration::from_secs(15),
            Preset::Kpa => Duration::from_secs(2),
        }
    }

    /// The name as written in the stack file: `shoal`, `hpa`, `kpa`.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Shoal => "shoal",
            Preset::Hpa => "hpa",
            Preset::Kpa => "kpa",
        }
    }
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

/// Active health checks of a service's replicas (HAProxy-style rise/fall).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Off with `health: false`: static servers are then always in rotation (passive
    /// checks still apply); local replicas are ready once they run.
    pub enabled: bool,
    /// HTTP GET this path; None = TCP connect. Default TCP.
    pub path: Option<String>,
    /// Statuses that pass an HTTP check, as inclusive ranges. Default 200-399.
    pub expect_status: Vec<(u16, u16)>,
    /// Between checks of a healthy replica, with ±10% jitter. Default 1s. Until a replica
    /// is first ready, checks come at least every 100ms.
    pub interval: Duration,
    /// Between checks after a failed check and while unhealthy. Default 250ms.
    pub fast_interval: Duration,
    /// Per check. Default 500ms.
    pub timeout: Duration,
    /// Passes in a row that bring a replica (back) into rotation ("rise"). Default 1.
    pub healthy_threshold: u32,
    /// Failures in a row that take a replica out of rotation ("fall"). Default 2.
    pub unhealthy_threshold: u32,
    /// Local replicas: failures in this period after start do not count. Default 0s.
    pub start_period: Duration,
    /// Local replicas: not ready by then, the start failed. Default 60s.
    pub start_timeout: Duration,
    /// Local replicas: a replica that was ready and whose check then fails continuously
    /// this long is killed and restarted (Kubernetes' liveness probe). None: never
    /// (`liveness: false`, or checks off). Default 30s.
    pub liveness: Option<Duration>,
}

impl Health {
    /// Whether an HTTP check answered with `status` passes.
    pub fn passes(&self, status: u16) -> bool {
        self.expect_status
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

impl Default for Health {
    fn default() -> Self {
        Health {
            enabled: true,
            path: None,
            expect_status: vec![(200, 399)],
            interval: Duration::from_secs(1),
            fast_interval: Duration::from_millis(250),
            timeout: Duration::from_millis(500),
            healthy_threshold: 1,
            unhealthy_threshold: 2,
            start_period: Duration::ZERO,
            start_timeout: Duration::from_secs(60),
            liveness: Some(Duration::from_secs(30)),
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
    /// HTTP/2 over TLS (ALPN `h2`); the service has [`Service::tls`].
    H2,
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
    /// Target service (with `services:`, the first of them).
    pub service: String,
    /// A traffic split between services (`services:`: canary, blue-green), if the route has
    /// one; then `service` is its first target.
    pub split: Option<Split>,
    /// A copy of some requests sent to another service (`mirror:`), if set.
    pub mirror: Option<Mirror>,
    /// Middlewares in order (the inline `strip_prefix` comes first).
    pub middlewares: Vec<Middleware>,
    /// Entrypoints the route listens on; None = all.
    pub entrypoints: Option<Vec<String>>,
    /// The route's retry settings: its `retry:` fields over the service's (a split's: over
    /// its first target's; each target has its own in [`WeightedTarget::retry`]). None = the
    /// service's.
    pub retry: Option<Retry>,
    /// The route's own request timeouts (unset fields: its service's, then the gateway's).
    pub timeouts: RequestTimeouts,
}

/// A route's traffic split between services by weight (Traefik's weighted services).
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Two or more services, each with a relative weight (0..=1000, not all 0).
    pub targets: Vec<WeightedTarget>,
    /// Keep each client on the service it first got (`sticky:`), if set.
    pub sticky: Option<Sticky>,
    /// Automated canary (`canary:`): promote step by step, roll back on bad numbers.
    pub canary: Option<Canary>,
}

/// One service of a [`Split`].
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedTarget {
    /// The service.
    pub service: String,
    /// Relative weight, 0..=1000.
    pub weight: u32,
    /// The route's `retry:` fields over this service's retry settings; None when the route
    /// sets none (the service's own apply). Each target merges with its own service, so a
    /// route that sets only `per_try_timeout` keeps each service's `attempts`.
    pub retry: Option<Retry>,
}

/// Sticky split: the gateway sets a cookie naming the service a client got, and sends
/// the client's next requests there while that service is in the split with a weight > 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sticky {
    /// Cookie name. Default `shoal_ROUTE` (the route's name).
    pub cookie: String,
}

/// An automated canary on a split (Flagger's semantics, measured by the gateway): every
/// `interval`, if the canary answered at least `min_requests` and its error ratio and p95
/// stayed within bounds of the other services', its share grows by `step` percent;
/// otherwise it is rolled back to 0 (after `failures` bad intervals in a row).
#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    /// The canary service (one of the split's targets); the others are the stable version.
    pub service: String,
    /// Percentage points added per good interval. Default 10.
    pub step: u32,
    /// Share at which the canary is promoted to all traffic (100). Default 100.
    pub max_weight: u32,
    /// Time between checks. Default 30s.
    pub interval: Duration,
    /// Requests the canary must have answered in an interval for it to count. Default 20.
    pub min_requests: u32,
    /// The canary's 5xx ratio may exceed the stable one's by this much. Default 0.01.
    pub max_error_increase: f64,
    /// The canary's p95 may be this many times the stable one's. Default 1.5.
    pub max_p95_ratio: f64,
    /// Bad intervals in a row before a rollback. Default 1.
    pub failures: u32,
}

/// Mirroring: a share of a route's requests is also sent to another service; its answers
/// are discarded, and it never slows or fails the real request.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    /// Where copies go.
    pub service: String,
    /// Share of requests copied, 0..=100. Default 100.
    pub percent: f64,
    /// Requests with a larger body are not mirrored. Default 1 MiB.
    pub max_body: u64,
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
    /// Requests per period per client (GCRA); 429 beyond.
    RateLimit(RateLimit),
    /// Concurrent requests per client; 429 beyond.
    InFlightReq(InFlightReq),
    /// HTTP Basic authentication; 401 without valid credentials.
    BasicAuth(BasicAuth),
    /// Only clients from these ranges; 403 otherwise.
    IpAllowList(IpAllowList),
    /// Redirect to another scheme (HTTP → HTTPS).
    RedirectScheme(RedirectScheme),
    /// Redirect URLs matching a regular expression.
    RedirectRegex(RedirectRegex),
    /// Rewrite the path by a regular expression.
    ReplacePathRegex(ReplacePathRegex),
    /// Compress responses (zstd, br, gzip), streamed.
    Compress(Compress),
    /// Bound the request body; 413 beyond.
    Buffering(Buffering),
    /// CORS preflights and response headers.
    Cors(Cors),
}

impl Middleware {
    /// The middleware's kind as written in the stack file (`strip_prefix`, `rate_limit`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Middleware::StripPrefix(_) => "strip_prefix",
            Middleware::AddPrefix(_) => "add_prefix",
            Middleware::Headers(_) => "headers",
            Middleware::RateLimit(_) => "rate_limit",
            Middleware::InFlightReq(_) => "in_flight_req",
            Middleware::BasicAuth(_) => "basic_auth",
            Middleware::IpAllowList(_) => "ip_allow_list",
            Middleware::RedirectScheme(_) => "redirect_scheme",
            Middleware::RedirectRegex(_) => "redirect_regex",
            Middleware::ReplacePathRegex(_) => "replace_path_regex",
            Middleware::Compress(_) => "compress",
            Middleware::Buffering(_) => "buffering",
            Middleware::Cors(_) => "cors",
        }
    }
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
