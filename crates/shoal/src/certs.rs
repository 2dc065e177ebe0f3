//! `shoal certs dev`: a development certificate authority kept in the user's data folder,
//! and certificates it signs for local HTTPS, like mkcert.
//!
//! The CA (ECDSA P-256, 10 years, may sign end-entity certificates only) is `ca.pem` and
//! `ca-key.pem` (mode 0600) in `$XDG_DATA_HOME/shoal/dev-ca/` (else
//! `~/.local/share/shoal/dev-ca/`), made once and reused. Each run makes a new key and
//! certificate (ECDSA P-256, serverAuth, 825 days — the longest Apple platforms accept) for
//! the hosts asked for, written where the stack file's TLS entrypoints expect them, else to
//! `./localhost.pem` and `./localhost-key.pem`. A file that exists and was not made by this
//! CA is never overwritten.
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::cli::CertsDevArgs;

/// Subject of the CA certificate (with the user and host appended).
const CA_NAME: &str = "shoal development CA";
/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// How long a certificate is valid: 825 days, the longest Apple platforms accept for
/// certificates from a CA the user trusted.
const LEAF_VALIDITY: Duration = Duration::from_secs(825 * 86_400);
/// Hosts when `--hosts` is not given.
pub(crate) const DEFAULT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A certificate and key file pair to write.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    cert: PathBuf,
    key: PathBuf,
    /// `https://…` to try it with, if the stack file says where it is served.
    url: Option<String>,
}

pub(crate) fn dev(args: &CertsDevArgs) -> anyhow::Result<ExitCode> {
    let hosts: Vec<String> = if args.hosts.is_empty() {
        DEFAULT_HOSTS.iter().map(|h| (*h).to_owned()).collect()
    } else {
        args.hosts
            .iter()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .collect()
    };
    if hosts.is_empty() {
        bail!("--hosts names no host");
    }
    let ca_dir = match &args.ca_dir {
        Some(dir) => dir.clone(),
        None => default_ca_dir()?,
    };
    let targets = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => vec![Target {
            cert: cert.clone(),
            key: key.clone(),
            url: None,
        }],
        (None, None) => targets_of(&args.file)?,
        _ => bail!("give both --cert and --key, or neither"),
    };
    let (issuer, ca_path, made) = dev_ca(&ca_dir)?;
    // Check every target first: nothing is written if one may not be.
    for t in &targets {
        refuse_foreign(&t.cert, &ca_path)?;
    }
    let mut not_after = 0;
    for t in &targets {
        not_after = issue(&issuer, &hosts, t)?;
    }

    println!(
        "shoal certs dev: a certificate for {} (valid until {}), signed by the development CA {} ({})",
        hosts.join(", "),
        shoal_proxy::tls::Date(not_after),
        ca_path.display(),
        if made { "made now" } else { "reused" }
    );
    for t in &targets {
        println!("  wrote   {}   (certificate)", t.cert.display());
        println!("  wrote   {}   (private key, mode 0600)", t.key.display());
    }
    println!();
    println!("Trust the development CA on this machine (Debian, Ubuntu), once:");
    println!(
        "  sudo cp {} /usr/local/share/ca-certificates/shoal-dev-ca.crt && sudo update-ca-certificates",
        ca_path.display()
    );
    let url = targets
        .iter()
        .find_map(|t| t.url.clone())
        .unwrap_or_else(|| format!("https://{}/", url_host(&hosts[0])));
    println!("Or, without root, tell each client about it:");
    println!("  curl --cacert {} {url}", ca_path.display());
    Ok(ExitCode::SUCCESS)
}

/// `$XDG_DATA_HOME/shoal/dev-ca`, else `~/.local/share/shoal/dev-ca`.
fn default_ca_dir() -> anyhow::Result<PathBuf> {
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from)
        && data.is_absolute()
    {
        return Ok(data.join("shoal/dev-ca"));
    }
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".local/share/shoal/dev-ca")),
        _ => {
            bail!("neither XDG_DATA_HOME nor HOME is set: say where the CA lives with --ca-dir DIR")
        }
    }
}

