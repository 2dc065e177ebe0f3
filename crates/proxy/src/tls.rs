//! TLS termination at the entrypoints: certificates from PEM files, chosen by SNI, and
//! reloaded without dropping connections.
//!
//! Policy (docs/tls.md has it for users):
//!
//! - Provider: aws-lc-rs (`rustls::crypto::aws_lc_rs`), always passed explicitly, never the
//!   process default.
//! - Versions: TLS 1.3 and 1.2, or 1.3 only (`min_version: "1.3"`). TLS 1.0 and 1.1 are never
//!   offered: rustls does not implement them.
//! - Cipher suites: the provider's defaults, all AEAD with ephemeral key exchange: TLS 1.3's
//!   AES-256-GCM, AES-128-GCM and ChaCha20-Poly1305; for TLS 1.2 only ECDHE with AES-GCM or
//!   ChaCha20-Poly1305 (no CBC, no RSA key exchange, no SHA-1 MACs).
//! - ALPN: `h2`, then `http/1.1`.
//! - Resumption: stateless tickets (keys rotated every 6 h, [`rustls::crypto::aws_lc_rs::Ticketer`])
//!   and a bounded in-memory session cache ([`SESSION_CACHE_ENTRIES`]) for TLS 1.2 clients
//!   that resume by session id. No 0-RTT (early data can be replayed).
//!
//! Choosing a certificate (RFC 6066 §3, RFC 6125 §6.4): each certificate is valid for the DNS
//! names in its subjectAltName; a name matches case-insensitively, and `*.example.com`
//! matches exactly one more label (`a.example.com`, not `example.com` nor `a.b.example.com`).
//! An exact name wins over a wildcard, and the first certificate listed wins a tie. IP
//! addresses in subjectAltName never match SNI (RFC 6066 §3 forbids IP literals in SNI);
//! clients without SNI, or with a name no certificate has, get the first certificate.
//!
//! Reload: each entrypoint's `ServerConfig` sits behind an `ArcSwap`. A handshake takes the
//! current one; a reload builds the new one completely (every file read and checked) before
//! swapping, so a bad file leaves the old certificates serving and open connections are never
//! touched. [`TlsEntrypoints::reload`] is the stack-file reload; [`TlsEntrypoints::watch`]
//! polls the files' metadata every [`WATCH_EVERY`] and reloads an entrypoint whose files
//! changed.
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use shoal_config::{CertificateFiles, Entrypoint, EntrypointTls, TlsVersion};
use shoal_core::{EventKind, EventLog};

/// TLS 1.2 sessions remembered for resumption by session id, per entrypoint (about 100 bytes
/// each). TLS 1.3 clients resume with stateless tickets and need no entry.
pub const SESSION_CACHE_ENTRIES: usize = 4096;

/// A certificate expiring sooner than this is a warning in `shoal check`.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// How often [`TlsEntrypoints::watch`] looks at the certificate and key files.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// ALPN protocols offered, in the server's order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a certificate could not be used. Each names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{}: cannot read the file: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file is not valid PEM.
    #[error("{}: not a valid PEM file: {reason}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// The parser's words.
        reason: String,
    },
    /// The certificate file holds no certificate.
    #[error("{}: no certificate in this file (expected a PEM `BEGIN CERTIFICATE` block)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The leaf certificate is not valid X.509.
    #[error("{}: the certificate cannot be parsed: {reason}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// The parser's words.
        reason: String,
    },
    /// The key file holds no private key.
    #[error(
        "{}: no private key in this file (expected a PEM `BEGIN PRIVATE KEY`, `BEGIN EC PRIVATE KEY` or `BEGIN RSA PRIVATE KEY` block)",
        path.display()
    )]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is of a kind the provider cannot sign with.
    #[error("{}: the private key cannot be used: {reason}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// The provider's words.
        reason: String,
    },
    /// The private key is not the certificate's.
    #[error("{}: the private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate's `notAfter` is past.
    #[error("{}: the certificate expired on {} (notAfter)", path.display(), Date(*not_after))]
    Expired {
        /// The certificate file.
        path: PathBuf,
        /// `notAfter`, in seconds since the Unix epoch.
        not_after: i64,
    },
    /// The certificate's `notBefore` is still to come.
    #[error("{}: the certificate is not valid before {} (notBefore)", path.display(), Date(*not_before))]
    NotYetValid {
        /// The certificate file.
        path: PathBuf,
        /// `notBefore`, in seconds since the Unix epoch.
        not_before: i64,
    },
    /// The entrypoint lists no certificate.
    #[error("no certificate is configured")]
    NoCertificates,
    /// rustls refused the configuration.
    #[error("cannot set up TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A [`TlsError`] and the entrypoint whose certificates it is about.
