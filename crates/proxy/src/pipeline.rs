//! The steps every request takes, whichever path carries it — the relay (`crate::relay`,
//! plain HTTP/1.1 as bytes) or hyper's full stack (`crate::hyper_path`): one set of rules,
//! so the two paths differ only in how bytes move.
//!
//! 1. [`Gateway::begin`]: note what metrics and the access log need, match a route, choose
//!    its target (one service, or one of a split's, `crate::split`).
//! 2. [`prepare`]: the request head as it goes upstream (hop-by-hop headers out, forwarded
//!    headers in, the route's middlewares, `Host`).
//! 3. [`admit`]: hold it while a service at zero wakes, ask the circuit breaker, count it
//!    for the retry budget; then the tries (`crate::tries`, with the path's
//!    `crate::tries::Exchange`), and [`record_breaker`] with how they went. What a later
//!    try can have of the body is [`replay_limit`]'s to say, for both paths.
//! 4. [`response_extras`]: the headers the gateway adds to the replica's response (the
//!    hop-by-hop rule that removes others is `crate::forward`'s, also one for both paths).
//! 5. [`Gateway::finish`]: counters, metrics and the access log line, with the final status.
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::header::{self, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{StatusCode, Version};
use shoal_balance::{Backend, Pick};
use shoal_config::{Balance, Retry};
use shoal_route::RequestInfo;
use tokio::time::Instant;

use crate::access_log::{AccessLogger, Entry};
use crate::breaker::Admission;
use crate::error::ProxyError;
use crate::forward;
use crate::gateway::{ConnInfo, Gateway};
use crate::hold::HoldError;
use crate::metrics::{Key, NONE, Proto, method_index};
use crate::middleware;
use crate::table::{CompiledRoute, RoutingTable, ServiceHandle, Target};

impl Gateway {
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
        let logged = if self.logging() {
            self.access_log().map(|logger| {
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
            self.request_metrics().record(
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

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

/// The one replay rule of both paths: a request body is kept for a later try only when one
/// may be sent after a replica saw the request (`may_resend`: an idempotent request, or any
/// to an HTTP/2 service, see `crate::tries`) and the route makes more than one try; then up
/// to `retry.max_replay_body` bytes of it. `None`: the body is sent once.
pub(crate) fn replay_limit(retry: &Retry, may_resend: bool) -> Option<u64> {
    (may_resend && retry.attempts > 1).then_some(retry.max_replay_body)
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

    #[test]
    fn bodies_are_kept_for_a_later_try_only_within_the_limit() {
        let retry = Retry {
            attempts: 3,
            max_replay_body: 16,
            ..Retry::default()
        };
        assert_eq!(replay_limit(&retry, true), Some(16));
        assert_eq!(replay_limit(&retry, false), None, "sent once: no copy");
        let once = Retry {
            attempts: 1,
            ..retry
        };
        assert_eq!(replay_limit(&once, true), None, "one try: no copy");
    }
}
