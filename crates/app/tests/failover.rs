//! Failover in the gateway, end to end in-process: hedging away from a hung server, passive
//! ejection, active checks of static servers, the retry budget and the circuit breaker.
//! (Killed, hung and sick *replica processes* are tested through the real binary in
//! `crates/shoal/tests/cli/failover.rs`.)
use std::time::Duration;

use futures_util::future::join_all;
use shoal_core::{EventKind, HealthState, ReplicaTraffic, ServiceTraffic};
use shoal_test_support::{
    Backend, Backends, Client, DEADLINE, ServerList, Service, StackBuilder, TestGateway, dead_url,
    eventually, silent_server,
};
use tokio::time::Instant;

/// `backend` answers `status` from now on, `/health` excepted; 0 puts it back to normal.
async fn fault(backend: &Backend, status: u16) {
    let url = format!("{}/fault?status={status}", backend.url());
    assert_eq!(Client::http1().get(&url).await.status, 200, "{url}");
}

fn traffic(gw: &TestGateway, service: &str) -> (ServiceTraffic, Vec<(String, ReplicaTraffic)>) {
    gw.shoal()
        .gateway()
        .traffic(service)
        .expect("service exists")
}

fn health_of(gw: &TestGateway, service: &str, key: &str) -> HealthState {
    traffic(gw, service)
        .1
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, t)| t.health)
        .expect("backend exists")
}

