//! The Kubernetes driver against a fake API server that speaks the real wire protocol: pods
//! come and go, watches are cut and compacted, the server goes away, scaling is refused,
//! gateways compete for the Lease. Real time, short durations, polling with deadlines.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_core::{
    Driver, DriverError, Endpoint, EndpointSink, Event, EventKind, EventLog, ReplicaState,
};
use shoal_k8s::cluster::{Cluster, ClusterOptions, KubeDriver, KubeService, LeaseSettings};
use shoal_test_support::{DEADLINE, FakeEndpoint, FakeKube, eventually};
use tokio::time::Instant;

const NS: &str = "shop";

/// An EndpointSink that keeps every set it was given.
#[derive(Default)]
struct Recording {
    inner: Mutex<HashMap<String, Vec<Vec<String>>>>,
}

impl EndpointSink for Recording {
    fn set_endpoints(&self, service: &str, endpoints: Vec<Endpoint>) {
        let keys = endpoints.into_iter().map(|e| e.key).collect();
        self.inner
            .lock()
            .unwrap()
            .entry(service.to_owned())
            .or_default()
            .push(keys);
    }

    fn in_flight(&self, _service: &str, _key: &str) -> usize {
        0
    }
}

impl Recording {
    /// Every set given for `service`, oldest first.
    fn history(&self, service: &str) -> Vec<Vec<String>> {
        self.inner
            .lock()
            .unwrap()
            .get(service)
            .cloned()
            .unwrap_or_default()
    }

    /// The set `service` has now (None: never set).
    fn current(&self, service: &str) -> Option<Vec<String>> {
        self.history(service).last().cloned()
    }

    async fn wait_for(&self, service: &str, keys: &[&str]) {
        eventually(DEADLINE, || async {
            match self.current(service) {
                Some(now) if now == keys => Ok(()),
                other => Err(format!("{service}: {other:?}, want {keys:?}")),
            }
        })
        .await;
    }
}

struct Gateway {
    driver: Arc<KubeDriver>,
    sink: Arc<Recording>,
    events: Arc<EventLog>,
}

impl Gateway {
    async fn start(
        kube: &FakeKube,
        dir: &tempfile::TempDir,
        identity: &str,
        lease: Option<LeaseSettings>,
    ) -> Gateway {
        let opts = ClusterOptions {
            kubeconfig: Some(kube.write_kubeconfig(dir.path(), NS)),
            namespace: None,
            identity: Some(identity.to_owned()),
        };
        let cluster = Cluster::connect(&opts).await.expect("connect");
        assert_eq!(
            cluster.namespace(),
            NS,
            "the kubeconfig context's namespace"
        );
        assert_eq!(cluster.identity(), identity);
        let sink = Arc::new(Recording::default());
        let events = Arc::new(EventLog::new(256));
        let driver = KubeDriver::start(cluster, sink.clone(), events.clone(), lease);
        Gateway {
            driver,
            sink,
            events,
        }
    }

    fn events(&self, kind: EventKind) -> Vec<Event> {
        self.events
            .since(0)
            .into_iter()
            .filter(|e| e.kind == kind)
            .collect()
    }

    async fn wait_for_event(&self, kind: EventKind, words: &[&str]) -> Event {
        eventually(DEADLINE, || async {
            self.events(kind)
                .into_iter()
                .find(|e| words.iter().all(|w| e.message.contains(w)))
                .ok_or_else(|| {
                    format!(
                        "no {kind:?} event with {words:?} in {:#?}",
                        self.events.since(0)
                    )
                })
        })
        .await
    }

    /// Wait until this gateway holds the Lease.
    async fn wait_leading(&self) {
        eventually(DEADLINE, || async {
            if self.driver.is_leader() {
                Ok(())
            } else {
                Err("not leading yet")
            }
        })
        .await;
    }
}

/// Deployment `users` at `replicas`, one ready pod `users-a` (10.0.0.1:8080) in its slice,
/// and a gateway (`gw-a`, no lease) following it.
async fn one_pod(kube: &FakeKube, dir: &tempfile::TempDir, replicas: u32) -> Gateway {
    kube.add_deployment(NS, "users", replicas);
    set_users_slice(
        kube,
        "users-1",
        &[FakeEndpoint::ready("10.0.0.1", "users-a")],
    );
    let gw = Gateway::start(kube, dir, "gw-a", None).await;
    gw.driver.set_services(users());
    gw
}

