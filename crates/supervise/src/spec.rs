//! What to run: a service's command, environment, replica count and policies.
//!
//! These are the supervisor's own types, independent of the stack-file schema: the app
//! wiring converts validated configuration into a [`ServiceSpec`]. Every default below
//! follows the conventions of the supervisors users already know (Compose's restart
//! vocabulary, Kubernetes' probe thresholds), with the values documented on each field.
use std::path::PathBuf;
use std::time::Duration;

use shoal_health::Probe;

/// What a service's replicas are: servers behind the gateway, or workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceKind {
    /// Each replica gets a free loopback port (in `port_env`), joins the balancer once its
    /// readiness probe passes, and on stop leaves the balancer and drains its in-flight
    /// requests before SIGTERM. The default.
    #[default]
    Web,
    /// No port (`port_env` is not set, even if shoal's own environment has it), no probe:
    /// ready as soon as the process runs, and never an endpoint of the balancer (the
    /// [`EndpointSink`](shoal_core::EndpointSink) never hears of it). On stop: SIGTERM at
    /// once, [`StopPolicy::grace`] to finish (e.g. ack the message in hand), then SIGKILL;
    /// [`StopPolicy::drain_timeout`] and [`Readiness`] do not apply. Restarts, logs,
    /// scaling, resource sampling, status and events are those of a web replica.
    Worker,
}

/// Everything needed to run the replicas of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// Service name; replicas are keyed `NAME/INDEX`.
    pub name: String,
    /// Web replicas (port, probe, balancer) or workers (default [`ServiceKind::Web`]).
    pub kind: ServiceKind,
    /// Program and arguments. `argv[0]` is looked up on `PATH`, or taken relative to
    /// `workdir` if it contains a `/`.
    pub command: Vec<String>,
    /// Variables added to the environment inherited from shoal.
    pub env: Vec<(String, String)>,
    /// Working directory of the process (default: shoal's).
    pub workdir: Option<PathBuf>,
    /// Desired number of replicas.
    pub replicas: u32,
    /// Variable holding the free 127.0.0.1 port each replica must listen on (default `PORT`).
    pub port_env: String,
    /// Variable holding the replica index `0..N-1` (default `SHOAL_REPLICA`).
    pub replica_env: String,
    /// When a replica is fit to receive traffic.
    pub readiness: Readiness,
    /// What to do when a replica exits.
    pub restart: RestartPolicy,
    /// How a replica is taken out of service and terminated.
    pub stop: StopPolicy,
    /// Size and number of this service's log files; `None` keeps the supervisor's
    /// [`LogPolicy`] (default `None`).
    pub log_rotation: Option<LogRotation>,
}

impl ServiceSpec {
    /// A spec with one replica and every policy at its default.
    pub fn new(name: impl Into<String>, command: Vec<String>) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            kind: ServiceKind::Web,
            command,
            env: Vec::new(),
            workdir: None,
            replicas: 1,
            port_env: "PORT".to_owned(),
            replica_env: "SHOAL_REPLICA".to_owned(),
            readiness: Readiness::default(),
            restart: RestartPolicy::default(),
            stop: StopPolicy::default(),
            log_rotation: None,
        }
    }

    /// A worker spec ([`ServiceKind::Worker`]) with one replica and every policy at its
    /// default.
    pub fn worker(name: impl Into<String>, command: Vec<String>) -> ServiceSpec {
        ServiceSpec {
            kind: ServiceKind::Worker,
            ..ServiceSpec::new(name, command)
        }
    }

    /// Whether the replicas are workers.
    pub(crate) fn is_worker(&self) -> bool {
        self.kind == ServiceKind::Worker
    }

    /// Whether a replica of `self` runs exactly like one of `other`: every field but
    /// `replicas` is equal. The supervisor rolls a service only when its new spec doesn't
    /// run like the old one; a new count alone only scales it, whoever set that count
    /// (the stack file, `shoal scale`, the autoscaler).
    pub(crate) fn runs_like(&self, other: &ServiceSpec) -> bool {
        // Every field named, so that a new one must be classified here.
        let ServiceSpec {
            name,
            kind,
            command,
            env,
            workdir,
            replicas: _,
            port_env,
            replica_env,
            readiness,
            restart,
            stop,
            log_rotation,
        } = self;
        *name == other.name
            && *kind == other.kind
            && *command == other.command
            && *env == other.env
            && *workdir == other.workdir
            && *port_env == other.port_env
            && *replica_env == other.replica_env
            && *readiness == other.readiness
            && *restart == other.restart
            && *stop == other.stop
            && *log_rotation == other.log_rotation
    }
}

