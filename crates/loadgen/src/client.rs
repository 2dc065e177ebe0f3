//! Connections and requests: HTTP/1.1 keep-alive and HTTP/2 (h2c prior knowledge, or h2
//! over TLS by ALPN) — one connection per worker (HTTP/1.1) or per thread (HTTP/2), no
//! pool, nothing shared between connections on the hot path.
//!
//! HTTP/1.1 goes through [`crate::h1`], a minimal connection that writes a prepared request
//! and parses the answer in place (0.8 µs of user CPU per request where hyper's client took
//! 2.6; see that module). HTTP/2 connections are hyper's, shared by a thread's workers.
//!
//! Every failure is sorted into an [`ErrorKind`] for the report.
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::h1::{H1Conn, Keep};
use crate::plan::{HttpVersion, Origin, Plan};

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Connection refused (nothing listening).
    Refused,
    /// Connection reset or aborted by the peer.
    Reset,
    /// The server closed the connection before answering in full.
    Closed,
    /// No full answer within `--timeout`.
    Timeout,
    /// TLS handshake or certificate failure.
    Tls,
    /// The answer was not valid HTTP.
    Protocol,
    /// Any other connect failure (unreachable, no route, …).
    Connect,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Refused,
        ErrorKind::Reset,
        ErrorKind::Closed,
        ErrorKind::Timeout,
        ErrorKind::Tls,
        ErrorKind::Protocol,
        ErrorKind::Connect,
        ErrorKind::Other,
    ];

    /// The name used in the summary and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::Reset => "reset",
            ErrorKind::Closed => "closed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "tls",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Connect => "connect",
            ErrorKind::Other => "other",
        }
    }

    pub(crate) fn of_io(e: &std::io::Error) -> ErrorKind {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::ConnectionRefused => ErrorKind::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => ErrorKind::Reset,
            K::TimedOut => ErrorKind::Timeout,
            K::UnexpectedEof => ErrorKind::Closed,
            K::InvalidData if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => {
                ErrorKind::Tls
            }
            _ => ErrorKind::Other,
        }
    }

    fn of_hyper(e: &hyper::Error) -> ErrorKind {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                return ErrorKind::of_io(io);
            }
            source = s.source();
        }
        if e.is_timeout() {
            ErrorKind::Timeout
        } else if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
            ErrorKind::Closed
        } else if e.is_parse() {
            ErrorKind::Protocol
        } else {
            ErrorKind::Other
        }
    }
}

/// What one request came back with.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body bytes received.
    pub bytes: u64,
    /// The replica header's value, if present.
    pub replica: Option<HeaderValue>,
    /// What a scenario step asked to keep ([`crate::h1::Keep`]); `None` on plain runs.
    pub kept: Option<Box<Kept>>,
}

/// The parts of an answer a scenario step captures values from.
#[derive(Debug, Clone, Default)]
pub struct Kept {
    /// The body, up to [`crate::scenario::MAX_KEPT_BODY`] bytes (empty unless asked for).
    pub body: Bytes,
    /// The headers asked for, as received.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// One scenario step's request, with its variables filled in.
#[derive(Debug, Clone)]
pub struct StepRequest {
    /// Index into the plan's origins.
    pub origin: usize,
    /// Method.
    pub method: Method,
    /// Path and query.
    pub path: PathAndQuery,
    /// Headers (`Host` is added for HTTP/1.1 unless given).
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

type Body = Full<Bytes>;

/// An HTTP/2 connection handle; clones share the connection.
pub type H2 = http2::SendRequest<Body>;

/// One open connection to an origin.
#[derive(Debug)]
pub enum Conn {
    /// HTTP/1.1: one request at a time.
    H1(H1Conn<Stream>),
    /// HTTP/2: many streams; clones share the connection.
    H2(H2),
}

impl Conn {
    /// Still usable?
    pub fn is_open(&self) -> bool {
        match self {
            Conn::H1(h) => h.is_open(),
            Conn::H2(s) => !s.is_closed(),
        }
    }
}

/// Why a send failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The connection was closed before the request went out (a keep-alive connection the
    /// server let go): open another and retry; not an error of the request.
    Stale,
    /// The request failed.
    Failed(ErrorKind),
}

/// TCP, or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    /// http.
    Tcp(TcpStream),
    /// https.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What every connection of a run needs: TLS settings and the request template.
pub struct Client {
    tls: Option<TlsConnector>,
    http: HttpVersion,
    plan: Arc<Plan>,
    /// Per target: the whole HTTP/1.1 request, and the headers for HTTP/2.
    requests: Vec<(Bytes, HeaderMap)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("tls", &self.tls.is_some())
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

/// A failure to set up TLS (bad --cacert).
#[derive(Debug, thiserror::Error)]
#[error("--cacert: {0}")]
pub struct TlsSetupError(String);

impl Client {
    /// Prepare a client for `plan` (TLS roots are loaded here, once).
    pub fn new(plan: Arc<Plan>) -> Result<Client, TlsSetupError> {
        let tls = if plan.origins.iter().any(|o| o.tls) {
            Some(tls_connector(&plan)?)
        } else {
            None
        };
        let requests = plan
            .targets
            .iter()
            .map(|t| {
                let mut h1 = plan.headers.clone();
                if !h1.contains_key(HOST) {
                    let host = plan.origins[t.origin].authority.as_str();
                    h1.insert(
                        HOST,
                        HeaderValue::from_str(host).expect("an authority is a valid header"),
                    );
                }
                let path = t.path.path_and_query().map_or("/", |p| p.as_str());
                let h1 = crate::h1::serialize(&plan.method, path, &h1, &plan.body);
                let mut h2 = plan.headers.clone();
                h2.remove(HOST);
                (h1, h2)
            })
            .collect();
        Ok(Client {
            tls,
            http: plan.http,
            requests,
            plan,
        })
    }

