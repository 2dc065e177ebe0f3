//! Listeners: bind entrypoints, accept connections, serve HTTP/1.1 and HTTP/2 (h2c prior
//! knowledge) on each, and shut down gracefully.
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use shoal_config::Entrypoint;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::gateway::{ConnInfo, Gateway};

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
    bound: Vec<(Arc<str>, TcpListener)>,
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
            bound.push((ep.name.as_str().into(), listener));
        }
        Ok(Listeners { bound })
    }

    /// The bound addresses, by entrypoint name.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.bound
            .iter()
            .filter_map(|(n, l)| l.local_addr().ok().map(|a| (n.to_string(), a)))
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
#[derive(Debug, Clone, Copy)]
pub struct ServeSettings {
    /// Idle keep-alive connections (and slow request headers) are closed after this.
    pub client_idle: Duration,
}

/// Serving listeners. Dropping it does not stop them; call [`Serving::shutdown`].
#[derive(Debug)]
pub struct Serving {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Serving {
    /// Start serving `listeners` with `gateway`.
    pub fn start(gateway: Arc<Gateway>, listeners: Listeners, settings: ServeSettings) -> Serving {
        let (stop, stopped) = watch::channel(false);
        let tasks = listeners
            .bound
            .into_iter()
            .map(|(name, listener)| {
                tokio::spawn(accept_loop(
                    gateway.clone(),
                    name,
                    listener,
                    settings,
                    stopped.clone(),
                ))
            })
            .collect();
        Serving { stop, tasks }
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

async fn accept_loop(
    gateway: Arc<Gateway>,
    entrypoint: Arc<str>,
    listener: TcpListener,
    settings: ServeSettings,
    mut stopped: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(settings.client_idle)
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024);
    let builder = Arc::new(builder);
    let entrypoint_id = gateway.entrypoint_id(&entrypoint);
    let open = gateway.connections_gauge(&entrypoint);
    loop {
        let (stream, client) = tokio::select! {
            biased;
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let info = ConnInfo {
            client,
            entrypoint: entrypoint.clone(),
            entrypoint_id,
        };
        serve_connection(&gateway, info, &open, &builder, &graceful, stream);
    }
    drop(listener);
    graceful.shutdown().await;
}

fn serve_connection(
    gateway: &Arc<Gateway>,
    info: ConnInfo,
    open: &Arc<AtomicI64>,
    builder: &Arc<auto::Builder<TokioExecutor>>,
    graceful: &GracefulShutdown,
    stream: TcpStream,
) {
    let _ = stream.set_nodelay(true);
    open.fetch_add(1, Ordering::Relaxed);
    let open = OpenConnection(open.clone());
    let gateway = gateway.clone();
    let service = service_fn(move |req| {
        let gateway = gateway.clone();
        let info = info.clone();
        async move { Ok::<_, Infallible>(gateway.handle(req, &info).await) }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    let conn = graceful.watch(conn.into_owned());
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::trace!(error = %e, "client connection ended with an error");
        }
        drop(open);
    });
}

/// Counts one open connection until dropped.
struct OpenConnection(Arc<AtomicI64>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
