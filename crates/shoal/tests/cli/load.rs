//! `shoal load`, the real binary: against a real `shoal up` (the spread over its replicas,
//! JSON, the HTML report, replica counts from the admin API), bad input, and Ctrl-C.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::sample_service;
use crate::support::*;

const T: Duration = Duration::from_secs(15);

#[test]
fn load_shows_the_spread_over_shoal_replicas() {
    let stack = Stack::new(&sample_service("web", 2, ""), &[("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("web", 2, T);
    let html = stack.path().join("load.html");
    let gateway = format!("http://{}/", stack.gateway);
    let admin = format!("http://{}", stack.admin);
    let out = stack.run(&[
        "load",
        "--rate",
        "200",
        "-d",
        "1500ms",
        "-c",
        "4",
        "-t",
        "1",
        "--json",
        "--report",
        html.to_str().unwrap(),
        "--admin",
        &admin,
        &gateway,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(r["plan"]["model"], "open");
    assert_eq!(r["requests"]["sent"], 300, "{r:#}");
    assert_eq!(r["requests"]["ok"], 300, "{r:#}");
    assert_eq!(r["status_codes"]["200"], 300);
    let replicas = r["spread"]["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 2, "both replicas served: {r:#}");
    let counts: Vec<u64> = replicas
        .iter()
        .map(|x| x["requests"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 300);
    assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
    let verdict = r["spread"]["verdict"]["text"].as_str().unwrap();
    assert!(verdict.starts_with("balanced") || verdict.starts_with("unbalanced"));
    let scaling = r["scaling"].as_array().unwrap();
    assert!(!scaling.is_empty(), "the admin API was polled");
    assert_eq!(scaling[0]["services"]["web"]["ready"], 2);
    assert!(r["latency"]["p99"].as_f64().unwrap() >= r["latency"]["p50"].as_f64().unwrap());
    assert!(r["latency_uncorrected"]["count"] == 300);

    // The HTML page carries the same numbers as the JSON (its summary is the same table
    // that is printed without --json), charts inline, and nothing fetched from elsewhere.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("300 sent, 300 ok, 0 failed"), "{page}");
    for x in replicas {
        let name = x["name"].as_str().unwrap();
        let count = x["requests"].as_u64().unwrap().to_string();
        let share = format!("{:.1}%", x["share"].as_f64().unwrap() * 100.0);
        let row = page.lines().find(|l| l.trim_start().starts_with(name));
        let row = row.unwrap_or_else(|| panic!("a row for {name} in\n{page}"));
        assert!(
            row.contains(&count) && row.contains(&share),
            "{row}: {count} {share}"
        );
    }
    assert!(page.contains(verdict));
    assert!(page.contains("<svg") && page.contains("Ready replicas per service"));
    assert!(!page.contains("<script src") && !page.contains("https://"));

    // The summary table of a run with the same shape.
    let out = stack.run(&["load", "-n", "100", "-c", "2", &gateway]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("100 sent, 100 ok, 0 failed"), "{text}");
    assert!(text.contains("spread     "), "{text}");
}

#[test]
fn load_bad_input_names_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (args, flag) in [
        (&["--rate", "0", "http://127.0.0.1:9/"][..], "--rate"),
        (&["--stages", "10s", "http://127.0.0.1:9/"][..], "--stages"),
        (&["-H", "no-colon", "http://127.0.0.1:9/"][..], "--header"),
        (&["-d", "soon", "http://127.0.0.1:9/"][..], "--duration"),
        (&["ftp://127.0.0.1:9/"][..], "URL"),
    ] {
        let mut all = vec!["load"];
        all.extend_from_slice(args);
        let out = run_in(dir.path(), &all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("error: {flag}: ")),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // Nothing listens there: said before any load is sent.
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let out = run_in(dir.path(), &["load", &format!("http://{addr}/")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
}

/// A tiny keep-alive HTTP/1.1 server that counts requests.
fn counting_server() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let c = c.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = s.read(&mut chunk) {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        c.fetch_add(1, Ordering::SeqCst);
                        let answer =
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Shoal-Replica: t\r\n\r\nok";
                        if s.write_all(answer).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, count)
}

#[test]
fn ctrl_c_prints_the_partial_summary() {
    let (addr, count) = counting_server();
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out");
    let mut child = Command::new(SHOAL)
        .args([
            "load",
            "-d",
            "60s",
            "-c",
            "2",
            "-t",
            "1",
            &format!("http://{addr}/"),
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("load to reach the server", T, || {
        (count.load(Ordering::SeqCst) >= 200).then_some(())
    });
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let status = wait_for("shoal load to stop", T, || child.try_wait().unwrap());
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(status.success(), "{status}: {text}");
    assert!(text.contains("(interrupted: partial results)"), "{text}");
    assert!(
        text.contains("spread     one replica (t) served every answer"),
        "{text}"
    );
}
