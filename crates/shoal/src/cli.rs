//! Command-line arguments: each flag is defined once here, and drives help and docs/cli.md.
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
pub(crate) use shoal_loadgen::LoadArgs;
// Every DURATION flag: the stack file's syntax, one parser for the whole CLI.
use shoal_config::parse_duration;

/// Run replicated web services behind a fast load-balancing gateway.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start the stack: gateway, replicas, admin API. Without -f, uses ./shoal.yaml if it
    /// exists, else the built-in demo stack.
    Up(UpArgs),
    /// Validate a stack file; prints every problem as file:line:column. Exit code 2 if invalid.
    Check(FileArgs),
    /// Ask the running shoal to re-read its stack file (like SIGHUP).
    Reload(AdminArgs),
    /// Show services and replicas of the running shoal.
    Status(AdminArgs),
    /// A live view of the running shoal: services with rates, the selected service's
    /// replicas, events; keys to select (↑/↓) and scale (+/-) a service. See docs/cli.md.
    Top(TopArgs),
    /// Set a service's replica count.
    Scale(ScaleArgs),
    /// A service's rollouts: wait for one to finish (`status`, exit code 1 if it was rolled
    /// back or times out), go back to the previous version (`undo`), or replace every replica
    /// with a fresh one of the same spec, e.g. a new binary on disk (`restart`). See
    /// docs/rollouts.md.
    Rollout(RolloutArgs),
    /// Set a split route's weights live, e.g. `shoal weight route-0 api=95 api-v2=5`;
    /// services not named keep theirs. A reload that changes the route's weights in the file
    /// applies the file's.
    Weight(WeightArgs),
    /// Show what happened: replicas started, ready, exited, restarted; scaling; reloads.
    Events(EventsArgs),
    /// Show a service's replica output, from any folder (through the admin API); `-f` to
    /// follow it.
    Logs(LogsArgs),
    /// Stop the running shoal gracefully, as Ctrl-C in its terminal does, and wait until it
    /// has stopped.
    Down(DownArgs),
    /// Replace a service's replicas one by one with fresh ones, no request failing: the same
    /// as `shoal rollout restart SERVICE`.
    Restart(RolloutServiceArgs),
    /// Write the demo stack to shoal.yaml as a starting point.
    Init(InitArgs),
    /// Run the built-in sample HTTP backend (used by the demo, examples and tests).
    SampleApp(SampleAppArgs),
    /// Generate HTTP load: latency percentiles (corrected for coordinated omission with
    /// --rate), errors, and how the answers spread over replicas. See docs/load.md.
    Load(Box<LoadArgs>),
    /// Certificates for local HTTPS: `shoal certs dev` makes a development CA and a
    /// certificate it signs, like mkcert. See docs/tls.md.
    Certs(CertsArgs),
    /// Kubernetes mode: `shoal k8s render` writes the stack as Kubernetes manifests. See
    /// docs/kubernetes.md.
    K8s(K8sArgs),
}

#[derive(Debug, Args)]
pub(crate) struct FileArgs {
    /// The stack file.
    #[arg(
        short = 'f',
        long = "file",
        default_value = "shoal.yaml",
        value_name = "FILE"
    )]
    pub(crate) file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// The stack file [default: ./shoal.yaml if present, else the built-in demo].
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
    /// Run the built-in demo stack even if ./shoal.yaml exists.
    #[arg(long, conflicts_with = "file")]
    pub(crate) demo: bool,
    /// Folder for replica logs and scale state [default: .shoal next to the stack file].
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// Print only the addresses, warnings, errors and trouble events (exited, failed,
    /// unready, unhealthy, ejected, circuitopen, reloadfailed); no replica output.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Where replicas come from: `local` runs each service's `command:` as local processes;
    /// `kubernetes` runs the gateway inside a cluster and balances over the pods of each
    /// service with an `image:`, found through their EndpointSlices (docs/kubernetes.md).
    #[arg(long, value_enum, default_value_t = DiscoveryArg::Local, value_name = "MODE")]
    pub(crate) discovery: DiscoveryArg,
    /// With `--discovery kubernetes`: the kubeconfig file [default: in-cluster config, else
    /// $KUBECONFIG, else ~/.kube/config].
    #[arg(long, value_name = "FILE")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// With `--discovery kubernetes`: the namespace of the services' pods [default:
    /// $SHOAL_NAMESPACE, else the kubeconfig context's or the pod's own namespace].
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub(crate) namespace: Option<String>,
}

