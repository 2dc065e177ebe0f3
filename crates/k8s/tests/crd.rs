//! The custom resources in the golden files — Traefik's IngressRoute and Middleware, the
//! Prometheus Operator's ServiceMonitor — checked against the fields of their
//! CustomResourceDefinitions that the render writes. `kubernetes-validate` in
//! `scripts/test.sh` knows Kubernetes' own kinds only (it skips the others with a warning),
//! so this is where an unknown field, a wrong type, a missing required field or a dangling
//! reference in them fails.
//!
//! The schemas below are subsets of the CRDs' `openAPIV3Schema`, written down from:
//!
//! - Traefik v3.0.0, the oldest Traefik the render supports (`traefik.io/v1alpha1` with the
//!   v3 rule syntax): `docs/content/reference/dynamic-configuration/traefik.io_ingressroutes.yaml`
//!   and `traefik.io_middlewares.yaml` in github.com/traefik/traefik, also published in the
//!   CRD reference, <https://doc.traefik.io/traefik/v3.0/reference/dynamic-configuration/kubernetes-crd/>.
//!   Every field used here has the same type in v3.7; v3.7 adds a rule that `addPrefix.prefix`
//!   starts with `/` and no longer requires `routes[].kind` (both checked as the stricter).
//!   One field is newer than v3.0: `compress.encodings` (Traefik v3.1, traefik/traefik#10943),
//!   which the render writes only when a stack leaves an encoding out, and says so.
//! - Prometheus Operator v0.93.0: `example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml`
//!   in github.com/prometheus-operator/prometheus-operator (API reference:
//!   <https://prometheus-operator.dev/docs/api-reference/api/#monitoring.coreos.com/v1.ServiceMonitor>).
//!
//! The subsets list only what the render writes, so a field the render starts to write fails
//! here until it is looked up in those files and added.
use std::path::{Path, PathBuf};

use serde_norway::Value;

/// A schema: a subset of OpenAPI v3 as CRDs use it.
#[derive(Debug, Clone, Copy)]
enum S {
    Str,
    /// A string from this list (`enum`).
    Enum(&'static [&'static str]),
    Int,
    Bool,
    /// `x-kubernetes-int-or-string`.
    IntOrStr,
    /// A string matching the Prometheus Operator's `Duration` pattern.
    Duration,
    /// A path: a string starting with `/` (Traefik v3.7's CEL rule on `addPrefix.prefix`).
    AbsPath,
    Arr(&'static S),
    /// `type: object` with `additionalProperties: {type: string}`.
    StrMap,
    /// `type: object` with these `properties`: (name, required, schema); no other field.
    Obj(&'static [(&'static str, bool, S)]),
}

use S::*;

const REQ: bool = true;
const OPT: bool = false;

/// What the render writes of an object's metadata.
const METADATA: S = Obj(&[
    ("name", REQ, Str),
    ("namespace", REQ, Str),
    ("labels", OPT, StrMap),
]);

/// `traefik.io/v1alpha1` IngressRoute (Traefik v3.0 `IngressRouteSpec`).
const INGRESS_ROUTE: S = Obj(&[
    ("apiVersion", REQ, Enum(&["traefik.io/v1alpha1"])),
    ("kind", REQ, Enum(&["IngressRoute"])),
    ("metadata", REQ, METADATA),
    (
        "spec",
        REQ,
        Obj(&[
            ("entryPoints", OPT, Arr(&Str)),
            (
                "routes",
                REQ,
                Arr(&Obj(&[
                    ("kind", REQ, Enum(&["Rule"])),
                    ("match", REQ, Str),
                    ("priority", OPT, Int),
                    (
                        "middlewares",
                        OPT,
                        Arr(&Obj(&[("name", REQ, Str), ("namespace", OPT, Str)])),
                    ),
                    (
                        "services",
                        OPT,
                        Arr(&Obj(&[
                            ("name", REQ, Str),
                            ("kind", OPT, Enum(&["Service", "TraefikService"])),
                            ("port", OPT, IntOrStr),
                            ("scheme", OPT, Str),
                            (
                                "sticky",
                                OPT,
                                Obj(&[("cookie", OPT, Obj(&[("name", OPT, Str)]))]),
                            ),
                        ])),
                    ),
                ])),
            ),
            ("tls", OPT, Obj(&[("secretName", OPT, Str)])),
        ]),
    ),
]);

