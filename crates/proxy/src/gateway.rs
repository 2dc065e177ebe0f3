//! The gateway's API ([`Gateway`]): the routing table, swapped whole on reload; the
//! endpoints drivers report ([`EndpointSink`]); activators for services that wake from
//! zero; the request metrics and the access log; and [`Gateway::handle`], which proxies one
//! request on hyper's path.
//!
//! The life of a request is elsewhere: its steps, shared by both paths, in
//! `crate::pipeline` (begin, prepare, admit, finish); the two paths in `crate::relay`
//! (plain HTTP/1.1 as bytes) and `crate::hyper_path` (everything else); the tries in
//! `crate::tries`. Any failure becomes a response at one boundary
//! ([`ProxyError::into_response`](crate::ProxyError)).
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use shoal_balance::Backend;
use shoal_config::Stack;
use shoal_core::{Endpoint, EndpointSink, EventLog, ReplicaTraffic, ServiceTraffic};

use crate::access_log::AccessLogger;
use crate::body::{BoxError, ProxyBody};
use crate::hold::{Activator, HoldSettings, WakeFn};
use crate::metrics::RequestMetrics;
use crate::table::RoutingTable;

/// Connection facts the gateway needs per request.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address (the TCP peer).
    pub client: SocketAddr,
    /// Name of the entrypoint the connection came in on.
    pub entrypoint: Arc<str>,
    /// The entrypoint's id in the gateway's request metrics ([`Gateway::entrypoint_id`]).
    pub entrypoint_id: u32,
    /// Whether the connection is TLS (HTTPS): the scheme redirects and `X-Forwarded-Proto`
    /// see.
    pub tls: bool,
}

/// The data plane's state: the current routing table, swapped whole on reload, and the
/// endpoints drivers have reported. Cheap to share (`Arc<Gateway>`).
#[derive(Debug)]
pub struct Gateway {
    table: ArcSwap<RoutingTable>,
    /// Endpoints reported by drivers, by service; writers (reload, drivers) serialise here.
    endpoints: Mutex<HashMap<String, Vec<Endpoint>>>,
    /// Where health changes (unhealthy, ejected, breaker) are recorded.
    events: Arc<EventLog>,
    /// Services that can wake from zero, by name (kept across reloads).
    activators: Mutex<HashMap<String, Arc<Activator>>>,
    /// Request counters and histograms (kept across reloads).
    metrics: RequestMetrics,
    /// Where access log lines go, if anywhere.
    access_log: ArcSwapOption<AccessLogger>,
    /// Every backend that has been in a service's set, held weakly, by service: a replica
    /// that left the set (draining) is still found by [`EndpointSink::in_use`] while
    /// requests, streams or tunnels hold it (see [`Gateway::remember`]).
    seen: Mutex<HashMap<String, Vec<Weak<Backend>>>>,
}

impl Gateway {
    /// A gateway serving `stack`'s routes and services, with its own event log.
    pub fn new(stack: &Stack) -> Arc<Gateway> {
        Gateway::with_events(stack, Arc::new(EventLog::new(1000)))
    }

