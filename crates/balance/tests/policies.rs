//! Behaviour of each policy through the public API.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use shoal_balance::{Backend, Balancer, Pick, PickContext, Policy};

fn backends(weights: &[u32]) -> Vec<Arc<Backend>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Backend::new(format!("svc/{i}"), format!("127.0.0.1:{}", 9000 + i), w))
        .collect()
}

fn key_of(p: &Pick) -> String {
    p.backend().key().to_owned()
}

/// Picks `n` times (dropping each pick at once) and counts per key.
fn tally(lb: &Balancer, ctx: &PickContext<'_>, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        *counts.entry(key_of(&lb.pick(ctx).unwrap())).or_default() += 1;
    }
    counts
}

fn hash_owner(lb: &Balancer, key: &str) -> String {
    let ctx = PickContext {
        hash_key: Some(key.as_bytes()),
        ..PickContext::default()
    };
    key_of(&lb.pick(&ctx).unwrap())
}

// ---- common ----

#[test]
fn empty_set_and_all_excluded_give_none() {
    for policy in [
        Policy::RoundRobin,
        Policy::LeastRequests,
        Policy::ConsistentHash,
        Policy::Sticky,
    ] {
        let lb = Balancer::new(policy.clone());
        assert_eq!(lb.policy(), &policy);
        assert!(lb.pick(&PickContext::default()).is_none(), "{policy:?}");
        lb.set_backends(backends(&[1, 1]));
        let exclude = ["svc/0", "svc/1"];
        let set = lb.backends();
        let ctx = PickContext {
            hash_key: Some(b"k"),
            sticky: Some(set[0].sticky_id()),
            exclude: &exclude,
        };
        assert!(lb.pick(&ctx).is_none(), "{policy:?}");
        let one = PickContext {
            exclude: &exclude[..1],
            ..ctx
        };
        assert_eq!(key_of(&lb.pick(&one).unwrap()), "svc/1", "{policy:?}");
    }
}

#[test]
fn default_policy_is_round_robin() {
    assert_eq!(Policy::default(), Policy::RoundRobin);
}

#[test]
fn pick_guard_tracks_in_flight_even_after_removal() {
    let lb = Balancer::with_backends(Policy::RoundRobin, backends(&[1]));
    let b = Arc::clone(&lb.backends()[0]);
    let p1 = lb.pick(&PickContext::default()).unwrap();
    let p2 = lb.pick(&PickContext::default()).unwrap();
    assert!(Arc::ptr_eq(p1.backend(), &b));
    assert_eq!((b.in_flight(), b.picked_total()), (2, 2));
    lb.set_backends(Vec::new());
    assert!(lb.pick(&PickContext::default()).is_none());
    drop(p1);
    assert_eq!(b.in_flight(), 1);
    drop(p2);
    assert_eq!((b.in_flight(), b.picked_total()), (0, 2));
}

#[test]
fn set_backends_keeps_counters_and_dedupes_keys() {
    let lb = Balancer::with_backends(Policy::LeastRequests, backends(&[1, 1]));
    let held = lb.pick(&PickContext::default()).unwrap();
    let held_key = key_of(&held);

    // A watcher rebuilding everything from scratch, with a duplicate key.
    let mut fresh = backends(&[1, 1]);
    fresh.push(Backend::new("svc/0", "10.9.9.9:1", 5));
    lb.set_backends(fresh);
    let set = lb.backends();
    assert_eq!(set.len(), 2, "duplicate key dropped");
    assert_eq!(set[0].addr(), "127.0.0.1:9000", "first occurrence wins");
    let same = set.iter().find(|b| b.key() == held_key).unwrap();
    assert!(Arc::ptr_eq(same, held.backend()), "existing Arc reused");
    assert_eq!(same.in_flight(), 1);

    // A changed address makes it a different backend.
    lb.set_backends(vec![Backend::new(held_key.clone(), "10.0.0.1:1", 1)]);
    assert!(!Arc::ptr_eq(&lb.backends()[0], held.backend()));
    assert_eq!(lb.backends()[0].in_flight(), 0);
}

// ---- round robin ----

#[test]
fn round_robin_equal_weights_is_exact() {
    let lb = Balancer::with_backends(Policy::RoundRobin, backends(&[1, 1, 1]));
    let counts = tally(&lb, &PickContext::default(), 300);
    assert!(counts.values().all(|&c| c == 100), "{counts:?}");
}

