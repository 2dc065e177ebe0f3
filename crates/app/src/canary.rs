//! The automated canary: a route whose split has `canary:` moves traffic to the canary
//! service step by step while the canary answers as well as the stable version, and takes it
//! all away when it does not (Flagger's and Argo Rollouts' semantics, measured by the
//! gateway itself, with no metrics server).
//!
//! # The loop
//!
//! One task per such route ([`Canaries::apply`] starts it, and restarts it when a reload
//! changes the route's split; a reload that leaves it as it was leaves the task, running or
//! finished, alone). It starts from the canary's share of the weights in force (the file's,
//! or, after a reload that changed only `canary:`, the live ones). Every `interval` it reads the gateway's per-service figures
//! ([`shoal_proxy::ServiceFigures`]: answers, 5xx answers, fine latency buckets) and takes
//! the difference with the figures at the start of the window: what the canary and the
//! stable services (every other target of the split, summed) answered since. Then
//! [`decide`], a pure function:
//!
//! - a canary at 0 % is given its first `step` without judgement (it has no answers to
//!   judge);
//! - fewer than `min_requests` canary answers: **wait** — the window grows to the next
//!   interval (nothing is judged on too few requests, and a quiet route still moves on);
//! - the canary is within bounds — its 5xx ratio at most the stable one's plus
//!   `max_error_increase`, and its p95 (time to response headers) at most `max_p95_ratio` ×
//!   the stable one's — : its share grows by `step` percentage points (the weights become
//!   stable = 100 − w, canary = w), event `weighted`; at `max_weight` it is **promoted**
//!   (event `rollout`) and the loop ends;
//! - out of bounds: a bad interval; after `failures` in a row the canary's weight goes to 0
//!   (every request to the stable version), event `rolledback` with the figures, and the loop
//!   ends.
//!
//! With no stable traffic in the window (a stable weight of 0, or nothing sent its way), the
//! canary is judged on its own: its 5xx ratio at most `max_error_increase`, and no p95
//! bound. Times under [`P95_FLOOR`] count as that much: a canary at 0.4 ms against a stable
//! version at 0.2 ms is not twice as slow, it is scheduling noise.
//!
//! A window is judged on the figures of the whole gateway for those services, whichever route
//! sent them; the weights it sets are this route's. After a rollback or a promotion the
//! weights stay where the loop left them (a reload with the same file keeps them; `shoal
//! weight` changes them) until the route's split changes in the file.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_config::{Canary, Route, Split, Stack};
use shoal_core::{EventKind, EventLog};
use shoal_proxy::{Gateway, ServiceFigures};
use tokio::task::JoinHandle;

/// A p95 below this counts as this much when the canary's is compared with the stable one's.
pub(crate) const P95_FLOOR: Duration = Duration::from_millis(5);

/// Where a canary stands between two intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    /// The canary's share of the route's traffic now, in percent.
    pub(crate) weight: u32,
    /// Bad intervals in a row so far.
    pub(crate) bad: u32,
}

/// What one interval's figures call for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Too few canary answers to judge: keep measuring (the window grows).
    Wait,
    /// Within bounds: the canary's share becomes `weight` percent.
    Raise {
        /// The new share.
        weight: u32,
        /// The figures that earned it ("errors 0.0% vs 0.1%, p95 12 ms vs 11 ms").
        figures: String,
    },
    /// Within bounds at `max_weight`: the canary gets `weight` percent, and is done.
    Promote {
        /// Its final share (`max_weight`).
        weight: u32,
        /// The figures of the last interval.
        figures: String,
    },
    /// Out of bounds, but fewer than `failures` times in a row: hold the weight.
    Hold {
        /// Bad intervals in a row now.
        bad: u32,
        /// What was out of bounds, with the figures.
        reason: String,
    },
    /// Out of bounds `failures` times in a row: the canary's weight goes to 0.
    RollBack {
        /// What was out of bounds, with the figures.
        reason: String,
    },
}

