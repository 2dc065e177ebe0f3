//! README.md as a test: the "Two commands" and every line of "A quick tour", run against a
//! real `shoal up` on the demo stack, each checked for what its `# comment` promises.
//!
//! The commands are read from README.md (compiled in), not copied here: a README line that
//! [`TOUR`] has no check for fails the test, and so does a check whose line left the README.
//! Each line runs as written, through `sh -c`, with the shoal under test first on `PATH`,
//! the demo's `localhost:8000`/`127.0.0.1:8080` rewritten to the test's free ports, and
//! `SHOAL_ADMIN` set: the admin commands run from a folder of their own, as from a second
//! shell somewhere else. What cannot run as written gets its closest non-interactive twin:
//! `shoal top` in a private tmux, `open URL` as a GET of that URL, `$EDITOR` as a script
//! that makes an edit, `-f` followers read until they show what they promise, then stopped.
//!
//! The stack is the demo as `shoal init` writes it with its two addresses moved to free
//! ports, run by `shoal up` from that file (the built-in demo listens on fixed ports). So
//! the tour's `shoal init` runs in a fresh folder (it must write that same demo), and the
//! edit goes to the running stack's file, which `shoal check` and `shoal reload` then take.
//! The built-in demo adopting a `./shoal.yaml` on reload is tested in
//! crates/app/tests/reload.rs.
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::*;

const README: &str = include_str!("../../../../README.md");

const T: Duration = Duration::from_secs(20);

/// The test's liveness bound for `users`, in seconds (the demo has the default, 30 s).
const LIVENESS: u64 = 5;

/// A check of one README command: it gets the command as the README writes it.
type Check = fn(&mut Tour, &str);

/// Every command of "A quick tour", in order, with its check. Keep it in step with README.md.
const TOUR: &[(&str, Check)] = &[
    (
        "curl -i localhost:8000/api/users/whoami",
        curl_users_takes_turns,
    ),
    ("curl localhost:8000/api/music/whoami", curl_music),
    ("shoal status", status_table),
    ("shoal top", top_live_and_scales),
    ("open http://127.0.0.1:8080/dashboard/", dashboard),
    ("shoal scale users 5", scale_users),
    (
        "shoal load 'localhost:8000/api/music/work?cpu_ms=20' -c 20 -d 30s",
        load_autoscales_music,
    ),
    ("kill -9 <a pid from shoal status>", kill_9),
    ("kill -STOP <a pid>", kill_stop),
    ("shoal events", events),
    ("shoal logs users -f", logs_follow),
    ("shoal init && $EDITOR shoal.yaml", init_and_edit),
    ("shoal check", check),
    ("shoal reload", reload),
    (
        "shoal rollout restart users && shoal rollout status users",
        rollout_restart,
    ),
    (
        "shoal load --rate 200 http://localhost:8000/api/users/whoami",
        load_rate,
    ),
];

/// The commands of "Two commands".
const TWO_COMMANDS: &[&str] = &["cargo run --release -- up", "bash scripts/test.sh"];

/// One line of a README `sh` block: the command, and what its comment promises.
#[derive(Debug)]
struct Line {
    command: String,
    promise: String,
}

/// The lines of the `sh` blocks of the section under the heading `heading` (up to the next
/// `## `), one command a line, with its `# comment` split off.
fn section_commands(readme: &str, heading: &str) -> Vec<Line> {
    let mut lines = readme.lines().skip_while(|l| l.trim() != heading);
    assert!(lines.next().is_some(), "README.md has no `{heading}`");
    let mut found = Vec::new();
    let mut in_block = false;
    for l in lines.take_while(|l| !l.starts_with("## ")) {
        if l.starts_with("```") {
            in_block = !in_block && l == "```sh";
            continue;
        }
        if !in_block || l.trim().is_empty() {
            continue;
        }
        let (command, promise) = l.split_once(" # ").unwrap_or((l, ""));
        found.push(Line {
            command: command.trim().to_owned(),
            promise: promise.trim().to_owned(),
        });
    }
    assert!(!found.is_empty(), "no `sh` block under `{heading}`");
    found
}

