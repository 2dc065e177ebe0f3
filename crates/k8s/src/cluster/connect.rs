//! Reaching the API server: the client, the namespace and this gateway's identity.
use std::fmt;
use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::ClusterOptions;

/// Why the cluster could not be reached (before any request is sent).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The `--kubeconfig` file could not be read or used.
    #[error("kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        /// The file given.
        path: PathBuf,
        /// What was wrong with it.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No configuration found: no `KUBECONFIG`, no `~/.kube/config`, not in a pod.
    #[error(
        "no Kubernetes configuration found (give --kubeconfig, set KUBECONFIG, or run in a pod): {0}"
    )]
    Infer(#[source] kube::config::InferConfigError),
    /// The configuration could not be turned into a client (e.g. bad certificates).
    #[error("Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// The namespace is not a valid DNS label.
    #[error("namespace `{0}` is not a valid Kubernetes namespace name")]
    BadNamespace(String),
}

/// A connection to the API server, in one namespace, as one gateway.
#[derive(Clone)]
pub struct Cluster {
    pub(crate) client: kube::Client,
    namespace: String,
    identity: String,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("namespace", &self.namespace)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Build a client from `opts` (see [`ClusterOptions`] for the defaults). Sends no request:
    /// an unreachable API server shows up as events once the driver runs.
    pub async fn connect(opts: &ClusterOptions) -> Result<Cluster, ClusterError> {
        // kube's rustls has no provider feature of its own here: use ring (the workspace's).
        // An error only means a provider is installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = match &opts.kubeconfig {
            Some(path) => {
                let kubeconfig =
                    Kubeconfig::read_from(path).map_err(|source| ClusterError::Kubeconfig {
                        path: path.clone(),
                        source,
                    })?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .map_err(|source| ClusterError::Kubeconfig {
                        path: path.clone(),
                        source,
                    })?
            }
            None => kube::Config::infer().await.map_err(ClusterError::Infer)?,
        };
        let namespace = opts
            .namespace
            .clone()
            .or_else(|| non_empty_env("SHOAL_NAMESPACE"))
            .unwrap_or_else(|| config.default_namespace.clone());
        if !dns_label(&namespace) {
            return Err(ClusterError::BadNamespace(namespace));
        }
        let identity = opts
            .identity
            .clone()
            .or_else(|| non_empty_env("POD_NAME"))
            .unwrap_or_else(hostname);
        let client = kube::Client::try_from(config).map_err(ClusterError::Client)?;
        Ok(Cluster {
            client,
            namespace,
            identity,
        })
    }

    /// The namespace of the EndpointSlices, Deployments and Lease.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// This gateway's name as a Lease holder.
    pub fn identity(&self) -> &str {
        &self.identity
    }
}

/// An RFC 1123 label, as a namespace name must be: 1–63 of `a-z0-9-`, alphanumeric at both ends.
fn dns_label(s: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter().all(|&c| alnum(c) || c == b'-')
        && alnum(b[0])
        && alnum(b[b.len() - 1])
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The host name (in a pod, the pod's name), without libc: the kernel's, then `HOSTNAME`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| non_empty_env("HOSTNAME"))
        .unwrap_or_else(|| format!("shoal-{}", std::process::id()))
}
