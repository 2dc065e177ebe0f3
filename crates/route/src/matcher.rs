//! The matchers: checking their arguments at parse time and testing a request.

use std::net::IpAddr;

use http::HeaderName;
use ipnet::IpNet;
use regex::{Regex, RegexBuilder, bytes};

use crate::RequestInfo;
use crate::error::ParseError;
use crate::query;

/// Compiled-size budget for each regex (program and lazy DFA cache), in bytes.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A string argument and the byte offset of its opening quote.
#[derive(Debug, Clone)]
pub(crate) struct Arg {
    pub(crate) value: String,
    pub(crate) offset: usize,
    /// Whether the value appears unchanged in the source (no escapes), so that
    /// `offset + 1 + i` is the source offset of the value's byte `i`.
    pub(crate) verbatim: bool,
}

impl Arg {
    /// The source offset of the value's byte `i`, or of the argument if escapes make
    /// that ambiguous.
    fn offset_of(&self, i: usize) -> usize {
        if self.verbatim {
            self.offset + 1 + i
        } else {
            self.offset
        }
    }
}

/// One compiled matcher.
#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    /// Lowercased host.
    Host(String),
    HostRegexp(Regex),
    Path(String),
    PathPrefix(String),
    PathRegexp(Regex),
    /// Uppercased method.
    Method(String),
    Header(HeaderName, String),
    HeaderRegexp(HeaderName, bytes::Regex),
    /// `Query(key, value)`; `Query(key)` is `Query(key, "")`, as in Traefik.
    Query(String, String),
    QueryRegexp(String, bytes::Regex),
    ClientIp(IpNet),
}

/// Arity and parameter names, per matcher.
fn arity(name: &str) -> Option<(usize, usize, &'static str)> {
    Some(match name {
        "Host" => (1, 1, "host"),
        "HostRegexp" => (1, 1, "regex"),
        "Path" => (1, 1, "path"),
        "PathPrefix" => (1, 1, "prefix"),
        "PathRegexp" => (1, 1, "regex"),
        "Method" => (1, 1, "method"),
        "Header" => (2, 2, "name, value"),
        "HeaderRegexp" => (2, 2, "name, regex"),
        "Query" => (1, 2, "key[, value]"),
        "QueryRegexp" => (1, 2, "key[, regex]"),
        "ClientIP" => (1, 1, "IP or CIDR"),
        _ => return None,
    })
}

/// Whether `name` is a known matcher.
pub(crate) fn is_matcher(name: &str) -> bool {
    arity(name).is_some()
}

