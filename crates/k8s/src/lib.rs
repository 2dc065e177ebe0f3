//! Kubernetes mode, first slice: the stack file rendered to plain Kubernetes manifests.
//!
//! This crate owns the mapping from a validated [`Stack`] (checked for
//! [`Runtime::Kubernetes`](shoal_config::Runtime::Kubernetes)) to the objects `kubectl apply`
//! takes: per replicated service a Deployment, a ClusterIP Service, a PodDisruptionBudget and,
//! for `cpu`/`memory` autoscaling targets, an `autoscaling/v2` HorizontalPodAutoscaler; and the
//! gateway as a Deployment running `shoal up` on a stack file derived from the user's, in a
//! ConfigMap, behind its own Service. [`render`] is a pure function — no I/O, output in a
//! fixed order — so golden files pin it down. It also explains itself ([`Explain`]).
//!
//! It does not own talking to a cluster: there is no API client here yet. In-cluster
//! discovery of pods (EndpointSlices), pod-level balancing and shoal's in-cluster autoscaler
//! for the targets HPA cannot read (concurrency, rps, latency) are the next slices of issue
//! 18; until then the gateway reaches each service through its Kubernetes Service, and the
//! render says so wherever it matters.
//!
//! ```
//! let stack = shoal_config::parse_for(
//!     "services:\n  web:\n    image: ghcr.io/acme/web:1.0\n    replicas: 2\nroutes:\n  - match: PathPrefix(`/`)\n    service: web\n",
//!     "shoal.yaml",
//!     shoal_config::Runtime::Kubernetes,
//! ).unwrap();
//! let out = shoal_k8s::render(&stack, &shoal_k8s::Options::default()).unwrap();
//! assert!(out.to_stream().contains("kind: Deployment"));
//! ```
#![warn(missing_docs)]

mod explain;
mod gateway;
mod hpa;
mod stackfile;
mod workload;
mod yaml;

use std::fmt;

use serde_yaml::Value;
use shoal_config::{Source, Stack};

pub use explain::{Explain, Section};

/// The gateway image when `--gateway-image` is not given: this version of shoal.
pub const DEFAULT_GATEWAY_IMAGE: &str =
    concat!("ghcr.io/shoal-dev/shoal:", env!("CARGO_PKG_VERSION"));

/// Name of the gateway's Deployment, Service, ConfigMap and PodDisruptionBudget.
pub const GATEWAY_NAME: &str = "shoal-gateway";

/// Where the gateway's stack file is mounted in its pods.
pub const GATEWAY_STACK_PATH: &str = "/etc/shoal/shoal.yaml";

/// How the gateway's Service is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GatewayService {
    /// An external load balancer (the cloud's; `minikube tunnel` or cloud-provider-kind
    /// on a laptop). The default.
    #[default]
    LoadBalancer,
    /// A port on every node.
    NodePort,
    /// Reachable inside the cluster only (e.g. behind an existing ingress).
    ClusterIp,
}

impl GatewayService {
    /// The Service `type` as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayService::LoadBalancer => "LoadBalancer",
            GatewayService::NodePort => "NodePort",
            GatewayService::ClusterIp => "ClusterIP",
        }
    }
}

impl std::str::FromStr for GatewayService {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "LoadBalancer" => Ok(GatewayService::LoadBalancer),
            "NodePort" => Ok(GatewayService::NodePort),
            "ClusterIP" => Ok(GatewayService::ClusterIp),
            other => Err(format!(
                "`{other}`: expected LoadBalancer, NodePort or ClusterIP"
            )),
        }
    }
}

/// What [`render`] needs besides the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Namespace of every object; also part of the services' DNS names in the gateway's
    /// stack file. Default `default`.
    pub namespace: String,
    /// Image of the gateway's pods; its entrypoint must be the `shoal` binary. Default
    /// [`DEFAULT_GATEWAY_IMAGE`].
    pub gateway_image: String,
    /// Type of the gateway's Service. Default LoadBalancer.
    pub gateway_service: GatewayService,
    /// Gateway pods. Default 2 (one can be replaced while the other serves).
    pub gateway_replicas: u32,
    /// The cluster's DNS domain. Default `cluster.local`.
    pub cluster_domain: String,
    /// The stack file's name, for comments only.
    pub source: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: "default".into(),
            gateway_image: DEFAULT_GATEWAY_IMAGE.into(),
            gateway_service: GatewayService::default(),
            gateway_replicas: 2,
            cluster_domain: "cluster.local".into(),
            source: "shoal.yaml".into(),
        }
    }
}

