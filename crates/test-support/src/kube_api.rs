//! A fake Kubernetes API server, for testing shoal's Kubernetes mode without a cluster.
//!
//! [`FakeKube`] listens on `127.0.0.1:0` and speaks the API server's wire protocol (HTTP/1.1,
//! JSON) for the three resources the in-cluster gateway uses, so kube-rs talks to it as it
//! talks to a real cluster:
//!
//! - **EndpointSlices** (`discovery.k8s.io/v1`): list and watch, per namespace or
//!   cluster-wide, with `labelSelector` and `fieldSelector` (`metadata.name`,
//!   `metadata.namespace`). A watch replays the changes after its `resourceVersion` from a
//!   kept history, then streams live ones as newline-delimited JSON in a chunked body; a
//!   `resourceVersion` older than the history ([`FakeKube::compact`]) gets one `ERROR` event
//!   with a `410 Expired` Status, as real API servers send, and kube's watcher then re-lists.
//!   Watches honour `timeoutSeconds`, `allowWatchBookmarks` and the streaming-list mode
//!   (`sendInitialEvents=true`: the current objects as `ADDED`, then a `BOOKMARK` annotated
//!   `k8s.io/initial-events-end`). A change of labels into or out of a watch's selector
//!   arrives as `ADDED` or `DELETED`, as it does from a real server.
//! - **Deployments** (`apps/v1`) and their **`scale`** subresource (`autoscaling/v1`
//!   Scale): get, and replace or patch with a `resourceVersion` precondition. There is no
//!   controller: a Deployment's status follows its `spec.replicas` at once.
//! - **Leases** (`coordination.k8s.io/v1`): get, list, create, replace, patch and delete,
//!   stored as sent, with `metadata.uid`, `creationTimestamp` and `resourceVersion` set by
//!   the server, and `409 Conflict` for a stale `resourceVersion`.
//!
//! ```no_run
//! # async fn story() {
//! use shoal_test_support::kube_api::{FakeEndpoint, FakeKube};
//!
//! let kube = FakeKube::start().await;
//! let dir = tempfile::tempdir().unwrap();
//! let kubeconfig = kube.write_kubeconfig(dir.path(), "default");
//! kube.add_deployment("default", "web", 1);
//! kube.set_slice("default", "web-abc", "web", 8080, &[FakeEndpoint::ready("10.0.0.1", "web-0")]);
//! // … start the driver with `kubeconfig`, wait for it to see 10.0.0.1, then:
//! kube.cut_watches();
//! kube.set_slice("default", "web-abc", "web", 8080, &[
//!     FakeEndpoint::ready("10.0.0.1", "web-0").terminating(),
//!     FakeEndpoint::ready("10.0.0.2", "web-1"),
//! ]);
//! // … then, say, expect the driver to have resumed its watch and scaled `web` to 2:
//! assert_eq!(kube.replicas("default", "web"), Some(2));
//! # }
//! ```
//!
//! All three kinds share the generic verbs (any of them can be created, listed, watched,
//! patched or deleted through the API). One `resourceVersion` counter serves the whole
//! server and moves on every change of any object; a write that changes nothing is a
//! no-op, as on a real server. Every failure is a `Status` object with the code, reason and
//! wording of a real API server, including RBAC's `403 Forbidden` ([`FakeKube::forbid`]).
//! Faults a client must survive are one call away: [`FakeKube::cut_watches`] (connections
//! closed mid-stream), [`FakeKube::compact`] (history lost), [`FakeKube::set_down`] (an
//! unreachable server).
//!
//! Not faked: authentication (any token or none is accepted; every request acts as
//! [`USER`]), TLS, HTTP/2, protobuf, discovery (`/api`, `/apis`), other resources,
//! pagination (`limit` and `continue` are ignored: a list is one page), `dryRun`,
//! `deletecollection`, finalizers and graceful deletion, admission and validation beyond
//! names and replica counts, server-side apply's field ownership (an apply patch is a merge
//! patch, and must be JSON) and strategic merge's list keys (a merge patch too).
//! `timeoutSeconds` runs on tokio's clock, so under paused time a watch ends as soon as
//! the runtime idles (kube's watcher then simply watches again).
mod patch;
mod selector;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use selector::{FieldSelector, LabelSelector};

/// The user every request is taken to come from, as RBAC's `403` messages name it.
pub const USER: &str = "system:serviceaccount:default:shoal-gateway";

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A fake API server on `127.0.0.1:0`; dropping it stops the server and closes every
/// connection. Its methods are synchronous: tests change the cluster between `await`s.
#[derive(Debug)]
pub struct FakeKube {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

/// One endpoint of an EndpointSlice: an address and its conditions.
#[derive(Debug, Clone)]
pub struct FakeEndpoint {
    /// The endpoint's address (the slice's `addressType` follows the first endpoint's).
    pub ip: IpAddr,
    /// `conditions.ready`.
    pub ready: bool,
    /// `conditions.serving`.
    pub serving: bool,
    /// `conditions.terminating`.
    pub terminating: bool,
    /// The Pod named in `targetRef`, if any.
    pub pod: Option<String>,
    /// `nodeName`, if any.
    pub node: Option<String>,
}

impl FakeEndpoint {
    /// A ready, serving endpoint of `pod` at `ip`. Panics if `ip` is not an IP address.
    pub fn ready(ip: &str, pod: &str) -> FakeEndpoint {
        FakeEndpoint {
            ip: ip
                .parse()
                .unwrap_or_else(|e| panic!("{ip:?} is not an IP address: {e}")),
            ready: true,
            serving: true,
            terminating: false,
            pod: Some(pod.to_owned()),
            node: None,
        }
    }

