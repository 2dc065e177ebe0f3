//! EndpointSlices read into what the gateway needs: per service, its pods and which of them
//! take requests. Pure: no I/O.
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use shoal_core::{Endpoint, ReplicaState};

/// The label the EndpointSlice controller puts on a Service's slices.
pub(crate) const SERVICE_LABEL: &str = "kubernetes.io/service-name";

/// One EndpointSlice, reduced to what is used.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Slice {
    /// The Service it belongs to (its `kubernetes.io/service-name` label).
    pub(crate) service: String,
    /// Its ports (numbers only).
    pub(crate) ports: Vec<u16>,
    /// Its endpoints.
    pub(crate) endpoints: Vec<SliceEndpoint>,
}

/// One endpoint of a slice.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SliceEndpoint {
    /// The first address, if it is an IP (FQDN slices are not used).
    pub(crate) ip: Option<IpAddr>,
    /// `targetRef.name`: the pod.
    pub(crate) pod: Option<String>,
    /// `nodeName`.
    pub(crate) node: Option<String>,
    /// `conditions.ready`, absent read as true.
    pub(crate) ready: bool,
    /// `conditions.terminating`, absent read as false.
    pub(crate) terminating: bool,
}

impl Slice {
    /// Read a slice; `None` when it has no service label (not a Service's slice).
    pub(crate) fn read(object: &EndpointSlice) -> Option<Slice> {
        let service = object.metadata.labels.as_ref()?.get(SERVICE_LABEL)?.clone();
        let ports = object
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.port.and_then(|n| u16::try_from(n).ok()))
            .collect();
        let endpoints = object
            .endpoints
            .iter()
            .flatten()
            .map(|e| {
                let conditions = e.conditions.clone().unwrap_or_default();
                SliceEndpoint {
                    ip: e.addresses.first().and_then(|a| a.parse().ok()),
                    pod: e.target_ref.as_ref().and_then(|r| r.name.clone()),
                    node: e.node_name.clone(),
                    ready: conditions.ready.unwrap_or(true),
                    terminating: conditions.terminating.unwrap_or(false),
                }
            })
            .collect();
        Some(Slice {
            service,
            ports,
            endpoints,
        })
    }

    /// The port to use for `container_port`: the equal one, else the only one.
    fn port_for(&self, container_port: u16) -> Option<u16> {
        if self.ports.contains(&container_port) {
            Some(container_port)
        } else if let [only] = self.ports[..] {
            Some(only)
        } else {
            None
        }
    }
}

/// A pod of a service, as its slices describe it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PodView {
    /// The endpoint key: the pod's name, else `ip:port`.
    pub(crate) key: String,
    /// Where to send requests.
    pub(crate) addr: SocketAddr,
    /// The pod's name, when the slice names it.
    pub(crate) pod: Option<String>,
    /// The node it runs on.
    pub(crate) node: Option<String>,
    /// Ready (takes requests), Starting (not ready yet) or Draining (terminating).
    pub(crate) state: ReplicaState,
}

impl PodView {
    /// The endpoint as the gateway knows it.
    pub(crate) fn endpoint(&self) -> Endpoint {
        Endpoint {
            key: self.key.clone(),
            addr: self.addr,
        }
    }
}

/// The union of `slices`' endpoints for a service on `container_port`, one per pod, ordered
/// by key. A pod listed twice (while slices are rebalanced) counts once, in its best state.
pub(crate) fn service_view<'a>(
    container_port: u16,
    slices: impl IntoIterator<Item = &'a Slice>,
) -> Vec<PodView> {
    let mut pods: BTreeMap<String, PodView> = BTreeMap::new();
    for slice in slices {
        let Some(port) = slice.port_for(container_port) else {
            continue;
        };
        for e in &slice.endpoints {
            let Some(ip) = e.ip else { continue };
            let addr = SocketAddr::new(ip, port);
            let key = e.pod.clone().unwrap_or_else(|| addr.to_string());
            let state = if e.terminating {
                ReplicaState::Draining
            } else if e.ready {
                ReplicaState::Ready
            } else {
                ReplicaState::Starting
            };
            let view = PodView {
                key: key.clone(),
                addr,
                pod: e.pod.clone(),
                node: e.node.clone(),
                state,
            };
            match pods.get(&key) {
                Some(seen) if rank(seen.state) >= rank(state) => {}
                _ => {
                    pods.insert(key, view);
                }
            }
        }
    }
    pods.into_values().collect()
}

