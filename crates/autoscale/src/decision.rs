//! [`Decision`]: the desired count, and why, in the words of `kubectl get hpa`.
//!
//! Users misread autoscalers mostly because they cannot see why a count did not move
//! (kubernetes#101371: "800% CPU, yet replicas rose 2→3 only after minutes"). So every
//! decision carries the readings against their targets (the `TARGETS` column: `75%/50%,
//! 23.5/10`), the raw recommendation, the one stage that kept the count from it
//! ([`Limit`], HPA's `ScaleUpLimit`/`ScaleDownStabilized`/`TooManyReplicas`… conditions),
//! and a sentence that puts them together.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// What the autoscaler wants for one service after one tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The replica count to run.
    pub desired: u32,
    /// The count the sample said was running ([`Sample::current`](crate::Sample::current)).
    pub current: u32,
    /// The largest of the targets' proposals (before stabilization, rate limits, panic and
    /// bounds); `None` when no target had data or the count was decided without them (wake,
    /// scale to zero).
    pub recommendation: Option<u32>,
    /// One per target, in the policy's order.
    pub readings: Vec<Reading>,
    /// What kept `desired` from the recommendation, if anything did.
    pub limited_by: Option<Limit>,
    /// Whether the service is in panic mode.
    pub panic: bool,
    /// A sentence saying why, with the readings against their targets.
    pub reason: String,
    /// The queue behind a [`Target::Backlog`](crate::Target::Backlog), if the policy has
    /// one.
    pub backlog: Option<BacklogStatus>,
}

/// What the autoscaler knows of a service's queue, for status and the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacklogStatus {
    /// Messages waiting at the last successful read; `None` before the first.
    pub messages: Option<u64>,
    /// The smoothed backlog the proposals were computed from.
    pub smoothed: Option<f64>,
    /// The consumed counter at the last successful read, if the broker has one.
    pub consumed: Option<u64>,
    /// Partitions of the topic at the last successful read (Kafka).
    pub partitions: Option<u32>,
    /// Messages consumed per second per replica, as last measured (only while the
    /// replicas were kept busy); `None` until measured.
    pub rate_per_replica: Option<f64>,
    /// Messages arriving per second, over the reads of the last 10 s: consumed plus the
    /// backlog's growth. `None` without a consumed counter (or before two reads).
    pub arrival_rate: Option<f64>,
    /// Whether the last known backlog is above the activation threshold.
    pub active: bool,
    /// Failed reads in a row (0 after a successful read).
    pub failures: u32,
    /// The last failed read's message, while reads fail.
    pub error: Option<String>,
    /// Whether the fallback count is in force.
    pub fallback: bool,
}

impl Decision {
    /// The readings against their targets, as `kubectl get hpa`'s TARGETS column:
    /// `75%/50%, 23.5/10` (`<unknown>` for a reading without data).
    pub fn targets_column(&self) -> String {
        self.readings
            .iter()
            .map(Reading::column)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One target's reading in one tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    /// `cpu`, `memory`, `concurrency`, `rps`, `latency_p95` or `backlog`.
    pub name: &'static str,
    /// The per-replica average over ready replicas with data (cpu: utilisation of the
    /// request as a fraction; memory: bytes), the service's p95 in milliseconds, or the
    /// (smoothed) backlog per replica at the current count (the whole backlog at zero
    /// replicas), as Kubernetes shows an `AverageValue` external metric; `None` without
    /// data.
    pub value: Option<f64>,
    /// The target, in the same unit.
    pub target: f64,
    /// The count this target proposed; `None` without data.
    pub recommendation: Option<u32>,
    /// Ready replicas that reported no value (for latency: 1 when there was traffic but no
    /// p95). Any of them forbids scaling down.
    pub missing: u32,
}

impl Reading {
    /// `value/target` in the metric's unit: `75%/50%`, `23.5/10`, `120Mi/256Mi`,
    /// `230ms/200ms`, `<unknown>/10`.
    pub fn column(&self) -> String {
        let value = match self.value {
            Some(v) => self.format(v),
            None => "<unknown>".to_owned(),
        };
        format!("{value}/{}", self.format(self.target))
    }

    fn format(&self, v: f64) -> String {
        match self.name {
            "cpu" => format!("{}%", fmt_number(v * 100.0)),
            "memory" => fmt_bytes(v),
            "latency_p95" => format!("{}ms", fmt_number(v)),
            _ => fmt_number(v),
        }
    }