    /// The same endpoint while its Pod shuts down: not ready, still serving, terminating.
    pub fn terminating(self) -> FakeEndpoint {
        FakeEndpoint {
            ready: false,
            serving: true,
            terminating: true,
            ..self
        }
    }

    /// The same endpoint failing its readiness probe: neither ready nor serving.
    pub fn not_ready(self) -> FakeEndpoint {
        FakeEndpoint {
            ready: false,
            serving: false,
            ..self
        }
    }

    /// The same endpoint, on node `node`.
    pub fn on_node(self, node: &str) -> FakeEndpoint {
        FakeEndpoint {
            node: Some(node.to_owned()),
            ..self
        }
    }

    fn to_json(&self, ns: &str) -> Value {
        let mut endpoint = json!({
            "addresses": [self.ip.to_string()],
            "conditions": {
                "ready": self.ready,
                "serving": self.serving,
                "terminating": self.terminating,
            },
        });
        if let Some(pod) = &self.pod {
            endpoint["targetRef"] = json!({"kind": "Pod", "namespace": ns, "name": pod});
        }
        if let Some(node) = &self.node {
            endpoint["nodeName"] = json!(node);
        }
        endpoint
    }
}

impl FakeKube {
    /// Start a server on `127.0.0.1:0` with no objects.
    pub async fn start() -> FakeKube {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the fake API server");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            down: watch::channel(false).0,
        });
        let accept = tokio::spawn(accept(listener, Arc::clone(&shared)));
        FakeKube {
            addr,
            shared,
            accept,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Write `dir/kubeconfig`: one cluster (server [`FakeKube::url`]), one user with a dummy
    /// token, one context whose namespace is `namespace`, current. Returns its path.
    pub fn write_kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        let yaml = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: fake-kube
  cluster:
    server: {url}
users:
- name: shoal-gateway
  user:
    token: fake-token
contexts:
- name: fake-kube
  context:
    cluster: fake-kube
    user: shoal-gateway
    namespace: \"{namespace}\"
current-context: fake-kube
preferences: {{}}
",
            url = self.url()
        );
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Create (watches see `ADDED`) or replace (`MODIFIED`) EndpointSlice `slice_name` in
    /// `ns`, labelled `kubernetes.io/service-name: service`, with one port (`http`, TCP,
    /// `port`) and these endpoints. Replacing it with the same content changes nothing.
    pub fn set_slice(
        &self,
        ns: &str,
        slice_name: &str,
        service: &str,
        port: u16,
        endpoints: &[FakeEndpoint],
    ) {
        let address_type = match endpoints.first().map(|e| e.ip) {
            Some(IpAddr::V6(_)) => "IPv6",
            _ => "IPv4",
        };
        let slice = json!({
            "metadata": {
                "name": slice_name,
                "labels": {
                    SERVICE_NAME_LABEL: service,
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                },
            },
            "addressType": address_type,
            "endpoints": endpoints.iter().map(|e| e.to_json(ns)).collect::<Vec<_>>(),
            "ports": [{"name": "http", "protocol": "TCP", "port": port}],
        });
        self.state()
            .store(Kind::EndpointSlice, ns, slice_name, slice);
    }

    /// Delete EndpointSlice `slice_name` in `ns` (watches see `DELETED`); nothing happens
    /// if there is none.
    pub fn delete_slice(&self, ns: &str, slice_name: &str) {
        self.state().remove(Kind::EndpointSlice, ns, slice_name);
    }

    /// The stored EndpointSlice `slice_name` in `ns`, if any.
    pub fn slice(&self, ns: &str, slice_name: &str) -> Option<Value> {
        self.state()
            .get(Kind::EndpointSlice, ns, slice_name)
            .cloned()
    }

    /// Send a `BOOKMARK` at the current resourceVersion on every open watch that asked for
    /// bookmarks (`allowWatchBookmarks=true`, which kube's watcher sends by default).
    pub fn bookmark(&self) {
        let mut state = self.state();
        let rv = state.rv;
        state.watches.retain(|w| !w.tx.is_closed());
        for w in state.watches.iter().filter(|w| w.bookmarks) {
            w.send(bookmark(w.kind, rv, false));
        }
    }

    /// End every open watch abruptly: the events already sent are flushed, then the
    /// connection is closed without the chunked body's last chunk.
    pub fn cut_watches(&self) {
        self.state().cut_watches();
    }

    /// Forget the history of changes: a watch from a resourceVersion older than the
    /// current one then gets `410 Expired`, as after an etcd compaction.
    pub fn compact(&self) {
        let mut state = self.state();
        state.history.clear();
        state.compacted = state.rv;
    }

    /// `true`: close every open connection (watches end abruptly), and from then on
    /// accept connections only to close them at once without a response, like an
    /// unreachable API server. `false`: serve normally again.
    pub fn set_down(&self, down: bool) {
        if down {
            self.state().cut_watches();
        }
        self.shared.down.send_replace(down);
    }

    /// How many watch streams are open now.
    pub fn open_watches(&self) -> usize {
        let mut state = self.state();
        state.watches.retain(|w| !w.tx.is_closed());
        state.watches.len()
    }

    /// The current resourceVersion of the whole server.
    pub fn resource_version(&self) -> u64 {
        self.state().rv
    }

