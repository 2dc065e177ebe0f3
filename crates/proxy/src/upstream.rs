//! Upstream connections: a keep-alive pool of HTTP/1.1 connections and one multiplexed
//! HTTP/2 connection per endpoint, over plain TCP (h2c: prior knowledge) or, for a service
//! with `tls:`, over TLS (`crate::upstream_tls`: the service has its own pool).
//!
//! Why our own pool rather than hyper-util's legacy client: the gateway must know that a
//! connection exists *before* it hands the request over, so that a refused or timed-out
//! connect can be retried on another replica with the request still in hand — for any
//! method, since nothing was sent. It also skips work the general-purpose client does on every
//! request (URI-derived pool keys, racing a lazy connect against the idle list).
//!
//! HTTP/1.1: a connection is checked out for one request and returned when the response body
//! has been read to the end (see `crate::hyper_path`); a response abandoned half-way closes its
//! connection. At most `max_idle_per_endpoint` idle connections are kept per endpoint; idle
//! ones older than `idle_timeout` are closed by a sweeper task. A pooled connection the
//! replica closed before our request was written gives the request back (hyper's
//! `try_send_request`), and the gateway sends it again on a fresh connection.
//!
//! HTTP/2: one connection per endpoint, shared by all requests to it. It leaves the pool
//! the moment it can take no new stream: when the replica's GOAWAY frame arrives (RFC 9113
//! §6.8; spotted by [`Wire`] as the bytes are read, before hyper's client would notice it at
//! the next request), when its side of the connection ends or fails, and when the
//! connection's task ends. A try that finds its connection gone evicts it too, so the next
//! checkout makes a new one. Each connection's [`Wire`] also counts the bytes written to it:
//! a try whose connection failed without a byte written after the request was handed over
//! provably never reached the replica (`crate::tries` sends it again, whatever its method).
//!
//! TLS: the TCP connect, then the TLS handshake (ALPN `h2` or `http/1.1`), then the HTTP
//! handshake; `connect_timeout` bounds the TCP connect and the TLS handshake together. A
//! handshake that fails (a certificate that does not verify, a replica that does not speak
//! TLS or does not agree to `h2`) is a connect failure: nothing was sent, the request goes
//! to another replica, and the error says why.
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use shoal_health::ClientTls;
use shoal_health::tls::{ALPN_H2, TlsError, host_of};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::ProxyBody;

/// Pool settings, from the gateway config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolSettings {
    pub(crate) connect_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_idle_per_endpoint: usize,
}

/// Why a connection could not be had. Nothing was sent in either case.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The connect did not finish within the connect timeout.
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    /// Refused, unreachable, or the protocol handshake failed.
    #[error("connect failed: {0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The TLS handshake failed (or TLS could not be set up); the text says why.
    #[error("{0}")]
    Tls(String),
}

impl ConnectError {
    /// The same failure again, for requests that waited on the connect that had it.
    fn again(&self) -> ConnectError {
        match self {
            ConnectError::Timeout(d) => ConnectError::Timeout(*d),
            ConnectError::Failed(e) => ConnectError::Failed(e.to_string().into()),
            ConnectError::Tls(why) => ConnectError::Tls(why.clone()),
        }
    }
}

/// How a TLS service's pool connects: its client config (or why there is none), and the
/// host its replicas are verified as when the setting names none.
#[derive(Debug)]
pub(crate) struct TlsPool {
    /// `Err`: the setting could not be used (e.g. an unreadable CA bundle); every connect
    /// fails with this.
    pub(crate) client: Result<ClientTls, String>,
    /// `localhost` for local replicas; None: the host of the address connected to.
    pub(crate) host: Option<String>,
    /// HTTP/2 (ALPN `h2`, which the replica must agree to).
    pub(crate) h2: bool,
}

/// A connection ready for one request.
#[derive(Debug)]
pub(crate) enum Conn {
    /// HTTP/1.1, exclusively ours until returned.
    H1(http1::SendRequest<ProxyBody>),
    /// HTTP/2, shared; with what is known of its connection.
    H2(http2::SendRequest<ProxyBody>, Arc<Wire>),
}

