//! `--ingress traefik`: the routes for an installed Traefik v3 instead of shoal's gateway.
//!
//! shoal's rule language is Traefik v3's, so each route becomes one `traefik.io/v1alpha1`
//! IngressRoute named after it, its rule unchanged (`kind: Rule`, `match`), its priority
//! written out (shoal's default is Traefik's: the rule's length), its entrypoints as
//! `entryPoints` (they must be names of Traefik's entrypoints; a stack without any has `web`,
//! which Traefik's Helm chart also has), and the Kubernetes Service of its target service by
//! name and port. Its middlewares become Middleware objects, in order: `strip_prefix` →
//! `stripPrefix.prefixes` (Traefik also sets `X-Forwarded-Prefix`), `add_prefix` →
//! `addPrefix.prefix`, `headers` → `headers.customRequestHeaders` /
//! `customResponseHeaders`, where an empty value removes a header.
//!
//! Traefik v3.0 is the floor: `traefik.io/v1alpha1` with the v3 rule syntax. Only fields its
//! v3.0 CRDs have are written (`tests/crd.rs` checks them against that schema).
//!
//! What shoal's gateway does that this cannot say — its timeouts, limits, retries, hedging,
//! passive ejection, circuit breaker, the least-requests and hash balancers, its autoscaler —
//! is listed in `--explain` as not carried. A service that scales on concurrency, rps or
//! latency has no scaler at all here (`crate::scaling`); the render warns on standard error.
//! Routes to `servers:` services are left out: an IngressRoute reaches Kubernetes Services only.
use serde_yaml::Value;
use shoal_config::{Balance, HeaderRules, Middleware, Protocol, Source, Stack};

use crate::explain::{Explain, Section};
use crate::workload::labels;
use crate::yaml::{Obj, list, string_map};
use crate::{Kind, Manifest, Options};

/// A Kubernetes object name (a DNS-1123 label) made from a route name, which the stack file
/// does not restrict: lowercase, anything else than `a-z0-9-` as `-`, at most 63 characters.
pub(crate) fn object_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.truncate(63);
    let out = out.trim_matches('-').to_owned();
    if out.is_empty() {
        "route".to_owned()
    } else {
        out
    }
}

/// `base`, or `base-2`, `base-3`… whichever is not taken yet; records the name taken.
fn unique(base: String, taken: &mut Vec<String>) -> String {
    let name = if taken.contains(&base) {
        (2..)
            .map(|i| format!("{}-{i}", base.chars().take(58).collect::<String>()))
            .find(|n| !taken.contains(n))
            .unwrap_or_default()
    } else {
        base
    };
    taken.push(name.clone());
    name
}

fn metadata(name: &str, opts: &Options) -> Value {
    Obj::new()
        .with("name", name)
        .with("namespace", opts.namespace.as_str())
        .with("labels", labels(name, "route"))
        .into()
}

