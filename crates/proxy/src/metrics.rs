//! Request metrics: Traefik's families (`*_requests_total`, `*_request_duration_seconds`,
//! `open_connections`, …), counted on the hot path and written in Prometheus' text format at
//! scrape time.
//!
//! One request costs one lookup in a small sharded map: each thread has its own shard (a
//! mutex nobody else takes outside a scrape), keyed by a `Copy` key of small integers
//! (status, method, protocol, and interned entrypoint, router and service ids). A key seen
//! before costs no allocation; a new one allocates its cell once. Label values are bounded:
//! methods outside the standard verbs are `EXTENSION_METHOD`, statuses are three digits, and
//! names come from the stack file. The three request families are one series per key,
//! summed per family when scraped, so an entrypoint, router and service count cost one
//! update, not three.
//!
//! # Per-service figures
//!
//! Besides the Prometheus buckets (which a stack file may set coarse: Traefik's default
//! has 100 ms as its finest), each series that names a service also counts its times in
//! fine buckets: upper bounds 50 µs × 2^(i/4), a quarter octave apart, so a quantile read
//! from them is at most ~19% above the true value. [`RequestMetrics::service_figures`] sums
//! them per service with the request and 5xx counts: [`ServiceFigures`], counters since the
//! gateway started, whose difference over an interval ([`ServiceFigures::since`]) is what
//! that interval served. The automated canary compares a canary's with the stable
//! version's this way. Costs one more binary search over 82 bounds and one increment per
//! request, under the shard lock already held.
use std::cell::Cell as StdCell;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, Method};
use shoal_config::MetricsPrefix;
use shoal_core::prom::{format_value, header, sample};
use shoal_core::{HealthState, ReplicaTraffic, ServiceTraffic};

use crate::table::{RoutingTable, ServiceHandle};

/// Shards of the series map; threads beyond this many share shards.
const SHARDS: usize = 32;

/// Id of "no router/service" (a request no route matched).
pub(crate) const NONE: u32 = u32::MAX;

/// Request protocols, as Traefik labels them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Proto {
    Http,
    WebSocket,
    Grpc,
    GrpcWeb,
    Sse,
}

impl Proto {
    /// The protocol of a request, from its headers (Traefik's rules).
    pub(crate) fn of(headers: &HeaderMap) -> Proto {
        if let Some(ct) = headers.get(http::header::CONTENT_TYPE) {
            let ct = ct.as_bytes();
            if ct.starts_with(b"application/grpc-web") {
                return Proto::GrpcWeb;
            }
            if ct.starts_with(b"application/grpc") {
                return Proto::Grpc;
            }
        }
        if headers
            .get(http::header::UPGRADE)
            .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"))
        {
            return Proto::WebSocket;
        }
        if headers
            .get(http::header::ACCEPT)
            .is_some_and(|a| a.as_bytes().starts_with(b"text/event-stream"))
        {
            return Proto::Sse;
        }
        Proto::Http
    }

    fn label(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::WebSocket => "websocket",
            Proto::Grpc => "grpc",
            Proto::GrpcWeb => "grpc-web",
            Proto::Sse => "sse",
        }
    }
}

const METHODS: [&str; 11] = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "PRI",
    "EXTENSION_METHOD",
];

/// The method's index in [`METHODS`]; other methods are `EXTENSION_METHOD`.
pub(crate) fn method_index(m: &Method) -> u8 {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::CONNECT => 5,
        Method::OPTIONS => 6,
        Method::TRACE => 7,
        Method::PATCH => 8,
        _ if m.as_str() == "PRI" => 9,
        _ => 10,
    }
}

/// What one request is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) code: u16,
    pub(crate) method: u8,
    pub(crate) proto: Proto,
    pub(crate) entrypoint: u32,
    pub(crate) router: u32,
    pub(crate) service: u32,
}

