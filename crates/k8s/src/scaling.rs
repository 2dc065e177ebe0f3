//! Who sets a Deployment's replica count. Exactly one owner per Deployment: two controllers
//! writing `spec.replicas` undo each other's changes (HPA and shoal's autoscaler would take
//! turns), and a count in the manifest is reset by every `kubectl apply`, so a Deployment whose
//! count an autoscaler owns has no `spec.replicas` at all (the Kubernetes documentation's
//! advice for HPA).
//!
//! - no `autoscale`: the manifest (`spec.replicas` = `replicas`);
//! - a `cpu` or `memory` target: a HorizontalPodAutoscaler, for those targets. Targets HPA
//!   cannot read on the same service are then not acted on (and the render warns);
//! - only targets HPA cannot read (`concurrency`, `rps`, `latency_p95`): shoal's in-cluster
//!   autoscaler, in the gateway pod that holds the Lease, through `deployments/NAME/scale`.
//!   The gateway's stack file keeps `autoscale` for exactly these services, and its Role may
//!   scale exactly these Deployments;
//! - the same under `--ingress traefik`: nobody (there is no shoal gateway to measure them);
//!   the Deployment keeps its starting count and the render says so loudly;
//! - a `backlog` target (and no cpu/memory one): nobody either, for now. The gateway's stack
//!   file does not carry a queue (its broker address and password source would have to be
//!   reachable from the gateway's pods), so shoal's scaler in the cluster could not read it,
//!   and scaling on the other targets alone would under-provision the consumer.
use shoal_autoscale::Target;
use shoal_config::{Autoscale, Command, Container};

use crate::Ingress;
use crate::hpa;

/// The owner of one Deployment's replica count.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Owner {
    /// No autoscale: `spec.replicas`.
    Replicas(u32),
    /// A HorizontalPodAutoscaler for the cpu/memory targets.
    Hpa(hpa::Plan),
    /// shoal's in-cluster autoscaler.
    Shoal,
    /// Targets only shoal can act on, and it cannot here: `spec.replicas` stays at the
    /// starting count.
    Nobody(u32, Unscaled),
}

/// Why nothing scales a service that asks to be autoscaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unscaled {
    /// `--ingress traefik`: no shoal gateway to measure concurrency, rps or latency.
    NoGateway,
    /// A `backlog` target: the render does not give the gateway the queue to read.
    Backlog,
}

impl Owner {
    /// The owner of a replicated service's count.
    pub(crate) fn of(command: &Command, container: &Container, ingress: Ingress) -> Owner {
        let Some(a) = &command.autoscale else {
            return Owner::Replicas(command.replicas);
        };
        let starting = command.replicas.max(1);
        match hpa::plan(a, container) {
            Some(plan) => Owner::Hpa(plan),
            None if a
                .policy
                .targets
                .iter()
                .any(|t| matches!(t, Target::Backlog(_))) =>
            {
                Owner::Nobody(starting, Unscaled::Backlog)
            }
            None if ingress == Ingress::Shoal => Owner::Shoal,
            None => Owner::Nobody(starting, Unscaled::NoGateway),
        }
    }

    /// `spec.replicas` of the Deployment; None when an autoscaler owns it.
    pub(crate) fn replicas(&self) -> Option<u32> {
        match self {
            Owner::Replicas(n) | Owner::Nobody(n, _) => Some(*n),
            Owner::Hpa(_) | Owner::Shoal => None,
        }
    }
}

/// The targets of `a` that HPA cannot read: concurrency, rps, latency_p95, backlog.
pub(crate) fn shoal_targets(a: &Autoscale) -> Vec<&Target> {
    a.policy
        .targets
        .iter()
        .filter(|t| !matches!(t, Target::Cpu(_) | Target::Memory(_)))
        .collect()
}

/// Target names joined for a sentence: `concurrency, rps`.
pub(crate) fn names(targets: &[&Target]) -> String {
    targets
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use shoal_config::{Runtime, Source};

    use super::*;

    fn owner(autoscale: &str, ingress: Ingress) -> Owner {
        let stack = shoal_config::parse_for(
            &format!(
                "services:\n  web:\n    image: x:1\n    replicas: 3\n{autoscale}routes:\n  - match: PathPrefix(`/`)\n    service: web\n"
            ),
            "f",
            Runtime::Kubernetes,
        )
        .unwrap();
        let s = &stack.services[0];
        let Source::Command(c) = &s.source else {
            panic!()
        };
        Owner::of(c, s.container.as_ref().unwrap(), ingress)
    }

    #[test]
    fn one_owner_per_deployment() {
        assert_eq!(owner("", Ingress::Shoal), Owner::Replicas(3));
        assert_eq!(
            owner("    autoscale: { max: 5, rps: 10 }\n", Ingress::Shoal),
            Owner::Shoal
        );
        assert_eq!(
            owner("    autoscale: { max: 5, rps: 10 }\n", Ingress::Traefik),
            Owner::Nobody(3, Unscaled::NoGateway)
        );
        // A queue the render does not carry to the cluster: nobody, in both modes.
        let backlog = "    autoscale: { max: 5, rps: 10, backlog: { redis: { url: 'redis://q:6379', stream: s, group: g } } }\n";
        for ingress in [Ingress::Shoal, Ingress::Traefik] {
            assert_eq!(owner(backlog, ingress), Owner::Nobody(3, Unscaled::Backlog));
        }
        // A cpu target makes HPA the owner, whatever else the service scales on.
        for ingress in [Ingress::Shoal, Ingress::Traefik] {
            let o = owner("    autoscale: { max: 5, cpu: 50%, rps: 10 }\n", ingress);
            assert!(matches!(o, Owner::Hpa(_)), "{o:?}");
            assert_eq!(o.replicas(), None);
        }
    }
}
