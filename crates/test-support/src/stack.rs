//! Stack files for tests, written as YAML so that the parser and validator users meet are the
//! ones tests go through. Every gateway and admin address is `127.0.0.1:0`, and the replica
//! header (`x-shoal-replica`) is on, so tests can see which backend served.
use std::fmt::Write;

use crate::backends::{Backend, ServerList};
use crate::gateway::TestGateway;

/// A stack file under construction.
#[derive(Debug, Clone, Default)]
pub struct StackBuilder {
    /// `tls:` for the one entrypoint (certificate and key files).
    https: Option<(String, String)>,
    gateway: Vec<String>,
    services: Vec<(String, Service)>,
    middlewares: Vec<(String, String)>,
    routes: Vec<Route>,
    top: Vec<String>,
}

impl StackBuilder {
    /// An empty stack: gateway and admin on `127.0.0.1:0`, replica header on.
    pub fn new() -> StackBuilder {
        StackBuilder::default()
    }

    /// Serve HTTPS on the one entrypoint (named `websecure`) with `certs`' certificate.
    pub fn https(mut self, certs: &crate::TestCerts) -> Self {
        let path = |p: std::path::PathBuf| p.display().to_string();
        self.https = Some((path(certs.cert()), path(certs.key())));
        self
    }

    /// Add raw YAML under `gateway:`, e.g. `"timeouts: { response_header: 300ms }"`.
    pub fn gateway(mut self, yaml: &str) -> Self {
        self.gateway.push(yaml.to_owned());
        self
    }

    /// Add raw top-level YAML, e.g. `"metrics: { prefix: traefik }"`.
    pub fn top(mut self, yaml: &str) -> Self {
        self.top.push(yaml.to_owned());
        self
    }

    /// A service with static `servers` and default settings (round robin).
    pub fn service(self, name: &str, servers: &(impl ServerList + ?Sized)) -> Self {
        self.service_with(name, Service::servers(servers))
    }

    /// A service defined by `service`.
    pub fn service_with(mut self, name: &str, service: Service) -> Self {
        self.services.push((name.to_owned(), service));
        self
    }

    /// A named middleware, its definition in raw YAML, e.g. `"add_prefix: /v1"`.
    pub fn middleware(mut self, name: &str, yaml: &str) -> Self {
        self.middlewares.push((name.to_owned(), yaml.to_owned()));
        self
    }

    /// A route with the default priority (the rule's length) and no middlewares.
    pub fn route(self, rule: &str, service: &str) -> Self {
        self.route_with(Route::new(rule, service))
    }

    /// A route defined by `route`.
    pub fn route_with(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// The stack file's text.
    pub fn yaml(&self) -> String {
        let mut y = match &self.https {
            None => String::from("gateway:\n  listen: 127.0.0.1:0\n"),
            Some((cert, key)) => format!(
                "gateway:\n  entrypoints:\n    websecure:\n      listen: 127.0.0.1:0\n      tls: {{ cert: {}, key: {} }}\n",
                quote(cert),
                quote(key)
            ),
        };
        y.push_str("  replica_header: true\n");
        for extra in &self.gateway {
            push_indented(&mut y, extra, 2);
        }
        y.push_str("admin:\n  listen: 127.0.0.1:0\n");
        y.push_str("services:\n");
        for (name, service) in &self.services {
            let _ = writeln!(y, "  {}:", quote(name));
            for line in &service.lines {
                push_indented(&mut y, line, 4);
            }
        }
        if !self.middlewares.is_empty() {
            y.push_str("middlewares:\n");
            for (name, def) in &self.middlewares {
                let _ = writeln!(y, "  {}:", quote(name));
                push_indented(&mut y, def, 4);
            }
        }
        if !self.routes.is_empty() {
            y.push_str("routes:\n");
            for r in &self.routes {
                let _ = writeln!(y, "  - match: {}", quote(&r.rule));
                let _ = writeln!(y, "    service: {}", quote(&r.service));
                if let Some(name) = &r.name {
                    let _ = writeln!(y, "    name: {}", quote(name));
                }
                if let Some(p) = r.priority {
                    let _ = writeln!(y, "    priority: {p}");
                }
                if let Some(prefix) = &r.strip_prefix {
                    let _ = writeln!(y, "    strip_prefix: {}", quote(prefix));
                }
                if !r.middlewares.is_empty() {
                    let names: Vec<String> = r.middlewares.iter().map(|m| quote(m)).collect();
                    let _ = writeln!(y, "    middlewares: [{}]", names.join(", "));
                }
            }
        }
        for extra in &self.top {
            push_indented(&mut y, extra, 0);
        }
        y
    }

    /// The validated stack, as `shoal_config::parse` makes it. Panics with the diagnostics if
    /// the file is invalid.
    pub fn stack(&self) -> shoal_config::Stack {
        let yaml = self.yaml();
        shoal_config::parse(&yaml, "test.yaml")
            .unwrap_or_else(|e| panic!("invalid test stack:\n{e}\n--- file ---\n{yaml}"))
    }

    /// Write the file to a temp dir and start a whole shoal on it.
    pub async fn start(self) -> TestGateway {
        TestGateway::start(&self).await
    }
}

/// One service: static servers or a command, plus raw YAML settings.
#[derive(Debug, Clone)]
pub struct Service {
    lines: Vec<String>,
}

impl Service {
    /// Static servers, each with weight 1.
    pub fn servers(servers: &(impl ServerList + ?Sized)) -> Service {
        let urls: Vec<String> = servers.urls().iter().map(|u| quote(u)).collect();
        Service {
            lines: vec![format!("servers: [{}]", urls.join(", "))],
        }
    }

