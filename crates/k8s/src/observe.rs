//! The gateway's observability on Kubernetes: how Prometheus finds its metrics, and shoal's
//! Grafana dashboard.
//!
//! **Scraping.** Each gateway pod serves `GET /metrics` on its metrics port (the rest of the
//! admin API stays on loopback, see `crate::gateway`). By default the pod template carries
//! the `prometheus.io/scrape`, `port` and `path` annotations that the usual `kubernetes-pods`
//! scrape job reads. With `--service-monitor` the annotations go, and the Prometheus
//! Operator's way replaces them: a `monitoring.coreos.com/v1` ServiceMonitor selecting a
//! headless Service that has only the metrics port (named `metrics`). A separate Service,
//! not a port on the gateway's own: that one is often a LoadBalancer, and `/metrics` must not
//! be published on the internet. Prometheus then scrapes every gateway pod behind it.
//!
//! **Dashboard.** `deploy/observability/grafana-dashboard.json` in a ConfigMap labelled
//! `grafana_dashboard: "1"`, the label Grafana's dashboard sidecar (Grafana's Helm chart,
//! kube-prometheus-stack) looks for. The file is written for Grafana's *import*, which asks
//! for the data source (`__inputs`, `${DS_PROMETHEUS}`); the sidecar provisions files without
//! that step and leaves `${DS_PROMETHEUS}` unresolved ("Datasource ${DS_PROMETHEUS} was not
//! found", grafana/grafana#10786). So the ConfigMap's copy drops `__inputs` and `__requires`
//! and declares `DS_PROMETHEUS` as a data source variable instead, which resolves to the
//! default Prometheus data source and can be switched in the dashboard. Nothing else changes.
use serde_norway::Value;
use shoal_config::{MetricsPrefix, Stack};

use crate::explain::{Explain, Section};
use crate::gateway::Ports;
use crate::workload::{labels, match_labels};
use crate::yaml::{Obj, list, string_map};
use crate::{DASHBOARD_NAME, GATEWAY_NAME, Kind, METRICS_SERVICE_NAME, Manifest, Options};

/// The gateway container's metrics port name.
pub(crate) const METRICS_PORT_NAME: &str = "metrics";

/// How often the ServiceMonitor has the gateway scraped: the dashboard's rates are over 1
/// minute, and a rate wants four samples or more in its window.
const SCRAPE_INTERVAL: &str = "15s";

/// The dashboard as the repository ships it (for Grafana's import).
const DASHBOARD: &str = include_str!("../../../deploy/observability/grafana-dashboard.json");

/// The file name of the dashboard in its ConfigMap (the sidecar writes it under that name).
const DASHBOARD_KEY: &str = "shoal.json";

/// The gateway pod's scrape annotations, when there is no ServiceMonitor.
pub(crate) fn pod_annotations(opts: &Options, ports: &Ports) -> Vec<(String, String)> {
    if opts.service_monitor {
        return Vec::new();
    }
    vec![
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), ports.metrics.to_string()),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ]
}

fn metadata(name: &str, opts: &Options, component: &str) -> Value {
    Obj::new()
        .with("name", name)
        .with("namespace", opts.namespace.as_str())
        .with("labels", labels(GATEWAY_NAME, component))
        .into()
}

