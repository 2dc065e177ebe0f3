//! The autoscaling loop: measure each autoscaled service, ask its decision engine
//! ([`shoal_autoscale::Autoscaler`]) every tick, and apply the answer through the driver.
//!
//! Measurements come from where they are exact and fresh, with no scrape delay: requests
//! in flight and requests served per replica from the gateway's own counters (sampled every
//! 100 ms and averaged over the tick), time to response headers from the gateway's latency
//! tracker, CPU and memory per replica process group from the supervisor's `/proc`
//! sampler. A service at zero replicas with `min: 0` gets an [`shoal_proxy::Activator`]:
//! the first request held there wakes it at once, without waiting for the next tick.
//!
//! A service with a `backlog` target (a worker, typically) has its queue read by a
//! [`crate::backlog::Poller`] every `poll`; each tick passes the newest read. A read showing
//! more messages than the current replicas are sized for (`per_replica` × replicas, or the
//! activation threshold at zero) is decided on at once rather than at the next tick, as a
//! request held at zero is: burst to decision is one poll interval at most. A worker has
//! no route, so nothing but its backlog wakes it from zero.
//!
//! Scaling down goes through the supervisor's ordinary stop: the replica leaves the
//! balancer, finishes its in-flight requests, then is stopped — no request fails because
//! of scaling (a worker gets SIGTERM and its grace period to finish the message in hand).
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use shoal_autoscale::{Autoscaler, Decision, ReplicaSample, Sample, Target};
use shoal_config::{Autoscale, BacklogTrigger, Source, Stack};
use shoal_core::{
    AutoscaleBacklog, AutoscaleReading, AutoscaleStatus, ReplicaState, ServiceStatus, unix_millis,
};
use shoal_proxy::HoldSettings;
use tokio::time::Instant;

use crate::backlog::{Poller, PollerMetrics};
use crate::control::AppControl;
use crate::metrics::ScalingEvents;

/// How often requests in flight are sampled between ticks.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Every autoscaled service's engine and measurements.
#[derive(Debug)]
pub(crate) struct Autoscaling {
    origin: Instant,
    services: Mutex<HashMap<String, Scaled>>,
    /// Scale changes made, for the metrics.
    pub(crate) events: ScalingEvents,
}

/// One autoscaled service.
#[derive(Debug)]
struct Scaled {
    settings: Autoscale,
    engine: Autoscaler,
    next_tick: Instant,
    /// Sum and count of in-flight samples per replica key since the last tick.
    in_flight: HashMap<String, (u64, u32)>,
    /// Requests served per replica key at the last tick, and when.
    served: HashMap<String, u64>,
    last_tick: Option<Instant>,
    last: Option<Decision>,
    last_scaled_ms: Option<u64>,
    /// The reader of the queue behind the backlog target, if the service has one.
    backlog: Option<Poller>,
    /// The time of the newest read a tick passed to the engine, or that was checked between
    /// ticks for a burst.
    backlog_checked: Option<Duration>,
}

impl Scaled {
    fn new(settings: &Autoscale, now: Duration, tick: Instant) -> Scaled {
        Scaled {
            settings: settings.clone(),
            engine: Autoscaler::new(settings.policy.clone(), now),
            next_tick: tick + settings.tick,
            in_flight: HashMap::new(),
            served: HashMap::new(),
            last_tick: None,
            last: None,
            last_scaled_ms: None,
            backlog: None,
            backlog_checked: None,
        }
    }

    /// Whether a read has completed since the last call (or the last tick).
    fn take_new_read(&mut self) -> bool {
        let Some(at) = self.backlog.as_ref().and_then(Poller::latest).map(|r| r.at) else {
            return false;
        };
        if self.backlog_checked.is_some_and(|checked| at <= checked) {
            return false;
        }
        self.backlog_checked = Some(at);
        true
    }

    /// Whether the newest read shows more messages than the current replicas are sized
    /// for: a burst, or messages at zero. Such a read is decided on at once instead of at
    /// the next tick.
    fn backlog_outgrown(&self, current: u32) -> bool {
        let Some(read) = self.backlog.as_ref().and_then(Poller::latest) else {
            return false;
        };
        let (Ok(sample), Some(target)) = (&read.result, backlog_target(&self.settings)) else {
            return false;
        };
        let sized_for = if current == 0 {
            target.activation
        } else {
            target.per_replica.saturating_mul(u64::from(current))
        };
        sample.messages > sized_for
    }
}

