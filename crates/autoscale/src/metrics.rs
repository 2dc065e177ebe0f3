//! The per-target replica calculation: Kubernetes HPA's `replica_calculator.go`.
//!
//! # Theory
//!
//! For a per-replica target the *usage ratio* is the average metric over the ready replicas
//! that reported it, divided by the target (for CPU, HPA's utilisation: Σ cores used /
//! Σ cores requested, over the target utilisation). The proposal is
//! `ceil(ratio × replicas averaged over)`: the count at which the same total load would sit
//! exactly at the target. Two refinements keep it from over-reacting:
//!
//! * **Tolerance** (HPA `Tolerances.isWithin`): if `1 - tolerance_down ≤ ratio ≤
//!   1 + tolerance_up`, the proposal is the current count. Without it, noise of a few
//!   percent moves the count by one every tick.
//! * **Replicas without data** (HPA `groupPods`). Replicas are split into *ready with data*,
//!   *missing* (ready, but no value) and *unready* (not ready yet, and, for CPU only, ready
//!   for less than [`Policy::warm_up`](crate::Policy::warm_up): start-up CPU spikes of a JVM
//!   or an interpreter would otherwise scale up to the maximum, kubernetes#67252). When the
//!   first ratio says *scale up*, missing and unready replicas are added back at **zero**
//!   load, which damps repeated scale-ups while new replicas start. When it says *scale down*,
//!   missing replicas are added back at **100% of the target** and unready ones stay out.
//!   The ratio is then recomputed; if it falls within the tolerance or flips direction, or
//!   the new count would move against the ratio, the proposal is the current count.
//!
//! The service-level target, [`LatencyP95`](crate::Target::LatencyP95), has no per-replica
//! values: its ratio is `p95 / target` and its proposal `ceil(ratio × ready replicas)`, with
//! the same tolerance (HPA's `Object` metric formula).
//!
//! # Missing data is never zero
//!
//! A target whose values are missing for some ready replica (or a latency target without a
//! p95 while requests were received) reports them in [`Reading::missing`](crate::Reading::missing); the
//! [`Autoscaler`](crate::Autoscaler) then forbids any scale-down for the tick, as HPA does
//! when any metric is invalid (kubernetes#99514), because the classic failure is a metrics
//! outage read as zero load scaling everything to the minimum (kubernetes#104387). A target
//! with no data at all proposes nothing.

use crate::Reading;
use crate::decision::Limit;
use crate::policy::{Policy, Target};
use crate::sample::{ReplicaSample, Sample};

/// What one target says about one sample.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// The value against its target, for the decision.
    pub(crate) reading: Reading,
    /// The reading in the decision's reason, before ` → N replicas`: `concurrency 23.5/10
    /// per replica`, `backlog 4,210 over 100/replica`.
    pub(crate) describe: String,
    /// The replica count this target asks for; `None` when it has no data.
    pub(crate) proposal: Option<u32>,
    /// When the proposal is the current count because of a hold rather than the ratio:
    /// [`Limit::Tolerance`], [`Limit::WarmingUp`] (unready replicas counted at zero flipped
    /// the ratio) or [`Limit::MissingMetrics`] (missing replicas did).
    pub(crate) hold: Option<Limit>,
    /// Ready replicas without a value (1 for a latency target without a p95 under traffic).
    pub(crate) missing: u32,
    /// The load-based count without tolerance or holds, `ceil(ratio × ready replicas with
    /// data)` (Knative's `ceil(observed / target)`), which panic mode compares with the ready
    /// replicas; `None` without data.
    pub(crate) demand: Option<u32>,
}

/// One replica's contribution to a ratio: `usage` over `weight` (cores over cores requested
/// for CPU, the value over 1 otherwise).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    usage: f64,
    weight: f64,
}

/// The replicas of one sample, grouped for one per-replica target.
#[derive(Debug, Default)]
struct Groups {
    with_data: Vec<Point>,
    /// Weights of ready replicas without a value.
    missing: Vec<f64>,
    /// Weights of replicas not ready (or warming up, for CPU).
    unready: Vec<f64>,
}

/// The tolerance band around a ratio of 1.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tolerance {
    pub(crate) up: f64,
    pub(crate) down: f64,
}

