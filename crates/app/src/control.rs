//! The running shoal as the admin API sees it: status, scale, reload, events.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use shoal_admin::{Control, RolloutAction, RouteInfo, ScaleError, Scaled};
use shoal_config::{Entrypoint, Health, Middleware, Source, Stack};
use shoal_core::{
    DriverError, EventKind, EventLog, HealthState, ReplicaState, ReplicaStatus, ReplicaTraffic,
    ServiceState, ServiceStatus,
};
use shoal_proxy::{Gateway, LiveSettings, ServeSettings, TlsEntrypoints};

use crate::autoscale::Autoscaling;
use crate::replicas::Replicas;
use shoal_supervise::{
    LogRotation, Probe, Readiness, RestartMode, RestartPolicy, ServiceSpec, StopPolicy,
};

/// Scale set with `shoal scale`, kept next to the stack file so it survives a restart.
///
/// An entry applies while the stack file still says the replica count it said when the scale
/// was made; once the file's own count changes, the file wins again.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ScaleState {
    /// service → (replicas set by scale, replicas the file said then)
    pub(crate) entries: BTreeMap<String, (u32, u32)>,
}

impl ScaleState {
    pub(crate) fn load(path: &Path) -> ScaleState {
        let Ok(text) = std::fs::read_to_string(path) else {
            return ScaleState::default();
        };
        let mut entries = BTreeMap::new();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            if let (Some(name), Some(n), Some(file_n)) = (f.next(), f.next(), f.next())
                && let (Ok(n), Ok(file_n)) = (n.parse(), file_n.parse())
            {
                entries.insert(name.to_owned(), (n, file_n));
            }
        }
        ScaleState { entries }
    }

    pub(crate) fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut text = String::from(
            "# shoal scale state: SERVICE REPLICAS FILE_REPLICAS (written by `shoal scale`)\n",
        );
        for (name, (n, file_n)) in &self.entries {
            text.push_str(&format!("{name} {n} {file_n}\n"));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, path)
    }

    /// The replica count to run for a service whose file says `file_replicas`.
    pub(crate) fn replicas(&self, service: &str, file_replicas: u32) -> u32 {
        match self.entries.get(service) {
            Some((n, said)) if *said == file_replicas => *n,
            _ => file_replicas,
        }
    }
}

/// Everything the admin API and signal handlers act on.
pub(crate) struct AppControl {
    pub(crate) gateway: Arc<Gateway>,
    /// The TLS entrypoints' certificates, reloaded with the stack file.
    pub(crate) tls: Arc<TlsEntrypoints>,
    /// The listeners' client-side settings (timeouts, limits), applied with each stack.
    pub(crate) serve: LiveSettings,
    /// The settings only a restart applies, as this shoal started with them.
    pub(crate) started: StartedWith,
    pub(crate) replicas: Replicas,
    /// What the stack file is read for (local processes or Kubernetes), on every reload.
    pub(crate) target: shoal_config::Runtime,
    pub(crate) events: Arc<EventLog>,
    pub(crate) stack: Mutex<Stack>,
    /// The stack file being run; `None` while the built-in demo runs.
    pub(crate) stack_path: Mutex<Option<PathBuf>>,
    /// Running the demo: the file a reload adopts once it exists (`./shoal.yaml`, which
    /// `shoal init` writes).
    pub(crate) demo_file: Option<PathBuf>,
    pub(crate) state_path: PathBuf,
    pub(crate) scale_state: Mutex<ScaleState>,
    pub(crate) shoal_exe: PathBuf,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) autoscaling: Arc<Autoscaling>,
    /// Configuration reloads, for the metrics.
    pub(crate) reloads: crate::metrics::Reloads,
    /// The automated canaries, one loop per route with `canary:`.
    pub(crate) canaries: crate::canary::Canaries,
    /// This control itself, for callbacks that must not keep it alive.
    pub(crate) me: OnceLock<Weak<AppControl>>,
    /// Turns true when `shoal down` asks to stop; `run_until_signal` then shuts down as
    /// on SIGTERM.
    pub(crate) stop_asked: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for AppControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppControl")
            .field("stack_path", &self.stack_path)
            .finish_non_exhaustive()
    }
}