    /// A gateway recording health changes in `events` (shared with the other planes).
    pub fn with_events(stack: &Stack, events: Arc<EventLog>) -> Arc<Gateway> {
        let metrics = RequestMetrics::new(&stack.metrics.buckets);
        let table = RoutingTable::build(
            stack,
            None,
            &HashMap::new(),
            &events,
            &HashMap::new(),
            &metrics,
        );
        Arc::new(Gateway {
            table: ArcSwap::from_pointee(table),
            endpoints: Mutex::new(HashMap::new()),
            events,
            activators: Mutex::new(HashMap::new()),
            metrics,
            access_log: ArcSwapOption::empty(),
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// Send access log lines to `logger` (None: stop logging).
    pub fn set_access_log(&self, logger: Option<AccessLogger>) {
        self.access_log.store(logger.map(Arc::new));
    }

    /// The access logger, if one is set.
    pub fn access_log(&self) -> Option<Arc<AccessLogger>> {
        self.access_log.load_full()
    }

    /// The histogram bucket bounds the request metrics were created with (they change only
    /// with a restart).
    pub fn metric_buckets(&self) -> &[f64] {
        self.metrics.buckets()
    }

    /// The id under which requests on entrypoint `name` are counted.
    pub fn entrypoint_id(&self, name: &str) -> u32 {
        self.metrics.intern(name)
    }

    /// The open-connections gauge of entrypoint `name`.
    pub(crate) fn connections_gauge(&self, name: &Arc<str>) -> Arc<AtomicI64> {
        self.metrics.connections(name)
    }

    /// The failed-TLS-handshakes counter of entrypoint `name`.
    pub(crate) fn tls_handshake_failures(&self, name: &Arc<str>) -> Arc<AtomicU64> {
        self.metrics.tls_handshake_failures(name)
    }

    /// Write the gateway's metrics in Prometheus' text format: Traefik's request families
    /// (with the configured prefix), and shoal's per-service and per-replica series.
    pub fn render_metrics(&self, out: &mut String) {
        let table = self.table.load();
        let dropped = self
            .access_log
            .load()
            .as_ref()
            .map_or(0, |l| l.dropped_total());
        crate::metrics::render_gateway(out, &self.metrics, &table, dropped);
    }

    /// Let `service` wake from zero: a request that finds it without a replica is held (see
    /// [`Activator`]) and `wake` is called. `None` turns holding off (503 at once).
    pub fn set_activator(
        &self,
        service: &str,
        hold: Option<(HoldSettings, WakeFn)>,
    ) -> Option<Arc<Activator>> {
        let mut all = self.activators.lock().unwrap_or_else(|e| e.into_inner());
        // Same settings: keep the activator, so requests held across a reload still hear
        // about the endpoints.
        if let (Some((settings, _)), Some(existing)) = (&hold, all.get(service))
            && existing.settings() == *settings
        {
            return Some(Arc::clone(existing));
        }
        let activator = hold.map(|(settings, wake)| Activator::new(settings, wake));
        match &activator {
            Some(a) => all.insert(service.to_owned(), Arc::clone(a)),
            None => all.remove(service),
        };
        if let Some(handle) = self.table.load().services.get(service) {
            handle.activator.store(activator.clone());
        }
        activator
    }

    /// The event log health changes go to.
    pub fn events(&self) -> &Arc<EventLog> {
        &self.events
    }

    /// Calls `f(key, requests in flight)` for each backend of `service`: the cheap reading the
    /// autoscaler samples every 100 ms (no counters copied, no quantile computed).
    pub fn for_each_in_flight(&self, service: &str, mut f: impl FnMut(&str, usize)) {
        if let Some(handle) = self.table.load().services.get(service) {
            for b in handle.balancer.backends().iter() {
                f(b.key(), b.in_flight());
            }
        }
    }

    /// A service's failover counters and how the gateway sees each of its backends, by
    /// backend key (`service/N` for replicas, the URL for static servers).
    pub fn traffic(
        &self,
        service: &str,
    ) -> Option<(ServiceTraffic, Vec<(String, ReplicaTraffic)>)> {
        let table = self.table.load();
        let handle = table.services.get(service)?;
        let replicas = handle
            .balancer
            .backends()
            .iter()
            .map(|b| (b.key().to_owned(), handle.health.traffic(b)))
            .collect();
        Some((handle.traffic(), replicas))
    }

    /// Swap in a new configuration. Requests in flight finish on the table they started with;
    /// unchanged services keep their balancers and connections.
    pub fn reload(&self, stack: &Stack) {
        let endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let activators = self.activators.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.table.load_full();
        let table = RoutingTable::build(
            stack,
            Some(&current),
            &endpoints,
            &self.events,
            &activators,
            &self.metrics,
        );
        for (name, handle) in &table.services {
            self.remember(name, &handle.balancer.backends());
        }
        self.table.store(Arc::new(table));
    }

    /// Change the weights of `route`'s split from the next request on (`crate::split`):
    /// the services named in `weights` get theirs, the others keep theirs. Returns the
    /// route's weights now in force, in the file's order. An error, naming what is wrong,
    /// changes nothing: no route of that name, a route without `services:`, a service not
    /// in its split, a weight over 1000, or every weight 0. The weights outlast a reload
    /// whose file leaves the route's `services:` weights as they were; a reload that
    /// changes them applies the file's.
    pub fn set_weights(
        &self,
        route: &str,
        weights: &[(String, u32)],
    ) -> Result<Vec<(String, u32)>, String> {
        // Reloads hold this lock while they build the next table from the current one:
        // a change made meanwhile is not lost to a table built before it.
        let _writers = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let table = self.table.load();
        let found = table
            .routes
            .iter()
            .find(|r| *r.name == *route)
            .ok_or_else(|| format!("no route named `{route}`"))?;
        let split = found.split.as_ref().ok_or_else(|| {
            format!("route `{route}` has one service, not a split (`services:`) to weigh")
        })?;
        split.weights.set(route, weights)
    }

    /// The weights in force on `route`'s split, in the file's order; `None` if there is no
    /// such route or it has one service (no `services:`).
    pub fn weights(&self, route: &str) -> Option<Vec<(String, u32)>> {
        let table = self.table.load();
        let found = table.routes.iter().find(|r| *r.name == *route)?;
        Some(found.split.as_ref()?.weights.get())
    }

    /// Note `backends` as (having been) in `service`'s set, and forget the backends
    /// nothing holds any more. A `Pick` — a request in flight, a response body still
    /// streaming, an upgraded connection's tunnel — holds its backend, so a draining
    /// replica stays findable exactly as long as something uses it. Control-plane only
    /// (endpoint changes and reloads): the request path never takes this lock.
    fn remember(&self, service: &str, backends: &[Arc<Backend>]) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let known = seen.entry(service.to_owned()).or_default();
        known.retain(|w| w.strong_count() > 0);
        for b in backends {
            if !known
                .iter()
                .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(b)))
            {
                known.push(Arc::downgrade(b));
            }
        }
    }