    /// `cpu 75%/50%`, `concurrency 23.5/10 per replica`.
    pub(crate) fn describe(&self) -> String {
        let per = match self.name {
            "concurrency" | "rps" | "memory" | "backlog" => " per replica",
            _ => "",
        };
        format!("{} {}{per}", self.name, self.column())
    }
}

/// The stage that kept `desired` from the recommendation (HPA's conditions, Knative's panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Limit {
    /// Scale-up held to the smallest recommendation of the up window.
    UpStabilization,
    /// Scale-down held to the largest recommendation of the down window.
    DownStabilization,
    /// Scale-up capped by the up rate policies.
    UpRatePolicy,
    /// Scale-down capped by the down rate policies.
    DownRatePolicy,
    /// Raised to the policy's minimum (or to 1 while `min == 0` is not idle long enough).
    Min,
    /// Lowered to the policy's maximum.
    Max,
    /// Scale-down forbidden because some metric is missing, or no target has data.
    MissingMetrics,
    /// The usage ratio is within the tolerance band: no change.
    Tolerance,
    /// Panic mode does not scale down (or holds above the recommendation).
    Panic,
    /// Replicas that are still starting (or warming up) hold the count.
    WarmingUp,
}

impl Limit {
    /// The kebab-case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::UpStabilization => "up-stabilization",
            Limit::DownStabilization => "down-stabilization",
            Limit::UpRatePolicy => "up-rate-policy",
            Limit::DownRatePolicy => "down-rate-policy",
            Limit::Min => "min",
            Limit::Max => "max",
            Limit::MissingMetrics => "missing-metrics",
            Limit::Tolerance => "tolerance",
            Limit::Panic => "panic",
            Limit::WarmingUp => "warming-up",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A number with at most one decimal: `23.5`, `10`, `0.4`.
pub(crate) fn fmt_number(v: f64) -> String {
    let s = format!("{v:.1}");
    match s.strip_suffix(".0") {
        Some(int) => int.to_owned(),
        None => s,
    }
}

/// A count with thousands separators: `4,210` (the CLI's tables print counts with it too).
pub fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units as Kubernetes prints them: `512`, `64Ki`, `120Mi`, `1.5Gi`.
pub(crate) fn fmt_bytes(v: f64) -> String {
    const KI: f64 = 1024.0;
    if v >= KI * KI * KI {
        format!("{}Gi", fmt_number(v / (KI * KI * KI)))
    } else if v >= KI * KI {
        format!("{}Mi", fmt_number(v / (KI * KI)))
    } else if v >= KI {
        format!("{}Ki", fmt_number(v / KI))
    } else {
        fmt_number(v)
    }
}

/// A duration as `5s`, `1.5s` or `500ms`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", fmt_number(d.as_secs_f64() * 1000.0))
    } else {
        format!("{}s", fmt_number(d.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(name: &'static str, value: Option<f64>, target: f64) -> Reading {
        Reading {
            name,
            value,
            target,
            recommendation: None,
            missing: 0,
        }
    }

    #[test]
    fn columns_look_like_kubectl() {
        let d = Decision {
            desired: 3,
            current: 2,
            recommendation: Some(3),
            readings: vec![
                reading("cpu", Some(0.75), 0.5),
                reading("concurrency", Some(23.46), 10.0),
                reading(
                    "memory",
                    Some(120.0 * 1024.0 * 1024.0),
                    256.0 * 1024.0 * 1024.0,
                ),
                reading("latency_p95", Some(230.0), 200.0),
                reading("rps", None, 100.0),
            ],
            limited_by: None,
            panic: false,
            reason: String::new(),
            backlog: None,
        };
        assert_eq!(
            d.targets_column(),
            "75%/50%, 23.5/10, 120Mi/256Mi, 230ms/200ms, <unknown>/100"
        );
    }

    #[test]
    fn limits_serialize_in_kebab_case_like_their_display() {
        for l in [
            Limit::UpStabilization,
            Limit::DownStabilization,
            Limit::UpRatePolicy,
            Limit::DownRatePolicy,
            Limit::Min,
            Limit::Max,
            Limit::MissingMetrics,
            Limit::Tolerance,
            Limit::Panic,
            Limit::WarmingUp,
        ] {
            assert_eq!(serde_json::to_string(&l).unwrap(), format!("\"{l}\""));
        }
    }

    #[test]
    fn durations_and_numbers() {
        assert_eq!(fmt_duration(Duration::from_secs(60)), "60s");
        assert_eq!(fmt_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(fmt_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(fmt_number(10.0), "10");
        assert_eq!(fmt_number(0.04), "0");
        assert_eq!(fmt_bytes(512.0), "512");
        assert_eq!(fmt_bytes(1.5 * 1024.0 * 1024.0 * 1024.0), "1.5Gi");
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(4210), "4,210");
        assert_eq!(fmt_count(1_234_567), "1,234,567");
    }
}
