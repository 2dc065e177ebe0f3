//! Raw → validated for the edge of the stack: TLS at the entrypoints (`tls`, `redirect_to`),
//! TLS to the replicas (`https://` servers, a service's `tls`, `protocol: h2`), and the
//! middlewares beyond path and header edits, `chain` included.
//!
//! Files named here (certificates, keys, CA bundles, htpasswd files) are resolved against the
//! stack file's folder, like every other path in it, and must exist when the file is checked:
//! a missing certificate is a `shoal check` error at the field, not a failure at start.
//! Their contents are the gateway's to judge (it parses the PEM and reports expiry), except
//! htpasswd files, whose lines are checked here. No message ever repeats a password hash.
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Method};

use super::{Cx, offset_place, resolve};
use crate::error::{Diagnostic, did_you_mean};
use crate::model::*;
use crate::raw::*;

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
    /// `entrypoints.NAME.tls`, None if anything in it is invalid (each problem is reported).
    pub(super) fn entrypoint_tls(
        &mut self,
        path: &str,
        raw: RawEntrypointTls,
        base: &Path,
    ) -> Option<EntrypointTls> {
        let before = self.diags.len();
        let mut certificates = Vec::new();
        let shorthand = raw.cert.is_some() || raw.key.is_some();
        match (shorthand, raw.certificates) {
            (true, Some(_)) => self.misplaced(
                &format!("{path}.certificates"),
                "give `cert` and `key` (one certificate) or `certificates` (a list), not both",
            ),
            (true, None) => {
                certificates.extend(self.certificate(path, raw.cert, raw.key, base));
            }
            (false, Some(list)) => {
                if list.is_empty() {
                    self.error(
                        &format!("{path}.certificates"),
                        "needs at least one certificate: `[{ cert: FILE, key: FILE }]`",
                    );
                }
                for (i, c) in list.into_iter().enumerate() {
                    let field = format!("{path}.certificates[{i}]");
                    certificates.extend(self.certificate(&field, c.cert, c.key, base));
                }
            }
            (false, None) => self.misplaced(
                path,
                "needs a certificate: `cert` and `key` (PEM files), or \
                 `certificates: [{ cert, key }, …]` to choose among several by SNI",
            ),
        }
        let min_version = match raw.min_version {
            None => TlsVersion::default(),
            Some(v) => self.tls_version(&format!("{path}.min_version"), &v.0),
        };
        (self.diags.len() == before).then_some(EntrypointTls {
            certificates,
            min_version,
        })
    }

    /// One `{cert, key}` pair at `path`; both must be there and be readable files.
    fn certificate(
        &mut self,
        path: &str,
        cert: Option<String>,
        key: Option<String>,
        base: &Path,
    ) -> Option<CertificateFiles> {
        match (cert, key) {
            (Some(cert), Some(key)) => {
                let cert = self.existing_file(&format!("{path}.cert"), &cert, base);
                let key = self.existing_file(&format!("{path}.key"), &key, base);
                Some(CertificateFiles {
                    cert: cert?,
                    key: key?,
                })
            }
            (Some(_), None) => {
                self.misplaced(
                    &format!("{path}.cert"),
                    "give `key` too: the certificate's private key (a PEM file)",
                );
                None
            }
            (None, Some(_)) => {
                self.misplaced(
                    &format!("{path}.key"),
                    "give `cert` too: the certificate chain (a PEM file) the key belongs to",
                );
                None
            }
            (None, None) => {
                self.misplaced(path, "needs `cert` and `key` (PEM files)");
                None
            }
        }
    }

    /// `min_version`: `1.2` or `1.3`; TLS 1.0 and 1.1 are refused by name.
    fn tls_version(&mut self, field: &str, text: &str) -> TlsVersion {
        let t = text.trim();
        let number = t
            .strip_prefix("TLSv")
            .or_else(|| t.strip_prefix("tlsv"))
            .unwrap_or(t);
        match number {
            "1.2" => TlsVersion::Tls12,
            "1.3" => TlsVersion::Tls13,
            "1" | "1.0" | "1.1" => {
                self.error_hint(
                    field,
                    format!(
                        "TLS {} is refused: it is insecure, and RFC 8996 deprecates it",
                        if number == "1.1" { "1.1" } else { "1.0" }
                    ),
                    Some("use `1.2` (the default) or `1.3`".into()),
                );
                TlsVersion::default()
            }
            _ => {
                self.error(
                    field,
                    format!("unknown TLS version `{t}`; expected `1.2` or `1.3`"),
                );
                TlsVersion::default()
            }
        }
    }

    /// A file named in the stack file, resolved against its folder: it must exist and be
    /// readable (its contents are checked by whoever reads it).
    fn existing_file(&mut self, field: &str, text: &str, base: &Path) -> Option<PathBuf> {
        let t = text.trim();
        if t.is_empty() {
            self.error(field, "give a file");
            return None;
        }
        let path = resolve(base, t);
        let shown = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
        let shown = shown.display();
        let problem = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                format!("no such file: {shown}")
            }
            Err(e) => format!("cannot read {shown}: {e}"),
            Ok(m) if m.is_dir() => format!("{shown} is a folder, not a file"),
            Ok(m) if !m.is_file() => format!("{shown} is not a regular file"),
            Ok(_) => match std::fs::File::open(&path) {
                Ok(_) => return Some(path),
                Err(e) => format!("cannot read {shown}: {e}"),
            },
        };
        self.error(field, problem);
        None
    }

    /// Resolve each `redirect_to` once every entrypoint is known. `declared` is every
    /// entrypoint written, with whether it has `tls` and its port (None if its address is
    /// invalid); `redirects` are `(entrypoint, target)`.
    pub(super) fn redirects(
        &mut self,
        entrypoints: &mut [Entrypoint],
        declared: &[(String, bool, Option<u16>)],
        redirects: Vec<(String, String)>,
    ) {
        for (name, target) in redirects {
            let field = format!("gateway.entrypoints.{name}.redirect_to");
            let target = target.trim();
            let port = match declared.iter().find(|(n, ..)| n == target) {
                _ if target == name => {
                    self.error(
                        &field,
                        format!("entrypoint `{name}` cannot redirect to itself"),
                    );
                    continue;
                }
                None => {
                    let others = declared
                        .iter()
                        .map(|(n, ..)| n.as_str())
                        .filter(|n| *n != name);
                    let hint = did_you_mean(target, others);
                    self.error_hint(&field, format!("unknown entrypoint `{target}`"), hint);
                    continue;
                }
                Some((_, false, _)) => {
                    self.error_hint(
                        &field,
                        format!(
                            "entrypoint `{target}` has no `tls`: `redirect_to` sends clients \
                             to an HTTPS entrypoint"
                        ),
                        Some(format!("add `tls:` to `{target}`")),
                    );
                    continue;
                }
                Some((_, true, port)) => *port,
            };
            if let (Some(port), Some(e)) = (port, entrypoints.iter_mut().find(|e| e.name == name)) {
                e.redirect_to = Some(RedirectHttps {
                    entrypoint: target.to_owned(),
                    port,
                });
            }
        }
    }

    /// A service's `tls`, given its servers' scheme (`Some(true)`: `https://`; None: replicas
    /// shoal runs).
    pub(super) fn upstream_tls(
        &mut self,
        path: &str,
        raw: Option<BoolOr<RawUpstreamTls>>,
        https: Option<bool>,
        base: &Path,
    ) -> Option<UpstreamTls> {
        let field = format!("{path}.tls");
        match raw {
            None => (https == Some(true)).then(UpstreamTls::default),
            Some(BoolOr::Bool(false)) => {
                if https == Some(true) {
                    self.error(
                        &field,
                        "the servers are `https://`, which speaks TLS; for plain HTTP write \
                         them as `http://`",
                    );
                }
                None
            }
            Some(_) if https == Some(false) => {
                self.error_hint(
                    &field,
                    "`tls` is for replicas that serve HTTPS, and this service's servers are \
                     `http://`",
                    Some("write the servers as `https://HOST:PORT`".into()),
                );
                None
            }
            Some(BoolOr::Bool(true)) => Some(UpstreamTls::default()),
            Some(BoolOr::Map(raw)) => self.upstream_tls_settings(&field, raw, base),
        }
    }

    fn upstream_tls_settings(
        &mut self,
        field: &str,
        raw: RawUpstreamTls,
        base: &Path,
    ) -> Option<UpstreamTls> {
        let before = self.diags.len();
        let insecure_skip_verify = raw.insecure_skip_verify.unwrap_or(false);
        if insecure_skip_verify && raw.ca.is_some() {
            self.misplaced(
                &format!("{field}.ca"),
                "`insecure_skip_verify: true` accepts any certificate, so `ca` would not be \
                 used; keep one of them",
            );
        }
        let ca = raw
            .ca
            .and_then(|ca| self.existing_file(&format!("{field}.ca"), &ca, base));
        let server_name = raw.server_name.map(|name| {
            let name = name.trim().to_owned();
            if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
                self.error(
                    &format!("{field}.server_name"),
                    format!("`{name}` is not a DNS name or an IP address"),
                );
            }
            name
        });
        (self.diags.len() == before).then_some(UpstreamTls {
            ca,
            server_name,
            insecure_skip_verify,
        })
    }

    /// `h2` needs TLS to the replicas; `h2c` is HTTP/2 without it.
    pub(super) fn protocol_fits_tls(&mut self, path: &str, protocol: Protocol, tls: bool) {
        let field = format!("{path}.protocol");
        match (protocol, tls) {
            (Protocol::H2, false) => self.error_hint(
                &field,
                "`h2` is HTTP/2 over TLS, and this service does not speak TLS to its replicas",
                Some(
                    "write `protocol: h2c` for HTTP/2 without TLS, or give `https://` servers \
                     or `tls: true`"
                        .into(),
                ),
            ),
            (Protocol::H2c, true) => self.error_hint(
                &field,
                "`h2c` is HTTP/2 without TLS, and this service speaks TLS to its replicas",
                Some("write `protocol: h2` for HTTP/2 over TLS".into()),
            ),
            _ => {}
        }
    }

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

    fn basic_auth(&mut self, path: &str, raw: RawBasicAuth, base: &Path) -> Option<Middleware> {
        let before = self.diags.len();
        let mut users: Vec<(String, String)> = Vec::new();
        for (i, entry) in raw.users.iter().flatten().enumerate() {
            let field = format!("{path}.users[{i}]");
            match htpasswd_entry(entry) {
                Ok(user) => self.add_user(&field, "", user, &mut users),
                Err(e) => self.error_hint(&field, e, Some(REGENERATE.into())),
            }
        }
        if let Some(file) = &raw.users_file {
            let field = format!("{path}.users_file");
            if let Some(p) = self.existing_file(&field, file, base) {
                let shown = file.trim();
                match read_bounded(&p, MAX_USERS_FILE) {
                    Err(e) => self.error(&field, format!("cannot read {}: {e}", p.display())),
                    Ok(None) => self.error(
                        &field,
                        format!(
                            "{} is larger than {} MiB",
                            p.display(),
                            MAX_USERS_FILE >> 20
                        ),
                    ),
                    Ok(Some(text)) => {
                        for (n, line) in text.lines().enumerate() {
                            let line = line.trim();
                            if line.is_empty() || line.starts_with('#') {
                                continue;
                            }
                            let place = format!("{shown}:{}: ", n + 1);
                            match htpasswd_entry(line) {
                                Ok(user) => self.add_user(&field, &place, user, &mut users),
                                Err(e) => self.error_hint(
                                    &field,
                                    format!("{place}{e}"),
                                    Some(REGENERATE.into()),
                                ),
                            }
                        }
                    }
                }
            }
        }
        let given = raw.users.as_ref().is_some_and(|u| !u.is_empty()) || raw.users_file.is_some();
        if !given {
            self.misplaced(
                path,
                "needs at least one user: `users: [\"NAME:HASH\"]` or `users_file: FILE` \
                 (htpasswd format)",
            );
        } else if users.is_empty() && self.diags.len() == before {
            self.error(
                &format!("{path}.users_file"),
                "lists no user (blank lines and `#` comments do not count)",
            );
        }
        let realm = raw.realm.unwrap_or_else(|| "shoal".to_owned());
        if realm.is_empty() || realm.contains('"') || realm.chars().any(char::is_control) {
            self.error(
                &format!("{path}.realm"),
                "a realm is non-empty text without `\"` or control characters (it is sent \
                 quoted in `WWW-Authenticate`)",
            );
        }
        let header_field = raw
            .header_field
            .and_then(|h| self.managed_header_name(&format!("{path}.header_field"), h.trim()));
        Some(Middleware::BasicAuth(BasicAuth {
            users,
            realm,
            remove_header: raw.remove_header.unwrap_or(false),
            header_field,
        }))
    }

    /// Add a user unless it is already there (then report it, `place` naming the line of a
    /// users file).
    fn add_user(
        &mut self,
        field: &str,
        place: &str,
        user: (String, String),
        users: &mut Vec<(String, String)>,
    ) {
        if users.iter().any(|(u, _)| *u == user.0) {
            self.error(field, format!("{place}user `{}` is listed twice", user.0));
        } else {
            users.push(user);
        }
    }

    fn ip_allow_list(&mut self, path: &str, raw: RawIpAllowList) -> Option<Middleware> {
        let field = format!("{path}.source_range");
        let Some(list) = raw.source_range else {
            self.misplaced(
                path,
                "needs `source_range`: the addresses or CIDR ranges allowed, e.g. \
                 `[10.0.0.0/8, 127.0.0.1]`",
            );
            return None;
        };
        if list.is_empty() {
            self.error(&field, "needs at least one address or CIDR range");
        }
        let mut source_range = Vec::new();
        for (i, item) in list.iter().enumerate() {
            match ip_range(item) {
                Ok(r) => source_range.push(r),
                Err(e) => self.error(&format!("{field}[{i}]"), e),
            }
        }
        Some(Middleware::IpAllowList(IpAllowList {
            source_range,
            depth: raw.depth.unwrap_or(0),
        }))
    }

    fn redirect_scheme(&mut self, path: &str, raw: RawRedirectScheme) -> Option<Middleware> {
        const SCHEMES: [&str; 2] = ["https", "http"];
        let scheme = match raw.scheme.as_deref().map(str::trim) {
            None => {
                self.misplaced(path, "needs `scheme`: `https` or `http`");
                return None;
            }
            Some(s) if SCHEMES.contains(&s.to_ascii_lowercase().as_str()) => s.to_ascii_lowercase(),
            Some(other) => {
                self.error_hint(
                    &format!("{path}.scheme"),
                    format!("unknown scheme `{other}`; expected `https` or `http`"),
                    did_you_mean(other, SCHEMES),
                );
                return None;
            }
        };
        let port = raw.port.and_then(|p| {
            let t = p.0.trim();
            match t.parse::<u16>() {
                Ok(port) if port > 0 => Some(port),
                _ => {
                    self.error(
                        &format!("{path}.port"),
                        format!("`{t}` is not a port; expected 1 to 65535"),
                    );
                    None
                }
            }
        });
        Some(Middleware::RedirectScheme(RedirectScheme {
            scheme,
            port,
            permanent: raw.permanent.unwrap_or(true),
        }))
    }

    /// `regex` and `replacement` of `redirect_regex` and `replace_path_regex`: the regex
    /// compiles and the replacement names only groups it has.
    fn rewrite(
        &mut self,
        path: &str,
        regex: Option<String>,
        replacement: Option<String>,
    ) -> Option<(Pattern, String)> {
        let (Some(source), Some(replacement)) = (regex, replacement) else {
            self.misplaced(path, "needs `regex` and `replacement`");
            return None;
        };
        let pattern = self.pattern(&format!("{path}.regex"), source)?;
        let field = format!("{path}.replacement");
        for group in replacement_groups(&replacement) {
            let exists = match &group {
                Group::Number(n) => *n < pattern.regex.captures_len(),
                Group::Name(name) => pattern.regex.capture_names().any(|c| c == Some(name)),
            };
            if exists {
                continue;
            }
            let groups = pattern.regex.captures_len() - 1;
            let (message, hint) = match &group {
                Group::Number(n) => (
                    format!("`${n}` refers to group {n}, and the regex has {groups} group(s)"),
                    None,
                ),
                Group::Name(name) => {
                    // `$1a` is the group named `1a` (the regex crate's rule, and Go's).
                    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
                    let hint = (!digits.is_empty()).then(|| {
                        format!(
                            "to follow group {digits} with `{}`, write `${{{digits}}}{}`",
                            &name[digits.len()..],
                            &name[digits.len()..]
                        )
                    });
                    (
                        format!(
                            "`${name}` refers to a group named `{name}`, which the regex does not have"
                        ),
                        hint,
                    )
                }
            };
            self.error_hint(&field, message, hint);
            return None;
        }
        Some((pattern, replacement))
    }

    /// A regular expression (`regex` crate syntax), errors pointing into it where the regex
    /// crate says where.
    fn pattern(&mut self, field: &str, source: String) -> Option<Pattern> {
        match regex::Regex::new(&source) {
            Ok(regex) => Some(Pattern { source, regex }),
            Err(e) => {
                let text = e.to_string();
                let (message, offset) = regex_error(&text, &source);
                let place = self.locs.value(field);
                let (line, column) = match offset {
                    Some(o) => offset_place(&source, o, place),
                    None => (place.line, place.column),
                };
                self.diags.push(Diagnostic {
                    file: self.file.to_owned(),
                    line,
                    column,
                    field: field.to_owned(),
                    message: format!("invalid regular expression: {message}"),
                    hint: None,
                });
                None
            }
        }
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
                    self.error(&f, e);
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
}