fn has_event(gw: &TestGateway, kind: EventKind, text: &str) -> bool {
    gw.shoal()
        .events()
        .since(0)
        .iter()
        .any(|e| e.kind == kind && e.message.contains(text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_stuck_on_a_hung_server_are_hedged_and_the_server_ejected() {
    let backends = Backends::start(2).await;
    let (hung, _task) = silent_server().await;
    let mut servers = backends.urls();
    servers.push(hung.clone());
    let gw = StackBuilder::new()
        .service_with(
            "api",
            Service::servers(&servers)
                .with("retry: { per_try_timeout: 200ms }")
                .with("health: false"),
        )
        .route("PathPrefix(`/`)", "api")
        .start()
        .await;
    // Concurrent GETs: a third land on the hung server first.
    let started = Instant::now();
    let answers = join_all((0..30).map(|_| gw.get("/whoami"))).await;
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.text());
        assert_ne!(a.replica(), hung);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "nobody waited for the hung server's timeout"
    );
    let (counters, _) = traffic(&gw, "api");
    assert!(counters.hedges_total >= 1, "{counters:?}");
    eventually(DEADLINE, || async {
        let h = health_of(&gw, "api", &hung);
        if h == HealthState::Ejected {
            Ok(())
        } else {
            Err(h)
        }
    })
    .await;
    assert!(has_event(&gw, EventKind::Ejected, "stalled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_ejects_at_once_and_costs_no_client_an_error() {
    let backends = Backends::start(2).await;
    let dead = dead_url();
    let mut servers = backends.urls();
    servers.push(dead.clone());
    let gw = StackBuilder::new()
        .service_with("api", Service::servers(&servers).with("health: false"))
        .route("PathPrefix(`/`)", "api")
        .start()
        .await;
    for _ in 0..9 {
        assert_eq!(gw.get("/").await.status, 200);
    }
    assert_eq!(health_of(&gw, "api", &dead), HealthState::Ejected);
    let (_, backends_seen) = traffic(&gw, "api");
    let dead_tries = backends_seen
        .iter()
        .find(|(k, _)| *k == dead)
        .unwrap()
        .1
        .requests_total;
    assert_eq!(dead_tries, 1, "ejected after the first refusal");
    assert!(has_event(&gw, EventKind::Ejected, "connection refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_take_a_failing_static_server_out_and_bring_it_back() {
    let backends = Backends::start(2).await;
    let sick = backends.iter().next().unwrap();
    let gw = StackBuilder::new()
        .service_with(
            "api",
            Service::servers(&backends).with(
                "health: { path: /status/200, interval: 100ms, fast_interval: 50ms, unhealthy_threshold: 2, healthy_threshold: 2 }",
            ),
        )
        .route("PathPrefix(`/`)", "api")
        .start()
        .await;
    let client = Client::http1();
    // The check path answers 503 from now on: two failures take it out of rotation.
    fault(sick, 503).await;
    // `/fault` spares `/health` only; our check path is `/status/200`, which now fails.
    eventually(DEADLINE, || async {
        let h = health_of(&gw, "api", sick.url());
        if h == HealthState::Unhealthy {
            Ok(())
        } else {
            Err(h)
        }
    })
    .await;
    for _ in 0..10 {
        let a = gw.get("/").await;
        assert_eq!(a.status, 200);
        assert_ne!(a.replica(), sick.url());
    }
    // The admin API says so too: the server's replica row, and one of two ready.
    let api = format!("http://{}/api/v1/services/api", gw.shoal().admin_addr());
    let svc = client.get(&api).await.json();
    assert_eq!(svc["ready"], 1, "{svc}");
    assert_eq!(
        svc["replicas"][0]["traffic"]["health"], "unhealthy",
        "{svc}"
    );
    assert_eq!(svc["replicas"][1]["traffic"]["health"], "healthy", "{svc}");
    let (_, seen) = traffic(&gw, "api");
    let reason = seen
        .iter()
        .find(|(k, _)| k == sick.url())
        .unwrap()
        .1
        .reason
        .clone();
    assert!(reason.unwrap_or_default().contains("HTTP status 503"));
    fault(sick, 0).await;
    eventually(DEADLINE, || async {
        let h = health_of(&gw, "api", sick.url());
        if h == HealthState::Healthy {
            Ok(())
        } else {
            Err(h)
        }
    })
    .await;
    assert!(has_event(&gw, EventKind::Unhealthy, "HTTP status 503"));
    assert!(has_event(&gw, EventKind::Healthy, "back in rotation"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_amplification_when_every_replica_fails() {
    let backends = Backends::start(3).await;
    let gw = StackBuilder::new()
        .service_with(
            "api",
            // Passive ejection off, so that every try reaches a replica.
            Service::servers(&backends)
                .with("health: false")
                .with("passive: false")
                .with("retry: { attempts: 3, budget: { ratio: 0.2, min_per_sec: 0 } }"),
        )
        .route("PathPrefix(`/`)", "api")
        .start()
        .await;
    let n = 200u64;
    for chunk in 0..(n / 20) {
        let answers = join_all((0..20).map(|_| gw.get("/status/503"))).await;
        for a in answers {
            assert_eq!(a.status, 503, "chunk {chunk}: the replicas' own 503");
        }
    }
    let (counters, seen) = traffic(&gw, "api");
    let tries: u64 = seen.iter().map(|(_, t)| t.requests_total).sum();
    // Without a budget, 3 tries each: 600. With 20% of requests: at most 240.
    assert!(tries > n, "retries happened: {tries}");
    assert!(
        tries <= n + n / 5,
        "budget exceeded: {tries} tries for {n} requests, {counters:?}"
    );
    assert_eq!(counters.retries_total, tries - n);
    assert_eq!(
        (counters.requests_total, counters.server_errors_total),
        (n, n)
    );
    assert!(counters.retries_refused_total > 0, "{counters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_are_retried_on_502_503_504_and_posts_are_not() {
    let backends = Backends::start(2).await;
    let sick = backends.iter().next().unwrap();
    let gw = StackBuilder::new()
        .service_with(
            "api",
            Service::servers(&backends)
                .with("health: false")
                .with("passive: false"),
        )
        .route("PathPrefix(`/`)", "api")
        .start()
        .await;
    fault(sick, 503).await;
    for _ in 0..10 {
        let a = gw.get("/whoami").await;
        assert_eq!(
            a.status, 200,
            "a GET that met the sick server went to the other"
        );
    }
    let post = |key: Option<&'static str>| {
        let mut req = http::Request::post(gw.url("/echo"));
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        req.body(shoal_test_support::body::full("hello")).unwrap()
    };
    let mut plain = Vec::new();
    let mut keyed = Vec::new();
    for _ in 0..6 {
        plain.push(gw.client().request(post(None)).await.status);
        let a = gw.client().request(post(Some("k-1"))).await;
        assert_eq!(a.text(), "hello", "the body was replayed");
        keyed.push(a.status);
    }
    assert!(
        plain.contains(&http::StatusCode::SERVICE_UNAVAILABLE),
        "plain POSTs are not retried after sending: {plain:?}"
    );
    assert!(
        keyed.iter().all(|s| *s == 200),
        "keyed POSTs are: {keyed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_opens_answers_503_fast_and_closes_after_recovery() {
    let backends = Backends::start(1).await;
    let b = backends.iter().next().unwrap();
    let gw = StackBuilder::new()
        .service_with(
            "api",
            Service::servers(&backends)
                .with("health: false")
                .with("passive: false")
                .with("retry: false")
                .with("circuit_breaker: { min_requests: 10, error_ratio: 0.5, open_for: 500ms, half_open_requests: 2 }"),
        )
        .route("PathPrefix(`/`)", "api")
        .start()
        .await;
    fault(b, 500).await;
    for _ in 0..10 {
        assert_eq!(gw.get("/").await.status, 500);
    }
    let open = gw.get("/").await;
    assert_eq!(open.status, 503, "{}", open.text());
    assert_eq!(open.header("x-shoal-error"), Some("circuit-open"));
    assert!(open.header("retry-after").is_some());
    let (counters, _) = traffic(&gw, "api");
    assert_eq!(counters.breaker.as_deref(), Some("open"));
    assert_eq!(counters.breaker_opened_total, 1);
    // Recovered: after open_for, the trial requests pass and the breaker closes.
    fault(b, 0).await;
    eventually(DEADLINE, || async {
        let status = gw.get("/").await.status;
        let breaker = traffic(&gw, "api").0.breaker;
        if status == 200 && breaker.as_deref() == Some("closed") {
            Ok(())
        } else {
            Err((status, breaker))
        }
    })
    .await;
    assert!(has_event(&gw, EventKind::CircuitOpen, "open"));
    assert!(has_event(&gw, EventKind::CircuitClosed, "closed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_replica_in_rotation_is_never_ejected() {
    let dead = dead_url();
    let gw = StackBuilder::new()
        .service_with(
            "api",
            Service::servers(&vec![dead.clone()]).with("health: false"),
        )
        .route("PathPrefix(`/`)", "api")
        .start()
        .await;
    for _ in 0..5 {
        assert_eq!(
            gw.get("/").await.status,
            502,
            "it refuses: a 502, not a 503"
        );
    }
    assert_eq!(health_of(&gw, "api", &dead), HealthState::Healthy);
    assert_eq!(traffic(&gw, "api").0.ejections_total, 0);
}