/// `--discovery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DiscoveryArg {
    /// Local processes (the supervisor).
    Local,
    /// Pods in a Kubernetes cluster.
    Kubernetes,
}

#[derive(Debug, Args, Clone)]
pub(crate) struct AdminArgs {
    /// Admin API address [default: admin.listen of ./shoal.yaml, else 127.0.0.1:8080].
    #[arg(long, env = "SHOAL_ADMIN", value_name = "ADDR")]
    pub(crate) admin: Option<SocketAddr>,
    /// Bearer token for the admin API [default: admin.token of ./shoal.yaml].
    #[arg(
        long,
        env = "SHOAL_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
    /// The stack file to read admin.listen and admin.token from.
    #[arg(long = "file", default_value = "shoal.yaml", value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
#[command(mut_arg("json", |a| a.hide(true)))]
pub(crate) struct TopArgs {
    /// How often to refresh, e.g. 1s or 500ms.
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = parse_interval)]
    pub(crate) interval: std::time::Duration,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ScaleArgs {
    /// Service name.
    pub(crate) service: String,
    /// Desired replica count.
    pub(crate) replicas: u32,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RolloutArgs {
    #[command(subcommand)]
    pub(crate) command: RolloutCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RolloutCommand {
    /// Follow the service's rollout until it finishes, like `kubectl rollout status`: prints
    /// its progress; exit code 0 once every replica runs the new version and is ready, 1 if
    /// it was rolled back (with the reason) or --timeout passed. A service with no rollout
    /// yet: prints the version it runs.
    Status(RolloutStatusArgs),
    /// Go back to the previous version, rolling the replicas as any change does.
    Undo(RolloutServiceArgs),
    /// Replace every replica with a fresh one of the same spec (a new binary or image on
    /// disk, same config), one step at a time, without a failed request.
    Restart(RolloutServiceArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RolloutStatusArgs {
    /// Service name.
    pub(crate) service: String,
    /// Give up (exit code 1) after this long, e.g. 2m [default: wait until it finishes].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) timeout: Option<std::time::Duration>,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RolloutServiceArgs {
    /// Service name.
    pub(crate) service: String,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

#[derive(Debug, Args)]
pub(crate) struct WeightArgs {
    /// The route's name (`name:` in the stack file, else `route-N`; `shoal status --json`
    /// and `GET /api/v1/routes` list them).
    pub(crate) route: String,
    /// Weights to set, as SERVICE=WEIGHT (a whole number 0..=1000).
    #[arg(required = true, value_name = "SERVICE=WEIGHT", value_parser = parse_weight)]
    pub(crate) weights: Vec<(String, u32)>,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// Keep printing new events.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// Service name.
    pub(crate) service: String,
    /// Keep printing new lines.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// Only this replica index.
    #[arg(long, value_name = "N")]
    pub(crate) replica: Option<u32>,
    /// Lines of history to print first, per replica.
    #[arg(
        long,
        short = 'n',
        visible_alias = "tail",
        default_value_t = 100,
        value_name = "N"
    )]
    pub(crate) lines: usize,
    /// Keep the replicas' own colour codes and colour the prefixes (`always`), strip every
    /// ANSI escape (`never`), or keep them when stdout is a terminal and NO_COLOR is unset
    /// (`auto`).
    #[arg(long, value_enum, default_value_t = ColorArg::Auto, value_name = "WHEN")]
    pub(crate) color: ColorArg,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ColorArg {
    /// When stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

#[derive(Debug, Args)]
#[command(mut_arg("json", |a| a.hide(true)))]
pub(crate) struct DownArgs {
    /// How long to wait for shoal to drain and stop, e.g. 30s.
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) timeout: std::time::Duration,
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Where to write.
    #[arg(
        short = 'f',
        long = "file",
        default_value = "shoal.yaml",
        value_name = "FILE"
    )]
    pub(crate) file: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SampleAppArgs {
    /// Address to listen on [default: 127.0.0.1:$PORT, as set by shoal for each replica].
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// Name shown by /whoami [default: $SHOAL_SERVICE or "sample"].
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Wait this long before listening (to try readiness checks), e.g. 2s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) startup_delay: Option<std::time::Duration>,
    /// Serve at most N /work and /sleep requests at once; the rest queue (a replica with a
    /// fixed worker pool, whose latency grows with its load).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) capacity: Option<u32>,
    /// Serve HTTPS with this certificate chain (PEM; h2 and http/1.1 by ALPN) [default:
    /// $SAMPLE_TLS_CERT]. Needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert [default: $SAMPLE_TLS_KEY].
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CertsArgs {
    #[command(subcommand)]
    pub(crate) command: CertsCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CertsCommand {
    /// Make (once) a development CA in $XDG_DATA_HOME/shoal/dev-ca/ and a certificate it
    /// signs for --hosts (ECDSA P-256, 825 days), written to the files the TLS entrypoints of
    /// ./shoal.yaml name, else to ./localhost.pem and ./localhost-key.pem; prints the command
    /// that makes this machine trust the CA. Never overwrites a certificate another CA signed.
    Dev(CertsDevArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CertsDevArgs {
    /// Host names and IP addresses the certificate is for, comma-separated [default:
    /// localhost,127.0.0.1,::1].
    #[arg(long, value_delimiter = ',', value_name = "HOSTS")]
    pub(crate) hosts: Vec<String>,
    /// Folder of the development CA (ca.pem, ca-key.pem) [default:
    /// $XDG_DATA_HOME/shoal/dev-ca, else ~/.local/share/shoal/dev-ca].
    #[arg(long, value_name = "DIR")]
    pub(crate) ca_dir: Option<PathBuf>,
    /// The stack file whose TLS entrypoints name the files to write.
    #[arg(
        short = 'f',
        long = "file",
        default_value = "shoal.yaml",
        value_name = "FILE"
    )]
    pub(crate) file: PathBuf,
    /// Write the certificate here instead (with --key).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// Write the private key here instead (with --cert).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct K8sArgs {
    #[command(subcommand)]
    pub(crate) command: K8sCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum K8sCommand {
    /// Write the stack as Kubernetes manifests: per service a Deployment, a Service, a
    /// PodDisruptionBudget and (for cpu/memory targets) a HorizontalPodAutoscaler; the gateway
    /// as a Deployment running `shoal up --discovery kubernetes` on a stack file derived from
    /// this one (a ConfigMap), with its ServiceAccount, Role and RoleBinding, scrape
    /// annotations or a ServiceMonitor, and the Grafana dashboard; or, with `--ingress
    /// traefik`, Traefik IngressRoutes and Middlewares instead of the gateway. Exit code 2 if
    /// the file is invalid for Kubernetes.
    Render(RenderArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RenderArgs {
    /// The stack file; each replicated service needs `image:`.
    #[command(flatten)]
    pub(crate) file: FileArgs,
    /// Namespace of every object; the gateway watches the services' pods in it.
    #[arg(short = 'n', long, default_value = "default", value_name = "NAMESPACE")]
    pub(crate) namespace: String,
    /// Write one file per kind and a kustomization.yaml into DIR (created if missing) instead
    /// of one YAML stream on standard output.
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub(crate) output: Option<PathBuf>,
    /// What receives the traffic: `shoal`, shoal's gateway in the cluster (it balances over
    /// the pods and runs the autoscaler for concurrency, rps and latency targets), or
    /// `traefik`, IngressRoute and Middleware objects for an installed Traefik v3 instead of
    /// shoal's gateway (the --gateway-* flags then do nothing).
    #[arg(
        long,
        value_name = "INGRESS",
        default_value = "shoal",
        value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["shoal", "traefik"]), |s: String| s.parse::<shoal_k8s::Ingress>().unwrap_or_default())
    )]
    pub(crate) ingress: shoal_k8s::Ingress,
    /// Image of the gateway's pods; its entrypoint must be the shoal binary.
    #[arg(long, value_name = "IMAGE", default_value = shoal_k8s::DEFAULT_GATEWAY_IMAGE)]
    pub(crate) gateway_image: String,
    /// Type of the gateway's Service.
    #[arg(
        long,
        value_name = "TYPE",
        default_value = "LoadBalancer",
        value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["LoadBalancer", "NodePort", "ClusterIP"]), |s: String| s.parse::<shoal_k8s::GatewayService>().unwrap_or_default())
    )]
    pub(crate) gateway_service: shoal_k8s::GatewayService,
    /// Gateway pods.
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) gateway_replicas: u32,
    /// Have Prometheus find the gateway's metrics through a Prometheus Operator
    /// ServiceMonitor (and a headless Service for the metrics port) instead of
    /// prometheus.io/* annotations on the gateway's pods. Not with --ingress traefik.
    #[arg(long)]
    pub(crate) service_monitor: bool,
    /// Leave out the ConfigMap with shoal's Grafana dashboard (labelled grafana_dashboard:
    /// "1" for Grafana's dashboard sidecar). Never rendered with --ingress traefik.
    #[arg(long)]
    pub(crate) no_grafana_dashboard: bool,
    /// Print which stack-file field became which Kubernetes object, and what is not carried
    /// over, instead of the manifests (with -o, the files are written too).
    #[arg(long)]
    pub(crate) explain: bool,
}