/// The metrics Service and ServiceMonitor (with `--service-monitor`), the dashboard's
/// ConfigMap (unless `--no-grafana-dashboard`), and what they mean.
pub(crate) fn render(
    stack: &Stack,
    opts: &Options,
    ports: &Ports,
    explain: &mut Explain,
) -> (Vec<Manifest>, Section) {
    let mut section = Section::new("gateway: observability");
    let mut manifests = Vec::new();
    if opts.service_monitor {
        manifests.push(Manifest::new(
            Kind::Service,
            METRICS_SERVICE_NAME,
            vec![
                "The gateway pods' metrics port, for the ServiceMonitor below: headless (no cluster address; Prometheus scrapes each pod) and apart from the gateway's own Service, so /metrics is never published by a load balancer.".to_owned(),
            ],
            metadata(METRICS_SERVICE_NAME, opts, "metrics"),
            Obj::new()
                .with("clusterIP", "None")
                .with("selector", match_labels(GATEWAY_NAME))
                .with(
                    "ports",
                    list([Obj::new()
                        .with("name", METRICS_PORT_NAME)
                        .with("port", ports.metrics)
                        .with("targetPort", METRICS_PORT_NAME)
                        .with("protocol", "TCP")]),
                )
                .into(),
        ));
        manifests.push(Manifest::new(
            Kind::ServiceMonitor,
            GATEWAY_NAME,
            vec![
                format!(
                    "Prometheus Operator: scrape GET /metrics of every gateway pod every {SCRAPE_INTERVAL}, through Service {METRICS_SERVICE_NAME}."
                ),
                "A Prometheus picks ServiceMonitors by label (kube-prometheus-stack: `release: <its release>` unless serviceMonitorSelectorNilUsesHelmValues is false); add yours with a Kustomize patch.".to_owned(),
            ],
            metadata(GATEWAY_NAME, opts, "metrics"),
            Obj::new()
                .with(
                    "selector",
                    Obj::new().with("matchLabels", labels(GATEWAY_NAME, "metrics")),
                )
                .with(
                    "endpoints",
                    list([Obj::new()
                        .with("port", METRICS_PORT_NAME)
                        .with("path", "/metrics")
                        .with("interval", SCRAPE_INTERVAL)]),
                )
                .into(),
        ));
        section.row(
            "/metrics",
            format!(
                "port {} (`{METRICS_PORT_NAME}`) of each gateway pod, Path(`/metrics`) only; Service {METRICS_SERVICE_NAME} (headless) and ServiceMonitor {GATEWAY_NAME} (monitoring.coreos.com/v1, every {SCRAPE_INTERVAL}); no scrape annotations",
                ports.metrics
            ),
        );
    } else {
        section.row(
            "/metrics",
            format!(
                "port {} (`{METRICS_PORT_NAME}`) of each gateway pod, Path(`/metrics`) only; pod annotations prometheus.io/scrape, port, path (`--service-monitor` for a ServiceMonitor instead)",
                ports.metrics
            ),
        );
    }
    if opts.grafana_dashboard {
        let mut meta_labels = vec![
            ("app.kubernetes.io/name", GATEWAY_NAME),
            ("app.kubernetes.io/part-of", "shoal"),
            ("app.kubernetes.io/component", "dashboard"),
        ];
        meta_labels.push(("grafana_dashboard", "1"));
        manifests.push(Manifest::with_top(
            Kind::ConfigMap,
            DASHBOARD_NAME,
            vec![
                "shoal's Grafana dashboard (deploy/observability/grafana-dashboard.json), for Grafana's dashboard sidecar, which loads ConfigMaps labelled grafana_dashboard: \"1\" (it must watch this namespace: searchNamespace).".to_owned(),
                "Its data source is the variable DS_PROMETHEUS (the default Prometheus data source), not an import-time input, which the sidecar cannot fill in.".to_owned(),
            ],
            Obj::new()
                .with("name", DASHBOARD_NAME)
                .with("namespace", opts.namespace.as_str())
                .with("labels", string_map(meta_labels))
                .into(),
            "data",
            Obj::new().with(DASHBOARD_KEY, dashboard()).into(),
        ));
        section.row(
            "Grafana dashboard",
            format!(
                "ConfigMap {DASHBOARD_NAME}: {DASHBOARD_KEY}, label grafana_dashboard \"1\" (Grafana's sidecar; `--no-grafana-dashboard` leaves it out)"
            ),
        );
        if stack.metrics.prefix == MetricsPrefix::Traefik {
            explain.warn(
                "metrics.prefix is `traefik`: the dashboard's request panels query shoal_… families (its replica and autoscaler panels work); Traefik's own dashboards (17346, 17347) read the traefik_… ones",
            );
        }
    } else {
        section.row("Grafana dashboard", "left out (--no-grafana-dashboard)");
    }
    (manifests, section)
}

/// The dashboard for provisioning: `__inputs` and `__requires` dropped, `DS_PROMETHEUS` a data
/// source variable. Parsed as YAML (a superset of JSON) to keep the file's key order, and
/// written back as JSON.
pub(crate) fn dashboard() -> String {
    // The file is in the repository and tested below; these cannot fail for it.
    let mut d: Value = serde_norway::from_str(DASHBOARD).unwrap_or_default();
    if let Some(m) = d.as_mapping_mut() {
        m.remove("__inputs");
        m.remove("__requires");
    }
    let variable: Value = Obj::new()
        .with("name", "DS_PROMETHEUS")
        .with("label", "Prometheus")
        .with("type", "datasource")
        .with("query", "prometheus")
        .with("refresh", 1)
        .with("hide", 0)
        .into();
    if let Some(vars) = d
        .get_mut("templating")
        .and_then(|t| t.get_mut("list"))
        .and_then(Value::as_sequence_mut)
    {
        vars.insert(0, variable);
    }
    let mut text = serde_json::to_string_pretty(&d).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provisioned_dashboard_is_the_shipped_one_with_a_data_source_variable() {
        let shipped: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
        let mut provisioned: serde_json::Value = serde_json::from_str(&dashboard()).unwrap();
        assert!(provisioned.get("__inputs").is_none());
        let vars = provisioned["templating"]["list"].as_array_mut().unwrap();
        let variable = vars.remove(0);
        assert_eq!(variable["name"], "DS_PROMETHEUS");
        assert_eq!(variable["type"], "datasource");
        assert_eq!(variable["query"], "prometheus");
        // Every panel refers to it.
        assert!(dashboard().contains("\"uid\": \"${DS_PROMETHEUS}\""));
        // Everything else is as shipped.
        let mut shipped = shipped;
        let m = shipped.as_object_mut().unwrap();
        m.remove("__inputs");
        m.remove("__requires");
        assert_eq!(provisioned, shipped);
        assert!(!shipped["panels"].as_array().unwrap().is_empty());
    }
}
