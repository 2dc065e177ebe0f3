//! The fake API server driven by kube-rs itself: if kube's client and watcher work against
//! it, it speaks the protocol shoal's Kubernetes driver will meet in a cluster.
use std::time::Duration;

use futures_util::StreamExt;
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ObjectMeta, Status};
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use shoal_test_support::kube_api::USER;
use shoal_test_support::{Client, DEADLINE, FakeEndpoint, FakeKube, eventually, get};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The namespace of the kubeconfig's context.
const NS: &str = "shoal";

/// A kube client configured the way the gateway will be: from a kubeconfig file.
async fn client(kube: &FakeKube) -> kube::Client {
    // kube builds its rustls connector even for `http://`; it needs a crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = kube.write_kubeconfig(dir.path(), NS);
    let kubeconfig = Kubeconfig::read_from(&path).expect("the kubeconfig reads");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube accepts the kubeconfig");
    assert_eq!(config.default_namespace, NS);
    kube::Client::try_from(config).expect("a kube client")
}

fn web(ip: &str, pod: &str) -> FakeEndpoint {
    FakeEndpoint::ready(ip, pod)
}

/// The `Status` inside a kube API error.
fn status(result: Result<impl std::fmt::Debug, kube::Error>) -> Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Retry at once, a little apart: a watcher's back-off, kept short for tests.
struct Every(Duration);

impl Iterator for Every {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(self.0)
    }
}

impl Backoff for Every {
    fn reset(&mut self) {}
}

/// kube's watcher over EndpointSlices in `NS`, running in a task like the gateway's, its
/// events described as one line each.
struct Watch {
    events: mpsc::UnboundedReceiver<String>,
    task: JoinHandle<()>,
}