#[derive(Debug, Clone, Default)]
struct Series {
    count: u64,
    sum: f64,
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: Vec<u64>,
    /// Observations per [`FINE_BOUNDS`] bucket, for series that name a service (else
    /// empty).
    fine: Vec<u64>,
}

/// Number of fine buckets: the last upper bound is 50 µs × 2^(81/4) ≈ 62 s.
const FINE_BUCKETS: usize = 82;

/// Upper bounds of the fine buckets, in nanoseconds: 50 µs × 2^(i/4), rounded.
static FINE_BOUNDS: [u64; FINE_BUCKETS] = fine_bounds();

const fn fine_bounds() -> [u64; FINE_BUCKETS] {
    // 50 µs × 2^(j/4) for j = 0..4, doubled once per octave.
    const OCTAVE: [u64; 4] = [50_000, 59_460, 70_711, 84_090];
    let mut bounds = [0; FINE_BUCKETS];
    let mut i = 0;
    while i < FINE_BUCKETS {
        bounds[i] = OCTAVE[i % 4] << (i / 4);
        i += 1;
    }
    bounds
}

/// The fine bucket of a time of `secs` (everything slower than the last bound shares it).
fn fine_bucket(secs: f64) -> usize {
    let nanos = (secs * 1e9) as u64;
    FINE_BOUNDS
        .partition_point(|&bound| bound < nanos)
        .min(FINE_BUCKETS - 1)
}

/// What the gateway answered for one service since it started, over every route and
/// status: counters, so the difference of two snapshots ([`ServiceFigures::since`]) is what
/// an interval served. See the module doc's "Per-service figures".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceFigures {
    /// Requests answered (any status).
    pub requests: u64,
    /// Of those, answered with a 5xx status (the replica's or the gateway's own 502/503/504).
    pub errors: u64,
    /// Answers per fine latency bucket (time to response headers); empty when none.
    latency: Vec<u64>,
}

impl ServiceFigures {
    /// Figures of `requests` answers, `errors` of them 5xx, all taking `time` (tests).
    pub fn uniform(requests: u64, errors: u64, time: Duration) -> ServiceFigures {
        let mut latency = vec![0; FINE_BUCKETS];
        latency[fine_bucket(time.as_secs_f64())] = requests;
        ServiceFigures {
            requests,
            errors,
            latency,
        }
    }

    /// What was answered after `earlier` (a snapshot of the same service taken before).
    pub fn since(&self, earlier: &ServiceFigures) -> ServiceFigures {
        let latency = (0..self.latency.len())
            .map(|i| {
                let before = earlier.latency.get(i).copied().unwrap_or(0);
                self.latency[i].saturating_sub(before)
            })
            .collect();
        ServiceFigures {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            latency,
        }
    }

    /// These and `other`'s answers together (e.g. the stable services of a split).
    pub fn plus(&self, other: &ServiceFigures) -> ServiceFigures {
        let len = self.latency.len().max(other.latency.len());
        let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
        ServiceFigures {
            requests: self.requests + other.requests,
            errors: self.errors + other.errors,
            latency: (0..len)
                .map(|i| at(&self.latency, i) + at(&other.latency, i))
                .collect(),
        }
    }

    /// The share of answers that were 5xx, 0..=1; None with no answer.
    pub fn error_ratio(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// The q-quantile (0..=1) of the time to response headers: the upper bound of the fine
    /// bucket holding it (at most ~19% above the true value); None with no answer.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        // The rank of the quantile, 1-based: the smallest n with n / total ≥ q.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_nanos(FINE_BOUNDS[i]));
            }
        }
        Some(Duration::from_nanos(FINE_BOUNDS[FINE_BUCKETS - 1]))
    }
}

/// FxHash: the keys are small integers chosen by us, so a fast non-keyed hash is fine.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_isize(&mut self, i: isize) {
        self.write_u64(i as u64);
    }
}

impl std::fmt::Debug for Fx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fx")
    }
}

type Shard = Mutex<HashMap<Key, Series, BuildHasherDefault<Fx>>>;

