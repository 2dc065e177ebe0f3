//! A deterministic queue simulator driven by the engine (issue 19's benchmark): how fast a
//! backlog drains under shoal's policy and under a KEDA + HPA equivalent configured in the
//! same [`Autoscaler`].
//!
//! # Model
//!
//! Time advances in steps of [`STEP_MS`]; nothing reads a clock. Each step:
//!
//! 1. the trace's arrivals for the step join the queue (a burst lands at once, a rate is
//!    integrated over the step);
//! 2. if a read is due, the broker is read: the waiting messages (rounded) and, for shoal, a
//!    counter of messages consumed so far, as Kafka's committed offsets or Redis'
//!    `entries-read` give (KEDA's scalers hand the HPA the lag alone, so the KEDA rows are
//!    not shown the counter, and get no keep-up floor: KEDA has none);
//! 3. with KEDA, if its operator's poll is due and the service is at zero, a backlog above
//!    the activation threshold wakes it: [`Autoscaler::wake`], which answers 1 (KEDA's 0→1
//!    step), since the HPA does nothing at zero replicas;
//! 4. if a tick is due, the engine decides from a [`Sample`] carrying the newest read (the
//!    same one again between reads) and the replicas (starting or ready); the count is
//!    applied at once: new replicas become ready [`Scenario::startup`] later, removed ones
//!    (starting ones first, then the newest) stop consuming at once;
//! 5. every ready replica consumes up to [`RATE`] messages per second, first in first out
//!    (a fluid model: a replica's share of a message counts).
//!
//! Reads and ticks run on their own periodic clocks, whose phases relative to the trace
//! are a parameter ([`Phase`]): a burst that lands just before a 30 s poll is seen at once,
//! one that lands just after waits 30 s.

use std::time::Duration;

use shoal_autoscale::{
    Autoscaler, Backlog, BacklogRead, BacklogSample, Policy, RatePolicy, ReplicaSample, Sample,
    Target,
};

/// The simulation step, in milliseconds.
pub(crate) const STEP_MS: u64 = 100;

/// Messages one ready replica consumes per second (20 ms per message).
pub(crate) const RATE: f64 = 50.0;

/// Where the messages come from.
#[derive(Debug, Clone)]
pub(crate) struct Trace {
    /// A letter and a few words, for tables.
    pub(crate) name: &'static str,
    /// What it is, for the report.
    pub(crate) description: &'static str,
    /// Messages that land at once: (when, in ms; how many).
    pub(crate) bursts: Vec<(u64, f64)>,
    /// Arrival rates: from `from` to `to` ms, linear from `rate_from` to `rate_to` per second.
    pub(crate) rates: Vec<Segment>,
    /// When the event under study starts, in ms; the figures count from here.
    pub(crate) event: u64,
    /// When the run ends, in ms.
    pub(crate) end: u64,
    /// The service's `min`.
    pub(crate) min: u32,
    /// Whether the time to drained means something here (not for the steady control).
    pub(crate) drains: bool,
}

/// A piece of a piecewise-linear arrival rate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) rate_from: f64,
    pub(crate) rate_to: f64,
}

impl Segment {
    fn flat(from_s: u64, to_s: u64, rate: f64) -> Segment {
        Segment::ramp(from_s, to_s, rate, rate)
    }

    fn ramp(from_s: u64, to_s: u64, rate_from: f64, rate_to: f64) -> Segment {
        Segment {
            from: from_s * 1000,
            to: to_s * 1000,
            rate_from,
            rate_to,
        }
    }

    /// The rate at `t` ms, if the segment covers it.
    fn rate(&self, t: f64) -> Option<f64> {
        let (from, to) = (self.from as f64, self.to as f64);
        (from <= t && t < to)
            .then(|| self.rate_from + (self.rate_to - self.rate_from) * (t - from) / (to - from))
    }
}

impl Trace {
    /// (a) 10,000 messages at t = 0 onto an idle queue, `min` replicas.
    pub(crate) fn burst(min: u32) -> Trace {
        Trace {
            name: if min == 0 {
                "a: burst, min 0"
            } else {
                "a: burst, min 1"
            },
            description: "10,000 messages at t = 0 onto an idle queue; 600 s",
            bursts: vec![(0, 10_000.0)],
            rates: Vec::new(),
            event: 0,
            end: 600_000,
            min,
            drains: true,
        }
    }

