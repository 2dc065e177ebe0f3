//! A replicated service as Kubernetes objects: Deployment, ClusterIP Service,
//! PodDisruptionBudget, and (through [`crate::hpa`]) a HorizontalPodAutoscaler.
//!
//! Draining follows shoal's local order. Locally a replica that is stopped first leaves the
//! balancer, then has up to `stop.drain_timeout` to finish its requests, then gets SIGTERM and,
//! `stop.grace` later, SIGKILL. On Kubernetes, deleting a pod starts two things at once: the
//! pod leaves its Service's endpoints (which kube-proxy and shoal's gateway, watching the
//! EndpointSlices, learn of a moment later) and the kubelet runs the container's preStop
//! hook, then sends SIGTERM, then SIGKILL when `terminationGracePeriodSeconds` (counted from
//! the start) is over. A preStop
//! `sleep` of `drain_timeout` keeps the container serving while the endpoint removal spreads
//! and in-flight requests finish; `terminationGracePeriodSeconds = drain_timeout + grace`
//! leaves it `grace` between SIGTERM and SIGKILL, as locally.
use std::time::Duration;

use serde_norway::Value;
use shoal_config::{Amount, Command, Container, Health, Protocol, Rollout, Service};

use crate::explain::{Explain, Section};
use crate::hpa;
use crate::scaling::{self, Owner, Unscaled};
use crate::yaml::{Obj, cpu_quantity, list, memory_quantity, seconds_up, string_map};
use crate::{GATEWAY_NAME, Ingress, Kind, LEASE_NAME, Manifest, Options, RenderError};

/// The shortest liveness probe period, in seconds.
const LIVENESS_MIN_PERIOD_SECS: u64 = 10;

/// The container port's name, which probes and the Service refer to.
pub(crate) const PORT_NAME: &str = "http";

/// Labels of a service's objects and pods.
pub(crate) fn labels(name: &str, component: &str) -> Value {
    string_map([
        ("app.kubernetes.io/name", name),
        ("app.kubernetes.io/part-of", "shoal"),
        ("app.kubernetes.io/component", component),
    ])
}

/// The labels that select a service's pods (a subset of [`labels`]; a Deployment's
/// selector cannot change later).
pub(crate) fn match_labels(name: &str) -> Value {
    string_map([
        ("app.kubernetes.io/name", name),
        ("app.kubernetes.io/part-of", "shoal"),
    ])
}

/// `selector:` of a Deployment or PodDisruptionBudget.
pub(crate) fn selector(name: &str) -> Value {
    Obj::new().with("matchLabels", match_labels(name)).into()
}

pub(crate) fn metadata(name: &str, opts: &Options, component: &str) -> Value {
    Obj::new()
        .with("name", name)
        .with("namespace", opts.namespace.as_str())
        .with("labels", labels(name, component))
        .into()
}

/// A DNS-1123 label: what namespaces and parts of DNS names must be.
pub(crate) fn dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A PodDisruptionBudget letting voluntary disruptions (node drains) take one pod at a time.
pub(crate) fn disruption_budget(name: &str, opts: &Options, component: &str) -> Manifest {
    Manifest::new(
        Kind::PodDisruptionBudget,
        name,
        vec![format!(
            "Node drains and other voluntary evictions take at most one `{name}` pod at a time."
        )],
        metadata(name, opts, component),
        Obj::new()
            .with("maxUnavailable", 1)
            .with("selector", selector(name))
            .into(),
    )
}