thread_local! {
    static SHARD: StdCell<usize> = const { StdCell::new(usize::MAX) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

fn shard_index() -> usize {
    SHARD.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(i);
        }
        i
    })
}

/// Names (entrypoints, routers, services) by id, interned once per table build.
#[derive(Debug, Default)]
struct Names {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

/// The gateway's request metrics. Lives as long as the gateway (across reloads).
#[derive(Debug)]
pub(crate) struct RequestMetrics {
    buckets: Vec<f64>,
    shards: Box<[Shard]>,
    names: Mutex<Names>,
    connections: Mutex<Vec<(Arc<str>, Arc<AtomicI64>)>>,
    /// Failed TLS handshakes, by TLS entrypoint.
    tls_handshake_failures: Mutex<Vec<(Arc<str>, Arc<AtomicU64>)>>,
}

/// How to name the Traefik-compatible families.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Naming<'a> {
    /// `shoal` or `traefik`.
    pub(crate) prefix: &'a str,
    /// Suffix for `router` and `service` label values (`@shoal` in Traefik mode).
    pub(crate) provider: &'a str,
}

impl RequestMetrics {
    /// Empty metrics with these histogram bucket bounds (seconds, ascending).
    pub(crate) fn new(buckets: &[f64]) -> RequestMetrics {
        RequestMetrics {
            buckets: buckets.to_vec(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            names: Mutex::default(),
            connections: Mutex::default(),
            tls_handshake_failures: Mutex::default(),
        }
    }

    /// The bucket bounds the histograms were created with.
    pub(crate) fn buckets(&self) -> &[f64] {
        &self.buckets
    }

    /// The id of a name (stable for the life of the gateway).
    pub(crate) fn intern(&self, name: &str) -> u32 {
        let mut n = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = n.ids.get(name) {
            return *id;
        }
        let id = n.names.len() as u32;
        let name: Arc<str> = name.into();
        n.names.push(name.clone());
        n.ids.insert(name, id);
        id
    }

    /// Count one request that took `secs` (to its response headers).
    pub(crate) fn record(&self, key: Key, secs: f64) {
        let bucket = self
            .buckets
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.buckets.len());
        let mut shard = self.shards[shard_index()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let series = shard.entry(key).or_insert_with(|| Series {
            buckets: vec![0; self.buckets.len() + 1],
            ..Series::default()
        });
        series.count += 1;
        series.sum += secs;
        series.buckets[bucket] += 1;
        if key.service != NONE {
            if series.fine.is_empty() {
                series.fine = vec![0; FINE_BUCKETS];
            }
            series.fine[fine_bucket(secs)] += 1;
        }
    }

    /// Every service's figures since the gateway started, by service name (only services
    /// that have answered something). See [`ServiceFigures`].
    pub(crate) fn service_figures(&self) -> HashMap<String, ServiceFigures> {
        let mut by_id: HashMap<u32, ServiceFigures> = HashMap::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (k, s) in shard.iter().filter(|(k, _)| k.service != NONE) {
                let f = by_id.entry(k.service).or_default();
                f.requests += s.count;
                if k.code >= 500 {
                    f.errors += s.count;
                }
                if f.latency.is_empty() {
                    f.latency = vec![0; FINE_BUCKETS];
                }
                for (a, b) in f.latency.iter_mut().zip(&s.fine) {
                    *a += b;
                }
            }
        }
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        by_id
            .into_iter()
            .filter_map(|(id, f)| Some((names.names.get(id as usize)?.to_string(), f)))
            .collect()
    }