/// `customRequestHeaders` / `customResponseHeaders`: set values, then removals as `""`.
fn header_map(set: &[(http::HeaderName, http::HeaderValue)], remove: &[http::HeaderName]) -> Value {
    let mut pairs: Vec<(String, String)> = set
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    pairs.extend(
        remove
            .iter()
            .map(|k| (k.as_str().to_owned(), String::new())),
    );
    string_map(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// One middleware as a Middleware's `spec`, its kind for the object's name, and a
/// description; None for a middleware that does nothing (`add_prefix: /`).
fn middleware_spec(m: &Middleware) -> Option<(Value, &'static str, String)> {
    Some(match m {
        Middleware::StripPrefix(prefixes) => (
            Obj::new()
                .with(
                    "stripPrefix",
                    Obj::new().with("prefixes", list(prefixes.iter().map(String::as_str))),
                )
                .into(),
            "strip-prefix",
            format!("stripPrefix {}", prefixes.join(", ")),
        ),
        Middleware::AddPrefix(p) if p.is_empty() => return None,
        // TODO(issue 17): the edge middlewares as Traefik Middlewares.
        Middleware::RateLimit(_)
        | Middleware::InFlightReq(_)
        | Middleware::BasicAuth(_)
        | Middleware::IpAllowList(_)
        | Middleware::RedirectScheme(_)
        | Middleware::RedirectRegex(_)
        | Middleware::ReplacePathRegex(_)
        | Middleware::Compress(_)
        | Middleware::Buffering(_)
        | Middleware::Cors(_) => return None,
        Middleware::AddPrefix(p) => (
            Obj::new()
                .with("addPrefix", Obj::new().with("prefix", p.as_str()))
                .into(),
            "add-prefix",
            format!("addPrefix {p}"),
        ),
        Middleware::Headers(HeaderRules {
            request_set,
            request_remove,
            response_set,
            response_remove,
        }) => (
            Obj::new()
                .with(
                    "headers",
                    Obj::new()
                        .with_nonempty(
                            "customRequestHeaders",
                            header_map(request_set, request_remove),
                        )
                        .with_nonempty(
                            "customResponseHeaders",
                            header_map(response_set, response_remove),
                        ),
                )
                .into(),
            "headers",
            "headers (customRequestHeaders / customResponseHeaders; \"\" removes)".to_owned(),
        ),
    })
}

/// The Middlewares and IngressRoutes of every route, and what they mean.
pub(crate) fn render(
    stack: &Stack,
    opts: &Options,
    explain: &mut Explain,
) -> (Vec<Manifest>, Vec<Section>) {
    let mut manifests = Vec::new();
    let mut overview = Section::new("ingress: Traefik");
    overview.row(
        "routes, middlewares",
        "an IngressRoute per route, a Middleware per middleware (traefik.io/v1alpha1); no shoal gateway, ConfigMap, ServiceAccount or Role",
    );
    overview.note(
        "Traefik v3 must be installed with its kubernetescrd provider watching this namespace, and have entrypoints of these names (its Helm chart has `web` and `websecure`)",
    );
    let mut sections = vec![overview];
    let mut route_names = Vec::new();
    let mut middleware_names = Vec::new();
    let all_entrypoints: Vec<&str> = stack
        .gateway
        .entrypoints
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    for r in &stack.routes {
        let mut section = Section::new(format!("route `{}` (Traefik)", r.name));
        let Some(service) = stack.service(&r.service) else {
            continue;
        };
        let port = match (&service.source, &service.container) {
            (Source::Command(_), Some(c)) => c.port,
            _ => {
                let text = format!(
                    "route `{}` is left out: its service `{}` is `servers:` (static upstreams), and an IngressRoute reaches Kubernetes Services only. Give Traefik a Service for it (type ExternalName for one DNS name, or a Service without selector and your own EndpointSlices) and add the route by hand.",
                    r.name, r.service
                );
                section.row(r.rule.source(), "left out (the service is `servers:`)");
                explain.warn(text);
                sections.push(section);
                continue;
            }
        };
        let name = unique(object_name(&r.name), &mut route_names);
        if name != r.name {
            section.note(format!(
                "the IngressRoute is `{name}`: route names become Kubernetes names (lowercase letters, digits, `-`)"
            ));
        }

        // Middlewares, one object each, in order.
        let mut refs = Vec::new();
        for m in &r.middlewares {
            let Some((spec, kind, described)) = middleware_spec(m) else {
                section.row("add_prefix /", "nothing (it adds nothing)");
                continue;
            };
            if let Middleware::Headers(h) = m {
                for (k, v) in h.request_set.iter().chain(&h.response_set) {
                    if v.is_empty() {
                        explain.warn(format!(
                            "route `{}`: header {k} is set to an empty value, which Traefik's headers middleware reads as \"remove it\"",
                            r.name
                        ));
                    }
                }
            }
            let mw = unique(format!("{name}-{kind}"), &mut middleware_names);
            manifests.push(Manifest::new(
                Kind::Middleware,
                &mw,
                vec![format!("Route `{}`: {described}.", r.name)],
                metadata(&mw, opts),
                spec,
            ));
            section.row(middleware_field(m), format!("Middleware {mw}: {described}"));
            refs.push(Obj::new().with("name", mw.as_str()));
        }

        let eps: Vec<&str> = match &r.entrypoints {
            Some(e) => e.iter().map(String::as_str).collect(),
            None => all_entrypoints.clone(),
        };
        let mut backend = Obj::new()
            .with("name", service.name.as_str())
            .with("port", port);
        let mut backend_text = format!("Service {} port {port}", service.name);
        if service.protocol == Protocol::H2c {
            backend = backend.with("scheme", "h2c");
            backend_text.push_str(", scheme h2c");
        }
        if let Balance::Sticky { cookie } = &service.balance {
            backend = backend.with(
                "sticky",
                Obj::new().with("cookie", Obj::new().with("name", cookie.as_str())),
            );
            backend_text.push_str(&format!(", sticky cookie {cookie}"));
        }
        if r.priority == 0 {
            explain.warn(format!(
                "route `{}`: priority 0 means \"the rule's length\" to Traefik, so it does not rank last there as it does in shoal; give it a negative priority",
                r.name
            ));
        }
        let route = Obj::new()
            .with("kind", "Rule")
            .with("match", r.rule.source())
            .with("priority", r.priority)
            .with_nonempty("middlewares", list(refs))
            .with("services", list([backend]));
        manifests.push(Manifest::new(
            Kind::IngressRoute,
            &name,
            vec![format!(
                "Route `{}` of the stack file, for Traefik v3 (kubernetescrd provider): entrypoints {}, priority {} as in the stack file.",
                r.name,
                eps.join(", "),
                r.priority
            )],
            metadata(&name, opts),
            Obj::new()
                .with("entryPoints", list(eps.iter().copied()))
                .with("routes", list([route]))
                .into(),
        ));
        section.row(
            format!("match: {}", r.rule.source()),
            format!("IngressRoute {name}: routes[0].match (kind Rule), unchanged"),
        );
        section.row(
            format!("priority: {}", r.priority),
            format!("IngressRoute {name}: routes[0].priority {}", r.priority),
        );
        section.row(
            "entrypoints",
            format!(
                "IngressRoute {name}: entryPoints {} (names of Traefik's entrypoints)",
                eps.join(", ")
            ),
        );
        section.row(
            format!("service: {}", r.service),
            format!("IngressRoute {name}: routes[0].services: {backend_text}"),
        );
        if r.retry.is_some() {
            section.row("retry", "not carried (see below)");
        }
        sections.push(section);
    }
    for s in &stack.services {
        match &s.balance {
            Balance::LeastRequests | Balance::Hash(_) if matches!(s.source, Source::Command(_)) => {
                explain.not_carried(
                    "balance least_requests and hash: Traefik balances round robin (its v3.0 CRDs have no other strategy; newer Traefik has p2c and hrw, which a Kustomize patch can set); sticky keeps its cookie",
                );
            }
            _ => {}
        }
    }
    explain.not_carried(
        "gateway settings (entrypoint addresses, timeouts, limits, workers, shutdown_grace, replica_header, max_idle_per_upstream): Traefik's own configuration (static config, serversTransport)",
    );
    explain.not_carried(
        "metrics, access_log, admin: Traefik's own (its metrics, access logs and dashboard); no shoal gateway, so no shoal metrics, ServiceMonitor or Grafana dashboard",
    );
    explain.not_carried(
        "retry (service and route), passive, circuit_breaker: shoal's gateway's; Traefik has retry and circuitBreaker middlewares with other semantics, add them by hand if wanted",
    );
    explain.not_carried(
        "health of replicated services: the pods' readiness probes decide which pods are in the endpoints Traefik reads",
    );
    (manifests, sections)
}

/// The stack-file field a middleware came from, for explanations.
fn middleware_field(m: &Middleware) -> &'static str {
    m.kind()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_names_become_object_names() {
        assert_eq!(object_name("api"), "api");
        assert_eq!(object_name("route-0"), "route-0");
        assert_eq!(object_name("API_v2.public"), "api-v2-public");
        assert_eq!(object_name("--"), "route");
        assert_eq!(object_name(&"x".repeat(80)).len(), 63);
        let mut taken = vec!["api".to_owned()];
        assert_eq!(unique("api".to_owned(), &mut taken), "api-2");
        assert_eq!(unique("api".to_owned(), &mut taken), "api-3");
    }

    #[test]
    fn a_middleware_that_does_nothing_gets_no_object() {
        assert!(middleware_spec(&Middleware::AddPrefix(String::new())).is_none());
        let (spec, kind, _) = middleware_spec(&Middleware::AddPrefix("/v1".into())).unwrap();
        assert_eq!(
            (spec["addPrefix"]["prefix"].as_str(), kind),
            (Some("/v1"), "add-prefix")
        );
        let (spec, _, _) = middleware_spec(&Middleware::Headers(HeaderRules::default())).unwrap();
        assert_eq!(spec["headers"].as_mapping().map(|m| m.len()), Some(0));
    }
}
