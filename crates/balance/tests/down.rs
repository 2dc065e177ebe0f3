//! Backends that are down (failing checks, ejected) are skipped by every policy, and come
//! back when the reason clears.
use std::collections::HashSet;

use shoal_balance::{Backend, Balancer, Down, PickContext, Policy};

fn set(policy: Policy) -> (Balancer, Vec<std::sync::Arc<Backend>>) {
    let backends: Vec<_> = (0..4)
        .map(|i| Backend::new(format!("s/{i}"), format!("127.0.0.1:{}", 9000 + i), 1))
        .collect();
    (Balancer::with_backends(policy, backends.clone()), backends)
}

fn keys_over(
    lb: &Balancer,
    n: usize,
    ctx: impl Fn(usize) -> Vec<u8>,
    sticky: Option<&str>,
) -> HashSet<String> {
    (0..n)
        .map(|i| {
            let key = ctx(i);
            let c = PickContext {
                hash_key: Some(&key),
                sticky,
                exclude: &[],
            };
            lb.pick(&c)
                .expect("a backend is up")
                .backend()
                .key()
                .to_owned()
        })
        .collect()
}

#[test]
fn every_policy_skips_down_backends() {
    for policy in [
        Policy::RoundRobin,
        Policy::LeastRequests,
        Policy::ConsistentHash,
        Policy::Sticky,
    ] {
        let (lb, backends) = set(policy.clone());
        backends[1].set_down(Down::Check, true);
        backends[2].set_down(Down::Ejected, true);
        let sticky_to_2 = backends[2].sticky_id().to_owned();
        let seen = keys_over(&lb, 400, |i| i.to_le_bytes().to_vec(), Some(&sticky_to_2));
        assert!(
            !seen.contains("s/1") && !seen.contains("s/2"),
            "{policy:?}: {seen:?}"
        );
        assert!(!seen.is_empty());
        // Everything down: no pick at all.
        backends[0].set_down(Down::Check, true);
        backends[3].set_down(Down::Ejected, true);
        assert!(lb.pick(&PickContext::default()).is_none(), "{policy:?}");
        // Back up: chosen again.
        for b in &backends {
            b.set_down(Down::Check, false);
            b.set_down(Down::Ejected, false);
        }
        let seen = keys_over(&lb, 400, |i| i.to_le_bytes().to_vec(), None);
        if matches!(
            policy,
            Policy::RoundRobin | Policy::LeastRequests | Policy::ConsistentHash
        ) {
            assert_eq!(seen.len(), 4, "{policy:?}: {seen:?}");
        }
    }
}

#[test]
fn a_sticky_pin_on_a_down_backend_re_pins() {
    let (lb, backends) = set(Policy::Sticky);
    backends[2].set_down(Down::Ejected, true);
    let ctx = PickContext {
        sticky: Some(backends[2].sticky_id()),
        ..PickContext::default()
    };
    let pick = lb.pick(&ctx).unwrap();
    assert_ne!(pick.backend().key(), "s/2");
    assert!(pick.set_sticky().is_some(), "the client gets a new pin");
}

#[test]
fn round_robin_spreads_a_down_backends_share_evenly() {
    let (lb, backends) = set(Policy::RoundRobin);
    backends[1].set_down(Down::Ejected, true);
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..3000 {
        let pick = lb.pick(&PickContext::default()).unwrap();
        *counts.entry(pick.backend().key().to_owned()).or_insert(0) += 1;
    }
    // 1000 each for s/0, s/2, s/3: not 2000 for s/2 (the down backend's successor).
    for (key, n) in &counts {
        assert!((900..=1100).contains(n), "{key}: {n} of 3000: {counts:?}");
    }
}
