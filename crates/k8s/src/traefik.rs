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
//! `customResponseHeaders`, where an empty value removes a header; the edge middlewares to
//! Traefik's of the same name (`rate_limit` → `rateLimit`, … `cors` → `headers`'
//! `accessControl*`), with `basic_auth`'s users (hashes) in a Secret its `basicAuth` names,
//! and a warning where Traefik cannot say the same (a route-wide key, argon2 hashes).
//!
//! TLS: a route gets one IngressRoute for its plain entrypoints and one per TLS entrypoint,
//! whose `tls.secretName` is the Secret the user creates from the entrypoint's first
//! certificate (`crate::tls`). An entrypoint with `redirect_to` gets one catch-all
//! IngressRoute whose `redirectScheme` Middleware answers every request (service
//! `noop@internal`), and no other route there.
//!
//! Traefik v3.0 is the floor: `traefik.io/v1alpha1` with the v3 rule syntax. Only fields its
//! v3.0 CRDs have are written (`tests/crd.rs` checks them against that schema).
//!
//! What shoal's gateway does that this cannot say — its timeouts, limits, retries, hedging,
//! passive ejection, circuit breaker, the least-requests and hash balancers, its autoscaler —
//! is listed in `--explain` as not carried. A service that scales on concurrency, rps or
//! latency has no scaler at all here (`crate::scaling`); the render warns on standard error.
//! Routes to `servers:` services are left out: an IngressRoute reaches Kubernetes Services only.
use serde_norway::Value;
use shoal_config::{
    Balance, ClientKey, Compress, Encoding, HeaderRules, Middleware, Protocol, Source, Stack,
    TlsVersion,
};

