//! [`KubeDriver`]: the state shared by the watch, the scale tasks and the lease loop, and the
//! [`Driver`] the rest of shoal sees.
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use shoal_core::{
    BoxFuture, Driver, DriverError, Endpoint, EndpointSink, EventKind, EventLog, Pod, ReplicaState,
    ReplicaStatus, ServiceState, ServiceStatus,
};
use tokio::runtime::Handle;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::lease::Leadership;
use super::problem::Troubles;
use super::slices::{PodView, Slice, ready_set, service_view};
use super::{Cluster, KubeService, LeaseSettings, lease, scale, watch as discovery};

/// How long [`Driver::shutdown`] waits for the leader to release the Lease.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Pods of Deployments as shoal's replicas: discovery through EndpointSlices, scaling through
/// the scale subresource, and (optionally) a Lease so that one gateway scales. See the
/// [module documentation](super) for the design.
pub struct KubeDriver {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    lease_task: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for KubeDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeDriver")
            .field("cluster", &self.shared.cluster)
            .field("lease", &self.shared.lease)
            .finish_non_exhaustive()
    }
}

/// What the driver's tasks share.
pub(crate) struct Shared {
    pub(crate) cluster: Cluster,
    sink: Arc<dyn EndpointSink>,
    pub(crate) events: Arc<EventLog>,
    pub(crate) troubles: Troubles,
    state: Mutex<State>,
    pub(crate) leadership: Mutex<Leadership>,
    pub(crate) lease: Option<LeaseSettings>,
    /// Wakes the desired-replica refresher (a service was added).
    pub(crate) refresh: Notify,
    /// Becomes true at shutdown.
    pub(crate) stop: watch::Sender<bool>,
    runtime: Handle,
}

#[derive(Default)]
struct State {
    /// Every Service's EndpointSlice in the namespace, by slice name, as last listed/watched.
    store: HashMap<String, Slice>,
    /// A first list has completed: the store is the cluster's, not just empty.
    synced: bool,
    /// The followed services.
    services: BTreeMap<String, Followed>,
    closing: bool,
}

struct Followed {
    port: u16,
    /// The Deployment's `spec.replicas` as last read or asked for; None: unknown.
    desired: Option<u32>,
    /// Bumped by each scale request.
    requested_gen: u64,
    /// The request the scale task has finished with (successfully or not).
    settled_gen: u64,
    view: Vec<PodView>,
    /// What the sink was last given.
    pushed: Option<Vec<Endpoint>>,
    scale_tx: watch::Sender<Option<(u32, u64)>>,
    worker: JoinHandle<()>,
}

/// A change to the slice store, from the watch.
pub(crate) enum StoreChange {
    /// A complete list (at `InitDone`): the store becomes exactly this.
    Replace(HashMap<String, Slice>),
    /// A slice was added or modified.
    Upsert(String, Slice),
    /// A slice was deleted.
    Remove(String),
}

impl KubeDriver {
    /// Start following the cluster: the EndpointSlice watch, the desired-replica refresher
    /// and, with `lease`, the leader election. No service is followed until
    /// [`set_services`](Self::set_services). Must be called inside a tokio runtime.
    pub fn start(
        cluster: Cluster,
        sink: Arc<dyn EndpointSink>,
        events: Arc<EventLog>,
        lease: Option<LeaseSettings>,
    ) -> Arc<KubeDriver> {
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            cluster,
            sink,
            troubles: Troubles::new(events.clone()),
            events,
            state: Mutex::new(State::default()),
            leadership: Mutex::new(Leadership::default()),
            lease: lease.clone(),
            refresh: Notify::new(),
            stop,
            runtime: Handle::current(),
        });
        let tasks = vec![
            tokio::spawn(discovery::run(shared.clone())),
            tokio::spawn(scale::refresh_desired(shared.clone())),
        ];
        let lease_task = lease.map(|settings| tokio::spawn(lease::run(shared.clone(), settings)));
        Arc::new(KubeDriver {
            shared,
            tasks: Mutex::new(tasks),
            lease_task: Mutex::new(lease_task),
        })
    }

    /// Follow exactly these services (at start and on every reload). Newly followed services
    /// get their endpoints from what is already known; the endpoints of services no longer
    /// followed are cleared from the sink. A changed port re-reads the slices.
    pub fn set_services(&self, services: Vec<KubeService>) {
        let shared = &self.shared;
        let mut state = shared.lock();
        if state.closing {
            return;
        }
        let wanted: HashMap<String, u16> = services.into_iter().map(|s| (s.name, s.port)).collect();
        let removed: Vec<String> = state
            .services
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        for name in removed {
            if let Some(f) = state.services.remove(&name) {
                f.worker.abort();
                if f.pushed.is_some() {
                    shared.sink.set_endpoints(&name, Vec::new());
                }
                tracing::info!(service = %name, "no longer following the service's pods");
            }
        }
        let mut changed = Vec::new();
        for (name, port) in wanted {
            match state.services.get_mut(&name) {
                Some(f) if f.port == port => {}
                Some(f) => {
                    f.port = port;
                    changed.push(name);
                }
                None => {
                    let (scale_tx, scale_rx) = watch::channel(None);
                    let worker =
                        shared
                            .runtime
                            .spawn(scale::worker(shared.clone(), name.clone(), scale_rx));
                    state.services.insert(
                        name.clone(),
                        Followed {
                            port,
                            desired: None,
                            requested_gen: 0,
                            settled_gen: 0,
                            view: Vec::new(),
                            pushed: None,
                            scale_tx,
                            worker,
                        },
                    );
                    changed.push(name);
                }
            }
        }
        if state.synced {
            let State {
                store, services, ..
            } = &mut *state;
            for name in changed {
                if let Some(f) = services.get_mut(&name) {
                    shared.update_service(&name, f, store);
                }
            }
        }
        drop(state);
        shared.refresh.notify_one();
    }

    /// Whether this gateway may scale now: it holds the Lease (always true without one).
    pub fn is_leader(&self) -> bool {
        self.shared.lease.is_none() || self.shared.leading()
    }

    /// The cluster this driver works on.
    pub fn cluster(&self) -> &Cluster {
        &self.shared.cluster
    }

    fn abort_all(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
        if let Some(task) = self
            .lease_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
        let mut state = self.shared.lock();
        state.closing = true;
        for f in state.services.values() {
            f.worker.abort();
        }
    }
}

