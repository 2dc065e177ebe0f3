//! Tests of the whole render, on small stacks written here.
use serde_yaml::Value;
use shoal_config::{Runtime, Source, Stack};

use super::*;

const FULL: &str = include_str!("../tests/golden/full.shoal.yaml");

fn stack(yaml: &str) -> Stack {
    shoal_config::parse_for(yaml, "shoal.yaml", Runtime::Kubernetes)
        .unwrap_or_else(|d| panic!("{d}"))
}

fn one_service(fields: &str) -> Stack {
    stack(&format!(
        "services:\n  web:\n    image: ghcr.io/acme/web:1\n{fields}routes:\n  - match: PathPrefix(`/`)\n    service: web\n"
    ))
}

fn find<'a>(r: &'a Rendered, kind: Kind, name: &str) -> Option<&'a Value> {
    r.manifests
        .iter()
        .find(|m| m.kind == kind && m.name == name)
        .map(|m| &m.body)
}

fn manifest<'a>(r: &'a Rendered, kind: Kind, name: &str) -> &'a Manifest {
    r.manifests
        .iter()
        .find(|m| m.kind == kind && m.name == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn container(r: &Rendered, name: &str) -> Value {
    find(r, Kind::Deployment, name).unwrap()["spec"]["template"]["spec"]["containers"][0].clone()
}

fn render_default(s: &Stack) -> Rendered {
    render(s, &Options::default()).unwrap()
}

#[test]
fn a_fixed_count_service_gets_deployment_service_and_budget() {
    let r = render_default(&one_service(
        "    replicas: 3\n    port: 9000\n    env: { PORT: '1', MODE: prod }\n",
    ));
    let d = find(&r, Kind::Deployment, "web").unwrap();
    assert_eq!(d["spec"]["replicas"], 3);
    let c = container(&r, "web");
    assert_eq!(c["image"], "ghcr.io/acme/web:1");
    assert_eq!(c["ports"][0]["containerPort"], 9000);
    // PORT is the container port; the user's own PORT is dropped, other variables kept.
    let env: Vec<(String, String)> = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        env,
        [("PORT", "9000"), ("SHOAL_SERVICE", "web"), ("MODE", "prod")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    let s = find(&r, Kind::Service, "web").unwrap();
    assert_eq!(s["spec"]["type"], "ClusterIP");
    assert_eq!(s["spec"]["ports"][0]["port"], 9000);
    assert_eq!(s["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(
        find(&r, Kind::PodDisruptionBudget, "web").unwrap()["spec"]["maxUnavailable"],
        1
    );
    assert!(find(&r, Kind::HorizontalPodAutoscaler, "web").is_none());
    // No args: the image's own CMD.
    assert!(c.get("args").is_none());
}

#[test]
fn one_replica_gets_no_disruption_budget() {
    let r = render_default(&one_service(""));
    assert!(find(&r, Kind::PodDisruptionBudget, "web").is_none());
    assert_eq!(
        find(&r, Kind::Deployment, "web").unwrap()["spec"]["replicas"],
        1
    );
}

#[test]
fn draining_matches_the_local_stop() {
    let r = render_default(&one_service(
        "    stop: { drain_timeout: 2500ms, grace: 3s }\n",
    ));
    let d = find(&r, Kind::Deployment, "web").unwrap();
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 6);
    assert_eq!(
        pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"],
        3
    );
    let comments = manifest(&r, Kind::Deployment, "web").comments.join("\n");
    assert!(comments.contains("preStop sleep (3s"), "{comments}");

    let r = render_default(&one_service("    stop: { drain_timeout: 0s, grace: 3s }\n"));
    let c = container(&r, "web");
    assert!(c.get("lifecycle").is_none(), "no zero-second sleep");
}

#[test]
fn health_false_means_no_probes() {
    let r = render_default(&one_service("    health: false\n"));
    let c = container(&r, "web");
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert!(c.get(probe).is_none(), "{probe}");
    }
}

#[test]
fn targets_hpa_cannot_read_keep_the_replica_count_and_say_so() {
    let r = render_default(&one_service(
        "    replicas: 2\n    autoscale: { min: 1, max: 6, concurrency: 5 }\n",
    ));
    assert!(find(&r, Kind::HorizontalPodAutoscaler, "web").is_none());
    assert_eq!(
        find(&r, Kind::Deployment, "web").unwrap()["spec"]["replicas"],
        2
    );
    let comments = manifest(&r, Kind::Deployment, "web").comments.join("\n");
    assert!(
        comments.contains(
            "not yet available; until then the Deployment stays at its replica count (2)"
        ),
        "{comments}"
    );
    let text = r.explain.to_text("x");
    assert!(text.contains("not yet available"), "{text}");
}

#[test]
fn cpu_and_memory_targets_make_an_hpa_that_owns_the_count() {
    let r = render_default(&one_service(
        "    autoscale: { min: 2, max: 9, cpu: 50%, memory: 256Mi, rps: 100 }\n",
    ));
    let d = find(&r, Kind::Deployment, "web").unwrap();
    assert!(
        d["spec"].get("replicas").is_none(),
        "the HPA owns the count"
    );
    let h = find(&r, Kind::HorizontalPodAutoscaler, "web").unwrap();
    assert_eq!(h["spec"]["minReplicas"], 2);
    assert_eq!(h["spec"]["maxReplicas"], 9);
    assert_eq!(h["spec"]["scaleTargetRef"]["name"], "web");
    let metrics = h["spec"]["metrics"].as_sequence().unwrap();
    assert_eq!(metrics.len(), 2, "rps is not an HPA metric");
    assert_eq!(metrics[0]["resource"]["target"]["averageUtilization"], 50);
    assert_eq!(metrics[1]["resource"]["target"]["averageValue"], "256Mi");
    // No cpu request in the stack: one from cpu_request (1 core), and a note saying so.
    assert_eq!(container(&r, "web")["resources"]["requests"]["cpu"], "1");
    let comments = manifest(&r, Kind::Deployment, "web").comments.join("\n");
    assert!(
        comments.contains("comes from autoscale.cpu_request"),
        "{comments}"
    );
    assert!(find(&r, Kind::PodDisruptionBudget, "web").is_some());
}

#[test]
fn the_gateway_stack_file_is_valid_and_equivalent() {
    let original = stack(FULL);
    let r = render_default(&original);
    let derived = shoal_config::parse(&r.gateway_stack, "gateway.yaml")
        .unwrap_or_else(|d| panic!("{d}\n{}", r.gateway_stack));

    // Gateway settings, metrics: the same but for the addresses.
    let (mut g1, g2) = (original.gateway.clone(), derived.gateway.clone());
    g1.entrypoints = g2.entrypoints.clone();
    assert_eq!(g1, g2);
    assert_eq!(original.metrics, derived.metrics);
    assert_eq!(
        original.access_log.as_ref().map(|a| (a.format, a.buffer)),
        derived.access_log.as_ref().map(|a| (a.format, a.buffer))
    );
    assert_eq!(derived.access_log.as_ref().unwrap().path, None);
    let listens: Vec<String> = g2
        .entrypoints
        .iter()
        .map(|e| format!("{} {}", e.name, e.listen))
        .collect();
    assert_eq!(
        listens,
        [
            "web 0.0.0.0:8000",
            "internal-traffic 0.0.0.0:8001",
            "shoal-metrics 0.0.0.0:9090"
        ]
    );
    assert_eq!(derived.admin.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(derived.admin.token, None);

    // Routes: same rules, priorities, services, middleware chains and retries, in order;
    // each limited to the user's entrypoints.
    let (metrics, user_routes): (Vec<_>, Vec<_>) = derived
        .routes
        .iter()
        .partition(|r| r.name == "shoal-metrics");
    assert_eq!(user_routes.len(), original.routes.len());
    for (a, b) in original.routes.iter().zip(user_routes) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.rule.source(), b.rule.source());
        assert_eq!(a.priority, b.priority);
        assert_eq!(a.service, b.service);
        assert_eq!(a.middlewares, b.middlewares, "route {}", a.name);
        assert_eq!(a.retry, b.retry, "route {}", a.name);
        let eps = b.entrypoints.clone().unwrap();
        assert!(!eps.contains(&"shoal-metrics".to_owned()), "{eps:?}");
        if a.entrypoints.is_some() {
            assert_eq!(a.entrypoints, b.entrypoints);
        }
    }
    let metrics = metrics[0];
    assert_eq!(metrics.rule.source(), "Path(`/metrics`)");
    assert_eq!(metrics.entrypoints, Some(vec!["shoal-metrics".to_owned()]));

    // Services: replicated ones become their Kubernetes Service; settings kept.
    for a in &original.services {
        let b = derived.service(&a.name).unwrap();
        assert_eq!(a.retry, b.retry, "{}", a.name);
        assert_eq!(a.circuit_breaker, b.circuit_breaker, "{}", a.name);
        assert_eq!(a.balance, b.balance, "{}", a.name);
        assert_eq!(a.protocol, b.protocol, "{}", a.name);
        match (&a.source, &b.source) {
            (Source::Command(_), Source::Servers(s)) => {
                let port = a.container.as_ref().unwrap().port;
                assert_eq!(s.len(), 1);
                assert_eq!(
                    s[0].url,
                    format!("http://{}.default.svc.cluster.local:{port}", a.name)
                );
                assert!(!b.health.enabled && !b.passive.enabled, "{}", a.name);
            }
            (Source::Servers(x), Source::Servers(y)) => {
                assert_eq!(x, y);
                assert_eq!(a.health, b.health);
                assert_eq!(a.passive, b.passive);
            }
            other => panic!("{}: {other:?}", a.name),
        }
    }
    let m = derived.service("shoal-metrics").unwrap();
    assert!(matches!(&m.source, Source::Servers(s) if s[0].url == "http://127.0.0.1:9000"));
}

