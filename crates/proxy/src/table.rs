//! The routing table: routes in priority order and the services they point at, built from a
//! validated stack and swapped whole on reload.
//!
//! Services survive reloads: a service whose definition is unchanged keeps its
//! [`ServiceHandle`] (balancer, in-flight counters, endpoints); one whose static servers changed
//! keeps its balancer and gets the new set; one whose algorithm changed gets a new balancer
//! seeded with the current endpoints.
//!
//! A route sends to one or more [`Target`]s: its one service, or each service of its split
//! (`crate::split`), each with the retry settings, timeouts and recent latency the route has
//! on it; [`CompiledRoute::choose`] picks one per request. What must outlive a reload is
//! kept by route name: the middlewares' state while the middlewares are unchanged, each
//! target's latency while the route keeps that service, a split's live weights while the
//! file's weights are unchanged, and a mirror's counter and copies under way
//! (`crate::mirror`) while its `mirror:` is unchanged.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use shoal_balance::{Backend, Balancer, Policy};
use shoal_config::{
    Balance, MetricsPrefix, Middleware, PerTryTimeout, Protocol, Retry, Service, Source, Stack,
};
use shoal_core::{Endpoint, EventLog, ServiceTraffic};
use shoal_route::Rule;

use crate::breaker::Breaker;
use crate::budget::RetryBudget;
use crate::health::ServiceHealth;
use crate::hold::Activator;
use crate::latency::{LatencyTracker, RouteLatency};
use crate::metrics::RequestMetrics;
use crate::middleware::{self, Edge};
use crate::mirror::RouteMirror;
use crate::split::LiveWeights;
use crate::upstream::{PoolSettings, Upstreams};

/// One service as the data plane sees it.
#[derive(Debug)]
pub(crate) struct ServiceHandle {
    pub(crate) name: Arc<str>,
    pub(crate) def: Service,
    pub(crate) balancer: Balancer,
    /// Health of the backends: active checks of static servers, passive ejection.
    pub(crate) health: Arc<ServiceHealth>,
    /// Retries allowed as a share of requests.
    pub(crate) budget: RetryBudget,
    /// Recent time to response headers, for the automatic per-try timeout.
    pub(crate) latency: LatencyTracker,
    /// The circuit breaker, if the service has one.
    pub(crate) breaker: Option<Breaker>,
    /// Where requests wait while the service wakes from zero, if it can.
    pub(crate) activator: arc_swap::ArcSwapOption<Activator>,
    /// The service's own pool of TLS connections, if it has `tls:` (`crate::upstream_tls`);
    /// set with each table build.
    pub(crate) tls_pool: arc_swap::ArcSwapOption<Upstreams>,
}

impl ServiceHandle {
    /// A handle for `def` around `balancer`, filled with the service's static servers or
    /// with the endpoints its driver last reported.
    fn new(
        def: &Service,
        balancer: Balancer,
        endpoints: Option<&Vec<Endpoint>>,
        events: &Arc<EventLog>,
    ) -> ServiceHandle {
        let handle = ServiceHandle {
            name: def.name.as_str().into(),
            def: def.clone(),
            balancer,
            health: ServiceHealth::new(def, Arc::clone(events)),
            budget: RetryBudget::new(def.retry.budget_ratio, def.retry.budget_min_per_sec),
            latency: LatencyTracker::new(),
            breaker: def.circuit_breaker.clone().map(Breaker::new),
            activator: arc_swap::ArcSwapOption::empty(),
            tls_pool: arc_swap::ArcSwapOption::empty(),
        };
        match &def.source {
            Source::Servers(_) => {
                handle.set_static(def);
                handle
                    .health
                    .start_checks(&def.health, &handle.balancer.backends());
            }
            Source::Command(_) => {
                if let Some(eps) = endpoints {
                    handle.set_endpoints(eps);
                }
            }
        }
        handle
    }

    fn set_static(&self, def: &Service) {
        if let Source::Servers(servers) = &def.source {
            let backends = servers
                .iter()
                .map(|s| Backend::new(s.url.as_str(), s.authority.as_str(), s.weight))
                .collect();
            self.balancer.set_backends(backends);
        }
    }

    /// Replace the endpoints (from a driver). Existing backends with the same key and address
    /// are kept by the balancer, so their counters survive.
    pub(crate) fn set_endpoints(&self, endpoints: &[Endpoint]) {
        let backends = endpoints
            .iter()
            .map(|e| Backend::new(e.key.as_str(), e.addr.to_string(), 1))
            .collect();
        self.balancer.set_backends(backends);
        if let Some(activator) = self.activator.load().as_ref() {
            activator.endpoints_changed();
        }
    }

