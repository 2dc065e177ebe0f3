//! Recent response latency of a service, and the adaptive per-try timeout derived from it.
//!
//! This module owns the histogram and the `Auto` timeout rule; applying the timeout to a
//! try, and deciding what to do when it fires, belong to the forwarding code.
//!
//! # Algorithm
//!
//! Latencies go into a log-bucketed histogram of atomic counters: bucket upper bounds grow
//! by 2^(1/4) (four buckets per octave, so a bucket is at most ~19% wide) from
//! [`FIRST_BOUND`] (50 µs; everything faster shares bucket 0) to ~62 s (everything slower
//! shares the last bucket). A quantile is the upper bound of the bucket holding it, so it
//! errs on the slow side, which is the safe side for a timeout.
//!
//! There are two such histograms: windows of [`WINDOW`] (10 s) numbered from `origin`
//! (fixed at construction), window `n` living in slot `n % 2`. Quantiles are computed over
//! the current and the previous window, that is over the last 10–20 s. Rotation is lazy:
//! the first recorder that finds its slot holding an older window claims it with a CAS on
//! the slot's window number and zeroes its counters. A sample that lands in the slot between
//! that CAS and the zeroing is lost; this is a few instructions once every 10 s and costs a
//! sample or two, which a quantile does not notice.
//!
//! Recording is one relaxed load (the slot's window number), a binary search over a
//! constant table and one relaxed `fetch_add`: no lock, no allocation, no floating point.
//!
//! # Per route
//!
//! Each route has its own tracker ([`RouteLatency`]), besides its service's: a service that
//! serves `/search` in 1 ms and `/report` in 500 ms has two latencies, and one timeout
//! derived from both would hedge every report (a p99 of 1 ms) or let a hung replica hold
//! searches for seconds (a p99 of 500 ms). The service's tracker feeds what `shoal status`
//! and the API show; the route's drives its tries.
//!
//! # The `Auto` per-try timeout
//!
//! `clamp(max(4 × p99, 2 × p99.9), 100 ms, max(2 s, 2 × p99))` once the route has 50
//! answers in its window:
//!
//! * 4 × p99: a try that slow is an outlier, not the route's tail;
//! * 2 × p99.9: a route whose slow requests are rarer than 1 in 100 (a p99 that does not
//!   see them) still does not hedge them; what is slower than twice its p99.9 is at most
//!   ~1 in 1000 requests;
//! * 100 ms at least, so that scheduling noise is not hedged;
//! * 2 s at most, so that a hung replica costs a client at most 2 s — unless the route is
//!   slow by design (a p99 above 1 s), then twice its p99.
//!
//! ## Before 50 answers: the cold rule
//!
//! Fewer than 50 answers give no p99 worth the name, but they do bound the route from
//! below: nothing it served was slower than the slowest of them. So a route that has some
//! answers waits `clamp(8 × slowest, 100 ms, 1 s)`, and one with none waits 1 s (nothing
//! is known: a route slow by design must not be hedged, nor its replicas taken for stalled,
//! before its first answer). Eight times the slowest, not four times the p99: a handful of
//! answers has not seen the route's tail yet.
//!
//! This is what a black hole (a server that accepts connections and never answers, which
//! the default TCP check passes) costs in the first seconds: with the good servers'
//! first answers at ~1 ms, a try stuck on it is hedged after 100 ms instead of 1 s, and the
//! passive rule (`crate::health`) ejects it after a few such tries. Measured in
//! `crates/app/tests/cold_start.rs` (docs/failover.md has the figures). Health-check round
//! trips are not used as seeds: a TCP check measures the handshake, which the kernel
//! completes for a black hole too, and says nothing of how long the application takes; an
//! HTTP check's first round trip comes a whole `interval` after start; and a health
//! endpoint is no measure of the routes' own latency.
//!
//! Scanning the histogram costs ~160 loads, so the value is cached in atomics and
//! recomputed at most every [`AUTO_REFRESH`].
//!
//! # What a route is waiting for
//!
//! [`RouteLatency`] also keeps when its latest request was sent and what it expected (its
//! per-try timeout): passive health asks each route of a service whether it may still
//! legitimately be waiting ([`RouteLatency::awaited`]) before it calls a silent replica
//! stalled (`crate::health`). That is two relaxed loads per request, and a store when the
//! millisecond or the expectation changed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Upper bound of bucket 0, in nanoseconds (50 µs).
const FIRST_BOUND: u64 = 50_000;

