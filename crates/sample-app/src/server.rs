//! The accept loop and graceful shutdown.
//!
//! Shutdown, in order: stop accepting (the listener is dropped, so new connections are
//! refused); tell every connection to finish gracefully (HTTP/1 closes once the current
//! response is sent, idle keep-alive connections close at once, HTTP/2 sends GOAWAY) and
//! every WebSocket session to close; wait for all of that, at most `shutdown_grace`; then
//! abort whatever is left.
//!
//! With TLS, each accepted connection does its handshake in its own task (ALPN offers `h2`
//! and `http/1.1`; the server speaks whichever the bytes that follow are, as without TLS).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use http::HeaderValue;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::routes::{self, State, TlsInfo};
use crate::{Options, TlsFiles};

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A running instance.
///
/// Dropping it without calling [`SampleApp::shutdown`] also starts a graceful shutdown, but
/// nobody waits for it to end.
#[derive(Debug)]
pub struct SampleApp {
    local_addr: SocketAddr,
    state: Arc<State>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

impl SampleApp {
    /// Sleep `startup_delay`, bind, start serving in a tokio task; returns once listening.
    ///
    /// Fails if the address cannot be bound, or if `name` cannot be sent as a header value.
    pub async fn start(opts: Options) -> std::io::Result<SampleApp> {
        State::name_header(&opts.name)?;
        let tls = opts.tls.as_ref().map(acceptor).transpose()?;
        tokio::time::sleep(opts.startup_delay).await;
        let listener = TcpListener::bind(opts.listen).await?;
        let local_addr = listener.local_addr()?;
        let state = Arc::new(
            State::new(&opts.name, opts.replica, local_addr.port())?.with_capacity(opts.capacity),
        );
        let (stop, stopped) = oneshot::channel();
        let span = tracing::info_span!("sample-app", app = %opts.label(), %local_addr);
        let server = tokio::spawn(tracing::Instrument::instrument(
            serve(
                listener,
                tls,
                Arc::clone(&state),
                stopped,
                opts.shutdown_grace,
            ),
            span,
        ));
        // At debug: `shoal sample-app` announces it on stdout (`run_until`), and a replica's
        // log would otherwise say it twice.
        tracing::debug!(app = %opts.label(), %local_addr, "sample-app listening");
        Ok(SampleApp {
            local_addr,
            state,
            stop,
            server,
        })
    }

    /// The address the instance listens on (with the port picked when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Requests currently being served: from when a request is received until its response
    /// body has been sent. WebSocket sessions do not count once upgraded.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.get()
    }