impl Matcher {
    /// Checks the arguments of matcher `name` and compiles it.
    ///
    /// `close` is the offset of the closing `)`, where a missing argument is reported.
    pub(crate) fn build(name: &str, mut args: Vec<Arg>, close: usize) -> Result<Self, ParseError> {
        let (min, max, params) = arity(name).expect("parser checks the name first");
        let n = args.len();
        if n < min || n > max {
            let offset = if n > max { args[max].offset } else { close };
            let message = if max == 1 && n > 1 {
                format!(
                    "`{name}` takes 1 argument in Traefik v3, got {n}; to match any of several values write `{name}(`a`) || {name}(`b`)`"
                )
            } else {
                let count = if min == max {
                    format!("{min} argument{}", if min == 1 { "" } else { "s" })
                } else {
                    format!("{min} or {max} arguments")
                };
                format!("`{name}` takes {count} ({params}), got {n}")
            };
            return Err(ParseError::new(offset, message));
        }
        let second = (n == 2).then(|| args.pop()).flatten();
        let first = args.pop().expect("at least one argument");
        Ok(match name {
            "Host" => {
                let host = ascii_only(name, &first)?;
                if host.is_empty() {
                    return Err(ParseError::new(
                        first.offset,
                        "`Host` needs a non-empty host",
                    ));
                }
                Matcher::Host(host.to_ascii_lowercase())
            }
            "HostRegexp" => {
                ascii_only(name, &first)?;
                Matcher::HostRegexp(build_regex(name, &first, RegexBuilder::new)?)
            }
            "Path" => Matcher::Path(starts_with_slash(name, first)?),
            "PathPrefix" => Matcher::PathPrefix(starts_with_slash(name, first)?),
            "PathRegexp" => Matcher::PathRegexp(build_regex(name, &first, RegexBuilder::new)?),
            "Method" => {
                let upper = first.value.to_ascii_uppercase();
                if http::Method::from_bytes(upper.as_bytes()).is_err() {
                    return Err(ParseError::new(
                        first.offset,
                        format!("invalid HTTP method `{}`", first.value),
                    ));
                }
                Matcher::Method(upper)
            }
            "Header" | "HeaderRegexp" => {
                let header = header_name(&first)?;
                let value = second.expect("arity checked");
                if name == "Header" {
                    Matcher::Header(header, value.value)
                } else {
                    let re = build_regex(name, &value, bytes::RegexBuilder::new)?;
                    Matcher::HeaderRegexp(header, re)
                }
            }
            "Query" => Matcher::Query(first.value, second.map(|a| a.value).unwrap_or_default()),
            "QueryRegexp" => match second {
                None => Matcher::Query(first.value, String::new()),
                Some(re) => Matcher::QueryRegexp(
                    first.value,
                    build_regex(name, &re, bytes::RegexBuilder::new)?,
                ),
            },
            "ClientIP" => Matcher::ClientIp(ip_net(&first)?),
            _ => unreachable!("arity() covers every matcher name"),
        })
    }

    /// Tests the request. Allocates only for `HostRegexp` on a host longer than 256
    /// bytes with uppercase letters, and for `QueryRegexp` on a value that needs decoding.
    pub(crate) fn matches(&self, req: &RequestInfo<'_>) -> bool {
        match self {
            Matcher::Host(host) => req.host.is_some_and(|h| host_eq(h, host)),
            Matcher::HostRegexp(re) => with_lowercase(req.host.unwrap_or(""), |h| re.is_match(h)),
            Matcher::Path(p) => req.path == p,
            Matcher::PathPrefix(p) => req.path.starts_with(p.as_str()),
            Matcher::PathRegexp(re) => re.is_match(req.path),
            Matcher::Method(m) => req.method.as_str().eq_ignore_ascii_case(m),
            Matcher::Header(name, value) => req
                .headers
                .get_all(name)
                .iter()
                .any(|v| v.as_bytes() == value.as_bytes()),
            Matcher::HeaderRegexp(name, re) => req
                .headers
                .get_all(name)
                .iter()
                .any(|v| re.is_match(v.as_bytes())),
            Matcher::Query(key, value) => req.query.is_some_and(|q| {
                query::raw_pairs(q).any(|(k, v)| {
                    query::decoded_eq(k, key.as_bytes()) && query::decoded_eq(v, value.as_bytes())
                })
            }),
            Matcher::QueryRegexp(key, re) => req.query.is_some_and(|q| {
                query::raw_pairs(q).any(|(k, v)| {
                    query::decoded_eq(k, key.as_bytes())
                        && query::decode(v).is_some_and(|v| re.is_match(&v))
                })
            }),
            Matcher::ClientIp(net) => net.contains(&req.client_ip.to_canonical()),
        }
    }
}

/// Traefik's host comparison: case-insensitive, and a trailing dot on either side is ignored.
fn host_eq(req: &str, rule: &str) -> bool {
    req.eq_ignore_ascii_case(rule)
        || rule
            .strip_suffix('.')
            .is_some_and(|r| req.eq_ignore_ascii_case(r))
        || req
            .strip_suffix('.')
            .is_some_and(|h| h.eq_ignore_ascii_case(rule))
}

