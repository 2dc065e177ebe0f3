//! Which driver makes the replicas exist: the supervisor (local processes, `shoal up`) or
//! Kubernetes (pods, `shoal up --discovery kubernetes`).
//!
//! The rest of the wiring (admin API, autoscaler, shutdown) asks this enum, never a driver
//! directly, so both modes share every other line. Every driver operation (status, scale,
//! rollouts, whether this shoal may scale now, shutdown) goes through the
//! [`Driver`](shoal_core::Driver) trait both implement; the enum only says which one runs and
//! keeps what is not a driver operation: how a new stack is handed to the driver (each takes
//! its own spec type) and whether scale requests are remembered across restarts (locally, in
//! the state file; on Kubernetes the Deployment itself remembers).
use std::sync::Arc;

use shoal_config::{Source, Stack};
use shoal_core::{Driver, DriverError, ServiceStatus};
use shoal_k8s::cluster::{KubeDriver, KubeService};
use shoal_supervise::Supervisor;

use crate::control::AppControl;

/// The driver behind a running shoal.
pub(crate) enum Replicas {
    /// Local processes.
    Local(Arc<Supervisor>),
    /// Pods of Deployments, found through EndpointSlices.
    Kubernetes(Arc<KubeDriver>),
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Replicas::Local(_) => "Replicas::Local",
            Replicas::Kubernetes(_) => "Replicas::Kubernetes",
        })
    }
}

impl Replicas {
    fn driver(&self) -> &dyn Driver {
        match self {
            Replicas::Local(s) => &**s,
            Replicas::Kubernetes(k) => &**k,
        }
    }

    /// Every service the driver manages, sorted by name.
    pub(crate) fn status(&self) -> Vec<ServiceStatus> {
        self.driver().status()
    }

    /// Ask for `replicas` of `service`.
    pub(crate) fn scale(&self, service: &str, replicas: u32) -> Result<(), DriverError> {
        self.driver().scale(service, replicas)
    }

    /// Ask for `replicas` of `service` with `event` as the change's one `scaled` event (the
    /// autoscaler's reason). The supervisor logs it in place of its own `before -> after`;
    /// in a cluster the change is the Deployment's, so it is logged here.
    pub(crate) fn scale_announced(
        &self,
        events: &shoal_core::EventLog,
        service: &str,
        replicas: u32,
        event: String,
    ) -> Result<(), DriverError> {
        match self {
            Replicas::Local(supervisor) => supervisor.scale_announced(service, replicas, &event),
            Replicas::Kubernetes(driver) => {
                driver.scale(service, replicas)?;
                events.emit(service, None, shoal_core::EventKind::Scaled, event);
                Ok(())
            }
        }
    }

    /// `shoal rollout undo|restart`: locally, the supervisor rolls the replicas; in a cluster
    /// the Deployment owns its rollouts (the driver says which `kubectl` command to run).
    pub(crate) fn rollout(
        &self,
        service: &str,
        action: shoal_admin::RolloutAction,
    ) -> Result<String, DriverError> {
        match action {
            shoal_admin::RolloutAction::Undo => self.driver().rollout_undo(service),
            shoal_admin::RolloutAction::Restart => self.driver().rollout_restart(service),
        }
    }

    /// Stop managing replicas: locally drain and stop every process; on Kubernetes stop
    /// watching and give up the Lease (the pods are the cluster's).
    pub(crate) fn shutdown(&self) -> shoal_core::BoxFuture<'_, ()> {
        self.driver().shutdown()
    }

    /// Whether a `shoal scale` is saved in the state file to outlive this process (locally);
    /// on Kubernetes the Deployment's replica count keeps it.
    pub(crate) fn saves_scale_state(&self) -> bool {
        matches!(self, Replicas::Local(_))
    }

    /// Whether this shoal applies its autoscaler's decisions now. In a cluster several
    /// gateways measure and decide, and only the one holding the Lease scales.
    pub(crate) fn may_autoscale(&self) -> bool {
        self.driver().may_scale()
    }

    /// Hand a newly applied stack to the driver.
    pub(crate) fn apply(&self, control: &AppControl, stack: &Stack) {
        match self {
            Replicas::Local(supervisor) => {
                // At once, not on a task: when a reload answers, its rollouts have started
                // (a `shoal rollout status` right after sees them).
                supervisor.apply_now(control.specs(stack));
            }
            Replicas::Kubernetes(driver) => driver.set_services(kube_services(stack)),
        }
    }
}

/// The services whose pods the gateway follows: every service with an image. Their
/// EndpointSlices carry the container port.
fn kube_services(stack: &Stack) -> Vec<KubeService> {
    stack
        .services
        .iter()
        .filter_map(|s| match (&s.source, &s.container) {
            (Source::Command(_), Some(container)) => Some(KubeService {
                name: s.name.clone(),
                port: container.port,
            }),
            _ => None,
        })
        .collect()
}
