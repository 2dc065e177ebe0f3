//! `rate_limit`: the Generic Cell Rate Algorithm, per key, in a sharded map of bounded size.
//!
//! GCRA keeps one number per key, the *theoretical arrival time* (TAT): when the key's
//! allowance would be back to full if it sent nothing more. With the emission interval
//! `T = period / average` and room for `burst` requests at once, a request at `now` is let
//! through when `max(TAT, now) + T - now <= burst * T`, and then `TAT = max(TAT, now) + T`.
//! So a quiet key may send `burst` requests at once, and a busy one `average` per `period`
//! on average: a token bucket of `burst` tokens refilled one every `T`, without a timer or a
//! token count (Traefik's `burst` is the bucket's size too). A refused request changes
//! nothing.
//!
//! A key whose TAT has passed is indistinguishable from a key never seen, so the map holds
//! only keys that sent recently. Memory is bounded by `max_keys`: the map is split in
//! shards (by the key's hash, each behind its own lock), each with an equal share of
//! `max_keys`. A shard about to grow — or at its share — first forgets the keys whose TAT
//! has passed (at most once per eighth of its size in new keys, so sweeping costs O(1) per
//! new key); a shard still at its share then forgets its stalest eighth (the smallest
//! TATs: the keys nearest to a full allowance), so that a flood of new keys costs each
//! one O(1) too. A forgotten busy key gets a full allowance back: the price of the bound.
//!
//! Keys are 64-bit SipHash values of the client's address or header value, under a random
//! per-limiter key, so an entry is 16 bytes and nobody can aim keys at one shard or collide
//! with another client (two clients share a key with probability about `n² / 2^65` for `n`
//! keys: 3·10⁻⁸ at a million). For an IP key nothing is allocated per request.
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use http::request::Parts;
use shoal_config::{ClientKey, RateLimit};
use tokio::time::Instant;

use super::ip;

/// Most shards a limiter has.
const MAX_SHARDS: usize = 64;

/// Hashes a key already hashed: the map's hash is the key itself.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; fold anything else in anyway.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map from hashed keys.
pub(crate) type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

/// How a request is turned into its key.
#[derive(Debug)]
pub(crate) struct Keyer {
    key: ClientKey,
    hasher: RandomState,
}

impl Keyer {
    pub(crate) fn new(key: ClientKey) -> Keyer {
        Keyer {
            key,
            hasher: RandomState::new(),
        }
    }

    /// The request's key. A malformed `X-Forwarded-For` entry at the trusted depth (which a
    /// trusted proxy wrote) counts as the peer.
    pub(crate) fn key(&self, parts: &Parts, peer: IpAddr) -> u64 {
        match &self.key {
            ClientKey::Ip { depth } => {
                let ip = ip::client_ip(&parts.headers, peer, *depth).unwrap_or(peer);
                let bits = match ip {
                    IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
                    IpAddr::V6(v6) => u128::from(v6),
                };
                self.hasher.hash_one(bits)
            }
            ClientKey::Header(name) => {
                let mut h = self.hasher.build_hasher();
                match parts.headers.get(name) {
                    Some(v) => {
                        h.write_u8(1);
                        h.write(v.as_bytes());
                    }
                    None => h.write_u8(0),
                }
                h.finish()
            }
            ClientKey::Route => 0,
        }
    }

    /// The shard of `key` among `shards` (a power of two): bits the map's own probing does
    /// not use (it takes the low bits for the bucket and the top 7 for its tags).
    pub(crate) fn shard(key: u64, shards: usize) -> usize {
        (key >> 40) as usize & (shards - 1)
    }
}

/// The outcome of one request against a limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Let through.
    Allowed,
    /// Refused: `retry_after` until one request would be let through, `reset` until the
    /// whole allowance is back.
    Limited {
        retry_after: Duration,
        reset: Duration,
    },
}

/// One shard, on its own cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard {
    inner: Mutex<ShardMap>,
}