    /// Create (or replace) Deployment `name` in `ns` with `replicas` replicas, selecting
    /// Pods labelled `app: name`.
    pub fn add_deployment(&self, ns: &str, name: &str, replicas: u32) {
        let container = json!({"name": name, "image": format!("registry.invalid/{name}:latest")});
        let deployment = json!({
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [container]},
                },
            },
        });
        self.state().store(Kind::Deployment, ns, name, deployment);
    }

    /// Deployment `name`'s `spec.replicas` in `ns`, or `None` if there is no such
    /// Deployment.
    pub fn replicas(&self, ns: &str, name: &str) -> Option<u32> {
        let state = self.state();
        let replicas = state
            .get(Kind::Deployment, ns, name)?
            .pointer("/spec/replicas");
        Some(replicas.and_then(Value::as_u64).map_or(1, |n| n as u32))
    }

    /// Scale Deployment `name` in `ns` as someone else (`kubectl scale`) would. Panics if
    /// there is no such Deployment: add it first.
    pub fn set_replicas(&self, ns: &str, name: &str, replicas: u32) {
        let mut state = self.state();
        let Some(mut deployment) = state.get(Kind::Deployment, ns, name).cloned() else {
            panic!("no deployment {ns}/{name}: call add_deployment first");
        };
        deployment["spec"]["replicas"] = json!(replicas);
        state.store(Kind::Deployment, ns, name, deployment);
    }

    /// The stored Deployment `name` in `ns`, if any.
    pub fn deployment(&self, ns: &str, name: &str) -> Option<Value> {
        self.state().get(Kind::Deployment, ns, name).cloned()
    }

    /// The stored Lease `name` in `ns`, as the API would return it.
    pub fn lease(&self, ns: &str, name: &str) -> Option<Value> {
        self.state().get(Kind::Lease, ns, name).cloned()
    }

    /// Create or replace Lease `name` in `ns` with this `spec`, as another client (say,
    /// another gateway holding it) would.
    pub fn put_lease(&self, ns: &str, name: &str, spec: Value) {
        let lease = json!({"metadata": {"name": name}, "spec": spec});
        self.state().store(Kind::Lease, ns, name, lease);
    }

    /// Refuse `verb` on `resource` with RBAC's `403 Forbidden` from now on. Verbs are
    /// RBAC's: `get`, `list`, `watch` (a GET with `watch=true`), `create`, `update` (PUT),
    /// `patch`, `delete`; resources are `endpointslices`, `deployments`,
    /// `deployments/scale` and `leases`. `*` stands for any verb or any resource.
    pub fn forbid(&self, verb: &str, resource: &str) {
        self.state()
            .forbidden
            .insert((verb.to_owned(), resource.to_owned()));
    }

    /// Undo [`FakeKube::forbid`] for the same `verb` and `resource`.
    pub fn allow(&self, verb: &str, resource: &str) {
        self.state()
            .forbidden
            .remove(&(verb.to_owned(), resource.to_owned()));
    }

    /// Every request received so far, as `METHOD path?query` (the query as sent).
    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.accept.abort();
        self.state().cut_watches();
        self.shared.down.send_replace(true);
    }
}

/// What the accept loop and the connections share with [`FakeKube`].
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// `true` while the server plays unreachable; every connection closes when it turns
    /// `true`.
    down: watch::Sender<bool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        if *shared.down.borrow() {
            drop(stream);
            continue;
        }
        let mut down = shared.down.subscribe();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(serve(&shared, req).await) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            // Dropping the connection closes the socket, whatever it was doing.
            tokio::select! {
                _ = conn => {}
                _ = down.wait_for(|down| *down) => {}
            }
        });
    }
}

type ResBody = UnsyncBoxBody<Bytes, io::Error>;

async fn serve(shared: &Shared, req: Request<Incoming>) -> Response<ResBody> {
    let (parts, body) = req.into_parts();
    let reply = match body.collect().await {
        Ok(body) => shared.lock().handle(&parts, &body.to_bytes()),
        Err(e) => Reply::Error(ApiError::bad_request(format!(
            "reading the request body: {e}"
        ))),
    };
    reply.into_response()
}

/// The three kinds of object this server keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    EndpointSlice,
    Deployment,
    Lease,
}

impl Kind {
    fn find(group: &str, version: &str, resource: &str) -> Result<Kind, ApiError> {
        match (group, version, resource) {
            ("discovery.k8s.io", "v1", "endpointslices") => Ok(Kind::EndpointSlice),
            ("apps", "v1", "deployments") => Ok(Kind::Deployment),
            ("coordination.k8s.io", "v1", "leases") => Ok(Kind::Lease),
            _ => Err(ApiError::path_not_found()),
        }
    }

    /// The plural resource name, as URLs and RBAC spell it.
    fn resource(self) -> &'static str {
        match self {
            Kind::EndpointSlice => "endpointslices",
            Kind::Deployment => "deployments",
            Kind::Lease => "leases",
        }
    }

    fn group(self) -> &'static str {
        match self {
            Kind::EndpointSlice => "discovery.k8s.io",
            Kind::Deployment => "apps",
            Kind::Lease => "coordination.k8s.io",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::Deployment => "apps/v1",
            Kind::Lease => "coordination.k8s.io/v1",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Deployment => "Deployment",
            Kind::Lease => "Lease",
        }
    }

    /// `leases.coordination.k8s.io`, as error messages name the resource.
    fn qualified(self) -> String {
        format!("{}.{}", self.resource(), self.group())
    }

    /// Whether objects of this kind carry `metadata.generation`.
    fn has_generation(self) -> bool {
        matches!(self, Kind::EndpointSlice | Kind::Deployment)
    }
}