/// One interval's verdict on the canary (see the module doc). `canary` and `stable` are
/// the figures of the window; `at` where the canary stands.
pub(crate) fn decide(
    settings: &Canary,
    at: Progress,
    canary: &ServiceFigures,
    stable: &ServiceFigures,
) -> Decision {
    let max = settings.max_weight.min(100);
    if at.weight == 0 {
        // A canary at 0 % gets no request to be judged on: its first step is taken on
        // trust, as Flagger takes it.
        let weight = settings.step.min(max);
        let figures = "first step: nothing to judge at 0%".to_owned();
        return if weight >= max {
            Decision::Promote { weight, figures }
        } else {
            Decision::Raise { weight, figures }
        };
    }
    if canary.requests < u64::from(settings.min_requests) {
        return Decision::Wait;
    }
    let figures = describe(canary, stable);
    let canary_errors = canary.error_ratio().unwrap_or(0.0);
    let mut out_of_bounds = Vec::new();
    match stable.error_ratio() {
        Some(stable_errors) => {
            if canary_errors > stable_errors + settings.max_error_increase {
                out_of_bounds.push(format!(
                    "error ratio {} above the stable {} + {}",
                    percent(canary_errors),
                    percent(stable_errors),
                    percent(settings.max_error_increase)
                ));
            }
            if let (Some(c), Some(s)) = (canary.quantile(0.95), stable.quantile(0.95)) {
                let (c, s) = (c.max(P95_FLOOR), s.max(P95_FLOOR));
                if c.as_secs_f64() > settings.max_p95_ratio * s.as_secs_f64() {
                    out_of_bounds.push(format!(
                        "p95 {} above {} × the stable {}",
                        millis(Some(c)),
                        settings.max_p95_ratio,
                        millis(Some(s))
                    ));
                }
            }
        }
        // No stable traffic to compare with: the canary on its own.
        None if canary_errors > settings.max_error_increase => out_of_bounds.push(format!(
            "error ratio {} above {} (no stable traffic to compare with)",
            percent(canary_errors),
            percent(settings.max_error_increase)
        )),
        None => {}
    }
    if !out_of_bounds.is_empty() {
        let bad = at.bad + 1;
        let reason = format!("{} ({figures})", out_of_bounds.join(", "));
        return if bad >= settings.failures.max(1) {
            Decision::RollBack { reason }
        } else {
            Decision::Hold { bad, reason }
        };
    }
    let weight = (at.weight + settings.step).min(max);
    if weight >= max {
        Decision::Promote {
            weight: max,
            figures,
        }
    } else {
        Decision::Raise { weight, figures }
    }
}

/// "errors 0.0% vs 0.1%, p95 12 ms vs 11 ms" (canary first).
fn describe(canary: &ServiceFigures, stable: &ServiceFigures) -> String {
    let errors = |f: &ServiceFigures| f.error_ratio().map_or("-".to_owned(), percent);
    format!(
        "errors {} vs {}, p95 {} vs {}",
        errors(canary),
        errors(stable),
        millis(canary.quantile(0.95)),
        millis(stable.quantile(0.95))
    )
}

fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

fn millis(d: Option<Duration>) -> String {
    match d.map(|d| d.as_secs_f64() * 1000.0) {
        None => "-".to_owned(),
        Some(ms) if ms < 10.0 => format!("{ms:.1} ms"),
        Some(ms) => format!("{ms:.0} ms"),
    }
}

/// What the loop needs of the gateway (a trait so that the loop is tested without one).
pub(crate) trait Traffic: Send + Sync + 'static {
    /// Every service's figures since start ([`Gateway::service_figures`]).
    fn figures(&self) -> HashMap<String, ServiceFigures>;
    /// Set some of a route's weights live ([`Gateway::set_weights`]).
    fn set_weights(&self, route: &str, weights: &[(String, u32)]) -> Result<(), String>;
    /// A route's weights in force ([`Gateway::weights`]).
    fn weights(&self, route: &str) -> Option<Vec<(String, u32)>>;
}

impl Traffic for Gateway {
    fn figures(&self) -> HashMap<String, ServiceFigures> {
        self.service_figures()
    }

    fn set_weights(&self, route: &str, weights: &[(String, u32)]) -> Result<(), String> {
        Gateway::set_weights(self, route, weights).map(drop)
    }

