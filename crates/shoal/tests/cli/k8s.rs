//! `shoal k8s render`: the real binary on the example and on broken stacks, the folder
//! layout, `--explain`, `--service-monitor`, `--ingress traefik`, and the gateway's derived
//! stack file run by a real `shoal up` (the part of the render that can run on this machine:
//! no Kubernetes API server can).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(15);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn golden(name: &str) -> String {
    std::fs::read_to_string(workspace().join("crates/k8s/tests/golden").join(name)).unwrap()
}

#[test]
fn render_of_the_example_is_the_golden_stream() {
    let out = run_in(
        &workspace(),
        &["k8s", "render", "-f", "examples/k8s/shoal.yaml"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), golden("demo.yaml"));
    assert_eq!(stderr(&out), "", "no warnings for the demo");

    let out = run_in(
        &workspace(),
        &[
            "k8s",
            "render",
            "-f",
            "examples/k8s/shoal.yaml",
            "--service-monitor",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), golden("demo-service-monitor.yaml"));
}

#[test]
fn ingress_traefik_renders_routes_for_traefik_and_warns_about_what_nothing_scales() {
    let full = "crates/k8s/tests/golden/full.shoal.yaml";
    let out = run_in(
        &workspace(),
        &["k8s", "render", "-f", full, "--ingress", "traefik"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), golden("full-traefik.yaml"));
    let err = stderr(&out);
    assert!(
        err.contains("warning: service `reports`: NOT AUTOSCALED"),
        "{err}"
    );
    assert!(
        err.contains("warning: route `route-4` is left out"),
        "{err}"
    );

    // No shoal gateway to scrape.
    let out = run_in(
        &workspace(),
        &[
            "k8s",
            "render",
            "-f",
            full,
            "--ingress",
            "traefik",
            "--service-monitor",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("ServiceMonitor"), "{}", stderr(&out));
    let out = run_in(
        &workspace(),
        &["k8s", "render", "-f", full, "--ingress", "nginx"],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn render_to_a_folder_writes_a_file_per_kind_and_a_kustomization() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("k8s");
    std::fs::create_dir(&out_dir).unwrap();
    // Left from an earlier render (the demo has no HPA now), and a file of the user's.
    let stale = out_dir.join("horizontalpodautoscalers.yaml");
    std::fs::write(&stale, "# Rendered by `shoal k8s render` from old.yaml\n").unwrap();
    std::fs::write(out_dir.join("notes.yaml"), "# mine\n").unwrap();

    let out = run_in(
        &workspace(),
        &[
            "k8s",
            "render",
            "-f",
            "examples/k8s/shoal.yaml",
            "-o",
            out_dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "no stream with -o");
    assert!(
        stderr(&out).contains("kubectl apply -k"),
        "{}",
        stderr(&out)
    );
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "configmaps.yaml",
            "deployments.yaml",
            "kustomization.yaml",
            "notes.yaml",
            "poddisruptionbudgets.yaml",
            "rolebindings.yaml",
            "roles.yaml",
            "serviceaccounts.yaml",
            "services.yaml"
        ]
    );
    let kustomization = std::fs::read_to_string(out_dir.join("kustomization.yaml")).unwrap();
    for f in [
        "configmaps.yaml",
        "serviceaccounts.yaml",
        "roles.yaml",
        "rolebindings.yaml",
        "services.yaml",
        "deployments.yaml",
        "poddisruptionbudgets.yaml",
    ] {
        assert!(
            kustomization.contains(&format!("- {f}\n")),
            "{kustomization}"
        );
    }
    // The files hold the same objects as the stream.
    let documents = |t: &str| t.matches("\n---\n").count();
    let in_files: usize = names
        .iter()
        .filter(|n| *n != "kustomization.yaml" && *n != "notes.yaml")
        .map(|n| documents(&std::fs::read_to_string(out_dir.join(n)).unwrap()))
        .sum();
    assert_eq!(in_files, documents(&golden("demo.yaml")));
    let deployments = std::fs::read_to_string(out_dir.join("deployments.yaml")).unwrap();
    assert_eq!(documents(&deployments), 3, "users, music, shoal-gateway");
}

#[test]
fn a_stack_invalid_for_kubernetes_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("shoal.yaml"),
        "services:\n  web:\n    command: [app]\n    replcas: 2\n  api:\n    command: [app]\nroutes:\n  - match: PathPrefix(`/`)\n    service: web\n",
    )
    .unwrap();
    let out = run_in(dir.path(), &["k8s", "render"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "nothing rendered");
    let err = stderr(&out);
    assert!(
        err.contains("shoal.yaml:4:5: services.web: unknown field `replcas`"),
        "{err}"
    );
    assert!(err.contains("did you mean `replicas`?"), "{err}");

    std::fs::write(
        dir.path().join("shoal.yaml"),
        "services:\n  web:\n    command: [app]\nroutes:\n  - match: PathPrefix(`/`)\n    service: web\n",
    )
    .unwrap();
    let out = run_in(dir.path(), &["k8s", "render"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("shoal.yaml:2:3: services.web: on Kubernetes each replica of `web` is a container: add `image:`"),
        "{err}"
    );
    assert!(
        err.contains("1 problem found; nothing was rendered"),
        "{err}"
    );

    // Flags the cluster would refuse are usage errors too.
    let example = workspace().join("examples/k8s/shoal.yaml");
    let example = example.to_str().unwrap();
    let out = run_in(dir.path(), &["k8s", "render", "-f", example, "-n", "Prod"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("namespace `Prod`"),
        "{}",
        stderr(&out)
    );
    let out = run_in(
        dir.path(),
        &[
            "k8s",
            "render",
            "-f",
            example,
            "--gateway-service",
            "Ingress",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn explain_says_what_maps_to_what() {
    let out = run_in(
        &workspace(),
        &[
            "k8s",
            "render",
            "-f",
            "examples/k8s/shoal.yaml",
            "--explain",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "examples/k8s/shoal.yaml → Kubernetes, namespace `default`, ingress shoal: 14 objects",
        "replicas: 3",
        "→ Deployment users: spec.replicas 3",
        "→ PodDisruptionBudget users: maxUnavailable 1",
        "→ shoal's in-cluster autoscaler (the gateway pod holding Lease shoal-gateway): deployments/music/scale",
        "deployments/scale (apps): get, patch, update of music",
        "leases (coordination.k8s.io): get, update, patch of shoal-gateway",
        "ConfigMap shoal-grafana-dashboard",
        "not carried over",
        "restart (policy",
        "logs (rotation)",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(
        !text.contains("kind: Deployment"),
        "no manifests with --explain"
    );
}

/// The ConfigMap's stack file, with its addresses moved to free loopback ports, and a local
/// command next to each service's image: in the pod the gateway finds the pods through the
/// Kubernetes API (`--discovery kubernetes`), which cannot run here, so local replicas of the
/// sample app stand in for them.
fn gateway_stack_file(web: SocketAddr, metrics: SocketAddr, admin: SocketAddr) -> String {
    let stream = golden("demo.yaml");
    let config_map = serde_norway::Deserializer::from_str(&stream)
        .map(|d| <serde_norway::Value as serde::Deserialize>::deserialize(d).unwrap())
        .find(|d| d["kind"] == "ConfigMap")
        .unwrap();
    let text = config_map["data"]["shoal.yaml"]
        .as_str()
        .unwrap()
        .to_owned();
    for addr in ["0.0.0.0:8000", "0.0.0.0:9090", "127.0.0.1:8080"] {
        assert!(text.contains(addr), "{addr} in\n{text}");
    }
    let image = "    image: ghcr.io/shoal-dev/shoal:0.1.0\n";
    assert_eq!(text.matches(image).count(), 2, "users and music in\n{text}");
    text.replace("0.0.0.0:8000", &web.to_string())
        .replace("0.0.0.0:9090", &metrics.to_string())
        .replace("127.0.0.1:8080", &admin.to_string())
        .replace(image, &format!("{image}    command: [shoal, sample-app]\n"))
}

#[test]
fn the_gateway_stack_file_runs_and_serves_only_metrics_beyond_the_admin_api() {
    let addr = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
    let (web, metrics, admin) = (addr(free_port()), addr(free_port()), addr(free_port()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("shoal.yaml"),
        gateway_stack_file(web, metrics, admin),
    )
    .unwrap();
    let check = run_in(dir.path(), &["check"]);
    assert!(check.status.success(), "{}", stderr(&check));

    let mut up = Up::start(dir.path(), &["up", "--quiet"]);
    let scraped = wait_for("/metrics on the metrics entrypoint", T, || {
        if let Some(status) = up.try_wait() {
            panic!("shoal exited early ({status}):\n{}", up.stderr());
        }
        http(metrics, "GET", "/metrics", None)
            .ok()
            .filter(|r| r.status == 200)
    });
    let text = scraped.text();
    assert!(text.contains("shoal_"), "{text}");
    // Only /metrics: the rest of the admin API is not reachable there.
    for path in ["/api/v1/services", "/dashboard/", "/api/v1/health"] {
        let r = http(metrics, "GET", path, None).unwrap();
        assert_eq!(r.status, 404, "{path} on the metrics entrypoint");
    }
    let r = http(metrics, "POST", "/api/v1/reload", None).unwrap();
    assert_eq!(r.status, 404, "reload on the metrics entrypoint");
    // Nor is /metrics on the user's entrypoint (the demo routes /api/users and /api/music).
    let r = http(web, "GET", "/metrics", None).unwrap();
    assert_eq!(r.status, 404);
    // The admin API itself is on loopback, as in the pod.
    let r = http(admin, "GET", "/api/v1/health", None).unwrap();
    assert_eq!(r.status, 200);
}
