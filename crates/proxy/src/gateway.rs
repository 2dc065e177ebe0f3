//! The life of a request: match a route and choose its target service (one of a split's,
//! `crate::split`), run its middlewares, copy it to the route's mirror if selected
//! (`crate::mirror`), pick a replica, forward, and turn any failure into a response at one
//! boundary ([`ProxyError::into_response`]). The target is chosen once, in
//! [`Gateway::begin`]; every later step — sending, counting, logging — uses that one.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::client::conn::http1;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use shoal_balance::{Backend, Pick};
use shoal_config::{Balance, Stack};
use shoal_core::{Endpoint, EndpointSink, EventLog, ReplicaTraffic, ServiceTraffic};
use shoal_route::RequestInfo;
use tokio::time::Instant;

use crate::access_log::{AccessLogger, Entry};
use crate::body::{BoxError, ProxyBody, boxed};
use crate::breaker::Admission;
use crate::compress;
use crate::error::ProxyError;
use crate::forward;
use crate::framing;
use crate::grpc;
use crate::hold::{Activator, HoldError, HoldSettings, WakeFn};
use crate::metrics::{Key, NONE, Proto, RequestMetrics, method_index};
use crate::middleware;
use crate::table::{CompiledRoute, RoutingTable, ServiceHandle, Target};
use crate::tries::{
    Answer, BalanceKey, HyperExchange, Outbound, boxed_bytes, is_idempotent, read_small_body,
};
use crate::upstream::Upstreams;

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
        let table = self.table.load_full();
        let version = req.version();
        // gRPC calls get the gateway's failures as gRPC statuses (crate::grpc).
        let grpc = grpc::is_grpc(version, req.headers());
        let mut resp = match self.forward(&table, req.map(boxed), conn, grpc).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!(error = %e, "request failed");
                if grpc {
                    e.into_grpc_response()
                } else {
                    e.into_response()
                }
            }
        };
        // hyper's HTTP/2 server adds no `Date` (crate::server): in a trailers-only gRPC
        // answer it would be trailing metadata. Every other HTTP/2 response gets one here
        // if the replica sent none (RFC 9110 §6.6.1).
        if version == Version::HTTP_2 && !(grpc && grpc::is_trailers_only(resp.headers())) {
            resp.headers_mut()
                .entry(header::DATE)
                .or_insert_with(http_date);
        }
        resp
    }

    async fn forward(
        &self,
        table: &RoutingTable,
        req: Request<ProxyBody>,
        conn: &ConnInfo,
        grpc: bool,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        let begun = self.begin(table, &parts, conn);
        // A gRPC call's deadline counts from here (crate::grpc).
        let grpc_since = grpc.then(|| begun.started());
        let mut replica = None;
        // The relay has checked the requests it parsed; these come from hyper's parser
        // (HTTP/1.0, and whatever followed on a connection handed over): the same rules.
        let minor = match parts.version {
            Version::HTTP_10 => Some(0),
            Version::HTTP_11 => Some(1),
            _ => None,
        };
        let refused = minor.and_then(|minor| {
            let fields = parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
            framing::request_facts(minor, fields).err()
        });
        let result = match (refused, begun.route.zip(begun.target)) {
            (Some(reject), _) => Err(reject.into()),
            (None, None) => Err(ProxyError::NoRoute),
            (None, Some((route, target))) => {
                // The route's checks: an early answer (401, 403, 413, 429, a redirect, a
                // preflight) never reaches a replica.
                let version = parts.version;
                let client = middleware::Client {
                    peer: begun.client_ip,
                    tls: conn.tls,
                    host: begun.host_header.as_ref(),
                };
                let admitted = if route.edge.is_empty() {
                    Ok(middleware::Admitted::default())
                } else {
                    route.edge.admit(&mut parts, client).await
                };
                match admitted {
                    Err(early) if grpc => Ok(grpc::from_early(early, version)),
                    Err(early) => Ok(early.into_response(version)),
                    Ok(admitted) => {
                        let slot = begun.logged.is_some().then_some(&mut replica);
                        let (body, crossed) = admitted.limit_body(body);
                        let result = self
                            .forward_to(
                                table,
                                (route, target, begun.set_cookie.clone()),
                                parts,
                                body,
                                begun.host_header.clone(),
                                begun.client_ip,
                                slot,
                                grpc_since,
                            )
                            .await;
                        // Over the route's `buffering` limit, `finish` answers 413: a gRPC
                        // call gets it as a gRPC status.
                        let over_limit = grpc
                            && result.is_err()
                            && crossed
                                .as_deref()
                                .is_some_and(|c| c.load(Ordering::Acquire));
                        let answer = admitted.finish(result, crossed.as_deref(), version);
                        if over_limit {
                            answer.map(grpc::from_refusal)
                        } else {
                            answer
                        }
                    }
                }
            }
        };
        let (status, size) = match &result {
            Ok(resp) => (
                grpc::counted_status(resp),
                resp.headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok()),
            ),
            Err(e) => (e.status(), None),
        };
        self.finish(begun, conn, status, size, replica);
        result
    }

    /// The first step of every request, whichever path carries it: note what metrics and
    /// the access log need, match a route and choose its target.
    pub(crate) fn begin<'t>(
        &self,
        table: &'t RoutingTable,
        parts: &http::request::Parts,
        conn: &ConnInfo,
    ) -> Begun<'t> {
        self.begin_routed(table, parts, conn, true)
    }

    /// As [`begin`](Self::begin) for a request no route will carry (a `redirect_to`
    /// entrypoint's): nothing matched, so no split's turn is taken.
    pub(crate) fn begin_unrouted<'t>(
        &self,
        table: &'t RoutingTable,
        parts: &http::request::Parts,
        conn: &ConnInfo,
    ) -> Begun<'t> {
        self.begin_routed(table, parts, conn, false)
    }

    fn begin_routed<'t>(
        &self,
        table: &'t RoutingTable,
        parts: &http::request::Parts,
        conn: &ConnInfo,
        routed: bool,
    ) -> Begun<'t> {
        let start = Instant::now();
        let proto = if table.settings.metrics {
            Proto::of(&parts.headers)
        } else {
            Proto::Http
        };
        let logged = if self.access_log.load().is_some() {
            self.access_log.load_full().map(|logger| {
                let h = &parts.headers;
                Logged {
                    logger,
                    method: parts.method.clone(),
                    uri: parts.uri.clone(),
                    version: parts.version,
                    user_agent: h.get(header::USER_AGENT).cloned(),
                    referer: h.get(header::REFERER).cloned(),
                }
            })
        } else {
            None
        };
        // The target's authority when it has one (HTTP/2's :authority, or an absolute-form
        // target, which RFC 9112 §3.2.2 says wins over Host), else the Host header (a
        // reference-counted clone).
        let host_header: Option<HeaderValue> = match parts.uri.authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => parts.headers.get(header::HOST).cloned(),
        };
        let client_ip = forward::canonical_ip(conn.client.ip());
        let route = routed
            .then(|| {
                let info = RequestInfo {
                    method: &parts.method,
                    host: host_header
                        .as_ref()
                        .and_then(|h| h.to_str().ok())
                        .map(strip_port),
                    path: parts.uri.path(),
                    query: parts.uri.query(),
                    headers: &parts.headers,
                    client_ip,
                };
                find_route(table, &info, &conn.entrypoint)
            })
            .flatten();
        let (target, set_cookie) = match route {
            Some(r) => {
                let (target, cookie) = r.choose(&parts.headers);
                (Some(target), cookie)
            }
            None => (None, None),
        };
        Begun {
            start,
            proto,
            method: method_index(&parts.method),
            logged,
            host_header,
            client_ip,
            route,
            target,
            set_cookie,
            counting: table.settings.metrics,
        }
    }

    /// The last step of every request, once its response head is known: counters,
    /// metrics, and the access log line.
    pub(crate) fn finish(
        &self,
        begun: Begun<'_>,
        conn: &ConnInfo,
        status: StatusCode,
        size: Option<u64>,
        replica: Option<Arc<Backend>>,
    ) {
        let target = begun.target;
        if let Some(target) = target {
            target.service.health.counters.answered(status);
        }
        let elapsed = begun.start.elapsed();
        if begun.counting {
            let (router, service) = begun
                .route
                .zip(target)
                .map_or((NONE, NONE), |(r, t)| (r.router_id, t.service_id));
            self.metrics.record(
                Key {
                    code: status.as_u16(),
                    method: begun.method,
                    proto: begun.proto,
                    entrypoint: conn.entrypoint_id,
                    router,
                    service,
                },
                elapsed.as_secs_f64(),
            );
        }
        if let Some(logged) = begun.logged {
            let route = begun.route;
            logged.logger.log(Entry {
                start: std::time::SystemTime::now() - elapsed,
                client: begun.client_ip,
                method: logged.method,
                uri: logged.uri,
                host: route.and(begun.host_header),
                version: logged.version,
                status: status.as_u16(),
                duration: elapsed,
                entrypoint: conn.entrypoint.clone(),
                router: route.map(|r| r.name.clone()),
                service: target.map(|t| t.service.name.clone()),
                replica,
                user_agent: logged.user_agent,
                referer: logged.referer,
                size,
            });
        }
    }

    /// The rest of [`forward`](Self::forward), once the route is known.
    // The request's parts as `forward` split them, plus where to say which replica served
    // (for the access log); a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    async fn forward_to(
        &self,
        table: &RoutingTable,
        (route, target, set_cookie): (&CompiledRoute, &Target, Option<HeaderValue>),
        mut parts: http::request::Parts,
        body: ProxyBody,
        host_header: Option<HeaderValue>,
        client_ip: IpAddr,
        replica: Option<&mut Option<Arc<Backend>>>,
        grpc_since: Option<Instant>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let service = &target.service;
        let upgrade = parts.version == Version::HTTP_11 && forward::is_upgrade(&parts.headers);
        let h2c = service.speaks_h2();
        // Whether to compress the response, from the request as the client sent it.
        let compress = compress::choose(&route.middlewares, &parts.method, &parts.headers);
        let https = parts.extensions.get::<forward::Https>().is_some();
        let path_and_query = prepare(
            route,
            &mut parts,
            host_header.clone(),
            client_ip,
            upgrade,
            h2c,
            https,
        )?;
        // Framing is hyper's to write from the body it sends, never copied from the client's
        // headers (crate::framing).
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::TRANSFER_ENCODING);
        // A copy to the route's mirror, if this request is selected: its body (known, and
        // small) is read first, to go to both (crate::mirror).
        let body = match &route.mirror {
            Some(mirror) if !upgrade => {
                let len = if body.is_end_stream() {
                    Some(0)
                } else {
                    body.size_hint().exact()
                };
                match (mirror.select(len), len) {
                    (Some(slot), Some(len)) => {
                        let bytes = read_small_body(body, len, table.settings.body_idle).await?;
                        mirror.send(
                            slot,
                            &table.upstreams,
                            &parts.method,
                            &path_and_query,
                            &parts.headers,
                            host_header.as_ref(),
                            bytes.clone(),
                        );
                        boxed_bytes(bytes)
                    }
                    _ => body,
                }
            }
            _ => body,
        };
        let client_upgrade = parts.extensions.remove::<OnUpgrade>();
        let deadline = grpc_since.and_then(|since| call_deadline(table, target, &mut parts, since));
        if let Some((at, true)) = deadline
            && at <= Instant::now()
        {
            // Already past the client's deadline: not worth a replica's time.
            return Err(ProxyError::DeadlineExceeded(service.name.to_string()));
        }
        let (now, trial) = admit(service, Instant::now()).await?;
        let mut outbound = Outbound::new(table, target, now);
        if let Some((at, client)) = deadline {
            // The time left, from now on: the replica is told as much (`grpc-timeout`).
            let left = at.saturating_duration_since(now);
            parts
                .headers
                .insert(grpc::GRPC_TIMEOUT, grpc::format_timeout(left));
            outbound.response_header_timeout = left;
            outbound.client_deadline = client;
        }
        let retry = &target.retry;
        let idempotent = !upgrade && is_idempotent(retry, &parts.method, &parts.headers);
        let key = BalanceKey::of(service, &parts.headers, client_ip);
        let exchange = HyperExchange::new(
            parts.method,
            parts.headers,
            path_and_query,
            body,
            h2c,
            // An HTTP/2 try the replica provably did not process goes again whatever the
            // method (`crate::tries`): its body is kept too.
            ((idempotent || (h2c && !upgrade)) && retry.attempts > 1)
                .then_some(retry.max_replay_body),
            table.settings.body_idle,
        )
        .await?;
        let sent = outbound.run(exchange, idempotent, &key).await;
        let answered = match &sent {
            Ok(a) => Some(a.response.0.status()),
            // The client's own deadline ran out: no verdict on the service, so no failure
            // (a slow call still counts as slow).
            Err(ProxyError::DeadlineExceeded(_)) => Some(StatusCode::OK),
            Err(_) => None,
        };
        record_breaker(service, trial, now, answered);
        let Answer {
            pick,
            response: (mut resp, h1),
        } = sent?;
        if let Some(slot) = replica {
            *slot = Some(pick.backend().clone());
        }

        // Response headers back to the client. hyper has decoded the body by its framing;
        // with Transfer-Encoding too, a Content-Length is stale (RFC 9112 §6.3 rule 3), and
        // hyper's server would frame the body by it.
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if resp.headers().contains_key(header::TRANSFER_ENCODING) {
            resp.headers_mut().remove(header::CONTENT_LENGTH);
        }
        forward::strip_hop_by_hop(resp.headers_mut(), switching, false);
        middleware::apply_response(&route.middlewares, resp.headers_mut());
        // In a trailers-only gRPC answer every header is trailing metadata: the replica's
        // name and a sticky cookie are not the call's (crate::grpc).
        let trailers_only = grpc_since.is_some() && grpc::is_trailers_only(resp.headers());
        let headers = resp.headers_mut();
        if !trailers_only {
            response_extras(table, service, &pick, |name, value| {
                if name == header::SET_COOKIE {
                    headers.append(name, value);
                } else {
                    headers.insert(name, value);
                }
            });
            if let Some(cookie) = set_cookie {
                headers.append(header::SET_COOKIE, cookie);
            }
        }

        if switching {
            let upstream_upgrade = resp.extensions_mut().remove::<OnUpgrade>();
            match (client_upgrade, upstream_upgrade) {
                (Some(client), Some(upstream)) => {
                    tokio::spawn(tunnel(client, upstream, pick));
                    return Ok(resp.map(|_| crate::body::empty()));
                }
                _ => {
                    return Err(ProxyError::Upstream {
                        service: service.name.to_string(),
                        source: "the replica switched protocols on a request that did not ask to"
                            .into(),
                    });
                }
            }
        }
        let pool = h1;
        let resp = resp.map(|body| {
            boxed(GuardedBody {
                inner: body,
                pick: Some(pick),
                pool,
            })
        });
        Ok(match compress {
            Some(chosen) => compress::compress(chosen, resp),
            None => resp,
        })
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

