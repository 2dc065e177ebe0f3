//! [`Autoscaler`]: one service's controller, one [`Decision`] per tick.
//!
//! # Theory
//!
//! The controller is Kubernetes HPA (autoscaling/v2 with `behavior`) with Knative KPA's
//! panic mode and scale to zero. Each tick goes through these stages, in order; the last
//! stage that moved the count away from the recommendation is the decision's
//! [`limited_by`](Decision::limited_by).
//!
//! 1. **Per-target proposals** ([`crate::metrics`], HPA `replica_calculator.go`):
//!    `ceil(usage ratio × ready replicas)`, with a tolerance band (default ±10%) inside which
//!    the proposal is the current count ([`Limit::Tolerance`]), starting replicas counted
//!    at zero load on scale-up and left out on scale-down, CPU samples of replicas ready for
//!    less than [`Policy::warm_up`] treated as starting, and missing values counted as zero
//!    on scale-up and as the target on scale-down.
//! 2. **Largest proposal wins** (HPA `computeReplicasForMetrics`): the *recommendation*. A
//!    target without data proposes nothing; if none has data, the recommendation is the
//!    current count.
//! 3. **Missing data never scales down** (HPA since kubernetes#99514): if any ready replica
//!    lacks a value for any target, or a latency target has no p95 while requests flowed,
//!    a recommendation below the current count is replaced by the current count
//!    ([`Limit::MissingMetrics`]) and not remembered. An outage of the metrics pipeline
//!    reads as "unknown", never as "idle" (kubernetes#104387).
//! 4. **Stabilization** (HPA `stabilizeRecommendationWithBehaviors`): every recommendation
//!    is stored with its time. `up = min` of the recommendations within
//!    [`Policy::up_stabilization`], `down = max` within [`Policy::down_stabilization`]
//!    (both including this tick's); start from the current count, raise it to `up` if below,
//!    lower it to `down` if above. So a scale-down follows the *highest* load of the last
//!    30 s (a dip does not scale down), and a scale-up can be made to wait for a sustained
//!    rise. A new `Autoscaler` behaves as if the first sample's current count had been
//!    recommended when it was created, so a restart that lost history cannot scale down
//!    before a full down window has been observed (KPA starts in panic mode for the same
//!    reason).
//! 5. **Rate policies** ([`crate::rate`], HPA `convertDesiredReplicasWithBehaviorRate`):
//!    the step is capped by the most permissive policy over its sliding period (default up:
//!    +4 replicas or +100% per second, whichever is more; down: −50% per 5 s).
//! 6. **Panic mode** (KPA `(*autoscaler).Scale`): the *panic recommendation* is the largest
//!    load-based count of the last [`Policy::panic_window`] (6 s), where a tick's count is
//!    the largest over targets of `ceil(ratio × ready replicas with data)` without
//!    tolerance or holds (KPA's `ceil(observed panic concurrency / target)`; a held
//!    proposal equal to a current count swollen by starting replicas must not look like a
//!    burst). When it reaches
//!    [`Policy::panic_threshold`] × the ready replicas (at least 1), the service enters
//!    (or stays in) panic: the count jumps at once to at least the panic recommendation,
//!    bypassing up stabilization and up rate policies, and while in panic it never
//!    decreases (a ratchet on the count, and never below the current count). Panic ends
//!    [`Policy::panic_hold`] after the threshold was last reached.
//! 7. **Bounds**: clamp to `[min, max]`; `min == 0` counts as 1 here, so a service with
//!    traffic never reaches zero through the formulas.
//! 8. **Scale to zero** (KPA `handleScaleToZero`, KEDA activation): with `min == 0`, once
//!    no request has been received or queued for [`Policy::scale_to_zero_after`]
//!    (continuously; each request, queued request or [`Autoscaler::wake`] restarts the
//!    clock), the count goes straight to 0, bypassing stabilization, rate policies and
//!    panic: a service that received nothing for the whole period has no load to protect,
//!    and waking is immediate. At zero, a queued request (or a wake) brings it to
//!    `max(1, min)` at once; otherwise it stays at 0.
//!
//! A [`Target::Backlog`] joins in at stages 1, 6 and 8 ([`crate::backlog`]): its proposal
//! is `ceil(backlog / per_replica)` (or the time-to-drain count, or the keep-up floor that
//! the measured arrivals call for, whichever is largest, capped at the partitions); its raw
//! reading feeds panic mode; a backlog above the
//! activation threshold, or one that cannot be read, keeps the service from being idle;
//! and at zero such a backlog wakes the service to its proposal within the up rate
//! policies (the fallback count after enough failed reads).
//!
//! # Feeding it
//!
//! [`Sample::current`] must be the count the driver was last asked to run (the previous
//! [`Decision::desired`], or what [`Autoscaler::wake`] returned), not the number of
//! processes that happen to exist: rate policies measure steps from it and panic never
//! goes below it. The scale events the rate policies count are the differences between
//! `current` and `desired`; the wiring is expected to apply each decision.

