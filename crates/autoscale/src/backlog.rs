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
//! * **Keep-up floor** (with a consumed counter): a backlog cannot see throughput. Replicas
//!   that keep up keep it near zero, so `per_replica` asks for fewer than the flow needs,
//!   the backlog builds until it asks for more, and the count cycles on a steady flow. So
//!   while the consumption rate `r` and the arrival rate `A` (both below) are known, the
//!   proposal is at least the *keep-up floor*: `k = A / r` replicas are kept fully busy by
//!   the arrivals, and the floor is `ceil(k × (1 + KEEP_UP_HEADROOM))` (10%), except
//!   that while the current count keeps up (`k ≤ current × (1 + tolerance_up)`) it is at
//!   most the current count. So the floor raises the count only when the replicas fall
//!   more than the tolerance short of the flow, and then with headroom; it stops a
//!   scale-down at the count that leaves the headroom; and a count at exactly the flow's
//!   capacity stays, as noise of a few percent in `A` must not move it. The headroom
//!   ([`KEEP_UP_HEADROOM`]) keeps the replicas a scale-down leaves below 91% busy, where a
//!   queue absorbs the flow's jitter without a standing backlog, and covers the estimates'
//!   noise; it costs at most one replica in ten (plus the rounding). When nothing arrives
//!   the floor is zero, so it never holds replicas after a flow stops, and it plays no part
//!   in whether the service is idle (activation, scale to zero); a service woken from zero
//!   is woken to at least the floor. Panic mode leaves it out: an average over 10 s is not
//!   a burst.
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
//! where the replica-seconds come from how long each replica has been ready: one that
//! became ready during the interval counts from then on, one that is gone counts for half
//! of it (without replica details, the fewer of the two reads' ready counts, for all of
//! it). `consumed` is the counter's delta (an interval in
//! which the counter went back, e.g. a re-created consumer group, is skipped).
//!
//! Only intervals in which the replicas were kept busy count: what idle replicas consume
//! is the arrival rate, not what they can do. A read is a snapshot, and between two reads
//! the queue may run dry and fill again, so the test is that the backlog at the start of
//! the interval exceeds what was consumed in it: whenever the other messages arrived, the
//! replicas never ran out. (3 replicas, 10 messages at every read and 100 consumed a
//! second would otherwise measure 33/s per replica, however fast they are; and an
//! underestimated rate would make the keep-up floor ask for more replicas, which would
//! idle more and lower it again.) The price: a rate is measured only while the backlog
//! holds more than a read interval's work, which is when the drain target matters, and
//! the last rate measured is kept meanwhile.
//!
//! Without a counter, `consumed` is the backlog's decrease and an interval counts when the
//! backlog is not zero at either end (the test above then always holds). The decrease
//! undercounts consumption by the messages that arrived meanwhile, so the drain target then
//! errs towards more replicas (and a backlog that does not fall gives no estimate at all).
//! A window in which nothing was consumed leaves the previous estimate in place, and so
//! does a quiet queue: the last measured rate is ready when the next burst comes. A window
//! of reads is already an average, so the rate needs no further smoothing.
//!
//! # Measuring the arrivals
//!
//! Messages per second over the same window, with a consumed counter: `(Σ consumed + the
//! smoothed backlog's growth) / Σ Δt` over the intervals whose counter did not go back. The
//! counter is monotonic and its noise does not add up; the backlog jitters (the reason for
//! the smoothing), and its raw difference over a few seconds would swamp the flow, so its
//! growth is the smoothed backlog's. The estimate waits for half a window (5 s) of reads;
//! a negative sum (messages that expired or were deleted unread) is zero. Without a
//! counter, arrivals cannot be told from consumption (a backlog near zero hides both), so
//! there is no keep-up floor.

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
    /// Replica-seconds of consuming since the previous read, from how long each replica
    /// has been ready (`None` when the sample lists no replicas: then the fewer of the two
    /// reads' ready counts, for the whole interval).
    replica_secs: Option<f64>,
    /// The smoothed backlog after this read.
    smoothed: f64,
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
    /// Messages arriving per second over the window, when the broker has a consumed
    /// counter.
    arrivals: Option<f64>,
}