#[derive(Debug, Default)]
struct ShardMap {
    /// Key → TAT, in nanoseconds since the limiter's epoch.
    tats: KeyMap<u64>,
    /// New keys since the last sweep.
    since_sweep: usize,
}

/// A GCRA limiter shared by every request of a route.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    keyer: Keyer,
    epoch: Instant,
    /// `T`, in nanoseconds (at least 1).
    interval: u64,
    /// `burst * T`.
    tolerance: u64,
    /// The `burst` (at least 1).
    burst: u64,
    shards: Box<[Shard]>,
    /// Most keys in one shard.
    per_shard: usize,
}

impl RateLimiter {
    pub(crate) fn new(def: &RateLimit) -> RateLimiter {
        let average = def.average.max(1);
        let interval = u64::try_from(def.period.as_nanos() / u128::from(average))
            .unwrap_or(u64::MAX)
            .max(1);
        let burst = def.burst.max(1);
        let max_keys = def.max_keys.max(1);
        // A power of two no larger than max_keys, so every shard has room for one key.
        let shards = MAX_SHARDS.min(1 << max_keys.ilog2());
        RateLimiter {
            keyer: Keyer::new(def.key.clone()),
            epoch: Instant::now(),
            interval,
            tolerance: interval.saturating_mul(burst),
            burst,
            shards: (0..shards).map(|_| Shard::default()).collect(),
            per_shard: max_keys / shards,
        }
    }

    /// The `burst`, sent as `RateLimit-Limit`.
    pub(crate) fn burst(&self) -> u64 {
        self.burst
    }

    /// Count one request of `parts` from `peer`.
    pub(crate) fn check(&self, parts: &Parts, peer: IpAddr) -> Decision {
        let key = self.keyer.key(parts, peer);
        self.check_key(key, Instant::now())
    }

    /// Count one request of `key` at `now`.
    pub(crate) fn check_key(&self, key: u64, now: Instant) -> Decision {
        let now =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let shard = &self.shards[Keyer::shard(key, self.shards.len())];
        let mut map = shard.inner.lock().unwrap_or_else(|e| e.into_inner());
        // A known key: one lookup. A new key is as if its TAT were now.
        let known = map.tats.get_mut(&key);
        let tat = known.as_ref().map_or(now, |t| (**t).max(now));
        let next = tat.saturating_add(self.interval);
        if next - now > self.tolerance {
            return Decision::Limited {
                retry_after: Duration::from_nanos(next - now - self.tolerance),
                reset: Duration::from_nanos(tat - now),
            };
        }
        match known {
            Some(t) => *t = next,
            None => {
                map.make_room(now, self.per_shard);
                map.tats.insert(key, next);
            }
        }
        Decision::Allowed
    }

    /// Keys tracked now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.inner.lock().unwrap_or_else(|e| e.into_inner()).tats.len())
            .sum()
    }

    /// Bytes the maps hold (their tables, not the shards' locks).
    #[cfg(test)]
    fn table_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let cap = s.inner.lock().unwrap().tats.capacity();
                // Slots of (key, TAT) and one control byte per slot.
                cap * (std::mem::size_of::<(u64, u64)>() + 1)
            })
            .sum()
    }
}