impl Watch {
    fn start(client: &kube::Client, config: watcher::Config) -> Watch {
        let api: Api<EndpointSlice> = Api::default_namespaced(client.clone());
        let mut stream = watcher::watcher(api, config)
            .backoff(Every(Duration::from_millis(20)))
            .boxed();
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                if tx.send(describe(event)).is_err() {
                    break;
                }
            }
        });
        Watch { events, task }
    }

    /// The next event.
    async fn next(&mut self) -> String {
        tokio::time::timeout(DEADLINE, self.events.recv())
            .await
            .expect("an event before the deadline")
            .expect("the watcher runs until dropped")
    }

    /// Events up to and including the first that starts with `prefix`.
    async fn until(&mut self, prefix: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(DEADLINE, async {
            loop {
                let event = self.next().await;
                let done = event.starts_with(prefix);
                seen.push(event);
                if done {
                    break;
                }
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "no {prefix:?} before the deadline; saw {seen:?}"
        );
        seen
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `Apply web-1 [10.0.0.1 ready, 10.0.0.2 terminating]`, `Init`, `Error 410 Expired`, …
fn describe(event: Result<Event<EndpointSlice>, watcher::Error>) -> String {
    let slice = |verb: &str, s: &EndpointSlice| {
        let endpoints: Vec<String> = s
            .endpoints
            .iter()
            .flatten()
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                let state = match (c.ready, c.terminating) {
                    (Some(true), _) => "ready",
                    (_, Some(true)) => "terminating",
                    _ => "not-ready",
                };
                format!("{} {state}", e.addresses.join(","))
            })
            .collect();
        let name = s.metadata.name.as_deref().unwrap_or_default();
        format!("{verb} {name} [{}]", endpoints.join(", "))
    };
    match event {
        Ok(Event::Init) => "Init".into(),
        Ok(Event::InitApply(s)) => slice("InitApply", &s),
        Ok(Event::InitDone) => "InitDone".into(),
        Ok(Event::Apply(s)) => slice("Apply", &s),
        Ok(Event::Delete(s)) => slice("Delete", &s),
        Err(watcher::Error::WatchError(s)) => format!("Error {} {}", s.code, s.reason),
        Err(
            watcher::Error::InitialListFailed(kube::Error::Api(s))
            | watcher::Error::WatchStartFailed(kube::Error::Api(s))
            | watcher::Error::WatchFailed(kube::Error::Api(s)),
        ) => format!("Error {} {}", s.code, s.reason),
        Err(e) => format!("Error {e}"),
    }
}

fn watches(kube: &FakeKube) -> Vec<String> {
    kube.requests()
        .into_iter()
        .filter(|r| r.contains("watch=true"))
        .collect()
}

fn lists(kube: &FakeKube) -> Vec<String> {
    kube.requests()
        .into_iter()
        .filter(|r| {
            r.starts_with("GET ") && r.contains("/endpointslices") && !r.contains("watch=true")
        })
        .collect()
}

#[tokio::test]
async fn lists_endpoint_slices_by_label_selector() {
    let kube = FakeKube::start().await;
    kube.set_slice(
        NS,
        "web-abc",
        "web",
        8080,
        &[web("10.0.0.1", "web-0").on_node("n1")],
    );
    kube.set_slice(NS, "api-xyz", "api", 9090, &[web("10.0.1.1", "api-0")]);
    kube.set_slice("other", "web-def", "web", 8080, &[web("10.0.2.1", "web-9")]);
    let client = client(&kube).await;
    let slices: Api<EndpointSlice> = Api::default_namespaced(client.clone());

    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .expect("list");
    assert_eq!(list.metadata.resource_version.as_deref(), Some("3"));
    let [slice] = list.items.as_slice() else {
        panic!("one web slice in {NS}: {:?}", list.items)
    };
    assert_eq!(slice.metadata.name.as_deref(), Some("web-abc"));
    assert_eq!(slice.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(slice.metadata.resource_version.as_deref(), Some("1"));
    assert!(slice.metadata.uid.is_some() && slice.metadata.creation_timestamp.is_some());
    assert_eq!(slice.address_type, "IPv4");
    let endpoint = &slice.endpoints.as_ref().expect("endpoints")[0];
    assert_eq!(endpoint.addresses, ["10.0.0.1"]);
    assert_eq!(endpoint.node_name.as_deref(), Some("n1"));
    assert_eq!(
        endpoint.target_ref.as_ref().and_then(|r| r.name.as_deref()),
        Some("web-0")
    );
    let conditions = endpoint.conditions.clone().unwrap_or_default();
    assert_eq!(
        (conditions.ready, conditions.serving, conditions.terminating),
        (Some(true), Some(true), Some(false))
    );
    let port = &slice.ports.as_ref().expect("ports")[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("http"), Some(8080), Some("TCP"))
    );

    let all = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name"))
        .await
        .expect("list");
    assert_eq!(all.items.len(), 2);
    let either = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name in (api,db)"))
        .await
        .expect("list");
    assert_eq!(either.items.len(), 1);
    let everywhere: Api<EndpointSlice> = Api::all(client);
    let web_everywhere = everywhere
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .expect("list");
    assert_eq!(web_everywhere.items.len(), 2);
}

#[tokio::test]
async fn the_watcher_sees_slices_added_modified_and_deleted() {
    let kube = FakeKube::start().await;
    kube.set_slice(NS, "web-1", "web", 8080, &[web("10.0.0.1", "web-0")]);
    kube.set_slice(NS, "api-1", "api", 8080, &[web("10.0.1.1", "api-0")]);
    let client = client(&kube).await;
    let mut watch = Watch::start(
        &client,
        watcher::Config::default().labels("kubernetes.io/service-name=web"),
    );

    assert_eq!(
        watch.until("InitDone").await,
        ["Init", "InitApply web-1 [10.0.0.1 ready]", "InitDone"]
    );
    eventually(DEADLINE, || async {
        if kube.open_watches() == 1 {
            Ok(())
        } else {
            Err(watches(&kube))
        }
    })
    .await;

    kube.set_slice(NS, "web-2", "web", 8080, &[web("10.0.0.2", "web-1")]);
    kube.set_slice(NS, "api-1", "api", 8080, &[]);
    kube.set_slice(
        NS,
        "web-1",
        "web",
        8080,
        &[
            web("10.0.0.1", "web-0").terminating(),
            web("10.0.0.3", "web-2").not_ready(),
        ],
    );
    kube.delete_slice(NS, "web-2");
    assert_eq!(watch.next().await, "Apply web-2 [10.0.0.2 ready]");
    assert_eq!(
        watch.next().await,
        "Apply web-1 [10.0.0.1 terminating, 10.0.0.3 not-ready]"
    );
    assert_eq!(watch.next().await, "Delete web-2 [10.0.0.2 ready]");
    // A slice relabelled out of the selection is deleted for this watch, and back in, added.
    kube.set_slice(NS, "web-1", "api", 8080, &[]);
    assert_eq!(watch.next().await, "Delete web-1 []");
    kube.set_slice(NS, "web-1", "web", 8080, &[]);
    assert_eq!(watch.next().await, "Apply web-1 []");

    // What kube's default watcher sends: a list (page size 500, no resourceVersion: a
    // consistent read), then a watch from the list's resourceVersion with bookmarks.
    let selector = "labelSelector=kubernetes.io%2Fservice-name%3Dweb";
    assert_eq!(
        lists(&kube),
        [format!(
            "GET /apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices?&{selector}&limit=500"
        )]
    );
    assert_eq!(
        watches(&kube),
        [format!(
            "GET /apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices?&watch=true&timeoutSeconds=290&{selector}&allowWatchBookmarks=true&resourceVersion=2"
        )]
    );
}

#[tokio::test]
async fn a_watch_from_a_compacted_resource_version_relists() {
    let kube = FakeKube::start().await;
    kube.set_slice(NS, "web-1", "web", 8080, &[web("10.0.0.1", "web-0")]);
    let client = client(&kube).await;
    let mut watch = Watch::start(
        &client,
        watcher::Config::default().labels("kubernetes.io/service-name=web"),
    );
    watch.until("InitDone").await;
    eventually(DEADLINE, || async {
        if kube.open_watches() == 1 {
            Ok(())
        } else {
            Err(watches(&kube))
        }
    })
    .await;

    // Changes the watch does not select move the resourceVersion past the watcher's…
    kube.set_slice(NS, "api-1", "api", 8080, &[web("10.0.1.1", "api-0")]);
    // …the history is compacted, and the connection breaks: resuming is too late.
    kube.compact();
    kube.cut_watches();
    kube.set_slice(NS, "web-2", "web", 8080, &[web("10.0.0.2", "web-1")]);

    assert_eq!(
        watch.until("InitDone").await,
        [
            "Error 410 Expired",
            "Init",
            "InitApply web-1 [10.0.0.1 ready]",
            "InitApply web-2 [10.0.0.2 ready]",
            "InitDone"
        ]
    );
    assert_eq!(lists(&kube).len(), 2, "a second list");
    let watches = watches(&kube);
    assert!(
        watches[1].ends_with("resourceVersion=1"),
        "resumed from its last event: {watches:?}"
    );
}

#[tokio::test]
async fn a_bookmark_keeps_the_resume_point_fresh() {
    let kube = FakeKube::start().await;
    kube.set_slice(NS, "web-1", "web", 8080, &[web("10.0.0.1", "web-0")]);
    let client = client(&kube).await;
    let mut watch = Watch::start(
        &client,
        watcher::Config::default().labels("kubernetes.io/service-name=web"),
    );
    watch.until("InitDone").await;
    eventually(DEADLINE, || async {
        if kube.open_watches() == 1 {
            Ok(())
        } else {
            Err(watches(&kube))
        }
    })
    .await;

    kube.set_slice(NS, "api-1", "api", 8080, &[web("10.0.1.1", "api-0")]);
    kube.bookmark();
    kube.compact();
    kube.cut_watches();
    kube.set_slice(NS, "web-2", "web", 8080, &[web("10.0.0.2", "web-1")]);

    // The events before a cut are flushed first, so the watcher resumes from the bookmark.
    assert_eq!(watch.next().await, "Apply web-2 [10.0.0.2 ready]");
    assert_eq!(lists(&kube).len(), 1, "no second list");
    let watches = watches(&kube);
    assert!(
        watches[1].ends_with("resourceVersion=2"),
        "resumed from the bookmark: {watches:?}"
    );
}

#[tokio::test]
async fn a_cut_watch_resumes_and_sees_later_changes() {
    let kube = FakeKube::start().await;
    kube.set_slice(NS, "web-1", "web", 8080, &[web("10.0.0.1", "web-0")]);
    let client = client(&kube).await;
    let mut watch = Watch::start(&client, watcher::Config::default());
    watch.until("InitDone").await;
    eventually(DEADLINE, || async {
        if kube.open_watches() == 1 {
            Ok(())
        } else {
            Err(watches(&kube))
        }
    })
    .await;

    kube.cut_watches();
    assert_eq!(kube.open_watches(), 0);
    eventually(DEADLINE, || async {
        if kube.open_watches() == 1 {
            Ok(())
        } else {
            Err(watches(&kube))
        }
    })
    .await;
    kube.set_slice(
        NS,
        "web-1",
        "web",
        8080,
        &[web("10.0.0.1", "web-0").not_ready()],
    );

    assert_eq!(watch.next().await, "Apply web-1 [10.0.0.1 not-ready]");
    assert_eq!(lists(&kube).len(), 1, "resumed without a second list");
    assert_eq!(watches(&kube).len(), 2);
}

#[tokio::test]
async fn a_watch_ends_after_its_timeout_and_the_watcher_watches_again() {
    let kube = FakeKube::start().await;
    let client = client(&kube).await;
    let mut watch = Watch::start(&client, watcher::Config::default().timeout(1));
    assert_eq!(watch.until("InitDone").await, ["Init", "InitDone"]);

    eventually(DEADLINE, || async {
        if watches(&kube).len() >= 2 {
            Ok(())
        } else {
            Err(watches(&kube))
        }
    })
    .await;
    assert!(watches(&kube)[0].contains("timeoutSeconds=1"));
    kube.set_slice(NS, "web-1", "web", 8080, &[web("10.0.0.1", "web-0")]);
    assert_eq!(watch.next().await, "Apply web-1 [10.0.0.1 ready]");
    assert_eq!(lists(&kube).len(), 1);
}

#[tokio::test]
async fn a_streaming_list_sends_the_objects_then_a_bookmark() {
    let kube = FakeKube::start().await;
    kube.set_slice(NS, "web-1", "web", 8080, &[web("10.0.0.1", "web-0")]);
    let client = client(&kube).await;
    let mut watch = Watch::start(&client, watcher::Config::default().streaming_lists());

    assert_eq!(
        watch.until("InitDone").await,
        ["Init", "InitApply web-1 [10.0.0.1 ready]", "InitDone"]
    );
    kube.delete_slice(NS, "web-1");
    assert_eq!(watch.next().await, "Delete web-1 [10.0.0.1 ready]");
    assert!(lists(&kube).is_empty());
    assert!(watches(&kube)[0].contains("sendInitialEvents=true"));
}

#[tokio::test]
async fn deployments_scale_through_the_scale_subresource() {
    let kube = FakeKube::start().await;
    kube.add_deployment(NS, "web", 1);
    let client = client(&kube).await;
    let deployments: Api<Deployment> = Api::default_namespaced(client);

    let scale = deployments.get_scale("web").await.expect("get scale");
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(1));
    assert_eq!(
        scale.status.as_ref().and_then(|s| s.selector.as_deref()),
        Some("app=web")
    );

    let patch = Patch::Merge(json!({"spec": {"replicas": 3}}));
    let scale = deployments
        .patch_scale("web", &PatchParams::default(), &patch)
        .await
        .expect("patch scale");
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(3));
    assert_eq!(kube.replicas(NS, "web"), Some(3));
    let apply = Patch::Apply(
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "spec": {"replicas": 4}}),
    );
    deployments
        .patch_scale("web", &PatchParams::apply("shoal"), &apply)
        .await
        .expect("apply scale");
    assert_eq!(kube.replicas(NS, "web"), Some(4));

    kube.set_replicas(NS, "web", 5);
    let deployment = deployments.get("web").await.expect("get deployment");
    assert_eq!(deployment.spec.replicas, Some(5));
    assert_eq!(deployment.status.and_then(|s| s.ready_replicas), Some(5));

    // A replace from a stale read conflicts; from a fresh one it succeeds.
    let mut stale = scale;
    stale.spec.as_mut().expect("spec").replicas = Some(2);
    let conflict = status(
        deployments
            .replace_scale("web", &PostParams::default(), &stale)
            .await,
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    let mut fresh = deployments.get_scale("web").await.expect("get scale");
    fresh.spec.as_mut().expect("spec").replicas = Some(2);
    deployments
        .replace_scale("web", &PostParams::default(), &fresh)
        .await
        .expect("replace scale");
    assert_eq!(kube.replicas(NS, "web"), Some(2));

    let missing = status(deployments.get_scale("api").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, r#"deployments.apps "api" not found"#);
    let missing = status(
        deployments
            .patch_scale("api", &PatchParams::default(), &patch)
            .await,
    );
    assert_eq!(missing.code, 404);
}

fn lease(name: &str, holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

#[tokio::test]
async fn leases_are_created_replaced_and_conflict_when_stale() {
    let kube = FakeKube::start().await;
    let client = client(&kube).await;
    let leases: Api<Lease> = Api::default_namespaced(client);

    let created = leases
        .create(&PostParams::default(), &lease("shoal-gateway", "gw-a"))
        .await
        .expect("create");
    let rv = created
        .metadata
        .resource_version
        .clone()
        .expect("a resourceVersion");
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let stored = kube.lease(NS, "shoal-gateway").expect("stored");
    assert_eq!(stored["spec"]["holderIdentity"], "gw-a");
    assert_eq!(stored["spec"]["leaseDurationSeconds"], 15);

    let again = status(
        leases
            .create(&PostParams::default(), &lease("shoal-gateway", "gw-b"))
            .await,
    );
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));

    let mut renewed = created.clone();
    renewed.spec.as_mut().expect("spec").lease_transitions = Some(1);
    let renewed = leases
        .replace("shoal-gateway", &PostParams::default(), &renewed)
        .await
        .expect("replace with the current resourceVersion");
    assert_ne!(renewed.metadata.resource_version, Some(rv));

    // gw-b still holds the first version: its replace is refused.
    let mut taken = created;
    taken.spec.as_mut().expect("spec").holder_identity = Some("gw-b".into());
    let conflict = status(
        leases
            .replace("shoal-gateway", &PostParams::default(), &taken)
            .await,
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        conflict.message,
        r#"Operation cannot be fulfilled on leases.coordination.k8s.io "shoal-gateway": the object has been modified; please apply your changes to the latest version and try again"#
    );
    assert_eq!(
        kube.lease(NS, "shoal-gateway").expect("stored")["spec"]["holderIdentity"],
        "gw-a"
    );

    let patched = leases
        .patch(
            "shoal-gateway",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"holderIdentity": "gw-c"}})),
        )
        .await
        .expect("merge patch");
    assert_eq!(
        patched.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("gw-c")
    );

    kube.put_lease(NS, "other", json!({"holderIdentity": "gw-z"}));
    assert_eq!(
        leases
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        2
    );
    let deleted = leases
        .delete("shoal-gateway", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(deleted.is_right(), "a Status, as for an immediate deletion");
    assert!(kube.lease(NS, "shoal-gateway").is_none());
    let gone = status(leases.get("shoal-gateway").await);
    assert_eq!((gone.code, gone.reason.as_str()), (404, "NotFound"));
    let gone = status(
        leases
            .replace("shoal-gateway", &PostParams::default(), &taken)
            .await,
    );
    assert_eq!(gone.code, 404, "an update does not create a lease");
}

