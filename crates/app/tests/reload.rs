//! End-to-end tests of reloading the stack file while the gateway serves: no request fails
//! while routes, servers and algorithms change, an invalid file changes nothing, and a reload
//! leaves alone the replicas whose spec did not change.
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use shoal_app::{Shoal, StartOptions};
use shoal_core::EventKind;
use shoal_test_support::{
    Backend, Backends, Client, Conn, DEADLINE, Service, StackBuilder, TestGateway, body,
    eventually, start_shoal,
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
    let err = gw.reload_text(broken_yaml).unwrap_err().to_string();
    assert!(
        err.contains("shoal.yaml"),
        "the error names the file: {err}"
    );
    assert_eq!(gw.get("/").await.status, StatusCode::OK);

    let unknown_service = StackBuilder::new()
        .service("web", &backend)
        .route("PathPrefix(`/`)", "wbe")
        .yaml();
    let err = gw.reload_text(&unknown_service).unwrap_err().to_string();
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

/// A replica for [`reloads_during_and_after_a_scale_up_replace_no_replica`]: replica 0 listens
/// at once, the others only once the file `$GATE` exists, so that the test decides how long
/// a scale-up stays in progress (the replica polls; the test never sleeps).
const GATED_REPLICA: &str = r#"
import http.server, os, time
if os.environ["SHOAL_REPLICA"] != "0":
    while not os.path.exists(os.environ["GATE"]):
        time.sleep(0.02)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// `GET /api/v1/services/web` on the admin API.
async fn web_status(client: &Client, admin: std::net::SocketAddr) -> serde_json::Value {
    let answer = client
        .get(&format!("http://{admin}/api/v1/services/web"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    answer.json()
}

/// `(index, pid)` of every replica the status lists, draining ones included.
fn replica_pids(status: &serde_json::Value) -> Vec<(u64, Option<u64>)> {
    status["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .map(|r| (r["index"].as_u64().expect("index"), r["pid"].as_u64()))
        .collect()
}

/// Issue 16: `shoal scale web 3` on a file saying `replicas: 1`, then `shoal reload` twice
/// (the file unchanged): the scale must stay and no replica may be replaced, neither those
/// still starting when the first reload lands nor the running ones.
#[tokio::test]
async fn reloads_during_and_after_a_scale_up_replace_no_replica() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gate = dir.path().join("go");
    let script = dir.path().join("replica.py");
    std::fs::write(&script, GATED_REPLICA).expect("write the replica");
    let yaml = format!(
        "gateway:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n\
         services:\n  web:\n    command: [python3, '{script}']\n    env: {{ GATE: '{gate}' }}\n\
         \x20   replicas: 1\n    stop: {{ drain_timeout: 1s, grace: 1s }}\n\
         routes:\n  - match: PathPrefix(`/`)\n    service: web\n",
        script = script.display(),
        gate = gate.display(),
    );
    let shoal = start_shoal(dir.path(), &yaml).await;
    let admin = shoal.admin_addr();
    let client = Client::http1();

    // `shoal up`: one replica, running.
    eventually(DEADLINE, || async {
        let st = web_status(&client, admin).await;
        match (st["state"].as_str(), st["ready"].as_u64()) {
            (Some("running"), Some(1)) => Ok(()),
            _ => Err(st),
        }
    })
    .await;

    // `shoal scale web 3`: replicas 1 and 2 start, and stay starting until the gate opens.
    let scale = http::Request::post(format!("http://{admin}/api/v1/services/web/scale"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body::full(r#"{"replicas":3}"#))
        .expect("a request");
    let answer = client.request(scale).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let scaled = eventually(DEADLINE, || async {
        let st = web_status(&client, admin).await;
        let replicas = st["replicas"].as_array().cloned().unwrap_or_default();
        let starting = replicas
            .iter()
            .filter(|r| r["state"] == "starting" && r["pid"].is_u64())
            .count();
        if replicas.len() == 3 && starting == 2 {
            Ok(replica_pids(&st))
        } else {
            Err(st)
        }
    })
    .await;

    // 1. `shoal reload` while the scale-up is in progress.
    shoal.reload().expect("reload 1");
    let st = web_status(&client, admin).await;
    assert_eq!(st["desired"], 3, "file unchanged: the scale wins: {st}");
    assert_eq!(
        replica_pids(&st),
        scaled,
        "reload 1 replaced replicas: {st}"
    );

    std::fs::write(&gate, "").expect("open the gate");
    let running = eventually(DEADLINE, || async {
        let st = web_status(&client, admin).await;
        match (st["state"].as_str(), st["ready"].as_u64()) {
            (Some("running"), Some(3)) => Ok(st),
            _ => Err(st),
        }
    })
    .await;
    assert_eq!(replica_pids(&running), scaled, "replaced after reload 1");

    // 2. `shoal reload` again, everything running.
    shoal.reload().expect("reload 2");
    let st = web_status(&client, admin).await;
    assert_eq!(st["desired"], 3, "file unchanged: the scale wins: {st}");
    assert_eq!(st["state"], "running", "{st}");
    assert_eq!(
        replica_pids(&st),
        scaled,
        "reload 2 replaced replicas: {st}"
    );

    // Each replica was started once: nothing was rolled.
    let started: Vec<Option<u32>> = shoal
        .events()
        .since(0)
        .into_iter()
        .filter(|e| e.service == "web" && e.kind == EventKind::Started)
        .map(|e| e.replica)
        .collect();
    assert_eq!(started, [Some(0), Some(1), Some(2)], "replica starts");
    shoal.shutdown().await;
}

#[tokio::test]
async fn a_running_demo_adopts_the_file_shoal_init_writes_on_reload() {
    // The tour: `shoal up` (the built-in demo, no file), `shoal init`, edit, `shoal reload`.
    let backends = Backends::named(&["first", "second"]).await;
    let dir = tempfile::tempdir().unwrap();
    let demo_file = dir.path().join("shoal.yaml");
    let demo = StackBuilder::new()
        .service("web", &[&backends[0]])
        .route("PathPrefix(`/`)", "web");
    let shoal = Shoal::start(StartOptions {
        stack: demo.stack(),
        stack_path: None,
        state_dir: dir.path().join(".shoal"),
        echo_logs: false,
        color: false,
        shoal_exe: PathBuf::from("/nonexistent/shoal"),
        demo_file: Some(demo_file.clone()),
        discovery: Default::default(),
    })
    .await
    .expect("shoal starts");
    let client = Client::http1();
    let url = format!("http://{}/whoami", shoal.gateway_addr());
    assert_eq!(client.get(&url).await.served_by(), "first");

    // No file yet: the answer says how to get one, and nothing changes.
    let e = shoal.reload().unwrap_err().to_string();
    assert!(e.contains("shoal init"), "{e}");

    // `shoal init` wrote it and the user edited it: the reload runs it from now on.
    let edited = StackBuilder::new()
        .service("web", &[&backends[1]])
        .route("PathPrefix(`/`)", "web");
    std::fs::write(&demo_file, edited.yaml()).unwrap();
    let done = shoal.reload().expect("the file is adopted");
    assert!(done.contains("runs from this file now"), "{done}");
    eventually(DEADLINE, || async {
        match client.get(&url).await.served_by() {
            "second" => Ok(()),
            other => Err(other.to_owned()),
        }
    })
    .await;
    // And it is the running file: a bad edit is refused like any reload.
    std::fs::write(&demo_file, "services: [").unwrap();
    assert!(shoal.reload().is_err());
    assert_eq!(client.get(&url).await.served_by(), "second");
    shoal.shutdown().await;
}