/// What is wrong between `readme`'s tour and [`TOUR`]: lines without a check, checks
/// without a line, a different order.
fn coverage_problems(readme: &str) -> Vec<String> {
    let tour = section_commands(readme, "## A quick tour");
    let readme: Vec<&str> = tour.iter().map(|l| l.command.as_str()).collect();
    let checked: Vec<&str> = TOUR.iter().map(|(c, _)| *c).collect();
    let mut problems = Vec::new();
    for c in &readme {
        if !checked.contains(c) {
            problems.push(format!(
                "README.md's tour has `{c}`, which tour.rs does not check: add it to TOUR"
            ));
        }
    }
    for c in &checked {
        if !readme.contains(c) {
            problems.push(format!(
                "tour.rs checks `{c}`, which README.md's tour no longer has: remove it from TOUR"
            ));
        }
    }
    if problems.is_empty() && readme != checked {
        problems.push(format!("the same commands in another order: {readme:?}"));
    }
    problems
}

#[test]
fn the_readme_blocks_are_what_the_tour_test_covers() {
    let problems = coverage_problems(README);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // A line added to the README, or one gone from it, is caught.
    let added = README.replacen(
        "shoal status      ",
        "shoal status --wide   # more\nshoal status      ",
        1,
    );
    assert_eq!(coverage_problems(&added).len(), 1, "{added}");
    let gone = README.replacen("\nshoal events  ", "\nshoal evnts   ", 1);
    assert_eq!(
        coverage_problems(&gone).len(),
        2,
        "the line changed: {gone}"
    );
    let tour = section_commands(README, "## A quick tour");
    assert!(
        tour.iter()
            .filter(|l| l.command != "curl localhost:8000/api/music/whoami")
            .all(|l| !l.promise.is_empty()),
        "every other tour line says what it does: {tour:#?}"
    );
    let two: Vec<String> = section_commands(README, "## Two commands")
        .into_iter()
        .map(|l| l.command)
        .collect();
    assert_eq!(two, TWO_COMMANDS, "the commands under `## Two commands`");
}

/// "Two commands": `cargo run` has one binary to run, and it is shoal, whose `up` falls
/// back to the demo the README describes; `scripts/test.sh` runs what the README says.
#[test]
fn the_two_commands_stay_true() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo metadata: {}", stderr(&out));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bins: Vec<&str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        bins,
        ["shoal"],
        "`cargo run --release -- up` runs the only binary"
    );
    let help = stdout(&run_in(&root, &["up", "--help"]));
    assert!(
        help.contains("[default: ./shoal.yaml if present, else the built-in demo]"),
        "{help}"
    );

    // The demo: two services of the sample app, 3 + 2 replicas, music autoscaled 1..=6,
    // path-prefix routes.
    let dir = tempfile::tempdir().unwrap();
    assert!(run_in(dir.path(), &["init"]).status.success());
    let demo = std::fs::read_to_string(dir.path().join("shoal.yaml")).unwrap();
    assert_eq!(demo.matches("command: [shoal, sample-app]").count(), 2);
    assert!(demo.contains("replicas: 3") && demo.contains("replicas: 2"));
    assert!(demo.contains("autoscale: { min: 1, max: 6,"), "{demo}");
    assert_eq!(demo.matches("- match: PathPrefix(").count(), 2);
    assert!(demo.contains("listen: 127.0.0.1:8000") && demo.contains("listen: 127.0.0.1:8080"));

    let script = std::fs::read_to_string(root.join("scripts/test.sh")).unwrap();
    assert!(script.starts_with("#!/usr/bin/env bash") || script.starts_with("#!/bin/bash"));
    for step in [
        "cargo fmt --all -- --check",
        "cargo clippy --workspace --all-targets -- -D warnings",
        "cargo test --workspace",
    ] {
        assert!(script.contains(step), "scripts/test.sh runs `{step}`");
    }
}

/// The tour, line by line, against one `shoal up`.
#[test]
fn the_readme_tour_works_line_by_line() {
    let mut tour = Tour::start();
    let lines = section_commands(README, "## A quick tour");
    for line in &lines {
        let (_, check) = TOUR
            .iter()
            .find(|(c, _)| *c == line.command)
            .unwrap_or_else(|| panic!("no check for `{}`", line.command));
        let at = SystemTime::now();
        eprintln!("tour: {}   # {}", line.command, line.promise);
        check(&mut tour, &line.command);
        eprintln!("tour:   ok in {:?}", elapsed(at));
    }
    eprintln!(
        "tour: all {} lines in {:?}",
        lines.len(),
        elapsed(tour.started)
    );
}