#[tokio::test]
async fn forbidden_verbs_get_rbac_403s() {
    let kube = FakeKube::start().await;
    kube.add_deployment(NS, "web", 1);
    let client = client(&kube).await;
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let slices: Api<EndpointSlice> = Api::default_namespaced(client.clone());
    let patch = Patch::Merge(json!({"spec": {"replicas": 3}}));

    kube.forbid("patch", "deployments/scale");
    let forbidden = status(
        deployments
            .patch_scale("web", &PatchParams::default(), &patch)
            .await,
    );
    assert_eq!(
        (forbidden.code, forbidden.reason.as_str()),
        (403, "Forbidden")
    );
    assert_eq!(
        forbidden.message,
        format!(
            r#"deployments.apps "web" is forbidden: User "{USER}" cannot patch resource "deployments/scale" in API group "apps" in the namespace "{NS}""#
        )
    );
    deployments
        .get_scale("web")
        .await
        .expect("get is still allowed");
    kube.allow("patch", "deployments/scale");
    deployments
        .patch_scale("web", &PatchParams::default(), &patch)
        .await
        .expect("allowed again");

    kube.forbid("list", "endpointslices");
    let forbidden = status(slices.list(&ListParams::default()).await);
    assert_eq!(
        forbidden.message,
        format!(
            r#"endpointslices.discovery.k8s.io is forbidden: User "{USER}" cannot list resource "endpointslices" in API group "discovery.k8s.io" in the namespace "{NS}""#
        )
    );
    let everywhere = status(
        Api::<EndpointSlice>::all(client.clone())
            .list(&ListParams::default())
            .await,
    );
    assert!(
        everywhere.message.ends_with("at the cluster scope"),
        "{}",
        everywhere.message
    );
    kube.allow("list", "endpointslices");

    kube.forbid("watch", "endpointslices");
    let mut watch = Watch::start(&client, watcher::Config::default());
    assert_eq!(
        watch.until("Error").await,
        ["Init", "InitDone", "Error 403 Forbidden"]
    );
    kube.allow("watch", "endpointslices");
    kube.set_slice(NS, "web-1", "web", 8080, &[web("10.0.0.1", "web-0")]);
    assert_eq!(
        watch.until("Apply").await.last().map(String::as_str),
        Some("Apply web-1 [10.0.0.1 ready]")
    );

    kube.forbid("update", "leases");
    let leases: Api<Lease> = Api::default_namespaced(client);
    leases
        .create(&PostParams::default(), &lease("shoal-gateway", "gw-a"))
        .await
        .expect("create is allowed");
    let forbidden = status(
        leases
            .replace(
                "shoal-gateway",
                &PostParams::default(),
                &lease("shoal-gateway", "gw-b"),
            )
            .await,
    );
    assert_eq!(forbidden.code, 403);
}