/// Valid from `from` to `to`, in seconds since the Unix epoch.
fn set_validity(params: &mut CertificateParams, from: u64, to: u64) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(from);
    params.not_after = epoch + Duration::from_secs(to);
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The CA in `dir`: loaded if there, made otherwise. Returns it, the path of its
/// certificate, and whether it was made now.
fn dev_ca(dir: &Path) -> anyhow::Result<(Issuer<'static, KeyPair>, PathBuf, bool)> {
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            let cert = fs::read_to_string(&cert_path)
                .with_context(|| format!("cannot read {}", cert_path.display()))?;
            let key = fs::read_to_string(&key_path)
                .with_context(|| format!("cannot read {}", key_path.display()))?;
            let key = KeyPair::from_pem(&key).map_err(|e| {
                anyhow::anyhow!(
                    "{}: not a private key shoal can use: {e}",
                    key_path.display()
                )
            })?;
            let issuer = Issuer::from_ca_cert_pem(&cert, key).map_err(|e| {
                anyhow::anyhow!(
                    "{}: not a CA certificate shoal can use: {e}",
                    cert_path.display()
                )
            })?;
            Ok((issuer, cert_path, false))
        }
        (false, false) => {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let mut params = CertificateParams::default();
            let mut name = DistinguishedName::new();
            name.push(DnType::OrganizationName, CA_NAME);
            name.push(DnType::CommonName, format!("{CA_NAME} {}", whoami()));
            params.distinguished_name = name;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let now = now();
            set_validity(&mut params, now - 3600, now + CA_VALIDITY.as_secs());
            let cert = params.self_signed(&key)?;
            write_private(&key_path, &key.serialize_pem())?;
            fs::write(&cert_path, cert.pem())
                .with_context(|| format!("cannot write {}", cert_path.display()))?;
            Ok((Issuer::new(params, key), cert_path, true))
        }
        (true, false) => bail!(
            "{} exists but {} does not: restore the key, or remove the CA folder to make a new CA",
            cert_path.display(),
            key_path.display()
        ),
        (false, true) => bail!(
            "{} exists but {} does not: restore the certificate, or remove the CA folder to make a new CA",
            key_path.display(),
            cert_path.display()
        ),
    }
}

/// `user@host`, to tell development CAs apart in a trust store.
fn whoami() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
    let host = fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}

/// Refuse to replace a certificate this CA did not sign (a real one, say).
fn refuse_foreign(cert: &Path, ca_pem: &Path) -> anyhow::Result<()> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let Ok(pem) = fs::read(cert) else {
        return Ok(());
    };
    let ca = CertificateDer::from_pem_file(ca_pem)
        .map_err(|e| anyhow::anyhow!("{}: {e}", ca_pem.display()))?;
    let (_, ca) = x509_parser::parse_x509_certificate(&ca)
        .map_err(|e| anyhow::anyhow!("{}: {e}", ca_pem.display()))?;
    let existing = CertificateDer::from_pem_slice(&pem).ok();
    let parsed = existing
        .as_ref()
        .and_then(|der| x509_parser::parse_x509_certificate(der).ok());
    if let Some((_, x)) = &parsed
        && x.verify_signature(Some(ca.public_key())).is_ok()
    {
        return Ok(());
    }
    bail!(
        "{} exists and was not made by `shoal certs dev` with this CA ({}); nothing was \
         written. Move it away, or write elsewhere with --cert FILE --key FILE",
        cert.display(),
        parsed.map_or("not a PEM certificate".into(), |(_, x)| format!(
            "issued by {}",
            x.issuer()
        ))
    )
}

/// Make a key and a certificate for `hosts` and write them. Returns its `notAfter`.
fn issue(issuer: &Issuer<'_, KeyPair>, hosts: &[String], target: &Target) -> anyhow::Result<i64> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    // IP addresses become IP SANs, the rest DNS names.
    let mut params = CertificateParams::new(hosts.to_vec())
        .map_err(|e| anyhow::anyhow!("--hosts: not a host name or address: {e}"))?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "shoal development certificate");
    name.push(DnType::CommonName, hosts[0].clone());
    params.distinguished_name = name;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = now();
    let not_after = now + LEAF_VALIDITY.as_secs();
    set_validity(&mut params, now - 3600, not_after);
    let cert = params.signed_by(&key, issuer)?;
    for path in [&target.cert, &target.key] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    write_private(&target.key, &key.serialize_pem())?;
    fs::write(&target.cert, cert.pem())
        .with_context(|| format!("cannot write {}", target.cert.display()))?;
    Ok(not_after as i64)
}

