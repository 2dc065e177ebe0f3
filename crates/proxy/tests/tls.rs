//! HTTPS at the gateway, end to end: a sample-app replica behind an entrypoint with `tls`, and
//! an entrypoint that redirects to it, all on `127.0.0.1:0`. Clients are rustls (with hyper
//! over it), openssl `s_client` and curl. Certificates are made here with rcgen, signed by a
//! test CA, and written to a temp dir (no key is checked in).
//!
//! - HTTP/1.1 and HTTP/2 over TLS to the replica, ALPN, `X-Forwarded-Proto: https`;
//! - SNI: exact names, wildcards, unknown and no SNI getting the default;
//! - TLS 1.2 and 1.3 negotiated, `min_version`, TLS 1.0/1.1 refused (openssl);
//! - curl `--http2` and `--http1.1` with `--cacert`;
//! - session resumption (TLS 1.3 tickets, TLS 1.2);
//! - certificates swapped under load (files rewritten, then the reload API) with 0 failures,
//!   and open connections untouched; a bad certificate on reload keeps the old one;
//! - the check: expired, not yet valid, mismatched key, no key, unreadable, expiring soon;
//! - the 308 redirect, counted in the metrics and logged on its entrypoint without a route;
//! - failed handshakes counted per entrypoint (`shoal_tls_handshake_failures_total`);
//! - a gRPC-style call (HTTP/2 over TLS to the gateway, h2c to the replica) with its trailers.
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, ProtocolVersion, RootCertStore};
use shoal_config::{CertificateFiles, Entrypoint, EntrypointTls, TlsVersion};
use shoal_core::{EventKind, EventLog};
use shoal_health::tls::AnyCertificate;
use shoal_proxy::tls::{TlsError, TlsWarning, check};
use shoal_proxy::{Gateway, Serving, TlsEntrypoints};
use shoal_sample_app::{Options, SampleApp};
use shoal_test_support::{eventually, test_ca};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

// ---------------------------------------------------------------------------------------
// Certificates.

/// A test CA that signs leaf certificates into files.
struct Pki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    ca: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let (issuer, ca) = test_ca("shoal test CA");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki {
            dir,
            issuer,
            ca: ca.der().clone(),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// A leaf for `names`, valid now.
    fn leaf(&self, names: &[&str]) -> (String, String) {
        self.leaf_with(names, |_| {})
    }