    /// Failover counters, for the API and metrics.
    pub(crate) fn traffic(&self) -> ServiceTraffic {
        let c = &self.health.counters;
        let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        ServiceTraffic {
            requests_total: n(&c.requests),
            server_errors_total: n(&c.server_errors),
            retries_total: n(&c.retries),
            hedges_total: n(&c.hedges),
            retries_refused_total: self.budget.refused_total(),
            ejections_total: n(&c.ejections),
            breaker: self.breaker.as_ref().map(|b| b.state().to_string()),
            breaker_opened_total: self.breaker.as_ref().map_or(0, Breaker::opened_total),
            breaker_rejected_total: n(&c.breaker_rejected),
            per_try_timeout_ms: match self.def.retry.per_try_timeout {
                PerTryTimeout::Auto => Some(
                    self.latency
                        .auto_per_try_timeout(tokio::time::Instant::now())
                        .as_millis() as u64,
                ),
                PerTryTimeout::Fixed(d) => Some(d.as_millis() as u64),
                PerTryTimeout::Off => None,
            },
            latency_p95_ms: self
                .latency
                .quantile(tokio::time::Instant::now(), 0.95, 10)
                .map(|d| d.as_secs_f64() * 1000.0),
            held: self.activator.load().as_ref().map_or(0, |a| a.waiting()),
        }
    }

    /// Whether requests go upstream as HTTP/2 (`h2c`, or `h2` over TLS).
    pub(crate) fn speaks_h2(&self) -> bool {
        self.def.protocol != Protocol::Http1
    }

    /// Whether the HTTP/1.1 relay (plain TCP to the replicas) can carry its requests: not
    /// for HTTP/2 nor TLS to the replicas.
    pub(crate) fn relayable(&self) -> bool {
        self.def.protocol == Protocol::Http1 && self.def.tls.is_none()
    }
}

/// The balancer policy for a configured algorithm.
fn policy(balance: &Balance) -> Policy {
    match balance {
        Balance::RoundRobin => Policy::RoundRobin,
        Balance::LeastRequests => Policy::LeastRequests,
        Balance::Hash(_) => Policy::ConsistentHash,
        Balance::Sticky { .. } => Policy::Sticky,
    }
}

/// A route ready for matching.
#[derive(Debug)]
pub(crate) struct CompiledRoute {
    pub(crate) rule: Rule,
    pub(crate) entrypoints: Option<Vec<String>>,
    pub(crate) middlewares: Vec<Middleware>,
    /// The middlewares' checks and their state (rate-limit counters and the like), kept
    /// across reloads that leave the route's middlewares as they were.
    pub(crate) edge: Arc<Edge>,
    /// Whether a middleware rewrites the path (else the original path is forwarded as is).
    pub(crate) rewrites_path: bool,
    /// Where its requests go: the route's one service, or the services of its split, in
    /// the file's order (never empty).
    pub(crate) targets: Box<[Target]>,
    /// How requests are spread over `targets`, if the route splits its traffic.
    pub(crate) split: Option<RouteSplit>,
    /// Where copies of some requests go, if the route mirrors (`crate::mirror`).
    pub(crate) mirror: Option<RouteMirror>,
    /// The route's name (`route-N` unless named), for metrics and the access log.
    pub(crate) name: Arc<str>,
    /// Interned id of the route's name in the request metrics.
    pub(crate) router_id: u32,
}

/// One service a route sends requests to, with what the route needs to send them there.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) service: Arc<ServiceHandle>,
    /// Interned id of the service's name in the request metrics.
    pub(crate) service_id: u32,
    /// The route's retry settings, or this service's.
    pub(crate) retry: Retry,
    /// The route's own recent latency on this service: its `Auto` per-try timeout, and
    /// what the service's replicas may be busy with (`crate::health`'s stall rule). Kept
    /// across reloads while the route keeps its name and this service.
    pub(crate) latency: Arc<RouteLatency>,
    /// How long a request waits for response headers: the route's `timeouts`, else this
    /// service's, else the gateway's (a gRPC deadline may change it, `crate::grpc`).
    pub(crate) response_header_timeout: Duration,
}

/// A route's traffic split (`crate::split`).
#[derive(Debug)]
pub(crate) struct RouteSplit {
    /// The weights in force; kept across reloads that leave the file's weights as they were.
    pub(crate) weights: Arc<LiveWeights>,
    /// With `sticky`: the cookie's name and, by target, the `Set-Cookie` that keeps a
    /// client there.
    pub(crate) sticky: Option<(String, Box<[Option<HeaderValue>]>)>,
}

impl CompiledRoute {
    /// The target of one request with `headers`, and the sticky cookie to set in its
    /// response, if any (see `crate::split`).
    pub(crate) fn choose(&self, headers: &http::HeaderMap) -> (&Target, Option<HeaderValue>) {
        let Some(split) = &self.split else {
            return (&self.targets[0], None);
        };
        let Some((cookie, set)) = &split.sticky else {
            return (&self.targets[split.weights.next()], None);
        };
        if let Some(named) = crate::split::cookie(headers, cookie)
            && let Some(i) = self.targets.iter().position(|t| *t.service.name == *named)
            && split.weights.carries(i)
        {
            return (&self.targets[i], None);
        }
        let i = split.weights.next();
        (&self.targets[i], set[i].clone())
    }
}

