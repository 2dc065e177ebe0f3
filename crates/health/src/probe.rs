//! One probe: is the replica listening, and does it answer?
//!
//! A TCP probe passes when a connection to the address is accepted. An HTTP probe sends a
//! minimal `GET` (HTTP/1.1, `Connection: close`) over a plain `TcpStream`, reads only the
//! status line and passes when the status is in the expected ranges (2xx or 3xx by
//! default) — enough for a health endpoint without pulling an HTTP client in. Each probe is
//! bounded by its timeout. Note that a TCP probe passes on a hung process (the kernel
//! accepts connections into the listen backlog); only an HTTP probe notices a hang.
//!
//! The HTTP probe of a service whose replicas speak TLS (`tls:`, `https://` servers) does
//! the TLS handshake first, with the service's verification settings ([`crate::ClientTls`]):
//! a replica whose certificate does not verify fails its check, with the reason.
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::{ClientTls, TlsError, host_of};

/// What a check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `GET http://ADDR{path}`; passes when the status is in one of the `expect` ranges.
    Http {
        /// Request path, starting with `/`.
        path: String,
        /// Inclusive status ranges that pass.
        expect: Vec<(u16, u16)>,
        /// HTTPS: the TLS handshake first, if set.
        tls: Option<ProbeTls>,
    },
    /// A TCP connection to the address is accepted.
    Tcp,
}

impl Probe {
    /// An HTTP probe of `path` passing on the `expect` ranges, or a TCP probe without a path
    /// (the shape of a stack file's `health:` section).
    pub fn of(path: Option<&str>, expect: &[(u16, u16)]) -> Probe {
        match path {
            Some(path) => Probe::Http {
                path: path.to_owned(),
                expect: expect.to_vec(),
                tls: None,
            },
            None => Probe::Tcp,
        }
    }

    /// An HTTP probe of `path` passing on 2xx and 3xx.
    pub fn http(path: impl Into<String>) -> Probe {
        Probe::Http {
            path: path.into(),
            expect: vec![(200, 399)],
            tls: None,
        }
    }

    /// The same probe over TLS (an HTTP probe becomes HTTPS; a TCP probe stays a connect).
    pub fn over_tls(self, tls: ProbeTls) -> Probe {
        match self {
            Probe::Http { path, expect, .. } => Probe::Http {
                path,
                expect,
                tls: Some(tls),
            },
            Probe::Tcp => Probe::Tcp,
        }
    }
}

/// How an HTTPS probe does its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTls {
    /// Trust, name and ALPN (offer `http/1.1`: the probe speaks HTTP/1.1).
    pub client: ClientTls,
    /// The host the replica is reached at, for the name verified when the settings have no
    /// `server_name` (`localhost` for local replicas); None: the host of the address probed.
    pub host: Option<String>,
}

/// Longest status line read before giving up on a response.
const MAX_STATUS_LINE: usize = 1024;

/// Why a probe failed. The message is the reason shown in events and status.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No answer within the probe's timeout.
    #[error("timed out after {}ms", .0.as_millis())]
    TimedOut(Duration),
    /// The TCP connection was not accepted.
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    /// TLS to the replica could not be set up, or its handshake failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Sending the request failed.
    #[error("write: {0}")]
    Write(#[source] std::io::Error),
    /// Reading the response failed.
    #[error("read: {0}")]
    Read(#[source] std::io::Error),
    /// No line end within the first [`MAX_STATUS_LINE`] bytes.
    #[error("status line too long")]
    StatusLineTooLong,
    /// The replica closed the connection before answering.
    #[error("connection closed without a response")]
    NoResponse,
    /// The answer does not start with `HTTP/x NNN` (its first characters).
    #[error("not an HTTP response: {0:?}")]
    NotHttp(String),
    /// A three-character status code that is not a number.
    #[error("bad status code {0:?}")]
    BadStatusCode(String),
    /// A status outside the expected ranges.
    #[error("HTTP status {0}")]
    Status(u16),
}

/// Run one probe against `addr` (`host:port`); `Err` says why it failed.
pub async fn check(probe: &Probe, addr: &str, timeout: Duration) -> Result<(), ProbeError> {
    match tokio::time::timeout(timeout, check_inner(probe, addr)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::TimedOut(timeout)),
    }
}

