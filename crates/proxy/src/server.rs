//! Listeners: bind entrypoints, accept connections, serve HTTP/1.1 and HTTP/2 (h2c prior
//! knowledge) on each, and shut down gracefully.
//!
//! An entrypoint is one of three kinds. Plain: the relay first, hyper when the relay hands the
//! connection over. TLS ([`crate::tls`]): the handshake (bounded by `header_read`, with the
//! certificates current when it starts), then hyper's HTTP/2 when ALPN chose `h2`, else the
//! relay over TLS, handing over to hyper as on a plain entrypoint. Redirect (`redirect_to`): hyper answering
//! every request with a 308 to HTTPS ([`crate::https_redirect`]), nothing routed, but counted
//! in the request metrics and the access log as any request. A TLS handshake that fails or
//! times out is counted per entrypoint (`shoal_tls_handshake_failures_total`). All three
//! share `max_connections`, shutdown and draining.
//!
//! The client-side settings ([`ServeSettings`]) change on reload ([`LiveSettings::apply`]):
//! they are swapped whole with the hyper builders made from them; a connection takes the
//! current ones when it is accepted, and the relay looks again before each request (one
//! pointer comparison while nothing changed), so a new `client_idle`, `header_read`,
//! `body_idle`, `max_head_size` or `max_headers` applies to new connections and to the next
//! request on relayed ones (a connection already handed to hyper keeps its builder's).
//! `max_connections` resizes each entrypoint's semaphore: a larger limit at once, a smaller
//! one as connections close (none is closed for it).
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as _;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use shoal_config::Entrypoint;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::body::ProxyBody;
use crate::forward::Https;
use crate::gateway::{ConnInfo, Gateway};
use crate::https_redirect::RedirectTarget;
use crate::relay::{self, ClientStream};
use crate::tls::{TlsEntrypoint, TlsEntrypoints};

/// Why an entrypoint could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (entrypoint `{entrypoint}`): {reason}")]
pub struct BindError {
    /// Entrypoint name.
    pub entrypoint: String,
    /// Address.
    pub addr: SocketAddr,
    /// What went wrong, in words.
    pub reason: String,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// Bound, not yet serving, listeners.
#[derive(Debug)]
pub struct Listeners {
    bound: Vec<Bound>,
}

#[derive(Debug)]
struct Bound {
    name: Arc<str>,
    listener: TcpListener,
    tls: bool,
    /// `redirect_to`: the target entrypoint's name and configured port.
    redirect: Option<(String, u16)>,
}

impl Listeners {
    /// Bind every entrypoint (port 0 picks a free port). Fails on the first address that
    /// cannot be bound, saying which and why.
    pub fn bind(entrypoints: &[Entrypoint]) -> Result<Listeners, BindError> {
        let mut bound = Vec::new();
        for ep in entrypoints {
            let listener = bind_one(ep.listen).map_err(|source| BindError {
                entrypoint: ep.name.clone(),
                addr: ep.listen,
                reason: match source.kind() {
                    io::ErrorKind::AddrInUse => {
                        "the address is already in use (another shoal, or another server?)".into()
                    }
                    io::ErrorKind::PermissionDenied => {
                        "permission denied (ports below 1024 need privileges)".into()
                    }
                    io::ErrorKind::AddrNotAvailable => {
                        "no such local address on this machine".into()
                    }
                    _ => source.to_string(),
                },
                source,
            })?;
            bound.push(Bound {
                name: ep.name.as_str().into(),
                listener,
                tls: ep.tls.is_some(),
                redirect: ep
                    .redirect_to
                    .as_ref()
                    .map(|r| (r.entrypoint.clone(), r.port)),
            });
        }
        Ok(Listeners { bound })
    }

    /// The bound addresses, by entrypoint name.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.bound
            .iter()
            .filter_map(|b| {
                b.listener
                    .local_addr()
                    .ok()
                    .map(|a| (b.name.to_string(), a))
            })
            .collect()
    }
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

/// Client-side connection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeSettings {
    /// Idle keep-alive connections are closed after this.
    pub client_idle: Duration,
    /// From a request head's first byte to its end (and from accept to the first request);
    /// then 408 and close.
    pub header_read: Duration,
    /// Longest pause in a request body; then 408 and close.
    pub body_idle: Duration,
    /// Longest request head; 431 beyond.
    pub max_head_size: usize,
    /// Most header fields in a request head; 431 beyond.
    pub max_headers: usize,
    /// Most open client connections per entrypoint; beyond, new ones wait to be accepted.
    pub max_connections: usize,
}

