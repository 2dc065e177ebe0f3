//! `in_flight_req`: at most `amount` requests in flight per key.
//!
//! A counter per key in a sharded map; a request that finds its key's counter at `amount`
//! is refused (429), else it holds an [`InFlightGuard`] until its response is done: on the
//! full HTTP stack when the response body has been sent or dropped, on the relay when the
//! exchange ends. A counter back at zero is removed, so the map holds only keys with
//! requests in flight.
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use http::request::Parts;
use shoal_config::InFlightReq;

use super::rate_limit::{KeyMap, Keyer};

const SHARDS: usize = 16;

/// The counters of one route's `in_flight_req`.
#[derive(Debug)]
pub(crate) struct InFlightLimiter {
    keyer: Keyer,
    amount: u64,
    shards: Box<[Mutex<KeyMap<u64>>]>,
}

/// One request in flight; dropping it releases its place.
#[derive(Debug)]
pub(crate) struct InFlightGuard {
    limiter: Arc<InFlightLimiter>,
    key: u64,
}

impl InFlightLimiter {
    pub(crate) fn new(def: &InFlightReq) -> InFlightLimiter {
        InFlightLimiter {
            keyer: Keyer::new(def.key.clone()),
            amount: def.amount.max(1),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, key: u64) -> &Mutex<KeyMap<u64>> {
        &self.shards[Keyer::shard(key, SHARDS)]
    }

    /// A place for the request, or None when its key has `amount` in flight.
    pub(crate) fn acquire(self: &Arc<Self>, parts: &Parts, peer: IpAddr) -> Option<InFlightGuard> {
        let key = self.keyer.key(parts, peer);
        self.acquire_key(key)
    }

    pub(crate) fn acquire_key(self: &Arc<Self>, key: u64) -> Option<InFlightGuard> {
        let mut map = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n >= self.amount {
            return None;
        }
        *n += 1;
        Some(InFlightGuard {
            limiter: Arc::clone(self),
            key,
        })
    }

    /// Requests in flight under `key`.
    #[cfg(test)]
    fn count(&self, key: u64) -> u64 {
        let map = self.shard(key).lock().unwrap();
        map.get(&key).copied().unwrap_or(0)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut map = self
            .limiter
            .shard(self.key)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_config::ClientKey;

    #[test]
    fn refuses_beyond_amount_and_releases_on_drop() {
        let l = Arc::new(InFlightLimiter::new(&InFlightReq {
            amount: 2,
            key: ClientKey::Route,
        }));
        let a = l.acquire_key(5).unwrap();
        let b = l.acquire_key(5).unwrap();
        assert!(l.acquire_key(5).is_none());
        assert!(l.acquire_key(6).is_some(), "another key has its own count");
        drop(a);
        assert_eq!(l.count(5), 1);
        let c = l.acquire_key(5).unwrap();
        drop(b);
        drop(c);
        assert_eq!(l.count(5), 0);
        assert!(l.shards.iter().all(|s| s.lock().unwrap().is_empty()));
    }
}