/// Settings of the forwarding path that can change on reload.
#[derive(Debug, Clone)]
pub(crate) struct ForwardSettings {
    /// How far a `grpc-timeout` may raise a route's response-header timeout
    /// (`gateway.timeouts.grpc_max`).
    pub(crate) grpc_max: Duration,
    /// Longest pause in a streamed request body (`gateway.timeouts.body_idle`).
    pub(crate) body_idle: Duration,
    pub(crate) replica_header: Option<HeaderName>,
    /// Whether requests are counted in the request metrics.
    pub(crate) metrics: bool,
    /// Prefix of the Traefik-compatible metric families.
    pub(crate) metrics_prefix: MetricsPrefix,
}

/// Everything a request needs, swapped atomically on reload.
#[derive(Debug)]
pub(crate) struct RoutingTable {
    pub(crate) routes: Vec<CompiledRoute>,
    pub(crate) services: HashMap<String, Arc<ServiceHandle>>,
    pub(crate) upstreams: Arc<Upstreams>,
    pub(crate) settings: ForwardSettings,
    /// The smallest `buffering` limit of any route: the relay leaves requests announcing a
    /// longer body to the full stack, which answers 413 without reading it.
    pub(crate) smallest_body_limit: Option<u64>,
}

impl RoutingTable {
    /// A first table for `stack` alone (no previous table, endpoints or activators), as the
    /// unit tests build one.
    #[cfg(test)]
    pub(crate) fn for_tests(stack: &Stack) -> RoutingTable {
        RoutingTable::build(
            stack,
            None,
            &HashMap::new(),
            &Arc::new(EventLog::new(100)),
            &HashMap::new(),
            &RequestMetrics::new(&stack.metrics.buckets),
        )
    }