    /// A leaf for `names`, its parameters adjusted by `edit`: (certificate PEM, key PEM).
    fn leaf_with(
        &self,
        names: &[&str],
        edit: impl FnOnce(&mut CertificateParams),
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        edit(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Write a leaf to `NAME.pem` and `NAME-key.pem` (atomically: a temp file renamed, as
    /// renewal tools do), returning the files.
    fn write(&self, name: &str, (cert, key): &(String, String)) -> CertificateFiles {
        let files = CertificateFiles {
            cert: self.path(&format!("{name}.pem")),
            key: self.path(&format!("{name}-key.pem")),
        };
        for (path, text) in [(&files.cert, cert), (&files.key, key)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        files
    }

    fn issue(&self, name: &str, names: &[&str]) -> CertificateFiles {
        self.write(name, &self.leaf(names))
    }
}

fn der_of(pem: &str) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

fn tls_of(certificates: Vec<CertificateFiles>) -> EntrypointTls {
    EntrypointTls {
        certificates,
        min_version: TlsVersion::Tls12,
    }
}

// ---------------------------------------------------------------------------------------
// The gateway.

/// A sample-app replica behind `websecure` (TLS) and `web` (redirects to `websecure`).
struct Edge {
    https: SocketAddr,
    http: SocketAddr,
    tls: Arc<TlsEntrypoints>,
    entrypoints: Vec<Entrypoint>,
    events: Arc<EventLog>,
    gateway: Arc<Gateway>,
    serving: Option<Serving>,
    _replica: SampleApp,
}

impl Edge {
    async fn start(tls: EntrypointTls) -> Edge {
        Edge::start_speaking(tls, "http").await
    }

    /// As [`Edge::start`], the gateway speaking `protocol` to the replica.
    async fn start_speaking(tls: EntrypointTls, protocol: &str) -> Edge {
        let replica = SampleApp::start(Options {
            name: "r1".into(),
            ..Options::default()
        })
        .await
        .unwrap();
        let yaml = format!(
            "gateway:
  entrypoints:
    websecure: {{ listen: 127.0.0.1:0 }}
    web: {{ listen: 127.0.0.1:0 }}
services:
  app:
    servers: [http://{}]
    protocol: {protocol}
routes:
  - match: PathPrefix(`/`)
    service: app
",
            replica.local_addr()
        );
        let mut stack = shoal_config::parse(&yaml, "tls-test.yaml").unwrap();
        for ep in &mut stack.gateway.entrypoints {
            match ep.name.as_str() {
                "websecure" => ep.tls = Some(tls.clone()),
                _ => {
                    ep.redirect_to = Some(shoal_config::RedirectHttps {
                        entrypoint: "websecure".into(),
                        port: 443,
                    });
                }
            }
        }
        let events = Arc::new(EventLog::new(100));
        let gateway = Gateway::with_events(&stack, events.clone());
        let started = common::start_serving(&gateway, &stack);
        let addr = |name: &str| started.addrs.iter().find(|(n, _)| n == name).unwrap().1;
        Edge {
            https: addr("websecure"),
            http: addr("web"),
            tls: started.certs,
            entrypoints: stack.gateway.entrypoints.clone(),
            events,
            gateway,
            serving: Some(started.serving),
            _replica: replica,
        }
    }

    /// The gateway's metrics, as `/metrics` serves them.
    fn metrics(&self) -> String {
        let mut out = String::new();
        self.gateway.render_metrics(&mut out);
        out
    }

    /// The stack's entrypoints with `websecure`'s TLS replaced (what a reloaded file says).
    fn with_tls(&self, tls: EntrypointTls) -> Vec<Entrypoint> {
        let mut eps = self.entrypoints.clone();
        for ep in &mut eps {
            if ep.tls.is_some() {
                ep.tls = Some(tls.clone());
            }
        }
        eps
    }

    async fn stop(mut self) {
        assert!(
            self.serving
                .take()
                .unwrap()
                .shutdown(Duration::from_secs(5))
                .await
        );
    }
}

// ---------------------------------------------------------------------------------------
// Clients.

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client trusting `ca`, speaking `versions`, offering `alpn`.
fn client(
    ca: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A client that accepts any certificate (signatures still checked): to see which one the
/// server chose for names it is not valid for.
fn any_cert_client(sni: bool) -> ClientConfig {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(BOTH)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate::new(provider())))
        .with_no_client_auth();
    config.enable_sni = sni;
    config
}

async fn connect(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    TlsConnector::from(config.clone()).connect(name, tcp).await
}

/// The certificate the server presented.
fn served(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

struct Answer {
    status: u16,
    version: http::Version,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// One GET over HTTP/1.1 on `stream`.
async fn get_h1(stream: TlsStream<TcpStream>, path: &str) -> Result<Answer, hyper::Error> {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    answer(send.send_request(req).await?).await
}

/// An HTTP/2 connection on `stream`.
async fn h2(
    stream: TlsStream<TcpStream>,
) -> Result<hyper::client::conn::http2::SendRequest<Empty<Bytes>>, hyper::Error> {
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(send)
}

async fn get_h2(
    send: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    path: &str,
) -> Result<Answer, hyper::Error> {
    let req = http::Request::get(format!("https://localhost{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    answer(send.send_request(req).await?).await
}

async fn answer(resp: http::Response<hyper::body::Incoming>) -> Result<Answer, hyper::Error> {
    let (parts, body) = resp.into_parts();
    Ok(Answer {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body: body.collect().await?.to_bytes(),
    })
}

/// Run `program`, failing the test with what to install if it is missing.
async fn tool(program: &str, package: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run `{program}` ({e}): install it (apt-get install {package}); scripts/test.sh does")
        })
}

// ---------------------------------------------------------------------------------------
// Stories.

#[tokio::test]
async fn http1_and_http2_over_tls_reach_the_replica() {
    let pki = Pki::new();
    let edge = Edge::start(tls_of(vec![pki.issue("localhost", &["localhost"])])).await;

    // ALPN offered both: the server prefers h2.
    let config = Arc::new(client(&pki.ca, BOTH, &[b"h2", b"http/1.1"]));
    let stream = connect(edge.https, &config, "localhost").await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut send = h2(stream).await.unwrap();
    for _ in 0..3 {
        let a = get_h2(&mut send, "/whoami?x=1").await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.version, http::Version::HTTP_2);
        assert_eq!(a.headers["x-sample-name"], "r1");
        let who = a.json();
        assert_eq!(who["query"], "x=1");
        assert_eq!(who["headers"]["x-forwarded-proto"], "https");
    }

    // ALPN http/1.1 only.
    let config = Arc::new(client(&pki.ca, BOTH, &[b"http/1.1"]));
    let stream = connect(edge.https, &config, "localhost").await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let a = get_h1(stream, "/whoami").await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.version, http::Version::HTTP_11);
    assert_eq!(a.json()["headers"]["x-forwarded-proto"], "https");

    // No ALPN at all: HTTP/1.1.
    let config = Arc::new(client(&pki.ca, BOTH, &[]));
    let stream = connect(edge.https, &config, "localhost").await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), None);
    assert_eq!(get_h1(stream, "/").await.unwrap().status, 200);

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut tcp = TcpStream::connect(edge.https).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got)).await;
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    edge.stop().await;
}

