//! Rate policies: how far the count may move within a sliding period (HPA
//! `convertDesiredReplicasWithBehaviorRate`).
//!
//! # Theory
//!
//! Every change the autoscaler makes is recorded as a *scale event* `(time, delta)`. For a
//! policy with period `p`, the count at the start of the period is reconstructed as
//! `start = current − added within p + removed within p`, and the policy allows
//!
//! | | scale-up | scale-down |
//! |---|---|---|
//! | `Pods { v }` | `start + v` | `start − v` |
//! | `Percent { v }` | `ceil(start × (1 + v/100))` | `floor(start × (1 − v/100))` |
//!
//! Among several policies the most permissive one wins (`selectPolicy: Max`): the largest
//! count going up, the smallest going down. The limit never moves the count the other way
//! (a period that already used its budget holds the count where it is). Because the
//! budget is measured from the start of a *sliding* period, a long period spreads its
//! budget: `Percent { 50, 5 s }` from 20 allows 10 at once, then nothing until the step
//! leaves the period. Up-rounding of `Percent` guarantees progress from small counts
//! (`ceil(1 × 1.1) = 2`); `Percent` alone cannot leave zero, which the scale-from-zero path
//! handles separately.

use std::time::Duration;

use crate::history::History;
use crate::policy::RatePolicy;

/// The recorded scale events of one service.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScaleEvents {
    events: History<i64>,
}

impl ScaleEvents {
    /// Records a change from `from` to `to` at `now` (nothing if they are equal).
    pub(crate) fn record(&mut self, now: Duration, from: u32, to: u32) {
        if from != to {
            self.events.push(now, i64::from(to) - i64::from(from));
        }
    }

    /// Forgets events older than `keep`.
    pub(crate) fn prune(&mut self, now: Duration, keep: Duration) {
        self.events.prune(now, keep);
    }

    /// The count at the start of a period of length `period` ending at `now`.
    fn period_start(&self, now: Duration, period: Duration, current: u32) -> i64 {
        let (added, removed) = self
            .events
            .within(now, period)
            .fold(
                (0i64, 0i64),
                |(a, r), d| if d > 0 { (a + d, r) } else { (a, r - d) },
            );
        (i64::from(current) - added + removed).max(0)
    }

    /// The largest count the up policies allow, and the policy that allows it; `None` when
    /// there are no policies (unlimited).
    pub(crate) fn up_limit<'p>(
        &self,
        now: Duration,
        current: u32,
        policies: &'p [RatePolicy],
    ) -> Option<(u32, &'p RatePolicy)> {
        let mut best: Option<(i64, &RatePolicy)> = None;
        for p in policies {
            let start = self.period_start(now, p.period(), current);
            let allowed = match *p {
                RatePolicy::Pods { value, .. } => start + i64::from(value),
                RatePolicy::Percent { value, .. } => (start * (100 + i64::from(value)) + 99) / 100,
            };
            if best.is_none_or(|(b, _)| allowed > b) {
                best = Some((allowed, p));
            }
        }
        best.map(|(n, p)| (clamp_u32(n.max(i64::from(current))), p))
    }

    /// The smallest count the down policies allow, and the policy that allows it; `None`
    /// when there are no policies (unlimited).
    pub(crate) fn down_limit<'p>(
        &self,
        now: Duration,
        current: u32,
        policies: &'p [RatePolicy],
    ) -> Option<(u32, &'p RatePolicy)> {
        let mut best: Option<(i64, &RatePolicy)> = None;
        for p in policies {
            let start = self.period_start(now, p.period(), current);
            let allowed = match *p {
                RatePolicy::Pods { value, .. } => start - i64::from(value),
                RatePolicy::Percent { value, .. } => {
                    start * (100 - i64::from(value.min(100))) / 100
                }
            };
            if best.is_none_or(|(b, _)| allowed < b) {
                best = Some((allowed, p));
            }
        }
        best.map(|(n, p)| (clamp_u32(n.clamp(0, i64::from(current))), p))
    }
}

fn clamp_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn up_defaults() -> Vec<RatePolicy> {
        vec![
            RatePolicy::Pods {
                value: 4,
                period: s(1),
            },
            RatePolicy::Percent {
                value: 100,
                period: s(1),
            },
        ]
    }

    #[test]
    fn up_selects_the_most_permissive_policy() {
        let ev = ScaleEvents::default();
        let up = up_defaults();
        assert_eq!(ev.up_limit(s(0), 2, &up).map(|(n, _)| n), Some(6)); // Pods: 2 + 4
        assert_eq!(ev.up_limit(s(0), 6, &up).map(|(n, _)| n), Some(12)); // Percent: 6 × 2
        assert_eq!(ev.up_limit(s(0), 1, &[]), None);
        let (n, p) = ev.up_limit(s(0), 2, &up).unwrap();
        assert_eq!((n, p.to_string()), (6, "Pods 4 per 1s".to_owned()));
    }

    #[test]
    fn a_used_budget_holds_until_the_event_leaves_the_period() {
        let mut ev = ScaleEvents::default();
        let up = [RatePolicy::Pods {
            value: 4,
            period: s(10),
        }];
        ev.record(s(0), 2, 6);
        assert_eq!(ev.up_limit(s(5), 6, &up).map(|(n, _)| n), Some(6));
        assert_eq!(ev.up_limit(s(10), 6, &up).map(|(n, _)| n), Some(10));
    }

    #[test]
    fn down_percent_truncates_and_selects_the_biggest_step() {
        let mut ev = ScaleEvents::default();
        let down = [
            RatePolicy::Percent {
                value: 50,
                period: s(5),
            },
            RatePolicy::Pods {
                value: 1,
                period: s(5),
            },
        ];
        assert_eq!(ev.down_limit(s(0), 11, &down).map(|(n, _)| n), Some(5)); // floor(5.5)
        ev.record(s(0), 11, 5);
        // Within the period the start is still 11: floor(5.5) = 5, so no further step.
        assert_eq!(ev.down_limit(s(3), 5, &down).map(|(n, _)| n), Some(5));
        assert_eq!(ev.down_limit(s(5), 5, &down).map(|(n, _)| n), Some(2));
        // Pods wins on small counts: 1 − 1 = 0 < floor(0.5) = 0 (tie: the first).
        assert_eq!(ev.down_limit(s(20), 1, &down).map(|(n, _)| n), Some(0));
    }
}
