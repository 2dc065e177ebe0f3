//! The local replica supervisor, seen from outside: the admin API, the gateway and `/proc`.
use std::collections::BTreeSet;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::sample_service;
use crate::support::*;

const T: Duration = Duration::from_secs(15);

fn replica(service: &Value, index: u64) -> Value {
    service["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["index"] == index)
        .cloned()
        .unwrap_or(Value::Null)
}

fn has_event(stack: &Stack, service: &str, kind: &str, text: &str) -> bool {
    stack.events().iter().any(|e| {
        e["service"] == service
            && e["kind"] == kind
            && e["message"].as_str().unwrap_or("").contains(text)
    })
}

#[test]
fn replicas_get_distinct_ports_and_serve_only_once_ready() {
    let stack = Stack::new(
        &sample_service("web", 2, ", --startup-delay, 1s"),
        &[("/", "web")],
        "",
    );
    let mut up = stack.up();
    up.wait_listening(&stack);

    // Before readiness: the gateway has no replica to send to.
    let early = stack.get("/whoami").unwrap();
    let svc = stack.service("web").unwrap();
    assert_eq!(
        svc["ready"], 0,
        "the 1 s start-up delay has not passed yet: {svc}"
    );
    assert_eq!(early.status, 503, "{}", early.text());

    let svc = stack.wait_ready("web", 2, T);
    let ports: BTreeSet<u64> = (0..2)
        .map(|i| replica(&svc, i)["port"].as_u64().unwrap())
        .collect();
    let pids: BTreeSet<u64> = (0..2)
        .map(|i| replica(&svc, i)["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(ports.len(), 2, "distinct ports: {svc}");
    assert_eq!(pids.len(), 2, "distinct processes: {svc}");

    let r = stack.get("/whoami").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // Each replica answers on its own port.
    let seen = wait_for("both replicas through the gateway", T, || {
        let seen = stack.replicas_seen("/whoami", 10);
        (seen.len() == 2).then_some(seen)
    });
    assert_eq!(seen, BTreeSet::from(["web/0".into(), "web/1".into()]));
    let served_ports: BTreeSet<u64> = (0..10)
        .map(|_| {
            let body: Value = serde_json::from_slice(&stack.get("/whoami").unwrap().body).unwrap();
            body["port"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(served_ports, ports);
}

#[test]
fn a_killed_replica_leaves_rotation_at_once_and_is_restarted() {
    // A 1 s restart delay leaves time to see the replica out of rotation.
    let service = sample_service("web", 3, "").replace("delay: 100ms", "delay: 1s");
    let stack = Stack::new(&service, &[("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    let svc = stack.wait_ready("web", 3, T);
    let old_pid = replica(&svc, 1)["pid"].as_u64().unwrap() as u32;
    assert!(Proc::of(old_pid).is_some());

    kill(Pid::from_raw(old_pid as i32), Signal::SIGKILL).unwrap();
    // Right after the kill, every request still succeeds: a connect failure is retried
    // on another replica, and the exited replica leaves the balancer.
    for i in 0..40 {
        let r = stack.get("/whoami").unwrap();
        assert_eq!(r.status, 200, "request {i} after kill -9: {}", r.text());
        assert_ne!(r.header("x-shoal-replica"), Some("web/1"));
    }
    let out = wait_for("web/1 out of the balancer during its back-off", T, || {
        let s = stack.service("web")?;
        (s["ready"] == 2 && replica(&s, 1)["state"] == "exited").then_some(s)
    });
    assert_eq!(replica(&out, 1)["last_exit"], json!({"signal": 9}), "{out}");
    assert!(
        has_event(&stack, "web", "exited", "signal 9"),
        "{:?}",
        stack.events()
    );
    assert!(has_event(&stack, "web", "restarted", "restart 1 in 1s"));
    assert_eq!(stack.replicas_seen("/whoami", 12).len(), 2);

    let restarted = wait_for("web/1 restarted and ready", T, || {
        let r = replica(&stack.service("web")?, 1);
        (r["restarts"] == 1 && r["state"] == "ready" && r["pid"].as_u64()? != u64::from(old_pid))
            .then_some(r)
    });
    assert!(Proc::of(restarted["pid"].as_u64().unwrap() as u32).is_some());
    wait_for("web/1 back in rotation", T, || {
        stack
            .replicas_seen("/whoami", 6)
            .contains("web/1")
            .then_some(())
    });
    assert_eq!(stack.service("web").unwrap()["ready"], 3);
}

#[test]
fn a_crash_loop_is_given_up_on_while_other_services_serve() {
    let services = format!(
        "{}  crashy:
    command: [sh, -c, \"exit 3\"]
    restart: {{ policy: on-failure, delay: 100ms, max_attempts: 3, window: 60s }}
",
        sample_service("web", 1, "")
    );
    let stack = Stack::new(&services, &[("/crashy", "crashy"), ("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    let svc = wait_for("crashy failed", T, || {
        let s = stack.service("crashy")?;
        (s["state"] == "failed").then_some(s)
    });
    let r = replica(&svc, 0);
    assert_eq!(r["state"], "failed", "{svc}");
    assert_eq!(
        r["restarts"], 3,
        "max_attempts restarts, then no more: {svc}"
    );
    assert_eq!(r["last_exit"], json!({"code": 3}), "{svc}");

    // It stays given up on: no fourth start while web keeps serving.
    stack.wait_ready("web", 1, T);
    for _ in 0..10 {
        assert_eq!(stack.get("/whoami").unwrap().status, 200);
    }
    let starts = stack
        .events()
        .iter()
        .filter(|e| e["service"] == "crashy" && e["kind"] == "started")
        .count();
    assert_eq!(starts, 4, "1 start + 3 restarts");
    assert_eq!(replica(&stack.service("crashy").unwrap(), 0)["restarts"], 3);
    assert_eq!(stack.get("/crashy").unwrap().status, 503);

    let status = stack.run(&["status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let table = stdout(&status);
    let row = |prefix: &str| {
        table
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} row in\n{table}"))
            .to_owned()
    };
    assert!(row("crashy ").contains("failed"), "{table}");
    assert!(row("  crashy/0").contains("failed"), "{table}");
    assert!(row("web ").contains("running"), "{table}");

    let events = stack.run(&["events"]);
    let events = stdout(&events);
    assert!(
        events
            .lines()
            .any(|l| l.contains("crashy/0") && l.contains("failed")),
        "{events}"
    );
    assert!(up.try_wait().is_none(), "shoal keeps running");
}

#[test]
fn scale_changes_the_live_set_from_the_cli_and_the_api() {
    let stack = Stack::new(&sample_service("web", 2, ""), &[("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("web", 2, T);
    let names = |n: usize| -> BTreeSet<String> { (0..n).map(|i| format!("web/{i}")).collect() };
    assert_eq!(stack.replicas_seen("/whoami", 8), names(2));

    let out = stack.run(&["scale", "web", "5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("web: scaled to 5 replicas"));
    stack.wait_ready("web", 5, T);
    let seen = wait_for("5 replicas through the gateway", T, || {
        let seen = stack.replicas_seen("/whoami", 20);
        (seen.len() == 5).then_some(seen)
    });
    assert_eq!(seen, names(5));

    let (code, body) = stack.admin_post("/api/v1/services/web/scale", &json!({"replicas": 1}));
    assert_eq!(code, 200, "{body}");
    stack.wait_ready("web", 1, T);
    assert_eq!(stack.replicas_seen("/whoami", 20), names(1));

    // Unknown services and bad bodies are refused with a message.
    let (code, body) = stack.admin_post("/api/v1/services/nope/scale", &json!({"replicas": 1}));
    assert_eq!(code, 404, "{body}");
    let (code, body) = stack.admin_post("/api/v1/services/web/scale", &json!({"replicas": "5"}));
    assert_eq!(code, 400, "{body}");
    let (code, body) = stack.admin_post("/api/v1/services/web/scale", &json!({"replicas": 1001}));
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"], "at most 1000 replicas");
    assert_eq!(
        stack.service("web").unwrap()["desired"],
        1,
        "refused requests change nothing"
    );
    let out = stack.run(&["scale", "nope", "2"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no service named `nope`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn scale_survives_a_restart_of_shoal() {
    let stack = Stack::new(&sample_service("web", 2, ""), &[("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("web", 2, T);
    let out = stack.run(&["scale", "web", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stack.wait_ready("web", 4, T);
    assert!(stack.path().join(".shoal/state").exists());
    up.signal(Signal::SIGTERM);
    assert!(up.wait_exit(T).success(), "{}", up.stderr());
    drop(up);

    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("web", 4, T);
}

/// The pids of every replica of every service, per the admin API.
fn replica_pids(stack: &Stack) -> Vec<u32> {
    let all = stack.admin_get("/api/v1/services").unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["replicas"].as_array().unwrap().clone())
        .filter_map(|r| r["pid"].as_u64().map(|p| p as u32))
        .collect()
}

/// Replicas that leave a grandchild behind (`sleep 300 &`), stopped with `signal`.
fn shutdown_leaves_nothing_behind(signal: Signal, to_group: bool) {
    let services = "  web:
    command: [sh, -c, 'sleep 300 & exec \"$SHOAL_BIN\" sample-app']
    env: { SHOAL_BIN: \"@SHOAL@\" }
    replicas: 2
    health: { path: /health, interval: 100ms }
    stop: { drain_timeout: 1s, grace: 2s }
";
    let stack = Stack::new(services, &[("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("web", 2, T);
    let pids = replica_pids(&stack);
    assert_eq!(pids.len(), 2);
    let procs = descendants(&pids);
    // 2 × (sample-app + sleep), at least.
    assert!(
        procs.len() >= 4,
        "replicas and their grandchildren: {procs:?}"
    );
    let everything = tree(up.pid);
    assert!(procs.iter().all(|p| everything.contains(p)));

    if to_group {
        up.signal_group(signal);
    } else {
        up.signal(signal);
    }
    let status = up.wait_exit(T);
    assert!(
        status.success(),
        "shoal exits 0 on {signal}: {status}\n{}",
        up.stderr()
    );
    assert!(up.stdout().contains("shoal stopped"), "{}", up.stdout());
    // The banner says where to look.
    let dashboard = format!("dashboard   http://{}/dashboard/", stack.admin);
    assert!(up.stdout().contains(&dashboard), "{}", up.stdout());
    // SIGKILL is delivered asynchronously: on a loaded machine a grandchild may take a
    // moment to die after shoal has exited. Poll (with a deadline), do not race it.
    let still = || -> Vec<Proc> {
        procs
            .iter()
            .chain(&everything)
            .filter(|p| p.alive())
            .copied()
            .collect()
    };
    let gone_by = std::time::SystemTime::now();
    while !still().is_empty() && elapsed(gone_by) < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = still();
    for p in &left {
        p.kill(); // no longer under shoal, so the guard would not find them
    }
    assert!(
        left.is_empty(),
        "still running after shoal exited: {left:?}"
    );
}

#[test]
fn sigterm_stops_every_replica_and_its_children() {
    shutdown_leaves_nothing_behind(Signal::SIGTERM, false);
}

#[test]
fn ctrl_c_stops_every_replica_and_its_children() {
    // A terminal sends SIGINT to the foreground process group: shoal's, not the replicas'.
    shutdown_leaves_nothing_behind(Signal::SIGINT, true);
}

#[test]
fn a_missing_command_fails_clearly_and_others_keep_serving() {
    let services = format!(
        "{}  ghost:
    command: [shoal-no-such-command-xyz, --flag]
    restart: {{ policy: on-failure, delay: 100ms }}
",
        sample_service("web", 1, "")
    );
    let stack = Stack::new(&services, &[("/ghost", "ghost"), ("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    let svc = wait_for("ghost failed", T, || {
        let s = stack.service("ghost")?;
        (s["state"] == "failed").then_some(s)
    });
    let r = replica(&svc, 0);
    assert_eq!(
        r["message"], "command not found: shoal-no-such-command-xyz",
        "{svc}"
    );
    assert!(has_event(
        &stack,
        "ghost",
        "failed",
        "command not found: shoal-no-such-command-xyz"
    ));
    stack.wait_ready("web", 1, T);
    assert_eq!(stack.get("/whoami").unwrap().status, 200);
    assert_eq!(stack.get("/ghost").unwrap().status, 503);
    let table = stdout(&stack.run(&["status"]));
    assert!(
        table.contains("ghost/0: command not found: shoal-no-such-command-xyz"),
        "{table}"
    );
    assert!(up.try_wait().is_none(), "shoal keeps running");
}

#[test]
fn a_replica_that_never_gets_ready_times_out_clearly() {
    let services = format!(
        "{}  stuck:
    command: [sleep, \"1000\"]
    health: {{ path: /health, interval: 100ms, start_timeout: 1s }}
    restart: {{ policy: on-failure, delay: 100ms, max_attempts: 1 }}
    stop: {{ grace: 1s }}
",
        sample_service("web", 1, "")
    );
    let stack = Stack::new(&services, &[("/stuck", "stuck"), ("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    let first = wait_for("stuck/0 start timeout event", T, || {
        stack.events().into_iter().find(|e| {
            e["service"] == "stuck"
                && e["kind"] == "exited"
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("not ready within 1s (start timeout)")
        })
    });
    assert!(
        first["message"].as_str().unwrap().contains("killed"),
        "{first}"
    );
    let svc = wait_for("stuck failed after its one restart", T, || {
        let s = stack.service("stuck")?;
        (s["state"] == "failed").then_some(s)
    });
    let r = replica(&svc, 0);
    assert_eq!(r["restarts"], 1, "{svc}");
    assert!(
        r["message"].as_str().unwrap().contains("start timeout"),
        "{svc}"
    );
    assert_eq!(stack.get("/whoami").unwrap().status, 200);
    assert!(up.try_wait().is_none(), "shoal keeps running");
    let table = stdout(&stack.run(&["status"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("stuck ") && l.contains("failed")),
        "{table}"
    );
}

#[test]
fn shutdown_is_prompt_whatever_state_the_replicas_are_in() {
    // A ready replica, a given-up one, one in a long back-off, and one that is not ready
    // and ignores SIGTERM (its shell and its `sleep`s must be SIGKILLed after the grace).
    let services = format!(
        "{}  crashy:
    command: [sh, -c, \"exit 3\"]
    restart: {{ policy: on-failure, delay: 100ms, max_attempts: 1 }}
  backoff:
    command: [sh, -c, \"exit 4\"]
    restart: {{ policy: on-failure, delay: 1h, max_delay: 1h }}
  stubborn:
    command: [sh, -c, \"trap '' TERM; while :; do sleep 0.1; done\"]
    health: {{ interval: 100ms, start_timeout: 1h }}
    stop: {{ drain_timeout: 1s, grace: 1s }}
",
        sample_service("web", 1, "")
    );
    let stack = Stack::new(&services, &[("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("web", 1, T);
    wait_for(
        "crashy failed, backoff waiting, stubborn starting",
        T,
        || {
            let state = |name: &str| Some(replica(&stack.service(name)?, 0)["state"].clone());
            (state("crashy")? == "failed"
                && state("backoff")? == "exited"
                && state("stubborn")? == "starting")
                .then_some(())
        },
    );
    let procs = descendants(&replica_pids(&stack));
    assert!(
        procs.len() >= 3,
        "web, stubborn's shell and its sleep: {procs:?}"
    );

    let t0 = std::time::SystemTime::now();
    up.signal(Signal::SIGTERM);
    let status = up.wait_exit(T);
    let took = elapsed(t0);
    assert!(status.success(), "{status}\n{}", up.stderr());
    // The stubborn replica costs its 1 s grace; nothing waits for the 1 h back-off.
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    let left: Vec<Proc> = procs.iter().filter(|p| p.alive()).copied().collect();
    for p in &left {
        p.kill();
    }
    assert!(
        left.is_empty(),
        "still running after shoal exited: {left:?}"
    );
}

#[test]
fn a_killed_replicas_own_children_go_with_it() {
    let services = "  web:
    command: [sh, -c, 'sleep 300 & exec \"$SHOAL_BIN\" sample-app']
    env: { SHOAL_BIN: \"@SHOAL@\" }
    health: { path: /health, interval: 100ms }
    restart: { policy: on-failure, delay: 100ms }
";
    let stack = Stack::new(services, &[("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    let svc = stack.wait_ready("web", 1, T);
    let leader = replica(&svc, 0)["pid"].as_u64().unwrap() as u32;
    let group = descendants(&[leader]);
    assert_eq!(group.len(), 2, "sample-app and its sleep: {group:?}");

    kill(Pid::from_raw(leader as i32), Signal::SIGKILL).unwrap();
    wait_for("web/0 restarted and ready", T, || {
        let r = replica(&stack.service("web")?, 0);
        (r["restarts"] == 1 && r["state"] == "ready").then_some(())
    });
    let left: Vec<Proc> = group.iter().filter(|p| p.alive()).copied().collect();
    for p in &left {
        p.kill();
    }
    assert!(left.is_empty(), "the old incarnation's processes: {left:?}");
}

#[test]
fn a_second_signal_forces_a_prompt_stop() {
    // A replica that ignores SIGTERM, with a long drain and grace: a normal shutdown would
    // wait about a minute for it. A second Ctrl-C must not.
    let services = "  stubborn:
    command: [sh, -c, \"trap '' TERM; while :; do sleep 0.1; done\"]
    health: { interval: 100ms, start_timeout: 1h }
    stop: { drain_timeout: 30s, grace: 30s }
";
    let stack = Stack::new(services, &[("/", "stubborn")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    // Started: its process (and its `sleep`s) exist. The state can say "starting" a moment
    // before the pid is reported, so wait for the processes themselves.
    let procs = wait_for("stubborn started", T, || {
        let procs = descendants(&replica_pids(&stack));
        (!procs.is_empty()).then_some(procs)
    });

    let t0 = std::time::SystemTime::now();
    up.signal(Signal::SIGINT);
    wait_for("shutdown under way", T, || {
        up.stderr().contains("shutting down").then_some(())
    });
    up.signal(Signal::SIGINT);
    let status = up.wait_exit(T);
    let took = elapsed(t0);
    assert!(status.success(), "{status}\n{}", up.stderr());
    assert!(took < Duration::from_secs(10), "forced stop took {took:?}");
    assert!(up.stderr().contains("forced stop"), "{}", up.stderr());
    wait_for("every replica process gone", Duration::from_secs(3), || {
        procs.iter().all(|p| !p.alive()).then_some(())
    });
}