impl AppControl {
    /// The stack file being run, if any (not while the built-in demo runs).
    pub(crate) fn running_file(&self) -> Option<PathBuf> {
        self.stack_path
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The supervisor's view of the stack's command services, with scale overrides applied.
    pub(crate) fn specs(&self, stack: &Stack) -> Vec<ServiceSpec> {
        let state = self.scale_state.lock().unwrap_or_else(|e| e.into_inner());
        let running: HashMap<String, u32> = self
            .replicas
            .status()
            .into_iter()
            .map(|s| (s.name, s.desired))
            .collect();
        stack
            .services
            .iter()
            .filter_map(|s| match &s.source {
                Source::Command(c) => {
                    let replicas = match &c.autoscale {
                        // Autoscaled: a reload keeps the count the autoscaler reached,
                        // within the (new) bounds.
                        Some(a) => running
                            .get(&s.name)
                            .map_or(c.replicas, |&n| n.clamp(a.policy.min, a.policy.max)),
                        None => state.replicas(&s.name, c.replicas),
                    };
                    let mut spec = spec_for(&s.name, c, &s.health, replicas, &self.shoal_exe);
                    // Replicas that speak TLS are probed over HTTPS, verified as requests are.
                    match shoal_proxy::probe_tls(s) {
                        Some(Ok(tls)) => {
                            spec.readiness.probe = spec.readiness.probe.over_tls(tls);
                        }
                        Some(Err(e)) => {
                            tracing::error!(service = %s.name, error = %e, "HTTPS probes cannot be set up");
                        }
                        None => {}
                    }
                    Some(spec)
                }
                Source::Servers(_) => None,
            })
            .collect()
    }

    /// A weak handle on this control (for the gateway's wake callbacks).
    pub(crate) fn weak(&self) -> Weak<AppControl> {
        self.me.get().cloned().unwrap_or_default()
    }

    /// Apply a new stack: gateway first (new services become routable), then the driver.
    pub(crate) fn apply(&self, stack: Stack) {
        self.gateway.reload(&stack);
        self.canaries
            .apply(&stack, self.gateway.clone(), &self.events, &self.runtime);
        self.serve.apply(ServeSettings::of(&stack.gateway));
        if let Err(e) = crate::metrics::apply_access_log(&self.gateway, &stack, &self.runtime) {
            tracing::error!(error = %e, "cannot open the access log; access logging is off");
        }
        self.autoscaling.apply(&stack, self);
        self.replicas.apply(self, &stack);
        *self.stack.lock().unwrap_or_else(|e| e.into_inner()) = stack;
    }

    /// Fill in how the gateway sees the service and each replica (health, counters): local
    /// replicas by their endpoint key, static servers by their URL (the key the gateway
    /// gives them). Static servers count as ready while they are in rotation.
    fn add_traffic(&self, service: &mut ServiceStatus, static_urls: Option<&[String]>) {
        let Some((traffic, backends)) = self.gateway.traffic(&service.name) else {
            return;
        };
        let by_key: HashMap<String, ReplicaTraffic> = backends.into_iter().collect();
        for replica in &mut service.replicas {
            let key = match static_urls {
                Some(urls) => urls.get(replica.index as usize),
                None => replica.endpoint.as_ref().map(|e| &e.key),
            };
            replica.traffic = key.and_then(|k| by_key.get(k)).cloned().or_else(|| {
                // Taken out of the endpoint set because the supervisor's check fails: the
                // gateway no longer knows it, and it is out of rotation for that reason.
                (replica.state == ReplicaState::Unready).then_some(ReplicaTraffic {
                    health: HealthState::Unhealthy,
                    reason: None,
                    in_flight: 0,
                    requests_total: 0,
                    ejections_total: 0,
                })
            });
        }
        if static_urls.is_some() {
            let healthy = service
                .replicas
                .iter()
                .filter(|r| {
                    r.traffic
                        .as_ref()
                        .is_none_or(|t| t.health == HealthState::Healthy)
                })
                .count() as u32;
            service.ready = healthy;
            if healthy < service.desired {
                service.state = ServiceState::Progressing;
            }
        }
        service.traffic = Some(traffic);
    }

    fn static_status(stack: &Stack) -> Vec<ServiceStatus> {
        stack
            .services
            .iter()
            .filter_map(|s| match &s.source {
                Source::Servers(servers) => Some(ServiceStatus {
                    name: s.name.clone(),
                    desired: servers.len() as u32,
                    ready: servers.len() as u32,
                    state: ServiceState::Running,
                    replicas: servers
                        .iter()
                        .enumerate()
                        .map(|(i, srv)| ReplicaStatus {
                            index: i as u32,
                            state: ReplicaState::Ready,
                            pid: None,
                            port: srv
                                .authority
                                .rsplit_once(':')
                                .and_then(|(_, p)| p.parse().ok()),
                            endpoint: None,
                            restarts: 0,
                            uptime_secs: 0.0,
                            cpu_percent: None,
                            rss_bytes: None,
                            last_exit: None,
                            message: Some(format!("static server {}", srv.url)),
                            traffic: None,
                            pod: None,
                            version: None,
                        })
                        .collect(),
                    traffic: None,
                    autoscale: None,
                    worker: false,
                    rollout: None,
                }),
                Source::Command(_) => None,
            })
            .collect()
    }

    /// Re-read the stack file and apply it; on error nothing changes. Either way the outcome
    /// is an event (`reloaded` or `reloadfailed`), except when there is no file to read.
    pub(crate) fn reload_stack(&self) -> Result<String, ReloadError> {
        let running = self.running_file();
        // Running the demo, a reload adopts the file `shoal init` wrote next to it: the
        // tour's `shoal init`, edit, `shoal reload` then works without a restart.
        let adopting = running.is_none();
        let Some(path) = running.or_else(|| self.demo_file.clone().filter(|f| f.is_file())) else {
            return Err(match &self.demo_file {
                Some(f) => ReloadError::NoDemoFile(f.clone()),
                None => ReloadError::NoFile,
            });
        };
        let path = &path;
        let loaded = shoal_config::load_for(path, self.target)
            .map_err(ReloadError::Invalid)
            .and_then(|stack| {
                // Certificates are part of validating: a bad one fails the whole reload, and
                // the old certificates (and the rest of the old stack) keep serving.
                let reloaded = self
                    .tls
                    .reload(&stack.gateway.entrypoints)
                    .map_err(|source| ReloadError::Certificates {
                        path: path.clone(),
                        source,
                    })?;
                Ok((stack, reloaded))
            });
        match loaded {
            Ok((stack, tls_reloaded)) => {
                let mut message = format!("reloaded {}", path.display());
                if adopting {
                    *self.stack_path.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.clone());
                    message.push_str(" (the built-in demo runs from this file now)");
                }
                if !tls_reloaded.is_empty() {
                    message.push_str(&format!(
                        "; certificates reloaded for {}",
                        tls_reloaded
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                let restart = self
                    .started
                    .needs_restart(&stack, self.gateway.metric_buckets());
                if !restart.is_empty() {
                    message.push_str(&format!(
                        "; not applied, restart shoal to apply: {} (the running values stay)",
                        restart.join(", ")
                    ));
                }
                self.apply(stack);
                self.reloads.applied(true);
                self.events
                    .emit("", None, EventKind::Reloaded, message.clone());
                Ok(message)
            }
            Err(e) => {
                self.events
                    .emit("", None, EventKind::ReloadFailed, e.event_text());
                Err(e)
            }
        }
    }
}

/// Why a reload changed nothing. The messages are what `shoal reload` prints.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Running the built-in demo, and the file `shoal init` writes next to it (this path)
    /// does not exist yet.
    #[error(
        "shoal is running the built-in demo stack and {} does not exist: `shoal init` writes \
         it (the demo as a file to edit), then `shoal reload` runs it",
        .0.display()
    )]
    NoDemoFile(PathBuf),
    /// Running the built-in demo, with no file to adopt.
    #[error("shoal is running the built-in demo stack; there is no file to reload")]
    NoFile,
    /// The stack file is not valid: every problem, `file:line:column: field: message`.
    #[error("{0}")]
    Invalid(shoal_config::Diagnostics),
    /// An entrypoint's certificate could not be loaded (the old ones keep serving).
    #[error("{}: {source}", path.display())]
    Certificates {
        /// The stack file.
        path: PathBuf,
        /// What is wrong with the certificate.
        #[source]
        source: shoal_proxy::EntrypointTlsError,
    },
}