/// An RBAC verb, decided from the method and the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
}

impl Verb {
    fn rbac(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }
}

/// What a path names below its resource.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    Collection,
    Object(&'a str),
    Scale(&'a str),
}

impl Target<'_> {
    fn name(&self) -> Option<&str> {
        match self {
            Target::Collection => None,
            Target::Object(name) | Target::Scale(name) => Some(name),
        }
    }
}

type Key = (Kind, String, String);

fn key(kind: Kind, ns: &str, name: &str) -> Key {
    (kind, ns.to_owned(), name.to_owned())
}

/// Everything the server knows; only ever locked for synchronous work.
#[derive(Debug, Default)]
struct State {
    /// The resourceVersion of the last change.
    rv: u64,
    /// How many uids were handed out.
    uids: u64,
    objects: BTreeMap<Key, Value>,
    /// Every change after `compacted`, oldest first.
    history: Vec<Change>,
    /// The resourceVersion the history starts after; watches from older ones expire.
    compacted: u64,
    watches: Vec<Watcher>,
    forbidden: BTreeSet<(String, String)>,
    requests: Vec<String>,
}

/// One change of one object, as kept for watches.
#[derive(Debug)]
struct Change {
    kind: Kind,
    rv: u64,
    /// The object before the change, if it existed.
    old: Option<Value>,
    /// The object after the change; for a deletion, its last state at the deletion's
    /// resourceVersion.
    object: Value,
    deleted: bool,
}

/// An open watch stream.
#[derive(Debug)]
struct Watcher {
    kind: Kind,
    filter: Filter,
    bookmarks: bool,
    tx: mpsc::UnboundedSender<WatchMsg>,
}

impl Watcher {
    fn send(&self, line: Bytes) {
        // A closed receiver is a stream that ended; it is pruned on the next change.
        let _ = self.tx.send(WatchMsg::Line(line));
    }
}

#[derive(Debug)]
enum WatchMsg {
    Line(Bytes),
    Cut,
}

/// Which objects a list or watch is about.
#[derive(Debug, Clone)]
struct Filter {
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn new(ns: Option<&str>, query: &Query) -> Result<Filter, ApiError> {
        Ok(Filter {
            ns: ns.map(str::to_owned),
            labels: LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
                .map_err(ApiError::bad_request)?,
            fields: FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
                .map_err(ApiError::bad_request)?,
        })
    }

    fn matches(&self, object: &Value) -> bool {
        let in_ns = match &self.ns {
            Some(ns) => {
                object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    == Some(ns)
            }
            None => true,
        };
        in_ns
            && self.labels.matches(object.pointer("/metadata/labels"))
            && self.fields.matches(object)
    }

    /// The event a watch with this filter sees for `change`, if any: an object moving into
    /// the selection is `ADDED`, out of it `DELETED`.
    fn event_type(&self, change: &Change) -> Option<&'static str> {
        let before = change.old.as_ref().is_some_and(|old| self.matches(old));
        let now = !change.deleted && self.matches(&change.object);
        match (before, now) {
            (false, true) => Some("ADDED"),
            (true, true) => Some("MODIFIED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        }
    }
}

/// A request's query, decoded.
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Query {
        Query(
            raw.split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How a `PATCH` body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatchFormat {
    /// Merge patch, and strategic merge patch read as one.
    Merge,
    /// Server-side apply, read as a merge patch.
    Apply,
    /// RFC 6902 JSON patch.
    Json,
}

impl PatchFormat {
    fn of(parts: &Parts, query: &Query) -> Result<PatchFormat, ApiError> {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or_default().trim();
        let format = match media {
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                PatchFormat::Merge
            }
            "application/apply-patch+yaml" => PatchFormat::Apply,
            "application/json-patch+json" => PatchFormat::Json,
            _ => return Err(ApiError::unsupported_media_type(content_type)),
        };
        if format == PatchFormat::Apply && query.get("fieldManager").unwrap_or_default().is_empty()
        {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
                Some(json!({"group": "meta.k8s.io", "kind": "PatchOptions"})),
            ));
        }
        Ok(format)
    }

    fn apply(self, target: &mut Value, patch: &Value) -> Result<(), ApiError> {
        match self {
            PatchFormat::Merge | PatchFormat::Apply => {
                patch::merge(target, patch);
                Ok(())
            }
            PatchFormat::Json => patch::json_patch(target, patch)
                .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e, None)),
        }
    }
}