/// The Service, Deployment, PodDisruptionBudget and HorizontalPodAutoscaler of a service run
/// as containers, and what became of its fields.
pub(crate) fn render(
    service: &Service,
    command: &Command,
    opts: &Options,
    explain: &mut Explain,
) -> Result<(Vec<Manifest>, Section), RenderError> {
    let name = service.name.as_str();
    let container = service
        .container
        .as_ref()
        .ok_or_else(|| RenderError::NoImage(name.to_owned()))?;
    let mut section = Section::new(format!("service `{name}`"));
    let mut comments = vec![format!("shoal service `{name}`.")];
    let mut objects = Vec::new();

    // Scaling: one owner of the count (see `scaling`).
    let autoscale = command.autoscale.as_ref();
    let owner = Owner::of(command, container, opts.ingress);
    let replicas = owner.replicas();
    let shoal_targets = autoscale.map(scaling::shoal_targets).unwrap_or_default();
    let shoal_names = scaling::names(&shoal_targets);
    match (&owner, autoscale) {
        (Owner::Replicas(n), _) => section.row(
            format!("replicas: {n}"),
            format!("Deployment {name}: spec.replicas {n}"),
        ),
        (Owner::Hpa(_), Some(a)) => {
            section.row(
                format!("autoscale.min: {}", a.policy.min),
                format!(
                    "Deployment {name}: no spec.replicas (the HorizontalPodAutoscaler owns the count; a fixed count would reset it on every `kubectl apply`)"
                ),
            );
            if !shoal_targets.is_empty() {
                let text = match opts.ingress {
                    Ingress::Shoal => format!(
                        "autoscale targets {shoal_names} are not acted on: the HorizontalPodAutoscaler owns `{name}`'s count (its cpu/memory targets), and shoal's autoscaler never scales a Deployment that HPA scales (the two would undo each other's changes). Drop the cpu/memory targets to let shoal's autoscaler scale on {shoal_names}."
                    ),
                    Ingress::Traefik => format!(
                        "autoscale targets {shoal_names} are not acted on: the HorizontalPodAutoscaler scales `{name}` on its cpu/memory targets only (HPA cannot read {shoal_names}, and `--ingress traefik` has no shoal gateway to measure them)."
                    ),
                };
                comments.push(text.clone());
                section.row(
                    format!("autoscale: {shoal_names}"),
                    "not acted on (HPA owns the count)",
                );
                explain.warn(format!("service `{name}`: {text}"));
            }
        }
        (Owner::Shoal, Some(a)) => {
            let text = format!(
                "Scaled by shoal's in-cluster autoscaler on {shoal_names} (min {}, max {}): the gateway pod holding the Lease `{LEASE_NAME}` sets deployments/{name}/scale. No spec.replicas, so that `kubectl apply` does not reset the count it chose; Kubernetes creates the Deployment with 1 pod and the autoscaler takes it from there.",
                a.policy.min, a.policy.max
            );
            comments.push(text);
            section.row(
                format!("autoscale: {shoal_names}"),
                format!(
                    "shoal's in-cluster autoscaler (the gateway pod holding Lease {LEASE_NAME}): deployments/{name}/scale within min {}..max {}; ConfigMap {GATEWAY_NAME}: `autoscale` kept",
                    a.policy.min, a.policy.max
                ),
            );
            section.row(
                format!("replicas: {}", command.replicas),
                format!(
                    "Deployment {name}: no spec.replicas (shoal's autoscaler owns the count; a fixed count would reset it on every `kubectl apply`)"
                ),
            );
        }
        (Owner::Nobody(n, why), Some(_)) => {
            let text = match why {
                Unscaled::NoGateway => format!(
                    "NOT AUTOSCALED: autoscale targets {shoal_names} are measured by shoal's gateway, which `--ingress traefik` leaves out, and HPA cannot read them. `{name}` stays at {n} pods (its starting count) until you scale it (`kubectl scale deployment/{name}`), give it a cpu or memory target, or render without `--ingress traefik`."
                ),
                Unscaled::Backlog => format!(
                    "NOT AUTOSCALED: `shoal k8s render` does not carry autoscale.backlog to the cluster yet (the gateway's stack file has no queue to read), and HPA cannot read it. `{name}` stays at {n} pods (its starting count) until you scale it (`kubectl scale deployment/{name}`) or give it a scaler that reads the queue (KEDA's queue scalers read the same brokers)."
                ),
            };
            comments.push(text.clone());
            section.row(
                format!("autoscale: {shoal_names}"),
                match why {
                    Unscaled::NoGateway => {
                        "nothing scales it (no shoal gateway; HPA cannot read these targets)"
                    }
                    Unscaled::Backlog => {
                        "nothing scales it (the backlog target is not carried to the cluster; HPA cannot read it)"
                    }
                },
            );
            section.row(
                format!("replicas: {}", command.replicas),
                format!("Deployment {name}: spec.replicas {n} (the starting count, for good)"),
            );
            explain.warn(format!("service `{name}`: {text}"));
        }
        (Owner::Hpa(_) | Owner::Shoal | Owner::Nobody(..), None) => {}
    }
    if let Some(a) = autoscale
        && a.policy.min == 0
        && !matches!(owner, Owner::Shoal)
    {
        section.note(format!(
            "autoscale.min 0 (scale to zero) needs shoal's autoscaler; `{name}` keeps at least one pod"
        ));
    }

    // The container.
    let port = container.port;
    let mut env: Vec<Value> = vec![
        env_var(&command.port_env, &port.to_string()),
        env_var("SHOAL_SERVICE", name),
    ];
    for (k, v) in &command.env {
        if k != &command.port_env && k != "SHOAL_SERVICE" {
            env.push(env_var(k, v));
        }
    }
    section.row(
        format!("image, args, port: {port}"),
        format!(
            "Deployment {name}: container `{name}` image, args, containerPort {port} (named `{PORT_NAME}`)"
        ),
    );
    section.row(
        format!("env, port_env: {}", command.port_env),
        format!(
            "Deployment {name}: env ({}={port}, SHOAL_SERVICE={name}, then `env`)",
            command.port_env
        ),
    );
    explain.not_carried(
        "replica_env (SHOAL_REPLICA): a Deployment's pods have no stable index (a StatefulSet would); pods have their own names",
    );

    let plan = match &owner {
        Owner::Hpa(plan) => Some(plan),
        _ => None,
    };
    let resources = resources(name, container, plan, &mut section, &mut comments);

    let mut c = Obj::new()
        .with("name", name)
        .with("image", container.image.as_str())
        .with_nonempty("args", list(container.args.iter().map(String::as_str)))
        .with(
            "ports",
            list([Obj::new()
                .with("name", PORT_NAME)
                .with("containerPort", port)
                .with("protocol", "TCP")]),
        )
        .with("env", list(env))
        .with_nonempty("resources", resources);

    let probes = probes(&service.health);
    match &probes {
        Some(p) => {
            section.row(
                format!("health: {}", describe_health(&service.health)),
                p.explained.clone(),
            );
            if service.health.expect_status != Health::default().expect_status {
                section.note(
                    "health.expect_status is not carried: Kubernetes' httpGet probes pass on any status from 200 to 399",
                );
            }
            c = c
                .with("startupProbe", p.startup.clone())
                .with("readinessProbe", p.readiness.clone())
                .with("livenessProbe", p.liveness.clone());
        }
        None => section.row(
            "health: false",
            format!("Deployment {name}: no probes (a pod is ready once its container runs)"),
        ),
    }
    explain.not_carried("health.fast_interval: a Kubernetes probe has one period");

    let drain = seconds_up(command.stop.drain_timeout, 0);
    let grace = seconds_up(command.stop.grace, 0);
    if drain > 0 {
        c = c.with(
            "lifecycle",
            Obj::new().with(
                "preStop",
                Obj::new().with("sleep", Obj::new().with("seconds", drain)),
            ),
        );
    }
    section.row(
        format!(
            "stop: drain_timeout {}, grace {}",
            crate::yaml::duration(command.stop.drain_timeout),
            crate::yaml::duration(command.stop.grace)
        ),
        format!(
            "Deployment {name}: preStop sleep {drain}s, terminationGracePeriodSeconds {}",
            drain + grace
        ),
    );
    comments.push(format!(
        "Draining as `shoal up` does: on deletion the pod leaves the Service's endpoints while the preStop sleep ({drain}s = stop.drain_timeout) keeps it serving in-flight and late-routed requests; then SIGTERM, and SIGKILL after stop.grace: terminationGracePeriodSeconds = {drain} + {grace}."
    ));

    let pod_spec = Obj::new()
        .with("terminationGracePeriodSeconds", drain + grace)
        .with("containers", list([c]));
    let template = Obj::new()
        .with(
            "metadata",
            Obj::new().with("labels", labels(name, "service")),
        )
        .with("spec", pod_spec);
    let (strategy, deadline) = rollout(&command.rollout);
    section.row(
        format!(
            "rollout: max_surge {}, max_unavailable {}, progress_deadline {}",
            amount_text(command.rollout.max_surge),
            amount_text(command.rollout.max_unavailable),
            crate::yaml::duration(command.rollout.progress_deadline)
        ),
        format!(
            "Deployment {name}: strategy RollingUpdate (maxSurge {}, maxUnavailable {}), progressDeadlineSeconds {deadline}",
            amount_text(command.rollout.max_surge),
            amount_text(command.rollout.max_unavailable),
        ),
    );
    explain.not_carried(
        "rollout.progress_deadline's automatic rollback: past progressDeadlineSeconds Kubernetes marks the rollout failed (`kubectl rollout status` exits non-zero) but keeps it; `kubectl rollout undo` goes back",
    );
    if command.version.is_some() {
        explain.not_carried(
            "version: a label of `shoal up`'s replicas; on Kubernetes a new image or spec makes a new ReplicaSet (`kubectl rollout history`)",
        );
    }
    let spec = Obj::new()
        .with_opt("replicas", replicas)
        .with("selector", selector(name))
        .with("strategy", strategy)
        .with("progressDeadlineSeconds", deadline)
        .with("template", template);

    let mut svc_port = Obj::new()
        .with("name", PORT_NAME)
        .with("port", port)
        .with("targetPort", PORT_NAME)
        .with("protocol", "TCP");
    if service.protocol == Protocol::H2c {
        svc_port = svc_port.with("appProtocol", "kubernetes.io/h2c");
    }
    let service_comment = match opts.ingress {
        Ingress::Shoal => format!(
            "Service `{name}`: its EndpointSlices tell shoal's gateway which pods are ready, and the gateway balances over those pods itself (per request); its cluster address serves other clients in the cluster."
        ),
        Ingress::Traefik => format!(
            "Service `{name}`: Traefik reads its endpoints and balances over the ready pods; its cluster address serves other clients in the cluster."
        ),
    };
    objects.push(Manifest::new(
        Kind::Service,
        name,
        vec![service_comment],
        metadata(name, opts, "service"),
        Obj::new()
            .with("type", "ClusterIP")
            .with("selector", match_labels(name))
            .with("ports", list([svc_port]))
            .into(),
    ));
    section.row(
        "(the service itself)",
        format!(
            "Service {name}: ClusterIP, port {port} → {PORT_NAME}{}",
            if service.protocol == Protocol::H2c {
                " (appProtocol kubernetes.io/h2c)"
            } else {
                ""
            }
        ),
    );
    objects.push(Manifest::new(
        Kind::Deployment,
        name,
        comments,
        metadata(name, opts, "service"),
        spec.into(),
    ));
    // A budget once the service can have two pods: its count, or an autoscaler's max.
    let (most, why) = match (replicas, autoscale) {
        (Some(n), _) => (n, format!("{n} replicas")),
        (None, Some(a)) => (a.policy.max, format!("up to {} replicas", a.policy.max)),
        (None, None) => (0, String::new()),
    };
    if most >= 2 {
        objects.push(disruption_budget(name, opts, "service"));
        section.row(why, format!("PodDisruptionBudget {name}: maxUnavailable 1"));
    }
    if let (Some(a), Some(plan)) = (autoscale, plan) {
        if let (Some(cpu), Some(limit)) = (&plan.cpu, container.resources.limits.cpu_millis)
            && cpu.target_millis() >= limit as f64
        {
            explain.warn(format!(
                "service `{name}`: the cpu target ({}m per pod) is not below the cpu limit ({}): the HorizontalPodAutoscaler will never scale it up on cpu",
                cpu.target_millis().round(),
                cpu_quantity(limit)
            ));
        }
        explain.not_carried(
            "autoscale.tolerance: HPA's tolerance is cluster-wide (10% unless the cluster sets --horizontal-pod-autoscaler-tolerance)",
        );
        explain.not_carried(
            "autoscale.tick: HPA decides once per sync period, cluster-wide (15s by default)",
        );
        explain.not_carried(
            "autoscale.panic: HPA has no panic mode; a burst is followed at the pace of the scale-up policies",
        );
        explain.not_carried(
            "autoscale.warm_up: HPA's equivalent is cluster-wide (--horizontal-pod-autoscaler-cpu-initialization-period, 5 minutes by default)",
        );
        explain.not_carried(
            "autoscale.min 0, scale_to_zero_after, hold: HPA does not scale to zero; minReplicas is at least 1",
        );
        let (hpa, rows) = hpa::render(name, a, plan, opts);
        for (k, v) in rows {
            section.row(k, v);
        }
        objects.push(hpa);
    }
    Ok((objects, section))
}