#[test]
fn round_robin_weighted_is_exact_and_interleaved() {
    let lb = Balancer::with_backends(Policy::RoundRobin, backends(&[2, 1, 1]));
    let seq: Vec<String> = (0..400)
        .map(|_| key_of(&lb.pick(&PickContext::default()).unwrap()))
        .collect();
    let count = |k: &str| seq.iter().filter(|s| *s == k).count();
    assert_eq!(
        (count("svc/0"), count("svc/1"), count("svc/2")),
        (200, 100, 100)
    );
    // 2:1:1 can be served with no backend twice in a row, and is.
    assert!(seq.windows(2).all(|w| w[0] != w[1]), "{:?}", &seq[..8]);
}

#[test]
fn round_robin_exclusion_spreads_the_excluded_share_evenly() {
    let lb = Balancer::with_backends(Policy::RoundRobin, backends(&[1, 1, 1]));
    let exclude = ["svc/1"];
    let ctx = PickContext {
        exclude: &exclude,
        ..PickContext::default()
    };
    let counts = tally(&lb, &ctx, 300);
    assert_eq!(counts.get("svc/1"), None);
    // The slot of svc/1 draws the next position, so the others share it evenly (handing
    // it to its successor would give svc/2 twice the load of svc/0).
    assert_eq!((counts["svc/0"], counts["svc/2"]), (150, 150));
}

proptest! {
    #[test]
    fn round_robin_counts_are_exact(
        weights in proptest::collection::vec(1u32..=20, 1..=8),
        k in 1usize..=4,
        skip in 0usize..50,
    ) {
        let lb = Balancer::with_backends(Policy::RoundRobin, backends(&weights));
        // Start anywhere in the period.
        for _ in 0..skip {
            lb.pick(&PickContext::default());
        }
        let total: u32 = weights.iter().sum();
        let counts = tally(&lb, &PickContext::default(), total as usize * k);
        for (i, &w) in weights.iter().enumerate() {
            prop_assert_eq!(counts.get(&format!("svc/{i}")).copied().unwrap_or(0), w as usize * k);
        }
    }
}

// ---- least requests (P2C) ----

#[test]
fn least_requests_avoids_a_loaded_backend() {
    let lb = Balancer::with_backends(Policy::LeastRequests, backends(&[1, 1, 1]));
    let loaded = Arc::clone(&lb.backends()[0]);
    // Load it through the balancer itself: the others excluded, as on a retry.
    let others = ["svc/1", "svc/2"];
    let only_loaded = PickContext {
        exclude: &others,
        ..PickContext::default()
    };
    let held: Vec<Pick> = (0..50).map(|_| lb.pick(&only_loaded).unwrap()).collect();
    assert_eq!(loaded.in_flight(), 50);
    let before = loaded.picked_total();
    let counts = tally(&lb, &PickContext::default(), 3_000);
    // Idle backends always win a comparison against the loaded one.
    assert_eq!(loaded.picked_total(), before);
    assert_eq!(counts.get("svc/0"), None);
    assert!(
        counts["svc/1"] > 1_200 && counts["svc/2"] > 1_200,
        "{counts:?}"
    );
    drop(held);
    assert_eq!(loaded.in_flight(), 0);
}

#[test]
fn least_requests_spreads_evenly_when_idle() {
    let lb = Balancer::with_backends(Policy::LeastRequests, backends(&[1, 1, 1, 1]));
    let counts = tally(&lb, &PickContext::default(), 40_000);
    for (k, &c) in &counts {
        assert!((8_500..=11_500).contains(&c), "{k}: {c} in {counts:?}");
    }
}

#[test]
fn least_requests_honours_weights_under_load() {
    // Holding every pick, in-flight counts converge to the 3:1 weight ratio.
    let lb = Balancer::with_backends(Policy::LeastRequests, backends(&[3, 1]));
    let held: Vec<Pick> = (0..400)
        .map(|_| lb.pick(&PickContext::default()).unwrap())
        .collect();
    let set = lb.backends();
    let (a, b) = (set[0].in_flight(), set[1].in_flight());
    assert_eq!(a + b, 400);
    assert!((280..=320).contains(&a), "{a}:{b}");
    drop(held);
}

// ---- consistent hash ----

