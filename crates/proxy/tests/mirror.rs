//! Mirroring end to end (docs/configuration.md, "Splits and mirrors in the gateway"): the
//! mirror gets exactly its share of copies, each the request as it went upstream, over both
//! request paths; a mirror that hangs or refuses connections costs the real requests no
//! error and no latency (p99 compared with and without it).
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Client, DEADLINE, Gw, Path, Replica, serve, stack};
use http::{Method, StatusCode};
use shoal_test_support::eventually;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// Service `web` behind route `/` (stripping `/api`), mirrored to `shadow` at `mirror`.
/// No active checks of `shadow`: only copies reach it.
fn mirrored(web: SocketAddr, shadow: SocketAddr, mirror: &str) -> String {
    format!(
        "services:\n\
         \x20 web:\n    servers: [http://{web}]\n\
         \x20 shadow:\n    servers: [http://{shadow}]\n    health: false\n\
         routes:\n\
         \x20 - match: PathPrefix(`/`)\n    name: web\n    service: web\n\
         \x20   strip_prefix: /api\n{mirror}"
    )
}

#[tokio::test]
async fn the_mirror_gets_exactly_its_share_over_both_paths() {
    let (web, shadow) = (Replica::start("web").await, Replica::start("shadow").await);
    let mirror = "    mirror: { service: shadow, percent: 10 }\n";
    let gw = serve(&stack(&mirrored(web.addr, shadow.addr, mirror)));

    for path in [Path::Relay, Path::Full] {
        let mut client = Client::connect(gw.addr, path).await;
        for _ in 0..250 {
            let answer = client.get("/api/items", &[]).await;
            assert_eq!(
                (answer.status, answer.body.as_str()),
                (StatusCode::OK, "web")
            );
        }
    }
    // The accumulator copies the 10th, 20th, … eligible request: 50 of 500.
    eventually(DEADLINE, || {
        std::future::ready(match shadow.count() {
            50 => Ok(()),
            n => Err(format!("the mirror got {n} copies")),
        })
    })
    .await;
    assert_eq!(web.count(), 500);
    // A copy is the request as sent upstream: the path after the middlewares.
    assert!(
        shadow.seen().iter().all(|s| s.path == "/items"),
        "{:?}",
        shadow.seen()[0]
    );
}

#[tokio::test]
async fn a_copy_carries_the_method_headers_and_body_up_to_max_body() {
    let (web, shadow) = (Replica::start("web").await, Replica::start("shadow").await);
    let mirror = "    mirror: { service: shadow, percent: 100, max_body: 8 }\n";
    let gw = serve(&stack(&mirrored(web.addr, shadow.addr, mirror)));

    for path in [Path::Relay, Path::Full] {
        let mut client = Client::connect(gw.addr, path).await;
        let before = shadow.count();
        let small = client
            .send(
                Method::POST,
                "/api/orders?x=1",
                &[("x-trace", "t1")],
                b"12345678",
            )
            .await;
        assert_eq!(small.status, StatusCode::OK);
        // Over `max_body`: not copied (the real request goes through).
        let large = client
            .send(Method::PUT, "/api/orders", &[], b"123456789")
            .await;
        assert_eq!(large.status, StatusCode::OK);
        eventually(DEADLINE, || {
            std::future::ready(match shadow.count() - before {
                1 => Ok(()),
                n => Err(format!("{path:?}: {n} copies")),
            })
        })
        .await;
        let copy = shadow.seen().pop().unwrap();
        let real = web.seen().into_iter().rev().nth(1).unwrap();
        assert_eq!(copy.method, Method::POST, "{path:?}");
        assert_eq!(copy.path, "/orders?x=1");
        assert_eq!(&copy.body[..], b"12345678");
        assert_eq!(copy.headers.get("x-trace").unwrap(), "t1");
        assert_eq!(copy.headers.get("host"), real.headers.get("host"));
        assert_eq!(
            copy.headers.get("x-forwarded-prefix").unwrap(),
            "/api",
            "the middlewares' headers"
        );
        assert_eq!(real.body, copy.body);
    }
    assert_eq!(web.count(), 4);
}

/// A listener that accepts connections and never answers; counts them.
async fn hanging() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (addr, accepted)
}

/// An address nothing listens on.
async fn refusing() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// `n` rounds of one GET to each gateway in turn on `path` (each a 200 from `web`), after
/// `warm_up` rounds not counted; each gateway's 99th percentile. Taking turns, the three
/// see the same noise (other tests, other processes on the machine).
async fn p99s<const N: usize>(
    gws: [&Gw; N],
    path: Path,
    warm_up: usize,
    n: usize,
) -> [Duration; N] {
    let mut clients = Vec::new();
    for gw in gws {
        clients.push(Client::connect(gw.addr, path).await);
    }
    let mut took = [(); N].map(|()| Vec::with_capacity(n));
    for round in 0..warm_up + n {
        for (client, took) in clients.iter_mut().zip(&mut took) {
            let start = Instant::now();
            let answer = client.get("/api/x", &[]).await;
            if round >= warm_up {
                took.push(start.elapsed());
            }
            assert_eq!(
                (answer.status, answer.body.as_str()),
                (StatusCode::OK, "web")
            );
        }
    }
    took.map(|mut t| {
        t.sort();
        t[n * 99 / 100]
    })
}

/// Grow the process's file table ahead of the measurements. Linux grows it by doubling,
/// and a growth in a multi-threaded process stalls the thread that opens the file for
/// milliseconds (`synchronize_rcu`). Here the client, the gateway and the hanging mirror
/// share one process, so the 256 held copies (512 sockets) would cross two growths in the
/// middle of a measurement: a test artifact, paid once per process by a real gateway.
fn grow_file_table() {
    let files: Vec<_> = (0..1000)
        .map_while(|_| std::fs::File::open("/dev/null").ok())
        .collect();
    drop(files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_refusing_mirror_costs_the_real_requests_nothing() {
    grow_file_table();
    let web = Replica::start("web").await;
    let (hang, accepted) = hanging().await;
    let refuse = refusing().await;
    let plain = serve(&stack(&mirrored(web.addr, refuse, "")));
    let mirror = "    mirror: { service: shadow, percent: 100 }\n";
    let to_hanging = serve(&stack(&mirrored(web.addr, hang, mirror)));
    let to_refusing = serve(&stack(&mirrored(web.addr, refuse, mirror)));

    for path in [Path::Relay, Path::Full] {
        let gws = [&plain, &to_hanging, &to_refusing];
        let [without, with_hanging, with_refusing] = p99s(gws, path, 20, 500).await;
        eprintln!(
            "{path:?} p99 over 500 requests: no mirror {without:?}, hanging mirror \
             {with_hanging:?}, refusing mirror {with_refusing:?}"
        );
        // A mirror that held real requests would cost its timeout (seconds); 50 ms of slack
        // keeps one scheduler stall of a busy 2-core machine from failing the comparison.
        let bound = without * 2 + Duration::from_millis(50);
        assert!(
            with_hanging < bound,
            "{path:?}: {with_hanging:?} vs {without:?}"
        );
        assert!(
            with_refusing < bound,
            "{path:?}: {with_refusing:?} vs {without:?}"
        );
    }
    // The copies under way to the hanging mirror are bounded (256 per route): the rest
    // were skipped rather than piled up.
    eventually(DEADLINE, || {
        std::future::ready(match accepted.load(Ordering::SeqCst) {
            256 => Ok(()),
            n => Err(format!("{n} copies held by the hanging mirror")),
        })
    })
    .await;
    assert_eq!(web.count(), 3 * 2 * 520);
}
