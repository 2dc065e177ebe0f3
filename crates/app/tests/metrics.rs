//! `/metrics` and the access log, end to end: a known sequence of requests through the real
//! gateway, then the admin API's `/metrics` read with a Prometheus text-format parser, and the
//! access log read back in both formats.
use std::time::Duration;

use prometheus_parse::{Scrape, Value};
use shoal_test_support::{Backends, Route, StackBuilder, TestGateway, eventually};

/// The admin API's `/metrics`, parsed.
async fn scrape(gw: &TestGateway) -> (Scrape, String) {
    let url = format!("http://{}/metrics", gw.shoal().admin_addr());
    let answer = gw.client().get(&url).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        answer.header("content-type")
    );
    let text = answer.text();
    let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    (parsed, text)
}

/// The value of the one sample of `metric` whose labels include `labels` (0 if none).
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(0.0, |b| b.count),
            Value::Summary(_) => panic!("no summaries"),
        })
        .collect();
    assert!(
        found.len() <= 1,
        "{metric}{labels:?} matches {} series",
        found.len()
    );
    found.first().copied().unwrap_or(0.0)
}

/// Sum over every sample of `metric` whose labels include `labels`.
fn sum(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            _ => 0.0,
        })
        .sum()
}

fn stack(backends: &Backends) -> StackBuilder {
    StackBuilder::new()
        .service("web", backends)
        .route_with(Route::new("PathPrefix(`/api`)", "web").name("api"))
        .route_with(Route::new("PathPrefix(`/status`)", "web").name("status"))
}