/// The running demo, and where the tour's commands run.
struct Tour {
    /// First, so that it is dropped (shoal killed, its output shown) before the folder goes.
    up: Up,
    stack: Stack,
    /// The "second shell": a folder with no stack file.
    elsewhere: tempfile::TempDir,
    /// `shoal.yaml` as `shoal init` wrote it, before the ports moved.
    demo: String,
    started: SystemTime,
}

impl Tour {
    fn start() -> Tour {
        let started = SystemTime::now();
        let dir = tempfile::tempdir().unwrap();
        let gateway = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let init = run_in(dir.path(), &["init"]);
        assert!(init.status.success(), "{}", stderr(&init));
        let file = dir.path().join("shoal.yaml");
        let demo = std::fs::read_to_string(&file).unwrap();
        let moved = replace(
            &demo,
            "listen: 127.0.0.1:8000",
            &format!("listen: {gateway}"),
            1,
            "the demo",
        );
        let moved = replace(
            &moved,
            "listen: 127.0.0.1:8080",
            &format!("listen: {admin}"),
            1,
            "the demo",
        );
        // The README's "restarted after 30 s" is the default liveness bound; the test's users
        // get 5 s, so that the restart comes within the test's time.
        let moved = replace(
            &moved,
            "replicas: 3\n    health: { path: /health, interval: 1s }",
            &format!(
                "replicas: 3\n    health: {{ path: /health, interval: 1s, liveness: {LIVENESS}s }}"
            ),
            1,
            "the demo",
        );
        std::fs::write(&file, moved).unwrap();
        let stack = Stack {
            dir,
            gateway,
            admin,
        };
        // `cargo run --release -- up`: `shoal up`, not quiet.
        let mut up = Up::start(stack.path(), &["up"]);
        up.wait_listening(&stack);
        stack.wait_ready("users", 3, T);
        stack.wait_ready("music", 2, T);
        // "it prints where everything is".
        let banner = up.stdout();
        for place in [
            format!("gateway     http://{gateway}/"),
            format!("admin API   http://{admin}/api/v1/services"),
            format!("dashboard   http://{admin}/dashboard/"),
            format!("metrics     http://{admin}/metrics"),
            "PathPrefix(`/api/users`) → users".to_owned(),
        ] {
            assert!(
                banner.contains(&place),
                "`{place}` in the banner:\n{banner}"
            );
        }
        Tour {
            up,
            stack,
            elsewhere: tempfile::tempdir().unwrap(),
            demo,
            started,
        }
    }

    /// `command` as it runs against this test's shoal: the demo's addresses moved.
    fn rewrite(&self, command: &str) -> String {
        let (g, a) = (self.stack.gateway.to_string(), self.stack.admin.to_string());
        command
            .replace("localhost:8000", &g)
            .replace("127.0.0.1:8000", &g)
            .replace("127.0.0.1:8080", &a)
            .replace("localhost:8080", &a)
    }

    /// `sh -c COMMAND` in `dir`, with this shoal first on `PATH` and `SHOAL_ADMIN` set.
    fn command(&self, command: &str, dir: &Path) -> Command {
        let bin = Path::new(SHOAL).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(self.rewrite(command))
            .current_dir(dir)
            .env("PATH", path)
            .env("SHOAL_ADMIN", self.stack.admin.to_string())
            .env_remove("SHOAL_TOKEN")
            .stdin(Stdio::null());
        c
    }

    /// Run `command` from the second shell's folder to completion, within `T`.
    fn sh(&self, command: &str) -> Output {
        self.sh_in(command, self.elsewhere.path())
    }