    /// Static servers with weights.
    pub fn weighted(servers: &[(&Backend, u32)]) -> Service {
        let entries: Vec<String> = servers
            .iter()
            .map(|(b, w)| format!("{{ url: {}, weight: {w} }}", quote(b.url())))
            .collect();
        Service {
            lines: vec![format!("servers: [{}]", entries.join(", "))],
        }
    }

    /// A local-process service scaled to zero: it exists, but never has a ready endpoint.
    pub fn without_replicas() -> Service {
        Service {
            lines: vec!["command: [does-not-matter]".into(), "replicas: 0".into()],
        }
    }

    /// A local-process service running `argv`, a YAML flow sequence such as
    /// `"[python3, -m, app]"`, with default settings.
    pub fn command(argv: &str) -> Service {
        Service {
            lines: vec![format!("command: {argv}")],
        }
    }

    /// A worker service (`kind: worker`) whose replicas run `worker` as test `test` of the
    /// current test binary (see [`crate::worker`]).
    pub fn worker(worker: &crate::worker::Worker, test: &str) -> Service {
        let mut lines = vec!["kind: worker".to_owned()];
        lines.extend(worker.service_yaml(test));
        Service { lines }
    }

    /// `balance:` in raw YAML, e.g. `"least_requests"` or
    /// `"{ algorithm: hash, hash_on: 'header:X-User' }"`.
    pub fn balance(self, yaml: &str) -> Service {
        self.with(&format!("balance: {yaml}"))
    }

    /// Any other setting, in raw YAML.
    pub fn with(mut self, yaml: &str) -> Service {
        self.lines.push(yaml.to_owned());
        self
    }
}

/// One route.
#[derive(Debug, Clone)]
pub struct Route {
    rule: String,
    service: String,
    priority: Option<i64>,
    strip_prefix: Option<String>,
    middlewares: Vec<String>,
    name: Option<String>,
}

impl Route {
    /// Requests matching `rule` go to `service`.
    pub fn new(rule: &str, service: &str) -> Route {
        Route {
            rule: rule.to_owned(),
            service: service.to_owned(),
            priority: None,
            strip_prefix: None,
            middlewares: Vec::new(),
            name: None,
        }
    }

    /// The route's name (for metrics and the access log).
    pub fn name(mut self, name: &str) -> Route {
        self.name = Some(name.to_owned());
        self
    }

    /// An explicit priority (higher wins).
    pub fn priority(mut self, priority: i64) -> Route {
        self.priority = Some(priority);
        self
    }

    /// The route's inline `strip_prefix`.
    pub fn strip_prefix(mut self, prefix: &str) -> Route {
        self.strip_prefix = Some(prefix.to_owned());
        self
    }

    /// Run the named middleware (after those added before).
    pub fn middleware(mut self, name: &str) -> Route {
        self.middlewares.push(name.to_owned());
        self
    }
}

/// A YAML single-quoted scalar: no escapes are processed, `'` is doubled.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn push_indented(out: &mut String, yaml: &str, indent: usize) {
    for line in yaml.lines() {
        let _ = writeln!(out, "{:indent$}{line}", "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_stack_the_validator_accepts() {
        let stack = StackBuilder::new()
            .gateway("timeouts: { response_header: 300ms }")
            .service_with(
                "web",
                Service::servers(&vec!["http://127.0.0.1:9".to_owned()])
                    .balance("{ algorithm: hash, hash_on: 'header:X-User' }"),
            )
            .service_with("empty", Service::without_replicas())
            .middleware("v1", "add_prefix: /v1")
            .route_with(
                Route::new("!Path(`/x`) && Header(`A`, `it's`)", "web")
                    .priority(7)
                    .strip_prefix("/api")
                    .middleware("v1"),
            )
            .route("PathPrefix(`/`)", "empty")
            .stack();
        assert_eq!(stack.routes.len(), 2);
        // Sorted by priority: `PathPrefix(`/`)` has its length, 15.
        assert_eq!(stack.routes[0].priority, 15);
        assert_eq!(stack.routes[1].priority, 7);
        assert_eq!(stack.routes[1].middlewares.len(), 2);
        assert_eq!(
            stack.gateway.timeouts.response_header,
            std::time::Duration::from_millis(300)
        );
        assert_eq!(stack.gateway.entrypoints[0].listen.port(), 0);
    }
}