/// What [`Gateway::begin`] noted of a request, for [`Gateway::finish`].
pub(crate) struct Begun<'t> {
    start: Instant,
    proto: Proto,
    method: u8,
    counting: bool,
    logged: Option<Logged>,
    /// The Host header, or HTTP/2's `:authority`.
    pub(crate) host_header: Option<HeaderValue>,
    /// The client's address, IPv4-mapped addresses shown as IPv4.
    pub(crate) client_ip: IpAddr,
    /// The route that matched, if any.
    pub(crate) route: Option<&'t CompiledRoute>,
    /// The route's target chosen for this request (its one service, or one of its split,
    /// `crate::split`): every later step sends to, counts and logs this one.
    pub(crate) target: Option<&'t Target>,
    /// A sticky split's cookie for the response, when the request did not carry a valid one.
    pub(crate) set_cookie: Option<HeaderValue>,
}

impl Begun<'_> {
    /// When the request's head was in hand.
    pub(crate) fn started(&self) -> Instant {
        self.start
    }

    /// Whether [`Gateway::finish`] wants to know the replica (for the access log).
    pub(crate) fn logged_wanted(&self) -> bool {
        self.logged.is_some()
    }
}

/// What the access log needs of a request, taken before its parts move on.
struct Logged {
    logger: Arc<AccessLogger>,
    method: http::Method,
    uri: http::Uri,
    version: Version,
    user_agent: Option<HeaderValue>,
    referer: Option<HeaderValue>,
}