    /// The open-connections gauge of an entrypoint.
    pub(crate) fn connections(&self, entrypoint: &Arc<str>) -> Arc<AtomicI64> {
        let mut all = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, g)) = all.iter().find(|(n, _)| n == entrypoint) {
            return g.clone();
        }
        let g = Arc::new(AtomicI64::new(0));
        all.push((entrypoint.clone(), g.clone()));
        g
    }

    /// The failed-TLS-handshakes counter of an entrypoint (listed from its first call).
    pub(crate) fn tls_handshake_failures(&self, entrypoint: &Arc<str>) -> Arc<AtomicU64> {
        let mut all = self
            .tls_handshake_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = all.iter().find(|(n, _)| n == entrypoint) {
            return c.clone();
        }
        let c = Arc::new(AtomicU64::new(0));
        all.push((entrypoint.clone(), c.clone()));
        c
    }

    /// Write the request families and `open_connections`.
    pub(crate) fn render(&self, out: &mut String, naming: Naming<'_>) {
        let names = {
            let n = self.names.lock().unwrap_or_else(|e| e.into_inner());
            n.names.clone()
        };
        let name = |id: u32| names.get(id as usize).map_or("", |n| &**n);
        let mut merged: HashMap<Key, Series> = HashMap::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (k, s) in shard.iter() {
                let m = merged.entry(*k).or_insert_with(|| Series {
                    buckets: vec![0; self.buckets.len() + 1],
                    ..Series::default()
                });
                m.count += s.count;
                m.sum += s.sum;
                for (a, b) in m.buckets.iter_mut().zip(&s.buckets) {
                    *a += b;
                }
            }
        }
        let p = naming.prefix;
        let provider = naming.provider;
        let common = |k: &Key| {
            vec![
                ("code", k.code.to_string()),
                ("method", METHODS[usize::from(k.method)].to_owned()),
                ("protocol", k.proto.label().to_owned()),
            ]
        };
        let mut entrypoint = Family::default();
        let mut router = Family::default();
        let mut service = Family::default();
        for (k, s) in &merged {
            let mut labels = common(k);
            labels.push(("entrypoint", name(k.entrypoint).to_owned()));
            entrypoint.add(labels, s);
            if k.service != NONE {
                let svc = format!("{}{provider}", name(k.service));
                if k.router != NONE {
                    let mut labels = common(k);
                    labels.push(("router", format!("{}{provider}", name(k.router))));
                    labels.push(("service", svc.clone()));
                    router.add(labels, s);
                }
                let mut labels = common(k);
                labels.push(("service", svc));
                service.add(labels, s);
            }
        }
        for (scope, family) in [
            ("entrypoint", entrypoint),
            ("router", router),
            ("service", service),
        ] {
            let help = format!("How many HTTP requests processed on {scope} level.");
            family.write_counter(out, &format!("{p}_{scope}_requests_total"), &help);
            let help = format!("How long it took to process the request on {scope} level.");
            family.write_histogram(
                out,
                &format!("{p}_{scope}_request_duration_seconds"),
                &help,
                &self.buckets,
            );
        }
        let conns = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        header(
            out,
            &format!("{p}_open_connections"),
            "gauge",
            "How many open connections exist, by entryPoint and protocol.",
        );
        for (ep, g) in conns.iter() {
            sample(
                out,
                &format!("{p}_open_connections"),
                &[("entrypoint", ep), ("protocol", "TCP")],
                g.load(Ordering::Relaxed) as f64,
            );
        }
    }
}

/// A per-service counter: name, help, and how to read it.
type ServiceCounter = (&'static str, &'static str, fn(&ServiceTraffic) -> u64);
/// A per-replica series: name, type, help, and how to read it.
type ReplicaSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ReplicaTraffic) -> f64,
);