impl Drop for KubeDriver {
    /// Dropped without [`Driver::shutdown`] (a crash, in tests): every task stops at once and
    /// the Lease is not released — another gateway takes over when it expires.
    fn drop(&mut self) {
        let _ = self.shared.stop.send(true);
        self.abort_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply what the watch said, and bring every followed service up to date.
    pub(crate) fn apply(&self, change: StoreChange) {
        let mut state = self.lock();
        if state.closing {
            return;
        }
        match change {
            StoreChange::Replace(store) => {
                state.store = store;
                state.synced = true;
            }
            StoreChange::Upsert(name, slice) => {
                state.store.insert(name, slice);
            }
            StoreChange::Remove(name) => {
                state.store.remove(&name);
            }
        }
        if !state.synced {
            return;
        }
        let State {
            store, services, ..
        } = &mut *state;
        for (name, f) in services.iter_mut() {
            self.update_service(name, f, store);
        }
    }

    /// Recompute one service from the store: events for pods that changed, and the sink
    /// told if the ready set changed. Called under the state lock, so that pushes to the
    /// sink are in the order of the changes.
    fn update_service(&self, name: &str, f: &mut Followed, store: &HashMap<String, Slice>) {
        let view = service_view(f.port, store.values().filter(|s| s.service == name));
        self.pod_events(name, &f.view, &view);
        f.view = view;
        let ready = ready_set(&f.view);
        if f.pushed.as_ref() != Some(&ready) {
            tracing::debug!(service = name, ready = ready.len(), "endpoints changed");
            self.sink.set_endpoints(name, ready.clone());
            f.pushed = Some(ready);
        }
    }

    fn pod_events(&self, service: &str, before: &[PodView], after: &[PodView]) {
        let old: HashMap<&str, &PodView> = before.iter().map(|p| (p.key.as_str(), p)).collect();
        let new: HashMap<&str, ReplicaState> =
            after.iter().map(|p| (p.key.as_str(), p.state)).collect();
        for (index, pod) in after.iter().enumerate() {
            let was = old.get(pod.key.as_str()).map(|p| p.state);
            if was == Some(pod.state) {
                continue;
            }
            let (kind, what) = match (was, pod.state) {
                (_, ReplicaState::Ready) => (EventKind::Ready, "is ready: in the balancer"),
                (None, ReplicaState::Starting) => (EventKind::Started, "is not ready yet"),
                (Some(_), ReplicaState::Starting) => (
                    EventKind::Unready,
                    "is no longer ready: out of the balancer",
                ),
                (_, ReplicaState::Draining) => (
                    EventKind::Draining,
                    "is terminating: no new requests, those in flight finish",
                ),
                _ => continue,
            };
            let node = pod
                .node
                .as_deref()
                .map(|n| format!(" on {n}"))
                .unwrap_or_default();
            self.events.emit(
                service,
                Some(index as u32),
                kind,
                format!("pod {} ({}{node}) {what}", pod.key, pod.addr),
            );
        }
        for pod in before {
            if !new.contains_key(pod.key.as_str()) {
                self.events.emit(
                    service,
                    None,
                    EventKind::Stopped,
                    format!(
                        "pod {} ({}) left the service's endpoints",
                        pod.key, pod.addr
                    ),
                );
            }
        }
    }

    /// The followed services and their latest scale request, for the refresher.
    pub(crate) fn scale_generations(&self) -> Vec<(String, u64)> {
        let state = self.lock();
        state
            .services
            .iter()
            .map(|(name, f)| (name.clone(), f.requested_gen))
            .collect()
    }

    /// The refresher read the Deployment's replicas (None: no such Deployment). Applied only
    /// if no scale was asked for or is in flight since it started reading.
    pub(crate) fn refreshed(&self, service: &str, generation: u64, replicas: Option<u32>) {
        let mut state = self.lock();
        if let Some(f) = state.services.get_mut(service)
            && f.requested_gen == generation
            && f.settled_gen == generation
        {
            f.desired = replicas;
        }
    }

    /// The scale task is done with request `generation`: the Deployment's replicas after a
    /// successful patch, None after a failure (the refresher reads the real count).
    pub(crate) fn scale_settled(&self, service: &str, generation: u64, replicas: Option<u32>) {
        let mut state = self.lock();
        if let Some(f) = state.services.get_mut(service) {
            f.settled_gen = f.settled_gen.max(generation);
            if let Some(n) = replicas
                && f.requested_gen == generation
            {
                f.desired = Some(n);
            }
        }
    }

    /// Whether this gateway holds the Lease now.
    pub(crate) fn leading(&self) -> bool {
        self.leadership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .holds_now()
    }
}

fn service_status(name: &str, f: &Followed) -> ServiceStatus {
    let replicas: Vec<ReplicaStatus> = f
        .view
        .iter()
        .enumerate()
        .map(|(index, p)| ReplicaStatus {
            index: index as u32,
            state: p.state,
            pid: None,
            port: Some(p.addr.port()),
            endpoint: Some(p.endpoint()),
            restarts: 0,
            uptime_secs: 0.0,
            cpu_percent: None,
            rss_bytes: None,
            last_exit: None,
            message: match p.state {
                ReplicaState::Starting => Some("not ready (readiness probe)".to_owned()),
                ReplicaState::Draining => {
                    Some("terminating: finishing requests in flight".to_owned())
                }
                _ => None,
            },
            traffic: None,
            pod: p.pod.as_ref().map(|pod| Pod {
                name: pod.clone(),
                node: p.node.clone(),
                terminating: p.state == ReplicaState::Draining,
            }),
            version: None,
        })
        .collect();
    let ready = replicas
        .iter()
        .filter(|r| r.state == ReplicaState::Ready)
        .count() as u32;
    let live = replicas
        .iter()
        .filter(|r| r.state != ReplicaState::Draining)
        .count() as u32;
    let desired = f.desired.unwrap_or(live);
    let state = if desired == 0 {
        ServiceState::Stopped
    } else if ready >= desired && replicas.iter().all(|r| r.state == ReplicaState::Ready) {
        ServiceState::Running
    } else {
        ServiceState::Progressing
    };
    ServiceStatus {
        name: name.to_owned(),
        desired,
        ready,
        state,
        replicas,
        traffic: None,
        autoscale: None,
        // `shoal k8s render` does not render workers: every followed service is a web one.
        worker: false,
        rollout: None,
    }
}

impl Driver for KubeDriver {
    /// Remember `replicas` as the service's desired count and have its scale task patch
    /// `deployments/{service}/scale`. Failures are `ApiError` events, not errors here.
    fn scale(&self, service: &str, replicas: u32) -> Result<(), DriverError> {
        let mut state = self.shared.lock();
        if state.closing {
            return Err(DriverError::Invalid("shutting down".into()));
        }
        let Some(f) = state.services.get_mut(service) else {
            return Err(DriverError::UnknownService(service.to_owned()));
        };
        f.desired = Some(replicas);
        f.requested_gen += 1;
        f.scale_tx.send_replace(Some((replicas, f.requested_gen)));
        Ok(())
    }

