//! The backlog target: scaling workers on the queue they consume (KEDA's scalers, and a
//! time-to-drain target KEDA lacks).
//!
//! # Theory
//!
//! The wiring reads the broker every poll interval and passes the newest read in each
//! [`Sample::backlog`](crate::Sample::backlog): messages waiting, and where the broker has
//! one a monotonic counter of messages consumed (Kafka's committed offsets, Redis'
//! `entries-read`) and the partition count (Kafka). Each read is taken once, told apart by
//! its time, whatever the tick.
//!
//! * **Per replica** (KEDA's `AverageValue` metric through HPA): the backlog proposes
//!   `ceil(backlog / per_replica)` replicas, held at the current count while
//!   `backlog / (per_replica × current)` is within the tolerance band, like every target.
//!   The proposal does not depend on how many replicas are ready: the backlog is the whole
//!   queue's, not an average over replicas.
//! * **Time to drain** (`drain_within: D`): each replica's consumption rate `r` is
//!   measured (below), and the backlog proposes `ceil(backlog / (r × D))`: enough
//!   replicas to consume it within `D` at that rate. The larger of the two proposals wins
//!   (both keep per-replica load under a bound); until a rate is known, `per_replica`
//!   alone decides. Arrivals during the drain are not predicted: each tick looks again.
//! * **Partition cap** (Kafka, KEDA's `allowIdleConsumers: false`): the proposal is at
//!   most the partition count, since a consumer group gives each partition to one
//!   consumer. The cap comes after the tolerance test, which compares the uncapped need
//!   with the current count: at 63 replicas on 64 partitions with a large lag the count
//!   reaches 64 (KEDA stays at 63, because 64/63 is within its tolerance, kedacore#2908).
//! * **Smoothing**: the proposals use an exponentially weighted average of the reads with
//!   time constant [`Backlog::smoothing`] (5 s by default), `s += (1 − e^(−Δt/τ)) × (read −
//!   s)`, so that a lag that jitters with commit timing and batch sizes does not move the
//!   count (±20% around a steady value becomes about ±2% at 1 s polls). Panic mode sees
//!   the raw reading: a burst of at least the panic threshold (2× the ready replicas)
//!   still jumps at once, as in Knative's stable and panic windows. Panic compares the
//!   replicas the raw backlog keeps *fully* busy (`floor`, not `ceil`: 101 messages at 100
//!   per replica are not a burst for one replica).
//! * **Activation and scale to zero** (KEDA): with `min: 0`, the backlog keeps the service
//!   awake while the last read is above [`Backlog::activation`] (strictly, like KEDA), and
//!   a service at zero wakes as soon as a read is: to the raw backlog's proposal, within
//!   the up rate policies (not to 1 and then a 15 s HPA sync later, as KEDA does). A
//!   service whose backlog is at or below the activation threshold (and that receives no
//!   request) for `scale_to_zero_after` goes to zero — even with a few messages waiting,
//!   as with KEDA: the threshold is the user's statement that so few can wait.
//! * **Failed reads are never an empty queue** (kubernetes#104387 again): while reads
//!   fail, the target has no data (so nothing scales down) and the service is never idle
//!   (so it never goes to zero). After [`Fallback::after`] failures in a row the target
//!   proposes [`Fallback::replicas`] instead (KEDA's `fallback`, `behavior: static`),
//!   which also wakes a service at zero; the first successful read ends it.
//!
//! # Measuring the consumption rate
//!
//! Per replica, over the successful reads of the last [`RATE_WINDOW`] (at least the last
//! two): `Σ consumed / Σ (replicas × Δt)` over the intervals between consecutive reads,
//! where the replicas are the fewer of the ready replicas when the interval's two reads
//! were first seen (a replica started at a tick joins the consumers some time later, one
//! stopped at a tick leaves at once). Only intervals with a backlog at both ends count: a queue that
//! ran dry measures the arrival rate, not what the replicas can do. `consumed` is the
//! counter's delta (an interval in which the counter went back, e.g. a re-created consumer
//! group, is skipped); without a counter it is the backlog's decrease, which undercounts
//! consumption by the messages that arrived meanwhile, so the drain target then errs
//! towards more replicas (and a backlog that does not fall gives no estimate at all). A
//! window in which nothing was consumed leaves the previous estimate in place, and so does
//! a quiet queue: the last measured rate is ready when the next burst comes. A window of
//! reads is already an average, so the rate needs no further smoothing.