/// Turn the client's request head into the one sent upstream: hop-by-hop headers out,
/// forwarded headers in, the route's middlewares, and `Host` for HTTP/1 upstreams. Returns
/// the upstream path and query. `https`: the client came over TLS (`X-Forwarded-Proto`).
pub(crate) fn prepare(
    route: &CompiledRoute,
    parts: &mut http::request::Parts,
    host_header: Option<HeaderValue>,
    client_ip: IpAddr,
    upgrade: bool,
    h2c: bool,
    https: bool,
) -> Result<PathAndQuery, ProxyError> {
    // Before the middlewares: `set_forwarded` drops a client-sent `X-Forwarded-Prefix`, and
    // `strip_prefix` then sets ours.
    forward::strip_hop_by_hop(&mut parts.headers, upgrade, h2c);
    forward::set_forwarded(&mut parts.headers, client_ip, host_header.clone(), https);

    // Path rewriting and header edits. Without path middlewares the original
    // path-and-query is reused as is (a cheap reference-counted clone).
    let path_and_query = if route.rewrites_path {
        let mut path = parts.uri.path().to_owned();
        middleware::apply_request(
            &route.middlewares,
            &mut path,
            &mut parts.headers,
            &parts.extensions,
        );
        match parts.uri.query() {
            Some(q) => PathAndQuery::try_from(format!("{path}?{q}")),
            None => PathAndQuery::try_from(path),
        }
        .map_err(|_| ProxyError::BadRequest("the rewritten path is not a valid URI path".into()))?
    } else {
        // Header edits only: no path to rewrite.
        middleware::apply_request(
            &route.middlewares,
            &mut String::new(),
            &mut parts.headers,
            &parts.extensions,
        );
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"))
    };
    if h2c {
        parts.headers.remove(header::HOST);
    } else if let Some(h) = host_header {
        // HTTP/1 upstreams get the host the request was routed by: the one Host header, or
        // the target's authority (HTTP/2 clients, absolute-form targets).
        if parts.uri.authority().is_some() || !parts.headers.contains_key(header::HOST) {
            parts.headers.insert(header::HOST, h);
        }
    }
    Ok(path_and_query)
}