/// Set the EndpointSlice `slice` of service `users` (port 8080) in `NS`.
fn set_users_slice(kube: &FakeKube, slice: &str, endpoints: &[FakeEndpoint]) {
    kube.set_slice(NS, slice, "users", 8080, endpoints);
}

fn users() -> Vec<KubeService> {
    vec![KubeService {
        name: "users".into(),
        port: 8080,
    }]
}

fn lists(kube: &FakeKube) -> usize {
    kube.requests()
        .iter()
        .filter(|r| {
            r.starts_with("GET ") && r.contains("/endpointslices") && !r.contains("watch=true")
        })
        .count()
}

#[tokio::test]
async fn pods_that_come_terminate_and_go_are_followed() {
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    set_users_slice(
        &kube,
        "users-1",
        &[
            FakeEndpoint::ready("10.0.0.1", "users-a").on_node("node-1"),
            FakeEndpoint::ready("10.0.0.2", "users-b"),
        ],
    );
    kube.set_slice(
        NS,
        "music-1",
        "music",
        9000,
        &[FakeEndpoint::ready("10.0.1.1", "music-a")],
    );
    let gw = Gateway::start(&kube, &dir, "gw-a", None).await;
    gw.driver.set_services(users());
    gw.sink.wait_for("users", &["users-a", "users-b"]).await;
    assert_eq!(gw.sink.current("music"), None, "not followed");

    let status = gw.driver.status();
    assert_eq!(status.len(), 1);
    let a = &status[0].replicas[0];
    assert_eq!(
        a.endpoint.as_ref().unwrap().addr,
        "10.0.0.1:8080".parse().unwrap()
    );
    let pod = a.pod.as_ref().unwrap();
    assert_eq!(
        (pod.name.as_str(), pod.node.as_deref()),
        ("users-a", Some("node-1"))
    );
    assert_eq!(status[0].ready, 2);

    // A second slice of the same service: the union.
    set_users_slice(
        &kube,
        "users-2",
        &[FakeEndpoint::ready("10.0.0.3", "users-c").not_ready()],
    );
    eventually(DEADLINE, || async {
        let s = &gw.driver.status()[0];
        match s
            .replicas
            .iter()
            .find(|r| r.pod.as_ref().unwrap().name == "users-c")
        {
            Some(r) if r.state == ReplicaState::Starting => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    set_users_slice(
        &kube,
        "users-2",
        &[FakeEndpoint::ready("10.0.0.3", "users-c")],
    );
    gw.sink
        .wait_for("users", &["users-a", "users-b", "users-c"])
        .await;

    // Terminating: out of the set, still reported (draining).
    set_users_slice(
        &kube,
        "users-1",
        &[
            FakeEndpoint::ready("10.0.0.1", "users-a").on_node("node-1"),
            FakeEndpoint::ready("10.0.0.2", "users-b").terminating(),
        ],
    );
    gw.sink.wait_for("users", &["users-a", "users-c"]).await;
    let s = &gw.driver.status()[0];
    let b = s
        .replicas
        .iter()
        .find(|r| r.pod.as_ref().unwrap().name == "users-b")
        .unwrap();
    assert_eq!(b.state, ReplicaState::Draining);
    assert!(b.pod.as_ref().unwrap().terminating);
    gw.wait_for_event(EventKind::Draining, &["users-b", "terminating"])
        .await;

    // Removed: gone at once.
    set_users_slice(
        &kube,
        "users-1",
        &[FakeEndpoint::ready("10.0.0.1", "users-a").on_node("node-1")],
    );
    kube.delete_slice(NS, "users-2");
    gw.sink.wait_for("users", &["users-a"]).await;
    eventually(DEADLINE, || async {
        match gw.driver.status()[0].replicas.len() {
            1 => Ok(()),
            n => Err(n),
        }
    })
    .await;

    // The sink is told only about changes.
    let history = gw.sink.history("users");
    assert!(history.windows(2).all(|w| w[0] != w[1]), "{history:?}");

    // A service no longer followed is cleared from the sink.
    gw.driver.set_services(Vec::new());
    assert_eq!(gw.sink.current("users"), Some(Vec::new()));
    assert!(gw.driver.status().is_empty());
    gw.driver.shutdown().await;
}

#[tokio::test]
async fn a_cut_watch_resumes_where_it_was() {
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = one_pod(&kube, &dir, 1).await;
    gw.sink.wait_for("users", &["users-a"]).await;
    eventually(DEADLINE, || async {
        if kube.open_watches() == 1 {
            Ok(())
        } else {
            Err(kube.open_watches())
        }
    })
    .await;

    kube.cut_watches();
    set_users_slice(
        &kube,
        "users-1",
        &[
            FakeEndpoint::ready("10.0.0.1", "users-a"),
            FakeEndpoint::ready("10.0.0.2", "users-b"),
        ],
    );
    gw.sink.wait_for("users", &["users-a", "users-b"]).await;
    assert_eq!(
        lists(&kube),
        1,
        "resumed from its resourceVersion, not re-listed: {:#?}",
        kube.requests()
    );
    assert!(
        gw.events(EventKind::ApiError).is_empty(),
        "a cut watch is routine"
    );
    gw.driver.shutdown().await;
}

#[tokio::test]
async fn after_410_gone_the_relist_replaces_the_set_whole() {
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    set_users_slice(
        &kube,
        "users-1",
        &[
            FakeEndpoint::ready("10.0.0.1", "users-a"),
            FakeEndpoint::ready("10.0.0.2", "users-b"),
        ],
    );
    set_users_slice(
        &kube,
        "users-2",
        &[FakeEndpoint::ready("10.0.0.3", "users-c")],
    );
    let gw = Gateway::start(&kube, &dir, "gw-a", None).await;
    gw.driver.set_services(users());
    gw.sink
        .wait_for("users", &["users-a", "users-b", "users-c"])
        .await;

    // While the watch is away, slices change and the history is compacted: the watch's
    // resourceVersion is gone (410), and the watcher lists again.
    kube.set_down(true);
    kube.delete_slice(NS, "users-2");
    set_users_slice(
        &kube,
        "users-3",
        &[FakeEndpoint::ready("10.0.0.4", "users-d")],
    );
    kube.compact();
    kube.set_down(false);
    gw.sink
        .wait_for("users", &["users-a", "users-b", "users-d"])
        .await;
    assert_eq!(
        lists(&kube),
        2,
        "listed again after 410: {:#?}",
        kube.requests()
    );
    let history = gw.sink.history("users");
    assert_eq!(
        history,
        [
            vec!["users-a", "users-b", "users-c"],
            vec!["users-a", "users-b", "users-d"]
        ],
        "the set was swapped whole at InitDone: never empty, never partial"
    );
    gw.driver.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_api_server_changes_nothing_and_is_one_event() {
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    kube.add_deployment(NS, "users", 2);
    set_users_slice(
        &kube,
        "users-1",
        &[
            FakeEndpoint::ready("10.0.0.1", "users-a"),
            FakeEndpoint::ready("10.0.0.2", "users-b"),
        ],
    );
    let gw = Gateway::start(&kube, &dir, "gw-a", None).await;
    gw.driver.set_services(users());
    gw.sink.wait_for("users", &["users-a", "users-b"]).await;
    let before = gw.sink.history("users");

    kube.set_down(true);
    let event = gw
        .wait_for_event(EventKind::ApiError, &["unreachable"])
        .await;
    assert!(
        event.message.contains("namespace shop"),
        "{}",
        event.message
    );
    // The outage lasts a few seconds (several watch retries and desired-count reads).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        gw.sink.history("users"),
        before,
        "the set is kept while the API is away"
    );
    assert_eq!(gw.driver.status()[0].ready, 2);
    let errors = gw.events(EventKind::ApiError);
    assert_eq!(errors.len(), 1, "one event per outage: {errors:#?}");

    kube.set_down(false);
    set_users_slice(
        &kube,
        "users-1",
        &[
            FakeEndpoint::ready("10.0.0.1", "users-a"),
            FakeEndpoint::ready("10.0.0.2", "users-b"),
            FakeEndpoint::ready("10.0.0.3", "users-c"),
        ],
    );
    eventually(Duration::from_secs(20), || async {
        match gw.sink.current("users") {
            Some(now) if now.len() == 3 => Ok(()),
            other => Err(other),
        }
    })
    .await;
    assert_eq!(gw.events(EventKind::ApiError).len(), 1);
    gw.driver.shutdown().await;
}

#[tokio::test]
async fn a_forbidden_watch_names_the_missing_verb_and_recovers_when_granted() {
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    set_users_slice(
        &kube,
        "users-1",
        &[FakeEndpoint::ready("10.0.0.1", "users-a")],
    );
    kube.add_deployment(NS, "users", 1);
    kube.forbid("list", "endpointslices");
    let gw = Gateway::start(&kube, &dir, "gw-a", None).await;
    gw.driver.set_services(users());
    gw.wait_for_event(
        EventKind::ApiError,
        &["may not list endpointslices in namespace shop", "403"],
    )
    .await;
    assert_eq!(gw.sink.current("users"), None);
    kube.allow("list", "endpointslices");
    eventually(Duration::from_secs(20), || async {
        match gw.sink.current("users") {
            Some(now) if now == ["users-a"] => Ok(()),
            other => Err(other),
        }
    })
    .await;
    assert_eq!(
        gw.events(EventKind::ApiError).len(),
        1,
        "one event, not one per retry"
    );
    gw.driver.shutdown().await;
}

#[tokio::test]
async fn scaling_patches_the_scale_subresource_and_reads_it_back() {
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = one_pod(&kube, &dir, 2).await;
    let desired = || gw.driver.status().first().map(|s| s.desired);
    eventually(DEADLINE, || async {
        if desired() == Some(2) {
            Ok(())
        } else {
            Err(desired())
        }
    })
    .await;

    gw.driver.scale("users", 4).unwrap();
    assert_eq!(desired(), Some(4), "remembered at once");
    eventually(DEADLINE, || async {
        match kube.replicas(NS, "users") {
            Some(4) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    assert!(
        kube.requests()
            .iter()
            .any(|r| r.starts_with("PATCH ") && r.contains("/deployments/users/scale")),
        "{:#?}",
        kube.requests()
    );

    // Someone else scales: the status follows within the refresh period.
    kube.set_replicas(NS, "users", 3);
    eventually(DEADLINE, || async {
        if desired() == Some(3) {
            Ok(())
        } else {
            Err(desired())
        }
    })
    .await;

    assert!(matches!(
        gw.driver.scale("nope", 1),
        Err(DriverError::UnknownService(_))
    ));
    // `shoal rollout undo|restart`: the Deployment owns its rollouts; the error says which
    // `kubectl` command does it.
    for (verb, answer) in [
        ("undo", gw.driver.rollout_undo("users")),
        ("restart", gw.driver.rollout_restart("users")),
    ] {
        let Err(DriverError::Invalid(why)) = answer else {
            panic!("{verb}: {answer:?}");
        };
        assert_eq!(
            why,
            format!(
                "in Kubernetes mode the Deployment rolls the pods: run `kubectl rollout {verb} \
                 deployment/users`"
            )
        );
    }
    gw.driver.shutdown().await;
    assert!(gw.driver.scale("users", 1).is_err(), "not after shutdown");
}

#[tokio::test]
async fn a_forbidden_scale_is_an_event_naming_the_verb_and_is_not_retried() {
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    kube.add_deployment(NS, "users", 2);
    kube.forbid("patch", "deployments/scale");
    let gw = Gateway::start(&kube, &dir, "gw-a", None).await;
    gw.driver.set_services(users());
    gw.driver.scale("users", 5).unwrap();
    let event = gw
        .wait_for_event(
            EventKind::ApiError,
            &["patch", "deployments/scale", "namespace shop"],
        )
        .await;
    assert_eq!(event.service, "users");
    assert!(event.message.contains("403"), "{}", event.message);
    let patches = || {
        kube.requests()
            .iter()
            .filter(|r| r.starts_with("PATCH "))
            .count()
    };
    assert_eq!(patches(), 1, "no retry until the next scale call");
    assert_eq!(kube.replicas(NS, "users"), Some(2));

    // The driver keeps working: granted, the next scale call goes through.
    kube.allow("patch", "deployments/scale");
    gw.driver.scale("users", 5).unwrap();
    eventually(DEADLINE, || async {
        match kube.replicas(NS, "users") {
            Some(5) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    assert_eq!(patches(), 2);

    // No Deployment: said so.
    gw.driver.set_services(vec![KubeService {
        name: "ghost".into(),
        port: 8080,
    }]);
    gw.driver.scale("ghost", 1).unwrap();
    gw.wait_for_event(EventKind::ApiError, &["no Deployment named ghost"])
        .await;
    gw.driver.shutdown().await;
}

fn short_lease(duration: Duration) -> LeaseSettings {
    LeaseSettings {
        name: "shoal-gateway".into(),
        duration,
        renew_every: Duration::from_millis(200),
    }
}

fn holder(kube: &FakeKube) -> Option<String> {
    kube.lease(NS, "shoal-gateway")?
        .pointer("/spec/holderIdentity")?
        .as_str()
        .map(str::to_owned)
}

/// Waits until exactly one of the two leads, checking on the way that never both do.
async fn one_leader<'a>(a: &'a Gateway, b: &'a Gateway) -> (&'a Gateway, &'a Gateway) {
    eventually(DEADLINE, || async {
        match (a.driver.is_leader(), b.driver.is_leader()) {
            (true, true) => panic!("two leaders"),
            (true, false) => Ok((a, b)),
            (false, true) => Ok((b, a)),
            (false, false) => Err("no leader yet"),
        }
    })
    .await
}

#[tokio::test]
async fn exactly_one_gateway_leads_and_another_takes_over_when_it_dies() {
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let duration = Duration::from_secs(2);
    let a = Gateway::start(&kube, &dir, "gw-a", Some(short_lease(duration))).await;
    let b = Gateway::start(&kube, &dir, "gw-b", Some(short_lease(duration))).await;
    let (leader, follower) = one_leader(&a, &b).await;
    let leader_name = leader.driver.cluster().identity().to_owned();
    let follower_name = follower.driver.cluster().identity().to_owned();
    // Several rounds later, still exactly one, and the Lease says which.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert!(leader.driver.is_leader() && !follower.driver.is_leader());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(holder(&kube).as_deref(), Some(leader_name.as_str()));
    // What the app's autoscaler asks, through the `Driver` trait: only the leader scales.
    assert!(leader.driver.may_scale() && !follower.driver.may_scale());
    leader
        .wait_for_event(
            EventKind::Leader,
            &[&leader_name, "now holds the Lease shoal-gateway"],
        )
        .await;

    // The leader dies (dropped: no release). The other takes over within the duration (plus a
    // round and some slack for a loaded machine).
    let died = Instant::now();
    let (leader, follower) = if leader_name == "gw-a" {
        (a, b)
    } else {
        (b, a)
    };
    drop(leader);
    follower.wait_leading().await;
    let took = died.elapsed();
    assert!(
        took <= duration + Duration::from_millis(1500),
        "took over after {took:?}"
    );
    assert_eq!(holder(&kube).as_deref(), Some(follower_name.as_str()));
    let lease = kube.lease(NS, "shoal-gateway").unwrap();
    assert_eq!(
        lease
            .pointer("/spec/leaseTransitions")
            .and_then(|v| v.as_i64()),
        Some(1),
        "{lease:#}"
    );
    assert_eq!(
        lease
            .pointer("/spec/leaseDurationSeconds")
            .and_then(|v| v.as_i64()),
        Some(2)
    );
    follower
        .wait_for_event(EventKind::Leader, &["taking over from", &leader_name])
        .await;
    follower.driver.shutdown().await;
}

#[tokio::test]
async fn shutdown_releases_the_lease_for_the_other_at_once() {
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let duration = Duration::from_secs(10);
    let a = Gateway::start(&kube, &dir, "gw-a", Some(short_lease(duration))).await;
    a.wait_leading().await;
    let b = Gateway::start(&kube, &dir, "gw-b", Some(short_lease(duration))).await;
    eventually(DEADLINE, || async {
        if kube
            .requests()
            .iter()
            .filter(|r| r.contains("/leases/shoal-gateway"))
            .count()
            >= 4
        {
            Ok(())
        } else {
            Err("b has not read the Lease")
        }
    })
    .await;
    assert!(!b.driver.is_leader());

    let released = Instant::now();
    a.driver.shutdown().await;
    assert!(!a.driver.is_leader());
    a.wait_for_event(EventKind::Leader, &["released the Lease"])
        .await;
    b.wait_leading().await;
    let took = released.elapsed();
    // At once, not after the 10 s lease (slack for a busy machine).
    assert!(
        took < Duration::from_secs(5),
        "took over after {took:?}, the lease lasts {duration:?}"
    );
    assert_eq!(holder(&kube).as_deref(), Some("gw-b"));
    b.driver.shutdown().await;
}

#[tokio::test]
async fn a_leader_that_cannot_renew_stops_leading_after_the_duration() {
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let duration = Duration::from_secs(2);
    let a = Gateway::start(&kube, &dir, "gw-a", Some(short_lease(duration))).await;
    a.wait_leading().await;

    kube.set_down(true);
    let down = Instant::now();
    eventually(DEADLINE, || async {
        if a.driver.is_leader() {
            Err("still leading")
        } else {
            Ok(())
        }
    })
    .await;
    let after = down.elapsed();
    assert!(
        after >= duration - Duration::from_millis(250),
        "stepped down after {after:?}"
    );
    assert!(
        after <= duration + Duration::from_millis(1500),
        "stepped down after {after:?}"
    );
    a.wait_for_event(
        EventKind::Leader,
        &["lost the Lease shoal-gateway", "could not renew"],
    )
    .await;

    // Back: the Lease is still its own, and it leads again.
    kube.set_down(false);
    a.wait_leading().await;
    a.driver.shutdown().await;
}

#[tokio::test]
async fn a_forbidden_lease_names_the_verb() {
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    kube.forbid("create", "leases");
    let a = Gateway::start(
        &kube,
        &dir,
        "gw-a",
        Some(short_lease(Duration::from_secs(2))),
    )
    .await;
    a.wait_for_event(
        EventKind::ApiError,
        &["may not create leases in namespace shop"],
    )
    .await;
    assert!(!a.driver.is_leader());
    assert_eq!(a.events(EventKind::ApiError).len(), 1);
    a.driver.shutdown().await;
}

#[tokio::test]
async fn a_lone_leader_leaves_the_lease_free_on_shutdown() {
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = Gateway::start(
        &kube,
        &dir,
        "gw-a",
        Some(short_lease(Duration::from_secs(10))),
    )
    .await;
    a.wait_leading().await;
    let lease = kube.lease(NS, "shoal-gateway").unwrap();
    assert_eq!(
        lease
            .pointer("/spec/leaseDurationSeconds")
            .and_then(|v| v.as_i64()),
        Some(10)
    );
    assert_eq!(
        lease
            .pointer("/spec/leaseTransitions")
            .and_then(|v| v.as_i64()),
        Some(0)
    );
    assert!(
        lease.pointer("/spec/acquireTime").is_some() && lease.pointer("/spec/renewTime").is_some()
    );
    a.driver.shutdown().await;
    let lease = kube.lease(NS, "shoal-gateway").unwrap();
    assert_eq!(holder(&kube), None, "{lease:#}");
    assert_eq!(
        lease
            .pointer("/spec/leaseDurationSeconds")
            .and_then(|v| v.as_i64()),
        Some(1)
    );
}

#[tokio::test]
async fn connect_takes_the_namespace_and_identity_from_the_options_first() {
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.write_kubeconfig(dir.path(), NS);
    let cluster = Cluster::connect(&ClusterOptions {
        kubeconfig: Some(kubeconfig.clone()),
        namespace: Some("other".into()),
        identity: Some("me".into()),
    })
    .await
    .unwrap();
    assert_eq!((cluster.namespace(), cluster.identity()), ("other", "me"));

    let bad = Cluster::connect(&ClusterOptions {
        kubeconfig: Some(kubeconfig),
        namespace: Some("Not_A_Namespace".into()),
        identity: None,
    })
    .await
    .unwrap_err();
    assert!(bad.to_string().contains("Not_A_Namespace"), "{bad}");

    let missing = dir.path().join("nope");
    let err = Cluster::connect(&ClusterOptions {
        kubeconfig: Some(missing.clone()),
        ..ClusterOptions::default()
    })
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}
