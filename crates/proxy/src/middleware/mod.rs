//! Route middlewares, applied in the order the route lists them.
//!
//! Two passes over the same list. First the *checks*, before anything goes upstream
//! ([`Edge::admit`]): `ip_allow_list`, `basic_auth`, `rate_limit`, `in_flight_req`,
//! `buffering`, `cors`, `redirect_scheme` and `redirect_regex` may answer the request
//! themselves ([`Early`]: 403, 401, 429, 413, a 204 preflight, a 307/308), and the first to
//! answer wins; the checks see the request as the client sent it. Then the *rewrites*, on
//! the request going upstream ([`apply_request`]): `strip_prefix`, `add_prefix`,
//! `replace_path_regex`, `headers`, and `basic_auth`'s header edits. [`apply_response`] and
//! [`Admitted::response_headers`] edit the response. `compress` is applied on the response
//! by `crate::compress`.
//!
//! `strip_prefix` follows Traefik: the first listed prefix the path starts with is removed
//! (a plain string prefix, like `PathPrefix`), the result always starts with `/`, and the
//! removed prefix is sent upstream in `X-Forwarded-Prefix` so the app can build links.
//! `add_prefix` puts a prefix in front. `replace_path_regex` replaces every match in the
//! path (Traefik's rule) and sends the original path upstream in `X-Replaced-Path`.
//! `headers` sets or removes request headers here and response headers in
//! [`apply_response`].
//!
//! The full reference, with each middleware's statuses and headers, is
//! `docs/middlewares.md`.
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderName};
use http::request::Parts;
use http::{Extensions, HeaderMap, HeaderValue, Response, StatusCode, Version};
use shoal_config::Middleware;

use crate::body::{ProxyBody, empty, full};
use crate::error::ProxyError;
use crate::forward::X_FORWARDED_PREFIX;

pub(crate) mod basic_auth;
pub(crate) mod body_limit;
pub(crate) mod cors;
pub(crate) mod in_flight;
pub(crate) mod ip;
pub(crate) mod rate_limit;
pub(crate) mod redirect;

use basic_auth::Authenticator;
use cors::CorsPolicy;
use in_flight::{InFlightGuard, InFlightLimiter};
use rate_limit::{Decision, RateLimiter};

/// `X-Replaced-Path`: the path before `replace_path_regex`.
pub(crate) static X_REPLACED_PATH: HeaderName = HeaderName::from_static("x-replaced-path");

/// The user `basic_auth` authenticated, for its `header_field` (a request extension).
#[derive(Debug, Clone)]
struct AuthenticatedUser(HeaderValue);

/// Rewrite `path` and edit `headers` for the request going upstream. `extensions`: the
/// request's, where [`Edge::admit`] left what the rewrites need.
pub(crate) fn apply_request(
    middlewares: &[Middleware],
    path: &mut String,
    headers: &mut HeaderMap,
    extensions: &Extensions,
) {
    // Only our replace_path_regex may set X-Replaced-Path (like X-Forwarded-Prefix).
    if middlewares
        .iter()
        .any(|m| matches!(m, Middleware::ReplacePathRegex(_)))
    {
        headers.remove(&X_REPLACED_PATH);
    }
    for m in middlewares {
        match m {
            Middleware::StripPrefix(prefixes) => {
                if let Some(p) = prefixes.iter().find(|p| path.starts_with(p.as_str())) {
                    let rest = &path[p.len()..];
                    *path = if rest.starts_with('/') {
                        rest.to_owned()
                    } else {
                        format!("/{rest}")
                    };
                    let forwarded = match headers
                        .get(&X_FORWARDED_PREFIX)
                        .and_then(|v| v.to_str().ok())
                    {
                        Some(earlier) => format!("{earlier}{p}"),
                        None => p.clone(),
                    };
                    if let Ok(v) = HeaderValue::try_from(forwarded) {
                        headers.insert(X_FORWARDED_PREFIX.clone(), v);
                    }
                }
            }
            Middleware::AddPrefix(prefix) => {
                path.insert_str(0, prefix);
            }
            Middleware::ReplacePathRegex(r) => {
                let regex = &r.regex.regex;
                if regex.is_match(path) {
                    let replaced = regex.replace_all(path, r.replacement.as_str()).into_owned();
                    if let Ok(original) = HeaderValue::try_from(path.as_str()) {
                        headers.insert(X_REPLACED_PATH.clone(), original);
                    }
                    *path = if replaced.starts_with('/') {
                        replaced
                    } else {
                        format!("/{replaced}")
                    };
                }
            }
            Middleware::Headers(rules) => {
                for name in &rules.request_remove {
                    headers.remove(name);
                }
                for (name, value) in &rules.request_set {
                    headers.insert(name.clone(), value.clone());
                }
            }
            Middleware::BasicAuth(auth) => {
                if auth.remove_header {
                    headers.remove(header::AUTHORIZATION);
                }
                if let Some(field) = &auth.header_field {
                    // Set from the credentials checked, replacing whatever the client sent.
                    match extensions.get::<AuthenticatedUser>() {
                        Some(user) => headers.insert(field.clone(), user.0.clone()),
                        None => headers.remove(field),
                    };
                }
            }
            // Checks only (Edge::admit), or on the response (compress).
            Middleware::RateLimit(_)
            | Middleware::InFlightReq(_)
            | Middleware::IpAllowList(_)
            | Middleware::RedirectScheme(_)
            | Middleware::RedirectRegex(_)
            | Middleware::Compress(_)
            | Middleware::Buffering(_)
            | Middleware::Cors(_) => {}
        }
    }
}

