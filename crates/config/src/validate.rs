//! Raw → validated: resolve names, parse rules and addresses, fill defaults, and report every
//! problem with its place in the file.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use shoal_autoscale::{RatePolicy, Target};
use shoal_route::Rule;

use crate::duration::{format_duration, parse_duration};
use crate::error::{Diagnostic, Diagnostics, did_you_mean};
use crate::locate::Locations;
use crate::model::*;
use crate::raw::*;

#[path = "validate_edge.rs"]
mod edge;
#[path = "validate_rollout.rs"]
mod rollout;

/// Default gateway address.
pub const DEFAULT_GATEWAY_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8000);
/// Default admin API address.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// Header used when `replica_header: true`.
pub const DEFAULT_REPLICA_HEADER: &str = "x-shoal-replica";

/// Read and validate a stack file for `shoal up` (local processes). Relative `workdir`s are
/// resolved against the file's folder.
pub fn load(path: &Path) -> Result<Stack, Diagnostics> {
    load_for(path, Runtime::Local)
}

/// Read and validate a stack file for `target`.
pub fn load_for(path: &Path, target: Runtime) -> Result<Stack, Diagnostics> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: file.clone(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read the stack file: {e}"),
            hint: None,
        }])
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse_with_base(&source, &file, &base, target)
}

/// Validate stack-file text for `shoal up`. `file` is only used in messages.
pub fn parse(source: &str, file: &str) -> Result<Stack, Diagnostics> {
    parse_for(source, file, Runtime::Local)
}

/// Validate stack-file text for `target`. `file` is only used in messages.
pub fn parse_for(source: &str, file: &str, target: Runtime) -> Result<Stack, Diagnostics> {
    parse_with_base(source, file, Path::new(""), target)
}

fn parse_with_base(
    source: &str,
    file: &str,
    base: &Path,
    target: Runtime,
) -> Result<Stack, Diagnostics> {
    // An unknown field stops serde at the first one; so that `shoal check` reports every
    // problem in one run, each unknown field's entry is blanked out (line numbers kept) and
    // the file parsed again, up to a bound. Any other parse error ends it there.
    let mut text = std::borrow::Cow::Borrowed(source);
    let mut unknown = Vec::new();
    let raw: RawStack = loop {
        if text.trim().is_empty() {
            break RawStack::default();
        }
        match serde_yaml::from_str(&text) {
            Ok(raw) => break raw,
            Err(e) => {
                let d = from_serde(&e, file);
                let next = (d.message.starts_with("unknown field") && unknown.len() < 50)
                    .then(|| without_entry(&text, d.line, d.column))
                    .flatten();
                unknown.push(d);
                match next {
                    Some(t) => text = std::borrow::Cow::Owned(t),
                    None => return Err(Diagnostics(unknown)),
                }
            }
        }
    };
    let mut cx = Cx {
        file,
        locs: Locations::index(&text),
        diags: unknown,
        target,
        depends: Vec::new(),
    };
    let stack = cx.stack(raw, base);
    if cx.diags.is_empty() {
        Ok(stack)
    } else {
        cx.diags.sort_by_key(|d| (d.line, d.column));
        Err(Diagnostics(cx.diags))
    }
}

/// `source` with the block-mapping entry whose key starts at `line`:`column` (1-based)
/// blanked out, its nested lines too, every line kept (so positions stay true). `None` when
/// the key is not the first thing on its line (a flow mapping, a list item's first key):
/// those are left for the user to fix one at a time.
fn without_entry(source: &str, line: usize, column: usize) -> Option<String> {
    let lines: Vec<&str> = source.split('\n').collect();
    let key_line = lines.get(line.checked_sub(1)?)?;
    let indent = column.checked_sub(1)?;
    // Bytes, not a str slice: a column counted in characters after a multi-byte one must
    // not panic (such a line is not a plain block key anyway).
    if !key_line
        .as_bytes()
        .get(..indent)?
        .iter()
        .all(|b| *b == b' ')
    {
        return None;
    }
    let nested = |l: &str| {
        let t = l.trim_start_matches(' ');
        t.is_empty() || t.starts_with('#') || l.len() - t.len() > indent
    };
    let mut end = line; // one past the entry's last line, 0-based
    while end < lines.len() && nested(lines[end]) {
        end += 1;
    }
    // Trailing blank lines belong to what follows.
    while end > line && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    let out: Vec<&str> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| if i + 1 >= line && i < end { "" } else { *l })
        .collect();
    Some(out.join("\n"))
}

/// Turn serde_yaml's message (`path: message at line L column C`) into a diagnostic, adding a
/// suggestion for misspelt field and variant names.
fn from_serde(e: &serde_yaml::Error, file: &str) -> Diagnostic {
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let mut text = e.to_string();
    if let Some(i) = text.rfind(" at line ") {
        text.truncate(i);
    }
    let (field, message) = match text.split_once(": ") {
        Some((p, m)) if !p.contains(' ') => (p.to_owned(), m.to_owned()),
        _ => (String::new(), text),
    };
    let hint = unknown_name_hint(&message);
    let field = if field == "." { String::new() } else { field };
    Diagnostic {
        file: file.to_owned(),
        line,
        column,
        field,
        message,
        hint,
    }
}

/// For "unknown field `x`, expected one of `a`, `b`" (or `unknown variant`), the nearest name.
fn unknown_name_hint(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (given, expected) = rest.split_once('`')?;
    let names = expected.split('`').skip(1).step_by(2);
    did_you_mean(given, names)
}

/// Validation context: where fields are, and the problems found so far.
struct Cx<'a> {
    file: &'a str,
    locs: Locations,
    diags: Vec<Diagnostic>,
    /// The runtime the file is checked for.
    target: Runtime,
    /// `depends_on` entries seen: (service, the one it waits for, field), checked once
    /// every service is known.
    depends: Vec<(String, String, String)>,
}