    /// Run `command` in `dir` to completion, within `T` (its process group is killed after).
    fn sh_in(&self, command: &str, dir: &Path) -> Output {
        let mut c = self.command(command, dir);
        use std::os::unix::process::CommandExt;
        let child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let group = Pid::from_raw(child.id() as i32);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(T) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
                panic!("`{command}` did not finish within {T:?}");
            }
        }
    }

    /// Start `command` (run with `exec`, so the child is the command itself) from the
    /// second shell's folder, its output collected as it comes.
    fn spawn(&self, command: &str) -> Follower {
        let mut child = self
            .command(&format!("exec {command}"), self.elsewhere.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let text = Arc::new(Mutex::new(String::new()));
        let readers = [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ]
        .map(|pipe| {
            let text = text.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut t = text.lock().unwrap();
                    t.push_str(&line);
                    t.push('\n');
                }
            })
        });
        Follower {
            child,
            text,
            readers: readers.into(),
        }
    }

    /// `shoal status`, as the rows of its table.
    fn status(&self) -> Vec<BTreeMap<String, String>> {
        let out = self.sh("shoal status");
        assert!(out.status.success(), "{}", stderr(&out));
        table_rows(&stdout(&out))
    }

    /// The row of replica `name` (e.g. `users/0`) in `shoal status`.
    fn replica_row(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.status().into_iter().find(|r| r["NAME"] == name)
    }

    /// The PID `shoal status` shows for `name`, checked to be a process of this shoal.
    fn pid_of(&self, name: &str) -> u32 {
        let row = self.replica_row(name).unwrap();
        let pid: u32 = row["PID"].parse().unwrap_or_else(|_| panic!("{row:?}"));
        assert!(
            tree(self.up.pid).iter().any(|p| p.pid == pid),
            "{name}'s pid {pid} is under this shoal"
        );
        pid
    }

    /// The pids of `service`'s replicas, from the admin API.
    fn pids(&self, service: &str) -> BTreeSet<u64> {
        self.stack.service(service).unwrap()["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["pid"].as_u64())
            .collect()
    }
}

/// A command left running, its stdout and stderr gathered.
struct Follower {
    child: Child,
    text: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Follower {
    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Wait until the output satisfies `ok`; it must not exit before.
    fn wait_for(&mut self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let text = self.text.clone();
        let child = &mut self.child;
        poll(what, timeout, Duration::from_millis(50), &mut || {
            let t = text.lock().unwrap().clone();
            if ok(&t) {
                return Some(t);
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("exited ({status}) before {what}:\n{t}");
            }
            None
        })
    }

    /// Ctrl-C, then its exit status and all it printed.
    fn interrupt(mut self) -> (std::process::ExitStatus, String) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        }
        let child = &mut self.child;
        let status = wait_for("the command to stop after Ctrl-C", T, || {
            child.try_wait().unwrap()
        });
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        (status, self.text())
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The rows of a table whose first line is its header of upper-case column names, each cell
/// cut at the columns' starts (the cells are padded to align).
fn table_rows(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<char> = lines.next().unwrap_or_default().chars().collect();
    let mut columns = Vec::new();
    for (i, c) in header.iter().enumerate() {
        if !c.is_whitespace() && (i == 0 || header[i - 1].is_whitespace()) {
            let end = header[i..]
                .iter()
                .position(|c| c.is_whitespace())
                .map_or(header.len(), |n| i + n);
            columns.push((i, header[i..end].iter().collect::<String>()));
        }
    }
    lines
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let chars: Vec<char> = l.chars().collect();
            let cell = |from: usize, to: usize| -> String {
                chars[from.min(chars.len())..to.min(chars.len())]
                    .iter()
                    .collect::<String>()
                    .trim()
                    .to_owned()
            };
            columns
                .iter()
                .enumerate()
                .map(|(n, (start, name))| {
                    let end = columns.get(n + 1).map_or(chars.len(), |c| c.0);
                    (name.clone(), cell(*start, end))
                })
                .collect()
        })
        .collect()
}

/// The `x-shoal-replica` header of a `curl -i` answer.
fn replica_header(curl_i: &str) -> Option<String> {
    curl_i.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-shoal-replica")
            .then(|| value.trim().to_owned())
    })
}

/// `# X-Shoal-Replica: users/0, then users/1, users/2 …`: three in a row, three replicas.
fn curl_users_takes_turns(t: &mut Tour, command: &str) {
    let seen: Vec<String> = (0..3)
        .map(|_| {
            let out = t.sh(command);
            let text = stdout(&out);
            assert!(out.status.success(), "{}", stderr(&out));
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            replica_header(&text).unwrap_or_else(|| panic!("no X-Shoal-Replica in {text}"))
        })
        .collect();
    let distinct: BTreeSet<&str> = seen.iter().map(String::as_str).collect();
    assert_eq!(
        distinct,
        BTreeSet::from(["users/0", "users/1", "users/2"]),
        "{seen:?}"
    );
}

