//! `autoscale:` as an `autoscaling/v2` HorizontalPodAutoscaler, for the targets HPA can read
//! (cpu and memory, from the metrics API). `behavior` mirrors shoal's stabilization windows
//! and rate policies field for field; what HPA has no per-object field for (tolerance, panic
//! mode, warm-up, the decision interval, scale to zero) is listed as not carried over.
//!
//! shoal's `cpu` target is a share of `autoscale.cpu_request` cores; HPA's `Utilization` is
//! a share of the pod's cpu request. The render keeps the absolute target: `cpu: 50%` of a
//! 1-core `cpu_request` is 500m per pod, which is 50% of a 1000m request or 200% of a 250m
//! one. A service without a cpu request gets one (from its cpu limit, as Kubernetes would,
//! else from `cpu_request`), because HPA cannot compute utilisation without it.
use serde_norway::Value;
use shoal_autoscale::{RatePolicy, Target};
use shoal_config::{Autoscale, Container};

use crate::yaml::{Obj, cpu_quantity, list, memory_quantity, seconds_up};
use crate::{Kind, Manifest, Options, workload};

/// Longest `stabilizationWindowSeconds` HPA accepts.
const MAX_WINDOW_SECS: u64 = 3600;
/// Longest policy `periodSeconds` HPA accepts.
const MAX_PERIOD_SECS: u64 = 1800;

/// What an HPA for a service will look like.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub(crate) cpu: Option<CpuPlan>,
    pub(crate) memory: Option<u64>,
}

/// The cpu target in HPA's terms.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CpuPlan {
    /// The pod's cpu request the utilisation is relative to.
    pub(crate) request_millis: u64,
    /// Where that request comes from, for explanations.
    pub(crate) request_from: String,
    /// `averageUtilization`, percent of the request.
    pub(crate) utilization: u64,
    /// shoal's target: the share of `cpu_request`, and `cpu_request` in cores.
    share: f64,
    cores: f64,
}

impl CpuPlan {
    /// shoal's target in millicores per pod.
    pub(crate) fn target_millis(&self) -> f64 {
        self.share * self.cores * 1000.0
    }
}

/// The HPA plan of an autoscaled service; None when it has neither a cpu nor a memory
/// target (then HPA has nothing to act on).
pub(crate) fn plan(a: &Autoscale, container: &Container) -> Option<Plan> {
    let mut cpu = None;
    let mut memory = None;
    for t in &a.policy.targets {
        match *t {
            Target::Cpu(share) => {
                let req = container.resources.requests.cpu_millis;
                let lim = container.resources.limits.cpu_millis;
                let (request_millis, request_from) = match (req, lim) {
                    (Some(r), _) => (r, "the service's resources.requests.cpu".to_owned()),
                    (None, Some(l)) => (
                        l,
                        "its cpu limit (Kubernetes takes the limit as the request when none is given)"
                            .to_owned(),
                    ),
                    (None, None) => (
                        ((a.cpu_request * 1000.0).round() as u64).max(1),
                        format!("autoscale.cpu_request ({})", cores(a.cpu_request)),
                    ),
                };
                let target_millis = share * a.cpu_request * 1000.0;
                let utilization =
                    ((target_millis / request_millis as f64 * 100.0).round() as u64).max(1);
                cpu = Some(CpuPlan {
                    request_millis,
                    request_from,
                    utilization,
                    share,
                    cores: a.cpu_request,
                });
            }
            Target::Memory(bytes) => memory = Some(bytes),
            _ => {}
        }
    }
    (cpu.is_some() || memory.is_some()).then_some(Plan { cpu, memory })
}

