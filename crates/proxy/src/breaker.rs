//! The per-service circuit breaker: stop sending requests to a service that is failing (or
//! too slow), answer 503 at once instead, and probe it with a few trial requests before
//! letting traffic back.
//!
//! This module owns the state machine and the outcome window; turning a rejection into a 503
//! with `Retry-After`, and emitting events on state changes, belong to the caller.
//!
//! # Algorithm
//!
//! As in resilience4j and Traefik:
//!
//! - **Closed**: every request goes. Outcomes are counted over a sliding window of
//!   `window` (ten buckets of `window / 10`, reused in a ring as time passes). Once the
//!   window holds at least `min_requests` outcomes and the share of failures reaches
//!   `error_ratio`, or the share of slow calls (slower than `slow_call`, failed or not)
//!   reaches `slow_ratio`, the breaker opens.
//! - **Open**: every request is rejected, with the time left until half-open. After
//!   `open_for`, the next request turns the breaker half-open.
//! - **Half-open**: up to `half_open_requests` trial requests go; the rest are rejected
//!   until the trials finish. A failed trial (or a slow one, when `slow_ratio` is set)
//!   opens the breaker again for `open_for`; when every trial has succeeded it closes, with
//!   an empty window.
//!
//! Every admitted request must be recorded, trials above all (a cancelled request too:
//! as failed if the replica never answered). As a safety net, a half-open round whose
//! trials have all been let through but which has not concluded `open_for` after it began
//! is presumed to have lost a trial, and a new round of trials begins.
//!
//! Outcomes of non-trial requests admitted before the breaker opened are ignored while it is
//! open or half-open, and so are trial outcomes that arrive while it is open. A trial outcome
//! that arrives after the breaker closed counts like any other outcome.
//!
//! If neither ratio is set, `error_ratio` is 0.5 (the documented default of the config);
//! `half_open_requests` of 0 counts as 1.
//!
//! The state lives behind a `std::sync::Mutex`, taken briefly by [`Breaker::admit`] and
//! [`Breaker::record`] (no awaits here, so never across one); the breaker is opt-in per
//! service. `opened_total` is an atomic so metrics do not take the lock.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use shoal_config::CircuitBreaker;
use tokio::time::Instant;

/// Buckets in the outcome window.
const BUCKETS: usize = 10;

/// `error_ratio` when the settings set neither ratio.
const DEFAULT_ERROR_RATIO: f64 = 0.5;

/// Shortest `retry_after` given to a rejected request.
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The state of a breaker, for events, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerState {
    /// Requests go; outcomes are counted.
    Closed,
    /// Requests are rejected.
    Open,
    /// A few trial requests go.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

/// Whether a request may be forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Forward it, then call [`Breaker::record`] with this `trial`.
    Allowed {
        /// This is a half-open trial request.
        trial: bool,
    },
    /// Answer 503 at once.
    Rejected {
        /// For the `Retry-After` header: whole seconds, at least 1.
        retry_after: Duration,
    },
}

/// One service's circuit breaker. See the module documentation.
#[derive(Debug)]
pub(crate) struct Breaker {
    settings: CircuitBreaker,
    /// Start of outcome bucket 0.
    origin: Instant,
    /// Width of one outcome bucket.
    bucket_width: Duration,
    inner: Mutex<Inner>,
    opened: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    state: State,
    window: Window,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        /// When this round of trials began.
        since: Instant,
        /// Trials let through so far.
        admitted: u32,
        /// Trials that came back fine.
        succeeded: u32,
    },
}

impl Breaker {
    /// A closed breaker with an empty window.
    pub(crate) fn new(settings: CircuitBreaker) -> Breaker {
        let mut settings = settings;
        if settings.error_ratio.is_none() && settings.slow_ratio.is_none() {
            settings.error_ratio = Some(DEFAULT_ERROR_RATIO);
        }
        // With no trials a half-open breaker could never close.
        settings.half_open_requests = settings.half_open_requests.max(1);
        let bucket_width = (settings.window / BUCKETS as u32).max(Duration::from_nanos(1));
        Breaker {
            settings,
            origin: Instant::now(),
            bucket_width,
            inner: Mutex::new(Inner {
                state: State::Closed,
                window: Window::default(),
            }),
            opened: AtomicU64::new(0),
        }
    }