fn curl_music(t: &mut Tour, command: &str) {
    let out = t.sh(command);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["name"], "music", "{answer}");
    assert_eq!(answer["path"], "/whoami", "the route strips /api/music");
}

/// `# like kubectl get pods: state, pid, port, restarts, CPU, memory`.
fn status_table(t: &mut Tour, command: &str) {
    // CPU is a rate: it shows once each replica was sampled twice (every second).
    let text = wait_for("every replica's CPU in `shoal status`", T, || {
        let out = t.sh(command);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        table_rows(&text)
            .iter()
            .filter(|r| r["NAME"].contains('/'))
            .all(|r| r["CPU"].ends_with('%'))
            .then_some(text)
    });
    let rows = table_rows(&text);
    for name in ["users/0", "users/1", "users/2", "music/0", "music/1"] {
        let r = rows
            .iter()
            .find(|r| r["NAME"] == name)
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        assert_eq!(r["STATE"], "ready", "{text}");
        assert!(r["PID"].parse::<u32>().is_ok(), "{text}");
        assert!(r["PORT"].parse::<u16>().is_ok(), "{text}");
        assert_eq!(r["RESTARTS"], "0", "{text}");
        assert!(r["CPU"].ends_with('%'), "{text}");
        assert!(r["MEMORY"].ends_with("MiB"), "{text}");
    }
}

/// `shoal top` in a private tmux (the test reads the screen and types), as in top.rs.
struct Tmux(String);

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        tmux(&self.0, args)
    }

    fn screen(&self) -> Option<String> {
        let out = self.run(&["capture-pane", "-p", "-t", "top"]);
        out.status.success().then(|| stdout(&out))
    }

    fn wait_screen(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        poll(what, T, Duration::from_millis(100), &mut || {
            self.screen().filter(|s| ok(s))
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(screen) = self.screen()
        {
            eprintln!("--- shoal top screen ---\n{screen}");
        }
        let socket = self.run(&["display-message", "-p", "#{socket_path}"]);
        let _ = self.run(&["kill-server"]);
        let socket = stdout(&socket);
        if !socket.trim().is_empty() {
            let _ = std::fs::remove_file(socket.trim());
        }
    }
}

/// `# live: requests/s, errors, p95 per service, replicas, events; +/- scale`.
fn top_live_and_scales(t: &mut Tour, command: &str) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let tmux = Tmux(format!("shoal-tour-{}-{nanos}", std::process::id()));
    let bin = Path::new(SHOAL).parent().unwrap().display().to_string();
    let exit = t.elsewhere.path().join("top.exit");
    let line = format!(
        "cd '{}' && SHOAL_ADMIN={} PATH='{bin}':\"$PATH\" {}; echo $? >'{}'",
        t.elsewhere.path().display(),
        t.stack.admin,
        t.rewrite(command),
        exit.display()
    );
    let out = tmux_top_session(&tmux.0, &line);
    assert!(out.status.success(), "tmux: {}", stderr(&out));
    let screen = tmux.wait_screen("both services, their rates and replicas", |s| {
        [
            "shoal top",
            "users",
            "music",
            "REQ/S",
            "P95",
            "replicas of",
            "ready",
        ]
        .iter()
        .all(|w| s.contains(w))
    });
    let selected = ["users", "music"]
        .into_iter()
        .find(|s| screen.contains(&format!("▶ {s}")))
        .unwrap_or_else(|| panic!("a selected service:\n{screen}"));
    let desired = |s: &Tour| s.stack.service(selected).unwrap()["desired"].as_u64();
    let before = desired(t).unwrap();
    for (key, want) in [("+", before + 1), ("-", before)] {
        let out = tmux.run(&["send-keys", "-t", "top", "-l", key]);
        assert!(out.status.success());
        wait_for(&format!("`{key}`: {selected} desired {want}"), T, || {
            (desired(t) == Some(want)).then_some(())
        });
    }
    let out = tmux.run(&["send-keys", "-t", "top", "-l", "q"]);
    assert!(out.status.success());
    let code = wait_for("shoal top to quit", T, || {
        std::fs::read_to_string(&exit)
            .ok()
            .filter(|s| !s.is_empty())
    });
    assert_eq!(code.trim(), "0");
    t.stack.wait_ready(selected, before, T);
}