/// Write everything the gateway knows: the request families (Traefik's names, with the
/// configured prefix), then shoal's per-service and per-replica series, read now.
pub(crate) fn render_gateway(
    out: &mut String,
    metrics: &RequestMetrics,
    table: &RoutingTable,
    access_log_dropped: u64,
) {
    let prefix = table.settings.metrics_prefix;
    let provider = match prefix {
        MetricsPrefix::Shoal => "",
        MetricsPrefix::Traefik => "@shoal",
    };
    let p = prefix.name();
    metrics.render(
        out,
        Naming {
            prefix: p,
            provider,
        },
    );
    let mut services: Vec<_> = table.services.values().collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let traffic: Vec<_> = services.iter().map(|s| (s, s.traffic())).collect();
    let svc = |s: &ServiceHandle| format!("{}{provider}", s.name);

    let name = format!("{p}_service_retries_total");
    header(out, &name, "counter", "How many request retries happened.");
    for (s, t) in &traffic {
        sample(out, &name, &[("service", &svc(s))], t.retries_total as f64);
    }
    let name = format!("{p}_service_server_up");
    header(
        out,
        &name,
        "gauge",
        "service server is up, described by gauge value of 0 or 1.",
    );
    for s in &services {
        for b in s.balancer.backends().iter() {
            let url = if b.key().contains("://") {
                b.key().to_owned()
            } else {
                format!("http://{}", b.addr())
            };
            let up = s.health.traffic(b).health == HealthState::Healthy;
            sample(
                out,
                &name,
                &[("service", &svc(s)), ("url", &url)],
                if up { 1.0 } else { 0.0 },
            );
        }
    }

    // shoal's own, always `shoal_`.
    let counters: [ServiceCounter; 5] = [
        (
            "shoal_service_hedges_total",
            "Hedged tries: a request also sent to another replica after its per-try timeout.",
            |t| t.hedges_total,
        ),
        (
            "shoal_service_retries_refused_total",
            "Retries and hedges the retry budget refused.",
            |t| t.retries_refused_total,
        ),
        (
            "shoal_service_ejections_total",
            "Times passive health checking ejected one of the service's replicas.",
            |t| t.ejections_total,
        ),
        (
            "shoal_service_breaker_opened_total",
            "Times the service's circuit breaker opened.",
            |t| t.breaker_opened_total,
        ),
        (
            "shoal_service_breaker_rejected_total",
            "Requests answered 503 at once because the circuit breaker was open.",
            |t| t.breaker_rejected_total,
        ),
    ];
    for (name, help, get) in counters {
        header(out, name, "counter", help);
        for (s, t) in &traffic {
            sample(out, name, &[("service", &s.name)], get(t) as f64);
        }
    }
    let name = "shoal_service_breaker_state";
    header(
        out,
        name,
        "gauge",
        "Circuit breaker state: 0 closed, 1 half-open, 2 open (services with a breaker only).",
    );
    for (s, t) in &traffic {
        if let Some(state) = &t.breaker {
            let v = match state.as_str() {
                "open" => 2.0,
                "half-open" | "half_open" => 1.0,
                _ => 0.0,
            };
            sample(out, name, &[("service", &s.name)], v);
        }
    }
    let name = "shoal_service_latency_p95_seconds";
    header(
        out,
        name,
        "gauge",
        "The service's 95th-percentile time to response headers over the last 10 s.",
    );
    for (s, t) in &traffic {
        if let Some(ms) = t.latency_p95_ms {
            sample(out, name, &[("service", &s.name)], ms / 1000.0);
        }
    }
    let name = "shoal_service_held_requests";
    header(
        out,
        name,
        "gauge",
        "Requests held while the service wakes from zero.",
    );
    for (s, t) in &traffic {
        sample(out, name, &[("service", &s.name)], t.held as f64);
    }

    let per_replica: [ReplicaSeries; 4] = [
        (
            "shoal_replica_in_flight",
            "gauge",
            "Requests in flight to the replica now.",
            |t| t.in_flight as f64,
        ),
        (
            "shoal_replica_requests_total",
            "counter",
            "Requests (tries) sent to the replica.",
            |t| t.requests_total as f64,
        ),
        (
            "shoal_replica_ejections_total",
            "counter",
            "Times passive health checking ejected the replica.",
            |t| t.ejections_total as f64,
        ),
        (
            "shoal_replica_up",
            "gauge",
            "1 if the replica is in rotation, 0 if it fails its health check or is ejected.",
            |t| f64::from(u8::from(t.health == HealthState::Healthy)),
        ),
    ];
    let replicas: Vec<_> = services
        .iter()
        .flat_map(|s| {
            s.balancer
                .backends()
                .iter()
                .map(|b| (s.name.clone(), b.key_shared().clone(), s.health.traffic(b)))
                .collect::<Vec<_>>()
        })
        .collect();
    for (name, kind, help, get) in per_replica {
        header(out, name, kind, help);
        for (service, replica, t) in &replicas {
            sample(
                out,
                name,
                &[("service", service), ("replica", replica)],
                get(t),
            );
        }
    }
    let name = "shoal_access_log_dropped_total";
    header(
        out,
        name,
        "counter",
        "Access log lines dropped because the writer fell behind.",
    );
    sample(out, name, &[], access_log_dropped as f64);
    let name = "shoal_tls_handshake_failures_total";
    header(
        out,
        name,
        "counter",
        "TLS handshakes that failed or timed out, by entrypoint (TLS entrypoints only).",
    );
    let failures = metrics
        .tls_handshake_failures
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for (ep, c) in failures.iter() {
        sample(
            out,
            name,
            &[("entrypoint", ep)],
            c.load(Ordering::Relaxed) as f64,
        );
    }
}