#[test]
fn namespace_domain_and_service_type_are_used() {
    let opts = Options {
        namespace: "shop".into(),
        cluster_domain: "example.internal".into(),
        gateway_service: GatewayService::NodePort,
        gateway_image: "registry.local/shoal:dev".into(),
        gateway_replicas: 1,
        ..Options::default()
    };
    let r = render(&one_service(""), &opts).unwrap();
    assert!(
        r.gateway_stack
            .contains("http://web.shop.svc.example.internal:8080"),
        "{}",
        r.gateway_stack
    );
    assert!(
        r.manifests
            .iter()
            .all(|m| m.body["metadata"]["namespace"] == "shop")
    );
    let svc = find(&r, Kind::Service, GATEWAY_NAME).unwrap();
    assert_eq!(svc["spec"]["type"], "NodePort");
    let d = find(&r, Kind::Deployment, GATEWAY_NAME).unwrap();
    assert_eq!(d["spec"]["replicas"], 1);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.local/shoal:dev");
    assert!(
        find(&r, Kind::PodDisruptionBudget, GATEWAY_NAME).is_none(),
        "no budget for one gateway pod"
    );
}

#[test]
fn the_gateway_exposes_metrics_but_not_the_admin_api() {
    let r = render_default(&one_service(""));
    let d = find(&r, Kind::Deployment, GATEWAY_NAME).unwrap();
    let pod = &d["spec"]["template"];
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "9090");
    assert_eq!(ann["prometheus.io/path"], "/metrics");
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    let ports: Vec<&str> = pod["spec"]["containers"][0]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(ports, ["web", "metrics"]);
    let svc = find(&r, Kind::Service, GATEWAY_NAME).unwrap();
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    assert_eq!(
        svc["spec"]["ports"].as_sequence().unwrap().len(),
        1,
        "the metrics port is not part of the Service"
    );
    let derived = shoal_config::parse(&r.gateway_stack, "g").unwrap();
    assert!(derived.admin.listen.ip().is_loopback());
}