impl ShardMap {
    /// Before inserting a new key: keep the shard within `cap`, forgetting expired keys when
    /// it is about to grow, and the stalest eighth when it is still full.
    fn make_room(&mut self, now: u64, cap: usize) {
        self.since_sweep += 1;
        let len = self.tats.len();
        let full = len >= cap;
        if !full && len < self.tats.capacity() {
            return;
        }
        if self.since_sweep > len / 8 {
            self.since_sweep = 0;
            self.tats.retain(|_, tat| *tat > now);
        }
        let len = self.tats.len();
        if len >= cap {
            // The stalest eighth (at least one): every TAT at or below the cut goes.
            let evict = (len / 8).max(len + 1 - cap);
            let mut tats: Vec<u64> = self.tats.values().copied().collect();
            let (below, cut, _) = tats.select_nth_unstable(evict - 1);
            let cut = *cut;
            // Keys tied with the cut go only as many as needed.
            let mut ties = evict - below.iter().filter(|t| **t < cut).count();
            self.tats.retain(|_, tat| {
                if *tat < cut {
                    false
                } else if *tat == cut && ties > 0 {
                    ties -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(average: u64, period: Duration, burst: u64, max_keys: usize) -> RateLimiter {
        RateLimiter::new(&RateLimit {
            average,
            period,
            burst,
            key: ClientKey::Route,
            max_keys,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_key_gets_its_burst_then_one_per_interval() {
        let l = limiter(10, Duration::from_secs(1), 3, 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check_key(7, t0), Decision::Allowed);
        }
        let Decision::Limited { retry_after, reset } = l.check_key(7, t0) else {
            panic!("the fourth request at once must be refused");
        };
        assert_eq!(retry_after, Duration::from_millis(100));
        assert_eq!(reset, Duration::from_millis(300));
        // A refused request changes nothing: one more is allowed 100 ms later.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(l.check_key(7, t1), Decision::Allowed);
        assert!(matches!(l.check_key(7, t1), Decision::Limited { .. }));
        // Other keys are not affected.
        assert_eq!(l.check_key(8, t1), Decision::Allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_client_at_twice_the_rate_gets_half_through() {
        let l = limiter(10, Duration::from_secs(1), 1, 100);
        let t0 = Instant::now();
        let allowed = (0..200)
            .filter(|i| l.check_key(1, t0 + Duration::from_millis(50 * i)) == Decision::Allowed)
            .count();
        assert_eq!(allowed, 100);
        let l = limiter(10, Duration::from_secs(1), 1, 100);
        let allowed = (0..200)
            .filter(|i| l.check_key(1, t0 + Duration::from_millis(200 * i)) == Decision::Allowed)
            .count();
        assert_eq!(allowed, 200);
    }

    #[test]
    fn memory_stays_within_max_keys_under_a_million_distinct_keys() {
        let max_keys = 100_000;
        let l = limiter(1, Duration::from_secs(3600), 1, max_keys);
        let t0 = Instant::now();
        let hasher = RandomState::new();
        let mut peak = 0;
        for i in 0..1_000_000u64 {
            // Every key stays "busy" (its TAT an hour ahead): only eviction can make room.
            assert_eq!(l.check_key(hasher.hash_one(i), t0), Decision::Allowed);
            if i % 997 == 0 {
                let len = l.len();
                assert!(len <= max_keys, "{len} keys after {i}");
                peak = peak.max(len);
            }
        }
        let len = l.len();
        assert!(len <= max_keys);
        assert!(peak >= max_keys * 3 / 4, "kept {peak}: eviction too eager");
        let bytes = l.table_bytes();
        eprintln!(
            "rate_limit memory: {len} keys in {bytes} bytes of tables = {:.1} bytes/key \
             (peak {peak} keys)",
            bytes as f64 / len as f64
        );
    }

    #[test]
    fn expired_keys_are_swept_before_a_shard_grows() {
        let l = limiter(1000, Duration::from_secs(1), 1, 1_000_000);
        let t0 = Instant::now();
        for i in 0..10_000u64 {
            l.check_key(i << 40 | i, t0);
        }
        assert_eq!(l.len(), 10_000);
        // A second later every TAT (t0 + 1 ms) has passed: new keys sweep the old ones.
        let t1 = t0 + Duration::from_secs(1);
        for i in 0..10_000u64 {
            l.check_key((i + 1_000_000) << 40 | i, t1);
        }
        assert!(l.len() < 15_000, "{} keys: expired ones kept", l.len());
    }

    #[test]
    fn tiny_max_keys_has_one_shard_per_key_at_most() {
        let l = limiter(1, Duration::from_secs(60), 1, 3);
        let t0 = Instant::now();
        for i in 0..100u64 {
            l.check_key(i << 40, t0);
            assert!(l.len() <= 3);
        }
    }
}