impl State {
    fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&key(kind, ns, name))
    }

    /// Write `object` as the new state of `kind` `ns/name`. The server owns `apiVersion`,
    /// `kind`, the name and namespace, `uid`, `creationTimestamp`, `generation` and
    /// `resourceVersion`; everything else is kept as given. A write that changes nothing
    /// is a no-op; any other bumps the resourceVersion and tells the watches.
    fn store(&mut self, kind: Kind, ns: &str, name: &str, mut object: Value) -> Value {
        let old = self.get(kind, ns, name).cloned();
        if !object.is_object() {
            object = json!({});
        }
        object["apiVersion"] = json!(kind.api_version());
        object["kind"] = json!(kind.kind());
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        let Some(meta) = object["metadata"].as_object_mut() else {
            unreachable!("metadata was just made an object")
        };
        meta.insert("name".into(), json!(name));
        meta.insert("namespace".into(), json!(ns));
        for field in ["uid", "creationTimestamp", "resourceVersion", "generation"] {
            match old.as_ref().and_then(|old| old["metadata"].get(field)) {
                Some(value) => meta.insert(field.into(), value.clone()),
                None => meta.remove(field),
            };
        }
        if old.is_none() {
            self.uids += 1;
            meta.insert("uid".into(), json!(uid(self.uids)));
            meta.insert(
                "creationTimestamp".into(),
                json!(timestamp(SystemTime::now())),
            );
            if kind.has_generation() {
                meta.insert("generation".into(), json!(1));
            }
        }
        if kind == Kind::Deployment {
            settle_deployment(&mut object);
        }
        if old.as_ref() == Some(&object) {
            return object;
        }
        if let Some(old) = &old
            && kind.has_generation()
        {
            let generation = old.pointer("/metadata/generation").and_then(Value::as_u64);
            object["metadata"]["generation"] = json!(generation.unwrap_or(0) + 1);
            if kind == Kind::Deployment {
                settle_deployment(&mut object);
            }
        }
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(key(kind, ns, name), object.clone());
        self.record(Change {
            kind,
            rv: self.rv,
            old,
            object: object.clone(),
            deleted: false,
        });
        object
    }

    /// Delete `kind` `ns/name`, returning what it was.
    fn remove(&mut self, kind: Kind, ns: &str, name: &str) -> Option<Value> {
        let old = self.objects.remove(&key(kind, ns, name))?;
        self.rv += 1;
        let mut gone = old.clone();
        gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(Change {
            kind,
            rv: self.rv,
            old: Some(old.clone()),
            object: gone,
            deleted: true,
        });
        Some(old)
    }

    fn record(&mut self, change: Change) {
        self.watches.retain(|w| !w.tx.is_closed());
        for w in self.watches.iter().filter(|w| w.kind == change.kind) {
            if let Some(event) = w.filter.event_type(&change) {
                w.send(event_line(event, &change.object));
            }
        }
        self.history.push(change);
    }

    fn cut_watches(&mut self) {
        for w in self.watches.drain(..) {
            let _ = w.tx.send(WatchMsg::Cut);
        }
    }

    fn handle(&mut self, parts: &Parts, body: &[u8]) -> Reply {
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        self.requests
            .push(format!("{} {path_and_query}", parts.method));
        match self.route(parts, body) {
            Ok(reply) => reply,
            Err(e) => Reply::Error(e),
        }
    }

    fn route(&mut self, parts: &Parts, body: &[u8]) -> Result<Reply, ApiError> {
        let query = Query::parse(parts.uri.query().unwrap_or_default());
        let segments: Vec<&str> = parts
            .uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let (kind, ns, rest) = match segments.as_slice() {
            ["version"] => return Ok(Reply::ok(version())),
            ["healthz" | "livez" | "readyz"] => return Ok(Reply::Text("ok")),
            [
                "apis",
                group,
                version,
                "namespaces",
                ns,
                resource,
                rest @ ..,
            ] => (Kind::find(group, version, resource)?, Some(*ns), rest),
            ["apis", group, version, resource] => {
                (Kind::find(group, version, resource)?, None, &[][..])
            }
            _ => return Err(ApiError::path_not_found()),
        };
        let target = match rest {
            [] => Target::Collection,
            [name] => Target::Object(name),
            [name, "scale"] if kind == Kind::Deployment => Target::Scale(name),
            _ => return Err(ApiError::path_not_found()),
        };
        let verb = match (&parts.method, target) {
            (&Method::GET, Target::Collection) if query.flag("watch") => Verb::Watch,
            (&Method::GET, Target::Collection) => Verb::List,
            (&Method::GET, _) => Verb::Get,
            (&Method::POST, Target::Collection) => Verb::Create,
            (&Method::PUT, Target::Object(_) | Target::Scale(_)) => Verb::Update,
            (&Method::PATCH, Target::Object(_) | Target::Scale(_)) => Verb::Patch,
            (&Method::DELETE, Target::Object(_)) => Verb::Delete,
            _ => return Err(ApiError::method_not_allowed()),
        };
        self.authorize(verb, kind, target, ns)?;
        let Some(ns) = ns else {
            return match verb {
                Verb::List => self.list(kind, None, &query),
                Verb::Watch => self.watch(kind, None, &query),
                _ => Err(ApiError::method_not_allowed()),
            };
        };
        match (verb, target) {
            (Verb::List, _) => self.list(kind, Some(ns), &query),
            (Verb::Watch, _) => self.watch(kind, Some(ns), &query),
            (Verb::Create, _) => self.create(kind, ns, json_body(body)?),
            (Verb::Get, Target::Object(name)) => match self.get(kind, ns, name) {
                Some(object) => Ok(Reply::ok(object.clone())),
                None => Err(ApiError::not_found(kind, name)),
            },
            (Verb::Get, Target::Scale(name)) => match self.get(kind, ns, name) {
                Some(deployment) => Ok(Reply::ok(scale_of(deployment))),
                None => Err(ApiError::not_found(kind, name)),
            },
            (Verb::Update, Target::Object(name)) => self.update(kind, ns, name, json_body(body)?),
            (Verb::Update, Target::Scale(name)) => self.update_scale(ns, name, json_body(body)?),
            (Verb::Patch, Target::Object(name)) => {
                let format = PatchFormat::of(parts, &query)?;
                self.patch(kind, ns, name, format, json_body(body)?)
            }
            (Verb::Patch, Target::Scale(name)) => {
                let format = PatchFormat::of(parts, &query)?;
                self.patch_scale(ns, name, format, json_body(body)?)
            }
            (Verb::Delete, Target::Object(name)) => self.delete(kind, ns, name, body),
            _ => Err(ApiError::method_not_allowed()),
        }
    }

    fn authorize(
        &self,
        verb: Verb,
        kind: Kind,
        target: Target<'_>,
        ns: Option<&str>,
    ) -> Result<(), ApiError> {
        let resource = match target {
            Target::Scale(_) => format!("{}/scale", kind.resource()),
            _ => kind.resource().to_owned(),
        };
        let denied = [
            (verb.rbac(), resource.as_str()),
            ("*", resource.as_str()),
            (verb.rbac(), "*"),
            ("*", "*"),
        ]
        .iter()
        .any(|(v, r)| self.forbidden.contains(&((*v).to_owned(), (*r).to_owned())));
        if denied {
            return Err(ApiError::forbidden(
                kind,
                verb,
                &resource,
                ns,
                target.name(),
            ));
        }
        Ok(())
    }

    fn list(&self, kind: Kind, ns: Option<&str>, query: &Query) -> Result<Reply, ApiError> {
        let filter = Filter::new(ns, query)?;
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|((k, _, _), object)| *k == kind && filter.matches(object))
            .map(|(_, object)| {
                // A real server leaves the type out of a typed list's items.
                let mut item = object.clone();
                if let Some(item) = item.as_object_mut() {
                    item.remove("apiVersion");
                    item.remove("kind");
                }
                item
            })
            .collect();
        Ok(Reply::ok(json!({
            "apiVersion": kind.api_version(),
            "kind": format!("{}List", kind.kind()),
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": items,
        })))
    }

    fn watch(&mut self, kind: Kind, ns: Option<&str>, query: &Query) -> Result<Reply, ApiError> {
        let filter = Filter::new(ns, query)?;
        let timeout = match query.get("timeoutSeconds") {
            Some(s) => Some(Duration::from_secs(s.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid timeoutSeconds {s:?}"))
            })?)),
            None => None,
        };
        let from =
            match query.get("resourceVersion").unwrap_or_default() {
                "" | "0" => None,
                rv => Some(rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version {rv:?}"))
                })?),
            };
        let initial_events = query.flag("sendInitialEvents");
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = Watcher {
            kind,
            filter,
            bookmarks: query.flag("allowWatchBookmarks"),
            tx,
        };
        match from {
            Some(rv) if !initial_events && rv < self.compacted => {
                let expired = ApiError::expired(format!(
                    "too old resource version: {rv} ({})",
                    self.compacted
                ));
                watcher.send(event_line("ERROR", &expired.status()));
                // Dropping the sender ends the stream after the error, as a real server does.
                return Ok(Reply::watch(rx, timeout));
            }
            Some(rv) if !initial_events => {
                let missed = self.history.iter().filter(|c| c.kind == kind && c.rv > rv);
                for change in missed {
                    if let Some(event) = watcher.filter.event_type(change) {
                        watcher.send(event_line(event, &change.object));
                    }
                }
            }
            _ => {
                // No resourceVersion, "0", or a streaming list: the current state first.
                for ((k, _, _), object) in &self.objects {
                    if *k == kind && watcher.filter.matches(object) {
                        watcher.send(event_line("ADDED", object));
                    }
                }
                if initial_events {
                    watcher.send(bookmark(kind, self.rv, true));
                }
            }
        }
        self.watches.push(watcher);
        Ok(Reply::watch(rx, timeout))
    }

    fn create(&mut self, kind: Kind, ns: &str, body: Value) -> Result<Reply, ApiError> {
        check_type(kind, &body)?;
        check_namespace(&body, ns)?;
        let name = match body.pointer("/metadata/name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => match body
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
            {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}{}", suffix(self.uids + 1)),
                _ => {
                    return Err(ApiError::invalid(
                        kind,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ));
                }
            },
        };
        if body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|rv| !rv.is_empty())
        {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "Internal error occurred: resourceVersion should not be set on objects to be created".into(),
                None,
            ));
        }
        if self.get(kind, ns, &name).is_some() {
            return Err(ApiError::already_exists(kind, &name));
        }
        let stored = self.store(kind, ns, &name, body);
        Ok(Reply::Json(StatusCode::CREATED, stored))
    }

    fn update(&mut self, kind: Kind, ns: &str, name: &str, body: Value) -> Result<Reply, ApiError> {
        check_type(kind, &body)?;
        check_namespace(&body, ns)?;
        check_name(&body, name)?;
        let Some(current) = self.get(kind, ns, name) else {
            return Err(ApiError::not_found(kind, name));
        };
        check_resource_version(kind, name, &body, current)?;
        Ok(Reply::ok(self.store(kind, ns, name, body)))
    }

    fn patch(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        format: PatchFormat,
        patch: Value,
    ) -> Result<Reply, ApiError> {
        let Some(current) = self.get(kind, ns, name).cloned() else {
            if format == PatchFormat::Apply {
                // Server-side apply creates what does not exist yet.
                check_type(kind, &patch)?;
                check_namespace(&patch, ns)?;
                check_name(&patch, name)?;
                let stored = self.store(kind, ns, name, patch);
                return Ok(Reply::Json(StatusCode::CREATED, stored));
            }
            return Err(ApiError::not_found(kind, name));
        };
        let mut patched = current.clone();
        format.apply(&mut patched, &patch)?;
        check_type(kind, &patched)?;
        check_namespace(&patched, ns)?;
        check_name(&patched, name)?;
        check_resource_version(kind, name, &patched, &current)?;
        Ok(Reply::ok(self.store(kind, ns, name, patched)))
    }

    fn delete(&mut self, kind: Kind, ns: &str, name: &str, body: &[u8]) -> Result<Reply, ApiError> {
        let Some(current) = self.get(kind, ns, name) else {
            return Err(ApiError::not_found(kind, name));
        };
        if !body.iter().all(u8::is_ascii_whitespace) {
            let options = json_body(body)?;
            for (field, label) in [("resourceVersion", "ResourceVersion"), ("uid", "UID")] {
                let wanted = options
                    .pointer(&format!("/preconditions/{field}"))
                    .and_then(Value::as_str);
                let actual = current["metadata"][field].as_str().unwrap_or_default();
                if let Some(wanted) = wanted
                    && wanted != actual
                {
                    return Err(ApiError::conflict(
                        kind,
                        name,
                        &format!(
                            "Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}"
                        ),
                    ));
                }
            }
        }
        let uid = current["metadata"]["uid"].clone();
        self.remove(kind, ns, name);
        Ok(Reply::ok(json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": kind.group(), "kind": kind.resource(), "uid": uid},
        })))
    }

    fn update_scale(&mut self, ns: &str, name: &str, scale: Value) -> Result<Reply, ApiError> {
        let kind = Kind::Deployment;
        let Some(current) = self.get(kind, ns, name) else {
            return Err(ApiError::not_found(kind, name));
        };
        if !scale.is_object() {
            return Err(ApiError::bad_request(
                "the body of a Scale must be a JSON object".into(),
            ));
        }
        check_name(&scale, name)?;
        check_namespace(&scale, ns)?;
        check_resource_version(kind, name, &scale, current)?;
        let replicas = match scale.pointer("/spec/replicas") {
            None | Some(Value::Null) => 0,
            Some(n) => match n.as_i64() {
                Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => n,
                _ => {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        format!(
                            "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {n}: must be greater than or equal to 0"
                        ),
                        Some(json!({"name": name, "group": "autoscaling", "kind": "Scale"})),
                    ));
                }
            },
        };
        let mut deployment = current.clone();
        deployment["spec"]["replicas"] = json!(replicas);
        let stored = self.store(kind, ns, name, deployment);
        Ok(Reply::ok(scale_of(&stored)))
    }

    fn patch_scale(
        &mut self,
        ns: &str,
        name: &str,
        format: PatchFormat,
        patch: Value,
    ) -> Result<Reply, ApiError> {
        let Some(current) = self.get(Kind::Deployment, ns, name) else {
            return Err(ApiError::not_found(Kind::Deployment, name));
        };
        let mut scale = scale_of(current);
        format.apply(&mut scale, &patch)?;
        self.update_scale(ns, name, scale)
    }
}