/// A gRPC call's deadline, from its `grpc-timeout` and its route's timeouts
/// ([`grpc::call_wait`]), if it sent one: when the gateway stops waiting for response
/// headers, and whether that is the client's own deadline (else the route's bound, counted
/// from the call's arrival `since`). A malformed `grpc-timeout` is removed and ignored, as
/// Envoy does.
fn call_deadline(
    table: &RoutingTable,
    target: &Target,
    parts: &mut http::request::Parts,
    since: Instant,
) -> Option<(Instant, bool)> {
    match grpc::client_timeout(&parts.headers)? {
        Ok(timeout) => {
            let route_wait = target.response_header_timeout;
            let (wait, client) = grpc::call_wait(route_wait, table.settings.grpc_max, timeout);
            Some((since + wait, client))
        }
        Err(e) => {
            tracing::debug!(error = %e, "malformed grpc-timeout ignored");
            parts.headers.remove(grpc::GRPC_TIMEOUT);
            None
        }
    }
}

/// Let a request through to `service`: hold it while a service at zero wakes, ask the
/// circuit breaker, count it for the retry budget. Returns when it was let through and
/// whether it is a breaker trial (for [`record_breaker`]). `now`: the request's start.
pub(crate) async fn admit(
    service: &ServiceHandle,
    mut now: Instant,
) -> Result<(Instant, bool), ProxyError> {
    // A service at zero replicas that can wake: hold the request while it starts.
    if service.balancer.backends().is_empty()
        && let Some(activator) = service.activator.load_full()
    {
        let has_endpoint = || !service.balancer.backends().is_empty();
        activator
            .hold(has_endpoint)
            .await
            .map_err(|e| ProxyError::NotStarted {
                service: service.name.to_string(),
                why: match e {
                    HoldError::Full => "too many requests are waiting for it".to_owned(),
                    HoldError::TimedOut(d) => {
                        format!("no replica ready within {}ms", d.as_millis())
                    }
                },
            })?;
        now = Instant::now();
    }
    let trial = match service.breaker.as_ref().map(|b| b.admit(now)) {
        None => false,
        Some(Admission::Allowed { trial }) => trial,
        Some(Admission::Rejected { retry_after }) => {
            service
                .health
                .counters
                .breaker_rejected
                .fetch_add(1, Ordering::Relaxed);
            return Err(ProxyError::CircuitOpen {
                service: service.name.to_string(),
                retry_after_secs: retry_after.as_secs().max(1),
            });
        }
    };
    service.budget.record_request(now);
    Ok((now, trial))
}