/// The HorizontalPodAutoscaler, and explanation rows.
pub(crate) fn render(
    name: &str,
    a: &Autoscale,
    plan: &Plan,
    opts: &Options,
) -> (Manifest, Vec<(String, String)>) {
    let p = &a.policy;
    let mut rows = Vec::new();
    let min = p.min.max(1);
    rows.push((
        format!("autoscale.min {}, max {}", p.min, p.max),
        format!(
            "HorizontalPodAutoscaler {name}: minReplicas {min}, maxReplicas {}",
            p.max
        ),
    ));
    let mut metrics = Vec::new();
    if let Some(cpu) = &plan.cpu {
        metrics.push(resource_metric(
            "cpu",
            Obj::new()
                .with("type", "Utilization")
                .with("averageUtilization", cpu.utilization),
        ));
        rows.push((
            format!(
                "autoscale.cpu {}% of cpu_request {}",
                trim_float(cpu.share * 100.0),
                cores(cpu.cores)
            ),
            format!(
                "HorizontalPodAutoscaler {name}: cpu averageUtilization {}% of the pod's {} request",
                cpu.utilization,
                cpu_quantity(cpu.request_millis)
            ),
        ));
    }
    if let Some(bytes) = plan.memory {
        metrics.push(resource_metric(
            "memory",
            Obj::new()
                .with("type", "AverageValue")
                .with("averageValue", memory_quantity(bytes)),
        ));
        rows.push((
            format!("autoscale.memory {}", memory_quantity(bytes)),
            format!(
                "HorizontalPodAutoscaler {name}: memory averageValue {}",
                memory_quantity(bytes)
            ),
        ));
    }
    let (up, up_text) = rules(p.up_stabilization, &p.up_policies, Unlimited::Pods(p.max));
    let (down, down_text) = rules(
        p.down_stabilization,
        &p.down_policies,
        Unlimited::AllPercent,
    );
    rows.push((
        "autoscale.scale_up".to_owned(),
        format!("HorizontalPodAutoscaler {name}: behavior.scaleUp {up_text}"),
    ));
    rows.push((
        "autoscale.scale_down".to_owned(),
        format!("HorizontalPodAutoscaler {name}: behavior.scaleDown {down_text}"),
    ));
    let spec = Obj::new()
        .with(
            "scaleTargetRef",
            Obj::new()
                .with("apiVersion", "apps/v1")
                .with("kind", "Deployment")
                .with("name", name),
        )
        .with("minReplicas", min)
        .with("maxReplicas", p.max)
        .with("metrics", list(metrics))
        .with(
            "behavior",
            Obj::new().with("scaleUp", up).with("scaleDown", down),
        );
    let comments = vec![
        format!(
            "`{name}`'s autoscale: stabilization windows and rate policies as in the stack file (preset `{}`).",
            a.preset.name()
        ),
        "HPA reads cpu and memory from the metrics API: the cluster needs metrics-server (kind does not install it; minikube: `minikube addons enable metrics-server`).".to_owned(),
        "HPA decides once per sync period (15s unless the cluster sets --horizontal-pod-autoscaler-sync-period), not every tick: a policy period shorter than that allows its step once per sync.".to_owned(),
    ];
    (
        Manifest::new(
            Kind::HorizontalPodAutoscaler,
            name,
            comments,
            workload::metadata(name, opts, "service"),
            spec.into(),
        ),
        rows,
    )
}

fn resource_metric(name: &str, target: Obj) -> Value {
    Obj::new()
        .with("type", "Resource")
        .with(
            "resource",
            Obj::new().with("name", name).with("target", target),
        )
        .into()
}

/// What an empty policy list (no limit) becomes: HPA needs at least one policy to replace
/// its defaults.
#[derive(Debug, Clone, Copy)]
enum Unlimited {
    /// Add up to `max` pods at once: as good as no limit.
    Pods(u32),
    /// Remove every pod at once.
    AllPercent,
}

/// `behavior.scaleUp` / `scaleDown`, and a one-line description.
fn rules(
    window: std::time::Duration,
    policies: &[RatePolicy],
    unlimited: Unlimited,
) -> (Value, String) {
    let window = seconds_up(window, 0).min(MAX_WINDOW_SECS);
    let policy = |kind: &str, value: u32, period: u64| -> (Value, String) {
        (
            Obj::new()
                .with("type", kind)
                .with("value", value)
                .with("periodSeconds", period)
                .into(),
            format!("{kind} {value} per {period}s"),
        )
    };
    let mut out = Vec::new();
    for p in policies {
        let period = seconds_up(p.period(), 1).min(MAX_PERIOD_SECS);
        out.push(match *p {
            RatePolicy::Pods { value, .. } => policy("Pods", value, period),
            RatePolicy::Percent { value, .. } => policy("Percent", value, period),
        });
    }
    let mut text = String::new();
    if out.is_empty() {
        out.push(match unlimited {
            Unlimited::Pods(max) => policy("Pods", max, 1),
            Unlimited::AllPercent => policy("Percent", 100, 1),
        });
        text.push_str("(no limit in the stack file) ");
    }
    let described: Vec<String> = out.iter().map(|(_, t)| t.clone()).collect();
    text = format!(
        "stabilizationWindowSeconds {window}, {text}{} (selectPolicy Max: the most permissive wins, as in shoal)",
        described.join(", ")
    );
    let value = Obj::new()
        .with("stabilizationWindowSeconds", window)
        .with("selectPolicy", "Max")
        .with("policies", list(out.into_iter().map(|(v, _)| v)))
        .into();
    (value, text)
}

