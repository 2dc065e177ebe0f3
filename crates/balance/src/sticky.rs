//! Sticky sessions: a cookie pins a client to one backend.
//!
//! # Theory
//!
//! Some applications keep per-session state in the replica's memory. A sticky service
//! answers the first request of a client with a cookie naming the backend that served it;
//! later requests carry the cookie and go to the same backend for as long as it is in the
//! set. When it leaves (scaled down, unhealthy, excluded on a retry), the request is balanced
//! normally and the cookie is re-set to the new backend: stickiness is best effort and never
//! sends traffic to a backend that is gone. Traefik, HAProxy (`cookie … insert`), nginx
//! (`sticky cookie`), Sozu and Caddy all work this way.
//!
//! # Here
//!
//! * The cookie value is [`Backend::sticky_id`](crate::Backend::sticky_id): 16 hex digits
//!   of a stable hash of the backend's key. It reveals neither the address nor the key, and
//!   the same backend gets the same value in every gateway process, so cookies survive
//!   restarts and work behind several gateway replicas. (Caddy instead uses an HMAC of the
//!   address; Traefik a truncated SHA-1.) The value is not a secret: a client can pick any
//!   backend of the set by sending its id, which is no more than what it could get by
//!   retrying.
//! * At swap time a table of `(id as u64, backend index)` sorted by id is built; at pick
//!   time the cookie is parsed as hex and binary-searched: O(log n), no allocation.
//! * A pinned backend that is present and not excluded is chosen with no `Set-Cookie`.
//!   Otherwise (no cookie, unknown or malformed cookie, backend gone or excluded) the pick
//!   falls back to [round robin](crate::round_robin) and the proxy is asked to set the cookie.

use std::fmt;
use std::sync::Arc;

use crate::Backend;

/// Lookup from sticky id to backend index.
pub(crate) struct StickyTable {
    ids: Box<[(u64, u32)]>,
}

impl fmt::Debug for StickyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StickyTable")
            .field("len", &self.ids.len())
            .finish()
    }
}

impl StickyTable {
    /// Builds the table for `backends`: O(n log n).
    pub(crate) fn new(backends: &[Arc<Backend>]) -> StickyTable {
        let mut ids: Vec<(u64, u32)> = backends
            .iter()
            .enumerate()
            .filter_map(|(i, b)| Some((parse_id(b.sticky_id())?, i as u32)))
            .collect();
        ids.sort_unstable();
        StickyTable {
            ids: ids.into_boxed_slice(),
        }
    }

    /// The index of the backend whose sticky id is `cookie`, if it is in the set.
    pub(crate) fn lookup(&self, cookie: &str, backends: &[Arc<Backend>]) -> Option<usize> {
        let id = parse_id(cookie)?;
        let at = self.ids.partition_point(|e| e.0 < id);
        self.ids[at..]
            .iter()
            .take_while(|e| e.0 == id)
            .map(|e| e.1 as usize)
            .find(|&i| backends[i].sticky_id() == cookie)
    }
}

/// Parses exactly 16 lowercase hex digits (the form [`Backend::sticky_id`] produces).
fn parse_id(s: &str) -> Option<u64> {
    let valid = s.len() == 16 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if valid {
        u64::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_backend_by_its_id() {
        let b: Vec<_> = (0..50)
            .map(|i| Backend::new(format!("svc/{i}"), "127.0.0.1:1", 1))
            .collect();
        let t = StickyTable::new(&b);
        for (i, backend) in b.iter().enumerate() {
            assert_eq!(t.lookup(backend.sticky_id(), &b), Some(i));
        }
    }

    #[test]
    fn rejects_unknown_and_malformed_cookies() {
        let b = vec![Backend::new("a", "127.0.0.1:1", 1)];
        let t = StickyTable::new(&b);
        let other = Backend::new("z", "127.0.0.1:1", 1);
        assert_eq!(t.lookup(other.sticky_id(), &b), None);
        assert_eq!(t.lookup("", &b), None);
        assert_eq!(t.lookup("not-hex-at-all!!", &b), None);
        assert_eq!(t.lookup(&b[0].sticky_id().to_uppercase(), &b), None);
        assert_eq!(t.lookup(&format!("{}0", b[0].sticky_id()), &b), None);
        assert_eq!(t.lookup(&format!("+{}", &b[0].sticky_id()[1..]), &b), None);
    }
}
