//! Failover under continuous load through the real binary: three sample-app replicas, GETs
//! and POSTs with bodies, and one replica killed, hung, or answering 500s.
//!
//! A request fails when it gets an error, a status other than 200, a wrong body, or no
//! answer within 2 s (as in `bench/failover.sh`).
//!
//! The POSTs carry an `Idempotency-Key`, which makes them safe to send twice: a POST
//! without one that a replica had already received when it died cannot be retried by any
//! proxy (the replica may have acted on it), so it would fail if it was in flight at the
//! instant of a `kill -9`.
use std::time::{Duration, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::support::*;

const T: Duration = Duration::from_secs(20);

/// Three sample-app replicas with the default health-check settings (HTTP on /health).
fn three_replicas(restart: &str) -> Stack {
    let service = format!(
        "  web:
    command: [shoal, sample-app]
    replicas: 3
    health: {{ path: /health }}
    restart: {restart}
    stop: {{ drain_timeout: 1s, grace: 1s }}
"
    );
    Stack::new(&service, &[("/", "web")], "")
}

/// GET /whoami and POST /echo in turn; the POST carries a body and an `Idempotency-Key`
/// and must get its body back.
fn mixed_get_and_post(thread: usize, i: u64) -> Req {
    if i.is_multiple_of(2) {
        let body = format!("thread {thread} request {i} {}", "x".repeat(512));
        Req {
            method: "POST",
            path: "/echo".into(),
            headers: vec![("idempotency-key".into(), format!("{thread}-{i}"))],
            expect_body: Some(body.clone().into_bytes()),
            body: body.into_bytes(),
        }
    } else {
        Req::get("/whoami")
    }
}

fn replica(service: &Value, index: u64) -> Value {
    service["replicas"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["index"] == index).cloned())
        .unwrap_or(Value::Null)
}

/// In rotation: ready in the supervisor and healthy in the gateway.
fn in_rotation(replica: &Value) -> bool {
    replica["state"] == "ready" && replica["traffic"]["health"] == "healthy"
}

fn pid_of(stack: &Stack, index: u64) -> i32 {
    replica(&stack.service("web").unwrap(), index)["pid"]
        .as_u64()
        .unwrap() as i32
}

#[test]
fn kill_9_of_a_replica_under_load_fails_no_request() {
    // A 1 s restart delay keeps the replica gone for a while under load.
    let stack = three_replicas("{ policy: on-failure, delay: 1s }");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("web", 3, T);
    let load = Load::start(&stack, 4, mixed_get_and_post);
    load.wait_requests(300);
    let victim = pid_of(&stack, 1);
    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    load.wait_requests(600);
    let before = load.ok_from("web/1");
    wait_for("web/1 restarted and serving again", T, || {
        (load.ok_from("web/1") > before + 5).then_some(())
    });
    let tally = load.finish();
    assert!(
        tally.failures.is_empty(),
        "{} failed: {:?}",
        tally.failures.len(),
        &tally.failures[..tally.failures.len().min(10)]
    );
    assert!(tally.ok > 900, "{tally:?}");
    assert_eq!(tally.by_replica.len(), 3, "{tally:?}");
}

#[test]
fn a_hung_replica_leaves_rotation_within_3s_and_returns_after_sigcont() {
    let stack = three_replicas("{ policy: on-failure, delay: 100ms }");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("web", 3, T);
    let load = Load::start(&stack, 4, mixed_get_and_post);
    // Enough answers for the automatic per-try timeout to know the service's latency
    // (before 50 it uses 1 s).
    load.wait_requests(1000);
    let victim = pid_of(&stack, 2);
    kill(Pid::from_raw(victim), Signal::SIGSTOP).unwrap();
    let stopped = SystemTime::now();
    let out = wait_for("web/2 out of rotation", T, || {
        let r = replica(&stack.service("web")?, 2);
        (!in_rotation(&r)).then_some(r)
    });
    let left_after = elapsed(stopped);
    // Keep the load on the two others for a while: nothing may fail meanwhile.
    load.wait_requests(400);
    kill(Pid::from_raw(victim), Signal::SIGCONT).unwrap();
    let resumed = SystemTime::now();
    wait_for("web/2 back in rotation", T, || {
        in_rotation(&replica(&stack.service("web")?, 2)).then_some(())
    });
    let back_after = elapsed(resumed);
    let before = load.ok_from("web/2");
    wait_for("web/2 serving again", T, || {
        (load.ok_from("web/2") > before + 5).then_some(())
    });
    let tally = load.finish();
    assert!(
        left_after < Duration::from_secs(3),
        "a hung replica must leave rotation within 3 s; took {left_after:?}: {out}"
    );
    assert!(
        tally.failures.is_empty(),
        "{} failed: {:?}",
        tally.failures.len(),
        &tally.failures[..tally.failures.len().min(10)]
    );
    assert_eq!(
        replica(&stack.service("web").unwrap(), 2)["restarts"],
        0,
        "a hang is not a crash"
    );
    eprintln!(
        "hung replica left rotation after {left_after:?}, back {back_after:?} after SIGCONT; {tally:?}"
    );
}

