//! When each request should be sent. Pure arithmetic, no I/O and no clock.
//!
//! - **Open model** ([`Schedule`]): the rate is a piecewise-linear curve of time (a constant
//!   `--rate`, or `--stages` ramps). Request number `i` is due at the time `t` at which the
//!   curve's integral reaches `i`, so the schedule never waits for responses; a request
//!   that has to wait for a busy connection is charged from its due time.
//! - **Closed model** ([`user_start`]): users (connections) start at once, or one after
//!   another at a spawn rate, and then each sends its next request when the previous one
//!   is answered.
use std::time::Duration;

/// One stretch of the rate curve: from `rate0` to `rate1` requests/s, linearly, over `secs`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    start: f64,
    secs: f64,
    rate0: f64,
    rate1: f64,
    /// Requests due before this segment.
    before: f64,
}

impl Segment {
    fn count(&self) -> f64 {
        (self.rate0 + self.rate1) / 2.0 * self.secs
    }

    /// Seconds into the segment at which `n` requests of it are due (`0 <= n <= count`).
    fn time_of(&self, n: f64) -> f64 {
        // n = rate0 t + a t², with a = (rate1 - rate0) / (2 secs)
        let a = (self.rate1 - self.rate0) / (2.0 * self.secs);
        if a.abs() < 1e-12 {
            return n / self.rate0;
        }
        let disc = (self.rate0 * self.rate0 + 4.0 * a * n).max(0.0);
        let t = (-self.rate0 + disc.sqrt()) / (2.0 * a);
        t.clamp(0.0, self.secs)
    }
}

/// An open-model schedule: a rate curve over a bounded time.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    segments: Vec<Segment>,
}

impl Schedule {
    /// `rate` requests/s for `duration`.
    pub fn constant(rate: f64, duration: Duration) -> Schedule {
        Schedule::ramps(rate, &[(duration, rate)])
    }

    /// Starting at `initial` requests/s, each stage moves the rate linearly to its target
    /// over its duration (k6's ramping-arrival-rate).
    pub fn ramps(initial: f64, stages: &[(Duration, f64)]) -> Schedule {
        let mut segments = Vec::with_capacity(stages.len());
        let (mut start, mut before, mut rate0) = (0.0, 0.0, initial);
        for &(d, rate1) in stages {
            let secs = d.as_secs_f64();
            if secs <= 0.0 {
                rate0 = rate1;
                continue;
            }
            let seg = Segment {
                start,
                secs,
                rate0,
                rate1,
                before,
            };
            before += seg.count();
            start += secs;
            rate0 = rate1;
            segments.push(seg);
        }
        Schedule { segments }
    }

    /// How long the schedule runs.
    pub fn duration(&self) -> Duration {
        self.segments.last().map_or(Duration::ZERO, |s| {
            Duration::from_secs_f64(s.start + s.secs)
        })
    }

    /// How many requests are due over the whole schedule.
    pub fn total(&self) -> u64 {
        let n = self.segments.last().map_or(0.0, |s| s.before + s.count());
        // Request i is due when the integral reaches i, for i = 0, 1, …: ceil(n) of them
        // (minus a hair, so 100.0000001 from rounding is 100).
        (n - 1e-6).ceil().max(0.0) as u64
    }

    /// How many requests are due before `t` (those numbered below it).
    pub fn due_by(&self, t: Duration) -> u64 {
        let t = t.as_secs_f64();
        let n = match self.segments.iter().find(|s| t < s.start + s.secs) {
            Some(s) => {
                let x = (t - s.start).max(0.0);
                s.before + s.rate0 * x + (s.rate1 - s.rate0) / (2.0 * s.secs) * x * x
            }
            None => return self.total(),
        };
        ((n - 1e-6).ceil().max(0.0) as u64).min(self.total())
    }

    /// The rate the curve asks for at `t` (requests/s).
    pub fn rate_at(&self, t: Duration) -> f64 {
        let t = t.as_secs_f64();
        self.segments
            .iter()
            .find(|s| t < s.start + s.secs)
            .map_or(0.0, |s| {
                s.rate0 + (s.rate1 - s.rate0) * ((t - s.start) / s.secs).clamp(0.0, 1.0)
            })
    }