impl ServeSettings {
    /// The settings a validated stack file asks for.
    pub fn of(gateway: &shoal_config::Gateway) -> ServeSettings {
        let (t, l) = (&gateway.timeouts, &gateway.limits);
        ServeSettings {
            client_idle: t.client_idle,
            header_read: t.header_read,
            body_idle: t.body_idle,
            max_head_size: l.max_head_size,
            max_headers: l.max_headers,
            max_connections: l.max_connections,
        }
    }
}

/// The client-side settings in force and the hyper builders made from them.
pub(crate) struct Live {
    pub(crate) settings: ServeSettings,
    builders: Builders,
}

impl Live {
    fn new(settings: ServeSettings) -> Live {
        Live {
            settings,
            builders: Builders::new(&settings),
        }
    }
}

/// What a connection reads its settings from: the [`Live`] ones now, re-read (and the
/// `Arc` swapped) only when a reload changed them.
pub(crate) type SettingsCache<'a> = arc_swap::Cache<&'a ArcSwap<Live>, Arc<Live>>;

/// The serving listeners' client-side settings, changed on reload. Cheap to clone.
#[derive(Clone)]
pub struct LiveSettings {
    live: Arc<ArcSwap<Live>>,
    /// Each entrypoint's `max_connections`.
    slots: Arc<[Arc<Slots>]>,
}

impl std::fmt::Debug for LiveSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSettings")
            .field("settings", &self.current())
            .finish_non_exhaustive()
    }
}

impl LiveSettings {
    /// The settings in force.
    pub fn current(&self) -> ServeSettings {
        self.live.load().settings
    }

    /// Serve with `settings` from now on: new connections, and the next request of each
    /// relayed one; `max_connections` resizes every entrypoint's limit (see the
    /// [module documentation](self)). Nothing happens if they are the same.
    pub fn apply(&self, settings: ServeSettings) {
        if self.current() == settings {
            return;
        }
        self.live.store(Arc::new(Live::new(settings)));
        for slots in self.slots.iter() {
            slots.resize(settings.max_connections);
        }
    }
}

/// An entrypoint's `max_connections`: a semaphore with one permit per connection.
struct Slots {
    semaphore: Arc<Semaphore>,
    /// The limit the semaphore is being brought to.
    size: Mutex<usize>,
}

impl Slots {
    fn new(size: usize) -> Arc<Slots> {
        Arc::new(Slots {
            semaphore: Arc::new(Semaphore::new(size)),
            size: Mutex::new(size),
        })
    }

    /// A larger limit adds permits at once. A smaller one takes away free permits now and
    /// the rest as connections close (a task waits for them, ahead of the accept loop in
    /// the semaphore's queue): open connections are never closed for it.
    fn resize(&self, new: usize) {
        let mut size = self.size.lock().unwrap_or_else(|e| e.into_inner());
        if new > *size {
            self.semaphore.add_permits(new - *size);
        } else if new < *size {
            let excess = *size - new;
            let missing = excess - self.semaphore.forget_permits(excess);
            if missing > 0
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                let semaphore = Arc::clone(&self.semaphore);
                let n = u32::try_from(missing).unwrap_or(u32::MAX);
                runtime.spawn(async move {
                    if let Ok(permits) = semaphore.acquire_many_owned(n).await {
                        permits.forget();
                    }
                });
            }
        }
        *size = new;
    }
}

/// Serving listeners. Dropping it does not stop them; call [`Serving::shutdown`].
#[derive(Debug)]
pub struct Serving {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    settings: LiveSettings,
}

