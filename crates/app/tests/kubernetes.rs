//! Kubernetes mode end to end: a whole shoal started with `--discovery kubernetes` against
//! a fake API server that speaks the real wire protocol (list, watch streams, 410 Gone, the
//! scale subresource, Leases), balancing over "pods" that are sample-apps on loopback.
//!
//! Each pod gets its own EndpointSlice with its own port (a real Service has one port and
//! many addresses; here every pod listens on 127.0.0.1, so the port tells them apart — the
//! gateway takes each slice's port either way).
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use shoal_app::{ClusterOptions, Discovery, Shoal, StartOptions};
use shoal_core::EventKind;
use shoal_test_support::kube_api::{FakeEndpoint, FakeKube};
use shoal_test_support::{Backend, Client, DEADLINE, eventually};
use tokio::time::Instant;

const NS: &str = "shop";

/// A stack file for the cluster: `web` is an image whose pods the gateway finds.
fn stack_yaml(extra: &str) -> String {
    format!(
        "gateway:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n\
         services:\n  web:\n    image: example.invalid/web:1\n    port: 8080\n{extra}\
         routes:\n  - match: PathPrefix(`/`)\n    service: web\n"
    )
}

struct InCluster {
    shoal: Shoal,
    client: Client,
    _dir: tempfile::TempDir,
}

impl InCluster {
    async fn start(kube: &FakeKube, yaml: &str, identity: &str) -> InCluster {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.yaml");
        std::fs::write(&path, yaml).unwrap();
        let stack = shoal_config::parse_for(yaml, "shoal.yaml", shoal_config::Runtime::Kubernetes)
            .expect("a valid stack for Kubernetes");
        let kubeconfig = kube.write_kubeconfig(dir.path(), NS);
        let shoal = Shoal::start(StartOptions {
            stack,
            stack_path: Some(path),
            state_dir: dir.path().join("state"),
            echo_logs: false,
            color: false,
            shoal_exe: PathBuf::from("/nonexistent/shoal"),
            demo_file: None,
            discovery: Discovery::Kubernetes(ClusterOptions {
                kubeconfig: Some(kubeconfig),
                namespace: Some(NS.to_owned()),
                identity: Some(identity.to_owned()),
            }),
        })
        .await
        .expect("shoal starts against the fake API server");
        InCluster {
            shoal,
            client: Client::http1(),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.shoal.gateway_addr())
    }

    /// Which pods (sample-app names) answer, over `n` requests.
    async fn answering(&self, n: usize) -> Vec<String> {
        let mut seen = Vec::new();
        for _ in 0..n {
            let a = self.client.get(&self.url("/whoami")).await;
            if a.status == 200 {
                seen.push(a.served_by().to_owned());
            }
        }
        seen.sort();
        seen.dedup();
        seen
    }

    /// Wait until exactly `pods` answer over `n` requests.
    async fn wait_answering(&self, within: Duration, n: usize, pods: &[&str]) {
        eventually(within, || async {
            let seen = self.answering(n).await;
            if seen == pods { Ok(()) } else { Err(seen) }
        })
        .await;
    }

    /// A GET on the admin API, as JSON.
    async fn admin(&self, path: &str) -> serde_json::Value {
        let a = self
            .client
            .get(&format!("http://{}{path}", self.shoal.admin_addr()))
            .await;
        assert_eq!(a.status, 200, "{path}: {}", a.text());
        a.json()
    }

    fn has_event(&self, kind: EventKind, text: &str) -> bool {
        self.shoal
            .events()
            .since(0)
            .iter()
            .any(|e| e.kind == kind && e.message.contains(text))
    }
}

/// A pod: a sample-app, and its EndpointSlice.
async fn pod(kube: &FakeKube, name: &str) -> Backend {
    let backend = Backend::start(name).await;
    kube.set_slice(
        NS,
        name,
        "web",
        backend.addr().port(),
        &[FakeEndpoint::ready("127.0.0.1", name).on_node("node-1")],
    );
    backend
}