#[tokio::test]
async fn a_grpc_call_over_tls_keeps_its_trailers() {
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    let pki = Pki::new();
    let edge =
        Edge::start_speaking(tls_of(vec![pki.issue("localhost", &["localhost"])]), "h2c").await;
    let config = Arc::new(client(&pki.ca, BOTH, &[b"h2"]));
    let stream = connect(edge.https, &config, "localhost").await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    // A unary gRPC call: one length-prefixed message, then the client's trailers; the
    // replica's `/echo` answers with the message and the trailers it got.
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    trailers.insert("grpc-message", http::HeaderValue::from_static("ok"));
    let message = Bytes::from_static(b"\0\0\0\0\x05hello");
    let frames = vec![
        Ok::<_, std::convert::Infallible>(Frame::data(message.clone())),
        Ok(Frame::trailers(trailers)),
    ];
    let req = http::Request::post("https://localhost/echo")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("the call is answered")
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    let got = resp.into_body().collect().await.unwrap();
    let trailers = got.trailers().cloned().expect("trailers came back");
    assert_eq!(got.to_bytes(), message);
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "ok");
    edge.stop().await;
}

#[tokio::test]
async fn sni_picks_the_certificate_and_unknown_or_no_sni_gets_the_first() {
    let pki = Pki::new();
    let a = pki.issue("a", &["a.test", "127.0.0.1"]);
    let b = pki.issue("b", &["*.b.test", "exact.c.test"]);
    let der = |files: &CertificateFiles| der_of(&std::fs::read_to_string(&files.cert).unwrap());
    let (a_der, b_der) = (der(&a), der(&b));
    let edge = Edge::start(tls_of(vec![a, b])).await;

    let sni = Arc::new(any_cert_client(true));
    for (name, expected, which) in [
        ("a.test", &a_der, "a"),
        ("x.b.test", &b_der, "b (wildcard)"),
        ("X.B.Test", &b_der, "b (case)"),
        ("exact.c.test", &b_der, "b (exact)"),
        ("b.test", &a_der, "a (the wildcard needs one more label)"),
        ("y.x.b.test", &a_der, "a (the wildcard is one label)"),
        ("unknown.test", &a_der, "a (unknown name)"),
    ] {
        let s = connect(edge.https, &sni, name).await.unwrap();
        assert_eq!(&served(&s), expected, "SNI {name}: expected {which}");
    }
    // No SNI at all (and an IP address, which clients never send as SNI): the first.
    let no_sni = Arc::new(any_cert_client(false));
    let s = connect(edge.https, &no_sni, "x.b.test").await.unwrap();
    assert_eq!(served(&s), a_der);
    let s = connect(edge.https, &sni, "127.0.0.1").await.unwrap();
    assert_eq!(served(&s), a_der);

    // And a verifying client accepts what it is given.
    let verifying = Arc::new(client(&pki.ca, BOTH, &[]));
    let s = connect(edge.https, &verifying, "x.b.test").await.unwrap();
    assert_eq!(get_h1(s, "/").await.unwrap().status, 200);
    edge.stop().await;
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_negotiated_and_min_version_is_kept() {
    let pki = Pki::new();
    let files = pki.issue("localhost", &["localhost"]);
    let edge = Edge::start(tls_of(vec![files.clone()])).await;
    for (versions, expected) in [
        (BOTH, ProtocolVersion::TLSv1_3),
        (&[&rustls::version::TLS13][..], ProtocolVersion::TLSv1_3),
        (&[&rustls::version::TLS12][..], ProtocolVersion::TLSv1_2),
    ] {
        let config = Arc::new(client(&pki.ca, versions, &[b"h2"]));
        let s = connect(edge.https, &config, "localhost").await.unwrap();
        assert_eq!(s.get_ref().1.protocol_version(), Some(expected));
        let mut send = h2(s).await.unwrap();
        assert_eq!(get_h2(&mut send, "/").await.unwrap().status, 200);
    }
    edge.stop().await;

    // min_version 1.3: a TLS 1.2-only client is refused.
    let edge = Edge::start(EntrypointTls {
        certificates: vec![files],
        min_version: TlsVersion::Tls13,
    })
    .await;
    let tls12 = Arc::new(client(&pki.ca, &[&rustls::version::TLS12], &[]));
    let refused = connect(edge.https, &tls12, "localhost").await;
    assert!(refused.is_err(), "TLS 1.2 accepted with min_version 1.3");
    let tls13 = Arc::new(client(&pki.ca, BOTH, &[]));
    let s = connect(edge.https, &tls13, "localhost").await.unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    edge.stop().await;
}

#[tokio::test]
async fn openssl_sees_alpn_sni_and_versions_and_tls_1_0_and_1_1_are_refused() {
    let pki = Pki::new();
    let a = pki.issue("a", &["a.test"]);
    let b = pki.issue("b", &["b.test"]);
    let edge = Edge::start(tls_of(vec![a, b])).await;
    let connect = edge.https.to_string();
    let ca = pki.path("ca.pem");
    let s_client = async |extra: &[&str]| {
        let mut args = vec![
            "s_client",
            "-connect",
            &connect,
            "-CAfile",
            ca.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        // stdin is empty: s_client ends once the handshake is done (or failed).
        let out = tool("openssl", "openssl", &args).await;
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };

    let (ok, out) = s_client(&["-tls1_3", "-alpn", "h2,http/1.1", "-servername", "b.test"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("Protocol  : TLSv1.3") || out.contains("New, TLSv1.3"),
        "{out}"
    );
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    assert!(
        out.contains("subject=CN = rcgen self signed cert")
            || out.contains("b.test")
            || out.contains("Verification: OK"),
        "{out}"
    );
    assert!(
        out.contains("Verify return code: 0 (ok)"),
        "SNI b.test verified: {out}"
    );

    let (ok, out) = s_client(&["-tls1_2", "-alpn", "http/1.1", "-servername", "a.test"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("Protocol  : TLSv1.2"), "{out}");
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    // TLS 1.2 cipher policy: ECDHE with an AEAD.
    assert!(
        out.contains("ECDHE-ECDSA-") && (out.contains("GCM") || out.contains("CHACHA20")),
        "{out}"
    );

    // TLS 1.0 and 1.1, with OpenSSL's own floor lowered so that it really offers them.
    for flag in ["-tls1", "-tls1_1"] {
        let (ok, out) = s_client(&[
            flag,
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-servername",
            "a.test",
        ])
        .await;
        assert!(!ok, "{flag} accepted: {out}");
        // rustls answers a hello that offers nothing above TLS 1.1 with an alert
        // (protocol_version or handshake_failure); no session is set up.
        assert!(
            out.contains("alert protocol version") || out.contains("alert handshake failure"),
            "{flag}: {out}"
        );
        assert!(out.contains("Cipher is (NONE)"), "{flag}: {out}");
    }
    edge.stop().await;
}

#[tokio::test]
async fn curl_speaks_http2_and_http1_over_tls() {
    let pki = Pki::new();
    let edge = Edge::start(tls_of(vec![pki.issue("localhost", &["localhost"])])).await;
    let port = edge.https.port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}/whoami");
    let ca = pki.path("ca.pem");
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = tool(
            "curl",
            "curl",
            &[
                "-sS",
                flag,
                "--cacert",
                ca.to_str().unwrap(),
                "--resolve",
                &resolve,
                "-w",
                "\n%{http_code} %{http_version}",
                &url,
            ],
        )
        .await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (body, last) = text.rsplit_once('\n').unwrap();
        assert_eq!(last, format!("200 {version}"), "{text}");
        let who: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(who["headers"]["x-forwarded-proto"], "https");
    }
    edge.stop().await;
}

#[tokio::test]
async fn sessions_resume_with_tls_1_3_tickets_and_tls_1_2() {
    let pki = Pki::new();
    let edge = Edge::start(tls_of(vec![pki.issue("localhost", &["localhost"])])).await;
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        // One client config: its session store carries the ticket to the next connection.
        let config = Arc::new(client(&pki.ca, versions, &[b"http/1.1"]));
        let first = connect(edge.https, &config, "localhost").await.unwrap();
        assert_eq!(
            first.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Full)
        );
        // A request: TLS 1.3 tickets arrive after the handshake, read with the response.
        assert_eq!(get_h1(first, "/").await.unwrap().status, 200);
        let second = connect(edge.https, &config, "localhost").await.unwrap();
        assert_eq!(
            second.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "{versions:?}"
        );
        assert_eq!(get_h1(second, "/").await.unwrap().status, 200);
    }
    edge.stop().await;
}

