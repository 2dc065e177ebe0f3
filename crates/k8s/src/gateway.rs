//! The gateway on Kubernetes: a Deployment running `shoal up --discovery kubernetes` on a
//! stack file derived from the user's (a ConfigMap), behind a Service of the type the user
//! picks, with the ServiceAccount and Role the in-cluster runtime needs (`crate::rbac`) and its
//! observability (`crate::observe`).
//!
//! The derived stack file keeps each replicated service as an image service: `image`, `port`,
//! `protocol`, `tls`, `balance`, `health`, `retry`, `passive` and `circuit_breaker` as written, and
//! `autoscale` for the services shoal's autoscaler owns (`crate::scaling`). In that mode the
//! gateway finds a service's pods through the EndpointSlices of its Kubernetes Service (label
//! `kubernetes.io/service-name`) and balances over them itself, per request, with passive
//! ejection, retries and hedging as locally. What only concerns the pods (`replicas`, `args`,
//! `env`, `resources`, `stop`, `restart`, `logs`) is the Deployment's and is left out. Routes,
//! middlewares and the gateway's settings are carried over as they are.
//!
//! TLS files come into the pod next to the stack file (`crate::tls`): each certificate of a
//! TLS entrypoint from a Secret of type `kubernetes.io/tls` that the user creates (the render
//! never holds a private key), each service's CA bundle from a ConfigMap the render writes;
//! all of them and the stack file are one projected, read-only volume at `/etc/shoal`, and
//! the derived stack file names the paths in it.
//!
//! The admin API can scale, reload and stop shoal, and beyond loopback shoal insists on a
//! token, which would then have to sit in the ConfigMap in clear text. So it stays on
//! 127.0.0.1 in the pod (`kubectl port-forward` reaches it), and only its `/metrics` is served
//! beyond the pod: an extra entrypoint on the metrics port whose single route,
//! ``Path(`/metrics`)``, forwards to the admin API over loopback. That port is not part of
//! the gateway's Service; Prometheus scrapes the pods directly (the `prometheus.io/*`
//! annotations on the pod template, or a ServiceMonitor through a headless Service).
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_norway::Value;
use shoal_config::{Source, Stack};

use crate::explain::{Explain, Section};
use crate::scaling::Owner;
use crate::tls::{self, CaBundle, CertSecret};
use crate::workload::{self, labels, match_labels, metadata, secs, selector};
use crate::yaml::{Obj, fingerprint, list, string_map, to_text};
use crate::{
    GATEWAY_NAME, GATEWAY_STACK_PATH, Kind, LEASE_NAME, Manifest, NAMESPACE_ENV, Options,
    POD_NAME_ENV, RenderError, observe, rbac, stackfile,
};

/// The gateway pod's preStop sleep: time for the Service's endpoints (and a cloud load
/// balancer) to stop sending new connections before shoal stops accepting.
const PRE_STOP_SECS: u64 = 5;
/// Time left after the in-flight requests' grace for shoal to exit.
const EXIT_MARGIN_SECS: u64 = 5;
/// Where the scale state would go (`--state-dir`): an emptyDir, as the root file system is
/// read-only.
const STATE_DIR: &str = "/var/lib/shoal";
/// The user the gateway runs as (distroless' `nonroot`).
const RUN_AS: u64 = 65532;

/// The TLS material the gateway's pods mount next to their stack file (`crate::tls`).
#[derive(Debug, Default)]
pub(crate) struct Material {
    /// The certificates of TLS entrypoints: Secrets the user creates.
    pub(crate) certs: Vec<CertSecret>,
    /// Services' CA bundles: ConfigMaps the render writes.
    pub(crate) bundles: Vec<CaBundle>,
}

impl Material {
    fn of(stack: &Stack) -> Result<Material, RenderError> {
        Ok(Material {
            certs: tls::cert_secrets(stack),
            bundles: tls::ca_bundles(stack)?,
        })
    }

    fn is_empty(&self) -> bool {
        self.certs.is_empty() && self.bundles.is_empty()
    }

    /// `(cert, key)` of an entrypoint's certificates as its pods see them.
    fn cert_paths(&self, entrypoint: &str) -> Vec<(String, String)> {
        self.certs
            .iter()
            .filter(|c| c.entrypoint == entrypoint)
            .map(|c| {
                (
                    format!("{}/tls.crt", c.dir()),
                    format!("{}/tls.key", c.dir()),
                )
            })
            .collect()
    }

