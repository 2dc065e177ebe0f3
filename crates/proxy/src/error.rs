//! Every way a proxied request can fail, classified by origin, and the one place where a
//! failure becomes an HTTP response.
//!
//! The client never sees a hang or a dropped connection for a failure we can describe: no
//! route → 404, no ready replica → 503, the replica failed → 502, the replica was too slow →
//! 504. Bodies are short and say which service was involved, never internal addresses.
//! gRPC calls get the same failures as gRPC statuses instead (`crate::grpc`: a trailers-only
//! answer, HTTP 200 with `grpc-status`).
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{ProxyBody, full};

/// A request head that took longer than `gateway.timeouts.header_read`.
pub(crate) const SLOW_HEAD: &str = "the request head took longer than gateway.timeouts.header_read";
/// A request body that paused longer than `gateway.timeouts.body_idle`.
pub(crate) const SLOW_BODY: &str = "the request body paused longer than gateway.timeouts.body_idle";

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route matched the request (client's side).
    #[error("no route matches this request")]
    NoRoute,
    /// The route's service has no ready replica.
    #[error("no ready replica for service `{0}`")]
    NoEndpoint(String),
    /// The service has replicas, but every one is out of rotation (failing its health
    /// check, or ejected).
    #[error("no healthy replica for service `{0}`")]
    NoHealthy(String),
    /// The service was at zero replicas and did not get one in time (or too many requests
    /// were already waiting for it).
    #[error("service `{service}` is starting: {why}")]
    NotStarted {
        /// Service name.
        service: String,
        /// Why the request was not let through.
        why: String,
    },
    /// The service's circuit breaker is open.
    #[error("service `{service}` is failing; its circuit breaker is open")]
    CircuitOpen {
        /// Service name.
        service: String,
        /// Seconds until trial requests are let through.
        retry_after_secs: u64,
    },
    /// Connecting to the replica failed (nothing was sent: safe to retry elsewhere).
    #[error("could not connect to a replica of service `{service}`")]
    Connect {
        /// Service name.
        service: String,
        /// Underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The TLS handshake with the replicas failed (a certificate that does not verify, a
    /// replica that does not speak TLS); nothing was sent. `why` is the operator's answer.
    #[error("TLS to the replicas of service `{service}` failed: {why}")]
    UpstreamTls {
        /// Service name.
        service: String,
        /// What went wrong (e.g. the certificate is not valid for the name verified).
        why: String,
    },
    /// The replica failed after the request was sent (reset, malformed response).
    #[error("a replica of service `{service}` failed to respond")]
    Upstream {
        /// Service name.
        service: String,
        /// Underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The replica did not send response headers within the configured timeout.
    #[error("a replica of service `{0}` did not respond in time")]
    Timeout(String),
    /// A gRPC call's own deadline (`grpc-timeout`) passed before a replica answered: the
    /// client's limit, not the replica's failure.
    #[error("the call's deadline passed before a replica of service `{0}` answered")]
    DeadlineExceeded(String),
    /// The request itself is malformed for proxying (e.g. an invalid path after rewriting).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The client broke the protocol's rules (RFC 9112: framing, Host, limits) or was too
    /// slow sending its request: 400, 408, 431 or 501, and its connection is closed, since
    /// where its next request starts cannot be trusted. No replica saw the request.
    #[error("{why}")]
    Rejected {
        /// 400, 408, 431 or 501.
        status: StatusCode,
        /// The rule broken.
        why: std::borrow::Cow<'static, str>,
    },
}

impl ProxyError {
    /// The status this failure maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoEndpoint(_)
            | ProxyError::NoHealthy(_)
            | ProxyError::NotStarted { .. }
            | ProxyError::CircuitOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect { .. }
            | ProxyError::UpstreamTls { .. }
            | ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout(_) | ProxyError::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::Rejected { status, .. } => *status,
        }
    }

    /// A short machine-readable reason, sent as `X-Shoal-Error`.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no-route",
            ProxyError::NoEndpoint(_) => "no-ready-replica",
            ProxyError::NoHealthy(_) => "no-healthy-replica",
            ProxyError::NotStarted { .. } => "not-started",
            ProxyError::CircuitOpen { .. } => "circuit-open",
            ProxyError::Connect { .. } => "connect-failed",
            ProxyError::UpstreamTls { .. } => "upstream-tls-failed",
            ProxyError::Upstream { .. } => "upstream-failed",
            ProxyError::Timeout(_) => "upstream-timeout",
            ProxyError::DeadlineExceeded(_) => "deadline-exceeded",
            ProxyError::BadRequest(_) => "bad-request",
            ProxyError::Rejected { status, .. } => match status.as_u16() {
                408 => "request-timeout",
                431 => "head-too-large",
                501 => "not-implemented",
                _ => "bad-request",
            },
        }
    }

    /// The body the client gets: status and what went wrong, in one line.
    pub(crate) fn body_text(&self) -> String {
        let status = self.status();
        format!(
            "{} {}: {self}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
    }

    /// The `Retry-After` seconds sent with this failure, if any: the breaker's wait, or 1 s
    /// for other 503s.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        match self {
            ProxyError::CircuitOpen {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => Some(1),
            _ => None,
        }
    }

    /// The response an HTTP client gets (gRPC calls get theirs from `crate::grpc`).
    pub fn into_response(self) -> Response<ProxyBody> {
        let mut resp = Response::new(full(self.body_text()));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert("x-shoal-error", HeaderValue::from_static(self.reason()));
        if let Some(secs) = self.retry_after() {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.closes_connection() {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    /// 408: the client took too long; `why` names the timeout ([`SLOW_HEAD`], [`SLOW_BODY`]).
    pub(crate) fn client_too_slow(why: &'static str) -> ProxyError {
        ProxyError::Rejected {
            status: StatusCode::REQUEST_TIMEOUT,
            why: why.into(),
        }
    }

    /// Whether the client's connection must be closed after this answer: its framing
    /// cannot be trusted for another request.
    pub(crate) fn closes_connection(&self) -> bool {
        matches!(self, ProxyError::Rejected { .. })
    }
}