async fn check_inner(probe: &Probe, addr: &str) -> Result<(), ProbeError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(ProbeError::Connect)?;
    let Probe::Http { path, expect, tls } = probe else {
        return Ok(());
    };
    match tls {
        None => http_status(&mut stream, addr, path, expect).await,
        Some(tls) => {
            let host = tls.host.as_deref().unwrap_or_else(|| host_of(addr));
            let mut stream = tls.client.handshake(stream, host).await?;
            http_status(&mut stream, addr, path, expect).await
        }
    }
}

/// Send the probe's `GET` on `stream` and check the status it gets.
async fn http_status(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    addr: &str,
    path: &str,
    expect: &[(u16, u16)],
) -> Result<(), ProbeError> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: shoal-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(ProbeError::Write)?;
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            buf.truncate(end);
            break;
        }
        if buf.len() > MAX_STATUS_LINE {
            return Err(ProbeError::StatusLineTooLong);
        }
        let n = stream.read(&mut chunk).await.map_err(ProbeError::Read)?;
        if n == 0 {
            if buf.is_empty() {
                return Err(ProbeError::NoResponse);
            }
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let status = parse_status_line(&buf)?;
    if expect.iter().any(|&(lo, hi)| (lo..=hi).contains(&status)) {
        Ok(())
    } else {
        Err(ProbeError::Status(status))
    }
}