fn rank(state: ReplicaState) -> u8 {
    match state {
        ReplicaState::Ready => 2,
        ReplicaState::Starting => 1,
        _ => 0,
    }
}

/// The endpoints that take new requests: ready and not terminating, ordered by key.
pub(crate) fn ready_set(view: &[PodView]) -> Vec<Endpoint> {
    view.iter()
        .filter(|p| p.state == ReplicaState::Ready)
        .map(PodView::endpoint)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(json: serde_json::Value) -> Slice {
        let object: EndpointSlice = serde_json::from_value(json).unwrap();
        Slice::read(&object).unwrap()
    }

    fn users_slice() -> Slice {
        slice(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "users-abc", "labels": {"kubernetes.io/service-name": "users"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.0.0.2"], "conditions": {"ready": true},
                 "targetRef": {"kind": "Pod", "name": "users-b"}, "nodeName": "n1"},
                {"addresses": ["10.0.0.1"], "conditions": {},
                 "targetRef": {"kind": "Pod", "name": "users-a"}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false, "serving": true, "terminating": true},
                 "targetRef": {"kind": "Pod", "name": "users-c"}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": false},
                 "targetRef": {"kind": "Pod", "name": "users-d"}},
                {"addresses": ["10.0.0.5"]}
            ]
        }))
    }

    #[test]
    fn ready_absent_counts_as_ready_and_terminating_ones_take_no_requests() {
        let view = service_view(8080, [&users_slice()]);
        let states: Vec<(&str, ReplicaState)> =
            view.iter().map(|p| (p.key.as_str(), p.state)).collect();
        assert_eq!(
            states,
            [
                ("10.0.0.5:8080", ReplicaState::Ready),
                ("users-a", ReplicaState::Ready),
                ("users-b", ReplicaState::Ready),
                ("users-c", ReplicaState::Draining),
                ("users-d", ReplicaState::Starting),
            ]
        );
        let ready: Vec<String> = ready_set(&view).into_iter().map(|e| e.key).collect();
        assert_eq!(ready, ["10.0.0.5:8080", "users-a", "users-b"]);
        assert_eq!(view[2].node.as_deref(), Some("n1"));
        assert_eq!(view[2].addr, "10.0.0.2:8080".parse().unwrap());
    }

    #[test]
    fn the_port_equal_to_the_container_port_or_the_only_port() {
        let mut s = users_slice();
        assert_eq!(s.port_for(9000), Some(8080), "the only port");
        s.ports = vec![9090, 8080];
        assert_eq!(s.port_for(8080), Some(8080));
        assert_eq!(s.port_for(7000), None, "several ports, none equal");
        assert!(service_view(7000, [&s]).is_empty());
    }

    #[test]
    fn a_pod_in_two_slices_counts_once_in_its_best_state() {
        let a = users_slice();
        let mut b = users_slice();
        for e in &mut b.endpoints {
            e.ready = true;
            e.terminating = false;
        }
        let view = service_view(8080, [&a, &b]);
        assert_eq!(view.len(), 5);
        assert!(view.iter().all(|p| p.state == ReplicaState::Ready));
    }

    #[test]
    fn slices_without_the_service_label_are_not_read() {
        let object: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "x"}, "addressType": "IPv4", "endpoints": []
        }))
        .unwrap();
        assert!(Slice::read(&object).is_none());
    }
}
