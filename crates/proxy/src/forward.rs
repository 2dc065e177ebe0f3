//! Header hygiene for forwarding: hop-by-hop headers out, `X-Forwarded-*` in.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection and must not be forwarded:
//! `Connection` and every header it names (but `Host`, `Content-Length` and
//! `Transfer-Encoding`, see [`crate::framing`]), `Keep-Alive`, `Proxy-Connection`, `TE`,
//! `Transfer-Encoding`, `Upgrade` (kept only while we are tunnelling an upgrade), and the
//! proxy authentication pair. `TE: trailers` is kept for HTTP/2 upstreams, where gRPC needs it.
//!
//! This is the one hop-by-hop rule, for requests and responses on both paths: the hyper
//! path and the relay's requests go through [`strip_hop_by_hop`]; the relay's response
//! writer (`crate::relay::wire`), which copies fields as bytes, asks [`is_hop_by_hop`] and
//! [`connection_named`] of each, the same list and the same exceptions.
//!
//! Forwarded headers: the client's address is appended to `X-Forwarded-For` (the convention
//! every peer follows); `X-Forwarded-Proto` and `X-Forwarded-Host` are set to what this gateway
//! saw, replacing anything the client sent, and a client-sent `X-Forwarded-Prefix` is dropped
//! (only our strip-prefix middleware may set it; spoofing it has bypassed auth in other proxies).
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Fields that describe one connection only (RFC 9110 §7.6.1, and RFC 9112 §6.1 for
/// `Transfer-Encoding`), never forwarded as received: the one list, by name.
const HOP_BY_HOP_NAMES: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// [`HOP_BY_HOP_NAMES`] as header names, for removing them from a `HeaderMap`.
static HOP_BY_HOP: [HeaderName; 8] = [
    HeaderName::from_static(HOP_BY_HOP_NAMES[0]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[1]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[2]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[3]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[4]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[5]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[6]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[7]),
];

/// Whether a field named `name` (any case) is hop-by-hop by the fixed list: the relay's
/// byte-level form of what [`strip_hop_by_hop`] removes. Fields a `Connection` header names
/// are hop-by-hop too: see [`connection_named`].
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP_NAMES
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// The field names a `Connection` value makes hop-by-hop (RFC 9110 §7.6.1): its list
/// elements, but not `Host`, `Content-Length` or `Transfer-Encoding`, which are not the
/// sender's to make hop-by-hop ([`crate::framing::is_protected`]).
pub(crate) fn connection_named(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    crate::framing::tokens(value).filter(|t| !t.is_empty() && !crate::framing::is_protected(t))
}

/// `X-Forwarded-For`.
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Forwarded-Prefix`.
pub(crate) static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Is this an HTTP/1.1 upgrade request (`Connection: upgrade` + `Upgrade: x`)?
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Remove hop-by-hop headers. With `keep_upgrade`, `Connection: upgrade` and `Upgrade` stay.
pub(crate) fn strip_hop_by_hop(
    headers: &mut HeaderMap,
    keep_upgrade: bool,
    keep_te_trailers: bool,
) {
    // Fast path: most messages carry none of these; one pass over the (few) names is cheaper
    // than a hash lookup per hop-by-hop header.
    if !headers.keys().any(|n| HOP_BY_HOP.contains(n)) {
        return;
    }
    // Headers named by Connection are hop-by-hop too. Collect first: we mutate after.
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| connection_named(v.as_bytes()))
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .filter(|n| !(keep_upgrade && n == header::UPGRADE))
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    let upgrade = keep_upgrade
        .then(|| headers.remove(header::UPGRADE))
        .flatten();
    let te = headers.remove(header::TE);
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
    if let Some(te) = te
        && keep_te_trailers
        && te.as_bytes().eq_ignore_ascii_case(b"trailers")
    {
        headers.insert(header::TE, te);
    }
    if let Some(u) = upgrade {
        headers.insert(header::UPGRADE, u);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Marks a request that came over TLS: the server puts it in the request's extensions, and
/// `X-Forwarded-Proto` says `https`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Https;

/// Set the forwarded headers on a request going upstream (`https`: it came over TLS).
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    client_ip: IpAddr,
    host: Option<HeaderValue>,
    https: bool,
) {
    let mut xff = String::with_capacity(48);
    for v in headers.get_all(&X_FORWARDED_FOR) {
        if let Ok(v) = v.to_str() {
            let v = v.trim();
            if !v.is_empty() {
                xff.push_str(v);
                xff.push_str(", ");
            }
        }
    }
    push_ip(&mut xff, canonical_ip(client_ip));
    if let Ok(v) = HeaderValue::try_from(xff) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    let proto = if https { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    match host {
        Some(h) => headers.insert(X_FORWARDED_HOST.clone(), h),
        None => headers.remove(&X_FORWARDED_HOST),
    };
    headers.remove(&X_FORWARDED_PREFIX);
}

/// Append `ip` as its `Display` writes it. IPv4, nearly every client, is written octet by
/// octet with itoa (as `put_length` writes Content-Length): `write!` through `Ipv4Addr`'s
/// `Display` cost about 1,000 instructions per request (callgrind, docs/benchmarks.md).
/// `ipv4_is_written_as_display_writes_it` holds the two equal.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// IPv4-mapped IPv6 addresses are shown as IPv4.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn removes_hop_by_hop_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip"),
            ("proxy-authorization", "x"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false, true);
        let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn connection_cannot_name_framing_or_host_away() {
        let mut h = map(&[
            (
                "connection",
                "content-length, host, transfer-encoding, x-gone",
            ),
            ("content-length", "35"),
            ("host", "a.test"),
            ("x-gone", "1"),
        ]);
        strip_hop_by_hop(&mut h, false, false);
        assert_eq!(h["content-length"], "35");
        assert_eq!(h["host"], "a.test");
        assert!(h.get("x-gone").is_none());
    }

    #[test]
    fn keeps_upgrade_when_tunnelling_and_te_trailers_for_h2() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
        ]);
        strip_hop_by_hop(&mut h, true, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["te"], "trailers");
        let mut h = map(&[("te", "trailers")]);
        strip_hop_by_hop(&mut h, false, false);
        assert!(h.get("te").is_none());
    }

    #[test]
    fn ipv4_is_written_as_display_writes_it() {
        let check = |ip: IpAddr| {
            let mut ours = String::from("x, ");
            push_ip(&mut ours, ip);
            assert_eq!(ours, format!("x, {ip}"));
        };
        // Every octet value in every position, then a spread of whole addresses.
        for octet in 0..=255u8 {
            for at in 0..4 {
                let mut octets = [1, 22, 133, 4];
                octets[at] = octet;
                check(IpAddr::from(octets));
            }
        }
        let mut x: u32 = 0x9E37_79B9;
        for _ in 0..100_000 {
            // xorshift32: a repeatable spread over the address space.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            check(IpAddr::from(x.to_be_bytes()));
        }
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
            "fe80::1:2:3:4",
        ] {
            check(ip.parse().unwrap());
        }
    }

    #[test]
    fn appends_forwarded_for_and_overrides_proto_host_prefix() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-prefix", "/admin"),
        ]);
        set_forwarded(
            &mut h,
            "::ffff:127.0.0.1".parse().unwrap(),
            Some(HeaderValue::from_static("example.com")),
            false,
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert!(h.get("x-forwarded-prefix").is_none());
        // Over TLS, whatever the client said.
        let mut h = map(&[("x-forwarded-proto", "http")]);
        set_forwarded(&mut h, "127.0.0.1".parse().unwrap(), None, true);
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn the_byte_form_of_the_rule_is_the_header_map_form() {
        // `HeaderName::from_static` gives the standard representation, so the map's lookups
        // find these, and both forms name the same fields.
        assert_eq!(HOP_BY_HOP[0], header::CONNECTION);
        assert_eq!(HOP_BY_HOP[3], header::TE);
        assert_eq!(HOP_BY_HOP[7], header::PROXY_AUTHORIZATION);
        for (name, text) in HOP_BY_HOP.iter().zip(HOP_BY_HOP_NAMES) {
            assert_eq!(name.as_str(), text);
            assert!(is_hop_by_hop(text.to_ascii_uppercase().as_bytes()));
        }
        assert!(
            !is_hop_by_hop(b"content-length"),
            "framing: the writer's, not this rule's"
        );
        assert!(!is_hop_by_hop(b"x-connection"));
    }

    #[test]
    fn detects_upgrades() {
        assert!(is_upgrade(&map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket")
        ])));
        assert!(!is_upgrade(&map(&[("upgrade", "websocket")])));
    }
}
