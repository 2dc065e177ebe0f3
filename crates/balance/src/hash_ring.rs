//! Consistent hashing on a ring of virtual nodes (ketama).
//!
//! # Theory
//!
//! Hashing a request key modulo the number of backends sends almost every key elsewhere when
//! a backend is added or removed. A *hash ring* maps both backends and keys onto the same
//! 64-bit circle: each backend owns many points on it (*virtual nodes*), and a key belongs to
//! the first backend point at or after the key's hash, wrapping around. Adding a backend only
//! takes over the arcs just before its new points, so about `1/(n+1)` of the keys move, and
//! all of them move *to* the new backend; removing one hands its arcs to the next points, so
//! only its own keys move. Many virtual nodes per backend even out the arc lengths (with
//! `v` points each, a backend's share deviates by roughly `1/√v` relative). This is the
//! ketama scheme used by memcached clients, Envoy's `RING_HASH`, nginx's `hash … consistent`
//! and Pingora's `Consistent`.
//!
//! # Here
//!
//! * Points: backend with weight `w` gets [`VNODES_PER_WEIGHT`] × `w` points (160 each, as in
//!   ketama), at `stable_hash(key ‖ 0xff ‖ j)` for `j = 0, 1, …`. A backend's points depend
//!   only on its key and on `j`, so they are the same in every process and for every order
//!   of the input; changing how many points a backend has keeps the lower-numbered ones.
//! * Size: at most [`MAX_RING_POINTS`] (256 Ki, 4 MiB) in total; above that every backend's
//!   count is scaled down proportionally (at least one point each), which keeps the smaller
//!   set of points as a subset of the larger one.
//! * The hash is FNV-1a followed by the splitmix64 finaliser, never `std`'s randomly seeded
//!   hasher, so the mapping is the same across processes, restarts and gateway replicas.
//! * Lookup is a binary search over the sorted points: O(log points), no allocation. Points
//!   with equal hashes are ordered by backend key, so the result never depends on the order
//!   in which the backends were given.
//! * Exclusions (retries) continue clockwise to the next point whose backend is not
//!   excluded, as Envoy does for retries on a ring.

use std::fmt;
use std::sync::Arc;

use crate::Backend;
use crate::hash::{StableHasher, stable_hash};

/// Virtual nodes per unit of weight.
pub const VNODES_PER_WEIGHT: u64 = 160;

/// Upper bound on the number of points on a ring (unless there are more backends).
pub const MAX_RING_POINTS: u64 = 1 << 18;

/// A built ring: `(point hash, backend index)` sorted by hash.
pub(crate) struct Ring {
    points: Box<[(u64, u32)]>,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("points", &self.points.len())
            .finish()
    }
}

fn point_hash(key: &str, j: u64) -> u64 {
    let mut h = StableHasher::new();
    h.write(key.as_bytes());
    h.write(&[0xff]);
    h.write(&j.to_le_bytes());
    h.finish()
}

impl Ring {
    /// Builds the ring for `backends`: O(P log P) for P points.
    pub(crate) fn new(backends: &[Arc<Backend>]) -> Ring {
        let wanted: u64 = backends
            .iter()
            .map(|b| u64::from(b.weight()) * VNODES_PER_WEIGHT)
            .sum();
        let count = |b: &Backend| {
            let v = u64::from(b.weight()) * VNODES_PER_WEIGHT;
            if wanted > MAX_RING_POINTS {
                (u128::from(v) * u128::from(MAX_RING_POINTS) / u128::from(wanted)).max(1) as u64
            } else {
                v
            }
        };
        let mut points: Vec<(u64, u32)> = Vec::with_capacity(wanted.min(MAX_RING_POINTS) as usize);
        for (i, b) in backends.iter().enumerate() {
            points.extend((0..count(b)).map(|j| (point_hash(b.key(), j), i as u32)));
        }
        points.sort_unstable_by(|x, y| {
            x.0.cmp(&y.0).then_with(|| {
                backends[x.1 as usize]
                    .key()
                    .cmp(backends[y.1 as usize].key())
            })
        });
        Ring {
            points: points.into_boxed_slice(),
        }
    }

    /// Number of points, for tests and diagnostics.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }

    /// The backend owning `key`, or the next eligible one clockwise.
    pub(crate) fn pick(&self, key: &[u8], eligible: impl Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = stable_hash(key);
        let start = self.points.partition_point(|p| p.0 < h) % self.points.len();
        let (tail, head) = self.points.split_at(start);
        head.iter()
            .chain(tail)
            .map(|p| p.1 as usize)
            .find(|&i| eligible(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(keys: &[&str]) -> Vec<Arc<Backend>> {
        keys.iter()
            .map(|k| Backend::new(*k, "127.0.0.1:1", 1))
            .collect()
    }

    fn owner(ring: &Ring, backends: &[Arc<Backend>], key: &str) -> String {
        let i = ring.pick(key.as_bytes(), |_| true).unwrap();
        backends[i].key().to_owned()
    }

    #[test]
    fn points_per_weight_and_cap() {
        let b = vec![Backend::new("a", "x", 1), Backend::new("b", "x", 3)];
        assert_eq!(Ring::new(&b).len(), 4 * 160);
        let big = vec![Backend::new("a", "x", 1_000), Backend::new("b", "x", 3_000)];
        let r = Ring::new(&big);
        assert!(r.len() as u64 <= MAX_RING_POINTS);
        assert!(r.len() as u64 > MAX_RING_POINTS - 4);
        assert_eq!(Ring::new(&[]).pick(b"k", |_| true), None);
    }

    #[test]
    fn order_of_backends_does_not_matter() {
        let ab = set(&["a", "b", "c"]);
        let ba = set(&["c", "a", "b"]);
        let (r1, r2) = (Ring::new(&ab), Ring::new(&ba));
        for i in 0..1_000 {
            let k = format!("key-{i}");
            assert_eq!(owner(&r1, &ab, &k), owner(&r2, &ba, &k));
        }
    }

    #[test]
    fn excluded_owner_passes_to_next_point() {
        let b = set(&["a", "b", "c"]);
        let r = Ring::new(&b);
        for i in 0..200 {
            let k = format!("key-{i}");
            let first = r.pick(k.as_bytes(), |_| true).unwrap();
            let second = r.pick(k.as_bytes(), |j| j != first).unwrap();
            assert_ne!(first, second);
            // Stable as well.
            assert_eq!(second, r.pick(k.as_bytes(), |j| j != first).unwrap());
        }
        assert_eq!(r.pick(b"k", |_| false), None);
    }
}