    /// (b) 100 msg/s, 1,000 msg/s from 600 s to 630 s, 100 msg/s again until 1,200 s.
    pub(crate) fn spike() -> Trace {
        Trace {
            name: "b: 10× spike",
            description: "100 msg/s; 1,000 msg/s for 30 s at t = 600 s; 100 msg/s until 1,200 s; min 1",
            bursts: Vec::new(),
            rates: vec![
                Segment::flat(0, 600, 100.0),
                Segment::flat(600, 630, 1000.0),
                Segment::flat(630, 1200, 100.0),
            ],
            event: 600_000,
            end: 1_200_000,
            min: 1,
            drains: true,
        }
    }

    /// (c) 20 msg/s, ramped to 400 msg/s over 5 minutes from 600 s, back to 20 over the next
    /// 5, then 20 msg/s until 1,800 s.
    pub(crate) fn ramp() -> Trace {
        Trace {
            name: "c: Black Friday ramp",
            description: "20 msg/s; from t = 600 s, up to 400 msg/s over 5 min and back over 5 min; 20 msg/s until 1,800 s; min 1",
            bursts: Vec::new(),
            rates: vec![
                Segment::flat(0, 600, 20.0),
                Segment::ramp(600, 900, 20.0, 400.0),
                Segment::ramp(900, 1200, 400.0, 20.0),
                Segment::flat(1200, 1800, 20.0),
            ],
            event: 600_000,
            end: 1_800_000,
            min: 1,
            drains: true,
        }
    }

    /// (d) The control: 100 msg/s throughout, figures from 600 s; two replicas keep up.
    pub(crate) fn steady() -> Trace {
        Trace {
            name: "d: steady (control)",
            description: "100 msg/s (two replicas' worth) for 1,200 s, figures from t = 600 s; min 1",
            bursts: Vec::new(),
            rates: vec![Segment::flat(0, 1200, 100.0)],
            event: 600_000,
            end: 1_200_000,
            min: 1,
            drains: false,
        }
    }

    /// The traces of the report: (a) at `min` 0 and 1, (b), (c) and the control (d).
    pub(crate) fn all() -> Vec<Trace> {
        vec![
            Trace::burst(0),
            Trace::burst(1),
            Trace::spike(),
            Trace::ramp(),
            Trace::steady(),
        ]
    }

    /// Messages arriving in the step starting at `t` ms.
    fn arrivals(&self, t: u64) -> f64 {
        let burst: f64 = self
            .bursts
            .iter()
            .filter(|&&(at, _)| t <= at && at < t + STEP_MS)
            .map(|&(_, n)| n)
            .sum();
        // Linear within a segment: the midpoint rate is exact.
        let mid = t as f64 + STEP_MS as f64 / 2.0;
        let rate = self.rates.iter().find_map(|s| s.rate(mid)).unwrap_or(0.0);
        burst + rate * STEP_MS as f64 / 1000.0
    }
}

/// When the engine sees the backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reads {
    /// Read every this many ms on its own clock; ticks in between see the newest read.
    Every(u64),
    /// Read afresh at every tick (KEDA without `useCachedMetrics`: each HPA query reaches
    /// the broker).
    AtTick,
}

/// An autoscaler configuration: the engine's policy and the clocks around it.
#[derive(Debug, Clone)]
pub(crate) struct Controller {
    /// For tables.
    pub(crate) name: &'static str,
    pub(crate) policy: Policy,
    /// The decision interval, ms.
    pub(crate) tick: u64,
    pub(crate) reads: Reads,
    /// KEDA's operator: polls every this many ms and does the 0→1 step itself; the engine
    /// is not ticked at zero (an HPA does nothing at zero replicas). `None`: the engine
    /// wakes the service itself from the reads (shoal).
    pub(crate) operator_poll: Option<u64>,
    /// Whether the engine is shown the broker's consumed counter: shoal reads it (its
    /// measured rates and keep-up floor come from it); KEDA's scalers pass the lag alone to
    /// the HPA.
    pub(crate) counter: bool,
}

/// What the workload looks like to both controllers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scenario {
    /// `per_replica` of the backlog target.
    pub(crate) per_replica: u64,
    /// `max`.
    pub(crate) max: u32,
    /// From the decision that asks for a replica to its first message, ms.
    pub(crate) startup: u64,
    /// shoal's `scale_down.stabilization`, if not its default (30 s).
    pub(crate) shoal_down_stabilization: Option<Duration>,
}

