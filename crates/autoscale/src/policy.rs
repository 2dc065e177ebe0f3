//! [`Policy`]: one autoscaled service's settings, with their units and defaults.
//!
//! The defaults are HPA's `behavior` defaults rescaled from a 15 s sync period to shoal's
//! 1 s tick (scale up by the larger of +4 replicas or +100% per period, immediately), a
//! shorter scale-down stabilization than HPA's 300 s because local processes start in
//! milliseconds to seconds, and Knative's panic threshold (200%) and panic window (6 s).
//! The configuration crate parses the raw settings and calls [`Policy::validate`]; the
//! [`Autoscaler`](crate::Autoscaler) never panics on an unvalidated policy, but its
//! decisions are only meaningful for a valid one.

use std::fmt;
use std::time::Duration;

/// The settings of one autoscaled service.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Fewest replicas. 0 allows scale to zero after [`scale_to_zero_after`](Self::scale_to_zero_after)
    /// of idleness; while requests flow, 0 behaves like 1. Default 1.
    pub min: u32,
    /// Most replicas (at least 1, at least `min`). Default 10.
    pub max: u32,
    /// What to keep each replica at; the largest recommendation among them wins. At least one.
    /// Default `[Concurrency(10.0)]`.
    pub targets: Vec<Target>,
    /// Scale up only when the usage ratio exceeds `1 + tolerance_up`. Default 0.1.
    pub tolerance_up: f64,
    /// Scale down only when the usage ratio is below `1 - tolerance_down`. Default 0.1.
    pub tolerance_down: f64,
    /// Scale up only to the smallest recommendation of this window. Default 0 s (at once).
    pub up_stabilization: Duration,
    /// Scale down only to the largest recommendation of this window. Default 30 s.
    pub down_stabilization: Duration,
    /// How fast to scale up; the most permissive policy wins (HPA `selectPolicy: Max`).
    /// Empty = unlimited. Default `[Pods { 4, 1 s }, Percent { 100, 1 s }]`.
    pub up_policies: Vec<RatePolicy>,
    /// How fast to scale down; the most permissive policy (the biggest step) wins.
    /// Empty = unlimited. Default `[Percent { 50, 5 s }]`.
    pub down_policies: Vec<RatePolicy>,
    /// Enter panic mode when the short-window recommendation is at least this many times
    /// the ready replicas (Knative `panic-threshold-percentage` / 100). Greater than 1;
    /// infinity turns panic mode off. Default 2.0.
    pub panic_threshold: f64,
    /// The short window whose largest recommendation is compared with the panic threshold.
    /// Default 6 s.
    pub panic_window: Duration,
    /// Leave panic mode after this long without crossing the threshold. Default 10 s.
    pub panic_hold: Duration,
    /// With `min == 0`: scale to zero after this long without a request (none received, none
    /// queued). Default 60 s.
    pub scale_to_zero_after: Duration,
    /// CPU samples of replicas ready for less than this are ignored, as HPA's
    /// `cpu-initialization-period` does (start-up CPU spikes must not scale up). Default 5 s.
    pub warm_up: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min: 1,
            max: 10,
            targets: vec![Target::Concurrency(10.0)],
            tolerance_up: 0.1,
            tolerance_down: 0.1,
            up_stabilization: Duration::ZERO,
            down_stabilization: Duration::from_secs(30),
            up_policies: vec![
                RatePolicy::Pods {
                    value: 4,
                    period: Duration::from_secs(1),
                },
                RatePolicy::Percent {
                    value: 100,
                    period: Duration::from_secs(1),
                },
            ],
            down_policies: vec![RatePolicy::Percent {
                value: 50,
                period: Duration::from_secs(5),
            }],
            panic_threshold: 2.0,
            panic_window: Duration::from_secs(6),
            panic_hold: Duration::from_secs(10),
            scale_to_zero_after: Duration::from_secs(60),
            warm_up: Duration::from_secs(5),
        }
    }
}

