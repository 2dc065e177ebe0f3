//! Weighted splits end to end (docs/configuration.md, "Splits and mirrors in the
//! gateway"): a real gateway in front of one counting replica per service, driven over both
//! request paths — the relay (HTTP/1.1 keep-alive) and the full stack (HTTP/2 prior
//! knowledge). Shares are counted at the replicas; the schedule is deterministic, so the
//! counts are exact.
mod common;

use common::{Client, Gw, Path, Replica, serve, stack};
use http::StatusCode;

/// Two services, `stable` and `canary`, behind route `web` split `a`/`b`, with `extra`
/// added to the route.
/// A `Cookie` header of `c`.
fn on(c: &str) -> [(&str, &str); 1] {
    [("cookie", c)]
}

fn split_yaml(stable: &Replica, canary: &Replica, a: u32, b: u32, extra: &str) -> String {
    format!(
        "services:\n\
         \x20 stable:\n    servers: [http://{}]\n\
         \x20 canary:\n    servers: [http://{}]\n\
         routes:\n\
         \x20 - match: PathPrefix(`/`)\n    name: web\n\
         \x20   services:\n\
         \x20     - {{ name: stable, weight: {a} }}\n\
         \x20     - {{ name: canary, weight: {b} }}\n{extra}",
        stable.addr, canary.addr
    )
}

async fn replicas() -> (Replica, Replica) {
    (
        Replica::start("stable").await,
        Replica::start("canary").await,
    )
}

