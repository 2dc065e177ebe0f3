//! Start-up, reload and shutdown of a whole shoal.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use shoal_admin::{AdminConfig, AdminServer, Control};
use shoal_config::{Runtime, Stack};
use shoal_core::{EndpointSink, EventLog};
use shoal_k8s::cluster::{Cluster, ClusterError, ClusterOptions, KubeDriver, LeaseSettings};
use shoal_proxy::{
    AccessLogger, BindError, EntrypointTlsError, Gateway, Listeners, ServeSettings, Serving,
    TlsEntrypoints,
};
use shoal_supervise::{LogPolicy, Supervisor};

use crate::autoscale::Autoscaling;
use crate::control::{AppControl, DRIVER_SHUTDOWN_SLACK, ScaleState, StartedWith};
use crate::replicas::Replicas;

/// Where the replicas come from.
#[derive(Debug, Clone, Default)]
pub enum Discovery {
    /// Local processes run by shoal's supervisor (`shoal up`).
    #[default]
    Local,
    /// Pods of the cluster shoal runs in, found through their EndpointSlices
    /// (`shoal up --discovery kubernetes`); the stack file is read for Kubernetes.
    Kubernetes(ClusterOptions),
}

impl Discovery {
    /// What the stack file is checked for in this mode.
    pub fn runtime(&self) -> Runtime {
        match self {
            Discovery::Local => Runtime::Local,
            Discovery::Kubernetes(_) => Runtime::Kubernetes,
        }
    }
}

/// The Lease the in-cluster gateways share so that exactly one scales: client-go's
/// defaults (15 s lease, renewed every 2 s).
fn lease_settings() -> LeaseSettings {
    LeaseSettings {
        name: shoal_k8s::GATEWAY_NAME.to_owned(),
        duration: std::time::Duration::from_secs(15),
        renew_every: std::time::Duration::from_secs(2),
    }
}

/// What to start.
#[derive(Debug)]
pub struct StartOptions {
    /// The validated stack.
    pub stack: Stack,
    /// The file it came from (None for the built-in demo); `reload` re-reads it.
    pub stack_path: Option<PathBuf>,
    /// Folder for replica logs (`logs/`) and the scale state (`state`).
    pub state_dir: PathBuf,
    /// Print replica output, prefixed, on stdout.
    pub echo_logs: bool,
    /// Colour the prefixes.
    pub color: bool,
    /// The shoal binary, run for commands whose argv[0] is `shoal`.
    pub shoal_exe: PathBuf,
    /// Where the replicas come from.
    pub discovery: Discovery,
    /// Running the built-in demo (`stack_path` None): the file a reload adopts once it
    /// exists — `shoal up` passes `./shoal.yaml`, which `shoal init` writes.
    pub demo_file: Option<PathBuf>,
}