/// Series of one family, summed by label set.
#[derive(Default)]
struct Family {
    series: BTreeMap<Vec<(&'static str, String)>, Series>,
}

impl Family {
    fn add(&mut self, labels: Vec<(&'static str, String)>, s: &Series) {
        let m = self.series.entry(labels).or_insert_with(|| Series {
            buckets: vec![0; s.buckets.len()],
            ..Series::default()
        });
        m.count += s.count;
        m.sum += s.sum;
        for (a, b) in m.buckets.iter_mut().zip(&s.buckets) {
            *a += b;
        }
    }

    fn write_counter(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, "counter", help);
        for (labels, s) in &self.series {
            let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            sample(out, name, &l, s.count as f64);
        }
    }

    fn write_histogram(&self, out: &mut String, name: &str, help: &str, bounds: &[f64]) {
        header(out, name, "histogram", help);
        for (labels, s) in &self.series {
            let mut l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut cumulative = 0;
            let les: Vec<String> = bounds
                .iter()
                .map(|b| format_value(*b))
                .chain(std::iter::once("+Inf".to_owned()))
                .collect();
            for (n, le) in s.buckets.iter().zip(&les) {
                cumulative += n;
                l.push(("le", le));
                sample(out, &format!("{name}_bucket"), &l, cumulative as f64);
                l.pop();
            }
            sample(out, &format!("{name}_sum"), &l, s.sum);
            sample(out, &format!("{name}_count"), &l, s.count as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn key(code: u16, router: u32, service: u32) -> Key {
        Key {
            code,
            method: 0,
            proto: Proto::Http,
            entrypoint: 0,
            router,
            service,
        }
    }

    #[test]
    fn families_are_summed_from_one_series_per_key() {
        let m = RequestMetrics::new(&[0.1, 0.3, 1.2, 5.0]);
        let web = m.intern("web");
        let (r1, r2, svc) = (m.intern("r1"), m.intern("r2"), m.intern("api"));
        m.record(key(200, r1, svc), 0.05);
        m.record(key(200, r2, svc), 0.2);
        m.record(key(502, r2, svc), 7.0);
        m.record(key(404, NONE, NONE), 0.001);
        assert_eq!(web, 0);
        let mut out = String::new();
        m.render(
            &mut out,
            Naming {
                prefix: "shoal",
                provider: "",
            },
        );
        let has = |line: &str| assert!(out.lines().any(|l| l == line), "{line}\n{out}");
        has(
            r#"shoal_entrypoint_requests_total{code="200",method="GET",protocol="http",entrypoint="web"} 2"#,
        );
        has(
            r#"shoal_entrypoint_requests_total{code="404",method="GET",protocol="http",entrypoint="web"} 1"#,
        );
        has(
            r#"shoal_service_requests_total{code="200",method="GET",protocol="http",service="api"} 2"#,
        );
        has(
            r#"shoal_router_requests_total{code="502",method="GET",protocol="http",router="r2",service="api"} 1"#,
        );
        has(
            r#"shoal_service_request_duration_seconds_bucket{code="200",method="GET",protocol="http",service="api",le="0.1"} 1"#,
        );
        has(
            r#"shoal_service_request_duration_seconds_bucket{code="200",method="GET",protocol="http",service="api",le="0.3"} 2"#,
        );
        has(
            r#"shoal_service_request_duration_seconds_bucket{code="502",method="GET",protocol="http",service="api",le="5"} 0"#,
        );
        has(
            r#"shoal_service_request_duration_seconds_bucket{code="502",method="GET",protocol="http",service="api",le="+Inf"} 1"#,
        );
        has(
            r#"shoal_service_request_duration_seconds_count{code="502",method="GET",protocol="http",service="api"} 1"#,
        );
        assert!(!out.contains("code=\"404\",method=\"GET\",protocol=\"http\",service"));
    }

    #[test]
    fn protocols_and_methods_use_traefiks_labels() {
        let mut h = HeaderMap::new();
        assert_eq!(Proto::of(&h), Proto::Http);
        h.insert(http::header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert_eq!(Proto::of(&h), Proto::WebSocket);
        let mut h = HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        assert_eq!(Proto::of(&h), Proto::Sse);
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert_eq!(Proto::of(&h), Proto::Grpc);
        assert_eq!(METHODS[usize::from(method_index(&Method::PATCH))], "PATCH");
        let odd = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(METHODS[usize::from(method_index(&odd))], "EXTENSION_METHOD");
    }

    #[test]
    fn service_figures_count_answers_5xx_and_fine_latency_per_service() {
        let m = RequestMetrics::new(&[0.1, 0.3, 1.2, 5.0]);
        let (r1, r2) = (m.intern("r1"), m.intern("r2"));
        let (api, v2) = (m.intern("api"), m.intern("api-v2"));
        for i in 0..100 {
            // 1 ms on both routes; five 503s.
            let code = if i < 5 { 503 } else { 200 };
            m.record(key(code, if i % 2 == 0 { r1 } else { r2 }, api), 0.001);
        }
        let before = m.service_figures();
        for _ in 0..95 {
            m.record(key(200, r1, v2), 0.002);
        }
        for _ in 0..5 {
            m.record(key(500, r1, v2), 0.040);
        }
        m.record(key(404, NONE, NONE), 0.001);
        let after = m.service_figures();
        let api_figures = &after["api"];
        assert_eq!((api_figures.requests, api_figures.errors), (100, 5));
        assert_eq!(api_figures.error_ratio(), Some(0.05));
        let p95 = api_figures.quantile(0.95).unwrap();
        assert!(
            p95 >= Duration::from_millis(1) && p95 < Duration::from_micros(1190),
            "{p95:?}"
        );
        assert!(!before.contains_key("api-v2"));
        let v2_window = after["api-v2"].since(&ServiceFigures::default());
        assert_eq!((v2_window.requests, v2_window.errors), (100, 5));
        // The 95th answer of 100 is the last 2 ms one; the 96th a 40 ms one.
        let p95 = v2_window.quantile(0.95).unwrap();
        assert!(p95 >= Duration::from_millis(2) && p95 < Duration::from_micros(2380));
        let p99 = v2_window.quantile(0.99).unwrap();
        assert!(p99 >= Duration::from_millis(40) && p99 < Duration::from_micros(47_600));
        // Nothing new for api: an empty interval.
        let idle = after["api"].since(&before["api"]);
        assert_eq!(
            (idle.requests, idle.error_ratio(), idle.quantile(0.95)),
            (0, None, None)
        );
        assert_eq!(after.len(), 2, "no figures for requests no route matched");
    }
}