impl ReloadError {
    /// The `reloadfailed` event's text: one problem per line, without the `error: `
    /// prefix the answer's lines have.
    fn event_text(&self) -> String {
        match self {
            ReloadError::Invalid(diags) => diags
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            other => other.to_string(),
        }
    }
}

/// Map a command service to the supervisor's spec. `shoal` as argv[0] is this binary.
pub(crate) fn spec_for(
    name: &str,
    c: &shoal_config::Command,
    health: &Health,
    replicas: u32,
    shoal_exe: &Path,
) -> ServiceSpec {
    let mut command = c.argv.clone();
    if command.first().map(String::as_str) == Some("shoal") {
        command[0] = shoal_exe.display().to_string();
    }
    let mut spec = ServiceSpec::new(name, command);
    spec.env = c.env.clone();
    spec.workdir = c.workdir.clone();
    spec.replicas = replicas;
    spec.port_env = c.port_env.clone();
    spec.replica_env = c.replica_env.clone();
    spec.kind = match c.kind {
        shoal_config::ServiceKind::Web => shoal_supervise::ServiceKind::Web,
        shoal_config::ServiceKind::Worker => shoal_supervise::ServiceKind::Worker,
    };
    spec.readiness = Readiness {
        probe: Probe::of(health.path.as_deref(), &health.expect_status),
        interval: health.interval,
        fast_interval: health.fast_interval,
        timeout: health.timeout,
        success_threshold: health.healthy_threshold,
        // Checks off: a replica is ready once it listens, and stays in unless it exits.
        failure_threshold: if health.enabled {
            health.unhealthy_threshold
        } else {
            u32::MAX
        },
        start_period: health.start_period,
        start_timeout: health.start_timeout,
        // Off with the checks too (`health: false`): nothing fails, nothing to act on.
        liveness: health.liveness.filter(|_| health.enabled),
    };
    spec.restart = RestartPolicy {
        mode: match c.restart.policy {
            shoal_config::RestartPolicy::No => RestartMode::No,
            shoal_config::RestartPolicy::OnFailure => RestartMode::OnFailure,
            shoal_config::RestartPolicy::Always => RestartMode::Always,
        },
        delay: c.restart.delay,
        max_delay: c.restart.max_delay,
        reset_after: c.restart.reset_after,
        max_attempts: c.restart.max_attempts,
        window: c.restart.window,
    };
    spec.stop = StopPolicy {
        drain_timeout: c.stop.drain_timeout,
        grace: c.stop.grace,
    };
    spec.log_rotation = Some(LogRotation {
        max_bytes: c.logs.max_size,
        keep: c.logs.keep,
    });
    spec.version = c.version.clone();
    let amount = |a: shoal_config::Amount| match a {
        shoal_config::Amount::Count(n) => shoal_supervise::Amount::Count(n),
        shoal_config::Amount::Percent(p) => shoal_supervise::Amount::Percent(p),
    };
    spec.rollout = shoal_supervise::RolloutPolicy {
        max_surge: amount(c.rollout.max_surge),
        max_unavailable: amount(c.rollout.max_unavailable),
        progress_deadline: c.rollout.progress_deadline,
    };
    spec.limits = shoal_supervise::ResourceLimits {
        memory_bytes: c.limits.memory_bytes,
        cpu_millis: c.limits.cpu_millis,
    };
    spec.depends_on = c
        .depends_on
        .iter()
        .map(|d| shoal_supervise::Dependency {
            service: d.service.clone(),
            condition: if d.healthy {
                shoal_supervise::Condition::Healthy
            } else {
                shoal_supervise::Condition::Started
            },
        })
        .collect();
    spec
}