    fn weights(&self, route: &str) -> Option<Vec<(String, u32)>> {
        Gateway::weights(self, route)
    }
}

/// One route's canary, as the loop runs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// The route.
    pub(crate) route: String,
    /// Its split (targets with the file's weights, and `canary:`).
    pub(crate) split: Split,
}

impl Plan {
    fn of(route: &Route) -> Option<Plan> {
        let split = route.split.as_ref()?;
        split.canary.as_ref()?;
        Some(Plan {
            route: route.name.clone(),
            split: split.clone(),
        })
    }

    fn canary(&self) -> &Canary {
        self.split.canary.as_ref().expect("a plan has a canary")
    }

    /// The canary's share of `weights`, in percent (rounded down).
    fn share(&self, weights: &[(String, u32)]) -> u32 {
        let total: u32 = weights.iter().map(|(_, w)| w).sum();
        let canary: u32 = weights
            .iter()
            .filter(|(s, _)| *s == self.canary().service)
            .map(|(_, w)| w)
            .sum();
        (canary * 100).checked_div(total).unwrap_or(0)
    }

    /// The canary's share of the file's weights.
    fn file_share(&self) -> u32 {
        let weights: Vec<(String, u32)> = self
            .split
            .targets
            .iter()
            .map(|t| (t.service.clone(), t.weight))
            .collect();
        self.share(&weights)
    }

    /// The weights that give the canary `w` percent: the stable services share 100 − w in
    /// proportion to their weights in the file (equally if those are all 0).
    fn weights(&self, w: u32) -> Vec<(String, u32)> {
        let canary = &self.canary().service;
        let stable: Vec<_> = self
            .split
            .targets
            .iter()
            .filter(|t| &t.service != canary)
            .collect();
        let total: u32 = stable.iter().map(|t| t.weight).sum();
        let rest = 100 - w.min(100);
        let mut out: Vec<(String, u32)> = Vec::new();
        let mut given = 0;
        for (i, t) in stable.iter().enumerate() {
            let share = if i + 1 == stable.len() {
                rest - given
            } else {
                (rest * t.weight)
                    .checked_div(total)
                    .unwrap_or(rest / stable.len() as u32)
            };
            given += share;
            out.push((t.service.clone(), share));
        }
        out.push((canary.clone(), w.min(100)));
        out
    }

    /// The canary's and the stable services' figures, summed.
    fn split_figures(
        &self,
        all: &HashMap<String, ServiceFigures>,
    ) -> (ServiceFigures, ServiceFigures) {
        let canary = &self.canary().service;
        let none = ServiceFigures::default();
        let mut stable = ServiceFigures::default();
        for t in self.split.targets.iter().filter(|t| &t.service != canary) {
            stable = stable.plus(all.get(&t.service).unwrap_or(&none));
        }
        (all.get(canary).cloned().unwrap_or_default(), stable)
    }
}

