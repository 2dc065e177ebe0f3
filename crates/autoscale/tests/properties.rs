//! Properties of the controller over long runs, in fake time (1 s ticks), through the
//! public API only.

use std::time::Duration;

use proptest::prelude::*;
use shoal_autoscale::{Autoscaler, Policy, ReplicaSample, Sample, Target};

const TARGET: f64 = 10.0;

/// xorshift64*: a deterministic noise source, so a failing case replays from its seed.
struct Noise(u64);

impl Noise {
    fn new(seed: u64) -> Self {
        Noise(seed | 1)
    }

    /// Uniform in [-1, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (bits as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// A service under a constant load of `ideal × TARGET` requests in flight, shared by its
/// ready replicas with ±15% noise per replica and per tick. Replicas become ready
/// `start_delay` after the decision that asked for them; scale-down removes the newest.
/// Returns the desired count after each tick.
fn run_constant_load(ideal: u32, initial: u32, start_delay: u64, seed: u64) -> Vec<u32> {
    let policy = Policy {
        max: 60,
        ..Policy::default()
    };
    let mut scaler = Autoscaler::new(policy, Duration::ZERO);
    let mut noise = Noise::new(seed);
    // When each replica was asked for; the initial ones have been running for long.
    let mut started: Vec<Option<u64>> = vec![None; initial as usize];
    let mut current = initial;
    let mut desired = Vec::new();
    for t in 0..600u64 {
        let ready_at = |s: &Option<u64>| s.map_or(0, |s| s + start_delay);
        let ready = started.iter().filter(|s| ready_at(s) <= t).count().max(1) as f64;
        let replicas = started
            .iter()
            .map(|s| {
                if ready_at(s) <= t {
                    let ready_for = Duration::from_secs(s.map_or(600, |_| t - ready_at(s)));
                    let per = TARGET * f64::from(ideal) / ready * (1.0 + 0.15 * noise.next());
                    ReplicaSample::ready(ready_for).with_concurrency(per)
                } else {
                    ReplicaSample::starting()
                }
            })
            .collect();
        let d = scaler.tick(&Sample {
            now: Duration::from_secs(t),
            current,
            replicas,
            requests: 1000,
            ..Sample::default()
        });
        current = d.desired;
        started.truncate(current as usize);
        while started.len() < current as usize {
            started.push(Some(t));
        }
        desired.push(current);
    }
    desired
}

/// How many times the sequence reverses direction (up then down, or down then up).
fn reversals(initial: u32, counts: &[u32]) -> usize {
    let mut last = initial;
    let mut direction = 0i8;
    let mut reversals = 0;
    for &c in counts {
        let d = match c.cmp(&last) {
            std::cmp::Ordering::Greater => 1,
            std::cmp::Ordering::Less => -1,
            std::cmp::Ordering::Equal => 0,
        };
        if d != 0 {
            if direction != 0 && d != direction {
                reversals += 1;
            }
            direction = d;
        }
        last = c;
    }
    reversals
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Small services: a noisy constant load settles within one replica of the ideal and
    /// reverses direction at most twice in 10 minutes. (Up to 9 replicas: a rare excursion
    /// of the average above +10% proposes `ceil(N × 1.1…)`, which is N+1 only while
    /// `N × 0.1 < 1`; from 10 replicas it is N+2 until the down window has passed.)
    #[test]
    fn noisy_constant_load_settles_near_the_ideal(
        ideal in 1u32..=9,
        initial in 1u32..=14,
        start_delay in 0u64..=3,
        seed in any::<u64>(),
    ) {
        let counts = run_constant_load(ideal, initial, start_delay, seed);
        let last = *counts.last().unwrap();
        prop_assert!(last.abs_diff(ideal) <= 1, "ideal {ideal}, ended at {last}: {counts:?}");
        let r = reversals(initial, &counts);
        prop_assert!(r <= 2, "{r} reversals: {counts:?}");
    }

    /// Larger services: the ±10% tolerance band is wider than one replica, so the count
    /// settles within the band (plus the noise), still without flapping.
    #[test]
    fn noisy_constant_load_does_not_flap_at_scale(
        ideal in 10u32..=40,
        initial in 1u32..=50,
        start_delay in 0u64..=3,
        seed in any::<u64>(),
    ) {
        let counts = run_constant_load(ideal, initial, start_delay, seed);
        let last = *counts.last().unwrap();
        let band = (f64::from(ideal) * 0.2).ceil() as u32;
        prop_assert!(last.abs_diff(ideal) <= band, "ideal {ideal}, ended at {last}: {counts:?}");
        let r = reversals(initial, &counts);
        prop_assert!(r <= 2, "{r} reversals: {counts:?}");
    }
}

/// One tick of arbitrary observations, applied to whatever `current` is.
#[derive(Debug, Clone)]
struct TickSpec {
    requests: u64,
    queued: u64,
    total: f64,
    starting: u32,
    /// Bit `i` set: ready replica `i` (of the first 8) reports no concurrency.
    missing: u8,
    cpu: bool,
    wake: bool,
    advance: u64,
}

fn tick_spec() -> impl Strategy<Value = TickSpec> {
    (
        prop_oneof![3 => Just(0u64), 2 => 1u64..500],
        prop_oneof![6 => Just(0u64), 1 => 1u64..20],
        0.0f64..400.0,
        prop_oneof![3 => Just(0u32), 1 => 1u32..4],
        prop_oneof![3 => Just(0u8), 1 => any::<u8>()],
        any::<bool>(),
        prop_oneof![20 => Just(false), 1 => Just(true)],
        prop_oneof![5 => Just(1u64), 1 => 2u64..30],
    )
        .prop_map(
            |(requests, queued, total, starting, missing, cpu, wake, advance)| TickSpec {
                requests,
                queued,
                total,
                starting,
                missing,
                cpu,
                wake,
                advance,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever it observes: desired ≤ max; desired ≥ min; 0 only with `min == 0` and no
    /// traffic in the tick; and never below the current count while some metric is
    /// missing (unless scaling an idle service to zero).
    #[test]
    fn desired_stays_within_bounds(
        min in 0u32..=3,
        extra in 0u32..=10,
        initial in 0u32..=20,
        cpu_target in any::<bool>(),
        ticks in proptest::collection::vec(tick_spec(), 1..150),
    ) {
        let max = min.max(1) + extra;
        let mut targets = vec![Target::Concurrency(TARGET)];
        if cpu_target {
            targets.push(Target::Cpu(0.5));
        }
        let policy = Policy { min, max, targets, ..Policy::default() };
        prop_assert_eq!(policy.validate(), Ok(()));
        let mut scaler = Autoscaler::new(policy, Duration::ZERO);
        let mut current = initial;
        let mut now = 0u64;
        for spec in ticks {
            now += spec.advance;
            if spec.wake && current == 0 {
                let woken = scaler.wake(Duration::from_secs(now));
                prop_assert_eq!(woken, min.max(1));
                current = woken;
            }
            let starting = spec.starting.min(current);
            let ready = current - starting;
            let mut replicas = Vec::new();
            let mut missing = false;
            for i in 0..ready {
                let absent = i < 8 && spec.missing & (1 << i) != 0;
                missing |= absent;
                let per = spec.total / f64::from(ready);
                let mut r = ReplicaSample::ready(Duration::from_secs(60));
                if !absent {
                    r.concurrency = Some(per);
                }
                if spec.cpu {
                    r.cpu = Some(per / 20.0);
                } else {
                    missing |= cpu_target;
                }
                replicas.push(r);
            }
            replicas.extend((0..starting).map(|_| ReplicaSample::starting()));
            let d = scaler.tick(&Sample {
                now: Duration::from_secs(now),
                current,
                replicas,
                latency_p95: None,
                queued: spec.queued,
                requests: spec.requests,
            });
            prop_assert!(d.desired <= max, "{d:?}");
            if d.desired == 0 {
                prop_assert_eq!(min, 0, "{:?}", d);
                prop_assert!(spec.requests == 0 && spec.queued == 0, "{d:?}");
                prop_assert!(!d.panic);
            } else {
                prop_assert!(d.desired >= min, "{d:?}");
            }
            if missing && current > 0 && d.desired != 0 {
                prop_assert!(d.desired >= current.min(max), "{d:?}");
            }
            prop_assert!(!d.reason.is_empty());
            prop_assert_eq!(d.readings.len(), scaler.policy().targets.len());
            current = d.desired;
        }
    }
}
