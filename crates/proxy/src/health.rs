//! The health of a service's backends as the gateway sees it: active checks of static
//! servers, passive health checking (outlier detection) from real requests, and the reasons
//! and counters `shoal status` shows.
//!
//! # Passive health checking
//!
//! Every try reports an [`Outcome`] for its backend:
//!
//! * a refused connection ejects the backend at once (nothing listens there);
//! * `consecutive_failures` gateway failures in a row (a reset after sending, no response
//!   headers in time) eject it;
//! * `consecutive_5xx` 5xx responses in a row eject it;
//! * a backend that *stalls* — a try waited its per-try timeout, the backend has other
//!   requests in flight, and it has not sent a single response since that try started — is
//!   ejected at once. This tells a hung process (SIGSTOPped, deadlocked) from a slow or
//!   overloaded one, which keeps answering, so a hang leaves rotation within one per-try
//!   timeout (~100 ms for a fast service) instead of several health-check intervals.
//!
//! An ejection lasts `base_ejection × 2^(n-1)` for the n-th ejection without a success in
//! between, capped at `max_ejection`; then the backend is back in rotation (and a failure
//! ejects it again, for longer). At most `max_ejected_percent` of the service's backends
//! (at least one) are ejected at once, and never the last one in rotation: past that,
//! failures are counted but nobody is ejected, so passive checks can never empty a service
//! (an overloaded single replica that answers nothing for a while is slow, not gone). An active check that passes again
//! after failing also ends an ejection (the replica demonstrably recovered).
//!
//! # Active checks
//!
//! For static servers the gateway runs the checks itself, one task per server, with
//! [`shoal_health::Checker`]'s rise/fall rule; local replicas are checked by the supervisor,
//! which removes them from the endpoint set instead. The HTTP checks of a service with
//! `tls:` are HTTPS, verified as its requests are (`crate::upstream_tls`).
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use shoal_balance::{Backend, Balancer, Down};
use shoal_config::{Health, Passive, Service, Source};
use shoal_core::{EventKind, EventLog, HealthState, ReplicaTraffic};
use shoal_health::{CheckSettings, Checker, Probe, ProbeTls, Transition};
use tokio::task::JoinHandle;

use crate::breaker::BreakerState;
use tokio::time::Instant;

/// What one try told us about its backend.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Response headers arrived with this status, at `at_ms` ([`ms_at`]).
    Answered { status: u16, at_ms: u64 },
    /// The connection was refused or could not be made.
    Refused(String),
    /// The request was sent and then the connection failed, or no headers came in time.
    Failed(String),
    /// The try waited its per-try timeout; `started_ms` is when it was sent.
    Slow { started_ms: u64, waited: Duration },
}

/// Counters of one service (ready for the metrics endpoint).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Requests answered (by a replica or by the gateway), and those answered 5xx.
    pub(crate) requests: AtomicU64,
    pub(crate) server_errors: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) hedges: AtomicU64,
    pub(crate) ejections: AtomicU64,
    pub(crate) breaker_rejected: AtomicU64,
}

impl Counters {
    /// One request of the service got its response headers (or its error) with `status`.
    pub(crate) fn answered(&self, status: http::StatusCode) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status.is_server_error() {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `at` in milliseconds on the gateway's monotonic clock (from its first use; never 0).
pub(crate) fn ms_at(at: Instant) -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    at.saturating_duration_since(origin).as_millis() as u64 + 1
}

/// A task aborted when its owner is dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Health state of one service's backends.
#[derive(Debug)]
pub(crate) struct ServiceHealth {
    service: Arc<str>,
    passive: Passive,
    events: Arc<EventLog>,
    /// Static servers' keys (URLs) in file order, for event replica indices.
    static_keys: Vec<String>,
    /// Why each backend that is out of rotation is out.
    reasons: Mutex<HashMap<String, String>>,
    pub(crate) counters: Counters,
    /// Active check tasks of static servers, stopped with the service.
    checks: Mutex<Vec<AbortOnDrop>>,
    /// The TLS of HTTPS checks of static servers (`Err`: why it cannot be set up).
    probe_tls: Option<Result<ProbeTls, String>>,
}

impl ServiceHealth {
    pub(crate) fn new(def: &Service, events: Arc<EventLog>) -> Arc<ServiceHealth> {
        let static_keys = match &def.source {
            Source::Servers(servers) => servers.iter().map(|s| s.url.clone()).collect(),
            Source::Command(_) => Vec::new(),
        };
        Arc::new(ServiceHealth {
            service: def.name.as_str().into(),
            passive: def.passive.clone(),
            events,
            static_keys,
            reasons: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            checks: Mutex::new(Vec::new()),
            probe_tls: match &def.source {
                Source::Servers(_) => crate::upstream_tls::probe_tls(def),
                Source::Command(_) => None,
            },
        })
    }