impl Cx<'_> {
    fn push(&mut self, field: &str, at_key: bool, message: String, hint: Option<String>) {
        let place = if at_key {
            self.locs.key(field)
        } else {
            self.locs.value(field)
        };
        self.diags.push(Diagnostic {
            file: self.file.to_owned(),
            line: place.line,
            column: place.column,
            field: field.to_owned(),
            message,
            hint,
        });
    }

    /// A problem with a field's value.
    fn error(&mut self, field: &str, message: impl Into<String>) {
        self.push(field, false, message.into(), None);
    }

    /// A problem with a field's value, with a suggestion.
    fn error_hint(&mut self, field: &str, message: impl Into<String>, hint: Option<String>) {
        self.push(field, false, message.into(), hint);
    }

    /// A field that must not be there (reported at its key).
    fn misplaced(&mut self, field: &str, message: impl Into<String>) {
        self.push(field, true, message.into(), None);
    }

    fn duration(&mut self, field: &str, value: Option<&String>, default: Duration) -> Duration {
        match value.map(|v| parse_duration(v)) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.error(field, e);
                default
            }
        }
    }

    fn positive(&mut self, field: &str, value: Option<u32>, default: u32) -> u32 {
        match value {
            Some(0) => {
                self.error(field, "must be at least 1");
                default
            }
            Some(v) => v,
            None => default,
        }
    }

    fn socket_addr(&mut self, field: &str, text: &str) -> Option<SocketAddr> {
        let text = text.trim();
        let normalized = match text.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => text.to_owned(),
        };
        match normalized.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                let hint = (!text.contains(':')).then(|| format!("add a port, e.g. `{text}:8000`"));
                self.error_hint(
                    field,
                    format!(
                        "`{text}` is not an address; expected IP:PORT such as `127.0.0.1:8000`"
                    ),
                    hint,
                );
                None
            }
        }
    }

    fn header_name(&mut self, field: &str, name: &str) -> Option<HeaderName> {
        match HeaderName::try_from(name) {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(field, format!("`{name}` is not a valid header name"));
                None
            }
        }
    }

    fn stack(&mut self, raw: RawStack, base: &Path) -> Stack {
        let gateway = self.gateway(raw.gateway, base);
        let admin = self.admin(raw.admin);
        let services: Vec<Service> = raw
            .services
            .into_iter()
            .filter_map(|(name, s)| self.service(name, s, base))
            .collect();
        self.check_depends_on(&services);
        let middlewares = self.middlewares(raw.middlewares, base);
        let middleware_names = &middlewares.names;
        let entrypoint_names: Vec<&str> = gateway
            .entrypoints
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        let mut routes = Vec::new();
        let mut route_names: Vec<String> = Vec::new();
        for (i, r) in raw.routes.into_iter().enumerate() {
            let path = format!("routes[{i}]");
            let name = r.name.clone().unwrap_or_else(|| format!("route-{i}"));
            if route_names.contains(&name) {
                self.error(
                    &format!("{path}.name"),
                    format!("route name `{name}` is used twice"),
                );
            }
            route_names.push(name.clone());
            let rule = match Rule::parse(&r.rule) {
                Ok(rule) => Some(rule),
                Err(e) => {
                    let field = format!("{path}.match");
                    let place = self.locs.value(&field);
                    let (line, column) = offset_place(&r.rule, e.offset, place);
                    self.diags.push(Diagnostic {
                        file: self.file.to_owned(),
                        line,
                        column,
                        field,
                        message: format!("invalid rule: {}", e.message),
                        hint: None,
                    });
                    None
                }
            };
            let targets = self.targets(
                &path, &name, r.service, r.services, r.sticky, r.canary, r.mirror, &services,
            );
            let mut chain = Vec::new();
            if let Some(prefixes) = r.strip_prefix
                && let Some(m) = self.strip_prefix(&format!("{path}.strip_prefix"), prefixes)
            {
                chain.push(m);
            }
            for (j, m) in r.middlewares.iter().enumerate() {
                // A chain's members, flattened, in place.
                match middlewares.expanded.get(m) {
                    Some(Some(list)) => chain.extend(list.iter().cloned()),
                    Some(None) => {} // already reported
                    None => {
                        let hint = did_you_mean(m, middleware_names.iter().map(String::as_str))
                            .or_else(|| {
                                let names: Vec<&str> =
                                    middleware_names.iter().map(String::as_str).collect();
                                Some(format!("defined middlewares: {}", list_or_none(&names)))
                            });
                        self.error_hint(
                            &format!("{path}.middlewares[{j}]"),
                            format!("unknown middleware `{m}`"),
                            hint,
                        );
                    }
                }
            }
            if let Some(eps) = &r.entrypoints {
                for (j, e) in eps.iter().enumerate() {
                    let field = format!("{path}.entrypoints[{j}]");
                    if !entrypoint_names.contains(&e.as_str()) {
                        let hint = did_you_mean(e, entrypoint_names.iter().copied());
                        self.error_hint(&field, format!("unknown entrypoint `{e}`"), hint);
                    } else if let Some(to) = gateway
                        .entrypoints
                        .iter()
                        .find(|ep| ep.name == *e)
                        .and_then(|ep| ep.redirect_to.as_ref())
                    {
                        self.error_hint(
                            &field,
                            format!(
                                "entrypoint `{e}` redirects every request to `{}`; routes \
                                 cannot listen on it",
                                to.entrypoint
                            ),
                            Some(format!("list `{}` instead", to.entrypoint)),
                        );
                    }
                }
            }
            let retry = r.retry.map(|raw| {
                let base = services
                    .iter()
                    .find(|s| s.name == targets.service)
                    .map(|s| s.retry.clone())
                    .unwrap_or_default();
                self.retry(&format!("{path}.retry"), Some(raw), &base)
            });
            let timeouts = match &r.timeouts {
                Some(t) => self.request_timeouts(&format!("{path}.timeouts"), t),
                None => RequestTimeouts::default(),
            };
            if let Some(rule) = rule {
                let priority = r.priority.unwrap_or_else(|| rule.default_priority());
                routes.push(Route {
                    name,
                    rule,
                    priority,
                    service: targets.service,
                    split: targets.split,
                    mirror: targets.mirror,
                    middlewares: chain,
                    entrypoints: r.entrypoints,
                    retry,
                    timeouts,
                });
            }
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.priority));
        let metrics = self.metrics(raw.metrics);
        let access_log = self.access_log(raw.access_log, base);
        Stack {
            metrics,
            access_log,
            gateway,
            admin,
            services,
            routes,
        }
    }

    fn gateway(&mut self, raw: RawGateway, base: &Path) -> Gateway {
        let mut entrypoints = Vec::new();
        match (&raw.listen, raw.entrypoints) {
            (Some(_), Some(_)) => self.misplaced(
                "gateway.listen",
                "set either `listen` (one entrypoint named `web`) or `entrypoints`, not both",
            ),
            (Some(listen), None) => {
                if let Some(addr) = self.socket_addr("gateway.listen", listen) {
                    entrypoints.push(Entrypoint {
                        name: "web".into(),
                        listen: addr,
                        tls: None,
                        redirect_to: None,
                    });
                }
            }
            (None, Some(eps)) => {
                if eps.is_empty() {
                    self.error("gateway.entrypoints", "needs at least one entrypoint");
                }
                // `redirect_to` names another entrypoint: resolved once all are read.
                let mut declared = Vec::new();
                let mut redirects = Vec::new();
                for (name, ep) in eps {
                    let path = format!("gateway.entrypoints.{name}");
                    let field = format!("{path}.listen");
                    let addr = self.socket_addr(&field, &ep.listen);
                    declared.push((name.clone(), ep.tls.is_some(), addr.map(|a| a.port())));
                    match (&ep.tls, ep.redirect_to) {
                        (Some(_), Some(_)) => self.misplaced(
                            &format!("{path}.redirect_to"),
                            "an entrypoint with `tls` serves HTTPS itself; `redirect_to` is for \
                             a plain HTTP entrypoint that sends clients to an HTTPS one",
                        ),
                        (None, Some(target)) => redirects.push((name.clone(), target)),
                        _ => {}
                    }
                    let tls = ep
                        .tls
                        .and_then(|t| self.entrypoint_tls(&format!("{path}.tls"), t, base));
                    if let Some(addr) = addr {
                        // Port 0 picks a free port for each: never a clash.
                        if addr.port() != 0
                            && entrypoints.iter().any(|e: &Entrypoint| e.listen == addr)
                        {
                            self.error(&field, format!("{addr} is used by two entrypoints"));
                        }
                        entrypoints.push(Entrypoint {
                            name,
                            listen: addr,
                            tls,
                            redirect_to: None,
                        });
                    }
                }
                self.redirects(&mut entrypoints, &declared, redirects);
            }
            (None, None) => {
                entrypoints.push(Entrypoint {
                    name: "web".into(),
                    listen: DEFAULT_GATEWAY_LISTEN,
                    tls: None,
                    redirect_to: None,
                });
            }
        }
        let workers = raw.workers.unwrap_or(0);
        if workers > 1024 {
            self.error("gateway.workers", "at most 1024 worker threads");
        }
        let d = Timeouts::default();
        let t = &raw.timeouts;
        let timeouts = Timeouts {
            connect: self.nonzero_duration(
                "gateway.timeouts.connect",
                t.connect.as_ref(),
                d.connect,
            ),
            response_header: self.nonzero_duration(
                "gateway.timeouts.response_header",
                t.response_header.as_ref(),
                d.response_header,
            ),
            upstream_idle: self.nonzero_duration(
                "gateway.timeouts.upstream_idle",
                t.upstream_idle.as_ref(),
                d.upstream_idle,
            ),
            client_idle: self.nonzero_duration(
                "gateway.timeouts.client_idle",
                t.client_idle.as_ref(),
                d.client_idle,
            ),
            header_read: self.nonzero_duration(
                "gateway.timeouts.header_read",
                t.header_read.as_ref(),
                d.header_read,
            ),
            body_idle: self.nonzero_duration(
                "gateway.timeouts.body_idle",
                t.body_idle.as_ref(),
                d.body_idle,
            ),
            grpc_max: self.nonzero_duration(
                "gateway.timeouts.grpc_max",
                t.grpc_max.as_ref(),
                d.grpc_max,
            ),
        };
        let limits = self.limits(raw.limits);
        let shutdown_grace = self.duration(
            "gateway.shutdown_grace",
            raw.shutdown_grace.as_ref(),
            Duration::from_secs(10),
        );
        let replica_header = match raw.replica_header {
            None | Some(BoolOrString::Bool(false)) => None,
            Some(BoolOrString::Bool(true)) => Some(HeaderName::from_static(DEFAULT_REPLICA_HEADER)),
            Some(BoolOrString::String(s)) => self.header_name("gateway.replica_header", &s),
        };
        Gateway {
            entrypoints,
            workers,
            timeouts,
            shutdown_grace,
            replica_header,
            max_idle_per_upstream: raw.max_idle_per_upstream.unwrap_or(1024),
            limits,
        }
    }

    fn metrics(&mut self, raw: Option<BoolOr<RawMetrics>>) -> Metrics {
        let d = Metrics::default();
        let raw = match raw {
            None | Some(BoolOr::Bool(true)) => return d,
            Some(BoolOr::Bool(false)) => {
                return Metrics {
                    enabled: false,
                    ..d
                };
            }
            Some(BoolOr::Map(raw)) => raw,
        };
        let prefix = match raw.prefix.as_deref() {
            None | Some("shoal") => MetricsPrefix::Shoal,
            Some("traefik") => MetricsPrefix::Traefik,
            Some(other) => {
                self.error_hint(
                    "metrics.prefix",
                    format!("unknown prefix `{other}`, expected `shoal` or `traefik`"),
                    did_you_mean(other, ["shoal", "traefik"]),
                );
                MetricsPrefix::Shoal
            }
        };
        let buckets = match raw.buckets {
            None => d.buckets,
            Some(b) => {
                let ascending = b.windows(2).all(|w| w[0] < w[1]);
                if b.is_empty() || b.len() > MAX_BUCKETS {
                    self.error(
                        "metrics.buckets",
                        format!("list 1 to {MAX_BUCKETS} bucket bounds, in seconds"),
                    );
                    d.buckets
                } else if !ascending || b.iter().any(|v| !v.is_finite() || *v <= 0.0) {
                    self.error(
                        "metrics.buckets",
                        "bucket bounds are seconds above 0, in ascending order (e.g. `[0.1, 0.3, 1.2, 5]`)",
                    );
                    d.buckets
                } else {
                    b
                }
            }
        };
        Metrics {
            enabled: true,
            prefix,
            buckets,
        }
    }

    fn access_log(&mut self, raw: Option<BoolOr<RawAccessLog>>, base: &Path) -> Option<AccessLog> {
        let raw = match raw {
            None | Some(BoolOr::Bool(false)) => return None,
            Some(BoolOr::Bool(true)) => RawAccessLog::default(),
            Some(BoolOr::Map(raw)) => raw,
        };
        let format = match raw.format.as_deref() {
            None | Some("json") => AccessLogFormat::Json,
            Some("common") => AccessLogFormat::Common,
            Some(other) => {
                self.error_hint(
                    "access_log.format",
                    format!("unknown format `{other}`, expected `json` or `common`"),
                    did_you_mean(other, ["json", "common"]),
                );
                AccessLogFormat::Json
            }
        };
        let path = match raw.path.as_deref() {
            None | Some("-") => None,
            Some("") => {
                self.error(
                    "access_log.path",
                    "give a file, or leave `path` out for standard output",
                );
                None
            }
            Some(p) => Some(resolve(base, p)),
        };
        let buffer = match raw.buffer {
            None => 16384,
            Some(0) => {
                self.error("access_log.buffer", "must be at least 1");
                16384
            }
            Some(n) if n > 1_000_000 => {
                self.error("access_log.buffer", "at most 1000000 lines");
                16384
            }
            Some(n) => n,
        };
        Some(AccessLog {
            format,
            path,
            buffer,
        })
    }

    fn nonzero_duration(
        &mut self,
        field: &str,
        value: Option<&String>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(field, value, default);
        if d.is_zero() {
            self.error(
                field,
                "must be greater than 0 (there are no unbounded timeouts)",
            );
            return default;
        }
        d
    }

    fn admin(&mut self, raw: RawAdmin) -> Admin {
        let listen = match &raw.listen {
            Some(text) => self
                .socket_addr("admin.listen", text)
                .unwrap_or(DEFAULT_ADMIN_LISTEN),
            None => DEFAULT_ADMIN_LISTEN,
        };
        if !listen.ip().is_loopback() && raw.token.as_deref().is_none_or(str::is_empty) {
            self.error_hint(
                "admin.listen",
                format!("{listen} is reachable beyond this machine, and the admin API can scale and stop services"),
                Some("set `admin.token` (clients send `Authorization: Bearer TOKEN`), or listen on 127.0.0.1".into()),
            );
        }
        Admin {
            listen,
            token: raw.token.filter(|t| !t.is_empty()),
        }
    }

    fn service(&mut self, name: String, raw: RawService, base: &Path) -> Option<Service> {
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

    /// `timeouts:` of a service or a route (`path`). Each is greater than 0, like the
    /// gateway's: there are no unbounded waits.
    fn request_timeouts(&mut self, path: &str, raw: &RawRequestTimeouts) -> RequestTimeouts {
        let response_header = raw.response_header.as_ref().map(|text| {
            let field = format!("{path}.response_header");
            // The default is never used: an invalid value is reported, and a report fails
            // the whole file.
            self.nonzero_duration(&field, Some(text), Timeouts::default().response_header)
        });
        RequestTimeouts { response_header }
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
    fn check_depends_on(&mut self, services: &[Service]) {
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

    fn health(&mut self, path: &str, raw: Option<BoolOr<RawHealth>>, servers: bool) -> Health {
        let d = Health::default();
        let raw = match raw {
            None | Some(BoolOr::Bool(true)) => return d,
            Some(BoolOr::Bool(false)) => {
                return Health {
                    enabled: false,
                    liveness: None,
                    ..d
                };
            }
            Some(BoolOr::Map(raw)) => raw,
        };
        if let Some(p) = &raw.path {
            if !p.starts_with('/') {
                self.error(
                    &format!("{path}.path"),
                    format!("`{p}` must start with `/`"),
                );
            }
            if raw.tcp == Some(true) {
                self.misplaced(
                    &format!("{path}.tcp"),
                    "set either `path` (HTTP check) or `tcp: true`, not both",
                );
            }
        }
        if servers {
            for (field, present) in [
                ("start_period", raw.start_period.is_some()),
                ("start_timeout", raw.start_timeout.is_some()),
                ("liveness", raw.liveness.is_some()),
            ] {
                if present {
                    self.misplaced(
                        &format!("{path}.{field}"),
                        format!("`{field}` applies to services with `command`, not to `servers`"),
                    );
                }
            }
        }
        let expect_field = format!("{path}.expect_status");
        let expect_status = match &raw.expect_status {
            None => d.expect_status.clone(),
            Some(_) if raw.path.is_none() => {
                self.misplaced(
                    &expect_field,
                    "`expect_status` applies to HTTP checks; set `path` too",
                );
                d.expect_status.clone()
            }
            Some(statuses) if statuses.items.is_empty() => {
                self.error(&expect_field, "needs at least one status");
                d.expect_status.clone()
            }
            Some(statuses) => self
                .statuses(&expect_field, statuses, 100, 599)
                .unwrap_or_else(|| d.expect_status.clone()),
        };
        Health {
            enabled: true,
            path: raw.path.clone(),
            expect_status,
            interval: self.nonzero_duration(
                &format!("{path}.interval"),
                raw.interval.as_ref(),
                d.interval,
            ),
            fast_interval: self.nonzero_duration(
                &format!("{path}.fast_interval"),
                raw.fast_interval.as_ref(),
                d.fast_interval,
            ),
            timeout: self.nonzero_duration(
                &format!("{path}.timeout"),
                raw.timeout.as_ref(),
                d.timeout,
            ),
            healthy_threshold: self.positive(
                &format!("{path}.healthy_threshold"),
                raw.healthy_threshold,
                d.healthy_threshold,
            ),
            unhealthy_threshold: self.positive(
                &format!("{path}.unhealthy_threshold"),
                raw.unhealthy_threshold,
                d.unhealthy_threshold,
            ),
            start_period: self.duration(
                &format!("{path}.start_period"),
                raw.start_period.as_ref(),
                d.start_period,
            ),
            start_timeout: self.nonzero_duration(
                &format!("{path}.start_timeout"),
                raw.start_timeout.as_ref(),
                d.start_timeout,
            ),
            liveness: match &raw.liveness {
                None | Some(BoolOrString::Bool(true)) => d.liveness,
                Some(BoolOrString::Bool(false)) => None,
                Some(BoolOrString::String(s)) => Some(self.nonzero_duration(
                    &format!("{path}.liveness"),
                    Some(s),
                    Duration::from_secs(30),
                )),
            },
        }
    }

    /// HTTP statuses and ranges, each within `min..=max`, as inclusive ranges. None if any
    /// is invalid (each is reported, at its list item when written as a list).
    fn statuses(
        &mut self,
        field: &str,
        raw: &RawStatuses,
        min: u16,
        max: u16,
    ) -> Option<Vec<(u16, u16)>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in raw.items.iter().enumerate() {
            let f = if raw.list {
                format!("{field}[{i}]")
            } else {
                field.to_owned()
            };
            match parse_status_range(item, min, max) {
                Ok(range) => out.push(range),
                Err(e) => {
                    self.error(&f, e);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// Retry settings over `base` (the defaults for a service; the service's for a route).
    fn retry(&mut self, path: &str, raw: Option<BoolOr<RawRetry>>, base: &Retry) -> Retry {
        let raw = match raw {
            None | Some(BoolOr::Bool(true)) => return base.clone(),
            Some(BoolOr::Bool(false)) => {
                return Retry {
                    attempts: 1,
                    ..base.clone()
                };
            }
            Some(BoolOr::Map(raw)) => raw,
        };
        let attempts = match raw.attempts {
            None => base.attempts,
            Some(n @ 1..=MAX_ATTEMPTS) => n,
            Some(_) => {
                self.error(
                    &format!("{path}.attempts"),
                    format!("must be between 1 and {MAX_ATTEMPTS} (tries per request, the first included; 1 = never retry)"),
                );
                base.attempts
            }
        };
        let on_status = match &raw.on_status {
            None => base.on_status.clone(),
            Some(statuses) => match self.statuses(&format!("{path}.on_status"), statuses, 400, 599)
            {
                Some(ranges) => {
                    let mut out: Vec<u16> = Vec::new();
                    for (lo, hi) in ranges {
                        for s in lo..=hi {
                            if !out.contains(&s) {
                                out.push(s);
                            }
                        }
                    }
                    out
                }
                None => base.on_status.clone(),
            },
        };
        let per_try_timeout = match raw.per_try_timeout {
            None => base.per_try_timeout,
            Some(t) => self
                .per_try_timeout(&format!("{path}.per_try_timeout"), t)
                .unwrap_or(base.per_try_timeout),
        };
        let max_replay_body = match raw.max_replay_body {
            None => base.max_replay_body,
            Some(size) => self
                .size(&format!("{path}.max_replay_body"), size)
                .unwrap_or(base.max_replay_body),
        };
        let (mut budget_ratio, mut budget_min_per_sec) =
            (base.budget_ratio, base.budget_min_per_sec);
        if let Some(budget) = raw.budget {
            if let Some(r) = budget.ratio {
                budget_ratio = self
                    .ratio(&format!("{path}.budget.ratio"), r, true)
                    .unwrap_or(budget_ratio);
            }
            budget_min_per_sec = budget.min_per_sec.unwrap_or(budget_min_per_sec);
        }
        Retry {
            attempts,
            on_status,
            per_try_timeout,
            max_replay_body,
            budget_ratio,
            budget_min_per_sec,
            non_idempotent: raw.non_idempotent.unwrap_or(base.non_idempotent),
        }
    }

    fn per_try_timeout(&mut self, field: &str, raw: RawPerTryTimeout) -> Option<PerTryTimeout> {
        const WORDS: [&str; 2] = ["auto", "off"];
        let expected = "expected `auto`, `off` or a duration like `300ms`";
        let text = match raw {
            RawPerTryTimeout::Bool(false) => return Some(PerTryTimeout::Off),
            RawPerTryTimeout::Bool(true) => {
                self.error(
                    field,
                    format!("`true` is not a per-try timeout; {expected}"),
                );
                return None;
            }
            RawPerTryTimeout::Text(s) => s,
        };
        match text.trim() {
            "auto" => Some(PerTryTimeout::Auto),
            "off" => Some(PerTryTimeout::Off),
            t if t.starts_with(|c: char| c.is_ascii_digit() || c == '.') => {
                match parse_duration(t) {
                    Ok(d) if d.is_zero() => {
                        self.error_hint(
                            field,
                            "must be greater than 0",
                            Some("write `off` to never send a request to a second replica while the first try is pending".into()),
                        );
                        None
                    }
                    Ok(d) => Some(PerTryTimeout::Fixed(d)),
                    Err(e) => {
                        self.error(field, e);
                        None
                    }
                }
            }
            other => {
                self.error_hint(
                    field,
                    format!("`{other}` is not a per-try timeout; {expected}"),
                    did_you_mean(other, WORDS),
                );
                None
            }
        }
    }

    fn passive(&mut self, path: &str, raw: Option<BoolOr<RawPassive>>) -> Passive {
        let d = Passive::default();
        let raw = match raw {
            None | Some(BoolOr::Bool(true)) => return d,
            Some(BoolOr::Bool(false)) => {
                return Passive {
                    enabled: false,
                    ..d
                };
            }
            Some(BoolOr::Map(raw)) => raw,
        };
        let base_ejection = self.nonzero_duration(
            &format!("{path}.base_ejection"),
            raw.base_ejection.as_ref(),
            d.base_ejection,
        );
        let max_ejection = self.nonzero_duration(
            &format!("{path}.max_ejection"),
            raw.max_ejection.as_ref(),
            d.max_ejection,
        );
        if max_ejection < base_ejection {
            if raw.max_ejection.is_some() {
                self.error(
                    &format!("{path}.max_ejection"),
                    format!(
                        "must not be shorter than `base_ejection` ({})",
                        format_duration(base_ejection)
                    ),
                );
            } else {
                self.error_hint(
                    &format!("{path}.base_ejection"),
                    format!(
                        "is longer than `max_ejection` (default {})",
                        format_duration(max_ejection)
                    ),
                    Some("set `max_ejection` too".into()),
                );
            }
        }
        let max_ejected_percent = match raw.max_ejected_percent {
            None => d.max_ejected_percent,
            Some(p) => self
                .percent(&format!("{path}.max_ejected_percent"), p)
                .unwrap_or(d.max_ejected_percent),
        };
        Passive {
            enabled: true,
            consecutive_5xx: self.positive(
                &format!("{path}.consecutive_5xx"),
                raw.consecutive_5xx,
                d.consecutive_5xx,
            ),
            consecutive_failures: self.positive(
                &format!("{path}.consecutive_failures"),
                raw.consecutive_failures,
                d.consecutive_failures,
            ),
            base_ejection,
            max_ejection: max_ejection.max(base_ejection),
            max_ejected_percent,
        }
    }

    fn circuit_breaker(
        &mut self,
        path: &str,
        raw: Option<BoolOr<RawCircuitBreaker>>,
    ) -> Option<CircuitBreaker> {
        let d = CircuitBreaker::default();
        let raw = match raw {
            None | Some(BoolOr::Bool(false)) => return None,
            Some(BoolOr::Bool(true)) => return Some(d),
            Some(BoolOr::Map(raw)) => raw,
        };
        let given = raw.error_ratio.is_some() || raw.slow_ratio.is_some();
        let error_ratio = match raw.error_ratio {
            None if given => None,
            None => d.error_ratio,
            Some(r) => self
                .ratio(&format!("{path}.error_ratio"), r, false)
                .or(d.error_ratio),
        };
        let slow_ratio = match raw.slow_ratio {
            None => d.slow_ratio,
            Some(r) => self.ratio(&format!("{path}.slow_ratio"), r, false),
        };
        Some(CircuitBreaker {
            window: self.nonzero_duration(&format!("{path}.window"), raw.window.as_ref(), d.window),
            min_requests: self.positive(
                &format!("{path}.min_requests"),
                raw.min_requests,
                d.min_requests,
            ),
            error_ratio,
            slow_call: self.nonzero_duration(
                &format!("{path}.slow_call"),
                raw.slow_call.as_ref(),
                d.slow_call,
            ),
            slow_ratio,
            open_for: self.nonzero_duration(
                &format!("{path}.open_for"),
                raw.open_for.as_ref(),
                d.open_for,
            ),
            half_open_requests: self.positive(
                &format!("{path}.half_open_requests"),
                raw.half_open_requests,
                d.half_open_requests,
            ),
        })
    }

    /// A share: `0.2` or `20%`, from 0 (if `zero_ok`, else above 0) to 1.
    fn ratio(&mut self, field: &str, raw: RawNumber, zero_ok: bool) -> Option<f64> {
        if zero_ok {
            self.fraction(
                field,
                raw,
                |v| (0.0..=1.0).contains(&v),
                "must be between 0 and 1 (0% and 100%)",
            )
        } else {
            self.fraction(
                field,
                raw,
                |v| v > 0.0 && v <= 1.0,
                "must be above 0 and at most 1 (100%)",
            )
        }
    }

    /// A number or a percentage (`0.2` or `20%`) for which `ok` holds; `range` says which
    /// values are, when it does not. A whole number that is out of range but would be in
    /// range as a percentage (`error_ratio: 50`) gets the hint to write `50%`.
    fn fraction(
        &mut self,
        field: &str,
        raw: RawNumber,
        ok: impl Fn(f64) -> bool,
        range: &str,
    ) -> Option<f64> {
        let (value, percent, shown) = match raw {
            RawNumber::Number(v) => (Some(v), false, v.to_string()),
            RawNumber::Text(t) => match t.trim().strip_suffix('%') {
                Some(p) => (p.trim().parse::<f64>().ok().map(|v| v / 100.0), true, t),
                None => (t.trim().parse::<f64>().ok(), false, t),
            },
        };
        let Some(value) = value.filter(|v| v.is_finite()) else {
            self.error(
                field,
                format!(
                    "`{shown}` is not a ratio; expected a number like `0.2` or a percentage like `20%`"
                ),
            );
            return None;
        };
        if ok(value) {
            return Some(value);
        }
        let hint = (!percent && value.fract() == 0.0 && ok(value / 100.0))
            .then(|| format!("for a percentage, write `{shown}%`"));
        self.error_hint(field, format!("{range}, got `{shown}`"), hint);
        None
    }

    /// A positive number (`10`, `2.5`), e.g. a concurrency or rate target.
    fn positive_number(&mut self, field: &str, raw: RawNumber, example: &str) -> Option<f64> {
        let (value, shown) = match raw {
            RawNumber::Number(v) => (Some(v), v.to_string()),
            RawNumber::Text(t) => (t.trim().parse::<f64>().ok(), t),
        };
        match value.filter(|v| v.is_finite()) {
            Some(v) if v > 0.0 => Some(v),
            Some(_) => {
                self.error(field, format!("must be above 0, got `{shown}`"));
                None
            }
            None => {
                self.error(
                    field,
                    format!("`{shown}` is not a number; expected e.g. `{example}`"),
                );
                None
            }
        }
    }

    /// A whole percentage of at least 1, with no upper bound: `50`, `200` or `200%`.
    fn whole_percent(&mut self, field: &str, raw: RawNumber) -> Option<u32> {
        let (value, shown) = match raw {
            RawNumber::Number(v) => (Some(v), v.to_string()),
            RawNumber::Text(t) => {
                let v = t.trim().trim_end_matches('%').trim().parse::<f64>().ok();
                (v, t)
            }
        };
        match value {
            Some(v) if v.fract() == 0.0 && v >= 1.0 && v <= f64::from(u32::MAX) => Some(v as u32),
            _ => {
                self.error(
                    field,
                    format!(
                        "expected a whole percentage of at least 1, like `50` or `50%`, got `{shown}`"
                    ),
                );
                None
            }
        }
    }

    /// A duration that must not be zero (an interval, a window, a target).
    fn nonzero(&mut self, field: &str, value: Option<&String>, default: Duration) -> Duration {
        let d = self.duration(field, value, default);
        if d.is_zero() {
            self.error(field, "must be greater than 0");
            return default;
        }
        d
    }

    /// A whole percentage from 1 to 100: `50` or `50%`.
    fn percent(&mut self, field: &str, raw: RawNumber) -> Option<u32> {
        let (value, shown) = match raw {
            RawNumber::Number(v) => (Some(v), v.to_string()),
            RawNumber::Text(t) => {
                let v = t.trim().trim_end_matches('%').trim().parse::<f64>().ok();
                (v, t)
            }
        };
        match value {
            Some(v) if v.fract() == 0.0 && (1.0..=100.0).contains(&v) => Some(v as u32),
            _ => {
                self.error(
                    field,
                    format!("expected a whole percentage from 1 to 100, like `50`, got `{shown}`"),
                );
                None
            }
        }
    }

    /// `gateway.limits`, each bounded so that a typo cannot turn a limit off.
    fn limits(&mut self, raw: RawLimits) -> Limits {
        let d = Limits::default();
        let head = raw
            .max_head_size
            .and_then(|s| self.size("gateway.limits.max_head_size", s));
        let mut within =
            |field: &str, value: Option<u64>, default: usize, range: (u64, u64)| match value {
                None => default,
                Some(n) if (range.0..=range.1).contains(&n) => n as usize,
                Some(n) => {
                    self.error(
                        field,
                        format!("{n} is out of range: between {} and {}", range.0, range.1),
                    );
                    default
                }
            };
        Limits {
            // hyper's full stack cannot read heads under 8 KiB; 1 MiB is already 30 times
            // what browsers send.
            max_head_size: within(
                "gateway.limits.max_head_size",
                head,
                d.max_head_size,
                (8 * 1024, 1024 * 1024),
            ),
            max_headers: within(
                "gateway.limits.max_headers",
                raw.max_headers.map(|n| n as u64),
                d.max_headers,
                (8, 1000),
            ),
            max_connections: within(
                "gateway.limits.max_connections",
                raw.max_connections.map(|n| n as u64),
                d.max_connections,
                (1, 1_000_000),
            ),
        }
    }

    /// A size in bytes: a number or text like `64KiB`.
    fn size(&mut self, field: &str, raw: RawSize) -> Option<u64> {
        match raw {
            RawSize::Bytes(n) => Some(n),
            RawSize::Text(text) => match parse_size(&text) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.error(field, e);
                    None
                }
            },
        }
    }

    /// `autoscale:` of a command service, and the queue of its backlog target if it has
    /// one. None if anything in it is invalid (each problem is reported).
    fn autoscale(
        &mut self,
        path: &str,
        raw: RawAutoscale,
        worker: bool,
        base: &Path,
    ) -> Option<(Autoscale, Option<BacklogTrigger>)> {
        let before = self.diags.len();
        const PRESETS: [&str; 3] = ["shoal", "hpa", "kpa"];
        let preset = match raw.preset.as_deref().map(str::trim) {
            None => Preset::Shoal,
            Some(name) => match Preset::ALL.into_iter().find(|p| p.name() == name) {
                Some(p) => p,
                None => {
                    self.error_hint(
                        &format!("{path}.preset"),
                        format!("unknown preset `{name}`; expected `shoal`, `hpa` or `kpa`"),
                        did_you_mean(name, PRESETS),
                    );
                    Preset::Shoal
                }
            },
        };
        // The behaviour starts from the preset; the fields given replace its values.
        let mut policy = preset.policy();

        policy.min = raw.min.unwrap_or(1);
        match raw.max {
            None => self.misplaced(path, "needs `max`, the most replicas (1 to 1000)"),
            Some(0) => self.error(&format!("{path}.max"), "must be at least 1"),
            Some(max) if max > MAX_REPLICAS => self.error(
                &format!("{path}.max"),
                format!("at most {MAX_REPLICAS} replicas"),
            ),
            Some(max) if max < policy.min => self.error(
                &format!("{path}.max"),
                format!("must not be below `min` ({}), got {max}", policy.min),
            ),
            Some(max) => policy.max = max,
        }

        // Targets, in the documented order.
        let cpu_request = match raw.cpu_request {
            None => 1.0,
            Some(c) => self.cores(&format!("{path}.cpu_request"), c).unwrap_or(1.0),
        };
        let any_target = raw.cpu.is_some()
            || raw.memory.is_some()
            || raw.concurrency.is_some()
            || raw.rps.is_some()
            || raw.latency_p95.is_some()
            || raw.backlog.is_some();
        if worker {
            for (field, present) in [
                ("concurrency", raw.concurrency.is_some()),
                ("rps", raw.rps.is_some()),
                ("latency_p95", raw.latency_p95.is_some()),
            ] {
                if present {
                    self.misplaced(
                        &format!("{path}.{field}"),
                        "a worker (`kind: worker`) serves no requests: scale it on `backlog`, \
                         `cpu` or `memory`",
                    );
                }
            }
            if raw.hold.is_some() {
                self.misplaced(
                    &format!("{path}.hold"),
                    "`hold` keeps requests while a service wakes from zero, and a worker \
                     (`kind: worker`) gets none",
                );
            }
            if policy.min == 0 && raw.backlog.is_none() {
                self.error_hint(
                    &format!("{path}.min"),
                    "a worker at zero replicas can only be woken by its queue: `min: 0` needs \
                     `backlog`",
                    Some("add `backlog:`, or keep at least one replica with `min: 1`".into()),
                );
            }
        }
        let mut targets = Vec::new();
        if let Some(cpu) = raw.cpu
            && let Some(v) = self.fraction(
                &format!("{path}.cpu"),
                cpu,
                |v| v > 0.0 && v <= MAX_CPU_TARGET,
                "must be above 0% and at most 1000% (of `cpu_request`)",
            )
        {
            targets.push(Target::Cpu(v));
        }
        if let Some(memory) = raw.memory {
            let field = format!("{path}.memory");
            match self.size(&field, memory) {
                Some(0) => self.error(&field, "must be above 0 bytes"),
                Some(bytes) => targets.push(Target::Memory(bytes)),
                None => {}
            }
        }
        if let Some(c) = raw.concurrency
            && let Some(v) = self.positive_number(&format!("{path}.concurrency"), c, "10")
        {
            targets.push(Target::Concurrency(v));
        }
        if let Some(r) = raw.rps
            && let Some(v) = self.positive_number(&format!("{path}.rps"), r, "100")
        {
            targets.push(Target::Rps(v));
        }
        if let Some(l) = &raw.latency_p95 {
            let field = format!("{path}.latency_p95");
            let before = self.diags.len();
            let d = self.nonzero(&field, Some(l), Duration::ZERO);
            if self.diags.len() == before {
                targets.push(Target::LatencyP95(d));
            }
        }
        let mut trigger = None;
        if let Some(b) = raw.backlog
            && let Some((target, queue)) =
                self.backlog(&format!("{path}.backlog"), b, policy.max, base)
        {
            targets.push(Target::Backlog(target));
            trigger = Some(queue);
        }
        if !any_target {
            self.misplaced(
                path,
                "needs at least one target: `cpu`, `memory`, `concurrency`, `rps`, `latency_p95` \
                 or `backlog`",
            );
        }
        policy.targets = targets;

        // Behaviour.
        let tolerance_range = "must be at least 0 and below 1 (100%)";
        let in_tolerance = |v: f64| (0.0..1.0).contains(&v);
        match raw.tolerance {
            None => {}
            Some(NumberOr::Number(t)) => {
                if let Some(t) = self.fraction(
                    &format!("{path}.tolerance"),
                    t,
                    in_tolerance,
                    tolerance_range,
                ) {
                    policy.tolerance_up = t;
                    policy.tolerance_down = t;
                }
            }
            Some(NumberOr::Map(t)) => {
                if let Some(up) = t.up {
                    policy.tolerance_up = self
                        .fraction(
                            &format!("{path}.tolerance.up"),
                            up,
                            in_tolerance,
                            tolerance_range,
                        )
                        .unwrap_or(policy.tolerance_up);
                }
                if let Some(down) = t.down {
                    policy.tolerance_down = self
                        .fraction(
                            &format!("{path}.tolerance.down"),
                            down,
                            in_tolerance,
                            tolerance_range,
                        )
                        .unwrap_or(policy.tolerance_down);
                }
            }
        }
        if let Some(up) = raw.scale_up {
            self.scaling(
                &format!("{path}.scale_up"),
                up,
                &mut policy.up_stabilization,
                &mut policy.up_policies,
            );
        }
        if let Some(down) = raw.scale_down {
            self.scaling(
                &format!("{path}.scale_down"),
                down,
                &mut policy.down_stabilization,
                &mut policy.down_policies,
            );
        }
        match raw.panic {
            None => {}
            Some(BoolOr::Bool(false)) => policy.panic_threshold = f64::INFINITY,
            Some(on) => {
                if !policy.panic_threshold.is_finite() {
                    policy.panic_threshold = shoal_autoscale::Policy::default().panic_threshold;
                }
                if let BoolOr::Map(panic) = on {
                    if let Some(t) = panic.threshold {
                        policy.panic_threshold = self
                            .fraction(
                                &format!("{path}.panic.threshold"),
                                t,
                                |v| v > 1.0 && v <= MAX_PANIC_THRESHOLD,
                                "must be above 100% and at most 1000% (of the current replicas)",
                            )
                            .unwrap_or(policy.panic_threshold);
                    }
                    policy.panic_window = self.nonzero(
                        &format!("{path}.panic.window"),
                        panic.window.as_ref(),
                        policy.panic_window,
                    );
                    policy.panic_hold = self.duration(
                        &format!("{path}.panic.hold"),
                        panic.hold.as_ref(),
                        policy.panic_hold,
                    );
                }
            }
        }
        policy.scale_to_zero_after = self.nonzero(
            &format!("{path}.scale_to_zero_after"),
            raw.scale_to_zero_after.as_ref(),
            policy.scale_to_zero_after,
        );
        policy.warm_up = self.duration(
            &format!("{path}.warm_up"),
            raw.warm_up.as_ref(),
            policy.warm_up,
        );
        let tick_field = format!("{path}.tick");
        let tick = self.nonzero(&tick_field, raw.tick.as_ref(), preset.tick());
        if tick > MAX_TICK {
            self.error(
                &tick_field,
                format!("must be at most {}", format_duration(MAX_TICK)),
            );
        }
        let d = Hold::default();
        let hold = match raw.hold {
            None => d,
            Some(h) => Hold {
                queue: self.positive(&format!("{path}.hold.queue"), h.queue, d.queue),
                timeout: self.nonzero(
                    &format!("{path}.hold.timeout"),
                    h.timeout.as_ref(),
                    d.timeout,
                ),
            },
        };
        if self.diags.len() > before {
            return None;
        }
        // The engine's own check. Everything it checks is checked above with a more precise
        // message, so this only guards against the two drifting apart. `panic: false` is an
        // infinite threshold, which the engine handles but its check refuses.
        let mut check = policy.clone();
        if check.panic_threshold == f64::INFINITY {
            check.panic_threshold = shoal_autoscale::Policy::default().panic_threshold;
        }
        if let Err(e) = check.validate() {
            self.error(&policy_field(path, &e.field, &policy.targets), e.reason);
            return None;
        }
        Some((
            Autoscale {
                policy,
                cpu_request,
                tick,
                hold,
                preset,
            },
            trigger,
        ))
    }

    /// `autoscale.backlog:` the broker and queue (for the wiring), and the target (for the
    /// engine). None if anything in it is invalid (each problem is reported).
    fn backlog(
        &mut self,
        path: &str,
        raw: RawBacklog,
        max: u32,
        base: &Path,
    ) -> Option<(shoal_autoscale::Backlog, BacklogTrigger)> {
        let before = self.diags.len();
        let given: Vec<&str> = [
            ("redis", raw.redis.is_some()),
            ("rabbitmq", raw.rabbitmq.is_some()),
            ("kafka", raw.kafka.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect();
        if given.len() > 1 {
            self.misplaced(
                &format!("{path}.{}", given[1]),
                format!(
                    "a backlog reads one queue: give one of `redis`, `rabbitmq` or `kafka` \
                     (`{}` is given too)",
                    given[0]
                ),
            );
        }
        let password_given = raw.password_env.is_some() || raw.password_file.is_some();
        let (source, idle_consumers) = if let Some(r) = raw.redis {
            let field = format!("{path}.redis");
            self.broker_url(&format!("{field}.url"), &r.url, &["redis"], &["rediss"]);
            self.nonempty(&format!("{field}.stream"), &r.stream, "stream");
            self.nonempty(&format!("{field}.group"), &r.group, "consumer group");
            let source = BacklogSource::Redis {
                url: r.url.trim().to_owned(),
                stream: r.stream,
                group: r.group,
            };
            (source, false)
        } else if let Some(r) = raw.rabbitmq {
            let field = format!("{path}.rabbitmq");
            let scheme = self.broker_url(
                &format!("{field}.url"),
                &r.url,
                &["amqp", "http"],
                &["amqps", "https"],
            );
            self.nonempty(&format!("{field}.queue"), &r.queue, "queue");
            let include_unacked = r.include_unacked.unwrap_or(false);
            if include_unacked && scheme.as_deref() == Some("amqp") {
                self.error_hint(
                    &format!("{field}.include_unacked"),
                    "AMQP does not count unacknowledged messages: `include_unacked` needs the \
                     management API",
                    Some("give its URL instead, e.g. `http://guest@127.0.0.1:15672/%2f`".into()),
                );
            }
            let source = BacklogSource::RabbitMq {
                url: r.url.trim().to_owned(),
                queue: r.queue,
                include_unacked,
            };
            (source, false)
        } else if let Some(k) = raw.kafka {
            let field = format!("{path}.kafka");
            if k.brokers.0.is_empty() {
                self.error(
                    &format!("{field}.brokers"),
                    "needs at least one broker, `host:port`",
                );
            }
            let list = k.brokers.0.len() > 1;
            for (i, b) in k.brokers.0.iter().enumerate() {
                let f = if list {
                    format!("{field}.brokers[{i}]")
                } else {
                    format!("{field}.brokers")
                };
                if let Err(e) = broker_address(b) {
                    self.error(&f, e);
                }
            }
            self.nonempty(&format!("{field}.topic"), &k.topic, "topic");
            self.nonempty(&format!("{field}.group"), &k.group, "consumer group");
            if password_given {
                let f = if raw.password_env.is_some() {
                    "password_env"
                } else {
                    "password_file"
                };
                self.misplaced(
                    &format!("{path}.{f}"),
                    "the Kafka reader does not authenticate yet (no SASL): leave the password out",
                );
            }
            let source = BacklogSource::Kafka {
                brokers: k.brokers.0.iter().map(|b| b.trim().to_owned()).collect(),
                topic: k.topic,
                group: k.group,
            };
            (source, k.allow_idle_consumers.unwrap_or(false))
        } else {
            self.misplaced(
                path,
                "needs the queue to read: `redis: { url, stream, group }`, \
                 `rabbitmq: { url, queue }` or `kafka: { brokers, topic, group }`",
            );
            return None;
        };
        let password = match (raw.password_env, raw.password_file) {
            (Some(_), Some(_)) => {
                self.misplaced(
                    &format!("{path}.password_file"),
                    "give the password in `password_env` or in `password_file`, not both",
                );
                None
            }
            (Some(var), None) => {
                if var.is_empty() || var.contains('=') || var.contains('\0') {
                    self.error(
                        &format!("{path}.password_env"),
                        format!("`{var}` is not a valid variable name"),
                    );
                }
                Some(SecretSource::Env(var))
            }
            (None, Some(file)) => {
                if file.trim().is_empty() {
                    self.error(&format!("{path}.password_file"), "give a file");
                }
                Some(SecretSource::File(resolve(base, file.trim())))
            }
            (None, None) => None,
        };
        let per_replica = match raw.per_replica {
            None => match source {
                // KEDA's defaults: `lagCount`/`pendingEntriesCount` 5, `queueLength` 20,
                // `lagThreshold` 10.
                BacklogSource::Redis { .. } => 5,
                BacklogSource::RabbitMq { .. } => 20,
                BacklogSource::Kafka { .. } => 10,
            },
            Some(0) => {
                self.error(
                    &format!("{path}.per_replica"),
                    "must be at least 1 (messages waiting per replica)",
                );
                1
            }
            Some(n) => n,
        };
        let defaults = shoal_autoscale::Backlog::new(per_replica);
        let drain_within = raw.drain_within.as_ref().map(|d| {
            self.nonzero(
                &format!("{path}.drain_within"),
                Some(d),
                Duration::from_secs(1),
            )
        });
        let poll = self.nonzero(&format!("{path}.poll"), raw.poll.as_ref(), DEFAULT_POLL);
        if poll > MAX_POLL {
            self.error(
                &format!("{path}.poll"),
                format!("must be at most {}", format_duration(MAX_POLL)),
            );
        }
        let smoothing = self.duration(
            &format!("{path}.smoothing"),
            raw.smoothing.as_ref(),
            defaults.smoothing,
        );
        let fallback = raw.fallback.map(|f| {
            let field = format!("{path}.fallback");
            let after = match f.after {
                None => DEFAULT_FALLBACK_AFTER,
                Some(0) => {
                    self.error(&format!("{field}.after"), "must be at least 1 failed read");
                    DEFAULT_FALLBACK_AFTER
                }
                Some(n) => n,
            };
            if f.replicas == 0 {
                self.error_hint(
                    &format!("{field}.replicas"),
                    "must be at least 1: a broker that cannot be read never scales a service to zero",
                    Some("leave `fallback` out to keep the current count while reads fail".into()),
                );
            } else if f.replicas > max {
                self.error(
                    &format!("{field}.replicas"),
                    format!("must not be above `max` ({max}), got {}", f.replicas),
                );
            }
            shoal_autoscale::Fallback {
                after,
                replicas: f.replicas,
            }
        });
        if self.diags.len() > before {
            return None;
        }
        let target = shoal_autoscale::Backlog {
            per_replica,
            activation: raw.activation.unwrap_or(defaults.activation),
            drain_within,
            smoothing,
            cap_at_partitions: !idle_consumers,
            fallback,
        };
        Some((
            target,
            BacklogTrigger {
                source,
                password,
                poll,
            },
        ))
    }

    /// A required name (stream, group, queue, topic): not empty.
    fn nonempty(&mut self, field: &str, value: &str, what: &str) {
        if value.trim().is_empty() {
            self.error(field, format!("give the {what}'s name"));
        }
    }

    /// A broker URL: `scheme://[user@]host[:port][/path]` with one of `schemes`; never a
    /// password (and never echoed, since it could hold one). Returns the scheme if valid.
    fn broker_url(
        &mut self,
        field: &str,
        url: &str,
        schemes: &[&str],
        unsupported: &[&str],
    ) -> Option<String> {
        let url = url.trim();
        let expected = schemes
            .iter()
            .map(|s| format!("`{s}://`"))
            .collect::<Vec<_>>()
            .join(" or ");
        let Some((scheme, rest)) = url.split_once("://") else {
            self.error(
                field,
                format!(
                    "expected a URL starting with {expected}, e.g. `{}://127.0.0.1`",
                    schemes[0]
                ),
            );
            return None;
        };
        let scheme = scheme.to_ascii_lowercase();
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((user, host)) => (Some(user), host),
            None => (None, authority),
        };
        if userinfo.is_some_and(|u| u.contains(':')) {
            self.error_hint(
                field,
                "the URL has a password in it; a password never goes in the stack file",
                Some(
                    "keep the user name in the URL and give the password in `password_env` (a \
                     variable's name) or `password_file` (a file)"
                        .into(),
                ),
            );
            return None;
        }
        if unsupported.contains(&scheme.as_str()) {
            self.error(
                field,
                format!("`{scheme}://` (TLS) is not supported yet; use {expected}"),
            );
            return None;
        }
        if !schemes.contains(&scheme.as_str()) {
            self.error(
                field,
                format!("`{scheme}://` is not a scheme for this broker; use {expected}"),
            );
            return None;
        }
        if host.is_empty() || host.starts_with(':') {
            self.error(field, "the URL has no host");
            return None;
        }
        Some(scheme)
    }

    /// `scale_up:` or `scale_down:`: the stabilization window and the rate policies.
    fn scaling(
        &mut self,
        path: &str,
        raw: RawScaling,
        stabilization: &mut Duration,
        policies: &mut Vec<RatePolicy>,
    ) {
        *stabilization = self.duration(
            &format!("{path}.stabilization"),
            raw.stabilization.as_ref(),
            *stabilization,
        );
        let Some(list) = raw.policies else { return };
        policies.clear();
        for (i, p) in list.into_iter().enumerate() {
            let field = format!("{path}.policies[{i}]");
            let value = match (p.pods, p.percent) {
                (Some(_), Some(_)) => {
                    self.misplaced(
                        &format!("{field}.percent"),
                        "a policy has either `pods` or `percent`, not both",
                    );
                    None
                }
                (None, None) => {
                    self.error(
                        &field,
                        "a policy needs `pods: N` (replicas) or `percent: N` (of the current count), and `period`",
                    );
                    None
                }
                (Some(0), None) => {
                    self.error(&format!("{field}.pods"), "must be at least 1");
                    None
                }
                (Some(pods), None) => Some((true, pods)),
                (None, Some(percent)) => self
                    .whole_percent(&format!("{field}.percent"), percent)
                    .map(|v| (false, v)),
            };
            let period = match &p.period {
                None => {
                    if value.is_some() {
                        self.error(&field, "a policy needs `period`, e.g. `period: 15s`");
                    }
                    None
                }
                Some(text) => {
                    let before = self.diags.len();
                    let d = self.nonzero(&format!("{field}.period"), Some(text), Duration::ZERO);
                    (self.diags.len() == before).then_some(d)
                }
            };
            if let (Some((pods, value)), Some(period)) = (value, period) {
                policies.push(if pods {
                    RatePolicy::Pods { value, period }
                } else {
                    RatePolicy::Percent { value, period }
                });
            }
        }
    }

    /// CPU cores: `1`, `0.5` or Kubernetes' millicores, `500m`.
    fn cores(&mut self, field: &str, raw: RawNumber) -> Option<f64> {
        let (value, shown) = match raw {
            RawNumber::Number(v) => (Some(v), v.to_string()),
            RawNumber::Text(t) => {
                let text = t.trim();
                let v = match text.strip_suffix('m') {
                    Some(milli) => milli.trim().parse::<f64>().ok().map(|m| m / 1000.0),
                    None => text.parse::<f64>().ok(),
                };
                (v, t)
            }
        };
        match value.filter(|v| v.is_finite()) {
            Some(v) if v > 0.0 => Some(v),
            Some(_) => {
                self.error(field, format!("must be above 0 cores, got `{shown}`"));
                None
            }
            None => {
                self.error(
                    field,
                    format!(
                        "`{shown}` is not a number of CPU cores; expected e.g. `1`, `0.5` or `500m`"
                    ),
                );
                None
            }
        }
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

    /// A `strip_prefix`, `add_prefix` or `headers` middleware at `path` (the one given).
    fn path_or_header_middleware(
        &mut self,
        path: &str,
        strip_prefix: Option<StringOrList>,
        add_prefix: Option<String>,
        headers: Option<RawHeaders>,
    ) -> Option<Middleware> {
        if let Some(p) = strip_prefix {
            return self.strip_prefix(&format!("{path}.strip_prefix"), p);
        }
        if let Some(p) = add_prefix {
            if !p.starts_with('/') {
                self.error(
                    &format!("{path}.add_prefix"),
                    format!("`{p}` must start with `/`"),
                );
                return None;
            }
            return Some(Middleware::AddPrefix(p.trim_end_matches('/').to_owned()));
        }
        let h = headers?;
        let mut rules = HeaderRules::default();
        let before = self.diags.len();
        rules.request_set = self.header_set(&format!("{path}.headers.request.set"), h.request.set);
        rules.request_remove =
            self.header_remove(&format!("{path}.headers.request.remove"), h.request.remove);
        rules.response_set =
            self.header_set(&format!("{path}.headers.response.set"), h.response.set);
        rules.response_remove = self.header_remove(
            &format!("{path}.headers.response.remove"),
            h.response.remove,
        );
        (self.diags.len() == before).then_some(Middleware::Headers(rules))
    }

    fn strip_prefix(&mut self, field: &str, raw: StringOrList) -> Option<Middleware> {
        let mut prefixes = Vec::new();
        if raw.0.is_empty() {
            self.error(field, "needs at least one prefix");
            return None;
        }
        for p in raw.0 {
            if !p.starts_with('/') || p.len() < 2 {
                self.error(
                    field,
                    format!("prefix `{p}` must start with `/` and not be `/` alone"),
                );
                return None;
            }
            prefixes.push(p.trim_end_matches('/').to_owned());
        }
        // Longest first, so `/api/v2` wins over `/api`.
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        Some(Middleware::StripPrefix(prefixes))
    }

    fn header_set(
        &mut self,
        field: &str,
        raw: indexmap::IndexMap<String, String>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        for (k, v) in raw {
            let f = format!("{field}.{k}");
            let Some(name) = self.managed_header_name(&f, &k) else {
                continue;
            };
            match HeaderValue::try_from(v.as_str()) {
                Ok(value) => out.push((name, value)),
                Err(_) => self.error(&f, format!("`{v}` is not a valid header value")),
            }
        }
        out
    }

    fn header_remove(&mut self, field: &str, raw: Vec<String>) -> Vec<HeaderName> {
        raw.iter()
            .enumerate()
            .filter_map(|(i, k)| self.managed_header_name(&format!("{field}[{i}]"), k))
            .collect()
    }

    /// A header name a middleware may set or remove: not one of those the gateway writes
    /// itself from what it forwards (framing, Host, connection management), which a
    /// middleware could otherwise use to desynchronise a connection (docs/security.md).
    fn managed_header_name(&mut self, field: &str, name: &str) -> Option<HeaderName> {
        let header = self.header_name(field, name)?;
        if GATEWAY_MANAGED_HEADERS.contains(&header.as_str()) {
            self.error(
                field,
                format!(
                    "`{header}` is written by the gateway itself (message framing and \
                     connection management, RFC 9112 §6 and §9); a header middleware cannot \
                     set or remove it"
                ),
            );
            return None;
        }
        Some(header)
    }
}

/// Headers the gateway writes from what it actually forwards, never from configuration.
const GATEWAY_MANAGED_HEADERS: [&str; 9] = [
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Where byte `offset` of a scalar starting at `start` lands (single-line scalars are exact;
/// for multi-line ones we count lines within the scalar's text).
fn offset_place(text: &str, offset: usize, start: crate::locate::Place) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let newlines = before.matches('\n').count();
    if newlines == 0 {
        (
            start.line,
            start.column + usize::from(start.quoted) + before.chars().count(),
        )
    } else {
        let last = before.rsplit('\n').next().unwrap_or("");
        (start.line + newlines, 1 + last.chars().count())
    }
}

/// Most tries per request (`retry.attempts`).
const MAX_ATTEMPTS: u32 = 10;

/// `200` or `"200-299"` (or `"200"`), each status within `min..=max`.
fn parse_status_range(raw: &RawStatus, min: u16, max: u16) -> Result<(u16, u16), String> {
    let expected = || {
        format!(
            "expected an HTTP status like `{min}` or a range like `{min}-{}`",
            min + 99
        )
    };
    let check = |n: u64, shown: &str| -> Result<u16, String> {
        match u16::try_from(n) {
            Ok(s) if (min..=max).contains(&s) => Ok(s),
            _ => Err(format!(
                "`{shown}` is out of range; statuses here are {min} to {max}"
            )),
        }
    };
    match raw {
        RawStatus::Number(n) => {
            let s = check(*n, &n.to_string())?;
            Ok((s, s))
        }
        RawStatus::Text(text) => {
            let number = |t: &str| {
                t.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("`{text}` is not a status; {}", expected()))
            };
            let (lo, hi) = match text.split_once('-') {
                Some((lo, hi)) => (number(lo)?, number(hi)?),
                None => {
                    let n = number(text)?;
                    (n, n)
                }
            };
            let (lo, hi) = (check(lo, text)?, check(hi, text)?);
            if lo > hi {
                return Err(format!(
                    "`{text}`: a range goes from the lower status to the higher, e.g. `{hi}-{lo}`"
                ));
            }
            Ok((lo, hi))
        }
    }
}

/// Most replicas of a service (`replicas`, `autoscale.max`).
const MAX_REPLICAS: u32 = 1000;

/// Highest `autoscale.cpu` target: 1000% of `cpu_request`.
const MAX_CPU_TARGET: f64 = 10.0;

/// Highest `autoscale.panic.threshold`: 1000% (Knative's upper bound too).
const MAX_PANIC_THRESHOLD: f64 = 10.0;

/// Longest `autoscale.tick`.
const MAX_TICK: Duration = Duration::from_secs(60);

/// Default `autoscale.backlog.poll` (KEDA: 30 s).
const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// Longest `autoscale.backlog.poll`.
const MAX_POLL: Duration = Duration::from_secs(300);

/// Default `autoscale.backlog.fallback.after` (KEDA's `failureThreshold`).
const DEFAULT_FALLBACK_AFTER: u32 = 3;

/// A Kafka bootstrap broker: `host:port`, no scheme.
fn broker_address(text: &str) -> Result<(), String> {
    let t = text.trim();
    if t.contains("://") {
        return Err(format!("`{t}`: a broker is `host:port`, without a scheme"));
    }
    match t.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!(
            "`{t}` is not a broker address; expected `host:port`, e.g. `127.0.0.1:9092`"
        )),
    }
}

/// The stack-file path of a [`shoal_autoscale::Policy`] field named by
/// [`shoal_autoscale::InvalidPolicy`], under the `autoscale` section at `path`; the section
/// itself when there is no closer field.
fn policy_field(path: &str, field: &str, targets: &[Target]) -> String {
    let indexed = |prefix: &str| -> Option<usize> {
        field
            .strip_prefix(prefix)?
            .strip_prefix('[')?
            .strip_suffix(']')?
            .parse()
            .ok()
    };
    if let Some(i) = indexed("targets") {
        return match targets.get(i) {
            Some(t) => format!("{path}.{}", t.name()),
            None => path.to_owned(),
        };
    }
    if let Some(i) = indexed("up_policies") {
        return format!("{path}.scale_up.policies[{i}]");
    }
    if let Some(i) = indexed("down_policies") {
        return format!("{path}.scale_down.policies[{i}]");
    }
    match field {
        "min" | "max" => format!("{path}.{field}"),
        "tolerance_up" => format!("{path}.tolerance.up"),
        "tolerance_down" => format!("{path}.tolerance.down"),
        "up_stabilization" => format!("{path}.scale_up.stabilization"),
        "down_stabilization" => format!("{path}.scale_down.stabilization"),
        "panic_threshold" => format!("{path}.panic.threshold"),
        "panic_window" => format!("{path}.panic.window"),
        "panic_hold" => format!("{path}.panic.hold"),
        "scale_to_zero_after" | "warm_up" => format!("{path}.{field}"),
        _ => path.to_owned(),
    }
}

/// Smallest `logs.max_size`: below it, rotation would churn on every few lines.
const MIN_LOG_SIZE: u64 = 1024;

/// `1048576`, `512KiB`, `10MiB`, `1GiB`, `10MB`, `100KB`, `64B` (binary units are powers of
/// 1024, decimal ones of 1000). Kubernetes' `Ki`, `Mi`, `Gi` are the binary units too.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let expected = || {
        format!(
            "`{text}` is not a size; expected bytes or a number with a unit, like `10MiB`, `512KiB` or `10MB`"
        )
    };
    let n: u64 = digits.parse().map_err(|_| expected())?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "Ki" => 1 << 10,
        "MiB" | "Mi" => 1 << 20,
        "GiB" | "Gi" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(expected()),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !name.ends_with('-')
}

fn resolve(base: &Path, dir: &str) -> PathBuf {
    let p = Path::new(dir);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

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

/// The `admin` section of a stack file even when other parts of it are invalid, so that CLI
/// commands can still reach a running shoal (e.g. `shoal reload` right after an edit broke
/// the file, to hear what is wrong). None if the file or its `admin` section is unreadable.
pub fn peek_admin(path: &Path) -> Option<Admin> {
    let source = std::fs::read_to_string(path).ok()?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&source).ok()?;
    let raw: RawAdmin = match doc.get("admin") {
        Some(section) => serde_yaml::from_value(section.clone()).ok()?,
        None => RawAdmin::default(),
    };
    let listen = match raw.listen.as_deref().map(str::trim) {
        None => DEFAULT_ADMIN_LISTEN,
        Some(text) => match text.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}").parse().ok()?,
            None => text.parse().ok()?,
        },
    };
    Some(Admin {
        listen,
        token: raw.token.filter(|t| !t.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_fields_map_to_stack_file_paths() {
        let p = "services.api.autoscale";
        let targets = [Target::Rps(1.0), Target::LatencyP95(Duration::from_secs(1))];
        for (field, path) in [
            ("max", "services.api.autoscale.max"),
            ("min", "services.api.autoscale.min"),
            ("targets", "services.api.autoscale"),
            ("targets[1]", "services.api.autoscale.latency_p95"),
            ("targets[7]", "services.api.autoscale"),
            ("tolerance_down", "services.api.autoscale.tolerance.down"),
            (
                "up_policies[2]",
                "services.api.autoscale.scale_up.policies[2]",
            ),
            (
                "down_policies[0]",
                "services.api.autoscale.scale_down.policies[0]",
            ),
            ("panic_threshold", "services.api.autoscale.panic.threshold"),
            ("something_new", "services.api.autoscale"),
        ] {
            assert_eq!(policy_field(p, field, &targets), path, "{field}");
        }
    }

    #[test]
    fn every_preset_is_a_valid_policy() {
        for preset in Preset::ALL {
            let mut policy = preset.policy();
            if policy.panic_threshold == f64::INFINITY {
                policy.panic_threshold = 2.0;
            }
            assert_eq!(policy.validate(), Ok(()), "{preset:?}");
            assert!(preset.tick() <= MAX_TICK);
        }
    }
}
