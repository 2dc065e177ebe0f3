//! In-process HTTP servers with known behaviour, on `127.0.0.1:0`: a fixed delay, a stall,
//! a replica name in a header, HTTP/1.1 and h2c (and h2 over TLS), and a count of what
//! they served — so each test can compare what the generator reports with the truth.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shoal_loadgen::{LoadArgs, Plan, Report, RunOptions};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// What a test server does with each request.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Answer after this long.
    pub delay: Duration,
    /// Name it puts in `X-Shoal-Replica` (or `header`).
    pub replica: Option<String>,
    /// The header name for `replica` [default: x-shoal-replica].
    pub header: Option<&'static str>,
    /// When the Nth request (from 1) arrives, answer nothing for this long.
    pub stall: Option<(u64, Duration)>,
    /// Answer this status.
    pub status: Option<u16>,
    /// A fixed JSON body (e.g. a fake admin API), changed by `Server::set_body`.
    pub body: Option<String>,
}

/// A running test server.
#[derive(Debug, Clone)]
pub struct Server {
    pub addr: SocketAddr,
    /// Requests served.
    pub count: Arc<AtomicU64>,
    /// Requests served over HTTP/2.
    pub h2: Arc<AtomicU64>,
    /// The last request: method, headers, body.
    pub last: Arc<Mutex<Option<(http::Method, http::HeaderMap, Bytes)>>>,
    /// Every request's path, in the order the server took them.
    pub paths: Arc<Mutex<Vec<String>>>,
    body: Arc<Mutex<Option<String>>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// The paths served so far, in order.
    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }

    pub fn set_body(&self, body: &str) {
        *self.body.lock().unwrap() = Some(body.to_owned());
    }

    /// Start on 127.0.0.1:0 (HTTP/1.1 and h2c by prior knowledge).
    pub async fn start(b: Behaviour) -> Server {
        Server::start_with(b, None).await
    }

    /// Start an https server (certificate for 127.0.0.1 signed by tests/data/ca.pem).
    pub async fn start_tls(b: Behaviour) -> Server {
        Server::start_with(b, Some(tls_acceptor())).await
    }

    async fn start_with(b: Behaviour, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server {
            addr: listener.local_addr().unwrap(),
            count: Arc::new(AtomicU64::new(0)),
            h2: Arc::new(AtomicU64::new(0)),
            last: Arc::new(Mutex::new(None)),
            paths: Arc::new(Mutex::new(Vec::new())),
            body: Arc::new(Mutex::new(b.body.clone())),
        };
        let stall_until: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let _ = tcp.set_nodelay(true);
                let (s, b, stall_until, tls) =
                    (s.clone(), b.clone(), stall_until.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (s, b, stall_until) = (s.clone(), b.clone(), stall_until.clone());
                        async move { Ok::<_, Infallible>(answer(&s, &b, &stall_until, req).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
            }
        });
        server
    }
}

async fn answer(
    s: &Server,
    b: &Behaviour,
    stall_until: &Mutex<Option<Instant>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let n = s.count.fetch_add(1, Ordering::SeqCst) + 1;
    s.paths.lock().unwrap().push(req.uri().path().to_owned());
    if req.version() == Version::HTTP_2 {
        s.h2.fetch_add(1, Ordering::SeqCst);
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    *s.last.lock().unwrap() = Some((parts.method, parts.headers, body));
    if let Some((at, d)) = b.stall
        && n == at
    {
        *stall_until.lock().unwrap() = Some(Instant::now() + d);
    }
    let until = *stall_until.lock().unwrap();
    if let Some(u) = until
        && Instant::now() < u
    {
        tokio::time::sleep_until(u).await;
    }
    if !b.delay.is_zero() {
        tokio::time::sleep(b.delay).await;
    }
    let body = s
        .body
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| "hello\n".into());
    let mut resp = Response::builder().status(b.status.unwrap_or(200));
    if let Some(r) = &b.replica {
        resp = resp.header(b.header.unwrap_or("x-shoal-replica"), r.as_str());
    }
    resp.body(Full::new(Bytes::from(body))).unwrap()
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{dir}/server.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/server.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// The CA that signed the test server's certificate.
pub fn ca_file() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ca.pem").to_owned()
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: LoadArgs,
}

/// A plan from a `shoal load` command line (without `shoal load`).
pub fn plan(args: &[&str]) -> Plan {
    let cli = Cli::try_parse_from(std::iter::once("load").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    Plan::from_args(&cli.args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Run a `shoal load` command line in-process.
pub async fn load(args: &[&str]) -> Report {
    shoal_loadgen::run(plan(args), RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}
