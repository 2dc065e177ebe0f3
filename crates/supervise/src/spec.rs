//! What to run: a service's command, environment, replica count and policies.
//!
//! These are the supervisor's own types, independent of the stack-file schema: the app
//! wiring converts validated configuration into a [`ServiceSpec`]. Every default below
//! follows the conventions of the supervisors users already know (Compose's restart
//! vocabulary, Kubernetes' probe thresholds), with the values documented on each field.
use std::path::PathBuf;
use std::time::Duration;

use shoal_health::Probe;

use crate::limits::ResourceLimits;

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
    /// The version label of what this spec runs (`version:` in the stack file); `None`
    /// names it by a hash of the spec instead (see [`ServiceSpec::version`]). A new label
    /// is a new version: it rolls the replicas even if nothing else changed.
    pub version: Option<String>,
    /// How a change of this spec replaces the replicas. Not part of how a replica runs:
    /// changing only this rolls nothing (it applies to the next rollout, and to the one
    /// in progress).
    pub rollout: RolloutPolicy,
    /// Memory and CPU limits of each replica (default none; see the `limits` module for
    /// how they are enforced on this machine). Part of how a replica runs: a change rolls.
    pub limits: ResourceLimits,
    /// Services whose replicas must be started (or ready) before this one's first
    /// replicas start, as Compose's `depends_on`. Start order only: not part of how a
    /// replica runs (a change rolls nothing), and a restart or a rollout later does not
    /// wait again (default none).
    pub depends_on: Vec<Dependency>,
}

/// One entry of [`ServiceSpec::depends_on`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The service waited for.
    pub service: String,
    /// What is waited for.
    pub condition: Condition,
}

/// When a dependency counts as there (Compose's `condition:` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    /// At least one of its replicas has a running process (`service_started`, the
    /// default of the short form, as in Compose).
    #[default]
    Started,
    /// All its desired replicas are ready: passed their readiness probe, or, for a
    /// worker, running (`service_healthy`).
    Healthy,
}

impl Condition {
    /// The stack file's word for it.
    pub fn name(self) -> &'static str {
        match self {
            Condition::Started => "service_started",
            Condition::Healthy => "service_healthy",
        }
    }
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
            version: None,
            rollout: RolloutPolicy::default(),
            limits: ResourceLimits::default(),
            depends_on: Vec::new(),
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
    /// `replicas` and `rollout` is equal (`version` included: a new label is a new
    /// version). The supervisor rolls a service only when its new spec doesn't run like
    /// the old one; a new count alone only scales it, whoever set that count (the stack
    /// file, `shoal scale`, the autoscaler), and a new rollout policy only changes how
    /// the next change rolls.
    pub(crate) fn runs_like(&self, other: &ServiceSpec) -> bool {
        // Every field named, so that a new one must be classified here (and in `version`).
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
            version,
            rollout: _,
            limits,
            depends_on: _,
        } = self;
        *version == other.version
            && *name == other.name
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
            && *limits == other.limits
    }

    /// The version its replicas report: the `version` label, else 8 hex digits of a
    /// hash of every field [`runs_like`](Self::runs_like) compares (so two specs that run
    /// alike have the same version, and a count or rollout-policy change keeps it).
    ///
    /// The hash is FNV-1a (64 bits, folded to 32) over the fields' `Debug` text: stable
    /// across runs and machines for one build of shoal (unlike `std`'s `RandomState`);
    /// a new shoal release may print some field differently and so name the same spec
    /// with another hash, which only matters when comparing versions across releases.
    pub fn version(&self) -> String {
        if let Some(label) = &self.version {
            return label.clone();
        }
        let text = format!(
            "{:?}",
            (
                &self.name,
                self.kind,
                &self.command,
                &self.env,
                &self.workdir,
                &self.port_env,
                &self.replica_env,
                &self.readiness,
                &self.restart,
                &self.stop,
                &self.log_rotation,
            )
        );
        // Limits joined the hash later: a spec without them keeps the version it had.
        let text = if self.limits.is_set() {
            format!("{text}{:?}", self.limits)
        } else {
            text
        };
        let hash = fnv1a(text.as_bytes());
        format!("{:08x}", (hash ^ (hash >> 32)) as u32)
    }
}

/// FNV-1a, 64 bits: a small, fixed (unkeyed) hash.
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// A number of replicas: so many, or a share of the desired count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// So many replicas.
    Count(u32),
    /// This percentage of the desired count.
    Percent(u32),
}

impl Amount {
    /// The count for `desired` replicas: a percentage rounds up when `round_up` (a surge)
    /// and down otherwise (unavailability), as Kubernetes does.
    pub fn of(self, desired: u32, round_up: bool) -> u32 {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) => {
                let scaled = u64::from(desired) * u64::from(p);
                let n = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                u32::try_from(n).unwrap_or(u32::MAX)
            }
        }
    }
}

