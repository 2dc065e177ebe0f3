//! Memory and CPU limits of local replicas, and telling an out-of-memory kill apart.
//!
//! A limit applies to each replica: its whole process group, like a container's. How it
//! is enforced depends on what the machine lets shoal do, decided once per process
//! ([`mechanism`]) and reported in the service's first `scaled` event and in the docs:
//!
//! - **cgroup v2** (`/sys/fs/cgroup` is `cgroup2fs`, or the `unified` hierarchy of a hybrid
//!   mount), when shoal's own cgroup delegates the `memory` / `cpu` controllers to its
//!   children (they are listed in its `cgroup.subtree_control`, or can be enabled there:
//!   the kernel refuses that while shoal's cgroup itself holds processes, which is why
//!   shoal is usually started in a delegated cgroup, e.g. `systemd-run --user --scope -p
//!   Delegate=yes shoal up`). Each replica incarnation gets its own child cgroup
//!   `shoal-PID.SERVICE.INDEX.N`: `memory.max` (and `memory.swap.max = 0`, so the limit
//!   is not escaped into swap) and `cpu.max = QUOTA 100000` (0.5 CPU = 50 ms per 100 ms).
//!   The child joins it before `exec` (it writes `0` to `cgroup.procs`), so everything it
//!   forks is counted too. Over the limit, the kernel's OOM killer kills a process of the
//!   cgroup; `memory.events`' `oom_kill` counter says so, and the replica's exit is
//!   reported as `OOM`.
//! - **cgroup v1** (per-controller hierarchies, as on this project's CI machine and older
//!   distributions): the same, with `memory.limit_in_bytes` (+ `memory.memsw.limit_in_bytes`
//!   where swap accounting exists) in the `memory` hierarchy, `cpu.cfs_quota_us` /
//!   `cpu.cfs_period_us` in the `cpu` one, and `oom_kill` read from `memory.oom_control`.
//!   Used for a controller only where shoal can create a child cgroup in it.
//! - **Neither** (no cgroup filesystem, not root, no delegation): memory is enforced two
//!   ways, neither of which is a cgroup. Each process gets `RLIMIT_DATA` = the limit: its
//!   private writable memory (heap, anonymous `mmap`) cannot grow past it, so an
//!   allocation beyond fails (`malloc` returns NULL, Python raises `MemoryError`, Go and
//!   Rust abort) instead of the process being killed; it is per process, so a group of
//!   several processes can use more in total. And shoal's resource sampler (every
//!   [`SAMPLE_EVERY`](crate::SAMPLE_EVERY)) SIGKILLs the group when its summed resident
//!   memory is over the limit — PM2's `max_memory_restart`, checked every second rather
//!   than every 30 s — and reports the exit as `OOM` (killed by shoal). A spike shorter
//!   than a sampling period can go unseen. CPU is **not enforced** without a cgroup:
//!   `RLIMIT_CPU` caps total CPU seconds (the process is killed after so many), not a
//!   rate, so it would kill a healthy long-running server; the event says so.
use std::collections::HashMap;
use std::ffi::CString;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::sys::signal::Signal;

/// Memory and CPU limits of each replica of a service; `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Most memory the replica's processes may use together, in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU time per wall-clock time, in thousandths of a core (500 = half a core).
    pub cpu_millis: Option<u64>,
}

impl ResourceLimits {
    /// Whether any limit is set.
    pub fn is_set(&self) -> bool {
        self.memory_bytes.is_some() || self.cpu_millis.is_some()
    }
}

/// Some limit set is not enforced by a cgroup on this machine: it falls back to rlimits and
/// shoal's sampler, or is not enforced at all. The message is the one line for users that
/// says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotEnforced(pub String);

/// How `limits` would be enforced on this machine, in one line for users: `Ok` when
/// cgroups enforce every limit set, else [`NotEnforced`].
pub fn enforcement(limits: &ResourceLimits) -> Result<String, NotEnforced> {
    let mechanism = mechanism();
    let text = mechanism.describe(limits);
    if mechanism.degraded(limits) {
        Err(NotEnforced(text))
    } else {
        Ok(text)
    }
}

/// CFS period used for CPU quotas (the kernel default), in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

/// How one controller is enforced on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Enforcer {
    /// Child cgroups of this directory, cgroup v2.
    V2(PathBuf),
    /// Child cgroups of this directory of a cgroup v1 hierarchy.
    V1(PathBuf),
    /// No cgroup: why not.
    None(String),
}

/// What this machine offers shoal for memory and for CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mechanism {
    pub(crate) memory: Enforcer,
    pub(crate) cpu: Enforcer,
}

