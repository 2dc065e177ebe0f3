//! Hedging and stall ejection on a service that serves fast and slow-by-design requests
//! (issue 24, defect 6): each route is timed by its own latency, and a replica busy with
//! slow requests is not taken for a hung one — yet a hung server among them still leaves
//! rotation and the requests stuck on it are still rescued.
use std::time::Duration;

use futures_util::future::join_all;
use shoal_core::{EventKind, HealthState, ServiceTraffic};
use shoal_test_support::{
    Backends, DEADLINE, Route, Service, StackBuilder, TestGateway, eventually, silent_server,
};
use tokio::time::Instant;

/// What a slow request takes by design.
const SLOW: &str = "/sleep?ms=500";
/// Slow requests at once: as in the report ("50 requests in flight").
const SLOW_CONCURRENCY: usize = 50;
/// Fast clients, each sending one request after the other.
const FAST_CONCURRENCY: usize = 4;

/// Two routes to one service: `/sleep` (slow by design) and the rest (fast).
fn mixed(service: Service) -> StackBuilder {
    StackBuilder::new()
        .service_with("api", service)
        .route_with(
            Route::new("PathPrefix(`/sleep`)", "api")
                .name("slow")
                .priority(20),
        )
        .route_with(
            Route::new("PathPrefix(`/`)", "api")
                .name("fast")
                .priority(10),
        )
}

fn traffic(gw: &TestGateway) -> ServiceTraffic {
    gw.shoal()
        .gateway()
        .traffic("api")
        .expect("service exists")
        .0
}

fn events_of(gw: &TestGateway, kind: EventKind) -> Vec<String> {
    gw.shoal()
        .events()
        .since(0)
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.message)
        .collect()
}

/// Requests answered, and those that were not a 200 (with what they got).
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    failed: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.ok += other.ok;
        self.failed.extend(other.failed);
    }

    fn total(&self) -> usize {
        self.ok + self.failed.len()
    }
}

/// GET `path` over and over until `until` (and at most `max` times), or once when `until`
/// has passed already.
async fn client_loop(gw: &TestGateway, path: &str, until: Instant, max: usize) -> Tally {
    let mut tally = Tally::default();
    for i in 0..max {
        if i > 0 && Instant::now() >= until {
            break;
        }
        let answer = gw.get(path).await;
        if answer.status == 200 {
            tally.ok += 1;
        } else {
            tally
                .failed
                .push(format!("{path}: {} {}", answer.status, answer.text()));
        }
    }
    tally
}

/// `SLOW_CONCURRENCY` slow clients and `FAST_CONCURRENCY` fast ones (none if 0) until
/// `until`.
async fn load(gw: &TestGateway, slow: usize, fast: usize, until: Instant) -> Tally {
    let slow = (0..slow).map(|_| client_loop(gw, SLOW, until, 50));
    let fast = (0..fast).map(|_| client_loop(gw, "/", until, 20_000));
    let (slow, fast) = futures_util::join!(join_all(slow), join_all(fast));
    let mut tally = Tally::default();
    for t in slow.into_iter().chain(fast) {
        tally.add(t);
    }
    tally
}

