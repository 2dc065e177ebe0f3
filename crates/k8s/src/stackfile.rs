//! Writing validated settings back in the stack file's own syntax, for the gateway's
//! derived stack file. Every value is written out in full (defaults included), so the
//! derived file says exactly what the gateway runs with and does not depend on defaults
//! staying the same.
use http::{HeaderName, HeaderValue};
use serde_norway::Value;
use shoal_autoscale::{RatePolicy, Target};
use shoal_config::{
    AccessLog, AccessLogFormat, Autoscale, Balance, CircuitBreaker, ClientKey, EntrypointTls,
    Gateway, HashOn, Health, Metrics, Middleware, Mirror, Passive, PerTryTimeout, Protocol,
    RequestTimeouts, Retry, Server, Split, UpstreamTls,
};

use crate::yaml::{Obj, duration, list};

pub(crate) fn gateway_settings(g: &Gateway, entrypoints: Value) -> Value {
    let t = &g.timeouts;
    Obj::new()
        .with("entrypoints", entrypoints)
        .with("workers", g.workers as u64)
        .with(
            "timeouts",
            Obj::new()
                .with("connect", duration(t.connect))
                .with("response_header", duration(t.response_header))
                .with("upstream_idle", duration(t.upstream_idle))
                .with("client_idle", duration(t.client_idle))
                .with("header_read", duration(t.header_read))
                .with("body_idle", duration(t.body_idle))
                .with("grpc_max", duration(t.grpc_max)),
        )
        .with("shutdown_grace", duration(g.shutdown_grace))
        .with_opt(
            "replica_header",
            g.replica_header.as_ref().map(|h| h.as_str()),
        )
        .with("max_idle_per_upstream", g.max_idle_per_upstream as u64)
        .with(
            "limits",
            Obj::new()
                .with("max_head_size", g.limits.max_head_size as u64)
                .with("max_headers", g.limits.max_headers as u64)
                .with("max_connections", g.limits.max_connections as u64),
        )
        .into()
}

/// `timeouts:` of a service or a route, if it sets any.
pub(crate) fn request_timeouts(t: &RequestTimeouts) -> Option<Value> {
    t.response_header
        .map(|d| Obj::new().with("response_header", duration(d)).into())
}

pub(crate) fn metrics(m: &Metrics) -> Value {
    if !m.enabled {
        return Value::Bool(false);
    }
    Obj::new()
        .with("prefix", m.prefix.name())
        .with("buckets", list(m.buckets.iter().copied()))
        .into()
}

/// The access log, always to standard output (where `kubectl logs` reads it).
pub(crate) fn access_log(a: &AccessLog) -> Value {
    Obj::new()
        .with(
            "format",
            match a.format {
                AccessLogFormat::Json => "json",
                AccessLogFormat::Common => "common",
            },
        )
        .with("buffer", a.buffer as u64)
        .into()
}

pub(crate) fn servers(servers: &[Server]) -> Value {
    list(servers.iter().map(|s| -> Value {
        if s.weight == 1 {
            s.url.as_str().into()
        } else {
            Obj::new()
                .with("url", s.url.as_str())
                .with("weight", s.weight)
                .into()
        }
    }))
}

pub(crate) fn protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Http1 => "http",
        Protocol::H2c => "h2c",
        Protocol::H2 => "h2",
    }
}

pub(crate) fn balance(b: &Balance) -> Value {
    match b {
        Balance::RoundRobin => "round_robin".into(),
        Balance::LeastRequests => "least_requests".into(),
        Balance::Hash(on) => Obj::new()
            .with("algorithm", "hash")
            .with(
                "hash_on",
                match on {
                    HashOn::Header(h) => format!("header:{}", h.as_str()),
                    HashOn::Cookie(c) => format!("cookie:{c}"),
                    HashOn::ClientIp => "client_ip".to_owned(),
                },
            )
            .into(),
        Balance::Sticky { cookie } => Obj::new()
            .with("algorithm", "sticky")
            .with("cookie", cookie.as_str())
            .into(),
    }
}

/// Status ranges as the stack file writes them: `200` or `"200-399"`.
fn statuses(ranges: impl IntoIterator<Item = (u16, u16)>) -> Value {
    list(ranges.into_iter().map(|(lo, hi)| -> Value {
        if lo == hi {
            Value::from(lo)
        } else {
            format!("{lo}-{hi}").into()
        }
    }))
}