/// Write a private key readable by its owner only (0600 from the start, never wider).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Where a host goes in a URL.
fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The certificate files the stack file's TLS entrypoints name (paths against its folder),
/// or `./localhost.pem` and `./localhost-key.pem` without one. Read from the YAML directly:
/// the stack file is not valid until the files exist.
fn targets_of(file: &Path) -> anyhow::Result<Vec<Target>> {
    let fallback = || {
        vec![Target {
            cert: PathBuf::from("localhost.pem"),
            key: PathBuf::from("localhost-key.pem"),
            url: None,
        }]
    };
    let Ok(text) = fs::read_to_string(file) else {
        return Ok(fallback());
    };
    let yaml: serde_norway::Value = serde_norway::from_str(&text)
        .with_context(|| format!("{}: not valid YAML", file.display()))?;
    let base = file.parent().unwrap_or(Path::new(""));
    let mut targets = Vec::new();
    let entrypoints = yaml
        .get("gateway")
        .and_then(|g| g.get("entrypoints"))
        .and_then(|e| e.as_mapping());
    for ep in entrypoints.into_iter().flat_map(|m| m.values()) {
        let Some(tls) = ep.get("tls") else {
            continue;
        };
        let url = ep
            .get("listen")
            .and_then(|l| l.as_str())
            .and_then(|l| l.rsplit_once(':'))
            .map(|(_, port)| format!("https://localhost:{port}/"));
        let pairs = match tls.get("certificates").and_then(|c| c.as_sequence()) {
            Some(list) => list.iter().collect(),
            None => vec![tls],
        };
        for pair in pairs {
            let path = |field: &str| {
                pair.get(field)
                    .and_then(|v| v.as_str())
                    .map(|p| base.join(p))
            };
            if let (Some(cert), Some(key)) = (path("cert"), path("key")) {
                let target = Target {
                    cert,
                    key,
                    url: url.clone(),
                };
                if !targets.contains(&target) {
                    targets.push(target);
                }
            }
        }
    }
    Ok(if targets.is_empty() {
        fallback()
    } else {
        targets
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_files_tls_entrypoints_name_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shoal.yaml");
        fs::write(
            &file,
            "gateway:
  entrypoints:
    web: { listen: 127.0.0.1:8000, redirect_to: websecure }
    websecure:
      listen: 127.0.0.1:8443
      tls: { cert: certs/localhost.pem, key: certs/localhost-key.pem }
    other:
      listen: 127.0.0.1:9443
      tls:
        certificates:
          - { cert: a.pem, key: a-key.pem }
          - { cert: /abs/b.pem, key: /abs/b-key.pem }
",
        )
        .unwrap();
        let targets = targets_of(&file).unwrap();
        let pairs: Vec<_> = targets
            .iter()
            .map(|t| (t.cert.clone(), t.key.clone(), t.url.clone()))
            .collect();
        let d = dir.path();
        let url = |p: &str| Some(format!("https://localhost:{p}/"));
        assert_eq!(
            pairs,
            [
                (
                    d.join("certs/localhost.pem"),
                    d.join("certs/localhost-key.pem"),
                    url("8443")
                ),
                (d.join("a.pem"), d.join("a-key.pem"), url("9443")),
                ("/abs/b.pem".into(), "/abs/b-key.pem".into(), url("9443")),
            ]
        );
        // No TLS entrypoint, or no file: ./localhost.pem.
        fs::write(&file, "gateway: { listen: 127.0.0.1:8000 }\n").unwrap();
        assert_eq!(
            targets_of(&file).unwrap()[0].cert,
            PathBuf::from("localhost.pem")
        );
        assert_eq!(
            targets_of(&d.join("none.yaml")).unwrap()[0].key,
            PathBuf::from("localhost-key.pem")
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed_in_urls() {
        assert_eq!(url_host("::1"), "[::1]");
        assert_eq!(url_host("localhost"), "localhost");
    }
}