#[tokio::test]
async fn a_down_server_drops_connections_until_it_is_up_again() {
    let kube = FakeKube::start().await;
    kube.set_slice(NS, "web-1", "web", 8080, &[web("10.0.0.1", "web-0")]);
    let client = client(&kube).await;
    let slices: Api<EndpointSlice> = Api::default_namespaced(client.clone());
    let mut watch = Watch::start(&client, watcher::Config::default());
    watch.until("InitDone").await;
    eventually(DEADLINE, || async {
        if kube.open_watches() == 1 {
            Ok(())
        } else {
            Err(watches(&kube))
        }
    })
    .await;

    kube.set_down(true);
    assert_eq!(kube.open_watches(), 0);
    let requests = kube.requests().len();
    match slices.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => panic!("a down server answers nothing, got {status:?}"),
        Err(_) => {}
        Ok(list) => panic!("a down server answers nothing, got {list:?}"),
    }
    assert!(watch.until("Error").await.last().is_some());
    assert_eq!(
        kube.requests().len(),
        requests,
        "no request reached the handlers"
    );

    kube.set_down(false);
    kube.set_slice(NS, "web-2", "web", 8080, &[web("10.0.0.2", "web-1")]);
    assert_eq!(
        watch.until("Apply").await.last().map(String::as_str),
        Some("Apply web-2 [10.0.0.2 ready]")
    );
    assert_eq!(
        slices
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        2
    );
}