/// `# live dashboard: charts, replicas, events, scale buttons (docs/dashboard.md)`.
fn dashboard(t: &mut Tour, command: &str) {
    let url = t.rewrite(command.trim_start_matches("open "));
    let rest = url
        .strip_prefix(&format!("http://{}", t.stack.admin))
        .unwrap_or_else(|| panic!("{url} is the admin address"));
    let page = http(t.stack.admin, "GET", rest, None).unwrap();
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text();
    assert_eq!(html.matches("<canvas").count(), 4, "four charts: {html}");
    assert!(html.contains("Events"), "{html}");
    let js = http(t.stack.admin, "GET", &format!("{rest}app.js"), None).unwrap();
    assert_eq!(js.status, 200);
    let js = js.text();
    assert!(
        js.contains("scale-plus") && js.contains("scale-minus"),
        "scale buttons"
    );
    let services = t.stack.admin_get("/api/v1/services").unwrap();
    assert_eq!(services.as_array().unwrap().len(), 2, "what the page shows");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard.md");
    assert!(root.exists(), "docs/dashboard.md");
}

/// `# more replicas; they join the balancer once /health passes`.
fn scale_users(t: &mut Tour, command: &str) {
    let out = t.sh(command);
    assert!(out.status.success(), "{}", stderr(&out));
    t.stack.wait_ready("users", 5, T);
    assert_eq!(t.stack.replicas_seen("/api/users/whoami", 10).len(), 5);
    // Each new replica was ready (its /health passed) before it served.
    let events = t.stack.events();
    for i in [3, 4] {
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "ready" && e["service"] == "users" && e["replica"] == i),
            "users/{i} ready: {events:?}"
        );
    }
}

/// `# then shoal status: music autoscales`. The load runs as written; once `shoal status`
/// shows music grown, it is stopped with Ctrl-C (its report still comes).
fn load_autoscales_music(t: &mut Tour, command: &str) {
    let load = t.spawn(command);
    let grown = wait_for("shoal status: music above its starting 2", T, || {
        let rows = t.status();
        let music = rows.iter().find(|r| r["NAME"] == "music")?;
        let (ready, _) = music["READY"].split_once('/')?;
        (ready.parse::<u32>().ok()? > 2).then(|| music["READY"].clone())
    });
    let (status, text) = load.interrupt();
    assert!(status.code().is_some(), "{text}");
    assert!(text.contains("(interrupted: partial results)"), "{text}");
    assert!(text.contains(" 0 failed"), "{text}");
    let scaled = t.stack.events().into_iter().any(|e| {
        e["kind"] == "scaled"
            && e["service"] == "music"
            && e["message"].to_string().contains("autoscal")
    });
    assert!(scaled, "an autoscaler event; music ready {grown}");
}

