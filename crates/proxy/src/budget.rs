//! The retry budget: how many retries (and hedges) a service may send, as a share of its
//! client requests, so that retries cannot multiply the load on a struggling service.
//!
//! This module owns only the accounting; whether a request is retryable at all, and the
//! backoff between tries, are decided elsewhere.
//!
//! # Algorithm
//!
//! Like Linkerd's and Finagle's budgets: over a sliding window of the last
//! [`WINDOW_SECS`] seconds, a retry may go iff
//!
//! ```text
//! retries_in_window + 1 <= ratio * requests_in_window + min_per_sec * WINDOW_SECS
//! ```
//!
//! so with `ratio = 0.2` and `min_per_sec = 10`, 1000 requests allow at most 300 retries in
//! 10 s, and a quiet service may still retry 10 times a second on average.
//!
//! The window is a ring of one-second buckets of atomic counters, indexed by the second
//! since `origin` (fixed at construction). Each bucket stores the second it counts for; the
//! first caller that finds a bucket holding an older second claims it with a CAS on that
//! second and zeroes its counters (lazy rotation, no background task). Reading the window
//! sums the buckets whose second is one of the last [`WINDOW_SECS`].
//!
//! A withdrawal first counts the retry, then checks the bound and takes the retry back if it
//! does not fit, so concurrent callers can never together overdraw the budget (they may
//! refuse one another spuriously for an instant, which errs on the safe side).
//!
//! Recording is a handful of relaxed atomic operations and never allocates. The price of
//! lock-free rotation: an increment that lands on a bucket between the CAS that claims it
//! and the zeroing of its counters is lost. That window is a few instructions once a second,
//! and a lost count moves the budget by one retry.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

/// Length of the sliding window, in one-second buckets.
const WINDOW_SECS: u64 = 10;

/// The `second` of a bucket that has never been used.
const NEVER: u64 = u64::MAX;

/// Counters for one second of the window.
#[derive(Debug)]
struct Bucket {
    /// The second (since `origin`) these counters belong to, or [`NEVER`].
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            second: AtomicU64::new(NEVER),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// Claims this bucket for `second` if it holds an older one, zeroing its counters.
    fn rotate_to(&self, second: u64) {
        let held = self.second.load(Ordering::Acquire);
        if held == second {
            return;
        }
        // A newer second can be held only by a caller whose clock reading is later than ours;
        // count into it rather than rewinding the bucket.
        if held != NEVER && held > second {
            return;
        }
        let claimed = self
            .second
            .compare_exchange(held, second, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if claimed {
            self.requests.store(0, Ordering::Relaxed);
            self.retries.store(0, Ordering::Relaxed);
        }
    }

    /// Whether this bucket counts for one of the [`WINDOW_SECS`] seconds ending at `now_second`.
    fn in_window(&self, now_second: u64) -> bool {
        let held = self.second.load(Ordering::Acquire);
        now_second
            .checked_sub(held)
            .is_some_and(|age| age < WINDOW_SECS)
    }
}

/// A retry budget shared by all requests to one service. See the module documentation.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    /// Share of requests that may be retried.
    ratio: f64,
    /// Retries per second allowed regardless of traffic.
    min_per_sec: u32,
    /// Second 0 of the bucket clock.
    origin: Instant,
    buckets: [Bucket; WINDOW_SECS as usize],
    refused: AtomicU64,
}

impl RetryBudget {
    /// A budget allowing `ratio` retries per request (a negative or NaN ratio counts as 0)
    /// plus `min_per_sec` retries per second.
    pub(crate) fn new(ratio: f64, min_per_sec: u32) -> RetryBudget {
        RetryBudget {
            ratio: if ratio > 0.0 { ratio } else { 0.0 },
            min_per_sec,
            origin: Instant::now(),
            buckets: std::array::from_fn(|_| Bucket::new()),
            refused: AtomicU64::new(0),
        }
    }