#[tokio::test]
async fn errors_are_status_objects_and_expired_watches_get_an_error_event() {
    let kube = FakeKube::start().await;
    kube.set_slice(NS, "web-1", "web", 8080, &[web("10.0.0.1", "web-0")]);
    kube.set_slice(NS, "web-1", "web", 8080, &[]);
    kube.compact();
    let http = Client::http1();

    let unknown = http
        .get(&format!(
            "{}/apis/apps/v1/namespaces/{NS}/statefulsets",
            kube.url()
        ))
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "the server could not find the requested resource", "reason": "NotFound",
               "details": {}, "code": 404})
    );

    let path = format!("/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices");
    let expired = http
        .get(&format!("{}{path}?watch=1&resourceVersion=1", kube.url()))
        .await;
    assert_eq!(expired.status, 200);
    assert_eq!(expired.header("transfer-encoding"), Some("chunked"));
    assert_eq!(
        expired.text(),
        json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
               "status": "Failure", "message": "too old resource version: 1 (2)", "reason": "Expired",
               "code": 410}})
        .to_string()
            + "\n"
    );

    // A cut watch ends without the chunked body's last chunk: the client sees an error.
    let watch = http
        .send(get(&format!("{}{path}?watch=true", kube.url()), &[]))
        .await
        .expect("a watch");
    assert_eq!(watch.status(), 200);
    eventually(DEADLINE, || async {
        if kube.open_watches() == 1 {
            Ok(())
        } else {
            Err(kube.open_watches())
        }
    })
    .await;
    kube.cut_watches();
    let body = tokio::time::timeout(DEADLINE, watch.into_body().collect())
        .await
        .expect("the cut ends the body");
    assert!(body.is_err(), "an abrupt end, not a clean one: {body:?}");

    let bad = http
        .get(&format!("{}{path}?labelSelector=a+in+b)", kube.url()))
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["reason"], "BadRequest");
    let version = http.get(&format!("{}/version", kube.url())).await;
    assert_eq!(version.json()["major"], "1");
}
