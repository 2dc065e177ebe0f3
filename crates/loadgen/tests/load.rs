//! `shoal load` against in-process servers whose behaviour is known: the report must match
//! what the servers did. Every run is bounded (a few seconds at most) and single-threaded.
mod support;

use std::time::Duration;

use support::{Behaviour, Server, ca_file, load, plan};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_10ms_server_reads_10ms_at_the_median() {
    let srv = Server::start(Behaviour {
        delay: ms(10),
        ..Behaviour::default()
    })
    .await;
    let url = srv.url("/");
    let r = load(&["-c", "4", "-n", "120", "-t", "1", &url]).await;
    assert_eq!(r.requests.sent, 120);
    assert_eq!(r.requests.ok, 120, "{}", r.summary());
    assert_eq!(srv.count(), 120, "the server saw every request once");
    assert_eq!(r.latency.count, 120);
    assert!(
        (9.5..60.0).contains(&r.latency.p50),
        "p50 {} ms\n{}",
        r.latency.p50,
        r.summary()
    );
    assert!(r.latency.min >= 9.5, "{}", r.summary());
    assert!(r.latency_uncorrected.is_none(), "closed model: one latency");
    assert_eq!(r.status_codes["200"], 120);
    assert_eq!(r.throughput.bytes, 120 * 6);
    // Four connections, each one request per ≥10 ms: at most 400 req/s.
    assert!(r.throughput.requests_per_sec <= 400.0, "{}", r.summary());

    // The JSON and the summary are two views of one report.
    let json = serde_json::to_value(&r).unwrap();
    let text = r.summary();
    let sent = &json["requests"]["sent"];
    assert!(
        text.contains(&format!(
            "{sent} sent, {} ok, 0 failed",
            json["requests"]["ok"]
        )),
        "{text}"
    );
    let p50 = json["latency"]["p50"].as_f64().unwrap();
    let p50 = shoal_loadgen::report::ms(p50);
    assert!(text.contains(&format!("p50 {p50}")), "{text}");
    assert!(
        text.contains(&format!("200 ×{}", json["status_codes"]["200"])),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_stall_shows_in_corrected_p99_only() {
    // 200 req/s for 3 s on 2 connections; the 200th request stalls the server for 1 s.
    // Only the 2 requests in flight see the stall from their send (uncorrected), but the
    // ~200 due during it wait for it (corrected), as users arriving then would.
    let srv = Server::start(Behaviour {
        stall: Some((200, ms(1000))),
        ..Behaviour::default()
    })
    .await;
    let url = srv.url("/");
    let r = load(&["--rate", "200", "-d", "3s", "-c", "2", "-t", "1", &url]).await;
    let u = r.latency_uncorrected.expect("open model reports both");
    assert!(
        r.latency.p99 >= 500.0,
        "corrected p99 {}\n{}",
        r.latency.p99,
        r.summary()
    );
    assert!(r.latency.max >= 900.0, "{}", r.summary());
    // Far below the corrected p99 (≥ 500 ms); slack for a busy machine's scheduler.
    assert!(u.p99 < 400.0, "uncorrected p99 {}\n{}", u.p99, r.summary());
    assert!(
        u.max >= 900.0,
        "the stalled requests themselves: {}",
        r.summary()
    );
    assert_eq!(r.plan.scheduled, Some(600));
    assert_eq!(r.requests.sent + r.requests.unsent, 600, "{}", r.summary());
    assert_eq!(srv.count(), r.requests.sent);
    assert!(r.generator.waited_for_connection > 100, "{}", r.summary());
    assert!(
        r.generator
            .warnings
            .iter()
            .any(|w| w.contains("waited for a free connection")),
        "{:?}",
        r.generator.warnings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_replica_counts_match_the_servers_own() {
    let mut servers = Vec::new();
    for name in ["r1", "r2", "r3"] {
        servers.push(
            Server::start(Behaviour {
                replica: Some(name.into()),
                ..Behaviour::default()
            })
            .await,
        );
    }
    let urls: Vec<String> = servers.iter().map(|s| s.url("/")).collect();
    let mut args = vec!["-c", "6", "-n", "600", "-t", "2"];
    args.extend(urls.iter().map(String::as_str));
    let r = load(&args).await;
    assert_eq!(r.requests.ok, 600);
    assert_eq!(r.spread.header, "x-shoal-replica");
    for (row, srv) in r.spread.replicas.iter().zip(&servers) {
        assert_eq!(row.requests, srv.count(), "{}: {}", row.name, r.summary());
    }
    let names: Vec<&str> = r.spread.replicas.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["r1", "r2", "r3"]);
    let v = r.spread.verdict.as_ref().unwrap();
    assert!(v.balanced, "{}", r.summary());
    assert!(
        r.summary().contains("spread     balanced"),
        "{}",
        r.summary()
    );

    // Weights 1:2:3 — the spread follows them, and the verdict says it is uneven.
    let weighted = [
        format!("{}@1", urls[0]),
        format!("{}@2", urls[1]),
        format!("{}@3", urls[2]),
    ];
    let before: Vec<u64> = servers.iter().map(Server::count).collect();
    let mut args = vec![
        "-c",
        "6",
        "-n",
        "600",
        "-t",
        "1",
        "--replica-header",
        "X-Shoal-Replica",
    ];
    args.extend(weighted.iter().map(String::as_str));
    let r = load(&args).await;
    for (i, (row, srv)) in r.spread.replicas.iter().zip(&servers).enumerate() {
        assert_eq!(row.requests, srv.count() - before[i], "{}", r.summary());
        let expect = (i + 1) as f64 / 6.0;
        assert!((row.share - expect).abs() < 0.02, "{}", r.summary());
        assert_eq!(r.urls[i].requests, row.requests);
    }
    let v = r.spread.verdict.as_ref().unwrap();
    assert!(!v.balanced && v.max_deviation > 0.4, "{}", r.summary());
    // r1 (1/6) and r3 (1/2) are both 50 % off an even third.
    assert!(
        v.text.starts_with("unbalanced: r1 is") || v.text.starts_with("unbalanced: r3 is"),
        "{}",
        v.text
    );
}

/// (path, number), sorted by path.
type PerPath = Vec<(String, usize)>;

/// Requests per path, and the longest run of each path, in the order the server took them.
fn counts_and_runs(paths: &[String]) -> (PerPath, PerPath) {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut runs: std::collections::BTreeMap<String, usize> = Default::default();
    let mut run = 0;
    for (i, p) in paths.iter().enumerate() {
        *counts.entry(p.clone()).or_default() += 1;
        run = if i > 0 && paths[i - 1] == *p {
            run + 1
        } else {
            1
        };
        let longest = runs.entry(p.clone()).or_default();
        *longest = (*longest).max(run);
    }
    (counts.into_iter().collect(), runs.into_iter().collect())
}

fn pairs(xs: &[(&str, usize)]) -> PerPath {
    xs.iter().map(|&(p, n)| (p.to_owned(), n)).collect()
}

// A current-thread runtime: the test server takes requests in the order they reach it
// (one event loop), so the order it records is the order the generator sent them.
#[tokio::test]
async fn weighted_urls_interleave_smoothly_in_the_open_model() {
    let srv = Server::start(Behaviour::default()).await;
    let (a, b, c) = (srv.url("/a@8"), srv.url("/b@4"), srv.url("/c@1"));
    // 20 connections, 5 ms apart: each connection sends every 20th request. With a picker
    // per connection, all 20 sent `a` first, then `b`: runs of 20 (issue 23).
    let r = load(&[
        "--rate", "200", "-n", "130", "-c", "20", "-t", "1", &a, &b, &c,
    ])
    .await;
    assert_eq!(r.requests.ok, 130, "{}", r.summary());
    let paths = srv.paths();
    let (counts, runs) = counts_and_runs(&paths);
    assert_eq!(
        counts,
        pairs(&[("/a", 80), ("/b", 40), ("/c", 10)]),
        "{paths:?}"
    );
    let per_url: Vec<u64> = r.urls.iter().map(|u| u.requests).collect();
    assert_eq!(per_url, [80, 40, 10]);
    // nginx's sequence for 8:4:1 is a b a a b a c a b a a b a: at most two `a` in a row.
    assert_eq!(runs, pairs(&[("/a", 2), ("/b", 1), ("/c", 1)]), "{paths:?}");
    for window in paths.windows(13) {
        let n = |p: &str| window.iter().filter(|x| *x == p).count();
        assert_eq!((n("/a"), n("/b"), n("/c")), (8, 4, 1), "{window:?}");
    }

    // The issue's run: 120 requests over 50 connections gave a=70, b=50, c=0. Requests
    // 0–119 are 9 periods of 13 (72/36/9) and a b a: 74/37/9.
    let r = load(&[
        "--rate", "1000", "-n", "120", "-c", "50", "-t", "2", &a, &b, &c,
    ])
    .await;
    let per_url: Vec<u64> = r.urls.iter().map(|u| u.requests).collect();
    assert_eq!(per_url, [74, 37, 9], "{}", r.summary());
}

#[tokio::test]
async fn weighted_urls_interleave_smoothly_in_the_closed_model() {
    let srv = Server::start(Behaviour::default()).await;
    let (a, b, c) = (srv.url("/a@8"), srv.url("/b@4"), srv.url("/c@1"));
    let r = load(&["-n", "130", "-c", "4", "-t", "1", &a, &b, &c]).await;
    assert_eq!(r.requests.ok, 130, "{}", r.summary());
    let paths = srv.paths();
    let (counts, _) = counts_and_runs(&paths);
    // Each of requests 0–129 is sent once, and request i goes to the URL of position i of
    // the sequence: the shares are exact, whichever connection sent what.
    assert_eq!(
        counts,
        pairs(&[("/a", 80), ("/b", 40), ("/c", 10)]),
        "{paths:?}"
    );
    // Runs after the first 4 requests: those 4 take their numbers before their
    // connections are open, and the handshakes may finish in any order. From then on, one
    // event loop sends each request as soon as it takes its number, so the server sees
    // them in order. With a picker per connection, the 4 connections sent the same URL
    // in turn: runs of 4 and 8.
    let (_, runs) = counts_and_runs(&paths[4..]);
    assert_eq!(runs, pairs(&[("/a", 2), ("/b", 1), ("/c", 1)]), "{paths:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_gateways_header_names_replicas_too() {
    let srv = Server::start(Behaviour {
        replica: Some("10.0.0.7:8080".into()),
        header: Some("x-upstream"),
        ..Behaviour::default()
    })
    .await;
    let url = srv.url("/");
    let r = load(&[
        "-n",
        "20",
        "-c",
        "2",
        "--replica-header",
        "x-upstream",
        &url,
    ])
    .await;
    assert_eq!(r.spread.replicas.len(), 1);
    assert_eq!(r.spread.replicas[0].name, "10.0.0.7:8080");
    assert_eq!(r.spread.replicas[0].requests, 20);
    let r = load(&["-n", "20", "-c", "2", &url]).await;
    assert!(r.spread.replicas.is_empty());
    assert_eq!(r.spread.without_header, 20);
    assert!(r.spread.verdict.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_change_the_rate_as_asked() {
    let srv = Server::start(Behaviour::default()).await;
    let url = srv.url("/");
    // 100/s for 1 s, then a ramp to 300/s over 1 s (200 on average), then 300/s.
    let r = load(&[
        "--rate",
        "100",
        "--stages",
        "1s:100,1s:300,1s:300",
        "-c",
        "20",
        "-t",
        "1",
        &url,
    ])
    .await;
    assert_eq!(r.plan.scheduled, Some(600));
    assert_eq!(r.requests.sent, 600, "{}", r.summary());
    assert_eq!(srv.count(), 600);
    let per_second: Vec<u64> = (0..3)
        .map(|t| {
            r.series
                .iter()
                .filter(|s| s.t == t)
                .map(|s| s.responses)
                .sum()
        })
        .collect();
    // Wall-clock buckets: a stall of a busy machine moves responses into the next second,
    // so the bounds are wide, and the rate must rise from stage to stage.
    for (got, want) in per_second.iter().zip([100.0, 200.0, 300.0]) {
        assert!(
            (*got as f64 - want).abs() <= want * 0.2 + 10.0,
            "per second {per_second:?}, want ~100/200/300"
        );
    }
    assert!(
        per_second[0] < per_second[1] && per_second[1] < per_second[2],
        "per second {per_second:?}, want ~100/200/300"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_spawn_at_the_spawn_rate() {
    let srv = Server::start(Behaviour {
        delay: ms(10),
        ..Behaviour::default()
    })
    .await;
    let url = srv.url("/");
    // User k starts at k/4 s: 4 users in second 0 sum to 2.5 user-seconds, 4 in second 1.
    let r = load(&[
        "--users",
        "4",
        "--spawn-rate",
        "4",
        "-d",
        "2s",
        "-t",
        "1",
        &url,
    ])
    .await;
    let sec = |t| {
        r.series
            .iter()
            .find(|s| s.t == t)
            .map_or(0, |s| s.responses) as f64
    };
    let ratio = sec(0) / sec(1);
    assert!(
        (0.45..0.8).contains(&ratio),
        "{} / {}: {}",
        sec(0),
        sec(1),
        r.summary()
    );
    assert_eq!(r.plan.spawn_rate, Some(4.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_and_h2_over_tls() {
    let srv = Server::start(Behaviour::default()).await;
    let url = srv.url("/h2c");
    let r = load(&["--http", "2", "-n", "50", "-c", "5", "-t", "1", &url]).await;
    assert_eq!(r.requests.ok, 50, "{}", r.summary());
    assert_eq!(srv.h2.load(std::sync::atomic::Ordering::SeqCst), 50);

    let tls = Server::start_tls(Behaviour {
        replica: Some("secure".into()),
        ..Behaviour::default()
    })
    .await;
    let url = format!("https://localhost:{}/", tls.addr.port());
    let ca = ca_file();
    let r = load(&["--cacert", &ca, "-n", "30", "-c", "3", "-t", "1", &url]).await;
    assert_eq!(r.requests.ok, 30, "{}", r.summary());
    assert_eq!(
        tls.h2.load(std::sync::atomic::Ordering::SeqCst),
        30,
        "ALPN picked h2"
    );
    assert_eq!(r.spread.replicas[0].requests, 30);
    let r = load(&[
        "--cacert", &ca, "--http", "1.1", "-n", "10", "-c", "1", &url,
    ])
    .await;
    assert_eq!(r.requests.ok, 10);
    assert_eq!(
        tls.count() - tls.h2.load(std::sync::atomic::Ordering::SeqCst),
        10
    );

    // Without the CA the certificate is refused, and the report says why.
    let r = load(&["-n", "3", "-c", "1", &url]).await;
    assert_eq!(r.requests.ok, 0);
    assert_eq!(r.errors.get("tls"), Some(&3), "{}", r.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_headers_and_bodies_reach_the_server() {
    let srv = Server::start(Behaviour {
        status: Some(503),
        ..Behaviour::default()
    })
    .await;
    let url = srv.url("/post?x=1");
    let r = load(&[
        "-m",
        "PUT",
        "-H",
        "content-type: application/json",
        "-H",
        "x-run: 7",
        "--body",
        r#"{"a":1}"#,
        "-n",
        "10",
        "-c",
        "2",
        &url,
    ])
    .await;
    let (method, headers, body) = srv.last.lock().unwrap().clone().unwrap();
    assert_eq!(method, "PUT");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-run"], "7");
    assert_eq!(headers["host"], srv.addr.to_string());
    assert_eq!(body, r#"{"a":1}"#);
    // 503s are answers, counted as failed, with their status.
    assert_eq!(r.requests.responses, 10);
    assert_eq!(r.requests.ok, 0);
    assert_eq!(r.requests.failed, 10);
    assert_eq!(r.status_codes["503"], 10);
    assert_eq!(r.series.iter().map(|s| s.failed).sum::<u64>(), 10);

    // A body from a file, over HTTP/2.
    let dir = std::env::temp_dir().join(format!("shoal-load-body-{}", std::process::id()));
    std::fs::write(&dir, vec![b'z'; 100_000]).unwrap();
    let file = dir.to_str().unwrap();
    let r = load(&[
        "--http",
        "2",
        "-m",
        "POST",
        "--body-file",
        file,
        "-n",
        "3",
        "-c",
        "1",
        &url,
    ])
    .await;
    std::fs::remove_file(&dir).unwrap();
    assert_eq!(r.requests.responses, 3);
    let (method, _, body) = srv.last.lock().unwrap().clone().unwrap();
    assert_eq!((method.as_str(), body.len()), ("POST", 100_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_dropped_connections_are_counted_by_kind() {
    let slow = Server::start(Behaviour {
        delay: ms(2000),
        ..Behaviour::default()
    })
    .await;
    let url = slow.url("/");
    let r = load(&["--timeout", "100ms", "-n", "4", "-c", "2", "-t", "1", &url]).await;
    assert_eq!(r.errors.get("timeout"), Some(&4), "{}", r.summary());
    assert_eq!(r.requests.failed, 4);
    assert!(r.summary().contains("timeout ×4"), "{}", r.summary());

    // A server that reads the request and hangs up without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
            });
        }
    });
    let url = format!("http://{addr}/");
    let r = load(&["-n", "5", "-c", "1", "-t", "1", &url]).await;
    assert_eq!(r.requests.failed, 5);
    assert_eq!(r.errors.get("closed"), Some(&5), "{}", r.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_fails_before_the_run() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/");
    let err = shoal_loadgen::run(plan(&["-n", "1", &url]), Default::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("URL {url}")) || err.contains(&addr.to_string()),
        "{err}"
    );
    assert!(err.contains("refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_stops_the_run_with_a_partial_report() {
    let srv = Server::start(Behaviour {
        delay: ms(5),
        ..Behaviour::default()
    })
    .await;
    let url = srv.url("/");
    let started = tokio::time::Instant::now();
    let opts = shoal_loadgen::RunOptions {
        progress: false,
        interrupt: Some(Box::pin(tokio::time::sleep(ms(400)))),
    };
    let r = shoal_loadgen::run(plan(&["-d", "20s", "-c", "2", &url]), opts)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(r.interrupted);
    assert!(r.requests.ok > 10, "{}", r.summary());
    assert!(r.summary().contains("interrupted"), "{}", r.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_gives_replica_counts_over_time() {
    let admin = Server::start(Behaviour {
        body: Some(r#"[{"name":"web","desired":2,"ready":2,"replicas":[]}]"#.into()),
        ..Behaviour::default()
    })
    .await;
    let srv = Server::start(Behaviour {
        replica: Some("web-0".into()),
        ..Behaviour::default()
    })
    .await;
    let url = srv.url("/");
    let admin_url = admin.url("");
    let run = tokio::spawn({
        let args = [
            "--rate", "50", "-d", "2500ms", "-c", "4", "--admin", &admin_url, &url,
        ]
        .map(str::to_owned);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            load(&args).await
        }
    });
    // Scale up half-way through (polled with a deadline, not slept on).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while admin.count() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the admin API was never polled"
        );
        tokio::time::sleep(ms(20)).await;
    }
    admin.set_body(r#"[{"name":"web","desired":4,"ready":3,"replicas":[]}]"#);
    let r = run.await.unwrap();
    assert!(r.scaling.len() >= 2, "{:?}", r.scaling);
    assert_eq!(r.scaling[0].services["web"].ready, 2);
    let last = r.scaling.last().unwrap();
    assert_eq!(
        (last.services["web"].desired, last.services["web"].ready),
        (4, 3)
    );
    let html = shoal_loadgen::html::render(&r);
    assert!(html.contains("Ready replicas per service"));
    assert!(html.contains("web ready"));
}