/// The Scale view of a Deployment.
fn scale_of(deployment: &Value) -> Value {
    let meta = &deployment["metadata"];
    let selector = deployment
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": deployment.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": deployment.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

/// The missing controller: a Deployment's status is its spec, at once.
fn settle_deployment(deployment: &mut Value) {
    let replicas = deployment
        .pointer("/spec/replicas")
        .cloned()
        .unwrap_or(json!(1));
    let generation = deployment
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1));
    deployment["status"] = json!({
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    });
}

fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request is not valid JSON (this server reads JSON only): {e}"
        ))
    })
}

fn check_type(kind: Kind, object: &Value) -> Result<(), ApiError> {
    if !object.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body of a {} must be a JSON object",
            kind.kind()
        )));
    }
    if let Some(api_version) = object.get("apiVersion").and_then(Value::as_str)
        && api_version != kind.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            kind.api_version()
        )));
    }
    if let Some(k) = object.get("kind").and_then(Value::as_str)
        && k != kind.kind()
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            kind.kind()
        )));
    }
    Ok(())
}

fn check_namespace(object: &Value, ns: &str) -> Result<(), ApiError> {
    match object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(given) if !given.is_empty() && given != ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        )),
        _ => Ok(()),
    }
}

fn check_name(object: &Value, name: &str) -> Result<(), ApiError> {
    match object.pointer("/metadata/name").and_then(Value::as_str) {
        Some(given) if given != name => Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        ))),
        _ => Ok(()),
    }
}