/// The admin API's wording of a driver's refusal.
fn scale_error(e: DriverError) -> ScaleError {
    match e {
        DriverError::UnknownService(s) => ScaleError::UnknownService(s),
        DriverError::Invalid(m) => ScaleError::Invalid(m),
    }
}

impl Control for AppControl {
    fn services(&self) -> Vec<ServiceStatus> {
        let (mut all, static_urls) = {
            let stack = self.stack.lock().unwrap_or_else(|e| e.into_inner());
            let urls: HashMap<String, Vec<String>> = stack
                .services
                .iter()
                .filter_map(|s| match &s.source {
                    Source::Servers(servers) => Some((
                        s.name.clone(),
                        servers.iter().map(|v| v.url.clone()).collect(),
                    )),
                    Source::Command(_) => None,
                })
                .collect();
            (Self::static_status(&stack), urls)
        };
        all.extend(self.replicas.status());
        all.sort_by(|a, b| a.name.cmp(&b.name));
        for service in &mut all {
            let urls = static_urls.get(&service.name).map(Vec::as_slice);
            // A worker is in the routing table (no route may name it) but serves nothing:
            // zero request counters would only look like an idle web service.
            if !service.worker {
                self.add_traffic(service, urls);
            }
            let held = service.traffic.as_ref().map_or(0, |t| t.held);
            service.autoscale = self.autoscaling.status(&service.name, held);
        }
        all
    }