/// Tell the circuit breaker how a request admitted at `since` went (`None`: no answer).
pub(crate) fn record_breaker(
    service: &ServiceHandle,
    trial: bool,
    since: Instant,
    status: Option<StatusCode>,
) {
    if let Some(breaker) = &service.breaker {
        let failed = status.is_none_or(|s| s.is_server_error());
        if let Some(state) = breaker.record(Instant::now(), trial, failed, since.elapsed()) {
            service.health.breaker_changed(state);
        }
    }
}

/// Response headers going back to the client: the replica's name, if configured, and the
/// sticky cookie when the pick set one. `add(name, value)` appends a header.
pub(crate) fn response_extras(
    table: &RoutingTable,
    service: &ServiceHandle,
    pick: &Pick,
    mut add: impl FnMut(&HeaderName, HeaderValue),
) {
    if let Some(name) = &table.settings.replica_header
        && let Ok(v) = HeaderValue::from_str(pick.backend().key())
    {
        add(name, v);
    }
    if let Some(id) = pick.set_sticky()
        && let Balance::Sticky { cookie } = &service.def.balance
    {
        let c = format!("{cookie}={id}; Path=/; HttpOnly; SameSite=Lax");
        if let Ok(v) = HeaderValue::try_from(c) {
            add(&header::SET_COOKIE, v);
        }
    }
}