impl Serving {
    /// Start serving `listeners` with `gateway`; TLS entrypoints take their certificates
    /// from `tls` (loaded from the same entrypoints).
    ///
    /// # Panics
    ///
    /// If an entrypoint with `tls` has no certificates in `tls`.
    pub fn start(
        gateway: Arc<Gateway>,
        listeners: Listeners,
        settings: ServeSettings,
        tls: &TlsEntrypoints,
    ) -> Serving {
        let (stop, stopped) = watch::channel(false);
        let addrs = listeners.local_addrs();
        let live = Arc::new(ArcSwap::from_pointee(Live::new(settings)));
        let slots: Arc<[Arc<Slots>]> = listeners
            .bound
            .iter()
            .map(|_| Slots::new(settings.max_connections))
            .collect();
        let tasks = listeners
            .bound
            .into_iter()
            .zip(slots.iter().cloned())
            .map(|(bound, slots)| {
                let kind = if let Some((target, port)) = &bound.redirect {
                    // The port the target really listens on (tests bind port 0).
                    let port = addrs
                        .iter()
                        .find(|(name, _)| name == target)
                        .map_or(*port, |(_, addr)| addr.port());
                    Kind::Redirect(RedirectTarget::new(port))
                } else if bound.tls {
                    let Some(ep) = tls.get(&bound.name) else {
                        panic!(
                            "entrypoint `{}` has `tls` but no certificates were loaded for it",
                            bound.name
                        );
                    };
                    Kind::Tls(ep.clone())
                } else {
                    Kind::Plain
                };
                tokio::spawn(accept_loop(
                    gateway.clone(),
                    bound.name,
                    bound.listener,
                    kind,
                    (Arc::clone(&live), slots),
                    stopped.clone(),
                ))
            })
            .collect();
        Serving {
            stop,
            tasks,
            settings: LiveSettings { live, slots },
        }
    }

    /// The client-side settings, to change them on reload.
    pub fn settings(&self) -> LiveSettings {
        self.settings.clone()
    }

    /// Stop accepting, let in-flight requests finish for at most `grace`, then return.
    /// Returns whether everything finished within the grace period.
    pub async fn shutdown(self, grace: Duration) -> bool {
        let _ = self.stop.send(true);
        // Each accept loop drains its own connections; bound the whole wait here.
        let all = futures_util::future::join_all(self.tasks);
        tokio::time::timeout(grace, all).await.is_ok()
    }
}

/// What an entrypoint does with its connections.
#[derive(Debug, Clone)]
enum Kind {
    /// HTTP: the relay, then hyper.
    Plain,
    /// HTTPS.
    Tls(Arc<TlsEntrypoint>),
    /// HTTP answered with redirects to HTTPS.
    Redirect(RedirectTarget),
}

/// The connection builders of hyper, made from the settings.
struct Builders {
    /// HTTP/1.1 (with upgrades) or HTTP/2, by the connection preface.
    auto: auto::Builder<TokioExecutor>,
    /// HTTP/2 only (ALPN chose `h2`).
    h2: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(settings: &ServeSettings) -> Builders {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read)
            .max_headers(settings.max_headers)
            // hyper answers 431 to a head that does not fit its buffer (8 KiB at least).
            .max_buf_size(settings.max_head_size.max(8 * 1024))
            .http2()
            .timer(TokioTimer::new())
            // `Date` is the gateway's to add (`Gateway::handle`): never in a trailers-only
            // gRPC answer, where it would be trailing metadata.
            .auto_date_header(false)
            .max_concurrent_streams(1024);
        Builders {
            h2: builder.clone().http2_only(),
            auto: builder,
        }
    }
}

