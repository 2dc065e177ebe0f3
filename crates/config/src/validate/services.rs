//! Raw → validated for `services.NAME`: its kind (a command, a worker, fixed `servers`, a
//! container image), its resources and local limits, `depends_on` (every name known, no
//! cycle), upstream servers, load balancing, request timeouts, logs and restart policy.
//!
//! What a service does when a replica fails (health checks, retries, passive health, the
//! circuit breaker) is in `failover.rs`; `autoscale:` in `autoscale.rs`; `version:` and
//! `rollout:` in `rollout.rs`; upstream TLS in `tls.rs`.
use std::path::Path;
use std::time::Duration;

use super::Cx;
use super::units::{resolve, valid_name};
use crate::error::did_you_mean;
use crate::model::*;
use crate::raw::*;

impl Cx<'_> {
    pub(super) fn service(
        &mut self,
        name: String,
        raw: RawService,
        base: &Path,
    ) -> Option<Service> {
        let path = format!("services.{name}");
        if !valid_name(&name) {
            self.misplaced(
                &path,
                format!("service name `{name}` must be lowercase letters, digits and `-`, start with a letter, at most 63 characters"),
            );
        }
        let kind = self.kind(&path, raw.kind.as_deref());
        let worker = kind == ServiceKind::Worker;
        if worker && !self.worker_fields(&path, &raw) {
            return None;
        }
        let protocol = match raw.protocol.as_deref() {
            None | Some("http") => Protocol::Http1,
            Some("h2c") => Protocol::H2c,
            Some("h2") => Protocol::H2,
            Some(other) => {
                self.error_hint(
                    &format!("{path}.protocol"),
                    format!("unknown protocol `{other}`; expected `http`, `h2c` or `h2`"),
                    did_you_mean(other, ["http", "h2c", "h2"]),
                );
                Protocol::Http1
            }
        };
        let container = self.container(&path, &raw);
        let raw_tls = raw.tls;
        // `Some(true)` for `https://` servers; None for replicas shoal runs.
        let mut https = None;
        let servers = raw.servers.is_some() && raw.command.is_none();
        // A worker's request settings were refused above: it keeps the defaults, unused.
        let (balance, health, retry, passive, circuit_breaker) = if worker {
            let health = Health {
                enabled: false,
                liveness: None,
                ..Health::default()
            };
            let (retry, passive) = (Retry::default(), Passive::default());
            (Balance::RoundRobin, health, retry, passive, None)
        } else {
            (
                self.balance(&path, &name, raw.balance.map(|b| b.0)),
                self.health(&format!("{path}.health"), raw.health, servers),
                self.retry(&format!("{path}.retry"), raw.retry, &Retry::default()),
                self.passive(&format!("{path}.passive"), raw.passive),
                self.circuit_breaker(&format!("{path}.circuit_breaker"), raw.circuit_breaker),
            )
        };
        let timeouts = match &raw.timeouts {
            Some(t) if !worker => self.request_timeouts(&format!("{path}.timeouts"), t),
            _ => RequestTimeouts::default(),
        };
        let command = match (raw.command, &container, self.target) {
            (Some(command), _, _) => Some(command.0),
            // On Kubernetes the image's own entrypoint runs; locally there is nothing to run.
            (None, Some(_), Runtime::Kubernetes) => Some(Vec::new()),
            (None, Some(_), Runtime::Local) if raw.servers.is_none() => {
                self.misplaced(
                    &format!("{path}.image"),
                    format!(
                        "service `{name}` has only `image:`, and `shoal up` runs local processes: \
                         add `command:` to run it on this machine (the image is for \
                         `shoal k8s render`)"
                    ),
                );
                return None;
            }
            (None, _, _) => None,
        };
        if self.target == Runtime::Kubernetes && container.is_none() && command.is_some() {
            self.misplaced(
                &path,
                format!(
                    "on Kubernetes each replica of `{name}` is a container: add `image:` \
                     (`command:` runs local processes only)"
                ),
            );
        }
        let source = match (raw.servers, command) {
            (Some(_), Some(_)) => {
                self.misplaced(
                    &format!("{path}.command"),
                    "a service has either `servers` (static upstreams) or `command`/`image` (replicas it runs), not both",
                );
                return None;
            }
            (None, None) => {
                self.misplaced(
                    &path,
                    "a service needs `servers:` (static upstream URLs), `command:` (run local replicas) or `image:` (containers on Kubernetes)",
                );
                return None;
            }
            (Some(servers), None) => {
                for (field, present) in [
                    ("replicas", raw.replicas.is_some()),
                    ("env", raw.env.is_some()),
                    ("workdir", raw.workdir.is_some()),
                    ("port_env", raw.port_env.is_some()),
                    ("replica_env", raw.replica_env.is_some()),
                    ("restart", raw.restart.is_some()),
                    ("stop", raw.stop.is_some()),
                    ("logs", raw.logs.is_some()),
                    ("autoscale", raw.autoscale.is_some()),
                    ("version", raw.version.is_some()),
                    ("rollout", raw.rollout.is_some()),
                    ("depends_on", raw.depends_on.is_some()),
                    ("image", container.is_some()),
                ] {
                    if present {
                        self.misplaced(
                            &format!("{path}.{field}"),
                            format!(
                                "`{field}` applies to services with `command` or `image`, not to `servers`"
                            ),
                        );
                    }
                }
                let (servers, scheme) = self.servers(&path, servers);
                https = scheme;
                Source::Servers(servers)
            }
            (None, Some(argv)) => {
                let image_only = argv.is_empty() && container.is_some();
                if !image_only && (argv.is_empty() || argv[0].trim().is_empty()) {
                    self.error(&format!("{path}.command"), "the command is empty");
                }
                let argv = if argv.len() == 1 {
                    argv[0].split_whitespace().map(str::to_owned).collect()
                } else {
                    argv
                };
                let mut env = Vec::new();
                for (k, v) in raw.env.unwrap_or_default() {
                    if k.is_empty() || k.contains('=') || k.contains('\0') {
                        self.misplaced(
                            &format!("{path}.env.{k}"),
                            format!("`{k}` is not a valid variable name"),
                        );
                    }
                    env.push((k, v));
                }
                let restart = self.restart(&format!("{path}.restart"), raw.restart.map(|r| r.0));
                let mut stop = match raw.stop {
                    None => Stop::default(),
                    Some(s) => Stop {
                        drain_timeout: self.duration(
                            &format!("{path}.stop.drain_timeout"),
                            s.drain_timeout.as_ref(),
                            Stop::default().drain_timeout,
                        ),
                        grace: self.duration(
                            &format!("{path}.stop.grace"),
                            s.grace.as_ref(),
                            Stop::default().grace,
                        ),
                    },
                };
                if worker {
                    // No requests to wait for: SIGTERM at once.
                    stop.drain_timeout = Duration::ZERO;
                }
                let logs = self.logs(&format!("{path}.logs"), raw.logs);
                let (autoscale, backlog) = match raw.autoscale {
                    None => (None, None),
                    Some(a) => {
                        match self.autoscale(&format!("{path}.autoscale"), a, worker, base) {
                            Some((a, backlog)) => (Some(a), backlog),
                            None => (None, None),
                        }
                    }
                };
                let replicas = match (&autoscale, raw.replicas) {
                    (None, replicas) => {
                        let replicas = replicas.unwrap_or(1);
                        if replicas > 1000 {
                            self.error(&format!("{path}.replicas"), "at most 1000 replicas");
                        }
                        replicas
                    }
                    // The starting count: at least one replica, so the first request does
                    // not wait for a cold start.
                    (Some(a), None) => a.policy.min.max(1),
                    (Some(a), Some(replicas)) => {
                        let (min, max) = (a.policy.min, a.policy.max);
                        if !(min..=max).contains(&replicas) {
                            self.error(
                                &format!("{path}.replicas"),
                                format!("with `autoscale`, `replicas` is the starting count and must be between `min` ({min}) and `max` ({max}), got {replicas}"),
                            );
                        }
                        replicas.clamp(min, max)
                    }
                };
                Source::Command(Box::new(Command {
                    kind,
                    argv,
                    env,
                    workdir: raw.workdir.map(|w| resolve(base, &w)),
                    replicas,
                    port_env: raw.port_env.unwrap_or_else(|| "PORT".into()),
                    replica_env: raw.replica_env.unwrap_or_else(|| "SHOAL_REPLICA".into()),
                    restart,
                    stop,
                    logs,
                    autoscale,
                    backlog,
                    version: self.version(&path, raw.version),
                    rollout: self.rollout(&path, raw.rollout),
                    depends_on: self.depends_on(&path, &name, raw.depends_on),
                    limits: self.local_limits(&path, raw.resources.as_ref(), container.as_ref()),
                }))
            }
        };
        // Whether TLS was asked for, even if its settings are invalid (reported once, there).
        let wants_tls =
            https == Some(true) || matches!(raw_tls, Some(BoolOr::Bool(true) | BoolOr::Map(_)));
        let tls = self.upstream_tls(&path, raw_tls, https, base);
        if !worker {
            self.protocol_fits_tls(&path, protocol, wants_tls);
        }
        Some(Service {
            name,
            source,
            protocol,
            balance,
            health,
            retry,
            passive,
            circuit_breaker,
            container,
            tls,
            timeouts,
        })
    }

    /// `kind:` `web` (the default) or `worker`.
    fn kind(&mut self, path: &str, raw: Option<&str>) -> ServiceKind {
        const KINDS: [&str; 2] = ["web", "worker"];
        match raw.map(str::trim) {
            None | Some("web") => ServiceKind::Web,
            Some("worker") => ServiceKind::Worker,
            Some(other) => {
                self.error_hint(
                    &format!("{path}.kind"),
                    format!(
                        "unknown kind `{other}`; expected `web` (serves requests on a port) or \
                         `worker` (no port, e.g. a queue consumer)"
                    ),
                    did_you_mean(other, KINDS),
                );
                ServiceKind::Web
            }
        }
    }

    /// The fields a worker cannot have, each reported at its key. False if the service
    /// cannot be a worker at all (it has `servers:`).
    fn worker_fields(&mut self, path: &str, raw: &RawService) -> bool {
        if raw.servers.is_some() {
            self.misplaced(
                &format!("{path}.servers"),
                "a worker (`kind: worker`) is run by shoal: give `command:`, not `servers:`",
            );
            return false;
        }
        if self.target == Runtime::Kubernetes {
            self.misplaced(
                &format!("{path}.kind"),
                "`shoal k8s render` does not render workers yet (`kind: worker` runs with `shoal up`)",
            );
        }
        let requests = |field: &str| {
            format!("`{field}` is about requests, and a worker (`kind: worker`) serves none")
        };
        let no_port = "a worker (`kind: worker`) has no port";
        let stop_drain = raw.stop.as_ref().is_some_and(|s| s.drain_timeout.is_some());
        for (field, present, message) in [
            (
                "health",
                raw.health.is_some(),
                "a worker (`kind: worker`) has no port to check: it is ready once its process runs"
                    .to_owned(),
            ),
            ("retry", raw.retry.is_some(), requests("retry")),
            ("timeouts", raw.timeouts.is_some(), requests("timeouts")),
            ("passive", raw.passive.is_some(), requests("passive")),
            (
                "circuit_breaker",
                raw.circuit_breaker.is_some(),
                requests("circuit_breaker"),
            ),
            ("balance", raw.balance.is_some(), requests("balance")),
            ("protocol", raw.protocol.is_some(), requests("protocol")),
            ("tls", raw.tls.is_some(), no_port.to_owned()),
            ("port_env", raw.port_env.is_some(), no_port.to_owned()),
            ("port", raw.port.is_some(), no_port.to_owned()),
            (
                "stop.drain_timeout",
                stop_drain,
                "a worker (`kind: worker`) has no requests to drain: it gets SIGTERM at once, \
                 then `stop.grace` to finish its work"
                    .to_owned(),
            ),
        ] {
            if present {
                self.misplaced(&format!("{path}.{field}"), message);
            }
        }
        true
    }

    /// `image`, `args`, `port` and `resources`: the service as a container. `None` without
    /// `image` (then the others are errors).
    fn container(&mut self, path: &str, raw: &RawService) -> Option<Container> {
        let Some(image) = raw.image.as_deref() else {
            for (field, present) in [
                ("args", raw.args.is_some()),
                ("port", raw.port.is_some()),
                // With `command:`, the limits of the local replicas (`local_limits`).
                (
                    "resources",
                    raw.resources.is_some() && raw.command.is_none(),
                ),
            ] {
                if present {
                    self.misplaced(
                        &format!("{path}.{field}"),
                        format!("`{field}` describes the service's container: give `image:` too"),
                    );
                }
            }
            return None;
        };
        let image = image.trim();
        // An image reference: no whitespace or control characters; a tag or digest is the
        // user's business (a bare name means `:latest`, which Kubernetes pulls every time).
        if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.error(
                &format!("{path}.image"),
                format!("`{image}` is not an image reference (e.g. `ghcr.io/acme/users:1.4`)"),
            );
        }
        let port = match raw.port {
            Some(0) => {
                self.error(&format!("{path}.port"), "must be a port from 1 to 65535");
                8080
            }
            Some(p) => p,
            None => 8080,
        };
        let resources = match &raw.resources {
            None => Resources::default(),
            Some(r) => self.resources(&format!("{path}.resources"), r),
        };
        Some(Container {
            image: image.to_owned(),
            args: raw.args.clone().unwrap_or_default(),
            port,
            resources,
        })
    }

    /// `resources:`: the short form (requests), or `requests:` and `limits:`.
    fn resources(&mut self, field: &str, r: &RawResources) -> Resources {
        let short = r.cpu.is_some() || r.memory.is_some();
        if short && r.requests.is_some() {
            self.misplaced(
                &format!("{field}.requests"),
                "give `cpu`/`memory` (the requests) or `requests:`, not both",
            );
        }
        let requests = if short {
            self.quantities(field, r.cpu.clone(), r.memory.clone())
        } else {
            r.requests.as_ref().map_or_else(Quantities::default, |q| {
                self.quantities(
                    &format!("{field}.requests"),
                    q.cpu.clone(),
                    q.memory.clone(),
                )
            })
        };
        let limits = r.limits.as_ref().map_or_else(Quantities::default, |q| {
            self.quantities(&format!("{field}.limits"), q.cpu.clone(), q.memory.clone())
        });
        for (what, req, lim) in [
            ("cpu", requests.cpu_millis, limits.cpu_millis),
            ("memory", requests.memory_bytes, limits.memory_bytes),
        ] {
            if let (Some(req), Some(lim)) = (req, lim)
                && req > lim
            {
                self.error(
                    &format!("{field}.limits.{what}"),
                    format!("the {what} limit is below its request; Kubernetes refuses that"),
                );
            }
        }
        Resources { requests, limits }
    }

    /// The limits of a local replica: `resources.limits`, else the short form (or
    /// `requests:`), each of memory and CPU on its own. The container's resources when
    /// there is one (already checked there).
    fn local_limits(
        &mut self,
        path: &str,
        raw: Option<&RawResources>,
        container: Option<&Container>,
    ) -> Quantities {
        let resources = match (container, raw) {
            (Some(c), _) => c.resources.clone(),
            (None, Some(r)) => self.resources(&format!("{path}.resources"), r),
            (None, None) => return Quantities::default(),
        };
        Quantities {
            cpu_millis: resources
                .limits
                .cpu_millis
                .or(resources.requests.cpu_millis),
            memory_bytes: resources
                .limits
                .memory_bytes
                .or(resources.requests.memory_bytes),
        }
    }

    /// CPU (cores, or millicores as `500m`) and memory (a size) of `resources`.
    fn quantities(
        &mut self,
        field: &str,
        cpu: Option<RawNumber>,
        memory: Option<RawSize>,
    ) -> Quantities {
        Quantities {
            cpu_millis: cpu
                .and_then(|c| self.cores(&format!("{field}.cpu"), c))
                .map(|cores| (cores * 1000.0).round().max(1.0) as u64),
            memory_bytes: memory.and_then(|m| self.size(&format!("{field}.memory"), m)),
        }
    }

    /// `depends_on:` of service `name`, names and conditions; whether each name is a
    /// service, and cycles, are checked once every service is known
    /// ([`Cx::check_depends_on`]).
    fn depends_on(&mut self, path: &str, name: &str, raw: Option<RawDependsOn>) -> Vec<Dependency> {
        let Some(raw) = raw else {
            return Vec::new();
        };
        let mut out: Vec<Dependency> = Vec::new();
        for (i, (service, condition)) in raw.entries.into_iter().enumerate() {
            let field = if raw.list {
                format!("{path}.depends_on[{i}]")
            } else {
                format!("{path}.depends_on.{service}")
            };
            let healthy = match condition.as_deref() {
                None | Some("service_started") => false,
                Some("service_healthy") => true,
                Some(other) => {
                    const CONDITIONS: [&str; 2] = ["service_started", "service_healthy"];
                    self.error_hint(
                        &format!("{field}.condition"),
                        format!(
                            "unknown condition `{other}`; expected `service_started` or `service_healthy`"
                        ),
                        did_you_mean(other, CONDITIONS),
                    );
                    false
                }
            };
            if service == name {
                self.error(&field, format!("`{name}` cannot depend on itself"));
                continue;
            }
            if out.iter().any(|d| d.service == service) {
                self.error(&field, format!("`{service}` is listed twice"));
                continue;
            }
            self.depends.push((name.to_owned(), service.clone(), field));
            out.push(Dependency { service, healthy });
        }
        out
    }

    /// Every `depends_on` name is a service shoal runs, and no service waits for itself
    /// through others (a cycle would wait forever).
    pub(super) fn check_depends_on(&mut self, services: &[Service]) {
        let runs = |name: &str| {
            services
                .iter()
                .find(|s| s.name == name)
                .map(|s| matches!(s.source, Source::Command(_)))
        };
        for (from, to, field) in std::mem::take(&mut self.depends) {
            match runs(&to) {
                Some(true) => {}
                Some(false) => self.error(
                    &field,
                    format!(
                        "`{to}` has `servers:` (upstreams shoal does not start): nothing to wait for"
                    ),
                ),
                None => self.error_hint(
                    &field,
                    format!("`{from}` depends on `{to}`, which is not a service"),
                    did_you_mean(
                        &to,
                        services
                            .iter()
                            .map(|s| s.name.as_str())
                            .filter(|n| *n != from),
                    ),
                ),
            }
        }
        // Cycles: depth-first, reported once, at the `depends_on` of the first service
        // of each cycle found.
        let edges = |name: &str| -> Vec<String> {
            match services.iter().find(|s| s.name == name).map(|s| &s.source) {
                Some(Source::Command(c)) => {
                    c.depends_on.iter().map(|d| d.service.clone()).collect()
                }
                _ => Vec::new(),
            }
        };
        let mut done: Vec<String> = Vec::new();
        for start in services {
            let mut path: Vec<String> = Vec::new();
            self.visit(&start.name, &edges, &mut path, &mut done);
        }
    }

    fn visit(
        &mut self,
        name: &str,
        edges: &dyn Fn(&str) -> Vec<String>,
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) {
        if done.iter().any(|d| d == name) {
            return;
        }
        if let Some(at) = path.iter().position(|p| p == name) {
            let mut cycle = path[at..].to_vec();
            cycle.push(name.to_owned());
            self.error(
                &format!("services.{}.depends_on", path[at]),
                format!("depends_on cycle: {}", cycle.join(" -> ")),
            );
            return;
        }
        path.push(name.to_owned());
        for next in edges(name) {
            self.visit(&next, edges, path, done);
        }
        path.pop();
        done.push(name.to_owned());
    }

    /// Static servers, and whether they are `https://` (None if no URL is valid). One
    /// service speaks one scheme.
    fn servers(
        &mut self,
        path: &str,
        raw: Vec<StringOr<RawServer>>,
    ) -> (Vec<Server>, Option<bool>) {
        if raw.is_empty() {
            self.error(&format!("{path}.servers"), "needs at least one server URL");
        }
        let mut out = Vec::new();
        let mut https: Option<(bool, usize)> = None;
        for (i, StringOr(s)) in raw.into_iter().enumerate() {
            let field = format!("{path}.servers[{i}]");
            let weight = s.weight.unwrap_or(1);
            if !(1..=1000).contains(&weight) {
                self.error(
                    &format!("{field}.weight"),
                    "weight must be between 1 and 1000",
                );
            }
            match upstream_authority(&s.url) {
                Ok((authority, tls)) => {
                    match https {
                        None => https = Some((tls, i)),
                        Some((first, at)) if first != tls => {
                            let scheme = |tls| if tls { "https://" } else { "http://" };
                            self.error(
                                &field,
                                format!(
                                    "`{}` is `{}` and `servers[{at}]` is `{}`: the servers of \
                                     one service use one scheme",
                                    s.url,
                                    scheme(tls),
                                    scheme(first)
                                ),
                            );
                        }
                        Some(_) => {}
                    }
                    out.push(Server {
                        url: s.url,
                        authority,
                        weight: weight.clamp(1, 1000),
                    });
                }
                Err(msg) => self.error(&field, msg),
            }
        }
        (out, https.map(|(tls, _)| tls))
    }

    fn balance(&mut self, path: &str, service: &str, raw: Option<RawBalance>) -> Balance {
        let Some(raw) = raw else {
            return Balance::RoundRobin;
        };
        let field = format!("{path}.balance");
        const ALGORITHMS: [&str; 4] = ["round_robin", "least_requests", "hash", "sticky"];
        let algorithm = raw.algorithm.as_deref().unwrap_or("round_robin");
        if raw.hash_on.is_some() && algorithm != "hash" {
            self.misplaced(
                &format!("{field}.hash_on"),
                "`hash_on` applies to `algorithm: hash`",
            );
        }
        if raw.cookie.is_some() && algorithm != "sticky" {
            self.misplaced(
                &format!("{field}.cookie"),
                "`cookie` applies to `algorithm: sticky`",
            );
        }
        match algorithm {
            "round_robin" => Balance::RoundRobin,
            "least_requests" => Balance::LeastRequests,
            "sticky" => {
                let cookie = raw.cookie.unwrap_or_else(|| format!("shoal_{service}"));
                if cookie.is_empty()
                    || !cookie
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    self.error(
                        &format!("{field}.cookie"),
                        format!("`{cookie}` is not a valid cookie name"),
                    );
                }
                Balance::Sticky { cookie }
            }
            "hash" => {
                let has_hash_on = raw.hash_on.is_some();
                let on = raw.hash_on.unwrap_or_default();
                let hash_field = format!("{field}.hash_on");
                if on == "client_ip" {
                    Balance::Hash(HashOn::ClientIp)
                } else if let Some(h) = on.strip_prefix("header:") {
                    self.header_name(&hash_field, h.trim())
                        .map_or(Balance::RoundRobin, |n| Balance::Hash(HashOn::Header(n)))
                } else if let Some(c) = on.strip_prefix("cookie:") {
                    Balance::Hash(HashOn::Cookie(c.trim().to_owned()))
                } else {
                    self.error(
                        if has_hash_on { &hash_field } else { &field },
                        format!("`algorithm: hash` needs `hash_on`: `header:NAME`, `cookie:NAME` or `client_ip` (got `{on}`)"),
                    );
                    Balance::RoundRobin
                }
            }
            other => {
                let f = if raw.algorithm.is_some() {
                    format!("{field}.algorithm")
                } else {
                    field
                };
                let f = if self.locs.value(&f) == self.locs.value(path) {
                    format!("{path}.balance")
                } else {
                    f
                };
                self.error_hint(
                    &f,
                    format!(
                        "unknown algorithm `{other}`; expected one of {}",
                        ALGORITHMS.map(|a| format!("`{a}`")).join(", ")
                    ),
                    did_you_mean(other, ALGORITHMS),
                );
                Balance::RoundRobin
            }
        }
    }

    /// `timeouts:` of a service or a route (`path`). Each is greater than 0, like the
    /// gateway's: there are no unbounded waits.
    pub(super) fn request_timeouts(
        &mut self,
        path: &str,
        raw: &RawRequestTimeouts,
    ) -> RequestTimeouts {
        let response_header = raw.response_header.as_ref().map(|text| {
            let field = format!("{path}.response_header");
            // The default is never used: an invalid value is reported, and a report fails
            // the whole file.
            self.nonzero_duration(&field, Some(text), Timeouts::default().response_header)
        });
        RequestTimeouts { response_header }
    }

    fn logs(&mut self, path: &str, raw: Option<RawLogs>) -> Logs {
        let d = Logs::default();
        let Some(raw) = raw else { return d };
        let field = format!("{path}.max_size");
        let max_size = match raw.max_size {
            None => d.max_size,
            Some(size) => self.size(&field, size).unwrap_or(d.max_size),
        };
        if max_size < MIN_LOG_SIZE {
            self.error(
                &field,
                format!("must be at least {MIN_LOG_SIZE} bytes (1KiB)"),
            );
        }
        Logs {
            max_size: max_size.max(MIN_LOG_SIZE),
            keep: raw.keep.unwrap_or(d.keep),
        }
    }

    fn restart(&mut self, path: &str, raw: Option<RawRestart>) -> Restart {
        let d = Restart::default();
        let Some(raw) = raw else { return d };
        const POLICIES: [&str; 3] = ["no", "on-failure", "always"];
        let policy = match raw.policy.as_deref() {
            None | Some("on-failure") => RestartPolicy::OnFailure,
            Some("no") => RestartPolicy::No,
            Some("always") => RestartPolicy::Always,
            Some(other) => {
                let field = if self.locs.value(&format!("{path}.policy")) == self.locs.value(path) {
                    path.to_owned()
                } else {
                    format!("{path}.policy")
                };
                self.error_hint(
                    &field,
                    format!(
                        "unknown restart policy `{other}`; expected `no`, `on-failure` or `always`"
                    ),
                    did_you_mean(other, POLICIES),
                );
                d.policy
            }
        };
        let r = Restart {
            policy,
            delay: self.duration(&format!("{path}.delay"), raw.delay.as_ref(), d.delay),
            max_delay: self.duration(
                &format!("{path}.max_delay"),
                raw.max_delay.as_ref(),
                d.max_delay,
            ),
            reset_after: self.duration(
                &format!("{path}.reset_after"),
                raw.reset_after.as_ref(),
                d.reset_after,
            ),
            max_attempts: raw.max_attempts.unwrap_or(d.max_attempts),
            window: self.nonzero_duration(&format!("{path}.window"), raw.window.as_ref(), d.window),
        };
        if r.max_delay < r.delay {
            self.error(
                &format!("{path}.max_delay"),
                "must not be shorter than `delay`",
            );
        }
        r
    }
}

/// Smallest `logs.max_size`: below it, rotation would churn on every few lines.
const MIN_LOG_SIZE: u64 = 1024;

/// `http://host:port[/]` → `host:port` (port 80 by default), or `https://host[:port]`
/// (port 443 by default); true for `https`.
fn upstream_authority(url: &str) -> Result<(String, bool), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("`{url}` is not a URL; expected e.g. `http://127.0.0.1:9001`"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(format!(
                "`{url}` needs the scheme `http://` or `https://`, e.g. `http://127.0.0.1:9001`"
            ));
        }
    };
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`{url}`: an upstream URL has no path; use the `add_prefix` middleware to add one"
        ));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{url}` has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "`{url}`: credentials in upstream URLs are not supported"
        ));
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok((format!("{}:{port}", authority.host()), https))
}
