//! TLS to replicas, the client side: shared by the gateway (requests to a service's
//! replicas, checks of its static servers) and the supervisor (readiness and liveness probes
//! of its local replicas), so that both verify a replica the same way.
//!
//! A [`ClientTls`] is one rustls `ClientConfig` (aws-lc-rs provider, TLS 1.2 and 1.3, the
//! provider's safe defaults) built from a service's `tls:` settings, plus the name to verify:
//!
//! * **Trust**: the `ca` bundle (PEM, one or more certificates) when given, else the
//!   system's roots (`rustls-native-certs`, read once, on first use).
//! * **Name**: `server_name` when given, else the host the caller connects to (a static
//!   server's URL host; `localhost` for local replicas). It is also sent as SNI, except an
//!   IP address: that is verified against the certificate's IP SANs and sends no SNI
//!   (RFC 6066 §3: literal addresses are not permitted in `HostName`).
//! * **ALPN**: the protocols the caller will speak (`h2`, or `http/1.1`).
//! * **Resumption**: rustls' in-memory session cache (256 sessions per config), so
//!   reconnecting to a replica resumes instead of a full handshake.
//! * **`insecure_skip_verify`**: any certificate is accepted, for any name; the handshake
//!   signatures are still checked (the peer holds the key of the certificate it sent), so
//!   the connection is encrypted, but not authenticated: anyone on the path can pose as
//!   the replica.
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use rustls::{SignatureScheme, crypto};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// ALPN identifier of HTTP/2 over TLS (RFC 9113 §3.2).
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN identifier of HTTP/1.1 (RFC 7301 §6).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A service's `tls:` settings, as the stack file gives them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    /// CA bundle (PEM) replica certificates must chain to; None: the system's roots.
    pub ca: Option<PathBuf>,
    /// Name to verify certificates for and send as SNI; None: the host connected to.
    pub server_name: Option<String>,
    /// Accept any certificate (encrypted, not authenticated).
    pub insecure_skip_verify: bool,
    /// Protocols offered by ALPN, most preferred first.
    pub alpn: Vec<Vec<u8>>,
}

/// Why TLS to a replica could not be set up or failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TlsError {
    /// The CA bundle could not be read or holds no usable certificate.
    #[error("CA bundle {path}: {why}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A name that is neither a DNS name nor an IP address.
    #[error("{0:?} is not a valid TLS server name (a DNS name or an IP address)")]
    Name(String),
    /// The rustls configuration was refused (should not happen with the defaults).
    #[error("TLS client configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The handshake failed: the replica's certificate did not verify, or it does not
    /// speak TLS. The text says which.
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
}

/// A compiled `tls:` setting: the rustls client config and the name to verify. Cheap to
/// clone (shared). Two are equal when their settings and CA bundle contents are.
#[derive(Clone)]
pub struct ClientTls {
    inner: Arc<Inner>,
}

struct Inner {
    settings: TlsSettings,
    /// The CA bundle's contents when the config was built (to see a changed file on reload).
    ca_pem: Option<Vec<u8>>,
    config: Arc<ClientConfig>,
    /// `server_name`, parsed.
    fixed_name: Option<ServerName<'static>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
            || (self.inner.settings == other.inner.settings
                && self.inner.ca_pem == other.inner.ca_pem)
    }
}

impl Eq for ClientTls {}

impl ClientTls {
    /// Build the client side of `settings`: reads the CA bundle, if any.
    pub fn new(settings: TlsSettings) -> Result<ClientTls, TlsError> {
        let ca_pem = match &settings.ca {
            Some(path) => Some(read_ca(path)?),
            None => None,
        };
        let fixed_name = settings
            .server_name
            .as_deref()
            .map(server_name)
            .transpose()?;
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let mut config = if settings.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth()
        } else {
            let roots = match (&settings.ca, &ca_pem) {
                (Some(path), Some(pem)) => Arc::new(roots_from_pem(path, pem)?),
                _ => system_roots(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.alpn_protocols = settings.alpn.clone();
        Ok(ClientTls {
            inner: Arc::new(Inner {
                settings,
                ca_pem,
                config: Arc::new(config),
                fixed_name,
            }),
        })
    }

    /// This one, if it was built from `settings` and its CA bundle has not changed since;
    /// else a new one (for reloads: an unchanged setting keeps its session cache).
    pub fn rebuild(
        previous: Option<&ClientTls>,
        settings: TlsSettings,
    ) -> Result<ClientTls, TlsError> {
        if let Some(old) = previous
            && old.inner.settings == settings
        {
            let unchanged = match &settings.ca {
                Some(path) => old.inner.ca_pem.as_deref() == Some(&read_ca(path)?[..]),
                None => true,
            };
            if unchanged {
                return Ok(old.clone());
            }
        }
        ClientTls::new(settings)
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &TlsSettings {
        &self.inner.settings
    }

    /// The rustls client config.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.inner.config
    }

    /// The name to verify a replica reached at `host` for: `server_name`, else `host`.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, TlsError> {
        match &self.inner.fixed_name {
            Some(name) => Ok(name.clone()),
            None => server_name(host),
        }
    }

    /// The TLS handshake over `tcp`, with a replica reached at `host` (no timeout: the
    /// caller bounds it).
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        host: &str,
    ) -> Result<TlsStream<TcpStream>, TlsError> {
        let name = self.server_name(host)?;
        TlsConnector::from(Arc::clone(&self.inner.config))
            .connect(name, tcp)
            .await
            .map_err(|e| TlsError::Handshake(describe(&e)))
    }
}

