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
//! * a backend that *stalls* is ejected at once (below).
//!
//! # Stalls
//!
//! A backend stalls when a try waited its per-try timeout, the backend has other requests
//! in flight, it has not sent a single response since that try started, and it has been
//! silent for at least as long as any route of the service may legitimately wait (capped
//! at [`STALL_CAP`], 2 s). This tells a hung process (SIGSTOPped, deadlocked) from a slow
//! or overloaded one, which keeps answering, so a hang leaves rotation within one per-try
//! timeout (~100 ms for a fast service) instead of several health-check intervals.
//!
//! The last condition is for services that serve fast and slow-by-design requests alike.
//! Each route keeps its own latency (`crate::latency::RouteLatency`), so a 500 ms route's
//! tries are not timed by a 1 ms route's p99; and a route whose latest request was sent
//! less than its per-try timeout ago may still be waiting for an answer, so its replicas
//! may be busy that long: a replica working through fifty 500 ms requests, whose fast
//! requests are held up behind them for 150 ms, is busy, not hung. The routes register
//! with their service ([`ServiceHealth::add_route`]); the question is asked only when a
//! try has timed out on a silent backend, so the common path pays nothing for it. It is
//! asked of the service, not of the backend (a replica does not know which routes its
//! requests came from): a slow route in use anywhere in the service delays stall
//! ejections of every replica of it, to at most 2 s — the hedges still rescue requests
//! stuck on a hung replica after their own per-try timeout.
//!
//! # Silent among answering peers
//!
//! The stall rule needs two requests in flight, which light traffic never puts on one
//! replica: a client sending one request after the other has its try on a black hole (a
//! server that accepts connections and never answers) hedged after the per-try timeout,
//! and the hedge's answer ends the request and the stuck try with it. So a try that waited
//! its per-try timeout on a backend that has not answered since the try started, while
//! another backend of the service *has*, counts as a failure towards
//! `consecutive_failures`, as a reset after sending does; any answer of the backend's own
//! resets the count. The comparison with its peers keeps a service that is slow as a whole
//! (every replica silent, e.g. before a slow-by-design route's first answer) from having
//! its replicas ejected for it; one slow request of a healthy replica is followed by its
//! answers, which reset the count. With the cold rule of `crate::latency`, a static black
//! hole leaves rotation after three ~100 ms tries under sequential traffic.
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
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use shoal_balance::{Backend, Balancer, Down};
use shoal_config::{Health, Passive, Service, Source};
use shoal_core::{EventKind, EventLog, HealthState, ReplicaTraffic};
use shoal_health::tls::TlsError;
use shoal_health::{CheckSettings, Checker, Probe, ProbeError, ProbeTls, Transition};
use tokio::task::JoinHandle;

use crate::breaker::BreakerState;
use crate::latency::{AUTO_CAP, RouteLatency};
use tokio::time::Instant;

/// The longest silence that requests of slow routes in flight excuse: the `Auto` per-try
/// timeout's cap, so that a hung replica leaves rotation within ~2 s whatever else its
/// service serves.
pub(crate) const STALL_CAP: Duration = AUTO_CAP;

/// What one try told us about its backend.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Response headers arrived with this status, at `at_ms` ([`ms_at`]).
    Answered { status: u16, at_ms: u64 },
    /// The connection was refused or could not be made.
    Refused(String),
    /// The request was sent and then the connection failed, or no headers came in time.
    Failed(String),
    /// The try sent at `started` had no response headers at `now`: it waited its per-try
    /// timeout.
    Slow { started: Instant, now: Instant },
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

