//! Smooth weighted round robin, precomputed into a schedule so that picking is one atomic add.
//!
//! # Theory
//!
//! nginx's *smooth weighted round robin* keeps a "current" score per backend. On each pick it
//! adds every backend's weight to its score, chooses the backend with the highest score (the
//! first one on ties) and subtracts the total weight `S` from the winner. Over any `S`
//! consecutive picks each backend is chosen exactly `weight` times, and the choices are
//! interleaved rather than bunched: weights 5:1:1 give `a a b a c a a`, not `a a a a a b c`.
//! The sequence is periodic with period `S`.
//!
//! nginx runs that loop under a lock on every request. Because the sequence depends only on
//! the weights, this module runs it once, when the endpoint set is swapped, and stores one
//! period as a *schedule* (a slice of backend indices). A pick is then
//! `schedule[counter.fetch_add(1, Relaxed) % len]`: lock-free, allocation-free and O(1),
//! and with many threads picking at once every counter value is still used exactly once, so
//! the proportions stay exact.
//!
//! Before building, weights are divided by their greatest common divisor (10:20 is 1:2, a
//! schedule of 3 slots). With all weights equal the schedule is simply `0, 1, …, n-1`.
//!
//! ## The period boundary
//!
//! Started from all-zero scores (as nginx does), every score is back at zero after each
//! period, and the heaviest backend is both the last pick of one period and the first of the
//! next: 2:1:1 gives `a b c a | a b c a`, a burst of two that is not necessary. So the loop
//! is started from *staggered* scores instead (backend `i` of `n` starts at
//! `S·(n-1-2i)/(2n)`, rounded toward zero), which spreads the backends' phases across the
//! period: 2:1:1 gives `a b a c`, 5:1:1 gives `a a a b a a c`. The same nginx step is used, so
//! each period still has exactly `weight` picks per backend; when the staggered start would
//! not close into a period of length `S`, or would give a longer run of one backend read
//! cyclically, the all-zero start is used. Which backend gets which phase matters as well
//! (1:16:1 wants its two light backends half a period apart), so with up to 8 backends every
//! rotation of the phases is tried, and so is the heaviest backend at phase 0 with the
//! others staggered around it; the smoothest period wins. Over every weight vector of up to
//! four backends with weights 1–20, the heaviest backend's longest run is then at most one
//! more than `⌈max/others⌉`.
//!
//! # Limits
//!
//! * The schedule holds at most [`MAX_SCHEDULE_LEN`] (64 Ki) slots, or `n` slots if there are
//!   more than 64 Ki backends. When the reduced weights sum to more than that, each weight is
//!   scaled by `64 Ki / S` (rounded down, at least 1) and reduced again, so proportions are
//!   kept to within one slot in 64 Ki per backend instead of exactly.
//! * nginx's loop costs `S × n` steps. When that exceeds about a million (for example 1 000
//!   backends with unequal weights), the schedule is built instead with a heap in
//!   `S × log n`: backend `i`'s `k`-th pick is placed at the ideal time
//!   `(k + φᵢ) / weight` within the period `[0, 1)`, where the phase `φᵢ` is the fractional
//!   part of `(i+1)` times the golden ratio, and the schedule is those times in order (ties
//!   to the lower index). Each backend is exactly evenly spaced, so counts per period are
//!   exact; the interleaving is close to nginx's but not slot-for-slot identical.
//! * Exclusions (retries) walk forward from the scheduled slot to the next slot whose
//!   backend is not excluded, which keeps the weighted proportions among the rest.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Longest schedule built, in slots (unless there are more backends than this).
pub const MAX_SCHEDULE_LEN: usize = 1 << 16;

/// Above this many steps (`S × n`), build with the heap instead of nginx's loop.
const EXACT_STEP_BUDGET: u64 = 1 << 20;

/// One period of the smooth weighted round-robin sequence, as backend indices.
#[derive(Default)]
pub(crate) struct Schedule {
    slots: Box<[u32]>,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("len", &self.slots.len())
            .finish()
    }
}