impl Tolerance {
    pub(crate) fn is_within(self, ratio: f64) -> bool {
        (1.0 - self.down) <= ratio && ratio <= (1.0 + self.up)
    }
}

/// Evaluates one target against one sample.
pub(crate) fn evaluate(target: &Target, sample: &Sample, policy: &Policy) -> Outcome {
    let tolerance = Tolerance {
        up: policy.tolerance_up,
        down: policy.tolerance_down,
    };
    let target_value = target.value();
    let mut reading = Reading {
        name: target.name(),
        value: None,
        target: target_value,
        recommendation: None,
        missing: 0,
    };
    let mut demand = None;
    let (proposal, hold, missing) = match *target {
        Target::LatencyP95(_) => {
            let ready = sample.replicas.iter().filter(|r| r.ready).count() as u32;
            match sample.latency_p95 {
                None => {
                    let traffic = sample.requests > 0 || sample.queued > 0;
                    (None, None, u32::from(traffic && ready > 0))
                }
                Some(p95) => {
                    let value = p95.as_secs_f64() * 1000.0;
                    reading.value = Some(value);
                    if ready == 0 {
                        (None, None, 0)
                    } else {
                        let ratio = value / target_value;
                        demand = Some(ceil_u32(ratio * f64::from(ready)));
                        if tolerance.is_within(ratio) {
                            (Some(sample.current), Some(Limit::Tolerance), 0)
                        } else {
                            (Some(ceil_u32(ratio * f64::from(ready))), None, 0)
                        }
                    }
                }
            }
        }
        _ => {
            let groups = group(target, sample, policy);
            let missing = groups.missing.len() as u32;
            reading.value = average(&groups.with_data);
            demand = reading
                .value
                .map(|v| ceil_u32(v / target_value * groups.with_data.len() as f64));
            match hpa(sample.current, &groups, target_value, tolerance) {
                Some((n, hold)) => (Some(n), hold, missing),
                None => (None, None, missing),
            }
        }
    };
    reading.recommendation = proposal;
    reading.missing = missing;
    Outcome {
        describe: reading.describe(),
        reading,
        proposal,
        hold,
        missing,
        demand,
    }
}

/// Splits the replicas into ready-with-data, missing and unready for `target` (HPA
/// `groupPods`).
fn group(target: &Target, sample: &Sample, policy: &Policy) -> Groups {
    let mut g = Groups::default();
    for r in &sample.replicas {
        let (value, weight) = value_of(target, r);
        let warming = matches!(target, Target::Cpu(_)) && r.ready_for < policy.warm_up;
        if !r.ready || warming {
            g.unready.push(weight);
            continue;
        }
        match value {
            Some(v) if v.is_finite() && v >= 0.0 && weight > 0.0 => {
                g.with_data.push(Point { usage: v, weight });
            }
            _ => g.missing.push(weight),
        }
    }
    g
}

/// A replica's value for `target`, and its weight (cores requested for CPU, else 1).
fn value_of(target: &Target, r: &ReplicaSample) -> (Option<f64>, f64) {
    match target {
        Target::Cpu(_) => {
            let request = if r.cpu_request.is_finite() && r.cpu_request > 0.0 {
                r.cpu_request
            } else {
                // HPA: "missing request for cpu"; the replica counts as missing.
                return (None, 1.0);
            };
            (r.cpu, request)
        }
        Target::Memory(_) => (r.memory.map(|b| b as f64), 1.0),
        Target::Concurrency(_) => (r.concurrency, 1.0),
        Target::Rps(_) => (r.rps, 1.0),
        // Not per replica: evaluated by `latency`'s arm and `crate::backlog`.
        Target::LatencyP95(_) | Target::Backlog(_) => (None, 1.0),
    }
}

/// Σ usage / Σ weight, or `None` without points.
fn average(points: &[Point]) -> Option<f64> {
    let weight: f64 = points.iter().map(|p| p.weight).sum();
    if points.is_empty() || weight <= 0.0 {
        return None;
    }
    Some(points.iter().map(|p| p.usage).sum::<f64>() / weight)
}