#[derive(Debug, thiserror::Error)]
#[error("entrypoint `{entrypoint}`: {error}")]
pub struct EntrypointTlsError {
    /// The entrypoint.
    pub entrypoint: String,
    /// What is wrong.
    #[source]
    pub error: TlsError,
}

/// Something to fix before it becomes an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsWarning {
    /// The certificate expires within [`EXPIRY_WARNING`].
    ExpiresSoon {
        /// The certificate file.
        path: PathBuf,
        /// `notAfter`, in seconds since the Unix epoch.
        not_after: i64,
    },
    /// The certificate names no DNS name in subjectAltName: only clients whose SNI matches
    /// no other certificate get it, and browsers will not accept it for any name.
    NoNames {
        /// The certificate file.
        path: PathBuf,
    },
}

impl fmt::Display for TlsWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsWarning::ExpiresSoon { path, not_after } => write!(
                f,
                "{}: the certificate expires on {} (notAfter): renew it soon",
                path.display(),
                Date(*not_after)
            ),
            TlsWarning::NoNames { path } => write!(
                f,
                "{}: the certificate names no DNS name in subjectAltName; it is only served to \
                 clients whose SNI no other certificate matches",
                path.display()
            ),
        }
    }
}

/// What [`check`] found in an entrypoint's certificates.
#[derive(Debug, Default)]
pub struct TlsCheck {
    /// Certificates that cannot be served.
    pub errors: Vec<TlsError>,
    /// Certificates that can, with something to fix.
    pub warnings: Vec<TlsWarning>,
}

/// Check every certificate of an entrypoint as loading would, collecting every problem
/// (loading stops at the first) and the warnings (expiry within [`EXPIRY_WARNING`], no names).
pub fn check(tls: &EntrypointTls) -> TlsCheck {
    let provider = provider();
    let now = unix_now();
    let mut found = TlsCheck::default();
    if tls.certificates.is_empty() {
        found.errors.push(TlsError::NoCertificates);
    }
    for files in &tls.certificates {
        match load_certificate(files, &provider, now) {
            Ok(cert) => found.warnings.extend(cert.warnings(now)),
            Err(e) => found.errors.push(e),
        }
    }
    found
}

/// Build the `ServerConfig` for an entrypoint: every certificate read and checked, or the
/// first problem.
pub fn server_config(tls: &EntrypointTls) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let now = unix_now();
    let certificates = tls
        .certificates
        .iter()
        .map(|files| load_certificate(files, &provider, now))
        .collect::<Result<Vec<_>, _>>()?;
    let resolver = ByServerName::new(&certificates).ok_or(TlsError::NoCertificates)?;
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(Arc::new(config))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One certificate, loaded and checked.
struct Loaded {
    files: CertificateFiles,
    key: Arc<CertifiedKey>,
    /// DNS names of its subjectAltName, lowercase, as written (`*.x` included).
    names: Vec<String>,
    not_after: i64,
}

impl Loaded {
    fn warnings(&self, now: i64) -> Vec<TlsWarning> {
        let mut warnings = Vec::new();
        if self.not_after - now < EXPIRY_WARNING.as_secs() as i64 {
            warnings.push(TlsWarning::ExpiresSoon {
                path: self.files.cert.clone(),
                not_after: self.not_after,
            });
        }
        if self.names.is_empty() {
            warnings.push(TlsWarning::NoNames {
                path: self.files.cert.clone(),
            });
        }
        warnings
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Unreadable {
        path: path.to_owned(),
        source,
    })
}

