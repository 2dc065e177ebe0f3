//! `GET /metrics`: the gateway's request metrics (Traefik's families) and shoal's own
//! gauges, read at scrape time from what the planes already keep: the supervisor's replica
//! status (CPU, memory, restarts), the gateway's counters, the autoscaler's last decision.
//! Every name is listed in `docs/observability.md`.
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use shoal_admin::Control;
use shoal_config::Stack;
use shoal_core::prom::{header, sample};
use shoal_core::{AutoscaleStatus, ReplicaState, ReplicaStatus, ServiceState, ServiceStatus};
use shoal_proxy::{AccessLogger, Gateway};

use crate::control::AppControl;

/// A series read from a status: name, type, help, and how to read it (None: no sample).
type Series<T> = (
    &'static str,
    &'static str,
    &'static str,
    fn(&T) -> Option<f64>,
);
/// A gauge read from a status: name, help, and how to read it.
type Gauge<T> = (&'static str, &'static str, fn(&T) -> f64);

/// Configuration reloads, for `*_config_reloads_total` and `*_config_last_reload_success`.
#[derive(Debug, Default)]
pub(crate) struct Reloads {
    total: AtomicU64,
    /// Unix time in milliseconds of the last successful (re)load, start-up included.
    last_success_ms: AtomicU64,
}

impl Reloads {
    /// A configuration was applied (at start-up or by a reload).
    pub(crate) fn applied(&self, reload: bool) {
        if reload {
            self.total.fetch_add(1, Ordering::Relaxed);
        }
        self.last_success_ms
            .store(shoal_core::unix_millis(), Ordering::Relaxed);
    }
}