/// `rollout:` as a Deployment's `strategy` (RollingUpdate: the same vocabulary) and its
/// `progressDeadlineSeconds` (whole seconds, rounded up).
fn rollout(r: &Rollout) -> (Value, u64) {
    let amount = |a: Amount| -> Value {
        match a {
            Amount::Count(n) => n.into(),
            Amount::Percent(p) => format!("{p}%").into(),
        }
    };
    let strategy = Obj::new().with("type", "RollingUpdate").with(
        "rollingUpdate",
        Obj::new()
            .with("maxSurge", amount(r.max_surge))
            .with("maxUnavailable", amount(r.max_unavailable)),
    );
    (strategy.into(), seconds_up(r.progress_deadline, 1))
}

/// `2` or `25%`, as written in the stack file.
fn amount_text(a: Amount) -> String {
    match a {
        Amount::Count(n) => n.to_string(),
        Amount::Percent(p) => format!("{p}%"),
    }
}

fn env_var(name: &str, value: &str) -> Value {
    Obj::new().with("name", name).with("value", value).into()
}

/// `resources:` of the container: the service's requests and limits, and the cpu request
/// HPA's utilisation needs when the service gives none.
fn resources(
    name: &str,
    container: &Container,
    plan: Option<&hpa::Plan>,
    section: &mut Section,
    comments: &mut Vec<String>,
) -> Value {
    let r = &container.resources;
    let mut requests = Obj::new();
    let cpu_request = match plan.and_then(|p| p.cpu.as_ref()) {
        Some(cpu) if r.requests.cpu_millis.is_none() => {
            let why = format!(
                "resources.requests.cpu {} comes from {} (HPA's cpu utilisation is relative to the pod's cpu request, and `{name}` sets none).",
                cpu_quantity(cpu.request_millis),
                cpu.request_from
            );
            comments.push(why.clone());
            section.note(why);
            Some(cpu.request_millis)
        }
        _ => r.requests.cpu_millis,
    };
    if let Some(m) = cpu_request {
        requests = requests.with("cpu", cpu_quantity(m));
    }
    if let Some(b) = r.requests.memory_bytes {
        requests = requests.with("memory", memory_quantity(b));
    }
    let mut limits = Obj::new();
    if let Some(m) = r.limits.cpu_millis {
        limits = limits.with("cpu", cpu_quantity(m));
    }
    if let Some(b) = r.limits.memory_bytes {
        limits = limits.with("memory", memory_quantity(b));
    }
    if !requests.is_empty() || !limits.is_empty() {
        section.row(
            "resources",
            format!("Deployment {name}: resources.requests / resources.limits"),
        );
    }
    Obj::new()
        .with_nonempty("requests", requests)
        .with_nonempty("limits", limits)
        .into()
}