/// What the gateway sees of one HTTP/2 connection's bytes, shared by the connection (which
/// updates it as it reads and writes), the pool and the tries using it.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    /// Bytes the connection has taken for sending (into the socket, or into TLS).
    written: AtomicU64,
    /// The replica sent GOAWAY, or the connection ended or failed: no new stream may use it.
    closing: AtomicBool,
}

impl Wire {
    /// Bytes written so far: a try reads it before handing its request over; if the
    /// connection then fails with the count unchanged, not a byte of the request was sent.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Whether the connection takes no new stream (GOAWAY received, or it ended).
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }
}

/// A pooled HTTP/2 connection.
#[derive(Debug)]
struct H2Entry {
    sender: http2::SendRequest<ProxyBody>,
    wire: Arc<Wire>,
}

/// The HTTP/2 connections of a pool, by endpoint; shared with their connection tasks, which
/// remove their own entry when they end.
type H2Map = Mutex<HashMap<Box<str>, H2Entry>>;

/// One HTTP/2 connect at a time per endpoint: requests that find no connection wait for the
/// one being made rather than each opening their own (a burst of new streams would
/// otherwise open a connection apiece). Holds the last connect's failure and when it came,
/// so that those waiting get it at once instead of trying again one after the other.
type H2Dial = tokio::sync::Mutex<Option<(Instant, ConnectError)>>;

#[derive(Debug)]
struct Idle {
    sender: http1::SendRequest<ProxyBody>,
    since: Instant,
}

/// An idle connection of the HTTP/1.1 relay (`crate::relay`): a plain socket between
/// two exchanges.
#[derive(Debug)]
struct IdleSocket {
    stream: TcpStream,
    since: Instant,
}

/// The pools of every endpoint.
#[derive(Debug)]
pub(crate) struct Upstreams {
    pub(crate) settings: PoolSettings,
    /// TLS to the replicas (a TLS service's own pool); None: plain TCP.
    tls: Option<TlsPool>,
    idle: Mutex<HashMap<Box<str>, Vec<Idle>>>,
    sockets: Mutex<HashMap<Box<str>, Vec<IdleSocket>>>,
    h2: Arc<H2Map>,
    h2_dial: Mutex<HashMap<Box<str>, Arc<H2Dial>>>,
}

impl Upstreams {
    pub(crate) fn new(settings: PoolSettings) -> Arc<Upstreams> {
        Upstreams::build(settings, None)
    }

    /// A pool whose connections are TLS.
    pub(crate) fn with_tls(settings: PoolSettings, tls: TlsPool) -> Arc<Upstreams> {
        Upstreams::build(settings, Some(tls))
    }

    fn build(settings: PoolSettings, tls: Option<TlsPool>) -> Arc<Upstreams> {
        let pool = Arc::new(Upstreams {
            settings,
            tls,
            idle: Mutex::default(),
            sockets: Mutex::default(),
            h2: Arc::default(),
            h2_dial: Mutex::default(),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sweep(Arc::downgrade(&pool)));
        }
        pool
    }

    /// The TLS settings of this pool, if its connections are TLS.
    pub(crate) fn tls(&self) -> Option<&TlsPool> {
        self.tls.as_ref()
    }

    /// A connection to `addr` (HTTP/2 if `h2`): a pooled one if available, else a new one.
    pub(crate) async fn checkout(&self, addr: &str, h2: bool) -> Result<Conn, ConnectError> {
        if h2 {
            return self
                .checkout_h2(addr)
                .await
                .map(|(sender, wire)| Conn::H2(sender, wire));
        }
        while let Some(mut sender) = self.pop_idle(addr) {
            // Usually ready at once; waits only if the last response is still being wound up.
            if sender.ready().await.is_ok() {
                return Ok(Conn::H1(sender));
            }
        }
        let sender = match &self.tls {
            None => handshake_h1(self.connect(addr).await?).await?,
            Some(tls) => handshake_h1(self.connect_tls(addr, tls).await?).await?,
        };
        Ok(Conn::H1(sender))
    }