fn cores(n: f64) -> String {
    let s = trim_float(n);
    if s == "1" {
        "1 core".to_owned()
    } else {
        format!("{s} cores")
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shoal_autoscale::Policy;
    use shoal_config::{Preset, Quantities, Resources};

    use super::*;

    fn autoscale(targets: Vec<Target>, cpu_request: f64) -> Autoscale {
        Autoscale {
            policy: Policy {
                min: 2,
                max: 8,
                targets,
                ..Policy::default()
            },
            cpu_request,
            tick: Duration::from_secs(1),
            hold: Default::default(),
            preset: Preset::Shoal,
        }
    }

    fn container(req: Option<u64>, lim: Option<u64>) -> Container {
        Container {
            image: "x".into(),
            args: vec![],
            port: 8080,
            resources: Resources {
                requests: Quantities {
                    cpu_millis: req,
                    memory_bytes: None,
                },
                limits: Quantities {
                    cpu_millis: lim,
                    memory_bytes: None,
                },
            },
        }
    }

    #[test]
    fn cpu_target_keeps_its_absolute_value() {
        let a = autoscale(vec![Target::Cpu(0.5)], 1.0);
        // No request: one is made from cpu_request, utilisation unchanged.
        let p = plan(&a, &container(None, None)).unwrap().cpu.unwrap();
        assert_eq!((p.request_millis, p.utilization), (1000, 50));
        assert!(p.request_from.contains("cpu_request"));
        // A 250m request: 500m is 200% of it.
        let p = plan(&a, &container(Some(250), None)).unwrap().cpu.unwrap();
        assert_eq!((p.request_millis, p.utilization), (250, 200));
        // Only a limit: Kubernetes makes it the request.
        let p = plan(&a, &container(None, Some(2000))).unwrap().cpu.unwrap();
        assert_eq!((p.request_millis, p.utilization), (2000, 25));
        // cpu_request 500m and a 500m request: the share as written.
        let a = autoscale(vec![Target::Cpu(0.7)], 0.5);
        let p = plan(&a, &container(Some(500), None)).unwrap().cpu.unwrap();
        assert_eq!(p.utilization, 70);
    }

    #[test]
    fn targets_hpa_cannot_read_make_no_plan() {
        let a = autoscale(vec![Target::Concurrency(5.0), Target::Rps(100.0)], 1.0);
        assert_eq!(plan(&a, &container(None, None)), None);
        let a = autoscale(vec![Target::Memory(256 << 20), Target::Rps(100.0)], 1.0);
        let p = plan(&a, &container(None, None)).unwrap();
        assert_eq!((p.cpu, p.memory), (None, Some(256 << 20)));
    }

    #[test]
    fn behavior_mirrors_windows_and_policies() {
        let a = autoscale(vec![Target::Cpu(0.5)], 1.0);
        let p = plan(&a, &container(None, None)).unwrap();
        let (m, _) = render("s", &a, &p, &Options::default());
        let b = &m.body["spec"]["behavior"];
        assert_eq!(b["scaleUp"]["stabilizationWindowSeconds"], 0);
        assert_eq!(b["scaleDown"]["stabilizationWindowSeconds"], 30);
        assert_eq!(b["scaleUp"]["policies"][0]["type"], "Pods");
        assert_eq!(b["scaleUp"]["policies"][0]["value"], 4);
        assert_eq!(b["scaleUp"]["policies"][0]["periodSeconds"], 1);
        assert_eq!(b["scaleUp"]["policies"][1]["type"], "Percent");
        assert_eq!(b["scaleDown"]["policies"][0]["value"], 50);
        assert_eq!(b["scaleDown"]["policies"][0]["periodSeconds"], 5);
        assert_eq!(m.body["spec"]["minReplicas"], 2);
        assert_eq!(m.body["spec"]["maxReplicas"], 8);
    }

    #[test]
    fn no_limit_and_out_of_range_values_stay_valid_for_hpa() {
        let (v, text) = rules(Duration::from_secs(7200), &[], Unlimited::Pods(8));
        assert_eq!(v["stabilizationWindowSeconds"], 3600);
        assert_eq!(v["policies"][0]["value"], 8);
        assert!(text.contains("no limit"), "{text}");
        let (v, _) = rules(
            Duration::from_millis(1500),
            &[RatePolicy::Percent {
                value: 50,
                period: Duration::from_millis(200),
            }],
            Unlimited::AllPercent,
        );
        assert_eq!(v["stabilizationWindowSeconds"], 2);
        assert_eq!(v["policies"][0]["periodSeconds"], 1);
        let (v, _) = rules(Duration::ZERO, &[], Unlimited::AllPercent);
        assert_eq!(v["policies"][0]["type"], "Percent");
        assert_eq!(v["policies"][0]["value"], 100);
    }
}