/// `sourceCriterion` of `rateLimit` and `inFlightReq`.
const SOURCE_CRITERION: S = Obj(&[
    ("ipStrategy", OPT, Obj(&[("depth", OPT, Int)])),
    ("requestHeaderName", OPT, Str),
    ("requestHost", OPT, Bool),
]);

/// `traefik.io/v1alpha1` Middleware (Traefik v3.0 `MiddlewareSpec`): the kinds the render
/// writes, one per object.
const MIDDLEWARE: S = Obj(&[
    ("apiVersion", REQ, Enum(&["traefik.io/v1alpha1"])),
    ("kind", REQ, Enum(&["Middleware"])),
    ("metadata", REQ, METADATA),
    (
        "spec",
        REQ,
        Obj(&[
            ("stripPrefix", OPT, Obj(&[("prefixes", OPT, Arr(&Str))])),
            ("addPrefix", OPT, Obj(&[("prefix", OPT, AbsPath)])),
            (
                "headers",
                OPT,
                Obj(&[
                    ("customRequestHeaders", OPT, StrMap),
                    ("customResponseHeaders", OPT, StrMap),
                    ("accessControlAllowOriginList", OPT, Arr(&Str)),
                    ("accessControlAllowMethods", OPT, Arr(&Str)),
                    ("accessControlAllowHeaders", OPT, Arr(&Str)),
                    ("accessControlExposeHeaders", OPT, Arr(&Str)),
                    ("accessControlAllowCredentials", OPT, Bool),
                    ("accessControlMaxAge", OPT, Int),
                    ("addVaryHeader", OPT, Bool),
                ]),
            ),
            (
                "rateLimit",
                OPT,
                Obj(&[
                    ("average", OPT, Int),
                    ("period", OPT, IntOrStr),
                    ("burst", OPT, Int),
                    ("sourceCriterion", OPT, SOURCE_CRITERION),
                ]),
            ),
            (
                "inFlightReq",
                OPT,
                Obj(&[
                    ("amount", OPT, Int),
                    ("sourceCriterion", OPT, SOURCE_CRITERION),
                ]),
            ),
            (
                "basicAuth",
                OPT,
                Obj(&[
                    ("secret", OPT, Str),
                    ("realm", OPT, Str),
                    ("removeHeader", OPT, Bool),
                    ("headerField", OPT, Str),
                ]),
            ),
            (
                "ipAllowList",
                OPT,
                Obj(&[
                    ("sourceRange", OPT, Arr(&Str)),
                    ("ipStrategy", OPT, Obj(&[("depth", OPT, Int)])),
                ]),
            ),
            (
                "redirectScheme",
                OPT,
                Obj(&[
                    ("scheme", OPT, Str),
                    // A string in the CRD, not an integer.
                    ("port", OPT, Str),
                    ("permanent", OPT, Bool),
                ]),
            ),
            (
                "redirectRegex",
                OPT,
                Obj(&[
                    ("regex", OPT, Str),
                    ("replacement", OPT, Str),
                    ("permanent", OPT, Bool),
                ]),
            ),
            (
                "replacePathRegex",
                OPT,
                Obj(&[("regex", OPT, Str), ("replacement", OPT, Str)]),
            ),
            (
                "compress",
                OPT,
                Obj(&[
                    // Traefik v3.1.
                    ("encodings", OPT, Arr(&Enum(&["zstd", "br", "gzip"]))),
                    ("minResponseBodyBytes", OPT, Int),
                    ("excludedContentTypes", OPT, Arr(&Str)),
                ]),
            ),
            ("buffering", OPT, Obj(&[("maxRequestBodyBytes", OPT, Int)])),
        ]),
    ),
]);

/// `monitoring.coreos.com/v1` ServiceMonitor (`ServiceMonitorSpec`, `Endpoint`).
const SERVICE_MONITOR: S = Obj(&[
    ("apiVersion", REQ, Enum(&["monitoring.coreos.com/v1"])),
    ("kind", REQ, Enum(&["ServiceMonitor"])),
    ("metadata", REQ, METADATA),
    (
        "spec",
        REQ,
        Obj(&[
            ("selector", REQ, Obj(&[("matchLabels", OPT, StrMap)])),
            (
                "endpoints",
                REQ,
                Arr(&Obj(&[
                    ("port", OPT, Str),
                    ("path", OPT, Str),
                    ("interval", OPT, Duration),
                ])),
            ),
        ]),
    ),
]);