/// Largest `users_file` read.
const MAX_USERS_FILE: u64 = 64 << 20;

/// The text of `path` if it has at most `limit` bytes (files in `/proc` report no size, so
/// the bound is on what is read); None if it has more.
fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Option<String>> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_string(&mut text)?;
    Ok((text.len() as u64 <= limit).then_some(text))
}

/// What to do about a refused hash.
const REGENERATE: &str = "regenerate it with `htpasswd -B` (bcrypt), or use an argon2 hash";

/// The methods of RFC 9110 §9 and RFC 5789, uppercase.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// An htpasswd line `user:hash` whose hash shoal can verify. The error never contains the
/// hash or anything after the user name.
fn htpasswd_entry(entry: &str) -> Result<(String, String), String> {
    let Some((user, hash)) = entry.trim().split_once(':') else {
        return Err("expected `user:hash` (htpasswd format)".into());
    };
    let user = user.trim();
    if user.is_empty() || user.chars().any(char::is_control) {
        return Err("expected `user:hash` with a user name before the `:`".into());
    }
    let hash = hash.trim();
    if hash.is_empty() {
        return Err(format!("user `{user}` has no password hash"));
    }
    match hash_scheme(hash) {
        Ok(()) => Ok((user.to_owned(), hash.to_owned())),
        Err(found) => Err(format!(
            "user `{user}`: the password hash is {found}, which shoal does not accept"
        )),
    }
}