/// The mechanism, found out once per process (it creates and removes a probe cgroup).
pub(crate) fn mechanism() -> &'static Mechanism {
    static MECHANISM: OnceLock<Mechanism> = OnceLock::new();
    MECHANISM.get_or_init(|| detect(Path::new("/sys/fs/cgroup"), Path::new("/proc/self/cgroup")))
}

fn detect(root: &Path, self_cgroup: &Path) -> Mechanism {
    let membership = std::fs::read_to_string(self_cgroup).unwrap_or_default();
    let v2_root = if is_cgroup2(root) {
        Some(root.to_path_buf())
    } else if is_cgroup2(&root.join("unified")) {
        Some(root.join("unified"))
    } else {
        None
    };
    let v2 = v2_root.map(|r| {
        let own = membership
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or("/");
        r.join(own.trim_start_matches('/'))
    });
    let pick = |controller: &str| -> Enforcer {
        let mut why = Vec::new();
        if let Some(base) = &v2 {
            match delegate_v2(base, controller) {
                Ok(()) => return Enforcer::V2(base.clone()),
                Err(e) => why.push(format!("cgroup v2 at {}: {e}", base.display())),
            }
        }
        // v1: "ID:controller[,controller]:/path".
        let v1 = membership.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
            names
                .split(',')
                .any(|n| n == controller)
                .then(|| (names.to_owned(), path.to_owned()))
        });
        match v1 {
            Some((names, path)) => {
                let base = root.join(names).join(path.trim_start_matches('/'));
                match writable(&base) {
                    Ok(()) => return Enforcer::V1(base),
                    Err(e) => why.push(format!("cgroup v1 at {}: {e}", base.display())),
                }
            }
            None if v2.is_none() => why.push("no cgroup filesystem".to_owned()),
            None => {}
        }
        Enforcer::None(why.join("; "))
    };
    Mechanism {
        memory: pick("memory"),
        cpu: pick("cpu"),
    }
}

fn is_cgroup2(path: &Path) -> bool {
    path.join("cgroup.controllers").is_file() && path.join("cgroup.subtree_control").is_file()
}

/// Make `controller` available to children of the v2 cgroup `base`.
fn delegate_v2(base: &Path, controller: &str) -> Result<(), String> {
    let listed = |file: &str| {
        std::fs::read_to_string(base.join(file))
            .map(|s| s.split_whitespace().any(|c| c == controller))
            .unwrap_or(false)
    };
    if !listed("cgroup.controllers") {
        return Err(format!("the {controller} controller is not available"));
    }
    if !listed("cgroup.subtree_control") {
        std::fs::write(
            base.join("cgroup.subtree_control"),
            format!("+{controller}"),
        )
        .map_err(|e| {
            format!("cannot enable the {controller} controller for child cgroups ({e})")
        })?;
    }
    writable(base).map_err(|e| e.to_string())
}

/// Whether a child cgroup can be created (and removed) under `base`. Also removes the
/// empty cgroups a shoal that was SIGKILLed left behind (`shoal-PID.…` of a dead PID).
fn writable(base: &Path) -> io::Result<()> {
    let probe = base.join(format!("shoal-probe-{}", std::process::id()));
    std::fs::create_dir(&probe)?;
    std::fs::remove_dir(&probe)?;
    for entry in std::fs::read_dir(base)?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("shoal-"))
            .and_then(|n| n.split('.').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            // Fails harmlessly if processes are still in it.
            let _ = std::fs::remove_dir(entry.path());
        }
    }
    Ok(())
}

impl Mechanism {
    /// One line for users: what enforces `limits`, and what is not enforced.
    pub(crate) fn describe(&self, limits: &ResourceLimits) -> String {
        let mut parts = Vec::new();
        if let Some(bytes) = limits.memory_bytes {
            let how = match &self.memory {
                Enforcer::V2(_) => "cgroup v2 memory.max".to_owned(),
                Enforcer::V1(_) => "cgroup v1 memory.limit_in_bytes".to_owned(),
                Enforcer::None(why) => format!(
                    "RLIMIT_DATA per process + group RSS checked every second, no cgroup: {why}"
                ),
            };
            parts.push(format!("memory {} ({how})", bytes_human(bytes)));
        }
        if let Some(millis) = limits.cpu_millis {
            let cores = millis as f64 / 1000.0;
            let how = match &self.cpu {
                Enforcer::V2(_) => "cgroup v2 cpu.max".to_owned(),
                Enforcer::V1(_) => "cgroup v1 cpu.cfs_quota_us".to_owned(),
                Enforcer::None(why) => format!("NOT enforced, no cgroup: {why}"),
            };
            parts.push(format!("cpu {cores} ({how})"));
        }
        format!("limits: {}", parts.join(", "))
    }

