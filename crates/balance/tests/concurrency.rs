//! Pickers on several threads while another thread swaps the endpoint set.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use shoal_balance::{Backend, Balancer, Pick, PickContext, Policy};

const PICKERS: usize = 4;
const SWAPS: usize = 2_000;

/// Set number `generation`: a sliding window of 3 keys over a pool of 8 backends, so some
/// backends leave while picks on them are still held.
fn generation(pool: &[Arc<Backend>], generation: usize) -> Vec<Arc<Backend>> {
    (0..3)
        .map(|i| Arc::clone(&pool[(generation + i) % pool.len()]))
        .collect()
}

/// Whether backend `svc/{index}` belongs to generation `g` of a pool of `len`.
fn in_generation(index: usize, g: usize, len: usize) -> bool {
    (0..3).any(|i| (g + i) % len == index)
}

fn run(policy: &Policy) {
    let pool: Vec<Arc<Backend>> = (0..8)
        .map(|i| {
            Backend::new(
                format!("svc/{i}"),
                format!("127.0.0.1:{}", 9000 + i),
                1 + i % 3,
            )
        })
        .collect();
    let pool_len = pool.len();
    // The generation most recently stored; set_backends(g) happens before it reads g.
    let current = Arc::new(AtomicUsize::new(0));
    let lb = Arc::new(Balancer::with_backends(
        policy.clone(),
        generation(&pool, 0),
    ));
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(PICKERS + 1));

    let pickers: Vec<_> = (0..PICKERS)
        .map(|t| {
            let (lb, done, start, current) = (
                Arc::clone(&lb),
                Arc::clone(&done),
                Arc::clone(&start),
                Arc::clone(&current),
            );
            thread::spawn(move || {
                start.wait();
                let mut held: Vec<Pick> = Vec::new();
                let mut picks = 0u64;
                let mut n = 0u64;
                while !done.load(Ordering::Relaxed) || picks < 1_000 {
                    n += 1;
                    let key = n.to_string();
                    let cookie = held.last().map(|p| p.backend().sticky_id().to_owned());
                    let ctx = PickContext {
                        hash_key: n.is_multiple_of(2).then_some(key.as_bytes()),
                        sticky: cookie.as_deref(),
                        exclude: &[],
                    };
                    let lo = current.load(Ordering::SeqCst);
                    let pick = lb.pick(&ctx).expect("sets are never empty");
                    let hi = current.load(Ordering::SeqCst);
                    // The pick came from a set that was current while it ran.
                    let index: usize = pick.backend().key()["svc/".len()..].parse().unwrap();
                    assert!(
                        (lo..=hi + 1).any(|g| in_generation(index, g, pool_len)),
                        "svc/{index} not in generations {lo}..={}",
                        hi + 1
                    );
                    assert!(pick.backend().in_flight() >= 1);
                    picks += 1;
                    // Keep a few requests "in flight" across swaps, release them out of order.
                    held.push(pick);
                    if held.len() > 8 {
                        held.swap_remove((n as usize + t) % held.len());
                    }
                }
                picks
            })
        })
        .collect();

    start.wait();
    for g in 1..=SWAPS {
        lb.set_backends(generation(&pool, g));
        current.store(g, Ordering::SeqCst);
        // Every set the balancer shows is one of the generations, whole.
        let set = lb.backends();
        assert_eq!(set.len(), 3);
    }
    let last: HashSet<String> = lb.backends().iter().map(|b| b.key().to_owned()).collect();
    done.store(true, Ordering::Relaxed);

    let picks: u64 = pickers
        .into_iter()
        .map(|h| h.join().expect("no panic"))
        .sum();
    let total: u64 = pool.iter().map(|b| b.picked_total()).sum();
    assert_eq!(total, picks, "{policy:?}: every pick counted once");
    for b in &pool {
        assert_eq!(b.in_flight(), 0, "{policy:?}: {} in flight", b.key());
    }
    // After the last swap, picks only go to the last set.
    for _ in 0..100 {
        let p = lb.pick(&PickContext::default()).unwrap();
        assert!(last.contains(p.backend().key()));
    }
}

#[test]
fn round_robin_under_swaps() {
    run(&Policy::RoundRobin);
}

#[test]
fn least_requests_under_swaps() {
    run(&Policy::LeastRequests);
}

#[test]
fn consistent_hash_under_swaps() {
    run(&Policy::ConsistentHash);
}

#[test]
fn sticky_under_swaps() {
    run(&Policy::Sticky);
}