/// The three probes of a container with health checks on.
struct Probes {
    startup: Value,
    readiness: Value,
    liveness: Value,
    explained: String,
}

fn describe_health(h: &Health) -> String {
    let what = match &h.path {
        Some(p) => format!("GET {p}"),
        None => "TCP connect".to_owned(),
    };
    format!(
        "{what} every {}, timeout {}, rise {}, fall {}",
        crate::yaml::duration(h.interval),
        crate::yaml::duration(h.timeout),
        h.healthy_threshold,
        h.unhealthy_threshold
    )
}

/// Probes from `health:`. Readiness mirrors shoal's rise/fall: a pod serves after
/// `healthy_threshold` passes and leaves the endpoints after `unhealthy_threshold` failures.
/// `shoal up` never restarts a replica for failing checks (it only takes it out of
/// rotation), but Kubernetes' liveness probe restarts the container, so it is tolerant: at
/// least every 10 s, and three times as many failures (at least 3), so that a pod that is
/// merely busy leaves rotation long before it is killed. The startup probe gives a pod
/// `start_timeout` to pass its first check, as `shoal up` does.
fn probes(h: &Health) -> Option<Probes> {
    if !h.enabled {
        return None;
    }
    let handler = |o: Obj| match &h.path {
        Some(path) => o.with(
            "httpGet",
            Obj::new()
                .with("path", path.as_str())
                .with("port", PORT_NAME),
        ),
        None => o.with("tcpSocket", Obj::new().with("port", PORT_NAME)),
    };
    let period = seconds_up(h.interval, 1);
    let timeout = seconds_up(h.timeout, 1);
    let start = seconds_up(h.start_timeout.max(h.start_period), 1);
    let live_period = period.max(LIVENESS_MIN_PERIOD_SECS);
    let live_failures = (h.unhealthy_threshold.saturating_mul(3)).max(3);
    let startup = handler(Obj::new())
        .with("periodSeconds", 1)
        .with("timeoutSeconds", timeout)
        .with("failureThreshold", start);
    let readiness = handler(Obj::new())
        .with("periodSeconds", period)
        .with("timeoutSeconds", timeout)
        .with("successThreshold", h.healthy_threshold.max(1))
        .with("failureThreshold", h.unhealthy_threshold.max(1));
    let liveness = handler(Obj::new())
        .with("periodSeconds", live_period)
        .with("timeoutSeconds", timeout)
        .with("failureThreshold", live_failures);
    let kind = if h.path.is_some() {
        "httpGet"
    } else {
        "tcpSocket"
    };
    Some(Probes {
        startup: startup.into(),
        readiness: readiness.into(),
        liveness: liveness.into(),
        explained: format!(
            "{kind} probes: readiness every {period}s, timeout {timeout}s, success {}, failure {}; liveness every {live_period}s, failure {live_failures}; startup every 1s up to {start}s (start_timeout)",
            h.healthy_threshold.max(1),
            h.unhealthy_threshold.max(1)
        ),
    })
}