async fn accept_loop(
    gateway: Arc<Gateway>,
    entrypoint: Arc<str>,
    listener: TcpListener,
    kind: Kind,
    (live, slots): (Arc<ArcSwap<Live>>, Arc<Slots>),
    mut stopped: watch::Receiver<bool>,
) {
    let entrypoint_id = gateway.entrypoint_id(&entrypoint);
    let open = gateway.connections_gauge(&entrypoint);
    let handshake_failures =
        matches!(kind, Kind::Tls(_)).then(|| gateway.tls_handshake_failures(&entrypoint));
    // Every connection task holds a sender; once they are all gone, so are the connections.
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    // At most `max_connections` open: past it, new connections wait in the listen backlog
    // (as HAProxy's maxconn) rather than being accepted and starved.
    let slots = Arc::clone(&slots.semaphore);
    loop {
        let (stream, client, slot) = tokio::select! {
            biased;
            _ = stopped.changed() => break,
            accepted = accept(&listener, &slots) => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let conn = Connection {
            gateway: gateway.clone(),
            info: ConnInfo {
                client,
                entrypoint: entrypoint.clone(),
                entrypoint_id,
                tls: matches!(kind, Kind::Tls(_)),
            },
            kind: kind.clone(),
            live: Arc::clone(&live),
            stopped: stopped.clone(),
            handshake_failures: handshake_failures.clone(),
            _slot: slot,
            _open: OpenConnection::new(&open),
            _alive: alive.clone(),
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(conn.serve(stream));
    }
    drop(listener);
    drop(alive);
    let _ = all_closed.recv().await;
}

/// The next connection, once fewer than `max_connections` are open.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> io::Result<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let slot = Arc::clone(slots)
        .acquire_owned()
        .await
        .map_err(io::Error::other)?;
    let (stream, client) = listener.accept().await?;
    Ok((stream, client, slot))
}

/// One client connection and what serving it needs.
struct Connection {
    gateway: Arc<Gateway>,
    info: ConnInfo,
    kind: Kind,
    /// The entrypoints' settings, read as the connection needs them.
    live: Arc<ArcSwap<Live>>,
    stopped: watch::Receiver<bool>,
    /// The entrypoint's count of failed TLS handshakes (TLS entrypoints only).
    handshake_failures: Option<Arc<AtomicU64>>,
    /// Its place among `max_connections`.
    _slot: OwnedSemaphorePermit,
    _open: OpenConnection,
    _alive: mpsc::Sender<()>,
}

impl Connection {
    async fn serve(self, stream: TcpStream) {
        match &self.kind {
            Kind::Plain => self.serve_relayed(stream).await,
            Kind::Tls(ep) => {
                let ep = ep.clone();
                self.serve_tls(stream, &ep).await;
            }
            Kind::Redirect(_) => self.serve_full(stream, false).await,
        }
    }

    /// The relay first; the full HTTP stack if the relay hands the connection over.
    async fn serve_relayed<S: ClientStream>(mut self, stream: S) {
        let live = Arc::clone(&self.live);
        let relayed = relay::serve(
            &self.gateway,
            &self.info,
            stream,
            &mut SettingsCache::new(&*live),
            &mut self.stopped,
        )
        .await;
        if let relay::End::HandOff(read, stream) = relayed {
            // Boxed: most connections never get here, and need not carry its state.
            Box::pin(self.serve_full(Rewind::new(read, stream), false)).await;
        }
    }

    /// The TLS handshake with the entrypoint's current certificates, then HTTP/2 if ALPN
    /// chose `h2`, else HTTP/1.1 by the relay. A handshake that fails or takes longer than
    /// `header_read` closes the connection.
    async fn serve_tls(self, stream: TcpStream, ep: &TlsEntrypoint) {
        let acceptor = tokio_rustls::TlsAcceptor::from(ep.config());
        // A handshake under way at shutdown is finished (it is bounded, and the client may
        // have sent its first request with its last handshake message); the connection is
        // then served or closed by the same shutdown rules as any other.
        let header_read = self.live.load().settings.header_read;
        let handshake = tokio::time::timeout(header_read, acceptor.accept(stream));
        let stream = match handshake.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(client = %self.info.client, error = %e, "TLS handshake failed");
                self.handshake_failed();
                return;
            }
            Err(_) => {
                tracing::debug!(client = %self.info.client, "TLS handshake timed out");
                self.handshake_failed();
                return;
            }
        };
        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            Box::pin(self.serve_full(stream, true)).await;
        } else {
            self.serve_relayed(stream).await;
        }
    }

    /// Count a handshake that failed or timed out on this entrypoint.
    fn handshake_failed(&self) {
        if let Some(failures) = &self.handshake_failures {
            failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// hyper's HTTP/1.1 and HTTP/2 server (HTTP/2 only with `h2_only`), shut down gracefully
    /// when `stopped` says so.
    async fn serve_full<I>(mut self, io: I, h2_only: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let gateway = self.gateway.clone();
        let info = self.info.clone();
        let redirect = match &self.kind {
            Kind::Redirect(target) => Some(target.clone()),
            _ => None,
        };
        let service = service_fn(move |req| {
            let gateway = gateway.clone();
            let info = info.clone();
            let redirect = redirect.clone();
            async move {
                Ok::<_, Infallible>(match redirect {
                    Some(target) => answer_redirect(&gateway, &target, req, &info),
                    None if info.tls => {
                        let mut req = req;
                        req.extensions_mut().insert(Https);
                        gateway.handle(req, &info).await
                    }
                    None => gateway.handle(req, &info).await,
                })
            }
        });
        let io = TokioIo::new(io);
        // The builders in force now (a reload may have changed them since the accept).
        let live = self.live.load_full();
        // The two connection types share no trait; the same steps for each.
        macro_rules! drive {
            ($conn:expr) => {{
                let conn = $conn;
                tokio::pin!(conn);
                if *self.stopped.borrow() {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                } else {
                    tokio::select! {
                        ended = conn.as_mut() => ended,
                        _ = self.stopped.changed() => {
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    }
                }
            }};
        }
        let ended = if h2_only {
            drive!(live.builders.h2.serve_connection(io, service))
        } else {
            drive!(
                live.builders
                    .auto
                    .serve_connection_with_upgrades(io, service)
            )
        };
        if let Err(e) = ended {
            tracing::trace!(error = %e, "client connection ended with an error");
        }
    }
}

/// The answer of a `redirect_to` entrypoint (a 308, or a 400 without a valid host), counted
/// and logged as every request is: on its entrypoint, with no router or service, since
/// nothing is routed.
fn answer_redirect<B>(
    gateway: &Gateway,
    target: &RedirectTarget,
    req: Request<B>,
    info: &ConnInfo,
) -> Response<ProxyBody> {
    let table = gateway.table();
    let (parts, _body) = req.into_parts();
    let begun = gateway.begin_unrouted(&table, &parts, info);
    let resp = target.answer(&Request::from_parts(parts, ()));
    let size = resp.body().size_hint().exact();
    gateway.finish(begun, info, resp.status(), size, None);
    resp
}

pin_project_lite::pin_project! {
    /// A client connection with bytes already read in front of it (by the relay).
    struct Rewind<S> {
        read: Bytes,
        #[pin]
        stream: S,
    }
}

impl<S> Rewind<S> {
    fn new(read: Bytes, stream: S) -> Rewind<S> {
        Rewind { read, stream }
    }
}

impl<S: AsyncRead> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if this.read.is_empty() {
            return this.stream.poll_read(cx, buf);
        }
        let n = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().stream.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().stream.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().stream.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().stream.poll_shutdown(cx)
    }
}

