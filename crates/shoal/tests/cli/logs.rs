//! `shoal logs` through the admin API (from any folder, `-f`, `--color`), `shoal down` and
//! `shoal restart SERVICE`, each run from a folder other than the one `shoal up` ran in.
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::sample_service;
use crate::support::*;

const T: Duration = Duration::from_secs(15);

/// `shoal ARGS` run to completion in a fresh folder that holds no stack file, pointed at
/// the stack's admin API through `SHOAL_ADMIN`.
fn run_elsewhere(stack: &Stack, args: &[&str]) -> Output {
    let elsewhere = tempfile::tempdir().unwrap();
    Command::new(SHOAL)
        .args(args)
        .current_dir(elsewhere.path())
        .env("SHOAL_ADMIN", stack.admin.to_string())
        .env_remove("SHOAL_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A service that writes a coloured line (as many apps do) before starting the sample app.
fn coloured_service(name: &str) -> String {
    format!(
        "  {name}:
    command: [sh, -c, 'printf \"\\033[31mred alert\\033[0m\\n\"; exec @SHOAL@ sample-app']
    replicas: 1
    health: {{ path: /health, interval: 100ms }}
    stop: {{ drain_timeout: 1s, grace: 1s }}
"
    )
}

/// `shoal logs web` from another folder, once both replicas' start-up lines are there.
fn wait_logs(stack: &Stack, args: &[&str], wanted: &[&str]) -> String {
    wait_for(&format!("{wanted:?} in `shoal {args:?}`"), T, || {
        let out = run_elsewhere(stack, args);
        let text = stdout(&out);
        (out.status.success() && wanted.iter().all(|w| text.contains(w))).then_some(text)
    })
}

#[test]
fn logs_work_from_any_folder_and_print_each_line_once() {
    let stack = Stack::new(&sample_service("web", 2, ""), &[("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("web", 2, T);
    let text = wait_logs(
        &stack,
        &["logs", "web"],
        &[
            "web.0 | sample-app web#0 listening on",
            "web.1 | sample-app web#1 listening on",
        ],
    );
    for replica in ["web#0", "web#1"] {
        let starts = text
            .lines()
            .filter(|l| l.contains("listening") && l.contains(replica))
            .count();
        assert_eq!(starts, 1, "{replica} says it listens once:\n{text}");
    }
    let one = run_elsewhere(&stack, &["logs", "web", "--replica", "1", "-n", "1"]);
    assert!(one.status.success(), "{}", stderr(&one));
    assert_eq!(
        stdout(&one).lines().count(),
        1,
        "-n 1: one line\n{}",
        stdout(&one)
    );
    assert!(!stdout(&one).contains("web#0"), "{}", stdout(&one));

    let none = run_elsewhere(&stack, &["logs", "nope"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        stderr(&none).contains("no service named `nope`"),
        "{}",
        stderr(&none)
    );
    let gone = run_elsewhere(&stack, &["logs", "web", "--replica", "7"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        stderr(&gone).contains("no logs of replica 7 of `web`"),
        "{}",
        stderr(&gone)
    );
}

#[test]
fn logs_keep_or_strip_colour_as_asked() {
    let stack = Stack::new(&coloured_service("web"), &[("/", "web")], "");
    // Not --quiet: replica output is echoed too.
    let mut up = Up::start(stack.path(), &["up"]);
    up.wait_listening(&stack);
    stack.wait_ready("web", 1, T);
    // Piped, `auto` strips: no escape at all, not even the sample app's own logging's.
    let auto = wait_logs(&stack, &["logs", "web"], &["red alert", "listening on"]);
    assert!(!auto.contains('\x1b'), "{auto:?}");
    let never = run_elsewhere(&stack, &["logs", "web", "--color", "never"]);
    assert!(stdout(&never).contains("red alert"), "{}", stdout(&never));
    assert!(!stdout(&never).contains('\x1b'), "{:?}", stdout(&never));
    let always = run_elsewhere(&stack, &["logs", "web", "--color", "always"]);
    assert!(
        stdout(&always).contains("\x1b[31mred alert\x1b[0m"),
        "{:?}",
        stdout(&always)
    );
    let bad = run_elsewhere(&stack, &["logs", "web", "--color", "sometimes"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--color"), "{}", stderr(&bad));
    // `shoal up`'s own echo, to a file, carries no escapes either.
    let echoed = wait_for("the echoed start-up line", T, || {
        let out = up.stdout();
        out.contains("red alert").then_some(out)
    });
    assert!(!echoed.contains('\x1b'), "{echoed:?}");
}

#[test]
fn logs_follow_streams_new_replicas_and_ends_with_shoal_down() {
    let stack = Stack::new(&sample_service("web", 1, ""), &[("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("web", 1, T);
    let elsewhere = tempfile::tempdir().unwrap();
    let mut follow = Command::new(SHOAL)
        .args(["logs", "web", "-f"])
        .current_dir(elsewhere.path())
        .env("SHOAL_ADMIN", stack.admin.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_line = |what: &str| {
        let started = std::time::SystemTime::now();
        while elapsed(started) < T {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                seen.push(line);
                if seen.last().unwrap().contains(what) {
                    return;
                }
            }
        }
        panic!("no line with {what:?} from `shoal logs web -f`: {seen:#?}");
    };
    wait_line("sample-app web#0 listening on");
    // A replica started after `-f` began is followed too, prefixed.
    let out = stack.run(&["scale", "web", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_line("web.1 | sample-app web#1 listening on");

    // `shoal down` from another folder stops shoal; the follower ends with it.
    let down = run_elsewhere(&stack, &["down"]);
    assert!(down.status.success(), "{}{}", stdout(&down), stderr(&down));
    assert!(stdout(&down).contains("shoal stopped"), "{}", stdout(&down));
    assert!(up.wait_exit(T).success());
    assert!(up.stdout().contains("shoal stopped"), "{}", up.stdout());
    assert!(
        stack.admin_get("/api/v1/health").is_none(),
        "the admin API is gone"
    );
    let ended = wait_for("`shoal logs -f` to end", T, || follow.try_wait().unwrap());
    assert!(ended.success(), "{ended}");

    // Nothing left to stop: a clear error, exit 1.
    let again = run_elsewhere(&stack, &["down"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("cannot reach the admin API"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn restart_replaces_every_replica_without_a_failed_request() {
    let stack = Stack::new(&sample_service("web", 2, ""), &[("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    let before = replica_pids(&stack.wait_ready("web", 2, T));
    let load = Load::start(&stack, 2, |_, _| Req::get("/"));
    load.wait_requests(50);
    let out = run_elsewhere(&stack, &["restart", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("web: restarting every replica"),
        "{}",
        stdout(&out)
    );
    let after = wait_for("two fresh replicas", T, || {
        let s = stack.wait_ready("web", 2, T);
        let after = replica_pids(&s);
        after.iter().all(|p| !before.contains(p)).then_some(after)
    });
    load.wait_requests(50);
    let tally = load.finish();
    assert!(tally.failures.is_empty(), "{:#?}", tally.failures);
    assert!(tally.ok >= 100, "{}", tally.ok);
    eprintln!(
        "restart under load: {} ok, slowest {:?}, {before:?} → {after:?}",
        tally.ok, tally.slowest
    );
}
