//! [`Checker`]: the rise/fall rule of active health checks, with no I/O and no clock.
use std::time::Duration;

use crate::ProbeError;

/// The cadence and thresholds of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckSettings {
    /// Between checks of a healthy replica (jittered by ±10%).
    pub interval: Duration,
    /// Between checks after a failure and while unhealthy.
    pub fast_interval: Duration,
    /// Passes in a row that make an unhealthy replica healthy ("rise").
    pub rise: u32,
    /// Failures in a row that make a healthy replica unhealthy ("fall").
    pub fall: u32,
}

/// A change of standing decided by a check result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// `rise` passes in a row: back in rotation.
    Healthy,
    /// `fall` failures in a row: out of rotation, with the last failure's reason (its
    /// message).
    Unhealthy(String),
}

/// Counts passes and failures in a row and says when the standing changes.
#[derive(Debug, Clone)]
pub struct Checker {
    settings: CheckSettings,
    healthy: bool,
    passes: u32,
    failures: u32,
}

/// Floor of every delay between checks, so that a zero interval cannot busy-loop.
const MIN_DELAY: Duration = Duration::from_millis(10);

impl Checker {
    /// A checker starting healthy (a replica already in rotation) or not.
    pub fn new(settings: CheckSettings, healthy: bool) -> Checker {
        Checker {
            settings,
            healthy,
            passes: 0,
            failures: 0,
        }
    }

    /// Whether the replica is in rotation as far as the checks are concerned.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Feed one check result; `Some` when it changes the standing.
    pub fn record(&mut self, result: Result<(), ProbeError>) -> Option<Transition> {
        match result {
            Ok(()) => {
                self.failures = 0;
                self.passes = self.passes.saturating_add(1);
                if !self.healthy && self.passes >= self.settings.rise.max(1) {
                    self.healthy = true;
                    return Some(Transition::Healthy);
                }
            }
            Err(reason) => {
                self.passes = 0;
                self.failures = self.failures.saturating_add(1);
                if self.healthy && self.failures >= self.settings.fall.max(1) {
                    self.healthy = false;
                    return Some(Transition::Unhealthy(reason.to_string()));
                }
            }
        }
        None
    }

    /// How long to wait before the next check: the fast interval after a failure or while
    /// unhealthy, else the interval with jitter.
    pub fn next_delay(&self) -> Duration {
        if !self.healthy || self.failures > 0 {
            self.settings.fast_interval.max(MIN_DELAY)
        } else {
            jittered(self.settings.interval).max(MIN_DELAY)
        }
    }
}

/// `d` scaled by a random factor in [0.9, 1.1].
pub fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.9 + fastrand::f64() * 0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: CheckSettings = CheckSettings {
        interval: Duration::from_secs(1),
        fast_interval: Duration::from_millis(250),
        rise: 2,
        fall: 3,
    };

    fn fail() -> Result<(), ProbeError> {
        Err(ProbeError::TimedOut(Duration::from_millis(100)))
    }

    #[test]
    fn falls_after_fall_failures_in_a_row_only() {
        let mut c = Checker::new(S, true);
        assert_eq!(c.record(fail()), None);
        assert_eq!(c.record(fail()), None);
        assert_eq!(c.record(Ok(())), None, "a pass resets the count");
        assert_eq!(c.record(fail()), None);
        assert_eq!(c.record(fail()), None);
        assert_eq!(
            c.record(fail()),
            Some(Transition::Unhealthy("timed out after 100ms".into()))
        );
        assert!(!c.is_healthy());
        assert_eq!(c.record(fail()), None, "reported once");
    }

    #[test]
    fn rises_after_rise_passes_in_a_row() {
        let mut c = Checker::new(S, false);
        assert_eq!(c.record(Ok(())), None);
        assert_eq!(c.record(fail()), None);
        assert_eq!(c.record(Ok(())), None);
        assert_eq!(c.record(Ok(())), Some(Transition::Healthy));
        assert_eq!(c.record(Ok(())), None);
        assert!(c.is_healthy());
    }

    #[test]
    fn checks_come_fast_after_a_failure_and_while_unhealthy() {
        let mut c = Checker::new(S, true);
        let d = c.next_delay();
        assert!(
            d >= Duration::from_millis(900) && d <= Duration::from_millis(1100),
            "{d:?}"
        );
        c.record(fail());
        assert_eq!(c.next_delay(), S.fast_interval);
        c.record(fail());
        c.record(fail());
        assert_eq!(c.next_delay(), S.fast_interval);
        c.record(Ok(()));
        assert_eq!(c.next_delay(), S.fast_interval, "still unhealthy");
    }

    #[test]
    fn jitter_spreads_within_ten_percent() {
        let d = Duration::from_secs(1);
        let samples: Vec<Duration> = (0..200).map(|_| jittered(d)).collect();
        assert!(
            samples
                .iter()
                .all(|s| *s >= Duration::from_millis(900) && *s <= Duration::from_millis(1100))
        );
        let distinct: std::collections::HashSet<_> = samples.iter().collect();
        assert!(distinct.len() > 100, "jitter must vary");
    }
}
