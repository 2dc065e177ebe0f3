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
//! * **Provably not processed** (HTTP/2) — the replica reset the stream with
//!   `REFUSED_STREAM`, or its GOAWAY's last stream id is below the stream (RFC 9113 §8.7:
//!   both say it was not processed), or the connection failed before a byte of the
//!   request was written to it: the request is sent again on another replica (the same one,
//!   on a new connection, when no other is in rotation), for *any* method, gRPC calls
//!   (POSTs) included. This is a retry: it draws on the retry budget, counts in `attempts`
//!   and in the service's retries. To be able to, requests to HTTP/2 services keep their
//!   body (up to `max_replay_body`) whatever their method; a longer or streamed body is
//!   sent once, and retried only if it comes back unsent.
//! * **Slow** — no response headers after the per-try timeout: an idempotent request is also
//!   sent to another replica (a *hedge*); the first try keeps running and the first
//!   answer wins. With the automatic per-try timeout (4 × the route's recent p99, 100 ms
//!   to 2 s: `crate::latency`) a hung replica costs a client about 100 ms instead of a
//!   timeout, and a route slow by design is not hedged for it.
//!
//! Retries and hedges after sending draw on the service's retry budget (a share of its
//! requests), so they cannot multiply the load on a service that is failing as a whole.
//! At most `attempts` tries are made per request (connect failures and unsent requests
//! aside, which try each replica at most once). Request bodies are kept for replay when their `Content-Length`
//! is at most `max_replay_body`; a streamed (chunked) body can only be sent once.
//!
//! # The client's part
//!
//! A streamed body is the client's to send: while it is still coming, the response-header
//! timeout has not started (it counts from the end of the request, so a slow upload is not
//! a slow replica), and a pause longer than `body_idle` ends the request with 408. A body
//! the client gets wrong (malformed chunked framing) ends it with 400. Neither is tried
//! again nor counted against the replica: no replica failed.
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, Method, header};
use http_body_util::{BodyExt, Full};
use shoal_balance::{Backend, Pick, PickContext};
use shoal_config::{Balance, HashOn, PerTryTimeout, Retry};
use smallvec::SmallVec;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use crate::body::{BoxError, ProxyBody};
use crate::error::{ProxyError, SLOW_BODY};
use crate::health::{Outcome, ms_at};
use crate::latency::RouteLatency;
use crate::table::{RoutingTable, ServiceHandle, Target};
use crate::upstream::{ConnectError, Upstreams};

/// A response with the pick that served it.
pub(crate) struct Answer<R> {
    pub(crate) pick: Pick,
    pub(crate) response: R,
}