/// What the load clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
    seen: std::sync::Mutex<std::collections::HashMap<Vec<u8>, u64>>,
}

/// A client sending requests over new connections (no resumption: each one sees the current
/// certificate) until `stop`, at most `limit` requests.
async fn load_client(
    addr: SocketAddr,
    ca: CertificateDer<'static>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    limit: u64,
) {
    let config = |alpn: &[u8]| {
        let mut config = client(&ca, BOTH, &[alpn]);
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    };
    let (h2_config, h1_config) = (config(b"h2"), config(b"http/1.1"));
    for i in 0..limit {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let config = if i % 2 == 0 { &h2_config } else { &h1_config };
        let result = async {
            let stream = connect(addr, config, "localhost")
                .await
                .map_err(|e| e.to_string())?;
            let cert = served(&stream).as_ref().to_vec();
            let a = if i % 2 == 0 {
                get_h2(&mut h2(stream).await.map_err(|e| e.to_string())?, "/").await
            } else {
                get_h1(stream, "/").await
            }
            .map_err(|e| e.to_string())?;
            if a.status != 200 {
                return Err(format!("status {}", a.status));
            }
            Ok(cert)
        }
        .await;
        match result {
            Ok(cert) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                *tally.seen.lock().unwrap().entry(cert).or_default() += 1;
            }
            Err(e) => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                tally.errors.lock().unwrap().push(e);
            }
        }
    }
}