/// Ok for a well-formed bcrypt (`$2a$`, `$2b$`, `$2y$`) or argon2 (PHC format) hash; else
/// what it looks like, named by its scheme only.
fn hash_scheme(hash: &str) -> Result<(), &'static str> {
    if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        return bcrypt_hash(hash)
            .then_some(())
            .ok_or("a malformed bcrypt hash (expected `$2y$COST$` and 53 characters)");
    }
    if ["$argon2id$", "$argon2i$", "$argon2d$"]
        .iter()
        .any(|p| hash.starts_with(p))
    {
        return argon2_hash(hash).then_some(()).ok_or(
            "a malformed argon2 hash (expected the PHC format \
             `$argon2id$v=19$m=…,t=…,p=…$SALT$HASH`)",
        );
    }
    let crypt = |s: &str| {
        s.len() == 13
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    };
    Err(match hash {
        h if h.starts_with("$apr1$") => "Apache MD5 (`$apr1$`)",
        h if h.starts_with("{SHA}") => "SHA-1 (`{SHA}`)",
        h if h.starts_with("{SSHA}") => "salted SHA-1 (`{SSHA}`)",
        h if h.starts_with("$1$") => "MD5-crypt (`$1$`)",
        h if h.starts_with("$5$") => "SHA-256-crypt (`$5$`)",
        h if h.starts_with("$6$") => "SHA-512-crypt (`$6$`)",
        h if h.starts_with("$y$") => "yescrypt (`$y$`)",
        h if h.starts_with("$2x$") => "bcrypt's buggy `$2x$` variant",
        h if h.starts_with('$') => "an unknown crypt scheme",
        h if crypt(h) => "DES crypt (or plain text)",
        _ => "plain text or an unknown scheme",
    })
}

