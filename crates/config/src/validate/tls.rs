//! Raw → validated for TLS: at the entrypoints (`tls`, `redirect_to`) and to the replicas
//! (`https://` servers, a service's `tls`, `protocol: h2`).
//!
//! Files named here (certificates, keys, CA bundles) are resolved against the stack file's
//! folder, like every other path in it, and must exist when the file is checked: a missing
//! certificate is a `shoal check` error at the field, not a failure at start. Their contents
//! are the gateway's to judge (it parses the PEM and reports expiry).
use std::path::{Path, PathBuf};

use super::Cx;
use super::units::resolve;
use crate::error::did_you_mean;
use crate::model::*;
use crate::raw::*;

impl Cx<'_> {
    /// `entrypoints.NAME.tls`, None if anything in it is invalid (each problem is reported).
    pub(super) fn entrypoint_tls(
        &mut self,
        path: &str,
        raw: RawEntrypointTls,
        base: &Path,
    ) -> Option<EntrypointTls> {
        let before = self.diags.len();
        let mut certificates = Vec::new();
        let shorthand = raw.cert.is_some() || raw.key.is_some();
        match (shorthand, raw.certificates) {
            (true, Some(_)) => self.misplaced(
                &format!("{path}.certificates"),
                "give `cert` and `key` (one certificate) or `certificates` (a list), not both",
            ),
            (true, None) => {
                certificates.extend(self.certificate(path, raw.cert, raw.key, base));
            }
            (false, Some(list)) => {
                if list.is_empty() {
                    self.error(
                        &format!("{path}.certificates"),
                        "needs at least one certificate: `[{ cert: FILE, key: FILE }]`",
                    );
                }
                for (i, c) in list.into_iter().enumerate() {
                    let field = format!("{path}.certificates[{i}]");
                    certificates.extend(self.certificate(&field, c.cert, c.key, base));
                }
            }
            (false, None) => self.misplaced(
                path,
                "needs a certificate: `cert` and `key` (PEM files), or \
                 `certificates: [{ cert, key }, …]` to choose among several by SNI",
            ),
        }
        let min_version = match raw.min_version {
            None => TlsVersion::default(),
            Some(v) => self.tls_version(&format!("{path}.min_version"), &v.0),
        };
        (self.diags.len() == before).then_some(EntrypointTls {
            certificates,
            min_version,
        })
    }

    /// One `{cert, key}` pair at `path`; both must be there and be readable files.
    fn certificate(
        &mut self,
        path: &str,
        cert: Option<String>,
        key: Option<String>,
        base: &Path,
    ) -> Option<CertificateFiles> {
        match (cert, key) {
            (Some(cert), Some(key)) => {
                let cert = self.existing_file(&format!("{path}.cert"), &cert, base);
                let key = self.existing_file(&format!("{path}.key"), &key, base);
                Some(CertificateFiles {
                    cert: cert?,
                    key: key?,
                })
            }
            (Some(_), None) => {
                self.misplaced(
                    &format!("{path}.cert"),
                    "give `key` too: the certificate's private key (a PEM file)",
                );
                None
            }
            (None, Some(_)) => {
                self.misplaced(
                    &format!("{path}.key"),
                    "give `cert` too: the certificate chain (a PEM file) the key belongs to",
                );
                None
            }
            (None, None) => {
                self.misplaced(path, "needs `cert` and `key` (PEM files)");
                None
            }
        }
    }

    /// `min_version`: `1.2` or `1.3`; TLS 1.0 and 1.1 are refused by name.
    fn tls_version(&mut self, field: &str, text: &str) -> TlsVersion {
        let t = text.trim();
        let number = t
            .strip_prefix("TLSv")
            .or_else(|| t.strip_prefix("tlsv"))
            .unwrap_or(t);
        match number {
            "1.2" => TlsVersion::Tls12,
            "1.3" => TlsVersion::Tls13,
            "1" | "1.0" | "1.1" => {
                self.error_hint(
                    field,
                    format!(
                        "TLS {} is refused: it is insecure, and RFC 8996 deprecates it",
                        if number == "1.1" { "1.1" } else { "1.0" }
                    ),
                    Some("use `1.2` (the default) or `1.3`".into()),
                );
                TlsVersion::default()
            }
            _ => {
                self.error(
                    field,
                    format!("unknown TLS version `{t}`; expected `1.2` or `1.3`"),
                );
                TlsVersion::default()
            }
        }
    }

    /// A file named in the stack file, resolved against its folder: it must exist and be
    /// readable (its contents are checked by whoever reads it).
    pub(super) fn existing_file(
        &mut self,
        field: &str,
        text: &str,
        base: &Path,
    ) -> Option<PathBuf> {
        let t = text.trim();
        if t.is_empty() {
            self.error(field, "give a file");
            return None;
        }
        let path = resolve(base, t);
        let shown = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
        let shown = shown.display();
        let problem = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                format!("no such file: {shown}")
            }
            Err(e) => format!("cannot read {shown}: {e}"),
            Ok(m) if m.is_dir() => format!("{shown} is a folder, not a file"),
            Ok(m) if !m.is_file() => format!("{shown} is not a regular file"),
            Ok(_) => match std::fs::File::open(&path) {
                Ok(_) => return Some(path),
                Err(e) => format!("cannot read {shown}: {e}"),
            },
        };
        self.error(field, problem);
        None
    }

    /// Resolve each `redirect_to` once every entrypoint is known. `declared` is every
    /// entrypoint written, with whether it has `tls` and its port (None if its address is
    /// invalid); `redirects` are `(entrypoint, target)`.
    pub(super) fn redirects(
        &mut self,
        entrypoints: &mut [Entrypoint],
        declared: &[(String, bool, Option<u16>)],
        redirects: Vec<(String, String)>,
    ) {
        for (name, target) in redirects {
            let field = format!("gateway.entrypoints.{name}.redirect_to");
            let target = target.trim();
            let port = match declared.iter().find(|(n, ..)| n == target) {
                _ if target == name => {
                    self.error(
                        &field,
                        format!("entrypoint `{name}` cannot redirect to itself"),
                    );
                    continue;
                }
                None => {
                    let others = declared
                        .iter()
                        .map(|(n, ..)| n.as_str())
                        .filter(|n| *n != name);
                    let hint = did_you_mean(target, others);
                    self.error_hint(&field, format!("unknown entrypoint `{target}`"), hint);
                    continue;
                }
                Some((_, false, _)) => {
                    self.error_hint(
                        &field,
                        format!(
                            "entrypoint `{target}` has no `tls`: `redirect_to` sends clients \
                             to an HTTPS entrypoint"
                        ),
                        Some(format!("add `tls:` to `{target}`")),
                    );
                    continue;
                }
                Some((_, true, port)) => *port,
            };
            if let (Some(port), Some(e)) = (port, entrypoints.iter_mut().find(|e| e.name == name)) {
                e.redirect_to = Some(RedirectHttps {
                    entrypoint: target.to_owned(),
                    port,
                });
            }
        }
    }

    /// A service's `tls`, given its servers' scheme (`Some(true)`: `https://`; None: replicas
    /// shoal runs).
    pub(super) fn upstream_tls(
        &mut self,
        path: &str,
        raw: Option<BoolOr<RawUpstreamTls>>,
        https: Option<bool>,
        base: &Path,
    ) -> Option<UpstreamTls> {
        let field = format!("{path}.tls");
        match raw {
            None => (https == Some(true)).then(UpstreamTls::default),
            Some(BoolOr::Bool(false)) => {
                if https == Some(true) {
                    self.error(
                        &field,
                        "the servers are `https://`, which speaks TLS; for plain HTTP write \
                         them as `http://`",
                    );
                }
                None
            }
            Some(_) if https == Some(false) => {
                self.error_hint(
                    &field,
                    "`tls` is for replicas that serve HTTPS, and this service's servers are \
                     `http://`",
                    Some("write the servers as `https://HOST:PORT`".into()),
                );
                None
            }
            Some(BoolOr::Bool(true)) => Some(UpstreamTls::default()),
            Some(BoolOr::Map(raw)) => self.upstream_tls_settings(&field, raw, base),
        }
    }

    fn upstream_tls_settings(
        &mut self,
        field: &str,
        raw: RawUpstreamTls,
        base: &Path,
    ) -> Option<UpstreamTls> {
        let before = self.diags.len();
        let insecure_skip_verify = raw.insecure_skip_verify.unwrap_or(false);
        if insecure_skip_verify && raw.ca.is_some() {
            self.misplaced(
                &format!("{field}.ca"),
                "`insecure_skip_verify: true` accepts any certificate, so `ca` would not be \
                 used; keep one of them",
            );
        }
        let ca = raw
            .ca
            .and_then(|ca| self.existing_file(&format!("{field}.ca"), &ca, base));
        let server_name = raw.server_name.map(|name| {
            let name = name.trim().to_owned();
            if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
                self.error(
                    &format!("{field}.server_name"),
                    format!("`{name}` is not a DNS name or an IP address"),
                );
            }
            name
        });
        (self.diags.len() == before).then_some(UpstreamTls {
            ca,
            server_name,
            insecure_skip_verify,
        })
    }

    /// `h2` needs TLS to the replicas; `h2c` is HTTP/2 without it.
    pub(super) fn protocol_fits_tls(&mut self, path: &str, protocol: Protocol, tls: bool) {
        let field = format!("{path}.protocol");
        match (protocol, tls) {
            (Protocol::H2, false) => self.error_hint(
                &field,
                "`h2` is HTTP/2 over TLS, and this service does not speak TLS to its replicas",
                Some(
                    "write `protocol: h2c` for HTTP/2 without TLS, or give `https://` servers \
                     or `tls: true`"
                        .into(),
                ),
            ),
            (Protocol::H2c, true) => self.error_hint(
                &field,
                "`h2c` is HTTP/2 without TLS, and this service speaks TLS to its replicas",
                Some("write `protocol: h2` for HTTP/2 over TLS".into()),
            ),
            _ => {}
        }
    }
}
