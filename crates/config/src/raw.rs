//! The stack file as written: serde types that only parse. Unknown fields are errors.
//!
//! Validation (names resolve, rules parse, addresses are addresses) happens in
//! [`crate::validate`], which turns these into [`crate::Stack`].
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use indexmap::IndexMap;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStack {
    #[serde(default)]
    pub(crate) gateway: RawGateway,
    #[serde(default)]
    pub(crate) admin: RawAdmin,
    #[serde(default)]
    pub(crate) services: IndexMap<String, RawService>,
    #[serde(default)]
    pub(crate) middlewares: BTreeMap<String, RawMiddleware>,
    #[serde(default)]
    pub(crate) routes: Vec<RawRoute>,
    pub(crate) metrics: Option<BoolOr<RawMetrics>>,
    pub(crate) access_log: Option<BoolOr<RawAccessLog>>,
}

/// `metrics:` (the Prometheus endpoint's request metrics).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub(crate) prefix: Option<String>,
    pub(crate) buckets: Option<Vec<f64>>,
}

/// `access_log:` (one line per request).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccessLog {
    pub(crate) format: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) buffer: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    /// Shorthand for one entrypoint named `web`.
    pub(crate) listen: Option<String>,
    pub(crate) entrypoints: Option<IndexMap<String, RawEntrypoint>>,
    pub(crate) workers: Option<usize>,
    #[serde(default)]
    pub(crate) timeouts: RawTimeouts,
    pub(crate) shutdown_grace: Option<String>,
    pub(crate) replica_header: Option<BoolOrString>,
    pub(crate) max_idle_per_upstream: Option<usize>,
    #[serde(default)]
    pub(crate) limits: RawLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) max_head_size: Option<RawSize>,
    pub(crate) max_headers: Option<usize>,
    pub(crate) max_connections: Option<usize>,
}

/// `resources:` of a container: `{cpu, memory}` (requests), or Kubernetes' own shape
/// `{requests: {cpu, memory}, limits: {cpu, memory}}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResources {
    pub(crate) cpu: Option<RawNumber>,
    pub(crate) memory: Option<RawSize>,
    pub(crate) requests: Option<RawQuantities>,
    pub(crate) limits: Option<RawQuantities>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuantities {
    pub(crate) cpu: Option<RawNumber>,
    pub(crate) memory: Option<RawSize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEntrypoint {
    pub(crate) listen: String,
    pub(crate) tls: Option<RawEntrypointTls>,
    pub(crate) redirect_to: Option<String>,
}

/// `entrypoints.NAME.tls`: `certificates: [{cert, key}, …]`, or the shorthand `cert` and
/// `key` for one certificate.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEntrypointTls {
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) certificates: Option<Vec<RawCertificate>>,
    pub(crate) min_version: Option<ScalarText>,
}

/// One certificate chain and its key, both PEM files.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub(crate) connect: Option<String>,
    pub(crate) response_header: Option<String>,
    pub(crate) upstream_idle: Option<String>,
    pub(crate) client_idle: Option<String>,
    pub(crate) header_read: Option<String>,
    pub(crate) body_idle: Option<String>,
    pub(crate) grpc_max: Option<String>,
}