/// The certificate a new connection gets now.
async fn current_cert(addr: SocketAddr, ca: &CertificateDer<'static>) -> CertificateDer<'static> {
    let mut config = client(ca, BOTH, &[]);
    config.resumption = rustls::client::Resumption::disabled();
    served(&connect(addr, &Arc::new(config), "localhost").await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_swap_under_load_without_a_failed_request() {
    const CLIENTS: usize = 4;
    let pki = Pki::new();
    let first = pki.leaf(&["localhost"]);
    let files = pki.write("live", &first);
    let edge = Edge::start(tls_of(vec![files.clone()])).await;
    let watching = edge.tls.watch(edge.events.clone());

    // A connection opened before the swaps, used after them.
    let keep = Arc::new(client(&pki.ca, BOTH, &[b"h2"]));
    let kept = connect(edge.https, &keep, "localhost").await.unwrap();
    assert_eq!(served(&kept), der_of(&first.0));
    let mut kept = h2(kept).await.unwrap();

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(load_client(
                edge.https,
                pki.ca.clone(),
                tally.clone(),
                stop.clone(),
                20_000,
            ))
        })
        .collect();
    eventually(Duration::from_secs(10), || {
        let n = tally.ok.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed);
        std::future::ready((n >= 20).then_some(()).ok_or("load under way"))
    })
    .await;

    // 1. The files are rewritten (a renewal): the watcher picks them up.
    let second = pki.leaf(&["localhost"]);
    pki.write("live", &second);
    let second_der = der_of(&second.0);
    eventually(Duration::from_secs(10), || {
        let (addr, ca) = (edge.https, pki.ca.clone());
        let want = second_der.clone();
        async move {
            let served = current_cert(addr, &ca).await == want;
            served
                .then_some(())
                .ok_or("the rewritten certificate served")
        }
    })
    .await;
    let reloaded = edge
        .events
        .since(0)
        .into_iter()
        .find(|e| e.kind == EventKind::Reloaded)
        .expect("a reloaded event");
    assert!(
        reloaded
            .message
            .contains("entrypoint `websecure`: certificates reloaded"),
        "{}",
        reloaded.message
    );
    assert!(
        reloaded.message.contains("live.pem"),
        "{}",
        reloaded.message
    );

    // 2. A stack-file reload naming other files.
    let third = pki.leaf(&["localhost"]);
    let other = pki.write("other", &third);
    let names = edge
        .tls
        .reload(&edge.with_tls(tls_of(vec![other])))
        .unwrap();
    assert_eq!(names, ["websecure"]);
    assert_eq!(current_cert(edge.https, &pki.ca).await, der_of(&third.0));

    // Let the load run past the swaps for a moment, then stop it.
    let after = tally.ok.load(Ordering::Relaxed);
    eventually(Duration::from_secs(10), || {
        let n = tally.ok.load(Ordering::Relaxed);
        std::future::ready(
            (n >= after + 40)
                .then_some(())
                .ok_or("more requests after the swaps"),
        )
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    {
        let errors = tally.errors.lock().unwrap();
        assert_eq!(
            failed,
            0,
            "{ok} ok, {failed} failed, first: {:?}",
            &errors[..errors.len().min(10)]
        );
    }
    let seen = std::mem::take(&mut *tally.seen.lock().unwrap());
    let mut counts = Vec::new();
    for (which, pem) in [("first", &first), ("second", &second), ("third", &third)] {
        let n = seen.get(der_of(&pem.0).as_ref()).copied().unwrap_or(0);
        counts.push((which, n));
        assert!(
            n > 0,
            "no request saw the {which} certificate ({ok} requests)"
        );
    }
    eprintln!(
        "{ok} requests over new TLS connections, 0 failed; requests per certificate: {counts:?}"
    );

    // The connection opened before the swaps still works, with its certificate.
    assert_eq!(get_h2(&mut kept, "/").await.unwrap().status, 200);
    watching.abort();
    edge.stop().await;
}

#[tokio::test]
async fn a_bad_certificate_on_reload_keeps_the_old_one_serving() {
    let pki = Pki::new();
    let good = pki.leaf(&["localhost"]);
    let files = pki.write("live", &good);
    let edge = Edge::start(tls_of(vec![files.clone()])).await;
    let good_der = der_of(&good.0);

    // The reload API: a key that is not the certificate's.
    let (cert, _) = pki.leaf(&["localhost"]);
    let (_, other_key) = pki.leaf(&["localhost"]);
    let bad = pki.write("bad", &(cert, other_key));
    let err = edge
        .tls
        .reload(&edge.with_tls(tls_of(vec![bad.clone()])))
        .unwrap_err();
    assert_eq!(err.entrypoint, "websecure");
    assert!(matches!(err.error, TlsError::KeyMismatch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "entrypoint `websecure`: {}: the private key does not match the certificate in {}",
            bad.key.display(),
            bad.cert.display()
        )
    );
    assert_eq!(current_cert(edge.https, &pki.ca).await, good_der);

    // The watcher: the files rewritten with an expired certificate. The first look may be
    // mid-write, so a failure is reported on the second look at the same files.
    let expired = pki.leaf_with(&["localhost"], |p| {
        p.not_before = rcgen::date_time_ymd(2024, 1, 1);
        p.not_after = rcgen::date_time_ymd(2025, 1, 31);
    });
    pki.write("live", &expired);
    edge.tls.look(&edge.events);
    assert!(
        edge.events
            .since(0)
            .iter()
            .all(|e| e.kind != EventKind::ReloadFailed)
    );
    edge.tls.look(&edge.events);
    let failed: Vec<_> = edge
        .events
        .since(0)
        .into_iter()
        .filter(|e| e.kind == EventKind::ReloadFailed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].message,
        format!(
            "entrypoint `websecure`: {}: the certificate expired on 2025-01-31 00:00:00 UTC (notAfter); the previous certificates keep serving",
            files.cert.display()
        )
    );
    // Reported once, not on every look.
    edge.tls.look(&edge.events);
    assert_eq!(
        edge.events
            .since(0)
            .iter()
            .filter(|e| e.kind == EventKind::ReloadFailed)
            .count(),
        1
    );
    assert_eq!(current_cert(edge.https, &pki.ca).await, good_der);

    // Fixed files are picked up.
    let fixed = pki.leaf(&["localhost"]);
    pki.write("live", &fixed);
    edge.tls.look(&edge.events);
    assert_eq!(current_cert(edge.https, &pki.ca).await, der_of(&fixed.0));
    edge.stop().await;
}

#[test]
fn the_check_names_the_file_and_what_is_wrong() {
    let pki = Pki::new();
    let one = |files: CertificateFiles| {
        let found = check(&tls_of(vec![files]));
        (
            found
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            found
                .warnings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        )
    };

    let expired = pki.write(
        "old",
        &pki.leaf_with(&["localhost"], |p| {
            p.not_before = rcgen::date_time_ymd(2024, 1, 1);
            p.not_after = rcgen::date_time_ymd(2025, 1, 31);
        }),
    );
    let (errors, _) = one(expired.clone());
    assert_eq!(
        errors,
        [format!(
            "{}: the certificate expired on 2025-01-31 00:00:00 UTC (notAfter)",
            expired.cert.display()
        )]
    );
    // Loading refuses it too.
    let eps = [Entrypoint {
        name: "websecure".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(tls_of(vec![expired.clone()])),
        redirect_to: None,
    }];
    let err = TlsEntrypoints::load(&eps).unwrap_err();
    assert!(
        err.to_string().starts_with("entrypoint `websecure`: "),
        "{err}"
    );
    assert!(matches!(err.error, TlsError::Expired { .. }));

    let future = pki.write(
        "future",
        &pki.leaf_with(&["localhost"], |p| {
            p.not_before = rcgen::date_time_ymd(2999, 1, 1);
            p.not_after = rcgen::date_time_ymd(3000, 1, 1);
        }),
    );
    assert_eq!(
        one(future.clone()).0,
        [format!(
            "{}: the certificate is not valid before 2999-01-01 00:00:00 UTC (notBefore)",
            future.cert.display()
        )]
    );

    // Expires in 10 days: a warning with the date, no error.
    let soon_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 10 * 86_400;
    let soon = pki.write(
        "soon",
        &pki.leaf_with(&["localhost"], |p| {
            p.not_after = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(soon_secs);
        }),
    );
    let (errors, warnings) = one(soon.clone());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].starts_with(&format!(
            "{}: the certificate expires on ",
            soon.cert.display()
        )),
        "{warnings:?}"
    );
    assert!(
        warnings[0].ends_with("(notAfter): renew it soon"),
        "{warnings:?}"
    );

    // Only IP addresses: a warning (served only as the default).
    let ip_only = pki.issue("ip", &["127.0.0.1"]);
    let found = check(&tls_of(vec![ip_only]));
    assert!(found.errors.is_empty());
    assert!(matches!(found.warnings[..], [TlsWarning::NoNames { .. }]));

    // A key file without a key; a certificate file without a certificate; a missing file.
    let good = pki.issue("good", &["localhost"]);
    let no_key = CertificateFiles {
        cert: good.cert.clone(),
        key: good.cert.clone(),
    };
    assert_eq!(
        one(no_key).0,
        [format!(
            "{}: no private key in this file (expected a PEM `BEGIN PRIVATE KEY`, `BEGIN EC PRIVATE KEY` or `BEGIN RSA PRIVATE KEY` block)",
            good.cert.display()
        )]
    );
    let no_cert = CertificateFiles {
        cert: good.key.clone(),
        key: good.key.clone(),
    };
    assert_eq!(
        one(no_cert).0,
        [format!(
            "{}: no certificate in this file (expected a PEM `BEGIN CERTIFICATE` block)",
            good.key.display()
        )]
    );
    let missing = CertificateFiles {
        cert: pki.path("missing.pem"),
        key: good.key.clone(),
    };
    let (errors, _) = one(missing);
    assert!(
        errors[0].starts_with(&format!(
            "{}: cannot read the file: ",
            pki.path("missing.pem").display()
        )),
        "{errors:?}"
    );
    // Several certificates: every problem, not just the first.
    let found = check(&tls_of(vec![expired, good, future]));
    assert_eq!(found.errors.len(), 2);
}