#[test]
fn ports_that_would_collide_in_the_pod_are_moved() {
    // Two entrypoints on one port (different loopback addresses), one on port 0, admin
    // on the metrics port.
    let s = stack(
        "gateway:\n  entrypoints:\n    a: { listen: 127.0.0.1:9090 }\n    b: { listen: 127.0.0.2:9090 }\n    c: { listen: 127.0.0.1:0 }\nadmin:\n  listen: 127.0.0.1:9090\nservices:\n  web:\n    image: x:1\nroutes:\n  - match: PathPrefix(`/`)\n    service: web\n",
    );
    let r = render_default(&s);
    let derived = shoal_config::parse(&r.gateway_stack, "g").unwrap();
    let ports: Vec<u16> = derived
        .gateway
        .entrypoints
        .iter()
        .map(|e| e.listen.port())
        .chain([derived.admin.listen.port()])
        .collect();
    assert_eq!(ports, [9090, 8000, 8001, 9091, 8080]);
    assert!(
        r.explain
            .warnings
            .iter()
            .any(|w| w.contains("entrypoint `b`"))
    );
}

#[test]
fn names_that_would_collide_are_refused_or_avoided() {
    let s = stack(
        "services:\n  shoal-gateway:\n    image: x:1\nroutes:\n  - match: PathPrefix(`/`)\n    service: shoal-gateway\n",
    );
    assert_eq!(
        render(&s, &Options::default()).unwrap_err(),
        RenderError::NameTaken("shoal-gateway".into())
    );
    // A user service, route and entrypoint called shoal-metrics: the gateway's own get
    // other names.
    let s = stack(
        "gateway:\n  entrypoints:\n    shoal-metrics: { listen: 127.0.0.1:8000 }\nservices:\n  shoal-metrics:\n    image: x:1\nroutes:\n  - name: shoal-metrics\n    match: PathPrefix(`/`)\n    service: shoal-metrics\n",
    );
    let r = render_default(&s);
    let derived = shoal_config::parse(&r.gateway_stack, "g").unwrap();
    assert!(derived.service("shoal-metrics-2").is_some());
    assert_eq!(derived.routes.len(), 2);
}