use std::collections::VecDeque;
use std::time::Duration;

use crate::decision::{BacklogStatus, Limit, Reading, fmt_count, fmt_duration, fmt_number};
use crate::metrics::{Outcome, Tolerance, ceil_u32};
use crate::policy::{Backlog, Fallback};
use crate::sample::{BacklogSample, Sample};

/// Reads within this window of the newest one measure the consumption rate.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// A successful read, with the replicas that were consuming when it was seen.
#[derive(Debug, Clone, Copy)]
struct Read {
    at: Duration,
    sample: BacklogSample,
    ready: u32,
}

/// What the engine remembers of a service's queue between ticks.
#[derive(Debug, Clone, Default)]
pub(crate) struct BacklogState {
    /// The time of the newest read taken in, successful or not.
    last_at: Option<Duration>,
    /// Successful reads, oldest first, within [`RATE_WINDOW`] of the newest (at least two).
    reads: VecDeque<Read>,
    /// The exponentially weighted average of the backlog.
    smoothed: Option<f64>,
    /// Failed reads in a row.
    failures: u32,
    /// The newest failed read's message, while reads fail.
    error: Option<String>,
    /// Messages per second per replica, as last measured.
    rate: Option<f64>,
}

impl BacklogState {
    /// Takes in this tick's read, if it is a new one; `ready` replicas were consuming.
    pub(crate) fn observe(&mut self, sample: &Sample, ready: u32, target: &Backlog) {
        let Some(read) = &sample.backlog else { return };
        if self.last_at.is_some_and(|t| read.at <= t) {
            return; // seen already (or out of order)
        }
        self.last_at = Some(read.at);
        match &read.result {
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                self.error = Some(e.clone());
            }
            Ok(s) => {
                self.failures = 0;
                self.error = None;
                let raw = s.messages as f64;
                self.smoothed = Some(match (self.smoothed, self.reads.back()) {
                    (Some(avg), Some(prev)) if !target.smoothing.is_zero() => {
                        let dt = read.at.saturating_sub(prev.at).as_secs_f64();
                        let alpha = 1.0 - (-dt / target.smoothing.as_secs_f64()).exp();
                        avg + alpha * (raw - avg)
                    }
                    _ => raw,
                });
                self.reads.push_back(Read {
                    at: read.at,
                    sample: *s,
                    ready,
                });
                while self.reads.len() > 2
                    && self
                        .reads
                        .front()
                        .is_some_and(|r| r.at.saturating_add(RATE_WINDOW) <= read.at)
                {
                    self.reads.pop_front();
                }
                if let Some(rate) = self.measure() {
                    self.rate = Some(rate);
                }
            }
        }
    }

    /// Messages consumed per replica-second over the window, if it tells.
    fn measure(&self) -> Option<f64> {
        let (mut consumed, mut replica_secs) = (0.0, 0.0);
        for (a, b) in self.reads.iter().zip(self.reads.iter().skip(1)) {
            let dt = b.at.saturating_sub(a.at).as_secs_f64();
            let replicas = f64::from(a.ready.min(b.ready));
            if dt <= 0.0 || replicas <= 0.0 || a.sample.messages == 0 || b.sample.messages == 0 {
                continue;
            }
            let delta = match (a.sample.consumed, b.sample.consumed) {
                (Some(x), Some(y)) if y >= x => (y - x) as f64,
                (Some(_), Some(_)) => continue,
                _ => a.sample.messages as f64 - b.sample.messages as f64,
            };
            consumed += delta;
            replica_secs += replicas * dt;
        }
        (consumed > 0.0 && replica_secs > 0.0).then(|| consumed / replica_secs)
    }

    /// The newest successful read, unless reads fail now.
    fn current(&self) -> Option<&BacklogSample> {
        if self.failures > 0 {
            return None;
        }
        self.reads.back().map(|r| &r.sample)
    }

    /// Whether the newest read failed.
    pub(crate) fn failing(&self) -> bool {
        self.failures > 0
    }

    /// Whether the backlog is known to be above the activation threshold.
    pub(crate) fn active(&self, target: &Backlog) -> bool {
        self.current()
            .is_some_and(|s| s.messages > target.activation)
    }

    /// Whether the backlog keeps the service from being idle: it is above the activation
    /// threshold, or unknown (not read yet, or reads fail).
    pub(crate) fn busy(&self, target: &Backlog) -> bool {
        self.current()
            .is_none_or(|s| s.messages > target.activation)
    }

    /// The fallback count, while it is in force.
    pub(crate) fn fallback(&self, target: &Backlog) -> Option<Fallback> {
        target.fallback.filter(|f| self.failures >= f.after)
    }

    /// What status shows.
    pub(crate) fn status(&self, target: &Backlog) -> BacklogStatus {
        let last = self.reads.back().map(|r| r.sample);
        BacklogStatus {
            messages: last.map(|s| s.messages),
            smoothed: self.smoothed,
            consumed: last.and_then(|s| s.consumed),
            partitions: last.and_then(|s| s.partitions),
            rate_per_replica: self.rate,
            active: self.active(target),
            failures: self.failures,
            error: self.error.clone(),
            fallback: self.fallback(target).is_some(),
        }
    }

    /// "3 failed reads in a row (connection refused)".
    fn failures_text(&self) -> String {
        let reads = if self.failures == 1 {
            "1 failed read".to_owned()
        } else {
            format!("{} failed reads in a row", self.failures)
        };
        match &self.error {
            Some(e) => format!("{reads}: {e}"),
            None => reads,
        }
    }
}

