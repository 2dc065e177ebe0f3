//! Kubernetes mode: the stack file rendered to plain Kubernetes manifests.
//!
//! This crate owns the mapping from a validated [`Stack`] (checked for
//! [`Runtime::Kubernetes`](shoal_config::Runtime::Kubernetes)) to the objects `kubectl apply`
//! takes: per replicated service a Deployment, a ClusterIP Service, a PodDisruptionBudget and,
//! for `cpu`/`memory` autoscaling targets, an `autoscaling/v2` HorizontalPodAutoscaler. In front
//! of them, either shoal's gateway ([`Ingress::Shoal`], the default): a Deployment running
//! `shoal up --discovery kubernetes` on a stack file derived from the user's (a ConfigMap),
//! behind its own Service, with a ServiceAccount, Role and RoleBinding holding the least rights
//! the in-cluster runtime needs (EndpointSlices, the scale subresource of the Deployments its
//! autoscaler owns, its Lease), scrape annotations or a ServiceMonitor, and the Grafana
//! dashboard as a ConfigMap; or Traefik ([`Ingress::Traefik`]): IngressRoute and Middleware
//! objects for the same routes. [`render`] is a function of the stack and the options, output
//! in a fixed order, so golden files pin it down; the one file it reads is a service's CA
//! bundle (public certificates, carried in a ConfigMap). TLS certificates and keys are never
//! read or copied: they come from Secrets the user creates, which the render names (`tls`).
//! It also explains itself ([`Explain`]).
//!
//! Who sets each Deployment's replica count — the manifest, a HorizontalPodAutoscaler or
//! shoal's in-cluster autoscaler, never two of them — is decided in one place (`scaling`).
//!
//! Talking to a cluster is [`cluster`]'s alone: the driver of `shoal up --discovery
//! kubernetes` (EndpointSlice discovery, scaling through the scale subresource, leader
//! election on a Lease), on kube-rs. The render never uses it.
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

pub mod cluster;
mod explain;
mod gateway;
mod hpa;
mod observe;
mod rbac;
mod scaling;
mod stackfile;
mod tls;
mod traefik;
mod workload;
mod yaml;

use std::fmt;

use serde_norway::Value;
use shoal_config::{Source, Stack};

pub use explain::{Explain, Section};

/// The gateway image when `--gateway-image` is not given: this version of shoal.
pub const DEFAULT_GATEWAY_IMAGE: &str =
    concat!("ghcr.io/shoal-dev/shoal:", env!("CARGO_PKG_VERSION"));

/// Name of the gateway's Deployment, Service, ConfigMap and PodDisruptionBudget.
pub const GATEWAY_NAME: &str = "shoal-gateway";

/// Where the gateway's stack file is mounted in its pods.
pub const GATEWAY_STACK_PATH: &str = "/etc/shoal/shoal.yaml";

/// The `coordination.k8s.io/v1` Lease the gateway pods hold in turn, so that exactly one of
/// them scales; the gateway's Role may read and renew this one Lease only.
pub const LEASE_NAME: &str = GATEWAY_NAME;

/// The gateway pod's namespace, set from the downward API (`metadata.namespace`); without it
/// the in-cluster runtime reads the service account's namespace file.
pub const NAMESPACE_ENV: &str = "SHOAL_NAMESPACE";

/// The gateway pod's name, set from the downward API (`metadata.name`): its identity as the
/// Lease's holder.
pub const POD_NAME_ENV: &str = "POD_NAME";

/// The headless Service that exposes the gateway pods' metrics port to a ServiceMonitor.
pub const METRICS_SERVICE_NAME: &str = "shoal-gateway-metrics";

/// The ConfigMap holding shoal's Grafana dashboard.
pub const DASHBOARD_NAME: &str = "shoal-grafana-dashboard";