/// Whether `middlewares` rewrite the path (else the client's path-and-query is forwarded
/// as it is).
pub(crate) fn rewrites_path(middlewares: &[Middleware]) -> bool {
    middlewares.iter().any(|m| {
        matches!(
            m,
            Middleware::StripPrefix(_) | Middleware::AddPrefix(_) | Middleware::ReplacePathRegex(_)
        )
    })
}

/// Edit the response headers going back to the client.
pub(crate) fn apply_response(middlewares: &[Middleware], headers: &mut HeaderMap) {
    for m in middlewares {
        if let Middleware::Headers(rules) = m {
            for name in &rules.response_remove {
                headers.remove(name);
            }
            for (name, value) in &rules.response_set {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}

/// Add the headers [`Edge::admit`] asked for to a response (`Vary` is appended to the
/// replica's, the others replace theirs).
pub(crate) fn add_response_headers(headers: &mut HeaderMap, add: &[(HeaderName, HeaderValue)]) {
    for (name, value) in add {
        if name == header::VARY {
            headers.append(name.clone(), value.clone());
        } else {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// An answer a middleware gives instead of forwarding the request.
#[derive(Debug)]
pub(crate) struct Early {
    pub(crate) status: StatusCode,
    /// Besides the body's `Content-Type` and `Content-Length`.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// A short text (empty for redirects and 204).
    pub(crate) body: Cow<'static, str>,
    /// Close the connection afterwards (HTTP/1): the request's body was not read.
    pub(crate) close: bool,
}

impl Early {
    /// An answer without a body.
    pub(crate) fn empty(status: StatusCode, headers: Vec<(HeaderName, HeaderValue)>) -> Early {
        Early {
            status,
            headers,
            body: Cow::Borrowed(""),
            close: false,
        }
    }

    /// A refusal: `status`, `X-Shoal-Error: reason`, and the status and `why` as text.
    fn refusal(status: StatusCode, reason: &'static str, why: Cow<'static, str>) -> Early {
        let body = format!(
            "{} {}: {why}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        Early {
            status,
            headers: vec![(
                HeaderName::from_static("x-shoal-error"),
                HeaderValue::from_static(reason),
            )],
            body: Cow::Owned(body),
            close: false,
        }
    }

    /// Whether the body is written (never for 204 and 304, RFC 9110 §6.4.1).
    fn has_body(&self) -> bool {
        !matches!(self.status.as_u16(), 204 | 304)
    }

    /// Bytes of the body, for the access log.
    pub(crate) fn size(&self) -> Option<u64> {
        Some(if self.has_body() {
            self.body.len() as u64
        } else {
            0
        })
    }

    /// The answer for the full HTTP stack (hyper writes the framing; `Connection: close`
    /// only means something to HTTP/1).
    pub(crate) fn into_response(self, version: Version) -> Response<ProxyBody> {
        let has_body = self.has_body();
        let mut resp = if has_body && !self.body.is_empty() {
            Response::new(full(self.body.into_owned()))
        } else {
            Response::new(empty())
        };
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        if has_body && resp_needs_type(&self.headers, self.status) {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        for (name, value) in self.headers {
            h.append(name, value);
        }
        if self.close && version <= Version::HTTP_11 {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    /// The answer as HTTP/1.1 bytes, for the relay. `head_request`: no body on the wire.
    pub(crate) fn write_http1(&self, out: &mut BytesMut, close: bool, head_request: bool) {
        use std::fmt::Write;
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or("")
        );
        for (name, value) in &self.headers {
            out.put_slice(name.as_str().as_bytes());
            out.put_slice(b": ");
            out.put_slice(value.as_bytes());
            out.put_slice(b"\r\n");
        }
        if self.has_body() {
            if resp_needs_type(&self.headers, self.status) {
                out.put_slice(b"content-type: text/plain; charset=utf-8\r\n");
            }
            let _ = write!(out, "content-length: {}\r\n", self.body.len());
        }
        if close || self.close {
            out.put_slice(b"connection: close\r\n");
        }
        out.put_slice(b"\r\n");
        if self.has_body() && !head_request {
            out.put_slice(self.body.as_bytes());
        }
    }
}

/// Whether a body-carrying early answer needs our `Content-Type` (refusals have text).
fn resp_needs_type(headers: &[(HeaderName, HeaderValue)], status: StatusCode) -> bool {
    !status.is_redirection() && !headers.iter().any(|(n, _)| n == header::CONTENT_TYPE)
}

/// One check of a route, compiled, with its state.
#[derive(Debug)]
enum Step {
    RateLimit(Arc<RateLimiter>),
    InFlight(Arc<InFlightLimiter>),
    BasicAuth(Arc<Authenticator>),
    IpAllowList(shoal_config::IpAllowList),
    RedirectScheme(shoal_config::RedirectScheme),
    RedirectRegex(shoal_config::RedirectRegex),
    BodyLimit(u64),
    Cors(Box<CorsPolicy>),
}

/// The checks of one route, in its order, with their state (rate-limit and in-flight
/// counters, the credentials cache). Built with the routing table; kept across reloads
/// that leave the route's middlewares as they were.
#[derive(Debug, Default)]
pub(crate) struct Edge {
    steps: Vec<Step>,
    /// The smallest `buffering` limit, if any.
    body_limit: Option<u64>,
}

/// What the request needs besides the request itself, for the checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client<'a> {
    /// The TCP peer.
    pub(crate) peer: IpAddr,
    /// Whether it came over TLS.
    pub(crate) tls: bool,
    /// `Host` or `:authority`.
    pub(crate) host: Option<&'a HeaderValue>,
}

/// A request the checks let through, and what it carries on with.
#[derive(Debug, Default)]
pub(crate) struct Admitted {
    /// Its places in `in_flight_req` counters: drop when the response is done.
    pub(crate) guards: Vec<InFlightGuard>,
    /// Headers to add to the response (`cors`).
    pub(crate) response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Count the request body as it streams and fail it past this many bytes (its length
    /// was not announced).
    pub(crate) body_limit: Option<u64>,
}

impl Admitted {
    /// The request body, bounded if a `buffering` limit applies to it, and the flag set
    /// when it goes over.
    pub(crate) fn limit_body(&self, body: ProxyBody) -> (ProxyBody, Option<Arc<AtomicBool>>) {
        use http_body::Body as _;
        match self.body_limit {
            Some(limit) if !body.is_end_stream() => {
                let crossed = Arc::new(AtomicBool::new(false));
                let limited = body_limit::LimitedBody::new(body, limit, Arc::clone(&crossed));
                (crate::body::boxed(limited), Some(crossed))
            }
            _ => (body, None),
        }
    }

    /// The full stack's answer, once the request has been forwarded: 413 if its body went
    /// over the limit before the replica answered; else the replica's response with the
    /// headers the checks asked for, and a body that holds the in-flight places until it
    /// is done.
    pub(crate) fn finish(
        self,
        result: Result<Response<ProxyBody>, ProxyError>,
        crossed: Option<&AtomicBool>,
        version: Version,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        match result {
            Err(_) if crossed.is_some_and(|c| c.load(Ordering::Acquire)) => {
                let limit = self.body_limit.unwrap_or_default();
                let mut early = body_too_large(limit);
                let mut headers = self.response_headers;
                headers.append(&mut early.headers);
                early.headers = headers;
                Ok(early.into_response(version))
            }
            Err(e) => Err(e),
            Ok(mut resp) => {
                add_response_headers(resp.headers_mut(), &self.response_headers);
                if self.guards.is_empty() {
                    Ok(resp)
                } else {
                    let guards = self.guards;
                    Ok(resp.map(|b| crate::body::boxed(body_limit::HeldBody::new(b, guards))))
                }
            }
        }
    }
}

/// 413: the request body is over `limit`; the connection is closed after it (HTTP/1), as
/// the rest of the body is not read.
fn body_too_large(limit: u64) -> Early {
    let mut early = Early::refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        format!("the request body is larger than {limit} bytes").into(),
    );
    early.close = true;
    early
}

impl Edge {
    pub(crate) fn new(middlewares: &[Middleware]) -> Edge {
        let steps: Vec<Step> = middlewares
            .iter()
            .filter_map(|m| {
                Some(match m {
                    Middleware::RateLimit(d) => Step::RateLimit(Arc::new(RateLimiter::new(d))),
                    Middleware::InFlightReq(d) => Step::InFlight(Arc::new(InFlightLimiter::new(d))),
                    Middleware::BasicAuth(d) => Step::BasicAuth(Arc::new(Authenticator::new(d))),
                    Middleware::IpAllowList(d) => Step::IpAllowList(d.clone()),
                    Middleware::RedirectScheme(d) => Step::RedirectScheme(d.clone()),
                    Middleware::RedirectRegex(d) => Step::RedirectRegex(d.clone()),
                    Middleware::Buffering(d) => Step::BodyLimit(d.max_request_body_bytes),
                    Middleware::Cors(d) => Step::Cors(Box::new(CorsPolicy::new(d))),
                    Middleware::StripPrefix(_)
                    | Middleware::AddPrefix(_)
                    | Middleware::Headers(_)
                    | Middleware::ReplacePathRegex(_)
                    | Middleware::Compress(_) => return None,
                })
            })
            .collect();
        let body_limit = steps
            .iter()
            .filter_map(|s| match s {
                Step::BodyLimit(n) => Some(*n),
                _ => None,
            })
            .min();
        Edge { steps, body_limit }
    }

    /// No checks: the hooks skip [`Edge::admit`] (and its future) altogether.
    pub(crate) fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The smallest request body limit of the route, if it has one.
    pub(crate) fn body_limit(&self) -> Option<u64> {
        self.body_limit
    }

    /// [`Edge::admit`], skipped altogether (with its future) for a route without checks:
    /// what the gateway's hooks call.
    pub(crate) async fn check(
        &self,
        parts: &mut Parts,
        client: Client<'_>,
    ) -> Result<Admitted, Early> {
        if self.is_empty() {
            Ok(Admitted::default())
        } else {
            self.admit(parts, client).await
        }
    }

    /// Run the checks in order. The first that answers wins (with the response headers the
    /// checks before it asked for); otherwise the request goes on, with what the checks
    /// hold for it. May wait for a password hash to be verified.
    pub(crate) async fn admit(
        &self,
        parts: &mut Parts,
        client: Client<'_>,
    ) -> Result<Admitted, Early> {
        let mut admitted = Admitted::default();
        for step in &self.steps {
            if let Err(mut early) = self.step(step, parts, client, &mut admitted).await {
                let mut headers = std::mem::take(&mut admitted.response_headers);
                headers.append(&mut early.headers);
                early.headers = headers;
                return Err(early);
            }
        }
        Ok(admitted)
    }

    async fn step(
        &self,
        step: &Step,
        parts: &mut Parts,
        client: Client<'_>,
        admitted: &mut Admitted,
    ) -> Result<(), Early> {
        match step {
            Step::RateLimit(limiter) => match limiter.check(parts, client.peer) {
                Decision::Allowed => Ok(()),
                Decision::Limited { retry_after, reset } => {
                    Err(rate_limited(limiter.burst(), retry_after, reset))
                }
            },
            Step::InFlight(limiter) => match limiter.acquire(parts, client.peer) {
                Some(guard) => {
                    admitted.guards.push(guard);
                    Ok(())
                }
                None => Err(Early::refusal(
                    StatusCode::TOO_MANY_REQUESTS,
                    "in-flight-limit",
                    "too many requests in flight".into(),
                )),
            },
            // Boxed: a password check is rare next to the other checks and costs
            // milliseconds; its future would make every route's checks larger.
            Step::BasicAuth(auth) => match Box::pin(auth.authenticate(&parts.headers)).await {
                Some(user) => {
                    if auth.header_field.is_some()
                        && let Ok(v) = HeaderValue::try_from(user)
                    {
                        parts.extensions.insert(AuthenticatedUser(v));
                    }
                    Ok(())
                }
                None => {
                    let mut early = Early::refusal(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "valid credentials are required".into(),
                    );
                    early
                        .headers
                        .push((header::WWW_AUTHENTICATE, auth.challenge()));
                    Err(early)
                }
            },
            Step::IpAllowList(list) => {
                let allowed = ip::client_ip(&parts.headers, client.peer, list.depth)
                    .is_ok_and(|ip| list.source_range.iter().any(|r| ip::contains(r, ip)));
                if allowed {
                    Ok(())
                } else {
                    Err(Early::refusal(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "the client address is not allowed".into(),
                    ))
                }
            }
            Step::RedirectScheme(def) => {
                let host = client.host.and_then(|h| h.to_str().ok()).unwrap_or("");
                let pq = path_and_query(parts);
                match redirect::scheme_location(def, client.tls, host, pq) {
                    None => Ok(()),
                    Some(location) => Err(redirect_to(def.permanent, location)),
                }
            }
            Step::RedirectRegex(def) => {
                let host = client.host.and_then(|h| h.to_str().ok()).unwrap_or("");
                let url = format!(
                    "{}://{host}{}",
                    redirect::scheme(client.tls),
                    path_and_query(parts)
                );
                match redirect::regex_location(def, &url) {
                    None => Ok(()),
                    Some(location) => Err(Early::empty(
                        redirect::status(def.permanent),
                        vec![(header::LOCATION, location)],
                    )),
                }
            }
            Step::BodyLimit(limit) => {
                let length = parts
                    .headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                match length {
                    Some(n) if n > *limit => Err(body_too_large(*limit)),
                    Some(_) => Ok(()),
                    None => {
                        admitted.body_limit =
                            Some(admitted.body_limit.map_or(*limit, |l| l.min(*limit)));
                        Ok(())
                    }
                }
            }
            Step::Cors(policy) => match policy.handle(parts) {
                cors::Outcome::Preflight(early) => Err(early),
                cors::Outcome::Forward(mut headers) => {
                    admitted.response_headers.append(&mut headers);
                    Ok(())
                }
            },
        }
    }
}

/// The request's path and query as the client sent it.
fn path_and_query(parts: &Parts) -> &str {
    parts.uri.path_and_query().map_or("/", |pq| pq.as_str())
}

/// A redirect to `location` (not a valid header value: not redirected, the client's
/// request goes on — cannot happen for a location made of a valid Host and target).
fn redirect_to(permanent: bool, location: String) -> Early {
    match HeaderValue::try_from(location) {
        Ok(v) => Early::empty(redirect::status(permanent), vec![(header::LOCATION, v)]),
        Err(_) => Early::refusal(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "the request's host cannot be redirected to".into(),
        ),
    }
}

/// Whole seconds, rounded up (`Retry-After` is delay-seconds, RFC 9110 §10.2.3).
fn ceil_secs(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// 429 from `rate_limit`: `Retry-After` (RFC 9110 §10.2.3, RFC 6585 §4) and the
/// `RateLimit-Limit`, `-Remaining` and `-Reset` fields of draft-ietf-httpapi-ratelimit-headers.
fn rate_limited(burst: u64, retry_after: std::time::Duration, reset: std::time::Duration) -> Early {
    let mut early = Early {
        status: StatusCode::TOO_MANY_REQUESTS,
        headers: Vec::with_capacity(5),
        body: Cow::Borrowed("429 Too Many Requests: rate limit exceeded\n"),
        close: false,
    };
    early.headers.push((
        HeaderName::from_static("x-shoal-error"),
        HeaderValue::from_static("rate-limited"),
    ));
    early.headers.extend([
        (
            header::RETRY_AFTER,
            HeaderValue::from(ceil_secs(retry_after).max(1)),
        ),
        (
            HeaderName::from_static("ratelimit-limit"),
            HeaderValue::from(burst),
        ),
        (
            HeaderName::from_static("ratelimit-remaining"),
            HeaderValue::from(0u64),
        ),
        (
            HeaderName::from_static("ratelimit-reset"),
            HeaderValue::from(ceil_secs(reset).max(1)),
        ),
    ]);
    early
}

/// A route's checks driven by hand, for the benchmarks in `benches/` (not an API).
#[doc(hidden)]
pub(crate) mod bench {
    use std::future::Future;
    use std::net::IpAddr;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use http::request::Parts;
    use shoal_config::{ClientKey, Middleware, RateLimit};

    use super::{Admitted, Client, Edge};

    /// The checks of a route with the given middlewares.
    #[derive(Debug)]
    pub struct EdgeProbe {
        edge: Edge,
    }

    impl EdgeProbe {
        /// A route with no checks at all (the baseline).
        pub fn none() -> EdgeProbe {
            EdgeProbe {
                edge: Edge::new(&[]),
            }
        }

        /// A route with one `rate_limit` keyed by client IP (`depth` trusted proxies).
        pub fn rate_limit(average: u64, period: Duration, burst: u64, depth: usize) -> EdgeProbe {
            EdgeProbe {
                edge: Edge::new(&[Middleware::RateLimit(RateLimit {
                    average,
                    period,
                    burst,
                    key: ClientKey::Ip { depth },
                    max_keys: 1_000_000,
                })]),
            }
        }

        /// Run the checks on a request from `peer`; whether it was let through. Only for
        /// checks that never wait (not `basic_auth`).
        pub fn admit(&self, parts: &mut Parts, peer: IpAddr) -> bool {
            if self.edge.is_empty() {
                // What the gateway's hooks do for a route without checks.
                return std::hint::black_box(Admitted::default()).guards.is_empty();
            }
            let client = Client {
                peer,
                tls: false,
                host: None,
            };
            let fut = std::pin::pin!(self.edge.admit(parts, client));
            match fut.poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(result) => result.is_ok(),
                Poll::Pending => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(prefixes: &[&str], path: &str) -> (String, Option<String>) {
        let mut p = path.to_owned();
        let mut h = HeaderMap::new();
        let m = [Middleware::StripPrefix(
            prefixes.iter().map(|s| s.to_string()).collect(),
        )];
        apply_request(&m, &mut p, &mut h, &Extensions::new());
        (
            p,
            h.get("x-forwarded-prefix")
                .map(|v| v.to_str().unwrap().to_owned()),
        )
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash_and_sets_forwarded_prefix() {
        assert_eq!(
            strip(&["/api/users"], "/api/users/42"),
            ("/42".into(), Some("/api/users".into()))
        );
        assert_eq!(
            strip(&["/api/users"], "/api/users"),
            ("/".into(), Some("/api/users".into()))
        );
        assert_eq!(
            strip(&["/api"], "/apix"),
            ("/x".into(), Some("/api".into()))
        );
        assert_eq!(strip(&["/api"], "/other"), ("/other".into(), None));
    }

    #[test]
    fn add_prefix_and_chained_strip() {
        let mut p = "/api/users/1".to_owned();
        let mut h = HeaderMap::new();
        let m = [
            Middleware::StripPrefix(vec!["/api".into()]),
            Middleware::StripPrefix(vec!["/users".into()]),
            Middleware::AddPrefix("/v1".into()),
        ];
        apply_request(&m, &mut p, &mut h, &Extensions::new());
        assert_eq!(p, "/v1/1");
        assert_eq!(h["x-forwarded-prefix"], "/api/users");
    }

    fn pattern(re: &str) -> shoal_config::Pattern {
        shoal_config::Pattern {
            source: re.into(),
            regex: regex::Regex::new(re).unwrap(),
        }
    }

    #[test]
    fn replace_path_regex_rewrites_and_sends_the_original_path() {
        let m = [Middleware::ReplacePathRegex(
            shoal_config::ReplacePathRegex {
                regex: pattern("^/api/v1/(.*)"),
                replacement: "/v2/$1".into(),
            },
        )];
        let mut p = "/api/v1/users/7".to_owned();
        let mut h = HeaderMap::new();
        h.insert("x-replaced-path", HeaderValue::from_static("/spoofed"));
        apply_request(&m, &mut p, &mut h, &Extensions::new());
        assert_eq!(p, "/v2/users/7");
        assert_eq!(h["x-replaced-path"], "/api/v1/users/7");
        // No match: the path stays, and a client's X-Replaced-Path does not go upstream.
        let mut p = "/other".to_owned();
        let mut h = HeaderMap::new();
        h.insert("x-replaced-path", HeaderValue::from_static("/spoofed"));
        apply_request(&m, &mut p, &mut h, &Extensions::new());
        assert_eq!(p, "/other");
        assert!(h.get("x-replaced-path").is_none());
        assert!(rewrites_path(&m));
        assert!(!rewrites_path(&[Middleware::Buffering(
            shoal_config::Buffering {
                max_request_body_bytes: 1
            }
        )]));
    }

    #[test]
    fn basic_auth_header_edits() {
        let m = [Middleware::BasicAuth(shoal_config::BasicAuth {
            users: vec![],
            realm: "r".into(),
            remove_header: true,
            header_field: Some(HeaderName::from_static("x-auth-user")),
        })];
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eDp5"),
        );
        h.insert("x-auth-user", HeaderValue::from_static("spoofed"));
        let mut ext = Extensions::new();
        ext.insert(AuthenticatedUser(HeaderValue::from_static("alice")));
        apply_request(&m, &mut String::new(), &mut h, &ext);
        assert!(h.get(header::AUTHORIZATION).is_none());
        assert_eq!(h["x-auth-user"], "alice");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        use std::time::Duration;
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
        let early = rate_limited(5, Duration::from_millis(100), Duration::from_millis(2500));
        let get = |n: &str| {
            early
                .headers
                .iter()
                .find(|(h, _)| h == n)
                .map(|(_, v)| v.to_str().unwrap().to_owned())
        };
        assert_eq!(early.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(get("retry-after").as_deref(), Some("1"));
        assert_eq!(get("ratelimit-limit").as_deref(), Some("5"));
        assert_eq!(get("ratelimit-remaining").as_deref(), Some("0"));
        assert_eq!(get("ratelimit-reset").as_deref(), Some("3"));
    }

    #[test]
    fn early_answers_on_the_wire() {
        let mut out = BytesMut::new();
        Early::empty(
            StatusCode::PERMANENT_REDIRECT,
            vec![(header::LOCATION, HeaderValue::from_static("https://h/"))],
        )
        .write_http1(&mut out, false, false);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 308 Permanent Redirect\r\nlocation: https://h/\r\ncontent-length: 0\r\n\r\n"
        );
        let mut out = BytesMut::new();
        Early::empty(StatusCode::NO_CONTENT, vec![]).write_http1(&mut out, true, false);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"
        );
        let mut out = BytesMut::new();
        let refusal = body_too_large(10);
        refusal.write_http1(&mut out, false, true);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
            "{text}"
        );
        assert!(text.contains("x-shoal-error: body-too-large\r\n"));
        assert!(text.contains("connection: close\r\n"));
        // HEAD: the length of what GET would get, no body.
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        assert!(text.contains(&format!("content-length: {}\r\n", refusal.body.len())));
    }

    #[tokio::test]
    async fn the_first_check_to_answer_wins_with_the_earlier_headers() {
        let cors = Middleware::Cors(shoal_config::Cors {
            allow_origins: vec!["https://app.test".into()],
            allow_methods: vec![http::Method::GET],
            allow_headers: vec![],
            expose_headers: vec![],
            allow_credentials: false,
            max_age: None,
        });
        let deny = Middleware::IpAllowList(shoal_config::IpAllowList {
            source_range: vec![shoal_config::IpRange {
                addr: "192.0.2.0".parse().unwrap(),
                prefix: 24,
            }],
            depth: 0,
        });
        let limit = Middleware::Buffering(shoal_config::Buffering {
            max_request_body_bytes: 3,
        });
        let edge = Edge::new(&[cors, deny, limit]);
        assert_eq!(edge.body_limit(), Some(3));
        let mut parts = http::Request::builder()
            .uri("/x")
            .header("origin", "https://app.test")
            .header("content-length", "10")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let client = Client {
            peer: "10.0.0.1".parse().unwrap(),
            tls: false,
            host: None,
        };
        let early = edge.admit(&mut parts, client).await.unwrap_err();
        assert_eq!(early.status, StatusCode::FORBIDDEN);
        let names: Vec<&str> = early.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["access-control-allow-origin", "vary", "x-shoal-error"]
        );
        // From an allowed address, the next check answers.
        let client = Client {
            peer: "192.0.2.9".parse().unwrap(),
            ..client
        };
        let early = edge.admit(&mut parts, client).await.unwrap_err();
        assert_eq!(early.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(early.close);
        parts.headers.remove("content-length");
        let admitted = edge.admit(&mut parts, client).await.unwrap();
        assert_eq!(admitted.body_limit, Some(3));
        assert_eq!(admitted.response_headers.len(), 2);
    }
}