#[tokio::test]
async fn plain_http_is_redirected_to_https_with_308() {
    let pki = Pki::new();
    let edge = Edge::start(tls_of(vec![pki.issue("localhost", &["localhost"])])).await;
    let tls_port = edge.https.port();
    let http = edge.http;
    let raw = move |request: &'static str| async move {
        let mut tcp = TcpStream::connect(http).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8(got).unwrap()
    };
    let got = raw(
        "GET /some/path?x=1&y=two HTTP/1.1\r\nHost: localhost:8000\r\nConnection: close\r\n\r\n",
    )
    .await;
    let head = got.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(
        got.starts_with("HTTP/1.1 308 Permanent Redirect\r\n"),
        "{got}"
    );
    assert!(
        head.contains(&format!(
            "\r\nlocation: https://localhost:{tls_port}/some/path?x=1&y=two\r\n"
        )),
        "{got}"
    );
    assert!(head.contains("\r\ncontent-length: 0"), "{got}");
    assert!(got.ends_with("\r\n\r\n"), "no body: {got}");

    // POST keeps its method through a 308; the body is not forwarded anywhere.
    let got = raw("POST /form HTTP/1.1\r\nHost: example.test\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc").await;
    assert!(got.starts_with("HTTP/1.1 308 "), "{got}");
    assert!(
        got.to_ascii_lowercase().contains(&format!(
            "location: https://example.test:{tls_port}/form\r\n"
        )),
        "{got}"
    );

    // No Host: 400 (RFC 9112 §3.2); a Host with a path in it: 400.
    let got = raw("GET / HTTP/1.0\r\n\r\n").await;
    assert!(
        got.starts_with("HTTP/1.0 400 ") || got.starts_with("HTTP/1.1 400 "),
        "{got}"
    );
    let got = raw("GET / HTTP/1.1\r\nHost: evil.test/x\r\nConnection: close\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 400 "), "{got}");

    // Keep-alive: several redirects on one connection.
    let got = raw("GET /a HTTP/1.1\r\nHost: h.test\r\n\r\nGET /b HTTP/1.1\r\nHost: h.test\r\nConnection: close\r\n\r\n").await;
    assert_eq!(got.matches("HTTP/1.1 308 ").count(), 2, "{got}");
    assert!(
        got.contains(&format!("https://h.test:{tls_port}/b")),
        "{got}"
    );
    edge.stop().await;
}