    fn scale(&self, service: &str, replicas: u32) -> Result<Scaled, ScaleError> {
        let file_replicas = {
            let stack = self.stack.lock().unwrap_or_else(|e| e.into_inner());
            match stack.service(service).map(|s| &s.source) {
                None => return Err(ScaleError::UnknownService(service.to_owned())),
                Some(Source::Servers(_)) => {
                    return Err(ScaleError::Invalid(format!(
                        "service `{service}` has static `servers`; only services with `command` can be scaled"
                    )));
                }
                Some(Source::Command(c)) => c.replicas,
            }
        };
        if replicas > 1000 {
            return Err(ScaleError::Invalid("at most 1000 replicas".into()));
        }
        if let Some((min, max)) = self.autoscaling.bounds(service) {
            // Autoscaled: set the current count within the bounds; the autoscaler carries
            // on from there (like `kubectl scale` under an HPA). Not saved across restarts.
            let set = replicas.clamp(min, max);
            self.replicas.scale(service, set).map_err(scale_error)?;
            let note = format!(
                "`{service}` is autoscaled between {min} and {max}{}; the autoscaler carries on from {set}",
                if set == replicas {
                    String::new()
                } else {
                    format!(" (asked for {replicas}, clamped to {set})")
                }
            );
            return Ok(Scaled {
                replicas: set,
                note: Some(note),
            });
        }
        self.replicas
            .scale(service, replicas)
            .map_err(scale_error)?;
        if !self.replicas.saves_scale_state() {
            return Ok(Scaled {
                replicas,
                note: None,
            });
        }
        let mut state = self.scale_state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .entries
            .insert(service.to_owned(), (replicas, file_replicas));
        if let Err(e) = state.save(&self.state_path) {
            tracing::warn!(path = %self.state_path.display(), error = %e, "cannot save the scale state");
        }
        Ok(Scaled {
            replicas,
            note: None,
        })
    }

    fn reload(&self) -> Result<String, String> {
        self.reload_stack().map_err(|e| e.to_string())
    }

    fn events(&self) -> &EventLog {
        &self.events
    }

    fn metrics(&self) -> String {
        crate::metrics::render(self)
    }

    fn rollout(&self, service: &str, action: RolloutAction) -> Result<String, ScaleError> {
        {
            let stack = self.stack.lock().unwrap_or_else(|e| e.into_inner());
            match stack.service(service).map(|s| &s.source) {
                None => return Err(ScaleError::UnknownService(service.to_owned())),
                Some(Source::Servers(_)) => {
                    return Err(ScaleError::Invalid(format!(
                        "service `{service}` has static `servers`: shoal does not run them, so it \
                         has no rollout to undo or restart"
                    )));
                }
                Some(Source::Command(_)) => {}
            }
        }
        let version = self
            .replicas
            .rollout(service, action)
            .map_err(scale_error)?;
        Ok(match action {
            RolloutAction::Undo => format!("rolling back to version {version}"),
            RolloutAction::Restart => {
                format!("restarting every replica (version {version})")
            }
        })
    }