impl Controller {
    /// shoal's defaults for a backlog target: read every 1 s, a 1 s tick, 5 s smoothing,
    /// panic mode, 30 s down stabilization (unless the scenario says otherwise), scale to
    /// zero after 60 s idle; `drain_within` if given.
    pub(crate) fn shoal(
        name: &'static str,
        sc: &Scenario,
        min: u32,
        drain_within: Option<u64>,
    ) -> Self {
        let backlog = Backlog {
            drain_within: drain_within.map(Duration::from_secs),
            ..Backlog::new(sc.per_replica)
        };
        Controller {
            name,
            policy: Policy {
                min,
                max: sc.max,
                targets: vec![Target::Backlog(backlog)],
                down_stabilization: sc
                    .shoal_down_stabilization
                    .unwrap_or(Policy::default().down_stabilization),
                ..Policy::default()
            },
            tick: 1000,
            reads: Reads::Every(1000),
            operator_poll: None,
            counter: true,
        }
    }

    /// KEDA's defaults in front of HPA's (`pollingInterval` 30 s, `cooldownPeriod` 300 s;
    /// HPA: 15 s sync, tolerance 0.1, `behavior` defaults, no panic mode), with the HPA's
    /// metric either cached from KEDA's last poll (`useCachedMetrics: true`:
    /// `Reads::Every(30 s)`) or read at each sync (the default: `Reads::AtTick`).
    pub(crate) fn keda(name: &'static str, sc: &Scenario, min: u32, reads: Reads) -> Self {
        let secs = Duration::from_secs;
        let backlog = Backlog {
            // KEDA passes the broker's value through as it is.
            smoothing: Duration::ZERO,
            ..Backlog::new(sc.per_replica)
        };
        Controller {
            name,
            policy: Policy {
                min,
                max: sc.max,
                targets: vec![Target::Backlog(backlog)],
                tolerance_up: 0.1,
                tolerance_down: 0.1,
                up_stabilization: Duration::ZERO,
                down_stabilization: secs(300),
                up_policies: vec![
                    RatePolicy::Pods {
                        value: 4,
                        period: secs(15),
                    },
                    RatePolicy::Percent {
                        value: 100,
                        period: secs(15),
                    },
                ],
                down_policies: vec![RatePolicy::Percent {
                    value: 100,
                    period: secs(15),
                }],
                panic_threshold: f64::INFINITY,
                scale_to_zero_after: secs(300),
                ..Policy::default()
            },
            tick: 15_000,
            reads,
            operator_poll: Some(30_000),
            counter: false,
        }
    }

    /// A grid of `n × n` clock phases: reads (or KEDA's operator poll, when reads are made
    /// at ticks) and ticks each at `k / n` of their period, rounded to the step.
    pub(crate) fn phases(&self, n: u64) -> Vec<Phase> {
        let at = |period: u64, k: u64| period * k / n / STEP_MS * STEP_MS;
        let poll_period = match self.reads {
            Reads::Every(p) => p,
            Reads::AtTick => self.operator_poll.unwrap_or(self.tick),
        };
        let mut grid = Vec::new();
        for i in 0..n {
            for j in 0..n {
                let tick = at(self.tick, j);
                let poll = at(poll_period, i);
                let read = match self.reads {
                    Reads::Every(_) => poll,
                    Reads::AtTick => tick,
                };
                grid.push(Phase { read, tick, poll });
            }
        }
        grid
    }
}

/// Where each clock starts, ms after the trace's t = 0 (each then runs at its period).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Phase {
    pub(crate) read: u64,
    pub(crate) tick: u64,
    /// KEDA's operator poll. With cached metrics it is the read (the HPA is served the
    /// value of KEDA's last poll), so the two share a phase.
    pub(crate) poll: u64,
}

/// One decision that changed the count, or every decision with [`Run::all_decisions`].
#[derive(Debug, Clone)]
pub(crate) struct Change {
    /// Seconds since the trace's t = 0.
    pub(crate) at: f64,
    pub(crate) backlog: f64,
    pub(crate) ready: u32,
    pub(crate) from: u32,
    pub(crate) to: u32,
    pub(crate) reason: String,
}