    fn status(&self) -> Vec<ServiceStatus> {
        let state = self.shared.lock();
        state
            .services
            .iter()
            .map(|(name, f)| service_status(name, f))
            .collect()
    }

    /// Stop the watch and the scale tasks, release the Lease if this gateway holds it, and
    /// return. The pods are the cluster's: nothing is stopped there.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.shared.stop.send(true);
            let lease_task = self
                .lease_task
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(mut task) = lease_task
                && tokio::time::timeout(RELEASE_WAIT, &mut task).await.is_err()
            {
                task.abort();
            }
            self.abort_all();
        })
    }

    /// The Deployment owns its rollouts: says which `kubectl` command does this.
    fn rollout_undo(&self, service: &str) -> Result<String, DriverError> {
        Err(kubectl_rollout("undo", service))
    }

    /// As [`rollout_undo`](Driver::rollout_undo).
    fn rollout_restart(&self, service: &str) -> Result<String, DriverError> {
        Err(kubectl_rollout("restart", service))
    }

    /// Only the gateway holding the Lease scales (see [`KubeDriver::is_leader`]).
    fn may_scale(&self) -> bool {
        self.is_leader()
    }
}

/// `shoal rollout undo|restart` in a cluster: the error naming the `kubectl` command to run.
fn kubectl_rollout(verb: &str, service: &str) -> DriverError {
    DriverError::Invalid(format!(
        "in Kubernetes mode the Deployment rolls the pods: run `kubectl rollout \
         {verb} deployment/{service}`"
    ))
}
