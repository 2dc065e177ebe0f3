//! Autoscaling through the real binary: sample-app replicas with a fixed worker pool
//! (`--capacity 2`), so their latency grows with their load, under a load that steps up
//! and down; and a service that scales to zero and wakes on a request.
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::support::*;

const T: Duration = Duration::from_secs(30);

/// A service of replicas that serve two /sleep requests at once, autoscaled on
/// concurrency 2 per replica between `min` and 4, with a short scale-down window for tests.
/// `extra` goes into the `autoscale:` block; `replicas` is the starting count.
fn capacity_two(min: u32, replicas: u32, extra: &str) -> Stack {
    let service = format!(
        "  api:
    command: [shoal, sample-app, --capacity, '2']
    replicas: {replicas}
    health: {{ path: /health, interval: 100ms }}
    stop: {{ drain_timeout: 2s, grace: 1s }}
    autoscale:
      min: {min}
      max: 4
      concurrency: 2
      scale_down: {{ stabilization: 2s, policies: [{{ percent: 100, period: 1s }}] }}
{extra}"
    );
    Stack::new(&service, &[("/", "api")], "")
}

fn sleep_50ms(_: usize, _: u64) -> Req {
    Req::get("/sleep?ms=50")
}

fn desired(stack: &Stack) -> Option<u64> {
    stack.service("api")?["desired"].as_u64()
}

fn autoscaler_events(stack: &Stack) -> Vec<Value> {
    stack
        .events()
        .into_iter()
        .filter(|e| {
            e["kind"] == "scaled"
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("autoscaler")
        })
        .collect()
}

#[test]
fn a_load_step_scales_up_the_p99_recovers_and_it_scales_back_without_failures() {
    let stack = capacity_two(1, 1, "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("api", 1, T);

    // 1×: two clients, exactly the capacity of one replica.
    let base = Load::start(&stack, 2, sleep_50ms);
    base.wait_requests(40);
    assert_eq!(desired(&stack), Some(1), "{:?}", stack.service("api"));

    // 4×: eight clients. One replica queues them (four rounds of 50 ms).
    let step = SystemTime::now();
    let burst = Load::start(&stack, 6, sleep_50ms);
    let scaled_at = wait_for("a scale-up decision", T, || {
        (desired(&stack)? > 1).then(SystemTime::now)
    });
    let decided_after = scaled_at.duration_since(step).unwrap_or_default();
    let grown = wait_for("four replicas ready", T, || {
        let s = stack.service("api")?;
        (s["ready"] == 4).then(SystemTime::now)
    });
    // Let the queues drain, then measure a fresh window.
    let recovered_from = grown + Duration::from_millis(500);
    wait_for("a second of traffic on four replicas", T, || {
        (elapsed(recovered_from) > Duration::from_secs(2)).then_some(())
    });
    burst.wait_requests(40);
    let burst_tally = burst.finish();
    let base_tally = base.finish();
    let p99_overloaded = base_tally
        .p99_since(step)
        .zip(burst_tally.p99_since(step))
        .map(|(a, b)| a.max(b))
        .unwrap();
    let p99_after = base_tally
        .p99_since(recovered_from)
        .zip(burst_tally.p99_since(recovered_from))
        .map(|(a, b)| a.max(b))
        .unwrap();

    // Load gone: back to min after the 2 s window.
    let back = wait_for("back to one replica", T, || {
        let s = stack.service("api")?;
        (s["desired"] == 1 && s["ready"] == 1).then_some(s)
    });
    for (name, t) in [("1×", &base_tally), ("4×", &burst_tally)] {
        assert!(
            t.failures.is_empty(),
            "{name}: {} failed: {:?}",
            t.failures.len(),
            &t.failures[..t.failures.len().min(5)]
        );
    }
    assert!(
        p99_after < Duration::from_millis(400) && p99_after * 2 < p99_overloaded,
        "p99 must recover: {p99_overloaded:?} while overloaded, {p99_after:?} on four replicas"
    );
    let events = autoscaler_events(&stack);
    assert!(events.len() >= 2, "up and down: {events:?}");
    assert!(
        events[0]["message"]
            .as_str()
            .unwrap()
            .contains("concurrency"),
        "the reason names the metric: {events:?}"
    );
    assert!(back["autoscale"]["targets"].as_str().is_some(), "{back}");
    eprintln!(
        "scale-up decided {decided_after:?} after the step; p99 {p99_overloaded:?} overloaded → {p99_after:?}"
    );
}

#[test]
fn a_service_at_zero_answers_its_first_request_after_a_cold_start() {
    let stack = capacity_two(0, 0, "      scale_to_zero_after: 2s\n");
    let mut up = stack.up();
    up.wait_listening(&stack);
    let svc = stack.service("api").unwrap();
    assert_eq!(svc["desired"], 0, "{svc}");
    // The first request is held while a replica starts, then answered.
    let first = stack.get("/whoami").unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-shoal-replica"), Some("api/0"));
    // Idle: back to zero, then woken again.
    wait_for("scaled back to zero when idle", T, || {
        (desired(&stack)? == 0 && stack.service("api")?["ready"] == 0).then_some(())
    });
    let again = stack.get("/whoami").unwrap();
    assert_eq!(again.status, 200, "{}", again.text());
    let events = autoscaler_events(&stack);
    assert!(
        events
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("a request arrived")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("idle")),
        "{events:?}"
    );
}

#[test]
fn manual_scale_of_an_autoscaled_service_is_clamped_to_its_bounds() {
    let stack = capacity_two(1, 1, "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("api", 1, T);
    let out = stack.run(&["scale", "api", "9"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("scaled to 4 replicas"), "{text}");
    assert!(text.contains("autoscaled between 1 and 4"), "{text}");
    assert_eq!(desired(&stack), Some(4));
    let status = stdout(&stack.run(&["status"]));
    assert!(status.contains("AUTOSCALED"), "{status}");
}