    fn bundle(&self, service: &str) -> Option<&CaBundle> {
        self.bundles.iter().find(|b| b.service == service)
    }

    /// The one volume mounted at `/etc/shoal`: the stack file's ConfigMap alone, or projected
    /// with the Secrets and CA ConfigMaps into `tls/SECRET/` and `ca/CONFIGMAP/` under it
    /// (one volume rather than mounts nested inside a read-only ConfigMap mount, where the
    /// runtime could not create their mount points).
    fn volume(&self, configmap: &str) -> Value {
        let stack = Obj::new().with("name", configmap);
        if self.is_empty() {
            return Obj::new()
                .with("name", "stack")
                .with("configMap", stack)
                .into();
        }
        let mut sources = vec![Value::from(Obj::new().with("configMap", stack))];
        for c in &self.certs {
            let dir = c.dir();
            let rel = dir.trim_start_matches("/etc/shoal/");
            sources.push(
                Obj::new()
                    .with(
                        "secret",
                        Obj::new().with("name", c.name.as_str()).with(
                            "items",
                            list([
                                Obj::new()
                                    .with("key", "tls.crt")
                                    .with("path", format!("{rel}/tls.crt")),
                                // Readable by the pod's group only (fsGroup), not by all.
                                Obj::new()
                                    .with("key", "tls.key")
                                    .with("path", format!("{rel}/tls.key"))
                                    .with("mode", KEY_MODE),
                            ]),
                        ),
                    )
                    .into(),
            );
        }
        for b in &self.bundles {
            let rel = b.mounted();
            let rel = rel.trim_start_matches("/etc/shoal/");
            sources.push(
                Obj::new()
                    .with(
                        "configMap",
                        Obj::new().with("name", b.name.as_str()).with(
                            "items",
                            list([Obj::new().with("key", tls::CA_KEY).with("path", rel)]),
                        ),
                    )
                    .into(),
            );
        }
        Obj::new()
            .with("name", "stack")
            .with("projected", Obj::new().with("sources", list(sources)))
            .into()
    }
}

/// File mode of a mounted private key: 0440, so that the pod's group (`fsGroup`) reads it.
const KEY_MODE: u64 = 0o440;

pub(crate) struct Gateway {
    pub(crate) manifests: Vec<Manifest>,
    /// The gateway's, its RBAC's and its observability's.
    pub(crate) sections: Vec<Section>,
    pub(crate) stack_file: String,
}

/// Where the gateway listens in its pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ports {
    /// The user's entrypoints: name, port, and the container port's name.
    pub(crate) entrypoints: Vec<(String, u16, String)>,
    /// The admin API, on 127.0.0.1.
    pub(crate) admin: u16,
    /// The metrics entrypoint, on every address of the pod.
    pub(crate) metrics: u16,
}

fn next_free(from: u16, used: &BTreeSet<u16>) -> u16 {
    (from..=u16::MAX)
        .find(|p| !used.contains(p))
        .unwrap_or(from)
}

/// A container port name (IANA service name): at most 15 of `a-z0-9-`, a letter among them,
/// no `-` at either end or twice in a row.
fn port_name_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(u8::is_ascii_lowercase)
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !s.contains("--")
}

/// `base`, or `base-2`, `base-3`… whichever is not taken yet.
fn unique(base: &str, taken: &[&str]) -> String {
    if !taken.contains(&base) {
        return base.to_owned();
    }
    (2..)
        .map(|i| format!("{base}-{i}"))
        .find(|n| !taken.contains(&n.as_str()))
        .unwrap_or_default()
}