impl Schedule {
    /// Builds the schedule for backends with these weights (0 is treated as 1).
    pub(crate) fn new(weights: &[u32]) -> Schedule {
        let n = weights.len();
        if n == 0 {
            return Schedule::default();
        }
        let mut w: Vec<u64> = weights.iter().map(|&w| u64::from(w.max(1))).collect();
        reduce_by_gcd(&mut w);
        let mut total: u64 = w.iter().sum();
        let cap = MAX_SCHEDULE_LEN.max(n) as u64;
        if total > cap {
            for x in &mut w {
                *x = (*x * MAX_SCHEDULE_LEN as u64 / total).max(1);
            }
            reduce_by_gcd(&mut w);
            total = w.iter().sum();
        }
        let slots = if total == n as u64 {
            // All (reduced) weights are 1: nginx's sequence is plain 0..n.
            (0..n as u32).collect()
        } else if total.saturating_mul(n as u64) <= EXACT_STEP_BUDGET {
            smooth_nginx(&w, total)
        } else {
            ideal_times_heap(&w, total)
        };
        Schedule { slots }
    }

    /// Number of slots (one period).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The slots, for tests.
    #[cfg(test)]
    pub(crate) fn slots(&self) -> &[u32] {
        &self.slots
    }

    /// Takes the next slot; if its backend is not `eligible`, walks forward to the next slot
    /// whose backend is. `None` if the schedule is empty or nothing is eligible.
    pub(crate) fn pick(
        &self,
        counter: &AtomicUsize,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let len = self.slots.len();
        if len == 0 {
            return None;
        }
        // A slot whose backend is not eligible (down, or already tried) is skipped by
        // drawing the next position, not by scanning on from it: scanning would hand the
        // skipped backend's share to its successor alone (with one of three down, one
        // survivor would get two thirds).
        let mut start = 0;
        for _ in 0..SKIP_DRAWS.min(len) {
            start = counter.fetch_add(1, Ordering::Relaxed) % len;
            let i = self.slots[start] as usize;
            if eligible(i) {
                return Some(i);
            }
        }
        // Mostly ineligible: scan once from the last position.
        let (tail, head) = self.slots.split_at(start);
        head.iter()
            .chain(tail)
            .map(|&i| i as usize)
            .find(|&i| eligible(i))
    }
}

/// Positions drawn before a pick falls back to scanning for an eligible backend.
const SKIP_DRAWS: usize = 8;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn reduce_by_gcd(w: &mut [u64]) {
    let g = w.iter().copied().fold(0, gcd);
    if g > 1 {
        for x in w {
            *x /= g;
        }
    }
}

/// nginx's smooth weighted round robin for one period, from the staggered start when that
/// is a true period and no burstier than the all-zero start, else from the all-zero start.
fn smooth_nginx(w: &[u64], total: u64) -> Box<[u32]> {
    let staggered = stagger(total, w.len());
    let mut starts = vec![staggered.clone(), vec![0; w.len()]];
    // Which backend gets which phase matters too (1:16:1 wants its two light backends half
    // a period apart): with few backends, every rotation of the phases is tried, and the
    // heaviest backend at phase 0 with the others spread around it.
    if w.len() <= MAX_ROTATED {
        for r in 1..w.len() {
            starts.push(
                staggered[r..]
                    .iter()
                    .chain(&staggered[..r])
                    .copied()
                    .collect(),
            );
        }
    }
    let heaviest = (0..w.len())
        .max_by_key(|&i| (w[i], std::cmp::Reverse(i)))
        .unwrap_or(0);
    let mut around = stagger(total, w.len() - 1).into_iter();
    starts.push(
        (0..w.len())
            .map(|i| {
                if i == heaviest {
                    0
                } else {
                    around.next().unwrap_or(0)
                }
            })
            .collect(),
    );
    // The smoothest period (fewest repeats of one backend in a row, read cyclically); the
    // first such in the order above.
    let mut best: Option<(usize, Box<[u32]>)> = None;
    for start in starts {
        if let Some(slots) = run_nginx(w, total, start) {
            let run = longest_cyclic_run(&slots);
            if best.as_ref().is_none_or(|(b, _)| run < *b) {
                best = Some((run, slots));
            }
        }
    }
    best.map(|(_, slots)| slots)
        .expect("the zero start is always a period")
}

/// Most backends for which every rotation of the staggered phases is tried.
const MAX_ROTATED: usize = 8;

/// Staggered starting scores for `n` backends: backend `i` at `S·(n-1-2i)/(2n)`.
fn stagger(total: u64, n: usize) -> Vec<i64> {
    let (s, n) = (total as i64, n as i64);
    (0..n).map(|i| s * (n - 1 - 2 * i) / (2 * n)).collect()
}