    /// Build from `stack`, reusing what can be reused from `previous`.
    pub(crate) fn build(
        stack: &Stack,
        previous: Option<&RoutingTable>,
        endpoints: &HashMap<String, Vec<Endpoint>>,
        events: &Arc<EventLog>,
        activators: &HashMap<String, Arc<Activator>>,
        metrics: &RequestMetrics,
    ) -> RoutingTable {
        let mut services = HashMap::new();
        for def in &stack.services {
            let old = previous.and_then(|p| p.services.get(&def.name));
            let eps = endpoints.get(&def.name);
            let handle = match old {
                Some(old) if old.def == *def => old.clone(),
                // Same algorithm: keep the backends (and their counters), refresh the set.
                Some(old) if old.def.balance == def.balance && old.def.protocol == def.protocol => {
                    let balancer = Balancer::with_backends(
                        old.balancer.policy().clone(),
                        old.balancer.backends().to_vec(),
                    );
                    Arc::new(ServiceHandle::new(def, balancer, eps, events))
                }
                _ => Arc::new(ServiceHandle::new(
                    def,
                    Balancer::new(policy(&def.balance)),
                    eps,
                    events,
                )),
            };
            handle.activator.store(activators.get(&def.name).cloned());
            services.insert(def.name.clone(), handle);
        }
        // A route keeps its checks' state (rate-limit counters, credentials cache) when its
        // middlewares are unchanged.
        let previous_routes: HashMap<&str, &CompiledRoute> = previous
            .map(|p| p.routes.iter().map(|r| (&*r.name, r)).collect())
            .unwrap_or_default();
        let routes: Vec<CompiledRoute> = stack
            .routes
            .iter()
            .filter_map(|r| {
                let old = previous_routes.get(r.name.as_str()).copied();
                let edge = match old {
                    Some(old) if old.middlewares == r.middlewares => Arc::clone(&old.edge),
                    _ => Arc::new(Edge::new(&r.middlewares)),
                };
                // Each target with the route's retry settings for it (the route's fields over
                // that service's, as the stack file resolved them).
                let names: Vec<(&str, Option<&Retry>)> = match &r.split {
                    Some(split) => split
                        .targets
                        .iter()
                        .map(|t| (t.service.as_str(), t.retry.as_ref()))
                        .collect(),
                    None => vec![(r.service.as_str(), r.retry.as_ref())],
                };
                let targets = names
                    .iter()
                    .map(|&(name, route_retry)| {
                        let service = services.get(name)?.clone();
                        let latency = old
                            .and_then(|o| o.targets.iter().find(|t| *t.service.name == *name))
                            .map_or_else(Default::default, |t| Arc::clone(&t.latency));
                        service.health.add_route(&latency);
                        Some(Target {
                            retry: route_retry
                                .cloned()
                                .unwrap_or_else(|| service.def.retry.clone()),
                            latency,
                            response_header_timeout: r
                                .timeouts
                                .over(service.def.timeouts)
                                .response_header
                                .unwrap_or(stack.gateway.timeouts.response_header),
                            service_id: metrics.intern(name),
                            service,
                        })
                    })
                    .collect::<Option<Box<[Target]>>>()?;
                let split = r.split.as_ref().map(|split| {
                    let file: Vec<(String, u32)> = split
                        .targets
                        .iter()
                        .map(|t| (t.service.clone(), t.weight))
                        .collect();
                    // Live weights (`shoal weight`, a canary) outlast a reload that leaves
                    // the file's weights as they were.
                    let weights = match old.and_then(|o| o.split.as_ref()) {
                        Some(old) if old.weights.matches_file(&file) => Arc::clone(&old.weights),
                        _ => Arc::new(LiveWeights::new(file)),
                    };
                    let sticky = split.sticky.as_ref().map(|s| {
                        let set = names
                            .iter()
                            .map(|(service, _)| crate::split::set_cookie(&s.cookie, service))
                            .collect();
                        (s.cookie.clone(), set)
                    });
                    RouteSplit { weights, sticky }
                });
                let mirror = r.mirror.as_ref().and_then(|m| {
                    let service = services.get(&m.service)?.clone();
                    let state = match old.and_then(|o| o.mirror.as_ref()) {
                        Some(old) if old.def == *m => Arc::clone(&old.state),
                        _ => Arc::default(),
                    };
                    let time = service
                        .def
                        .timeouts
                        .response_header
                        .unwrap_or(stack.gateway.timeouts.response_header)
                        .min(crate::mirror::MAX_TIME);
                    Some(RouteMirror {
                        service,
                        def: m.clone(),
                        time,
                        state,
                    })
                });
                Some(CompiledRoute {
                    rule: r.rule.clone(),
                    entrypoints: r.entrypoints.clone(),
                    middlewares: r.middlewares.clone(),
                    edge,
                    rewrites_path: middleware::rewrites_path(&r.middlewares),
                    targets,
                    split,
                    mirror,
                    name: r.name.as_str().into(),
                    router_id: metrics.intern(&r.name),
                })
            })
            .collect();
        let smallest_body_limit = routes.iter().filter_map(|r| r.edge.body_limit()).min();
        let g = &stack.gateway;
        let pool = PoolSettings {
            connect_timeout: g.timeouts.connect,
            idle_timeout: g.timeouts.upstream_idle,
            max_idle_per_endpoint: g.max_idle_per_upstream,
        };
        let upstreams = match previous {
            Some(p) if p.upstreams.settings == pool => p.upstreams.clone(),
            _ => Upstreams::new(pool),
        };
        for (name, handle) in &services {
            let old = previous
                .and_then(|p| p.services.get(name))
                .and_then(|s| s.tls_pool.load_full());
            let tls_pool = crate::upstream_tls::pool_for(&handle.def, old, pool);
            handle.tls_pool.store(tls_pool);
        }
        RoutingTable {
            routes,
            services,
            upstreams,
            smallest_body_limit,
            settings: ForwardSettings {
                grpc_max: g.timeouts.grpc_max,
                body_idle: g.timeouts.body_idle,
                replica_header: g.replica_header.clone(),
                metrics: stack.metrics.enabled,
                metrics_prefix: stack.metrics.prefix,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RoutingTable;

    fn table(yaml: &str) -> RoutingTable {
        RoutingTable::for_tests(&shoal_config::parse(yaml, "shoal.yaml").unwrap())
    }

    #[test]
    fn each_split_target_tries_as_its_own_service_says_under_the_routes_fields() {
        let yaml = "services:
  a:
    servers: [http://127.0.0.1:1]
    retry: { attempts: 1 }
  b:
    servers: [http://127.0.0.1:2]
    retry: { attempts: 4 }
routes:
  - match: PathPrefix(`/`)
    services: [{ name: a }, { name: b }]
    retry: { non_idempotent: true }
";
        let t = table(yaml);
        let tries: Vec<(&str, u32, bool)> = t.routes[0]
            .targets
            .iter()
            .map(|t| (&*t.service.name, t.retry.attempts, t.retry.non_idempotent))
            .collect();
        assert_eq!(tries, [("a", 1, true), ("b", 4, true)]);
        // Without the route's `retry:`, each service's own.
        let t = table(&yaml.replace("    retry: { non_idempotent: true }\n", ""));
        let tries: Vec<(u32, bool)> = t.routes[0]
            .targets
            .iter()
            .map(|t| (t.retry.attempts, t.retry.non_idempotent))
            .collect();
        assert_eq!(tries, [(1, false), (4, false)]);
    }
}