    /// Open a connection to `origin` (index into the plan's origins).
    pub async fn connect(&self, origin: usize) -> Result<Conn, ErrorKind> {
        let o: &Origin = &self.plan.origins[origin];
        let addr = o.addr.ok_or(ErrorKind::Connect)?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| match ErrorKind::of_io(&e) {
                ErrorKind::Other => ErrorKind::Connect,
                k => k,
            })?;
        let _ = tcp.set_nodelay(true);
        if o.tls {
            let tls = self.tls.as_ref().ok_or(ErrorKind::Tls)?;
            let name = ServerName::try_from(o.host.clone()).map_err(|_| ErrorKind::Tls)?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| match ErrorKind::of_io(&e) {
                    ErrorKind::Other | ErrorKind::Protocol => ErrorKind::Tls,
                    k => k,
                })?;
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            handshake(Stream::Tls(Box::new(stream)), h2).await
        } else {
            handshake(Stream::Tcp(tcp), self.http == HttpVersion::Http2).await
        }
    }

    /// Send one request for target number `target` on `conn` and read the whole answer.
    pub async fn send(&self, conn: &mut Conn, target: usize) -> Result<Answer, SendError> {
        match conn {
            Conn::H1(h) => {
                let head = self.plan.method == http::Method::HEAD;
                h.send(&self.requests[target].0, head, &self.plan.replica_header)
                    .await
            }
            Conn::H2(s) => {
                let t = &self.plan.targets[target];
                let mut req = Request::new(Full::new(self.plan.body.clone()));
                *req.method_mut() = self.plan.method.clone();
                *req.uri_mut() = t.uri.clone();
                *req.version_mut() = Version::HTTP_2;
                *req.headers_mut() = self.requests[target].1.clone();
                let failed = |e: hyper::Error| SendError::Failed(ErrorKind::of_hyper(&e));
                s.ready().await.map_err(|_| SendError::Stale)?;
                let resp = s.send_request(req).await.map_err(failed)?;
                self.read(resp, &Keep::NOTHING).await.map_err(failed)
            }
        }
    }

    /// Send a scenario step's request on `conn` and read the whole answer, keeping what
    /// `keep` asks for.
    pub async fn send_step(
        &self,
        conn: &mut Conn,
        req: &StepRequest,
        keep: &Keep,
    ) -> Result<Answer, SendError> {
        let origin = &self.plan.origins[req.origin];
        match conn {
            Conn::H1(h) => {
                let mut headers = req.headers.clone();
                if !headers.contains_key(HOST) {
                    headers.insert(
                        HOST,
                        HeaderValue::from_str(origin.authority.as_str())
                            .expect("an authority is a valid header"),
                    );
                }
                let bytes =
                    crate::h1::serialize(&req.method, req.path.as_str(), &headers, &req.body);
                let head = req.method == Method::HEAD;
                h.send_keeping(&bytes, head, &self.plan.replica_header, keep)
                    .await
            }
            Conn::H2(s) => {
                let uri = Uri::builder()
                    .scheme(if origin.tls { "https" } else { "http" })
                    .authority(origin.authority.clone())
                    .path_and_query(req.path.clone())
                    .build()
                    .map_err(|_| SendError::Failed(ErrorKind::Other))?;
                let mut r = Request::new(Full::new(req.body.clone()));
                *r.method_mut() = req.method.clone();
                *r.uri_mut() = uri;
                *r.version_mut() = Version::HTTP_2;
                *r.headers_mut() = req.headers.clone();
                r.headers_mut().remove(HOST);
                let failed = |e: hyper::Error| SendError::Failed(ErrorKind::of_hyper(&e));
                s.ready().await.map_err(|_| SendError::Stale)?;
                let resp = s.send_request(r).await.map_err(failed)?;
                self.read(resp, keep).await.map_err(failed)
            }
        }
    }