/// The service's backlog target, if it has one.
fn backlog_target(settings: &Autoscale) -> Option<&shoal_autoscale::Backlog> {
    settings.policy.targets.iter().find_map(|t| match t {
        Target::Backlog(b) => Some(b),
        _ => None,
    })
}

/// What the autoscaler does while the broker cannot be read, for the `brokererror` event.
fn while_failing(settings: &Autoscale) -> String {
    match backlog_target(settings).and_then(|b| b.fallback) {
        Some(f) => format!(
            "the autoscaler holds the replica count, then runs {} after {} failed read{}",
            f.replicas,
            f.after,
            if f.after == 1 { "" } else { "s" }
        ),
        None => "the autoscaler holds the replica count (never scales down) until a read succeeds"
            .to_owned(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Autoscaling {
    pub(crate) fn new() -> Arc<Autoscaling> {
        Arc::new(Autoscaling {
            origin: Instant::now(),
            services: Mutex::new(HashMap::new()),
            events: ScalingEvents::default(),
        })
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Take in a (new) stack: engines for new autoscaled services, new settings for the
    /// others (history kept), none for services no longer autoscaled; activators for web
    /// services that may scale to zero; a queue reader per backlog trigger (restarted when
    /// the trigger changed, with a fresh engine when the queue did: another queue's reads
    /// must not mix with the old one's in the consumption rate).
    pub(crate) fn apply(self: &Arc<Self>, stack: &Stack, control: &AppControl) {
        let mut services = lock(&self.services);
        let mut keep = Vec::new();
        for s in &stack.services {
            let Source::Command(c) = &s.source else {
                continue;
            };
            let Some(settings) = &c.autoscale else {
                continue;
            };
            keep.push(s.name.clone());
            let scaled = match services.entry(s.name.clone()) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    let scaled = e.into_mut();
                    scaled.engine.set_policy(settings.policy.clone());
                    scaled.settings = settings.clone();
                    scaled
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(Scaled::new(settings, self.now(), Instant::now()))
                }
            };
            self.apply_backlog(scaled, &s.name, c.backlog.as_ref(), control);
            // A worker has no route: no request can be held for it, nor wake it.
            let hold = (settings.policy.min == 0 && !s.is_worker()).then(|| {
                let me = Arc::downgrade(self);
                let control = control.weak();
                let name = s.name.clone();
                let wake: shoal_proxy::WakeFn = Arc::new(move || wake(&me, &control, &name));
                (
                    HoldSettings {
                        queue: settings.hold.queue.into(),
                        timeout: settings.hold.timeout,
                    },
                    wake,
                )
            });
            control.gateway.set_activator(&s.name, hold);
        }
        services.retain(|name, _| {
            let kept = keep.contains(name);
            if !kept {
                control.gateway.set_activator(name, None);
            }
            kept
        });
    }

    /// Start, restart or stop the reader of `service`'s queue.
    fn apply_backlog(
        &self,
        scaled: &mut Scaled,
        service: &str,
        trigger: Option<&BacklogTrigger>,
        control: &AppControl,
    ) {
        let said = while_failing(&scaled.settings);
        match (&scaled.backlog, trigger) {
            (None, None) => return,
            (Some(poller), Some(t)) if poller.is(t, &said) => return,
            (Some(poller), Some(t)) if poller.trigger().source != t.source => {
                scaled.engine = Autoscaler::new(scaled.settings.policy.clone(), self.now());
            }
            _ => {}
        }
        // The old reader stops when dropped.
        scaled.backlog = trigger.map(|t| {
            Poller::start(
                &control.runtime,
                service,
                t,
                self.origin,
                Arc::clone(&control.events),
                said,
            )
        });
        scaled.backlog_checked = None;
    }

    /// Each backlog reader's figures, by service, for the metrics.
    pub(crate) fn backlog_metrics(&self) -> Vec<(String, PollerMetrics)> {
        let services = lock(&self.services);
        let mut all: Vec<(String, PollerMetrics)> = services
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), s.backlog.as_ref()?.metrics())))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Whether `service` is autoscaled, and its bounds.
    pub(crate) fn bounds(&self, service: &str) -> Option<(u32, u32)> {
        lock(&self.services)
            .get(service)
            .map(|s| (s.settings.policy.min, s.settings.policy.max))
    }

    /// The autoscaler's view of `service`, for status.
    pub(crate) fn status(&self, service: &str, held: u64) -> Option<AutoscaleStatus> {
        let services = lock(&self.services);
        let s = services.get(service)?;
        let policy = &s.settings.policy;
        let d = s.last.as_ref();
        Some(AutoscaleStatus {
            min: policy.min,
            max: policy.max,
            desired: d.map_or(0, |d| d.desired),
            targets: d.map_or_else(
                || {
                    policy
                        .targets
                        .iter()
                        .map(|t| format!("<unknown>/{}", t.value()))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                Decision::targets_column,
            ),
            readings: d.map_or_else(Vec::new, |d| {
                d.readings
                    .iter()
                    .map(|r| AutoscaleReading {
                        name: r.name.to_owned(),
                        value: r.value,
                        target: r.target,
                    })
                    .collect()
            }),
            panic: d.is_some_and(|d| d.panic),
            reason: d.map_or_else(|| "no decision yet".to_owned(), |d| d.reason.clone()),
            limited_by: d.and_then(|d| d.limited_by.map(|l| l.to_string())),
            last_scaled_ms: s.last_scaled_ms,
            held,
            backlog: s.backlog.as_ref().map(|poller| {
                let b = d.and_then(|d| d.backlog.as_ref());
                AutoscaleBacklog {
                    source: poller.source().to_owned(),
                    messages: b.and_then(|b| b.messages),
                    smoothed: b.and_then(|b| b.smoothed),
                    consumed: b.and_then(|b| b.consumed),
                    partitions: b.and_then(|b| b.partitions),
                    rate_per_replica: b.and_then(|b| b.rate_per_replica),
                    active: b.is_some_and(|b| b.active),
                    failures: b.map_or(0, |b| b.failures),
                    error: b.and_then(|b| b.error.clone()),
                    fallback: b.is_some_and(|b| b.fallback),
                    read_at_ms: poller.read_at_ms(),
                }
            }),
        })
    }

    /// Sample and decide until `control` is gone.
    pub(crate) async fn run(self: Arc<Self>, control: Weak<AppControl>) {
        let mut every = tokio::time::interval(SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            every.tick().await;
            let Some(control) = control.upgrade() else {
                return;
            };
            self.sample(&control);
            self.decide_due(&control);
        }
    }

    /// Requests in flight per replica, added up between ticks.
    fn sample(&self, control: &AppControl) {
        let mut services = lock(&self.services);
        for (name, scaled) in services.iter_mut() {
            control.gateway.for_each_in_flight(name, |key, in_flight| {
                let e = match scaled.in_flight.get_mut(key) {
                    Some(e) => e,
                    None => scaled.in_flight.entry(key.to_owned()).or_default(),
                };
                e.0 += in_flight as u64;
                e.1 += 1;
            });
        }
    }

    fn decide_due(&self, control: &AppControl) {
        let now = Instant::now();
        let (mut due, new_reads) = {
            let mut services = lock(&self.services);
            let mut due = Vec::new();
            let mut new_reads = Vec::new();
            for (name, s) in services.iter_mut() {
                if s.next_tick <= now {
                    due.push(name.clone());
                } else if s.take_new_read() {
                    new_reads.push(name.clone());
                }
            }
            (due, new_reads)
        };
        if due.is_empty() && new_reads.is_empty() {
            return;
        }
        let statuses = control.replicas.status();
        if !new_reads.is_empty() {
            let services = lock(&self.services);
            for name in new_reads {
                let current = statuses.iter().find(|s| s.name == name).map(|s| s.desired);
                if let (Some(s), Some(current)) = (services.get(&name), current)
                    && s.backlog_outgrown(current)
                {
                    due.push(name);
                }
            }
        }
        for name in due {
            let Some(status) = statuses.iter().find(|s| s.name == name) else {
                continue;
            };
            self.decide(control, status, now);
        }
    }

    /// One tick of one service: build the sample, decide, apply.
    fn decide(&self, control: &AppControl, status: &ServiceStatus, now: Instant) {
        let name = &status.name;
        let traffic = control.gateway.traffic(name);
        let mut services = lock(&self.services);
        let Some(scaled) = services.get_mut(name) else {
            return;
        };
        scaled.next_tick = now + scaled.settings.tick;
        let elapsed = scaled
            .last_tick
            .map(|t| now.duration_since(t).as_secs_f64())
            .filter(|s| *s > 0.0);
        scaled.last_tick = Some(now);
        let (service_traffic, backends) = traffic.unwrap_or_default();
        let backends: HashMap<String, shoal_core::ReplicaTraffic> = backends.into_iter().collect();
        let mut requests = 0u64;
        let mut replicas = Vec::new();
        for r in &status.replicas {
            if !matches!(r.state, ReplicaState::Starting | ReplicaState::Ready) {
                continue; // draining, exited, failed: not capacity
            }
            let ready = r.state == ReplicaState::Ready;
            let key = r.endpoint.as_ref().map(|e| e.key.clone());
            let gateway = key.as_ref().and_then(|k| backends.get(k));
            let served_now = gateway.map(|t| t.requests_total);
            let served_before = key.as_ref().and_then(|k| scaled.served.get(k)).copied();
            let rps = match (served_now, served_before, elapsed) {
                (Some(now), Some(before), Some(secs)) => {
                    let n = now.saturating_sub(before);
                    requests += n;
                    Some(n as f64 / secs)
                }
                _ => None,
            };
            if let (Some(k), Some(n)) = (&key, served_now) {
                scaled.served.insert(k.clone(), n);
            }
            let concurrency = key
                .as_ref()
                .and_then(|k| scaled.in_flight.get(k))
                .filter(|(_, samples)| *samples > 0)
                .map(|(sum, samples)| *sum as f64 / f64::from(*samples))
                .or_else(|| gateway.map(|t| t.in_flight as f64));
            replicas.push(ReplicaSample {
                ready,
                ready_for: if ready {
                    Duration::from_secs_f64(r.uptime_secs)
                } else {
                    Duration::ZERO
                },
                cpu: r.cpu_percent.map(|p| p / 100.0),
                cpu_request: scaled.settings.cpu_request,
                memory: r.rss_bytes,
                concurrency: if ready { concurrency } else { None },
                rps: if ready { rps } else { None },
            });
        }
        scaled.in_flight.clear();
        let sample = Sample {
            now: self.now(),
            current: status.desired,
            replicas,
            latency_p95: service_traffic
                .latency_p95_ms
                .map(|ms| Duration::from_secs_f64(ms / 1000.0)),
            queued: service_traffic.held,
            requests: requests + service_traffic.held,
            backlog: scaled.backlog.as_ref().and_then(Poller::latest),
        };
        if let Some(read) = &sample.backlog {
            scaled.backlog_checked = Some(read.at);
        }
        let mut decision = scaled.engine.tick(&sample);
        let (current, desired) = (status.desired, decision.desired);
        if desired != current && !control.replicas.may_autoscale() {
            // Another gateway holds the Lease and scales; this one keeps deciding so that
            // its engine is warm when it takes over.
            decision.reason = format!(
                "{} (not applied: another gateway holds the lease and scales)",
                decision.reason
            );
            scaled.last = Some(decision);
            return;
        }
        let reason = decision.reason.clone();
        scaled.last = Some(decision);
        if desired == current {
            return;
        }
        scaled.last_scaled_ms = Some(unix_millis());
        drop(services);
        apply_scale(control, name, current, desired, &reason);
    }
}