    /// Before a request is forwarded.
    ///
    /// Closed: allowed. Open: rejected, `retry_after` being the time left open rounded up to
    /// whole seconds (at least 1 s) for the `Retry-After` header. Open with `open_for` elapsed:
    /// becomes half-open and admits up to `half_open_requests` trials (`trial: true`),
    /// rejecting the rest (with `retry_after` 1 s) until the round concludes.
    pub(crate) fn admit(&self, now: Instant) -> Admission {
        let mut inner = self.lock();
        if let State::Open { until } = inner.state {
            if now < until {
                return Admission::Rejected {
                    retry_after: retry_after(until - now),
                };
            }
            inner.state = half_open(now);
        }
        self.restart_stuck_round(&mut inner, now);
        match &mut inner.state {
            State::Closed => Admission::Allowed { trial: false },
            State::HalfOpen { admitted, .. } if *admitted < self.settings.half_open_requests => {
                *admitted += 1;
                Admission::Allowed { trial: true }
            }
            State::HalfOpen { .. } | State::Open { .. } => Admission::Rejected {
                retry_after: MIN_RETRY_AFTER,
            },
        }
    }

    /// After the request finished: `latency` is the time to response headers (or to the
    /// failure), `failed` means a 5xx from the replica or no answer at all, and `trial` is
    /// the one from [`Admission::Allowed`]. Returns `Some(new_state)` when this outcome
    /// changed the state (for events and logs).
    pub(crate) fn record(
        &self,
        now: Instant,
        trial: bool,
        failed: bool,
        latency: Duration,
    ) -> Option<BreakerState> {
        let slow = latency > self.settings.slow_call;
        let mut inner = self.lock();
        match inner.state {
            State::Closed => self.record_closed(&mut inner, now, failed, slow),
            State::HalfOpen { .. } if trial => self.record_trial(&mut inner, now, failed, slow),
            State::HalfOpen { .. } | State::Open { .. } => None,
        }
    }

    /// The current state. An open breaker whose `open_for` has passed still reports
    /// [`BreakerState::Open`] until the next [`Breaker::admit`].
    pub(crate) fn state(&self) -> BreakerState {
        match self.lock().state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Counters for metrics: times opened.
    pub(crate) fn opened_total(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Begins a new round of trials if the current round began `open_for` ago or more, has
    /// let all its trials through and has not concluded: some trial was presumably cancelled
    /// without reporting, and the breaker must not stay half-open forever.
    fn restart_stuck_round(&self, inner: &mut Inner, now: Instant) {
        let State::HalfOpen {
            since, admitted, ..
        } = inner.state
        else {
            return;
        };
        let all_out = admitted >= self.settings.half_open_requests;
        if all_out && now.saturating_duration_since(since) >= self.settings.open_for {
            inner.state = half_open(now);
        }
    }

    fn record_closed(
        &self,
        inner: &mut Inner,
        now: Instant,
        failed: bool,
        slow: bool,
    ) -> Option<BreakerState> {
        let tick = self.tick(now);
        inner.window.add(tick, failed, slow);
        let counts = inner.window.totals(tick);
        if !self.trips(counts) {
            return None;
        }
        self.open(inner, now);
        Some(BreakerState::Open)
    }

    fn record_trial(
        &self,
        inner: &mut Inner,
        now: Instant,
        failed: bool,
        slow: bool,
    ) -> Option<BreakerState> {
        if failed || (slow && self.settings.slow_ratio.is_some()) {
            self.open(inner, now);
            return Some(BreakerState::Open);
        }
        let State::HalfOpen { succeeded, .. } = &mut inner.state else {
            return None;
        };
        *succeeded += 1;
        if *succeeded < self.settings.half_open_requests {
            return None;
        }
        inner.state = State::Closed;
        inner.window = Window::default();
        Some(BreakerState::Closed)
    }

    /// Whether the window's outcomes call for opening.
    fn trips(&self, counts: Counts) -> bool {
        if counts.total == 0 || counts.total < u64::from(self.settings.min_requests) {
            return false;
        }
        let reached = |count: u64, ratio: Option<f64>| {
            ratio.is_some_and(|ratio| count as f64 / counts.total as f64 >= ratio)
        };
        reached(counts.failed, self.settings.error_ratio)
            || reached(counts.slow, self.settings.slow_ratio)
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        inner.state = State::Open {
            until: now + self.settings.open_for,
        };
        inner.window = Window::default();
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    /// The outcome bucket number `now` falls in; a reading before `origin` is in bucket 0.
    fn tick(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin);
        let tick = elapsed.as_nanos() / self.bucket_width.as_nanos();
        u64::try_from(tick).unwrap_or(u64::MAX)
    }

    /// The state, even if a thread panicked while holding it (every update leaves it valid).
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fresh round of trials.
fn half_open(now: Instant) -> State {
    State::HalfOpen {
        since: now,
        admitted: 0,
        succeeded: 0,
    }
}

/// `left` rounded up to whole seconds, at least [`MIN_RETRY_AFTER`].
fn retry_after(left: Duration) -> Duration {
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    Duration::from_secs(secs).max(MIN_RETRY_AFTER)
}

/// Outcome counts of one bucket, or summed over the window.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    total: u64,
    failed: u64,
    slow: u64,
}

/// One bucket of the outcome window.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The tick these counts belong to; `None` if never used.
    tick: Option<u64>,
    counts: Counts,
}

/// The sliding outcome window: a ring of [`BUCKETS`] buckets indexed by tick.
#[derive(Debug, Default)]
struct Window {
    buckets: [Bucket; BUCKETS],
}

impl Window {
    fn add(&mut self, tick: u64, failed: bool, slow: bool) {
        let bucket = &mut self.buckets[(tick % BUCKETS as u64) as usize];
        if bucket.tick != Some(tick) {
            *bucket = Bucket {
                tick: Some(tick),
                counts: Counts::default(),
            };
        }
        bucket.counts.total += 1;
        bucket.counts.failed += u64::from(failed);
        bucket.counts.slow += u64::from(slow);
    }