    /// Stop accepting, let in-flight requests finish (bounded by `shutdown_grace`), then
    /// return. Connections idle in keep-alive are closed at once; what is still running when
    /// the grace period ends is aborted.
    pub async fn shutdown(self) {
        // The server task only ends after `stop` is sent or dropped, so this cannot fail
        // unless the task is already gone, in which case there is nothing to stop.
        let _ = self.stop.send(());
        if let Err(error) = self.server.await
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

/// The TLS side of `files`: TLS 1.2 and 1.3 with aws-lc-rs, ALPN `h2` then `http/1.1`.
/// An unreadable or invalid file is an `InvalidInput` error naming it.
fn acceptor(files: &TlsFiles) -> std::io::Result<TlsAcceptor> {
    let invalid = |what: &std::path::Path, e: &dyn std::fmt::Display| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("sample-app TLS {}: {e}", what.display()),
        )
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(&files.cert, &e))?;
    if certs.is_empty() {
        return Err(invalid(&files.cert, &"no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| invalid(&files.key, &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| invalid(&files.cert, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    mut stop: oneshot::Receiver<()>,
    grace: Duration,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // Sent by `shutdown`, or the `SampleApp` was dropped: stop either way.
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, %remote, "set_nodelay failed");
                    }
                    let state = Arc::clone(&state);
                    let Some(tls) = &tls else {
                        let service =
                            service_fn(move |req| routes::handle(Arc::clone(&state), remote, req));
                        let connection = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .into_owned();
                        let connection = graceful.watch(connection);
                        connections.spawn(async move {
                            if let Err(error) = connection.await {
                                tracing::debug!(%error, %remote, "connection ended with an error");
                            }
                        });
                        continue;
                    };
                    let (tls, builder, watcher) = (tls.clone(), builder.clone(), graceful.watcher());
                    connections.spawn(async move {
                        let stream = match tls.accept(stream).await {
                            Ok(stream) => stream,
                            Err(error) => {
                                tracing::debug!(%error, %remote, "TLS handshake failed");
                                return;
                            }
                        };
                        let (_, session) = stream.get_ref();
                        let info = TlsInfo {
                            alpn: session
                                .alpn_protocol()
                                .and_then(|p| HeaderValue::from_bytes(p).ok())
                                .unwrap_or(HeaderValue::from_static("none")),
                            sni: session.server_name().map(str::to_owned),
                        };
                        let service = service_fn(move |mut req: hyper::Request<_>| {
                            req.extensions_mut().insert(info.clone());
                            routes::handle(Arc::clone(&state), remote, req)
                        });
                        let connection = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .into_owned();
                        if let Err(error) = watcher.watch(connection).await {
                            tracing::debug!(%error, %remote, "connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }

    drop(listener);
    tracing::info!(
        in_flight = state.in_flight.get(),
        "sample-app shutting down"
    );
    state.shutdown.send_replace(true);
    let drained = async {
        graceful.shutdown().await;
        // Every WebSocket session holds a receiver until it has closed.
        state.shutdown.closed().await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            in_flight = state.in_flight.get(),
            ?grace,
            "shutdown grace period over; aborting remaining connections"
        );
    }
    connections.shutdown().await;
    tracing::info!("sample-app stopped");
}

/// Run until SIGTERM or Ctrl-C (SIGINT), then shut down gracefully. Used by `shoal sample-app`.
///
/// Prints one line to stdout when listening, e.g.
/// `sample-app users#2 listening on 127.0.0.1:40123`. A signal during the start-up delay
/// ends it at once.
pub async fn run_until_signal(opts: Options) -> std::io::Result<()> {
    // Installed before the start-up delay, so a signal during it is not lost.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let signalled = async move {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        }
    };
    run_until(opts, signalled, |line| println!("{line}")).await
}

/// [`run_until_signal`] with the signal and the output passed in, so tests can drive it.
async fn run_until(
    opts: Options,
    stop: impl Future<Output = &'static str>,
    announce: impl FnOnce(String),
) -> std::io::Result<()> {
    tokio::pin!(stop);
    let label = opts.label();
    let app = tokio::select! {
        app = SampleApp::start(opts) => app?,
        signal = &mut stop => {
            tracing::info!(signal, "stopped during start-up");
            return Ok(());
        }
    };
    announce(format!(
        "sample-app {label} listening on {}",
        app.local_addr()
    ));
    let signal = stop.await;
    tracing::info!(signal, "shutting down");
    app.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};

    #[tokio::test]
    async fn run_until_announces_serves_and_stops() {
        let (stop, stopped) = oneshot::channel::<()>();
        let (lines, mut announced) = tokio::sync::mpsc::unbounded_channel();
        let opts = Options {
            name: "users".to_owned(),
            replica: Some(2),
            ..Options::default()
        };
        let run = tokio::spawn(run_until(
            opts,
            async move {
                let _ = stopped.await;
                "test"
            },
            move |line| lines.send(line).unwrap(),
        ));

        let line = announced.recv().await.unwrap();
        let addr = line
            .strip_prefix("sample-app users#2 listening on ")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let response = sender
            .send_request(http::Request::get("/health").body(Empty::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        response.into_body().collect().await.unwrap();

        stop.send(()).unwrap();
        run.await.unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn run_until_stops_during_the_startup_delay() {
        let opts = Options {
            startup_delay: Duration::from_secs(3600),
            ..Options::default()
        };
        let started = tokio::time::Instant::now();
        let stop = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            "test"
        };
        run_until(opts, stop, |line| panic!("announced {line:?}"))
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(3600));
    }
}
