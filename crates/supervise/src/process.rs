//! Starting and signalling replica processes.
//!
//! Each replica is spawned as the leader of its own process group (`setpgid(0, 0)`), so
//! the group id equals the leader's pid and a signal sent to the group reaches every
//! process the replica forked — workers, `sh -c` children, stray `sleep`s. Stopping is
//! always group-wide: SIGTERM, a grace period, SIGKILL; and after the leader is reaped
//! the group gets one more SIGKILL so that nothing it left behind survives. That last
//! signal is sent right after the wait returns, before anything else runs on this task:
//! a pid number is not reused while a group of that id still has members, and the window
//! in which a reaped, empty group id could be recycled by a new group leader is tiny.
//!
//! A replica with [resource limits](crate::ResourceLimits) joins its cgroups (or gets its
//! rlimits) in the child, between `fork` and `exec` (see the `limits` module), so nothing
//! it runs escapes them.
//!
//! As a best effort against shoal itself being SIGKILLed, children ask the kernel for
//! `PR_SET_PDEATHSIG = SIGKILL`: they die with the thread that spawned them (tokio's
//! worker threads live as long as the runtime). Grandchildren are not covered by that.
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use shoal_core::ExitStatus;
use tokio::process::{Child, Command};

use crate::limits;
use crate::spec::ServiceSpec;

/// Where replica ports are drawn from: below Linux's default ephemeral range
/// (32768–60999), where the kernel hands out ports to every `bind(:0)` and outgoing
/// connection on the machine.
pub(crate) const REPLICA_PORTS: std::ops::Range<u16> = 20000..32768;

/// A free loopback port for a replica: a random port from [`REPLICA_PORTS`] that can be
/// bound right now (then released for the replica to bind).
///
/// Between the release and the replica's own bind, another program could take the port.
/// Drawing outside the ephemeral range makes that unlikely: only programs that pick
/// explicit ports there (other shoals, by the same random draw) can collide. Falls back to
/// `bind(:0)` if no port in the range is free after a few tries.
pub(crate) fn free_port() -> io::Result<u16> {
    for _ in 0..64 {
        let port = fastrand::u16(REPLICA_PORTS);
        if let Ok(l) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            return Ok(l.local_addr()?.port());
        }
    }
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Why a replica could not be started. These are not retried: the same command would
/// fail the same way.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    #[error("empty command")]
    EmptyCommand,
    #[error("command not found: {0}")]
    NotFound(String),
    #[error("working directory not found: {0}")]
    NoWorkdir(PathBuf),
    #[error("cannot set up resource limits: {0}")]
    Limits(io::Error),
    #[error("cannot start {program}: {source}")]
    Other { program: String, source: io::Error },
}

/// Spawn replica `index` of `spec`, told to listen on `port`; without a port (a worker),
/// `port_env` is removed from the environment it inherits (`spec.env` may still set it).
pub(crate) fn spawn(
    spec: &ServiceSpec,
    index: u32,
    port: Option<u16>,
) -> Result<Child, SpawnError> {
    let (program, args) = spec.command.split_first().ok_or(SpawnError::EmptyCommand)?;
    if program.is_empty() {
        return Err(SpawnError::EmptyCommand);
    }
    if let Some(dir) = &spec.workdir
        && !dir.is_dir()
    {
        return Err(SpawnError::NoWorkdir(dir.clone()));
    }
    let mut cmd = Command::new(resolve(program, spec.workdir.as_deref()));
    match port {
        Some(port) => cmd.env(&spec.port_env, port.to_string()),
        None => cmd.env_remove(&spec.port_env),
    };
    cmd.args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(&spec.replica_env, index.to_string())
        .env("SHOAL_SERVICE", &spec.name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.workdir {
        cmd.current_dir(dir);
    }
    set_parent_death_signal(&mut cmd);
    // The machine is examined (cgroups) only once a service has limits.
    let placement = if spec.limits.is_set() {
        limits::prepare(limits::mechanism(), &spec.name, index, &spec.limits)
            .map_err(SpawnError::Limits)?
    } else {
        limits::Placement::default()
    };
    if !placement.is_empty() {
        let child_side = placement.clone();
        // SAFETY: `enter` only makes async-signal-safe calls and allocates nothing.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || child_side.enter());
        }
    }
    match cmd.spawn() {
        Ok(child) => {
            if let Some(pid) = child.id() {
                limits::register(pid, placement);
            } else {
                placement.discard();
            }
            Ok(child)
        }
        Err(source) => {
            placement.discard();
            Err(match source.kind() {
                io::ErrorKind::NotFound => SpawnError::NotFound(program.clone()),
                _ => SpawnError::Other {
                    program: program.clone(),
                    source,
                },
            })
        }
    }
}

