//! The harness: a stack file in a fresh folder, the real `shoal` binary started on it, a
//! tiny blocking HTTP client, process-tree inspection from `/proc`, and polling with a
//! deadline. Every `Up` kills its shoal (and whatever shoal left behind) when dropped, so
//! a failing test cleans up too.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;

/// The binary under test.
pub(crate) const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// Time since `since` (the workspace bans `std::time::Instant`; wall time is fine here).
pub(crate) fn elapsed(since: SystemTime) -> Duration {
    SystemTime::now()
        .duration_since(since)
        .unwrap_or(Duration::ZERO)
}

/// Poll `probe` every 20 ms until it returns `Some`, or panic after `timeout` naming `what`.
pub(crate) fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    poll(what, timeout, Duration::from_millis(20), &mut probe)
}

/// [`wait_for`] with a chosen polling period.
pub(crate) fn poll<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    probe: &mut dyn FnMut() -> Option<T>,
) -> T {
    let start = SystemTime::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            elapsed(start) < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(every);
    }
}

/// `text` with `from` replaced by `to`, which must occur `times` times in `file` (named in
/// the failure): a test's edit of an example's stack file that no longer applies fails loudly.
pub(crate) fn replace(text: &str, from: &str, to: &str, times: usize, file: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        times,
        "{file}: expected `{from}` {times} times"
    );
    text.replace(from, to)
}

/// A port for a `shoal up` to bind: the shared helper (why not `bind(:0)`: see there).
pub(crate) use shoal_test_support::free_port;

/// A fresh folder holding `shoal.yaml`, with free gateway and admin ports.
pub(crate) struct Stack {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) gateway: SocketAddr,
    pub(crate) admin: SocketAddr,
}

impl Stack {
    /// Write a stack with these `services:` (YAML, indented by 2) routed as `routes`
    /// (`(prefix, service)`), plus `extra` top-level YAML. `@SHOAL@` in the text is replaced
    /// by the path of the binary under test.
    pub(crate) fn new(services: &str, routes: &[(&str, &str)], extra: &str) -> Stack {
        let gateway: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Stack::with_addrs(services, routes, extra, gateway, admin)
    }

    /// Like [`Stack::new`], with the gateway and admin addresses given (e.g. one the test
    /// holds itself, to see `shoal up` fail on it).
    pub(crate) fn with_addrs(
        services: &str,
        routes: &[(&str, &str)],
        extra: &str,
        gateway: SocketAddr,
        admin: SocketAddr,
    ) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let mut yaml = format!(
            "gateway:\n  listen: {gateway}\n  replica_header: true\nadmin:\n  listen: {admin}\n{extra}\nservices:\n{services}\nroutes:\n"
        );
        for (prefix, service) in routes {
            yaml.push_str(&format!(
                "  - match: PathPrefix(`{prefix}`)\n    service: {service}\n"
            ));
        }
        let yaml = yaml.replace("@SHOAL@", SHOAL);
        std::fs::write(dir.path().join("shoal.yaml"), yaml).unwrap();
        Stack {
            dir,
            gateway,
            admin,
        }
    }

    /// A stack file written as is (`yaml`, already naming `gateway` and `admin`), as an
    /// example's own file is run.
    pub(crate) fn from_yaml(yaml: &str, gateway: &str, admin: &str) -> Stack {
        let stack = Stack {
            dir: tempfile::tempdir().unwrap(),
            gateway: gateway.parse().unwrap(),
            admin: admin.parse().unwrap(),
        };
        std::fs::write(stack.path().join("shoal.yaml"), yaml).unwrap();
        stack
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `shoal up` in this folder (its stdout and stderr go to files there).
    pub(crate) fn up(&self) -> Up {
        Up::start(self.path(), &["up", "--quiet"])
    }

    /// Run a shoal subcommand to completion in this folder.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        run_in(self.path(), args)
    }

    /// GET from the admin API; None if it does not answer (yet).
    pub(crate) fn admin_get(&self, path: &str) -> Option<Value> {
        let r = http(self.admin, "GET", path, None).ok()?;
        serde_json::from_slice(&r.body).ok()
    }

    /// POST JSON to the admin API and return the status and JSON answer.
    pub(crate) fn admin_post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = http(self.admin, "POST", path, Some(body)).unwrap();
        (
            r.status,
            serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        )
    }

    /// One service as the admin API reports it.
    pub(crate) fn service(&self, name: &str) -> Option<Value> {
        self.admin_get(&format!("/api/v1/services/{name}"))
    }

    /// Events so far.
    pub(crate) fn events(&self) -> Vec<Value> {
        self.admin_get("/api/v1/events")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// GET through the gateway.
    pub(crate) fn get(&self, path: &str) -> std::io::Result<Response> {
        http(self.gateway, "GET", path, None)
    }

    /// Wait until `service` has `n` ready replicas and no others (none starting or draining).
    pub(crate) fn wait_ready(&self, service: &str, n: u64, timeout: Duration) -> Value {
        wait_for(&format!("{service}: exactly {n} ready"), timeout, || {
            let s = self.service(service)?;
            let replicas = s["replicas"].as_array()?;
            (s["ready"] == n
                && s["desired"] == n
                && replicas.len() as u64 == n
                && replicas.iter().all(|r| r["state"] == "ready"))
            .then_some(s)
        })
    }

    /// The distinct `x-shoal-replica` values seen over `requests` gateway requests,
    /// all of which must succeed.
    pub(crate) fn replicas_seen(&self, path: &str, requests: usize) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        for _ in 0..requests {
            let r = self.get(path).unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            seen.insert(r.header("x-shoal-replica").unwrap_or_default().to_owned());
        }
        seen
    }
}

