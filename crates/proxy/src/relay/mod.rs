//! The HTTP/1.1 relay: the gateway's fast path for plain HTTP/1.1 keep-alive traffic.
//!
//! A client connection starts here. Each request head is parsed once ([`wire`]), routed and
//! prepared by the steps the full path takes too ([`crate::pipeline`]: begin, prepare,
//! admit, finish), sent by the same tries ([`crate::tries`], with the relay's exchange,
//! [`crate::exchange::relay`], so retries, hedging, passive health, the retry budget and the
//! replay limit behave the same), and the replica's response is relayed as bytes: its head
//! rewritten on the fly by the hop-by-hop rule both paths apply ([`crate::forward`]), its
//! body copied with the framing it came with (length, chunked, or until close).
//! No per-request task, channel or body object, and one read and one write per direction for
//! a small exchange. A split's choice and its sticky cookie come from `Gateway::begin` as on
//! the full path; a copy to a route's mirror is started here too (the body is in hand), on a
//! task of its own (`crate::mirror`).
//!
//! The client's connection is plain TCP or TLS over it ([`ClientStream`]): an HTTPS client
//! that chose HTTP/1.1 by ALPN is relayed too, only its bytes pass through rustls.
//!
//! What the relay does not handle — HTTP/2 (h2c prior knowledge), HTTP/1.0, upgrades
//! (WebSocket), `Expect: 100-continue`, chunked or large (over 64 KiB, [`MAX_BODY`]) request
//! bodies, services reached over h2c or TLS, requests whose response the `compress` middleware
//! will compress ([`crate::compress`]) — is recognised before anything is sent, and the
//! connection, with the bytes already read, is handed to the full HTTP stack (hyper) for the
//! rest of its life. So every request is served; the relay only decides how fast.
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};
use shoal_config::Middleware;
use smallvec::SmallVec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::compress;
use crate::error::{ProxyError, SLOW_BODY, SLOW_HEAD};
use crate::exchange::relay::{RelayExchange, RelayResponse};
use crate::gateway::{ConnInfo, Gateway};
use crate::middleware;
use crate::pipeline::{admit, prepare, record_breaker, replay_limit, response_extras};
use crate::server::{ServeSettings, SettingsCache};
use crate::tries::{Answer, BalanceKey, Outbound, is_idempotent};

pub(crate) mod wire;

use wire::{ChunkedEnd, ClientRequest, Framing, HeadLimits, HeaderEdit, Parsed};

/// Longest request body the relay carries (held in memory); longer ones are streamed by the
/// full stack. A later try has a copy only within `retry.max_replay_body`, as on the full
/// stack (`crate::pipeline::replay_limit`).
const MAX_BODY: usize = 64 * 1024;
/// Room for a client's request head: most fit; a longer one grows the buffer.
const REQUEST_CHUNK: usize = 2 * 1024;
/// Room for a replica's response head (and a small body with it).
pub(crate) const HEAD_CHUNK: usize = 4 * 1024;
/// Room reserved before each read of a longer body.
const READ_CHUNK: usize = 16 * 1024;

/// A client connection the relay serves: plain TCP, or TLS over it.
pub(crate) trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Returns when the client closes its connection (or it fails). Bytes it sends meanwhile
    /// (pipelined requests) are kept in `pending`, up to `max_pending`; then it stops looking.
    /// Cancel-safe: dropped before it returns, nothing read is lost.
    fn gone<'a>(
        &'a mut self,
        pending: &'a mut BytesMut,
        max_pending: usize,
    ) -> impl Future<Output = ()> + Send + 'a;
}