/// HPA's `calcPlainMetricReplicas` / `GetResourceReplicas`: the proposal and, when it is
/// the current count because of a hold, which one. `None` without any data.
fn hpa(
    current: u32,
    g: &Groups,
    target: f64,
    tolerance: Tolerance,
) -> Option<(u32, Option<Limit>)> {
    let ratio = average(&g.with_data)? / target;
    let scale_up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if tolerance.is_within(ratio) {
            return Some((current, Some(Limit::Tolerance)));
        }
        return Some((ceil_u32(ratio * g.with_data.len() as f64), None));
    }

    let mut points = g.with_data.clone();
    let mut hold = Limit::WarmingUp;
    if !g.missing.is_empty() {
        if ratio < 1.0 {
            // Scale-down: a replica we know nothing about is assumed exactly at the target.
            points.extend(g.missing.iter().map(|&w| Point {
                usage: w * target,
                weight: w,
            }));
            hold = Limit::MissingMetrics;
        } else if ratio > 1.0 {
            // Scale-up: assumed idle, so the missing replica damps rather than drives it.
            points.extend(g.missing.iter().map(|&w| Point {
                usage: 0.0,
                weight: w,
            }));
            if !scale_up_with_unready {
                hold = Limit::MissingMetrics;
            }
        }
    }
    if scale_up_with_unready {
        points.extend(g.unready.iter().map(|&w| Point {
            usage: 0.0,
            weight: w,
        }));
    }
    let new_ratio = average(&points)? / target;
    if tolerance.is_within(new_ratio) {
        return Some((current, Some(Limit::Tolerance)));
    }
    if (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0) {
        return Some((current, Some(hold)));
    }
    let proposal = ceil_u32(new_ratio * points.len() as f64);
    if (new_ratio < 1.0 && proposal > current) || (new_ratio > 1.0 && proposal < current) {
        return Some((current, Some(hold)));
    }
    Some((proposal, None))
}