/// Why a stack cannot be rendered (beyond what validation already refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A service's objects would have the gateway's name.
    #[error(
        "service `{0}`: the name `{GATEWAY_NAME}` is taken by the gateway's objects; rename the service"
    )]
    NameTaken(String),
    /// Not a Kubernetes namespace name.
    #[error(
        "namespace `{0}`: expected lowercase letters, digits and `-`, starting and ending with a letter or digit, at most 63 characters"
    )]
    BadNamespace(String),
    /// Not a DNS domain.
    #[error("cluster domain `{0}`: expected a DNS name such as `cluster.local`")]
    BadClusterDomain(String),
    /// A replicated service without `image:` (the stack was validated for local processes).
    #[error("service `{0}` has no `image:`; check the stack file for Kubernetes")]
    NoImage(String),
    /// Zero gateway replicas.
    #[error("the gateway needs at least one replica")]
    NoGateway,
}

/// The kinds of object a render produces, in the order a file per kind is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1` ConfigMap: the gateway's stack file.
    ConfigMap,
    /// `v1` Service.
    Service,
    /// `apps/v1` Deployment.
    Deployment,
    /// `policy/v1` PodDisruptionBudget.
    PodDisruptionBudget,
    /// `autoscaling/v2` HorizontalPodAutoscaler.
    HorizontalPodAutoscaler,
}

impl Kind {
    /// Every kind, in file order.
    pub const ALL: [Kind; 5] = [
        Kind::ConfigMap,
        Kind::Service,
        Kind::Deployment,
        Kind::PodDisruptionBudget,
        Kind::HorizontalPodAutoscaler,
    ];

    /// The kind's name as in `kind:`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Service => "Service",
            Kind::Deployment => "Deployment",
            Kind::PodDisruptionBudget => "PodDisruptionBudget",
            Kind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
        }
    }

    /// `apiVersion:` of the kind.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::ConfigMap | Kind::Service => "v1",
            Kind::Deployment => "apps/v1",
            Kind::PodDisruptionBudget => "policy/v1",
            Kind::HorizontalPodAutoscaler => "autoscaling/v2",
        }
    }

    /// The file holding this kind's objects with `-o DIR`.
    pub fn file_name(self) -> &'static str {
        match self {
            Kind::ConfigMap => "configmaps.yaml",
            Kind::Service => "services.yaml",
            Kind::Deployment => "deployments.yaml",
            Kind::PodDisruptionBudget => "poddisruptionbudgets.yaml",
            Kind::HorizontalPodAutoscaler => "horizontalpodautoscalers.yaml",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One Kubernetes object.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Its kind.
    pub kind: Kind,
    /// `metadata.name`.
    pub name: String,
    /// Comment lines written above the object (without `# `).
    pub comments: Vec<String>,
    /// The object, keys in the order Kubernetes users expect to read them.
    pub body: Value,
}

impl Manifest {
    fn new(kind: Kind, name: &str, comments: Vec<String>, metadata: Value, spec: Value) -> Self {
        Manifest::with_top(kind, name, comments, metadata, "spec", spec)
    }

    fn with_top(
        kind: Kind,
        name: &str,
        comments: Vec<String>,
        metadata: Value,
        key: &str,
        value: Value,
    ) -> Self {
        let body = yaml::Obj::new()
            .with("apiVersion", kind.api_version())
            .with("kind", kind.name())
            .with("metadata", metadata)
            .with(key, value)
            .into();
        Manifest {
            kind,
            name: name.to_owned(),
            comments,
            body,
        }
    }

    /// The object as one YAML document (comments first), without the `---` separator.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for c in &self.comments {
            if c.is_empty() {
                out.push_str("#\n");
            } else {
                out.push_str("# ");
                out.push_str(c);
                out.push('\n');
            }
        }
        out.push_str(&yaml::to_text(&self.body));
        out
    }
}

/// What [`render`] produced.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Every object: per service (in file order) its Service, Deployment,
    /// PodDisruptionBudget and HorizontalPodAutoscaler; then the gateway's ConfigMap,
    /// Service, Deployment and PodDisruptionBudget.
    pub manifests: Vec<Manifest>,
    /// What maps to what, what was left out, and warnings.
    pub explain: Explain,
    /// The gateway's stack file (the ConfigMap's `shoal.yaml`).
    pub gateway_stack: String,
    header: Vec<String>,
}

