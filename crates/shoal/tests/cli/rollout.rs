//! Shipping a new version through the real binary, under `shoal load --rate`: a broken
//! version rolled back after its progress deadline, `shoal rollout undo` and `restart`, a
//! route's weights (`services:`) and `shoal weight`, and the automated canary promoting a
//! healthy version and rolling back one that fails every 5th request.
//!
//! A request fails when `shoal load` counts it failed: no answer, or a 4xx/5xx one.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::support::*;

const T: Duration = Duration::from_secs(20);

/// A sample-app service with test intervals, a `version:` label and a progress deadline.
fn service(name: &str, version: &str, replicas: u32, deadline: &str) -> String {
    format!(
        "  {name}:
    command: [shoal, sample-app]
    version: {version}
    replicas: {replicas}
    health: {{ path: /health, interval: 100ms }}
    restart: {{ policy: on-failure, delay: 100ms }}
    stop: {{ drain_timeout: 1s, grace: 1s }}
    rollout: {{ progress_deadline: {deadline} }}
"
    )
}

/// A stack of `services` with one route `web` on `/` split between `targets` (with
/// `extra_route` YAML under it, indented by 4).
fn split_stack(services: &str, targets: &[(&str, u32)], extra_route: &str) -> Stack {
    let stack = Stack::new(services, &[], "");
    let file = stack.path().join("shoal.yaml");
    let mut yaml = std::fs::read_to_string(&file).unwrap();
    yaml.push_str("  - name: web\n    match: PathPrefix(`/`)\n    services:\n");
    for (s, w) in targets {
        yaml.push_str(&format!("      - {{ name: {s}, weight: {w} }}\n"));
    }
    yaml.push_str(extra_route);
    std::fs::write(file, yaml).unwrap();
    stack
}