/// The backlog target against this tick's state.
pub(crate) fn evaluate(
    target: &Backlog,
    state: &BacklogState,
    sample: &Sample,
    tolerance: Tolerance,
) -> Outcome {
    let mut reading = Reading {
        name: "backlog",
        value: None,
        target: target.per_replica as f64,
        recommendation: None,
        missing: 0,
    };
    let current = sample.current;
    if let Some(f) = state.fallback(target) {
        reading.recommendation = Some(f.replicas);
        return Outcome {
            describe: format!("backlog unknown ({}), fallback", state.failures_text()),
            reading,
            proposal: Some(f.replicas),
            hold: None,
            missing: 0,
            demand: None,
        };
    }
    let (Some(last), Some(smoothed)) = (state.current(), state.smoothed) else {
        // No data: forbids scaling down, proposes nothing.
        reading.missing = 1;
        let why = if state.failures > 0 {
            state.failures_text()
        } else {
            "not read yet".to_owned()
        };
        return Outcome {
            describe: format!("backlog unknown ({why})"),
            reading,
            proposal: None,
            hold: None,
            missing: 1,
            demand: None,
        };
    };
    let need = Need::of(target, state, smoothed, last.partitions);
    let raw = Need::of(target, state, last.messages as f64, last.partitions);

    let ratio = need.exact() / f64::from(current.max(1));
    let (mut proposal, mut hold) = if current > 0 && tolerance.is_within(ratio) {
        (current, Some(Limit::Tolerance))
    } else {
        (ceil_u32(need.exact()), None)
    };
    let capped = need.cap.is_some_and(|cap| proposal > cap);
    if let Some(cap) = need.cap.filter(|_| capped) {
        proposal = cap;
        hold = None;
    }
    reading.value = Some(smoothed / f64::from(current.max(1)));
    reading.recommendation = Some(proposal);

    // The sentence: the raw read, the smoothed value if it differs, and what made the
    // count when more than `per_replica` was involved.
    let mut describe = format!("backlog {}", fmt_count(last.messages));
    if (smoothed - last.messages as f64).abs() >= 0.5 {
        describe.push_str(&format!(
            " (smoothed {})",
            fmt_count(smoothed.round() as u64)
        ));
    }
    let per = fmt_count(target.per_replica);
    let mut extra = Vec::new();
    match (target.drain_within, need.drain) {
        (Some(d), Some(drain)) => extra.push(format!(
            "{} to drain within {} at {}/s per replica",
            ceil_u32(drain),
            fmt_duration(d),
            fmt_number(state.rate.unwrap_or_default())
        )),
        (Some(_), None) => extra.push("no drain rate measured yet".to_owned()),
        (None, _) => {}
    }
    if capped && let Some(cap) = need.cap {
        extra.push(format!("capped by {cap} partitions"));
    }
    if extra.is_empty() {
        describe.push_str(&format!(" over {per}/replica"));
    } else {
        describe.push_str(&format!(
            ": {} at {per}/replica, {}",
            ceil_u32(need.lag),
            extra.join(", ")
        ));
    }
    Outcome {
        describe,
        reading,
        proposal: Some(proposal),
        hold,
        missing: 0,
        demand: Some(raw.full()),
    }
}