impl Rendered {
    /// Every object in one YAML stream, documents separated by `---`.
    pub fn to_stream(&self) -> String {
        self.document_list(self.manifests.iter())
    }

    /// One file per kind, plus `kustomization.yaml` listing them: `(file name, contents)`.
    pub fn files(&self) -> Vec<(String, String)> {
        let mut files = Vec::new();
        let mut resources = Vec::new();
        for kind in Kind::ALL {
            let of_kind: Vec<&Manifest> =
                self.manifests.iter().filter(|m| m.kind == kind).collect();
            if of_kind.is_empty() {
                continue;
            }
            resources.push(kind.file_name());
            files.push((
                kind.file_name().to_owned(),
                self.document_list(of_kind.into_iter()),
            ));
        }
        let kustomization: Value = yaml::Obj::new()
            .with("apiVersion", "kustomize.config.k8s.io/v1beta1")
            .with("kind", "Kustomization")
            .with("resources", yaml::list(resources))
            .into();
        let mut text = self.comment_block();
        text.push_str("# Apply the whole folder with `kubectl apply -k DIR` (not `-f DIR`: this file is not an object).\n");
        text.push_str(&yaml::to_text(&kustomization));
        files.push(("kustomization.yaml".to_owned(), text));
        files
    }

    /// The names of every file [`files`](Self::files) may write, for clearing old renders.
    pub fn all_file_names() -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Kind::ALL.iter().map(|k| k.file_name()).collect();
        names.push("kustomization.yaml");
        names
    }

    /// The first line of every file and stream this crate writes.
    pub const MARKER: &'static str = "# Rendered by `shoal k8s render`";

    fn comment_block(&self) -> String {
        self.header.iter().map(|l| format!("{l}\n")).collect()
    }

    fn document_list<'a>(&self, manifests: impl Iterator<Item = &'a Manifest>) -> String {
        let mut out = self.comment_block();
        for m in manifests {
            out.push_str("---\n");
            out.push_str(&m.to_yaml());
        }
        out
    }
}

/// Render `stack` (validated for Kubernetes) to manifests.
pub fn render(stack: &Stack, opts: &Options) -> Result<Rendered, RenderError> {
    if !workload::dns_label(&opts.namespace) {
        return Err(RenderError::BadNamespace(opts.namespace.clone()));
    }
    if opts.cluster_domain.is_empty() || !opts.cluster_domain.split('.').all(workload::dns_label) {
        return Err(RenderError::BadClusterDomain(opts.cluster_domain.clone()));
    }
    if opts.gateway_replicas == 0 {
        return Err(RenderError::NoGateway);
    }
    if let Some(s) = stack.services.iter().find(|s| s.name == GATEWAY_NAME) {
        return Err(RenderError::NameTaken(s.name.clone()));
    }
    let mut explain = Explain::default();
    let mut manifests = Vec::new();
    for service in &stack.services {
        if let Source::Command(command) = &service.source {
            let (objects, section) = workload::render(service, command, opts, &mut explain)?;
            manifests.extend(objects);
            explain.sections.push(section);
        }
    }
    let gateway = gateway::render(stack, opts, &mut explain);
    manifests.extend(gateway.manifests);
    explain.sections.push(gateway.section);
    explain.not_carried(
        "restart (policy, delay, max_attempts, …): Kubernetes restarts containers itself (restartPolicy: Always, with its own back-off up to 5 minutes)",
    );
    explain.not_carried(
        "logs (rotation): containers log to standard output; `kubectl logs` reads them and the kubelet rotates them",
    );
    explain.not_carried("command, workdir: local processes only; a pod runs `image` with `args`");
    explain.not_carried(
        "admin.listen and admin.token: the gateway's admin API stays on 127.0.0.1 in its pod (reach it with `kubectl port-forward`); only GET /metrics is served beyond the pod",
    );
    let header = vec![
        format!(
            "{} from {} for namespace `{}`.",
            Rendered::MARKER,
            opts.source,
            opts.namespace
        ),
        "# Edit the stack file and render again rather than editing these objects.".to_owned(),
    ];
    Ok(Rendered {
        manifests,
        explain,
        gateway_stack: gateway.stack_file,
        header,
    })
}

#[cfg(test)]
mod tests;