    /// Give an HTTP/1.1 connection back after its response was read to the end.
    pub(crate) fn checkin(&self, addr: &str, sender: http1::SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = match idle.get_mut(addr) {
            Some(list) => list,
            None => idle.entry(addr.into()).or_default(),
        };
        if list.len() < self.settings.max_idle_per_endpoint {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    fn pop_idle(&self, addr: &str) -> Option<http1::SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(addr)?;
        // Most recently used first: it is the likeliest to still be open.
        while let Some(entry) = list.pop() {
            if !entry.sender.is_closed() && entry.since.elapsed() < self.settings.idle_timeout {
                return Some(entry.sender);
            }
        }
        None
    }

    /// A plain socket to `addr` for the relay, and whether it was pooled (a pooled one may
    /// turn out closed by the replica once used).
    pub(crate) async fn checkout_socket(
        &self,
        addr: &str,
    ) -> Result<(TcpStream, bool), ConnectError> {
        loop {
            let popped = {
                let mut idle = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
                idle.get_mut(addr).and_then(Vec::pop)
            };
            // Too old ones are the sweeper's (within half the idle timeout); one a replica
            // closed meanwhile is caught here or, after sending, by the tries.
            let Some(entry) = popped else { break };
            // Nothing may be readable on an idle connection: end of stream means the replica
            // closed it. No system call unless the socket was reported readable.
            let mut probe = [0u8; 1];
            match entry.stream.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Ok((entry.stream, true));
                }
                _ => continue,
            }
        }
        let io = self.connect(addr).await?;
        Ok((io.into_inner(), false))
    }

    /// Give a relay socket back, its last response read to the end.
    pub(crate) fn checkin_socket(&self, addr: &str, stream: TcpStream) {
        let mut idle = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        let list = match idle.get_mut(addr) {
            Some(list) => list,
            None => idle.entry(addr.into()).or_default(),
        };
        if list.len() < self.settings.max_idle_per_endpoint {
            list.push(IdleSocket {
                stream,
                since: Instant::now(),
            });
        }
    }

    async fn checkout_h2(
        &self,
        addr: &str,
    ) -> Result<(http2::SendRequest<ProxyBody>, Arc<Wire>), ConnectError> {
        if let Some(pooled) = self.pooled_h2(addr) {
            return Ok(pooled);
        }
        let gate = {
            let mut dial = self.h2_dial.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(dial.entry(addr.into()).or_default())
        };
        let waited_from = Instant::now();
        let mut last_failure = gate.lock().await;
        // Made, or failed, by the request this one waited for.
        if let Some(pooled) = self.pooled_h2(addr) {
            return Ok(pooled);
        }
        if let Some((at, e)) = last_failure.as_ref()
            && *at >= waited_from
        {
            return Err(e.again());
        }
        let wire = Arc::new(Wire::default());
        let connected = match &self.tls {
            None => match self.connect(addr).await {
                Ok(io) => {
                    let io = Watched::new(io.into_inner(), &wire);
                    handshake_h2(TokioIo::new(io), addr, &wire, &self.h2).await
                }
                Err(e) => Err(e),
            },
            Some(tls) => match self.connect_tls(addr, tls).await {
                Ok(io) => {
                    let io = Watched::new(io.into_inner(), &wire);
                    handshake_h2(TokioIo::new(io), addr, &wire, &self.h2).await
                }
                Err(e) => Err(e),
            },
        };
        let sender = match connected {
            Ok(sender) => sender,
            Err(e) => {
                *last_failure = Some((Instant::now(), e.again()));
                return Err(e);
            }
        };
        *last_failure = None;
        self.h2.lock().unwrap_or_else(|e| e.into_inner()).insert(
            addr.into(),
            H2Entry {
                sender: sender.clone(),
                wire: Arc::clone(&wire),
            },
        );
        Ok((sender, wire))
    }

    /// The pooled HTTP/2 connection to `addr` if it can carry new streams (one that cannot
    /// is dropped from the pool).
    fn pooled_h2(&self, addr: &str) -> Option<(http2::SendRequest<ProxyBody>, Arc<Wire>)> {
        let mut h2 = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        match h2.get(addr) {
            Some(e) if !e.wire.is_closing() && !e.sender.is_closed() => {
                Some((e.sender.clone(), Arc::clone(&e.wire)))
            }
            Some(_) => {
                drop(h2.remove(addr));
                None
            }
            None => None,
        }
    }

    /// Take the HTTP/2 connection whose [`Wire`] is `wire` out of the pool (if still there):
    /// a try found it unable to carry new streams.
    pub(crate) fn evict_h2(&self, addr: &str, wire: &Arc<Wire>) {
        wire.close();
        evict(&self.h2, addr, wire);
    }

    async fn connect(&self, addr: &str) -> Result<TokioIo<TcpStream>, ConnectError> {
        let deadline = Instant::now() + self.settings.connect_timeout;
        self.connect_by(addr, deadline).await.map(TokioIo::new)
    }

    async fn connect_by(&self, addr: &str, deadline: Instant) -> Result<TcpStream, ConnectError> {
        let connecting = async {
            match addr.parse::<SocketAddr>() {
                Ok(a) => TcpStream::connect(a).await,
                Err(_) => TcpStream::connect(addr).await, // host name: resolved by tokio
            }
        };
        let stream = tokio::time::timeout_at(deadline, connecting)
            .await
            .map_err(|_| ConnectError::Timeout(self.settings.connect_timeout))?
            .map_err(|e| ConnectError::Failed(Box::new(e)))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// TCP, then the TLS handshake, both within the connect timeout.
    async fn connect_tls(
        &self,
        addr: &str,
        tls: &TlsPool,
    ) -> Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>, ConnectError> {
        let client = tls
            .client
            .as_ref()
            .map_err(|e| ConnectError::Tls(e.clone()))?;
        let deadline = Instant::now() + self.settings.connect_timeout;
        let tcp = self.connect_by(addr, deadline).await?;
        let host = tls.host.as_deref().unwrap_or_else(|| host_of(addr));
        let stream = tokio::time::timeout_at(deadline, client.handshake(tcp, host))
            .await
            .map_err(|_| ConnectError::Timeout(self.settings.connect_timeout))?
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        // HTTP/2 over TLS is only spoken once both ends agreed on it by ALPN (RFC 9113 §3.2).
        if tls.h2 && stream.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
            let why = match stream.get_ref().1.alpn_protocol() {
                None => "it negotiated no protocol".to_owned(),
                Some(p) => format!("it chose {:?}", String::from_utf8_lossy(p)),
            };
            let e = TlsError::Handshake(format!(
                "the replica did not agree to HTTP/2 by ALPN ({why}); use `protocol: http1` \
                 if it only speaks HTTP/1.1"
            ));
            return Err(ConnectError::Tls(e.to_string()));
        }
        Ok(TokioIo::new(stream))
    }
}