/// The replicas a backlog calls for.
#[derive(Debug, Clone, Copy)]
struct Need {
    /// `backlog / per_replica`.
    lag: f64,
    /// `backlog / (rate × drain_within)`, when both are known.
    drain: Option<f64>,
    /// The partition count, when it caps.
    cap: Option<u32>,
}

impl Need {
    fn of(target: &Backlog, state: &BacklogState, backlog: f64, partitions: Option<u32>) -> Need {
        let drain = match (target.drain_within, state.rate) {
            (Some(d), Some(rate)) if rate > 0.0 => Some(backlog / (rate * d.as_secs_f64())),
            _ => None,
        };
        Need {
            lag: backlog / target.per_replica.max(1) as f64,
            drain,
            cap: partitions.filter(|p| target.cap_at_partitions && *p > 0),
        }
    }

    /// The larger proposal, uncapped.
    fn exact(&self) -> f64 {
        self.lag.max(self.drain.unwrap_or(0.0))
    }

    /// The count, capped.
    fn count(&self) -> u32 {
        let n = ceil_u32(self.exact());
        self.cap.map_or(n, |cap| n.min(cap))
    }

    /// The replicas the backlog keeps fully busy, capped: what panic mode compares with the
    /// ready replicas. Rounded down, unlike the proposal: 101 messages at 100 per replica
    /// are not twice what one replica takes, and a noisy lag around one replica's worth
    /// must not enter panic mode at every peak.
    fn full(&self) -> u32 {
        let n = self.exact().floor().clamp(0.0, f64::from(u32::MAX)) as u32;
        self.cap.map_or(n, |cap| n.min(cap))
    }
}

/// The count to wake a service at zero to for this backlog, uncapped by policies: the raw
/// backlog's proposal, if it is above the activation threshold.
pub(crate) fn wake_count(target: &Backlog, state: &BacklogState) -> Option<u32> {
    let last = state.current()?;
    if last.messages <= target.activation {
        return None;
    }
    Some(Need::of(target, state, last.messages as f64, last.partitions).count())
}