    /// The current routing table.
    pub(crate) fn table(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// Whether a request body of `len` bytes is over some route's `buffering` limit (the
    /// relay leaves such requests to the full stack, which answers 413 without reading it).
    pub(crate) fn over_body_limit(&self, len: u64) -> bool {
        self.table
            .load()
            .smallest_body_limit
            .is_some_and(|l| len > l)
    }

    /// Proxy one request. Never fails: every failure is a response.
    pub async fn handle<B>(&self, req: Request<B>, conn: &ConnInfo) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        crate::hyper_path::handle(self, req, conn).await
    }

    /// Whether an access logger is set (cheaper than taking it).
    pub(crate) fn logging(&self) -> bool {
        self.access_log.load().is_some()
    }

    /// The request counters and histograms.
    pub(crate) fn request_metrics(&self) -> &RequestMetrics {
        &self.metrics
    }

    /// Every service's request figures since the gateway started (requests, 5xx, fine
    /// latency buckets), by service name: the automated canary takes the difference of two
    /// to judge an interval. See [`crate::metrics::ServiceFigures`].
    pub fn service_figures(&self) -> HashMap<String, crate::metrics::ServiceFigures> {
        self.metrics.service_figures()
    }
}

impl EndpointSink for Gateway {
    fn set_endpoints(&self, service: &str, endpoints: Vec<Endpoint>) {
        let mut all = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(handle) = self.table.load().services.get(service) {
            handle.set_endpoints(&endpoints);
            self.remember(service, &handle.balancer.backends());
        }
        all.insert(service.to_owned(), endpoints);
    }

    /// Summed over every backend of `service` at that key and address that something still
    /// holds (in the set or not, from this table or an older one): each `Pick` counts one
    /// request in flight until its response body has ended or its upgraded connection has
    /// closed.
    fn in_use(&self, service: &str, endpoint: &Endpoint) -> usize {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(service).map_or(0, |known| {
            known
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|b| {
                    b.key() == endpoint.key
                        && b.addr().parse::<SocketAddr>().ok() == Some(endpoint.addr)
                })
                .map(|b| b.in_flight())
                .sum()
        })
    }

    fn in_flight(&self, service: &str, key: &str) -> usize {
        let table = self.table.load();
        table
            .services
            .get(service)
            .and_then(|s| {
                s.balancer
                    .backends()
                    .iter()
                    .find(|b| b.key() == key)
                    .map(|b| b.in_flight())
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a drain waits for: the picks still held on this incarnation's address, after
    /// it left the set and after a replacement took over its key; not the replacement's.
    #[tokio::test]
    async fn in_use_counts_the_draining_incarnation_only() {
        let yaml = "services:\n  web:\n    command: [x]\nroutes:\n  - match: PathPrefix(`/`)\n    service: web\n";
        let stack = shoal_config::parse(yaml, "t.yaml").expect("a valid stack");
        let gw = Gateway::new(&stack);
        let endpoint = |port: u16| Endpoint {
            key: "web/0".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let (old, new) = (endpoint(9001), endpoint(9002));
        gw.set_endpoints("web", vec![old.clone()]);
        let pick = || {
            let table = gw.table();
            let handle = Arc::clone(&table.services["web"]);
            handle
                .balancer
                .pick(&Default::default())
                .expect("a backend")
        };
        // A WebSocket tunnel or a streaming body holds its pick.
        let held = [pick(), pick()];
        assert_eq!(gw.in_use("web", &old), 2);
        // The replacement takes over the key; the old incarnation drains.
        gw.set_endpoints("web", vec![new.clone()]);
        let on_new = pick();
        assert_eq!(on_new.backend().addr(), "127.0.0.1:9002");
        assert_eq!((gw.in_use("web", &old), gw.in_use("web", &new)), (2, 1));
        // A reload that rebuilds the service keeps finding both.
        gw.reload(&shoal_config::parse(&yaml.replace("[x]", "[y]"), "t.yaml").expect("valid"));
        assert_eq!((gw.in_use("web", &old), gw.in_use("web", &new)), (2, 1));
        drop(held);
        assert_eq!(gw.in_use("web", &old), 0, "drained");
        drop(on_new);
        assert_eq!(gw.in_use("web", &new), 0);
        assert_eq!(gw.in_use("other", &new), 0);
    }
}