/// The HTTP/1.1 handshake on a new connection; its driver runs in a task.
async fn handshake_h1<I>(io: I) -> Result<http1::SendRequest<ProxyBody>, ConnectError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| ConnectError::Failed(Box::new(e)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::trace!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// The HTTP/2 handshake on a new connection to `addr`; its driver runs in a task, which
/// takes the connection out of `pool` when it ends.
async fn handshake_h2<I>(
    io: I,
    addr: &str,
    wire: &Arc<Wire>,
    pool: &Arc<H2Map>,
) -> Result<http2::SendRequest<ProxyBody>, ConnectError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .handshake(io)
        .await
        .map_err(|e| ConnectError::Failed(Box::new(e)))?;
    let (addr, wire_of_task, pool) = (
        Box::<str>::from(addr),
        Arc::clone(wire),
        Arc::downgrade(pool),
    );
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::trace!(error = %e, "upstream h2 connection ended with an error");
        }
        wire_of_task.close();
        if let Some(pool) = pool.upgrade() {
            evict(&pool, &addr, &wire_of_task);
        }
    });
    Ok(sender)
}

/// Remove `addr`'s HTTP/2 connection from `pool` if it is the one of `wire` (a newer one may
/// have replaced it).
fn evict(pool: &H2Map, addr: &str, wire: &Arc<Wire>) {
    let mut h2 = pool.lock().unwrap_or_else(|e| e.into_inner());
    if h2.get(addr).is_some_and(|e| Arc::ptr_eq(&e.wire, wire)) {
        h2.remove(addr);
    }
}

