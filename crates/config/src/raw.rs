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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEntrypoint {
    pub(crate) listen: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub(crate) connect: Option<String>,
    pub(crate) response_header: Option<String>,
    pub(crate) upstream_idle: Option<String>,
    pub(crate) client_idle: Option<String>,
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
    pub(crate) servers: Option<Vec<StringOr<RawServer>>>,
    pub(crate) command: Option<StringOrList>,
    pub(crate) env: Option<BTreeMap<String, String>>,
    pub(crate) workdir: Option<String>,
    pub(crate) replicas: Option<u32>,
    pub(crate) port_env: Option<String>,
    pub(crate) replica_env: Option<String>,
    pub(crate) health: Option<RawHealth>,
    pub(crate) restart: Option<StringOr<RawRestart>>,
    pub(crate) stop: Option<RawStop>,
    pub(crate) logs: Option<RawLogs>,
    pub(crate) protocol: Option<String>,
    pub(crate) balance: Option<StringOr<RawBalance>>,
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
    pub(crate) interval: Option<String>,
    pub(crate) timeout: Option<String>,
    pub(crate) healthy_threshold: Option<u32>,
    pub(crate) unhealthy_threshold: Option<u32>,
    pub(crate) start_period: Option<String>,
    pub(crate) start_timeout: Option<String>,
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

/// A size: a number of bytes, or text like `10MiB` (validated later).
#[derive(Debug)]
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
    pub(crate) service: String,
    pub(crate) priority: Option<i64>,
    #[serde(default)]
    pub(crate) middlewares: Vec<String>,
    pub(crate) strip_prefix: Option<StringOrList>,
    pub(crate) entrypoints: Option<Vec<String>>,
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