/// Number of buckets: the last upper bound is 50 µs × 2^(81/4) ≈ 62 s.
const BUCKETS: usize = 82;

/// Length of one window.
const WINDOW: Duration = Duration::from_secs(10);

/// The window number of a slot that has never been used.
const NEVER: u64 = u64::MAX;

/// `Auto` timeout of a route with no answer yet, and the most the cold rule waits.
const AUTO_DEFAULT: Duration = Duration::from_secs(1);
/// With fewer than [`AUTO_MIN_SAMPLES`] answers, the `Auto` timeout is this many times
/// the slowest of them (between [`AUTO_FLOOR`] and [`AUTO_DEFAULT`]).
const COLD_FACTOR: u32 = 8;
/// Samples needed before the p99 drives the `Auto` timeout.
const AUTO_MIN_SAMPLES: u64 = 50;
/// The `Auto` timeout is this many times the p99...
const AUTO_P99_FACTOR: u32 = 4;
/// ...and at least this many times the p99.9...
const AUTO_P999_FACTOR: u32 = 2;
/// ...but at least this...
const AUTO_FLOOR: Duration = Duration::from_millis(100);
/// ...and at most this, or [`AUTO_SLOW_FACTOR`] × the p99 if that is longer.
pub(crate) const AUTO_CAP: Duration = Duration::from_secs(2);
/// A route slow by design (a p99 above half the cap) waits this many times its p99.
const AUTO_SLOW_FACTOR: u32 = 2;
/// How long a computed `Auto` timeout is reused.
const AUTO_REFRESH: Duration = Duration::from_millis(100);

/// Bucket upper bounds in nanoseconds: `FIRST_BOUND × 2^(i/4)`, rounded.
static BOUNDS: [u64; BUCKETS] = bounds();

/// Builds [`BOUNDS`] from the four steps of one octave, doubled once per octave.
const fn bounds() -> [u64; BUCKETS] {
    // FIRST_BOUND × 2^(j/4) for j = 0..4, rounded to the nanosecond.
    const OCTAVE: [u64; 4] = [FIRST_BOUND, 59_460, 70_711, 84_090];
    let mut bounds = [0; BUCKETS];
    let mut i = 0;
    while i < BUCKETS {
        bounds[i] = OCTAVE[i % 4] << (i / 4);
        i += 1;
    }
    bounds
}

/// The bucket a latency of `nanos` falls in.
fn bucket_of(nanos: u64) -> usize {
    BOUNDS
        .partition_point(|&bound| bound < nanos)
        .min(BUCKETS - 1)
}

/// One window's histogram.
#[derive(Debug)]
struct Window {
    /// The window number these counters belong to, or [`NEVER`].
    number: AtomicU64,
    counts: [AtomicU64; BUCKETS],
}

