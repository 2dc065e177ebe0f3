//! End-to-end tests of reloading the stack file while the gateway serves: no request fails
//! while routes, servers and algorithms change, and an invalid file changes nothing.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use shoal_test_support::{
    Backend, Backends, Conn, DEADLINE, Service, StackBuilder, TestGateway, eventually,
};
use tokio::time::Instant;

/// Requests sent and failed by [`load`].
#[derive(Debug, Default)]
struct Tally {
    sent: AtomicUsize,
    failed: AtomicUsize,
}

/// Send `GET path` back to back over one keep-alive connection until `stop` is set, for at
/// most `max` requests or `within`. Returns the errors seen (at most a few, for the report).
async fn load(
    gw_addr: std::net::SocketAddr,
    path: &'static str,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    max: usize,
    within: Duration,
) -> Vec<String> {
    let mut conn = Conn::open(gw_addr).await;
    let end = Instant::now() + within;
    let mut errors = Vec::new();
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        if tally.sent.load(Ordering::Relaxed) >= max {
            break;
        }
        let result = conn.get(path).await;
        tally.sent.fetch_add(1, Ordering::Relaxed);
        let failure = match result {
            Ok(a) if a.status == StatusCode::OK => None,
            Ok(a) => Some(format!("{}: {}", a.status, a.text())),
            Err(e) => Some(format!("transport: {e:?}")),
        };
        if let Some(f) = failure {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            if errors.len() < 5 {
                errors.push(f);
            }
            if conn.is_closed() {
                conn = Conn::open(gw_addr).await;
            }
        }
    }
    errors
}

/// Wait until the load has made `more` requests of progress.
async fn progress(tally: &Tally, more: usize) {
    let target = tally.sent.load(Ordering::Relaxed) + more;
    eventually(DEADLINE, || async {
        let sent = tally.sent.load(Ordering::Relaxed);
        if sent >= target {
            Ok(())
        } else {
            Err(format!("{sent} of {target} sent"))
        }
    })
    .await;
}

#[tokio::test]
async fn reloads_under_load_fail_no_request() {
    let mut backends = Backends::start(2).await;
    let stack = |servers: Vec<&Backend>, balance: &str, rule: &str| {
        StackBuilder::new()
            .service_with("web", Service::servers(&servers).balance(balance))
            .service("other", &servers)
            .route(rule, "web")
            .route("PathPrefix(`/other`)", "other")
    };
    let gw = stack(backends.iter().collect(), "round_robin", "PathPrefix(`/`)")
        .start()
        .await;

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Two clients, each on its own keep-alive connection, so reloads land mid-request.
    let traffic: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(load(
                gw.addr(),
                "/whoami",
                tally.clone(),
                stop.clone(),
                5_000,
                Duration::from_secs(3),
            ))
        })
        .collect();
    progress(&tally, 200).await;

    // 1. A third backend joins.
    backends.add().await;
    let r3 = backends[2].url().to_owned();
    gw.reload(&stack(
        backends.iter().collect(),
        "round_robin",
        "PathPrefix(`/`)",
    ))
    .expect("reload 1");
    eventually(DEADLINE, || async {
        let replica = gw.get("/whoami").await.replica().to_owned();
        if replica == r3 {
            Ok(())
        } else {
            Err(format!("served by {replica}"))
        }
    })
    .await;
    progress(&tally, 200).await;

    // 2. Switch the algorithm.
    gw.reload(&stack(
        backends.iter().collect(),
        "least_requests",
        "PathPrefix(`/`)",
    ))
    .expect("reload 2");
    progress(&tally, 200).await;

    // 3. Change the route the traffic takes (still matching it).
    gw.reload(&stack(
        backends.iter().collect(),
        "least_requests",
        "PathPrefix(`/who`)",
    ))
    .expect("reload 3");
    assert_eq!(
        gw.get("/").await.status,
        StatusCode::NOT_FOUND,
        "the new rule is live"
    );
    progress(&tally, 200).await;

    // 4. The first backend leaves (it keeps running, so requests already sent to it finish).
    let r1 = backends[0].url().to_owned();
    gw.reload(&stack(
        backends.iter().skip(1).collect(),
        "hash",
        "PathPrefix(`/who`)",
    ))
    .unwrap_err();
    gw.reload(&stack(
        backends.iter().skip(1).collect(),
        "{ algorithm: hash, hash_on: 'header:X-User' }",
        "PathPrefix(`/who`)",
    ))
    .expect("reload 4");
    for _ in 0..10 {
        assert_ne!(gw.get("/whoami").await.replica(), r1);
    }
    progress(&tally, 200).await;

    // 5. Back to round robin over everyone.
    gw.reload(&stack(
        backends.iter().collect(),
        "round_robin",
        "PathPrefix(`/`)",
    ))
    .expect("reload 5");
    progress(&tally, 200).await;

    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for t in traffic {
        errors.extend(t.await.expect("a load task"));
    }
    let sent = tally.sent.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "{failed} of {sent} requests failed: {errors:?}");
    assert!(sent >= 1_200, "only {sent} requests were sent");
}

#[tokio::test]
async fn an_invalid_file_is_refused_and_the_old_config_keeps_serving() {
    let backend = Backend::start("web").await;
    let gw = TestGateway::in_front_of(&backend).await;
    assert_eq!(gw.get("/").await.status, StatusCode::OK);

    let broken_yaml = "services:\n  web: [unclosed\n";
    let err = gw.reload_text(broken_yaml).unwrap_err();
    assert!(
        err.contains("shoal.yaml"),
        "the error names the file: {err}"
    );
    assert_eq!(gw.get("/").await.status, StatusCode::OK);

    let unknown_service = StackBuilder::new()
        .service("web", &backend)
        .route("PathPrefix(`/`)", "wbe")
        .yaml();
    let err = gw.reload_text(&unknown_service).unwrap_err();
    assert!(
        err.contains("wbe"),
        "the error names the field's value: {err}"
    );

    for _ in 0..20 {
        let answer = gw.get("/whoami").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.replica(), backend.url());
    }
}