/// `api=90`: a service and its weight.
fn parse_weight(s: &str) -> Result<(String, u32), String> {
    let Some((service, weight)) = s.split_once('=') else {
        return Err("expected SERVICE=WEIGHT, e.g. api=90".into());
    };
    let service = service.trim();
    if service.is_empty() {
        return Err("no service name before `=`".into());
    }
    match weight.trim().parse::<u32>() {
        Ok(w) if w <= 1000 => Ok((service.to_owned(), w)),
        _ => Err(format!(
            "the weight of `{service}` must be a whole number 0..=1000, not `{weight}`"
        )),
    }
}

fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_millis(100) {
        return Err("at least 100ms".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every DURATION flag takes the stack file's syntax; a bare number is an error that
    /// names the flag and the unit to add (exit code 2).
    #[test]
    fn duration_flags_refuse_bare_numbers() {
        for line in [
            &["shoal", "down", "--timeout", "30"][..],
            &["shoal", "rollout", "status", "api", "--timeout", "30"],
            &["shoal", "sample-app", "--startup-delay", "30"],
            &["shoal", "top", "--interval", "30"],
        ] {
            let err = Cli::try_parse_from(line).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{line:?}");
            let text = err.to_string();
            assert!(
                text.contains(line[line.len() - 2])
                    && text.contains("`30` has no unit; write e.g. `30s`"),
                "{text}"
            );
        }
        let cli = Cli::try_parse_from(["shoal", "down", "--timeout", "1.5s"]).unwrap();
        let Command::Down(args) = cli.command else {
            panic!("not down")
        };
        assert_eq!(args.timeout, std::time::Duration::from_millis(1500));
    }

    #[test]
    fn weights_are_service_equals_a_whole_number() {
        assert_eq!(parse_weight("api-v2=5"), Ok(("api-v2".to_owned(), 5)));
        assert_eq!(parse_weight(" api = 0"), Ok(("api".to_owned(), 0)));
        for bad in ["api", "=5", "api=x", "api=-1", "api=1001", "api=5.5"] {
            assert!(parse_weight(bad).is_err(), "{bad}");
        }
        let err = Cli::try_parse_from(["shoal", "weight", "r", "api=90", "v2=ten"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(
            text.contains("v2=ten") && text.contains("SERVICE=WEIGHT"),
            "{text}"
        );
    }
}