/// Seconds as Kubernetes counts them, for explanations.
pub(crate) fn secs(d: Duration) -> u64 {
    seconds_up(d, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(dns_label("default"));
        assert!(dns_label("team-a2"));
        assert!(!dns_label("Team"));
        assert!(!dns_label("-a"));
        assert!(!dns_label("a-"));
        assert!(!dns_label(""));
        assert!(!dns_label(&"a".repeat(64)));
    }

    #[test]
    fn probes_round_up_and_liveness_is_more_tolerant() {
        let h = Health {
            path: Some("/health".into()),
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(1500),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            ..Health::default()
        };
        let p = probes(&h).unwrap();
        let r = &p.readiness;
        assert_eq!(r["periodSeconds"], 1);
        assert_eq!(r["timeoutSeconds"], 2);
        assert_eq!(r["successThreshold"], 2);
        assert_eq!(r["failureThreshold"], 3);
        assert_eq!(r["httpGet"]["path"], "/health");
        assert_eq!(p.liveness["failureThreshold"], 9);
        assert_eq!(p.liveness["periodSeconds"], 10);
        assert!(p.liveness.get("successThreshold").is_none());
        assert_eq!(p.startup["failureThreshold"], 60);

        let tcp = probes(&Health::default()).unwrap();
        assert_eq!(tcp.readiness["tcpSocket"]["port"], PORT_NAME);
        assert_eq!(tcp.liveness["failureThreshold"], 6);
        assert!(
            probes(&Health {
                enabled: false,
                ..Health::default()
            })
            .is_none()
        );
    }
}