/// The figures of one run; times in seconds since the event's start.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// The first decision, at or after the event, that raised the count.
    pub(crate) first_scale_up: Option<f64>,
    /// The first time, at or after the backlog's peak, that it was back at or below
    /// [`threshold`](Self::threshold); `None` if it never was, or if it never rose above.
    pub(crate) drained: Option<f64>,
    /// Whether the backlog rose above the threshold after the event.
    pub(crate) backed_up: bool,
    /// "Drained": the largest backlog of the minute before the event plus one replica's
    /// per-second capacity ([`RATE`]); 50 messages for a burst onto an empty queue.
    pub(crate) threshold: f64,
    pub(crate) peak_backlog: f64,
    /// The oldest waiting message's age, at its worst, seconds.
    pub(crate) max_lag: f64,
    /// Replicas existing (starting or ready) × seconds, from the event to the end.
    pub(crate) replica_seconds: f64,
    /// Count changes from the event to the end (KEDA's 0→1 counts as one).
    pub(crate) changes: u32,
    /// Of those, how many went the other way from the one before (up then down, or down then
    /// up): flapping.
    pub(crate) reversals: u32,
    pub(crate) peak_replicas: u32,
    /// Messages still waiting at the end.
    pub(crate) left: f64,
    /// The direction of the last change counted.
    last_up: Option<bool>,
    /// The count changes, or every decision.
    pub(crate) log: Vec<Change>,
}

/// A simulation of one trace under one controller.
#[derive(Debug, Clone)]
pub(crate) struct Run<'a> {
    pub(crate) trace: &'a Trace,
    pub(crate) controller: &'a Controller,
    pub(crate) scenario: Scenario,
    pub(crate) phase: Phase,
    /// Log every decision, not only changes.
    pub(crate) all_decisions: bool,
}

/// Whether a periodic clock starting at `phase` with `period` fires at `t` (ms).
fn due(t: u64, phase: u64, period: u64) -> bool {
    t >= phase && (t - phase).is_multiple_of(period)
}

/// The queue and the replicas.
#[derive(Debug)]
struct World {
    /// Each replica's ready time, ms.
    replicas: Vec<u64>,
    /// The count the driver was last asked to run.
    current: u32,
    backlog: f64,
    consumed: f64,
}

impl World {
    fn ready(&self, t: u64) -> u32 {
        self.replicas.iter().filter(|&&r| r <= t).count() as u32
    }

    /// A read of the broker at `t`, with the consumed counter if `counter`.
    fn read(&self, t: u64, counter: bool) -> BacklogRead {
        let mut sample = BacklogSample::new(self.backlog.round() as u64);
        if counter {
            sample = sample.with_consumed(self.consumed.floor() as u64);
        }
        BacklogRead::ok(Duration::from_millis(t), sample)
    }

    /// What the engine is shown at `t`.
    fn sample(&self, t: u64, backlog: Option<BacklogRead>) -> Sample {
        Sample {
            now: Duration::from_millis(t),
            current: self.current,
            replicas: self
                .replicas
                .iter()
                .map(|&ready_at| {
                    if ready_at <= t {
                        ReplicaSample::ready(Duration::from_millis(t - ready_at))
                    } else {
                        ReplicaSample::starting()
                    }
                })
                .collect(),
            backlog,
            ..Sample::default()
        }
    }
}

