//! Raw → validated for middlewares: the ones a route may write inline (`strip_prefix`) or
//! define under `middlewares:` (path and header edits, `rate_limit`, `in_flight_req`,
//! `basic_auth`, `ip_allow_list`, redirects and rewrites, `compress`, `buffering`, `cors`),
//! and `chain`, expanded once every name is known (cycles and depth bounded).
//!
//! Files named here (htpasswd files) are resolved against the stack file's folder and must
//! exist when the file is checked; their lines are checked here. No message ever repeats a
//! password hash. Who may pass (`basic_auth`, `ip_allow_list`) is in `middlewares/access.rs`;
//! redirects and rewrites in `middlewares/rewrite.rs`.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use super::Cx;
use crate::error::did_you_mean;
use crate::model::*;
use crate::raw::*;

mod access;
mod rewrite;

/// Every middleware kind, in the order the docs list them.
const KINDS: [&str; 14] = [
    "strip_prefix",
    "add_prefix",
    "headers",
    "rate_limit",
    "in_flight_req",
    "basic_auth",
    "ip_allow_list",
    "redirect_scheme",
    "redirect_regex",
    "replace_path_regex",
    "compress",
    "buffering",
    "cors",
    "chain",
];

/// Most keys a `rate_limit` may track (`max_keys`).
const MAX_RATE_LIMIT_KEYS: usize = 100_000_000;

/// Deepest nesting of chains in chains.
const MAX_CHAIN_DEPTH: usize = 32;

/// Most middlewares one name may expand to, chains flattened.
const MAX_CHAIN_LENGTH: usize = 1000;

/// A middleware as defined: one kind (None when invalid, already reported), or a chain of
/// other names, expanded once all are known.
enum Definition {
    One(Option<Middleware>),
    Chain(Vec<String>),
}

/// Every middleware name of the file and what a route that names it applies: the middleware,
/// or a chain's members flattened in order. None where the definition (or a member's) is
/// invalid; that was reported where it is written.
pub(super) struct Middlewares {
    pub(super) names: Vec<String>,
    pub(super) expanded: BTreeMap<String, Option<Vec<Middleware>>>,
}

/// State of chain expansion: definitions, results so far (with how deep each nests chains),
/// the chains being expanded (to find cycles), and cycles already reported.
struct Expansion {
    definitions: BTreeMap<String, Definition>,
    done: BTreeMap<String, (Option<Vec<Middleware>>, usize)>,
    stack: Vec<String>,
    cycles: BTreeSet<Vec<String>>,
}

