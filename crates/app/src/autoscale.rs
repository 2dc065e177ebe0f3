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
//! Scaling down goes through the supervisor's ordinary stop: the replica leaves the
//! balancer, finishes its in-flight requests, then is stopped — no request fails because
//! of scaling.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use shoal_autoscale::{Autoscaler, Decision, ReplicaSample, Sample};
use shoal_config::{Autoscale, Source, Stack};
use shoal_core::{
    AutoscaleReading, AutoscaleStatus, EventKind, ReplicaState, ServiceStatus, unix_millis,
};
use shoal_proxy::HoldSettings;
use tokio::time::Instant;

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
    /// others (history kept), none for services no longer autoscaled; activators for
    /// services that may scale to zero.
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
            match services.get_mut(&s.name) {
                Some(scaled) => {
                    scaled.engine.set_policy(settings.policy.clone());
                    scaled.settings = settings.clone();
                }
                None => {
                    services.insert(
                        s.name.clone(),
                        Scaled {
                            settings: settings.clone(),
                            engine: Autoscaler::new(settings.policy.clone(), self.now()),
                            next_tick: Instant::now() + settings.tick,
                            in_flight: HashMap::new(),
                            served: HashMap::new(),
                            last_tick: None,
                            last: None,
                            last_scaled_ms: None,
                        },
                    );
                }
            }
            let hold = (settings.policy.min == 0).then(|| {
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
        let due: Vec<String> = lock(&self.services)
            .iter()
            .filter(|(_, s)| s.next_tick <= now)
            .map(|(n, _)| n.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let statuses = control.replicas.status();
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
            // Queue backlog is not read yet: the broker readers are wired in next.
            backlog: None,
        };
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
    match control.replicas.scale(service, desired) {
        Ok(()) => {
            // Debug, not info: the `scaled` event below says the same to the user.
            tracing::debug!(service, current, desired, %reason, "autoscaled");
            control.autoscaling.events.scaled(service, current, desired);
            control.events.emit(
                service,
                None,
                EventKind::Scaled,
                format!("autoscaler: {current} → {desired}: {reason}"),
            );
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