/// Counts one open connection until dropped.
struct OpenConnection(Arc<AtomicI64>);

impl OpenConnection {
    fn new(gauge: &Arc<AtomicI64>) -> OpenConnection {
        gauge.fetch_add(1, Ordering::Relaxed);
        OpenConnection(gauge.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The permits the semaphore could hand out if every connection closed.
    fn capacity(slots: &Slots, held: usize) -> usize {
        slots.semaphore.available_permits() + held
    }

    #[tokio::test]
    async fn max_connections_grows_at_once_and_shrinks_as_connections_close() {
        let slots = Slots::new(4);
        let held: Vec<_> = (0..3)
            .map(|_| {
                Arc::clone(&slots.semaphore)
                    .try_acquire_owned()
                    .expect("a slot")
            })
            .collect();
        slots.resize(1);
        // One free permit forgotten now; two more to take as connections close.
        assert_eq!(slots.semaphore.available_permits(), 0);
        drop(held);
        tokio::task::yield_now().await;
        for _ in 0..100 {
            if slots.semaphore.available_permits() == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(capacity(&slots, 0), 1);
        slots.resize(6);
        assert_eq!(capacity(&slots, 0), 6);
        slots.resize(6);
        assert_eq!(capacity(&slots, 0), 6);
    }
}