/// Consecutive statuses folded into ranges: `[502, 503, 504]` → `502-504`.
fn runs(list: &[u16]) -> Vec<(u16, u16)> {
    let mut sorted = list.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for s in sorted {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == s => *hi = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// Active checks: of static servers (`replicas: false`: no `start_period` and
/// `start_timeout`, which the stack file allows for replicated services only), or of a
/// replicated service's pods.
pub(crate) fn health(h: &Health, replicas: bool) -> Value {
    if !h.enabled {
        return Value::Bool(false);
    }
    let o = match &h.path {
        Some(p) => Obj::new()
            .with("path", p.as_str())
            .with("expect_status", statuses(h.expect_status.iter().copied())),
        None => Obj::new().with("tcp", true),
    };
    let o = o
        .with("interval", duration(h.interval))
        .with("fast_interval", duration(h.fast_interval))
        .with("timeout", duration(h.timeout))
        .with("healthy_threshold", h.healthy_threshold)
        .with("unhealthy_threshold", h.unhealthy_threshold);
    if !replicas {
        return o.into();
    }
    o.with("start_period", duration(h.start_period))
        .with("start_timeout", duration(h.start_timeout))
        .into()
}

/// `autoscale:` in full: the preset it started from, then every field the preset would
/// otherwise fill in.
pub(crate) fn autoscale(a: &Autoscale) -> Value {
    let p = &a.policy;
    let mut o = Obj::new()
        .with("preset", a.preset.name())
        .with("min", p.min)
        .with("max", p.max);
    for t in &p.targets {
        o = match *t {
            Target::Cpu(share) => o.with("cpu", share),
            Target::Memory(bytes) => o.with("memory", bytes),
            Target::Concurrency(v) => o.with("concurrency", v),
            Target::Rps(v) => o.with("rps", v),
            Target::LatencyP95(d) => o.with("latency_p95", duration(d)),
            // Never here: a service with a backlog target is not scaled by the gateway
            // (`crate::scaling`), so its `autoscale` is not written.
            Target::Backlog(_) => o,
        };
    }
    let rates = |policies: &[RatePolicy]| {
        list(policies.iter().map(|r| -> Value {
            match *r {
                RatePolicy::Pods { value, period } => Obj::new()
                    .with("pods", value)
                    .with("period", duration(period)),
                RatePolicy::Percent { value, period } => Obj::new()
                    .with("percent", value)
                    .with("period", duration(period)),
            }
            .into()
        }))
    };
    let panic: Value = if p.panic_threshold.is_finite() {
        Obj::new()
            .with("threshold", p.panic_threshold)
            .with("window", duration(p.panic_window))
            .with("hold", duration(p.panic_hold))
            .into()
    } else {
        Value::Bool(false)
    };
    o.with("cpu_request", a.cpu_request)
        .with(
            "tolerance",
            Obj::new()
                .with("up", p.tolerance_up)
                .with("down", p.tolerance_down),
        )
        .with(
            "scale_up",
            Obj::new()
                .with("stabilization", duration(p.up_stabilization))
                .with("policies", rates(&p.up_policies)),
        )
        .with(
            "scale_down",
            Obj::new()
                .with("stabilization", duration(p.down_stabilization))
                .with("policies", rates(&p.down_policies)),
        )
        .with("panic", panic)
        .with("scale_to_zero_after", duration(p.scale_to_zero_after))
        .with("warm_up", duration(p.warm_up))
        .with("tick", duration(a.tick))
        .with(
            "hold",
            Obj::new()
                .with("queue", a.hold.queue)
                .with("timeout", duration(a.hold.timeout)),
        )
        .into()
}

pub(crate) fn retry(r: &Retry) -> Value {
    Obj::new()
        .with("attempts", r.attempts)
        .with("on_status", statuses(runs(&r.on_status)))
        .with(
            "per_try_timeout",
            match r.per_try_timeout {
                PerTryTimeout::Auto => "auto".to_owned(),
                PerTryTimeout::Off => "off".to_owned(),
                PerTryTimeout::Fixed(d) => duration(d),
            },
        )
        .with("max_replay_body", r.max_replay_body)
        .with(
            "budget",
            Obj::new()
                .with("ratio", r.budget_ratio)
                .with("min_per_sec", r.budget_min_per_sec),
        )
        .with("non_idempotent", r.non_idempotent)
        .into()
}

/// A route's target keys for a split: `services:`, and `sticky:` and `canary:` when set.
pub(crate) fn split(route: Obj, s: &Split) -> Obj {
    let targets = s.targets.iter().map(|t| {
        Obj::new()
            .with("name", t.service.as_str())
            .with("weight", t.weight)
    });
    let canary = s.canary.as_ref().map(|c| {
        Obj::new()
            .with("service", c.service.as_str())
            .with("step", c.step)
            .with("max_weight", c.max_weight)
            .with("interval", duration(c.interval))
            .with("min_requests", c.min_requests)
            .with("max_error_increase", c.max_error_increase)
            .with("max_p95_ratio", c.max_p95_ratio)
            .with("failures", c.failures)
    });
    route
        .with("services", list(targets))
        .with_opt(
            "sticky",
            s.sticky
                .as_ref()
                .map(|st| Obj::new().with("cookie", st.cookie.as_str())),
        )
        .with_opt("canary", canary)
}

/// A route's `mirror:`.
pub(crate) fn mirror(m: &Mirror) -> Value {
    Obj::new()
        .with("service", m.service.as_str())
        .with("percent", m.percent)
        .with("max_body", m.max_body)
        .into()
}

pub(crate) fn passive(p: &Passive) -> Value {
    if !p.enabled {
        return Value::Bool(false);
    }
    Obj::new()
        .with("consecutive_5xx", p.consecutive_5xx)
        .with("consecutive_failures", p.consecutive_failures)
        .with("base_ejection", duration(p.base_ejection))
        .with("max_ejection", duration(p.max_ejection))
        .with("max_ejected_percent", p.max_ejected_percent)
        .into()
}

pub(crate) fn circuit_breaker(c: &CircuitBreaker) -> Value {
    Obj::new()
        .with("window", duration(c.window))
        .with("min_requests", c.min_requests)
        .with_opt("error_ratio", c.error_ratio)
        .with("slow_call", duration(c.slow_call))
        .with_opt("slow_ratio", c.slow_ratio)
        .with("open_for", duration(c.open_for))
        .with("half_open_requests", c.half_open_requests)
        .into()
}

pub(crate) fn middleware(m: &Middleware) -> Value {
    match m {
        Middleware::RateLimit(r) => Obj::new()
            .with(
                "rate_limit",
                client_key(
                    &r.key,
                    Obj::new()
                        .with("average", r.average)
                        .with("period", duration(r.period))
                        .with("burst", r.burst),
                )
                .with("max_keys", r.max_keys as u64),
            )
            .into(),
        Middleware::InFlightReq(r) => Obj::new()
            .with(
                "in_flight_req",
                client_key(&r.key, Obj::new().with("amount", r.amount)),
            )
            .into(),
        Middleware::BasicAuth(a) => Obj::new()
            .with(
                "basic_auth",
                Obj::new()
                    .with(
                        "users",
                        list(a.users.iter().map(|(user, hash)| format!("{user}:{hash}"))),
                    )
                    .with("realm", a.realm.as_str())
                    .with("remove_header", a.remove_header)
                    .with_opt("header_field", a.header_field.as_ref().map(|h| h.as_str())),
            )
            .into(),
        Middleware::IpAllowList(l) => Obj::new()
            .with(
                "ip_allow_list",
                Obj::new()
                    .with(
                        "source_range",
                        list(
                            l.source_range
                                .iter()
                                .map(|r| format!("{}/{}", r.addr, r.prefix)),
                        ),
                    )
                    .with("depth", l.depth as u64),
            )
            .into(),
        Middleware::RedirectScheme(r) => Obj::new()
            .with(
                "redirect_scheme",
                Obj::new()
                    .with("scheme", r.scheme.as_str())
                    .with_opt("port", r.port.map(u64::from))
                    .with("permanent", r.permanent),
            )
            .into(),
        Middleware::RedirectRegex(r) => Obj::new()
            .with(
                "redirect_regex",
                Obj::new()
                    .with("regex", r.regex.source.as_str())
                    .with("replacement", r.replacement.as_str())
                    .with("permanent", r.permanent),
            )
            .into(),
        Middleware::ReplacePathRegex(r) => Obj::new()
            .with(
                "replace_path_regex",
                Obj::new()
                    .with("regex", r.regex.source.as_str())
                    .with("replacement", r.replacement.as_str()),
            )
            .into(),
        Middleware::Compress(c) => Obj::new()
            .with(
                "compress",
                Obj::new()
                    .with("encodings", list(c.encodings.iter().map(|e| e.token())))
                    .with("min_response_body_bytes", c.min_response_body_bytes)
                    .with(
                        "excluded_content_types",
                        list(c.excluded_content_types.iter().map(String::as_str)),
                    ),
            )
            .into(),
        Middleware::Buffering(b) => Obj::new()
            .with(
                "buffering",
                Obj::new().with("max_request_body_bytes", b.max_request_body_bytes),
            )
            .into(),
        Middleware::Cors(c) => Obj::new()
            .with(
                "cors",
                Obj::new()
                    .with(
                        "allow_origins",
                        list(c.allow_origins.iter().map(String::as_str)),
                    )
                    .with(
                        "allow_methods",
                        list(c.allow_methods.iter().map(|m| m.as_str())),
                    )
                    .with_nonempty(
                        "allow_headers",
                        list(c.allow_headers.iter().map(String::as_str)),
                    )
                    .with_nonempty(
                        "expose_headers",
                        list(c.expose_headers.iter().map(String::as_str)),
                    )
                    .with("allow_credentials", c.allow_credentials)
                    .with_opt("max_age", c.max_age.map(duration)),
            )
            .into(),
        Middleware::StripPrefix(prefixes) => Obj::new()
            .with("strip_prefix", list(prefixes.iter().map(String::as_str)))
            .into(),
        Middleware::AddPrefix(p) => Obj::new()
            .with("add_prefix", if p.is_empty() { "/" } else { p.as_str() })
            .into(),
        Middleware::Headers(h) => {
            let ops = |set: &[(HeaderName, HeaderValue)], remove: &[HeaderName]| {
                Obj::new()
                    .with_nonempty(
                        "set",
                        set.iter().fold(Obj::new(), |o, (k, v)| {
                            o.with(k.as_str(), String::from_utf8_lossy(v.as_bytes()).as_ref())
                        }),
                    )
                    .with_nonempty("remove", list(remove.iter().map(|n| n.as_str())))
            };
            Obj::new()
                .with(
                    "headers",
                    Obj::new()
                        .with_nonempty("request", ops(&h.request_set, &h.request_remove))
                        .with_nonempty("response", ops(&h.response_set, &h.response_remove)),
                )
                .into()
        }
    }
}

/// An entrypoint's `tls`, its certificates given as the paths the gateway's pod sees
/// (`(cert, key)` in the entrypoint's order).
pub(crate) fn entrypoint_tls(tls: &EntrypointTls, paths: &[(String, String)]) -> Value {
    Obj::new()
        .with(
            "certificates",
            list(paths.iter().map(|(cert, key)| {
                Obj::new()
                    .with("cert", cert.as_str())
                    .with("key", key.as_str())
            })),
        )
        .with("min_version", crate::tls::version(tls.min_version))
        .into()
}

/// A service's `tls`, its CA bundle given as the path the gateway's pod sees.
pub(crate) fn upstream_tls(tls: &UpstreamTls, ca: Option<&str>) -> Value {
    Obj::new()
        .with_opt("ca", ca)
        .with_opt("server_name", tls.server_name.as_deref())
        .with("insecure_skip_verify", tls.insecure_skip_verify)
        .into()
}

/// A limit's fields with its `key` (and `depth` for client IPs) written in.
fn client_key(key: &ClientKey, fields: Obj) -> Obj {
    match key {
        ClientKey::Ip { depth } => fields.with("key", "client_ip").with("depth", *depth as u64),
        ClientKey::Header(name) => fields.with("key", format!("header:{name}")),
        ClientKey::Route => fields.with("key", "route"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fold_into_ranges() {
        assert_eq!(runs(&[504, 502, 503, 429]), vec![(429, 429), (502, 504)]);
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(
            crate::yaml::to_text(&statuses(runs(&[502, 503, 504, 500]))),
            "- 500\n- 502-504\n"
        );
    }
}