use std::time::Duration;

use crate::backlog::{self, BacklogState};
use crate::decision::{Decision, Limit, Reading, fmt_duration, fmt_number};
use crate::history::{History, inside};
use crate::metrics::{self, Outcome, Tolerance};
use crate::policy::{Backlog, Policy, Target};
use crate::rate::ScaleEvents;
use crate::sample::Sample;

/// One autoscaled service's controller state: its policy and the history it decides from.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    policy: Policy,
    created: Duration,
    /// The first sample's current count, treated as recommended at `created`.
    seed: Option<u32>,
    /// Remembered recommendations (stabilization windows).
    recommendations: History<u32>,
    /// Remembered load-based counts (panic window).
    demands: History<u32>,
    /// Changes made (rate policies).
    events: ScaleEvents,
    panic: Option<PanicState>,
    /// The last time a request was received or queued, or a wake happened.
    last_busy: Duration,
    /// The last [`Autoscaler::wake`] or wake by a queued request or a backlog.
    woken_at: Option<Duration>,
    /// The queue behind a backlog target.
    backlog: BacklogState,
}

#[derive(Debug, Clone, Copy)]
struct PanicState {
    /// The last tick at which the panic recommendation reached the threshold.
    last_over: Duration,
    /// The ratchet: the highest count decided in this panic.
    max_desired: u32,
}