/// Runs `total` nginx steps from `current`; `Some` only if the scores come back to where they
/// started (so the slice is a period with exactly `weight` picks per backend).
fn run_nginx(w: &[u64], total: u64, mut current: Vec<i64>) -> Option<Box<[u32]>> {
    let start = current.clone();
    let total_i = total as i64;
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (c, &wi) in current.iter_mut().zip(w) {
            *c += wi as i64;
        }
        for i in 1..current.len() {
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total_i;
        out.push(best as u32);
    }
    (current == start).then(|| out.into_boxed_slice())
}

/// Longest run of one backend in `slots` read cyclically.
fn longest_cyclic_run(slots: &[u32]) -> usize {
    let len = slots.len();
    if len == 0 {
        return 0;
    }
    let mut best = 1;
    let mut run = 1;
    for i in 1..2 * len {
        if slots[i % len] == slots[(i - 1) % len] {
            run += 1;
            best = best.max(run.min(len));
        } else {
            run = 1;
        }
    }
    best
}

/// The next ideal time of backend `i`'s `k`-th pick, `(k + φᵢ) / w`, as the fraction
/// `(k·2³² + φᵢ·2³²) / (w·2³²)`, ordered so that the `BinaryHeap` (a max-heap) pops the
/// earliest time, then the lowest index.
#[derive(PartialEq, Eq)]
struct Next {
    /// `(k + φᵢ)·2³²`.
    num: u64,
    /// `w·2³²`.
    den: u128,
    index: u32,
}

impl Ord for Next {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // a/da < b/db  <=>  a·db < b·da; below 2^49 · 2^49, so u128 never overflows.
        let lhs = u128::from(self.num) * other.den;
        let rhs = u128::from(other.num) * self.den;
        rhs.cmp(&lhs).then_with(|| other.index.cmp(&self.index))
    }
}