/// Run `plan` until the canary is promoted or rolled back.
pub(crate) async fn run(plan: Plan, traffic: Arc<dyn Traffic>, events: Arc<EventLog>) {
    let settings = plan.canary().clone();
    let service = settings.service.clone();
    // From the weights in force: a reload that changed only `canary:` keeps the route's
    // live weights, and the loop carries on from there.
    let start = traffic
        .weights(&plan.route)
        .map_or_else(|| plan.file_share(), |w| plan.share(&w));
    let mut at = Progress {
        weight: start,
        bad: 0,
    };
    let mut window_start = plan.split_figures(&traffic.figures());
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + settings.interval,
        settings.interval,
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = plan.split_figures(&traffic.figures());
        let canary = now.0.since(&window_start.0);
        let stable = now.1.since(&window_start.1);
        let decision = decide(&settings, at, &canary, &stable);
        tracing::debug!(route = %plan.route, %service, ?decision, "canary interval");
        if decision != Decision::Wait {
            window_start = now;
        }
        let set = |w: u32| traffic.set_weights(&plan.route, &plan.weights(w));
        match decision {
            Decision::Wait => {}
            Decision::Raise { weight, figures } => {
                if let Err(e) = set(weight) {
                    return gave_up(&events, &service, &plan.route, &e);
                }
                at = Progress { weight, bad: 0 };
                events.emit(
                    &service,
                    None,
                    EventKind::Weighted,
                    format!("canary {service} at {weight}% ({figures})"),
                );
            }
            Decision::Promote { weight, figures } => {
                if let Err(e) = set(weight) {
                    return gave_up(&events, &service, &plan.route, &e);
                }
                events.emit(
                    &service,
                    None,
                    EventKind::Weighted,
                    format!("canary {service} at {weight}% ({figures})"),
                );
                events.emit(
                    &service,
                    None,
                    EventKind::Rollout,
                    format!(
                        "canary {service} promoted: {weight}% of route {}",
                        plan.route
                    ),
                );
                return;
            }
            Decision::Hold { bad, reason } => {
                at.bad = bad;
                events.emit(
                    &service,
                    None,
                    EventKind::Rollout,
                    format!(
                        "canary {service} held at {}%: bad interval {bad} of {}: {reason}",
                        at.weight, settings.failures
                    ),
                );
            }
            Decision::RollBack { reason } => {
                let result = set(0);
                events.emit(
                    &service,
                    None,
                    EventKind::RolledBack,
                    format!(
                        "canary {service} rolled back from {}% to 0%: {reason}",
                        at.weight
                    ),
                );
                if let Err(e) = result {
                    gave_up(&events, &service, &plan.route, &e);
                }
                return;
            }
        }
    }
}

/// The route's weights cannot be set (it left the file between a reload and this step).
fn gave_up(events: &EventLog, service: &str, route: &str, error: &str) {
    events.emit(
        service,
        None,
        EventKind::Rollout,
        format!("canary {service} stopped: cannot set the weights of route {route}: {error}"),
    );
}

/// Every route's canary loop, kept in step with the stack.
#[derive(Debug, Default)]
pub(crate) struct Canaries {
    running: Mutex<HashMap<String, (Plan, JoinHandle<()>)>>,
}

impl Canaries {
    /// Start a loop for each route with a `canary:` whose split is new or changed; stop the
    /// loops of routes whose canary changed or left. A loop whose route is unchanged carries
    /// on (or stays finished).
    pub(crate) fn apply(
        &self,
        stack: &Stack,
        traffic: Arc<dyn Traffic>,
        events: &Arc<EventLog>,
        runtime: &tokio::runtime::Handle,
    ) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let plans: HashMap<String, Plan> = stack
            .routes
            .iter()
            .filter_map(Plan::of)
            .map(|p| (p.route.clone(), p))
            .collect();
        running.retain(|route, (plan, task)| {
            let keep = plans.get(route) == Some(plan);
            if !keep {
                task.abort();
            }
            keep
        });
        for (route, plan) in plans {
            if running.contains_key(&route) {
                continue;
            }
            let task = runtime.spawn(run(plan.clone(), traffic.clone(), events.clone()));
            running.insert(route, (plan, task));
        }
    }
}

