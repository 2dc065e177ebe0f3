//! Restart back-off and the crash-loop give-up rule, as a pure state machine.
//!
//! Each replica owns one [`RestartTracker`]. When its process exits the tracker is told
//! when (`now`), how long the process had been up, and whether the exit was a failure; it
//! answers with a [`Decision`]:
//!
//! - the restart mode says whether to restart at all (`no`, `on-failure`, `always`);
//! - the delay grows exponentially per consecutive restart: `delay`, `2·delay`, `4·delay`…
//!   capped at `max_delay`, and falls back to `delay` once a process stayed up for
//!   `reset_after` (PM2's `exp_backoff_restart_delay` reset, Docker's doubling);
//! - a delay is *always* applied, at least [`MIN_DELAY`], so that even `always` with a
//!   zero delay cannot spin the CPU;
//! - restarts are counted in a sliding `window`; when `max_attempts` restarts already
//!   happened within it, the next exit gives up (Compose's `max_attempts`/`window`,
//!   systemd's `StartLimitBurst`/`StartLimitIntervalSec`).
//!
//! Time is passed in, so the rules are tested with plain values and no sleeping.
use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::spec::{RestartMode, RestartPolicy};

/// The smallest delay ever applied before a restart.
pub(crate) const MIN_DELAY: Duration = Duration::from_millis(50);

/// What to do after an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The restart mode says not to restart (e.g. a clean exit under `on-failure`).
    Stay,
    /// Restart after this delay.
    Restart {
        /// Back-off before the new start.
        delay: Duration,
    },
    /// Too many restarts within the window: give up.
    GiveUp {
        /// Human-readable cause, e.g. "exited 4 times within 60s; last: exit code 1".
        reason: String,
    },
}

/// Back-off and attempt-window state of one replica.
#[derive(Debug, Clone)]
pub(crate) struct RestartTracker {
    policy: RestartPolicy,
    /// Restarts since the back-off was last reset.
    consecutive: u32,
    /// When each restart within the window was decided, oldest first.
    recent: VecDeque<Instant>,
}

impl RestartTracker {
    pub(crate) fn new(policy: RestartPolicy) -> RestartTracker {
        RestartTracker {
            policy,
            consecutive: 0,
            recent: VecDeque::new(),
        }
    }

    /// Decide what follows an exit at `now` of a process that had been up for `uptime`.
    /// `failure` is true for a non-zero exit, a death by signal or a failed start; `cause`
    /// describes the exit for the give-up message.
    pub(crate) fn on_exit(
        &mut self,
        now: Instant,
        uptime: Duration,
        failure: bool,
        cause: &str,
    ) -> Decision {
        match self.policy.mode {
            RestartMode::No => return Decision::Stay,
            RestartMode::OnFailure if !failure => return Decision::Stay,
            RestartMode::OnFailure | RestartMode::Always => {}
        }
        let window = self.policy.window;
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.recent.pop_front();
        }
        let max = self.policy.max_attempts;
        if max > 0 && self.recent.len() >= max as usize {
            return Decision::GiveUp {
                reason: format!(
                    "exited {} times within {}; last: {cause}",
                    self.recent.len() + 1,
                    human(window)
                ),
            };
        }
        self.recent.push_back(now);
        if uptime >= self.policy.reset_after {
            self.consecutive = 0;
        }
        let delay = delay_for(&self.policy, self.consecutive);
        self.consecutive = self.consecutive.saturating_add(1);
        Decision::Restart { delay }
    }
}

