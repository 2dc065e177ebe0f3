//! [`Backend`]: one endpoint the balancer can choose, with its live counters.
//!
//! A `Backend` is always handled through an `Arc` and shared between endpoint-set snapshots,
//! so its counters (requests in flight, total picks) survive a swap of the set. The in-flight
//! count is maintained by a guard held inside [`Pick`](crate::Pick): incremented when the
//! balancer chooses the backend, decremented when the `Pick` is dropped, even if the backend
//! has been removed from the set in the meantime (the guard owns an `Arc` to it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::hash::StableHasher;

/// Domain separator so that sticky ids are not the same numbers as hash-ring positions.
const STICKY_DOMAIN: &[u8] = b"shoal-sticky\0";

/// One endpoint the balancer can choose. Shared (`Arc`) between snapshots so counters survive
/// swaps.
#[derive(Debug)]
pub struct Backend {
    key: Arc<str>,
    addr: Arc<str>,
    weight: u32,
    sticky_id: Box<str>,
    in_flight: AtomicUsize,
    picked_total: AtomicU64,
    /// Why the backend is out of rotation: a set of [`Down`] bits, 0 = available.
    down: AtomicU8,
    outlier: Outlier,
}

/// A reason for a backend to be out of rotation. The proxy sets and clears them; the
/// balancer skips a backend while any is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Down {
    /// Its active health check fails.
    Check = 1,
    /// Passive health checking ejected it for a while.
    Ejected = 2,
}

/// Counters of recent failures on real requests, kept by the proxy's outlier detection.
/// They live here so that they follow the backend across endpoint-set swaps.
#[derive(Debug, Default)]
pub struct Outlier {
    /// 5xx responses in a row.
    pub consecutive_5xx: AtomicU32,
    /// Gateway failures (resets, timeouts) in a row.
    pub consecutive_failures: AtomicU32,
    /// Ejections without a success in between (the ejection time doubles with each).
    pub ejections_in_a_row: AtomicU32,
    /// Ejections since the backend was created.
    pub ejections_total: AtomicU64,
    /// When the backend last sent response headers, in milliseconds on the proxy's clock
    /// (0 = never): a backend with requests in flight that has answered nothing for a
    /// while is hung, not slow.
    pub last_response_ms: AtomicU64,
}

impl Backend {
    /// Creates a backend.
    ///
    /// `key` is a stable identity (e.g. `"users/2"` for a replica or the URL of a static
    /// server); `addr` is what the proxy dials, e.g. `"127.0.0.1:9001"` (an opaque string to
    /// this crate). A `weight` of 0 is treated as 1.
    pub fn new(key: impl Into<Arc<str>>, addr: impl Into<Arc<str>>, weight: u32) -> Arc<Backend> {
        let key = key.into();
        let sticky_id = sticky_id_for(&key);
        Arc::new(Backend {
            key,
            addr: addr.into(),
            weight: weight.max(1),
            sticky_id,
            in_flight: AtomicUsize::new(0),
            picked_total: AtomicU64::new(0),
            down: AtomicU8::new(0),
            outlier: Outlier::default(),
        })
    }

    /// Whether the balancer may choose this backend: no [`Down`] reason is set.
    pub fn is_available(&self) -> bool {
        self.down.load(Ordering::Relaxed) == 0
    }

    /// Whether `reason` is set.
    pub fn is_down_for(&self, reason: Down) -> bool {
        self.down.load(Ordering::Relaxed) & reason as u8 != 0
    }

    /// Set (`down = true`) or clear a reason; returns whether it changed.
    pub fn set_down(&self, reason: Down, down: bool) -> bool {
        let bit = reason as u8;
        let before = if down {
            self.down.fetch_or(bit, Ordering::Relaxed)
        } else {
            self.down.fetch_and(!bit, Ordering::Relaxed)
        };
        (before & bit != 0) != down
    }

    /// The passive health counters.
    pub fn outlier(&self) -> &Outlier {
        &self.outlier
    }