#[test]
fn consistent_hash_is_stable_across_calls_and_instances() {
    let a = Balancer::with_backends(Policy::ConsistentHash, backends(&[1, 1, 1]));
    let mut reversed = backends(&[1, 1, 1]);
    reversed.reverse();
    let b = Balancer::with_backends(Policy::ConsistentHash, reversed);
    for i in 0..2_000 {
        let k = format!("user-{i}");
        let owner = hash_owner(&a, &k);
        assert_eq!(owner, hash_owner(&a, &k));
        assert_eq!(owner, hash_owner(&b, &k));
    }
    // Pinned: the mapping must not change between releases or processes.
    let fingerprint: String = (0..24)
        .map(|i| hash_owner(&a, &format!("user-{i}")).replace("svc/", ""))
        .collect();
    assert_eq!(fingerprint, GOLDEN_OWNERS);
}

/// Owners (`svc/N` → `N`) of `user-0` … `user-23` on three equal backends.
// Cross-checked with an independent Python implementation of the ring.
const GOLDEN_OWNERS: &str = "202111220221022021212120";

#[test]
fn consistent_hash_adding_a_backend_moves_only_its_share() {
    let lb = Balancer::with_backends(Policy::ConsistentHash, backends(&[1, 1, 1]));
    let keys: Vec<String> = (0..10_000).map(|i| format!("session-{i}")).collect();
    let before: Vec<String> = keys.iter().map(|k| hash_owner(&lb, k)).collect();
    lb.set_backends(backends(&[1, 1, 1, 1]));
    let mut moved = 0;
    for (k, old) in keys.iter().zip(&before) {
        let new = hash_owner(&lb, k);
        if &new != old {
            moved += 1;
            assert_eq!(new, "svc/3", "a moved key goes to the new backend");
        }
    }
    assert!((1_500..=4_000).contains(&moved), "moved {moved}");
}

#[test]
fn consistent_hash_removing_a_backend_moves_only_its_keys() {
    let lb = Balancer::with_backends(Policy::ConsistentHash, backends(&[1, 1, 1, 1]));
    let keys: Vec<String> = (0..10_000).map(|i| format!("session-{i}")).collect();
    let before: Vec<String> = keys.iter().map(|k| hash_owner(&lb, k)).collect();
    let mut rest = lb.backends().to_vec();
    rest.remove(1);
    lb.set_backends(rest);
    for (k, old) in keys.iter().zip(&before) {
        let new = hash_owner(&lb, k);
        if old == "svc/1" {
            assert_ne!(new, "svc/1");
        } else {
            assert_eq!(&new, old, "{k} moved without its backend leaving");
        }
    }
}

#[test]
fn consistent_hash_distribution_is_even() {
    let lb = Balancer::with_backends(Policy::ConsistentHash, backends(&[1, 1, 1]));
    let mut rng = fastrand::Rng::with_seed(7);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..30_000 {
        let key = rng.u64(..).to_string();
        *counts.entry(hash_owner(&lb, &key)).or_default() += 1;
    }
    for (k, &c) in &counts {
        assert!((9_000..=11_000).contains(&c), "{k}: {c} in {counts:?}");
    }
}

#[test]
fn consistent_hash_weights_scale_the_share() {
    let lb = Balancer::with_backends(Policy::ConsistentHash, backends(&[3, 1]));
    let mut heavy = 0;
    for i in 0..20_000 {
        if hash_owner(&lb, &format!("k{i}")) == "svc/0" {
            heavy += 1;
        }
    }
    assert!((13_500..=16_500).contains(&heavy), "{heavy}");
}

#[test]
fn consistent_hash_without_key_falls_back_to_round_robin() {
    let lb = Balancer::with_backends(Policy::ConsistentHash, backends(&[1, 1]));
    let counts = tally(&lb, &PickContext::default(), 100);
    assert_eq!((counts["svc/0"], counts["svc/1"]), (50, 50));
}

#[test]
fn consistent_hash_exclusion_moves_to_another_backend() {
    let lb = Balancer::with_backends(Policy::ConsistentHash, backends(&[1, 1, 1]));
    let owner = hash_owner(&lb, "abc");
    let exclude = [owner.as_str()];
    let ctx = PickContext {
        hash_key: Some(b"abc"),
        exclude: &exclude,
        ..PickContext::default()
    };
    let retry = key_of(&lb.pick(&ctx).unwrap());
    assert_ne!(retry, owner);
    assert_eq!(
        retry,
        key_of(&lb.pick(&ctx).unwrap()),
        "retry target is stable too"
    );
}