    /// Counts over the [`BUCKETS`] ticks ending at `now_tick`.
    fn totals(&self, now_tick: u64) -> Counts {
        let recent = |bucket: &&Bucket| {
            bucket
                .tick
                .and_then(|tick| now_tick.checked_sub(tick))
                .is_some_and(|age| age < BUCKETS as u64)
        };
        self.buckets
            .iter()
            .filter(recent)
            .fold(Counts::default(), |sum, bucket| Counts {
                total: sum.total + bucket.counts.total,
                failed: sum.failed + bucket.counts.failed,
                slow: sum.slow + bucket.counts.slow,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_millis(5);
    const SLOW: Duration = Duration::from_secs(2);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Default settings: 10 s window, 20 requests minimum, 50% errors, 5 s open, 5 trials.
    fn breaker() -> (Breaker, Instant) {
        let breaker = Breaker::new(CircuitBreaker::default());
        let t0 = breaker.origin;
        (breaker, t0)
    }

    /// Admits and records `n` requests with the same outcome; returns the last state change.
    fn outcomes(breaker: &Breaker, now: Instant, n: u32, failed: bool) -> Option<BreakerState> {
        let mut change = None;
        for _ in 0..n {
            let admission = breaker.admit(now);
            assert_eq!(admission, Admission::Allowed { trial: false });
            change = breaker.record(now, false, failed, FAST).or(change);
        }
        change
    }

    /// Opens a default breaker at `now` with 20 failures.
    fn opened(breaker: &Breaker, now: Instant) {
        assert_eq!(outcomes(breaker, now, 20, true), Some(BreakerState::Open));
    }

    #[test]
    fn stays_closed_below_min_requests_even_at_100_percent_errors() {
        let (breaker, t0) = breaker();
        assert_eq!(outcomes(&breaker, t0, 19, true), None);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.opened_total(), 0);
    }

    #[test]
    fn opens_when_the_error_ratio_is_reached() {
        let (breaker, t0) = breaker();
        assert_eq!(outcomes(&breaker, t0, 11, false), None);
        assert_eq!(outcomes(&breaker, t0, 9, true), None, "9/20 failed");
        assert_eq!(outcomes(&breaker, t0, 1, true), None, "10/21 failed");
        assert_eq!(
            outcomes(&breaker, t0, 1, true),
            Some(BreakerState::Open),
            "11/22"
        );
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.opened_total(), 1);
    }

    #[test]
    fn rejects_while_open_with_the_time_left_in_whole_seconds() {
        let (breaker, t0) = breaker();
        opened(&breaker, t0);
        let rejected = |after| Admission::Rejected {
            retry_after: secs(after),
        };
        assert_eq!(breaker.admit(t0), rejected(5));
        assert_eq!(breaker.admit(t0 + ms(500)), rejected(5));
        assert_eq!(breaker.admit(t0 + ms(1000)), rejected(4));
        assert_eq!(breaker.admit(t0 + ms(4_999)), rejected(1));
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn ignores_outcomes_of_requests_admitted_before_opening() {
        let (breaker, t0) = breaker();
        assert_eq!(breaker.admit(t0), Admission::Allowed { trial: false });
        opened(&breaker, t0);
        assert_eq!(breaker.record(t0, false, false, FAST), None);
        assert_eq!(
            breaker.admit(t0 + secs(5)),
            Admission::Allowed { trial: true }
        );
        assert_eq!(breaker.record(t0 + secs(5), false, true, FAST), None);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn half_open_admits_exactly_n_trials_at_a_time() {
        let (breaker, t0) = breaker();
        opened(&breaker, t0);
        let later = t0 + secs(5);
        for _ in 0..5 {
            assert_eq!(breaker.admit(later), Admission::Allowed { trial: true });
        }
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert_eq!(
            breaker.admit(later),
            Admission::Rejected {
                retry_after: secs(1)
            }
        );
        // A finished trial does not free a slot: the round is N trials in all.
        assert_eq!(breaker.record(later, true, false, FAST), None);
        assert!(matches!(breaker.admit(later), Admission::Rejected { .. }));
    }

    #[test]
    fn a_round_of_trials_that_never_reports_is_restarted() {
        let (breaker, t0) = breaker();
        opened(&breaker, t0);
        let later = t0 + secs(5);
        for _ in 0..5 {
            assert_eq!(breaker.admit(later), Admission::Allowed { trial: true });
        }
        assert!(matches!(
            breaker.admit(later + ms(4_999)),
            Admission::Rejected { .. }
        ));
        assert_eq!(
            breaker.admit(later + secs(5)),
            Admission::Allowed { trial: true }
        );
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn all_trials_succeeding_closes_with_a_fresh_window() {
        let (breaker, t0) = breaker();
        opened(&breaker, t0);
        let later = t0 + secs(5);
        for _ in 0..5 {
            assert_eq!(breaker.admit(later), Admission::Allowed { trial: true });
        }
        for _ in 0..4 {
            assert_eq!(breaker.record(later, true, false, FAST), None);
        }
        let change = breaker.record(later, true, false, FAST);
        assert_eq!(change, Some(BreakerState::Closed));
        assert_eq!(breaker.state(), BreakerState::Closed);
        // The failures that opened it are gone: 19 more do not reach min_requests.
        assert_eq!(outcomes(&breaker, later, 19, true), None);
    }

    #[test]
    fn one_failed_trial_opens_again() {
        let (breaker, t0) = breaker();
        opened(&breaker, t0);
        let later = t0 + secs(5);
        for _ in 0..5 {
            breaker.admit(later);
        }
        assert_eq!(breaker.record(later, true, false, FAST), None);
        let change = breaker.record(later + ms(300), true, true, FAST);
        assert_eq!(change, Some(BreakerState::Open));
        assert_eq!(breaker.opened_total(), 2);
        assert_eq!(
            breaker.admit(later + ms(300)),
            Admission::Rejected {
                retry_after: secs(5)
            }
        );
        // The other trials' outcomes no longer matter.
        assert_eq!(breaker.record(later + ms(400), true, false, FAST), None);
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn slow_call_ratio_trips() {
        let settings = CircuitBreaker {
            error_ratio: None,
            slow_ratio: Some(0.5),
            ..CircuitBreaker::default()
        };
        let breaker = Breaker::new(settings);
        let t0 = breaker.origin;
        for _ in 0..10 {
            assert_eq!(breaker.record(t0, false, false, FAST), None);
        }
        for _ in 0..9 {
            assert_eq!(breaker.record(t0, false, false, SLOW), None);
        }
        // Exactly `slow_call` is not slow.
        assert_eq!(breaker.record(t0, false, false, secs(1)), None);
        assert_eq!(breaker.record(t0, false, false, SLOW), None, "10/21 slow");
        let change = breaker.record(t0, false, false, SLOW);
        assert_eq!(change, Some(BreakerState::Open), "11/22 slow");
    }

    #[test]
    fn a_slow_trial_opens_again_only_with_a_slow_ratio() {
        for (slow_ratio, expected) in [(None, None), (Some(0.9), Some(BreakerState::Open))] {
            let settings = CircuitBreaker {
                slow_ratio,
                ..CircuitBreaker::default()
            };
            let breaker = Breaker::new(settings);
            let t0 = breaker.origin;
            opened(&breaker, t0);
            let later = t0 + secs(5);
            assert_eq!(breaker.admit(later), Admission::Allowed { trial: true });
            assert_eq!(breaker.record(later, true, false, SLOW), expected);
        }
    }

    #[test]
    fn error_ratio_defaults_to_half_when_neither_ratio_is_set() {
        let settings = CircuitBreaker {
            error_ratio: None,
            slow_ratio: None,
            ..CircuitBreaker::default()
        };
        let breaker = Breaker::new(settings);
        let t0 = breaker.origin;
        assert_eq!(outcomes(&breaker, t0, 10, false), None);
        assert_eq!(outcomes(&breaker, t0, 10, true), Some(BreakerState::Open));
    }

    #[test]
    fn outcomes_stay_in_the_window_for_its_length() {
        let (breaker, t0) = breaker();
        assert_eq!(outcomes(&breaker, t0, 19, true), None);
        let change = outcomes(&breaker, t0 + ms(9_900), 1, true);
        assert_eq!(change, Some(BreakerState::Open));
    }

    #[test]
    fn old_outcomes_leave_the_window() {
        let (breaker, t0) = breaker();
        assert_eq!(outcomes(&breaker, t0, 19, true), None);
        // 10 s later they have left it: this is a new count towards min_requests.
        let later = t0 + secs(10);
        assert_eq!(outcomes(&breaker, later, 19, true), None);
        assert_eq!(outcomes(&breaker, later, 1, true), Some(BreakerState::Open));
    }

    #[test]
    fn a_trial_outcome_after_closing_counts_as_a_normal_one() {
        let settings = CircuitBreaker {
            min_requests: 1,
            half_open_requests: 1,
            ..CircuitBreaker::default()
        };
        let breaker = Breaker::new(settings);
        let t0 = breaker.origin;
        assert_eq!(
            breaker.record(t0, false, true, FAST),
            Some(BreakerState::Open)
        );
        let later = t0 + secs(5);
        assert_eq!(breaker.admit(later), Admission::Allowed { trial: true });
        let change = breaker.record(later, true, false, FAST);
        assert_eq!(change, Some(BreakerState::Closed));
        let change = breaker.record(later, true, true, FAST);
        assert_eq!(change, Some(BreakerState::Open));
    }

    #[test]
    fn zero_trials_count_as_one() {
        let settings = CircuitBreaker {
            half_open_requests: 0,
            ..CircuitBreaker::default()
        };
        let breaker = Breaker::new(settings);
        let t0 = breaker.origin;
        opened(&breaker, t0);
        let later = t0 + secs(5);
        assert_eq!(breaker.admit(later), Admission::Allowed { trial: true });
        let change = breaker.record(later, true, false, FAST);
        assert_eq!(change, Some(BreakerState::Closed));
    }

    #[test]
    fn states_display_as_in_the_config_and_events() {
        assert_eq!(BreakerState::Closed.to_string(), "closed");
        assert_eq!(BreakerState::Open.to_string(), "open");
        assert_eq!(BreakerState::HalfOpen.to_string(), "half-open");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_of_at_least_one() {
        assert_eq!(retry_after(Duration::ZERO), secs(1));
        assert_eq!(retry_after(ms(1)), secs(1));
        assert_eq!(retry_after(secs(2)), secs(2));
        assert_eq!(retry_after(ms(2_001)), secs(3));
    }
}