/// `^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`
fn prometheus_duration(s: &str) -> bool {
    if s == "0" {
        return true;
    }
    let mut rest = s;
    let mut any = false;
    for unit in ["y", "w", "d", "h", "m", "s", "ms"] {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(unit) {
            // `m` must not eat the `m` of `ms`.
            if unit == "m" && rest[digits..].starts_with("ms") {
                continue;
            }
            rest = &rest[digits + unit.len()..];
            any = true;
        }
    }
    any && rest.is_empty()
}

fn check(v: &Value, schema: S, path: &str, errors: &mut Vec<String>) {
    let mut fail = |what: String| errors.push(format!("{path}: {what}"));
    match schema {
        Str => {
            if !v.is_string() {
                fail(format!("expected a string, got {v:?}"));
            }
        }
        Enum(values) => match v.as_str() {
            Some(s) if values.contains(&s) => {}
            _ => fail(format!("expected one of {values:?}, got {v:?}")),
        },
        Int => {
            if !(v.is_i64() || v.is_u64()) {
                fail(format!("expected an integer, got {v:?}"));
            }
        }
        Bool => {
            if !v.is_bool() {
                fail(format!("expected a boolean, got {v:?}"));
            }
        }
        IntOrStr => {
            if !(v.is_i64() || v.is_u64() || v.is_string()) {
                fail(format!("expected an integer or a string, got {v:?}"));
            }
        }
        Duration => match v.as_str() {
            Some(s) if prometheus_duration(s) => {}
            _ => fail(format!("expected a duration like 15s, got {v:?}")),
        },
        AbsPath => match v.as_str() {
            Some(s) if s.starts_with('/') => {}
            _ => fail(format!("expected a path starting with /, got {v:?}")),
        },
        Arr(item) => match v.as_sequence() {
            Some(items) => {
                for (i, x) in items.iter().enumerate() {
                    check(x, *item, &format!("{path}[{i}]"), errors);
                }
            }
            None => fail(format!("expected a list, got {v:?}")),
        },
        StrMap => match v.as_mapping() {
            Some(m) => {
                for (k, x) in m {
                    if !k.is_string() || !x.is_string() {
                        fail(format!("expected string keys and values, got {k:?}: {x:?}"));
                    }
                }
            }
            None => fail(format!("expected a mapping, got {v:?}")),
        },
        Obj(fields) => {
            let Some(m) = v.as_mapping() else {
                return fail(format!("expected a mapping, got {v:?}"));
            };
            for (k, _) in m {
                let k = k.as_str().unwrap_or_default();
                if !fields.iter().any(|(name, _, _)| *name == k) {
                    errors.push(format!("{path}: unknown field `{k}`"));
                }
            }
            for (name, required, field) in fields {
                match m.get(*name) {
                    Some(x) => check(x, *field, &format!("{path}.{name}"), errors),
                    None if *required => {
                        errors.push(format!("{path}: missing required field `{name}`"));
                    }
                    None => {}
                }
            }
        }
    }
}