    /// Start active checks of `backends` (a static service's servers), if `health` is on
    /// and a runtime is there to run them.
    pub(crate) fn start_checks(self: &Arc<Self>, health: &Health, backends: &[Arc<Backend>]) {
        if !health.enabled {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let probe = Probe::of(health.path.as_deref(), &health.expect_status);
        let probe = match &self.probe_tls {
            None => Ok(probe),
            Some(Ok(tls)) => Ok(probe.over_tls(tls.clone())),
            Some(Err(why)) => Err(why.clone()),
        };
        let settings = CheckSettings {
            interval: health.interval,
            fast_interval: health.fast_interval,
            rise: health.healthy_threshold,
            fall: health.unhealthy_threshold,
        };
        let tasks = backends
            .iter()
            .map(|backend| {
                let me = Arc::clone(self);
                let backend = Arc::clone(backend);
                let probe = probe.clone();
                let timeout = health.timeout;
                AbortOnDrop(runtime.spawn(async move {
                    me.check_loop(backend, probe, settings, timeout).await;
                }))
            })
            .collect();
        *lock(&self.checks) = tasks;
    }

    async fn check_loop(
        &self,
        backend: Arc<Backend>,
        probe: Result<Probe, String>,
        settings: CheckSettings,
        timeout: Duration,
    ) {
        let mut checker = Checker::new(settings, !backend.is_down_for(Down::Check));
        loop {
            tokio::time::sleep(checker.next_delay()).await;
            let result = match &probe {
                Ok(probe) => shoal_health::check(probe, backend.addr(), timeout).await,
                Err(why) => Err(why.clone()),
            };
            match checker.record(result) {
                Some(Transition::Unhealthy(reason)) => {
                    backend.set_down(Down::Check, true);
                    let reason = format!("health check: {reason}");
                    self.note(backend.key(), Some(reason.clone()));
                    self.emit(backend.key(), EventKind::Unhealthy, reason);
                }
                Some(Transition::Healthy) => {
                    backend.set_down(Down::Check, false);
                    // It demonstrably recovered: an ejection ends too.
                    backend.set_down(Down::Ejected, false);
                    reset_counts(&backend);
                    self.note(backend.key(), None);
                    self.emit(
                        backend.key(),
                        EventKind::Healthy,
                        "health check passes: back in rotation",
                    );
                }
                None => {}
            }
        }
    }

    /// Take in what a try told us about `backend`; may eject it.
    pub(crate) fn observe(&self, balancer: &Balancer, backend: &Arc<Backend>, outcome: Outcome) {
        let o = backend.outlier();
        if let Outcome::Answered { at_ms, .. } = outcome {
            o.last_response_ms.store(at_ms, Ordering::Relaxed);
        }
        if !self.passive.enabled {
            return;
        }
        let reason = match outcome {
            Outcome::Answered { status, .. } if status >= 500 => {
                o.consecutive_failures.store(0, Ordering::Relaxed);
                let n = o.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
                (n >= self.passive.consecutive_5xx)
                    .then(|| format!("{n} responses in a row with status 5xx (last {status})"))
            }
            Outcome::Answered { .. } => {
                reset_counts(backend);
                None
            }
            Outcome::Refused(e) => Some(format!("connection refused ({e})")),
            Outcome::Failed(e) => {
                let n = o.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
                (n >= self.passive.consecutive_failures)
                    .then(|| format!("{n} failures in a row (last: {e})"))
            }
            Outcome::Slow { started_ms, waited } => {
                let in_flight = backend.in_flight();
                let silent = o.last_response_ms.load(Ordering::Relaxed) < started_ms;
                (silent && in_flight >= 2).then(|| {
                    format!(
                        "stalled: no response for {}ms with {in_flight} requests in flight",
                        waited.as_millis()
                    )
                })
            }
        };
        if let Some(reason) = reason {
            self.eject(balancer, backend, reason);
        }
    }

    fn eject(&self, balancer: &Balancer, backend: &Arc<Backend>, reason: String) {
        if backend.is_down_for(Down::Ejected) {
            return;
        }
        let all = balancer.backends();
        let ejected = all.iter().filter(|b| b.is_down_for(Down::Ejected)).count();
        let cap = (all.len() * self.passive.max_ejected_percent as usize / 100).max(1);
        if ejected >= cap {
            tracing::debug!(service = %self.service, replica = backend.key(), %reason, "not ejected: at the ejection cap");
            return;
        }
        // Never eject the last replica in rotation: an overloaded service looks silent too,
        // and slow answers beat none.
        let others_up = all
            .iter()
            .any(|b| !Arc::ptr_eq(b, backend) && b.is_available());
        if !others_up {
            tracing::debug!(service = %self.service, replica = backend.key(), %reason, "not ejected: the last replica in rotation");
            return;
        }
        if !backend.set_down(Down::Ejected, true) {
            return;
        }
        let o = backend.outlier();
        let n = o.ejections_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        o.ejections_total.fetch_add(1, Ordering::Relaxed);
        o.consecutive_5xx.store(0, Ordering::Relaxed);
        o.consecutive_failures.store(0, Ordering::Relaxed);
        self.counters.ejections.fetch_add(1, Ordering::Relaxed);
        let doubling = 2u32.saturating_pow(n.saturating_sub(1).min(20));
        let time = self
            .passive
            .base_ejection
            .saturating_mul(doubling)
            .min(self.passive.max_ejection);
        let note = format!("ejected for {}ms: {reason}", time.as_millis());
        self.note(backend.key(), Some(note.clone()));
        self.emit(backend.key(), EventKind::Ejected, note);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let backend = Arc::clone(backend);
        let events = Arc::clone(&self.events);
        let service = Arc::clone(&self.service);
        let index = self.index_of(backend.key());
        runtime.spawn(async move {
            tokio::time::sleep(time).await;
            if backend.set_down(Down::Ejected, false) {
                events.emit(
                    &service,
                    index,
                    EventKind::Readmitted,
                    format!(
                        "{}: back in rotation after {}ms",
                        backend.key(),
                        time.as_millis()
                    ),
                );
            }
        });
    }

    /// The service's circuit breaker changed state.
    pub(crate) fn breaker_changed(&self, state: BreakerState) {
        let (kind, message) = match state {
            BreakerState::Open => (
                EventKind::CircuitOpen,
                "circuit breaker open: requests get 503 at once",
            ),
            BreakerState::HalfOpen => (
                EventKind::CircuitOpen,
                "circuit breaker half-open: letting trial requests through",
            ),
            BreakerState::Closed => (EventKind::CircuitClosed, "circuit breaker closed"),
        };
        tracing::debug!(service = %self.service, "{message}");
        self.events.emit(&self.service, None, kind, message);
    }

    /// How the gateway sees `backend` now.
    pub(crate) fn traffic(&self, backend: &Backend) -> ReplicaTraffic {
        let health = if backend.is_down_for(Down::Check) {
            HealthState::Unhealthy
        } else if backend.is_down_for(Down::Ejected) {
            HealthState::Ejected
        } else {
            HealthState::Healthy
        };
        let reason = match health {
            HealthState::Healthy => None,
            _ => lock(&self.reasons).get(backend.key()).cloned(),
        };
        ReplicaTraffic {
            health,
            reason,
            in_flight: backend.in_flight() as u64,
            requests_total: backend.picked_total(),
            ejections_total: backend.outlier().ejections_total.load(Ordering::Relaxed),
        }
    }

    fn note(&self, key: &str, reason: Option<String>) {
        let mut reasons = lock(&self.reasons);
        match reason {
            Some(r) => reasons.insert(key.to_owned(), r),
            None => reasons.remove(key),
        };
    }

    fn emit(&self, key: &str, kind: EventKind, message: impl Into<String>) {
        let message = format!("{key}: {}", message.into());
        self.events
            .emit(&self.service, self.index_of(key), kind, message);
    }

    /// The replica index of a backend key: `service/N` for local replicas, the position
    /// in `servers:` for static servers.
    fn index_of(&self, key: &str) -> Option<u32> {
        if let Some(i) = self.static_keys.iter().position(|k| k == key) {
            return Some(i as u32);
        }
        key.rsplit_once('/').and_then(|(_, n)| n.parse().ok())
    }
}

/// A success: failures in a row start over. Loads before stores, so that the common case
/// (nothing to reset) does not write to a cache line every core shares.
fn reset_counts(backend: &Backend) {
    let o = backend.outlier();
    for count in [
        &o.consecutive_5xx,
        &o.consecutive_failures,
        &o.ejections_in_a_row,
    ] {
        if count.load(Ordering::Relaxed) != 0 {
            count.store(0, Ordering::Relaxed);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
