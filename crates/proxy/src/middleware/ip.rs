//! The client's address as the edge middlewares see it, and address ranges.
//!
//! Behind trusted proxies the TCP peer is the nearest proxy; the client is in
//! `X-Forwarded-For`, a comma-separated list to which each proxy appends the address it saw
//! (the de-facto convention; RFC 7239 §5.2 `Forwarded: for=` is its standard cousin). Only
//! the entries the trusted proxies wrote can be believed: with `depth` N, the client is the
//! N-th address from the right (Traefik's `ipStrategy.depth`); the entries left of it are
//! whatever the client sent. Depth 0 means no trusted proxy: the TCP peer.
use std::net::IpAddr;

use http::HeaderMap;
use shoal_config::IpRange;

use crate::forward::{X_FORWARDED_FOR, canonical_ip};

/// The `X-Forwarded-For` entry at the trusted depth is not an IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// The client's address: the peer at depth 0; else the `depth`-th address from the right of
/// `X-Forwarded-For` (all its field lines, in order, as one list: RFC 9110 §5.3), or the
/// peer when the list has fewer entries. An entry that is there but is not a bare IPv4 or
/// IPv6 address (no port, no brackets) is [`Malformed`]. Allocation-free.
pub(crate) fn client_ip(
    headers: &HeaderMap,
    peer: IpAddr,
    depth: usize,
) -> Result<IpAddr, Malformed> {
    if depth == 0 {
        return Ok(canonical_ip(peer));
    }
    let mut seen = 0;
    for line in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(line) = line.to_str() else {
            // Not visible ASCII: cannot hold the entry we need, if it is in this line.
            return Err(Malformed);
        };
        for entry in line.rsplit(',') {
            seen += 1;
            if seen == depth {
                // OWS around list elements (RFC 9110 §5.6.1).
                let entry = entry.trim_matches([' ', '\t']);
                return entry
                    .parse::<IpAddr>()
                    .map(canonical_ip)
                    .map_err(|_| Malformed);
            }
        }
    }
    Ok(canonical_ip(peer))
}

/// Whether `ip` is in `range`. An IPv4 address never matches an IPv6 range and the other
/// way round (IPv4-mapped addresses have been made IPv4 by [`client_ip`]).
pub(crate) fn contains(range: &IpRange, ip: IpAddr) -> bool {
    match (range.addr, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let bits = u32::from(range.prefix.min(32));
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let bits = u32::from(range.prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(X_FORWARDED_FOR.clone(), HeaderValue::from_str(l).unwrap());
        }
        h
    }

    const PEER: &str = "10.0.0.1";

    fn ip(headers: &HeaderMap, depth: usize) -> Result<String, Malformed> {
        client_ip(headers, PEER.parse().unwrap(), depth).map(|ip| ip.to_string())
    }

    #[test]
    fn depth_zero_is_the_peer_whatever_the_header_says() {
        assert_eq!(ip(&xff(&["1.1.1.1"]), 0), Ok(PEER.into()));
        let mapped = "::ffff:192.0.2.9".parse().unwrap();
        assert_eq!(
            client_ip(&HeaderMap::new(), mapped, 0),
            Ok("192.0.2.9".parse().unwrap())
        );
    }

    #[test]
    fn depth_counts_from_the_right_across_field_lines() {
        let h = xff(&["203.0.113.9, 198.51.100.2", "192.0.2.1"]);
        assert_eq!(ip(&h, 1), Ok("192.0.2.1".into()));
        assert_eq!(ip(&h, 2), Ok("198.51.100.2".into()));
        assert_eq!(ip(&h, 3), Ok("203.0.113.9".into()));
    }

    #[test]
    fn fewer_entries_than_the_depth_fall_back_to_the_peer() {
        assert_eq!(ip(&xff(&["192.0.2.1"]), 2), Ok(PEER.into()));
        assert_eq!(ip(&HeaderMap::new(), 1), Ok(PEER.into()));
    }

    #[test]
    fn optional_whitespace_is_trimmed_and_ipv6_is_accepted() {
        let h = xff(&["2001:db8::1 ,\t192.0.2.1"]);
        assert_eq!(ip(&h, 2), Ok("2001:db8::1".into()));
    }

    #[test]
    fn an_entry_that_is_not_a_bare_address_is_malformed() {
        for bad in [
            "unknown",
            "192.0.2.1:8080",
            "[2001:db8::1]",
            "",
            "192.0.2.256",
        ] {
            let h = xff(&[&format!("{bad}, 192.0.2.1")]);
            assert_eq!(ip(&h, 2), Err(Malformed), "{bad:?}");
            // Entries left of the trusted one are never looked at.
            assert_eq!(ip(&h, 1), Ok("192.0.2.1".into()));
        }
    }

    #[test]
    fn ranges_match_by_prefix_and_family() {
        let r = |s: &str, p: u8| IpRange {
            addr: s.parse().unwrap(),
            prefix: p,
        };
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(contains(&r("10.1.0.0", 16), a("10.1.255.3")));
        assert!(!contains(&r("10.1.0.0", 16), a("10.2.0.1")));
        assert!(contains(&r("0.0.0.0", 0), a("192.0.2.1")));
        assert!(contains(&r("192.0.2.7", 32), a("192.0.2.7")));
        assert!(!contains(&r("192.0.2.7", 32), a("192.0.2.8")));
        assert!(contains(&r("2001:db8::", 32), a("2001:db8:ffff::1")));
        assert!(!contains(&r("2001:db8::", 32), a("2001:db9::1")));
        assert!(contains(&r("::", 0), a("::1")));
        assert!(!contains(&r("0.0.0.0", 0), a("::1")));
        assert!(!contains(&r("::", 0), a("127.0.0.1")));
    }
}
