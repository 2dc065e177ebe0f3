//! Certificates for HTTPS tests: a test CA (made here with rcgen, never checked in) that signs
//! a certificate for `localhost` and `127.0.0.1`, written to a temp dir for a stack file's
//! `tls:`, and a rustls client that trusts it.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A new CA named `common_name`, for certificates and revocation lists: what signs with its
/// key, and its certificate.
pub fn test_ca(common_name: &str) -> (Issuer<'static, KeyPair>, Certificate) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("CA certificate");
    (Issuer::new(params, key), cert)
}

/// A test CA and one server certificate it signed, in files.
#[derive(Debug)]
pub struct TestCerts {
    dir: tempfile::TempDir,
    client: Arc<ClientConfig>,
}

impl TestCerts {
    /// A new CA, and `cert.pem` / `key.pem` for `localhost` and `127.0.0.1` signed by it.
    pub fn new() -> TestCerts {
        let (issuer, ca_cert) = test_ca("shoal test CA");

        let key = KeyPair::generate().expect("server key");
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = leaf.signed_by(&key, &issuer).expect("server certificate");

        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).expect("write cert.pem");
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("write key.pem");

        let mut roots = RootCertStore::empty();
        roots.add(ca_cert.der().clone()).expect("trust the test CA");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TestCerts {
            dir,
            client: Arc::new(client),
        }
    }

    /// The server certificate's file.
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Its key's file.
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// The folder the files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A TLS connection to `addr` as `localhost`, offering no ALPN (so HTTP/1.1).
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").expect("a DNS name");
        TlsConnector::from(self.client.clone())
            .connect(name, tcp)
            .await
    }
}

impl Default for TestCerts {
    fn default() -> Self {
        TestCerts::new()
    }
}
