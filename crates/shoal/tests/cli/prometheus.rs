//! A real Prometheus (Debian's `prometheus`) scraping a real `shoal up` every second: known
//! traffic, then the queries users put on dashboards, evaluated by Prometheus' HTTP API,
//! must give the values that traffic implies.
//!
//! `scripts/test.sh` installs `prometheus` when it is missing; this test also tries to. It is
//! skipped, saying so, only when Prometheus cannot be installed outside CI (no network); on
//! CI (`CI` set) a missing Prometheus fails it.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::sample_service;
use crate::support::*;

/// The `prometheus` binary, installed with apt-get if it is missing; None if it cannot be.
pub(crate) fn prometheus_binary() -> Option<PathBuf> {
    let find = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("prometheus"))
                .find(|p| p.is_file())
        })
    };
    if let Some(p) = find() {
        return Some(p);
    }
    eprintln!("prometheus is not installed: trying `apt-get install -y prometheus`");
    let installed = Command::new("sh")
        .args([
            "-c",
            "(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus) >&2",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if installed { find() } else { None }
}

/// A Prometheus server we started; killed (by its PID) when dropped.
pub(crate) struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    pub(crate) fn start(binary: &Path, dir: &Path, scrape: SocketAddr) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: shoal\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{scrape}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            addr,
            dir: dir.to_owned(),
        }
    }

    /// Wait until Prometheus is ready and has scraped shoal once.
    pub(crate) fn wait_scraping(&self) {
        wait_for(
            "prometheus to scrape shoal",
            Duration::from_secs(30),
            || {
                let ready = http(self.addr, "GET", "/-/ready", None).is_ok_and(|r| r.status == 200);
                (ready && self.scalar("up{job=\"shoal\"}") == Some(1.0)).then_some(())
            },
        );
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query's result: (labels, value) per series.
    pub(crate) fn query(&self, promql: &str) -> Vec<(Value, f64)> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let r = http(self.addr, "GET", &path, None).expect("prometheus answers");
        assert_eq!(r.status, 200, "{promql}: {}", r.text());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["status"], "success", "{promql}: {v}");
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let value = s["value"][1].as_str().unwrap().parse().unwrap();
                (s["metric"].clone(), value)
            })
            .collect()
    }

    /// The single value of `promql`, if it has exactly one series.
    fn scalar(&self, promql: &str) -> Option<f64> {
        match self.query(promql).as_slice() {
            [(_, v)] => Some(*v),
            _ => None,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Percent-encoding for a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= tolerance * expected.abs()
}

#[test]
fn prometheus_evaluates_dashboard_queries_over_known_traffic() {
    let Some(binary) = prometheus_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: prometheus could not be installed"
        );
        eprintln!(
            "SKIPPED prometheus_evaluates_dashboard_queries_over_known_traffic: \
             `prometheus` is not installed and `apt-get install prometheus` failed (no network?)"
        );
        return;
    };
    let stack = Stack::new(&sample_service("web", 2, ""), &[("/", "web")], "");
    // Named routes, so the router label is known.
    let yaml = std::fs::read_to_string(stack.path().join("shoal.yaml")).unwrap();
    let (head, _) = yaml.split_once("routes:\n").unwrap();
    let yaml = format!(
        "{head}routes:\n  - {{ match: PathPrefix(`/whoami`), service: web, name: fast }}\n  - {{ match: PathPrefix(`/sleep`), service: web, name: slow }}\n  - {{ match: PathPrefix(`/status`), service: web, name: errors }}\n"
    );
    std::fs::write(stack.path().join("shoal.yaml"), yaml).unwrap();
    let mut up = stack.up();
    up.wait_listening(&stack);
    stack.wait_ready("web", 2, Duration::from_secs(20));

    let prom_dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(&binary, prom_dir.path(), stack.admin);
    prom.wait_scraping();

    let get = |path: &str, status: u16| {
        let r = stack.get(path).expect("gateway answers");
        assert_eq!(r.status, status, "{path}: {}", r.text());
    };
    // One request per route first, and wait until Prometheus has seen them: each series
    // then exists before the measured traffic, so the traffic is all in its increase.
    get("/whoami", 200);
    get("/sleep?ms=150", 200);
    get("/status/500", 500);
    let total = "sum(shoal_router_requests_total)";
    wait_for(
        "the first scrape of the series",
        Duration::from_secs(15),
        || (prom.scalar(total) == Some(3.0)).then_some(()),
    );

    // Known traffic over about 7 s: 60 fast, 40 slow (150 ms), 20 errors (500).
    let (fast, slow, errors) = (60.0, 40.0, 20.0);
    for _ in 0..20 {
        for _ in 0..3 {
            get("/whoami", 200);
        }
        get("/status/500", 500);
        for _ in 0..2 {
            get("/sleep?ms=150", 200);
        }
    }
    wait_for(
        "the last scrape of the traffic",
        Duration::from_secs(15),
        || (prom.scalar(total) == Some(123.0)).then_some(()),
    );

    // Requests per second by router over the last minute: each route's traffic / 60 s.
    let rates = prom.query("sum by(router) (rate(shoal_router_requests_total[1m]))");
    let rate_of = |router: &str| {
        rates
            .iter()
            .find(|(m, _)| m["router"] == router)
            .map_or(0.0, |(_, v)| *v)
    };
    for (router, n) in [("fast", fast), ("slow", slow), ("errors", errors)] {
        let (actual, expected) = (rate_of(router), n / 60.0);
        eprintln!("rate of {router}: {actual:.4}/s (expected {expected:.4})");
        assert!(
            close(actual, expected, 0.15),
            "rate of {router}: {actual}, expected {expected} ± 15%: {rates:?}\n{}",
            prom.log()
        );
    }

    // p95 latency: 80 answers below 0.1 s, 40 in (0.1, 0.3]. Rank 0.95 × 120 = 114 is the
    // 34th of the 40 in that bucket: 0.1 + 0.2 × 34/40 = 0.27 s by linear interpolation.
    let p95 = prom
        .scalar(
            "histogram_quantile(0.95, sum(rate(shoal_service_request_duration_seconds_bucket[5m])) by (le))",
        )
        .expect("one p95");
    eprintln!("p95: {p95:.4} s (expected 0.27)");
    assert!((p95 - 0.27).abs() < 0.03, "p95 {p95}, expected 0.27 ± 0.03");

    // 5xx by service over 5 minutes: the 20 errors.
    let increase =
        prom.query("sum by(service) (increase(shoal_service_requests_total{code=~\"5..\"}[5m]))");
    assert_eq!(increase.len(), 1, "{increase:?}");
    eprintln!("5xx increase: {:.2} (expected {errors})", increase[0].1);
    assert_eq!(increase[0].0["service"], "web");
    assert!(
        close(increase[0].1, errors, 0.15),
        "5xx increase {}, expected {errors} ± 15%",
        increase[0].1
    );

    // shoal's own gauges reach Prometheus too.
    assert_eq!(
        prom.scalar("shoal_service_replicas_ready{service=\"web\"}"),
        Some(2.0)
    );
    // Every query of the Grafana dashboard in deploy/observability is valid PromQL, and
    // those about request traffic have data.
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/observability");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy.join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$service", ".*");
            let result = prom.query(&expr);
            if expr.contains("shoal_router_requests_total") || expr.contains("shoal_entrypoint") {
                assert!(!result.is_empty(), "{}: {expr} has no data", panel["title"]);
            }
        }
    }
    // The shipped scrape configuration is valid.
    let promtool = binary.with_file_name("promtool");
    if promtool.is_file() {
        let out = Command::new(&promtool)
            .args(["check", "config"])
            .arg(deploy.join("prometheus.yml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    drop(prom);
    up.signal(Signal::SIGTERM);
    up.wait_exit(Duration::from_secs(20));
}

/// The sample whose line starts with `series` (name and labels exactly as written).
fn sample_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_show_replicas_and_the_autoscaler() {
    // Two replicas to start with; idle, the autoscaler scales down to its minimum of one.
    let service = sample_service("web", 2, "")
        + "    autoscale: { min: 1, max: 3, concurrency: 5, latency_p95: 200ms, scale_down: { stabilization: 1s } }\n";
    let stack = Stack::new(&service, &[("/", "web")], "");
    let mut up = stack.up();
    up.wait_listening(&stack);
    let scrape = || {
        http(stack.admin, "GET", "/metrics", None)
            .ok()
            .map(|r| r.text())
    };
    let down = "shoal_autoscaler_scaling_events_total{service=\"web\",direction=\"down\"}";
    wait_for(
        "a scale-down to one replica",
        Duration::from_secs(30),
        || {
            let text = scrape()?;
            let one = sample_value(&text, "shoal_service_replicas_ready{service=\"web\"}")
                == Some(1.0)
                && sample_value(&text, "shoal_service_replicas_desired{service=\"web\"}")
                    == Some(1.0);
            (one && sample_value(&text, down) == Some(1.0)).then_some(())
        },
    );
    let text = wait_for(
        "the autoscaler's readings and the replica's CPU and memory",
        Duration::from_secs(20),
        || {
            let text = scrape()?;
            // CPU needs two /proc samples (a rate), so it comes a second after memory.
            let read = text
                .contains("shoal_autoscaler_metric_value{service=\"web\",metric=\"concurrency\"}")
                && text
                    .contains("shoal_replica_memory_rss_bytes{service=\"web\",replica=\"web/0\"}")
                && text.contains("shoal_replica_cpu_cores{service=\"web\",replica=\"web/0\"}");
            read.then_some(text)
        },
    );
    let get =
        |series: &str| sample_value(&text, series).unwrap_or_else(|| panic!("{series}\n{text}"));
    assert_eq!(
        get("shoal_autoscaler_metric_target{service=\"web\",metric=\"concurrency\"}"),
        5.0
    );
    assert_eq!(
        get("shoal_autoscaler_metric_target{service=\"web\",metric=\"latency_p95\"}"),
        0.2
    );
    assert_eq!(get("shoal_autoscaler_min_replicas{service=\"web\"}"), 1.0);
    assert_eq!(get("shoal_autoscaler_max_replicas{service=\"web\"}"), 3.0);
    assert_eq!(
        get("shoal_autoscaler_desired_replicas{service=\"web\"}"),
        1.0
    );
    assert!(!text.contains("direction=\"up\""), "{text}");
    let labels = "{service=\"web\",replica=\"web/0\"}";
    assert!(get(&format!("shoal_replica_memory_rss_bytes{labels}")) > 100_000.0);
    assert!(get(&format!("shoal_replica_cpu_cores{labels}")) >= 0.0);
    assert_eq!(get(&format!("shoal_replica_restarts_total{labels}")), 0.0);
    assert_eq!(get(&format!("shoal_replica_ready{labels}")), 1.0);
    // The gateway's view of the same replica, under the same name.
    assert_eq!(get(&format!("shoal_replica_up{labels}")), 1.0);
    assert_eq!(get(&format!("shoal_replica_in_flight{labels}")), 0.0);
    up.signal(Signal::SIGTERM);
    up.wait_exit(Duration::from_secs(20));
}
