//! What was measured. Each generator thread records into its own [`Recorder`] (no locks on
//! the hot path) and hands it over once a second; the collector merges those into per-second
//! points and the run's totals. Latencies go into HdrHistograms (microseconds, 3 significant
//! digits, up to an hour), so memory does not grow with the number of requests.
//!
//! A scenario run (`--scenario`) also records each step in its own [`StepRecord`] (its
//! latency histogram, and why its requests failed) and each user type's flows in a
//! [`FlowRecord`]; then a request is ok when its step's check passed, not by status class.
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::HeaderValue;
use serde::Serialize;

use crate::client::{Answer, ErrorKind};

/// Largest latency recorded (longer ones count as this).
const MAX_MICROS: u64 = 3_600_000_000;
/// Distinct replica names tracked; more are counted under [`OTHER_REPLICAS`].
const MAX_REPLICAS: usize = 256;
/// The name under which replicas past [`MAX_REPLICAS`] are counted.
pub const OTHER_REPLICAS: &str = "(other)";

/// An empty latency histogram.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, MAX_MICROS)
}

/// Requests served by one replica.
#[derive(Debug, Clone)]
pub struct ReplicaRecord {
    /// The header's value.
    pub name: Bytes,
    /// Responses.
    pub requests: u64,
    /// Their latency (corrected in the open model).
    pub latency: Histogram<u64>,
}

/// Everything measured over some interval, by one thread or merged.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Requests begun (a response, an error, or cut off by the end of the run).
    pub attempted: u64,
    /// Latency of every response. Open model: from the due time if the request waited
    /// for a connection, else from the send; closed model: from the send.
    pub latency: Histogram<u64>,
    /// Open model: latency from the actual send (what a closed-loop tool would report).
    pub uncorrected: Histogram<u64>,
    /// Open model: how late the generator itself sent requests it was ready for (timer and
    /// CPU lag; waiting for a busy connection is not counted here).
    pub send_lag: Histogram<u64>,
    /// Open model: requests sent late because every connection was busy.
    pub waited_for_connection: u64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests without a response, by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Body bytes received.
    pub bytes: u64,
    /// Requests per target URL (index into the plan's targets).
    pub per_target: Vec<u64>,
    /// Responses per replica.
    pub replicas: Vec<ReplicaRecord>,
    /// Responses without the replica header.
    pub no_replica: u64,
    /// Scenario runs: per step (index into the scenario's steps).
    pub steps: Vec<StepRecord>,
    /// Scenario runs: per user type.
    pub flows: Vec<FlowRecord>,
}

/// One scenario step's requests.
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// Requests sent.
    pub requests: u64,
    /// Requests whose check passed (expected status, every capture found).
    pub ok: u64,
    /// Failed requests by reason (`status 500 (expected 200)`, `timeout`, …).
    pub failures: BTreeMap<String, u64>,
    /// Latency of the answered ones (corrected like the run's).
    pub latency: Histogram<u64>,
}

impl StepRecord {
    fn new() -> StepRecord {
        StepRecord {
            requests: 0,
            ok: 0,
            failures: BTreeMap::new(),
            latency: histogram(),
        }
    }
}

/// One user type's flows (iterations).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowRecord {
    /// Begun.
    pub started: u64,
    /// Every step passed.
    pub completed: u64,
    /// Ended by a failed step.
    pub failed: u64,
}

impl Recorder {
    /// An empty recorder for `targets` URLs.
    pub fn new(targets: usize) -> Recorder {
        Recorder {
            attempted: 0,
            latency: histogram(),
            uncorrected: histogram(),
            send_lag: histogram(),
            waited_for_connection: 0,
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            bytes: 0,
            per_target: vec![0; targets],
            replicas: Vec::new(),
            no_replica: 0,
            steps: Vec::new(),
            flows: Vec::new(),
        }
    }

    /// An empty recorder for a scenario of `steps` steps and `users` user types.
    pub fn for_scenario(steps: usize, users: usize) -> Recorder {
        Recorder {
            steps: (0..steps).map(|_| StepRecord::new()).collect(),
            flows: vec![FlowRecord::default(); users],
            ..Recorder::new(0)
        }
    }

