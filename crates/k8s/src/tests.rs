//! Tests of the whole render, on small stacks written here.
use serde_norway::Value;
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

/// The gateway's stack file, validated as the in-cluster gateway reads it.
fn derived(r: &Rendered) -> Stack {
    let text = r.gateway_stack.as_deref().expect("a gateway stack file");
    shoal_config::parse_for(text, "gateway.yaml", Runtime::Kubernetes)
        .unwrap_or_else(|d| panic!("{d}\n{text}"))
}

/// The Role's last rule for `resource`.
fn role_rule<'a>(role: &'a Value, resource: &str) -> Option<&'a Value> {
    role["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .rfind(|r| r["resources"][0] == resource)
}

fn kinds(r: &Rendered) -> Vec<String> {
    r.manifests
        .iter()
        .map(|m| format!("{} {}", m.kind, m.name))
        .collect()
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
fn targets_hpa_cannot_read_are_shoals_autoscalers() {
    let r = render_default(&one_service(
        "    replicas: 2\n    autoscale: { min: 1, max: 6, concurrency: 5 }\n",
    ));
    assert!(find(&r, Kind::HorizontalPodAutoscaler, "web").is_none());
    let d = find(&r, Kind::Deployment, "web").unwrap();
    assert!(
        d["spec"].get("replicas").is_none(),
        "shoal's autoscaler owns the count"
    );
    let comments = manifest(&r, Kind::Deployment, "web").comments.join("\n");
    assert!(
        comments.contains("Scaled by shoal's in-cluster autoscaler on concurrency"),
        "{comments}"
    );
    // Its budget counts the most pods it can have.
    assert!(find(&r, Kind::PodDisruptionBudget, "web").is_some());
    // The gateway keeps `autoscale` and may scale this Deployment, and only it.
    let derived = derived(&r);
    let web = derived.service("web").unwrap();
    let Source::Command(c) = &web.source else {
        panic!("{:?}", web.source)
    };
    assert_eq!(c.autoscale.as_ref().unwrap().policy.max, 6);
    let role = find(&r, Kind::Role, GATEWAY_NAME).unwrap();
    assert!(role_rule(role, "deployments/scale").is_some());
    assert!(r.explain.warnings.is_empty(), "{:?}", r.explain.warnings);
}

#[test]
fn under_traefik_nothing_scales_them_and_the_render_says_so_loudly() {
    let opts = Options {
        ingress: Ingress::Traefik,
        ..Options::default()
    };
    let r = render(
        &one_service("    replicas: 2\n    autoscale: { min: 1, max: 6, concurrency: 5 }\n"),
        &opts,
    )
    .unwrap();
    let d = find(&r, Kind::Deployment, "web").unwrap();
    assert_eq!(d["spec"]["replicas"], 2, "the starting count, for good");
    let comments = manifest(&r, Kind::Deployment, "web").comments.join("\n");
    assert!(comments.contains("NOT AUTOSCALED"), "{comments}");
    assert!(
        r.explain
            .warnings
            .iter()
            .any(|w| w.contains("service `web`: NOT AUTOSCALED")),
        "{:?}",
        r.explain.warnings
    );
}

#[test]
fn a_cpu_target_makes_hpa_the_only_owner_and_the_others_are_not_acted_on() {
    let r = render_default(&one_service(
        "    autoscale: { min: 2, max: 9, cpu: 50%, concurrency: 5 }\n",
    ));
    assert!(find(&r, Kind::HorizontalPodAutoscaler, "web").is_some());
    let derived = derived(&r);
    let Source::Command(c) = &derived.service("web").unwrap().source else {
        panic!()
    };
    assert!(
        c.autoscale.is_none(),
        "shoal's autoscaler must not fight HPA"
    );
    let role = find(&r, Kind::Role, GATEWAY_NAME).unwrap();
    assert!(role_rule(role, "deployments/scale").is_none());
    assert!(
        r.explain
            .warnings
            .iter()
            .any(|w| w.contains("concurrency are not acted on")),
        "{:?}",
        r.explain.warnings
    );
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
fn the_gateway_stack_file_keeps_timeouts_per_service_and_route() {
    let original = stack(
        "gateway:\n  timeouts: { grpc_max: 90s }\nservices:\n  web:\n    image: ghcr.io/acme/web:1\n    timeouts: { response_header: 2m }\nroutes:\n  - match: PathPrefix(`/reports`)\n    service: web\n    timeouts: { response_header: 10m }\n  - match: PathPrefix(`/`)\n    service: web\n",
    );
    let derived = derived(&render_default(&original));
    assert_eq!(derived.gateway.timeouts, original.gateway.timeouts);
    assert_eq!(
        derived.service("web").unwrap().timeouts,
        original.service("web").unwrap().timeouts
    );
    for r in &original.routes {
        let d = derived.routes.iter().find(|d| d.name == r.name).unwrap();
        assert_eq!(d.timeouts, r.timeouts, "route {}", r.name);
    }
    assert_eq!(
        derived.routes[0].timeouts.response_header,
        Some(std::time::Duration::from_secs(600))
    );
}

#[test]
fn the_gateway_stack_file_is_valid_and_equivalent() {
    let original = stack(FULL);
    let r = render_default(&original);
    let derived = derived(&r);

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
        assert_eq!(a.timeouts, b.timeouts, "route {}", a.name);
        let eps = b.entrypoints.clone().unwrap();
        assert!(!eps.contains(&"shoal-metrics".to_owned()), "{eps:?}");
        if a.entrypoints.is_some() {
            assert_eq!(a.entrypoints, b.entrypoints);
        }
    }
    let metrics = metrics[0];
    assert_eq!(metrics.rule.source(), "Path(`/metrics`)");
    assert_eq!(metrics.entrypoints, Some(vec!["shoal-metrics".to_owned()]));

    // Services: replicated ones stay image services with what the gateway uses; static
    // servers as written.
    for a in &original.services {
        let b = derived.service(&a.name).unwrap();
        assert_eq!(a.retry, b.retry, "{}", a.name);
        assert_eq!(a.timeouts, b.timeouts, "{}", a.name);
        assert_eq!(a.circuit_breaker, b.circuit_breaker, "{}", a.name);
        assert_eq!(a.balance, b.balance, "{}", a.name);
        assert_eq!(a.protocol, b.protocol, "{}", a.name);
        assert_eq!(a.health, b.health, "{}", a.name);
        assert_eq!(a.passive, b.passive, "{}", a.name);
        match (&a.source, &b.source) {
            (Source::Command(x), Source::Command(y)) => {
                let (cx, cy) = (a.container.as_ref().unwrap(), b.container.as_ref().unwrap());
                assert_eq!((&cx.image, cx.port), (&cy.image, cy.port), "{}", a.name);
                assert!(y.argv.is_empty() && y.env.is_empty(), "{}", a.name);
                assert!(cy.args.is_empty(), "args are the pod's: {}", a.name);
                // `autoscale` only where shoal's autoscaler owns the count.
                let shoals = crate::scaling::Owner::of(x, cx, Ingress::Shoal)
                    == crate::scaling::Owner::Shoal;
                if shoals {
                    assert_eq!(x.autoscale, y.autoscale, "{}", a.name);
                } else {
                    assert_eq!(y.autoscale, None, "{}", a.name);
                }
            }
            (Source::Servers(x), Source::Servers(y)) => assert_eq!(x, y),
            other => panic!("{}: {other:?}", a.name),
        }
    }
    // In full.shoal.yaml: `reports` is shoal's (rps, latency), `api` HPA's (cpu and
    // concurrency), `worker` HPA's.
    let autoscaled: Vec<&str> = derived
        .services
        .iter()
        .filter(|s| matches!(&s.source, Source::Command(c) if c.autoscale.is_some()))
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(autoscaled, ["reports"]);
    let m = derived.service("shoal-metrics").unwrap();
    assert!(matches!(&m.source, Source::Servers(s) if s[0].url == "http://127.0.0.1:9000"));
}

#[test]
fn a_new_service_image_does_not_roll_the_gateway() {
    let hash = |image: &str| {
        let r = render_default(&one_service(&format!(
            "    replicas: 2\n    env: {{ X: {image} }}\n"
        )));
        let d = find(&r, Kind::Deployment, GATEWAY_NAME).unwrap().clone();
        d["spec"]["template"]["metadata"]["annotations"]["shoal.dev/stack-file-hash"].clone()
    };
    // env is the pod's: not in the gateway's file at all.
    assert_eq!(hash("a"), hash("b"));
    let with_image = |image: &str, retries: u32| {
        let s = stack(&format!(
            "services:\n  web:\n    image: {image}\n    retry: {{ attempts: {retries} }}\nroutes:\n  - match: PathPrefix(`/`)\n    service: web\n"
        ));
        let r = render_default(&s);
        assert!(r.gateway_stack.as_deref().unwrap().contains(image));
        find(&r, Kind::Deployment, GATEWAY_NAME).unwrap()["spec"]["template"]["metadata"]
            ["annotations"]["shoal.dev/stack-file-hash"]
            .clone()
    };
    assert_eq!(with_image("acme/web:1", 2), with_image("acme/web:2", 2));
    assert_ne!(with_image("acme/web:1", 2), with_image("acme/web:1", 3));
}

#[test]
fn the_gateway_runs_with_discovery_its_identity_and_its_rights() {
    let r = render_default(&one_service("    replicas: 2\n"));
    assert_eq!(
        kinds(&r),
        [
            "Service web",
            "Deployment web",
            "PodDisruptionBudget web",
            "ConfigMap shoal-gateway",
            "ServiceAccount shoal-gateway",
            "Role shoal-gateway",
            "RoleBinding shoal-gateway",
            "Service shoal-gateway",
            "Deployment shoal-gateway",
            "PodDisruptionBudget shoal-gateway",
            "ConfigMap shoal-grafana-dashboard",
        ]
    );
    let d = find(&r, Kind::Deployment, GATEWAY_NAME).unwrap();
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], GATEWAY_NAME);
    assert_eq!(pod["automountServiceAccountToken"], true);
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        &args[..5],
        [
            "up",
            "--discovery",
            "kubernetes",
            "--file",
            GATEWAY_STACK_PATH
        ]
    );
    let env = c["env"].as_sequence().unwrap();
    assert_eq!(env[0]["name"], NAMESPACE_ENV);
    assert_eq!(
        env[0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(env[1]["name"], POD_NAME_ENV);
    assert_eq!(
        env[1]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );

    let role = find(&r, Kind::Role, GATEWAY_NAME).unwrap();
    let slices = role_rule(role, "endpointslices").unwrap();
    assert_eq!(slices["apiGroups"][0], "discovery.k8s.io");
    assert_eq!(
        slices["verbs"],
        serde_norway::from_str::<Value>("[get, list, watch]").unwrap()
    );
    let leases = role_rule(role, "leases").unwrap();
    assert_eq!(leases["resourceNames"][0], LEASE_NAME);
    // A fixed count is the manifest's: no scale rights.
    assert!(role_rule(role, "deployments/scale").is_none());
    assert_eq!(
        role_rule(role, "deployments").unwrap()["resourceNames"][0],
        "web"
    );
    // The Role's comments say why each rule is there.
    let comments = manifest(&r, Kind::Role, GATEWAY_NAME).comments.join("\n");
    assert!(comments.contains("leader election"), "{comments}");
}

#[test]
fn a_service_monitor_replaces_the_scrape_annotations() {
    let opts = Options {
        service_monitor: true,
        ..Options::default()
    };
    let r = render(&one_service(""), &opts).unwrap();
    let d = find(&r, Kind::Deployment, GATEWAY_NAME).unwrap();
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    assert!(ann.get("prometheus.io/scrape").is_none(), "{ann:?}");
    assert!(ann.get("shoal.dev/stack-file-hash").is_some());
    let svc = find(&r, Kind::Service, METRICS_SERVICE_NAME).unwrap();
    assert_eq!(svc["spec"]["clusterIP"], "None");
    assert_eq!(svc["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(svc["spec"]["ports"][0]["port"], 9090);
    let sm = find(&r, Kind::ServiceMonitor, GATEWAY_NAME).unwrap();
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    // The ServiceMonitor selects the metrics Service and not the gateway's own (which may
    // be a LoadBalancer).
    let selector = sm["spec"]["selector"]["matchLabels"].as_mapping().unwrap();
    let selects = |labels: &Value| {
        selector
            .iter()
            .all(|(k, v)| labels.get(k.as_str().unwrap()) == Some(v))
    };
    assert!(selects(&svc["metadata"]["labels"]));
    let gateway_svc = find(&r, Kind::Service, GATEWAY_NAME).unwrap();
    assert!(!selects(&gateway_svc["metadata"]["labels"]));
    // And the metrics Service selects the gateway's pods.
    assert_eq!(
        svc["spec"]["selector"],
        d["spec"]["selector"]["matchLabels"]
    );

    // A service of that name would collide.
    let s = stack(
        "services:\n  shoal-gateway-metrics:\n    image: x:1\nroutes:\n  - match: PathPrefix(`/`)\n    service: shoal-gateway-metrics\n",
    );
    assert_eq!(
        render(&s, &opts).unwrap_err(),
        RenderError::NameTaken("shoal-gateway-metrics".into())
    );
    assert!(
        render(&s, &Options::default()).is_ok(),
        "no collision without a ServiceMonitor"
    );
}

#[test]
fn the_grafana_dashboard_is_a_configmap_for_the_sidecar_unless_left_out() {
    let r = render_default(&one_service(""));
    let cm = find(&r, Kind::ConfigMap, DASHBOARD_NAME).unwrap();
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let json = cm["data"]["shoal.json"].as_str().unwrap();
    assert!(json.contains("${DS_PROMETHEUS}") && !json.contains("__inputs"));
    let opts = Options {
        grafana_dashboard: false,
        ..Options::default()
    };
    let r = render(&one_service(""), &opts).unwrap();
    assert!(find(&r, Kind::ConfigMap, DASHBOARD_NAME).is_none());
}

#[test]
fn traefik_gets_an_ingressroute_per_route_and_a_middleware_per_middleware() {
    let opts = Options {
        ingress: Ingress::Traefik,
        ..Options::default()
    };
    let r = render(&stack(FULL), &opts).unwrap();
    assert!(r.gateway_stack.is_none());
    for m in &r.manifests {
        assert!(
            !m.name.starts_with("shoal-"),
            "no shoal gateway objects: {} {}",
            m.kind,
            m.name
        );
        assert!(
            !matches!(
                m.kind,
                Kind::ServiceAccount
                    | Kind::Role
                    | Kind::RoleBinding
                    | Kind::ConfigMap
                    | Kind::ServiceMonitor
            ),
            "{} {}",
            m.kind,
            m.name
        );
    }
    let api = find(&r, Kind::IngressRoute, "api").unwrap();
    assert_eq!(api["apiVersion"], "traefik.io/v1alpha1");
    let route = &api["spec"]["routes"][0];
    assert_eq!(route["kind"], "Rule");
    assert_eq!(
        route["match"],
        "Host(`api.example.com`) && PathPrefix(`/api`)"
    );
    assert_eq!(route["services"][0]["name"], "api");
    assert_eq!(route["services"][0]["port"], 9000);
    let mws: Vec<&str> = route["middlewares"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(mws, ["api-strip-prefix", "api-headers", "api-add-prefix"]);
    let strip = find(&r, Kind::Middleware, "api-strip-prefix").unwrap();
    assert_eq!(strip["spec"]["stripPrefix"]["prefixes"][0], "/api");
    let headers = &find(&r, Kind::Middleware, "api-headers").unwrap()["spec"]["headers"];
    assert_eq!(headers["customRequestHeaders"]["x-env"], "prod");
    assert_eq!(
        headers["customRequestHeaders"]["cookie"], "",
        "\"\" removes"
    );
    assert_eq!(headers["customResponseHeaders"]["server"], "");
    assert_eq!(headers["customResponseHeaders"]["x-frame-options"], "DENY");
    // A route name that is not a Kubernetes name.
    assert!(find(&r, Kind::IngressRoute, "reports-public").is_some());
    let add = find(&r, Kind::Middleware, "api-add-prefix").unwrap();
    assert_eq!(add["spec"]["addPrefix"]["prefix"], "/v1");
    assert_eq!(api["spec"]["entryPoints"].as_sequence().unwrap().len(), 2);
    // A route limited to one entrypoint; h2c and sticky carried.
    let rpc = find(&r, Kind::IngressRoute, "route-1").unwrap();
    assert_eq!(rpc["spec"]["entryPoints"][0], "internal-traffic");
    assert_eq!(rpc["spec"]["entryPoints"].as_sequence().unwrap().len(), 1);
    let grpc = &rpc["spec"]["routes"][0]["services"][0];
    assert_eq!(grpc["scheme"], "h2c");
    assert_eq!(grpc["sticky"]["cookie"]["name"], "shoal_grpc");
    // The route to static servers is left out, with a warning.
    assert!(find(&r, Kind::IngressRoute, "route-4").is_none());
    assert!(
        r.explain
            .warnings
            .iter()
            .any(|w| w.contains("`legacy` is `servers:`")),
        "{:?}",
        r.explain.warnings
    );
    // Services still get their workloads and HPAs.
    assert!(find(&r, Kind::HorizontalPodAutoscaler, "api").is_some());
    assert!(find(&r, Kind::Deployment, "reports").is_some());
    // A ServiceMonitor without shoal's gateway is refused.
    let opts = Options {
        service_monitor: true,
        ..opts
    };
    assert_eq!(
        render(&stack(FULL), &opts).unwrap_err(),
        RenderError::ServiceMonitorWithoutGateway
    );
}

#[test]
fn namespace_and_service_type_are_used() {
    let opts = Options {
        namespace: "shop".into(),
        gateway_service: GatewayService::NodePort,
        gateway_image: "registry.local/shoal:dev".into(),
        gateway_replicas: 1,
        ..Options::default()
    };
    let r = render(&one_service(""), &opts).unwrap();
    assert!(
        r.manifests
            .iter()
            .all(|m| m.body["metadata"]["namespace"] == "shop")
    );
    let binding = find(&r, Kind::RoleBinding, GATEWAY_NAME).unwrap();
    assert_eq!(binding["subjects"][0]["namespace"], "shop");
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
    let derived = derived(&r);
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
    let derived = derived(&r);
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
    let derived = derived(&r);
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
            "serviceaccounts.yaml",
            "roles.yaml",
            "rolebindings.yaml",
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
    let kustomization: Value = serde_norway::from_str(&files.last().unwrap().1).unwrap();
    assert_eq!(kustomization["resources"].as_sequence().unwrap().len(), 8);
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

// TLS and the edge middlewares (issue 17).

/// Marks the text of every private key the edge stacks name: no render may contain it.
const KEY_MARK: &str = "KEY-MATERIAL-THAT-MUST-NEVER-LEAVE-THE-FILE";

const BCRYPT: &str = "$2y$05$5X.pSxinciEBw7yo08.hSua4ACQdHfQwkHJc6NjhLISUp.zxoZ.1C";
const ARGON2: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2l4dGVlbiBieXRlIHNsdA$9sTbSlTio3Biev89thdrlKKiCaYsjjYVJxGAL3swxpQ";

fn route<'a>(s: &'a Stack, name: &str) -> &'a shoal_config::Route {
    s.routes
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route {name}"))
}

/// A folder with the certificates, keys and CA bundle the edge stacks name, and `yaml`
/// written into it as shoal.yaml and loaded for Kubernetes.
fn edge_stack(yaml: &str) -> (tempfile::TempDir, Stack) {
    let dir = tempfile::tempdir().unwrap();
    for name in ["shop", "admin"] {
        std::fs::write(
            dir.path().join(format!("{name}.crt")),
            format!("-----BEGIN CERTIFICATE-----\nCERT-{name}\n-----END CERTIFICATE-----\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(format!("{name}.key")),
            format!("-----BEGIN PRIVATE KEY-----\n{KEY_MARK}-{name}\n-----END PRIVATE KEY-----\n"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("ca.pem"),
        "-----BEGIN CERTIFICATE-----\nTHE-CA-BUNDLE\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let file = dir.path().join("shoal.yaml");
    std::fs::write(&file, yaml).unwrap();
    let stack = shoal_config::load_for(&file, Runtime::Kubernetes)
        .unwrap_or_else(|d| panic!("{d}\n{yaml}"));
    (dir, stack)
}

const EDGE: &str = "\
gateway:
  entrypoints:
    web: { listen: 127.0.0.1:8000, redirect_to: websecure }
    websecure:
      listen: 127.0.0.1:8443
      tls:
        certificates: [{ cert: shop.crt, key: shop.key }, { cert: admin.crt, key: admin.key }]
        min_version: '1.3'
services:
  api:
    image: ghcr.io/acme/api:1
    port: 8443
    protocol: h2
    tls: { ca: ca.pem, server_name: api.internal }
  legacy:
    servers: [https://legacy.example.com:8443]
    tls: { insecure_skip_verify: true }
routes:
  - name: api
    match: PathPrefix(`/api`)
    service: api
  - name: legacy
    match: PathPrefix(`/legacy`)
    service: legacy
";

/// The gateway's stack file as its pod reads it: the files its volume mounts, at their
/// paths under a folder standing for `/etc/shoal`, with the given contents.
fn derived_in_pod(r: &Rendered) -> (tempfile::TempDir, Stack) {
    let pod = tempfile::tempdir().unwrap();
    let d = find(r, Kind::Deployment, GATEWAY_NAME).unwrap();
    let volume = &d["spec"]["template"]["spec"]["volumes"][0];
    for source in volume["projected"]["sources"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        let items = source["secret"]["items"]
            .as_sequence()
            .or(source["configMap"]["items"].as_sequence());
        for item in items.into_iter().flatten() {
            let path = pod.path().join(item["path"].as_str().unwrap());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "mounted").unwrap();
        }
    }
    let text = r
        .gateway_stack
        .as_deref()
        .unwrap()
        .replace("/etc/shoal/", &format!("{}/", pod.path().display()));
    let stack = shoal_config::parse_for(&text, "gateway.yaml", Runtime::Kubernetes)
        .unwrap_or_else(|d| panic!("{d}\n{text}"));
    (pod, stack)
}

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).unwrap()
}

#[test]
fn tls_certificates_come_from_secrets_mounted_read_only_into_the_gateway() {
    let (dir, s) = edge_stack(EDGE);
    let opts = Options {
        namespace: "shop".into(),
        ..Options::default()
    };
    let r = render(&s, &opts).unwrap();
    // The Secrets are the user's to create: none is rendered.
    assert!(
        r.manifests.iter().all(|m| m.kind != Kind::Secret),
        "{:?}",
        kinds(&r)
    );
    let d = find(&r, Kind::Deployment, GATEWAY_NAME).unwrap();
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0],
        yaml(
            "name: stack
projected:
  sources:
  - configMap: { name: shoal-gateway }
  - secret:
      name: shoal-tls-websecure
      items:
      - { key: tls.crt, path: tls/shoal-tls-websecure/tls.crt }
      - { key: tls.key, path: tls/shoal-tls-websecure/tls.key, mode: 288 }
  - secret:
      name: shoal-tls-websecure-2
      items:
      - { key: tls.crt, path: tls/shoal-tls-websecure-2/tls.crt }
      - { key: tls.key, path: tls/shoal-tls-websecure-2/tls.key, mode: 288 }
  - configMap:
      name: shoal-ca-api
      items:
      - { key: ca.crt, path: ca/shoal-ca-api/ca.crt }
"
        )
    );
    assert_eq!(
        pod["containers"][0]["volumeMounts"][0],
        yaml("{ name: stack, mountPath: /etc/shoal, readOnly: true }")
    );
    // 0440 keys, readable through the pod's group.
    assert_eq!(pod["securityContext"]["fsGroup"], 65532);
    // The CA bundle is public: its ConfigMap holds it as the file has it.
    let ca = find(&r, Kind::ConfigMap, "shoal-ca-api").unwrap();
    assert_eq!(
        ca["data"]["ca.crt"],
        "-----BEGIN CERTIFICATE-----\nTHE-CA-BUNDLE\n-----END CERTIFICATE-----\n"
    );
    assert_eq!(ca["metadata"]["namespace"], "shop");
    // The warnings say which Secrets to create, from which files.
    let d = dir.path().display();
    for (secret, file) in [
        ("shoal-tls-websecure", "shop"),
        ("shoal-tls-websecure-2", "admin"),
    ] {
        let command = format!(
            "`kubectl create secret tls {secret} --cert={d}/{file}.crt --key={d}/{file}.key -n shop`"
        );
        assert!(
            r.explain.warnings.iter().any(|w| w.contains(&command)),
            "{command} in {:#?}",
            r.explain.warnings
        );
    }
    let text = r.explain.to_text("x");
    assert!(
        text.contains("Secret shoal-tls-websecure (type kubernetes.io/tls, not rendered: create it), mounted read-only at /etc/shoal/tls/shoal-tls-websecure/"),
        "{text}"
    );
    assert!(
        r.explain
            .warnings
            .iter()
            .any(|w| w.starts_with("service `legacy`: tls.insecure_skip_verify is carried")),
        "{:?}",
        r.explain.warnings
    );

    // The gateway's stack file names the mounted paths, and keeps the rest.
    let (pod_dir, derived) = derived_in_pod(&r);
    let p = pod_dir.path();
    let websecure = derived
        .gateway
        .entrypoints
        .iter()
        .find(|e| e.name == "websecure")
        .unwrap();
    let tls = websecure.tls.as_ref().unwrap();
    let files: Vec<(std::path::PathBuf, std::path::PathBuf)> = tls
        .certificates
        .iter()
        .map(|c| (c.cert.clone(), c.key.clone()))
        .collect();
    assert_eq!(
        files,
        [
            (
                p.join("tls/shoal-tls-websecure/tls.crt"),
                p.join("tls/shoal-tls-websecure/tls.key")
            ),
            (
                p.join("tls/shoal-tls-websecure-2/tls.crt"),
                p.join("tls/shoal-tls-websecure-2/tls.key")
            ),
        ]
    );
    assert_eq!(tls.min_version, shoal_config::TlsVersion::Tls13);
    let web = derived
        .gateway
        .entrypoints
        .iter()
        .find(|e| e.name == "web")
        .unwrap();
    assert_eq!(
        web.redirect_to,
        Some(shoal_config::RedirectHttps {
            entrypoint: "websecure".into(),
            port: 8443
        })
    );
    let api = derived.service("api").unwrap();
    assert_eq!(api.protocol, shoal_config::Protocol::H2);
    assert_eq!(
        api.tls,
        Some(shoal_config::UpstreamTls {
            ca: Some(p.join("ca/shoal-ca-api/ca.crt")),
            server_name: Some("api.internal".into()),
            insecure_skip_verify: false,
        })
    );
    assert_eq!(
        derived.service("legacy").unwrap().tls,
        s.service("legacy").unwrap().tls
    );
}

#[test]
fn no_private_key_material_is_in_any_render() {
    let (_dir, s) = edge_stack(EDGE);
    for ingress in [Ingress::Shoal, Ingress::Traefik] {
        let r = render(
            &s,
            &Options {
                ingress,
                ..Options::default()
            },
        )
        .unwrap();
        let mut texts = vec![r.to_stream(), r.explain.to_text("x")];
        texts.extend(r.files().into_iter().map(|(_, t)| t));
        texts.extend(r.gateway_stack.clone());
        for t in &texts {
            assert!(!t.contains(KEY_MARK), "{ingress:?}: key material in\n{t}");
            assert!(!t.contains("PRIVATE KEY"), "{ingress:?}: a key in\n{t}");
        }
    }
    // A CA bundle with a key in it is refused rather than put into a ConfigMap.
    let (dir, s) = edge_stack(EDGE);
    let mut ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    ca.push_str(&std::fs::read_to_string(dir.path().join("shop.key")).unwrap());
    std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
    let err = render(&s, &Options::default()).unwrap_err();
    assert!(
        matches!(&err, RenderError::CaBundle { service, .. } if service == "api"),
        "{err:?}"
    );
    assert!(err.to_string().contains("holds a private key"), "{err}");
}

/// Every middleware kind of issue 17 on one route, a chain among them.
fn middlewares_stack(extra_middlewares: &str) -> String {
    format!(
        "\
services:
  web:
    image: ghcr.io/acme/web:1
middlewares:
  limited: {{ rate_limit: {{ average: 10, period: 2s, burst: 20, depth: 1 }} }}
  per-tenant: {{ rate_limit: {{ average: 100, period: 1m, key: \"header:X-Tenant\" }} }}
  conc: {{ in_flight_req: {{ amount: 7 }} }}
  auth: {{ basic_auth: {{ users: [\"alice:{BCRYPT}\"], realm: shop, remove_header: true, header_field: X-User }} }}
  office: {{ ip_allow_list: {{ source_range: [10.0.0.0/8, 2001:db8::1], depth: 2 }} }}
  to-https: {{ redirect_scheme: {{ scheme: https, port: 8443 }} }}
  old: {{ redirect_regex: {{ regex: \"^http://old/(.*)\", replacement: \"https://new/${{1}}\", permanent: true }} }}
  rw: {{ replace_path_regex: {{ regex: \"^/v1/(.*)\", replacement: \"/api/$1\" }} }}
  gz: {{ compress: {{ encodings: [br, gzip], min_response_body_bytes: 2048, excluded_content_types: [image/png, video/*] }} }}
  small: {{ buffering: {{ max_request_body_bytes: 1MiB }} }}
  cors: {{ cors: {{ allow_origins: [https://a.example], allow_methods: [GET, PUT], allow_headers: [X-Api-Key], expose_headers: [X-Id], allow_credentials: true, max_age: 10m }} }}
  edge: {{ chain: [limited, auth] }}
{extra_middlewares}routes:
  - name: all
    match: PathPrefix(`/`)
    service: web
    middlewares: [edge, per-tenant, conc, office, to-https, old, rw, gz, small, cors]
"
    )
}

#[test]
fn the_edge_middlewares_are_written_back_as_the_gateway_reads_them() {
    let original = stack(&middlewares_stack(""));
    let r = render_default(&original);
    let back = derived(&r);
    let (a, b) = (&original.routes[0], route(&back, "all"));
    assert_eq!(a.middlewares.len(), 11, "the chain is expanded");
    assert_eq!(a.middlewares, b.middlewares);
    // Defaults are written out, so the derived file does not depend on them.
    let text = r.gateway_stack.as_deref().unwrap();
    assert!(text.contains("max_keys: 1000000"), "{text}");
    assert!(text.contains("realm: shop"), "{text}");
    // The same for a route-wide key and a default compress.
    let original = stack(
        &middlewares_stack(
            "  whole: { rate_limit: { average: 5, key: route } }\n  gz2: { compress: true }\n",
        )
        .replace("[edge, per-tenant,", "[whole, gz2, edge, per-tenant,"),
    );
    let back = derived(&render_default(&original));
    assert_eq!(
        original.routes[0].middlewares,
        route(&back, "all").middlewares
    );
}

#[test]
fn each_edge_middleware_becomes_its_traefik_middleware() {
    let opts = Options {
        ingress: Ingress::Traefik,
        ..Options::default()
    };
    let r = render(&stack(&middlewares_stack("")), &opts).unwrap();
    let spec = |name: &str| {
        find(&r, Kind::Middleware, name)
            .unwrap_or_else(|| panic!("no Middleware {name}: {:?}", kinds(&r)))["spec"]
            .clone()
    };
    for (name, want) in [
        (
            "all-rate-limit",
            "rateLimit: { average: 10, period: 2s, burst: 20, sourceCriterion: { ipStrategy: { depth: 1 } } }",
        ),
        (
            "all-rate-limit-2",
            "rateLimit: { average: 100, period: 60s, burst: 1, sourceCriterion: { requestHeaderName: x-tenant } }",
        ),
        (
            "all-basic-auth",
            "basicAuth: { secret: all-basic-auth, realm: shop, removeHeader: true, headerField: x-user }",
        ),
        (
            "all-in-flight-req",
            "inFlightReq: { amount: 7, sourceCriterion: { ipStrategy: { depth: 0 } } }",
        ),
        (
            "all-ip-allow-list",
            "ipAllowList: { sourceRange: [10.0.0.0/8, 2001:db8::1/128], ipStrategy: { depth: 2 } }",
        ),
        (
            "all-redirect-scheme",
            "redirectScheme: { scheme: https, port: '8443', permanent: true }",
        ),
        (
            "all-redirect-regex",
            "redirectRegex: { regex: '^http://old/(.*)', replacement: 'https://new/${1}', permanent: true }",
        ),
        (
            "all-replace-path-regex",
            "replacePathRegex: { regex: '^/v1/(.*)', replacement: '/api/$1' }",
        ),
        (
            "all-compress",
            "compress: { encodings: [br, gzip], minResponseBodyBytes: 2048, excludedContentTypes: [image/png, video/*] }",
        ),
        (
            "all-buffering",
            "buffering: { maxRequestBodyBytes: 1048576 }",
        ),
        (
            "all-cors",
            "headers: { accessControlAllowOriginList: [https://a.example], accessControlAllowMethods: [GET, PUT], accessControlAllowHeaders: [x-api-key], accessControlExposeHeaders: [x-id], accessControlAllowCredentials: true, accessControlMaxAge: 600, addVaryHeader: true }",
        ),
    ] {
        assert_eq!(spec(name), yaml(want), "{name}");
    }
    // In the route's order.
    let route = &find(&r, Kind::IngressRoute, "all").unwrap()["spec"]["routes"][0];
    let refs: Vec<&str> = route["middlewares"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        refs,
        [
            "all-rate-limit",
            "all-basic-auth",
            "all-rate-limit-2",
            "all-in-flight-req",
            "all-ip-allow-list",
            "all-redirect-scheme",
            "all-redirect-regex",
            "all-replace-path-regex",
            "all-compress",
            "all-buffering",
            "all-cors"
        ]
    );
    // basicAuth's users: htpasswd lines (hashes) under the one key of an Opaque Secret.
    let secret = find(&r, Kind::Secret, "all-basic-auth").unwrap();
    assert_eq!(secret["apiVersion"], "v1");
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(
        secret["stringData"],
        yaml(&format!("users: \"alice:{BCRYPT}\\n\""))
    );
    // Traefik v3.1's `encodings`, and `type/*`, are said.
    let w = r.explain.warnings.join("\n");
    assert!(
        w.contains("route `all`: compress offers only br, gzip: Traefik's `encodings` field is Traefik v3.1's"),
        "{w}"
    );
    let n = r.explain.not_carried.join("\n");
    assert!(n.contains("so such an entry excludes nothing there"), "{n}");
    assert!(n.contains("Traefik answers GET with 301"), "{n}");
    assert!(n.contains("rate_limit.max_keys"), "{n}");
}

#[test]
fn what_traefik_cannot_say_is_warned_about() {
    let opts = Options {
        ingress: Ingress::Traefik,
        ..Options::default()
    };
    let s = stack(&format!(
        "services:\n  web:\n    image: x:1\nmiddlewares:\n  whole: {{ in_flight_req: {{ amount: 3, key: route }} }}\n  auth: {{ basic_auth: {{ users: [\"alice:{BCRYPT}\", \"bob:{ARGON2}\"] }} }}\n  gz: {{ compress: true }}\nroutes:\n  - match: PathPrefix(`/`)\n    service: web\n    middlewares: [whole, auth, gz]\n"
    ));
    let r = render(&s, &opts).unwrap();
    let name = &r
        .manifests
        .iter()
        .find(|m| m.kind == Kind::IngressRoute)
        .unwrap()
        .name;
    let mw =
        |kind: &str| find(&r, Kind::Middleware, &format!("{name}-{kind}")).unwrap()["spec"].clone();
    assert_eq!(
        mw("in-flight-req"),
        yaml("inFlightReq: { amount: 3, sourceCriterion: { requestHost: true } }")
    );
    // All three encodings: no `encodings` field (Traefik v3.0 has none, and offers all).
    assert!(mw("compress")["compress"].get("encodings").is_none());
    let w = r.explain.warnings.join("\n");
    assert!(
        w.contains("in_flight_req with `key: route` (one limit for the whole route) has no Traefik equivalent"),
        "{w}"
    );
    assert!(
        w.contains(
            "basic_auth users bob have argon2 hashes, which Traefik's basicAuth cannot check"
        ),
        "{w}"
    );
    assert!(!w.contains("alice"), "{w}");
}

#[test]
fn under_traefik_tls_entrypoints_get_their_own_ingressroutes_and_http_redirects() {
    let (_dir, s) = edge_stack(EDGE);
    let opts = Options {
        ingress: Ingress::Traefik,
        ..Options::default()
    };
    let r = render(&s, &opts).unwrap();
    // `web` redirects every request: the routes are on `websecure` only, with its Secret.
    let api = find(&r, Kind::IngressRoute, "api").unwrap();
    assert_eq!(api["spec"]["entryPoints"], yaml("[websecure]"));
    assert_eq!(
        api["spec"]["tls"],
        yaml("{ secretName: shoal-tls-websecure }")
    );
    let backend = &api["spec"]["routes"][0]["services"][0];
    assert_eq!(backend, &yaml("{ name: api, port: 8443, scheme: https }"));
    let redirect = find(&r, Kind::IngressRoute, "web-redirect-to-https").unwrap();
    assert_eq!(
        redirect["spec"],
        yaml(
            "entryPoints: [web]
routes:
- kind: Rule
  match: PathPrefix(`/`)
  priority: 1
  middlewares: [{ name: web-redirect-to-https }]
  services: [{ name: noop@internal, kind: TraefikService }]
"
        )
    );
    assert_eq!(
        find(&r, Kind::Middleware, "web-redirect-to-https").unwrap()["spec"],
        yaml("redirectScheme: { scheme: https, permanent: true }")
    );
    // The Secrets to create, the second certificate, min_version 1.3: said, not rendered.
    assert!(r.manifests.iter().all(|m| m.kind != Kind::Secret));
    let w = r.explain.warnings.join("\n");
    assert!(
        w.contains("`kubectl create secret tls shoal-tls-websecure --cert="),
        "{w}"
    );
    assert!(
        w.contains("the Secret shoal-tls-websecure-2 is named by none"),
        "{w}"
    );
    assert!(w.contains("min_version 1.3 is not carried"), "{w}");

    // Plain and TLS entrypoints together: one IngressRoute each.
    let (_dir, s) = edge_stack(&EDGE.replace(", redirect_to: websecure", ""));
    let r = render(&s, &opts).unwrap();
    let plain = find(&r, Kind::IngressRoute, "api").unwrap();
    assert_eq!(plain["spec"]["entryPoints"], yaml("[web]"));
    assert!(plain["spec"].get("tls").is_none());
    let secure = find(&r, Kind::IngressRoute, "api-websecure").unwrap();
    assert_eq!(secure["spec"]["entryPoints"], yaml("[websecure]"));
    assert_eq!(secure["spec"]["tls"]["secretName"], "shoal-tls-websecure");
    assert_eq!(secure["spec"]["routes"], plain["spec"]["routes"]);
}

#[test]
fn rollout_becomes_the_deployment_strategy_and_progress_deadline() {
    let deployment = |fields: &str| {
        let r = render_default(&one_service(fields));
        let d = find(&r, Kind::Deployment, "web").unwrap()["spec"].clone();
        (d, r.explain.to_text(""))
    };
    // shoal's defaults, not Kubernetes' (25% / 25%): a new pod is ready before an old one
    // stops.
    let (spec, _) = deployment("");
    assert_eq!(
        spec["strategy"],
        yaml("type: RollingUpdate\nrollingUpdate: { maxSurge: 1, maxUnavailable: 0 }\n")
    );
    assert_eq!(spec["progressDeadlineSeconds"], 60);
    let (spec, explain) = deployment(
        "    version: v2\n    rollout: { max_surge: 25%, max_unavailable: 1, progress_deadline: 1500ms }\n",
    );
    assert_eq!(
        spec["strategy"],
        yaml("type: RollingUpdate\nrollingUpdate: { maxSurge: 25%, maxUnavailable: 1 }\n")
    );
    assert_eq!(
        spec["progressDeadlineSeconds"], 2,
        "rounded up to whole seconds"
    );
    assert!(
        explain.contains(
            "Deployment web: strategy RollingUpdate (maxSurge 25%, maxUnavailable 1), progressDeadlineSeconds 2"
        ),
        "{explain}"
    );
    assert!(
        explain.contains("`kubectl rollout undo` goes back"),
        "{explain}"
    );
}

const SPLIT_STACK: &str = "services:
  api:
    image: ghcr.io/acme/api:1
  api-v2:
    image: ghcr.io/acme/api:2
  shadow:
    image: ghcr.io/acme/api:3
routes:
  - name: shop
    match: PathPrefix(`/`)
    services: [{ name: api, weight: 90 }, { name: api-v2, weight: 10 }]
    sticky: true
    canary: { service: api-v2, interval: 250ms, max_error_increase: 2%, max_p95_ratio: 1.25 }
    mirror: { service: shadow, percent: 12.5, max_body: 64KiB }
  - name: mirrored
    match: PathPrefix(`/b`)
    service: api
    mirror: { service: shadow }
";

#[test]
fn the_gateway_stack_file_carries_splits_canaries_and_mirrors() {
    let original = stack(SPLIT_STACK);
    let derived = derived(&render_default(&original));
    for r in &original.routes {
        let d = route(&derived, &r.name);
        assert_eq!(d.service, r.service, "route {}", r.name);
        assert_eq!(d.split, r.split, "route {}", r.name);
        assert_eq!(d.mirror, r.mirror, "route {}", r.name);
    }
    let shop = route(&original, "shop");
    assert_eq!(shop.split.as_ref().unwrap().targets.len(), 2);
    assert!(shop.split.as_ref().unwrap().canary.is_some());
    assert!(route(&original, "mirrored").mirror.is_some());
}

#[test]
fn traefik_refuses_splits_and_mirrors_naming_the_route() {
    let traefik = Options {
        ingress: Ingress::Traefik,
        ..Options::default()
    };
    let split_only = SPLIT_STACK.replace("    mirror: { service: shadow }\n", "");
    let err = render(&stack(&split_only), &traefik).unwrap_err();
    assert_eq!(
        err,
        RenderError::TraefikSplit {
            route: "shop".into(),
            what: "services"
        }
    );
    assert!(
        err.to_string().starts_with(
            "route `shop`: `services` is not rendered for `--ingress traefik` (it would need a TraefikService)"
        ),
        "{err}"
    );
    let mirror_only = SPLIT_STACK.replace(
        "    services: [{ name: api, weight: 90 }, { name: api-v2, weight: 10 }]\n    sticky: true\n    canary: { service: api-v2, interval: 250ms, max_error_increase: 2%, max_p95_ratio: 1.25 }\n    mirror: { service: shadow, percent: 12.5, max_body: 64KiB }\n",
        "    service: api\n",
    );
    assert_eq!(
        render(&stack(&mirror_only), &traefik).unwrap_err(),
        RenderError::TraefikSplit {
            route: "mirrored".into(),
            what: "mirror"
        }
    );
    // Without either, the same stack renders for Traefik.
    let plain = mirror_only.replace("    mirror: { service: shadow }\n", "");
    assert!(render(&stack(&plain), &traefik).is_ok());
}