/// Read a chain and its key, and check that they belong together and are valid now.
fn load_certificate(
    files: &CertificateFiles,
    provider: &CryptoProvider,
    now: i64,
) -> Result<Loaded, TlsError> {
    let cert_path = &files.cert;
    let pem = read(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: cert_path.clone(),
            reason: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: cert_path.clone(),
        });
    };
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| TlsError::BadCertificate {
            path: cert_path.clone(),
            reason: e.to_string(),
        })?;
    let names = dns_names(&parsed).map_err(|reason| TlsError::BadCertificate {
        path: cert_path.clone(),
        reason,
    })?;
    let not_before = parsed.validity().not_before.timestamp();
    let not_after = parsed.validity().not_after.timestamp();

    let key_path = &files.key;
    let pem = read(key_path)?;
    let key = match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => key,
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::NoPrivateKey {
                path: key_path.clone(),
            });
        }
        Err(e) => {
            return Err(TlsError::BadPem {
                path: key_path.clone(),
                reason: e.to_string(),
            });
        }
    };
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::BadKey {
                path: key_path.clone(),
                reason: e.to_string(),
            })?;
    let key = CertifiedKey::new(chain, signing_key);
    match key.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert_path.clone(),
                key: key_path.clone(),
            });
        }
        // The provider cannot tell (no public key from the private one): serve it, as rustls
        // itself does.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(TlsError::BadCertificate {
                path: cert_path.clone(),
                reason: e.to_string(),
            });
        }
    }
    if now > not_after {
        return Err(TlsError::Expired {
            path: cert_path.clone(),
            not_after,
        });
    }
    if now < not_before {
        return Err(TlsError::NotYetValid {
            path: cert_path.clone(),
            not_before,
        });
    }
    Ok(Loaded {
        files: files.clone(),
        key: Arc::new(key),
        names,
        not_after,
    })
}

/// The DNS names of a certificate's subjectAltName, lowercase (IP addresses left out: they
/// never match SNI).
fn dns_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    let san = cert.subject_alternative_name().map_err(|e| e.to_string())?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Certificates by the names they are valid for.
#[derive(Debug)]
struct ByServerName {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl ByServerName {
    /// None without certificates.
    fn new(certificates: &[Loaded]) -> Option<ByServerName> {
        let default = certificates.first()?.key.clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for cert in certificates {
            for name in &cert.names {
                // RFC 6125 §6.4.3: a wildcard only as the whole left-most label; partial
                // wildcards (`w*.example.com`) are not supported, as by browsers.
                if let Some(parent) = name.strip_prefix("*.") {
                    if !parent.contains('*') {
                        wildcard
                            .entry(parent.to_owned())
                            .or_insert_with(|| cert.key.clone());
                    }
                } else if !name.contains('*') {
                    exact
                        .entry(name.clone())
                        .or_insert_with(|| cert.key.clone());
                }
            }
        }
        Some(ByServerName {
            default,
            exact,
            wildcard,
        })
    }

    fn choose(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return &self.default;
        };
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return key;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for ByServerName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.choose(hello.server_name()).clone())
    }
}

/// The metadata that tells a file changed: modification time, size and inode (followed
/// through symlinks, so certbot's `live/` links switching to new files count).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Option<(SystemTime, u64, u64)>);

impl Stamp {
    fn of(path: &Path) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp(
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.modified().unwrap_or(UNIX_EPOCH), m.len(), m.ino())),
        )
    }
}

fn stamps(tls: &EntrypointTls) -> Vec<Stamp> {
    tls.certificates
        .iter()
        .flat_map(|c| [Stamp::of(&c.cert), Stamp::of(&c.key)])
        .collect()
}

/// An entrypoint's current TLS configuration and what it was built from.
#[derive(Debug)]
struct Current {
    config: Arc<ServerConfig>,
    tls: EntrypointTls,
    /// The files' stamps taken just before they were read.
    stamps: Vec<Stamp>,
}

impl Current {
    fn load(tls: &EntrypointTls) -> Result<Current, TlsError> {
        let stamps = stamps(tls);
        Ok(Current {
            config: server_config(tls)?,
            tls: tls.clone(),
            stamps,
        })
    }
}

/// One TLS entrypoint.
#[derive(Debug)]
pub(crate) struct TlsEntrypoint {
    name: String,
    current: ArcSwap<Current>,
    /// The watcher's memory of files that failed to load (only the watcher locks it).
    failed: Mutex<Failed>,
}

#[derive(Debug, Default)]
struct Failed {
    /// Stamps of the last failed attempt (the files may have been mid-write).
    attempt: Option<Vec<Stamp>>,
    /// Stamps already reported as failing, not retried until the files change again.
    reported: Option<Vec<Stamp>>,
}

impl TlsEntrypoint {
    /// The configuration new connections get.
    pub(crate) fn config(&self) -> Arc<ServerConfig> {
        self.current.load().config.clone()
    }
}

/// The TLS configurations of every TLS entrypoint, swapped whole on reload.
#[derive(Debug, Default)]
pub struct TlsEntrypoints {
    entrypoints: Vec<Arc<TlsEntrypoint>>,
}