/// A metric and the value to keep it at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// CPU utilisation of the request per replica: 0.5 = 50% of `cpu_request` cores.
    Cpu(f64),
    /// Resident memory per replica, in bytes.
    Memory(u64),
    /// Requests in flight per replica (averaged over the tick).
    Concurrency(f64),
    /// Requests per second per replica.
    Rps(f64),
    /// The service's 95th-percentile latency, measured at the gateway.
    LatencyP95(Duration),
    /// The backlog of a queue the service consumes, read from its broker
    /// ([`Sample::backlog`](crate::Sample::backlog)); see [`crate::backlog`]. At most one
    /// per policy.
    Backlog(Backlog),
}

impl Target {
    /// The name used in readings and reasons: `cpu`, `memory`, `concurrency`, `rps`,
    /// `latency_p95`, `backlog`.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Cpu(_) => "cpu",
            Target::Memory(_) => "memory",
            Target::Concurrency(_) => "concurrency",
            Target::Rps(_) => "rps",
            Target::LatencyP95(_) => "latency_p95",
            Target::Backlog(_) => "backlog",
        }
    }

    /// The target as a number in the unit of its [`Reading`](crate::Reading): a fraction for
    /// cpu, bytes for memory, milliseconds for latency, messages per replica for backlog.
    pub fn value(&self) -> f64 {
        match *self {
            Target::Cpu(v) | Target::Concurrency(v) | Target::Rps(v) => v,
            Target::Memory(b) => b as f64,
            Target::LatencyP95(d) => d.as_secs_f64() * 1000.0,
            Target::Backlog(b) => b.per_replica as f64,
        }
    }
}

/// Scaling on the backlog of a queue the service consumes (KEDA's queue scalers, plus a
/// time-to-drain target and, with a consumed counter, a keep-up floor from the measured
/// arrival rate). The theory is in [`crate::backlog`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    /// Messages waiting per replica: the backlog proposes `ceil(backlog / per_replica)`
    /// replicas (KEDA's `lagThreshold`, `lagCount`, `queueLength`). At least 1.
    pub per_replica: u64,
    /// With `min == 0`, the backlog keeps the service awake only while it is above this
    /// many messages, and wakes a service at zero once it is (KEDA's activation threshold:
    /// strictly above). Ignored when `min >= 1`. Default 0: any message wakes it.
    pub activation: u64,
    /// Time-to-drain target: enough replicas to consume the backlog within this time at
    /// the measured per-replica consumption rate, `ceil(backlog / (rate × drain_within))`;
    /// the larger of this and the `per_replica` proposal wins. Until a rate has been
    /// measured, `per_replica` alone decides. Default none.
    pub drain_within: Option<Duration>,
    /// Time constant of the exponentially weighted average of the backlog that the
    /// proposals are computed from, so that a noisy backlog does not move the count
    /// (activation, waking and panic mode use the raw reading). Zero: no smoothing.
    /// Default 5 s.
    pub smoothing: Duration,
    /// Never propose more replicas than the queue has partitions
    /// ([`BacklogSample::partitions`](crate::BacklogSample::partitions), Kafka), since
    /// consumers beyond that would idle (KEDA's `allowIdleConsumers: false`). Default true.
    pub cap_at_partitions: bool,
    /// What to run while the broker cannot be read; `None`: hold the current count (never
    /// scale down). Default none.
    pub fallback: Option<Fallback>,
}

impl Backlog {
    /// A backlog target of `per_replica` messages per replica, every other field at its
    /// default.
    pub fn new(per_replica: u64) -> Backlog {
        Backlog {
            per_replica,
            activation: 0,
            drain_within: None,
            smoothing: Duration::from_secs(5),
            cap_at_partitions: true,
            fallback: None,
        }
    }
}