use crate::explain::{Explain, Section};
use crate::tls;
use crate::workload::labels;
use crate::yaml::{Obj, duration, list, string_map};
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
pub(crate) fn unique(base: String, taken: &mut Vec<String>) -> String {
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

/// A middleware as a Traefik Middleware.
struct Spec {
    /// The Middleware's `spec`.
    spec: Value,
    /// What it does, for comments and `--explain`.
    described: String,
    /// Where Traefik will do something else than shoal would, enough to matter.
    warnings: Vec<String>,
    /// Smaller differences, for "not carried over".
    not_carried: Vec<String>,
    /// `stringData` of a Secret of the Middleware's name that it refers to (basicAuth's
    /// users).
    secret: Option<Value>,
}

impl Spec {
    fn new(spec: Obj, described: impl Into<String>) -> Spec {
        Spec {
            spec: spec.into(),
            described: described.into(),
            warnings: Vec::new(),
            not_carried: Vec::new(),
            secret: None,
        }
    }
}

/// The part of a Middleware's name after its route's: `api-rate-limit`.
fn object_kind(m: &Middleware) -> String {
    m.kind().replace('_', "-")
}

/// Traefik's `sourceCriterion` for a limit's key. Always written: Traefik's default differs
/// between middlewares (`inFlightReq` groups by Host when none is given).
fn source_criterion(key: &ClientKey, route: &str, kind: &str, spec: &mut Spec) -> Value {
    let (criterion, text) = match key {
        ClientKey::Ip { depth } => (
            Obj::new().with("ipStrategy", Obj::new().with("depth", *depth as u64)),
            if *depth == 0 {
                "per client IP (ipStrategy, the peer address)".to_owned()
            } else {
                format!("per client IP (ipStrategy.depth {depth} of X-Forwarded-For)")
            },
        ),
        ClientKey::Header(h) => (
            Obj::new().with("requestHeaderName", h.as_str()),
            format!("per value of {h} (requestHeaderName)"),
        ),
        ClientKey::Route => {
            spec.warnings.push(format!(
                "route `{route}`: {kind} with `key: route` (one limit for the whole route) has no Traefik equivalent; it is written as sourceCriterion.requestHost (one limit per Host), which is the same only when the route's rule matches a single Host"
            ));
            (
                Obj::new().with("requestHost", true),
                "per Host (requestHost: Traefik has no route-wide key)".to_owned(),
            )
        }
    };
    spec.described = format!("{} {text}", spec.described);
    criterion.into()
}

/// Traefik's redirects answer GET with 301/302 and other methods with 308/307; shoal keeps
/// the method always (308/307).
const REDIRECT_STATUSES: &str = "redirect_scheme, redirect_regex: Traefik answers GET with 301 (permanent) or 302 and other methods with 308 or 307; shoal always answers 308 or 307";

/// One middleware as a Middleware's spec: `secret` names the Secret it refers to (basicAuth's
/// users), `route` is the route's name as written. None for a middleware that does nothing
/// (`add_prefix: /`).
fn middleware_spec(m: &Middleware, secret: &str, route: &str) -> Option<Spec> {
    Some(match m {
        Middleware::StripPrefix(prefixes) => Spec::new(
            Obj::new().with(
                "stripPrefix",
                Obj::new().with("prefixes", list(prefixes.iter().map(String::as_str))),
            ),
            format!("stripPrefix {}", prefixes.join(", ")),
        ),
        Middleware::AddPrefix(p) if p.is_empty() => return None,
        Middleware::AddPrefix(p) => Spec::new(
            Obj::new().with("addPrefix", Obj::new().with("prefix", p.as_str())),
            format!("addPrefix {p}"),
        ),
        Middleware::Headers(HeaderRules {
            request_set,
            request_remove,
            response_set,
            response_remove,
        }) => Spec::new(
            Obj::new().with(
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
            ),
            "headers (customRequestHeaders / customResponseHeaders; \"\" removes)",
        ),
        Middleware::RateLimit(r) => {
            let mut spec = Spec::new(
                Obj::new(),
                format!(
                    "rateLimit average {} per {}, burst {},",
                    r.average,
                    duration(r.period),
                    r.burst
                ),
            );
            let criterion = source_criterion(&r.key, route, "rate_limit", &mut spec);
            spec.spec = Obj::new()
                .with(
                    "rateLimit",
                    Obj::new()
                        .with("average", r.average)
                        .with("period", duration(r.period))
                        .with("burst", r.burst)
                        .with("sourceCriterion", criterion),
                )
                .into();
            spec.not_carried.push(
                "rate_limit.max_keys, and the RateLimit-* headers of its 429: Traefik keeps its own bounded table of keys, and its 429 has no RateLimit-* headers".to_owned(),
            );
            spec
        }
        Middleware::InFlightReq(r) => {
            let mut spec = Spec::new(Obj::new(), format!("inFlightReq amount {}", r.amount));
            let criterion = source_criterion(&r.key, route, "in_flight_req", &mut spec);
            spec.spec = Obj::new()
                .with(
                    "inFlightReq",
                    Obj::new()
                        .with("amount", r.amount)
                        .with("sourceCriterion", criterion),
                )
                .into();
            spec
        }
        Middleware::BasicAuth(a) => {
            let mut spec = Spec::new(
                Obj::new().with(
                    "basicAuth",
                    Obj::new()
                        .with("secret", secret)
                        .with("realm", a.realm.as_str())
                        .with("removeHeader", a.remove_header)
                        .with_opt("headerField", a.header_field.as_ref().map(|h| h.as_str())),
                ),
                format!(
                    "basicAuth, users from the Secret {secret} ({} htpasswd line{}: password hashes, not passwords)",
                    a.users.len(),
                    if a.users.len() == 1 { "" } else { "s" }
                ),
            );
            let lines: String = a
                .users
                .iter()
                .map(|(user, hash)| format!("{user}:{hash}\n"))
                .collect();
            spec.secret = Some(Obj::new().with("users", lines).into());
            // Traefik checks htpasswd hashes: bcrypt, MD5 (apr1), SHA1; not argon2.
            let argon: Vec<&str> = a
                .users
                .iter()
                .filter(|(_, hash)| hash.starts_with("$argon2"))
                .map(|(user, _)| user.as_str())
                .collect();
            if !argon.is_empty() {
                spec.warnings.push(format!(
                    "route `{route}`: basic_auth users {} have argon2 hashes, which Traefik's basicAuth cannot check (it takes bcrypt); they will not be able to log in through Traefik until their hashes are bcrypt (`htpasswd -nB USER`)",
                    argon.join(", ")
                ));
            }
            spec
        }
        Middleware::IpAllowList(l) => Spec::new(
            Obj::new().with(
                "ipAllowList",
                Obj::new()
                    .with(
                        "sourceRange",
                        list(
                            l.source_range
                                .iter()
                                .map(|r| format!("{}/{}", r.addr, r.prefix)),
                        ),
                    )
                    .with("ipStrategy", Obj::new().with("depth", l.depth as u64)),
            ),
            format!(
                "ipAllowList {} ({})",
                l.source_range
                    .iter()
                    .map(|r| format!("{}/{}", r.addr, r.prefix))
                    .collect::<Vec<_>>()
                    .join(", "),
                if l.depth == 0 {
                    "the peer address".to_owned()
                } else {
                    format!("ipStrategy.depth {} of X-Forwarded-For", l.depth)
                }
            ),
        ),
        Middleware::RedirectScheme(r) => {
            let mut spec = Spec::new(
                Obj::new().with(
                    "redirectScheme",
                    Obj::new()
                        .with("scheme", r.scheme.as_str())
                        // A string in Traefik's CRD.
                        .with_opt("port", r.port.map(|p| p.to_string()))
                        .with("permanent", r.permanent),
                ),
                format!(
                    "redirectScheme to {}{}, {}",
                    r.scheme,
                    r.port.map(|p| format!(" port {p}")).unwrap_or_default(),
                    if r.permanent {
                        "permanent"
                    } else {
                        "temporary"
                    }
                ),
            );
            spec.not_carried.push(REDIRECT_STATUSES.to_owned());
            spec
        }
        Middleware::RedirectRegex(r) => {
            let mut spec = Spec::new(
                Obj::new().with(
                    "redirectRegex",
                    Obj::new()
                        .with("regex", r.regex.source.as_str())
                        .with("replacement", r.replacement.as_str())
                        .with("permanent", r.permanent),
                ),
                format!(
                    "redirectRegex {} → {}, {}",
                    r.regex.source,
                    r.replacement,
                    if r.permanent {
                        "permanent"
                    } else {
                        "temporary"
                    }
                ),
            );
            spec.not_carried.push(REDIRECT_STATUSES.to_owned());
            spec
        }
        Middleware::ReplacePathRegex(r) => Spec::new(
            Obj::new().with(
                "replacePathRegex",
                Obj::new()
                    .with("regex", r.regex.source.as_str())
                    .with("replacement", r.replacement.as_str()),
            ),
            format!("replacePathRegex {} → {}", r.regex.source, r.replacement),
        ),
        Middleware::Compress(c) => compress(c, route),
        Middleware::Buffering(b) => {
            let mut spec = Spec::new(
                Obj::new().with(
                    "buffering",
                    Obj::new().with("maxRequestBodyBytes", b.max_request_body_bytes),
                ),
                format!("buffering maxRequestBodyBytes {}", b.max_request_body_bytes),
            );
            spec.not_carried.push(
                "buffering: Traefik reads the whole request body before forwarding it (in memory up to memRequestBodyBytes, 1 MiB, then in a temporary file); shoal streams it and stops at the limit".to_owned(),
            );
            spec
        }
        Middleware::Cors(c) => Spec::new(
            Obj::new().with(
                "headers",
                Obj::new()
                    .with(
                        "accessControlAllowOriginList",
                        list(c.allow_origins.iter().map(String::as_str)),
                    )
                    .with(
                        "accessControlAllowMethods",
                        list(c.allow_methods.iter().map(|m| m.as_str())),
                    )
                    .with_nonempty(
                        "accessControlAllowHeaders",
                        list(c.allow_headers.iter().map(String::as_str)),
                    )
                    .with_nonempty(
                        "accessControlExposeHeaders",
                        list(c.expose_headers.iter().map(String::as_str)),
                    )
                    .with("accessControlAllowCredentials", c.allow_credentials)
                    .with_opt("accessControlMaxAge", c.max_age.map(|d| d.as_secs()))
                    // The answer depends on Origin: caches must keep one per origin.
                    .with("addVaryHeader", true),
            ),
            format!(
                "headers accessControl* (CORS; Traefik answers preflights itself) for {}",
                c.allow_origins.join(", ")
            ),
        ),
    })
}

/// `compress`: `encodings` only when it leaves one out (the field is Traefik v3.1's; v3.0
/// offers all three), `excludedContentTypes` always.
fn compress(c: &Compress, route: &str) -> Spec {
    let all = [Encoding::Zstd, Encoding::Brotli, Encoding::Gzip]
        .iter()
        .all(|e| c.encodings.contains(e));
    let tokens: Vec<&str> = c.encodings.iter().map(|e| e.token()).collect();
    let mut spec = Spec::new(
        Obj::new().with(
            "compress",
            Obj::new()
                .with_opt("encodings", (!all).then(|| list(tokens.iter().copied())))
                .with("minResponseBodyBytes", c.min_response_body_bytes)
                .with(
                    "excludedContentTypes",
                    list(c.excluded_content_types.iter().map(String::as_str)),
                ),
        ),
        format!(
            "compress {} from {} bytes",
            tokens.join(", "),
            c.min_response_body_bytes
        ),
    );
    if !all {
        spec.warnings.push(format!(
            "route `{route}`: compress offers only {}: Traefik's `encodings` field is Traefik v3.1's (v3.0 refuses the Middleware)",
            tokens.join(", ")
        ));
    } else if tokens != ["zstd", "br", "gzip"] {
        spec.not_carried.push(
            "compress.encodings order: Traefik v3.0 has no `encodings` field and prefers zstd, then br, then gzip when the client's q-values tie".to_owned(),
        );
    }
    if c.excluded_content_types.iter().any(|t| t.ends_with("/*")) {
        spec.not_carried.push(
            "compress.excluded_content_types entries `type/*` (video/*, audio/*): Traefik compares content types whole, so such an entry excludes nothing there; list the subtypes to skip".to_owned(),
        );
    }
    spec
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
        "an IngressRoute per route (and per TLS entrypoint of it), a Middleware per middleware (traefik.io/v1alpha1); no shoal gateway, ConfigMap, ServiceAccount or Role",
    );
    overview.note(
        "Traefik v3 must be installed with its kubernetescrd provider watching this namespace, and have entrypoints of these names (its Helm chart has `web` and `websecure`)",
    );
    let certs = tls::cert_secrets(stack);
    let mut route_names = Vec::new();
    let mut middleware_names = Vec::new();
    // Secrets share one name space: the users' TLS Secrets, and basicAuth's.
    let mut secret_names: Vec<String> = certs.iter().map(|c| c.name.clone()).collect();
    let redirecting: Vec<&str> = stack
        .gateway
        .entrypoints
        .iter()
        .filter(|e| e.redirect_to.is_some())
        .map(|e| e.name.as_str())
        .collect();
    entrypoint_rows(stack, opts, &certs, &mut overview, explain);
    let mut sections = vec![overview];
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
        let eps: Vec<&str> = match &r.entrypoints {
            Some(e) => e.iter().map(String::as_str).collect(),
            None => all_entrypoints.clone(),
        };
        // One IngressRoute for the plain entrypoints, one per TLS entrypoint (each names
        // its own certificate); none on an entrypoint that redirects every request.
        let plain: Vec<&str> = eps
            .iter()
            .copied()
            .filter(|e| !redirecting.contains(e) && !certs.iter().any(|c| c.entrypoint == *e))
            .collect();
        let mut groups: Vec<(Vec<&str>, Option<&tls::CertSecret>)> = Vec::new();
        if !plain.is_empty() {
            groups.push((plain, None));
        }
        for e in &eps {
            if let Some(c) = certs.iter().find(|c| c.entrypoint == *e && c.index == 0) {
                groups.push((vec![*e], Some(c)));
            }
        }
        let skipped: Vec<&str> = eps
            .iter()
            .copied()
            .filter(|e| redirecting.contains(e))
            .collect();
        if !skipped.is_empty() {
            section.row(
                format!("entrypoints {}", skipped.join(", ")),
                "no IngressRoute of this route: every request there is redirected to HTTPS (below)",
            );
        }
        if groups.is_empty() {
            sections.push(section);
            continue;
        }
        let base = object_name(&r.name);

        // Middlewares, one object each, in order, shared by the route's IngressRoutes.
        let mut refs = Vec::new();
        for m in &r.middlewares {
            if matches!(m, Middleware::AddPrefix(p) if p.is_empty()) {
                section.row("add_prefix /", "nothing (it adds nothing)");
                continue;
            }
            let mw = unique(format!("{base}-{}", object_kind(m)), &mut middleware_names);
            // basicAuth's Secret is named after its Middleware where that name is free.
            let secret = if matches!(m, Middleware::BasicAuth(_)) {
                unique(mw.clone(), &mut secret_names)
            } else {
                mw.clone()
            };
            let Some(spec) = middleware_spec(m, &secret, &r.name) else {
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
            if let Some(data) = &spec.secret {
                manifests.push(Manifest {
                    kind: Kind::Secret,
                    name: secret.clone(),
                    comments: vec![
                        format!(
                            "Route `{}`: the users of Middleware {mw} (basicAuth), as htpasswd lines `user:hash`.",
                            r.name
                        ),
                        "Password hashes, never passwords; Traefik reads the one key of this Secret.".to_owned(),
                    ],
                    body: Obj::new()
                        .with("apiVersion", Kind::Secret.api_version())
                        .with("kind", Kind::Secret.name())
                        .with("metadata", metadata(&secret, opts))
                        .with("type", "Opaque")
                        .with("stringData", data.clone())
                        .into(),
                });
            }
            for w in &spec.warnings {
                explain.warn(w.clone());
            }
            for n in &spec.not_carried {
                explain.not_carried(n.clone());
            }
            manifests.push(Manifest::new(
                Kind::Middleware,
                &mw,
                vec![format!("Route `{}`: {}.", r.name, spec.described)],
                metadata(&mw, opts),
                spec.spec.clone(),
            ));
            section.row(m.kind(), format!("Middleware {mw}: {}", spec.described));
            refs.push(Obj::new().with("name", mw.as_str()));
        }

        let mut backend = Obj::new()
            .with("name", service.name.as_str())
            .with("port", port);
        let mut backend_text = format!("Service {} port {port}", service.name);
        if service.protocol == Protocol::H2c {
            backend = backend.with("scheme", "h2c");
            backend_text.push_str(", scheme h2c");
        }
        if service.tls.is_some() {
            backend = backend.with("scheme", "https");
            backend_text.push_str(", scheme https");
            explain.not_carried(
                "a service's tls.ca, tls.server_name and tls.insecure_skip_verify: Traefik's ServersTransport (rootCAsSecrets, serverName, insecureSkipVerify), named in the IngressRoute's services[].serversTransport; write it by hand. Without one Traefik checks the pods' certificates against the system's roots and the pod address",
            );
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
        let mut first = String::new();
        for (i, (group, cert)) in groups.iter().enumerate() {
            let wanted = match (i, cert) {
                (0, _) => base.clone(),
                (_, Some(c)) => format!("{base}-{}", object_name(&c.entrypoint)),
                (_, None) => format!("{base}-{i}"),
            };
            let name = unique(wanted, &mut route_names);
            if i == 0 {
                if name != r.name {
                    section.note(format!(
                        "the IngressRoute is `{name}`: route names become Kubernetes names (lowercase letters, digits, `-`)"
                    ));
                }
                first = name.clone();
            }
            let mut spec = Obj::new()
                .with("entryPoints", list(group.iter().copied()))
                .with("routes", list([route.clone()]));
            let mut comment = format!(
                "Route `{}` of the stack file, for Traefik v3 (kubernetescrd provider): entrypoints {}, priority {} as in the stack file.",
                r.name,
                group.join(", "),
                r.priority
            );
            if let Some(c) = cert {
                spec = spec.with("tls", Obj::new().with("secretName", c.name.as_str()));
                comment.push_str(&format!(
                    " TLS with the certificate of the Secret {} (create it: see --explain).",
                    c.name
                ));
            }
            manifests.push(Manifest::new(
                Kind::IngressRoute,
                &name,
                vec![comment],
                metadata(&name, opts),
                spec.into(),
            ));
            section.row(
                "entrypoints",
                format!(
                    "IngressRoute {name}: entryPoints {} (names of Traefik's entrypoints){}",
                    group.join(", "),
                    cert.map(|c| format!(", tls.secretName {}", c.name))
                        .unwrap_or_default()
                ),
            );
        }
        section.row(
            format!("match: {}", r.rule.source()),
            format!("IngressRoute {first}: routes[0].match (kind Rule), unchanged"),
        );
        section.row(
            format!("priority: {}", r.priority),
            format!("IngressRoute {first}: routes[0].priority {}", r.priority),
        );
        section.row(
            format!("service: {}", r.service),
            format!("IngressRoute {first}: routes[0].services: {backend_text}"),
        );
        if r.retry.is_some() {
            section.row("retry", "not carried (see below)");
        }
        if r.timeouts.response_header.is_some() {
            section.row(
                "timeouts",
                "not carried: a serversTransport's forwardingTimeouts.responseHeaderTimeout does it, by hand",
            );
        }
        sections.push(section);
    }
    // Each redirecting entrypoint: one catch-all route whose only job is the redirect.
    for e in &stack.gateway.entrypoints {
        let Some(to) = &e.redirect_to else { continue };
        let name = unique(
            format!("{}-redirect-to-https", object_name(&e.name)),
            &mut route_names,
        );
        let mw = unique(name.clone(), &mut middleware_names);
        manifests.push(Manifest::new(
            Kind::Middleware,
            &mw,
            vec![format!(
                "Entrypoint `{}`: redirect_to {} (HTTPS on port 443).",
                e.name, to.entrypoint
            )],
            metadata(&mw, opts),
            Obj::new()
                .with(
                    "redirectScheme",
                    Obj::new().with("scheme", "https").with("permanent", true),
                )
                .into(),
        ));
        let route = Obj::new()
            .with("kind", "Rule")
            .with("match", "PathPrefix(`/`)")
            .with("priority", 1)
            .with("middlewares", list([Obj::new().with("name", mw.as_str())]))
            .with(
                "services",
                list([Obj::new()
                    .with("name", "noop@internal")
                    .with("kind", "TraefikService")]),
            );
        manifests.push(Manifest::new(
            Kind::IngressRoute,
            &name,
            vec![
                format!(
                    "Entrypoint `{}` redirects every request to HTTPS (redirect_to {}): a catch-all route whose middleware answers, so its service is Traefik's noop@internal.",
                    e.name, to.entrypoint
                ),
                "Priority 1: any other route on this entrypoint (an ACME HTTP-01 challenge, say) is tried first.".to_owned(),
            ],
            metadata(&name, opts),
            Obj::new()
                .with("entryPoints", list([e.name.as_str()]))
                .with("routes", list([route]))
                .into(),
        ));
        let mut section = Section::new(format!("entrypoint `{}` (Traefik)", e.name));
        section.row(
            format!("redirect_to: {}", to.entrypoint),
            format!(
                "IngressRoute {name} (PathPrefix(`/`), priority 1, service noop@internal) with Middleware {mw}: redirectScheme https, permanent, port 443"
            ),
        );
        section.note(format!(
            "the redirect goes to port 443, where Traefik's Helm chart publishes `websecure`, not to the stack file's port {}. Traefik's static redirection (`entryPoints.{}.http.redirections.entryPoint.to`, or `ports.{}.redirectTo` in its Helm chart) does the same for every router; with it, delete this IngressRoute",
            to.port, e.name, e.name
        ));
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

/// What `--explain` says about the TLS entrypoints, and the warnings naming the Secrets to
/// create.
fn entrypoint_rows(
    stack: &Stack,
    opts: &Options,
    certs: &[tls::CertSecret],
    section: &mut Section,
    explain: &mut Explain,
) {
    for e in &stack.gateway.entrypoints {
        let Some(t) = &e.tls else { continue };
        for c in certs.iter().filter(|c| c.entrypoint == e.name) {
            if c.index == 0 {
                section.row(
                    format!("entrypoint `{}` tls", e.name),
                    format!(
                        "the IngressRoutes on entryPoint {}: tls.secretName {} (type kubernetes.io/tls, not rendered: create it); Traefik terminates TLS there",
                        e.name, c.name
                    ),
                );
            } else {
                section.row(
                    format!("entrypoint `{}` tls.certificates[{}]", e.name, c.index),
                    format!(
                        "Secret {}: named by no object (an IngressRoute names one certificate)",
                        c.name
                    ),
                );
                explain.warn(format!(
                    "entrypoint `{}`: Traefik chooses among the certificates it knows by SNI, and it knows only those some object names; the Secret {} is named by none: add it to the `default` TLSStore's spec.certificates (one per Traefik), or to the tls.secretName of an IngressRoute for its host",
                    e.name, c.name
                ));
            }
            explain.warn(format!(
                "entrypoint `{}`: the certificate {} and its key must be in the Secret {}, which the render does not write (a private key never goes into a manifest); create it before applying: `{}`",
                e.name,
                tls::shown(&c.files.cert),
                c.name,
                c.create_command(&opts.namespace)
            ));
        }
        if t.min_version == TlsVersion::Tls13 {
            explain.warn(format!(
                "entrypoint `{}`: min_version 1.3 is not carried: Traefik's default TLS options accept TLS 1.2; create a TLSOption with `minVersion: VersionTLS13` and name it in the IngressRoutes' tls.options",
                e.name
            ));
        }
    }
    if certs.is_empty() {
        return;
    }
    section.note(
        "TLS entrypoints keep their names (`websecure`-style): Traefik must have entryPoints of those names listening for HTTPS (its Helm chart's `websecure` does, on port 443)",
    );
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
        let spec = |m: &Middleware| middleware_spec(m, "s", "r").map(|s| s.spec);
        assert!(spec(&Middleware::AddPrefix(String::new())).is_none());
        let add = Middleware::AddPrefix("/v1".into());
        assert_eq!(
            (
                spec(&add).unwrap()["addPrefix"]["prefix"].as_str(),
                object_kind(&add).as_str()
            ),
            (Some("/v1"), "add-prefix")
        );
        let headers = spec(&Middleware::Headers(HeaderRules::default())).unwrap();
        assert_eq!(headers["headers"].as_mapping().map(|m| m.len()), Some(0));
    }
}