/// Scale changes the autoscaler made, by service and direction.
#[derive(Debug, Default)]
pub(crate) struct ScalingEvents(Mutex<BTreeMap<(String, &'static str), u64>>);

impl ScalingEvents {
    /// The autoscaler changed `service`'s count from `from` to `to`.
    pub(crate) fn scaled(&self, service: &str, from: u32, to: u32) {
        let direction = if to > from { "up" } else { "down" };
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *all.entry((service.to_owned(), direction)).or_default() += 1;
    }

    fn snapshot(&self) -> Vec<((String, &'static str), u64)> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Every metric, in Prometheus' text format.
pub(crate) fn render(control: &AppControl) -> String {
    let mut out = String::with_capacity(16 * 1024);
    control.gateway.render_metrics(&mut out);
    let prefix = control
        .stack
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .metrics
        .prefix
        .name();

    let name = format!("{prefix}_config_reloads_total");
    header(&mut out, &name, "counter", "Config reloads.");
    sample(
        &mut out,
        &name,
        &[],
        control.reloads.total.load(Ordering::Relaxed) as f64,
    );
    let name = format!("{prefix}_config_last_reload_success");
    header(
        &mut out,
        &name,
        "gauge",
        "Last config reload success (Unix time in seconds; start-up counts).",
    );
    sample(
        &mut out,
        &name,
        &[],
        control.reloads.last_success_ms.load(Ordering::Relaxed) as f64 / 1000.0,
    );

    let services = control.services();
    let per_service: [Series<ServiceStatus>; 3] = [
        (
            "shoal_service_replicas_desired",
            "gauge",
            "Replicas the service should have (its count, `shoal scale`, or the autoscaler's).",
            |s| Some(f64::from(s.desired)),
        ),
        (
            "shoal_service_replicas_ready",
            "gauge",
            "Replicas ready and in rotation.",
            |s| Some(f64::from(s.ready)),
        ),
        (
            "shoal_service_up",
            "gauge",
            "1 if every desired replica is ready (state running), else 0.",
            |s| Some(f64::from(u8::from(s.state == ServiceState::Running))),
        ),
    ];
    for (name, kind, help, get) in per_service {
        header(&mut out, name, kind, help);
        for s in &services {
            if let Some(v) = get(s) {
                sample(&mut out, name, &[("service", &s.name)], v);
            }
        }
    }

    // Local replicas (static servers have no process to measure).
    let replicas: Vec<_> = services
        .iter()
        .flat_map(|s| {
            s.replicas
                .iter()
                .filter(|r| r.pid.is_some() || r.endpoint.is_some())
                .map(move |r| (s.name.as_str(), format!("{}/{}", s.name, r.index), r))
        })
        .collect();
    let per_replica: [Series<ReplicaStatus>; 4] = [
        (
            "shoal_replica_cpu_cores",
            "gauge",
            "CPU used by the replica's process group, in cores (1.0 = one core busy).",
            |r| r.cpu_percent.map(|p| p / 100.0),
        ),
        (
            "shoal_replica_memory_rss_bytes",
            "gauge",
            "Resident memory of the replica's process group.",
            |r| r.rss_bytes.map(|b| b as f64),
        ),
        (
            "shoal_replica_restarts_total",
            "counter",
            "Times the supervisor restarted the replica.",
            |r| Some(f64::from(r.restarts)),
        ),
        (
            "shoal_replica_ready",
            "gauge",
            "1 if the replica is ready (passed its readiness check), else 0.",
            |r| Some(f64::from(u8::from(r.state == ReplicaState::Ready))),
        ),
    ];
    for (name, kind, help, get) in per_replica {
        header(&mut out, name, kind, help);
        for (service, replica, r) in &replicas {
            if let Some(v) = get(r) {
                sample(
                    &mut out,
                    name,
                    &[("service", service), ("replica", replica)],
                    v,
                );
            }
        }
    }

    // The version each replica runs, as labels (`info` style): old and new side by side
    // during a rollout.
    let name = "shoal_replica_info";
    header(
        &mut out,
        name,
        "gauge",
        "1 per replica, labelled with the version it runs (the service's `version:` label, else a hash of its spec).",
    );
    for (service, replica, r) in &replicas {
        if let Some(version) = &r.version {
            sample(
                &mut out,
                name,
                &[
                    ("service", service),
                    ("replica", replica),
                    ("version", version),
                ],
                1.0,
            );
        }
    }
    // Split routes' weights in force (`shoal weight`, a canary's steps, else the file's).
    let name = "shoal_route_weight";
    header(
        &mut out,
        name,
        "gauge",
        "The weight of a service in a split route (`services:`), as in force now.",
    );
    for route in control.routes() {
        for (service, weight) in &route.weights {
            sample(
                &mut out,
                name,
                &[("route", &route.name), ("service", service)],
                f64::from(*weight),
            );
        }
    }

    // The autoscaler: per target, the measured value per replica and the target.
    let scaled: Vec<_> = services
        .iter()
        .filter_map(|s| s.autoscale.as_ref().map(|a| (s.name.as_str(), a)))
        .collect();
    let name = "shoal_autoscaler_metric_value";
    header(
        &mut out,
        name,
        "gauge",
        "The autoscaler's last reading of a target metric, per replica (cpu as a share of cpu_request, memory in bytes, concurrency and rps per replica, latency_p95 in seconds).",
    );
    for (service, a) in &scaled {
        for r in &a.readings {
            if let Some(v) = r.value {
                sample(
                    &mut out,
                    name,
                    &[("service", service), ("metric", &r.name)],
                    base_unit(&r.name, v),
                );
            }
        }
    }
    let name = "shoal_autoscaler_metric_target";
    header(
        &mut out,
        name,
        "gauge",
        "The target of an autoscaler metric, in the unit of shoal_autoscaler_metric_value.",
    );
    for (service, a) in &scaled {
        for r in &a.readings {
            sample(
                &mut out,
                name,
                &[("service", service), ("metric", &r.name)],
                base_unit(&r.name, r.target),
            );
        }
    }
    let gauges: [Gauge<AutoscaleStatus>; 4] = [
        (
            "shoal_autoscaler_desired_replicas",
            "The replica count the autoscaler last decided.",
            |a| f64::from(a.desired),
        ),
        (
            "shoal_autoscaler_min_replicas",
            "The autoscaler's lower bound.",
            |a| f64::from(a.min),
        ),
        (
            "shoal_autoscaler_max_replicas",
            "The autoscaler's upper bound.",
            |a| f64::from(a.max),
        ),
        (
            "shoal_autoscaler_panic",
            "1 while the autoscaler is in panic mode.",
            |a| f64::from(u8::from(a.panic)),
        ),
    ];
    for (name, help, get) in gauges {
        header(&mut out, name, "gauge", help);
        for (service, a) in &scaled {
            sample(&mut out, name, &[("service", service)], get(a));
        }
    }
    // The queues behind backlog targets, as their brokers were last read.
    let backlogs = control.autoscaling.backlog_metrics();
    let name = "shoal_backlog_messages";
    header(
        &mut out,
        name,
        "gauge",
        "Messages waiting in the queue a service's backlog target reads, at the last successful read.",
    );
    for (service, m) in &backlogs {
        if let Some(messages) = m.messages {
            sample(&mut out, name, &[("service", service)], messages as f64);
        }
    }
    let name = "shoal_backlog_read_errors_total";
    header(
        &mut out,
        name,
        "counter",
        "Failed reads of the queue a service's backlog target reads (broker down, refused, timed out).",
    );
    for (service, m) in &backlogs {
        sample(
            &mut out,
            name,
            &[("service", service)],
            m.errors_total as f64,
        );
    }
    let name = "shoal_autoscaler_scaling_events_total";
    header(
        &mut out,
        name,
        "counter",
        "Replica count changes made by the autoscaler, by direction (up, down).",
    );
    for ((service, direction), n) in control.autoscaling.events.snapshot() {
        sample(
            &mut out,
            name,
            &[("service", &service), ("direction", direction)],
            n as f64,
        );
    }
    out
}

/// An autoscaler reading in Prometheus' base units (the autoscaler keeps latency in ms).
fn base_unit(metric: &str, v: f64) -> f64 {
    if metric == "latency_p95" {
        v / 1000.0
    } else {
        v
    }
}

/// Start, restart or stop the access log when its settings changed.
pub(crate) fn apply_access_log(
    gateway: &Gateway,
    stack: &Stack,
    runtime: &tokio::runtime::Handle,
) -> std::io::Result<()> {
    let current = gateway.access_log();
    if current.as_ref().map(|l| l.config()) == stack.access_log.as_ref() {
        return Ok(());
    }
    let logger = match &stack.access_log {
        None => None,
        Some(config) => {
            let _in_runtime = runtime.enter();
            Some(AccessLogger::start(config)?)
        }
    };
    gateway.set_access_log(logger);
    Ok(())
}