fn find_route<'t>(
    table: &'t RoutingTable,
    info: &RequestInfo<'_>,
    entrypoint: &str,
) -> Option<&'t CompiledRoute> {
    table.routes.iter().find(|r| {
        r.entrypoints
            .as_ref()
            .is_none_or(|eps| eps.iter().any(|e| e == entrypoint))
            && r.rule.matches(info)
    })
}

/// `Date`'s value for now (RFC 9110 §5.6.7), formatted at most once a second per thread.
fn http_date() -> HeaderValue {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, HeaderValue)> =
            const { std::cell::RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with_borrow_mut(|(at, value)| {
        if *at != secs {
            *value = HeaderValue::try_from(httpdate::fmt_http_date(now))
                .expect("an IMF-fixdate is visible ASCII");
            *at = secs;
        }
        value.clone()
    })
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

/// Copy bytes both ways between the upgraded client and upstream connections. The pick is
/// held until the tunnel closes, so the replica counts it as in flight: a draining replica
/// is stopped only once its tunnels have closed, or at its drain timeout (then the replica
/// closes them itself, a WebSocket server with 1001 "going away", and each direction's end
/// is passed on as it comes).
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, pick: Pick) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(replica = pick.backend().key(), error = %e, "tunnel closed with an error");
        drop(upstream);
        drop(pick);
        linger(&mut client).await;
    }
}

/// How long a tunnel whose replica side failed waits for the client to close its side.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Close the client's side of a tunnel whose replica side failed (reset, killed) without
/// resetting it: send our FIN, then read and drop what the client still sends until it
/// closes too, for at most [`LINGER`]. Closing a socket with data left unread sends a reset
/// instead of a FIN (RFC 1122 §4.2.2.13), which would discard what we wrote last.
async fn linger<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(client: &mut S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let drain = async {
        if client.shutdown().await.is_err() {
            return;
        }
        let mut sink = [0u8; 4096];
        while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// An HTTP/1.1 connection to give back to its pool once the body has been read.
type Reusable = (Arc<Upstreams>, http1::SendRequest<ProxyBody>);

pin_project_lite::pin_project! {
    /// A response body that keeps its replica's in-flight count until it is finished or
    /// dropped, and returns the upstream connection to the pool when it was read to the end.
    struct GuardedBody<B: Body> {
        #[pin]
        inner: B,
        pick: Option<Pick>,
        pool: Option<Reusable>,
    }

    impl<B: Body> PinnedDrop for GuardedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // A body the server stopped polling because it was complete still frees its connection.
            if this.inner.is_end_stream()
                && let (Some((pool, sender)), Some(pick)) = (this.pool.take(), this.pick.as_ref()) {
                    pool.checkin(pick.backend().addr(), sender);
                }
        }
    }
}

impl<B: Body<Data = Bytes>> Body for GuardedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(None) = polled
            && let (Some((pool, sender)), Some(pick)) = (this.pool.take(), this.pick.take())
        {
            pool.checkin(pick.backend().addr(), sender);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ports_from_hosts() {
        assert_eq!(strip_port("example.com:8000"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("127.0.0.1"), "127.0.0.1");
    }

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
