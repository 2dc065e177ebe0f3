//! Sending one request to a service: the first try, and the retries and hedges that make a
//! failing or hung replica invisible to the client.
//!
//! # What is tried again, and when
//!
//! * **Nothing was sent** — the connect was refused or timed out, or a pooled connection
//!   turned out closed before our request was written: the request is sent again, on
//!   another replica after a connect failure, for *any* method. This needs no budget: no
//!   replica saw the request.
//! * **Sent, then it failed** — the connection broke before response headers, or the
//!   replica answered one of `on_status` (502, 503, 504 by default): an *idempotent* request
//!   (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, or any request with an `Idempotency-Key`
//!   header) whose body we still have is sent to a replica not tried yet.
//! * **Slow** — no response headers after the per-try timeout: an idempotent request is also
//!   sent to another replica (a *hedge*); the first try keeps running and the first
//!   answer wins. With the automatic per-try timeout (4 × the service's recent p99, 100 ms
//!   to 2 s) a hung replica costs a client about 100 ms instead of a timeout.
//!
//! Retries and hedges after sending draw on the service's retry budget (a share of its
//! requests), so they cannot multiply the load on a service that is failing as a whole.
//! At most `attempts` tries are made per request (connect failures aside, which try each
//! replica at most once). Request bodies are kept for replay when their `Content-Length`
//! is at most `max_replay_body`; a streamed (chunked) body can only be sent once.
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, Uri, Version, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use shoal_balance::{Backend, Pick};
use shoal_config::{PerTryTimeout, Retry};
use tokio::time::Instant;

use crate::body::{BoxError, ProxyBody};
use crate::error::ProxyError;
use crate::gateway::pick_backend;
use crate::health::{Outcome, ms_at};
use crate::table::ServiceHandle;
use crate::upstream::{Conn, ConnectError, Upstreams};

/// A response with the pick that served it and its HTTP/1.1 connection to give back.
pub(crate) struct Answer {
    pub(crate) pick: Pick,
    pub(crate) response: Response<Incoming>,
    pub(crate) h1: Option<http1::SendRequest<ProxyBody>>,
}

/// Methods that may be sent twice (RFC 9110 §9.2.2).
fn idempotent_method(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether a request may be sent again after a replica may have seen it.
pub(crate) fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    idempotent_method(method) || headers.contains_key("idempotency-key")
}

/// The request body, as far as sending it again goes.
enum Replay {
    /// Known in full (empty, or read ahead because it is small): every try gets a copy.
    Full(Bytes),
    /// Streamed: sent by one try only. It is here until a try takes it.
    Once(Option<ProxyBody>),
}

/// Everything of the request but its body and URI, to build each try from.
struct Template {
    method: Method,
    version: Version,
    /// `None` once moved into the only try that will ever be sent.
    headers: Option<HeaderMap>,
    path_and_query: PathAndQuery,
    h2c: bool,
}

/// How a try failed.
enum TryError {
    /// No connection could be had: nothing was sent. The request comes back.
    Connect(ConnectError, Request<ProxyBody>),
    /// The pooled connection closed before the request was written. It comes back.
    Unsent(Request<ProxyBody>),
    /// The request was (perhaps partly) sent, then the connection failed.
    Sent(hyper::Error),
}

type TryResult = Result<(Response<Incoming>, Option<http1::SendRequest<ProxyBody>>), TryError>;

/// One try on one backend.
async fn run_try(
    upstreams: Arc<Upstreams>,
    pick: Pick,
    h2c: bool,
    mut req: Request<ProxyBody>,
    started: Instant,
) -> (Pick, Instant, TryResult) {
    let backend = Arc::clone(pick.backend());
    let conn = match upstreams.checkout(backend.addr(), h2c).await {
        Ok(conn) => conn,
        Err(e) => return (pick, started, Err(TryError::Connect(e, req))),
    };
    if h2c {
        // HTTP/2 needs the scheme and authority as pseudo-headers: the absolute form.
        let pq = req.uri().path_and_query().cloned();
        if let Ok(uri) = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(backend.addr())
            .path_and_query(pq.unwrap_or_else(|| PathAndQuery::from_static("/")))
            .build()
        {
            *req.uri_mut() = uri;
        }
    }
    let result = match conn {
        Conn::H1(mut sender) => match sender.try_send_request(req).await {
            Ok(resp) => Ok((resp, Some(sender))),
            Err(mut e) => Err(match e.take_message() {
                Some(req) => TryError::Unsent(req),
                None => TryError::Sent(e.into_error()),
            }),
        },
        Conn::H2(mut sender) => match sender.try_send_request(req).await {
            Ok(resp) => Ok((resp, None)),
            Err(mut e) => Err(match e.take_message() {
                Some(req) => TryError::Unsent(req),
                None => TryError::Sent(e.into_error()),
            }),
        },
    };
    (pick, started, result)
}