/// 6 × GET /api/whoami (200), 3 × GET /status/500, 1 × POST /api/echo, 1 × PURGE /api/x,
/// 2 × GET /nowhere (no route: 404).
async fn known_traffic(gw: &TestGateway) {
    for _ in 0..6 {
        assert_eq!(gw.get("/api/whoami").await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(gw.get("/status/500").await.status, 500);
    }
    let post = http::Request::post(gw.url("/api/echo"))
        .body(shoal_test_support::body::full("hi"))
        .unwrap();
    assert_eq!(gw.client().request(post).await.status, 200);
    let purge = http::Request::builder()
        .method("PURGE")
        .uri(gw.url("/api/whoami"))
        .body(shoal_test_support::body::empty())
        .unwrap();
    assert_eq!(gw.client().request(purge).await.status, 200);
    for _ in 0..2 {
        assert_eq!(gw.get("/nowhere").await.status, 404);
    }
}

#[tokio::test]
async fn metrics_count_requests_by_code_route_service_and_replica() {
    let backends = Backends::start(2).await;
    let gw = stack(&backends).start().await;
    known_traffic(&gw).await;
    let (m, text) = scrape(&gw).await;
    let get = [("method", "GET"), ("protocol", "http")];

    // Entrypoint: every request, 404s included.
    let ep = |code: &str, method: &str| {
        value(
            &m,
            "shoal_entrypoint_requests_total",
            &[
                ("code", code),
                ("method", method),
                ("protocol", "http"),
                ("entrypoint", "web"),
            ],
        )
    };
    assert_eq!(ep("200", "GET"), 6.0, "{text}");
    assert_eq!(ep("500", "GET"), 3.0);
    assert_eq!(ep("404", "GET"), 2.0);
    assert_eq!(ep("200", "POST"), 1.0);
    assert_eq!(ep("200", "EXTENSION_METHOD"), 1.0);
    assert_eq!(sum(&m, "shoal_entrypoint_requests_total", &[]), 13.0);

    // Router: per route, with its service; no route, no series.
    let router = |route: &str, code: &str| {
        let mut l = vec![("router", route), ("service", "web"), ("code", code)];
        l.extend(get);
        value(&m, "shoal_router_requests_total", &l)
    };
    assert_eq!(router("api", "200"), 6.0);
    assert_eq!(router("status", "500"), 3.0);
    assert_eq!(router("status", "200"), 0.0);
    assert_eq!(sum(&m, "shoal_router_requests_total", &[]), 11.0);
    assert!(!text.contains("code=\"404\",method=\"GET\",protocol=\"http\",router"));

    // Service.
    let mut l = vec![("service", "web"), ("code", "500")];
    l.extend(get);
    assert_eq!(value(&m, "shoal_service_requests_total", &l), 3.0);
    assert_eq!(
        sum(&m, "shoal_service_requests_total", &[("service", "web")]),
        11.0
    );

    // Histograms: Traefik's buckets, counts matching the counters.
    let mut l = vec![("service", "web"), ("code", "200")];
    l.extend(get);
    assert_eq!(value(&m, "shoal_service_request_duration_seconds", &l), 6.0);
    assert_eq!(
        value(&m, "shoal_service_request_duration_seconds_count", &l),
        6.0
    );
    let buckets: Vec<f64> = m
        .samples
        .iter()
        .find(|s| s.metric == "shoal_entrypoint_request_duration_seconds")
        .map(|s| match &s.value {
            Value::Histogram(b) => b.iter().map(|b| b.less_than).collect(),
            _ => vec![],
        })
        .unwrap();
    assert_eq!(buckets, vec![0.1, 0.3, 1.2, 5.0, f64::INFINITY]);

    // Per replica: round robin spread the 11 routed requests 6/5.
    let mut per_replica: Vec<f64> = backends
        .iter()
        .map(|b| {
            value(
                &m,
                "shoal_replica_requests_total",
                &[("service", "web"), ("replica", b.url())],
            )
        })
        .collect();
    per_replica.sort_by(f64::total_cmp);
    assert_eq!(per_replica, vec![5.0, 6.0], "{text}");
    for b in backends.iter() {
        let up = [("service", "web"), ("url", b.url())];
        assert_eq!(value(&m, "shoal_service_server_up", &up), 1.0);
        let r = [("service", "web"), ("replica", b.url())];
        assert_eq!(value(&m, "shoal_replica_up", &r), 1.0);
        assert_eq!(value(&m, "shoal_replica_in_flight", &r), 0.0);
    }
    assert_eq!(
        value(&m, "shoal_service_replicas_desired", &[("service", "web")]),
        2.0
    );
    assert_eq!(
        value(&m, "shoal_service_replicas_ready", &[("service", "web")]),
        2.0
    );
    assert!(
        value(
            &m,
            "shoal_open_connections",
            &[("entrypoint", "web"), ("protocol", "TCP")]
        ) >= 1.0
    );
    assert_eq!(value(&m, "shoal_config_reloads_total", &[]), 0.0);
    assert!(value(&m, "shoal_config_last_reload_success", &[]) > 1.7e9);

    // A reload counts.
    gw.reload(&stack(&backends)).expect("reloads");
    let (m, _) = scrape(&gw).await;
    assert_eq!(value(&m, "shoal_config_reloads_total", &[]), 1.0);
    // Unchanged services keep their counts across a reload.
    assert_eq!(
        sum(&m, "shoal_service_requests_total", &[("service", "web")]),
        11.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn traefik_prefix_names_families_and_services_as_traefik_does() {
    let backends = Backends::start(2).await;
    let gw = stack(&backends)
        .top("metrics: { prefix: traefik, buckets: [0.05, 1] }")
        .start()
        .await;
    known_traffic(&gw).await;
    let (m, text) = scrape(&gw).await;
    assert!(!text.contains("shoal_entrypoint_requests_total"));
    assert_eq!(
        value(
            &m,
            "traefik_entrypoint_requests_total",
            &[("code", "404"), ("entrypoint", "web"), ("method", "GET")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            "traefik_router_requests_total",
            &[
                ("code", "200"),
                ("method", "GET"),
                ("router", "api@shoal"),
                ("service", "web@shoal")
            ]
        ),
        6.0
    );
    assert_eq!(
        sum(
            &m,
            "traefik_service_requests_total",
            &[("service", "web@shoal"), ("code", "500")]
        ),
        3.0
    );
    assert_eq!(
        sum(
            &m,
            "traefik_service_retries_total",
            &[("service", "web@shoal")]
        ),
        0.0
    );
    for b in backends.iter() {
        let up = [("service", "web@shoal"), ("url", b.url())];
        assert_eq!(value(&m, "traefik_service_server_up", &up), 1.0);
    }
    let buckets: Vec<f64> = m
        .samples
        .iter()
        .find(|s| s.metric == "traefik_service_request_duration_seconds")
        .map(|s| match &s.value {
            Value::Histogram(b) => b.iter().map(|b| b.less_than).collect(),
            _ => vec![],
        })
        .unwrap();
    assert_eq!(buckets, vec![0.05, 1.0, f64::INFINITY]);
    assert!(value(&m, "traefik_config_last_reload_success", &[]) > 1.7e9);
    // shoal's own series keep their prefix.
    assert_eq!(
        sum(&m, "shoal_replica_requests_total", &[("service", "web")]),
        11.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn metrics_false_counts_nothing() {
    let backends = Backends::start(1).await;
    let gw = stack(&backends).top("metrics: false").start().await;
    known_traffic(&gw).await;
    let (m, _) = scrape(&gw).await;
    assert_eq!(sum(&m, "shoal_entrypoint_requests_total", &[]), 0.0);
    // The gauges read at scrape time are still there.
    assert_eq!(
        value(&m, "shoal_service_replicas_ready", &[("service", "web")]),
        1.0
    );
    gw.shutdown().await;
}

/// The access log's lines, once there are `n`.
async fn log_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    eventually(Duration::from_secs(5), || async {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            Ok(lines)
        } else {
            Err(format!("{} of {n} lines", lines.len()))
        }
    })
    .await
}

/// A gateway logging in `format` to `path`, after `known_traffic`, and the 13 lines logged.
async fn logged_traffic(
    backends: &Backends,
    format: &str,
    path: &std::path::Path,
) -> (TestGateway, Vec<String>) {
    let gw = stack(backends)
        .top(&format!(
            "access_log: {{ format: {format}, path: '{}' }}",
            path.display()
        ))
        .start()
        .await;
    known_traffic(&gw).await;
    let lines = log_lines(path, 13).await;
    (gw, lines)
}

#[tokio::test]
async fn json_access_log_has_a_line_per_request() {
    let backends = Backends::start(2).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let (gw, lines) = logged_traffic(&backends, "json", &path).await;
    assert_eq!(lines.len(), 13);
    let entries: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let first = &entries[0];
    assert_eq!(first["RequestMethod"], "GET");
    assert_eq!(first["RequestPath"], "/api/whoami");
    assert_eq!(first["RequestProtocol"], "HTTP/1.1");
    assert_eq!(first["DownstreamStatus"], 200);
    assert_eq!(first["RouterName"], "api");
    assert_eq!(first["ServiceName"], "web");
    assert_eq!(first["EntryPointName"], "web");
    assert_eq!(first["ClientHost"], "127.0.0.1");
    let replica = first["Replica"].as_str().unwrap();
    assert!(backends.iter().any(|b| b.url() == replica), "{replica}");
    assert_eq!(first["ServiceURL"], replica);
    assert!(first["Duration"].as_u64().unwrap() > 0);
    assert!(first["StartUTC"].as_str().unwrap().ends_with('Z'));
    let statuses: Vec<u64> = entries
        .iter()
        .map(|e| e["DownstreamStatus"].as_u64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec![
            200, 200, 200, 200, 200, 200, 500, 500, 500, 200, 200, 404, 404
        ]
    );
    assert_eq!(entries[9]["RequestMethod"], "POST");
    assert_eq!(entries[10]["RequestMethod"], "PURGE");
    let no_route = &entries[11];
    assert_eq!(no_route["RouterName"], serde_json::Value::Null);
    assert_eq!(no_route["Replica"], serde_json::Value::Null);
    gw.shutdown().await;
}

#[tokio::test]
async fn common_access_log_has_a_line_per_request() {
    let backends = Backends::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/access.log");
    let (gw, lines) = logged_traffic(&backends, "common", &path).await;
    assert_eq!(lines.len(), 13);
    let url = backends[0].url();
    // 127.0.0.1 - - [23/Nov/2026:17:00:00 +0000] "GET /api/whoami HTTP/1.1" 200 … 1 "api" "web" "URL" 0ms
    let first = &lines[0];
    assert!(first.starts_with("127.0.0.1 - - ["), "{first}");
    assert!(
        first.contains(" +0000] \"GET /api/whoami HTTP/1.1\" 200 "),
        "{first}"
    );
    assert!(
        first.contains(&format!(" 1 \"api\" \"web\" \"{url}\" ")),
        "{first}"
    );
    assert!(first.ends_with("ms"), "{first}");
    assert!(
        lines[6].contains("\"GET /status/500 HTTP/1.1\" 500 "),
        "{}",
        lines[6]
    );
    assert!(lines[6].contains(" 7 \"status\" \"web\" "), "{}", lines[6]);
    assert!(
        lines[9].contains("\"POST /api/echo HTTP/1.1\" 200 "),
        "{}",
        lines[9]
    );
    let no_route = &lines[12];
    assert!(
        no_route.contains("\"GET /nowhere HTTP/1.1\" 404 "),
        "{no_route}"
    );
    assert!(no_route.contains(" 13 \"-\" \"-\" \"-\" "), "{no_route}");
    gw.shutdown().await;
}