/// Methods that may be sent twice (RFC 9110 §9.2.2).
fn idempotent_method(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether a request may be sent again after a replica may have seen it: its method is
/// idempotent, it carries an `Idempotency-Key`, or the route retries any request.
pub(crate) fn is_idempotent(retry: &Retry, method: &Method, headers: &HeaderMap) -> bool {
    retry.non_idempotent || idempotent_method(method) || headers.contains_key("idempotency-key")
}

/// How a try failed.
pub(crate) enum TryError<R> {
    /// No connection could be had: nothing was sent. The request comes back.
    Connect(ConnectError, R),
    /// The pooled connection closed before the request was written. It comes back.
    Unsent(R),
    /// The request was (perhaps partly) sent, then the connection failed.
    Sent(BoxError),
    /// The replica provably did not process the request (RFC 9113 §8.7: `REFUSED_STREAM`,
    /// a stream above GOAWAY's last stream id, or a connection that failed before the
    /// request was written), but it is not in hand any more: a copy is sent again.
    Unprocessed {
        error: BoxError,
        /// The replica failed us (refused the stream, or its connection broke) rather than
        /// going away in order (GOAWAY): passive health hears of it.
        replica_failed: bool,
    },
}

/// One way of carrying a request to a replica (`crate::exchange`): hyper's client (any
/// protocol, streamed bodies) or the HTTP/1.1 relay's bytes (a body in hand).
pub(crate) trait Exchange {
    /// What one try sends.
    type Request: Send + 'static;
    /// What one try gets back: response head, body to come, connection.
    type Response: Send + 'static;
    /// The request for the next try; `None` when the only copy has been sent. Without
    /// `keep_copy` no later try will need the request, so it may be moved out.
    fn next_request(&mut self, keep_copy: bool) -> Option<Self::Request>;
    /// Whether a later try can have a copy (the body is held, or kept as it streams).
    fn replayable(&self) -> bool;
    /// Whether a hedge can run beside the first try: only a body held in full can go to
    /// two replicas at once (a kept stream belongs to one try at a time).
    fn hedgeable(&self) -> bool {
        self.replayable()
    }
    /// How the client's streamed body is going, if it is streamed.
    fn upload(&self) -> Option<&Arc<Upload>> {
        None
    }
    /// The response's status.
    fn status(response: &Self::Response) -> u16;
    /// Send `req` to `backend` and wait for its response head.
    fn send(
        &self,
        upstreams: Arc<Upstreams>,
        backend: Arc<Backend>,
        req: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, TryError<Self::Request>>> + Send + 'static;
}

/// What the balancer needs of a request: its hash key or sticky cookie, read once.
#[derive(Debug, Default)]
pub(crate) struct BalanceKey {
    hash: Option<Box<[u8]>>,
    sticky: Option<Box<str>>,
}

impl BalanceKey {
    /// The key `service` balances `headers` on (nothing for round robin and least requests).
    pub(crate) fn of(service: &ServiceHandle, headers: &HeaderMap, client_ip: IpAddr) -> Self {
        let mut key = BalanceKey::default();
        match &service.def.balance {
            Balance::Hash(HashOn::Header(name)) => {
                key.hash = headers.get(name).map(|v| v.as_bytes().into());
            }
            Balance::Hash(HashOn::Cookie(name)) => {
                key.hash = cookie(headers, name).map(|v| v.as_bytes().into());
            }
            Balance::Hash(HashOn::ClientIp) => {
                key.hash = Some(client_ip.to_string().into_bytes().into());
            }
            Balance::Sticky { cookie: name } => key.sticky = cookie(headers, name).map(Into::into),
            Balance::RoundRobin | Balance::LeastRequests => {}
        }
        key
    }

    fn pick(&self, service: &ServiceHandle, exclude: &[&str]) -> Option<Pick> {
        service.balancer.pick(&PickContext {
            hash_key: self.hash.as_deref(),
            sticky: self.sticky.as_deref(),
            exclude,
        })
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v.trim_matches('"'))
        })
}

/// How a streamed request body is going: shared by the body, as hyper's client reads it,
/// and the tries waiting for the response.
#[derive(Debug, Default)]
pub(crate) struct Upload {
    /// The client has sent the whole body.
    done: AtomicBool,
    /// Why the client's body failed, if it did.
    failed: OnceLock<ProxyError>,
    /// Woken when the body is done.
    finished: Notify,
}

impl Upload {
    pub(crate) fn finish(&self) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.finished.notify_one();
        }
    }

    pub(crate) fn fail(&self, e: ProxyError) {
        let _ = self.failed.set(e);
    }

    /// The client's failure, as the client's answer (its status and words).
    fn client_error(&self) -> Option<ProxyError> {
        self.failed.get().map(|e| ProxyError::Rejected {
            status: e.status(),
            why: e.to_string().into(),
        })
    }
}

/// How far a try's timer is set while the client is still sending: a wake-up that never
/// comes in practice (each pause in the body is bounded by `body_idle`).
const UNTIL_UPLOADED: Duration = Duration::from_secs(365 * 24 * 3600);

/// What the gateway knows of a request when it starts sending it.
pub(crate) struct Outbound<'a> {
    pub(crate) upstreams: &'a Arc<Upstreams>,
    /// The service's own TLS pool, used instead of `upstreams` if it has one.
    pub(crate) tls_pool: Option<Arc<Upstreams>>,
    pub(crate) service: &'a ServiceHandle,
    pub(crate) retry: &'a Retry,
    /// The route's latency: its `Auto` per-try timeout (`crate::latency::RouteLatency`).
    pub(crate) route_latency: &'a RouteLatency,
    /// Overall bound on waiting for response headers: the route's (`crate::table`), or a
    /// gRPC call's deadline (`crate::grpc::call_wait`).
    pub(crate) response_header_timeout: Duration,
    /// The bound is the client's own deadline: running out of it is not the replica's
    /// failure ([`ProxyError::DeadlineExceeded`]).
    pub(crate) client_deadline: bool,
    /// When the request was let through (from [`crate::pipeline::admit`]): the first try's
    /// start, without another clock read.
    pub(crate) start: Instant,
}