    fn logs(
        &self,
        service: &str,
        query: &shoal_admin::LogQuery,
    ) -> Result<shoal_admin::LogStream, ScaleError> {
        {
            let stack = self.stack.lock().unwrap_or_else(|e| e.into_inner());
            match stack.service(service).map(|s| &s.source) {
                None => return Err(ScaleError::UnknownService(service.to_owned())),
                Some(Source::Servers(_)) => {
                    return Err(ScaleError::Invalid(format!(
                        "service `{service}` has static `servers`: shoal does not run them, so \
                         it has no output of theirs"
                    )));
                }
                Some(Source::Command(_)) => {}
            }
        }
        if let Replicas::Kubernetes(_) = self.replicas {
            return Err(ScaleError::Invalid(format!(
                "in Kubernetes mode the pods' output is the cluster's: run `kubectl logs \
                 deployment/{service}`"
            )));
        }
        // The supervisor writes `logs/` next to the scale state (see `Shoal::start`).
        let dir = self.state_path.with_file_name("logs");
        let mut reader = shoal_supervise::LogReader::new(dir, service, query.replica);
        if let Some(r) = query.replica
            && reader.replicas().is_empty()
        {
            return Err(ScaleError::NotFound(format!(
                "no logs of replica {r} of `{service}`"
            )));
        }
        let admin_lines = |lines: Vec<shoal_supervise::LogLine>| -> Vec<shoal_admin::LogLine> {
            lines
                .into_iter()
                .map(|l| shoal_admin::LogLine {
                    replica: l.replica,
                    line: l.line,
                })
                .collect()
        };
        let history = futures_util::stream::iter([admin_lines(reader.tail(query.tail))]);
        if !query.follow {
            return Ok(futures_util::StreamExt::boxed(history));
        }
        // Then poll the files, as `tail -F` does, off the async workers.
        let live = futures_util::stream::unfold(reader, move |mut reader| async move {
            tokio::time::sleep(LOG_POLL).await;
            let (reader, lines) = tokio::task::spawn_blocking(move || {
                let lines = reader.read_new();
                (reader, lines)
            })
            .await
            .ok()?;
            Some((admin_lines(lines), reader))
        });
        Ok(futures_util::StreamExt::boxed(
            futures_util::StreamExt::chain(history, live),
        ))
    }

    fn shutdown(&self) -> Result<String, ScaleError> {
        let already = self.stop_asked.send_replace(true);
        Ok(if already {
            "already stopping".to_owned()
        } else {
            "stopping: draining requests, then stopping replicas".to_owned()
        })
    }

    fn set_weights(
        &self,
        route: &str,
        weights: &[(String, u32)],
    ) -> Result<Vec<(String, u32)>, ScaleError> {
        let known = {
            let stack = self.stack.lock().unwrap_or_else(|e| e.into_inner());
            stack.routes.iter().any(|r| r.name == route)
        };
        if !known {
            return Err(ScaleError::UnknownRoute(route.to_owned()));
        }
        let now = self
            .gateway
            .set_weights(route, weights)
            .map_err(ScaleError::Invalid)?;
        let shares: Vec<String> = now.iter().map(|(s, w)| format!("{s}={w}")).collect();
        self.events.emit(
            "",
            None,
            EventKind::Weighted,
            format!("route {route}: {} (shoal weight)", shares.join(" ")),
        );
        Ok(now)
    }

    fn routes(&self) -> Vec<RouteInfo> {
        let stack = self.stack.lock().unwrap_or_else(|e| e.into_inner());
        stack
            .routes
            .iter()
            .map(|r| RouteInfo {
                name: r.name.clone(),
                rule: r.rule.source().to_owned(),
                service: r.service.clone(),
                // The weights in force (after `shoal weight` or a canary step), else the
                // file's.
                weights: self.gateway.weights(&r.name).unwrap_or_else(|| {
                    r.split
                        .iter()
                        .flat_map(|s| &s.targets)
                        .map(|t| (t.service.clone(), t.weight))
                        .collect()
                }),
                mirror: r.mirror.as_ref().map(|m| (m.service.clone(), m.percent)),
                priority: r.priority,
                entrypoints: r.entrypoints.clone(),
                middlewares: r.middlewares.iter().map(describe).collect(),
            })
            .collect()
    }
}

/// The settings a reload cannot apply, as shoal started with them: the listeners (bound
/// once), the runtime's worker threads, the admin API's address and token. Everything else
/// in a stack file applies on reload — routes, services, middlewares, `gateway.timeouts`
/// and `gateway.limits` (the client-side ones through [`LiveSettings`]), certificates, the
/// access log, `metrics.enabled` and `prefix` — except `metrics.buckets` (the histograms
/// are made once), which [`StartedWith::needs_restart`] also names.
#[derive(Debug, Clone)]
pub(crate) struct StartedWith {
    entrypoints: Vec<Entrypoint>,
    workers: usize,
    admin: shoal_config::Admin,
}