/// What the gateway knows of a request when it starts sending it.
pub(crate) struct Outbound<'a> {
    pub(crate) upstreams: &'a Arc<Upstreams>,
    pub(crate) service: &'a ServiceHandle,
    pub(crate) retry: &'a Retry,
    /// Sending may only start once (an upgrade, or the caller says so).
    pub(crate) once: bool,
    /// Overall bound on waiting for response headers.
    pub(crate) response_header_timeout: Duration,
    /// The client, for hashing on its address.
    pub(crate) client_ip: IpAddr,
}

impl Outbound<'_> {
    /// Send the request, trying again as the module docs say; the first usable answer.
    pub(crate) async fn run(
        self,
        method: Method,
        version: Version,
        headers: HeaderMap,
        path_and_query: PathAndQuery,
        body: ProxyBody,
    ) -> Result<Answer, ProxyError> {
        let service = self.service;
        let retry = self.retry;
        let start = Instant::now();
        let idempotent = !self.once && (retry.non_idempotent || is_idempotent(&method, &headers));
        let may_resend = idempotent && retry.attempts > 1;
        let replay = if body.is_end_stream() {
            Replay::Full(Bytes::new())
        } else if may_resend && content_length(&headers).is_some_and(|n| n <= retry.max_replay_body)
        {
            Replay::Full(read_small_body(body, retry.max_replay_body).await?)
        } else {
            Replay::Once(Some(body))
        };
        let resend_after_send = may_resend && matches!(replay, Replay::Full(_));
        let per_try = match retry.per_try_timeout {
            _ if !resend_after_send => None,
            PerTryTimeout::Auto => Some(service.latency.auto_per_try_timeout(start)),
            PerTryTimeout::Fixed(d) => Some(d),
            PerTryTimeout::Off => None,
        };
        let mut state = Tries {
            send: &self,
            template: Template {
                method,
                version,
                headers: Some(headers),
                path_and_query,
                h2c: service.protocol() == shoal_config::Protocol::H2c,
            },
            replay,
            resend_after_send,
            tried: Vec::new(),
            started: 0,
            last_error: None,
            in_flight: Vec::with_capacity(1),
            latest: None,
            fallback: None,
        };
        let deadline = start + self.response_header_timeout;
        let first = state
            .next_request()
            .expect("the first try always has its request");
        state.launch(first)?;
        // One timer at a time (the hedge or the deadline, whichever comes first): timers
        // are a noticeable part of a request's cost.
        let timer = tokio::time::sleep_until(deadline);
        tokio::pin!(timer);
        loop {
            let hedge_at = match (per_try, &state.latest) {
                (Some(d), Some((_, at))) if state.started < retry.attempts => Some(*at + d),
                _ => None,
            };
            let wake_at = hedge_at.map_or(deadline, |h| h.min(deadline));
            if timer.deadline() != wake_at {
                timer.as_mut().reset(wake_at);
            }
            tokio::select! {
                biased;
                (pick, sent, result) = state.next_settled() => {
                    if let Some(answer) = state.settle(pick, sent, result)? {
                        return Ok(answer);
                    }
                }
                () = &mut timer => {
                    if Instant::now() < deadline {
                        state.hedge(per_try.unwrap_or_default());
                    } else {
                        // The try still waiting counts as a failure of its replica.
                        if let Some((backend, _)) = state.latest.take() {
                            let reason = format!("no response headers within {}ms", self.response_header_timeout.as_millis());
                            service.health.observe(&service.balancer, &backend, Outcome::Failed(reason));
                        }
                        return Err(ProxyError::Timeout(service.name.to_string()));
                    }
                }
            }
            if state.in_flight.is_empty() {
                if let Some(answer) = state.fallback.take() {
                    return Ok(answer);
                }
                return Err(state
                    .last_error
                    .take()
                    .unwrap_or_else(|| no_replica(service)));
            }
        }
    }
}