/// Readiness checking: a replica joins the balancer only once its probe passes.
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    /// The check (default TCP connect).
    pub probe: Probe,
    /// Time between probes (default 1 s). Until a replica is first ready, probes come
    /// at least every 100 ms (like Docker's `start_interval`), so a replica that listens
    /// soon after spawn joins the balancer without waiting a whole interval.
    pub interval: Duration,
    /// Time between probes after a failed probe and while out of the balancer
    /// (default 250 ms).
    pub fast_interval: Duration,
    /// Time one probe may take (default 500 ms).
    pub timeout: Duration,
    /// Consecutive passes needed to (re)join the balancer (default 1).
    pub success_threshold: u32,
    /// Consecutive failures after which a ready replica leaves the balancer (default 2).
    pub failure_threshold: u32,
    /// Probe failures during this period after start don't count (default 0 s).
    pub start_period: Duration,
    /// A replica not ready this long after start is killed and counts as a failed start
    /// (default 60 s).
    pub start_timeout: Duration,
}

impl Default for Readiness {
    fn default() -> Readiness {
        Readiness {
            probe: Probe::Tcp,
            interval: Duration::from_secs(1),
            fast_interval: Duration::from_millis(250),
            timeout: Duration::from_millis(500),
            success_threshold: 1,
            failure_threshold: 2,
            start_period: Duration::ZERO,
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// When an exited replica is started again (Compose's vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartMode {
    /// Never.
    No,
    /// After a non-zero exit code or a death by signal (and after a failed start).
    OnFailure,
    /// After any exit.
    Always,
}

/// Restarting with exponential back-off, and giving up on a crash loop.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartPolicy {
    /// When to restart (default [`RestartMode::OnFailure`]).
    pub mode: RestartMode,
    /// First back-off delay (default 500 ms); doubles per consecutive restart. A floor of
    /// 50 ms applies so that a crash loop never spins.
    pub delay: Duration,
    /// Cap of the back-off delay (default 30 s).
    pub max_delay: Duration,
    /// A process that stayed up this long resets the back-off to `delay` (default 30 s).
    pub reset_after: Duration,
    /// Restarts allowed within `window`; one more exit marks the replica failed
    /// (default 5; 0 = unlimited).
    pub max_attempts: u32,
    /// Window over which restarts are counted (default 60 s).
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            mode: RestartMode::OnFailure,
            delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            reset_after: Duration::from_secs(30),
            max_attempts: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// Taking a replica out of service.
#[derive(Debug, Clone, PartialEq)]
pub struct StopPolicy {
    /// After leaving the balancer, wait at most this long for in-flight requests to
    /// finish (default 10 s).
    pub drain_timeout: Duration,
    /// Time between SIGTERM and SIGKILL of the process group (default 5 s).
    pub grace: Duration,
}

impl Default for StopPolicy {
    fn default() -> StopPolicy {
        StopPolicy {
            drain_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(5),
        }
    }
}

/// Size-based rotation of a service's log files, overriding the [`LogPolicy`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    /// Size at which a log file is rotated, in bytes.
    pub max_bytes: u64,
    /// Rotated files kept per replica, `.1` newest.
    pub keep: u32,
}

/// Where and how replica output is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPolicy {
    /// Directory of the log files (see [`crate::log_file`]); created if missing.
    pub dir: PathBuf,
    /// Size at which a log file is rotated, in bytes (default 10 MiB).
    pub max_bytes: u64,
    /// Rotated files kept per replica, `.1` newest (default 3).
    pub keep: u32,
    /// Also print each line to shoal's stdout as `service.index | line` (default false).
    pub echo: bool,
    /// Colour the echoed prefix per service with ANSI escapes (default false).
    pub color: bool,
}

impl LogPolicy {
    /// This policy with `rotation`'s size and count, if given.
    pub fn with_rotation(&self, rotation: Option<LogRotation>) -> LogPolicy {
        let mut policy = self.clone();
        if let Some(r) = rotation {
            policy.max_bytes = r.max_bytes;
            policy.keep = r.keep;
        }
        policy
    }

    /// Defaults: 10 MiB files, 3 kept, no echo.
    pub fn new(dir: impl Into<PathBuf>) -> LogPolicy {
        LogPolicy {
            dir: dir.into(),
            max_bytes: 10 * 1024 * 1024,
            keep: 3,
            echo: false,
            color: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_like_ignores_the_replica_count_only() {
        let spec = ServiceSpec::new("web", vec!["app".into()]);
        let mut scaled = spec.clone();
        scaled.replicas = 3;
        assert!(spec.runs_like(&scaled), "the count alone");
        assert!(scaled.runs_like(&spec));

        let changes: [fn(&mut ServiceSpec); 11] = [
            |s| s.name.push('2'),
            |s| s.kind = ServiceKind::Worker,
            |s| s.command.push("--v2".into()),
            |s| s.env.push(("VERSION".into(), "2".into())),
            |s| s.workdir = Some("/srv".into()),
            |s| s.port_env = "HTTP_PORT".into(),
            |s| s.replica_env = "INDEX".into(),
            |s| s.readiness.probe = Probe::http("/health"),
            |s| s.restart.mode = RestartMode::Always,
            |s| s.stop.grace = Duration::from_secs(1),
            |s| {
                s.log_rotation = Some(LogRotation {
                    max_bytes: 1,
                    keep: 1,
                });
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut changed = scaled.clone();
            change(&mut changed);
            assert!(!spec.runs_like(&changed), "change {i} was not seen");
        }
    }
}