/// Replica-seconds spent consuming between `prev` and a read at `at`, from the replicas
/// `sample` lists: each replica ready now counts for as long as it has been ready, at most
/// the interval (one started in between counts only from when it became ready: a local
/// worker is ready within milliseconds, and counting it for none of the interval made
/// 4 replicas at 50/s each measure 130–170/s right after a 1 → 4 scale-up); each replica
/// of `prev` that is gone counts for half the interval. `None` if the sample lists none.
fn replica_secs_since(sample: &Sample, prev: &Read, at: Duration) -> Option<f64> {
    if sample.replicas.is_empty() {
        return None;
    }
    let dt = at.saturating_sub(prev.at);
    let ready: Vec<Duration> = sample
        .replicas
        .iter()
        .filter(|r| r.ready)
        .map(|r| r.ready_for.min(dt))
        .collect();
    let stayed = ready.iter().filter(|d| **d >= dt).count() as u32;
    let left = prev.ready.saturating_sub(stayed);
    let secs: f64 = ready.iter().map(Duration::as_secs_f64).sum();
    Some(secs + f64::from(left) * dt.as_secs_f64() / 2.0)
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
                let smoothed = match (self.smoothed, self.reads.back()) {
                    (Some(avg), Some(prev)) if !target.smoothing.is_zero() => {
                        let dt = read.at.saturating_sub(prev.at).as_secs_f64();
                        let alpha = 1.0 - (-dt / target.smoothing.as_secs_f64()).exp();
                        avg + alpha * (raw - avg)
                    }
                    _ => raw,
                };
                self.smoothed = Some(smoothed);
                let replica_secs = self
                    .reads
                    .back()
                    .and_then(|prev| replica_secs_since(sample, prev, read.at));
                self.reads.push_back(Read {
                    at: read.at,
                    sample: *s,
                    ready,
                    replica_secs,
                    smoothed,
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
                self.arrivals = self.measure_arrivals();
            }
        }
    }

    /// Messages consumed per replica-second over the window, if it tells: only intervals
    /// in which the replicas were kept busy count (see the module documentation).
    fn measure(&self) -> Option<f64> {
        let (mut consumed, mut replica_secs) = (0.0, 0.0);
        for (a, b) in self.reads.iter().zip(self.reads.iter().skip(1)) {
            let dt = b.at.saturating_sub(a.at).as_secs_f64();
            let replica_secs_here = b
                .replica_secs
                .unwrap_or_else(|| f64::from(a.ready.min(b.ready)) * dt);
            if dt <= 0.0
                || replica_secs_here <= 0.0
                || a.sample.messages == 0
                || b.sample.messages == 0
            {
                continue;
            }
            let delta = match (a.sample.consumed, b.sample.consumed) {
                (Some(x), Some(y)) if y >= x => (y - x) as f64,
                (Some(_), Some(_)) => continue,
                _ => a.sample.messages as f64 - b.sample.messages as f64,
            };
            // Saturation: the backlog at the start of the interval must exceed what was
            // consumed in it, so that no replica can have waited for a message whenever
            // the others arrived. (Always true of the backlog's decrease when the end is
            // not empty, so this changes nothing without a counter.)
            if a.sample.messages as f64 <= delta {
                continue;
            }
            consumed += delta;
            replica_secs += replica_secs_here;
        }
        (consumed > 0.0 && replica_secs > 0.0).then(|| consumed / replica_secs)
    }

    /// Messages arriving per second over the window: what was consumed (the counter's
    /// delta) plus what the smoothed backlog grew by, over the intervals with a consumed
    /// counter at both ends that did not go back. `None` until they span half of
    /// [`RATE_WINDOW`] (never without a counter).
    fn measure_arrivals(&self) -> Option<f64> {
        let (mut arrived, mut secs) = (0.0, 0.0);
        for (a, b) in self.reads.iter().zip(self.reads.iter().skip(1)) {
            let dt = b.at.saturating_sub(a.at).as_secs_f64();
            let (Some(x), Some(y)) = (a.sample.consumed, b.sample.consumed) else {
                continue;
            };
            if dt <= 0.0 || y < x {
                continue;
            }
            arrived += (y - x) as f64 + b.smoothed - a.smoothed;
            secs += dt;
        }
        // Less than half a window of reads says more about batches and jitter than about
        // the flow. Messages that expire or are deleted unread can make the sum negative:
        // none arrived.
        (secs >= RATE_WINDOW.as_secs_f64() / 2.0).then(|| (arrived / secs).max(0.0))
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
            arrival_rate: self.arrivals,
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
    let floor = need.keep_up(current, tolerance).filter(|&f| f > proposal);
    if let Some(f) = floor {
        proposal = f;
        hold = None;
    }
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
    let rate = fmt_number(state.rate.unwrap_or_default());
    let mut extra = Vec::new();
    match (target.drain_within, need.drain) {
        (Some(d), Some(drain)) => extra.push(format!(
            "{} to drain within {} at {rate}/s per replica",
            ceil_u32(drain),
            fmt_duration(d),
        )),
        (Some(_), None) => extra.push("no drain rate measured yet".to_owned()),
        (None, _) => {}
    }
    if let Some(f) = floor {
        extra.push(format!(
            "{f} to keep up with {}/s arriving at {rate}/s per replica",
            fmt_number(state.arrivals.unwrap_or_default()),
        ));
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

/// The headroom the keep-up floor leaves when it sets a count: 10% above the replicas
/// that the arrivals keep fully busy (see the module documentation).
pub const KEEP_UP_HEADROOM: f64 = 0.1;

/// The replicas a backlog calls for.
#[derive(Debug, Clone, Copy)]
struct Need {
    /// `backlog / per_replica`.
    lag: f64,
    /// `backlog / (rate × drain_within)`, when both are known.
    drain: Option<f64>,
    /// `arrivals / rate`: the replicas the arrivals keep fully busy, when both are known.
    keep: Option<f64>,
    /// The partition count, when it caps.
    cap: Option<u32>,
}

impl Need {
    fn of(target: &Backlog, state: &BacklogState, backlog: f64, partitions: Option<u32>) -> Need {
        let rate = state.rate.filter(|&r| r > 0.0);
        Need {
            lag: backlog / target.per_replica.max(1) as f64,
            drain: target
                .drain_within
                .zip(rate)
                .map(|(d, r)| backlog / (r * d.as_secs_f64())),
            keep: state.arrivals.zip(rate).map(|(a, r)| a / r),
            cap: partitions.filter(|p| target.cap_at_partitions && *p > 0),
        }
    }

    /// The larger of the backlog's proposals, uncapped (without the keep-up floor).
    fn exact(&self) -> f64 {
        self.lag.max(self.drain.unwrap_or(0.0))
    }

    /// The keep-up floor at `current` replicas, uncapped: while `current` keep up with the
    /// arrivals (within the up tolerance), at most `current`, so a count at the flow's
    /// capacity stays; otherwise, and when scaling down, the replicas the arrivals keep
    /// busy plus [`KEEP_UP_HEADROOM`]. Zero when nothing arrives; `None` without a rate or
    /// an arrival rate.
    fn keep_up(&self, current: u32, tolerance: Tolerance) -> Option<u32> {
        let keep = self.keep?;
        let with_headroom = ceil_u32(keep * (1.0 + KEEP_UP_HEADROOM));
        Some(if keep <= f64::from(current) * (1.0 + tolerance.up) {
            with_headroom.min(current)
        } else {
            with_headroom
        })
    }

    /// The count to wake a service at zero to, capped: the larger proposal, and the
    /// keep-up floor from zero.
    fn wake(&self) -> u32 {
        let floor = self
            .keep
            .map_or(0, |keep| ceil_u32(keep * (1.0 + KEEP_UP_HEADROOM)));
        let n = ceil_u32(self.exact()).max(floor);
        self.cap.map_or(n, |cap| n.min(cap))
    }

    /// The replicas the backlog keeps fully busy, capped: what panic mode compares with the
    /// ready replicas. Rounded down, unlike the proposal: 101 messages at 100 per replica
    /// are not twice what one replica takes, and a noisy lag around one replica's worth
    /// must not enter panic mode at every peak. The arrivals are left out: their average
    /// over 10 s moves too slowly to be a burst, and would hold panic mode for 10 s after
    /// one.
    fn full(&self) -> u32 {
        let n = self.exact().floor().clamp(0.0, f64::from(u32::MAX)) as u32;
        self.cap.map_or(n, |cap| n.min(cap))
    }
}

/// The count to wake a service at zero to for this backlog, uncapped by policies: the raw
/// backlog's proposal (with the keep-up floor), if it is above the activation threshold.
pub(crate) fn wake_count(target: &Backlog, state: &BacklogState) -> Option<u32> {
    let last = state.current()?;
    if last.messages <= target.activation {
        return None;
    }
    Some(Need::of(target, state, last.messages as f64, last.partitions).wake())
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
    fn rate_counts_only_intervals_that_kept_the_replicas_busy() {
        let b = Backlog::new(10);
        // 3 replicas, 10 messages at every read, 100 consumed a second: the queue turned
        // over ten times between reads, so the replicas may have waited for messages. The
        // truth is 50/s each (they were idle a third of the time); 33.3 is not measured.
        let mut st = BacklogState::default();
        for t in 0..=10 {
            at(
                &mut st,
                t,
                BacklogSample::new(10).with_consumed(100 * t),
                3,
                &b,
            );
        }
        assert_eq!(st.rate, None);
        // And a rate measured on a deep queue is not lowered by such reads.
        let mut st = BacklogState::default();
        for t in 0..=2 {
            at(
                &mut st,
                t,
                BacklogSample::new(1000).with_consumed(150 * t),
                3,
                &b,
            );
        }
        assert_eq!(st.rate, Some(50.0));
        // 18 s later: the backlog is down to 10, and stays there.
        for t in 20..=40 {
            let consumed = 3000 + 100 * (t - 20);
            at(
                &mut st,
                t,
                BacklogSample::new(10).with_consumed(consumed),
                3,
                &b,
            );
        }
        assert_eq!(st.rate, Some(50.0));
        // A backlog at the start of an interval that exceeds what it consumed kept them
        // busy whenever the rest arrived: 151 waiting, 150 consumed.
        let mut st = BacklogState::default();
        at(&mut st, 0, BacklogSample::new(151).with_consumed(0), 3, &b);
        at(
            &mut st,
            1,
            BacklogSample::new(151).with_consumed(150),
            3,
            &b,
        );
        assert_eq!(st.rate, Some(50.0));
        // 150 waiting, then 150 consumed in the next 2 s: they may have run out on the way
        // (they did, at 25/s each), so that interval does not count.
        at(
            &mut st,
            2,
            BacklogSample::new(150).with_consumed(300),
            3,
            &b,
        );
        at(&mut st, 4, BacklogSample::new(20).with_consumed(450), 3, &b);
        assert_eq!(st.rate, Some(50.0));
    }

    #[test]
    fn arrivals_are_consumption_plus_the_backlogs_growth() {
        let b = Backlog {
            smoothing: Duration::ZERO,
            ..Backlog::new(10)
        };
        let mut st = BacklogState::default();
        // 50 consumed and 20 more waiting every second: 70 arrive, whatever the replicas.
        for t in 0..=4 {
            at(
                &mut st,
                t,
                BacklogSample::new(100 + 20 * t).with_consumed(50 * t),
                1,
                &b,
            );
            // Less than half a window (5 s) of reads tells nothing yet.
            assert_eq!(st.arrivals, None, "t={t}");
        }
        for t in 5..=12 {
            at(
                &mut st,
                t,
                BacklogSample::new(100 + 20 * t).with_consumed(50 * t),
                1,
                &b,
            );
            assert_eq!(st.arrivals, Some(70.0), "t={t}");
        }
        assert_eq!(st.status(&b).arrival_rate, Some(70.0));
        // The counter starts again (a re-created group): that interval is left out.
        for t in 13..=16 {
            let read = BacklogSample::new(100 + 20 * t).with_consumed(50 * (t - 13));
            at(&mut st, t, read, 1, &b);
            assert_eq!(st.arrivals, Some(70.0), "t={t}");
        }
        // The flow stops: the replicas take the last 420 (and 50 more that arrived), then
        // nothing. Once the window has none of the flow left, nothing arrives.
        for t in 17..=26 {
            at(&mut st, t, BacklogSample::new(0).with_consumed(620), 1, &b);
        }
        assert_eq!(st.arrivals, Some(0.0));
        // Without a counter, arrivals cannot be told from the backlog.
        let mut st = BacklogState::default();
        for t in 0..=12 {
            at(&mut st, t, BacklogSample::new(100 + 20 * t), 1, &b);
        }
        assert_eq!(st.arrivals, None);
    }

    #[test]
    fn the_keep_up_floor_says_when_it_decides() {
        let b = Backlog::new(100);
        let tolerance = Tolerance { up: 0.1, down: 0.1 };
        let mut st = BacklogState::default();
        at(&mut st, 0, BacklogSample::new(40).with_consumed(0), 10, &b);
        (st.rate, st.arrivals) = (Some(50.0), Some(480.0));
        let outcome = |st: &BacklogState, current| {
            let sample = Sample {
                current,
                ..Sample::default()
            };
            let o = evaluate(&b, st, &sample, tolerance);
            (o.proposal, o.describe)
        };
        // 480/s at 50/s per replica: 9.6 replicas keep up; 10% headroom makes 11. From 14
        // (or from 5, which cannot keep up) the count goes to 11.
        let floor = "backlog 40: 1 at 100/replica, 11 to keep up with 480/s arriving at \
                     50/s per replica";
        assert_eq!(outcome(&st, 14), (Some(11), floor.to_owned()));
        assert_eq!(outcome(&st, 5), (Some(11), floor.to_owned()));
        // 10 keep up (9.6 ≤ 10): held, not raised for the headroom; nor are 9 (9.6 is
        // within the 10% tolerance of 9).
        assert_eq!(outcome(&st, 10).0, Some(10));
        assert_eq!(outcome(&st, 9).0, Some(9));
        assert_eq!(outcome(&st, 8).0, Some(11));
        // Nothing arriving: no floor, the backlog alone.
        st.arrivals = Some(0.0);
        assert_eq!(
            outcome(&st, 14),
            (Some(1), "backlog 40 over 100/replica".to_owned())
        );
        // No rate: no floor.
        (st.rate, st.arrivals) = (None, Some(480.0));
        assert_eq!(outcome(&st, 14).0, Some(1));
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