    /// Whether some limit in `limits` cannot be enforced by a cgroup here.
    pub(crate) fn degraded(&self, limits: &ResourceLimits) -> bool {
        (limits.memory_bytes.is_some() && matches!(self.memory, Enforcer::None(_)))
            || (limits.cpu_millis.is_some() && matches!(self.cpu, Enforcer::None(_)))
    }
}

/// `268435456` → `256MiB`.
pub(crate) fn bytes_human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// Where one replica incarnation's limits live, from spawn until its group is reaped.
#[derive(Debug, Default, Clone)]
pub(crate) struct Placement {
    /// Child cgroups created for it (memory, then cpu when they differ).
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of each, written by the child before `exec`.
    procs: Vec<CString>,
    /// The file whose `oom_kill` line counts kernel OOM kills in its memory cgroup.
    oom_file: Option<PathBuf>,
    /// `RLIMIT_DATA` to set in the child (no memory cgroup).
    rlimit_data: Option<u64>,
    /// The group's summed RSS above which shoal kills it (no memory cgroup).
    rss_limit: Option<u64>,
    /// Why shoal killed the group, if it did.
    killed: Option<String>,
}

/// Placements of running replicas, by process group id.
fn registry() -> &'static Mutex<HashMap<u32, Placement>> {
    static REGISTRY: OnceLock<Mutex<HashMap<u32, Placement>>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<u32, Placement>> {
    registry().lock().unwrap_or_else(|e| e.into_inner())
}

/// Prepare the limits of one incarnation of replica `index` of `service`: create and
/// configure its cgroups. Nothing to do (an empty placement) without limits.
pub(crate) fn prepare(
    mechanism: &Mechanism,
    service: &str,
    index: u32,
    limits: &ResourceLimits,
) -> io::Result<Placement> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let mut placement = Placement::default();
    if !limits.is_set() {
        return Ok(placement);
    }
    let name = format!(
        "shoal-{}.{service}.{index}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let result = configure(mechanism, &name, limits, &mut placement);
    if let Err(e) = result {
        placement.remove_dirs();
        return Err(e);
    }
    Ok(placement)
}