impl TlsEntrypoints {
    /// Load the certificates of every entrypoint with `tls`; the first problem is the error.
    pub fn load(entrypoints: &[Entrypoint]) -> Result<Arc<TlsEntrypoints>, EntrypointTlsError> {
        let entrypoints = entrypoints
            .iter()
            .filter_map(|ep| ep.tls.as_ref().map(|tls| (ep, tls)))
            .map(|(ep, tls)| {
                let current = Current::load(tls).map_err(|error| EntrypointTlsError {
                    entrypoint: ep.name.clone(),
                    error,
                })?;
                Ok(Arc::new(TlsEntrypoint {
                    name: ep.name.clone(),
                    current: ArcSwap::from_pointee(current),
                    failed: Mutex::default(),
                }))
            })
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(TlsEntrypoints { entrypoints }))
    }

    /// Names of the TLS entrypoints.
    pub fn names(&self) -> Vec<&str> {
        self.entrypoints.iter().map(|e| e.name.as_str()).collect()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<TlsEntrypoint>> {
        self.entrypoints.iter().find(|e| e.name == name)
    }

    /// Reload the certificates of every TLS entrypoint from `entrypoints` (a reloaded stack
    /// file): all are read and checked before any is swapped, so on error nothing changes.
    /// New connections get the new certificates; open ones keep theirs. Entrypoints that were
    /// not TLS when shoal started are left out (listeners change only on restart). Returns
    /// the names of the entrypoints reloaded.
    pub fn reload(&self, entrypoints: &[Entrypoint]) -> Result<Vec<String>, EntrypointTlsError> {
        let mut loaded = Vec::new();
        for ep in entrypoints {
            let (Some(tls), Some(serving)) = (&ep.tls, self.get(&ep.name)) else {
                continue;
            };
            let current = Current::load(tls).map_err(|error| EntrypointTlsError {
                entrypoint: ep.name.clone(),
                error,
            })?;
            loaded.push((serving, current));
        }
        Ok(loaded
            .into_iter()
            .map(|(serving, current)| {
                serving.current.store(Arc::new(current));
                *serving.failed.lock().unwrap_or_else(|e| e.into_inner()) = Failed::default();
                serving.name.clone()
            })
            .collect())
    }

    /// Watch the certificate and key files: every [`WATCH_EVERY`], reload the entrypoints
    /// whose files changed, logging and recording each reload (`reloaded`) or failure
    /// (`reloadfailed`, the old certificates keep serving) in `events`. A failure is reported
    /// once the files have stayed the same for one more look (a renewal tool may be between
    /// writing the certificate and the key). Ends when `self` is dropped.
    pub fn watch(self: &Arc<Self>, events: Arc<EventLog>) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        tokio::spawn(watch_loop(me, events))
    }

    /// Look at the files once (what [`TlsEntrypoints::watch`] does every [`WATCH_EVERY`]).
    pub fn look(&self, events: &EventLog) {
        for ep in &self.entrypoints {
            look_at(ep, events);
        }
    }
}

async fn watch_loop(me: Weak<TlsEntrypoints>, events: Arc<EventLog>) {
    let mut every = tokio::time::interval(WATCH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(me) = me.upgrade() else {
            return;
        };
        if me.entrypoints.is_empty() {
            return;
        }
        // Reading a few small files; off the async workers all the same.
        let looked = {
            let events = events.clone();
            tokio::task::spawn_blocking(move || me.look(&events))
        };
        let _ = looked.await;
    }
}

fn look_at(ep: &TlsEntrypoint, events: &EventLog) {
    let current = ep.current.load_full();
    let now = stamps(&current.tls);
    if now == current.stamps {
        return;
    }
    let mut failed = ep.failed.lock().unwrap_or_else(|e| e.into_inner());
    if failed.reported.as_ref() == Some(&now) {
        return;
    }
    match Current::load(&current.tls) {
        Ok(new) => {
            let files = changed_files(&current, &new.stamps);
            ep.current.store(Arc::new(new));
            *failed = Failed::default();
            let message = format!(
                "entrypoint `{}`: certificates reloaded ({} changed)",
                ep.name, files
            );
            tracing::info!("{message}");
            events.emit("", None, EventKind::Reloaded, message);
        }
        Err(error) if failed.attempt.as_ref() == Some(&now) => {
            let message = format!(
                "entrypoint `{}`: {error}; the previous certificates keep serving",
                ep.name
            );
            tracing::warn!("{message}");
            events.emit("", None, EventKind::ReloadFailed, message);
            failed.reported = Some(now);
            failed.attempt = None;
        }
        Err(error) => {
            tracing::debug!(entrypoint = %ep.name, %error, "certificate files changed but do not load (yet)");
            failed.attempt = Some(now);
        }
    }
}