/// `$2y$CC$` then 53 characters of bcrypt's base64 (22 of salt, 31 of hash), cost 4–31.
fn bcrypt_hash(hash: &str) -> bool {
    let b = hash.as_bytes();
    let bcrypt64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/';
    b.len() == 60
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && (4..=31).contains(&((b[4] - b'0') * 10 + (b[5] - b'0')))
        && b[6] == b'$'
        && b[7..].iter().all(bcrypt64)
}

/// `$argon2id$[v=19$]m=M,t=T,p=P$SALT$HASH` with base64 (no padding) salt and hash.
fn argon2_hash(hash: &str) -> bool {
    let mut parts: Vec<&str> = hash.split('$').skip(2).collect();
    if parts.first().is_some_and(|v| v.starts_with("v=")) {
        let v = parts.remove(0);
        if !matches!(v, "v=16" | "v=19") {
            return false;
        }
    }
    let [params, salt, out] = parts[..] else {
        return false;
    };
    let mut keys: Vec<&str> = Vec::new();
    for kv in params.split(',') {
        match kv.split_once('=') {
            Some((k @ ("m" | "t" | "p"), v))
                if !keys.contains(&k) && v.parse::<u32>().is_ok_and(|n| n > 0) =>
            {
                keys.push(k);
            }
            _ => return false,
        }
    }
    let b64 = |s: &str, min: usize| {
        (min..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    keys.len() == 3 && b64(salt, 11) && b64(out, 16)
}

/// `10.0.0.0/8`, `fd00::/8`, or a bare address (a /32 or /128). Host bits are cleared, as
/// Traefik (Go's `net.ParseCIDR`) does.
fn ip_range(text: &str) -> Result<IpRange, String> {
    let t = text.trim();
    let (addr, prefix) = match t.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (t, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| {
        format!("`{t}` is not an address or a CIDR range like `10.0.0.0/8` or `fd00::/8`")
    })?;
    let (max, family) = if addr.is_ipv4() { (32, 4) } else { (128, 6) };
    let prefix = match prefix {
        None => max,
        Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
            format!("`{t}`: the prefix length of an IPv{family} range is 0 to {max}")
        })?,
    };
    let addr = match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    Ok(IpRange { addr, prefix })
}