/// KEDA's `fallback`: after `after` consecutive failed reads of the broker, the backlog
/// target proposes `replicas` (and never zero) until a read succeeds again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback {
    /// Consecutive failed reads before the fallback applies (KEDA's `failureThreshold`). At
    /// least 1.
    pub after: u32,
    /// The count proposed meanwhile: at least 1, at most `max`.
    pub replicas: u32,
}

/// A limit on how much the replica count may change within a period (HPA's
/// `HPAScalingPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatePolicy {
    /// At most `value` replicas added (or removed) per `period`.
    Pods {
        /// Replicas.
        value: u32,
        /// The sliding period.
        period: Duration,
    },
    /// At most `value`% of the count at the start of the period added (or removed) per
    /// `period`.
    Percent {
        /// Percent.
        value: u32,
        /// The sliding period.
        period: Duration,
    },
}

impl RatePolicy {
    /// The sliding period of the policy.
    pub fn period(&self) -> Duration {
        match *self {
            RatePolicy::Pods { period, .. } | RatePolicy::Percent { period, .. } => period,
        }
    }
}

impl fmt::Display for RatePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RatePolicy::Pods { value, period } => {
                write!(
                    f,
                    "Pods {value} per {}",
                    crate::decision::fmt_duration(period)
                )
            }
            RatePolicy::Percent { value, period } => {
                write!(
                    f,
                    "Percent {value} per {}",
                    crate::decision::fmt_duration(period)
                )
            }
        }
    }
}

/// Why a [`Policy`] is invalid: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPolicy {
    /// The field, as named in [`Policy`] (`targets[1]`, `up_policies[0]`, …).
    pub field: String,
    /// What is wrong, as a sentence fragment.
    pub reason: String,
}

impl fmt::Display for InvalidPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for InvalidPolicy {}