/// A `metadata.resourceVersion` in a write is a precondition: it must be the current one.
fn check_resource_version(
    kind: Kind,
    name: &str,
    object: &Value,
    current: &Value,
) -> Result<(), ApiError> {
    let given = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let actual = current
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !given.is_empty() && given != actual {
        return Err(ApiError::conflict(
            kind,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    Ok(())
}

fn event_line(event: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": event, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn bookmark(kind: Kind, rv: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": kind.kind(), "apiVersion": kind.api_version(), "metadata": metadata}),
    )
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "37",
        "gitVersion": "v1.37.0+shoal-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-08-27T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// A uid in UUID form, unique per server.
fn uid(n: u64) -> String {
    format!("5c0a1000-0000-4000-8000-{n:012x}")
}

/// Five lowercase alphanumerics, as `generateName` appends.
fn suffix(mut n: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::with_capacity(5);
    for _ in 0..5 {
        out.push(char::from(ALPHABET[(n % ALPHABET.len() as u64) as usize]));
        n /= ALPHABET.len() as u64;
    }
    out
}

/// RFC 3339 in UTC, to the second, as Kubernetes writes timestamps.
fn timestamp(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// A failure, answered as a `Status` object.
#[derive(Debug)]
struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
    details: Option<Value>,
}

impl ApiError {
    fn new(
        code: StatusCode,
        reason: &'static str,
        message: String,
        details: Option<Value>,
    ) -> ApiError {
        ApiError {
            code,
            reason,
            message,
            details,
        }
    }

    fn object_details(kind: Kind, name: &str) -> Option<Value> {
        Some(json!({"name": name, "group": kind.group(), "kind": kind.resource()}))
    }

    fn path_not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".into(),
            Some(json!({})),
        )
    }

    fn not_found(kind: Kind, name: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", kind.qualified()),
            ApiError::object_details(kind, name),
        )
    }

    fn already_exists(kind: Kind, name: &str) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", kind.qualified()),
            ApiError::object_details(kind, name),
        )
    }

    fn conflict(kind: Kind, name: &str, why: &str) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                kind.qualified()
            ),
            ApiError::object_details(kind, name),
        )
    }

    fn invalid(kind: Kind, name: &str, why: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "{}.{} \"{name}\" is invalid: {why}",
                kind.kind(),
                kind.group()
            ),
            Some(json!({"name": name, "group": kind.group(), "kind": kind.kind()})),
        )
    }

    fn forbidden(
        kind: Kind,
        verb: Verb,
        resource: &str,
        ns: Option<&str>,
        name: Option<&str>,
    ) -> ApiError {
        let subject = match name {
            Some(name) => format!("{} \"{name}\"", kind.qualified()),
            None => kind.qualified(),
        };
        let scope = match ns {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_owned(),
        };
        let mut details = json!({"group": kind.group(), "kind": kind.resource()});
        if let Some(name) = name {
            details["name"] = json!(name);
        }
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{subject} is forbidden: User \"{USER}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
                verb.rbac(),
                kind.group()
            ),
            Some(details),
        )
    }

    fn bad_request(message: String) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message, None)
    }

    fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
            Some(json!({})),
        )
    }

    fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type:?}) - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, \
                 application/strategic-merge-patch+json"
            ),
            None,
        )
    }

    fn expired(message: String) -> ApiError {
        ApiError::new(StatusCode::GONE, "Expired", message, None)
    }

    fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// What a request gets, decided under the lock and turned into a response after it.