// ---- sticky ----

fn sticky_pick(lb: &Balancer, cookie: Option<&str>) -> Pick {
    lb.pick(&PickContext {
        sticky: cookie,
        ..PickContext::default()
    })
    .unwrap()
}

#[test]
fn sticky_without_cookie_pins_with_round_robin() {
    let lb = Balancer::with_backends(Policy::Sticky, backends(&[1, 1, 1]));
    let firsts: Vec<Pick> = (0..3).map(|_| sticky_pick(&lb, None)).collect();
    let keys: Vec<String> = firsts.iter().map(key_of).collect();
    assert_eq!(keys, ["svc/0", "svc/1", "svc/2"]);
    for p in &firsts {
        assert_eq!(p.set_sticky(), Some(p.backend().sticky_id()));
    }
}

#[test]
fn sticky_cookie_is_honoured_without_set_cookie() {
    let lb = Balancer::with_backends(Policy::Sticky, backends(&[1, 1, 1]));
    let first = sticky_pick(&lb, None);
    let cookie = first.set_sticky().unwrap().to_owned();
    for _ in 0..20 {
        let p = sticky_pick(&lb, Some(&cookie));
        assert!(Arc::ptr_eq(p.backend(), first.backend()));
        assert_eq!(p.set_sticky(), None);
    }
}

#[test]
fn sticky_cookie_survives_process_restart() {
    // A new balancer (another process) built from equal backends honours the same cookie.
    let a = Balancer::with_backends(Policy::Sticky, backends(&[1, 1, 1]));
    let b = Balancer::with_backends(Policy::Sticky, backends(&[1, 1, 1]));
    let cookie = sticky_pick(&a, None).set_sticky().unwrap().to_owned();
    let p = sticky_pick(&b, Some(&cookie));
    assert_eq!(key_of(&p), "svc/0");
    assert_eq!(p.set_sticky(), None);
}

#[test]
fn sticky_falls_back_and_repins_when_backend_leaves() {
    let lb = Balancer::with_backends(Policy::Sticky, backends(&[1, 1, 1]));
    let pinned = lb.backends()[1].clone();
    let cookie = pinned.sticky_id().to_owned();
    assert_eq!(key_of(&sticky_pick(&lb, Some(&cookie))), "svc/1");

    let mut rest = lb.backends().to_vec();
    rest.remove(1);
    lb.set_backends(rest);
    let p = sticky_pick(&lb, Some(&cookie));
    assert_ne!(key_of(&p), "svc/1");
    let new_cookie = p.set_sticky().expect("re-pin").to_owned();
    assert_eq!(new_cookie, p.backend().sticky_id());

    // The new cookie sticks.
    let again = sticky_pick(&lb, Some(&new_cookie));
    assert!(Arc::ptr_eq(again.backend(), p.backend()));
    assert_eq!(again.set_sticky(), None);

    // The old backend comes back: its cookie works again.
    let mut all = lb.backends().to_vec();
    all.push(pinned);
    lb.set_backends(all);
    assert_eq!(sticky_pick(&lb, Some(&cookie)).set_sticky(), None);
}

#[test]
fn sticky_excluded_or_garbage_cookie_repins() {
    let lb = Balancer::with_backends(Policy::Sticky, backends(&[1, 1]));
    let cookie = lb.backends()[0].sticky_id().to_owned();
    let exclude = ["svc/0"];
    let p = lb
        .pick(&PickContext {
            sticky: Some(&cookie),
            exclude: &exclude,
            ..PickContext::default()
        })
        .unwrap();
    assert_eq!(key_of(&p), "svc/1");
    let set = lb.backends();
    assert_eq!(p.set_sticky(), Some(set[1].sticky_id()));

    let p = sticky_pick(&lb, Some("127.0.0.1:9000"));
    assert!(p.set_sticky().is_some());
}

#[test]
fn set_sticky_is_none_for_other_policies() {
    for policy in [
        Policy::RoundRobin,
        Policy::LeastRequests,
        Policy::ConsistentHash,
    ] {
        let lb = Balancer::with_backends(policy, backends(&[1, 1]));
        assert_eq!(sticky_pick(&lb, None).set_sticky(), None);
    }
}