/// `n` GETs spread over `conns` concurrent connections on `path`; every answer is a 200.
async fn load(gw: &Gw, path: Path, conns: usize, n: usize) {
    let tasks: Vec<_> = (0..conns)
        .map(|c| {
            let addr = gw.addr;
            let share = n / conns + usize::from(c < n % conns);
            tokio::spawn(async move {
                let mut client = Client::connect(addr, path).await;
                for _ in 0..share {
                    let answer = client.get("/", &[]).await;
                    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// The counts at the replicas since `before`.
fn counted(r: (&Replica, &Replica), before: (usize, usize)) -> (usize, usize) {
    (r.0.count() - before.0, r.1.count() - before.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_at_90_10_land_exactly_on_the_weights() {
    let (stable, canary) = replicas().await;
    let gw = serve(&stack(&split_yaml(&stable, &canary, 90, 10, "")));

    load(&gw, Path::Relay, 8, 10_000).await;
    // ±1.5 % would allow 8,850..9,150; the schedule gives the exact share.
    assert_eq!((stable.count(), canary.count()), (9_000, 1_000));
}

#[tokio::test]
async fn the_full_stack_honours_the_split_too() {
    let (stable, canary) = replicas().await;
    let gw = serve(&stack(&split_yaml(&stable, &canary, 90, 10, "")));

    load(&gw, Path::Full, 4, 1_000).await;
    assert_eq!((stable.count(), canary.count()), (900, 100));
    // Both paths take turns from the same schedule.
    load(&gw, Path::Relay, 1, 500).await;
    load(&gw, Path::Full, 1, 500).await;
    assert_eq!((stable.count(), canary.count()), (1_800, 200));
}

#[tokio::test]
async fn zero_and_a_hundred_sends_everything_to_one() {
    let (stable, canary) = replicas().await;
    let gw = serve(&stack(&split_yaml(&stable, &canary, 0, 100, "")));

    load(&gw, Path::Relay, 2, 300).await;
    load(&gw, Path::Full, 2, 300).await;
    assert_eq!((stable.count(), canary.count()), (0, 600));
}

#[tokio::test]
async fn live_weights_apply_to_the_next_request_and_outlast_an_unchanged_reload() {
    let (stable, canary) = replicas().await;
    let at_90_10 = stack(&split_yaml(&stable, &canary, 90, 10, ""));
    let gw = serve(&at_90_10);
    let gateway = &gw.gateway;
    let weights = |a: u32, b: u32| Some(vec![("stable".to_owned(), a), ("canary".to_owned(), b)]);
    assert_eq!(gateway.weights("web"), weights(90, 10));

    load(&gw, Path::Relay, 2, 100).await;
    assert_eq!((stable.count(), canary.count()), (90, 10));

    // 95/5 → 50/50: the services not named keep their weight.
    let set = gateway.set_weights("web", &[("canary".into(), 90)]);
    assert_eq!(set.map(Some), Ok(weights(90, 90)));
    let before = (stable.count(), canary.count());
    load(&gw, Path::Relay, 2, 100).await;
    assert_eq!(counted((&stable, &canary), before), (50, 50));

    // A reload that leaves the file's weights as they were keeps the live ones.
    gateway.reload(&at_90_10);
    assert_eq!(gateway.weights("web"), weights(90, 90));
    let before = (stable.count(), canary.count());
    load(&gw, Path::Full, 2, 100).await;
    assert_eq!(counted((&stable, &canary), before), (50, 50));

    // 0/100 live: every request to the canary.
    gateway
        .set_weights("web", &[("stable".into(), 0), ("canary".into(), 100)])
        .unwrap();
    let before = (stable.count(), canary.count());
    load(&gw, Path::Relay, 1, 40).await;
    assert_eq!(counted((&stable, &canary), before), (0, 40));

    // A reload that changes them applies the file's.
    gateway.reload(&stack(&split_yaml(&stable, &canary, 80, 20, "")));
    assert_eq!(gateway.weights("web"), weights(80, 20));
    let before = (stable.count(), canary.count());
    load(&gw, Path::Relay, 2, 100).await;
    assert_eq!(counted((&stable, &canary), before), (80, 20));
}

#[tokio::test]
async fn bad_weights_are_refused_and_change_nothing() {
    let (stable, canary) = replicas().await;
    let mut yaml = split_yaml(&stable, &canary, 90, 10, "");
    yaml.push_str("  - match: PathPrefix(`/one`)\n    name: one\n    service: stable\n");
    let gw = serve(&stack(&yaml));
    let gateway = &gw.gateway;

    let refused = [
        ("nope", vec![("stable", 1)], "no route named `nope`"),
        (
            "one",
            vec![("stable", 1)],
            "route `one` has one service, not a split (`services:`) to weigh",
        ),
        (
            "web",
            vec![("other", 1)],
            "service `other` is not in route `web`'s split (its services: stable, canary)",
        ),
        (
            "web",
            vec![("stable", 1001)],
            "weight 1001 for service `stable` is over 1000",
        ),
        (
            "web",
            vec![("stable", 0), ("canary", 0)],
            "route `web` needs a service with a weight above 0 (all would be 0)",
        ),
    ];
    for (route, set, why) in refused {
        let set: Vec<(String, u32)> = set.into_iter().map(|(s, w)| (s.to_owned(), w)).collect();
        assert_eq!(gateway.set_weights(route, &set), Err(why.to_owned()));
    }
    assert_eq!(gateway.weights("one"), None);
    assert_eq!(gateway.weights("nope"), None);
    assert_eq!(
        gateway.weights("web"),
        Some(vec![("stable".to_owned(), 90), ("canary".to_owned(), 10)])
    );
}

/// A client with a cookie jar of one cookie (the split's).
struct Visitor {
    client: Client,
    cookie: Option<String>,
    set_cookies: usize,
}

impl Visitor {
    async fn new(gw: &Gw, path: Path) -> Visitor {
        Visitor {
            client: Client::connect(gw.addr, path).await,
            cookie: None,
            set_cookies: 0,
        }
    }

    /// One GET with the jar's cookie; returns the service that answered.
    async fn visit(&mut self) -> String {
        let cookie = self.cookie.clone();
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
        let answer = self.client.get("/", &headers).await;
        assert_eq!(answer.status, StatusCode::OK);
        let set: Vec<_> = answer.headers.get_all("set-cookie").iter().collect();
        if let Some(set) = set.first() {
            let set = set.to_str().unwrap();
            assert_eq!(
                set,
                format!("shoal_web={}; Path=/; HttpOnly; SameSite=Lax", answer.body)
            );
            self.cookie = Some(set.split_once(';').unwrap().0.to_owned());
            self.set_cookies += 1;
        }
        answer.body
    }
}

#[tokio::test]
async fn a_sticky_split_keeps_each_client_on_one_service() {
    let (stable, canary) = replicas().await;
    let gw = serve(&stack(&split_yaml(
        &stable,
        &canary,
        50,
        50,
        "    sticky: true\n",
    )));

    for path in [Path::Relay, Path::Full] {
        let mut on = Vec::new();
        for _ in 0..6 {
            let mut visitor = Visitor::new(&gw, path).await;
            let first = visitor.visit().await;
            for _ in 1..50 {
                assert_eq!(visitor.visit().await, first, "{path:?}: the client moved");
            }
            assert_eq!(visitor.set_cookies, 1, "{path:?}: the cookie is set once");
            on.push(first);
        }
        // New clients are spread by weight: 50/50 alternates.
        assert_eq!(on.iter().filter(|s| *s == "canary").count(), 3, "{on:?}");
    }
    // A client sending the cookie over another connection is still kept.
    let mut client = Client::connect(gw.addr, Path::Relay).await;
    for _ in 0..20 {
        let answer = client
            .get("/", &[("cookie", "a=1; shoal_web=canary")])
            .await;
        assert_eq!(answer.body, "canary");
        assert!(answer.headers.get("set-cookie").is_none());
    }
}

#[tokio::test]
async fn a_client_whose_service_went_to_weight_0_is_given_another() {
    let (stable, canary) = replicas().await;
    let gw = serve(&stack(&split_yaml(
        &stable,
        &canary,
        50,
        50,
        "    sticky: { cookie: v }\n",
    )));
    let mut client = Client::connect(gw.addr, Path::Relay).await;

    let answer = client.get("/", &on("v=canary")).await;
    assert_eq!(answer.body, "canary");
    assert!(answer.headers.get("set-cookie").is_none());

    gw.gateway
        .set_weights("web", &[("canary".into(), 0)])
        .unwrap();
    for path in [Path::Relay, Path::Full] {
        let mut client = Client::connect(gw.addr, path).await;
        let answer = client.get("/", &on("v=canary")).await;
        assert_eq!(answer.body, "stable", "{path:?}");
        assert_eq!(
            answer.headers.get("set-cookie").unwrap(),
            "v=stable; Path=/; HttpOnly; SameSite=Lax"
        );
        // A cookie naming no service of the split, or malformed, is no cookie.
        for cookie in ["v=nope", "v=stable;x=1", "v =stable"] {
            let answer = client.get("/", &on(cookie)).await;
            assert_eq!(answer.body, "stable");
            assert!(answer.headers.get("set-cookie").is_some(), "{cookie}");
        }
    }
}
