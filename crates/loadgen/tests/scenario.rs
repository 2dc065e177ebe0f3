//! `shoal load --scenario`: user flows against an in-test HTTP server on 127.0.0.1:0 that
//! issues tokens, hands out ids and checks that later requests carry them — so each test
//! compares what the generator reports with what the server saw.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shoal_loadgen::{LoadArgs, Plan, Report, RunOptions};
use tokio::net::TcpListener;

/// What the server saw.
#[derive(Debug, Default)]
struct Seen {
    /// Requests per path (without the query).
    paths: BTreeMap<String, u64>,
    /// Tokens issued by `POST /login`.
    issued: HashSet<String>,
    /// `GET /items/42` requests that carried an issued token and the session header.
    authorized: u64,
    /// Login bodies, as sent.
    logins: Vec<String>,
}

/// The app under test:
/// - `POST /login` → `{"token": "tok-N", "user": {"id": N}}` and `x-session: sN`;
/// - `GET /items` → an HTML page with `href="/items/42"`;
/// - `GET /items/42` → 200 with an issued bearer token and `x-session`, else 403;
/// - `GET /slow` → 200 after 100 ms; `GET /boom` → 500; anything else → 200 `{}`.
#[derive(Debug, Clone)]
struct App {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl App {
    async fn start() -> App {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = App {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
        };
        let seen = app.seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let seen = seen.clone();
                        async move { Ok::<_, Infallible>(answer(&seen, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        app
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn count(&self, path: &str) -> u64 {
        self.seen
            .lock()
            .unwrap()
            .paths
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

async fn answer(seen: &Mutex<Seen>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let session = req.headers().contains_key("x-session");
    let method = req.method().clone();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let ok = |b: String| Response::new(Full::new(Bytes::from(b)));
    let n = {
        let mut s = seen.lock().unwrap();
        *s.paths.entry(path.clone()).or_default() += 1;
        s.paths.values().sum::<u64>()
    };
    match (method.as_str(), path.as_str()) {
        ("POST", "/login") => {
            let token = format!("tok-{n}");
            let mut s = seen.lock().unwrap();
            s.issued.insert(token.clone());
            s.logins.push(String::from_utf8_lossy(&body).into_owned());
            let mut r = ok(format!(r#"{{"token": "{token}", "user": {{"id": {n}}}}}"#));
            r.headers_mut()
                .insert("x-session", format!("s{n}").parse().unwrap());
            r
        }
        ("GET", "/items") => ok("<a href=\"/items/42\">song</a>".into()),
        ("GET", "/items/42") => {
            let mut s = seen.lock().unwrap();
            if session && auth.is_some_and(|t| s.issued.contains(&t)) {
                s.authorized += 1;
                ok("{}".into())
            } else {
                let mut r = ok("no".into());
                *r.status_mut() = http::StatusCode::FORBIDDEN;
                r
            }
        }
        ("GET", "/slow") => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            ok("{}".into())
        }
        ("GET", "/boom") => {
            let mut r = ok("{}".into());
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
        _ => ok("{}".into()),
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: LoadArgs,
}

/// A scenario file in a temp dir, and the plan of `shoal load --scenario FILE ARGS…`.
fn plan(yaml: &str, args: &[&str]) -> Result<Plan, String> {
    let dir = std::env::temp_dir().join(format!(
        "shoal-scenario-{}-{}",
        std::process::id(),
        fastish_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("flows.yaml");
    std::fs::write(&file, yaml).unwrap();
    let file = file.display().to_string();
    let line: Vec<&str> = ["load", "--scenario", file.as_str()]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let cli = Cli::try_parse_from(line).map_err(|e| e.to_string())?;
    let plan = Plan::from_args(&cli.args).map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    plan
}

fn fastish_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn run(yaml: &str, args: &[&str]) -> Report {
    let p = plan(yaml, args).unwrap_or_else(|e| panic!("{e}"));
    shoal_loadgen::run(p, RunOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

const FLOW: &str = r#"
users:
  listener:
    steps:
      - name: login
        method: POST
        url: /login
        headers: { content-type: application/json }
        body: '{"user": ${user}, "flow": ${flow}}'
        capture:
          token: { json: /token }
          uid: { json: /user/id }
          session: { header: x-session }
      - name: browse
        url: /items
        capture: { id: { regex: 'href="/items/(\d+)"' } }
      - name: play
        url: /items/${id}?u=${uid}
        headers: { authorization: 'Bearer ${token}', x-session: '${session}' }
        expect: 200
"#;

fn step<'r>(r: &'r Report, name: &str) -> &'r shoal_loadgen::report::StepRow {
    let sc = r.scenario.as_ref().expect("a scenario report");
    sc.steps.iter().find(|s| s.name == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_values_reach_later_steps_over_http1_and_http2() {
    for http in ["1.1", "2"] {
        let app = App::start().await;
        let r = run(FLOW, &[&app.base(), "-c", "3", "-n", "30", "--http", http]).await;
        let sc = r.scenario.as_ref().unwrap();
        // Every flow ran its three steps, and the server checked the captured token and
        // session on each `play` (it answers 403 otherwise).
        assert_eq!(
            (sc.users[0].flows, sc.users[0].completed, sc.users[0].failed),
            (30, 30, 0),
            "{http}: {}",
            r.summary()
        );
        assert_eq!(app.seen.lock().unwrap().authorized, 30, "{http}");
        assert_eq!(app.count("/items/42"), 30);
        for name in ["login", "browse", "play"] {
            let s = step(&r, name);
            assert_eq!((s.requests, s.ok, s.failed), (30, 30, 0), "{http} {name}");
            assert_eq!(s.latency.count, 30, "each step has its own histogram");
        }
        assert_eq!(r.latency.count, 90, "overall: every step's answers");
        assert_eq!(
            (r.requests.sent, r.requests.ok, r.requests.failed),
            (90, 90, 0)
        );
        // ${user} is the user's number (0..3 with -c 3), ${flow} the run's flow number.
        let logins = app.seen.lock().unwrap().logins.clone();
        let mut flows: Vec<u64> = logins
            .iter()
            .map(|b| {
                let v: serde_json::Value = serde_json::from_str(b).unwrap();
                assert!(v["user"].as_u64().unwrap() < 3, "{b}");
                v["flow"].as_u64().unwrap()
            })
            .collect();
        flows.sort_unstable();
        assert_eq!(flows, (0..30).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_ends_that_flow_and_is_counted_with_its_reason() {
    let app = App::start().await;
    let yaml = r#"
users:
  a:
    steps:
      - { name: boom, url: /boom, expect: 200 }
      - { name: never, url: /never }
  b:
    steps:
      - name: login
        method: POST
        url: /login
        capture: { missing: { json: /nope } }
      - { name: after, url: /after }
  c:
    steps:
      - { name: forbidden, url: /items/42, expect: [403] }
      - { name: next, url: /next }
"#;
    let r = run(yaml, &[&app.base(), "-c", "3", "-n", "30", "-t", "1"]).await;
    let sc = r.scenario.as_ref().unwrap();
    // -c 3 over three types of weight 1: one user each, looping until 30 flows in all.
    let flows: u64 = sc.users.iter().map(|u| u.flows).sum();
    assert_eq!(flows, 30, "{}", r.summary());
    let boom = step(&r, "boom");
    assert_eq!(boom.failed, boom.requests);
    assert_eq!(
        boom.failures.get("status 500 (expected 200)"),
        Some(&boom.requests)
    );
    assert_eq!(step(&r, "never").requests, 0);
    assert_eq!(app.count("/never"), 0, "the flow ended at the failed step");
    let login = step(&r, "login");
    assert_eq!(
        login.failures.get("capture `missing` not found"),
        Some(&login.requests)
    );
    assert_eq!(app.count("/after"), 0);
    // An expected 403 passes.
    assert_eq!(step(&r, "forbidden").failed, 0);
    assert_eq!(step(&r, "next").requests, step(&r, "forbidden").requests);
    for u in &sc.users[..2] {
        assert_eq!((u.completed, u.failed), (0, u.flows), "{}", u.name);
    }
    assert_eq!(sc.users[2].completed, sc.users[2].flows);
    assert_eq!(r.requests.failed, boom.requests + login.requests);
    let s = r.summary();
    eprintln!("{s}");
    assert!(
        s.contains("failed     a boom: status 500 (expected 200) ×"),
        "{s}"
    );
    assert!(s.contains("a ×"), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_model_starts_flows_at_the_rate_split_by_weight() {
    let app = App::start().await;
    let yaml = "
users:
  buyer: { weight: 3, steps: [ { url: /a }, { url: /a2 } ] }
  browser: { weight: 1, steps: [ { url: /b } ] }
";
    let r = run(
        yaml,
        &[&app.base(), "--rate", "200", "-n", "200", "-c", "20"],
    )
    .await;
    let sc = r.scenario.as_ref().unwrap();
    assert_eq!(r.plan.model, "open");
    assert_eq!(
        (sc.users[0].flows, sc.users[1].flows),
        (150, 50),
        "{}",
        r.summary()
    );
    assert_eq!(
        (app.count("/a"), app.count("/a2"), app.count("/b")),
        (150, 150, 50)
    );
    assert_eq!(r.requests.unsent, 0);
    assert!(r.summary().contains("open model, 200 flows/s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn think_time_paces_the_flow_but_is_not_latency() {
    let app = App::start().await;
    let yaml = "
think: 100ms
users:
  u: { steps: [ { url: /x }, { url: /y } ] }
";
    let r = run(yaml, &[&app.base(), "-c", "1", "-n", "3"]).await;
    // Closed model: a pause after each step, the last included (it paces the loop).
    assert!(r.elapsed_secs >= 0.6, "{}", r.elapsed_secs);
    assert!(r.elapsed_secs < 3.0, "{}", r.elapsed_secs);
    assert_eq!(r.latency.count, 6);
    assert!(r.latency.max < 100.0, "{:?}", r.latency);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_that_waits_for_a_free_user_is_charged_from_its_due_time() {
    // One worker, 50 flows/s, 100 ms per flow: flows queue behind each other. The first
    // step's corrected latency includes the queueing; the uncorrected one does not; flows
    // still due at the end are reported as unsent.
    let app = App::start().await;
    let yaml = "users: { u: { steps: [ { url: /slow } ] } }";
    let r = run(yaml, &[&app.base(), "--rate", "50", "-d", "1s", "-c", "1"]).await;
    let corrected = r.latency.p99;
    let uncorrected = r.latency_uncorrected.unwrap().p99;
    assert!(uncorrected < 200.0, "{uncorrected}");
    assert!(
        corrected > 2.0 * uncorrected,
        "{corrected} vs {uncorrected}"
    );
    assert!(r.requests.unsent > 20, "{}", r.summary());
    assert_eq!(step(&r, "GET /slow").latency.p99, corrected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_have_a_section_per_step() {
    let app = App::start().await;
    let r = run(FLOW, &[&app.base(), "-c", "1", "-n", "2"]).await;
    let json = serde_json::to_value(&r).unwrap();
    let steps = json["scenario"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[2]["name"], "play");
    assert_eq!(steps[2]["url"], "/items/${id}?u=${uid}");
    assert_eq!(steps[2]["requests"], 2);
    assert!(steps[2]["latency"]["p99"].as_f64().unwrap() > 0.0);
    let html = shoal_loadgen::html::render(&r);
    assert!(html.contains("<h2>Steps</h2>"));
    assert!(
        html.contains("<td>play</td>") || html.contains(">play</td>"),
        "{html}"
    );
    let s = r.summary();
    assert!(s.contains("flows      listener ×2: 2 completed"), "{s}");
    assert!(s.contains("listener play"), "{s}");
}

#[test]
fn bad_files_and_flags_are_errors_with_their_place() {
    let e = plan(
        "users:\n  a:\n    steps:\n      - url: /x\n        expect: ok\n",
        &["127.0.0.1:9"],
    )
    .unwrap_err();
    assert!(e.starts_with("--scenario: "), "{e}");
    assert!(
        e.contains("flows.yaml:5:17: users.a.steps[0].expect: `ok` is not a status code"),
        "{e}"
    );
    let e = plan("users: {a: {steps: [{url: /x}]}}", &["h:1", "h:2"]).unwrap_err();
    assert!(
        e.starts_with("URL: with --scenario, give at most one URL"),
        "{e}"
    );
    let e = plan("users: {a: {steps: [{url: /x}]}}", &["h:1", "-m", "POST"]).unwrap_err();
    assert!(e.starts_with("--method: "), "{e}");
    let e = plan("users: {a: {steps: [{url: /x}]}}", &[]).unwrap_err();
    assert!(e.contains("is a path: set `base:`"), "{e}");
    // A missing file names itself.
    let cli = Cli::try_parse_from(["load", "--scenario", "/nonexistent/flows.yaml"]).unwrap();
    let e = Plan::from_args(&cli.args).unwrap_err().to_string();
    assert!(
        e.starts_with("--scenario: /nonexistent/flows.yaml:1:1: cannot read it"),
        "{e}"
    );
    // Without --scenario, a URL is still required.
    assert!(Cli::try_parse_from(["load"]).is_err());
}

#[test]
fn the_docs_example_is_valid() {
    let docs = include_str!("../../../docs/load.md");
    let section = docs
        .split("## Scenarios")
        .nth(1)
        .expect("docs/load.md has the section");
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a yaml block");
    let s = shoal_loadgen::scenario::parse("load.md", yaml, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.users.len(), 2);
    assert_eq!(s.steps[0].captures.len(), 3);
}

#[test]
fn the_example_scenario_is_valid() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/music-share/flows.yaml"
    );
    let cli = Cli::try_parse_from(["load", "--scenario", file]).unwrap();
    let p = Plan::from_args(&cli.args).unwrap_or_else(|e| panic!("{e}"));
    let sc = p.scenario.unwrap();
    assert!(sc.users.len() >= 2 && sc.steps.len() >= 4);
}