impl Run<'_> {
    pub(crate) fn simulate(&self) -> Outcome {
        let (trace, ctl, phase) = (self.trace, self.controller, self.phase);
        let mut scaler = Autoscaler::new(ctl.policy.clone(), Duration::ZERO);
        // The service starts at `min`, its replicas ready long ago.
        let mut world = World {
            replicas: vec![0; trace.min as usize],
            current: trace.min,
            backlog: 0.0,
            consumed: 0.0,
        };
        let steps = (trace.end / STEP_MS) as usize;
        // Messages arrived by each step (after its arrivals): the FIFO's time index.
        let mut arrived_by_step: Vec<f64> = Vec::with_capacity(steps);
        let mut arrived = 0.0;
        // The backlog at the end of each step from the event on.
        let mut after: Vec<f64> = Vec::with_capacity(steps);
        let mut peak_step = 0;
        let mut before_event = 0.0f64;
        let mut last_read: Option<BacklogRead> = None;
        let mut out = Outcome {
            first_scale_up: None,
            drained: None,
            backed_up: false,
            threshold: RATE,
            peak_backlog: 0.0,
            max_lag: 0.0,
            replica_seconds: 0.0,
            changes: 0,
            reversals: 0,
            peak_replicas: world.current,
            left: 0.0,
            last_up: None,
            log: Vec::new(),
        };

        for t in (0..trace.end).step_by(STEP_MS as usize) {
            // 1. Arrivals.
            let a = trace.arrivals(t);
            world.backlog += a;
            arrived += a;
            arrived_by_step.push(arrived);

            // 2–4. Reads, KEDA's operator, the engine.
            if matches!(ctl.reads, Reads::Every(p) if due(t, phase.read, p)) {
                last_read = Some(world.read(t, ctl.counter));
            }
            if let Some(period) = ctl.operator_poll
                && world.current == 0
                && due(t, phase.poll, period)
                && world.backlog.round() as u64 > activation(&ctl.policy)
            {
                let n = scaler.wake(Duration::from_millis(t));
                let reason = format!("KEDA's poll: backlog above activation → {n}");
                self.apply(&mut world, &mut out, t, n, reason);
            }
            // An HPA does nothing at zero replicas: only KEDA's poll wakes the service.
            let hpa_idle = ctl.operator_poll.is_some() && world.current == 0;
            if due(t, phase.tick, ctl.tick) && !hpa_idle {
                if ctl.reads == Reads::AtTick {
                    last_read = Some(world.read(t, ctl.counter));
                }
                let d = scaler.tick(&world.sample(t, last_read.clone()));
                self.apply(&mut world, &mut out, t, d.desired, d.reason);
            }

            // 5. Consumption over the step.
            let capacity = f64::from(world.ready(t)) * RATE * STEP_MS as f64 / 1000.0;
            let c = capacity.min(world.backlog);
            world.backlog -= c;
            world.consumed += c;

            // Figures.
            if t < trace.event {
                if t + 60_000 >= trace.event {
                    before_event = before_event.max(world.backlog);
                }
                continue;
            }
            let end = t + STEP_MS;
            if world.backlog + c > out.peak_backlog {
                out.peak_backlog = world.backlog + c;
                peak_step = after.len();
            }
            after.push(world.backlog);
            out.peak_replicas = out.peak_replicas.max(world.current);
            out.replica_seconds += world.replicas.len() as f64 * STEP_MS as f64 / 1000.0;
            if world.backlog > 1e-6 {
                // The oldest waiting message arrived in the first step whose arrivals reach
                // past what has been consumed.
                let first = arrived_by_step.partition_point(|&n| n <= world.consumed + 1e-6);
                let lag = (end - first as u64 * STEP_MS) as f64 / 1000.0;
                out.max_lag = out.max_lag.max(lag);
            }
        }
        out.threshold = before_event + RATE;
        out.backed_up = out.peak_backlog > out.threshold;
        if out.backed_up {
            out.drained = after[peak_step..]
                .iter()
                .position(|&b| b <= out.threshold)
                .map(|i| ((peak_step + i + 1) as u64 * STEP_MS) as f64 / 1000.0);
        }
        out.left = world.backlog;
        out
    }

    /// Runs `n` replicas from `t` on, and counts the change.
    fn apply(&self, world: &mut World, out: &mut Outcome, t: u64, n: u32, reason: String) {
        let current = world.current;
        if n != current || self.all_decisions {
            out.log.push(Change {
                at: t as f64 / 1000.0,
                backlog: world.backlog,
                ready: world.ready(t),
                from: current,
                to: n,
                reason,
            });
        }
        if n == current {
            return;
        }
        if t >= self.trace.event {
            out.changes += 1;
            let up = n > current;
            if out.last_up.is_some_and(|last| last != up) {
                out.reversals += 1;
            }
            out.last_up = Some(up);
            if up && out.first_scale_up.is_none() {
                out.first_scale_up = Some((t - self.trace.event) as f64 / 1000.0);
            }
        }
        if n > current {
            world
                .replicas
                .extend((current..n).map(|_| t + self.scenario.startup));
        } else {
            // Starting replicas first, then the newest.
            world.replicas.sort_unstable();
            world.replicas.truncate(n as usize);
        }
        world.current = n;
    }
}

/// The policy's backlog activation threshold.
fn activation(policy: &Policy) -> u64 {
    policy
        .targets
        .iter()
        .find_map(|t| match t {
            Target::Backlog(b) => Some(b.activation),
            _ => None,
        })
        .unwrap_or(0)
}