/// `# out of rotation at once, restarted with back-off`.
fn kill_9(t: &mut Tour, command: &str) {
    let pid = t.pid_of("users/0");
    let out = t.sh(&command.replace("<a pid from shoal status>", &pid.to_string()));
    assert!(out.status.success(), "{}", stderr(&out));
    for _ in 0..20 {
        let r = t.stack.get("/api/users/whoami").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let row = wait_for("users/0 restarted and ready", T, || {
        let row = t.replica_row("users/0")?;
        (row["STATE"] == "ready" && row["PID"] != pid.to_string() && row["RESTARTS"] != "0")
            .then_some(row)
    });
    assert_eq!(row["RESTARTS"], "1", "{row:?}");
    let events = t.stack.events();
    let of_0 = |kind: &str| {
        events
            .iter()
            .find(|e| e["kind"] == kind && e["service"] == "users" && e["replica"] == 0)
            .cloned()
    };
    let exited = of_0("exited").unwrap_or_else(|| panic!("{events:?}"));
    assert!(
        exited["message"].to_string().contains("signal 9"),
        "{exited}"
    );
    assert!(of_0("restarted").is_some(), "{events:?}");
}

/// `# hung: requests hedged elsewhere, then STATE unready, HEALTH unhealthy; restarted after
/// 30 s`: the requests of a light load all answered in time, the row as promised, and a
/// restart after the liveness bound (the test's [`LIVENESS`]; the README's figure is the
/// default, and the demo sets none).
fn kill_stop(t: &mut Tour, command: &str) {
    let promise = section_commands(README, "## A quick tour")
        .into_iter()
        .find(|l| l.command == command)
        .unwrap()
        .promise;
    assert!(promise.ends_with("restarted after 30 s"), "{promise}");
    assert!(
        !t.demo.contains("liveness"),
        "the demo keeps the default bound"
    );

    let pid = t.pid_of("users/1");
    let restarts: u32 = t.replica_row("users/1").unwrap()["RESTARTS"]
        .parse()
        .unwrap();
    let out = t.sh(&command.replace("<a pid>", &pid.to_string()));
    assert!(out.status.success(), "{}", stderr(&out));
    let stopped = SystemTime::now();
    let mut slowest = Duration::ZERO;
    let mut request = |t: &Tour| {
        let at = SystemTime::now();
        let r = t.stack.get("/api/users/whoami").unwrap();
        slowest = slowest.max(elapsed(at));
        assert_eq!(r.status, 200, "{}", r.text());
    };
    let row = poll(
        "STATE unready, HEALTH unhealthy for users/1 under light traffic",
        T,
        Duration::from_millis(100),
        &mut || {
            request(t);
            let row = t.replica_row("users/1")?;
            (row["STATE"] == "unready" && row["HEALTH"] == "unhealthy").then_some(row)
        },
    );
    eprintln!(
        "tour:   users/1 hung, after {:?}: {row:?}",
        elapsed(stopped)
    );
    let row = poll(
        "users/1 restarted after the liveness bound",
        T,
        Duration::from_millis(100),
        &mut || {
            request(t);
            let row = t.replica_row("users/1")?;
            (row["PID"] != pid.to_string() && row["STATE"] == "ready").then_some(row)
        },
    );
    let took = elapsed(stopped);
    eprintln!("tour:   restarted after {took:?}; slowest request {slowest:?}: {row:?}");
    assert!(slowest < Duration::from_secs(2), "hedged: {slowest:?}");
    assert!(
        took >= Duration::from_secs(LIVENESS),
        "not before the bound: {took:?}"
    );
    assert_eq!(row["RESTARTS"], (restarts + 1).to_string(), "{row:?}");
    assert!(
        !Proc::of(pid).is_some_and(|p| p.alive()),
        "the hung process was killed"
    );
}

/// `# started, ready, exited (signal 9), restarted, scaled …`.
fn events(t: &mut Tour, command: &str) {
    let out = t.sh(command);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let kinds: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    for kind in ["started", "ready", "exited", "restarted", "scaled"] {
        assert!(kinds.contains(kind), "{kind} in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.contains("users/0") && l.contains("exited") && l.contains("signal 9")),
        "{text}"
    );
}

/// `# replica output, per replica or all`, followed from another folder.
fn logs_follow(t: &mut Tour, command: &str) {
    let n = t.stack.service("users").unwrap()["desired"]
        .as_u64()
        .unwrap();
    let mut follow = t.spawn(command);
    follow.wait_for("every users replica's output", T, |text| {
        (0..n).all(|i| text.contains(&format!("users.{i} | ")))
    });
    // New output arrives while it follows: a new replica's start-up line.
    let out = t.sh(&format!("shoal scale users {}", n + 1));
    assert!(out.status.success(), "{}", stderr(&out));
    let new = format!("users.{n} | sample-app users#{n} listening on ");
    let text = follow.wait_for("the new replica's start-up line", T, |text| {
        text.lines().any(|l| l.starts_with(&new))
    });
    let (_, text_after) = follow.interrupt();
    let starts: Vec<&str> = text_after.lines().filter(|l| l.starts_with(&new)).collect();
    assert_eq!(starts.len(), 1, "each line once: {text}");
    // Per replica: one replica, without prefixes.
    let one = t.sh("shoal logs users --replica 1");
    assert!(one.status.success(), "{}", stderr(&one));
    let one = stdout(&one);
    assert!(
        one.contains("listening") && !one.contains("users.0 | "),
        "{one}"
    );
    t.stack.wait_ready("users", n + 1, T);
}

/// `# start your own stack from the demo`. `shoal init` writes the demo in a fresh folder;
/// the editor's part is a script that adds a route to the running stack's file.
fn init_and_edit(t: &mut Tour, command: &str) {
    let (init, edit) = command.split_once(" && ").unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let out = t.sh_in(init, fresh.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("shoal up"), "{}", stdout(&out));
    let written = std::fs::read_to_string(fresh.path().join("shoal.yaml")).unwrap();
    assert_eq!(written, t.demo, "the demo this test runs");

    let editor = t.stack.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nprintf '  - match: PathPrefix(`/api/hello`)\\n    strip_prefix: /api/hello\\n    service: users\\n' >> \"$1\"\n",
    )
    .unwrap();
    let out = t
        .command(edit, t.stack.path())
        .env("EDITOR", format!("sh {}", editor.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let file = std::fs::read_to_string(t.stack.path().join("shoal.yaml")).unwrap();
    assert!(file.contains("PathPrefix(`/api/hello`)"), "{file}");
}

/// `# every problem as file:line:column, with suggestions`.
fn check(t: &mut Tour, command: &str) {
    let out = t.sh_in(command, t.stack.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("shoal.yaml: ok"), "{}", stdout(&out));

    let file = std::fs::read_to_string(t.stack.path().join("shoal.yaml")).unwrap();
    let broken = file
        .replace("service: music", "service: musik")
        .replace("balance: least_requests", "balanse: least_requests");
    std::fs::write(t.stack.path().join("broken.yaml"), broken).unwrap();
    let out = t.sh_in(&format!("{command} -f broken.yaml"), t.stack.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let places = err
        .lines()
        .filter(|l| {
            let l = l.strip_prefix("error: ").unwrap_or(l);
            l.strip_prefix("broken.yaml:").is_some_and(|rest| {
                let mut parts = rest.splitn(3, ':');
                parts.next().is_some_and(|n| n.parse::<u32>().is_ok())
                    && parts.next().is_some_and(|n| n.parse::<u32>().is_ok())
            })
        })
        .count();
    assert_eq!(places, 2, "both problems with file:line:column:\n{err}");
    assert!(err.contains("did you mean `music`?"), "{err}");
    assert!(err.contains("did you mean `balance`?"), "{err}");
}

/// `# or SIGHUP: swap config without dropping a request`.
fn reload(t: &mut Tour, command: &str) {
    let load = Load::start(&t.stack, 2, |_, _| Req::get("/api/users/whoami"));
    load.wait_requests(20);
    let out = t.sh_in(command, t.stack.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("reloaded"), "{}", stdout(&out));
    let r = t.stack.get("/api/hello/whoami").unwrap();
    assert_eq!(r.status, 200, "the edited file's new route");
    assert!(r.header("x-shoal-replica").unwrap().starts_with("users/"));
    // SIGHUP does the same (the file is unchanged: the same routes keep serving).
    t.up.signal(Signal::SIGHUP);
    wait_for("the SIGHUP reload's event", T, || {
        let n = t
            .stack
            .events()
            .iter()
            .filter(|e| e["kind"] == "reloaded")
            .count();
        (n >= 2).then_some(())
    });
    load.wait_requests(20);
    let tally = load.finish();
    assert!(tally.failures.is_empty(), "{:?}", tally.failures);
    assert_eq!(t.stack.get("/api/hello/whoami").unwrap().status, 200);
}

/// `# fresh replicas one by one; waits until done`, without a failed request.
fn rollout_restart(t: &mut Tour, command: &str) {
    let before = t.pids("users");
    let load = Load::start(&t.stack, 2, |_, _| Req::get("/api/users/whoami"));
    load.wait_requests(20);
    let out = t.sh(command);
    let tally = load.finish();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("complete"), "{text}");
    // Done when it returns: every replica fresh and ready.
    let after = t.pids("users");
    let service = t.stack.service("users").unwrap();
    assert_eq!(
        service["ready"].as_u64(),
        Some(before.len() as u64),
        "{service}"
    );
    assert_eq!(after.len(), before.len(), "{service}");
    assert!(after.is_disjoint(&before), "{before:?} → {after:?}");
    assert!(tally.failures.is_empty(), "{:?}", tally.failures);
}

/// `# p50…p99.9 (corrected), spread: "balanced"`.
fn load_rate(t: &mut Tour, command: &str) {
    let out = t.sh(command);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for word in ["p50", "p99.9", "(corrected)", " 0 failed"] {
        assert!(text.contains(word), "{word} in\n{text}");
    }
    let spread = text
        .lines()
        .find(|l| l.trim_start().starts_with("spread"))
        .unwrap_or_else(|| panic!("a spread line in\n{text}"));
    assert!(
        spread.trim_start()["spread".len()..]
            .trim_start()
            .starts_with("balanced"),
        "{text}"
    );
}