/// `timeouts:` of a service or a route: the request timeouts that can differ per service
/// and per route (a route's over its service's over the gateway's).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequestTimeouts {
    pub(crate) response_header: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) listen: Option<String>,
    pub(crate) token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub(crate) kind: Option<String>,
    pub(crate) servers: Option<Vec<StringOr<RawServer>>>,
    pub(crate) command: Option<StringOrList>,
    pub(crate) image: Option<String>,
    pub(crate) args: Option<Vec<String>>,
    pub(crate) port: Option<u16>,
    pub(crate) resources: Option<RawResources>,
    pub(crate) env: Option<BTreeMap<String, String>>,
    pub(crate) workdir: Option<String>,
    pub(crate) replicas: Option<u32>,
    pub(crate) port_env: Option<String>,
    pub(crate) replica_env: Option<String>,
    pub(crate) health: Option<BoolOr<RawHealth>>,
    pub(crate) retry: Option<BoolOr<RawRetry>>,
    pub(crate) passive: Option<BoolOr<RawPassive>>,
    pub(crate) circuit_breaker: Option<BoolOr<RawCircuitBreaker>>,
    pub(crate) restart: Option<StringOr<RawRestart>>,
    pub(crate) stop: Option<RawStop>,
    pub(crate) logs: Option<RawLogs>,
    pub(crate) autoscale: Option<RawAutoscale>,
    pub(crate) protocol: Option<String>,
    pub(crate) balance: Option<StringOr<RawBalance>>,
    pub(crate) tls: Option<BoolOr<RawUpstreamTls>>,
    pub(crate) timeouts: Option<RawRequestTimeouts>,
    pub(crate) version: Option<RawLabel>,
    pub(crate) rollout: Option<RawRollout>,
    pub(crate) depends_on: Option<RawDependsOn>,
}

/// `depends_on:` as Compose writes it: a list of service names (`[db, cache]`, each
/// `service_started`), or a mapping of names to `{condition: …}`.
#[derive(Debug, Default)]
pub(crate) struct RawDependsOn {
    /// (service, condition as written); `list`: the list form (no conditions).
    pub(crate) entries: Vec<(String, Option<String>)>,
    pub(crate) list: bool,
}

/// One value of the mapping form of `depends_on`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDependency {
    pub(crate) condition: Option<String>,
}

