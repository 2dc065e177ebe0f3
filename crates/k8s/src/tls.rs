//! TLS material on Kubernetes: where the certificates of TLS entrypoints and the CA bundles
//! of services come from in the cluster.
//!
//! A private key never goes into a manifest (manifests end up in Git, in CI logs, in
//! `kubectl get -o yaml`). Each certificate of a TLS entrypoint is therefore a Secret of type
//! `kubernetes.io/tls` that the *user* creates from the files the stack file names
//! (`kubectl create secret tls NAME --cert=FILE --key=FILE`); the render only refers to it,
//! and says which Secrets to create in `--explain` and as a warning. The names are the same
//! with shoal's gateway (which mounts them read-only) and with Traefik (whose IngressRoutes
//! name them in `tls.secretName`), so the same commands serve both.
//!
//! A CA bundle is public, so it travels in a ConfigMap the render writes, with the bundle
//! read from the file the stack names (the one file the render reads).
use std::path::Path;

use shoal_config::{CertificateFiles, Source, Stack, TlsVersion};

use crate::RenderError;
use crate::traefik::{object_name, unique};

/// Where the gateway's pods see the certificates: `TLS_DIR/SECRET/tls.crt` and `tls.key`.
pub(crate) const TLS_DIR: &str = "/etc/shoal/tls";
/// Where the gateway's pods see the CA bundles: `CA_DIR/CONFIGMAP/ca.crt`.
pub(crate) const CA_DIR: &str = "/etc/shoal/ca";
/// The key of a CA bundle in its ConfigMap.
pub(crate) const CA_KEY: &str = "ca.crt";
/// A ConfigMap holds at most 1 MiB (etcd's limit on one object, less its metadata).
const MAX_CA_BYTES: usize = 1 << 20;

/// One certificate of a TLS entrypoint, as a Secret of type `kubernetes.io/tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertSecret {
    /// The entrypoint it serves.
    pub(crate) entrypoint: String,
    /// Its place among the entrypoint's certificates (0: the default one).
    pub(crate) index: usize,
    /// The Secret's name: `shoal-tls-ENTRYPOINT`, then `-2`, `-3`… for further certificates.
    pub(crate) name: String,
    /// The files the stack file names, from which the user creates the Secret.
    pub(crate) files: CertificateFiles,
}

impl CertSecret {
    /// The command that creates the Secret from the stack file's files.
    pub(crate) fn create_command(&self, namespace: &str) -> String {
        format!(
            "kubectl create secret tls {} --cert={} --key={} -n {namespace}",
            self.name,
            shown(&self.files.cert),
            shown(&self.files.key)
        )
    }

    /// Its folder in the gateway's pods.
    pub(crate) fn dir(&self) -> String {
        format!("{TLS_DIR}/{}", self.name)
    }
}

/// A path as the user wrote it, resolved against the stack file's folder.
pub(crate) fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// Every certificate of every TLS entrypoint, in the order of the stack file.
pub(crate) fn cert_secrets(stack: &Stack) -> Vec<CertSecret> {
    let mut taken = Vec::new();
    let mut out = Vec::new();
    for e in &stack.gateway.entrypoints {
        let Some(tls) = &e.tls else { continue };
        let base = format!("shoal-tls-{}", object_name(&e.name));
        for (index, files) in tls.certificates.iter().enumerate() {
            let wanted = if index == 0 {
                base.clone()
            } else {
                format!("{base}-{}", index + 1)
            };
            out.push(CertSecret {
                entrypoint: e.name.clone(),
                index,
                name: unique(wanted, &mut taken),
                files: files.clone(),
            });
        }
    }
    out
}

/// A service's CA bundle, as a ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CaBundle {
    /// The service.
    pub(crate) service: String,
    /// The ConfigMap's name: `shoal-ca-SERVICE`.
    pub(crate) name: String,
    /// The file the stack names.
    pub(crate) file: String,
    /// Its contents (PEM certificates: public).
    pub(crate) pem: String,
}

impl CaBundle {
    /// The bundle's path in the gateway's pods.
    pub(crate) fn mounted(&self) -> String {
        format!("{CA_DIR}/{}/{CA_KEY}", self.name)
    }
}

/// The CA bundle of every service that names one, read from its file.
pub(crate) fn ca_bundles(stack: &Stack) -> Result<Vec<CaBundle>, RenderError> {
    let mut taken = Vec::new();
    let mut out = Vec::new();
    for s in &stack.services {
        let Some(ca) = s.tls.as_ref().and_then(|t| t.ca.as_ref()) else {
            continue;
        };
        let error = |message: String| RenderError::CaBundle {
            service: s.name.clone(),
            path: shown(ca),
            message,
        };
        let pem = std::fs::read_to_string(ca).map_err(|e| error(format!("cannot read it: {e}")))?;
        if pem.len() > MAX_CA_BYTES {
            return Err(error(format!(
                "{} bytes; a ConfigMap holds at most 1 MiB: keep only the CAs the replicas' certificates chain to",
                pem.len()
            )));
        }
        if pem.contains("PRIVATE KEY") {
            return Err(error(
                "it holds a private key, which would end up in a ConfigMap; a CA bundle is certificates only".to_owned(),
            ));
        }
        out.push(CaBundle {
            service: s.name.clone(),
            name: unique(format!("shoal-ca-{}", object_name(&s.name)), &mut taken),
            file: shown(ca),
            pem,
        });
    }
    Ok(out)
}

/// `min_version` as the stack file writes it.
pub(crate) fn version(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Tls12 => "1.2",
        TlsVersion::Tls13 => "1.3",
    }
}

/// Whether the service's replicas are pods (whose certificates are checked against the pod
/// IP unless `server_name` says otherwise).
pub(crate) fn replicated(source: &Source) -> bool {
    matches!(source, Source::Command(_))
}