/// Runs `f` on the ASCII-lowercased host, using a stack buffer for ordinary hosts.
fn with_lowercase(host: &str, f: impl FnOnce(&str) -> bool) -> bool {
    if !host.bytes().any(|b| b.is_ascii_uppercase()) {
        return f(host);
    }
    let mut buf = [0u8; 256];
    match buf.get_mut(..host.len()) {
        Some(dst) => {
            dst.copy_from_slice(host.as_bytes());
            dst.make_ascii_lowercase();
            // Lowercasing ASCII bytes keeps UTF-8 valid.
            std::str::from_utf8(dst).is_ok_and(f)
        }
        None => f(&host.to_ascii_lowercase()),
    }
}

fn ascii_only<'a>(name: &str, arg: &'a Arg) -> Result<&'a str, ParseError> {
    match arg.value.char_indices().find(|(_, c)| !c.is_ascii()) {
        None => Ok(&arg.value),
        Some((i, c)) => Err(ParseError::new(
            arg.offset_of(i),
            format!(
                "`{name}` does not accept non-ASCII characters (found `{c}`); use the punycode form of the domain"
            ),
        )),
    }
}

fn starts_with_slash(name: &str, arg: Arg) -> Result<String, ParseError> {
    if arg.value.starts_with('/') {
        Ok(arg.value)
    } else {
        Err(ParseError::new(
            arg.offset,
            format!(
                "`{name}` needs a path starting with `/`, got `{}`",
                arg.value
            ),
        ))
    }
}

fn header_name(arg: &Arg) -> Result<HeaderName, ParseError> {
    HeaderName::from_bytes(arg.value.as_bytes()).map_err(|_| {
        ParseError::new(
            arg.offset,
            format!("invalid header name `{}`", arg.value.escape_debug()),
        )
    })
}

fn ip_net(arg: &Arg) -> Result<IpNet, ParseError> {
    let s = arg.value.trim();
    let net = if s.contains('/') {
        s.parse::<IpNet>().ok()
    } else {
        s.parse::<IpAddr>().ok().map(IpNet::from)
    };
    let net = net.ok_or_else(|| {
        ParseError::new(
            arg.offset,
            format!(
                "invalid IP address or CIDR `{}` in `ClientIP`; expected e.g. `10.0.0.0/8` or `::1`",
                arg.value.escape_debug()
            ),
        )
    })?;
    Ok(unmap_v4(net))
}

/// `::ffff:a.b.c.d/n` (n ≥ 96) becomes `a.b.c.d/(n-96)`, since client addresses are
/// canonicalised the same way before matching.
fn unmap_v4(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && let Some(len) = v6.prefix_len().checked_sub(96)
        && let Ok(n) = ipnet::Ipv4Net::new(v4, len)
    {
        return IpNet::V4(n);
    }
    net
}

/// Builder knobs shared by `regex::RegexBuilder` and `regex::bytes::RegexBuilder`.
trait Builder {
    type Re;
    fn limits(&mut self) -> Result<Self::Re, regex::Error>;
}

impl Builder for RegexBuilder {
    type Re = Regex;
    fn limits(&mut self) -> Result<Regex, regex::Error> {
        self.size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
    }
}

impl Builder for bytes::RegexBuilder {
    type Re = bytes::Regex;
    fn limits(&mut self) -> Result<bytes::Regex, regex::Error> {
        self.size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
    }
}

fn build_regex<B: Builder>(
    name: &str,
    arg: &Arg,
    new: impl FnOnce(&str) -> B,
) -> Result<B::Re, ParseError> {
    new(&arg.value).limits().map_err(|e| {
        let detail = match &e {
            regex::Error::CompiledTooBig(limit) => {
                format!("regex is too large once compiled (limit {limit} bytes)")
            }
            other => {
                let text = other.to_string();
                // The syntax error's last line is `error: <what>`; the lines before it
                // repeat the pattern with a caret.
                text.lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("error: "))
                    .map_or_else(|| text.replace('\n', " "), str::to_owned)
            }
        };
        ParseError::new(arg.offset, format!("invalid regex in `{name}`: {detail}"))
    })
}