impl<'de> Deserialize<'de> for RawDependsOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawDependsOn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list of service names, or a mapping of names to `{condition: service_started|service_healthy}`",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    entries.push((name, None));
                }
                Ok(RawDependsOn {
                    entries,
                    list: true,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let dep = map.next_value::<Option<RawDependency>>()?;
                    entries.push((name, dep.and_then(|d| d.condition)));
                }
                Ok(RawDependsOn {
                    entries,
                    list: false,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `rollout:` of a command service: how a changed spec replaces its replicas.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRollout {
    pub(crate) max_surge: Option<RawNumber>,
    pub(crate) max_unavailable: Option<RawNumber>,
    pub(crate) progress_deadline: Option<String>,
}

/// A label users write bare or quoted: `version: v2`, `version: 3` (validated later). A
/// number with a fraction is refused here: YAML would have read `1.10` as `1.1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawLabel(pub(crate) String);

impl<'de> Deserialize<'de> for RawLabel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawLabel;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a label like `v2` or `2024-06-01.1`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawLabel, E> {
                Ok(RawLabel(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawLabel, E> {
                Ok(RawLabel(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawLabel, E> {
                Err(E::custom(format!(
                    "read as the number `{v}`; quote the label to keep it as written (YAML reads \
                     `1.10` as `1.1`)"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawLabel, E> {
                Ok(RawLabel(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `tls:` of a service: TLS to its replicas.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    pub(crate) ca: Option<String>,
    pub(crate) server_name: Option<String>,
    pub(crate) insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) url: String,
    pub(crate) weight: Option<u32>,
}

impl From<String> for RawServer {
    fn from(url: String) -> Self {
        RawServer { url, weight: None }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub(crate) path: Option<String>,
    pub(crate) tcp: Option<bool>,
    pub(crate) expect_status: Option<RawStatuses>,
    pub(crate) interval: Option<String>,
    pub(crate) fast_interval: Option<String>,
    pub(crate) timeout: Option<String>,
    pub(crate) healthy_threshold: Option<u32>,
    pub(crate) unhealthy_threshold: Option<u32>,
    pub(crate) start_period: Option<String>,
    pub(crate) start_timeout: Option<String>,
    /// `true` (the default bound), `false` (off) or a duration.
    pub(crate) liveness: Option<BoolOrString>,
}

/// `retry:` of a service or a route (a route's fields override its service's).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub(crate) attempts: Option<u32>,
    pub(crate) on_status: Option<RawStatuses>,
    pub(crate) per_try_timeout: Option<RawPerTryTimeout>,
    pub(crate) max_replay_body: Option<RawSize>,
    pub(crate) budget: Option<RawBudget>,
    pub(crate) non_idempotent: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudget {
    pub(crate) ratio: Option<RawNumber>,
    pub(crate) min_per_sec: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPassive {
    pub(crate) consecutive_5xx: Option<u32>,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) base_ejection: Option<String>,
    pub(crate) max_ejection: Option<String>,
    pub(crate) max_ejected_percent: Option<RawNumber>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCircuitBreaker {
    pub(crate) window: Option<String>,
    pub(crate) min_requests: Option<u32>,
    pub(crate) error_ratio: Option<RawNumber>,
    pub(crate) slow_call: Option<String>,
    pub(crate) slow_ratio: Option<RawNumber>,
    pub(crate) open_for: Option<String>,
    pub(crate) half_open_requests: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRestart {
    pub(crate) policy: Option<String>,
    pub(crate) delay: Option<String>,
    pub(crate) max_delay: Option<String>,
    pub(crate) reset_after: Option<String>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) window: Option<String>,
}

impl From<String> for RawRestart {
    fn from(policy: String) -> Self {
        RawRestart {
            policy: Some(policy),
            ..RawRestart::default()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStop {
    pub(crate) drain_timeout: Option<String>,
    pub(crate) grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogs {
    pub(crate) max_size: Option<RawSize>,
    pub(crate) keep: Option<u32>,
}

/// `autoscale:` of a command service. Targets, then behaviour; unset behaviour fields come
/// from the preset.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAutoscale {
    pub(crate) min: Option<u32>,
    pub(crate) max: Option<u32>,
    pub(crate) cpu: Option<RawNumber>,
    pub(crate) cpu_request: Option<RawNumber>,
    pub(crate) memory: Option<RawSize>,
    pub(crate) concurrency: Option<RawNumber>,
    pub(crate) rps: Option<RawNumber>,
    pub(crate) latency_p95: Option<String>,
    pub(crate) backlog: Option<RawBacklog>,
    pub(crate) tolerance: Option<NumberOr<RawTolerance>>,
    pub(crate) scale_up: Option<RawScaling>,
    pub(crate) scale_down: Option<RawScaling>,
    pub(crate) panic: Option<BoolOr<RawPanic>>,
    pub(crate) scale_to_zero_after: Option<String>,
    pub(crate) warm_up: Option<String>,
    pub(crate) tick: Option<String>,
    pub(crate) hold: Option<RawHold>,
    pub(crate) preset: Option<String>,
}

/// `autoscale.backlog:` a queue the service consumes: one broker, then the target.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBacklog {
    pub(crate) redis: Option<RawRedis>,
    pub(crate) rabbitmq: Option<RawRabbitMq>,
    pub(crate) kafka: Option<RawKafka>,
    pub(crate) password_env: Option<String>,
    pub(crate) password_file: Option<String>,
    pub(crate) per_replica: Option<u64>,
    pub(crate) activation: Option<u64>,
    pub(crate) drain_within: Option<String>,
    pub(crate) poll: Option<String>,
    pub(crate) smoothing: Option<String>,
    pub(crate) fallback: Option<RawFallback>,
}

/// `backlog.redis:` a Redis Streams consumer group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    pub(crate) url: String,
    pub(crate) stream: String,
    pub(crate) group: String,
}

/// `backlog.rabbitmq:` a RabbitMQ queue.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRabbitMq {
    pub(crate) url: String,
    pub(crate) queue: String,
    pub(crate) include_unacked: Option<bool>,
}

/// `backlog.kafka:` a Kafka consumer group on a topic.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKafka {
    pub(crate) brokers: StringOrList,
    pub(crate) topic: String,
    pub(crate) group: String,
    pub(crate) allow_idle_consumers: Option<bool>,
}

/// `backlog.fallback:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFallback {
    pub(crate) after: Option<u32>,
    pub(crate) replicas: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTolerance {
    pub(crate) up: Option<RawNumber>,
    pub(crate) down: Option<RawNumber>,
}

/// `scale_up:` / `scale_down:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScaling {
    pub(crate) stabilization: Option<String>,
    pub(crate) policies: Option<Vec<RawRatePolicy>>,
}

/// One entry of `policies:`: `pods` or `percent`, and `period`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRatePolicy {
    pub(crate) pods: Option<u32>,
    pub(crate) percent: Option<RawNumber>,
    pub(crate) period: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPanic {
    pub(crate) threshold: Option<RawNumber>,
    pub(crate) window: Option<String>,
    pub(crate) hold: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHold {
    pub(crate) queue: Option<u32>,
    pub(crate) timeout: Option<String>,
}

/// A size: a number of bytes, or text like `10MiB` (validated later).
#[derive(Debug, Clone)]
pub(crate) enum RawSize {
    Bytes(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: a number of bytes or a number with a unit, like `10MiB`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
                u64::try_from(v)
                    .map(RawSize::Bytes)
                    .map_err(|_| E::custom(format!("a size cannot be negative ({v})")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `per_try_timeout`: `auto`, `off` (or `false`), or a duration (validated later). Bare
/// numbers are kept as text so that validation can say they lack a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawPerTryTimeout {
    Bool(bool),
    Text(String),
}

impl<'de> Deserialize<'de> for RawPerTryTimeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawPerTryTimeout;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`auto`, `off` or a duration like `300ms`")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawPerTryTimeout, E> {
                Ok(RawPerTryTimeout::Bool(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPerTryTimeout, E> {
                Ok(RawPerTryTimeout::Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPerTryTimeout, E> {
                Ok(RawPerTryTimeout::Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawPerTryTimeout, E> {
                Ok(RawPerTryTimeout::Text(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPerTryTimeout, E> {
                Ok(RawPerTryTimeout::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A number, or text such as `20%` (validated later).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawNumber {
    Number(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a percentage, like `0.2` or `20%`")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawNumber, E> {
                Ok(RawNumber::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNumber, E> {
                Ok(RawNumber::Number(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawNumber, E> {
                Ok(RawNumber::Number(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawNumber, E> {
                Ok(RawNumber::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One HTTP status or a range of them: `200`, `"200-299"` (validated later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawStatus {
    Number(u64),
    Text(String),
}

/// A status, a range, or a list of them: `200`, `"200-299"`, `[200, "300-302"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawStatuses {
    pub(crate) items: Vec<RawStatus>,
    /// Written as a list (errors then point at the item, `field[i]`).
    pub(crate) list: bool,
}

impl<'de> Deserialize<'de> for RawStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawStatus;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HTTP status like `200` or a range like `200-299`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawStatus, E> {
                Ok(RawStatus::Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawStatus, E> {
                Err(E::custom(format!("`{v}` is not an HTTP status")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawStatus, E> {
                Ok(RawStatus::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawStatuses {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawStatuses;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HTTP status like `200`, a range like `200-299`, or a list of them")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawStatuses, E> {
                Ok(RawStatuses {
                    items: vec![RawStatus::Number(v)],
                    list: false,
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawStatuses, E> {
                Err(E::custom(format!("`{v}` is not an HTTP status")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawStatuses, E> {
                Ok(RawStatuses {
                    items: vec![RawStatus::Text(v.to_owned())],
                    list: false,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawStatuses, A::Error> {
                let mut items = Vec::new();
                while let Some(s) = seq.next_element::<RawStatus>()? {
                    items.push(s);
                }
                Ok(RawStatuses { items, list: true })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBalance {
    pub(crate) algorithm: Option<String>,
    pub(crate) hash_on: Option<String>,
    pub(crate) cookie: Option<String>,
}

impl From<String> for RawBalance {
    fn from(algorithm: String) -> Self {
        RawBalance {
            algorithm: Some(algorithm),
            ..RawBalance::default()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMiddleware {
    pub(crate) strip_prefix: Option<StringOrList>,
    pub(crate) add_prefix: Option<String>,
    pub(crate) headers: Option<RawHeaders>,
    pub(crate) rate_limit: Option<RawRateLimit>,
    pub(crate) in_flight_req: Option<RawInFlightReq>,
    pub(crate) basic_auth: Option<RawBasicAuth>,
    pub(crate) ip_allow_list: Option<RawIpAllowList>,
    pub(crate) redirect_scheme: Option<RawRedirectScheme>,
    pub(crate) redirect_regex: Option<RawRedirectRegex>,
    pub(crate) replace_path_regex: Option<RawReplacePathRegex>,
    pub(crate) compress: Option<BoolOr<RawCompress>>,
    pub(crate) buffering: Option<RawBuffering>,
    pub(crate) cors: Option<RawCors>,
    pub(crate) chain: Option<Vec<String>>,
}

/// `rate_limit:` (Traefik's `rateLimit`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    pub(crate) average: Option<u64>,
    pub(crate) period: Option<String>,
    pub(crate) burst: Option<u64>,
    pub(crate) key: Option<String>,
    pub(crate) depth: Option<usize>,
    pub(crate) max_keys: Option<usize>,
}

/// `in_flight_req:` (Traefik's `inFlightReq`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInFlightReq {
    pub(crate) amount: Option<u64>,
    pub(crate) key: Option<String>,
    pub(crate) depth: Option<usize>,
}

/// `basic_auth:` (Traefik's `basicAuth`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBasicAuth {
    pub(crate) users: Option<Vec<String>>,
    pub(crate) users_file: Option<String>,
    pub(crate) realm: Option<String>,
    pub(crate) remove_header: Option<bool>,
    pub(crate) header_field: Option<String>,
}

/// `ip_allow_list:` (Traefik's `ipAllowList`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIpAllowList {
    pub(crate) source_range: Option<Vec<String>>,
    pub(crate) depth: Option<usize>,
}

/// `redirect_scheme:` (Traefik's `redirectScheme`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedirectScheme {
    pub(crate) scheme: Option<String>,
    pub(crate) port: Option<ScalarText>,
    pub(crate) permanent: Option<bool>,
}

/// `redirect_regex:` (Traefik's `redirectRegex`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedirectRegex {
    pub(crate) regex: Option<String>,
    pub(crate) replacement: Option<String>,
    pub(crate) permanent: Option<bool>,
}

/// `replace_path_regex:` (Traefik's `replacePathRegex`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReplacePathRegex {
    pub(crate) regex: Option<String>,
    pub(crate) replacement: Option<String>,
}

/// `compress:` (Traefik's `compress`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCompress {
    pub(crate) encodings: Option<Vec<String>>,
    pub(crate) min_response_body_bytes: Option<RawSize>,
    pub(crate) excluded_content_types: Option<Vec<String>>,
}

/// `buffering:` (Traefik's `buffering`, its request-body limit).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBuffering {
    pub(crate) max_request_body_bytes: Option<RawSize>,
}

/// `cors:` (Traefik's CORS fields of `headers`, as a middleware of its own).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCors {
    pub(crate) allow_origins: Option<Vec<String>>,
    pub(crate) allow_methods: Option<Vec<String>>,
    pub(crate) allow_headers: Option<Vec<String>>,
    pub(crate) expose_headers: Option<Vec<String>>,
    pub(crate) allow_credentials: Option<bool>,
    pub(crate) max_age: Option<String>,
}

/// Any scalar kept as text, for fields users write either way: `min_version: 1.2` and
/// `min_version: "1.2"`, `port: 8443` and `port: "8443"` (validated later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScalarText(pub(crate) String);

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ScalarText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            // `{:?}` keeps the fraction of a whole number: `1.0`, not `1`.
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarText, E> {
                Ok(ScalarText(format!("{v:?}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaders {
    #[serde(default)]
    pub(crate) request: RawHeaderOps,
    #[serde(default)]
    pub(crate) response: RawHeaderOps,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaderOps {
    #[serde(default)]
    pub(crate) set: IndexMap<String, String>,
    #[serde(default)]
    pub(crate) remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) name: Option<String>,
    #[serde(rename = "match")]
    pub(crate) rule: String,
    pub(crate) service: Option<String>,
    pub(crate) services: Option<Vec<RawTarget>>,
    pub(crate) sticky: Option<BoolOr<RawSticky>>,
    pub(crate) canary: Option<RawCanary>,
    pub(crate) mirror: Option<RawMirror>,
    pub(crate) priority: Option<i64>,
    #[serde(default)]
    pub(crate) middlewares: Vec<String>,
    pub(crate) strip_prefix: Option<StringOrList>,
    pub(crate) entrypoints: Option<Vec<String>>,
    pub(crate) retry: Option<BoolOr<RawRetry>>,
    pub(crate) timeouts: Option<RawRequestTimeouts>,
}

/// One entry of a route's `services:` (a weighted split).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    pub(crate) name: String,
    pub(crate) weight: Option<u32>,
}

/// `sticky:` of a split, in its mapping form.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSticky {
    pub(crate) cookie: Option<String>,
}

/// `canary:` of a split: the automated canary.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCanary {
    pub(crate) service: Option<String>,
    pub(crate) step: Option<u32>,
    pub(crate) max_weight: Option<u32>,
    pub(crate) interval: Option<String>,
    pub(crate) min_requests: Option<u32>,
    pub(crate) max_error_increase: Option<RawNumber>,
    pub(crate) max_p95_ratio: Option<RawNumber>,
    pub(crate) failures: Option<u32>,
}

/// `mirror:` of a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMirror {
    pub(crate) service: Option<String>,
    pub(crate) percent: Option<RawNumber>,
    pub(crate) max_body: Option<RawSize>,
}

/// `true`/`false` or a string (e.g. `replica_header: X-Served-By`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub(crate) enum BoolOrString {
    Bool(bool),
    String(String),
}

/// A string or a list of strings, kept as a list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StringOrList(pub(crate) Vec<String>);

impl<'de> Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringOrList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringOrList(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(StringOrList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A short string form or the full mapping, e.g. `balance: least_requests` or
/// `balance: { algorithm: hash, hash_on: "header:X-User" }`. Errors inside the mapping keep
/// serde's precise messages (an untagged enum would lose them).
#[derive(Debug)]
pub(crate) struct StringOr<T>(pub(crate) T);

impl<'de, T> Deserialize<'de> for StringOr<T>
where
    T: Deserialize<'de> + From<String>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + From<String>> Visitor<'de> for V<T> {
            type Value = StringOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a mapping")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringOr(T::from(v.to_owned())))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(StringOr)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A number (or text like `10%`) or the full mapping, e.g. `tolerance: 10%` or
/// `tolerance: { up: 10%, down: 5% }`. Like [`StringOr`], errors inside the mapping keep
/// serde's precise messages.
#[derive(Debug)]
pub(crate) enum NumberOr<T> {
    Number(RawNumber),
    Map(T),
}

impl<'de, T> Deserialize<'de> for NumberOr<T>
where
    T: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = NumberOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, a percentage like `10%`, or a mapping")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(NumberOr::Number(RawNumber::Number(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(NumberOr::Number(RawNumber::Number(v as f64)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(NumberOr::Number(RawNumber::Number(v as f64)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(NumberOr::Number(RawNumber::Text(v.to_owned())))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(NumberOr::Map)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// `true`/`false` or the full mapping, e.g. `health: false` or `health: { path: /health }`.
/// Like [`StringOr`], errors inside the mapping keep serde's precise messages.
#[derive(Debug, Clone)]
pub(crate) enum BoolOr<T> {
    Bool(bool),
    Map(T),
}

impl<'de, T> Deserialize<'de> for BoolOr<T>
where
    T: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = BoolOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`true`, `false` or a mapping")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(BoolOr::Bool(v))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(BoolOr::Map)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}
