//! The Black Friday example (`examples/black-friday/`), shortened: its own stack file on
//! free ports (Redis included, run by shoal), sales posted through the gateway, one
//! aggregator crashing between counting a sale and acknowledging it, another SIGKILLed
//! mid-run; once the backlog is drained, every accepted sale is counted exactly once.
//!
//! Needs `redis-server` and python3's `redis` package (`scripts/test.sh` installs both);
//! skipped with a message without them, unless `SHOAL_REQUIRE_BROKERS` is set.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::support::{
    Stack, Up, elapsed, free_port, http, nothing_missing, poll, replace, stdout, tree, wait_for,
};

/// Sales posted, by this many client threads.
const SALES: u64 = 600;
const CLIENTS: u64 = 6;
const PRODUCTS: [&str; 3] = ["tv", "laptop", "phone"];

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/black-friday")
        .canonicalize()
        .unwrap()
}

/// Whether `redis-server` and python3 with `redis` are here; a missing one skips the test
/// with a message, or fails it with `SHOAL_REQUIRE_BROKERS` set.
fn prerequisites() -> bool {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let mut missing = Vec::new();
    if !works("redis-server", &["--version"]) {
        missing.push("redis-server (apt-get install redis-server)");
    }
    if !works("python3", &["-c", "import redis"]) {
        missing.push("python3's redis package (python3 -m pip install redis)");
    }
    nothing_missing(&missing)
}

/// The example's stack file, for error messages.
const FILE: &str = "examples/black-friday/shoal.yaml";

/// The example's stack file on free ports, with faster test settings: 10 ms per sale,
/// abandoned messages claimed after 2 s, and one replica crashing after counting its 40th
/// sale and before acknowledging it.
fn example_stack() -> Stack {
    let dir = example_dir();
    let yaml = std::fs::read_to_string(dir.join("shoal.yaml")).unwrap();
    let gateway = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let redis = free_port().to_string();
    let yaml = replace(
        &yaml,
        "listen: 127.0.0.1:8000",
        &format!("listen: {gateway}"),
        1,
        FILE,
    );
    let yaml = replace(
        &yaml,
        "listen: 127.0.0.1:8080",
        &format!("listen: {admin}"),
        1,
        FILE,
    );
    let yaml = replace(&yaml, "6391", &redis, 4, FILE);
    let yaml = replace(
        &yaml,
        "workdir: .",
        &format!("workdir: {}", dir.display()),
        2,
        FILE,
    );
    let yaml = replace(
        &yaml,
        r#"WORK_MS: "20""#,
        r#"WORK_MS: "10", CLAIM_IDLE_MS: "2000", CRASH_ONCE_AFTER: "40""#,
        1,
        FILE,
    );
    Stack::from_yaml(&yaml, &gateway, &admin)
}

/// The pipeline's figures from the ingest API (`GET /stats`, read from Redis).
fn stats(stack: &Stack) -> Option<Value> {
    let r = stack.get("/stats").ok()?;
    (r.status == 200).then(|| serde_json::from_slice(&r.body).ok())?
}

/// What the clients had accepted (202), per product: (sales, cents).
type Tally = BTreeMap<String, (u64, u64)>;

/// Post `SALES` sales from `CLIENTS` threads; each answered 202 is tallied.
fn post_sales(stack: &Stack) -> Tally {
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                s.spawn(move || {
                    let mut tally = Tally::new();
                    for i in (c..SALES).step_by(CLIENTS as usize) {
                        let product = PRODUCTS[(i % 3) as usize];
                        let cents = 100 + i % 7 * 25;
                        let sale = json!({
                            "id": format!("sale-{i}"),
                            "product": product,
                            "amount": cents as f64 / 100.0,
                        });
                        let r = http(stack.gateway, "POST", "/sales", Some(&sale)).unwrap();
                        assert_eq!(r.status, 202, "sale {i}: {}", r.text());
                        let answer: Value = serde_json::from_slice(&r.body).unwrap();
                        assert!(answer["stream_id"].is_string(), "{answer}");
                        let t = tally.entry(product.to_owned()).or_default();
                        t.0 += 1;
                        t.1 += cents;
                    }
                    tally
                })
            })
            .collect();
        let mut total = Tally::new();
        for client in clients {
            for (product, (n, cents)) in client.join().unwrap() {
                let t = total.entry(product).or_default();
                t.0 += n;
                t.1 += cents;
            }
        }
        total
    })
}

