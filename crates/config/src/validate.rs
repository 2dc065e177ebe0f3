//! Raw → validated: resolve names, parse rules and addresses, fill defaults, and report every
//! problem with its place in the file.
//!
//! This file holds the entry points (read, parse, validate), the validation context `Cx`
//! that records each problem at its `file:line:column`, and the walk over the whole file
//! (`Cx::stack`). Each section of the schema has a module of its own:
//!
//! | module | sections |
//! |---|---|
//! | `gateway` | `gateway:` (listen, entrypoints, timeouts, limits), `admin:`, `metrics:`, `access_log:` |
//! | `services` | `services.NAME`: kind, resources, `depends_on`, servers, balancing, logs, restart |
//! | `failover` | `health:`, `retry:`, `passive:`, `circuit_breaker:` (a service's and a route's) |
//! | `autoscale` | `autoscale:` and its backlog (queue) targets |
//! | `routes` | `routes:`: rule, middlewares, entrypoints, a route's `retry:` and `timeouts:` |
//! | `rollout` | `version:`, `rollout:`, a route's targets (split, canary) and `mirror:` |
//! | `middlewares` | `middlewares:` and a route's inline `strip_prefix`, chains expanded |
//! | `tls` | TLS at the entrypoints and to the replicas |
//! | `units` | values shared by every section: durations, sizes, ratios, addresses, names |
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use crate::error::{Diagnostic, Diagnostics};
use crate::locate::Locations;
use crate::model::*;
use crate::raw::*;

mod autoscale;
mod failover;
mod gateway;
mod middlewares;
mod rollout;
mod routes;
mod services;
mod tls;
mod units;

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
        match crate::yaml::from_str(&text, file) {
            Ok(raw) => break raw,
            Err(d) => {
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
        let routes = self.routes(raw.routes, &gateway, &services, &middlewares);
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
}

/// The `admin` section of a stack file even when other parts of it are invalid, so that CLI
/// commands can still reach a running shoal (e.g. `shoal reload` right after an edit broke
/// the file, to hear what is wrong). None if the file or its `admin` section is unreadable.
pub fn peek_admin(path: &Path) -> Option<Admin> {
    let source = std::fs::read_to_string(path).ok()?;
    // Only `admin` is read; every other section is skipped unchecked.
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(default)]
        admin: RawAdmin,
    }
    let raw = crate::yaml::from_str::<Peek>(&source, "").ok()?.admin;
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