impl Drop for Canaries {
    fn drop(&mut self) {
        let running = self.running.get_mut().unwrap_or_else(|e| e.into_inner());
        for (_, task) in running.values() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_config::WeightedTarget;

    fn settings() -> Canary {
        Canary {
            service: "api-v2".into(),
            step: 10,
            max_weight: 50,
            interval: Duration::from_secs(1),
            min_requests: 20,
            max_error_increase: 0.01,
            max_p95_ratio: 1.5,
            failures: 2,
        }
    }

    fn figures(requests: u64, errors: u64, ms: u64) -> ServiceFigures {
        ServiceFigures::uniform(requests, errors, Duration::from_millis(ms))
    }

    fn at(weight: u32, bad: u32) -> Progress {
        Progress { weight, bad }
    }

    #[test]
    fn a_healthy_canary_steps_up_then_is_promoted_at_max_weight() {
        let s = settings();
        let d = decide(&s, at(10, 0), &figures(100, 0, 12), &figures(900, 1, 11));
        let Decision::Raise {
            weight,
            figures: said,
        } = d
        else {
            panic!("{d:?}")
        };
        assert_eq!(weight, 20);
        assert!(said.starts_with("errors 0.0% vs 0.1%, p95 1"), "{said}");
        // The last step is capped at max_weight and promotes.
        let d = decide(&s, at(45, 1), &figures(100, 0, 12), &figures(900, 1, 11));
        assert!(matches!(d, Decision::Promote { weight: 50, .. }), "{d:?}");
    }

    #[test]
    fn a_canary_at_zero_takes_its_first_step_on_trust() {
        let s = settings();
        let none = ServiceFigures::default();
        let d = decide(&s, at(0, 0), &none, &figures(900, 0, 10));
        assert!(matches!(d, Decision::Raise { weight: 10, .. }), "{d:?}");
        // A step past max_weight promotes at once.
        let big = Canary {
            step: 60,
            ..settings()
        };
        let d = decide(&big, at(0, 0), &none, &figures(900, 0, 10));
        assert!(matches!(d, Decision::Promote { weight: 50, .. }), "{d:?}");
    }

    #[test]
    fn too_few_canary_requests_wait_whatever_they_say() {
        let s = settings();
        assert_eq!(
            decide(&s, at(10, 0), &figures(19, 19, 900), &figures(900, 0, 1)),
            Decision::Wait
        );
    }

    #[test]
    fn errors_above_the_bound_hold_then_roll_back_after_failures_in_a_row() {
        let s = settings();
        // 20% errors against 0.1%: out of bounds.
        let (canary, stable) = (figures(100, 20, 10), figures(900, 1, 10));
        let d = decide(&s, at(30, 0), &canary, &stable);
        let Decision::Hold { bad: 1, reason } = d else {
            panic!("{d:?}")
        };
        assert!(
            reason.starts_with("error ratio 20.0% above the stable 0.1% + 1.0%"),
            "{reason}"
        );
        let d = decide(&s, at(30, 1), &canary, &stable);
        assert!(matches!(d, Decision::RollBack { .. }), "{d:?}");
        // Just within: 1.1% against 0.1% + 1%.
        let d = decide(&s, at(30, 0), &figures(1000, 11, 10), &figures(1000, 1, 10));
        assert!(matches!(d, Decision::Raise { weight: 40, .. }), "{d:?}");
        // One failure allowed: the first bad interval rolls back.
        let one = Canary {
            failures: 1,
            ..settings()
        };
        let d = decide(&one, at(30, 0), &canary, &stable);
        let Decision::RollBack { reason } = d else {
            panic!("{d:?}")
        };
        assert!(reason.contains("(errors 20.0% vs 0.1%, p95 "), "{reason}");
    }

    #[test]
    fn with_no_stable_traffic_the_canary_is_judged_on_its_own_errors() {
        let s = Canary {
            failures: 1,
            ..settings()
        };
        let none = ServiceFigures::default();
        // Slow but error-free: no p95 bound without a stable p95.
        let d = decide(&s, at(90, 0), &figures(100, 0, 800), &none);
        assert!(matches!(d, Decision::Promote { weight: 50, .. }), "{d:?}");
        let d = decide(&s, at(90, 0), &figures(100, 2, 10), &none);
        let Decision::RollBack { reason } = d else {
            panic!("{d:?}")
        };
        assert!(
            reason.starts_with("error ratio 2.0% above 1.0% (no stable traffic"),
            "{reason}"
        );
    }

    #[test]
    fn a_slow_canary_is_out_of_bounds_but_noise_under_the_floor_is_not() {
        let s = Canary {
            failures: 1,
            ..settings()
        };
        // 40 ms against 20 ms: twice as slow, over 1.5×.
        let d = decide(&s, at(10, 0), &figures(100, 0, 40), &figures(100, 0, 20));
        let Decision::RollBack { reason } = d else {
            panic!("{d:?}")
        };
        assert!(reason.starts_with("p95 4"), "{reason}");
        assert!(reason.contains("above 1.5 × the stable 2"), "{reason}");
        // 28 ms against 20 ms: within 1.5× (buckets are ~19% wide).
        let d = decide(&s, at(10, 0), &figures(100, 0, 28), &figures(100, 0, 20));
        assert!(matches!(d, Decision::Raise { .. }), "{d:?}");
        // 3 ms against 0.5 ms: both under the floor.
        let d = decide(&s, at(10, 0), &figures(100, 0, 3), &figures(100, 0, 0));
        assert!(matches!(d, Decision::Raise { .. }), "{d:?}");
    }

    fn plan(targets: &[(&str, u32)]) -> Plan {
        Plan {
            route: "r".into(),
            split: Split {
                targets: targets
                    .iter()
                    .map(|(s, w)| WeightedTarget {
                        service: (*s).into(),
                        weight: *w,
                        retry: None,
                    })
                    .collect(),
                sticky: None,
                canary: Some(settings()),
            },
        }
    }

    #[test]
    fn weights_give_the_canary_its_share_and_the_stable_services_the_rest() {
        let p = plan(&[("api", 90), ("api-v2", 10)]);
        assert_eq!(p.file_share(), 10);
        assert_eq!(p.share(&p.weights(35)), 35);
        assert_eq!(
            p.weights(30),
            [("api".to_owned(), 70), ("api-v2".to_owned(), 30)]
        );
        let p = plan(&[("a", 3), ("b", 1), ("api-v2", 0)]);
        assert_eq!(p.file_share(), 0);
        assert_eq!(
            p.weights(20),
            [
                ("a".to_owned(), 60),
                ("b".to_owned(), 20),
                ("api-v2".to_owned(), 20)
            ]
        );
    }

    /// A gateway stand-in: figures the test sets, weights it records.
    #[derive(Default)]
    struct Fake {
        figures: Mutex<HashMap<String, ServiceFigures>>,
        set: Mutex<Vec<Vec<(String, u32)>>>,
    }

    impl Traffic for Fake {
        fn figures(&self) -> HashMap<String, ServiceFigures> {
            self.figures.lock().unwrap().clone()
        }
        fn set_weights(&self, _: &str, weights: &[(String, u32)]) -> Result<(), String> {
            self.set.lock().unwrap().push(weights.to_vec());
            Ok(())
        }
        fn weights(&self, _: &str) -> Option<Vec<(String, u32)>> {
            self.set.lock().unwrap().last().cloned()
        }
    }

    impl Fake {
        /// `n` more answers of `service`, `errors` of them 5xx, taking `ms` each.
        fn serve(&self, service: &str, n: u64, errors: u64, ms: u64) {
            let mut all = self.figures.lock().unwrap();
            let f = all.entry(service.to_owned()).or_default();
            *f = f.plus(&figures(n, errors, ms));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_waits_for_enough_requests_steps_and_promotes() {
        let fake = Arc::new(Fake::default());
        let events = Arc::new(EventLog::new(100));
        let p = plan(&[("api", 90), ("api-v2", 10)]);
        let task = tokio::spawn(run(p, fake.clone(), events.clone()));
        tokio::task::yield_now().await;
        let second = Duration::from_secs(1);
        // Interval 1: 10 canary answers, too few: no step.
        fake.serve("api-v2", 10, 0, 2);
        fake.serve("api", 90, 0, 2);
        tokio::time::sleep(second + Duration::from_millis(1)).await;
        assert!(fake.set.lock().unwrap().is_empty());
        // Interval 2: the window now holds 20: a step to 20%.
        fake.serve("api-v2", 10, 0, 2);
        tokio::time::sleep(second).await;
        assert_eq!(
            fake.set.lock().unwrap().last().unwrap(),
            &[("api".to_owned(), 80), ("api-v2".to_owned(), 20)]
        );
        // 30%, 40%, then 50% = max_weight: promoted, the loop ends.
        for _ in 0..3 {
            fake.serve("api-v2", 30, 0, 2);
            fake.serve("api", 70, 0, 2);
            tokio::time::sleep(second).await;
        }
        assert!(task.is_finished());
        let weights: Vec<u32> = fake.set.lock().unwrap().iter().map(|w| w[1].1).collect();
        assert_eq!(weights, [20, 30, 40, 50]);
        let all = events.since(0);
        let last = all.last().unwrap();
        assert_eq!(last.kind, EventKind::Rollout);
        assert_eq!(last.message, "canary api-v2 promoted: 50% of route r");
        assert!(
            all.iter().any(|e| e.kind == EventKind::Weighted
                && e.message
                    .starts_with("canary api-v2 at 30% (errors 0.0% vs 0.0%")),
            "{all:?}"
        );
    }

    fn stack(canary: &str) -> Stack {
        let yaml = format!(
            "services:\n  api: {{ servers: [http://127.0.0.1:1] }}\n\
             \x20 api-v2: {{ servers: [http://127.0.0.1:2] }}\n\
             routes:\n  - name: web\n    match: PathPrefix(`/`)\n    services:\n\
             \x20     - {{ name: api, weight: 90 }}\n      - {{ name: api-v2, weight: 10 }}\n{canary}"
        );
        shoal_config::parse(&yaml, "shoal.yaml").expect("a valid stack")
    }

    fn task_ids(c: &Canaries) -> Vec<(String, tokio::task::Id)> {
        let running = c.running.lock().unwrap();
        running
            .iter()
            .map(|(r, (_, t))| (r.clone(), t.id()))
            .collect()
    }

    #[tokio::test]
    async fn a_reload_restarts_a_canary_only_when_its_split_changed() {
        let canaries = Canaries::default();
        let fake: Arc<dyn Traffic> = Arc::new(Fake::default());
        let events = Arc::new(EventLog::new(10));
        let runtime = tokio::runtime::Handle::current();
        let with = |step: u32| {
            stack(&format!(
                "    canary: {{ service: api-v2, step: {step}, interval: 1s }}\n"
            ))
        };
        canaries.apply(&with(10), fake.clone(), &events, &runtime);
        let first = task_ids(&canaries);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].0, "web");
        canaries.apply(&with(10), fake.clone(), &events, &runtime);
        assert_eq!(task_ids(&canaries), first, "unchanged: the same loop");
        canaries.apply(&with(20), fake.clone(), &events, &runtime);
        let second = task_ids(&canaries);
        assert_eq!(second.len(), 1);
        assert_ne!(second, first, "changed: a new loop");
        canaries.apply(&stack(""), fake, &events, &runtime);
        assert!(task_ids(&canaries).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_restarted_loop_carries_on_from_the_weights_in_force() {
        let fake = Arc::new(Fake::default());
        fake.set
            .lock()
            .unwrap()
            .push(vec![("api".into(), 65), ("api-v2".into(), 35)]);
        let events = Arc::new(EventLog::new(100));
        let p = plan(&[("api", 90), ("api-v2", 10)]);
        let _task = tokio::spawn(run(p, fake.clone(), events));
        tokio::task::yield_now().await;
        fake.serve("api-v2", 35, 0, 2);
        fake.serve("api", 65, 0, 2);
        tokio::time::sleep(Duration::from_millis(1001)).await;
        assert_eq!(
            fake.set.lock().unwrap().last().unwrap(),
            &[("api".to_owned(), 55), ("api-v2".to_owned(), 45)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_rolls_back_after_bad_intervals_in_a_row() {
        let fake = Arc::new(Fake::default());
        let events = Arc::new(EventLog::new(100));
        let task = tokio::spawn(run(
            plan(&[("api", 90), ("api-v2", 10)]),
            fake.clone(),
            events.clone(),
        ));
        tokio::task::yield_now().await;
        // Two intervals at 20% errors: held, then rolled back (failures: 2).
        for _ in 0..2 {
            fake.serve("api-v2", 50, 10, 2);
            fake.serve("api", 450, 0, 2);
            tokio::time::sleep(Duration::from_millis(1001)).await;
        }
        assert!(task.is_finished());
        assert_eq!(
            *fake.set.lock().unwrap(),
            [vec![("api".to_owned(), 100), ("api-v2".to_owned(), 0)]]
        );
        let all = events.since(0);
        assert_eq!(all[0].kind, EventKind::Rollout);
        assert!(all[0].message.contains("bad interval 1 of 2"), "{all:?}");
        assert_eq!(all[1].kind, EventKind::RolledBack);
        assert!(
            all[1].message.starts_with(
                "canary api-v2 rolled back from 10% to 0%: error ratio 20.0% above the stable 0.0%"
            ),
            "{}",
            all[1].message
        );
    }
}