/// Ask the driver for `desired` replicas and record why.
fn apply_scale(control: &AppControl, service: &str, current: u32, desired: u32, reason: &str) {
    let event = format!("autoscaler: {current} → {desired}: {reason}");
    match control
        .replicas
        .scale_announced(&control.events, service, desired, event)
    {
        Ok(()) => {
            // Debug, not info: the `scaled` event says the same to the user.
            tracing::debug!(service, current, desired, %reason, "autoscaled");
            control.autoscaling.events.scaled(service, current, desired);
        }
        Err(e) => tracing::warn!(service, desired, error = %e, "autoscaler could not scale"),
    }
}

/// A request is held for `service` at zero: start it now.
fn wake(me: &Weak<Autoscaling>, control: &Weak<AppControl>, service: &str) {
    let (Some(me), Some(control)) = (me.upgrade(), control.upgrade()) else {
        return;
    };
    let now = me.now();
    let count = {
        let mut services = lock(&me.services);
        let Some(scaled) = services.get_mut(service) else {
            return;
        };
        let count = scaled.engine.wake(now);
        scaled.last_scaled_ms = Some(unix_millis());
        count
    };
    let current = control
        .replicas
        .status()
        .into_iter()
        .find(|s| s.name == service)
        .map_or(0, |s| s.desired);
    if current == 0 {
        apply_scale(
            &control,
            service,
            0,
            count,
            "a request arrived while at zero replicas",
        );
    }
}