pub(crate) fn ports(stack: &Stack, explain: &mut Explain) -> Ports {
    let mut used = BTreeSet::new();
    let mut names: Vec<String> = vec![observe::METRICS_PORT_NAME.to_owned()];
    let mut entrypoints = Vec::new();
    for (i, e) in stack.gateway.entrypoints.iter().enumerate() {
        let wanted = e.listen.port();
        let port = if wanted == 0 || used.contains(&wanted) {
            let p = next_free(8000, &used);
            if wanted != 0 {
                explain.warn(format!(
                    "entrypoint `{}`: port {wanted} is taken by another entrypoint once every entrypoint listens on 0.0.0.0 in the pod; it gets port {p}",
                    e.name
                ));
            }
            p
        } else {
            wanted
        };
        used.insert(port);
        let taken: Vec<&str> = names.iter().map(String::as_str).collect();
        let name = if port_name_ok(&e.name) && !taken.contains(&e.name.as_str()) {
            e.name.clone()
        } else {
            unique(&format!("web-{i}"), &taken)
        };
        names.push(name.clone());
        entrypoints.push((e.name.clone(), port, name));
    }
    let admin_wanted = stack.admin.listen.port();
    let admin = if admin_wanted == 0 || used.contains(&admin_wanted) {
        next_free(8080, &used)
    } else {
        admin_wanted
    };
    used.insert(admin);
    let metrics = next_free(9090, &used);
    Ports {
        entrypoints,
        admin,
        metrics,
    }
}