impl PartialOrd for Next {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

/// Phase of backend `i` in 32-bit fixed point: the fractional part of `(i+1)·φ` for the
/// golden ratio `φ`, a low-discrepancy sequence, so that however many backends there are
/// their phases are spread around the period rather than bunched.
fn golden_phase(i: usize) -> u64 {
    (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32
}

/// Evenly spaced, phase-staggered picks merged in time order, for one period:
/// `total × log n`.
fn ideal_times_heap(w: &[u64], total: u64) -> Box<[u32]> {
    const ONE: u64 = 1 << 32;
    let mut heap: BinaryHeap<Next> = w
        .iter()
        .enumerate()
        .map(|(i, &weight)| Next {
            num: golden_phase(i),
            den: u128::from(weight) * u128::from(ONE),
            index: i as u32,
        })
        .collect();
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let Some(mut next) = heap.pop() else { break };
        out.push(next.index);
        next.num += ONE;
        heap.push(next);
    }
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts(slots: &[u32], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &s in slots {
            c[s as usize] += 1;
        }
        c
    }

    #[test]
    fn zero_start_matches_nginx_reference_sequence() {
        // The example from nginx's commit introducing smooth weighted round robin.
        let w = [5, 1, 1];
        let zero = run_nginx(&w, 7, vec![0; 3]).unwrap();
        assert_eq!(&*zero, &[0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(
            &*run_nginx(&[2, 1, 1], 4, vec![0; 3]).unwrap(),
            &[0, 1, 2, 0]
        );
    }

    #[test]
    fn staggered_start_avoids_bursts_at_the_period_boundary() {
        // nginx's zero start reads a b c a | a b c a; staggered reads a b a c | a b a c.
        assert_eq!(Schedule::new(&[2, 1, 1]).slots(), &[0, 1, 0, 2]);
        assert_eq!(Schedule::new(&[5, 1, 1]).slots(), &[0, 0, 0, 1, 0, 0, 2]);
        assert_eq!(longest_cyclic_run(Schedule::new(&[5, 1, 1]).slots()), 3);
    }

    #[test]
    fn equal_weights_are_plain_rotation() {
        assert_eq!(Schedule::new(&[1, 1, 1]).slots(), &[0, 1, 2]);
        assert_eq!(Schedule::new(&[7, 7, 7, 7]).slots(), &[0, 1, 2, 3]);
    }

    #[test]
    fn weights_are_reduced_by_gcd() {
        assert_eq!(Schedule::new(&[10, 20]).len(), 3);
        assert_eq!(Schedule::new(&[0, 3]).len(), 4, "0 counts as 1");
        assert_eq!(Schedule::new(&[]).len(), 0);
    }

    #[test]
    fn oversized_weights_are_scaled_to_the_cap() {
        let s = Schedule::new(&[100_000, 50_000, 1]);
        assert!(s.len() <= MAX_SCHEDULE_LEN, "len {}", s.len());
        let c = counts(s.slots(), 3);
        assert!(c[2] >= 1, "every backend keeps at least one slot");
        let ratio = c[0] as f64 / c[1] as f64;
        assert!((ratio - 2.0).abs() < 0.01, "ratio {ratio}");
    }

    #[test]
    fn many_backends_beyond_the_cap_all_get_a_slot() {
        let n = MAX_SCHEDULE_LEN + 10;
        let s = Schedule::new(&vec![1; n]);
        assert_eq!(s.len(), n);
    }

    #[test]
    fn large_unequal_sets_use_the_heap_and_stay_exact() {
        let weights: Vec<u32> = (0..2_000).map(|i| 1 + i % 5).collect();
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        assert!(total * 2_000 > EXACT_STEP_BUDGET, "exercises the heap path");
        let s = Schedule::new(&weights);
        assert_eq!(s.len() as u64, total);
        let c = counts(s.slots(), weights.len());
        for (i, &w) in weights.iter().enumerate() {
            assert_eq!(c[i], w as usize);
        }
    }

    #[test]
    fn an_ineligible_slot_draws_the_next_position() {
        let s = Schedule::new(&[2, 1, 1]); // 0 1 0 2
        let counter = AtomicUsize::new(1); // slot 1 -> backend 1, excluded
        assert_eq!(s.pick(&counter, |i| i != 1), Some(0));
        assert_eq!(
            counter.load(Ordering::Relaxed),
            3,
            "one more draw for the skip"
        );
        let counter = AtomicUsize::new(3); // slot 3 -> backend 2, excluded; wraps to slot 0
        assert_eq!(s.pick(&counter, |i| i != 2), Some(0));
        assert_eq!(s.pick(&counter, |_| false), None);
        // Only a backend far from the drawn positions is eligible: found by the scan.
        let wide = Schedule::new(&[1; 20]);
        let counter = AtomicUsize::new(0);
        assert_eq!(wide.pick(&counter, |i| i == 15), Some(15));
    }

    proptest! {
        #[test]
        fn both_builders_give_exact_counts_per_period(
            weights in proptest::collection::vec(1u64..=50, 1..=12)
        ) {
            let mut w = weights;
            reduce_by_gcd(&mut w);
            let total: u64 = w.iter().sum();
            for slots in [smooth_nginx(&w, total), ideal_times_heap(&w, total)] {
                let c = counts(&slots, w.len());
                for (i, &wi) in w.iter().enumerate() {
                    prop_assert_eq!(c[i] as u64, wi);
                }
            }
        }

        #[test]
        fn schedule_is_interleaved(
            weights in proptest::collection::vec(1u32..=20, 2..=8)
        ) {
            // A backend with share w/S can't avoid runs of about w/(S-w) + 1; allow one more
            // to account for the period boundary.
            let s = Schedule::new(&weights);
            let mut w: Vec<u64> = weights.iter().map(|&x| u64::from(x)).collect();
            reduce_by_gcd(&mut w);
            let total: u64 = w.iter().sum();
            let max = *w.iter().max().unwrap();
            let others = total - max;
            let bound = if others == 0 { s.len() } else { (max.div_ceil(others) + 1) as usize };
            prop_assert!(
                longest_cyclic_run(s.slots()) <= bound,
                "weights {:?}: {:?}", weights, s.slots()
            );
            // The heap builder only guarantees what even spacing implies: a run of r spans
            // (r-1)/max of the period with no other pick inside, while each other backend j
            // has at least ℓ·wⱼ - 1 picks in any open interval of length ℓ, so
            // r <= 1 + (n-1)·max/others.
            let heap = ideal_times_heap(&w, total);
            let heap_bound = ((w.len() as u64 - 1) * max)
                .checked_div(others)
                .map_or(s.len(), |r| 1 + r as usize);
            prop_assert!(
                longest_cyclic_run(&heap) <= heap_bound,
                "heap, weights {:?}: {:?}", weights, heap
            );
        }
    }
}