#[tokio::test]
async fn redirects_are_counted_and_logged_on_their_entrypoint_with_no_route() {
    let pki = Pki::new();
    let edge = Edge::start(tls_of(vec![pki.issue("localhost", &["localhost"])])).await;
    let log = pki.path("access.log");
    edge.gateway.set_access_log(Some(
        shoal_proxy::AccessLogger::start(&shoal_config::AccessLog {
            format: shoal_config::AccessLogFormat::Json,
            path: Some(log.clone()),
            buffer: 100,
        })
        .unwrap(),
    ));
    let mut tcp = TcpStream::connect(edge.http).await.unwrap();
    tcp.write_all(
        b"GET /a HTTP/1.1\r\nHost: h.test\r\n\r\nGET / HTTP/1.1\r\nHost: evil.test/x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let got = String::from_utf8(got).unwrap();
    assert!(got.starts_with("HTTP/1.1 308 "), "{got}");
    assert!(got.contains("\r\n\r\nHTTP/1.1 400 "), "{got}");

    // Counted on `web`, with no router or service (a route matches every path there).
    let metrics = edge.metrics();
    for line in [
        r#"shoal_entrypoint_requests_total{code="308",method="GET",protocol="http",entrypoint="web"} 1"#,
        r#"shoal_entrypoint_requests_total{code="400",method="GET",protocol="http",entrypoint="web"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
    }
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("shoal_service_requests_total") && l.contains("code=\"308\"")),
        "{metrics}"
    );

    // And logged: one line each, no router or service.
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually(Duration::from_secs(5), || {
        let two = lines().lines().count() == 2;
        std::future::ready(two.then_some(()).ok_or("two access log lines"))
    })
    .await;
    let text = lines();
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 2, "{text}");
    for (entry, (path, status)) in entries.iter().zip([("/a", 308), ("/", 400)]) {
        assert_eq!(entry["RequestPath"], path, "{entry}");
        assert_eq!(entry["DownstreamStatus"], status, "{entry}");
        assert_eq!(entry["EntryPointName"], "web", "{entry}");
        for field in ["RouterName", "ServiceName", "Replica"] {
            assert_eq!(entry[field], serde_json::Value::Null, "{field}: {entry}");
        }
    }
    assert_eq!(entries[0]["DownstreamContentSize"], 0, "{text}");
    edge.stop().await;
}