/// How a changed spec replaces the replicas: a Deployment's `RollingUpdate`.
///
/// While rolling, at most `desired + max_surge` replicas exist (an old replica counts
/// until its process is reaped, so draining ones count), and at least
/// `desired - max_unavailable` stay in the balancer. With the defaults (1, 0) one new
/// replica starts, and an old one is drained and stopped only once its replacement is
/// ready. If no new replica becomes ready for `progress_deadline`, or one gives up
/// (crash loop, missing command), the rollout is rolled back to the previous spec.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutPolicy {
    /// Replicas that may exist above the desired count (default 1; a percentage rounds up).
    pub max_surge: Amount,
    /// Replicas that may be missing from the balancer below the desired count (default 0;
    /// a percentage rounds down). If both come to 0, a surge of 1 is used.
    pub max_unavailable: Amount,
    /// A rollout with no new replica becoming ready for this long is rolled back
    /// (default 60 s).
    pub progress_deadline: Duration,
}

impl Default for RolloutPolicy {
    fn default() -> RolloutPolicy {
        RolloutPolicy {
            max_surge: Amount::Count(1),
            max_unavailable: Amount::Count(0),
            progress_deadline: Duration::from_secs(60),
        }
    }
}

impl RolloutPolicy {
    /// (surge, unavailable) for `desired` replicas; never both 0.
    pub(crate) fn limits(&self, desired: u32) -> (u32, u32) {
        let surge = self.max_surge.of(desired, true);
        let unavailable = self.max_unavailable.of(desired, false).min(desired);
        if surge == 0 && unavailable == 0 {
            (1, 0)
        } else {
            (surge, unavailable)
        }
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
    /// Liveness (Kubernetes' `livenessProbe`, with the same check): a replica that was
    /// ready and whose probe then fails continuously this long — from its first failed
    /// probe, with no pass since — has its process group killed (SIGKILL: a hung process
    /// would not act on SIGTERM), which counts as a failed exit: the restart policy and
    /// its back-off apply. `None`: never (default 30 s, Kubernetes' 3 × 10 s). A replica
    /// that was never ready is [`start_timeout`](Self::start_timeout)'s business.
    pub liveness: Option<Duration>,
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
            liveness: Some(Duration::from_secs(30)),
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

        let changes: [fn(&mut ServiceSpec); 13] = [
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
            |s| s.version = Some("v2".into()),
            |s| s.limits.memory_bytes = Some(64 << 20),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut changed = scaled.clone();
            change(&mut changed);
            assert!(!spec.runs_like(&changed), "change {i} was not seen");
            assert_ne!(
                spec.version(),
                changed.version(),
                "change {i}: same version"
            );
        }
    }

    #[test]
    fn depends_on_is_start_order_not_how_a_replica_runs() {
        let spec = ServiceSpec::new("web", vec!["app".into()]);
        let mut other = spec.clone();
        other.depends_on.push(Dependency {
            service: "db".into(),
            condition: Condition::Healthy,
        });
        assert!(spec.runs_like(&other));
        assert_eq!(spec.version(), other.version());
    }

    #[test]
    fn a_rollout_policy_change_alone_is_not_a_new_version() {
        let spec = ServiceSpec::new("web", vec!["app".into()]);
        let mut other = spec.clone();
        other.replicas = 4;
        other.rollout.max_surge = Amount::Percent(25);
        other.rollout.progress_deadline = Duration::from_secs(5);
        assert!(spec.runs_like(&other));
        assert_eq!(spec.version(), other.version());
        let v = spec.version();
        assert_eq!(v.len(), 8);
        assert!(v.chars().all(|c| c.is_ascii_hexdigit()), "{v}");
        // The same spec built again hashes the same (no per-process random keys).
        assert_eq!(ServiceSpec::new("web", vec!["app".into()]).version(), v);
        other.version = Some("v7".into());
        assert_eq!(other.version(), "v7");
    }

    #[test]
    fn rollout_limits_follow_deployment_rounding() {
        let p = |surge, unavailable| RolloutPolicy {
            max_surge: surge,
            max_unavailable: unavailable,
            ..RolloutPolicy::default()
        };
        assert_eq!(RolloutPolicy::default().limits(4), (1, 0));
        assert_eq!(
            p(Amount::Percent(25), Amount::Percent(25)).limits(10),
            (3, 2)
        );
        assert_eq!(p(Amount::Count(2), Amount::Count(0)).limits(4), (2, 0));
        // Never both zero (that could never make progress), never more than desired.
        assert_eq!(p(Amount::Count(0), Amount::Percent(10)).limits(4), (1, 0));
        assert_eq!(p(Amount::Count(0), Amount::Count(9)).limits(3), (0, 3));
    }
}
