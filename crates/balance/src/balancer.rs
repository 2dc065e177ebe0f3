//! [`Balancer`]: a service's endpoint set behind an `ArcSwap`, and the per-request choice.
//!
//! # Design
//!
//! Everything an algorithm needs is precomputed into an immutable *snapshot* when the set is
//! replaced ([`Balancer::set_backends`]): the round-robin schedule, the hash ring, the sticky
//! lookup table. The snapshot is published with one atomic pointer swap
//! ([`arc_swap::ArcSwap`]), so:
//!
//! * [`Balancer::pick`] takes no lock: one `ArcSwap` load (wait-free in the common case), a
//!   few atomics on the chosen backend, and the algorithm's O(1) or O(log n) lookup. It does
//!   not allocate.
//! * Writers (the process supervisor, the Kubernetes watcher) never block pickers and are
//!   never blocked by them; a pick in progress finishes on the snapshot it loaded. Concurrent
//!   writers race benignly: the last store wins.
//! * Mutable algorithm state lives outside the snapshot: one round-robin counter shared by
//!   all snapshots, and the per-backend counters inside the shared `Arc<Backend>`s.
//!
//! Backends are identified by key. `set_backends` deduplicates keys (the first occurrence
//! wins), and when it is given a fresh `Arc<Backend>` with the same key, address and weight
//! as one already in the set, it keeps the existing one, so in-flight and pick counters
//! survive watchers that rebuild their backend list from scratch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use arc_swap::ArcSwap;

use crate::Backend;
use crate::backend::InFlightGuard;
use crate::hash_ring::Ring;
use crate::p2c;
use crate::round_robin::Schedule;
use crate::sticky::StickyTable;

/// Which algorithm a service uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Policy {
    /// Smooth weighted round robin (the default); see [`round_robin`](crate::round_robin).
    /// With equal weights and N backends, N·k consecutive picks give exactly k to each.
    #[default]
    RoundRobin,
    /// Least outstanding requests by power-of-two random choices, weighted (compares
    /// `in_flight / weight`); see [`p2c`].
    LeastRequests,
    /// Consistent hashing on [`PickContext::hash_key`]; see [`hash_ring`](crate::hash_ring).
    /// Requests without a key are balanced by round robin.
    ConsistentHash,
    /// Sticky sessions by cookie; see [`sticky`](crate::sticky). Honours
    /// [`PickContext::sticky`] when it names a backend of the set; otherwise picks by round
    /// robin and asks the proxy to set the cookie ([`Pick::set_sticky`]).
    Sticky,
}

/// Per-request inputs, filled by the proxy.
#[derive(Debug, Default, Clone, Copy)]
pub struct PickContext<'a> {
    /// For [`Policy::ConsistentHash`]: the header value, cookie value or client IP text that
    /// the service hashes on.
    pub hash_key: Option<&'a [u8]>,
    /// For [`Policy::Sticky`]: the value of the sticky cookie, if the request carried it.
    pub sticky: Option<&'a str>,
    /// Keys of backends that must not be chosen (for retries on another backend).
    pub exclude: &'a [&'a str],
}

/// The result of a pick.
///
/// Holding it counts as one request in flight on the backend; drop it when the response,
/// including its body, is finished.
#[derive(Debug)]
pub struct Pick {
    guard: InFlightGuard,
    set_sticky: bool,
}

impl Pick {
    /// The chosen backend.
    pub fn backend(&self) -> &Arc<Backend> {
        self.guard.backend()
    }

    /// `Some(sticky_id)` when the proxy must send `Set-Cookie` for a sticky service: the
    /// request had no valid pin, or its pinned backend is gone or excluded (re-pin).
    pub fn set_sticky(&self) -> Option<&str> {
        self.set_sticky.then(|| self.backend().sticky_id())
    }
}

/// What each policy precomputes at swap time.
#[derive(Debug)]
enum Plan {
    RoundRobin(Schedule),
    LeastRequests,
    ConsistentHash {
        ring: Ring,
        fallback: Schedule,
    },
    Sticky {
        table: StickyTable,
        fallback: Schedule,
    },
}

/// An immutable endpoint set and its precomputed plan.
#[derive(Debug)]
struct Snapshot {
    backends: Arc<[Arc<Backend>]>,
    plan: Plan,
}

impl Snapshot {
    fn build(policy: &Policy, backends: Arc<[Arc<Backend>]>) -> Snapshot {
        let schedule = || {
            let weights: Vec<u32> = backends.iter().map(|b| b.weight()).collect();
            Schedule::new(&weights)
        };
        let plan = match policy {
            Policy::RoundRobin => Plan::RoundRobin(schedule()),
            Policy::LeastRequests => Plan::LeastRequests,
            Policy::ConsistentHash => Plan::ConsistentHash {
                ring: Ring::new(&backends),
                fallback: schedule(),
            },
            Policy::Sticky => Plan::Sticky {
                table: StickyTable::new(&backends),
                fallback: schedule(),
            },
        };
        Snapshot { backends, plan }
    }
}