#[tokio::test]
async fn failed_tls_handshakes_are_counted_per_entrypoint() {
    let pki = Pki::new();
    let edge = Edge::start(tls_of(vec![pki.issue("localhost", &["localhost"])])).await;
    let line =
        |n: u64| format!(r#"shoal_tls_handshake_failures_total{{entrypoint="websecure"}} {n}"#);
    // A good handshake is not a failure.
    let config = Arc::new(client(&pki.ca, &[&rustls::version::TLS13], &[b"http/1.1"]));
    let s = connect(edge.https, &config, "localhost").await.unwrap();
    assert_eq!(get_h1(s, "/").await.unwrap().status, 200);
    let metrics = edge.metrics();
    assert!(metrics.lines().any(|l| l == line(0)), "{metrics}");
    assert!(
        metrics.contains("# TYPE shoal_tls_handshake_failures_total counter\n"),
        "{metrics}"
    );
    assert!(!metrics.contains(r#"shoal_tls_handshake_failures_total{entrypoint="web"}"#));

    // Plain HTTP to the TLS port: not a TLS record, the handshake fails and the connection
    // is closed without an answer.
    let mut tcp = TcpStream::connect(edge.https).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got))
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&got).contains("HTTP/1.1"),
        "{got:?}"
    );
    eventually(Duration::from_secs(5), || {
        let counted = edge.metrics().lines().any(|l| l == line(1));
        std::future::ready(counted.then_some(()).ok_or("the failure counted"))
    })
    .await;
    edge.stop().await;
}

#[tokio::test]
#[ignore = "figures: cargo test --release -p shoal-proxy --test tls -- --ignored --nocapture"]
async fn handshake_figures() {
    let pki = Pki::new();
    let edge = Edge::start(tls_of(vec![pki.issue("localhost", &["localhost"])])).await;
    const N: u32 = 500;
    for (label, versions, resume) in [
        ("TLS 1.3 full", &[&rustls::version::TLS13][..], false),
        ("TLS 1.3 resumed", &[&rustls::version::TLS13][..], true),
        ("TLS 1.2 full", &[&rustls::version::TLS12][..], false),
        ("TLS 1.2 resumed", &[&rustls::version::TLS12][..], true),
    ] {
        let mut config = client(&pki.ca, versions, &[b"http/1.1"]);
        if !resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        let config = Arc::new(config);
        // Warm up (and get a ticket).
        let s = connect(edge.https, &config, "localhost").await.unwrap();
        get_h1(s, "/").await.unwrap();
        let mut spent = Duration::ZERO;
        for _ in 0..N {
            let start = tokio::time::Instant::now();
            let s = connect(edge.https, &config, "localhost").await.unwrap();
            spent += start.elapsed();
            if resume {
                assert_eq!(s.get_ref().1.handshake_kind(), Some(HandshakeKind::Resumed));
                // Read the fresh ticket for the next one (not timed).
                get_h1(s, "/").await.unwrap();
            }
        }
        let per = spent / N;
        eprintln!(
            "{label}: {per:?} per connect+handshake (client and server on one machine, sequential)"
        );
    }
    edge.stop().await;
}