/// SIGKILL one ready aggregator replica, found with `shoal status --json`; its pid.
fn kill_an_aggregator(stack: &Stack, up: &Up) -> u32 {
    let status: Value = serde_json::from_str(&stdout(&stack.run(&["status", "--json"]))).unwrap();
    let aggregator = status
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "aggregator")
        .unwrap();
    let pid = aggregator["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "ready")
        .find_map(|r| r["pid"].as_u64())
        .expect("a ready aggregator with a pid") as u32;
    // Only a process this test started: one under its shoal.
    assert!(
        tree(up.pid).iter().any(|p| p.pid == pid),
        "pid {pid} is not under shoal"
    );
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    pid
}

#[test]
fn every_accepted_sale_is_counted_once_through_a_crash_and_a_kill() {
    if !prerequisites() {
        return;
    }
    // One budget for every wait: the whole test is over within a minute.
    let started = SystemTime::now();
    let left = || Duration::from_secs(60).saturating_sub(elapsed(started));
    let stack = example_stack();
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("ingest", 2, left());
    wait_for("an aggregator", left(), || {
        (stack.service("aggregator")?["ready"].as_u64()? >= 1).then_some(())
    });

    let (tally, killed) = std::thread::scope(|s| {
        let sales = s.spawn(|| post_sales(&stack));
        // Mid-run: some sales counted, more waiting.
        poll(
            "100 sales counted",
            left(),
            Duration::from_millis(50),
            &mut || (stats(&stack)?["processed"].as_u64()? >= 100).then_some(()),
        );
        let killed = kill_an_aggregator(&stack, &up);
        (sales.join().unwrap(), killed)
    });
    let accepted: u64 = tally.values().map(|t| t.0).sum();
    assert_eq!(accepted, SALES);

    // Drained: every accepted sale delivered (lag 0) and acknowledged (none pending), so
    // each was counted (a sale is acknowledged only once it is in the totals).
    let last = poll(
        "the backlog to drain",
        left(),
        Duration::from_millis(200),
        &mut || {
            let s = stats(&stack)?;
            (s["accepted"] == accepted && s["lag"] == 0 && s["pending"] == 0).then_some(s)
        },
    );
    assert_eq!(last["processed"], accepted, "sales counted: {last}");
    let counted: Tally = last["totals"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(product, t)| {
            let cents = (t["amount"].as_f64().unwrap() * 100.0).round() as u64;
            (product.clone(), (t["count"].as_u64().unwrap(), cents))
        })
        .collect();
    assert_eq!(counted, tally, "totals per product: counted vs accepted");
    // The crash between counting and acknowledging was redelivered and recognised.
    assert!(
        last["duplicates_skipped"].as_u64().unwrap() >= 1,
        "no redelivery was recognised: {last}"
    );
    let events = stack.events();
    let exited = |what: &str| {
        events.iter().any(|e| {
            e["kind"] == "exited"
                && e["service"] == "aggregator"
                && e["message"].as_str().is_some_and(|m| m.contains(what))
        })
    };
    assert!(
        exited("signal 9") && exited("code 1"),
        "pid {killed} killed, one crash: {events:?}"
    );

    // A clean stop: each aggregator finishes its batch and exits.
    up.signal(Signal::SIGTERM);
    assert!(up.wait_exit(left()).success());
    let logs = stack.path().join(".shoal/logs");
    let log = std::fs::read_to_string(shoal_supervise::log_file(&logs, "aggregator", 0)).unwrap();
    assert!(
        log.contains("SIGTERM: finishing the batch in hand"),
        "{log}"
    );
    assert!(log.contains("stopped after"), "{log}");
}