/// "backlog 4,210 > activation 0" for reasons.
pub(crate) fn activity_text(target: &Backlog, state: &BacklogState) -> String {
    match state.current() {
        Some(s) if s.messages > target.activation => format!(
            "backlog {} above activation {}",
            fmt_count(s.messages),
            fmt_count(target.activation)
        ),
        Some(s) => format!(
            "backlog {} at or below activation {}",
            fmt_count(s.messages),
            fmt_count(target.activation)
        ),
        None if state.failures > 0 => format!("backlog unknown ({})", state.failures_text()),
        None => "backlog not read yet".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::BacklogRead;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn at(state: &mut BacklogState, t: u64, read: BacklogSample, ready: u32, b: &Backlog) {
        let sample = Sample {
            now: s(t),
            backlog: Some(BacklogRead::ok(s(t), read)),
            ..Sample::default()
        };
        state.observe(&sample, ready, b);
    }

    #[test]
    fn the_same_read_counts_once() {
        let b = Backlog::new(10);
        let mut st = BacklogState::default();
        let failed = Sample {
            backlog: Some(BacklogRead::failed(s(1), "refused")),
            ..Sample::default()
        };
        for _ in 0..3 {
            st.observe(&failed, 1, &b);
        }
        assert_eq!(st.failures, 1);
        st.observe(
            &Sample {
                backlog: Some(BacklogRead::failed(s(2), "refused")),
                ..Sample::default()
            },
            1,
            &b,
        );
        assert_eq!(st.failures, 2);
        assert_eq!(st.failures_text(), "2 failed reads in a row: refused");
    }

    #[test]
    fn rate_from_the_counter_per_replica_second() {
        let b = Backlog::new(10);
        let mut st = BacklogState::default();
        // 2 replicas, 40 consumed per second in all: 20/s each, whatever the backlog does.
        for t in 0..5 {
            let read = BacklogSample::new(500 + 100 * t).with_consumed(40 * t);
            at(&mut st, t, read, 2, &b);
        }
        assert_eq!(st.rate, Some(20.0));
        // A replica more at the read at 6, started some time after the read at 4: the two
        // that were there consumed (the fewer of the two ends).
        at(
            &mut st,
            6,
            BacklogSample::new(900).with_consumed(160 + 80),
            3,
            &b,
        );
        assert_eq!(st.rate, Some(20.0));
        // Back to 1: the one left consumed 20/s since the read at 6, the window is now
        // 240 + 20 consumed over 2 × 6 + 1 × 1 replica-seconds.
        at(
            &mut st,
            7,
            BacklogSample::new(900).with_consumed(260),
            1,
            &b,
        );
        assert_eq!(st.rate, Some(260.0 / 13.0));
    }

    #[test]
    fn rate_skips_a_dry_queue_and_a_counter_reset() {
        let b = Backlog::new(10);
        let mut st = BacklogState::default();
        at(&mut st, 0, BacklogSample::new(100).with_consumed(0), 1, &b);
        at(&mut st, 1, BacklogSample::new(50).with_consumed(50), 1, &b);
        assert_eq!(st.rate, Some(50.0));
        // The queue ran dry: 10 consumed in 1 s is the arrival rate, not the capacity.
        at(&mut st, 2, BacklogSample::new(0).with_consumed(60), 1, &b);
        at(&mut st, 3, BacklogSample::new(0).with_consumed(70), 1, &b);
        assert_eq!(st.rate, Some(50.0));
        // A counter that went back (a new group) is no delta.
        at(&mut st, 20, BacklogSample::new(10).with_consumed(5), 1, &b);
        at(&mut st, 21, BacklogSample::new(10).with_consumed(0), 1, &b);
        assert_eq!(st.rate, Some(50.0));
    }

    #[test]
    fn without_a_counter_the_rate_is_the_backlogs_decrease() {
        let b = Backlog::new(10);
        let mut st = BacklogState::default();
        for t in 0..4 {
            at(&mut st, t, BacklogSample::new(1000 - 120 * t), 4, &b);
        }
        assert_eq!(st.rate, Some(30.0));
        // A backlog that grows tells nothing about what the replicas can do.
        let mut st = BacklogState::default();
        for t in 0..4 {
            at(&mut st, t, BacklogSample::new(1000 + 10 * t), 4, &b);
        }
        assert_eq!(st.rate, None);
    }

    #[test]
    fn smoothing_is_a_time_weighted_average() {
        let b = Backlog {
            smoothing: Duration::from_secs(2),
            ..Backlog::new(10)
        };
        let mut st = BacklogState::default();
        at(&mut st, 0, BacklogSample::new(1000), 1, &b);
        assert_eq!(st.smoothed, Some(1000.0));
        at(&mut st, 2, BacklogSample::new(2000), 1, &b);
        let expected = 1000.0 + (1.0 - (-1.0f64).exp()) * 1000.0;
        assert!((st.smoothed.unwrap() - expected).abs() < 1e-9);
        let raw = Backlog {
            smoothing: Duration::ZERO,
            ..b
        };
        at(&mut st, 3, BacklogSample::new(7), 1, &raw);
        assert_eq!(st.smoothed, Some(7.0));
    }
}
