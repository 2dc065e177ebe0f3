//! Least outstanding requests by the *power of two choices* (P2C).
//!
//! # Theory
//!
//! Sending each request to the backend with the fewest requests in flight balances load
//! well, but needs a scan (or a shared priority queue) over all backends, and every gateway
//! thread that reads the same slightly stale counters piles onto the same "best" backend.
//! Mitzenmacher's *power of two choices* samples two backends uniformly at random and takes
//! the less loaded of the two. That one extra sample brings the maximum load down from
//! `Θ(log n / log log n)` (one random choice) to `Θ(log log n)`, costs O(1), needs no
//! coordination, and never herds: the worst backend is only chosen when both samples hit it.
//! This is Envoy's `LEAST_REQUEST` with `choice_count: 2`, Linkerd's and tower's `p2c`,
//! HAProxy's `random(2)` and nginx's `random two least_conn`.
//!
//! # Here
//!
//! The load of a backend is its [`in_flight`](crate::Backend::in_flight) count divided by its
//! weight; the comparison is done on cross-multiplied integers (`in_a·w_b` vs `in_b·w_a`),
//! so weights are honoured without floating point. The two indices are distinct; on a tie
//! the first sample wins. With one eligible backend it is chosen without sampling. With
//! exclusions, the two samples are drawn among the non-excluded backends (a count and a
//! scan, O(n), still allocation-free); without, a pick is O(1).

use std::sync::Arc;

use crate::Backend;

/// Chooses among the `backends` for which `eligible(index)` holds; `None` if there are none.
/// `all_eligible` says that `eligible` very likely holds everywhere (no exclusions), which
/// makes the pick O(1) instead of O(n); if a sample turns out ineligible (a backend is
/// down), the pick falls back to the O(n) path.
pub(crate) fn pick(
    backends: &[Arc<Backend>],
    all_eligible: bool,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    pick_with(backends, all_eligible, eligible, fastrand::usize)
}

/// [`pick`] with the random source given (`rand(..n)` returns a value below `n`), for tests.
fn pick_with(
    backends: &[Arc<Backend>],
    all_eligible: bool,
    eligible: impl Fn(usize) -> bool,
    mut rand: impl FnMut(std::ops::RangeTo<usize>) -> usize,
) -> Option<usize> {
    if all_eligible && backends.len() >= 2 {
        let n = backends.len();
        let a = rand(..n);
        let mut b = rand(..n - 1);
        if b >= a {
            b += 1;
        }
        if eligible(a) && eligible(b) {
            return Some(if less_loaded(&backends[b], &backends[a]) {
                b
            } else {
                a
            });
        }
        return pick_with(backends, false, eligible, rand);
    }
    let m = if all_eligible {
        backends.len()
    } else {
        (0..backends.len()).filter(|&i| eligible(i)).count()
    };
    let nth_eligible = |r: usize| {
        if m == backends.len() {
            r
        } else {
            (0..backends.len())
                .filter(|&i| eligible(i))
                .nth(r)
                .unwrap_or(0)
        }
    };
    match m {
        0 => None,
        1 => Some(nth_eligible(0)),
        _ => {
            let ra = rand(..m);
            let mut rb = rand(..m - 1);
            if rb >= ra {
                rb += 1;
            }
            let (a, b) = (nth_eligible(ra), nth_eligible(rb));
            Some(if less_loaded(&backends[b], &backends[a]) {
                b
            } else {
                a
            })
        }
    }
}

/// `x` carries strictly less load per unit of weight than `y`.
fn less_loaded(x: &Backend, y: &Backend) -> bool {
    let lx = x.in_flight() as u128 * u128::from(y.weight());
    let ly = y.in_flight() as u128 * u128::from(x.weight());
    lx < ly
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::InFlightGuard;

    fn set(weights: &[u32]) -> Vec<Arc<Backend>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Backend::new(format!("b{i}"), format!("127.0.0.1:{}", 9000 + i), w))
            .collect()
    }

    fn load(b: &Arc<Backend>, n: usize) -> Vec<InFlightGuard> {
        (0..n)
            .map(|_| InFlightGuard::acquire(Arc::clone(b)))
            .collect()
    }

    /// A random source that replays fixed values.
    fn fixed(values: &[usize]) -> impl FnMut(std::ops::RangeTo<usize>) -> usize + '_ {
        let mut it = values.iter().copied();
        move |r| {
            let v = it.next().expect("enough values");
            assert!(v < r.end, "{v} out of ..{}", r.end);
            v
        }
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(pick(&[], true, |_| true), None);
        let one = set(&[1]);
        assert_eq!(pick(&one, true, |_| true), Some(0));
        assert_eq!(pick(&one, false, |_| false), None);
    }

    #[test]
    fn samples_are_distinct_and_lower_load_wins() {
        let b = set(&[1, 1, 1]);
        let _g = load(&b[0], 3);
        // ra = 0; rb = 0 is shifted past ra to 1: compares b0 (3) and b1 (0).
        assert_eq!(pick_with(&b, true, |_| true, fixed(&[0, 0])), Some(1));
    }

    #[test]
    fn tie_goes_to_the_first_sample() {
        let b = set(&[1, 1, 1]);
        assert_eq!(pick_with(&b, true, |_| true, fixed(&[2, 0])), Some(2));
        assert_eq!(pick_with(&b, true, |_| true, fixed(&[0, 1])), Some(0));
    }

    #[test]
    fn load_is_per_unit_of_weight() {
        let b = set(&[1, 4]);
        let _g0 = load(&b[0], 1); // 1/1
        let _g1 = load(&b[1], 3); // 3/4 < 1
        assert_eq!(pick_with(&b, true, |_| true, fixed(&[0, 0])), Some(1));
        let _g1b = load(&b[1], 2); // 5/4 > 1
        assert_eq!(pick_with(&b, true, |_| true, fixed(&[0, 0])), Some(0));
    }

    #[test]
    fn samples_only_eligible_backends() {
        let b = set(&[1, 1, 1, 1]);
        // Eligible are 1 and 3; r = 0 -> b1, r = 1 -> b3.
        let _g = load(&b[1], 1);
        assert_eq!(
            pick_with(&b, false, |i| i % 2 == 1, fixed(&[0, 0])),
            Some(3)
        );
        assert_eq!(pick(&b, false, |i| i == 2), Some(2));
        for _ in 0..100 {
            let i = pick(&b, false, |i| i != 0).unwrap();
            assert_ne!(i, 0);
        }
    }
}