#[derive(Debug)]
enum Reply {
    Json(StatusCode, Value),
    Text(&'static str),
    Error(ApiError),
    Watch(WatchBody),
}

impl Reply {
    fn ok(value: Value) -> Reply {
        Reply::Json(StatusCode::OK, value)
    }

    fn watch(rx: mpsc::UnboundedReceiver<WatchMsg>, timeout: Option<Duration>) -> Reply {
        Reply::Watch(WatchBody {
            rx,
            deadline: timeout.map(|t| Box::pin(tokio::time::sleep(t))),
            flow: Flow::Open,
        })
    }

    fn into_response(self) -> Response<ResBody> {
        let full = |bytes: Bytes| {
            Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync()
        };
        let (status, content_type, body) = match self {
            Reply::Json(status, value) => {
                (status, "application/json", full(value.to_string().into()))
            }
            Reply::Error(e) => (
                e.code,
                "application/json",
                full(e.status().to_string().into()),
            ),
            Reply::Text(text) => (
                StatusCode::OK,
                "text/plain; charset=utf-8",
                full(text.into()),
            ),
            Reply::Watch(body) => (StatusCode::OK, "application/json", body.boxed_unsync()),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
        response
    }
}

/// A watch stream: one JSON event per line, in a chunked body, until the server ends it,
/// `timeoutSeconds` passes, or it is cut.
#[derive(Debug)]
struct WatchBody {
    rx: mpsc::UnboundedReceiver<WatchMsg>,
    deadline: Option<Pin<Box<Sleep>>>,
    flow: Flow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Open,
    /// Cut: once hyper has flushed what was sent, fail the body so the connection closes
    /// without the last chunk.
    Cutting,
    Done,
}

impl Body for WatchBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match this.flow {
            Flow::Done => return Poll::Ready(None),
            Flow::Cutting => {
                this.flow = Flow::Done;
                let cut = io::Error::new(io::ErrorKind::ConnectionAborted, "watch cut by FakeKube");
                return Poll::Ready(Some(Err(cut)));
            }
            Flow::Open => {}
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(WatchMsg::Line(line))) => {
                return Poll::Ready(Some(Ok(Frame::data(line))));
            }
            Poll::Ready(Some(WatchMsg::Cut)) => {
                // Returning Pending once lets hyper flush the events before the cut.
                this.flow = Flow::Cutting;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(None) => {
                this.flow = Flow::Done;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.flow = Flow::Done;
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_like_forms() {
        let q =
            Query::parse("&watch=true&labelSelector=kubernetes.io%2Fservice-name+in+%28a%2Cb%29&x");
        assert!(q.flag("watch"));
        assert_eq!(
            q.get("labelSelector"),
            Some("kubernetes.io/service-name in (a,b)")
        );
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn timestamps_are_rfc_3339_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(timestamp(leap_day), "2024-02-29T12:34:56Z");
    }
}
