//! What `shoal up` prints on the terminal: every event once, one line each; `--quiet`
//! keeps the addresses and the trouble.
use std::time::Duration;

use crate::sample_service;
use crate::support::*;

const T: Duration = Duration::from_secs(15);

/// Everything `shoal up` wrote, stdout then stderr.
fn terminal(up: &Up) -> String {
    format!("{}{}", up.stdout(), up.stderr())
}

#[test]
fn up_prints_each_event_once() {
    let stack = Stack::new(&sample_service("web", 1, ""), &[("/", "web")], "");
    // Not quiet, and logging at info level: the most `shoal up` ever prints by default.
    let mut up = Up::start(stack.path(), &["up"]);
    up.wait_listening(&stack);
    stack.wait_ready("web", 1, T);

    let out = stack.run(&["scale", "web", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let web = stack.wait_ready("web", 2, T);
    let second = &web["replicas"][1];
    let started = format!("pid {}, port {}", second["pid"], second["port"]);

    // The supervisor logs an event before it records it, so once the event line is on
    // stdout a repeated log line would already be on stderr.
    wait_for("the scaled and started events printed", T, || {
        let stdout = up.stdout();
        (stdout.contains("1 -> 2") && stdout.contains(&started)).then_some(())
    });
    let all = terminal(&up);
    assert_eq!(all.matches("1 -> 2").count(), 1, "scaled once:\n{all}");
    assert_eq!(all.matches(&started).count(), 1, "started once:\n{all}");
    let scaled = all.lines().find(|l| l.contains("1 -> 2")).unwrap();
    assert!(
        scaled.contains("web") && scaled.contains(" scaled "),
        "{scaled}"
    );
}

#[test]
fn quiet_up_prints_the_addresses_and_trouble_each_on_one_line() {
    let stack = Stack::new(
        &sample_service("web", 1, ""),
        &[("/", "web"), ("/api", "web")],
        "",
    );
    // RUST_LOG unset: the level is --quiet's own.
    let mut up = Up::start_logging(stack.path(), &["up", "--quiet"], None);
    up.wait_listening(&stack);
    stack.wait_ready("web", 1, T);

    // Routine: not printed.
    let out = stack.run(&["scale", "web", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stack.wait_ready("web", 2, T);

    // Trouble: a reload rejected with two problems, printed once, on one line.
    let file = stack.path().join("shoal.yaml");
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, original.replace("service: web", "service: wbe")).unwrap();
    let out = stack.run(&["reload"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    wait_for("the rejected reload printed", T, || {
        up.stdout().contains("reloadfailed").then_some(())
    });

    let all = terminal(&up);
    let rejected: Vec<&str> = all.lines().filter(|l| l.contains("reloadfailed")).collect();
    assert_eq!(rejected.len(), 1, "{all}");
    for problem in [
        "routes[0].service: unknown service `wbe`",
        "routes[1].service: unknown service `wbe`",
    ] {
        assert!(rejected[0].contains(problem), "{problem} in {all}");
    }
    assert!(rejected[0].contains(" ⏎ "), "{}", rejected[0]);
    assert_eq!(all.matches("unknown service `wbe`").count(), 2, "{all}");
    assert!(
        !all.contains("1 -> 2"),
        "routine events are not printed:\n{all}"
    );
    assert!(!all.contains(", port "), "no `started` events:\n{all}");
    assert!(!all.contains("web.0 |"), "no replica output:\n{all}");
    assert!(!all.contains("INFO"), "no info logs:\n{all}");
    // The banner's addresses stay; the hints go.
    let banner = up.stdout();
    assert!(
        banner.contains(&format!("http://{}/", stack.gateway)),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("http://{}/api/v1/services", stack.admin)),
        "{banner}"
    );
    assert!(!banner.contains("try "), "{banner}");

    // The API keeps the message as it is; `shoal events` shows it on one line.
    let events = stack.events();
    let event = events
        .iter()
        .find(|e| e["kind"] == "reloadfailed")
        .expect("a reloadfailed event");
    let message = event["message"].as_str().unwrap();
    assert_eq!(message.lines().count(), 2, "{message}");
    assert!(events.iter().all(|e| e["kind"] != "reloaded"), "{events:?}");
    let out = stack.run(&["events"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&out);
    let rows: Vec<&str> = listed.lines().filter(|l| l.contains("wbe")).collect();
    assert_eq!(rows.len(), 1, "{listed}");
    assert!(rows[0].contains("reloadfailed"), "{listed}");
}