fn configure(
    mechanism: &Mechanism,
    name: &str,
    limits: &ResourceLimits,
    placement: &mut Placement,
) -> io::Result<()> {
    let make = |base: &Path, placement: &mut Placement| -> io::Result<PathBuf> {
        let dir = base.join(name);
        if !placement.dirs.contains(&dir) {
            std::fs::create_dir(&dir)?;
            placement.dirs.push(dir.clone());
            let procs = dir.join("cgroup.procs");
            placement.procs.push(
                CString::new(procs.as_os_str().as_encoded_bytes())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            );
        }
        Ok(dir)
    };
    let write = |dir: &Path, file: &str, value: &str| {
        std::fs::write(dir.join(file), value)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write {file}: {e}")))
    };
    if let Some(bytes) = limits.memory_bytes {
        match &mechanism.memory {
            Enforcer::V2(base) => {
                let dir = make(base, placement)?;
                write(&dir, "memory.max", &bytes.to_string())?;
                // Not every kernel has swap accounting: best effort.
                let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                placement.oom_file = Some(dir.join("memory.events"));
            }
            Enforcer::V1(base) => {
                let dir = make(base, placement)?;
                write(&dir, "memory.limit_in_bytes", &bytes.to_string())?;
                let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                placement.oom_file = Some(dir.join("memory.oom_control"));
            }
            Enforcer::None(_) => {
                placement.rlimit_data = Some(bytes);
                placement.rss_limit = Some(bytes);
            }
        }
    }
    if let Some(millis) = limits.cpu_millis {
        let quota = (millis * CPU_PERIOD_US / 1000).max(1000);
        match &mechanism.cpu {
            Enforcer::V2(base) => {
                let dir = make(base, placement)?;
                write(&dir, "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
            }
            Enforcer::V1(base) => {
                let dir = make(base, placement)?;
                write(&dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                write(&dir, "cpu.cfs_quota_us", &quota.to_string())?;
            }
            Enforcer::None(_) => {}
        }
    }
    Ok(())
}

impl Placement {
    /// Run in the forked child before `exec`: join the cgroups, set the rlimits. Only
    /// async-signal-safe calls (open, write, close, setrlimit), no allocation.
    #[allow(unsafe_code)]
    pub(crate) fn enter(&self) -> io::Result<()> {
        for procs in &self.procs {
            // SAFETY: `procs` is a valid NUL-terminated path; the fd is closed below.
            let fd = unsafe { libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: writes one byte from a static buffer to the fd opened above.
            let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
            let err = io::Error::last_os_error();
            // SAFETY: `fd` is open and ours.
            unsafe { libc::close(fd) };
            if written != 1 {
                return Err(err);
            }
        }
        if let Some(bytes) = self.rlimit_data {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            // SAFETY: setrlimit reads the struct above.
            if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Whether there is anything to do in the child.
    pub(crate) fn is_empty(&self) -> bool {
        self.procs.is_empty() && self.rlimit_data.is_none()
    }

    /// Kernel OOM kills in its memory cgroup so far.
    fn oom_kills(&self) -> u64 {
        let Some(file) = &self.oom_file else {
            return 0;
        };
        std::fs::read_to_string(file)
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    /// Undo [`prepare`] for a process that was never started.
    pub(crate) fn discard(mut self) {
        self.remove_dirs();
    }

    /// Kill what is left in the cgroups, and remove them (best effort: a cgroup still
    /// holding a dying process is removed by a retry a little later).
    fn remove_dirs(&mut self) {
        for dir in std::mem::take(&mut self.dirs) {
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            if std::fs::remove_dir(&dir).is_err() {
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                            return;
                        }
                    }
                });
            }
        }
    }
}

/// Keep `placement` for the process group `pgid` until it is reaped.
pub(crate) fn register(pgid: u32, placement: Placement) {
    if placement.is_empty() && placement.rss_limit.is_none() {
        return;
    }
    lock().insert(pgid, placement);
}

/// The group `pgid` is reaped: forget its placement, remove its cgroups, and say whether
/// it ended for memory (`OOM: …`).
pub(crate) fn reaped(pgid: u32) -> Option<String> {
    let mut placement = lock().remove(&pgid)?;
    let oom = placement.oom_kills();
    placement.remove_dirs();
    if let Some(why) = placement.killed.take() {
        return Some(why);
    }
    (oom > 0).then(|| {
        let mut why = "OOM: killed by the kernel at its memory limit".to_owned();
        if oom > 1 {
            let _ = write!(why, " ({oom} processes)");
        }
        why
    })
}

/// A resource sample of group `pgid`: without a memory cgroup, kill the group if its
/// resident memory is over the limit. True if it was killed.
pub(crate) fn check_rss(pgid: u32, rss_bytes: u64) -> bool {
    let mut registry = lock();
    let Some(placement) = registry.get_mut(&pgid) else {
        return false;
    };
    let Some(limit) = placement.rss_limit else {
        return false;
    };
    if rss_bytes <= limit || placement.killed.is_some() {
        return false;
    }
    placement.killed = Some(format!(
        "OOM: resident memory {} over the {} limit, killed by shoal",
        bytes_human(rss_bytes),
        bytes_human(limit)
    ));
    drop(registry);
    crate::process::signal_group(pgid, Signal::SIGKILL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_the_stack_file() {
        assert_eq!(bytes_human(256 * 1024 * 1024), "256MiB");
        assert_eq!(bytes_human(1536 * 1024 * 1024), "1.5GiB");
        assert_eq!(bytes_human(100), "100B");
    }

    #[test]
    fn no_cgroup_filesystem_is_said_so() {
        let dir = tempfile::tempdir().unwrap();
        let m = detect(dir.path(), &dir.path().join("nothing"));
        assert!(
            matches!(&m.memory, Enforcer::None(why) if why.contains("no cgroup")),
            "{m:?}"
        );
        let limits = ResourceLimits {
            memory_bytes: Some(64 << 20),
            cpu_millis: Some(500),
        };
        assert!(m.degraded(&limits));
        let text = m.describe(&limits);
        assert!(text.contains("memory 64MiB (RLIMIT_DATA"), "{text}");
        assert!(text.contains("cpu 0.5 (NOT enforced"), "{text}");
    }

    #[test]
    fn a_v1_hierarchy_is_found_from_the_membership_lines() {
        let root = tempfile::tempdir().unwrap();
        let memory = root.path().join("memory/app/x");
        std::fs::create_dir_all(&memory).unwrap();
        let cgroup = root.path().join("self-cgroup");
        std::fs::write(&cgroup, "4:memory:/app/x\n2:cpu,cpuacct:/\n0::/\n").unwrap();
        let m = detect(root.path(), &cgroup);
        assert_eq!(m.memory, Enforcer::V1(memory));
        // The cpu hierarchy directory does not exist in this fake tree.
        assert!(matches!(m.cpu, Enforcer::None(_)), "{m:?}");
    }

    fn no_cgroups() -> Mechanism {
        Mechanism {
            memory: Enforcer::None("test".into()),
            cpu: Enforcer::None("test".into()),
        }
    }

    /// Without cgroups, RLIMIT_DATA stops a process's heap at the limit: the allocation
    /// fails (Python's MemoryError), the process is not killed.
    #[test]
    #[allow(unsafe_code)]
    fn without_cgroups_the_rlimit_stops_allocations_at_the_limit() {
        use std::os::unix::process::CommandExt;
        let limits = ResourceLimits {
            memory_bytes: Some(96 << 20),
            cpu_millis: None,
        };
        let placement = prepare(&no_cgroups(), "t", 0, &limits).unwrap();
        assert!(!placement.is_empty());
        let script = "try:\n  b = bytearray(256 << 20)\n  print('allocated')\nexcept MemoryError:\n  print('MemoryError')\nsmall = bytearray(16 << 20)\nprint('small ok')";
        let mut cmd = std::process::Command::new("python3");
        cmd.args(["-c", script]);
        let child_side = placement.clone();
        // SAFETY: `enter` only makes async-signal-safe calls.
        unsafe {
            cmd.pre_exec(move || child_side.enter());
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text, "MemoryError\nsmall ok\n", "{out:?}");
        placement.discard();
    }

    /// Without a memory cgroup, a group whose resident memory is over the limit is
    /// killed by the sampler's check and its exit reported as OOM.
    #[test]
    fn without_cgroups_the_sampler_kills_a_group_over_the_limit() {
        use std::os::unix::process::CommandExt;
        let limits = ResourceLimits {
            memory_bytes: Some(64 << 20),
            cpu_millis: None,
        };
        let placement = prepare(&no_cgroups(), "t", 0, &limits).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id();
        register(pgid, placement);
        assert!(!check_rss(pgid, 10 << 20), "under the limit: kept");
        assert!(check_rss(pgid, 80 << 20), "over the limit: killed");
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(
            reaped(pgid).as_deref(),
            Some("OOM: resident memory 80MiB over the 64MiB limit, killed by shoal")
        );
        assert_eq!(reaped(pgid), None, "forgotten once reaped");
    }

    #[test]
    fn without_cgroups_cpu_is_not_enforced_and_said_so() {
        let limits = ResourceLimits {
            memory_bytes: None,
            cpu_millis: Some(250),
        };
        let placement = prepare(&no_cgroups(), "t", 0, &limits).unwrap();
        assert!(placement.is_empty(), "{placement:?}");
        assert!(
            no_cgroups()
                .describe(&limits)
                .contains("cpu 0.25 (NOT enforced")
        );
    }

    #[test]
    fn a_delegated_v2_cgroup_is_preferred() {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("app.slice/shoal");
        std::fs::create_dir_all(&own).unwrap();
        for dir in [root.path(), own.as_path()] {
            std::fs::write(
                dir.join("cgroup.controllers"),
                "cpuset cpu io memory pids\n",
            )
            .unwrap();
        }
        std::fs::write(root.path().join("cgroup.subtree_control"), "cpu memory\n").unwrap();
        // memory already delegated to children; cpu gets enabled by shoal.
        std::fs::write(own.join("cgroup.subtree_control"), "memory\n").unwrap();
        let cgroup = root.path().join("self-cgroup");
        std::fs::write(&cgroup, "0::/app.slice/shoal\n").unwrap();
        let m = detect(root.path(), &cgroup);
        assert_eq!(m.memory, Enforcer::V2(own.clone()));
        assert_eq!(m.cpu, Enforcer::V2(own.clone()));
        let enabled = std::fs::read_to_string(own.join("cgroup.subtree_control")).unwrap();
        assert_eq!(enabled, "+cpu", "what shoal wrote to enable cpu");
        // Not available at all: said so.
        std::fs::write(own.join("cgroup.controllers"), "pids\n").unwrap();
        let m = detect(root.path(), &cgroup);
        assert!(
            matches!(&m.memory, Enforcer::None(why) if why.contains("memory controller is not available")),
            "{m:?}"
        );
    }

    #[test]
    fn oom_kills_are_read_from_either_file() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        std::fs::write(&events, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        let placement = Placement {
            oom_file: Some(events),
            ..Placement::default()
        };
        assert_eq!(placement.oom_kills(), 1);
        let control = dir.path().join("memory.oom_control");
        std::fs::write(&control, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        let placement = Placement {
            oom_file: Some(control),
            ..Placement::default()
        };
        assert_eq!(placement.oom_kills(), 2);
    }
}