/// Frame type of GOAWAY (RFC 9113 §6.8).
const GOAWAY: u8 = 0x7;

/// Finds GOAWAY frames in the bytes an HTTP/2 server sends, following only the frame layout
/// (RFC 9113 §4.1: a 9-byte header — 24-bit payload length, type, flags, stream id — then
/// the payload). The server's bytes are frames from the first one (its connection preface
/// is a SETTINGS frame, §3.4). Nothing is judged here: hyper's h2 checks every frame, and
/// a connection it finds malformed ends anyway. This only tells, as soon as a GOAWAY's
/// header has arrived, that the connection takes no new stream.
#[derive(Debug, Default)]
struct FrameScan {
    /// Payload bytes of the current frame not yet seen.
    skip: usize,
    /// The frame header being read, and how much of it has arrived.
    head: [u8; 9],
    got: usize,
}

impl FrameScan {
    /// Read `bytes`, the next the server sent; true if a GOAWAY frame header was in them.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        loop {
            let n = self.skip.min(bytes.len());
            self.skip -= n;
            bytes = &bytes[n..];
            if bytes.is_empty() {
                return false;
            }
            let n = (self.head.len() - self.got).min(bytes.len());
            self.head[self.got..self.got + n].copy_from_slice(&bytes[..n]);
            self.got += n;
            bytes = &bytes[n..];
            if self.got == self.head.len() {
                self.got = 0;
                if self.head[3] == GOAWAY {
                    return true;
                }
                let [a, b, c, ..] = self.head;
                self.skip = u32::from_be_bytes([0, a, b, c]) as usize;
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// An HTTP/2 connection's byte stream, reporting to its [`Wire`]: bytes written, and
    /// the first sign that it takes no new stream (a GOAWAY, its end, an error).
    struct Watched<S> {
        #[pin]
        inner: S,
        wire: Arc<Wire>,
        scan: FrameScan,
    }
}

impl<S> Watched<S> {
    fn new(inner: S, wire: &Arc<Wire>) -> Watched<S> {
        Watched {
            inner,
            wire: Arc::clone(wire),
            scan: FrameScan::default(),
        }
    }
}

impl<S: AsyncRead> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        // Nothing read into room for something is the end of the stream.
        let room = buf.remaining() > 0;
        let polled = this.inner.poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if this.wire.is_closing() => {}
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if (new.is_empty() && room) || this.scan.feed(new) {
                    this.wire.close();
                }
            }
            Poll::Ready(Err(_)) => this.wire.close(),
            Poll::Pending => {}
        }
        polled
    }
}