/// The tries of one request.
struct Tries<'s, 'a> {
    send: &'s Outbound<'a>,
    template: Template,
    replay: Replay,
    /// The request may be sent again after a replica saw it.
    resend_after_send: bool,
    /// Keys of backends tried (excluded from later picks).
    tried: Vec<Arc<str>>,
    /// Tries started.
    started: u32,
    last_error: Option<ProxyError>,
    /// Tries running (usually one; a hedge adds one). Polled in turn by `next_settled`.
    in_flight: Vec<BoxFuture<'static, (Pick, Instant, TryResult)>>,
    /// The backend and start of the latest try: the one a hedge would back up.
    latest: Option<(Arc<Backend>, Instant)>,
    /// A retryable answer (e.g. a 503) kept in case no other try does better.
    fallback: Option<Answer>,
}

impl<'a> Tries<'_, 'a> {
    /// The next try to finish, removed from `in_flight`. Pending forever if none runs.
    async fn next_settled(&mut self) -> (Pick, Instant, TryResult) {
        std::future::poll_fn(|cx| {
            for i in 0..self.in_flight.len() {
                if let Poll::Ready(out) = self.in_flight[i].as_mut().poll(cx) {
                    drop(self.in_flight.swap_remove(i));
                    return Poll::Ready(out);
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Start a try of `req` on a backend not tried yet. `Err` when there is none and no
    /// other try is running.
    fn launch(&mut self, req: Request<ProxyBody>) -> Result<(), ProxyError> {
        let service = self.send.service;
        let pick = {
            let exclude: Vec<&str> = self.tried.iter().map(|k| &**k).collect();
            pick_backend(service, req.headers(), self.send.client_ip, &exclude)
        };
        match pick {
            Some(pick) => {
                self.launch_on(pick, req);
                Ok(())
            }
            None if self.in_flight.is_empty() => Err(self
                .last_error
                .take()
                .unwrap_or_else(|| no_replica(service))),
            None => Ok(()),
        }
    }

    fn launch_on(&mut self, pick: Pick, req: Request<ProxyBody>) {
        self.started += 1;
        self.tried.push(Arc::clone(pick.backend().key_shared()));
        let now = Instant::now();
        self.latest = Some((Arc::clone(pick.backend()), now));
        let upstreams = Arc::clone(self.send.upstreams);
        let h2c = self.template.h2c;
        self.in_flight
            .push(Box::pin(run_try(upstreams, pick, h2c, req, now)));
    }

    /// A try finished. `Ok(Some)`: the answer for the client. `Ok(None)`: keep waiting
    /// (another try runs or was started). `Err`: the client's error.
    fn settle(
        &mut self,
        pick: Pick,
        sent: Instant,
        result: TryResult,
    ) -> Result<Option<Answer>, ProxyError> {
        let service = self.send.service;
        let retry = self.send.retry;
        let backend = Arc::clone(pick.backend());
        if self
            .latest
            .as_ref()
            .is_some_and(|(b, _)| Arc::ptr_eq(b, &backend))
        {
            self.latest = None;
        }
        match result {
            Ok((response, h1)) => {
                let status = response.status().as_u16();
                let now = Instant::now();
                service
                    .latency
                    .record(now, now.saturating_duration_since(sent));
                let at_ms = ms_at(now);
                service.health.observe(
                    &service.balancer,
                    &backend,
                    Outcome::Answered { status, at_ms },
                );
                let answer = Answer { pick, response, h1 };
                if !(self.resend_after_send && retry.on_status.contains(&status)) {
                    return Ok(Some(answer));
                }
                // Worth another try: keep this answer in case nothing better comes.
                self.fallback = Some(answer);
                if !self.in_flight.is_empty() {
                    return Ok(None);
                }
                if self.started < retry.attempts && self.spend_budget() {
                    service
                        .health
                        .counters
                        .retries
                        .fetch_add(1, Ordering::Relaxed);
                    if let Some(req) = self.next_request() {
                        // No replica left to try: the fallback is the answer.
                        let _ = self.launch(req);
                    }
                }
                Ok(None)
            }
            Err(TryError::Connect(e, req)) => {
                tracing::debug!(service = %service.name, replica = backend.key(), error = %e, "connect failed");
                service.health.observe(
                    &service.balancer,
                    &backend,
                    Outcome::Refused(e.to_string()),
                );
                self.last_error = Some(match e {
                    ConnectError::Timeout(_) => ProxyError::Timeout(service.name.to_string()),
                    e => ProxyError::Connect {
                        service: service.name.to_string(),
                        source: Box::new(e),
                    },
                });
                drop(pick);
                // Nothing was sent: any method goes to the next replica, each tried once.
                self.launch(req).map(|()| None)
            }
            Err(TryError::Unsent(req)) => {
                // A pooled connection the replica had closed: send again on a fresh one,
                // to the same replica (it did not fail us).
                self.launch_on(pick, req);
                Ok(None)
            }
            Err(TryError::Sent(e)) => {
                tracing::debug!(service = %service.name, replica = backend.key(), error = %e, "upstream failed");
                service
                    .health
                    .observe(&service.balancer, &backend, Outcome::Failed(e.to_string()));
                self.last_error = Some(ProxyError::Upstream {
                    service: service.name.to_string(),
                    source: Box::new(e),
                });
                drop(pick);
                if self.resend_after_send
                    && self.started < retry.attempts
                    && self.in_flight.is_empty()
                    && self.spend_budget()
                {
                    service
                        .health
                        .counters
                        .retries
                        .fetch_add(1, Ordering::Relaxed);
                    if let Some(req) = self.next_request() {
                        return self.launch(req).map(|()| None);
                    }
                }
                Ok(None)
            }
        }
    }

    /// The latest try waited its per-try timeout: tell passive health, and send the
    /// request to another replica too if the budget allows.
    fn hedge(&mut self, waited: Duration) {
        let service = self.send.service;
        let Some((backend, at)) = self.latest.take() else {
            return;
        };
        let started_ms = ms_at(at);
        service.health.observe(
            &service.balancer,
            &backend,
            Outcome::Slow { started_ms, waited },
        );
        if !self.spend_budget() {
            return;
        }
        if let Some(req) = self.next_request() {
            service
                .health
                .counters
                .hedges
                .fetch_add(1, Ordering::Relaxed);
            // A hedge that finds no other replica just lets the first try run on.
            let _ = self.launch(req);
        }
    }

    /// Take one retry from the service's budget.
    fn spend_budget(&self) -> bool {
        self.send.service.budget.try_withdraw(Instant::now())
    }

    fn next_request(&mut self) -> Option<Request<ProxyBody>> {
        let body = match &mut self.replay {
            Replay::Full(bytes) => boxed_bytes(bytes.clone()),
            Replay::Once(body) => body.take()?,
        };
        let t = &mut self.template;
        let headers = if self.resend_after_send {
            t.headers.clone()?
        } else {
            t.headers.take()?
        };
        let mut req = Request::new(body);
        *req.method_mut() = t.method.clone();
        *req.version_mut() = t.version;
        *req.uri_mut() = Uri::from(t.path_and_query.clone());
        *req.headers_mut() = headers;
        Some(req)
    }
}

fn boxed_bytes(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| -> BoxError { match never {} })
        .boxed_unsync()
}

/// Read a body announced as at most `limit` bytes, to send it again if need be.
async fn read_small_body(mut body: ProxyBody, limit: u64) -> Result<Bytes, ProxyError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ProxyError::BadRequest(format!("could not read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limit {
                return Err(ProxyError::BadRequest(
                    "the request body is longer than its Content-Length".into(),
                ));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// 503: no replica at all, or none in rotation.
fn no_replica(service: &ServiceHandle) -> ProxyError {
    if service.balancer.backends().is_empty() {
        ProxyError::NoEndpoint(service.name.to_string())
    } else {
        ProxyError::NoHealthy(service.name.to_string())
    }
}
