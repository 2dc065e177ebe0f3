//! Figures, printed rather than asserted (they depend on the machine). Run them on a
//! release build:
//!
//! ```text
//! cargo test --release -p shoal --test cli -- --ignored --nocapture figures
//! ```
use std::time::{Duration, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::support::*;

const T: Duration = Duration::from_secs(30);

/// The demo stack (`shoal init`) on free ports, in a fresh folder.
fn demo() -> Stack {
    let stack = Stack::new("", &[], "");
    let out = stack.run(&["init", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = stack.path().join("shoal.yaml");
    let yaml = std::fs::read_to_string(&path)
        .unwrap()
        .replace("127.0.0.1:8000", &stack.gateway.to_string())
        .replace("127.0.0.1:8080", &stack.admin.to_string());
    std::fs::write(&path, yaml).unwrap();
    stack
}

fn ready_total(stack: &Stack) -> Option<u64> {
    let all = stack.admin_get("/api/v1/services")?;
    Some(
        all.as_array()?
            .iter()
            .filter_map(|s| s["ready"].as_u64())
            .sum(),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{name}: min {} / median {} / max {} over {} runs",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1]),
        v.len()
    );
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
#[ignore = "figures: run on a release build with --ignored --nocapture"]
fn figures() {
    // 1. `shoal up` (demo stack) until all 5 replicas are ready, polling every 20 ms.
    let mut startup = Vec::new();
    for _ in 0..5 {
        let stack = demo();
        let mut up = stack.up();
        let t0 = up.started;
        poll("5 ready", T, Duration::from_millis(20), &mut || {
            assert!(up.try_wait().is_none(), "{}", up.stderr());
            (ready_total(&stack)? == 5).then_some(())
        });
        startup.push(elapsed(t0));
    }
    summary("up → 5 demo replicas ready", startup);

    // 2. kill -9 of a replica → new pid visible → ready again (poll every 5 ms).
    let stack = demo();
    let mut up = stack.up();
    up.wait_listening(&stack);
    poll("5 ready", T, Duration::from_millis(20), &mut || {
        (ready_total(&stack)? == 5).then_some(())
    });
    let (mut to_pid, mut to_ready) = (Vec::new(), Vec::new());
    for index in 0..3u64 {
        let users = stack.service("users").unwrap();
        let pid_of = |s: &Value| s["replicas"][index as usize]["pid"].as_u64();
        let old = pid_of(&users).unwrap();
        let t0 = SystemTime::now();
        kill(Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
        poll("new pid", T, Duration::from_millis(5), &mut || {
            let p = pid_of(&stack.service("users")?)?;
            (p != old).then_some(())
        });
        to_pid.push(elapsed(t0));
        poll("ready again", T, Duration::from_millis(5), &mut || {
            let s = stack.service("users")?;
            (s["replicas"][index as usize]["state"] == "ready").then_some(())
        });
        to_ready.push(elapsed(t0));
    }
    summary(
        "kill -9 → restarted (new pid; demo restart delay 500ms)",
        to_pid,
    );
    summary("kill -9 → ready again", to_ready);

    // 3. shoal's own memory with 20 replicas. (`music` is autoscaled, 1 to 6, so the
    // count is set on `users`.)
    let before = vm_rss_kib(up.pid);
    let (code, body) = stack.admin_post("/api/v1/services/users/scale", &json!({"replicas": 19}));
    assert_eq!(code, 200, "{body}");
    let (code, body) = stack.admin_post("/api/v1/services/music/scale", &json!({"replicas": 1}));
    assert_eq!(code, 200, "{body}");
    poll("20 ready", T, Duration::from_millis(20), &mut || {
        (ready_total(&stack)? == 20).then_some(())
    });
    // A little traffic so the gateway's pools exist.
    for _ in 0..200 {
        assert_eq!(stack.get("/api/users/whoami").unwrap().status, 200);
    }
    println!(
        "shoal VmRSS: {before} KiB with 5 replicas, {} KiB with 20 (users 19 + music 1)",
        vm_rss_kib(up.pid)
    );
}