    /// When request number `i` (from 0) is due, from the start of the run; `None` past
    /// the end of the schedule.
    pub fn time_of(&self, i: u64) -> Option<Duration> {
        if i >= self.total() {
            return None;
        }
        let n = i as f64;
        let seg = self
            .segments
            .iter()
            .find(|s| s.count() > 0.0 && n < s.before + s.count())
            .or_else(|| self.segments.iter().rev().find(|s| s.count() > 0.0))?;
        let t = seg.start + seg.time_of((n - seg.before).min(seg.count()));
        Some(Duration::from_secs_f64(t))
    }
}

/// When closed-model user number `k` (from 0) starts, given a spawn rate in users/s
/// (`None`: all at once).
pub fn user_start(k: u32, spawn_rate: Option<f64>) -> Duration {
    match spawn_rate {
        Some(r) if r > 0.0 => Duration::from_secs_f64(f64::from(k) / r),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let s = Schedule::constant(100.0, secs(2.0));
        assert_eq!(s.total(), 200);
        assert_eq!(s.duration(), secs(2.0));
        assert_eq!(s.time_of(0), Some(Duration::ZERO));
        let t = s.time_of(150).unwrap().as_secs_f64();
        assert!((t - 1.5).abs() < 1e-9, "{t}");
        assert_eq!(s.time_of(200), None);
        assert_eq!(s.due_by(Duration::from_millis(1500)), 150);
        assert_eq!(s.due_by(secs(9.0)), 200);
    }

    #[test]
    fn a_linear_ramp_spends_the_integral() {
        // 0 → 100 over 2 s: 100 requests, half as many in the first second as a flat
        // 50/s would give… precisely N(1) = 25.
        let s = Schedule::ramps(0.0, &[(secs(2.0), 100.0)]);
        assert_eq!(s.total(), 100);
        let in_first_second = (0..100)
            .filter(|&i| s.time_of(i).unwrap() < secs(1.0))
            .count();
        assert_eq!(in_first_second, 25);
        // Due times never go backwards.
        let times: Vec<_> = (0..100).map(|i| s.time_of(i).unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn stages_up_flat_and_down_to_zero() {
        let s = Schedule::ramps(
            0.0,
            &[(secs(1.0), 100.0), (secs(1.0), 100.0), (secs(1.0), 0.0)],
        );
        assert_eq!(s.total(), 200);
        assert_eq!(s.duration(), secs(3.0));
        let per_second = |k: f64| {
            (0..s.total())
                .filter(|&i| {
                    let t = s.time_of(i).unwrap().as_secs_f64();
                    t >= k && t < k + 1.0
                })
                .count()
        };
        assert_eq!(
            (per_second(0.0), per_second(1.0), per_second(2.0)),
            (50, 100, 50)
        );
        assert!((s.rate_at(secs(0.5)) - 50.0).abs() < 1e-9);
        assert!((s.rate_at(secs(2.75)) - 25.0).abs() < 1e-9);
        assert_eq!(s.rate_at(secs(3.5)), 0.0);
    }

    #[test]
    fn a_pause_at_zero_sends_nothing_and_resumes() {
        let s = Schedule::ramps(
            10.0,
            &[
                (secs(1.0), 10.0),
                (secs(0.0), 0.0),
                (secs(1.0), 0.0),
                (secs(0.0), 10.0),
                (secs(1.0), 10.0),
            ],
        );
        assert_eq!(s.total(), 20);
        let t10 = s.time_of(10).unwrap().as_secs_f64();
        assert!((t10 - 2.0).abs() < 1e-9, "{t10}");
    }

    #[test]
    fn users_spawn_at_their_rate() {
        assert_eq!(user_start(5, None), Duration::ZERO);
        assert_eq!(user_start(5, Some(10.0)), secs(0.5));
    }
}