impl StartedWith {
    pub(crate) fn of(stack: &Stack) -> StartedWith {
        StartedWith {
            entrypoints: stack.gateway.entrypoints.clone(),
            workers: stack.gateway.workers,
            admin: stack.admin.clone(),
        }
    }

    /// The settings `new` changes that only a restart applies, each named as in the stack
    /// file with its running and its new value (`gateway.listen (127.0.0.1:8000 →
    /// 127.0.0.1:9000)`; a token is never shown). Compared with what runs, not with the
    /// last reload: a second reload still names what the first could not apply.
    /// `buckets`: the running histogram bounds.
    pub(crate) fn needs_restart(&self, new: &Stack, buckets: &[f64]) -> Vec<String> {
        let mut changed = listener_changes(&self.entrypoints, &new.gateway.entrypoints);
        let g = &new.gateway;
        if g.workers != self.workers {
            changed.push(format!(
                "gateway.workers ({} → {})",
                self.workers, g.workers
            ));
        }
        if new.admin.listen != self.admin.listen {
            changed.push(format!(
                "admin.listen ({} → {})",
                self.admin.listen, new.admin.listen
            ));
        }
        if new.admin.token != self.admin.token {
            changed.push("admin.token (the old token is still the one required)".to_owned());
        }
        if new.metrics.buckets != buckets {
            changed.push(format!(
                "metrics.buckets ({:?} → {:?})",
                buckets, new.metrics.buckets
            ));
        }
        changed
    }
}

/// How the listeners `new` asks for differ from the running ones, `old`: names, addresses,
/// TLS on or off, redirects. Certificates and TLS versions are not listeners: a reload
/// applies them. The single plain entrypoint `web` is what `gateway.listen` makes, and is
/// named so.
fn listener_changes(old: &[Entrypoint], new: &[Entrypoint]) -> Vec<String> {
    let shorthand = |eps: &[Entrypoint]| matches!(eps, [e] if e.name == "web" && e.tls.is_none() && e.redirect_to.is_none());
    if shorthand(old) && shorthand(new) {
        return if old[0].listen == new[0].listen {
            Vec::new()
        } else {
            vec![format!(
                "gateway.listen ({} → {})",
                old[0].listen, new[0].listen
            )]
        };
    }
    let on_off = |on: bool| if on { "on" } else { "off" };
    let mut changed = Vec::new();
    for n in new {
        let path = format!("gateway.entrypoints.{}", n.name);
        let Some(o) = old.iter().find(|o| o.name == n.name) else {
            changed.push(format!("{path} (new, on {})", n.listen));
            continue;
        };
        if o.listen != n.listen {
            changed.push(format!("{path}.listen ({} → {})", o.listen, n.listen));
        }
        if o.tls.is_some() != n.tls.is_some() {
            changed.push(format!(
                "{path}.tls ({} → {})",
                on_off(o.tls.is_some()),
                on_off(n.tls.is_some())
            ));
        }
        if o.redirect_to != n.redirect_to {
            let target = |e: &Entrypoint| {
                e.redirect_to
                    .as_ref()
                    .map_or_else(|| "off".to_owned(), |r| r.entrypoint.clone())
            };
            changed.push(format!(
                "{path}.redirect_to ({} → {})",
                target(o),
                target(n)
            ));
        }
    }
    for o in old.iter().filter(|o| !new.iter().any(|n| n.name == o.name)) {
        changed.push(format!(
            "gateway.entrypoints.{} (removed; still listening on {})",
            o.name, o.listen
        ));
    }
    changed
}

/// A middleware in a few words, for the admin API's routes.
fn describe(m: &Middleware) -> String {
    match m {
        Middleware::StripPrefix(prefixes) => format!("strip_prefix {}", prefixes.join(" ")),
        Middleware::AddPrefix(prefix) => format!("add_prefix {prefix}"),
        Middleware::RateLimit(r) => format!(
            "rate_limit {}/{} burst {}",
            r.average,
            shoal_config::format_duration(r.period),
            r.burst
        ),
        Middleware::InFlightReq(r) => format!("in_flight_req {}", r.amount),
        Middleware::Buffering(b) => format!("buffering {} B", b.max_request_body_bytes),
        Middleware::RedirectScheme(r) => format!("redirect_scheme {}", r.scheme),
        other => other.kind().to_owned(),
    }
}