    /// An empty recorder shaped like this one.
    pub fn empty_like(&self) -> Recorder {
        if self.steps.is_empty() {
            Recorder::new(self.per_target.len())
        } else {
            Recorder::for_scenario(self.steps.len(), self.flows.len())
        }
    }

    /// A scenario run?
    fn scenario(&self) -> bool {
        !self.steps.is_empty()
    }

    /// Responses received (any status).
    pub fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Responses with a 2xx or 3xx status; in a scenario, requests whose step's check
    /// passed.
    pub fn ok(&self) -> u64 {
        if self.scenario() {
            return self.steps.iter().map(|s| s.ok).sum();
        }
        self.statuses
            .iter()
            .filter(|(s, _)| (200..400).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests that failed: no response, or a 4xx/5xx one; in a scenario, requests whose
    /// step's check failed.
    pub fn failed(&self) -> u64 {
        if self.scenario() {
            return self.steps.iter().map(|s| s.requests - s.ok).sum();
        }
        self.transport_errors() + self.responses() - self.ok()
    }

    /// Requests that got no response.
    pub fn transport_errors(&self) -> u64 {
        self.errors.values().sum()
    }

    /// One request to `target`: its outcome, its latency and (open model) its latency
    /// from the actual send.
    pub fn record(
        &mut self,
        target: usize,
        outcome: &Result<Answer, ErrorKind>,
        latency: Duration,
        uncorrected: Option<Duration>,
    ) {
        self.per_target[target] += 1;
        self.record_answer(outcome, latency, uncorrected);
    }

    /// One request of scenario step `step`; `failure` says why its check failed.
    pub fn record_step(
        &mut self,
        step: usize,
        outcome: &Result<Answer, ErrorKind>,
        latency: Duration,
        uncorrected: Option<Duration>,
        failure: Option<String>,
    ) {
        self.record_answer(outcome, latency, uncorrected);
        let s = &mut self.steps[step];
        s.requests += 1;
        match failure {
            None => s.ok += 1,
            Some(why) => *s.failures.entry(why).or_default() += 1,
        }
        if outcome.is_ok() {
            s.latency.saturating_record(micros(latency));
        }
    }

    /// A failed step's request that could not even be built (a variable made its URL or a
    /// header invalid): counted as sent and failed, with no latency.
    pub fn record_unsendable(&mut self, step: usize, why: String) {
        self.attempted += 1;
        let s = &mut self.steps[step];
        s.requests += 1;
        *s.failures.entry(why).or_default() += 1;
    }

    fn record_answer(
        &mut self,
        outcome: &Result<Answer, ErrorKind>,
        latency: Duration,
        uncorrected: Option<Duration>,
    ) {
        self.attempted += 1;
        let answer = match outcome {
            Ok(a) => a,
            Err(kind) => {
                *self.errors.entry(*kind).or_default() += 1;
                return;
            }
        };
        *self.statuses.entry(answer.status).or_default() += 1;
        self.bytes += answer.bytes;
        let us = micros(latency);
        self.latency.saturating_record(us);
        if let Some(u) = uncorrected {
            self.uncorrected.saturating_record(micros(u));
        }
        match &answer.replica {
            Some(name) => self.replica(name).map_or((), |r| {
                r.requests += 1;
                r.latency.saturating_record(us);
            }),
            None => self.no_replica += 1,
        }
    }

    fn replica(&mut self, name: &HeaderValue) -> Option<&mut ReplicaRecord> {
        let bytes = name.as_bytes();
        let i = match self.replicas.iter().position(|r| r.name == bytes) {
            Some(i) => i,
            None => {
                let name = if self.replicas.len() < MAX_REPLICAS {
                    Bytes::copy_from_slice(bytes)
                } else {
                    Bytes::from_static(OTHER_REPLICAS.as_bytes())
                };
                match self.replicas.iter().position(|r| r.name == name) {
                    Some(i) => i,
                    None => {
                        self.replicas.push(ReplicaRecord {
                            name,
                            requests: 0,
                            latency: histogram(),
                        });
                        self.replicas.len() - 1
                    }
                }
            }
        };
        self.replicas.get_mut(i)
    }

    /// Open model: a request sent `lag` after its due time; `waited` if that was because
    /// every connection was busy.
    pub fn record_send(&mut self, lag: Duration, waited: bool) {
        if waited {
            self.waited_for_connection += 1;
        } else {
            self.send_lag.saturating_record(micros(lag));
        }
    }

    /// Add `other` into this.
    pub fn merge(&mut self, other: &Recorder) {
        self.attempted += other.attempted;
        add(&mut self.latency, &other.latency);
        add(&mut self.uncorrected, &other.uncorrected);
        add(&mut self.send_lag, &other.send_lag);
        self.waited_for_connection += other.waited_for_connection;
        for (s, n) in &other.statuses {
            *self.statuses.entry(*s).or_default() += n;
        }
        for (k, n) in &other.errors {
            *self.errors.entry(*k).or_default() += n;
        }
        self.bytes += other.bytes;
        if self.per_target.len() < other.per_target.len() {
            self.per_target.resize(other.per_target.len(), 0);
        }
        for (a, b) in self.per_target.iter_mut().zip(&other.per_target) {
            *a += b;
        }
        for r in &other.replicas {
            match self.replicas.iter_mut().find(|m| m.name == r.name) {
                Some(m) => {
                    m.requests += r.requests;
                    add(&mut m.latency, &r.latency);
                }
                None => self.replicas.push(r.clone()),
            }
        }
        self.no_replica += other.no_replica;
        if self.steps.len() < other.steps.len() {
            self.steps.resize_with(other.steps.len(), StepRecord::new);
        }
        for (a, b) in self.steps.iter_mut().zip(&other.steps) {
            a.requests += b.requests;
            a.ok += b.ok;
            for (why, n) in &b.failures {
                *a.failures.entry(why.clone()).or_default() += n;
            }
            add(&mut a.latency, &b.latency);
        }
        if self.flows.len() < other.flows.len() {
            self.flows.resize(other.flows.len(), FlowRecord::default());
        }
        for (a, b) in self.flows.iter_mut().zip(&other.flows) {
            a.started += b.started;
            a.completed += b.completed;
            a.failed += b.failed;
        }
    }
}

fn add(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    // Same bounds everywhere, so this cannot fail.
    let _ = into.add(from);
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Fastest.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
}

impl Percentiles {
    /// From a histogram in microseconds.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Percentiles {
                count: 0,
                mean: 0.0,
                min: 0.0,
                p50: 0.0,
                p90: 0.0,
                p95: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
            };
        }
        Percentiles {
            count: h.len(),
            mean: h.mean() / 1000.0,
            min: ms(h.min()),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(replica: &'static str) -> Result<Answer, ErrorKind> {
        Ok(Answer {
            status: 200,
            bytes: 10,
            replica: Some(HeaderValue::from_static(replica)),
            kept: None,
        })
    }

    #[test]
    fn records_and_merges() {
        let mut a = Recorder::new(2);
        a.record(0, &ok("r1"), Duration::from_millis(10), None);
        a.record(1, &ok("r2"), Duration::from_millis(20), None);
        let mut b = Recorder::new(2);
        b.record(0, &ok("r1"), Duration::from_millis(30), None);
        b.record(0, &Err(ErrorKind::Refused), Duration::ZERO, None);
        b.record(
            1,
            &Ok(Answer {
                status: 503,
                bytes: 0,
                replica: None,
                kept: None,
            }),
            Duration::from_millis(1),
            None,
        );
        a.merge(&b);
        assert_eq!(a.attempted, 5);
        assert_eq!(a.responses(), 4);
        assert_eq!((a.ok(), a.failed()), (3, 2));
        assert_eq!(a.per_target, [3, 2]);
        assert_eq!(a.bytes, 30);
        assert_eq!(a.no_replica, 1);
        let r1 = a.replicas.iter().find(|r| r.name == "r1").unwrap();
        assert_eq!(r1.requests, 2);
        assert_eq!(r1.latency.max() / 1000, 30);
        assert_eq!(a.errors[&ErrorKind::Refused], 1);
    }

    #[test]
    fn percentiles_in_ms() {
        let mut h = histogram();
        for ms in 1..=100 {
            h.record(ms * 1000).unwrap();
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 100);
        assert!((p.p50 - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.p99 - 99.0).abs() < 0.1, "{p:?}");
        assert!((p.max - 100.0).abs() < 0.1, "{p:?}");
    }
}