/// The back-off before restart number `consecutive + 1` since the last reset:
/// `max(delay, MIN_DELAY) · 2^consecutive`, capped at `max(max_delay, MIN_DELAY)`.
pub(crate) fn delay_for(policy: &RestartPolicy, consecutive: u32) -> Duration {
    let base = policy.delay.max(MIN_DELAY);
    let cap = policy.max_delay.max(MIN_DELAY);
    let factor = 1u32.checked_shl(consecutive.min(31)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(cap).min(cap)
}

/// A short human form of a duration: `500ms`, `2s`, `1.5s`.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            max_attempts: 0,
            max_delay: Duration::from_secs(5),
            ..RestartPolicy::default()
        }
    }

    fn delays(t: &mut RestartTracker, now: Instant, n: usize) -> Vec<u128> {
        (0..n)
            .map(
                |_| match t.on_exit(now, Duration::from_millis(10), true, "exit code 1") {
                    Decision::Restart { delay } => delay.as_millis(),
                    other => panic!("expected a restart, got {other:?}"),
                },
            )
            .collect()
    }

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let mut t = RestartTracker::new(policy());
        let now = Instant::now();
        assert_eq!(
            delays(&mut t, now, 7),
            vec![500, 1000, 2000, 4000, 5000, 5000, 5000]
        );
    }

    #[test]
    fn long_uptime_resets_the_backoff() {
        let mut t = RestartTracker::new(policy());
        let now = Instant::now();
        assert_eq!(delays(&mut t, now, 3), vec![500, 1000, 2000]);
        // Up for exactly reset_after (30 s): back to the first delay.
        let d = t.on_exit(now, Duration::from_secs(30), true, "exit code 1");
        assert_eq!(
            d,
            Decision::Restart {
                delay: Duration::from_millis(500)
            }
        );
        // Up for just under: keeps growing.
        let d = t.on_exit(now, Duration::from_secs(29), true, "exit code 1");
        assert_eq!(
            d,
            Decision::Restart {
                delay: Duration::from_millis(1000)
            }
        );
    }

    #[test]
    fn zero_delay_still_backs_off() {
        let p = RestartPolicy {
            mode: RestartMode::Always,
            delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            max_attempts: 0,
            ..RestartPolicy::default()
        };
        let mut t = RestartTracker::new(p);
        let now = Instant::now();
        assert!(
            delays(&mut t, now, 100)
                .iter()
                .all(|&ms| ms == MIN_DELAY.as_millis())
        );
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let p = RestartPolicy {
            max_delay: Duration::from_secs(30),
            ..policy()
        };
        assert_eq!(delay_for(&p, 40), Duration::from_secs(30));
        assert_eq!(delay_for(&p, u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn mode_decides_whether_to_restart() {
        let now = Instant::now();
        let up = Duration::from_secs(1);
        let mut no = RestartTracker::new(RestartPolicy {
            mode: RestartMode::No,
            ..policy()
        });
        assert_eq!(no.on_exit(now, up, true, "signal 9"), Decision::Stay);
        let mut on_failure = RestartTracker::new(policy());
        assert_eq!(
            on_failure.on_exit(now, up, false, "exit code 0"),
            Decision::Stay
        );
        assert!(matches!(
            on_failure.on_exit(now, up, true, "x"),
            Decision::Restart { .. }
        ));
        let mut always = RestartTracker::new(RestartPolicy {
            mode: RestartMode::Always,
            ..policy()
        });
        assert!(matches!(
            always.on_exit(now, up, false, "x"),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn gives_up_after_max_attempts_within_the_window() {
        let p = RestartPolicy {
            max_attempts: 3,
            window: Duration::from_secs(60),
            ..policy()
        };
        let mut t = RestartTracker::new(p);
        let start = Instant::now();
        let up = Duration::from_millis(5);
        for i in 0..3 {
            let now = start + Duration::from_secs(i);
            assert!(matches!(
                t.on_exit(now, up, true, "exit code 1"),
                Decision::Restart { .. }
            ));
        }
        let d = t.on_exit(start + Duration::from_secs(3), up, true, "exit code 1");
        assert_eq!(
            d,
            Decision::GiveUp {
                reason: "exited 4 times within 60s; last: exit code 1".into()
            }
        );
    }

    #[test]
    fn restarts_older_than_the_window_do_not_count() {
        let p = RestartPolicy {
            max_attempts: 2,
            window: Duration::from_secs(10),
            ..policy()
        };
        let mut t = RestartTracker::new(p);
        let start = Instant::now();
        let up = Duration::from_millis(5);
        // Two restarts, then a pause longer than the window: allowed again.
        for s in [0, 1, 12, 13] {
            let now = start + Duration::from_secs(s);
            assert!(
                matches!(t.on_exit(now, up, true, "x"), Decision::Restart { .. }),
                "at {s}s"
            );
        }
        assert!(matches!(
            t.on_exit(start + Duration::from_secs(14), up, true, "x"),
            Decision::GiveUp { .. }
        ));
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_millis(500)), "500ms");
        assert_eq!(human(Duration::from_secs(60)), "60s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }
}