/// What receives the traffic in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ingress {
    /// shoal's gateway (`shoal up --discovery kubernetes`), balancing over the pods itself,
    /// with its in-cluster autoscaler. The default.
    #[default]
    Shoal,
    /// An installed Traefik v3: IngressRoute and Middleware objects (`traefik.io/v1alpha1`)
    /// for the routes, no shoal gateway.
    Traefik,
}

impl Ingress {
    /// The name as `--ingress` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Ingress::Shoal => "shoal",
            Ingress::Traefik => "traefik",
        }
    }
}

impl std::str::FromStr for Ingress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "shoal" => Ok(Ingress::Shoal),
            "traefik" => Ok(Ingress::Traefik),
            other => Err(format!("`{other}`: expected shoal or traefik")),
        }
    }
}

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
    /// Namespace of every object. Default `default`.
    pub namespace: String,
    /// What receives the traffic: shoal's gateway or Traefik. Default shoal.
    pub ingress: Ingress,
    /// Image of the gateway's pods; its entrypoint must be the `shoal` binary. Default
    /// [`DEFAULT_GATEWAY_IMAGE`]. Not used with [`Ingress::Traefik`].
    pub gateway_image: String,
    /// Type of the gateway's Service. Default LoadBalancer. Not used with
    /// [`Ingress::Traefik`].
    pub gateway_service: GatewayService,
    /// Gateway pods. Default 2 (one can be replaced while the other serves). Not used with
    /// [`Ingress::Traefik`].
    pub gateway_replicas: u32,
    /// A Prometheus Operator ServiceMonitor (and a headless Service for the metrics port)
    /// instead of `prometheus.io/*` annotations on the gateway's pods. Default off; refused
    /// with [`Ingress::Traefik`].
    pub service_monitor: bool,
    /// shoal's Grafana dashboard as a ConfigMap for Grafana's dashboard sidecar. Default on;
    /// never with [`Ingress::Traefik`] (there are no shoal metrics to show).
    pub grafana_dashboard: bool,
    /// The stack file's name, for comments only.
    pub source: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: "default".into(),
            ingress: Ingress::default(),
            gateway_image: DEFAULT_GATEWAY_IMAGE.into(),
            gateway_service: GatewayService::default(),
            gateway_replicas: 2,
            service_monitor: false,
            grafana_dashboard: true,
            source: "shoal.yaml".into(),
        }
    }
}

/// Why a stack cannot be rendered (beyond what validation already refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A service's objects would have the name of one of the gateway's.
    #[error(
        "service `{0}`: the name is taken by the gateway's objects (`{GATEWAY_NAME}`, and `{METRICS_SERVICE_NAME}` with a ServiceMonitor); rename the service"
    )]
    NameTaken(String),
    /// Not a Kubernetes namespace name.
    #[error(
        "namespace `{0}`: expected lowercase letters, digits and `-`, starting and ending with a letter or digit, at most 63 characters"
    )]
    BadNamespace(String),
    /// A replicated service without `image:` (the stack was validated for local processes).
    #[error("service `{0}` has no `image:`; check the stack file for Kubernetes")]
    NoImage(String),
    /// Zero gateway replicas.
    #[error("the gateway needs at least one replica")]
    NoGateway,
    /// A service's `tls.ca` could not be read into the ConfigMap that carries it to the
    /// gateway's pods.
    #[error("service `{service}`: tls.ca {path}: {message}")]
    CaBundle {
        /// The service.
        service: String,
        /// The CA bundle as the stack file resolved it.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A ServiceMonitor asked for without shoal's gateway, whose metrics it would scrape.
    #[error(
        "a ServiceMonitor scrapes shoal's gateway, which `--ingress traefik` does not run; Traefik's own metrics are configured in Traefik"
    )]
    ServiceMonitorWithoutGateway,
    /// A route that splits (`services:`) or mirrors (`mirror:`) traffic, which the Traefik
    /// render does not write (shoal's gateway, the default ingress, does it).
    #[error(
        "route `{route}`: `{what}` is not rendered for `--ingress traefik` (it would need a TraefikService); render without `--ingress traefik` (shoal's gateway in the cluster splits and mirrors as `shoal up` does), or drop `{what}` and write the TraefikService by hand"
    )]
    TraefikSplit {
        /// The route.
        route: String,
        /// `services` or `mirror`.
        what: &'static str,
    },
}