/// How often `shoal logs -f` looks for new lines in the log files.
const LOG_POLL: Duration = Duration::from_millis(100);

/// How long shutdown waits for the driver to stop replicas, beyond their own grace periods.
pub(crate) const DRIVER_SHUTDOWN_SLACK: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_reload_answers_every_problem_and_logs_one_per_line() {
        let problem = |line, message: &str| shoal_config::Diagnostic {
            file: "shoal.yaml".into(),
            line,
            column: 3,
            field: "routes[0].service".into(),
            message: message.into(),
            hint: None,
        };
        let e = ReloadError::Invalid(shoal_config::Diagnostics(vec![
            problem(4, "no service `wbe`"),
            problem(9, "must be positive"),
        ]));
        assert_eq!(
            e.to_string(),
            "error: shoal.yaml:4:3: routes[0].service: no service `wbe`\n\
             error: shoal.yaml:9:3: routes[0].service: must be positive"
        );
        assert_eq!(
            e.event_text(),
            "shoal.yaml:4:3: routes[0].service: no service `wbe`\n\
             shoal.yaml:9:3: routes[0].service: must be positive"
        );
        let no_file = ReloadError::NoDemoFile(PathBuf::from("/srv/shoal.yaml"));
        assert_eq!(no_file.event_text(), no_file.to_string());
        assert!(
            no_file
                .to_string()
                .contains("/srv/shoal.yaml does not exist: `shoal init`")
        );
    }

    #[test]
    fn scale_state_round_trips_and_yields_to_file_changes() {
        let dir = std::env::temp_dir().join(format!("shoal-scale-{}", std::process::id()));
        let path = dir.join("state");
        let mut s = ScaleState::default();
        s.entries.insert("users".into(), (5, 2));
        s.save(&path).unwrap();
        let loaded = ScaleState::load(&path);
        assert_eq!(loaded, s);
        assert_eq!(loaded.replicas("users", 2), 5, "file unchanged: scale wins");
        assert_eq!(loaded.replicas("users", 3), 3, "file changed: file wins");
        assert_eq!(loaded.replicas("music", 2), 2);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn stack(gateway: &str) -> Stack {
        let yaml = format!(
            "gateway:\n{gateway}admin:\n  listen: 127.0.0.1:0\n\
             services:\n  web:\n    servers: [http://127.0.0.1:1]\n\
             routes:\n  - match: PathPrefix(`/`)\n    service: web\n"
        );
        shoal_config::parse(&yaml, "shoal.yaml").expect("a valid stack")
    }

    #[test]
    fn a_reload_names_each_listener_change() {
        // Only read at start and on reload: any regular file passes the stack's checks.
        let pem = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let running = stack(&format!(
            "  entrypoints:\n    web: {{ listen: 127.0.0.1:8000, redirect_to: secure }}\n\
             \x20   secure: {{ listen: 127.0.0.1:8443, tls: {{ cert: {pem}, key: {pem} }} }}\n\
             \x20   old: {{ listen: 127.0.0.1:8001 }}\n",
        ));
        let started = StartedWith::of(&running);
        let buckets = &running.metrics.buckets;
        assert_eq!(
            started.needs_restart(&running, buckets),
            Vec::<String>::new()
        );
        let new = stack(
            "  entrypoints:\n    web: { listen: 127.0.0.1:8080 }\n\
             \x20   secure: { listen: 127.0.0.1:8443 }\n\
             \x20   extra: { listen: 127.0.0.1:8002 }\n  workers: 1\n",
        );
        assert_eq!(
            started.needs_restart(&new, buckets),
            [
                "gateway.entrypoints.web.listen (127.0.0.1:8000 → 127.0.0.1:8080)",
                "gateway.entrypoints.web.redirect_to (secure → off)",
                "gateway.entrypoints.secure.tls (on → off)",
                "gateway.entrypoints.extra (new, on 127.0.0.1:8002)",
                "gateway.entrypoints.old (removed; still listening on 127.0.0.1:8001)",
                "gateway.workers (0 → 1)",
            ]
            .map(String::from)
        );
    }
}