/// A service's balancer: an immutable snapshot of the endpoint set behind an `ArcSwap`, plus
/// algorithm state. See the [module documentation](self) for the concurrency design.
#[derive(Debug)]
pub struct Balancer {
    policy: Policy,
    snapshot: ArcSwap<Snapshot>,
    /// Round-robin position, shared by all snapshots.
    rr_counter: AtomicUsize,
}

impl Balancer {
    /// A balancer with an empty endpoint set.
    pub fn new(policy: Policy) -> Balancer {
        let snapshot = Snapshot::build(&policy, Arc::from(Vec::new()));
        Balancer {
            policy,
            snapshot: ArcSwap::from_pointee(snapshot),
            rr_counter: AtomicUsize::new(0),
        }
    }

    /// A balancer with an initial endpoint set (as [`set_backends`](Self::set_backends)).
    pub fn with_backends(policy: Policy, backends: Vec<Arc<Backend>>) -> Balancer {
        let balancer = Balancer::new(policy);
        balancer.set_backends(backends);
        balancer
    }

    /// The algorithm in use.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Replaces the endpoint set, precomputing what the algorithm needs.
    ///
    /// Keys are deduplicated (the first occurrence wins). A backend with the same key,
    /// address and weight as one already in the set is replaced by the existing `Arc`, so its
    /// counters carry over; a changed address or weight makes it a new backend. The order
    /// given is kept (it is the order of [`backends`](Self::backends) and of the round-robin
    /// rotation).
    ///
    /// Cost, for n backends with total weight W: O(n) for the set itself, plus round robin
    /// O(n·W') when that is at most 2^20 (W' = weights reduced by their gcd, capped at
    /// 64 Ki) else O(W' log n); consistent hash O(P log P) for P = 160·W points (capped at
    /// 256 Ki); sticky O(n log n). Safe to call from any thread at any time; never blocks
    /// [`pick`](Self::pick).
    pub fn set_backends(&self, backends: Vec<Arc<Backend>>) {
        let current = self.snapshot.load();
        let existing: HashMap<&str, &Arc<Backend>> =
            current.backends.iter().map(|b| (b.key(), b)).collect();
        let mut seen = HashSet::with_capacity(backends.len());
        let mut set = Vec::with_capacity(backends.len());
        for b in backends {
            if !seen.insert(Arc::clone(b.key_shared())) {
                continue;
            }
            let b = match existing.get(b.key()) {
                Some(old) if old.same_endpoint(&b) => Arc::clone(old),
                _ => b,
            };
            set.push(b);
        }
        let snapshot = Snapshot::build(&self.policy, Arc::from(set));
        self.snapshot.store(Arc::new(snapshot));
    }

    /// The current endpoint set (a cheap snapshot clone).
    pub fn backends(&self) -> Arc<[Arc<Backend>]> {
        Arc::clone(&self.snapshot.load().backends)
    }

    /// Chooses a backend for a request; `None` when the set, minus
    /// [`exclude`](PickContext::exclude) and backends that are down, is empty. Lock-free and
    /// allocation-free.
    pub fn pick(&self, ctx: &PickContext<'_>) -> Option<Pick> {
        let snapshot = self.snapshot.load();
        let backends: &[Arc<Backend>] = &snapshot.backends;
        let eligible = |i: usize| {
            let b = &backends[i];
            b.is_available() && !ctx.exclude.contains(&b.key())
        };
        let rr = |schedule: &Schedule| schedule.pick(&self.rr_counter, eligible);
        let (index, set_sticky) = match &snapshot.plan {
            Plan::RoundRobin(schedule) => (rr(schedule)?, false),
            Plan::LeastRequests => (
                p2c::pick(backends, ctx.exclude.is_empty(), eligible)?,
                false,
            ),
            Plan::ConsistentHash { ring, fallback } => match ctx.hash_key {
                Some(key) => (ring.pick(key, eligible)?, false),
                None => (rr(fallback)?, false),
            },
            Plan::Sticky { table, fallback } => {
                let pinned = ctx
                    .sticky
                    .and_then(|cookie| table.lookup(cookie, backends))
                    .filter(|&i| eligible(i));
                match pinned {
                    Some(i) => (i, false),
                    None => (rr(fallback)?, true),
                }
            }
        };
        Some(Pick {
            guard: InFlightGuard::acquire(Arc::clone(&backends[index])),
            set_sticky,
        })
    }
}