/// Whether a backend of `balancer` other than `backend` sent a response at or after
/// `since_ms` ([`ms_at`]).
fn others_answered_since(balancer: &Balancer, backend: &Arc<Backend>, since_ms: u64) -> bool {
    balancer.backends().iter().any(|b| {
        !Arc::ptr_eq(b, backend) && b.outlier().last_response_ms.load(Ordering::Relaxed) >= since_ms
    })
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
    probe_tls: Option<Result<ProbeTls, TlsError>>,
    /// The latency of each route that sends to the service, for the stall rule; routes of
    /// older routing tables drop out as they go.
    routes: Mutex<Vec<Weak<RouteLatency>>>,
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
            routes: Mutex::new(Vec::new()),
        })
    }

    /// `route` sends requests to this service: what it waits for counts in the stall rule.
    /// Adding a route again does nothing.
    pub(crate) fn add_route(&self, route: &Arc<RouteLatency>) {
        let mut routes = lock(&self.routes);
        routes.retain(|r| r.strong_count() > 0);
        if !routes
            .iter()
            .any(|r| std::ptr::eq(r.as_ptr(), Arc::as_ptr(route)))
        {
            routes.push(Arc::downgrade(route));
        }
    }

    /// How long a replica of the service may be silent at `now` without being hung: the
    /// largest expectation of the routes that may still be waiting, at most [`STALL_CAP`].
    fn excused_silence(&self, now: Instant) -> Duration {
        lock(&self.routes)
            .iter()
            .filter_map(Weak::upgrade)
            .filter_map(|route| route.awaited(now))
            .max()
            .unwrap_or_default()
            .min(STALL_CAP)
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
        probe: Result<Probe, TlsError>,
        settings: CheckSettings,
        timeout: Duration,
    ) {
        let mut checker = Checker::new(settings, !backend.is_down_for(Down::Check));
        loop {
            tokio::time::sleep(checker.next_delay()).await;
            let result = match &probe {
                Ok(probe) => shoal_health::check(probe, backend.addr(), timeout).await,
                Err(why) => Err(ProbeError::Tls(why.clone())),
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
            Outcome::Slow { started, now } => {
                let in_flight = backend.in_flight();
                let last = o.last_response_ms.load(Ordering::Relaxed);
                let silent = last < ms_at(started);
                // Silent since the try was sent at least; since its last answer if any.
                let silent_for = now.saturating_duration_since(started).max(match last {
                    0 => Duration::ZERO,
                    last => Duration::from_millis(ms_at(now).saturating_sub(last)),
                });
                if silent && in_flight >= 2 && silent_for >= self.excused_silence(now) {
                    Some(format!(
                        "stalled: no response for {}ms with {in_flight} requests in flight",
                        silent_for.as_millis()
                    ))
                } else if silent && others_answered_since(balancer, backend, ms_at(started)) {
                    // Silent while its peers answer the same service: a failure (see
                    // "Silent among answering peers"); any answer of its own resets it.
                    let n = o.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
                    (n >= self.passive.consecutive_failures).then(|| {
                        format!(
                            "{n} tries in a row without a response in {}ms while other \
                             replicas answered",
                            silent_for.as_millis()
                        )
                    })
                } else {
                    None
                }
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

#[cfg(test)]
mod ejection_tests;

#[cfg(test)]
mod tests {
    use shoal_balance::{Pick, PickContext, Policy};

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A service of three static servers, with passive health on, and its balancer.
    fn service() -> (Arc<ServiceHealth>, Balancer) {
        let stack = shoal_config::parse(
            "services:\n  api:\n    servers: [http://127.0.0.1:9001, http://127.0.0.1:9002, http://127.0.0.1:9003]\n    health: false\n",
            "shoal.yaml",
        )
        .unwrap();
        let def = &stack.services[0];
        let health = ServiceHealth::new(def, Arc::new(EventLog::new(100)));
        let backends = ["a", "b", "c"]
            .iter()
            .map(|k| Backend::new(*k, "127.0.0.1:1", 1))
            .collect();
        (
            health,
            Balancer::with_backends(Policy::RoundRobin, backends),
        )
    }

    /// `n` requests in flight on backend `a`.
    fn in_flight_on_a(balancer: &Balancer, n: usize) -> (Arc<Backend>, Vec<Pick>) {
        let picks: Vec<Pick> = (0..n)
            .map(|_| {
                balancer
                    .pick(&PickContext {
                        hash_key: None,
                        sticky: None,
                        exclude: &["b", "c"],
                    })
                    .unwrap()
            })
            .collect();
        (Arc::clone(picks[0].backend()), picks)
    }

    /// Test time starts after the gateway's millisecond clock does.
    fn t0() -> Instant {
        ms_at(Instant::now());
        Instant::now()
    }

    fn answered(health: &ServiceHealth, balancer: &Balancer, backend: &Arc<Backend>, at: Instant) {
        let at_ms = ms_at(at);
        health.observe(balancer, backend, Outcome::Answered { status: 200, at_ms });
    }

    fn slow(
        health: &ServiceHealth,
        balancer: &Balancer,
        backend: &Arc<Backend>,
        started: Instant,
        now: Instant,
    ) -> bool {
        health.observe(balancer, backend, Outcome::Slow { started, now });
        backend.is_down_for(Down::Ejected)
    }

    fn route(sent: Instant, expected: Duration) -> Arc<RouteLatency> {
        let route = Arc::new(RouteLatency::default());
        route.sent(sent, expected);
        route
    }

    #[test]
    fn a_silent_backend_with_requests_in_flight_stalls_after_one_per_try_timeout() {
        let (health, balancer) = service();
        let (a, _picks) = in_flight_on_a(&balancer, 3);
        let t0 = t0();
        answered(&health, &balancer, &a, t0);
        let fast = route(t0 + ms(10), ms(100));
        health.add_route(&fast);
        assert!(slow(&health, &balancer, &a, t0 + ms(10), t0 + ms(110)));
        let reason = health.traffic(&a).reason.unwrap();
        assert!(
            reason.contains("stalled: no response for 110ms with 3 requests in flight"),
            "{reason}"
        );
        assert_eq!(health.counters.ejections.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_backend_that_answered_since_the_try_was_sent_is_not_stalled() {
        let (health, balancer) = service();
        let (a, _picks) = in_flight_on_a(&balancer, 3);
        let t0 = t0();
        answered(&health, &balancer, &a, t0 + ms(50));
        assert!(!slow(&health, &balancer, &a, t0 + ms(10), t0 + ms(110)));
    }

    #[test]
    fn one_request_in_flight_is_slow_not_stalled() {
        let (health, balancer) = service();
        let (a, _picks) = in_flight_on_a(&balancer, 1);
        let t0 = t0();
        answered(&health, &balancer, &a, t0);
        assert!(!slow(&health, &balancer, &a, t0 + ms(10), t0 + ms(110)));
    }

    /// Issue 23, defect 11: a black hole under sequential traffic never has two requests
    /// in flight; it is silent while its peers answer, three tries in a row.
    #[test]
    fn a_backend_silent_while_its_peers_answer_is_ejected_after_consecutive_failures() {
        let (health, balancer) = service();
        let b = Arc::clone(&balancer.backends()[1]);
        let t0 = t0();
        for (i, start) in [0u64, 200, 400].into_iter().enumerate() {
            let (a, _pick) = in_flight_on_a(&balancer, 1);
            answered(&health, &balancer, &b, t0 + ms(start + 1));
            let ejected = slow(&health, &balancer, &a, t0 + ms(start), t0 + ms(start + 100));
            assert_eq!(ejected, i == 2, "try {i}");
        }
        let a = Arc::clone(&balancer.backends()[0]);
        let reason = health.traffic(&a).reason.unwrap();
        assert!(
            reason.contains(
                "3 tries in a row without a response in 100ms while other replicas answered"
            ),
            "{reason}"
        );
    }

    #[test]
    fn an_answer_of_its_own_resets_the_silent_tries() {
        let (health, balancer) = service();
        let b = Arc::clone(&balancer.backends()[1]);
        let t0 = t0();
        for start in [0u64, 200, 400, 600] {
            let (a, _pick) = in_flight_on_a(&balancer, 1);
            answered(&health, &balancer, &b, t0 + ms(start + 1));
            assert!(!slow(
                &health,
                &balancer,
                &a,
                t0 + ms(start),
                t0 + ms(start + 100)
            ));
            // One slow request, then answers: a healthy replica with an outlier.
            answered(&health, &balancer, &a, t0 + ms(start + 150));
        }
    }

    /// Before a slow-by-design route's first answer every replica is silent: none of them
    /// is a black hole for it.
    #[test]
    fn silence_of_a_whole_service_is_not_counted() {
        let (health, balancer) = service();
        let t0 = t0();
        for start in [0u64, 1, 2, 3, 4] {
            let (a, _pick) = in_flight_on_a(&balancer, 1);
            assert!(!slow(
                &health,
                &balancer,
                &a,
                t0 + ms(start),
                t0 + ms(start + 1_000)
            ));
        }
        let a = Arc::clone(&balancer.backends()[0]);
        assert_eq!(a.outlier().consecutive_failures.load(Ordering::Relaxed), 0);
    }

    /// The report of issue 24: a replica working through fifty 500 ms requests is silent
    /// while a fast request waits 100 ms; it is busy, not hung.
    #[test]
    fn a_slow_route_in_flight_excuses_silence_up_to_its_expectation() {
        let (health, balancer) = service();
        let (a, _picks) = in_flight_on_a(&balancer, 51);
        let t0 = t0();
        answered(&health, &balancer, &a, t0);
        // The slow route's latest request expects up to 2 s; the fast one 100 ms.
        let slow_route = route(t0 + ms(5), ms(2_000));
        let fast_route = route(t0 + ms(10), ms(100));
        health.add_route(&slow_route);
        health.add_route(&fast_route);
        assert!(!slow(&health, &balancer, &a, t0 + ms(10), t0 + ms(110)));
        assert!(!slow(
            &health,
            &balancer,
            &a,
            t0 + ms(1_000),
            t0 + ms(1_100)
        ));
        assert_eq!(health.counters.ejections.load(Ordering::Relaxed), 0);
        // Slow requests keep coming; silent for the slow route's whole expectation, the
        // replica is hung after all.
        slow_route.sent(t0 + ms(1_900), ms(2_000));
        assert!(!slow(
            &health,
            &balancer,
            &a,
            t0 + ms(1_895),
            t0 + ms(1_995)
        ));
        assert!(slow(&health, &balancer, &a, t0 + ms(1_905), t0 + ms(2_005)));
    }

    #[test]
    fn a_slow_route_no_longer_excuses_once_its_requests_are_overdue() {
        let (health, balancer) = service();
        let (a, _picks) = in_flight_on_a(&balancer, 3);
        let t0 = t0();
        answered(&health, &balancer, &a, t0);
        // The slow route sent its latest request 600 ms ago expecting 500 ms.
        let slow_route = route(t0, ms(500));
        health.add_route(&slow_route);
        assert!(slow(&health, &balancer, &a, t0 + ms(500), t0 + ms(600)));
    }

    #[test]
    fn slow_routes_excuse_at_most_two_seconds() {
        let (health, balancer) = service();
        let (a, _picks) = in_flight_on_a(&balancer, 3);
        let t0 = t0();
        answered(&health, &balancer, &a, t0);
        let report = route(t0 + ms(1_950), Duration::from_secs(30));
        health.add_route(&report);
        assert!(!slow(
            &health,
            &balancer,
            &a,
            t0 + ms(1_800),
            t0 + ms(1_900)
        ));
        assert!(slow(&health, &balancer, &a, t0 + ms(1_900), t0 + ms(2_000)));
    }

    #[test]
    fn routes_of_a_dropped_table_no_longer_count() {
        let (health, balancer) = service();
        let (a, _picks) = in_flight_on_a(&balancer, 3);
        let t0 = t0();
        answered(&health, &balancer, &a, t0);
        let old = route(t0 + ms(10), ms(2_000));
        health.add_route(&old);
        health.add_route(&old);
        assert_eq!(lock(&health.routes).len(), 1, "added once");
        drop(old);
        let new = route(t0 + ms(10), ms(100));
        health.add_route(&new);
        assert_eq!(lock(&health.routes).len(), 1, "the dropped route is gone");
        assert!(slow(&health, &balancer, &a, t0 + ms(10), t0 + ms(110)));
    }

    #[test]
    fn a_backend_that_never_answered_stalls_after_the_try_s_own_wait() {
        let (health, balancer) = service();
        let (a, _picks) = in_flight_on_a(&balancer, 3);
        let t0 = t0();
        let slow_route = route(t0, ms(1_000));
        health.add_route(&slow_route);
        assert!(!slow(&health, &balancer, &a, t0 + ms(10), t0 + ms(110)));
        slow_route.sent(t0 + ms(900), ms(1_000));
        assert!(slow(&health, &balancer, &a, t0, t0 + ms(1_000)));
    }
}
