//! Golden files: the render of `examples/k8s/shoal.yaml` (the built-in demo with images), of
//! `tests/golden/full.shoal.yaml` (every field the render reads) and of
//! `tests/golden/edge.shoal.yaml` (TLS and the edge middlewares), with the default options,
//! with `--service-monitor` and with `--ingress traefik`, as one stream (`NAME.yaml`) and as
//! `--explain` text (`NAME.explain.txt`). File paths in them are relative to the workspace
//! root, as when `shoal k8s render -f crates/k8s/tests/golden/…` runs there. `UPDATE_GOLDEN=1 cargo test -p shoal-k8s --test
//! golden` rewrites them; review the diff like code.
//!
//! `scripts/test.sh` validates the same files against the official Kubernetes schemas (the
//! built-in kinds) and `tests/crd.rs` checks the custom resources against their CRDs' fields.
use std::path::{Path, PathBuf};

use shoal_config::{DEMO_STACK, Runtime, Source};
use shoal_k8s::{Ingress, Options, Rendered};

/// A golden case: the stack file (relative to the workspace root), the golden name, and the
/// options besides the defaults.
struct Case {
    file: &'static str,
    name: &'static str,
    ingress: Ingress,
    service_monitor: bool,
}

const DEMO: &str = "examples/k8s/shoal.yaml";
const FULL: &str = "crates/k8s/tests/golden/full.shoal.yaml";
const EDGE: &str = "crates/k8s/tests/golden/edge.shoal.yaml";