impl ClientStream for TcpStream {
    async fn gone(&mut self, pending: &mut BytesMut, max_pending: usize) {
        loop {
            // `poll_read_ready` keeps one waker in the socket's reader slot: cheaper than a
            // `readable()` future, which joins and leaves a list of waiters every request.
            let ready = std::future::poll_fn(|cx| self.poll_read_ready(cx));
            if pending.len() >= max_pending || ready.await.is_err() {
                return std::future::pending().await;
            }
            make_room(pending, REQUEST_CHUNK);
            match self.try_read_buf(pending) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {
    async fn gone(&mut self, pending: &mut BytesMut, max_pending: usize) {
        // Records read but not yet whole stay inside rustls, so dropping this read loses
        // nothing; a `close_notify` or a closed socket reads as 0.
        while pending.len() < max_pending {
            make_room(pending, REQUEST_CHUNK);
            match self.read_buf(pending).await {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        }
        std::future::pending::<()>().await;
    }
}

/// Write all of `bytes` to the client and push them out: TLS keeps encrypted records that did
/// not fit the socket until flushed (for TCP the flush is free).
async fn send<S: AsyncWrite + Unpin>(client: &mut S, bytes: &[u8]) -> io::Result<()> {
    client.write_all(bytes).await?;
    client.flush().await
}

/// How a client connection left the relay.
pub(crate) enum End<S> {
    /// Closed (by either side, by an error, or for shutdown).
    Closed,
    /// To be served by the full HTTP stack from here on; `Bytes` were read already.
    HandOff(Bytes, S),
}

/// Why the current exchange stopped the connection.
enum Next {
    KeepAlive,
    Close,
    HandOff(Bytes),
}

/// Serve one client connection until it closes or needs the full HTTP stack. `live`: the
/// entrypoint's settings, looked at again before each request (a reload's apply from the
/// next request on).
pub(crate) async fn serve<S: ClientStream>(
    gateway: &Gateway,
    info: &ConnInfo,
    mut stream: S,
    live: &mut SettingsCache<'_>,
    stopped: &mut watch::Receiver<bool>,
) -> End<S> {
    let mut settings = live.load().settings;
    let mut buf = BytesMut::with_capacity(REQUEST_CHUNK);
    let mut out = BytesMut::with_capacity(512);
    // The connection's one read timer, armed once and moved only when it fires early or a
    // nearer deadline comes (in `read_more`): resetting a timer for every request costs
    // more than the request's own bookkeeping.
    let accepted = Instant::now();
    let mut last_active = accepted;
    let idle = tokio::time::sleep_until(accepted + settings.header_read);
    tokio::pin!(idle);
    // One wait for shutdown for the connection's whole life: making and dropping one per
    // request costs a lock on a list every connection is in.
    let mut stopping = stopped.clone();
    let stop = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop);
    let mut stop: Pin<&mut (dyn Future<Output = ()> + Send)> = stop;
    // One response-header timer for the connection's life too, moved later by each request
    // (see `Outbound::run_with_timer`); the deadline set here is never waited for.
    let replica_timer = tokio::time::sleep_until(last_active + settings.client_idle);
    tokio::pin!(replica_timer);
    let mut first = true;
    let mut limits: HeadLimits;
    loop {
        // A whole request head (and body), reading as needed. A new connection has
        // `header_read` for its first head; between requests a client may be quiet for
        // `client_idle`, and once a head has begun it has `header_read` to finish it
        // (slowloris). An idle connection is let go at once on shutdown.
        let mut head_started = (!buf.is_empty()).then(Instant::now);
        let request = loop {
            // A reload's settings apply from the next request on, also to one whose head
            // was awaited when they changed (one pointer comparison while nothing did).
            settings = live.load().settings;
            limits = head_limits(&settings);
            match wire::parse_request(&mut buf, &limits) {
                Parsed::Request(r) => break r,
                Parsed::Other => return End::HandOff(buf.freeze(), stream),
                Parsed::Reject(reject) => {
                    refuse(&mut stream, &mut out, &reject.into()).await;
                    return End::Closed;
                }
                Parsed::Partial => {}
            }
            make_room(&mut buf, REQUEST_CHUNK);
            let deadline = match head_started {
                _ if first => accepted + settings.header_read,
                Some(at) => at + settings.header_read,
                None => last_active + settings.client_idle,
            };
            // Between requests a shutdown closes the connection; within one it waits.
            let stop = buf.is_empty().then_some(stop.as_mut());
            match read_more(&mut stream, &mut buf, idle.as_mut(), deadline, stop).await {
                Read::Data => {
                    head_started.get_or_insert_with(Instant::now);
                }
                Read::Expired if !buf.is_empty() => {
                    let e = ProxyError::client_too_slow(SLOW_HEAD);
                    refuse(&mut stream, &mut out, &e).await;
                    return End::Closed;
                }
                Read::Expired | Read::Closed => return End::Closed,
            }
        };
        first = false;
        // A body over a route's `buffering` limit is not read: the full stack answers 413.
        if request.body_len > 0 && gateway.over_body_limit(request.body_len as u64) {
            let mut whole = BytesMut::with_capacity(request.raw.len() + buf.len());
            whole.extend_from_slice(&request.raw);
            whole.extend_from_slice(&buf);
            return End::HandOff(whole.freeze(), stream);
        }
        while buf.len() < request.body_len {
            buf.reserve(request.body_len - buf.len());
            let deadline = Instant::now() + settings.body_idle;
            match read_more(&mut stream, &mut buf, idle.as_mut(), deadline, None).await {
                Read::Data => {}
                Read::Expired => {
                    let e = ProxyError::client_too_slow(SLOW_BODY);
                    refuse(&mut stream, &mut out, &e).await;
                    return End::Closed;
                }
                Read::Closed => return End::Closed,
            }
        }
        let body = buf.split_to(request.body_len).freeze();
        let shutting_down = *stopped.borrow();
        let next = exchange(
            gateway,
            info,
            Client {
                stream: &mut stream,
                out: &mut out,
                pending: &mut buf,
                max_pending: limits.max_size,
            },
            request,
            body,
            shutting_down,
            replica_timer.as_mut(),
        )
        .await;
        last_active = Instant::now();
        match next {
            Next::KeepAlive if !*stopped.borrow() => {}
            Next::KeepAlive | Next::Close => return End::Closed,
            Next::HandOff(mut prefix) => {
                if !buf.is_empty() {
                    let mut whole = BytesMut::with_capacity(prefix.len() + buf.len());
                    whole.extend_from_slice(&prefix);
                    whole.extend_from_slice(&buf);
                    prefix = whole.freeze();
                }
                return End::HandOff(prefix, stream);
            }
        }
    }
}

/// What the relay's parser allows of a request head.
fn head_limits(settings: &ServeSettings) -> HeadLimits {
    HeadLimits {
        max_size: settings.max_head_size,
        max_headers: settings.max_headers,
        max_body: MAX_BODY,
    }
}

/// The client's side of an exchange.
struct Client<'c, S> {
    stream: &'c mut S,
    /// Where the response head is written.
    out: &'c mut BytesMut,
    /// What the client sent after this request (pipelined requests), read while the
    /// replica works so that a client that goes away is noticed.
    pending: &'c mut BytesMut,
    /// How much of that to hold: a head's worth.
    max_pending: usize,
}

/// How a read of the client's bytes ended.
enum Read {
    /// More bytes are in the buffer.
    Data,
    /// The deadline passed first.
    Expired,
    /// The client closed the connection (or it failed), or shutdown came.
    Closed,
}

/// Read more of the client's bytes into `buf`, until `deadline` or `stop` (shutdown).
/// `timer` is the connection's read timer, reset only when it fires early or `deadline` is
/// nearer than it.
async fn read_more<'s, S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    mut timer: Pin<&mut Sleep>,
    deadline: Instant,
    mut stop: Option<Pin<&mut (dyn Future<Output = ()> + Send + 's)>>,
) -> Read {
    if timer.deadline() > deadline {
        timer.as_mut().reset(deadline);
    }
    loop {
        tokio::select! {
            biased;
            read = stream.read_buf(buf) => {
                return if matches!(read, Ok(n) if n > 0) { Read::Data } else { Read::Closed };
            }
            () = &mut timer => {
                if Instant::now() >= deadline {
                    return Read::Expired;
                }
                timer.as_mut().reset(deadline);
            }
            () = async {
                match stop.as_mut() {
                    Some(stop) => stop.as_mut().await,
                    None => std::future::pending().await,
                }
            } => return Read::Closed,
        }
    }
}

/// One request: route, send, relay the response.
async fn exchange<S: ClientStream>(
    gateway: &Gateway,
    info: &ConnInfo,
    client: Client<'_, S>,
    request: ClientRequest,
    body: Bytes,
    shutting_down: bool,
    replica_timer: Pin<&mut Sleep>,
) -> Next {
    let Client {
        stream: client,
        out,
        pending,
        max_pending,
    } = client;
    let ClientRequest {
        mut parts,
        raw,
        close,
        has_length,
        ..
    } = request;
    let close = close || shutting_down;
    let table = gateway.table();
    let begun = gateway.begin(&table, &parts, info);
    let Some((route, target)) = begun.route.zip(begun.target) else {
        let e = ProxyError::NoRoute;
        gateway.finish(begun, info, e.status(), None, None);
        return write_error(client, out, &e, close).await;
    };
    let service = &target.service;
    // The full stack speaks to replicas the relay cannot (h2c, TLS), and compresses
    // responses (the relay copies them as they are): give it the request as received.
    if !service.relayable()
        || compress::choose(&route.middlewares, &parts.method, &parts.headers).is_some()
    {
        let mut whole = BytesMut::with_capacity(raw.len() + body.len());
        whole.extend_from_slice(&raw);
        whole.extend_from_slice(&body);
        return Next::HandOff(whole.freeze());
    }
    drop(raw);
    // The route's checks: an early answer (401, 403, 429, a redirect, a preflight) goes back
    // at once and never reaches a replica. `admitted` holds in-flight places until the
    // exchange ends.
    let client_info = middleware::Client {
        peer: begun.client_ip,
        tls: info.tls,
        host: begun.host_header.as_ref(),
    };
    let checked = route.edge.check(&mut parts, client_info).await;
    let middleware::Admitted {
        guards: _in_flight,
        response_headers: edge_headers,
        ..
    } = match checked {
        Ok(admitted) => admitted,
        Err(early) => {
            gateway.finish(begun, info, early.status, early.size(), None);
            let head_request = parts.method == Method::HEAD;
            return write_early(client, out, &early, close, head_request).await;
        }
    };
    let host = begun.host_header.clone();
    let sent = async {
        let path_and_query = prepare(
            route,
            &mut parts,
            host,
            begun.client_ip,
            false,
            false,
            info.tls,
        )?;
        // A copy to the route's mirror, if this request is selected (crate::mirror).
        if let Some(mirror) = &route.mirror
            && let Some(slot) = mirror.select(Some(body.len() as u64))
        {
            mirror.send(
                slot,
                &table.upstreams,
                &parts.method,
                &path_and_query,
                &parts.headers,
                begun.host_header.as_ref(),
                body.clone(),
            );
        }
        let (since, trial) = admit(service, begun.started()).await?;
        let idempotent = is_idempotent(&target.retry, &parts.method, &parts.headers);
        let key = BalanceKey::of(service, &parts.headers, begun.client_ip);
        let mut wire_req = BytesMut::with_capacity(512 + body.len());
        wire::write_request(
            &mut wire_req,
            &parts.method,
            &path_and_query,
            &parts.headers,
            &body,
            has_length,
        );
        let sent = Outbound::new(&table, target, since)
            .run_with_timer(
                RelayExchange::new(
                    wire_req.freeze(),
                    body.len(),
                    replay_limit(&target.retry, idempotent),
                    idempotent,
                    parts.method == Method::HEAD,
                ),
                idempotent,
                &key,
                replica_timer,
            )
            .await;
        record_breaker(
            service,
            trial,
            since,
            sent.as_ref()
                .ok()
                .and_then(|a| StatusCode::from_u16(a.response.head.status).ok()),
        );
        sent
    };
    // Waiting for the replica, also watch the client: one that closes its connection has
    // given up, and its request is abandoned (the replica's connection is closed, which
    // tells it too), as nginx does (logged as 499).
    let sent = tokio::select! {
        biased;
        sent = sent => sent,
        () = client.gone(pending, max_pending) => {
            gateway.finish(begun, info, CLIENT_CLOSED, None, None);
            return Next::Close;
        }
    };
    let Answer { pick, response } = match sent {
        Ok(answer) => answer,
        Err(e) => {
            tracing::debug!(error = %e, "request failed");
            gateway.finish(begun, info, e.status(), None, None);
            return write_error(client, out, &e, close).await;
        }
    };
    let RelayResponse {
        upstream,
        buf: mut up_buf,
        head,
    } = response;
    let mut extras: Vec<(HeaderName, HeaderValue)> = Vec::new();
    response_extras(&table, service, &pick, |name, value| {
        extras.push((name.clone(), value));
    });
    if let Some(cookie) = begun.set_cookie.clone() {
        extras.push((http::header::SET_COOKIE, cookie));
    }
    extras.extend(edge_headers);
    let close = close || head.framing == Framing::UntilClose;
    out.clear();
    let edits = response_edits(&route.middlewares);
    wire::write_response_head(out, &up_buf, &head, &edits, &extras, close);
    let status = StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let size = match head.framing {
        Framing::Length(n) => Some(n),
        _ => None,
    };
    let replica = begun.logged_wanted().then(|| Arc::clone(pick.backend()));
    gateway.finish(begun, info, status, size, replica);
    up_buf.advance(head.len);
    let relayed = relay_body(client, out, upstream, up_buf, head.framing, head.reusable).await;
    match relayed {
        Ok(Some(reusable)) => table
            .upstreams
            .checkin_socket(pick.backend().addr(), reusable),
        Ok(None) => {}
        Err(e) => {
            // Half a response is all the client can get: close its connection.
            tracing::debug!(replica = pick.backend().key(), error = %e, "response body relay failed");
            return Next::Close;
        }
    }
    drop(pick);
    if close { Next::Close } else { Next::KeepAlive }
}

/// The response header edits of a route's `headers` middlewares, in route order, for the
/// byte-level writer (`wire::write_response_head`).
fn response_edits(middlewares: &[Middleware]) -> SmallVec<[HeaderEdit<'_>; 2]> {
    middlewares
        .iter()
        .filter_map(|m| match m {
            Middleware::Headers(rules) => Some(HeaderEdit {
                remove: &rules.response_remove,
                set: &rules.response_set,
            }),
            _ => None,
        })
        .collect()
}

/// Status recorded for a request whose client went away before the answer (nginx's).
const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(s) => s,
    Err(_) => StatusCode::BAD_REQUEST,
};

/// Send the response head in `out` and the body after it, as framed. Returns the upstream
/// connection when it can carry another request.
async fn relay_body<S: AsyncWrite + Unpin>(
    client: &mut S,
    out: &mut BytesMut,
    mut upstream: TcpStream,
    mut buf: BytesMut,
    framing: Framing,
    reusable: bool,
) -> io::Result<Option<TcpStream>> {
    let premature = || io::Error::new(io::ErrorKind::UnexpectedEof, "replica closed mid-body");
    match framing {
        Framing::Empty => {
            send(client, out).await?;
            Ok((reusable && buf.is_empty()).then_some(upstream))
        }
        Framing::Length(n) => {
            let mut left = n;
            // The usual case: the whole body came with the head. One write.
            let now = (buf.len() as u64).min(left) as usize;
            out.extend_from_slice(&buf[..now]);
            let extra = buf.len() > now;
            left -= now as u64;
            send(client, out).await?;
            while left > 0 {
                buf.clear();
                buf.reserve(READ_CHUNK);
                if upstream.read_buf(&mut buf).await? == 0 {
                    return Err(premature());
                }
                let take = (buf.len() as u64).min(left) as usize;
                send(client, &buf[..take]).await?;
                left -= take as u64;
                if buf.len() > take {
                    return Ok(None);
                }
            }
            Ok((reusable && !extra).then_some(upstream))
        }
        Framing::Chunked => {
            let mut end = ChunkedEnd::default();
            let mut first = true;
            loop {
                let found = end
                    .scan(&buf)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let take = found.unwrap_or(buf.len());
                if first {
                    out.extend_from_slice(&buf[..take]);
                    send(client, out).await?;
                    first = false;
                } else {
                    send(client, &buf[..take]).await?;
                }
                if found.is_some() {
                    return Ok((reusable && take == buf.len()).then_some(upstream));
                }
                buf.clear();
                buf.reserve(READ_CHUNK);
                if upstream.read_buf(&mut buf).await? == 0 {
                    return Err(premature());
                }
            }
        }
        Framing::UntilClose => {
            out.extend_from_slice(&buf);
            send(client, out).await?;
            loop {
                buf.clear();
                buf.reserve(READ_CHUNK);
                if upstream.read_buf(&mut buf).await? == 0 {
                    return Ok(None);
                }
                send(client, &buf).await?;
            }
        }
    }
}

/// At least `room` bytes free at the end of `buf` for the next read (reclaiming the space of
/// what was taken off its front when it can, rather than reading in dribs).
pub(crate) fn make_room(buf: &mut BytesMut, room: usize) {
    if buf.capacity() - buf.len() < room / 2 {
        buf.reserve(room);
    }
}

/// Most a refused client's leftover bytes are read and dropped, and for how long, before
/// its connection is closed (nginx's lingering close, bounded tighter).
const LINGER_BYTES: usize = 1024 * 1024;
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Answer a refused request and close the connection gently: a client still sending (a
/// head over the limit) would otherwise get a reset, which can destroy the answer before
/// it reads it. So: the answer, our end shut, and what the client still sends read and
/// dropped until it closes too, up to `LINGER_BYTES` or `LINGER`.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut S,
    out: &mut BytesMut,
    e: &ProxyError,
) {
    if let Next::Close = write_error(client, out, e, true).await
        && client.shutdown().await.is_ok()
    {
        let drain = async {
            let mut scratch = [0u8; 8 * 1024];
            let mut left = LINGER_BYTES;
            while left > 0 {
                match client.read(&mut scratch).await {
                    Ok(n) if n > 0 => left = left.saturating_sub(n),
                    _ => break,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }
}

/// Answer with a middleware's early answer.
async fn write_early<S: AsyncWrite + Unpin>(
    client: &mut S,
    out: &mut BytesMut,
    early: &middleware::Early,
    close: bool,
    head_request: bool,
) -> Next {
    out.clear();
    early.write_http1(out, close, head_request);
    match send(client, out).await {
        Ok(()) if !close && !early.close => Next::KeepAlive,
        _ => Next::Close,
    }
}

/// Answer with the failure's status and short body.
async fn write_error<S: AsyncWrite + Unpin>(
    client: &mut S,
    out: &mut BytesMut,
    e: &ProxyError,
    close: bool,
) -> Next {
    use std::fmt::Write;
    let status = e.status();
    let body = e.body_text();
    out.clear();
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\nx-shoal-error: {}\r\ncontent-length: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        e.reason(),
        body.len()
    );
    if let Some(secs) = e.retry_after() {
        let _ = write!(out, "retry-after: {secs}\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    match send(client, out).await {
        Ok(()) if !close => Next::KeepAlive,
        _ => Next::Close,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncReadExt, DuplexStream};

    use super::*;

    /// A TLS server and client over an in-memory pipe that holds only `pipe` bytes: a write
    /// that does not fit waits for the reader, as a full socket does.
    async fn tls_pair(
        pipe: usize,
    ) -> (
        tokio_rustls::server::TlsStream<DuplexStream>,
        tokio_rustls::client::TlsStream<DuplexStream>,
    ) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let der = CertificateDer::from(cert.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (server_io, client_io) = tokio::io::duplex(pipe);
        let accept = tokio_rustls::TlsAcceptor::from(Arc::new(server)).accept(server_io);
        let connect = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(ServerName::try_from("localhost").unwrap(), client_io);
        let (server, client) = tokio::join!(accept, connect);
        (server.unwrap(), client.unwrap())
    }

    #[tokio::test]
    async fn what_is_sent_over_tls_arrives_without_another_write() {
        // tokio-rustls accepts plaintext and keeps the records the transport had no room for
        // until a flush: a response whose tail stayed there would never reach a client that
        // waits for it before sending its next request.
        let (mut server, mut client) = tls_pair(4 * 1024).await;
        let body = vec![b'x'; 256 * 1024];
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 256 * 1024];
            let read = client.read_exact(&mut got).await.map(|_| got);
            (read, client)
        });
        send(&mut server, &body).await.unwrap();
        // The server sends nothing more (it waits for the next request, as the relay does).
        let (read, _client) = tokio::time::timeout(std::time::Duration::from_secs(10), reader)
            .await
            .expect("the whole body arrived after `send` returned")
            .unwrap();
        assert_eq!(read.unwrap(), body);
        drop(server);
    }
}