fn is_loopback_host(authority: &str) -> bool {
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The gateway's stack file, derived from the user's, and the hash that rolls the gateway's
/// pods when it changes.
pub(crate) fn stack_file(
    stack: &Stack,
    opts: &Options,
    ports: &Ports,
    material: &Material,
    section: &mut Section,
    explain: &mut Explain,
) -> (String, String) {
    let service_names: Vec<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
    let metrics_service = unique("shoal-metrics", &service_names);
    let ep_names: Vec<&str> = stack
        .gateway
        .entrypoints
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let metrics_entrypoint = unique("shoal-metrics", &ep_names);
    let route_names: Vec<&str> = stack.routes.iter().map(|r| r.name.as_str()).collect();
    let metrics_route = unique("shoal-metrics", &route_names);

    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let mut entrypoints = Obj::new();
    for (name, port, _) in &ports.entrypoints {
        let declared = stack.gateway.entrypoints.iter().find(|e| &e.name == name);
        let tls = declared.and_then(|e| e.tls.as_ref());
        let redirect = declared.and_then(|e| e.redirect_to.as_ref());
        entrypoints = entrypoints.with(
            name,
            Obj::new()
                .with("listen", SocketAddr::new(any, *port).to_string())
                .with_opt(
                    "tls",
                    tls.map(|t| stackfile::entrypoint_tls(t, &material.cert_paths(name))),
                )
                .with_opt("redirect_to", redirect.map(|r| r.entrypoint.as_str())),
        );
    }
    entrypoints = entrypoints.with(
        &metrics_entrypoint,
        Obj::new().with("listen", SocketAddr::new(any, ports.metrics).to_string()),
    );

    let mut services = Obj::new();
    let (mut scaled, mut by_hpa, mut fixed) = (Vec::new(), Vec::new(), Vec::new());
    for s in &stack.services {
        let mut o = Obj::new();
        let ca = material.bundle(&s.name).map(CaBundle::mounted);
        let upstream_tls = s
            .tls
            .as_ref()
            .map(|t| stackfile::upstream_tls(t, ca.as_deref()));
        if let Some(t) = &s.tls {
            let mut how = Vec::new();
            if let Some(b) = material.bundle(&s.name) {
                how.push(format!(
                    "ca {} from ConfigMap {} (the bundle of {})",
                    b.mounted(),
                    b.name,
                    b.file
                ));
            }
            if let Some(n) = &t.server_name {
                how.push(format!("server_name {n}"));
            }
            if t.insecure_skip_verify {
                how.push("insecure_skip_verify: true".to_owned());
                explain.warn(format!(
                    "service `{}`: tls.insecure_skip_verify is carried: the gateway encrypts to its replicas but accepts any certificate, so it does not know who answers",
                    s.name
                ));
            } else if t.server_name.is_none() && tls::replicated(&s.source) {
                explain.warn(format!(
                    "service `{}`: TLS to its pods without tls.server_name checks each pod's certificate for the pod's IP address, which pod certificates rarely name; set tls.server_name to a name they have",
                    s.name
                ));
            }
            if how.is_empty() {
                how.push("the system's CA roots".to_owned());
            }
            section.row(
                format!("service `{}` tls", s.name),
                format!("ConfigMap {GATEWAY_NAME}: tls, {}", how.join(", ")),
            );
        }
        match (&s.source, &s.container) {
            (Source::Command(command), Some(container)) => {
                let owner = Owner::of(command, container, opts.ingress);
                o = o
                    .with("image", container.image.as_str())
                    .with("port", container.port)
                    .with("protocol", stackfile::protocol(s.protocol))
                    .with_opt("tls", upstream_tls.clone())
                    .with("balance", stackfile::balance(&s.balance))
                    .with("health", stackfile::health(&s.health, true))
                    .with("retry", stackfile::retry(&s.retry))
                    .with_opt("timeouts", stackfile::request_timeouts(&s.timeouts))
                    .with("passive", stackfile::passive(&s.passive));
                match (&owner, &command.autoscale) {
                    (Owner::Shoal, Some(a)) => {
                        o = o.with("autoscale", stackfile::autoscale(a));
                        scaled.push(s.name.as_str());
                    }
                    (Owner::Hpa(_), _) => by_hpa.push(s.name.as_str()),
                    _ => fixed.push(s.name.as_str()),
                }
            }
            (Source::Command(_), None) => {}
            (Source::Servers(servers), _) => {
                for srv in servers {
                    if is_loopback_host(&srv.authority) {
                        explain.warn(format!(
                            "service `{}`: server {} is a loopback address; in the gateway's pod that is the pod itself, not your machine",
                            s.name, srv.url
                        ));
                    }
                }
                o = o
                    .with("servers", stackfile::servers(servers))
                    .with("protocol", stackfile::protocol(s.protocol))
                    .with_opt("tls", upstream_tls.clone())
                    .with("balance", stackfile::balance(&s.balance))
                    .with("health", stackfile::health(&s.health, false))
                    .with("retry", stackfile::retry(&s.retry))
                    .with_opt("timeouts", stackfile::request_timeouts(&s.timeouts))
                    .with("passive", stackfile::passive(&s.passive));
                section.row(
                    format!("service `{}` (servers)", s.name),
                    format!(
                        "ConfigMap {GATEWAY_NAME}: as written (health, passive, retry and breaker by the gateway)"
                    ),
                );
            }
        }
        o = o.with_opt(
            "circuit_breaker",
            s.circuit_breaker.as_ref().map(stackfile::circuit_breaker),
        );
        services = services.with(&s.name, o);
    }
    services = services.with(
        &metrics_service,
        Obj::new()
            .with(
                "servers",
                list([format!("http://127.0.0.1:{}", ports.admin)]),
            )
            .with("health", false)
            .with("retry", false)
            .with("passive", false),
    );
    let replicated: Vec<&str> = stack
        .services
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| scaled.contains(n) || by_hpa.contains(n) || fixed.contains(n))
        .collect();
    if !replicated.is_empty() {
        section.row(
            "replicated services",
            format!(
                "ConfigMap {GATEWAY_NAME}: image services ({}); the gateway watches the EndpointSlices labelled kubernetes.io/service-name=NAME and balances over the ready pods (pod IP, container port)",
                replicated.join(", ")
            ),
        );
        section.row(
            "  their image, port, protocol, tls, balance, health, retry, passive, circuit_breaker",
            format!("ConfigMap {GATEWAY_NAME}: kept"),
        );
        section.row(
            "  their autoscale",
            format!(
                "ConfigMap {GATEWAY_NAME}: {}",
                match (scaled.is_empty(), by_hpa.is_empty()) {
                    (false, false) => format!(
                        "kept for {} (shoal's in-cluster autoscaler); left out for {} (a HorizontalPodAutoscaler owns the count)",
                        scaled.join(", "),
                        by_hpa.join(", ")
                    ),
                    (false, true) => format!(
                        "kept for {} (shoal's in-cluster autoscaler)",
                        scaled.join(", ")
                    ),
                    (true, false) => format!(
                        "left out for {} (a HorizontalPodAutoscaler owns the count)",
                        by_hpa.join(", ")
                    ),
                    (true, true) => "none".to_owned(),
                }
            ),
        );
        section.row(
            "  their replicas, args, env, resources, stop",
            format!("ConfigMap {GATEWAY_NAME}: left out (the Deployment's)"),
        );
    }

    // Middleware chains, named after their route; the inline strip_prefix first.
    let mut middlewares = Obj::new();
    let mut routes = Vec::new();
    // A route without `entrypoints` is on every entrypoint but those that redirect every
    // request to HTTPS (where no route listens).
    let user_entrypoints: Vec<&str> = ports
        .entrypoints
        .iter()
        .map(|(n, _, _)| n.as_str())
        .filter(|n| {
            !stack
                .gateway
                .entrypoints
                .iter()
                .any(|e| e.name == *n && e.redirect_to.is_some())
        })
        .collect();
    for r in &stack.routes {
        let mut chain: &[shoal_config::Middleware] = &r.middlewares;
        let mut route = Obj::new()
            .with("name", r.name.as_str())
            .with("match", r.rule.source())
            .with("priority", r.priority);
        // A split's targets, stickiness and canary, and the mirror, as written: the
        // gateway in the cluster splits and mirrors as `shoal up` does.
        route = match &r.split {
            Some(split) => stackfile::split(route, split),
            None => route.with("service", r.service.as_str()),
        };
        route = route.with_opt("mirror", r.mirror.as_ref().map(stackfile::mirror));
        if let Some((shoal_config::Middleware::StripPrefix(p), rest)) = chain.split_first() {
            route = route.with("strip_prefix", list(p.iter().map(String::as_str)));
            chain = rest;
        }
        let mut names = Vec::new();
        for (i, m) in chain.iter().enumerate() {
            let name = format!("{}-{i}", r.name);
            middlewares = middlewares.with(&name, stackfile::middleware(m));
            names.push(name);
        }
        let eps: Vec<&str> = match &r.entrypoints {
            Some(e) => e.iter().map(String::as_str).collect(),
            None => user_entrypoints.clone(),
        };
        route = route
            .with_nonempty("middlewares", list(names))
            .with("entrypoints", list(eps))
            .with_opt("retry", r.retry.as_ref().map(stackfile::retry))
            .with_opt("timeouts", stackfile::request_timeouts(&r.timeouts));
        routes.push(Value::from(route));
    }
    routes.push(
        Obj::new()
            .with("name", metrics_route.as_str())
            .with("match", "Path(`/metrics`)")
            .with("service", metrics_service.as_str())
            .with("entrypoints", list([metrics_entrypoint.as_str()]))
            .into(),
    );

    let mut doc = Obj::new()
        .with(
            "gateway",
            stackfile::gateway_settings(&stack.gateway, entrypoints.into()),
        )
        .with(
            "admin",
            Obj::new().with(
                "listen",
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), ports.admin).to_string(),
            ),
        )
        .with("metrics", stackfile::metrics(&stack.metrics));
    if let Some(a) = &stack.access_log {
        doc = doc.with("access_log", stackfile::access_log(a));
        if a.path.is_some() {
            explain.not_carried(
                "access_log.path: the gateway writes its access log to standard output (`kubectl logs`)",
            );
        }
    }
    doc = doc
        .with("services", services)
        .with_nonempty("middlewares", middlewares)
        .with("routes", list(routes));

    let mut text = format!(
        "# The gateway's stack file, derived by `shoal k8s render` from {} for namespace `{}`.\n\
         # Routes, middlewares and gateway settings are the original's. Each replicated service\n\
         # keeps its image and port: `shoal up --discovery kubernetes` finds its pods through the\n\
         # EndpointSlices of its Kubernetes Service and balances over them. `autoscale` is kept\n\
         # for the services shoal's autoscaler scales (a HorizontalPodAutoscaler scales the\n\
         # others). Only `/metrics` of the admin API is served beyond the pod, on entrypoint\n\
         # `{metrics_entrypoint}`. Render again rather than editing it.\n",
        opts.source, opts.namespace
    );
    let doc: Value = doc.into();
    text.push_str(&to_text(&doc));
    let hash = fingerprint(&to_text(&without_images(&doc)));
    (text, hash)
}