/// `host` as a TLS server name: an IP address (brackets around IPv6 allowed) or a DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_owned()).map_err(|_| TlsError::Name(host.to_owned()))
}

/// The host of `host:port` (`[v6]:port` too), or the whole when there is no port.
pub fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// What a failed handshake means, in words an operator can act on.
fn describe(e: &std::io::Error) -> String {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return e.to_string();
    };
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the replica's certificate is not signed by a trusted CA (unknown issuer; \
             set `tls.ca` to the CA bundle that signed it)"
                .to_owned()
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
            "the replica's certificate is not valid for the name verified (set \
             `tls.server_name` to a name it is valid for)"
                .to_owned()
        }
        rustls::Error::InvalidCertificate(cert) => {
            format!("the replica's certificate is not accepted: {cert}")
        }
        rustls::Error::InvalidMessage(_) => format!(
            "{tls} (does the replica speak TLS on this port? its answer is not a TLS handshake)"
        ),
        other => other.to_string(),
    }
}

fn read_ca(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Ca {
        path: path.to_owned(),
        why: e.to_string(),
    })
}

fn roots_from_pem(path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let ca_error = |why: String| TlsError::Ca {
        path: path.to_owned(),
        why,
    };
    let mut roots = RootCertStore::empty();
    for (i, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = cert.map_err(|e| ca_error(format!("certificate {}: {e}", i + 1)))?;
        roots
            .add(cert)
            .map_err(|e| ca_error(format!("certificate {}: {e}", i + 1)))?;
    }
    if roots.is_empty() {
        return Err(ca_error(
            "no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----` blocks)".into(),
        ));
    }
    Ok(roots)
}

/// The aws-lc-rs provider, made once (never the process default: rustls is built with two).
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(crypto::aws_lc_rs::default_provider())))
}

/// The system's trusted roots, read on first use.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    Arc::clone(ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "reading the system's trusted CA certificates");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!(
                "no system CA certificates found: HTTPS to replicas without `tls.ca` will fail to verify"
            );
        }
        tracing::debug!(added, ignored, "system CA certificates loaded");
        Arc::new(roots)
    }))
}

/// `insecure_skip_verify`: any certificate, any name; the handshake signatures are still
/// verified with the provider's algorithms (the peer proves it holds the certificate's key).
/// Public for tests that need to see which certificate a server chose.
#[derive(Debug)]
pub struct AnyCertificate(Arc<CryptoProvider>);

impl AnyCertificate {
    /// Accept any certificate, checking handshake signatures with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> AnyCertificate {
        AnyCertificate(provider)
    }
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_names() {
        assert_eq!(host_of("example.com:443"), "example.com");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("127.0.0.1:1"), "127.0.0.1");
        assert_eq!(host_of("localhost"), "localhost");
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("localhost").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(matches!(server_name("bad name"), Err(TlsError::Name(_))));
    }

    #[test]
    fn a_bad_ca_bundle_is_named() {
        let dir = std::env::temp_dir().join(format!("shoal-tls-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ca.pem");
        std::fs::write(&file, "not a certificate\n").unwrap();
        let settings = TlsSettings {
            ca: Some(file.clone()),
            ..TlsSettings::default()
        };
        let err = ClientTls::new(settings).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("CA bundle {}: no certificate", file.display())),
            "{err}"
        );
        let missing = TlsSettings {
            ca: Some(dir.join("missing.pem")),
            ..TlsSettings::default()
        };
        let err = ClientTls::new(missing).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rebuild_keeps_an_unchanged_config_and_sees_a_changed_bundle() {
        let dir = std::env::temp_dir().join(format!("shoal-tls-rebuild-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ca.pem");
        let ca = |cn: &str| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            let key = rcgen::KeyPair::generate().unwrap();
            params.self_signed(&key).unwrap().pem()
        };
        std::fs::write(&file, ca("one")).unwrap();
        let settings = TlsSettings {
            ca: Some(file.clone()),
            alpn: vec![ALPN_H2.to_vec()],
            ..TlsSettings::default()
        };
        let first = ClientTls::new(settings.clone()).unwrap();
        let again = ClientTls::rebuild(Some(&first), settings.clone()).unwrap();
        assert!(
            Arc::ptr_eq(&first.inner, &again.inner),
            "unchanged: the same config"
        );
        std::fs::write(&file, ca("two")).unwrap();
        let changed = ClientTls::rebuild(Some(&first), settings).unwrap();
        assert!(!Arc::ptr_eq(&first.inner, &changed.inner));
        assert_ne!(first, changed);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