    async fn read(&self, resp: Response<Incoming>, keep: &Keep) -> Result<Answer, hyper::Error> {
        let status = resp.status().as_u16();
        let replica = resp.headers().get(&self.plan.replica_header).cloned();
        let headers: Vec<(HeaderName, HeaderValue)> = keep
            .headers
            .iter()
            .filter_map(|h| Some((h.clone(), resp.headers().get(h)?.clone())))
            .collect();
        let mut kept_body = keep.body.then(Vec::new);
        let mut body = resp.into_body();
        let mut bytes = 0u64;
        // Stop as soon as the body says it is complete (Content-Length reached), without
        // waiting for the connection to report the end.
        while !body.is_end_stream() {
            let Some(frame) = body.frame().await else {
                break;
            };
            if let Some(d) = frame?.data_ref() {
                bytes += d.len() as u64;
                if let Some(k) = &mut kept_body {
                    let room = crate::scenario::MAX_KEPT_BODY.saturating_sub(k.len());
                    k.extend_from_slice(&d[..d.len().min(room)]);
                }
            }
        }
        let wanted = keep.body || !keep.headers.is_empty();
        Ok(Answer {
            status,
            bytes,
            replica,
            kept: wanted.then(|| {
                Box::new(Kept {
                    body: kept_body.map(Bytes::from).unwrap_or_default(),
                    headers,
                })
            }),
        })
    }
}

async fn handshake(io: Stream, h2: bool) -> Result<Conn, ErrorKind> {
    if !h2 {
        return Ok(Conn::H1(H1Conn::new(io)));
    }
    let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .map_err(|e| ErrorKind::of_hyper(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn::H2(send))
}

/// Resolve every origin and open (and close) one TCP connection to each, so that a wrong
/// host or port fails before the run with a message naming the URL. Of a name's addresses,
/// the first that accepts a connection is used for the run.
pub async fn preflight(plan: &mut Plan, timeout: Duration) -> Result<(), PreflightError> {
    for o in &mut plan.origins {
        let url = format!("{}://{}", if o.tls { "https" } else { "http" }, o.authority);
        let fail = |message: String| PreflightError {
            url: url.clone(),
            message,
        };
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(timeout, tokio::net::lookup_host((o.host.as_str(), o.port)))
                .await
                .map_err(|_| fail("name lookup timed out".into()))?
                .map_err(|e| fail(format!("cannot resolve {}: {e}", o.host)))?
                .collect();
        let mut last = fail(format!("{} has no address", o.host));
        for addr in addrs {
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(_)) => {
                    o.addr = Some(addr);
                    break;
                }
                Ok(Err(e)) => last = fail(format!("cannot connect to {addr}: {e}")),
                Err(_) => {
                    last = fail(format!(
                        "cannot connect to {addr}: no answer within {timeout:?}"
                    ));
                }
            }
        }
        if o.addr.is_none() {
            return Err(last);
        }
    }
    Ok(())
}

/// A target that cannot be reached before the run starts.
#[derive(Debug, thiserror::Error)]
#[error("URL {url}: {message}")]
pub struct PreflightError {
    url: String,
    message: String,
}

fn tls_connector(plan: &Plan) -> Result<TlsConnector, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError(e.to_string()))?;
    let mut config = if plan.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &plan.cacert {
            Some(path) => {
                use rustls::pki_types::CertificateDer;
                use rustls::pki_types::pem::PemObject;
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| TlsSetupError(format!("{}: {e}", path.display())))?;
                for c in certs {
                    let c = c.map_err(|e| TlsSetupError(format!("{}: {e}", path.display())))?;
                    roots
                        .add(c)
                        .map_err(|e| TlsSetupError(format!("{}: {e}", path.display())))?;
                }
                if roots.is_empty() {
                    return Err(TlsSetupError(format!(
                        "{}: no PEM certificate in it",
                        path.display()
                    )));
                }
            }
            None => {
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = match plan.http {
        HttpVersion::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        HttpVersion::Http1 => vec![b"http/1.1".to_vec()],
        HttpVersion::Http2 => vec![b"h2".to_vec()],
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// `--insecure`: accept any certificate (signatures are still checked).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