impl Autoscaler {
    /// A controller for one service, created at `now`.
    pub fn new(policy: Policy, now: Duration) -> Autoscaler {
        Autoscaler {
            policy,
            created: now,
            seed: None,
            recommendations: History::default(),
            demands: History::default(),
            events: ScaleEvents::default(),
            panic: None,
            last_busy: now,
            woken_at: None,
            backlog: BacklogState::default(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Replaces the policy (on a configuration reload), keeping the recommendation and scale
    /// histories, the panic state and the idle clock. Histories are kept only as long as the
    /// windows of the policy in force at each tick needed them, so a lengthened window fills
    /// up over its new length.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Whether the service is in panic mode (as of the last tick).
    pub fn in_panic(&self) -> bool {
        self.panic.is_some()
    }

    /// A request arrived for the service while it is at zero replicas: returns the count
    /// to wake it to, `max(1, min)`, at once (instead of waiting for the next tick). It
    /// also restarts the idle clock, so the following ticks keep at least that count until
    /// the service has been idle for [`Policy::scale_to_zero_after`] again, even if a
    /// sample still says `current: 0`. The wiring should run the returned count and pass it
    /// as the next [`Sample::current`].
    pub fn wake(&mut self, now: Duration) -> u32 {
        self.last_busy = self.last_busy.max(now);
        self.woken_at = Some(now);
        self.wake_count()
    }

    fn wake_count(&self) -> u32 {
        self.policy.min.max(1).min(self.policy.max.max(1))
    }

    /// Decides the count for one tick.
    pub fn tick(&mut self, sample: &Sample) -> Decision {
        let now = sample.now;
        let seed = *self.seed.get_or_insert(sample.current);
        let queue = self.backlog_target();
        if let Some(b) = &queue {
            let ready = sample.replicas.iter().filter(|r| r.ready).count() as u32;
            self.backlog.observe(sample, ready, b);
        }
        let traffic = sample.requests > 0 || sample.queued > 0;
        // A backlog above the activation threshold, or one that cannot be read, is work.
        let busy = traffic || queue.is_some_and(|b| self.backlog.busy(&b));
        if busy {
            self.last_busy = self.last_busy.max(now);
        }
        self.prune(now);
        let tolerance = Tolerance {
            up: self.policy.tolerance_up,
            down: self.policy.tolerance_down,
        };
        let outcomes: Vec<Outcome> = self
            .policy
            .targets
            .iter()
            .map(|t| match t {
                Target::Backlog(b) => backlog::evaluate(b, &self.backlog, sample, tolerance),
                _ => metrics::evaluate(t, sample, &self.policy),
            })
            .collect();

        let idle_for = now.saturating_sub(self.last_busy);
        let mut decision = if sample.current == 0 {
            self.at_zero(sample, outcomes, traffic)
        } else if self.policy.min == 0 && !busy && idle_for >= self.policy.scale_to_zero_after {
            self.scale_to_zero(sample, outcomes, idle_for)
        } else {
            self.scale(sample, outcomes, seed)
        };
        decision.backlog = queue.map(|b| self.backlog.status(&b));
        decision
    }

    /// The policy's backlog target, if it has one.
    fn backlog_target(&self) -> Option<Backlog> {
        self.policy.targets.iter().find_map(|t| match t {
            Target::Backlog(b) => Some(*b),
            _ => None,
        })
    }

    /// Why the service counts as idle: "no request received or queued", and the backlog.
    fn idle_text(&self) -> String {
        match self.backlog_target() {
            Some(b) => format!(
                "{}, and no request received or queued",
                backlog::activity_text(&b, &self.backlog)
            ),
            None => "no request received or queued".to_owned(),
        }
    }

    /// At zero: the count the backlog wakes the service to, and why; `None` if it does not.
    fn backlog_wake(&self, now: Duration) -> Option<(u32, String)> {
        let b = self.backlog_target()?;
        let (lo, hi) = (self.wake_count(), self.policy.max.max(1));
        if let Some(f) = self.backlog.fallback(&b) {
            let n = f.replicas.clamp(lo, hi);
            let activity = backlog::activity_text(&b, &self.backlog);
            return Some((
                n,
                format!("{activity} at zero replicas: fallback, waking to {n}"),
            ));
        }
        let want = backlog::wake_count(&b, &self.backlog)?;
        let mut n = want.clamp(lo, hi);
        let mut limited = None;
        if let Some((limit, policy)) = self.events.up_limit(now, 0, &self.policy.up_policies)
            && n > limit.max(lo)
        {
            n = limit.max(lo);
            limited = Some(format!("scale-up limited by policy {policy}"));
        }
        let activity = backlog::activity_text(&b, &self.backlog);
        let mut reason = format!("{activity} at zero replicas → waking to {n}");
        if n != want {
            reason.push_str(&format!(" (the backlog calls for {want}"));
            if let Some(l) = limited {
                reason.push_str(&format!("; {l}"));
            }
            reason.push(')');
        }
        Some((n, reason))
    }

    fn prune(&mut self, now: Duration) {
        let p = &self.policy;
        let keep = p
            .up_stabilization
            .max(p.down_stabilization)
            .max(p.panic_window);
        self.recommendations.prune(now, keep);
        self.demands.prune(now, p.panic_window);
        let period = p
            .up_policies
            .iter()
            .chain(&p.down_policies)
            .map(|r| r.period())
            .max()
            .unwrap_or_default();
        self.events.prune(now, period);
    }

    /// The service runs no replica.
    fn at_zero(&mut self, s: &Sample, outcomes: Vec<Outcome>, traffic: bool) -> Decision {
        self.panic = None;
        let now = s.now;
        let wake = self.wake_count();
        let (desired, limited_by, reason) = if self.policy.min > 0 {
            (
                wake,
                Some(Limit::Min),
                format!(
                    "0 replicas running, below min {} → {wake} replicas",
                    self.policy.min
                ),
            )
        } else if traffic {
            self.woken_at = Some(now);
            (
                wake,
                None,
                format!(
                    "{} requests queued and {} received at zero replicas → waking to {wake}",
                    s.queued, s.requests
                ),
            )
        } else if let Some((n, reason)) = self.backlog_wake(now) {
            self.woken_at = Some(now);
            (n, None, reason)
        } else if let Some(b) = self.backlog_target().filter(|_| self.backlog.failing()) {
            (
                0,
                None,
                format!(
                    "staying at zero replicas: {} (only a read above the activation threshold, \
                     or the fallback, wakes it)",
                    backlog::activity_text(&b, &self.backlog)
                ),
            )
        } else if self
            .woken_at
            .is_some_and(|w| inside(w, now, self.policy.scale_to_zero_after))
        {
            (
                wake,
                None,
                format!(
                    "woken {} ago, not idle for {} yet → {wake} replicas",
                    fmt_duration(now.saturating_sub(self.woken_at.unwrap_or(now))),
                    fmt_duration(self.policy.scale_to_zero_after)
                ),
            )
        } else {
            (
                0,
                None,
                format!(
                    "idle at zero replicas ({} for {})",
                    self.idle_text(),
                    fmt_duration(now.saturating_sub(self.last_busy))
                ),
            )
        };
        self.events.record(now, 0, desired);
        decision(s, desired, None, outcomes, limited_by, false, reason)
    }

    /// Idle long enough with `min == 0`: straight to zero.
    fn scale_to_zero(
        &mut self,
        s: &Sample,
        outcomes: Vec<Outcome>,
        idle_for: Duration,
    ) -> Decision {
        self.panic = None;
        self.woken_at = None;
        self.events.record(s.now, s.current, 0);
        let reason = format!(
            "idle for {} ({}; scale to zero after {}) → 0 replicas",
            fmt_duration(idle_for),
            self.idle_text(),
            fmt_duration(self.policy.scale_to_zero_after)
        );
        decision(s, 0, None, outcomes, None, false, reason)
    }

    /// The HPA path with panic mode: stages 1–7 of the module documentation.
    fn scale(&mut self, s: &Sample, outcomes: Vec<Outcome>, seed: u32) -> Decision {
        let now = s.now;
        let current = s.current;
        let Autoscaler {
            policy: p,
            created,
            recommendations,
            demands,
            events,
            panic,
            ..
        } = self;
        let hi = p.max;
        let lo = p.min.max(1).min(hi);
        let ready = s.replicas.iter().filter(|r| r.ready).count() as u32;
        let missing: u32 = outcomes.iter().map(|o| o.missing).sum();
        let cpu_target = p.targets.iter().any(|t| matches!(t, Target::Cpu(_)));
        let starting = s
            .replicas
            .iter()
            .filter(|r| !r.ready || (cpu_target && r.ready_for < p.warm_up))
            .count();

        // 1–2. The largest proposal; on a tie an unheld proposal wins over a held one.
        let mut best: Option<(u32, Option<Limit>)> = None;
        for o in &outcomes {
            let Some(n) = o.proposal else { continue };
            best = match best {
                Some((b, h)) if b > n || (b == n && h.is_none()) => Some((b, h)),
                _ => Some((n, o.hold)),
            };
        }
        let recommendation = best.map(|(n, _)| n);
        let (mut rec, mut hold) = match best {
            Some(b) => b,
            None => {
                let why = if missing == 0 && starting > 0 {
                    Limit::WarmingUp
                } else {
                    Limit::MissingMetrics
                };
                (current, Some(why))
            }
        };

        // 3. Missing data never scales down.
        let blocked = missing > 0 && rec < current;
        if blocked {
            rec = current;
            hold = Some(Limit::MissingMetrics);
        }

        // 4. Stabilization.
        let up_rec = recommendations
            .within(now, p.up_stabilization)
            .fold(rec, u32::min);
        let mut down_rec = recommendations
            .within(now, p.down_stabilization)
            .fold(rec, u32::max);
        if inside(*created, now, p.down_stabilization) {
            down_rec = down_rec.max(seed);
        }
        let mut d = current.max(up_rec).min(down_rec);
        let mut stage: Option<(Limit, String)> = None;
        if rec > current && d < rec {
            stage = Some((
                Limit::UpStabilization,
                format!(
                    "scale-up stabilized at {d} (smallest recommendation of the last {})",
                    fmt_duration(p.up_stabilization)
                ),
            ));
        } else if rec < current && d > rec {
            stage = Some((
                Limit::DownStabilization,
                format!(
                    "scale-down stabilized at {d} (largest recommendation of the last {})",
                    fmt_duration(p.down_stabilization)
                ),
            ));
        }

        // 5. Rate policies.
        if d > current
            && let Some((limit, policy)) = events.up_limit(now, current, &p.up_policies)
            && d > limit
        {
            d = limit;
            stage = Some((
                Limit::UpRatePolicy,
                format!("scale-up limited to {d} by policy {policy}"),
            ));
        } else if d < current
            && let Some((limit, policy)) = events.down_limit(now, current, &p.down_policies)
            && d < limit
        {
            d = limit;
            stage = Some((
                Limit::DownRatePolicy,
                format!("scale-down limited to {d} by policy {policy}"),
            ));
        }

        // 6. Panic mode.
        let demand = outcomes.iter().filter_map(|o| o.demand).max();
        let panic_rec = demand
            .into_iter()
            .chain(demands.within(now, p.panic_window))
            .max();
        let readiness = f64::from(ready.max(1));
        let over = panic_rec.is_some_and(|r| f64::from(r) >= p.panic_threshold * readiness);
        match panic {
            None if over => {
                *panic = Some(PanicState {
                    last_over: now,
                    max_desired: 0,
                });
            }
            Some(state) if over => state.last_over = now,
            Some(state) if now.saturating_sub(state.last_over) >= p.panic_hold => *panic = None,
            _ => {}
        }
        if let Some(state) = panic {
            let floor = panic_rec
                .unwrap_or(0)
                .max(state.max_desired)
                .max(current)
                .min(hi);
            if d < floor {
                d = floor;
                stage = Some((
                    Limit::Panic,
                    format!("panic mode holds {d} (never scales down while panicking)"),
                ));
            }
        }

        // 7. Bounds.
        if d > hi {
            d = hi;
            stage = Some((Limit::Max, format!("capped at max {hi}")));
        }
        if d < lo {
            d = lo;
            let text = if p.min == 0 {
                format!(
                    "kept at {d}: min is 0 but the service has not been idle for {}",
                    fmt_duration(p.scale_to_zero_after)
                )
            } else {
                format!("raised to min {d}")
            };
            stage = Some((Limit::Min, text));
        }
        if let Some(state) = panic {
            state.max_desired = d;
        }

        if best.is_some() && !blocked {
            recommendations.push(now, rec);
        }
        if let Some(n) = demand {
            demands.push(now, n);
        }
        events.record(now, current, d);

        let (limited_by, limit_text) = if d != rec {
            match stage {
                Some((l, t)) => (Some(l), Some(t)),
                None => (hold, None),
            }
        } else {
            (hold, None)
        };

        // The sentence.
        let mut parts = vec![proposals_text(&outcomes, recommendation)];
        if let Some(h) = hold {
            parts.push(match h {
                Limit::Tolerance => format!(
                    "within tolerance (+{}%/-{}%), staying at {current}",
                    fmt_number(p.tolerance_up * 100.0),
                    fmt_number(p.tolerance_down * 100.0)
                ),
                Limit::WarmingUp => {
                    format!("{starting} replicas starting or warming up, holding at {current}")
                }
                _ if recommendation.is_none() => {
                    format!("no target has data, holding at {current}")
                }
                _ => format!(
                    "{missing} missing readings: scale-down forbidden, holding at {current}"
                ),
            });
        }
        if let Some(t) = limit_text {
            parts.push(t);
        }
        if panic.is_some() {
            parts.push(format!(
                "panic mode: {} recommended within {} ≥ {} × {} ready",
                panic_rec.unwrap_or(0),
                fmt_duration(p.panic_window),
                fmt_number(p.panic_threshold),
                ready.max(1)
            ));
        }
        let reason = parts.join("; ");
        let in_panic = panic.is_some();
        decision(s, d, recommendation, outcomes, limited_by, in_panic, reason)
    }
}

/// `concurrency 23.5/10 per replica → 5 replicas`, or one clause per target and the largest.
fn proposals_text(outcomes: &[Outcome], recommendation: Option<u32>) -> String {
    let each = |o: &Outcome| match o.proposal {
        Some(n) => format!("{} → {n}", o.describe),
        None if o.reading.name == "backlog" => o.describe.clone(),
        None => format!("{} (no data)", o.describe),
    };
    match (outcomes, recommendation) {
        ([one], Some(n)) => format!("{} → {n} replicas", one.describe),
        ([one], None) => each(one),
        (many, Some(n)) => format!(
            "{}: largest {n} replicas",
            many.iter().map(each).collect::<Vec<_>>().join(", ")
        ),
        (many, None) => many.iter().map(each).collect::<Vec<_>>().join(", "),
    }
}

fn decision(
    s: &Sample,
    desired: u32,
    recommendation: Option<u32>,
    outcomes: Vec<Outcome>,
    limited_by: Option<Limit>,
    panic: bool,
    reason: String,
) -> Decision {
    Decision {
        desired,
        current: s.current,
        recommendation,
        readings: outcomes
            .into_iter()
            .map(|o| o.reading)
            .collect::<Vec<Reading>>(),
        limited_by,
        panic,
        reason,
        backlog: None,
    }
}

#[cfg(test)]
mod tests;