/// The kinds of object a render produces, in the order a file per kind is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1` ConfigMap: the gateway's stack file, CA bundles, the Grafana dashboard.
    ConfigMap,
    /// `v1` Secret: the password hashes of a Traefik `basicAuth` (never a private key: TLS
    /// Secrets are created by the user, see [`Explain`]).
    Secret,
    /// `v1` ServiceAccount: the gateway's identity towards the Kubernetes API.
    ServiceAccount,
    /// `rbac.authorization.k8s.io/v1` Role: what the gateway may do in its namespace.
    Role,
    /// `rbac.authorization.k8s.io/v1` RoleBinding: the Role, given to the ServiceAccount.
    RoleBinding,
    /// `v1` Service.
    Service,
    /// `apps/v1` Deployment.
    Deployment,
    /// `policy/v1` PodDisruptionBudget.
    PodDisruptionBudget,
    /// `autoscaling/v2` HorizontalPodAutoscaler.
    HorizontalPodAutoscaler,
    /// `traefik.io/v1alpha1` Middleware (a custom resource of Traefik v3).
    Middleware,
    /// `traefik.io/v1alpha1` IngressRoute (a custom resource of Traefik v3).
    IngressRoute,
    /// `monitoring.coreos.com/v1` ServiceMonitor (a custom resource of the Prometheus
    /// Operator).
    ServiceMonitor,
}

impl Kind {
    /// Every kind, in file order.
    pub const ALL: [Kind; 12] = [
        Kind::ConfigMap,
        Kind::Secret,
        Kind::ServiceAccount,
        Kind::Role,
        Kind::RoleBinding,
        Kind::Service,
        Kind::Deployment,
        Kind::PodDisruptionBudget,
        Kind::HorizontalPodAutoscaler,
        Kind::Middleware,
        Kind::IngressRoute,
        Kind::ServiceMonitor,
    ];