    /// Count one client request (called once per request, not per try).
    pub(crate) fn record_request(&self, now: Instant) {
        self.current(now).requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A retry (or hedge) wants to go: true and counted if within budget.
    pub(crate) fn try_withdraw(&self, now: Instant) -> bool {
        let bucket = self.current(now);
        // Count first, so that concurrent withdrawals see each other.
        bucket.retries.fetch_add(1, Ordering::Relaxed);
        let (requests, retries) = self.window_totals(self.second(now));
        if self.allows(requests, retries) {
            return true;
        }
        bucket.retries.fetch_sub(1, Ordering::Relaxed);
        self.refused.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// For metrics: retries refused so far.
    pub(crate) fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Whether `retries` (including the one asking) fit the budget for `requests`.
    fn allows(&self, requests: u64, retries: u64) -> bool {
        let floor = f64::from(self.min_per_sec) * WINDOW_SECS as f64;
        retries as f64 <= self.ratio * requests as f64 + floor
    }

    /// Seconds since `origin`; a reading from before `origin` counts as second 0.
    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    /// The bucket for `now`, rotated to the current second.
    fn current(&self, now: Instant) -> &Bucket {
        let second = self.second(now);
        let bucket = &self.buckets[(second % WINDOW_SECS) as usize];
        bucket.rotate_to(second);
        bucket
    }

    /// `(requests, retries)` over the window ending at `now_second`.
    fn window_totals(&self, now_second: u64) -> (u64, u64) {
        self.buckets
            .iter()
            .filter(|bucket| bucket.in_window(now_second))
            .fold((0, 0), |(requests, retries), bucket| {
                (
                    requests + bucket.requests.load(Ordering::Relaxed),
                    retries + bucket.retries.load(Ordering::Relaxed),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Withdraws until refused; returns how many went.
    fn drain(budget: &RetryBudget, now: Instant) -> u64 {
        let mut allowed = 0;
        while budget.try_withdraw(now) {
            allowed += 1;
            assert!(allowed < 1_000_000, "budget never ran out");
        }
        allowed
    }

    fn requests(budget: &RetryBudget, now: Instant, n: u64) {
        for _ in 0..n {
            budget.record_request(now);
        }
    }

    #[test]
    fn a_burst_gets_exactly_the_bound() {
        let budget = RetryBudget::new(0.2, 10);
        let t0 = budget.origin;
        requests(&budget, t0, 1000);
        assert_eq!(drain(&budget, t0), 300, "0.2 * 1000 + 10/s * 10 s");
        assert_eq!(budget.refused_total(), 1);
    }

    #[test]
    fn requests_spread_over_the_window_all_count() {
        let budget = RetryBudget::new(0.2, 10);
        let t0 = budget.origin;
        for s in 0..10 {
            requests(&budget, t0 + Duration::from_secs(s), 100);
        }
        let last = t0 + Duration::from_millis(9_999);
        assert_eq!(drain(&budget, last), 300);
    }

    #[test]
    fn retries_already_taken_count_against_the_budget() {
        let budget = RetryBudget::new(0.5, 0);
        let t0 = budget.origin;
        requests(&budget, t0, 10);
        assert_eq!(drain(&budget, t0), 5);
        requests(&budget, t0 + Duration::from_secs(3), 2);
        assert_eq!(drain(&budget, t0 + Duration::from_secs(3)), 1);
    }

    #[test]
    fn old_buckets_expire_and_the_budget_comes_back() {
        let budget = RetryBudget::new(0.0, 1);
        let t0 = budget.origin + Duration::from_millis(500);
        assert_eq!(drain(&budget, t0), 10);
        // Still inside the 10 s window: nothing new.
        assert!(!budget.try_withdraw(t0 + Duration::from_millis(9_400)));
        // Second 0 has left the window.
        assert_eq!(drain(&budget, t0 + Duration::from_millis(9_500)), 10);
    }

    #[test]
    fn after_a_long_quiet_spell_only_the_floor_remains() {
        let budget = RetryBudget::new(0.2, 10);
        let t0 = budget.origin;
        requests(&budget, t0, 1000);
        assert_eq!(drain(&budget, t0 + Duration::from_mins(1)), 100);
    }

    #[test]
    fn ratio_zero_and_min_zero_never_allows() {
        let budget = RetryBudget::new(0.0, 0);
        let t0 = budget.origin;
        requests(&budget, t0, 1000);
        assert!(!budget.try_withdraw(t0));
        assert!(!budget.try_withdraw(t0 + Duration::from_secs(30)));
        assert_eq!(budget.refused_total(), 2);
    }

    #[test]
    fn a_nonsense_ratio_counts_as_zero() {
        for ratio in [-1.0, f64::NAN] {
            let budget = RetryBudget::new(ratio, 0);
            requests(&budget, budget.origin, 100);
            assert!(!budget.try_withdraw(budget.origin));
        }
    }

    #[test]
    fn a_clock_reading_before_origin_counts_as_second_zero() {
        let budget = RetryBudget::new(1.0, 0);
        let before = budget.origin.checked_sub(Duration::from_secs(1));
        let Some(before) = before else { return };
        budget.record_request(before);
        assert!(budget.try_withdraw(budget.origin));
    }

    #[test]
    fn concurrent_withdrawals_never_overdraw() {
        let budget = RetryBudget::new(0.2, 10);
        let t0 = budget.origin;
        let allowed: u64 = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let mut allowed = 0;
                        for _ in 0..250 {
                            budget.record_request(t0);
                            for _ in 0..3 {
                                allowed += u64::from(budget.try_withdraw(t0));
                            }
                        }
                        allowed
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert!(allowed <= 300, "{allowed} retries went, bound is 300");
        // Spurious refusals under contention are taken back: the rest is still there.
        assert_eq!(allowed + drain(&budget, t0), 300);
    }

    #[derive(Debug, Clone, Copy)]
    enum Op {
        Request,
        Retry,
        /// Advance the clock by this many milliseconds.
        Wait(u64),
    }

    fn random_op(rng: &mut Rng) -> Op {
        match rng.u64(0..9) {
            0..4 => Op::Request,
            4..8 => Op::Retry,
            _ => Op::Wait(rng.u64(0..4_000)),
        }
    }

    // Seeded, so that a failure names its seed.
    use fastrand::Rng;

    /// The budget agrees with a naive model that keeps every event with its second.
    #[test]
    fn matches_a_naive_model() {
        for seed in 0..300 {
            let mut rng = Rng::with_seed(seed);
            let ratio = rng.f64() * 2.0;
            let min_per_sec = rng.u64(0..3) as u32;
            let budget = RetryBudget::new(ratio, min_per_sec);
            let mut now = budget.origin;
            // (second, is_retry) of every counted event.
            let mut events: Vec<(u64, bool)> = Vec::new();
            for step in 0..rng.u64(0..400) {
                let second = (now - budget.origin).as_secs();
                match random_op(&mut rng) {
                    Op::Request => {
                        budget.record_request(now);
                        events.push((second, false));
                    }
                    Op::Retry => {
                        let recent = events.iter().filter(|(s, _)| second - s < WINDOW_SECS);
                        let retries = recent.clone().filter(|(_, retry)| *retry).count();
                        let requests = recent.count() - retries;
                        let bound = ratio * requests as f64 + f64::from(min_per_sec) * 10.0;
                        let expected = (retries + 1) as f64 <= bound;
                        let allowed = budget.try_withdraw(now);
                        assert_eq!(allowed, expected, "seed {seed}, step {step}");
                        if allowed {
                            events.push((second, true));
                        }
                    }
                    Op::Wait(ms) => now += Duration::from_millis(ms),
                }
            }
        }
    }
}