/// Why shoal could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A gateway entrypoint could not be bound.
    #[error(transparent)]
    Gateway(#[from] BindError),
    /// A TLS entrypoint's certificates could not be loaded.
    #[error(transparent)]
    Tls(#[from] EntrypointTlsError),
    /// The Kubernetes API could not be reached or configured.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The access log file could not be opened.
    #[error("cannot open the access log: {0}")]
    AccessLog(#[source] std::io::Error),
    /// The admin API address could not be bound.
    #[error("cannot listen on {addr} (admin API): {source}{hint}")]
    Admin {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
        /// Extra advice.
        hint: &'static str,
    },
}

/// A running shoal: gateway, driver and admin API.
#[derive(Debug)]
pub struct Shoal {
    control: Arc<AppControl>,
    serving: Serving,
    admin: AdminServer,
    gateway_addrs: Vec<(String, SocketAddr)>,
}

impl Shoal {
    /// Bind every address (failing clearly if one is taken), then start serving and start
    /// the replicas. Returns once everything listens; replicas become ready in the background.
    pub async fn start(opts: StartOptions) -> Result<Shoal, StartError> {
        let stack = opts.stack;
        let tls = TlsEntrypoints::load(&stack.gateway.entrypoints)?;
        let listeners = Listeners::bind(&stack.gateway.entrypoints)?;
        let admin_listener = tokio::net::TcpListener::bind(stack.admin.listen)
            .await
            .map_err(|source| {
                let hint = if source.kind() == std::io::ErrorKind::AddrInUse {
                    " (another shoal running? set `admin.listen` to another port)"
                } else {
                    ""
                };
                StartError::Admin {
                    addr: stack.admin.listen,
                    source,
                    hint,
                }
            })?;
        let gateway_addrs = listeners.local_addrs();

        let events = Arc::new(EventLog::new(1000));
        let gateway = Gateway::with_events(&stack, Arc::clone(&events));
        if let Some(log) = &stack.access_log {
            let logger = AccessLogger::start(log).map_err(StartError::AccessLog)?;
            gateway.set_access_log(Some(logger));
        }
        let sink: Arc<dyn EndpointSink> = gateway.clone();
        let target = opts.discovery.runtime();
        let replicas = match opts.discovery {
            Discovery::Local => {
                let mut logs = LogPolicy::new(opts.state_dir.join("logs"));
                logs.echo = opts.echo_logs;
                logs.color = opts.color;
                Replicas::Local(Supervisor::new(sink, events.clone(), logs))
            }
            Discovery::Kubernetes(cluster) => {
                let cluster = Cluster::connect(&cluster).await?;
                Replicas::Kubernetes(KubeDriver::start(
                    cluster,
                    sink,
                    events.clone(),
                    Some(lease_settings()),
                ))
            }
        };
        let state_path = opts.state_dir.join("state");
        // Certificate files that change on disk are reloaded; the task ends with `tls`.
        tls.watch(events.clone());
        let serving = Serving::start(
            gateway.clone(),
            listeners,
            ServeSettings::of(&stack.gateway),
            &tls,
        );
        let control = Arc::new(AppControl {
            gateway: gateway.clone(),
            tls: tls.clone(),
            serve: serving.settings(),
            started: StartedWith::of(&stack),
            replicas,
            target,
            events,
            stack: Mutex::new(stack.clone()),
            demo_file: opts.demo_file.filter(|_| opts.stack_path.is_none()),
            stack_path: Mutex::new(opts.stack_path),
            scale_state: Mutex::new(ScaleState::load(&state_path)),
            state_path,
            shoal_exe: opts.shoal_exe,
            runtime: tokio::runtime::Handle::current(),
            autoscaling: Autoscaling::new(),
            reloads: Default::default(),
            canaries: Default::default(),
            me: OnceLock::new(),
            stop_asked: tokio::sync::watch::Sender::new(false),
        });
        let _ = control.me.set(Arc::downgrade(&control));
        tokio::spawn(control.autoscaling.clone().run(Arc::downgrade(&control)));
        let admin = AdminServer::start(
            admin_listener,
            control.clone(),
            AdminConfig {
                token: stack.admin.token.clone(),
            },
        )
        .map_err(|source| StartError::Admin {
            addr: stack.admin.listen,
            source,
            hint: "",
        })?;
        control.apply(stack);
        control.reloads.applied(false);
        Ok(Shoal {
            control,
            serving,
            admin,
            gateway_addrs,
        })
    }

    /// Where the gateway listens, by entrypoint name.
    pub fn gateway_addrs(&self) -> &[(String, SocketAddr)] {
        &self.gateway_addrs
    }

    /// The first entrypoint's address.
    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway_addrs[0].1
    }

    /// Where the admin API listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr()
    }

    /// The data plane (for tests and the driver).
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.control.gateway
    }

    /// The event log.
    pub fn events(&self) -> &Arc<EventLog> {
        &self.control.events
    }

    /// Re-read the stack file and apply it; on error nothing changes.
    pub fn reload(&self) -> Result<String, crate::control::ReloadError> {
        self.control.reload_stack()
    }

    /// Apply an already validated stack (tests; listen addresses are not re-bound).
    pub fn apply(&self, stack: Stack) {
        self.control.apply(stack);
    }

    /// Stop: stop accepting and let in-flight requests finish (bounded by
    /// `gateway.shutdown_grace`), then drain and stop every replica, then the admin API.
    pub async fn shutdown(self) {
        let grace = self
            .control
            .stack
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .gateway
            .shutdown_grace;
        if !self.serving.shutdown(grace).await {
            tracing::warn!(
                "some requests were still running after the {grace:?} shutdown grace period"
            );
        }
        let stopping = self.control.replicas.shutdown();
        // Every replica has its own bounded drain and kill timers; this is a backstop.
        let bound = {
            let stack = self.control.stack.lock().unwrap_or_else(|e| e.into_inner());
            stack
                .services
                .iter()
                .filter_map(|s| match &s.source {
                    shoal_config::Source::Command(c) => Some(c.stop.drain_timeout + c.stop.grace),
                    shoal_config::Source::Servers(_) => None,
                })
                .max()
                .unwrap_or_default()
                + DRIVER_SHUTDOWN_SLACK
        };
        if tokio::time::timeout(bound, stopping).await.is_err() {
            tracing::error!("replicas did not stop within {bound:?}");
        }
        self.admin.shutdown().await;
    }

    /// Serve until SIGTERM, SIGINT or `shoal down` (then shut down gracefully); SIGHUP reloads
    /// the stack file.
    pub async fn run_until_signal(self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        // `shoal down` (POST /api/v1/shutdown) stops as SIGTERM does.
        let mut stop_asked = self.control.stop_asked.subscribe();
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                Ok(_) = stop_asked.wait_for(|stop| *stop) => break,
                // With a stack file the outcome is an event (`reloaded` or `reloadfailed`),
                // which `shoal up` prints; logging it too would print it twice.
                _ = hup.recv() => match self.control.reload() {
                    Err(e) if self.control.running_file().is_none() => tracing::warn!("SIGHUP: {e}"),
                    _ => {}
                },
            }
        }
        tracing::info!("shutting down: draining requests, then stopping replicas (again to force)");
        let control = self.control.clone();
        tokio::select! {
            () = self.shutdown() => {}
            _ = term.recv() => force_stop(&control),
            _ = int.recv() => force_stop(&control),
        }
        Ok(())
    }
}

/// A second SIGTERM/SIGINT during shutdown: skip draining and grace periods, SIGKILL every
/// replica's process group at once (each replica leads its own group), and return.
fn force_stop(control: &AppControl) {
    let mut killed = 0;
    for service in control.services() {
        for pid in service.replicas.iter().filter_map(|r| r.pid) {
            let Ok(pgid) = i32::try_from(pid) else {
                continue;
            };
            if nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
            {
                killed += 1;
            }
        }
    }
    tracing::warn!("forced stop: killed {killed} replica process groups without draining");
}