#[test]
fn bad_options_are_refused() {
    let s = one_service("");
    for (opts, err) in [
        (
            Options {
                namespace: "Prod".into(),
                ..Options::default()
            },
            RenderError::BadNamespace("Prod".into()),
        ),
        (
            Options {
                cluster_domain: "bad..domain".into(),
                ..Options::default()
            },
            RenderError::BadClusterDomain("bad..domain".into()),
        ),
        (
            Options {
                gateway_replicas: 0,
                ..Options::default()
            },
            RenderError::NoGateway,
        ),
    ] {
        assert_eq!(render(&s, &opts).unwrap_err(), err);
    }
    // A stack checked for local processes may have services without an image.
    let local = shoal_config::parse(
        "services:\n  web:\n    command: [app]\nroutes:\n  - match: PathPrefix(`/`)\n    service: web\n",
        "f",
    )
    .unwrap();
    assert_eq!(
        render(&local, &Options::default()).unwrap_err(),
        RenderError::NoImage("web".into())
    );
}

#[test]
fn output_is_deterministic_and_split_by_kind() {
    let s = stack(FULL);
    let a = render_default(&s);
    let b = render_default(&s);
    assert_eq!(a.to_stream(), b.to_stream());
    assert!(a.to_stream().starts_with(Rendered::MARKER));
    let files = a.files();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "configmaps.yaml",
            "services.yaml",
            "deployments.yaml",
            "poddisruptionbudgets.yaml",
            "horizontalpodautoscalers.yaml",
            "kustomization.yaml"
        ]
    );
    for (name, text) in &files {
        assert!(text.starts_with(Rendered::MARKER), "{name}");
    }
    let kustomization: Value = serde_yaml::from_str(&files.last().unwrap().1).unwrap();
    assert_eq!(kustomization["resources"].as_sequence().unwrap().len(), 5);
    // Every object is in exactly one file.
    let documents: usize = files
        .iter()
        .map(|(_, t)| t.matches("\n---\n").count())
        .sum();
    assert_eq!(documents, a.manifests.len());

    // No HPA in the stack: no HPA file, and the kustomization does not list one.
    let files = render_default(&one_service("")).files();
    assert!(
        files
            .iter()
            .all(|(n, _)| n != "horizontalpodautoscalers.yaml")
    );
    assert!(!files.last().unwrap().1.contains("horizontalpodautoscalers"));
}