    /// The kind's name as in `kind:`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::Role => "Role",
            Kind::RoleBinding => "RoleBinding",
            Kind::Service => "Service",
            Kind::Deployment => "Deployment",
            Kind::PodDisruptionBudget => "PodDisruptionBudget",
            Kind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            Kind::Middleware => "Middleware",
            Kind::IngressRoute => "IngressRoute",
            Kind::ServiceMonitor => "ServiceMonitor",
        }
    }

    /// `apiVersion:` of the kind.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::ConfigMap | Kind::Secret | Kind::ServiceAccount | Kind::Service => "v1",
            Kind::Role | Kind::RoleBinding => "rbac.authorization.k8s.io/v1",
            Kind::Deployment => "apps/v1",
            Kind::PodDisruptionBudget => "policy/v1",
            Kind::HorizontalPodAutoscaler => "autoscaling/v2",
            Kind::Middleware | Kind::IngressRoute => "traefik.io/v1alpha1",
            Kind::ServiceMonitor => "monitoring.coreos.com/v1",
        }
    }

    /// Whether the kind is a custom resource: its definition (CRD) comes with Traefik or the
    /// Prometheus Operator, not with Kubernetes, so Kubernetes' own schemas do not cover it.
    pub fn is_custom(self) -> bool {
        matches!(
            self,
            Kind::Middleware | Kind::IngressRoute | Kind::ServiceMonitor
        )
    }

    /// The file holding this kind's objects with `-o DIR`.
    pub fn file_name(self) -> &'static str {
        match self {
            Kind::ConfigMap => "configmaps.yaml",
            Kind::Secret => "secrets.yaml",
            Kind::ServiceAccount => "serviceaccounts.yaml",
            Kind::Role => "roles.yaml",
            Kind::RoleBinding => "rolebindings.yaml",
            Kind::Service => "services.yaml",
            Kind::Deployment => "deployments.yaml",
            Kind::PodDisruptionBudget => "poddisruptionbudgets.yaml",
            Kind::HorizontalPodAutoscaler => "horizontalpodautoscalers.yaml",
            Kind::Middleware => "middlewares.yaml",
            Kind::IngressRoute => "ingressroutes.yaml",
            Kind::ServiceMonitor => "servicemonitors.yaml",
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
    /// PodDisruptionBudget and HorizontalPodAutoscaler; then, with shoal's gateway, its
    /// ConfigMap, ServiceAccount, Role, RoleBinding, Service, Deployment and
    /// PodDisruptionBudget, then the metrics Service and ServiceMonitor and the dashboard's
    /// ConfigMap; with Traefik, per route its Middlewares and IngressRoute.
    pub manifests: Vec<Manifest>,
    /// What maps to what, what was left out, and warnings.
    pub explain: Explain,
    /// The gateway's stack file (the ConfigMap's `shoal.yaml`); None with Traefik.
    pub gateway_stack: Option<String>,
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
    let shoal = opts.ingress == Ingress::Shoal;
    if shoal && opts.gateway_replicas == 0 {
        return Err(RenderError::NoGateway);
    }
    if !shoal && opts.service_monitor {
        return Err(RenderError::ServiceMonitorWithoutGateway);
    }
    if !shoal {
        // An IngressRoute to the first target only would send every request there.
        for r in &stack.routes {
            let what = match (&r.split, &r.mirror) {
                (Some(_), _) => "services",
                (None, Some(_)) => "mirror",
                (None, None) => continue,
            };
            return Err(RenderError::TraefikSplit {
                route: r.name.clone(),
                what,
            });
        }
    }
    let mut reserved = Vec::new();
    if shoal {
        reserved.push(GATEWAY_NAME);
        if opts.service_monitor {
            reserved.push(METRICS_SERVICE_NAME);
        }
    }
    if let Some(s) = stack
        .services
        .iter()
        .find(|s| reserved.contains(&s.name.as_str()))
    {
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
    let gateway_stack = match opts.ingress {
        Ingress::Shoal => {
            let gateway = gateway::render(stack, opts, &mut explain)?;
            manifests.extend(gateway.manifests);
            explain.sections.extend(gateway.sections);
            Some(gateway.stack_file)
        }
        Ingress::Traefik => {
            let (objects, sections) = traefik::render(stack, opts, &mut explain);
            manifests.extend(objects);
            explain.sections.extend(sections);
            None
        }
    };
    explain.not_carried(
        "restart (policy, delay, max_attempts, …): Kubernetes restarts containers itself (restartPolicy: Always, with its own back-off up to 5 minutes)",
    );
    explain.not_carried(
        "logs (rotation): containers log to standard output; `kubectl logs` reads them and the kubelet rotates them",
    );
    explain.not_carried("command, workdir: local processes only; a pod runs `image` with `args`");
    if shoal {
        explain.not_carried(
            "admin.listen and admin.token: the gateway's admin API stays on 127.0.0.1 in its pod (reach it with `kubectl port-forward`); only GET /metrics is served beyond the pod",
        );
    }
    let header = vec![
        format!(
            "{} from {} for namespace `{}`{}.",
            Rendered::MARKER,
            opts.source,
            opts.namespace,
            if shoal { "" } else { ", --ingress traefik" }
        ),
        "# Edit the stack file and render again rather than editing these objects.".to_owned(),
    ];
    Ok(Rendered {
        manifests,
        explain,
        gateway_stack,
        header,
    })
}

#[cfg(test)]
mod tests;