impl<S: AsyncWrite> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write(cx, buf);
        note_write(this.wire, &polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write_vectored(cx, bufs);
        note_write(this.wire, &polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

fn note_write(wire: &Wire, polled: &Poll<io::Result<usize>>) {
    match polled {
        Poll::Ready(Ok(n)) => {
            wire.written.fetch_add(*n as u64, Ordering::AcqRel);
        }
        Poll::Ready(Err(_)) => wire.close(),
        Poll::Pending => {}
    }
}

/// Close idle connections older than the idle timeout; stops when the pool is dropped.
async fn sweep(pool: Weak<Upstreams>) {
    let period = match pool.upgrade() {
        Some(p) => (p.settings.idle_timeout / 2).max(Duration::from_millis(100)),
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let timeout = pool.settings.idle_timeout;
        let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        for list in idle.values_mut() {
            list.retain(|e| !e.sender.is_closed() && e.since.elapsed() < timeout);
        }
        idle.retain(|_, list| !list.is_empty());
        drop(idle);
        let mut sockets = pool.sockets.lock().unwrap_or_else(|e| e.into_inner());
        for list in sockets.values_mut() {
            list.retain(|e| e.since.elapsed() < timeout);
        }
        sockets.retain(|_, list| !list.is_empty());
        drop(sockets);
        pool.h2
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, e| !e.sender.is_closed() && !e.wire.is_closing());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PoolSettings {
        PoolSettings {
            connect_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(60),
            max_idle_per_endpoint: 2,
        }
    }

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend([kind, 0, 0, 0, 0, 0]);
        f.extend(payload);
        f
    }

    #[test]
    fn frame_scan_finds_goaway_after_other_frames() {
        // RFC 9113 §4.1: SETTINGS, DATA whose payload holds GOAWAY's type byte, then GOAWAY.
        let mut bytes = frame(0x4, &[]);
        bytes.extend(frame(0x0, &[0x7; 40]));
        let before_goaway = bytes.len();
        bytes.extend(frame(GOAWAY, &[0; 8]));
        assert!(!FrameScan::default().feed(&bytes[..before_goaway]));
        assert!(FrameScan::default().feed(&bytes));
        // The same bytes one at a time: a header split across reads is still one header.
        let mut scan = FrameScan::default();
        let found: Vec<usize> = (0..bytes.len())
            .filter(|&i| scan.feed(&bytes[i..=i]))
            .collect();
        assert_eq!(
            found,
            vec![before_goaway + 8],
            "found at the header's last byte"
        );
    }

    #[test]
    fn frame_scan_skips_long_payloads_across_reads() {
        // A payload of the largest length a 24-bit field allows, read in pieces.
        let len = (1usize << 24) - 1;
        let mut head = (len as u32).to_be_bytes()[1..].to_vec();
        head.extend([0x0, 0, 0, 0, 0, 1]);
        let mut scan = FrameScan::default();
        assert!(!scan.feed(&head));
        let chunk = vec![0x7u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            assert!(!scan.feed(&chunk[..n]), "payload bytes are not headers");
            left -= n;
        }
        assert!(scan.feed(&frame(GOAWAY, &[0; 8])));
    }

    #[tokio::test]
    async fn refused_connect_is_a_connect_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pool = Upstreams::new(settings());
        let err = pool
            .checkout(&format!("127.0.0.1:{port}"), false)
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Failed(_)), "{err:?}");
    }

    #[tokio::test]
    async fn idle_connections_are_reused_and_capped() {
        // The replica accepts exactly three connections, then stops listening: a checkout
        // that succeeds afterwards can only be a reused connection.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut held = Vec::new();
            for _ in 0..3 {
                held.push(listener.accept().await.unwrap().0);
            }
            drop(listener);
            std::future::pending::<()>().await;
        });
        let pool = Upstreams::new(settings());
        let mut conns = Vec::new();
        for _ in 0..3 {
            match pool.checkout(&addr, false).await.unwrap() {
                Conn::H1(s) => conns.push(s),
                Conn::H2(..) => unreachable!(),
            }
        }
        for s in conns {
            pool.checkin(&addr, s);
        }
        assert_eq!(
            pool.idle.lock().unwrap()[addr.as_str()].len(),
            2,
            "capped at max idle"
        );
        assert!(
            pool.checkout(&addr, false).await.is_ok(),
            "reused an idle connection"
        );
        assert!(
            pool.checkout(&addr, false).await.is_ok(),
            "reused the second one"
        );
        assert!(
            pool.checkout(&addr, false).await.is_err(),
            "none left: a new connect is refused"
        );
    }
}