const CASES: [Case; 6] = [
    Case {
        file: DEMO,
        name: "demo",
        ingress: Ingress::Shoal,
        service_monitor: false,
    },
    Case {
        file: FULL,
        name: "full",
        ingress: Ingress::Shoal,
        service_monitor: false,
    },
    Case {
        file: DEMO,
        name: "demo-service-monitor",
        ingress: Ingress::Shoal,
        service_monitor: true,
    },
    Case {
        file: FULL,
        name: "full-traefik",
        ingress: Ingress::Traefik,
        service_monitor: false,
    },
    Case {
        file: EDGE,
        name: "edge",
        ingress: Ingress::Shoal,
        service_monitor: false,
    },
    Case {
        file: EDGE,
        name: "edge-traefik",
        ingress: Ingress::Traefik,
        service_monitor: false,
    },
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn render(case: &Case) -> Rendered {
    let stack = shoal_config::load_for(&root().join(case.file), Runtime::Kubernetes)
        .unwrap_or_else(|d| panic!("{} is invalid for Kubernetes:\n{d}", case.file));
    let opts = Options {
        source: case.file.to_owned(),
        ingress: case.ingress,
        service_monitor: case.service_monitor,
        ..Options::default()
    };
    shoal_k8s::render(&stack, &opts).unwrap()
}

fn explain_text(r: &Rendered, file: &str) -> String {
    relative(&r.explain.to_text(&format!("{file} → Kubernetes")))
}

/// Paths the stack file named, relative to the workspace root (the stack is loaded by an
/// absolute path here).
fn relative(text: &str) -> String {
    text.replace(&format!("{}/", root().display()), "")
}

#[test]
fn renders_match_the_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for case in &CASES {
        let r = render(case);
        for (golden, text) in [
            (format!("{}.yaml", case.name), relative(&r.to_stream())),
            (
                format!("{}.explain.txt", case.name),
                explain_text(&r, case.file),
            ),
        ] {
            let path = golden_dir().join(&golden);
            if update {
                std::fs::write(&path, &text).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            if want != text {
                stale.push(golden);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "the render changed for {stale:?}; if that is intended, run \
         `UPDATE_GOLDEN=1 cargo test -p shoal-k8s --test golden` and review the diff"
    );
}

/// The objects of a golden stream.
fn documents(text: &str) -> Vec<serde_norway::Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn golden(name: &str) -> Vec<serde_norway::Value> {
    documents(&std::fs::read_to_string(golden_dir().join(format!("{name}.yaml"))).unwrap())
}

#[test]
fn gateway_stack_files_in_the_golden_files_pass_shoal_check() {
    for case in &CASES {
        let docs = golden(case.name);
        let stack_files: Vec<&str> = docs
            .iter()
            .filter(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "shoal-gateway")
            .map(|d| d["data"]["shoal.yaml"].as_str().unwrap())
            .collect();
        if case.ingress == Ingress::Traefik {
            assert!(stack_files.is_empty(), "{}: no shoal gateway", case.name);
            continue;
        }
        assert_eq!(stack_files.len(), 1, "{}", case.name);
        // As `shoal up --discovery kubernetes` reads it, with the files mounted next to it
        // (certificates, CA bundles) where the pod's volume puts them.
        let pod = mounted_files(&docs);
        let text = stack_files[0].replace("/etc/shoal/", &format!("{}/", pod.path().display()));
        let stack = shoal_config::parse_for(&text, "shoal.yaml", Runtime::Kubernetes)
            .unwrap_or_else(|d| panic!("{}: the gateway's stack file is invalid:\n{d}", case.name));
        // Replicated services stay image services (the gateway finds their pods);
        // nothing for the gateway pod to run.
        for s in &stack.services {
            match &s.source {
                Source::Command(c) => {
                    assert!(s.container.is_some(), "{}: {}", case.name, s.name);
                    assert!(c.argv.is_empty(), "{}: {}", case.name, s.name);
                }
                Source::Servers(_) => {}
            }
        }
    }
}

/// A folder laid out as the gateway's volume at `/etc/shoal`: every path its projected
/// sources name, as an empty file (validation checks that they exist; their contents are
/// the cluster's).
fn mounted_files(docs: &[serde_norway::Value]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let gateway = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "shoal-gateway")
        .unwrap();
    for v in gateway["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
    {
        for source in v["projected"]["sources"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            let items = source["secret"]["items"]
                .as_sequence()
                .or(source["configMap"]["items"].as_sequence());
            for item in items.into_iter().flatten() {
                let path = dir.path().join(item["path"].as_str().unwrap());
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, "").unwrap();
            }
        }
    }
    dir
}

#[test]
fn every_golden_object_has_kind_name_and_namespace() {
    for case in &CASES {
        for d in golden(case.name) {
            assert!(d["apiVersion"].is_string(), "{}: {d:?}", case.name);
            assert!(d["kind"].is_string(), "{}: {d:?}", case.name);
            assert!(d["metadata"]["name"].is_string(), "{}: {d:?}", case.name);
            assert_eq!(
                d["metadata"]["namespace"], "default",
                "{}: {d:?}",
                case.name
            );
        }
    }
}

/// `examples/k8s/shoal.yaml` is the built-in demo plus container fields: the same services,
/// settings and routes for `shoal up`.
#[test]
fn the_kubernetes_example_is_the_builtin_demo_with_images() {
    let demo = shoal_config::parse(DEMO_STACK, "<demo>").unwrap();
    let example = shoal_config::load(&root().join("examples/k8s/shoal.yaml")).unwrap();
    assert_eq!(example.gateway, demo.gateway);
    assert_eq!(example.admin, demo.admin);
    assert_eq!(example.services.len(), demo.services.len());
    for (e, d) in example.services.iter().zip(&demo.services) {
        assert!(e.container.is_some(), "{} has an image", e.name);
        let mut e = e.clone();
        e.container = None;
        assert_eq!(&e, d);
    }
    assert_eq!(example.routes.len(), demo.routes.len());
    for (e, d) in example.routes.iter().zip(&demo.routes) {
        assert_eq!(
            (
                &e.name,
                e.rule.source(),
                e.priority,
                &e.service,
                &e.middlewares
            ),
            (
                &d.name,
                d.rule.source(),
                d.priority,
                &d.service,
                &d.middlewares
            )
        );
    }
}