impl Window {
    fn new() -> Window {
        Window {
            number: AtomicU64::new(NEVER),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Claims this slot for window `number` if it holds an older one, zeroing its counters.
    fn rotate_to(&self, number: u64) {
        let held = self.number.load(Ordering::Acquire);
        // A newer number means a caller with a later clock reading got here first.
        if held == number || (held != NEVER && held > number) {
            return;
        }
        let claimed = self
            .number
            .compare_exchange(held, number, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if claimed {
            for count in &self.counts {
                count.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Whether this slot holds window `current` or the one before it.
    fn is_recent(&self, current: u64) -> bool {
        let held = self.number.load(Ordering::Acquire);
        current.checked_sub(held).is_some_and(|age| age < 2)
    }
}

/// Recent latencies of one service. See the module documentation.
#[derive(Debug)]
pub(crate) struct LatencyTracker {
    /// Start of window 0.
    origin: Instant,
    windows: [Window; 2],
    /// Cached `Auto` timeout, in nanoseconds.
    auto_nanos: AtomicU64,
    /// When `auto_nanos` was computed, in nanoseconds since `origin`, or [`NEVER`].
    auto_at: AtomicU64,
}

impl Default for LatencyTracker {
    fn default() -> Self {
        LatencyTracker::new()
    }
}

impl LatencyTracker {
    /// An empty tracker.
    pub(crate) fn new() -> LatencyTracker {
        LatencyTracker {
            origin: Instant::now(),
            windows: [Window::new(), Window::new()],
            auto_nanos: AtomicU64::new(0),
            auto_at: AtomicU64::new(NEVER),
        }
    }

    /// One response's time to headers.
    pub(crate) fn record(&self, now: Instant, latency: Duration) {
        let number = self.window_number(now);
        let window = &self.windows[(number % 2) as usize];
        window.rotate_to(number);
        let bucket = bucket_of(saturating_nanos(latency));
        window.counts[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The q-quantile (0..1) over roughly the last 10–20 s, or None with fewer than
    /// `min_samples` samples (or none at all).
    ///
    /// The answer is the upper bound of the bucket holding the quantile, so at most ~19%
    /// above the true value. `q` is clamped to 0..=1.
    pub(crate) fn quantile(&self, now: Instant, q: f64, min_samples: u64) -> Option<Duration> {
        let [value] = self.quantiles(now, [q], min_samples)?;
        Some(value)
    }

    /// Several quantiles from one scan of the histogram; see [`quantile`](Self::quantile).
    fn quantiles<const N: usize>(
        &self,
        now: Instant,
        qs: [f64; N],
        min_samples: u64,
    ) -> Option<[Duration; N]> {
        let counts = self.recent_counts(now);
        let total: u64 = counts.iter().sum();
        if total == 0 || total < min_samples {
            return None;
        }
        let quantile = |q: f64| {
            let rank = rank_of(q, total);
            let mut seen = 0;
            let bucket = counts
                .iter()
                .position(|&count| {
                    seen += count;
                    seen >= rank
                })
                .unwrap_or(BUCKETS - 1);
            Duration::from_nanos(BOUNDS[bucket])
        };
        Some(qs.map(quantile))
    }

    /// The per-try timeout for `Auto` (see the module documentation; the cold rule before
    /// 50 samples). Cached: recomputed at most every 100 ms (the value and the time are
    /// kept in atomics).
    pub(crate) fn auto_per_try_timeout(&self, now: Instant) -> Duration {
        let at = saturating_nanos(now.saturating_duration_since(self.origin));
        if let Some(cached) = self.cached_auto(at) {
            return cached;
        }
        let timeout = self.compute_auto(now);
        // Value first, then the time that validates it.
        self.auto_nanos
            .store(saturating_nanos(timeout), Ordering::Relaxed);
        self.auto_at.store(at, Ordering::Release);
        timeout
    }

    /// The cached `Auto` timeout if it was computed less than [`AUTO_REFRESH`] before `at`.
    fn cached_auto(&self, at: u64) -> Option<Duration> {
        let computed_at = self.auto_at.load(Ordering::Acquire);
        let age = at.checked_sub(computed_at)?;
        if age >= saturating_nanos(AUTO_REFRESH) {
            return None;
        }
        Some(Duration::from_nanos(
            self.auto_nanos.load(Ordering::Relaxed),
        ))
    }

    fn compute_auto(&self, now: Instant) -> Duration {
        match self.quantiles(now, [0.99, 0.999], AUTO_MIN_SAMPLES) {
            Some([p99, p999]) => {
                let cap = AUTO_CAP.max(p99.saturating_mul(AUTO_SLOW_FACTOR));
                p99.saturating_mul(AUTO_P99_FACTOR)
                    .max(p999.saturating_mul(AUTO_P999_FACTOR))
                    .clamp(AUTO_FLOOR, cap)
            }
            // The cold rule: the slowest answer so far, if any.
            None => match self.quantile(now, 1.0, 1) {
                Some(slowest) => slowest
                    .saturating_mul(COLD_FACTOR)
                    .clamp(AUTO_FLOOR, AUTO_DEFAULT),
                None => AUTO_DEFAULT,
            },
        }
    }

    /// Milliseconds from `origin` to `at`, plus one (so that 0 can mean "never").
    fn ms_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX - 1)
            + 1
    }

    /// Number of the window `now` falls in; a reading from before `origin` is in window 0.
    fn window_number(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin);
        elapsed.as_secs() / WINDOW.as_secs()
    }

    /// Per-bucket counts summed over the current and the previous window.
    fn recent_counts(&self, now: Instant) -> [u64; BUCKETS] {
        let current = self.window_number(now);
        let mut counts = [0; BUCKETS];
        for window in self.windows.iter().filter(|w| w.is_recent(current)) {
            for (sum, count) in counts.iter_mut().zip(&window.counts) {
                *sum += count.load(Ordering::Relaxed);
            }
        }
        counts
    }
}

/// The latency of one route (see the module documentation), and what its latest request
/// expected.
#[derive(Debug, Default)]
pub(crate) struct RouteLatency {
    /// The route's own time to response headers: its `Auto` per-try timeout.
    pub(crate) tracker: LatencyTracker,
    /// When the route last sent a request ([`LatencyTracker::ms_at`]; 0: never).
    sent_ms: AtomicU64,
    /// How long that request could take without anything being wrong (its per-try
    /// timeout, or the `Auto` value when it has none), in milliseconds.
    expected_ms: AtomicU64,
}

impl RouteLatency {
    /// A request of the route was sent at `at`, expected to be answered within `expected`.
    /// Loads first: the stores happen at most once per millisecond (and when the
    /// expectation changes), so the cache line stays shared between cores.
    pub(crate) fn sent(&self, at: Instant, expected: Duration) {
        let at_ms = self.tracker.ms_at(at);
        // Rounded down: a try that waited exactly its expectation has waited long enough.
        let expected_ms = u64::try_from(expected.as_millis()).unwrap_or(u64::MAX);
        if self.expected_ms.load(Ordering::Relaxed) != expected_ms {
            self.expected_ms.store(expected_ms, Ordering::Relaxed);
        }
        // Racing senders may leave an earlier millisecond: a request of that millisecond
        // was sent too, and the difference is below the rule's resolution.
        if self.sent_ms.load(Ordering::Relaxed) < at_ms {
            self.sent_ms.store(at_ms, Ordering::Relaxed);
        }
    }

    /// What the route's latest request expected, if it was sent less than that long before
    /// `now`: then the route may legitimately still be waiting for a replica, for up to
    /// that long. `None`: nothing of the route is expected to be outstanding.
    pub(crate) fn awaited(&self, now: Instant) -> Option<Duration> {
        let sent = self.sent_ms.load(Ordering::Relaxed);
        if sent == 0 {
            return None;
        }
        let expected = self.expected_ms.load(Ordering::Relaxed);
        let age = self.tracker.ms_at(now).saturating_sub(sent);
        (age < expected).then(|| Duration::from_millis(expected))
    }
}

/// The 1-based rank of the q-quantile among `total` samples.
fn rank_of(q: f64, total: u64) -> u64 {
    let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
    // `as` saturates; the clamp keeps it within the samples.
    ((q * total as f64).ceil() as u64).clamp(1, total)
}

fn saturating_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn record_n(tracker: &LatencyTracker, now: Instant, latency: Duration, n: usize) {
        for _ in 0..n {
            tracker.record(now, latency);
        }
    }

    #[test]
    fn bounds_grow_by_a_quarter_octave_from_50us_to_about_60s() {
        assert_eq!(BOUNDS[0], 50_000);
        assert_eq!(BOUNDS[4], 100_000);
        for pair in BOUNDS.windows(2) {
            let step = pair[1] as f64 / pair[0] as f64;
            assert!((step - 2f64.powf(0.25)).abs() < 1e-4, "{pair:?}");
        }
        let last = Duration::from_nanos(BOUNDS[BUCKETS - 1]);
        assert!(last >= Duration::from_mins(1) && last < Duration::from_secs(65));
    }

    #[test]
    fn bucket_of_finds_the_first_bound_at_or_above() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(50_000), 0);
        assert_eq!(bucket_of(50_001), 1);
        assert_eq!(bucket_of(100_000), 4);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn constant_latency_gives_its_own_bucket() {
        let tracker = LatencyTracker::new();
        let now = tracker.origin;
        record_n(&tracker, now, ms(2), 1000);
        let p99 = tracker.quantile(now, 0.99, 1).unwrap();
        assert!(
            p99 >= ms(2) && p99 <= Duration::from_micros(2500),
            "{p99:?}"
        );
        assert_eq!(tracker.quantile(now, 0.0, 1), Some(p99));
        assert_eq!(tracker.quantile(now, 1.0, 1), Some(p99));
    }

    #[test]
    fn a_slow_tail_shows_in_the_high_quantiles_only() {
        let tracker = LatencyTracker::new();
        let now = tracker.origin;
        record_n(&tracker, now, ms(1), 990);
        record_n(&tracker, now, ms(100), 10);
        let p50 = tracker.quantile(now, 0.5, 1).unwrap();
        assert!(
            p50 >= ms(1) && p50 <= Duration::from_micros(1190),
            "{p50:?}"
        );
        let p999 = tracker.quantile(now, 0.999, 1).unwrap();
        assert!(p999 >= ms(100) && p999 <= ms(119), "{p999:?}");
    }

    #[test]
    fn too_few_samples_give_none() {
        let tracker = LatencyTracker::new();
        let now = tracker.origin;
        assert_eq!(tracker.quantile(now, 0.5, 0), None, "no samples at all");
        record_n(&tracker, now, ms(5), 9);
        assert_eq!(tracker.quantile(now, 0.5, 10), None);
        tracker.record(now, ms(5));
        assert!(tracker.quantile(now, 0.5, 10).is_some());
    }

    #[test]
    fn samples_age_out_after_two_windows() {
        let tracker = LatencyTracker::new();
        let t0 = tracker.origin;
        record_n(&tracker, t0, ms(50), 100);
        // Still the previous window at 19.9 s.
        assert!(tracker.quantile(t0 + ms(19_900), 0.5, 1).is_some());
        assert_eq!(tracker.quantile(t0 + ms(20_000), 0.5, 1), None);
        // A recorder reusing the slot drops the old samples.
        tracker.record(t0 + ms(20_000), ms(1));
        let p100 = tracker.quantile(t0 + ms(20_000), 1.0, 1).unwrap();
        assert!(p100 < ms(2), "{p100:?}");
    }

    #[test]
    fn quantiles_span_the_current_and_previous_window() {
        let tracker = LatencyTracker::new();
        let t0 = tracker.origin;
        record_n(&tracker, t0 + ms(9_000), ms(1), 50);
        record_n(&tracker, t0 + ms(11_000), ms(100), 50);
        let now = t0 + ms(12_000);
        assert!(tracker.quantile(now, 0.25, 100).unwrap() < ms(2));
        assert!(tracker.quantile(now, 0.75, 100).unwrap() >= ms(100));
    }

    #[test]
    fn auto_timeout_is_one_second_before_the_first_answer() {
        let tracker = LatencyTracker::new();
        assert_eq!(
            tracker.auto_per_try_timeout(tracker.origin),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn cold_auto_timeout_is_eight_times_the_slowest_answer_so_far() {
        let tracker = LatencyTracker::new();
        let t0 = tracker.origin;
        // One fast answer: the floor, not a second.
        tracker.record(t0, ms(1));
        assert_eq!(tracker.auto_per_try_timeout(t0), ms(100));
        // A slower one among 49 raises it: 8 × 40 ms, plus at most a bucket.
        record_n(&tracker, t0, ms(1), 47);
        tracker.record(t0, ms(40));
        let timeout = tracker.auto_per_try_timeout(t0 + ms(100));
        assert!(timeout >= ms(320) && timeout <= ms(381), "{timeout:?}");
    }

    #[test]
    fn cold_auto_timeout_of_a_slow_route_is_at_most_a_second() {
        let tracker = LatencyTracker::new();
        let t0 = tracker.origin;
        tracker.record(t0, ms(500));
        assert_eq!(tracker.auto_per_try_timeout(t0), Duration::from_secs(1));
    }

    #[test]
    fn auto_timeout_has_a_floor_for_fast_services() {
        let tracker = LatencyTracker::new();
        let t0 = tracker.origin;
        record_n(&tracker, t0, ms(1), 1000);
        assert_eq!(tracker.auto_per_try_timeout(t0), ms(100));
    }

    #[test]
    fn auto_timeout_is_four_times_the_p99() {
        let tracker = LatencyTracker::new();
        let t0 = tracker.origin;
        record_n(&tracker, t0, ms(200), 1000);
        let timeout = tracker.auto_per_try_timeout(t0);
        // 4 × 200 ms, plus at most one bucket width (~19%).
        assert!(timeout >= ms(800) && timeout <= ms(952), "{timeout:?}");
    }

    #[test]
    fn auto_timeout_is_capped() {
        let tracker = LatencyTracker::new();
        let t0 = tracker.origin;
        // 4 × 600 ms would be 2.4 s.
        record_n(&tracker, t0, ms(600), 100);
        assert_eq!(tracker.auto_per_try_timeout(t0), Duration::from_secs(2));
    }

    #[test]
    fn auto_timeout_of_a_route_slow_by_design_is_twice_its_p99() {
        let tracker = LatencyTracker::new();
        let t0 = tracker.origin;
        record_n(&tracker, t0, Duration::from_secs(3), 100);
        let timeout = tracker.auto_per_try_timeout(t0);
        // 2 × 3 s, plus at most one bucket width: never below what the route takes.
        assert!(
            timeout >= Duration::from_secs(6) && timeout <= ms(7_140),
            "{timeout:?}"
        );
    }

    #[test]
    fn auto_timeout_does_not_hedge_a_slow_path_rarer_than_one_in_a_hundred() {
        let tracker = LatencyTracker::new();
        let t0 = tracker.origin;
        // 0.5% of the requests take 500 ms by design: the p99 does not see them.
        record_n(&tracker, t0, ms(1), 995);
        record_n(&tracker, t0, ms(500), 5);
        assert!(tracker.quantile(t0, 0.99, 1).unwrap() < ms(2));
        let timeout = tracker.auto_per_try_timeout(t0);
        // 2 × the p99.9 (500 ms, plus at most a bucket).
        assert!(timeout >= ms(1_000) && timeout <= ms(1_190), "{timeout:?}");
    }

    #[test]
    fn auto_timeout_still_hedges_a_one_in_ten_thousand_outlier() {
        let tracker = LatencyTracker::new();
        let t0 = tracker.origin;
        record_n(&tracker, t0, ms(1), 9_999);
        tracker.record(t0, ms(500));
        assert_eq!(tracker.auto_per_try_timeout(t0), ms(100));
    }

    #[test]
    fn a_route_awaits_its_latest_request_for_as_long_as_it_expected() {
        let route = RouteLatency::default();
        let t0 = route.tracker.origin;
        assert_eq!(route.awaited(t0), None, "nothing sent yet");
        route.sent(t0 + ms(10), ms(500));
        assert_eq!(route.awaited(t0 + ms(10)), Some(ms(500)));
        assert_eq!(route.awaited(t0 + ms(509)), Some(ms(500)));
        assert_eq!(route.awaited(t0 + ms(510)), None, "past what it expected");
        // A later request moves the wait on; its expectation replaces the older one.
        route.sent(t0 + ms(400), ms(100));
        assert_eq!(route.awaited(t0 + ms(450)), Some(ms(100)));
        assert_eq!(route.awaited(t0 + ms(500)), None);
        // An earlier reading (a racing sender) does not move it back.
        route.sent(t0 + ms(300), ms(100));
        assert_eq!(route.awaited(t0 + ms(450)), Some(ms(100)));
        assert_eq!(route.awaited(t0 + ms(500)), None);
    }

    #[test]
    fn a_route_expectation_is_counted_in_whole_milliseconds() {
        let route = RouteLatency::default();
        let t0 = route.tracker.origin;
        route.sent(t0, Duration::from_micros(141_420));
        assert_eq!(route.awaited(t0), Some(ms(141)));
    }

    #[test]
    fn auto_timeout_is_recomputed_at_most_every_100ms() {
        let tracker = LatencyTracker::new();
        let t0 = tracker.origin;
        assert_eq!(tracker.auto_per_try_timeout(t0), Duration::from_secs(1));
        record_n(&tracker, t0, ms(200), 1000);
        assert_eq!(
            tracker.auto_per_try_timeout(t0 + ms(99)),
            Duration::from_secs(1)
        );
        let timeout = tracker.auto_per_try_timeout(t0 + ms(100));
        assert!(timeout >= ms(800) && timeout <= ms(952), "{timeout:?}");
    }

    // Seeded, so that a failure names its seed.
    use fastrand::Rng;

    fn random_tracker(rng: &mut Rng, max_micros: u64) -> (LatencyTracker, Vec<u64>) {
        let tracker = LatencyTracker::new();
        let len = rng.u64(1..300);
        let micros: Vec<u64> = (0..len).map(|_| rng.u64(50..max_micros)).collect();
        for &us in &micros {
            tracker.record(tracker.origin, Duration::from_micros(us));
        }
        (tracker, micros)
    }

    /// The reported quantile is the bucket bound at or just above the exact one.
    #[test]
    fn quantile_is_the_exact_one_rounded_up_to_its_bucket() {
        for seed in 0..300 {
            let mut rng = Rng::with_seed(seed);
            let (tracker, mut micros) = random_tracker(&mut rng, 60_000_000);
            let q = rng.f64();
            micros.sort_unstable();
            let rank = rank_of(q, micros.len() as u64);
            let exact = Duration::from_micros(micros[rank as usize - 1]);
            let reported = tracker.quantile(tracker.origin, q, 1).unwrap();
            assert!(reported >= exact, "seed {seed}: {reported:?} < {exact:?}");
            let most = exact.as_secs_f64() * 1.19;
            assert!(
                reported.as_secs_f64() <= most,
                "seed {seed}: {reported:?} vs {exact:?}"
            );
        }
    }

    /// Higher quantiles are never faster.
    #[test]
    fn quantiles_are_monotonic() {
        for seed in 0..300 {
            let mut rng = Rng::with_seed(seed);
            let (tracker, _) = random_tracker(&mut rng, 100_000_000);
            let (a, b) = (rng.f64(), rng.f64());
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let now = tracker.origin;
            let (lo_value, hi_value) = (tracker.quantile(now, lo, 1), tracker.quantile(now, hi, 1));
            assert!(
                lo_value <= hi_value,
                "seed {seed}: q{lo} {lo_value:?} > q{hi} {hi_value:?}"
            );
        }
    }
}