#[test]
fn a_replica_answering_500s_is_ejected_then_readmitted_when_it_recovers() {
    let stack = three_replicas("{ policy: on-failure, delay: 100ms }");
    let mut up = stack.up();
    up.wait_listening(&stack);
    let svc = stack.wait_ready("web", 3, T);
    let port = replica(&svc, 0)["port"].as_u64().unwrap();
    let direct: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let r = http_with(direct, "GET", "/fault?status=500", &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // Traffic finds the sick replica; five 500s in a row eject it.
    let ejected = wait_for("web/0 ejected", T, || {
        let _ = stack.get("/whoami");
        let r = replica(&stack.service("web")?, 0);
        (r["traffic"]["health"] == "ejected").then_some(r)
    });
    let reason = ejected["traffic"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("5xx"), "{ejected}");
    // While ejected, nobody gets its 500s.
    for i in 0..20 {
        let r = stack.get("/whoami").unwrap();
        if replica(&stack.service("web").unwrap(), 0)["traffic"]["health"] != "ejected" {
            break; // the ejection ran out; a 500 may come again
        }
        assert_eq!(
            r.status,
            200,
            "request {i} while web/0 is ejected: {}",
            r.text()
        );
    }
    // Well again: after its ejection time it takes traffic and answers 200.
    let r = http_with(direct, "GET", "/fault?status=0", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    wait_for("web/0 serving 200s again", T, || {
        let r = stack.get("/whoami").ok()?;
        (r.status == 200 && r.header("x-shoal-replica") == Some("web/0")).then_some(())
    });
    let events = stack.events();
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e["replica"] == 0)
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"ejected") && kinds.contains(&"readmitted"),
        "{events:?}"
    );
    let svc = stack.service("web").unwrap();
    assert!(
        svc["traffic"]["ejections_total"].as_u64().unwrap() >= 1,
        "{svc}"
    );
}

#[test]
fn with_every_replica_dead_clients_get_503_at_once_and_traffic_resumes_after() {
    // A 2 s back-off: long enough to see the service with no replica at all.
    let stack = three_replicas("{ policy: on-failure, delay: 2s }");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("web", 3, T);
    for i in 0..3 {
        kill(Pid::from_raw(pid_of(&stack, i)), Signal::SIGKILL).unwrap();
    }
    wait_for("no replica ready", T, || {
        (stack.service("web")?["ready"] == 0).then_some(())
    });
    for _ in 0..5 {
        let at = SystemTime::now();
        let r = stack.get("/whoami").unwrap();
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(
            elapsed(at) < Duration::from_secs(1),
            "503 must be prompt: {:?}",
            elapsed(at)
        );
    }
    wait_for("traffic resumes once replicas are back", T, || {
        (stack.get("/whoami").ok()?.status == 200).then_some(())
    });
}

/// The cells of `web/INDEX`'s row in `shoal status`.
fn status_row(stack: &Stack, index: u64) -> Vec<String> {
    let table = stdout(&stack.run(&["status"]));
    table
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("web/{index} ")))
        .unwrap_or_else(|| panic!("no web/{index} row in\n{table}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_hung_replica_under_light_traffic_shows_unhealthy_then_liveness_restarts_it() {
    // The README's `kill -STOP <a pid>` with one request at a time: no concurrent
    // requests for passive ejection to compare, so the supervisor's check takes it out.
    let service = "  web:
    command: [shoal, sample-app]
    replicas: 3
    health: { path: /health, liveness: 3s }
    restart: { policy: on-failure, delay: 100ms }
";
    let stack = Stack::new(service, &[("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("web", 3, T);
    let victim = pid_of(&stack, 2);
    kill(Pid::from_raw(victim), Signal::SIGSTOP).unwrap();
    let stopped = SystemTime::now();
    let mut slow = Vec::new();
    let mut requests = 0;
    let left_after = loop {
        let at = SystemTime::now();
        let r = stack.get("/whoami").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        requests += 1;
        if elapsed(at) > Duration::from_millis(200) {
            slow.push(elapsed(at));
        }
        if replica(&stack.service("web").unwrap(), 2)["state"] == "unready" {
            break elapsed(stopped);
        }
        assert!(elapsed(stopped) < T, "web/2 never left the balancer");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Out of rotation, and said so: the process runs, its check fails.
    let row = status_row(&stack, 2);
    assert_eq!(row[1..3], ["unready", "unhealthy"], "{row:?}");
    assert_eq!(row[3], victim.to_string(), "the same process: {row:?}");
    let status = stdout(&stack.run(&["status"]));
    assert!(
        status.contains("web/2: readiness failed 2 times: ")
            && status.contains("restarted if still failing 3s after the first failure (liveness)"),
        "{status}"
    );
    for _ in 0..6 {
        let r = stack.get("/whoami").unwrap();
        assert_eq!(r.status, 200);
        assert_ne!(r.header("x-shoal-replica"), Some("web/2"));
    }

    // Liveness: killed after 3 s of failing checks, restarted, serving again.
    let back = wait_for("web/2 restarted and ready", T, || {
        let r = replica(&stack.service("web")?, 2);
        (r["restarts"] == 1 && in_rotation(&r)).then_some(r)
    });
    let restarted_after = elapsed(stopped);
    assert_ne!(back["pid"], victim);
    assert!(
        restarted_after >= Duration::from_secs(3) && restarted_after < Duration::from_secs(8),
        "restarted {restarted_after:?} after SIGSTOP with `liveness: 3s`"
    );
    let row = status_row(&stack, 2);
    assert_eq!(row[1..3], ["ready", "healthy"], "{row:?}");
    let exits: Vec<Value> = stack
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "exited" && e["replica"] == 2)
        .collect();
    assert_eq!(exits.len(), 1, "{exits:?}");
    let message = exits[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("health check failing for 3s (liveness): ")
            && message.ends_with("killed (signal 9)"),
        "{message}"
    );
    eprintln!(
        "light traffic: web/2 out of rotation {left_after:?} after SIGSTOP ({requests} sequential \
         requests, {} over 200 ms: {slow:?}); restarted and ready {restarted_after:?} after",
        slow.len()
    );
}
