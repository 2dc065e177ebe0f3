//! The other subcommands and the start-up failures users meet first.
use std::net::TcpListener;
use std::time::Duration;

use crate::sample_service;
use crate::support::*;

const T: Duration = Duration::from_secs(15);

#[test]
fn logs_are_captured_per_replica() {
    let stack = Stack::new(&sample_service("web", 2, ""), &[("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("web", 2, T);
    let out = wait_for(
        "both replicas' start-up lines in `shoal logs web`",
        T,
        || {
            let out = stack.run(&["logs", "web"]);
            let text = stdout(&out);
            (out.status.success()
                && text.contains("web.0 | sample-app web#0 listening on")
                && text.contains("web.1 | sample-app web#1 listening on"))
            .then_some(text)
        },
    );
    let logs = stack.path().join(".shoal/logs");
    assert!(shoal_supervise::log_file(&logs, "web", 0).exists(), "{out}");

    let one = stack.run(&["logs", "web", "--replica", "1"]);
    assert!(one.status.success(), "{}", stderr(&one));
    let text = stdout(&one);
    assert!(text.contains("sample-app web#1 listening on"), "{text}");
    assert!(
        !text.contains("web#0"),
        "--replica 1 shows replica 1 only: {text}"
    );
    assert!(!text.contains("web.1 | "), "one replica: no prefix: {text}");

    let none = stack.run(&["logs", "nope"]);
    assert!(!none.status.success());
    assert!(
        stderr(&none).contains("no service named `nope`"),
        "{}",
        stderr(&none)
    );
}

#[test]
fn logs_rotate_at_the_configured_size() {
    // 256 KiB files, 2 kept; the replica prints about 1.2 MB before it starts serving.
    let services = "  chatty:
    command: [sh, -c, 'yes \"a line of replica output, over and over, to fill the log\" | head -n 20000; exec \"$SHOAL_BIN\" sample-app']
    env: { SHOAL_BIN: \"@SHOAL@\" }
    health: { path: /health, interval: 100ms }
    stop: { drain_timeout: 1s, grace: 1s }
    logs: { max_size: 256KiB, keep: 2 }
";
    let stack = Stack::new(services, &[("/", "chatty")], "");
    let check = stack.run(&["check"]);
    assert!(check.status.success(), "{}", stderr(&check));
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("chatty", 1, T);
    let dir = stack.path().join(".shoal/logs");
    let file = |rotated: u32| match rotated {
        0 => shoal_supervise::log_file(&dir, "chatty", 0),
        n => shoal_supervise::rotated_log_file(&dir, "chatty", 0, n),
    };
    // Ready means the output was written (the sample app starts after it).
    wait_for("the start-up line after the output", T, || {
        std::fs::read_to_string(file(0))
            .ok()?
            .contains("listening on")
            .then_some(())
    });
    assert!(file(1).exists());
    assert!(file(2).exists());
    assert!(!file(3).exists(), "keep: 2");
    let mut total = 0;
    for rotated in [0, 1, 2] {
        let len = std::fs::metadata(file(rotated)).unwrap().len();
        assert!(
            len <= 256 * 1024,
            "{}: {len} bytes",
            file(rotated).display()
        );
        total += len;
    }
    assert!(total <= 3 * 256 * 1024, "{total}");
    assert!(total >= 2 * 256 * 1024, "{total}");
}

#[test]
fn a_taken_gateway_port_is_named_and_fails_fast() {
    // The test holds the port itself: no other process can have it.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let stack = Stack::with_addrs(
        &sample_service("web", 1, ""),
        &[("/", "web")],
        "",
        taken.local_addr().unwrap(),
        admin,
    );
    let mut up = stack.up();
    let status = up.wait_exit(Duration::from_secs(5));
    assert!(!status.success());
    let err = up.stderr();
    assert!(err.contains(&stack.gateway.to_string()), "{err}");
    assert!(elapsed(up.started) < Duration::from_secs(5));
}

#[test]
fn a_taken_admin_port_is_named_and_fails_fast() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let gateway = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let stack = Stack::with_addrs(
        &sample_service("web", 1, ""),
        &[("/", "web")],
        "",
        gateway,
        taken.local_addr().unwrap(),
    );
    let mut up = stack.up();
    let status = up.wait_exit(Duration::from_secs(5));
    assert!(!status.success());
    let err = up.stderr();
    assert!(
        err.contains(&format!("cannot listen on {} (admin API)", stack.admin)),
        "{err}"
    );
    assert!(err.contains("admin.listen"), "{err}");
}

#[test]
fn check_reports_every_problem_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "services:
  web:
    command: [shoal, sample-app]
    restart: { policy: sometimes }
    health: { interval: soon }
    logs: { max_size: 12 parsecs }
routes:
  - match: PathPrefix(`/`)
    service: wbe
",
    )
    .unwrap();
    let out = run_in(dir.path(), &["check", "-f", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("bad.yaml:4:"), "restart.policy: {err}");
    assert!(err.contains("bad.yaml:5:"), "health.interval: {err}");
    assert!(
        err.contains("bad.yaml:6:23: services.web.logs.max_size: `12 parsecs` is not a size"),
        "{err}"
    );
    assert!(err.contains("bad.yaml:9:"), "unknown service: {err}");
    assert!(err.contains("4 problems found"), "{err}");
    assert!(err.contains("sometimes"), "{err}");
    // `up` refuses the same file with the same code, starting nothing.
    let out = run_in(dir.path(), &["up", "-f", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing was started"));
}

#[test]
fn init_writes_a_stack_that_check_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("shoal.yaml").exists());
    let out = run_in(dir.path(), &["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("shoal.yaml: ok"), "{}", stdout(&out));
    // A second init does not overwrite it.
    let out = run_in(dir.path(), &["init"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"));
}

#[test]
fn an_exposed_admin_api_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("shoal.yaml"),
        format!(
            "admin:\n  listen: 0.0.0.0:{port}\nservices:\n  web:\n    command: [shoal, sample-app]\nroutes:\n  - match: PathPrefix(`/`)\n    service: web\n"
        ),
    )
    .unwrap();
    for args in [&["check"][..], &["up"][..]] {
        let out = run_in(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("shoal.yaml:2:"), "{err}");
        assert!(err.contains("admin.token"), "{err}");
        assert!(err.contains("reachable beyond this machine"), "{err}");
    }
}

#[test]
fn admin_commands_say_when_shoal_is_not_running() {
    let stack = Stack::new(&sample_service("web", 1, ""), &[("/", "web")], "");
    for args in [
        &["status"][..],
        &["scale", "web", "2"],
        &["events"],
        &["logs", "web"],
        &["down"],
        &["restart", "web"],
    ] {
        let out = stack.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("cannot reach the admin API at {}", stack.admin)),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn reload_swaps_routes_and_a_bad_file_keeps_the_old_config() {
    let stack = Stack::new(&sample_service("web", 1, ""), &[("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("web", 1, T);
    let file = stack.path().join("shoal.yaml");
    let original = std::fs::read_to_string(&file).unwrap();
    let path_seen = |p: &str| stack.get(p).unwrap().text();
    assert!(
        path_seen("/v2/whoami").contains("hello from web"),
        "no /v2 route yet"
    );

    // A bad file: `shoal reload` exits 2 with file:line:column, and nothing changes.
    std::fs::write(&file, original.replace("service: web", "service: wbe")).unwrap();
    let out = stack.run(&["reload"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("shoal.yaml:"), "{err}");
    assert!(
        err.contains("routes[0].service: unknown service `wbe`; did you mean `web`?"),
        "{err}"
    );
    assert_eq!(
        stack.get("/whoami").unwrap().status,
        200,
        "the old config keeps serving"
    );

    // A good file through `shoal reload`: the new route strips /v2.
    let with_v2 = format!(
        "{original}  - match: PathPrefix(`/v2`)\n    strip_prefix: /v2\n    service: web\n"
    );
    std::fs::write(&file, &with_v2).unwrap();
    let out = stack.run(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("reloaded"), "{}", stdout(&out));
    assert!(
        path_seen("/v2/whoami").contains("\"path\":\"/whoami\""),
        "stripped by the new route"
    );

    // SIGHUP does the same: back to the original file, /v2 is no longer stripped.
    std::fs::write(&file, &original).unwrap();
    up.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for("SIGHUP reload applied", T, || {
        path_seen("/v2/whoami")
            .contains("hello from web")
            .then_some(())
    });
    // The new table serves before the reload's event is recorded: wait for the third.
    let reload_kinds = || -> Vec<String> {
        stack
            .events()
            .into_iter()
            .filter(|e| e["service"] == "")
            .map(|e| e["kind"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    let kinds = wait_for("the SIGHUP reload's event", T, || {
        let kinds = reload_kinds();
        (kinds.len() >= 3).then_some(kinds)
    });
    assert_eq!(
        kinds,
        ["reloadfailed", "reloaded", "reloaded"],
        "{:?}",
        stack.events()
    );
    assert!(up.try_wait().is_none(), "shoal still running");
}