/// No request failed (else the first ten failures, and how many there were).
fn assert_none_failed(failed: &[String]) {
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fast_and_slow_workload_ejects_nobody_and_hedges_under_one_percent() {
    let backends = Backends::start(3).await;
    let gw = mixed(Service::servers(&backends)).start().await;
    let mut tally = Tally::default();

    // The fast route learns its latency: its per-try timeout drops to the 100 ms floor.
    tally.add(load(&gw, 0, 8, Instant::now() + Duration::from_millis(500)).await);
    assert!(tally.ok >= 50, "{tally:?}");

    // 50 slow requests at once and nothing else: every replica has ~17 in flight and
    // answers nothing for 500 ms. Timed by the service's (fast) p99 they were hedged
    // after 100 ms and their replicas ejected as stalled.
    let hedges_before = traffic(&gw).hedges_total;
    tally.add(load(&gw, SLOW_CONCURRENCY, 0, Instant::now()).await);
    let after_wave = traffic(&gw);
    assert_eq!(
        after_wave.hedges_total, hedges_before,
        "a slow-by-design request is not hedged: {after_wave:?}"
    );
    assert_eq!(after_wave.ejections_total, 0, "{after_wave:?}");

    // Both at once for 5 s: 50 slow requests always in flight, fast ones in between.
    let mixed_started = Instant::now();
    let during = load(
        &gw,
        SLOW_CONCURRENCY,
        FAST_CONCURRENCY,
        mixed_started + Duration::from_secs(5),
    )
    .await;
    let mixed_took = mixed_started.elapsed();
    let mixed_requests = during.total();
    tally.add(during);

    // And a slow wave alone again, now that the slow route knows its own latency.
    tally.add(load(&gw, SLOW_CONCURRENCY, 0, Instant::now()).await);

    let counters = traffic(&gw);
    let total = tally.total();
    eprintln!(
        "{total} requests ({mixed_requests} in the mixed phase, {mixed_took:?}), {} hedges, {} retries, {} ejections",
        counters.hedges_total, counters.retries_total, counters.ejections_total
    );
    assert_none_failed(&tally.failed);
    assert!(
        total >= 2_000,
        "too little traffic to judge a 1% share: {total}"
    );
    assert_eq!(
        counters.ejections_total,
        0,
        "no replica is ejected: {:?}",
        events_of(&gw, EventKind::Ejected)
    );
    assert!(
        counters.hedges_total * 100 < total as u64,
        "{} hedges for {total} requests: {counters:?}",
        counters.hedges_total
    );
    let (_, replicas) = gw.shoal().gateway().traffic("api").unwrap();
    for (key, replica) in replicas {
        assert_eq!(replica.health, HealthState::Healthy, "{key}: {replica:?}");
        assert_eq!(replica.ejections_total, 0, "{key}: {replica:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_in_a_mixed_workload_is_still_ejected_and_its_requests_rescued() {
    let backends = Backends::start(2).await;
    let (hung, _task) = silent_server().await;
    let mut servers: Vec<String> = backends.iter().map(|b| b.url().to_owned()).collect();
    servers.push(hung.clone());
    let gw = mixed(Service::servers(&servers).with("health: false"))
        .start()
        .await;

    let started = Instant::now();
    let ejected = async {
        eventually(DEADLINE, || async {
            let ejected = events_of(&gw, EventKind::Ejected);
            match ejected.iter().find(|e| e.contains(&hung)) {
                Some(e) => Ok((started.elapsed(), e.clone())),
                None => Err(ejected),
            }
        })
        .await
    };
    // Slow and fast requests at once, for 4 s: a third of them land on the hung server.
    let (tally, (ejected_after, event)) = futures_util::join!(
        load(&gw, 10, FAST_CONCURRENCY, started + Duration::from_secs(4)),
        ejected
    );
    let counters = traffic(&gw);
    eprintln!("{tally:?} {counters:?}; ejected after {ejected_after:?}: {event}");
    assert_none_failed(&tally.failed);
    assert!(
        event.contains("stalled: no response for"),
        "ejected as stalled: {event}"
    );
    // Slow routes in flight delay a stall ejection to at most 2 s past the slow route's
    // first timeout (1 s before it knows its latency).
    assert!(
        ejected_after < Duration::from_secs(3),
        "the hung server left rotation after {ejected_after:?}"
    );
    assert!(counters.hedges_total >= 1, "{counters:?}");
    // Ejected for 1 s at first, it comes back, stalls again and is ejected for 2 s.
    assert!(counters.ejections_total >= 1, "{counters:?}");
    let (_, replicas) = gw.shoal().gateway().traffic("api").unwrap();
    let health = |key: &str| {
        replicas
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, t)| t.health)
    };
    // The two healthy servers never left rotation.
    for b in &backends {
        assert_eq!(health(b.url()), Some(HealthState::Healthy));
    }
}