/// The files whose stamps differ, for the reload message.
fn changed_files(current: &Current, new: &[Stamp]) -> String {
    let paths = current
        .tls
        .certificates
        .iter()
        .flat_map(|c| [&c.cert, &c.key]);
    let changed: Vec<String> = paths
        .zip(current.stamps.iter().zip(new))
        .filter(|(_, (old, new))| old != new)
        .map(|(p, _)| p.display().to_string())
        .collect();
    if changed.is_empty() {
        "files".to_owned()
    } else {
        changed.join(", ")
    }
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC`.
#[derive(Debug, Clone, Copy)]
pub struct Date(pub i64);

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_in_utc() {
        assert_eq!(Date(0).to_string(), "1970-01-01 00:00:00 UTC");
        assert_eq!(Date(1_738_367_999).to_string(), "2025-01-31 23:59:59 UTC");
        assert_eq!(Date(951_782_400).to_string(), "2000-02-29 00:00:00 UTC");
        assert_eq!(Date(-1).to_string(), "1969-12-31 23:59:59 UTC");
    }

    fn key(n: u8) -> Arc<CertifiedKey> {
        #[derive(Debug)]
        struct NoKey;
        impl rustls::sign::SigningKey for NoKey {
            fn choose_scheme(
                &self,
                _: &[rustls::SignatureScheme],
            ) -> Option<Box<dyn rustls::sign::Signer>> {
                None
            }
            fn algorithm(&self) -> rustls::SignatureAlgorithm {
                rustls::SignatureAlgorithm::ECDSA
            }
        }
        Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(vec![n])],
            Arc::new(NoKey),
        ))
    }

    fn loaded(n: u8, names: &[&str]) -> Loaded {
        Loaded {
            files: CertificateFiles {
                cert: format!("{n}.pem").into(),
                key: format!("{n}-key.pem").into(),
            },
            key: key(n),
            names: names.iter().map(|s| s.to_string()).collect(),
            not_after: 0,
        }
    }

    fn chosen(by: &ByServerName, sni: Option<&str>) -> u8 {
        by.choose(sni).cert[0].as_ref()[0]
    }

    #[test]
    fn sni_picks_exact_names_then_one_label_wildcards_then_the_default() {
        let by = ByServerName::new(&[
            loaded(1, &["default.test"]),
            loaded(2, &["*.example.com", "api.other.test"]),
            loaded(3, &["www.example.com", "*.*.bad.test", "w*.partial.test"]),
            loaded(4, &["api.other.test", "*.example.com"]),
        ])
        .unwrap();
        assert_eq!(chosen(&by, None), 1, "no SNI: the first certificate");
        assert_eq!(chosen(&by, Some("unknown.test")), 1);
        assert_eq!(chosen(&by, Some("default.test")), 1);
        assert_eq!(chosen(&by, Some("a.example.com")), 2, "wildcard");
        assert_eq!(chosen(&by, Some("A.Example.COM")), 2, "case-insensitive");
        assert_eq!(
            chosen(&by, Some("www.example.com")),
            3,
            "exact beats wildcard"
        );
        assert_eq!(chosen(&by, Some("www.example.com.")), 3, "trailing dot");
        assert_eq!(chosen(&by, Some("example.com")), 1, "* needs one label");
        assert_eq!(
            chosen(&by, Some("a.b.example.com")),
            1,
            "* is one label only"
        );
        assert_eq!(chosen(&by, Some("api.other.test")), 2, "first listed wins");
        assert_eq!(chosen(&by, Some("x.y.bad.test")), 1, "no nested wildcards");
        assert_eq!(
            chosen(&by, Some("wx.partial.test")),
            1,
            "no partial wildcards"
        );
        assert!(ByServerName::new(&[]).is_none());
    }

    #[test]
    fn warnings_name_the_file_and_the_date() {
        let mut cert = loaded(1, &[]);
        cert.not_after = 1_738_367_999;
        let w = cert.warnings(1_738_367_999 - 10 * 86_400);
        assert_eq!(w.len(), 2);
        assert_eq!(
            w[0].to_string(),
            "1.pem: the certificate expires on 2025-01-31 23:59:59 UTC (notAfter): renew it soon"
        );
        assert!(matches!(w[1], TlsWarning::NoNames { .. }));
        let mut cert = loaded(1, &["a.test"]);
        cert.not_after = 1_738_367_999;
        assert!(cert.warnings(1_738_367_999 - 31 * 86_400).is_empty());
    }
}