/// The status code of `HTTP/1.x NNN reason`.
fn parse_status_line(line: &[u8]) -> Result<u16, ProbeError> {
    let text = String::from_utf8_lossy(line);
    let mut parts = text.split_ascii_whitespace();
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/") || code.len() != 3 {
        return Err(ProbeError::NotHttp(truncate(&text, 60).to_owned()));
    }
    code.parse()
        .map_err(|_| ProbeError::BadStatusCode(code.to_owned()))
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::ClientTls;
    use tokio::net::TcpListener;

    /// [`super::check`] with the reason as the text events show, so that tests read it.
    async fn check(probe: &Probe, addr: &str, timeout: Duration) -> Result<(), String> {
        super::check(probe, addr, timeout)
            .await
            .map_err(|e| e.to_string())
    }

    /// [`super::parse_status_line`] with the reason as text.
    fn parse_status_line(line: &[u8]) -> Result<u16, String> {
        super::parse_status_line(line).map_err(|e| e.to_string())
    }

    #[test]
    fn failures_say_why_in_their_type_and_their_text() {
        let not_http = super::parse_status_line(b"SSH-2.0-OpenSSH").unwrap_err();
        assert!(matches!(&not_http, ProbeError::NotHttp(t) if t == "SSH-2.0-OpenSSH"));
        assert_eq!(
            not_http.to_string(),
            "not an HTTP response: \"SSH-2.0-OpenSSH\""
        );
        let bad = super::parse_status_line(b"HTTP/1.1 2x0 x").unwrap_err();
        assert_eq!(bad.to_string(), "bad status code \"2x0\"");
        assert_eq!(ProbeError::Status(503).to_string(), "HTTP status 503");
        assert_eq!(
            ProbeError::TimedOut(Duration::from_millis(250)).to_string(),
            "timed out after 250ms"
        );
    }

    #[tokio::test]
    async fn a_status_outside_the_ranges_is_typed() {
        let down = serve("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let result = super::check(&Probe::http("/"), &down, Duration::from_secs(2)).await;
        assert!(matches!(result, Err(ProbeError::Status(503))), "{result:?}");
    }

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Ok(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 302 Found"), Ok(302));
        assert_eq!(parse_status_line(b"HTTP/1.1 503"), Ok(503));
        assert!(parse_status_line(b"SSH-2.0-OpenSSH").is_err());
        assert!(parse_status_line(b"HTTP/1.1 2000 x").is_err());
    }

    /// A one-shot server answering every connection with `response`.
    async fn serve(response: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(response.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn http_probe_passes_on_2xx_and_3xx_only() {
        let ok = serve("HTTP/1.1 204 No Content\r\n\r\n").await;
        let redirect = serve("HTTP/1.1 301 Moved\r\nLocation: /\r\n\r\n").await;
        let down = serve("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let http = Probe::http("/health");
        let t = Duration::from_secs(2);
        assert_eq!(check(&http, &ok, t).await, Ok(()));
        assert_eq!(check(&http, &redirect, t).await, Ok(()));
        assert_eq!(check(&http, &down, t).await, Err("HTTP status 503".into()));
        // Expected statuses are configurable: 503 passes, 204 does not.
        let only_503 = Probe::Http {
            path: "/health".into(),
            expect: vec![(503, 503)],
            tls: None,
        };
        assert_eq!(check(&only_503, &down, t).await, Ok(()));
        assert_eq!(
            check(&only_503, &ok, t).await,
            Err("HTTP status 204".into())
        );
    }

    /// A TLS server for `localhost` (signed by a fresh CA, written to `dir/ca.pem`)
    /// answering every connection with 200; returns its address.
    async fn serve_tls(dir: &std::path::Path, ca_name: &str) -> String {
        use rustls_pki_types::PrivateKeyDer;
        use rustls_pki_types::pem::PemObject;
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, ca_name);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(s).await else {
                        return;
                    };
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                    let _ = s.shutdown().await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn https_probes_verify_the_replica_like_requests_do() {
        let dir = std::env::temp_dir().join(format!("shoal-probe-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let addr = serve_tls(&dir, "probe test CA").await;
        let t = Duration::from_secs(5);
        let tls = |ca: Option<std::path::PathBuf>, insecure: bool| ProbeTls {
            client: ClientTls::new(crate::tls::TlsSettings {
                ca,
                insecure_skip_verify: insecure,
                alpn: vec![crate::tls::ALPN_HTTP1.to_vec()],
                ..Default::default()
            })
            .unwrap(),
            host: Some("localhost".into()),
        };
        let https = Probe::http("/health").over_tls(tls(Some(dir.join("ca.pem")), false));
        assert_eq!(check(&https, &addr, t).await, Ok(()));
        // Another CA (its own, just made): the check fails and says why.
        let other = dir.join("other");
        std::fs::create_dir_all(&other).unwrap();
        let _ = serve_tls(&other, "another CA").await;
        let wrong = Probe::http("/health").over_tls(tls(Some(other.join("ca.pem")), false));
        let err = check(&wrong, &addr, t).await.unwrap_err();
        assert!(err.contains("not signed by a trusted CA"), "{err}");
        // Verification off: passes.
        let insecure = Probe::http("/health").over_tls(tls(None, true));
        assert_eq!(check(&insecure, &addr, t).await, Ok(()));
        // A plain HTTP probe of a TLS replica fails; a TCP probe stays a connect.
        assert!(check(&Probe::http("/health"), &addr, t).await.is_err());
        assert_eq!(
            check(&Probe::Tcp.over_tls(tls(None, true)), &addr, t).await,
            Ok(())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn probes_fail_when_nothing_listens_or_nothing_answers() {
        // A port that was free a moment ago: nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        assert!(
            check(&Probe::Tcp, &addr, Duration::from_secs(1))
                .await
                .is_err()
        );
        // A listener that accepts but never answers: the HTTP probe times out, TCP passes.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        assert_eq!(
            check(&Probe::Tcp, &addr, Duration::from_secs(1)).await,
            Ok(())
        );
        let http = Probe::http("/");
        let err = check(&http, &addr, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(err.contains("timed out"), "{err}");
    }
}