impl<'a> Outbound<'a> {
    /// Sending to a route's `target` in `table`, for a request let through at `start`.
    pub(crate) fn new(table: &'a RoutingTable, target: &'a Target, start: Instant) -> Self {
        let service = &target.service;
        Outbound {
            upstreams: &table.upstreams,
            tls_pool: match service.def.tls {
                Some(_) => service.tls_pool.load_full(),
                None => None,
            },
            service,
            retry: &target.retry,
            route_latency: &target.latency,
            response_header_timeout: target.response_header_timeout,
            client_deadline: false,
            start,
        }
    }

    /// Send the request, trying again as the module docs say; the first usable answer.
    /// `idempotent`: the request may reach a replica twice (see [`is_idempotent`]).
    pub(crate) async fn run<X: Exchange>(
        self,
        exchange: X,
        idempotent: bool,
        key: &BalanceKey,
    ) -> Result<Answer<X::Response>, ProxyError> {
        let timer = tokio::time::sleep_until(self.start + self.response_header_timeout);
        tokio::pin!(timer);
        self.run_with_timer(exchange, idempotent, key, timer).await
    }

    /// As [`run`](Self::run), with a timer the caller keeps from one request to the next
    /// (the relay keeps one per connection). Each request moves it later, which costs a
    /// compare-and-swap, where a new timer per request costs a runtime handle, an insert
    /// into the timer wheel and a removal. Left armed afterwards: a timer that fires while
    /// its connection is idle wakes that connection's task once, for nothing.
    pub(crate) async fn run_with_timer<X: Exchange>(
        self,
        exchange: X,
        idempotent: bool,
        key: &BalanceKey,
        mut timer: Pin<&mut Sleep>,
    ) -> Result<Answer<X::Response>, ProxyError> {
        let service = self.service;
        let retry = self.retry;
        let start = self.start;
        let resend_after_send = idempotent && retry.attempts > 1 && exchange.replayable();
        // How long the route's answers may take: the per-try timeout, from the route's own
        // latency (a slow route is not timed by its service's fast ones). Every request
        // reports it, hedged or not: passive health tells a busy replica from a hung one by
        // it (`crate::health`, stalls).
        let expected = match retry.per_try_timeout {
            PerTryTimeout::Fixed(d) => d,
            PerTryTimeout::Auto | PerTryTimeout::Off => {
                self.route_latency.tracker.auto_per_try_timeout(start)
            }
        };
        self.route_latency.sent(start, expected);
        let per_try = match retry.per_try_timeout {
            _ if !resend_after_send || !exchange.hedgeable() => None,
            PerTryTimeout::Auto | PerTryTimeout::Fixed(_) => Some(expected),
            PerTryTimeout::Off => None,
        };
        let mut state = Tries {
            send: &self,
            exchange,
            key,
            resend_after_send,
            tried: SmallVec::new(),
            started: 0,
            last_error: None,
            in_flight: SmallVec::new(),
            latest: None,
            fallback: None,
        };
        let mut deadline = start + self.response_header_timeout;
        // A streamed body still coming from the client: the response-header timeout starts
        // when it has all been sent.
        let upload = state.exchange.upload().cloned();
        let mut uploading = upload
            .as_ref()
            .is_some_and(|u| !u.done.load(Ordering::Acquire));
        let first = state
            .next_request()
            .expect("the first try always has its request");
        state.launch(first)?;
        // One timer at a time (the hedge or the deadline, whichever comes first): timers
        // are a noticeable part of a request's cost.
        loop {
            let hedge_at = match (per_try, &state.latest) {
                (Some(d), Some((_, at))) if state.started < retry.attempts => Some(*at + d),
                _ => None,
            };
            let wake_at = match hedge_at {
                Some(h) if !uploading => h.min(deadline),
                Some(h) => h,
                None if !uploading => deadline,
                // Nothing to wait for but the client (bounded by `body_idle` per pause).
                None => start + UNTIL_UPLOADED,
            };
            // A timer kept from an earlier request may have fired since.
            if timer.deadline() != wake_at || timer.is_elapsed() {
                timer.as_mut().reset(wake_at);
            }
            tokio::select! {
                biased;
                (pick, sent, result) = state.next_settled() => {
                    if let Some(answer) = state.settle(pick, sent, result)? {
                        return Ok(answer);
                    }
                }
                () = async {
                    match &upload {
                        Some(u) if uploading => u.finished.notified().await,
                        _ => std::future::pending().await,
                    }
                } => {
                    uploading = false;
                    deadline = Instant::now() + self.response_header_timeout;
                }
                () = &mut timer => {
                    if uploading || Instant::now() < deadline {
                        state.hedge();
                    } else {
                        if self.client_deadline {
                            return Err(ProxyError::DeadlineExceeded(service.name.to_string()));
                        }
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
struct Tries<'s, 'a, X: Exchange> {
    send: &'s Outbound<'a>,
    exchange: X,
    key: &'s BalanceKey,
    /// The request may be sent again after a replica saw it.
    resend_after_send: bool,
    /// Keys of backends tried (excluded from later picks).
    tried: SmallVec<[Arc<str>; 2]>,
    /// Tries started.
    started: u32,
    last_error: Option<ProxyError>,
    /// Tries running (usually one; a hedge adds one). Polled in turn by `next_settled`.
    in_flight: SmallVec<[BoxFuture<'static, Settled<X>>; 2]>,
    /// The backend and start of the latest try: the one a hedge would back up.
    latest: Option<(Arc<Backend>, Instant)>,
    /// A retryable answer (e.g. a 503) kept in case no other try does better.
    fallback: Option<Answer<X::Response>>,
}

/// A finished try: its pick, when it started, and how it went.
type Settled<X> = (
    Pick,
    Instant,
    Result<<X as Exchange>::Response, TryError<<X as Exchange>::Request>>,
);

impl<X: Exchange> Tries<'_, '_, X> {
    /// The next try to finish, removed from `in_flight`. Pending forever if none runs.
    async fn next_settled(&mut self) -> Settled<X> {
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
    fn launch(&mut self, req: X::Request) -> Result<(), ProxyError> {
        let service = self.send.service;
        let pick = {
            let exclude: Vec<&str> = self.tried.iter().map(|k| &**k).collect();
            self.key.pick(service, &exclude)
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

    fn launch_on(&mut self, pick: Pick, req: X::Request) {
        // The first try starts when the request was let through: no other clock read.
        let now = if self.started == 0 {
            self.send.start
        } else {
            Instant::now()
        };
        self.started += 1;
        self.tried.push(Arc::clone(pick.backend().key_shared()));
        self.latest = Some((Arc::clone(pick.backend()), now));
        let pool = self.send.tls_pool.as_ref().unwrap_or(self.send.upstreams);
        let sending = self
            .exchange
            .send(Arc::clone(pool), Arc::clone(pick.backend()), req);
        self.in_flight
            .push(Box::pin(async move { (pick, now, sending.await) }));
    }

    /// A try finished. `Ok(Some)`: the answer for the client. `Ok(None)`: keep waiting
    /// (another try runs or was started). `Err`: the client's error.
    fn settle(
        &mut self,
        pick: Pick,
        sent: Instant,
        result: Result<X::Response, TryError<X::Request>>,
    ) -> Result<Option<Answer<X::Response>>, ProxyError> {
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
            Ok(response) => {
                let status = X::status(&response);
                let now = Instant::now();
                let latency = now.saturating_duration_since(sent);
                service.latency.record(now, latency);
                self.send.route_latency.tracker.record(now, latency);
                let at_ms = ms_at(now);
                service.health.observe(
                    &service.balancer,
                    &backend,
                    Outcome::Answered { status, at_ms },
                );
                let answer = Answer { pick, response };
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
                    ConnectError::Tls(why) => ProxyError::UpstreamTls {
                        service: service.name.to_string(),
                        why,
                    },
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
                // to the same replica (it did not fail us) if it is still in rotation, else
                // to another.
                if self.in_rotation(&backend) {
                    self.launch_on(pick, req);
                    return Ok(None);
                }
                drop(pick);
                self.launch(req).map(|()| None)
            }
            Err(TryError::Sent(_) | TryError::Unprocessed { .. })
                if let Some(e) = self.client_error() =>
            {
                // The client's body failed (malformed, or it stopped sending): its answer,
                // and no replica is blamed or tried again.
                drop(pick);
                Err(e)
            }
            Err(TryError::Sent(e)) => {
                tracing::debug!(service = %service.name, replica = backend.key(), error = %e, "upstream failed");
                service
                    .health
                    .observe(&service.balancer, &backend, Outcome::Failed(e.to_string()));
                self.last_error = Some(ProxyError::Upstream {
                    service: service.name.to_string(),
                    source: e,
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
            Err(TryError::Unprocessed {
                error,
                replica_failed,
            }) => {
                tracing::debug!(service = %service.name, replica = backend.key(), error = %error, "the replica did not process the request");
                if replica_failed {
                    let why = error.to_string();
                    service
                        .health
                        .observe(&service.balancer, &backend, Outcome::Failed(why));
                }
                self.last_error = Some(ProxyError::Upstream {
                    service: service.name.to_string(),
                    source: error,
                });
                // Any method may go again (RFC 9113 §8.7), as a retry: within `attempts`
                // and the budget, and only with a copy of the request in hand.
                if !self.in_flight.is_empty() || self.started >= retry.attempts {
                    return Ok(None);
                }
                let Some(req) = self.next_request() else {
                    return Ok(None);
                };
                if !self.spend_budget() {
                    return Ok(None);
                }
                service
                    .health
                    .counters
                    .retries
                    .fetch_add(1, Ordering::Relaxed);
                let other = {
                    let exclude: Vec<&str> = self.tried.iter().map(|k| &**k).collect();
                    self.key.pick(service, &exclude)
                };
                match other {
                    Some(other) => {
                        drop(pick);
                        self.launch_on(other, req);
                    }
                    // The only replica in rotation: again, on a new connection if its
                    // last one went away.
                    None if self.in_rotation(&backend) => self.launch_on(pick, req),
                    None => {}
                }
                Ok(None)
            }
        }
    }

    /// Whether `backend` may still take new requests: in the service's set (not removed or
    /// draining) and not out of rotation (failing its checks, ejected).
    fn in_rotation(&self, backend: &Backend) -> bool {
        backend.is_available()
            && self
                .send
                .service
                .balancer
                .backends()
                .iter()
                .any(|b| b.key() == backend.key())
    }

    /// The latest try waited its per-try timeout: tell passive health, and send the
    /// request to another replica too if the budget allows.
    fn hedge(&mut self) {
        let service = self.send.service;
        let Some((backend, started)) = self.latest.take() else {
            return;
        };
        let now = Instant::now();
        service
            .health
            .observe(&service.balancer, &backend, Outcome::Slow { started, now });
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

    /// How the client's streamed body failed, if it did.
    fn client_error(&self) -> Option<ProxyError> {
        self.exchange.upload().and_then(|u| u.client_error())
    }

    /// Take one retry from the service's budget.
    fn spend_budget(&self) -> bool {
        self.send.service.budget.try_withdraw(Instant::now())
    }

    fn next_request(&mut self) -> Option<X::Request> {
        self.exchange.next_request(self.resend_after_send)
    }
}

pub(crate) fn boxed_bytes(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| -> BoxError { match never {} })
        .boxed_unsync()
}

/// Read a body announced as at most `limit` bytes, to send it again if need be; a pause
/// longer than `idle` is the client's timeout (408).
pub(crate) async fn read_small_body(
    mut body: ProxyBody,
    limit: u64,
    idle: Duration,
) -> Result<Bytes, ProxyError> {
    let mut buf = bytes::BytesMut::new();
    loop {
        let Ok(frame) = tokio::time::timeout(idle, body.frame()).await else {
            return Err(ProxyError::client_too_slow(SLOW_BODY));
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| ProxyError::Rejected {
            status: http::StatusCode::BAD_REQUEST,
            why: format!("the request body is malformed: {e}").into(),
        })?;
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

/// 503: no replica at all, or none in rotation.
fn no_replica(service: &ServiceHandle) -> ProxyError {
    if service.balancer.backends().is_empty() {
        ProxyError::NoEndpoint(service.name.to_string())
    } else {
        ProxyError::NoHealthy(service.name.to_string())
    }
}

#[cfg(test)]
mod fake_exchange_tests;

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn reads_cookies() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; sid=\"xyz\""));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, "sid"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