/// A group a replacement refers to.
#[derive(Debug, PartialEq, Eq)]
enum Group {
    Number(usize),
    Name(String),
}

/// The groups `replacement` refers to, by the regex crate's rules (`Captures::expand`): `$$`
/// is a `$`; `${name}` and `$name` (the longest run of letters, digits and `_`) name a group,
/// by index when all digits; any other `$` is itself.
fn replacement_groups(replacement: &str) -> Vec<Group> {
    let b = replacement.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let group = |name: &str| match name.parse::<usize>() {
        Ok(n) => Group::Number(n),
        Err(_) => Group::Name(name.to_owned()),
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'$') => i += 2,
            Some(b'{') => match replacement[i + 2..].find('}') {
                Some(len) => {
                    out.push(group(&replacement[i + 2..i + 2 + len]));
                    i += 3 + len;
                }
                None => i += 1,
            },
            Some(c) if word(*c) => {
                let len = b[i + 1..].iter().take_while(|c| word(**c)).count();
                out.push(group(&replacement[i + 1..i + 1 + len]));
                i += 1 + len;
            }
            _ => i += 1,
        }
    }
    out
}

/// The regex crate's message for `source`, on one line, and the byte offset in `source`
/// it points at when its caret can be read. Its syntax errors look like
/// `regex parse error:\n    PATTERN\n    ^^^\nerror: MESSAGE`.
fn regex_error(text: &str, source: &str) -> (String, Option<usize>) {
    let lines: Vec<&str> = text.lines().collect();
    let message = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .map_or_else(|| lines.join(" "), str::to_owned);
    let offset = match lines[..] {
        [_, pattern, caret, ..] if pattern.strip_prefix("    ") == Some(source) => caret
            .strip_prefix("    ")
            .and_then(|c| c.find('^'))
            .and_then(|chars| source.char_indices().nth(chars).map(|(b, _)| b)),
        _ => None,
    };
    (message, offset)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_groups_follow_the_regex_crate() {
        use Group::*;
        assert_eq!(
            replacement_groups("/v2/$1/${2}x/$name/${x-y}/$$/$/${"),
            [
                Number(1),
                Number(2),
                Name("name".into()),
                Name("x-y".into())
            ]
        );
        assert_eq!(replacement_groups("$1a"), [Name("1a".into())]);
        // Checked against the regex crate itself: what it expands is what we found.
        let re = regex::Regex::new("(?<name>a)(b)").unwrap();
        let caps = re.captures("ab").unwrap();
        let mut out = String::new();
        caps.expand("$1-${2}-$name-$$-$3-${", &mut out);
        assert_eq!(out, "a-b-a-$--${");
        assert_eq!(
            replacement_groups("$1-${2}-$name-$$-$3-${"),
            [Number(1), Number(2), Name("name".into()), Number(3)]
        );
    }

    #[test]
    fn ip_ranges_clear_host_bits() {
        let r = ip_range("10.1.2.3/8").unwrap();
        assert_eq!((r.addr.to_string(), r.prefix), ("10.0.0.0".into(), 8));
        let r = ip_range("::1").unwrap();
        assert_eq!((r.addr.to_string(), r.prefix), ("::1".into(), 128));
        let r = ip_range("0.0.0.0/0").unwrap();
        assert_eq!((r.addr.to_string(), r.prefix), ("0.0.0.0".into(), 0));
        let r = ip_range("fd00:1::5/16").unwrap();
        assert_eq!((r.addr.to_string(), r.prefix), ("fd00::".into(), 16));
        assert!(ip_range("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(ip_range("::/129").unwrap_err().contains("0 to 128"));
        assert!(ip_range("10.0.0/8").unwrap_err().contains("not an address"));
    }

    #[test]
    fn regex_errors_keep_the_message_and_find_the_caret() {
        let source = String::from("ab(c"); // not a literal: clippy would refuse it
        let e = regex::Regex::new(&source).unwrap_err().to_string();
        let (message, offset) = regex_error(&e, &source);
        assert_eq!(message, "unclosed group");
        assert_eq!(offset, Some(2));
    }
}