/// `argv[0]` with a `/` in it is relative to the working directory; a bare name is
/// looked up on `PATH` by the standard library.
fn resolve(program: &str, workdir: Option<&Path>) -> PathBuf {
    let path = Path::new(program);
    match workdir {
        Some(dir) if program.contains('/') && path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// Ask the kernel to SIGKILL the child when its parent (thread) dies.
#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec. It only calls prctl(2)
    // and getppid(2), which are async-signal-safe, and allocates nothing on success.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0
                && libc::getppid() as u32 != parent
            {
                // The parent died before the request took effect: go down with it.
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Send `signal` to every process of group `pgid`; false if the group is empty.
pub(crate) fn signal_group(pgid: u32, signal: Signal) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    if raw <= 1 {
        return false; // never signal "every process" or init by accident
    }
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(e) => {
            tracing::warn!(pgid, %signal, error = %e, "cannot signal process group");
            false
        }
    }
}

/// Terminate the group led by `child`: SIGTERM, up to `grace` for the leader to exit,
/// then SIGKILL; the leader is reaped and the group swept with SIGKILL.
pub(crate) async fn terminate(
    child: &mut Child,
    pgid: u32,
    grace: std::time::Duration,
) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        signal_group(pgid, Signal::SIGKILL);
        let _ = limits::reaped(pgid);
        return Some(exit_status(status));
    }
    signal_group(pgid, Signal::SIGTERM);
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(result) => result.ok(),
        Err(_) => {
            signal_group(pgid, Signal::SIGKILL);
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    };
    signal_group(pgid, Signal::SIGKILL);
    // Stopped on purpose: whatever its cgroup counted, this is not an OOM to report.
    let _ = limits::reaped(pgid);
    status.map(exit_status)
}

/// shoal's view of how a process ended.
pub(crate) fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(sig)) => ExitStatus::Signal(sig),
        (None, None) => ExitStatus::Code(-1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_programs_resolve_against_the_workdir() {
        let wd = Path::new("/srv/app");
        assert_eq!(
            resolve("./run.sh", Some(wd)),
            PathBuf::from("/srv/app/./run.sh")
        );
        assert_eq!(
            resolve("bin/app", Some(wd)),
            PathBuf::from("/srv/app/bin/app")
        );
        assert_eq!(resolve("python3", Some(wd)), PathBuf::from("python3"));
        assert_eq!(
            resolve("/usr/bin/env", Some(wd)),
            PathBuf::from("/usr/bin/env")
        );
        assert_eq!(resolve("./run.sh", None), PathBuf::from("./run.sh"));
    }

    #[test]
    fn free_ports_are_usable() {
        let port = free_port().unwrap();
        assert!(
            REPLICA_PORTS.contains(&port),
            "drawn below the ephemeral range: {port}"
        );
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }

    #[tokio::test]
    async fn missing_commands_and_directories_are_named() {
        let spec = ServiceSpec::new("x", vec!["shoal-no-such-command-xyz".into()]);
        let err = spawn(&spec, 0, Some(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "command not found: shoal-no-such-command-xyz"
        );
        let spec = ServiceSpec {
            workdir: Some("/no/such/dir".into()),
            ..ServiceSpec::new("x", vec!["true".into()])
        };
        assert_eq!(
            spawn(&spec, 0, Some(1)).unwrap_err().to_string(),
            "working directory not found: /no/such/dir"
        );
        let spec = ServiceSpec::new("x", vec![]);
        assert_eq!(
            spawn(&spec, 0, Some(1)).unwrap_err().to_string(),
            "empty command"
        );
    }

    #[tokio::test]
    async fn children_get_port_index_and_their_own_group() {
        let mut spec = ServiceSpec::new(
            "users",
            vec![
                "sh".into(),
                "-c".into(),
                "echo $PORT $SHOAL_REPLICA $SHOAL_SERVICE $EXTRA".into(),
            ],
        );
        spec.env.push(("EXTRA".into(), "yes".into()));
        let child = spawn(&spec, 3, Some(4567)).unwrap();
        let pid = child.id().unwrap();
        let out = child.wait_with_output().await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "4567 3 users yes\n");
        assert_ne!(pid, std::process::id());
    }

    #[tokio::test]
    async fn workers_get_no_port_even_if_shoal_has_one() {
        let output = |spec: &ServiceSpec| {
            let child = spawn(spec, 1, None).unwrap();
            async move {
                let out = child.wait_with_output().await.unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
        };
        // A variable of shoal's own environment is not passed down as a worker's port
        // variable (cargo runs tests with CARGO_MANIFEST_DIR set).
        let inherited = "CARGO_MANIFEST_DIR";
        assert!(std::env::var_os(inherited).is_some());
        let mut spec = ServiceSpec::worker(
            "jobs",
            vec![
                "sh".into(),
                "-c".into(),
                format!("echo ${{{inherited}-unset}} $SHOAL_REPLICA"),
            ],
        );
        spec.port_env = inherited.into();
        assert_eq!(output(&spec).await, "unset 1\n");
        // One the spec sets explicitly is kept.
        spec.port_env = "PORT2".into();
        spec.env.push(("PORT2".into(), "set".into()));
        spec.command[2] = "echo ${PORT2-unset}".into();
        assert_eq!(output(&spec).await, "set\n");
    }

    #[tokio::test]
    async fn terminate_escalates_to_sigkill() {
        // Ignores SIGTERM: only SIGKILL ends it.
        let spec = ServiceSpec::new(
            "x",
            vec![
                "sh".into(),
                "-c".into(),
                "trap '' TERM; echo up; while :; do sleep 0.05; done".into(),
            ],
        );
        let mut child = spawn(&spec, 0, Some(1)).unwrap();
        let pgid = child.id().unwrap();
        // Wait until the trap is installed (the shell printed "up").
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 3];
        tokio::io::AsyncReadExt::read_exact(&mut out, &mut buf)
            .await
            .unwrap();
        let status = terminate(&mut child, pgid, std::time::Duration::from_millis(200)).await;
        assert_eq!(status, Some(ExitStatus::Signal(libc::SIGKILL)));
    }
}