    /// The stable identity given at construction.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The address the proxy dials.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The weight, at least 1.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Requests currently in flight to this backend: picks whose [`Pick`](crate::Pick) has not
    /// been dropped yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Total picks served since this `Backend` was created (monotonic), for metrics and tests.
    pub fn picked_total(&self) -> u64 {
        self.picked_total.load(Ordering::Relaxed)
    }

    /// The opaque value used in sticky-session cookies for this backend.
    ///
    /// 16 lowercase hex digits of a stable 64-bit hash of [`key`](Self::key): it does not
    /// reveal the address and is identical across processes, restarts and gateway replicas.
    pub fn sticky_id(&self) -> &str {
        &self.sticky_id
    }

    /// The key as a shared string (cheap to clone).
    pub fn key_shared(&self) -> &Arc<str> {
        &self.key
    }

    /// Same identity and same dialing parameters: a fresh `Arc` for this endpoint may be
    /// replaced by the one already in the set, keeping its counters.
    pub(crate) fn same_endpoint(&self, other: &Backend) -> bool {
        self.key == other.key && self.addr == other.addr && self.weight == other.weight
    }
}

fn sticky_id_for(key: &str) -> Box<str> {
    let mut h = StableHasher::new();
    h.write(STICKY_DOMAIN);
    h.write(key.as_bytes());
    format!("{:016x}", h.finish()).into_boxed_str()
}

/// Counts one request in flight on a backend for as long as it lives.
#[derive(Debug)]
pub(crate) struct InFlightGuard {
    backend: Arc<Backend>,
}

impl InFlightGuard {
    /// Records a pick of `backend`: one more in flight, one more in the total.
    pub(crate) fn acquire(backend: Arc<Backend>) -> Self {
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        backend.picked_total.fetch_add(1, Ordering::Relaxed);
        InFlightGuard { backend }
    }

    pub(crate) fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_reasons_combine() {
        let b = Backend::new("a", "127.0.0.1:1", 1);
        assert!(b.is_available());
        assert!(b.set_down(Down::Check, true));
        assert!(!b.set_down(Down::Check, true), "already set");
        assert!(b.set_down(Down::Ejected, true));
        assert!(b.set_down(Down::Check, false));
        assert!(!b.is_available(), "still ejected");
        assert!(b.is_down_for(Down::Ejected) && !b.is_down_for(Down::Check));
        assert!(b.set_down(Down::Ejected, false));
        assert!(b.is_available());
    }

    #[test]
    fn weight_zero_is_clamped_to_one() {
        assert_eq!(Backend::new("a", "127.0.0.1:1", 0).weight(), 1);
        assert_eq!(Backend::new("a", "127.0.0.1:1", 7).weight(), 7);
    }

    #[test]
    fn guard_counts_in_flight_and_total() {
        let b = Backend::new("a", "127.0.0.1:1", 1);
        let g1 = InFlightGuard::acquire(Arc::clone(&b));
        let g2 = InFlightGuard::acquire(Arc::clone(&b));
        assert_eq!((b.in_flight(), b.picked_total()), (2, 2));
        drop(g1);
        assert_eq!((b.in_flight(), b.picked_total()), (1, 2));
        drop(g2);
        assert_eq!((b.in_flight(), b.picked_total()), (0, 2));
    }

    #[test]
    fn sticky_id_is_stable_hex_and_hides_the_address() {
        let a = Backend::new("users/2", "127.0.0.1:9001", 1);
        let b = Backend::new("users/2", "10.0.0.7:80", 3);
        assert_eq!(a.sticky_id(), b.sticky_id(), "depends on the key only");
        assert_eq!(a.sticky_id().len(), 16);
        assert!(
            a.sticky_id()
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert!(!a.sticky_id().contains("9001"));
        assert_ne!(a.sticky_id(), Backend::new("users/3", "x", 1).sticky_id());
        // Pinned so that cookies stay valid across releases.
        assert_eq!(a.sticky_id(), GOLDEN_STICKY_USERS_2);
    }

    const GOLDEN_STICKY_USERS_2: &str = "b573305ae7ff5216";
}