impl Cx<'_> {
    /// Every middleware, chains expanded.
    pub(super) fn middlewares(
        &mut self,
        raw: BTreeMap<String, RawMiddleware>,
        base: &Path,
    ) -> Middlewares {
        let names: Vec<String> = raw.keys().cloned().collect();
        let mut definitions = BTreeMap::new();
        for (name, m) in raw {
            let d = self.definition(&name, m, base);
            definitions.insert(name, d);
        }
        // Unknown members are reported once, where the chain lists them.
        for (name, d) in &definitions {
            let Definition::Chain(members) = d else {
                continue;
            };
            let field = format!("middlewares.{name}.chain");
            if members.is_empty() {
                self.error(&field, "needs at least one middleware");
            }
            for (i, m) in members.iter().enumerate() {
                if !definitions.contains_key(m) {
                    let hint = did_you_mean(m, names.iter().map(String::as_str));
                    self.error_hint(
                        &format!("{field}[{i}]"),
                        format!("unknown middleware `{m}`"),
                        hint,
                    );
                }
            }
        }
        let mut ex = Expansion {
            definitions,
            done: BTreeMap::new(),
            stack: Vec::new(),
            cycles: BTreeSet::new(),
        };
        for name in &names {
            self.expand(name, &mut ex);
        }
        Middlewares {
            names,
            expanded: ex.done.into_iter().map(|(n, (m, _))| (n, m)).collect(),
        }
    }

    /// What `name` applies, chains flattened, and how deep it nests chains (0 for a
    /// middleware, 1 for a chain of middlewares). Cycles and chains nested too deep are
    /// reported.
    fn expand(&mut self, name: &str, ex: &mut Expansion) -> (Option<Vec<Middleware>>, usize) {
        if let Some(done) = ex.done.get(name) {
            return done.clone();
        }
        let members = match ex.definitions.get(name) {
            None => return (None, 0), // reported where it is named
            Some(Definition::One(m)) => {
                let out = (m.clone().map(|m| vec![m]), 0);
                ex.done.insert(name.to_owned(), out.clone());
                return out;
            }
            Some(Definition::Chain(members)) => members.clone(),
        };
        if let Some(start) = ex.stack.iter().position(|n| n == name) {
            let cycle = ex.stack[start..].to_vec();
            self.cycle(&cycle, ex);
            return (None, 0);
        }
        let field = format!("middlewares.{name}.chain");
        let too_deep = format!("chains nest more than {MAX_CHAIN_DEPTH} deep here");
        // Expansion recurses once per level: bound it before going deeper.
        if ex.stack.len() >= MAX_CHAIN_DEPTH {
            self.error(&field, too_deep);
            ex.done.insert(name.to_owned(), (None, MAX_CHAIN_DEPTH + 1));
            return (None, MAX_CHAIN_DEPTH + 1);
        }
        ex.stack.push(name.to_owned());
        let mut out = Some(Vec::new());
        let mut depth = 1;
        for m in &members {
            let (more, d) = self.expand(m, ex);
            depth = depth.max(d + 1);
            match (more, &mut out) {
                (Some(more), Some(list)) => list.extend(more),
                _ => out = None,
            }
            if out.as_ref().is_some_and(|l| l.len() > MAX_CHAIN_LENGTH) {
                self.error(
                    &field,
                    format!("expands to more than {MAX_CHAIN_LENGTH} middlewares"),
                );
                out = None;
            }
        }
        ex.stack.pop();
        // Reported once, at the first chain over the bound (those above it are invalid too).
        if depth > MAX_CHAIN_DEPTH && out.is_some() {
            self.error(&field, too_deep);
            out = None;
        }
        ex.done.insert(name.to_owned(), (out.clone(), depth));
        (out, depth)
    }

    /// Report the cycle `members[0] → … → members[0]` once, at the list item of its
    /// alphabetically first chain that goes on to the next.
    fn cycle(&mut self, members: &[String], ex: &mut Expansion) {
        let first = (0..members.len()).min_by_key(|&i| &members[i]).unwrap_or(0);
        let mut ring: Vec<String> = members[first..].to_vec();
        ring.extend_from_slice(&members[..first]);
        if !ex.cycles.insert(ring.clone()) {
            return;
        }
        let next = ring.get(1).unwrap_or(&ring[0]);
        let at = match ex.definitions.get(&ring[0]) {
            Some(Definition::Chain(list)) => list.iter().position(|m| m == next),
            _ => None,
        };
        let field = match at {
            Some(i) => format!("middlewares.{}.chain[{i}]", ring[0]),
            None => format!("middlewares.{}.chain", ring[0]),
        };
        let shown: Vec<String> = ring
            .iter()
            .chain(std::iter::once(&ring[0]))
            .map(|n| format!("`{n}`"))
            .collect();
        self.error(
            &field,
            format!(
                "the chain {} is a cycle: a chain cannot include itself",
                shown.join(" → ")
            ),
        );
    }

    /// One middleware definition: exactly one kind.
    fn definition(&mut self, name: &str, raw: RawMiddleware, base: &Path) -> Definition {
        let path = format!("middlewares.{name}");
        let RawMiddleware {
            strip_prefix,
            add_prefix,
            headers,
            rate_limit,
            in_flight_req,
            basic_auth,
            ip_allow_list,
            redirect_scheme,
            redirect_regex,
            replace_path_regex,
            compress,
            buffering,
            cors,
            chain,
        } = raw;
        let present: Vec<&str> = KINDS
            .into_iter()
            .zip([
                strip_prefix.is_some(),
                add_prefix.is_some(),
                headers.is_some(),
                rate_limit.is_some(),
                in_flight_req.is_some(),
                basic_auth.is_some(),
                ip_allow_list.is_some(),
                redirect_scheme.is_some(),
                redirect_regex.is_some(),
                replace_path_regex.is_some(),
                compress.is_some(),
                buffering.is_some(),
                cors.is_some(),
                chain.is_some(),
            ])
            .filter_map(|(k, set)| set.then_some(k))
            .collect();
        if present.len() != 1 {
            let message = if present.is_empty() {
                format!(
                    "middleware `{name}` needs exactly one of {}",
                    KINDS.map(|k| format!("`{k}`")).join(", ")
                )
            } else {
                format!(
                    "middleware `{name}` needs exactly one of the kinds, and has {}",
                    present
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                )
            };
            self.misplaced(&path, message);
            return Definition::One(None);
        }
        if let Some(chain) = chain {
            return Definition::Chain(chain.into_iter().map(|n| n.trim().to_owned()).collect());
        }
        let before = self.diags.len();
        let m = if let Some(r) = rate_limit {
            self.rate_limit(&format!("{path}.rate_limit"), r)
        } else if let Some(r) = in_flight_req {
            self.in_flight_req(&format!("{path}.in_flight_req"), r)
        } else if let Some(r) = basic_auth {
            self.basic_auth(&format!("{path}.basic_auth"), r, base)
        } else if let Some(r) = ip_allow_list {
            self.ip_allow_list(&format!("{path}.ip_allow_list"), r)
        } else if let Some(r) = redirect_scheme {
            self.redirect_scheme(&format!("{path}.redirect_scheme"), r)
        } else if let Some(r) = redirect_regex {
            let field = format!("{path}.redirect_regex");
            self.rewrite(&field, r.regex, r.replacement)
                .map(|(regex, replacement)| {
                    Middleware::RedirectRegex(RedirectRegex {
                        regex,
                        replacement,
                        permanent: r.permanent.unwrap_or(false),
                    })
                })
        } else if let Some(r) = replace_path_regex {
            let field = format!("{path}.replace_path_regex");
            self.rewrite(&field, r.regex, r.replacement)
                .map(|(regex, replacement)| {
                    Middleware::ReplacePathRegex(ReplacePathRegex { regex, replacement })
                })
        } else if let Some(r) = compress {
            self.compress(&format!("{path}.compress"), r)
        } else if let Some(r) = buffering {
            self.buffering(&format!("{path}.buffering"), r)
        } else if let Some(r) = cors {
            self.cors(&format!("{path}.cors"), r)
        } else {
            self.path_or_header_middleware(&path, strip_prefix, add_prefix, headers)
        };
        Definition::One(m.filter(|_| self.diags.len() == before))
    }

    /// `key` and `depth` of `rate_limit` and `in_flight_req`.
    fn client_key(&mut self, path: &str, key: Option<&str>, depth: Option<usize>) -> ClientKey {
        const KEYS: [&str; 2] = ["client_ip", "route"];
        let field = format!("{path}.key");
        let key = match key.map(str::trim) {
            None | Some("client_ip") => {
                return ClientKey::Ip {
                    depth: depth.unwrap_or(0),
                };
            }
            Some("route") => ClientKey::Route,
            Some(k) if k.starts_with("header:") => {
                let name = k["header:".len()..].trim();
                match self.header_name(&field, name) {
                    Some(h) => ClientKey::Header(h),
                    None => return ClientKey::default(),
                }
            }
            Some(other) => {
                self.error_hint(
                    &field,
                    format!(
                        "unknown key `{other}`; expected `client_ip`, `route` or `header:NAME`"
                    ),
                    did_you_mean(other, KEYS),
                );
                return ClientKey::default();
            }
        };
        if depth.is_some() {
            self.misplaced(
                &format!("{path}.depth"),
                "`depth` (trusted proxies in `X-Forwarded-For`) applies to `key: client_ip`",
            );
        }
        key
    }

    fn rate_limit(&mut self, path: &str, raw: RawRateLimit) -> Option<Middleware> {
        let average = match raw.average {
            None => {
                self.misplaced(
                    path,
                    "needs `average`: the requests allowed per `period` (e.g. `average: 10`)",
                );
                1
            }
            Some(0) => {
                self.error(
                    &format!("{path}.average"),
                    "must be at least 1 (requests allowed per `period`)",
                );
                1
            }
            Some(n) => n,
        };
        let period = self.nonzero(
            &format!("{path}.period"),
            raw.period.as_ref(),
            Duration::from_secs(1),
        );
        let burst = match raw.burst {
            None => 1,
            Some(0) => {
                self.error(
                    &format!("{path}.burst"),
                    "must be at least 1 (a burst of 0 would refuse every request)",
                );
                1
            }
            Some(n) => n,
        };
        let key = self.client_key(path, raw.key.as_deref(), raw.depth);
        let max_keys = match raw.max_keys {
            None => 1_000_000,
            Some(n) if (1..=MAX_RATE_LIMIT_KEYS).contains(&n) => n,
            Some(_) => {
                self.error(
                    &format!("{path}.max_keys"),
                    format!("must be between 1 and {MAX_RATE_LIMIT_KEYS}"),
                );
                1_000_000
            }
        };
        Some(Middleware::RateLimit(RateLimit {
            average,
            period,
            burst,
            key,
            max_keys,
        }))
    }

    fn in_flight_req(&mut self, path: &str, raw: RawInFlightReq) -> Option<Middleware> {
        let amount = match raw.amount {
            None => {
                self.misplaced(
                    path,
                    "needs `amount`: the most requests in flight per key (e.g. `amount: 10`)",
                );
                1
            }
            Some(0) => {
                self.error(
                    &format!("{path}.amount"),
                    "must be at least 1 (requests in flight at once)",
                );
                1
            }
            Some(n) => n,
        };
        let key = self.client_key(path, raw.key.as_deref(), raw.depth);
        Some(Middleware::InFlightReq(InFlightReq { amount, key }))
    }

    fn compress(&mut self, path: &str, raw: BoolOr<RawCompress>) -> Option<Middleware> {
        let raw = match raw {
            BoolOr::Bool(true) => return Some(Middleware::Compress(Compress::default())),
            BoolOr::Bool(false) => {
                self.error(
                    path,
                    "`compress: false` turns nothing off: remove the middleware, or leave it \
                     out of the route's `middlewares`",
                );
                return None;
            }
            BoolOr::Map(raw) => raw,
        };
        let d = Compress::default();
        let encodings = match raw.encodings {
            None => d.encodings,
            Some(list) => {
                let field = format!("{path}.encodings");
                if list.is_empty() {
                    self.error(&field, "needs at least one of `zstd`, `br`, `gzip`");
                }
                let mut out = Vec::new();
                for (i, e) in list.iter().enumerate() {
                    let f = format!("{field}[{i}]");
                    let encoding = match e.trim().to_ascii_lowercase().as_str() {
                        "zstd" => Encoding::Zstd,
                        "br" => Encoding::Brotli,
                        "gzip" => Encoding::Gzip,
                        other => {
                            let hint = if other == "brotli" {
                                Some("did you mean `br`?".to_owned())
                            } else {
                                did_you_mean(other, ["zstd", "br", "gzip"])
                            };
                            self.error_hint(
                                &f,
                                format!(
                                    "unknown encoding `{other}`; expected `zstd`, `br` or `gzip`"
                                ),
                                hint,
                            );
                            continue;
                        }
                    };
                    if out.contains(&encoding) {
                        self.error(&f, format!("`{}` is listed twice", encoding.token()));
                    } else {
                        out.push(encoding);
                    }
                }
                out
            }
        };
        let min_response_body_bytes = match raw.min_response_body_bytes {
            None => d.min_response_body_bytes,
            Some(s) => self
                .size(&format!("{path}.min_response_body_bytes"), s)
                .unwrap_or(d.min_response_body_bytes),
        };
        let excluded_content_types = match raw.excluded_content_types {
            None => d.excluded_content_types,
            Some(list) => {
                let mut out = Vec::new();
                for (i, t) in list.iter().enumerate() {
                    match media_range(t) {
                        Ok(t) => out.push(t),
                        Err(e) => {
                            self.error(&format!("{path}.excluded_content_types[{i}]"), e);
                        }
                    }
                }
                out
            }
        };
        Some(Middleware::Compress(Compress {
            encodings,
            min_response_body_bytes,
            excluded_content_types,
        }))
    }

    fn buffering(&mut self, path: &str, raw: RawBuffering) -> Option<Middleware> {
        let field = format!("{path}.max_request_body_bytes");
        let Some(size) = raw.max_request_body_bytes else {
            self.misplaced(
                path,
                "needs `max_request_body_bytes`: the longest request body, e.g. `1MiB`",
            );
            return None;
        };
        match self.size(&field, size)? {
            0 => {
                self.error(&field, "must be at least 1 byte");
                None
            }
            max_request_body_bytes => Some(Middleware::Buffering(Buffering {
                max_request_body_bytes,
            })),
        }
    }

    fn cors(&mut self, path: &str, raw: RawCors) -> Option<Middleware> {
        let field = format!("{path}.allow_origins");
        let Some(origins) = raw.allow_origins else {
            self.misplaced(
                path,
                "needs `allow_origins`: the origins allowed, e.g. `[\"https://app.example\"]`, \
                 or `[\"*\"]`",
            );
            return None;
        };
        if origins.is_empty() {
            self.error(&field, "needs at least one origin");
        }
        let mut allow_origins = Vec::new();
        for (i, o) in origins.iter().enumerate() {
            match origin(o) {
                Ok(o) => allow_origins.push(o),
                Err(e) => self.error(&format!("{field}[{i}]"), e),
            }
        }
        if allow_origins.len() > 1 && allow_origins.iter().any(|o| o == "*") {
            self.error(
                &field,
                "`*` allows every origin: list origins, or `*` alone",
            );
        }
        let allow_methods = match raw.allow_methods {
            None => vec![Method::GET, Method::HEAD, Method::POST],
            Some(list) => {
                let mut out = Vec::new();
                for (i, m) in list.iter().enumerate() {
                    let f = format!("{path}.allow_methods[{i}]");
                    let m = m.trim();
                    let upper = m.to_ascii_uppercase();
                    if m == "*" {
                        self.error(&f, "list the methods, e.g. `[GET, POST]`");
                    } else if m != upper && STANDARD_METHODS.contains(&upper.as_str()) {
                        // Methods are case-sensitive (RFC 9110 §9.1): `get` is not `GET`.
                        self.error_hint(
                            &f,
                            format!(
                                "`{m}` is not `{upper}`: methods are case-sensitive (RFC 9110 §9.1)"
                            ),
                            Some(format!("did you mean `{upper}`?")),
                        );
                    } else {
                        match Method::from_bytes(m.as_bytes()) {
                            Ok(method) => out.push(method),
                            Err(_) => self.error(&f, format!("`{m}` is not a method")),
                        }
                    }
                }
                out
            }
        };
        let allow_headers = self.cors_headers(&format!("{path}.allow_headers"), raw.allow_headers);
        let expose_headers =
            self.cors_headers(&format!("{path}.expose_headers"), raw.expose_headers);
        let max_age = raw.max_age.as_ref().and_then(|t| {
            let f = format!("{path}.max_age");
            match crate::duration::parse_duration(t) {
                Ok(d) if d.subsec_nanos() != 0 => {
                    self.error(&f, "`Access-Control-Max-Age` is whole seconds");
                    None
                }
                Ok(d) => Some(d),
                Err(e) => {
                    self.error(&f, e.to_string());
                    None
                }
            }
        });
        Some(Middleware::Cors(Cors {
            allow_origins,
            allow_methods,
            allow_headers,
            expose_headers,
            allow_credentials: raw.allow_credentials.unwrap_or(false),
            max_age,
        }))
    }

    /// Header names (lowercase) or `*`.
    fn cors_headers(&mut self, field: &str, raw: Option<Vec<String>>) -> Vec<String> {
        let mut out = Vec::new();
        for (i, h) in raw.unwrap_or_default().iter().enumerate() {
            let h = h.trim();
            if h == "*" {
                out.push(h.to_owned());
            } else if let Some(name) = self.header_name(&format!("{field}[{i}]"), h) {
                out.push(name.as_str().to_owned());
            }
        }
        out
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

    pub(super) fn strip_prefix(&mut self, field: &str, raw: StringOrList) -> Option<Middleware> {
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

/// The methods of RFC 9110 §9 and RFC 5789, uppercase.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// An origin as browsers send it (`scheme://host[:port]`, lowercase), or `*`.
fn origin(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t == "*" {
        return Ok(t.to_owned());
    }
    let bad = || {
        format!(
            "`{t}` is not an origin; expected `scheme://host[:port]` like \
             `https://app.example`, or `*`"
        )
    };
    let uri: http::Uri = t.parse().map_err(|_| bad())?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(bad());
    };
    if authority.as_str().contains('@') {
        return Err(bad());
    }
    let exact = format!("{scheme}://{authority}");
    if t.len() > exact.len() {
        return Err(format!(
            "`{t}`: an origin has no path (browsers send `{exact}`)"
        ));
    }
    Ok(exact.to_ascii_lowercase())
}

/// `type/subtype` or `type/*`, lowercase, without parameters.
fn media_range(text: &str) -> Result<String, String> {
    let t = text.trim().to_ascii_lowercase();
    let token = |s: &str| !s.is_empty() && HeaderName::try_from(s).is_ok();
    match t.split_once('/') {
        _ if t.contains(';') => Err(format!(
            "`{t}`: give the media type without parameters (`type/subtype`)"
        )),
        Some(("*", _)) => Err(format!(
            "`{t}` would exclude every response: remove the middleware instead"
        )),
        Some((ty, sub)) if token(ty) && (sub == "*" || token(sub)) => Ok(t),
        _ => Err(format!(
            "`{t}` is not a media type; expected `type/subtype` or `type/*`, e.g. `image/png`"
        )),
    }
}