/// Run a shoal subcommand to completion in `dir`.
pub(crate) fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(SHOAL)
        .args(args)
        .current_dir(dir)
        .env_remove("SHOAL_ADMIN")
        .env_remove("SHOAL_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A running `shoal up`, in its own process group. Dropping it kills shoal and every
/// process it left behind.
pub(crate) struct Up {
    child: Option<Child>,
    pub(crate) pid: u32,
    dir: PathBuf,
    pub(crate) started: SystemTime,
}

impl Up {
    /// `shoal ARGS` in `dir`, logging at info level (`RUST_LOG=info`).
    pub(crate) fn start(dir: &Path, args: &[&str]) -> Up {
        Up::start_logging(dir, args, Some("info"))
    }

    /// `shoal ARGS` in `dir` with this `RUST_LOG`, or none (then shoal picks its own level).
    pub(crate) fn start_logging(dir: &Path, args: &[&str], rust_log: Option<&str>) -> Up {
        let out = std::fs::File::create(dir.join("up.stdout")).unwrap();
        let err = std::fs::File::create(dir.join("up.stderr")).unwrap();
        let started = SystemTime::now();
        let mut command = Command::new(SHOAL);
        match rust_log {
            Some(level) => command.env("RUST_LOG", level),
            None => command.env_remove("RUST_LOG"),
        };
        let child = command
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap();
        Up {
            pid: child.id(),
            child: Some(child),
            dir: dir.to_owned(),
            started,
        }
    }

    /// Wait until the admin API answers (shoal prints its addresses once it listens).
    pub(crate) fn wait_listening(&mut self, stack: &Stack) {
        let what = "shoal to listen";
        wait_for(what, Duration::from_secs(10), || {
            if let Some(status) = self.try_wait() {
                panic!("shoal exited early ({status}):\n{}", self.stderr());
            }
            stack.admin_get("/api/v1/health")
        });
    }

    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().unwrap()
    }

    /// Wait for shoal to exit, at most `timeout`.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let what = format!("shoal (pid {}) to exit", self.pid);
        wait_for(&what, timeout, || self.try_wait())
    }

    /// Send `signal` to shoal only.
    pub(crate) fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid as i32), signal).unwrap();
    }

    /// Send `signal` to shoal's process group, as a terminal does on Ctrl-C.
    pub(crate) fn signal_group(&self, signal: Signal) {
        killpg(Pid::from_raw(self.pid as i32), signal).unwrap();
    }

    pub(crate) fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("up.stdout")).unwrap_or_default()
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("up.stderr")).unwrap_or_default()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Only while shoal is not reaped: until then its pid (and group id) cannot be reused.
        if matches!(child.try_wait(), Ok(None)) {
            // Everything under shoal, then shoal's group: processes this test started.
            let left: Vec<Proc> = tree(self.pid);
            let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
            for p in left {
                p.kill();
            }
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- shoal stdout ---\n{}\n--- shoal stderr ---\n{}",
                tail(&self.stdout(), 60),
                tail(&self.stderr(), 60)
            );
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A process, identified by pid and start time (so a recycled pid is not mistaken for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Proc {
    pub(crate) pid: u32,
    start: u64,
}

struct Stat {
    ppid: u32,
    pgrp: u32,
    start: u64,
    zombie: bool,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // f[0] is field 3 (state); field n is f[n - 3].
    Some(Stat {
        zombie: matches!(f.first(), Some(&"Z" | &"X")),
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

fn all_procs() -> HashMap<u32, Stat> {
    let mut all = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok())
            && let Some(stat) = read_stat(pid)
        {
            all.insert(pid, stat);
        }
    }
    all
}

impl Proc {
    pub(crate) fn of(pid: u32) -> Option<Proc> {
        read_stat(pid).map(|s| Proc {
            pid,
            start: s.start,
        })
    }

    /// Still running (a zombie or a new process with the same pid does not count).
    pub(crate) fn alive(&self) -> bool {
        read_stat(self.pid).is_some_and(|s| s.start == self.start && !s.zombie)
    }

    /// SIGKILL it if it is still this process.
    pub(crate) fn kill(&self) {
        if self.alive() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        }
    }
}

/// The live descendants of `roots` and every member of their process groups, transitively
/// (a double-forked daemon is reparented away from its parent but keeps its group).
pub(crate) fn descendants(roots: &[u32]) -> Vec<Proc> {
    let all = all_procs();
    let mut found: BTreeSet<u32> = roots.iter().copied().collect();
    loop {
        let before = found.len();
        for (pid, s) in &all {
            if !s.zombie && (found.contains(&s.ppid) || found.contains(&s.pgrp)) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            break;
        }
    }
    found
        .into_iter()
        .filter_map(|pid| {
            let s = all.get(&pid)?;
            (!s.zombie).then_some(Proc {
                pid,
                start: s.start,
            })
        })
        .collect()
}

/// `pid` and everything under it (see [`descendants`]).
pub(crate) fn tree(pid: u32) -> Vec<Proc> {
    descendants(&[pid])
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`), read to the end.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&Value>,
) -> std::io::Result<Response> {
    let body = json.map(Value::to_string).unwrap_or_default();
    let headers: &[(&str, &str)] = if json.is_some() {
        &[("content-type", "application/json")]
    } else {
        &[]
    };
    http_with(addr, method, path, headers, body.as_bytes())
}

/// One request with these headers and body on a fresh connection, read to the end.
pub(crate) fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::other(format!("bad response: {:?}", String::from_utf8_lossy(&raw)))
    })
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        body = dechunk(&body)?;
    }
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// One request a [`Load`] thread sends.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub(crate) method: &'static str,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// The body the answer must carry, if checked.
    pub(crate) expect_body: Option<Vec<u8>>,
}

impl Req {
    pub(crate) fn get(path: &str) -> Req {
        Req {
            method: "GET",
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            expect_body: None,
        }
    }
}

/// Client threads sending requests through the gateway in a loop until stopped, bounded
/// by time (60 s) and count (50,000 per thread). A request fails when it gets an error, a
/// status other than 200, a wrong body, or no answer within 2 s (as in
/// `bench/failover.sh`).
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    results: Arc<Mutex<Tally>>,
    threads: Vec<JoinHandle<()>>,
}

/// What a [`Load`] saw.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) ok: u64,
    pub(crate) failures: Vec<String>,
    pub(crate) by_replica: BTreeMap<String, u64>,
    pub(crate) slowest: Duration,
    /// (when it was sent, how long it took) of each successful request.
    pub(crate) latencies: Vec<(SystemTime, Duration)>,
}

impl Tally {
    /// The p99 latency of the requests sent at or after `since`.
    pub(crate) fn p99_since(&self, since: SystemTime) -> Option<Duration> {
        let mut l: Vec<Duration> = self
            .latencies
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(_, d)| *d)
            .collect();
        l.sort();
        (!l.is_empty()).then(|| l[(l.len() * 99 / 100).min(l.len() - 1)])
    }
}

impl Load {
    /// `threads` threads; thread `t` sends `request(t, i)` as its `i`-th request.
    pub(crate) fn start(stack: &Stack, threads: usize, request: fn(usize, u64) -> Req) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let results = Arc::new(Mutex::new(Tally::default()));
        let addr = stack.gateway;
        let threads = (0..threads)
            .map(|t| {
                let (stop, sent, results) = (stop.clone(), sent.clone(), results.clone());
                std::thread::spawn(move || {
                    let started = SystemTime::now();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed)
                        && elapsed(started) < Duration::from_secs(60)
                        && i < 50_000
                    {
                        i += 1;
                        sent.fetch_add(1, Ordering::Relaxed);
                        let req = request(t, i);
                        let headers: Vec<(&str, &str)> = req
                            .headers
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str()))
                            .collect();
                        let at = SystemTime::now();
                        let result = http_with(addr, req.method, &req.path, &headers, &req.body);
                        let took = elapsed(at);
                        let mut tally = results.lock().unwrap();
                        tally.slowest = tally.slowest.max(took);
                        let what = format!("request {t}/{i} {} {}", req.method, req.path);
                        match result {
                            Ok(_) if took > Duration::from_secs(2) => {
                                tally.failures.push(format!("{what}: took {took:?}"));
                            }
                            Ok(r)
                                if r.status == 200
                                    && req.expect_body.as_ref().is_none_or(|b| *b == r.body) =>
                            {
                                tally.ok += 1;
                                tally.latencies.push((at, took));
                                let who = r.header("x-shoal-replica").unwrap_or("?").to_owned();
                                *tally.by_replica.entry(who).or_default() += 1;
                            }
                            Ok(r) => tally.failures.push(format!(
                                "{what}: {} {}",
                                r.status,
                                r.text().chars().take(120).collect::<String>()
                            )),
                            Err(e) => tally.failures.push(format!("{what}: {e}")),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            results,
            threads,
        }
    }

    /// Wait until `n` more requests have been sent.
    pub(crate) fn wait_requests(&self, n: u64) {
        let target = self.sent.load(Ordering::Relaxed) + n;
        wait_for(
            &format!("{n} more requests"),
            Duration::from_secs(30),
            || (self.sent.load(Ordering::Relaxed) >= target).then_some(()),
        );
    }

    /// Successful answers from replica `who` so far.
    pub(crate) fn ok_from(&self, who: &str) -> u64 {
        self.results
            .lock()
            .unwrap()
            .by_replica
            .get(who)
            .copied()
            .unwrap_or(0)
    }

    /// Stop every thread and return what they saw.
    pub(crate) fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.results).unwrap().into_inner().unwrap()
    }
}

/// The requests the gateway has answered for `service` so far (from /metrics).
pub(crate) fn answered(stack: &Stack, service: &str) -> u64 {
    let Ok(r) = http(stack.admin, "GET", "/metrics", None) else {
        return 0;
    };
    let label = format!("service=\"{service}\"");
    String::from_utf8_lossy(&r.body)
        .lines()
        .filter(|l| l.starts_with("shoal_service_requests_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Whether a test whose programs are checked can run: yes when none is `missing`;
/// otherwise it is skipped with a message, or fails with `SHOAL_REQUIRE_BROKERS` set (as
/// `scripts/test.sh` does).
pub(crate) fn nothing_missing(missing: &[&str]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join(", ");
    assert!(
        std::env::var_os("SHOAL_REQUIRE_BROKERS").is_none(),
        "missing {missing} and SHOAL_REQUIRE_BROKERS is set"
    );
    eprintln!("SKIPPED: missing {missing}; set SHOAL_REQUIRE_BROKERS=1 to make this a failure");
    false
}

/// `tmux` on its own server `socket` (no user configuration), outside any tmux session
/// the tests run in.
pub(crate) fn tmux(socket: &str, args: &[&str]) -> Output {
    Command::new("tmux")
        .args(["-L", socket, "-f", "/dev/null"])
        .args(args)
        .env_remove("TMUX")
        .output()
        .expect("tmux (scripts/test.sh installs it)")
}

/// A detached tmux session `top`, 160×45, running `command` on server `socket`.
pub(crate) fn tmux_top_session(socket: &str, command: &str) -> Output {
    tmux(
        socket,
        &[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "160",
            "-y",
            "45",
            command,
        ],
    )
}

/// The pids of a service's replicas, from its admin API JSON.
pub(crate) fn replica_pids(service: &Value) -> Vec<u64> {
    service["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["pid"].as_u64())
        .collect()
}