/// Replace `from` by `to` (once) in the stack file, then `shoal reload`.
fn edit_and_reload(stack: &Stack, from: &str, to: &str) {
    let file = stack.path().join("shoal.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, replace(&yaml, from, to, 1, "shoal.yaml")).unwrap();
    let out = stack.run(&["reload"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// `shoal load --json` running in the background; its report once it ends.
struct LoadRun {
    child: Option<Child>,
    out: PathBuf,
}

impl LoadRun {
    /// `shoal load ARGS --json http://GATEWAY/`.
    fn start(stack: &Stack, args: &[&str]) -> LoadRun {
        let out = stack.path().join(format!("load-{}.json", free_port()));
        let url = format!("http://{}/", stack.gateway);
        let child = Command::new(SHOAL)
            .arg("load")
            .args(args)
            .args(["--json", &url])
            .current_dir(stack.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        LoadRun {
            child: Some(child),
            out,
        }
    }

    /// Stop it now (as Ctrl-C does) and read its report.
    fn stop(mut self) -> Value {
        let child = self.child.as_mut().unwrap();
        kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
        self.report()
    }

    /// Wait for it to end and read its report.
    fn report(&mut self) -> Value {
        let mut child = self.child.take().unwrap();
        wait_for("shoal load to end", Duration::from_secs(40), || {
            child.try_wait().unwrap()
        });
        let text = std::fs::read_to_string(&self.out).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

impl Drop for LoadRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `shoal load -n N -c 8` to completion: its report.
fn load_n(stack: &Stack, n: u32) -> Value {
    LoadRun::start(stack, &["-n", &n.to_string(), "-c", "8"]).report()
}

/// Answers per service in a load report (its spread is by `x-shoal-replica`, `api/0`).
fn per_service(report: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for r in report["spread"]["replicas"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = r["name"].as_str().unwrap_or("?");
        let service = name.split('/').next().unwrap_or(name).to_owned();
        *out.entry(service).or_default() += r["requests"].as_u64().unwrap_or(0);
    }
    out
}

/// Wait until `service` has answered `n` more requests.
fn wait_answers(stack: &Stack, service: &str, n: u64) {
    let target = answered(stack, service) + n;
    wait_for(&format!("{n} more answers from {service}"), T, || {
        (answered(stack, service) >= target).then_some(())
    });
}

/// The first event of `kind` for `service` (waiting for it).
fn wait_event(stack: &Stack, service: &str, kind: &str, timeout: Duration) -> Value {
    wait_for(&format!("a `{kind}` event for {service}"), timeout, || {
        stack
            .events()
            .into_iter()
            .find(|e| e["service"] == service && e["kind"] == kind)
    })
}

/// The versions `service`'s replicas run, sorted.
fn versions(stack: &Stack, service: &str) -> Vec<String> {
    let mut v: Vec<String> = stack.service(service).unwrap()["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap_or("?").to_owned())
        .collect();
    v.sort();
    v
}

/// Wait until `service`'s latest rollout is to `version`.
fn wait_rollout_to(stack: &Stack, service: &str, version: &str) -> Value {
    wait_for(&format!("a rollout of {service} to {version}"), T, || {
        let r = stack.service(service)?["rollout"].clone();
        (r["version"] == version).then_some(r)
    })
}

/// No failed request, and enough of them to mean something.
fn assert_no_failure(report: &Value, at_least: u64) {
    let requests = &report["requests"];
    assert_eq!(requests["failed"], 0, "{report:#}");
    assert!(requests["ok"].as_u64().unwrap() >= at_least, "{}", requests);
}

#[test]
fn a_broken_version_is_rolled_back_after_its_deadline_and_no_request_fails() {
    let stack = Stack::new(&service("api", "v1", 2, "2s"), &[("/", "api")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("api", 2, T);
    assert_eq!(versions(&stack, "api"), ["v1", "v1"]);
    let load = LoadRun::start(&stack, &["--rate", "100", "-c", "4", "-d", "40s"]);
    wait_answers(&stack, "api", 100);

    // v2 exits at once: never ready.
    edit_and_reload(
        &stack,
        "    command: [shoal, sample-app]\n    version: v1",
        "    command: [sh, -c, 'echo v2 cannot start >&2; exit 3']\n    version: v2",
    );
    wait_rollout_to(&stack, "api", "v2");
    let out = stack.run(&["rollout", "status", "api", "--timeout", "20s"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("Waiting for rollout of api to finish: "),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("error: rollout of api to version v2 was rolled back to v1"),
        "{err}"
    );
    let event = wait_event(&stack, "api", "rolledback", T);
    let why = event["message"].as_str().unwrap();
    assert!(why.contains("exit"), "the reason names the exit: {why}");
    eprintln!("rolled back: {why}");

    // The old replicas served throughout and still do.
    stack.wait_ready("api", 2, T);
    assert_eq!(versions(&stack, "api"), ["v1", "v1"]);
    wait_answers(&stack, "api", 200);
    let report = load.stop();
    assert_no_failure(&report, 400);
    eprintln!("broken version under load: {}", report["requests"]);
    // `shoal status` says so.
    let out = stack.run(&["status"]);
    let table = stdout(&out);
    assert!(table.lines().next().unwrap().contains("VERSION"), "{table}");
    assert!(
        table.contains("api: rollout to v2 rolled back to v1"),
        "{table}"
    );
}

#[test]
fn rollout_undo_and_restart_under_load_fail_no_request() {
    let stack = Stack::new(&service("api", "v1", 2, "10s"), &[("/", "api")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("api", 2, T);
    let out = stack.run(&["rollout", "status", "api"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "api has had no rollout; it runs version v1"
    );
    let load = LoadRun::start(&stack, &["--rate", "100", "-c", "4", "-d", "40s"]);
    wait_answers(&stack, "api", 100);

    // v1 → v2 by reload.
    edit_and_reload(&stack, "version: v1", "version: v2");
    wait_rollout_to(&stack, "api", "v2");
    let out = stack.run(&["rollout", "status", "api", "--timeout", "20s"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("rollout of api to version v2 complete"),
        "{}",
        stdout(&out)
    );
    assert_eq!(versions(&stack, "api"), ["v2", "v2"]);

    // Undo: back to v1.
    let out = stack.run(&["rollout", "undo", "api"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("api: rolling back to version v1"),
        "{}",
        stdout(&out)
    );
    let out = stack.run(&["rollout", "status", "api", "--timeout", "20s"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stack.wait_ready("api", 2, T);
    assert_eq!(versions(&stack, "api"), ["v1", "v1"]);

    // Restart: fresh processes, same version.
    let before = replica_pids(&stack.service("api").unwrap());
    let out = stack.run(&["rollout", "restart", "api"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = stack.run(&["rollout", "status", "api", "--timeout", "20s"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let after = replica_pids(&stack.wait_ready("api", 2, T));
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} → {after:?}"
    );
    assert_eq!(versions(&stack, "api"), ["v1", "v1"]);
    wait_answers(&stack, "api", 100);
    let report = load.stop();
    assert_no_failure(&report, 200);
    eprintln!("undo and restart under load: {}", report["requests"]);
    let kinds: Vec<String> = stack
        .events()
        .iter()
        .filter(|e| e["service"] == "api" && e["kind"] == "rollout")
        .map(|e| e["message"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(kinds.len() >= 3, "{kinds:?}");
}

#[test]
fn weights_split_traffic_and_shoal_weight_moves_them_live() {
    let services = format!(
        "{}{}",
        service("api", "v1", 2, "10s"),
        service("api-v2", "v2", 1, "10s")
    );
    let stack = split_stack(&services, &[("api", 90), ("api-v2", 10)], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("api", 2, T);
    stack.wait_ready("api-v2", 1, T);

    let share = |report: &Value, service: &str| {
        let counts = per_service(report);
        let total: u64 = counts.values().sum();
        counts.get(service).copied().unwrap_or(0) as f64 / total as f64
    };
    let report = load_n(&stack, 10_000);
    assert_no_failure(&report, 10_000);
    let canary = share(&report, "api-v2");
    eprintln!("90/10 over 10,000 requests: {:?}", per_service(&report));
    assert!((canary - 0.10).abs() <= 0.015, "api-v2 got {canary}");

    for (weights, want) in [
        (["api=95", "api-v2=5"], 0.05),
        (["api=50", "api-v2=50"], 0.5),
        (["api=0", "api-v2=100"], 1.0),
    ] {
        let mut args = vec!["weight", "web"];
        args.extend(weights);
        let out = stack.run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stdout(&out).trim(),
            format!("route web: {}", weights.join(" "))
        );
        let report = load_n(&stack, 2000);
        assert_no_failure(&report, 2000);
        let got = share(&report, "api-v2");
        eprintln!("{weights:?}: {:?}", per_service(&report));
        assert!((got - want).abs() <= 0.03, "{weights:?}: api-v2 got {got}");
    }
    // Exactly: at 0/100 not one request reaches api.
    let report = load_n(&stack, 500);
    assert_eq!(per_service(&report).get("api"), None, "{report:#}");

    // What the API, the metrics and the events say.
    let routes = stack.admin_get("/api/v1/routes").unwrap();
    assert_eq!(
        routes[0]["weights"],
        serde_json::json!([["api", 0], ["api-v2", 100]])
    );
    let metrics = http(stack.admin, "GET", "/metrics", None).unwrap().text();
    assert!(
        metrics.contains("shoal_route_weight{route=\"web\",service=\"api-v2\"} 100\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("shoal_replica_info{service=\"api\",replica=\"api/0\",version=\"v1\"} 1"),
        "{metrics}"
    );
    assert!(
        stack.events().iter().any(|e| e["kind"] == "weighted"
            && e["message"] == "route web: api=0 api-v2=100 (shoal weight)"),
        "{:?}",
        stack.events()
    );

    // Bad input.
    let out = stack.run(&["weight", "web", "api=x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("api=x"), "{}", stderr(&out));
    let out = stack.run(&["weight", "nope", "api=1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no route named `nope`"),
        "{}",
        stderr(&out)
    );
    let out = stack.run(&["weight", "web", "api=0", "api-v2=0"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let routes = stack.admin_get("/api/v1/routes").unwrap();
    assert_eq!(
        routes[0]["weights"],
        serde_json::json!([["api", 0], ["api-v2", 100]]),
        "a refused change changes nothing"
    );
}

/// An automated canary on route `web`: api 90 / api-v2 10, steps of 25 every second.
const CANARY: &str = "    canary:
      service: api-v2
      step: 25
      interval: 1s
      min_requests: 20
      max_error_increase: 0.01
      max_p95_ratio: 1.5
      failures: 1
";

#[test]
fn an_automated_canary_promotes_a_healthy_version() {
    let services = format!(
        "{}{}",
        service("api", "v1", 1, "10s"),
        service("api-v2", "v2", 1, "10s")
    );
    let stack = split_stack(&services, &[("api", 90), ("api-v2", 10)], CANARY);
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("api", 1, T);
    stack.wait_ready("api-v2", 1, T);
    let load = LoadRun::start(&stack, &["--rate", "300", "-c", "8", "-d", "40s"]);
    let promoted = wait_event(&stack, "api-v2", "rollout", T);
    assert_eq!(
        promoted["message"],
        "canary api-v2 promoted: 100% of route web",
        "{:?}",
        stack.events()
    );
    let steps: Vec<String> = stack
        .events()
        .iter()
        .filter(|e| e["kind"] == "weighted")
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    let shares: Vec<&str> = steps
        .iter()
        .filter_map(|m| m.strip_prefix("canary api-v2 at ")?.split(' ').next())
        .collect();
    assert_eq!(shares, ["35%", "60%", "85%", "100%"], "{steps:?}");
    assert!(steps[0].contains("(errors 0.0% vs 0.0%, p95 "), "{steps:?}");
    eprintln!("canary steps: {steps:#?}");
    let routes = stack.admin_get("/api/v1/routes").unwrap();
    assert_eq!(
        routes[0]["weights"],
        serde_json::json!([["api", 0], ["api-v2", 100]])
    );
    let report = load.stop();
    assert_no_failure(&report, 1000);
}

/// A replica that answers 500 to every 5th request (but not to its health checks).
const EVERY_FIFTH_FAILS: &str = r#"import http.server, os, threading

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    served = 0
    lock = threading.Lock()

    def do_GET(self):
        status = 200
        if self.path != "/health":
            with Handler.lock:
                Handler.served += 1
                if Handler.served % 5 == 0:
                    status = 500
        body = b"every fifth fails\n"
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

#[test]
fn an_automated_canary_failing_one_request_in_five_is_rolled_back() {
    let canary = "  api-v2:
    command: [python3, every_fifth.py]
    version: v2
    health: { path: /health, interval: 100ms }
    stop: { drain_timeout: 1s, grace: 1s }
";
    let services = format!("{}{canary}", service("api", "v1", 1, "10s"));
    let stack = split_stack(&services, &[("api", 90), ("api-v2", 10)], CANARY);
    std::fs::write(stack.path().join("every_fifth.py"), EVERY_FIFTH_FAILS).unwrap();
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("api", 1, T);
    stack.wait_ready("api-v2", 1, T);
    let load = LoadRun::start(&stack, &["--rate", "300", "-c", "8", "-d", "40s"]);
    let event = wait_event(&stack, "api-v2", "rolledback", T);
    let message = event["message"].as_str().unwrap();
    eprintln!("canary: {message}");
    assert!(
        message.starts_with("canary api-v2 rolled back from 10% to 0%: error ratio "),
        "{message}"
    );
    assert!(
        message.contains("above the stable 0.0% + 1.0%"),
        "{message}"
    );
    // About one in five: the window is at least 20 requests, so 4 or 5 of them.
    let ratio: f64 = message["canary api-v2 rolled back from 10% to 0%: error ratio ".len()..]
        .split('%')
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap();
    assert!((14.0..=26.0).contains(&ratio), "{message}");
    let routes = stack.admin_get("/api/v1/routes").unwrap();
    assert_eq!(
        routes[0]["weights"],
        serde_json::json!([["api", 100], ["api-v2", 0]])
    );
    // From now on the canary gets nothing: every request succeeds.
    let before = answered(&stack, "api-v2");
    wait_answers(&stack, "api", 300);
    assert_eq!(answered(&stack, "api-v2"), before);
    let report = load.stop();
    let failed = report["requests"]["failed"].as_u64().unwrap();
    let ok = report["requests"]["ok"].as_u64().unwrap();
    // Only the canary's 500s failed: a fifth of its tenth, before the rollback.
    assert!(failed > 0 && failed * 20 < ok, "{failed} failed, {ok} ok");
    assert!(
        !stack
            .events()
            .iter()
            .any(|e| e["kind"] == "weighted" && e["service"] == "api-v2"),
        "never stepped up: {:?}",
        stack.events()
    );
}
