//! End-to-end tests of how the gateway spreads requests over a service's backends: round
//! robin, weights, least requests, consistent hashing and sticky cookies, counted from the
//! `x-shoal-replica` header of real responses.
use std::collections::BTreeMap;

use http::StatusCode;
use shoal_test_support::{
    Backend, Backends, Client, DEADLINE, Service, StackBuilder, TestGateway, eventually, tally,
};

/// `GET /` `n` times in a row; how many each backend (by name) served.
async fn spread(gw: &TestGateway, backends: &Backends, n: usize) -> BTreeMap<String, usize> {
    let mut served = Vec::with_capacity(n);
    for _ in 0..n {
        let answer = gw.get("/").await;
        assert_eq!(answer.status, StatusCode::OK);
        served.push(backends.by_url(answer.replica()).name().to_owned());
    }
    tally(served)
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[tokio::test]
async fn round_robin_gives_each_backend_exactly_its_share() {
    let backends = Backends::start(3).await;
    let gw = TestGateway::in_front_of(&backends).await;

    let got = spread(&gw, &backends, 300).await;
    assert_eq!(got, counts(&[("r1", 100), ("r2", 100), ("r3", 100)]));
}

#[tokio::test]
async fn weights_2_1_1_give_half_to_the_heavy_backend() {
    let backends = Backends::start(3).await;
    let gw = TestGateway::builder()
        .service_with(
            "web",
            Service::weighted(&[(&backends[0], 2), (&backends[1], 1), (&backends[2], 1)]),
        )
        .route("PathPrefix(`/`)", "web")
        .start()
        .await;

    let got = spread(&gw, &backends, 400).await;
    assert_eq!(got, counts(&[("r1", 200), ("r2", 100), ("r3", 100)]));
}

#[tokio::test]
async fn least_requests_avoids_a_backend_busy_with_slow_requests() {
    let backends = Backends::start(3).await;
    let only_r1 = TestGateway::builder()
        .service_with(
            "web",
            Service::servers(&backends[0]).balance("least_requests"),
        )
        .route("PathPrefix(`/`)", "web");
    let gw = only_r1.start().await;

    // Four slow requests held open on r1, the only backend for now.
    for _ in 0..4 {
        let client = Client::http1();
        let url = gw.url("/sleep?ms=10000");
        tokio::spawn(async move { client.get(&url).await });
    }
    eventually(DEADLINE, || async {
        match backends[0].in_flight() {
            4 => Ok(()),
            n => Err(format!("r1 has {n} requests in flight")),
        }
    })
    .await;

    // r2 and r3 join. The balancer keeps r1's in-flight count across the reload (same
    // algorithm, same backend), so new requests see it as busy.
    let all = StackBuilder::new()
        .service_with("web", Service::servers(&backends).balance("least_requests"))
        .route("PathPrefix(`/`)", "web");
    gw.reload(&all).expect("reload");

    let got = spread(&gw, &backends, 30).await;
    assert_eq!(got.get("r1"), None, "r1 is busy, yet served: {got:?}");
    assert_eq!(got.values().sum::<usize>(), 30);
    assert_eq!(
        backends[0].in_flight(),
        4,
        "the slow requests were still running"
    );
}

/// Which backend (URL) serves each user key, hashing on `X-User`.
async fn owners(gw: &TestGateway, keys: &[String]) -> BTreeMap<String, String> {
    let mut owner = BTreeMap::new();
    for key in keys {
        let answer = gw.get_with("/", &[("x-user", key)]).await;
        assert_eq!(answer.status, StatusCode::OK);
        owner.insert(key.clone(), answer.replica().to_owned());
    }
    owner
}

#[tokio::test]
async fn consistent_hash_is_stable_per_key_and_moves_few_keys_when_a_backend_joins() {
    let mut backends = Backends::start(3).await;
    let hashed = |backends: &Backends| {
        StackBuilder::new()
            .service_with(
                "web",
                Service::servers(backends).balance("{ algorithm: hash, hash_on: 'header:X-User' }"),
            )
            .route("PathPrefix(`/`)", "web")
    };
    let gw = hashed(&backends).start().await;
    let keys: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();

    let before = owners(&gw, &keys).await;
    assert_eq!(owners(&gw, &keys).await, before, "same key, same backend");
    let per_backend = tally(before.values().cloned());
    assert_eq!(
        per_backend.len(),
        3,
        "every backend owns keys: {per_backend:?}"
    );

    let r4 = backends.add().await.url().to_owned();
    gw.reload(&hashed(&backends)).expect("reload");
    let after = owners(&gw, &keys).await;

    let moved: Vec<&String> = keys.iter().filter(|k| before[*k] != after[*k]).collect();
    assert!(!moved.is_empty(), "the new backend got no keys");
    assert!(
        moved.len() * 100 < keys.len() * 40,
        "{} of {} keys moved",
        moved.len(),
        keys.len()
    );
    for key in moved {
        assert_eq!(after[key], r4, "{key} moved, but not to the new backend");
    }
}

/// The value the `Set-Cookie: NAME=VALUE; …` header of `answer` gives cookie `name`.
fn set_cookie(answer: &shoal_test_support::Answer, name: &str) -> Option<String> {
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.split(';')
                .next()?
                .trim()
                .strip_prefix(&format!("{name}="))
                .map(str::to_owned)
        })
}

#[tokio::test]
async fn sticky_cookie_pins_a_client_and_re_pins_it_when_its_backend_goes() {
    let backends = Backends::start(3).await;
    let sticky = |servers: Vec<&Backend>| {
        StackBuilder::new()
            .service_with(
                "web",
                Service::servers(&servers).balance("{ algorithm: sticky, cookie: sid }"),
            )
            .route("PathPrefix(`/`)", "web")
    };
    let gw = sticky(backends.iter().collect()).start().await;

    let first = gw.get("/").await;
    let pin = set_cookie(&first, "sid").expect("a new client gets a cookie");
    let pinned = first.replica().to_owned();
    let cookie = format!("sid={pin}");
    for _ in 0..20 {
        let answer = gw.get_with("/", &[("cookie", &cookie)]).await;
        assert_eq!(answer.replica(), pinned);
        assert_eq!(
            set_cookie(&answer, "sid"),
            None,
            "no new cookie while pinned"
        );
    }
    let cookieless = gw.get("/").await;
    assert_ne!(
        cookieless.replica(),
        pinned,
        "without the cookie, round robin moves on"
    );

    // The pinned backend leaves the service.
    let rest: Vec<&Backend> = backends.iter().filter(|b| b.url() != pinned).collect();
    gw.reload(&sticky(rest)).expect("reload");

    let moved = gw.get_with("/", &[("cookie", &cookie)]).await;
    assert_eq!(moved.status, StatusCode::OK);
    assert_ne!(moved.replica(), pinned);
    let new_pin = set_cookie(&moved, "sid").expect("re-pinned with a new cookie");
    assert_ne!(new_pin, pin);
    let repinned = moved.replica().to_owned();
    let cookie = format!("sid={new_pin}");
    for _ in 0..10 {
        let answer = gw.get_with("/", &[("cookie", &cookie)]).await;
        assert_eq!(answer.replica(), repinned);
    }
}