impl Policy {
    /// Checks the invariants the fields document; the first violation is returned.
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        let bad = |field: &str, reason: String| {
            Err(InvalidPolicy {
                field: field.to_owned(),
                reason,
            })
        };
        if self.max == 0 {
            return bad("max", "must be at least 1".into());
        }
        if self.min > self.max {
            return bad("min", format!("{} is above max ({})", self.min, self.max));
        }
        if self.targets.is_empty() {
            return bad("targets", "at least one target is needed".into());
        }
        for (i, t) in self.targets.iter().enumerate() {
            let v = t.value();
            if !(v.is_finite() && v > 0.0) {
                return bad(
                    &format!("targets[{i}]"),
                    format!("{} target must be a positive number, got {v}", t.name()),
                );
            }
        }
        let mut backlogs = 0;
        for (i, t) in self.targets.iter().enumerate() {
            let Target::Backlog(b) = t else { continue };
            let field = format!("targets[{i}]");
            backlogs += 1;
            if backlogs > 1 {
                return bad(&field, "only one backlog target is allowed".into());
            }
            if b.drain_within.is_some_and(|d| d.is_zero()) {
                return bad(&field, "drain_within must be positive".into());
            }
            if let Some(f) = b.fallback {
                if f.after == 0 {
                    return bad(&field, "fallback after must be at least 1 read".into());
                }
                if f.replicas == 0 || f.replicas > self.max {
                    return bad(
                        &field,
                        format!(
                            "fallback replicas must be between 1 and max ({}), got {}",
                            self.max, f.replicas
                        ),
                    );
                }
            }
        }
        for (name, tol) in [
            ("tolerance_up", self.tolerance_up),
            ("tolerance_down", self.tolerance_down),
        ] {
            if !(0.0..1.0).contains(&tol) {
                return bad(name, format!("must be in [0, 1), got {tol}"));
            }
        }
        for (name, list) in [
            ("up_policies", &self.up_policies),
            ("down_policies", &self.down_policies),
        ] {
            for (i, p) in list.iter().enumerate() {
                let value = match *p {
                    RatePolicy::Pods { value, .. } | RatePolicy::Percent { value, .. } => value,
                };
                if value == 0 {
                    return bad(&format!("{name}[{i}]"), "value must be at least 1".into());
                }
                if p.period().is_zero() {
                    return bad(&format!("{name}[{i}]"), "period must be positive".into());
                }
            }
        }
        // Infinity is allowed: panic mode off.
        if self.panic_threshold.is_nan() || self.panic_threshold <= 1.0 {
            return bad(
                "panic_threshold",
                format!("must be above 1.0, got {}", self.panic_threshold),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_valid() {
        assert_eq!(Policy::default().validate(), Ok(()));
    }

    #[test]
    fn validation_names_the_field() {
        let p = Policy {
            min: 5,
            max: 3,
            ..Policy::default()
        };
        assert_eq!(p.validate().unwrap_err().field, "min");

        let p = Policy {
            targets: vec![Target::Rps(50.0), Target::Cpu(0.0)],
            ..Policy::default()
        };
        let err = p.validate().unwrap_err();
        assert_eq!(err.field, "targets[1]");
        assert!(err.to_string().contains("cpu target"), "{err}");

        let p = Policy {
            targets: vec![],
            ..Policy::default()
        };
        assert_eq!(p.validate().unwrap_err().field, "targets");

        let p = Policy {
            down_policies: vec![RatePolicy::Pods {
                value: 1,
                period: Duration::ZERO,
            }],
            ..Policy::default()
        };
        assert_eq!(p.validate().unwrap_err().field, "down_policies[0]");

        let p = Policy {
            tolerance_down: 1.0,
            ..Policy::default()
        };
        assert_eq!(p.validate().unwrap_err().field, "tolerance_down");

        let p = Policy {
            panic_threshold: 1.0,
            ..Policy::default()
        };
        assert_eq!(p.validate().unwrap_err().field, "panic_threshold");

        let p = Policy {
            max: 0,
            min: 0,
            ..Policy::default()
        };
        assert_eq!(p.validate().unwrap_err().field, "max");
    }

    #[test]
    fn backlog_targets_are_checked() {
        let with = |b: Backlog| Policy {
            max: 8,
            targets: vec![Target::Rps(5.0), Target::Backlog(b)],
            ..Policy::default()
        };
        assert_eq!(with(Backlog::new(100)).validate(), Ok(()));
        assert_eq!(Target::Backlog(Backlog::new(100)).value(), 100.0);
        let err = with(Backlog::new(0)).validate().unwrap_err();
        assert_eq!(err.field, "targets[1]");
        assert!(err.reason.contains("backlog target"), "{err}");
        let fallback = |after, replicas| Backlog {
            fallback: Some(Fallback { after, replicas }),
            ..Backlog::new(100)
        };
        assert_eq!(with(fallback(3, 8)).validate(), Ok(()));
        let err = with(fallback(3, 9)).validate().unwrap_err();
        assert_eq!(
            err.reason,
            "fallback replicas must be between 1 and max (8), got 9"
        );
        assert!(with(fallback(3, 0)).validate().is_err());
        assert!(with(fallback(0, 2)).validate().is_err());
        let err = with(Backlog {
            drain_within: Some(Duration::ZERO),
            ..Backlog::new(100)
        })
        .validate()
        .unwrap_err();
        assert_eq!(err.reason, "drain_within must be positive");
        let two = Policy {
            targets: vec![
                Target::Backlog(Backlog::new(1)),
                Target::Backlog(Backlog::new(2)),
            ],
            ..Policy::default()
        };
        assert_eq!(
            two.validate().unwrap_err().to_string(),
            "targets[1]: only one backlog target is allowed"
        );
    }

    #[test]
    fn rate_policies_display_like_the_reason_says() {
        let p = RatePolicy::Pods {
            value: 4,
            period: Duration::from_secs(1),
        };
        assert_eq!(p.to_string(), "Pods 4 per 1s");
        let p = RatePolicy::Percent {
            value: 50,
            period: Duration::from_millis(1500),
        };
        assert_eq!(p.to_string(), "Percent 50 per 1.5s");
    }
}