/// The derived file without the services' images, for the hash that rolls the gateway's
/// pods: the gateway does not use an image (the Deployment runs it), so a service's new
/// release must not restart every gateway pod.
fn without_images(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Some(services) = doc.get_mut("services").and_then(Value::as_mapping_mut) {
        for (_, service) in services.iter_mut() {
            if let Some(m) = service.as_mapping_mut() {
                m.remove("image");
            }
        }
    }
    doc
}

pub(crate) fn render(
    stack: &Stack,
    opts: &Options,
    explain: &mut Explain,
) -> Result<Gateway, RenderError> {
    let mut section = Section::new("gateway");
    let mut services_section = Section::default();
    let ports = ports(stack, explain);
    let material = Material::of(stack)?;
    let (stack_file, hash) = stack_file(
        stack,
        opts,
        &ports,
        &material,
        &mut services_section,
        explain,
    );
    let name = GATEWAY_NAME;
    let mut manifests = Vec::new();

    manifests.push(Manifest::with_top(
        Kind::ConfigMap,
        name,
        vec![format!(
            "The gateway's stack file, mounted at {GATEWAY_STACK_PATH}."
        )],
        metadata(name, opts, "gateway"),
        "data",
        Obj::new().with("shoal.yaml", stack_file.as_str()).into(),
    ));
    for b in &material.bundles {
        manifests.push(Manifest::with_top(
            Kind::ConfigMap,
            &b.name,
            vec![format!(
                "The CA bundle of service `{}` ({}), mounted in the gateway's pods at {}.",
                b.service,
                b.file,
                b.mounted()
            )],
            metadata(&b.name, opts, "gateway"),
            "data",
            Obj::new().with(tls::CA_KEY, b.pem.as_str()).into(),
        ));
    }

    let (rbac, rbac_section) = rbac::render(stack, opts);
    manifests.extend(rbac);

    let svc_ports = ports.entrypoints.iter().map(|(_, port, pname)| {
        Obj::new()
            .with("name", pname.as_str())
            .with("port", *port)
            .with("targetPort", pname.as_str())
            .with("protocol", "TCP")
    });
    manifests.push(Manifest::new(
        Kind::Service,
        name,
        vec![format!(
            "The gateway's entrypoints, as a {} Service.",
            opts.gateway_service.as_str()
        )],
        metadata(name, opts, "gateway"),
        Obj::new()
            .with("type", opts.gateway_service.as_str())
            .with("selector", match_labels(name))
            .with("ports", list(svc_ports))
            .into(),
    ));

    let mut container_ports: Vec<Value> = ports
        .entrypoints
        .iter()
        .map(|(_, port, pname)| {
            Obj::new()
                .with("name", pname.as_str())
                .with("containerPort", *port)
                .with("protocol", "TCP")
                .into()
        })
        .collect();
    container_ports.push(
        Obj::new()
            .with("name", observe::METRICS_PORT_NAME)
            .with("containerPort", ports.metrics)
            .with("protocol", "TCP")
            .into(),
    );
    let first = ports
        .entrypoints
        .first()
        .map_or(observe::METRICS_PORT_NAME, |(_, _, n)| n.as_str());
    let tcp = |period: u64, failures: u64| {
        Obj::new()
            .with("tcpSocket", Obj::new().with("port", first))
            .with("periodSeconds", period)
            .with("failureThreshold", failures)
    };
    let from_field = |var: &str, path: &str| {
        Obj::new().with("name", var).with(
            "valueFrom",
            Obj::new().with("fieldRef", Obj::new().with("fieldPath", path)),
        )
    };
    let grace = PRE_STOP_SECS + secs(stack.gateway.shutdown_grace) + EXIT_MARGIN_SECS;
    let container = Obj::new()
        .with("name", "shoal")
        .with("image", opts.gateway_image.as_str())
        .with(
            "args",
            list([
                "up",
                "--discovery",
                "kubernetes",
                "--file",
                GATEWAY_STACK_PATH,
                "--state-dir",
                STATE_DIR,
            ]),
        )
        .with(
            "env",
            list([
                from_field(NAMESPACE_ENV, "metadata.namespace"),
                from_field(POD_NAME_ENV, "metadata.name"),
            ]),
        )
        .with("ports", list(container_ports))
        .with(
            "resources",
            Obj::new().with(
                "requests",
                string_map([("cpu", "100m"), ("memory", "64Mi")]),
            ),
        )
        .with("readinessProbe", tcp(2, 2))
        .with("livenessProbe", tcp(10, 3))
        .with(
            "lifecycle",
            Obj::new().with(
                "preStop",
                Obj::new().with("sleep", Obj::new().with("seconds", PRE_STOP_SECS)),
            ),
        )
        .with(
            "securityContext",
            Obj::new()
                .with("allowPrivilegeEscalation", false)
                .with("readOnlyRootFilesystem", true)
                .with("capabilities", Obj::new().with("drop", list(["ALL"]))),
        )
        .with(
            "volumeMounts",
            list([
                Obj::new()
                    .with("name", "stack")
                    .with("mountPath", "/etc/shoal")
                    .with("readOnly", true),
                Obj::new()
                    .with("name", "state")
                    .with("mountPath", STATE_DIR),
            ]),
        );
    let mut annotations = observe::pod_annotations(opts, &ports);
    annotations.push(("shoal.dev/stack-file-hash".to_owned(), hash));
    let template = Obj::new()
        .with(
            "metadata",
            Obj::new().with("labels", labels(name, "gateway")).with(
                "annotations",
                string_map(annotations.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            ),
        )
        .with(
            "spec",
            Obj::new()
                .with("serviceAccountName", name)
                .with("automountServiceAccountToken", true)
                .with(
                    "securityContext",
                    Obj::new()
                        .with("runAsNonRoot", true)
                        .with("runAsUser", RUN_AS)
                        .with("runAsGroup", RUN_AS)
                        .with_opt("fsGroup", (!material.certs.is_empty()).then_some(RUN_AS))
                        .with("seccompProfile", Obj::new().with("type", "RuntimeDefault")),
                )
                .with("terminationGracePeriodSeconds", grace)
                .with("containers", list([container]))
                .with(
                    "volumes",
                    list([
                        material.volume(name),
                        Obj::new()
                            .with("name", "state")
                            .with("emptyDir", Obj::new())
                            .into(),
                    ]),
                ),
        );
    manifests.push(Manifest::new(
        Kind::Deployment,
        name,
        vec![
            format!(
                "shoal's gateway: `shoal up --discovery kubernetes --file {GATEWAY_STACK_PATH}` on the ConfigMap above (the image's entrypoint must be the shoal binary)."
            ),
            format!(
                "It watches each service's EndpointSlices and balances over the ready pods; the pod holding the Lease `{LEASE_NAME}` also runs the autoscaler. ServiceAccount {name} and its Role say what it may do."
            ),
            format!(
                "{NAMESPACE_ENV} and {POD_NAME_ENV} come from the downward API: the namespace it watches, and its identity as the Lease's holder."
            ),
            format!(
                "Stopping: preStop sleep {PRE_STOP_SECS}s while the Service's endpoints drop the pod, then SIGTERM and gateway.shutdown_grace ({}s) for in-flight requests.",
                secs(stack.gateway.shutdown_grace)
            ),
            "The stack-file hash annotation rolls the pods when the gateway's settings change (not when only a service's image does: the gateway does not use it).".to_owned(),
        ],
        metadata(name, opts, "gateway"),
        Obj::new()
            .with("replicas", opts.gateway_replicas)
            .with("selector", selector(name))
            .with("template", template)
            .into(),
    ));
    if opts.gateway_replicas >= 2 {
        manifests.push(workload::disruption_budget(name, opts, "gateway"));
    }
    let (observed, observe_section) = observe::render(stack, opts, &ports, explain);
    manifests.extend(observed);

    let eps: Vec<String> = stack
        .gateway
        .entrypoints
        .iter()
        .zip(&ports.entrypoints)
        .map(|(e, (_, port, pname))| format!("{} {} → port {port} ({pname})", e.name, e.listen))
        .collect();
    section.row(
        "gateway.listen / entrypoints",
        format!(
            "Service {name} ({}): {}; the pods listen on 0.0.0.0",
            opts.gateway_service.as_str(),
            eps.join(", ")
        ),
    );
    tls_rows(stack, opts, &material, &ports, &mut section, explain);
    section.row(
        "routes, middlewares",
        format!(
            "ConfigMap {name}: shoal.yaml, routes unchanged ({} route{}), middlewares as named chains",
            stack.routes.len(),
            if stack.routes.len() == 1 { "" } else { "s" }
        ),
    );
    section.row(
        "gateway timeouts, limits, workers, replica_header, metrics, access_log",
        format!("ConfigMap {name}: unchanged (access log to standard output)"),
    );
    section.row(
        "gateway.shutdown_grace",
        format!(
            "Deployment {name}: preStop sleep {PRE_STOP_SECS}s, terminationGracePeriodSeconds {grace}"
        ),
    );
    section.row(
        "admin",
        format!(
            "127.0.0.1:{} in each gateway pod, no token: `kubectl port-forward deploy/{name} {}`",
            ports.admin, ports.admin
        ),
    );
    section.row(
        "(the gateway itself)",
        format!(
            "Deployment {name}: {} replica{} of {} running `shoal up --discovery kubernetes`, env {NAMESPACE_ENV} and {POD_NAME_ENV} from the downward API{}",
            opts.gateway_replicas,
            if opts.gateway_replicas == 1 { "" } else { "s" },
            opts.gateway_image,
            if opts.gateway_replicas >= 2 {
                format!("; PodDisruptionBudget {name}: maxUnavailable 1")
            } else {
                String::new()
            }
        ),
    );
    section.rows.extend(services_section.rows);
    section.note(
        "the gateway balances over pods, per request, with passive ejection, retries and hedging as locally; a pod's readiness probe still decides whether it is in its EndpointSlice (ready) at all",
    );
    Ok(Gateway {
        manifests,
        sections: vec![section, rbac_section, observe_section],
        stack_file,
    })
}

/// What `--explain` says about TLS entrypoints and redirects, and the warnings naming the
/// Secrets to create.
fn tls_rows(
    stack: &Stack,
    opts: &Options,
    material: &Material,
    ports: &Ports,
    section: &mut Section,
    explain: &mut Explain,
) {
    for e in &stack.gateway.entrypoints {
        if let Some(t) = &e.tls {
            for c in material.certs.iter().filter(|c| c.entrypoint == e.name) {
                section.row(
                    format!("entrypoint `{}` tls.certificates[{}]", e.name, c.index),
                    format!(
                        "Secret {} (type kubernetes.io/tls, not rendered: create it), mounted read-only at {}/; ConfigMap {GATEWAY_NAME}: cert {}/tls.crt, key {}/tls.key",
                        c.name,
                        c.dir(),
                        c.dir(),
                        c.dir()
                    ),
                );
                explain.warn(format!(
                    "entrypoint `{}`: the certificate {} and its key come from the Secret {}, which the render does not write (a private key never goes into a manifest); create it before applying: `{}`",
                    e.name,
                    tls::shown(&c.files.cert),
                    c.name,
                    c.create_command(&opts.namespace)
                ));
            }
            section.row(
                format!("entrypoint `{}` tls.min_version", e.name),
                format!(
                    "ConfigMap {GATEWAY_NAME}: min_version {}",
                    tls::version(t.min_version)
                ),
            );
        }
        if let Some(r) = &e.redirect_to {
            let port = ports
                .entrypoints
                .iter()
                .find(|(n, _, _)| *n == r.entrypoint)
                .map_or(r.port, |(_, p, _)| *p);
            section.row(
                format!("entrypoint `{}` redirect_to: {}", e.name, r.entrypoint),
                format!(
                    "ConfigMap {GATEWAY_NAME}: redirect_to {} (308 to https, port {port}: the port of the gateway's Service for `{}`; if something in front publishes it on another port, the Location is wrong)",
                    r.entrypoint, r.entrypoint
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names() {
        assert!(port_name_ok("web"));
        assert!(port_name_ok("web-2"));
        assert!(!port_name_ok("internal-traffic-1"));
        assert!(!port_name_ok("123"));
        assert!(!port_name_ok("a--b"));
        assert!(!port_name_ok("Web"));
    }

    #[test]
    fn unique_names() {
        assert_eq!(unique("shoal-metrics", &["a"]), "shoal-metrics");
        assert_eq!(
            unique("shoal-metrics", &["shoal-metrics", "shoal-metrics-2"]),
            "shoal-metrics-3"
        );
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("127.0.0.1:9001"));
        assert!(is_loopback_host("localhost:80"));
        assert!(is_loopback_host("[::1]:80"));
        assert!(!is_loopback_host("10.0.0.5:80"));
        assert!(!is_loopback_host("legacy.example.com:80"));
    }
}
