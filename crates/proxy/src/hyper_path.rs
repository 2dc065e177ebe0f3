//! The full path: hyper's server and client, for what the relay (`crate::relay`) does not
//! carry — HTTP/2 and gRPC, HTTP/1.0, upgrades (WebSocket), `Expect`, streamed (chunked) or
//! large request bodies, services reached over h2c or TLS, compressed responses — and for
//! every connection the relay hands over.
//!
//! The steps are the shared pipeline's (`crate::pipeline`: begin, prepare, admit, finish),
//! the tries are `crate::tries`' with hyper's exchange (`crate::exchange::hyper`), and the
//! response's headers follow the one hop-by-hop rule (`crate::forward`). What is hyper's own
//! here: bodies as streams (a mirror's copy read first when it is small), framing derived by
//! hyper from the body it sends, gRPC deadlines and statuses (`crate::grpc`), the `101`
//! tunnel, and giving an HTTP/1.1 connection back to its pool when its body has been read.
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::client::conn::http1;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use shoal_balance::{Backend, Pick};
use tokio::time::Instant;

use crate::body::{BoxError, ProxyBody, boxed};
use crate::compress;
use crate::error::ProxyError;
use crate::exchange::hyper::HyperExchange;
use crate::forward;
use crate::framing;
use crate::gateway::{ConnInfo, Gateway};
use crate::grpc;
use crate::middleware;
use crate::pipeline::{admit, prepare, record_breaker, replay_limit, response_extras};
use crate::table::{CompiledRoute, RoutingTable, Target};
use crate::tries::{Answer, BalanceKey, Outbound, boxed_bytes, is_idempotent, read_small_body};
use crate::upstream::Upstreams;

/// Proxy one request ([`Gateway::handle`]). Never fails: every failure is a response.
pub(crate) async fn handle<B>(
    gateway: &Gateway,
    req: Request<B>,
    conn: &ConnInfo,
) -> Response<ProxyBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let table = gateway.table();
    let version = req.version();
    // gRPC calls get the gateway's failures as gRPC statuses (crate::grpc).
    let grpc = grpc::is_grpc(version, req.headers());
    let mut resp = match forward(gateway, &table, req.map(boxed), conn, grpc).await {
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

/// One request on hyper's path: begin, the framing rules (for heads hyper parsed), the
/// route's checks, [`forward_to`], finish.
async fn forward(
    gateway: &Gateway,
    table: &RoutingTable,
    req: Request<ProxyBody>,
    conn: &ConnInfo,
    grpc: bool,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let begun = gateway.begin(table, &parts, conn);
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
            let admitted = route.edge.check(&mut parts, client).await;
            match admitted {
                Err(early) if grpc => Ok(grpc::from_early(early, version)),
                Err(early) => Ok(early.into_response(version)),
                Ok(admitted) => {
                    let slot = begun.logged_wanted().then_some(&mut replica);
                    let (body, crossed) = admitted.limit_body(body);
                    let result = forward_to(
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
    gateway.finish(begun, conn, status, size, replica);
    result
}

/// The rest of [`forward`], once the route is known.
// The request's parts as `forward` split them, plus where to say which replica served
// (for the access log); a struct would only rename them.
#[allow(clippy::too_many_arguments)]
async fn forward_to(
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
        replay_limit(retry, idempotent || (h2c && !upgrade)),
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
