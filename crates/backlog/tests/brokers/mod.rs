//! Real brokers on loopback for the tests: each on a port found free, started by the test,
//! killed (its whole process group, by the id of the process we started) when dropped.
//!
//! A missing broker binary skips the test with a printed message, unless
//! `SHOAL_REQUIRE_BROKERS` is set (CI), where it fails the test.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::Instant;

/// A port that was free a moment ago (bind 127.0.0.1:0, read the port, close).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// The path of `name` (on `PATH`, then in `extra_dirs`), or `None` with a printed
/// message when it is missing. With `SHOAL_REQUIRE_BROKERS` set, a missing binary panics.
pub fn require(
    name: &str,
    env_override: &str,
    extra_dirs: &[&str],
    install: &str,
) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_override) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        if std::env::var_os("SHOAL_REQUIRE_BROKERS").is_some() {
            panic!(
                "{name} is not installed and SHOAL_REQUIRE_BROKERS is set: install it ({install}) \
                 or set {env_override} to its path"
            );
        }
        eprintln!(
            "SKIPPED: {name} is not installed ({install}; or set {env_override}); \
             set SHOAL_REQUIRE_BROKERS=1 to make this a failure"
        );
    }
    found
}

/// A child process in its own process group, killed with the group when dropped.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command` in a new process group, output to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Process {
        use std::os::unix::process::CommandExt as _;
        let out = std::fs::File::create(log).expect("create log");
        let err = out.try_clone().expect("clone log");
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Process {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        }
    }

    /// The log's last lines, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until `port` accepts connections, polling; panics with the log at the deadline
    /// or if the process exits. Returns how long it took.
    pub async fn wait_for_port(&mut self, port: u16, within: Duration) -> Duration {
        let start = Instant::now();
        let deadline = start + within;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return start.elapsed();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before listening on {port}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {port} within {within:?}:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets but answers nothing.
    pub fn freeze(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal our child");
    }

    /// Kills the process group now and reaps the child.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        // The group has our child's id (process_group(0)): only what it started is in it.
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A temporary directory for one broker's files.
pub fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}