/// Requests in a loop from a few clients until told to stop (bounded by a count too);
/// counts failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(url: String, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (url, stop, ok, failed) =
                    (url.clone(), stop.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    let client = Client::http1();
                    let mut errors = Vec::new();
                    // Paced at most one request per millisecond per client; bounded in count.
                    for _ in 0..100_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        match client.try_request(shoal_test_support::get(&url, &[])).await {
                            Ok(a) if a.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(a) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                errors.push(format!("{} {}", a.status, a.text()));
                            }
                            Err(e) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                errors.push(e.to_string());
                            }
                        }
                    }
                    errors
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    /// Wait until `more` further requests succeeded.
    async fn progress(&self, more: u64) {
        let from = self.ok.load(Ordering::Relaxed);
        eventually(DEADLINE, || async {
            let now = self.ok.load(Ordering::Relaxed);
            if now >= from + more {
                Ok(())
            } else {
                Err(format!(
                    "{} requests since, wanted {more} ({} failed so far)",
                    now - from,
                    self.failed.load(Ordering::Relaxed)
                ))
            }
        })
        .await;
    }

    /// Stop; (succeeded, the failures' texts).
    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        for t in self.tasks {
            errors.extend(t.await.unwrap());
        }
        assert_eq!(self.failed.load(Ordering::Relaxed) as usize, errors.len());
        (self.ok.load(Ordering::Relaxed), errors)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_join_drain_and_leave_under_load_without_a_failed_request() {
    let kube = FakeKube::start().await;
    kube.add_deployment(NS, "web", 2);
    let a = pod(&kube, "web-a").await;
    let b = pod(&kube, "web-b").await;
    let gw = InCluster::start(&kube, &stack_yaml("    replicas: 2\n"), "gw-0").await;
    gw.wait_answering(DEADLINE, 10, &["web-a", "web-b"]).await;

    let load = Load::start(gw.url("/whoami"), 4);
    load.progress(100).await;
    // A third pod becomes ready.
    let c = pod(&kube, "web-c").await;
    eventually(DEADLINE, || async {
        match gw.shoal.gateway().traffic("web") {
            Some((_, backends)) if backends.len() == 3 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    load.progress(100).await;
    // web-a is told to terminate: it stays in its slice, terminating, finishing what it has.
    kube.set_slice(
        NS,
        "web-a",
        "web",
        a.addr().port(),
        &[FakeEndpoint::ready("127.0.0.1", "web-a").terminating()],
    );
    eventually(DEADLINE, || async {
        match gw.shoal.gateway().traffic("web") {
            Some((_, backends)) if backends.len() == 2 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    load.progress(100).await;
    // Once the gateway stopped sending to it, the pod exits and its endpoint goes away.
    eventually(DEADLINE, || async {
        match a.in_flight() {
            0 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    a.shutdown().await;
    kube.delete_slice(NS, "web-a");
    load.progress(100).await;
    let (ok, errors) = load.finish().await;
    assert!(
        errors.is_empty(),
        "{} of {ok} failed: {errors:?}",
        errors.len()
    );
    assert_eq!(gw.answering(10).await, ["web-b", "web-c"]);

    // Status shows pods, not processes.
    let web = gw.admin("/api/v1/services/web").await;
    let pods: Vec<(String, String)> = web["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["pod"]["name"].as_str().unwrap_or("?").to_owned(),
                r["pod"]["node"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    let expected =
        [("web-b", "node-1"), ("web-c", "node-1")].map(|(p, n)| (p.to_owned(), n.to_owned()));
    assert_eq!(pods, expected, "{web}");
    assert_eq!(web["desired"], 2, "the Deployment's replica count: {web}");
    gw.shoal.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_or_expired_watch_resumes_and_an_unreachable_api_keeps_the_pods() {
    let kube = FakeKube::start().await;
    kube.add_deployment(NS, "web", 1);
    let a = pod(&kube, "web-a").await;
    let gw = InCluster::start(&kube, &stack_yaml(""), "gw-0").await;
    gw.wait_answering(DEADLINE, 3, &["web-a"]).await;

    // The watch is cut (an API server restart): a pod added afterwards is still seen.
    kube.cut_watches();
    let b = pod(&kube, "web-b").await;
    gw.wait_answering(DEADLINE, 10, &["web-a", "web-b"]).await;

    // The history is compacted under the watch: it gets 410 Gone and lists again.
    kube.compact();
    kube.cut_watches();
    kube.delete_slice(NS, "web-b");
    gw.wait_answering(DEADLINE, 5, &["web-a"]).await;

    // The API server is unreachable for 30 s: traffic flows to the pods it knew.
    kube.set_down(true);
    let load = Load::start(gw.url("/whoami"), 2);
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        load.progress(20).await;
        assert_eq!(
            gw.shoal.gateway().traffic("web").map(|(_, b)| b.len()),
            Some(1),
            "the pod set is kept while the API is unreachable"
        );
    }
    let (ok, errors) = load.finish().await;
    assert!(
        errors.is_empty(),
        "{} of {ok} failed: {errors:?}",
        errors.len()
    );
    eventually(DEADLINE, || async {
        if gw.has_event(EventKind::ApiError, "endpointslices") {
            Ok(())
        } else {
            Err("no apierror event about the watch")
        }
    })
    .await;
    // Back up: changes flow again.
    kube.set_down(false);
    let c = pod(&kube, "web-c").await;
    gw.wait_answering(Duration::from_secs(40), 10, &["web-a", "web-c"])
        .await;
    gw.shoal.shutdown().await;
    for p in [a, b, c] {
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_scales_on_concurrency_and_a_second_gateway_takes_over() {
    let kube = FakeKube::start().await;
    kube.add_deployment(NS, "web", 1);
    let a = pod(&kube, "web-a").await;
    let yaml = stack_yaml(
        "    autoscale: { min: 1, max: 4, concurrency: 1, scale_down: { stabilization: 0s } }\n",
    );
    let first = InCluster::start(&kube, &yaml, "gw-0").await;
    eventually(DEADLINE, || async {
        if first.has_event(EventKind::Leader, "gw-0") {
            Ok(())
        } else {
            Err("gw-0 is not the leader yet")
        }
    })
    .await;
    let second = InCluster::start(&kube, &yaml, "gw-1").await;

    // Slow requests keep ~8 in flight on one pod: the leader asks the Deployment for more.
    let load = Load::start(first.url("/delay?ms=200"), 8);
    eventually(DEADLINE, || async {
        match kube.replicas(NS, "web") {
            Some(n) if n > 1 => Ok(n),
            n => Err(n),
        }
    })
    .await;
    let (_, errors) = load.finish().await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        first.has_event(EventKind::Scaled, "autoscaler: 1 →"),
        "the scale is an event with its reason"
    );
    assert!(
        !second.has_event(EventKind::Leader, "gw-1 now"),
        "only one gateway scales"
    );

    // The leader goes away (a rolling update): the other takes the Lease within its duration.
    let handed_over = Instant::now();
    first.shoal.shutdown().await;
    eventually(Duration::from_secs(20), || async {
        if second.has_event(EventKind::Leader, "gw-1") {
            Ok(())
        } else {
            Err("gw-1 did not take the lease")
        }
    })
    .await;
    assert!(handed_over.elapsed() < Duration::from_secs(16));
    let lease = kube.lease(NS, "shoal-gateway").expect("the lease exists");
    assert_eq!(lease["spec"]["holderIdentity"], "gw-1");
    second.shoal.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_the_service_account_may_not_make_is_an_event_not_a_crash() {
    let kube = FakeKube::start().await;
    kube.add_deployment(NS, "web", 1);
    kube.forbid("patch", "deployments/scale");
    let a = pod(&kube, "web-a").await;
    let gw = InCluster::start(&kube, &stack_yaml(""), "gw-0").await;
    let answer = gw
        .client
        .request(
            hyper::Request::post(format!(
                "http://{}/api/v1/services/web/scale",
                gw.shoal.admin_addr()
            ))
            .header("content-type", "application/json")
            .body(shoal_test_support::body::full(r#"{"replicas": 3}"#))
            .unwrap(),
        )
        .await;
    assert_eq!(
        answer.status,
        200,
        "the request is taken: {}",
        answer.text()
    );
    eventually(DEADLINE, || async {
        if gw.has_event(EventKind::ApiError, "patch") {
            Ok(())
        } else {
            Err("no apierror event naming the verb")
        }
    })
    .await;
    let patches = || {
        kube.requests()
            .iter()
            .filter(|r| r.starts_with("PATCH") && r.contains("/scale"))
            .count()
    };
    let before = patches();
    // Still serving, and not retrying in a loop.
    assert_eq!(gw.answering(20).await, ["web-a"]);
    assert!(patches() <= before + 1, "no retry loop on 403");
    assert_eq!(kube.replicas(NS, "web"), Some(1));
    gw.shoal.shutdown().await;
    a.shutdown().await;
}