/// `ceil(x)` as a replica count, forgiving floating-point noise (`1.1 × 10` is
/// `11.000000000000002`, which must be 11, not 12), saturating, and 0 for NaN.
pub(crate) fn ceil_u32(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        return 0;
    }
    let c = (x - 1e-9).ceil();
    if c >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        c.max(0.0) as u32
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const TOL: Tolerance = Tolerance { up: 0.1, down: 0.1 };

    fn points(values: &[f64]) -> Vec<Point> {
        values
            .iter()
            .map(|&usage| Point { usage, weight: 1.0 })
            .collect()
    }

    #[test]
    fn ceil_forgives_float_noise_and_saturates() {
        assert_eq!(ceil_u32(1.1 * 10.0), 11);
        assert_eq!(ceil_u32(11.2), 12);
        assert_eq!(ceil_u32(0.0), 0);
        assert_eq!(ceil_u32(f64::NAN), 0);
        assert_eq!(ceil_u32(f64::INFINITY), u32::MAX);
        assert_eq!(ceil_u32(-3.0), 0);
    }

    #[test]
    fn plain_ratio_times_ready() {
        let g = Groups {
            with_data: points(&[20.0, 30.0]),
            ..Groups::default()
        };
        // ratio 25/10 = 2.5 → ceil(2.5 × 2) = 5
        assert_eq!(hpa(2, &g, 10.0, TOL), Some((5, None)));
    }

    #[test]
    fn no_data_proposes_nothing() {
        let g = Groups {
            missing: vec![1.0, 1.0],
            unready: vec![1.0],
            ..Groups::default()
        };
        assert_eq!(hpa(3, &g, 10.0, TOL), None);
    }

    #[test]
    fn missing_counts_as_target_on_scale_down() {
        // Two ready at 2 (ratio 0.2), two missing at the target 10: (2+2+10+10)/4 = 6 →
        // ratio 0.6 → ceil(0.6 × 4) = 3, not ceil(0.2 × 2) = 1.
        let g = Groups {
            with_data: points(&[2.0, 2.0]),
            missing: vec![1.0, 1.0],
            ..Groups::default()
        };
        assert_eq!(hpa(4, &g, 10.0, TOL), Some((3, None)));
    }

    #[test]
    fn missing_counts_as_zero_on_scale_up() {
        // One ready at 30, one missing at 0: ratio (30+0)/2/10 = 1.5 → ceil(1.5 × 2) = 3.
        let g = Groups {
            with_data: points(&[30.0]),
            missing: vec![1.0],
            ..Groups::default()
        };
        assert_eq!(hpa(2, &g, 10.0, TOL), Some((3, None)));
    }

    #[test]
    fn unready_count_as_zero_on_scale_up_and_are_excluded_on_scale_down() {
        // Two ready at 30, four starting: (60 + 0) / 6 / 10 = 1.0 → within tolerance.
        let g = Groups {
            with_data: points(&[30.0, 30.0]),
            unready: vec![1.0; 4],
            ..Groups::default()
        };
        assert_eq!(hpa(6, &g, 10.0, TOL), Some((6, Some(Limit::Tolerance))));
        // With two starting: 60 / 4 / 10 = 1.5 → ceil(1.5 × 4) = 6.
        let g = Groups {
            with_data: points(&[30.0, 30.0]),
            unready: vec![1.0; 2],
            ..Groups::default()
        };
        assert_eq!(hpa(4, &g, 10.0, TOL), Some((6, None)));
        // Scale-down ignores them: 2 ready at 2 → ratio 0.2 → 1.
        let g = Groups {
            with_data: points(&[2.0, 2.0]),
            unready: vec![1.0; 4],
            ..Groups::default()
        };
        assert_eq!(hpa(6, &g, 10.0, TOL), Some((1, None)));
    }

    #[test]
    fn a_flipped_direction_holds_the_current_count() {
        // One ready at 12 (ratio 1.2), three starting: 12/4/10 = 0.3 < 1 → flips → hold.
        let g = Groups {
            with_data: points(&[12.0]),
            unready: vec![1.0; 3],
            ..Groups::default()
        };
        assert_eq!(hpa(4, &g, 10.0, TOL), Some((4, Some(Limit::WarmingUp))));
    }

    #[test]
    fn cpu_is_utilisation_of_the_request_and_skips_warming_replicas() {
        let policy = Policy {
            targets: vec![Target::Cpu(0.5)],
            ..Policy::default()
        };
        let long = Duration::from_secs(60);
        let sample = Sample {
            current: 3,
            replicas: vec![
                ReplicaSample {
                    cpu_request: 2.0,
                    ..ReplicaSample::ready(long).with_cpu(1.5)
                },
                ReplicaSample::ready(long).with_cpu(0.75),
                // Start-up spike, ready for 1 s < warm_up 5 s: ignored.
                ReplicaSample::ready(Duration::from_secs(1)).with_cpu(4.0),
            ],
            ..Sample::default()
        };
        let out = evaluate(&policy.targets[0], &sample, &policy);
        // (1.5 + 0.75) / (2 + 1) = 75% of the request; / 50% = 1.5 → ratio > 1 with one
        // warming replica at 0: (2.25 + 0) / 4 = 56.25% → 1.125 → ceil(1.125 × 3) = 4.
        assert_eq!(out.reading.value, Some(0.75));
        assert_eq!(out.proposal, Some(4));
        assert_eq!(out.missing, 0);
    }

    #[test]
    fn latency_ratio_times_ready() {
        let policy = Policy {
            targets: vec![Target::LatencyP95(Duration::from_millis(200))],
            ..Policy::default()
        };
        let long = Duration::from_secs(60);
        let mut sample = Sample {
            current: 3,
            replicas: vec![ReplicaSample::ready(long); 3],
            latency_p95: Some(Duration::from_millis(300)),
            requests: 10,
            ..Sample::default()
        };
        let out = evaluate(&policy.targets[0], &sample, &policy);
        assert_eq!(out.reading.value, Some(300.0));
        assert_eq!(out.proposal, Some(5)); // ceil(1.5 × 3) = 5 (4.5 → 5)
        sample.latency_p95 = None;
        let out = evaluate(&policy.targets[0], &sample, &policy);
        assert_eq!((out.proposal, out.missing), (None, 1));
        sample.requests = 0;
        let out = evaluate(&policy.targets[0], &sample, &policy);
        assert_eq!((out.proposal, out.missing), (None, 0));
    }
}