/// A DNS-1123 subdomain: what `metadata.name` of these kinds must be.
fn dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Every rendered golden stream (not the stack files), by name.
fn goldens() -> Vec<(String, Vec<Value>)> {
    let mut out: Vec<(String, Vec<Value>)> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && !n.ends_with(".shoal.yaml"))
        .map(|n| {
            let text = std::fs::read_to_string(golden_dir().join(&n)).unwrap();
            let docs = serde_norway::Deserializer::from_str(&text)
                .map(|d| serde::Deserialize::deserialize(d).unwrap())
                .collect();
            (n, docs)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn schema_of(kind: &str) -> Option<S> {
    match kind {
        "IngressRoute" => Some(INGRESS_ROUTE),
        "Middleware" => Some(MIDDLEWARE),
        "ServiceMonitor" => Some(SERVICE_MONITOR),
        _ => None,
    }
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

#[test]
fn custom_resources_match_their_crds() {
    let mut errors = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (file, docs) in goldens() {
        for d in &docs {
            let kind = d["kind"].as_str().unwrap_or_default();
            let api = d["apiVersion"].as_str().unwrap_or_default();
            let Some(schema) = schema_of(kind) else {
                // Kubernetes' own kinds: scripts/test.sh validates them. Nothing else may
                // appear, or it would be validated by neither.
                assert!(
                    !api.contains('.') || api.starts_with("rbac.authorization.k8s.io/"),
                    "{file}: {kind} {api} is neither a built-in kind nor checked here"
                );
                continue;
            };
            seen.insert(kind.to_owned());
            let name = d["metadata"]["name"].as_str().unwrap_or_default();
            let at = format!("{file}: {kind} {name}");
            check(d, schema, &at, &mut errors);
            if !dns_subdomain(name) {
                errors.push(format!("{at}: metadata.name is not a DNS subdomain"));
            }
            let spec = &d["spec"];
            // basicAuth's Secret is in the render, with its users under one key (Traefik
            // reads the only key of a Secret that is not of type basic-auth).
            if let Some(secret) = spec["basicAuth"]["secret"].as_str() {
                let keys = find(&docs, "Secret", secret)
                    .and_then(|s| s["stringData"].as_mapping())
                    .map(|m| m.len());
                if keys != Some(1) {
                    errors.push(format!(
                        "{at}: no Secret {secret} with one key of users in the render"
                    ));
                }
            }
            match kind {
                // Traefik takes exactly one middleware kind per Middleware object.
                "Middleware" if spec.as_mapping().map_or(0, |m| m.len()) != 1 => {
                    errors.push(format!("{at}: exactly one middleware kind per object"));
                }
                // References resolve within the render: Middlewares, and Services with
                // that port.
                "IngressRoute" => {
                    for route in spec["routes"].as_sequence().into_iter().flatten() {
                        for m in route["middlewares"].as_sequence().into_iter().flatten() {
                            let n = m["name"].as_str().unwrap_or_default();
                            if find(&docs, "Middleware", n).is_none() {
                                errors.push(format!("{at}: no Middleware {n} in the render"));
                            }
                        }
                        for s in route["services"].as_sequence().into_iter().flatten() {
                            let n = s["name"].as_str().unwrap_or_default();
                            // Traefik's own service that answers nothing: the route's
                            // middleware (a redirect) answers.
                            if s["kind"] == "TraefikService" {
                                if n != "noop@internal" {
                                    errors.push(format!("{at}: unknown TraefikService {n}"));
                                }
                                continue;
                            }
                            let ok = find(&docs, "Service", n).is_some_and(|svc| {
                                svc["spec"]["ports"]
                                    .as_sequence()
                                    .into_iter()
                                    .flatten()
                                    .any(|p| p["port"] == s["port"])
                            });
                            if !ok {
                                errors.push(format!(
                                    "{at}: no Service {n} with port {:?} in the render",
                                    s["port"]
                                ));
                            }
                        }
                    }
                }
                // The selector finds a Service with the endpoint's port name.
                "ServiceMonitor" => {
                    let selector = spec["selector"]["matchLabels"].as_mapping().unwrap();
                    let port = &spec["endpoints"][0]["port"];
                    let ok = docs.iter().filter(|x| x["kind"] == "Service").any(|svc| {
                        selector
                            .iter()
                            .all(|(k, v)| svc["metadata"]["labels"].get(k) == Some(v))
                            && svc["spec"]["ports"]
                                .as_sequence()
                                .into_iter()
                                .flatten()
                                .any(|p| &p["name"] == port)
                    });
                    if !ok {
                        errors.push(format!(
                            "{at}: selects no Service with a port named {port:?}"
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["IngressRoute", "Middleware", "ServiceMonitor"],
        "the golden files have every custom kind the render writes"
    );
}

/// The checker itself fails where it must.
#[test]
fn the_check_can_fail() {
    let bad: Value = serde_norway::from_str(
        "apiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata: { name: x, namespace: d }\nspec:\n  entrypoints: [web]\n  routes:\n  - match: Path(`/`)\n    priority: high\n    services: [{ port: 80 }]\n",
    )
    .unwrap();
    let mut errors = Vec::new();
    check(&bad, INGRESS_ROUTE, "x", &mut errors);
    let text = errors.join("\n");
    for want in [
        "unknown field `entrypoints`",
        "missing required field `kind`",
        "x.spec.routes[0].priority: expected an integer",
        "missing required field `name`",
    ] {
        assert!(text.contains(want), "{want} in:\n{text}");
    }
    let mut errors = Vec::new();
    let bad: Value = serde_norway::from_str(
        "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: { name: x, namespace: d }\nspec:\n  selector: {}\n  endpoints: [{ port: metrics, interval: 15 seconds }]\n",
    )
    .unwrap();
    check(&bad, SERVICE_MONITOR, "x", &mut errors);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(prometheus_duration("15s") && prometheus_duration("1m30s"));
    assert!(prometheus_duration("500ms") && prometheus_duration("0"));
    assert!(!prometheus_duration("15") && !prometheus_duration("s") && !prometheus_duration(""));
}
