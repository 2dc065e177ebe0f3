//! Golden files: the render of `examples/k8s/shoal.yaml` (the built-in demo with images) and
//! of `tests/golden/full.shoal.yaml` (every field the render reads), as one stream
//! (`NAME.yaml`) and as `--explain` text (`NAME.explain.txt`). `UPDATE_GOLDEN=1 cargo test -p
//! shoal-k8s --test golden` rewrites them; review the diff like code.
//!
//! `scripts/test.sh` validates the same files against the official Kubernetes schemas.
use std::path::{Path, PathBuf};

use shoal_config::{DEMO_STACK, Runtime, Source};
use shoal_k8s::{Options, Rendered};

/// (stack file relative to the workspace root, golden name)
const CASES: [(&str, &str); 2] = [
    ("examples/k8s/shoal.yaml", "demo"),
    ("crates/k8s/tests/golden/full.shoal.yaml", "full"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn render(file: &str) -> Rendered {
    let stack = shoal_config::load_for(&root().join(file), Runtime::Kubernetes)
        .unwrap_or_else(|d| panic!("{file} is invalid for Kubernetes:\n{d}"));
    let opts = Options {
        source: file.to_owned(),
        ..Options::default()
    };
    shoal_k8s::render(&stack, &opts).unwrap()
}

fn explain_text(r: &Rendered, file: &str) -> String {
    r.explain.to_text(&format!("{file} → Kubernetes"))
}

#[test]
fn renders_match_the_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (file, name) in CASES {
        let r = render(file);
        for (golden, text) in [
            (format!("{name}.yaml"), r.to_stream()),
            (format!("{name}.explain.txt"), explain_text(&r, file)),
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
fn documents(text: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

#[test]
fn gateway_stack_files_in_the_golden_files_pass_shoal_check() {
    for (_, name) in CASES {
        let text = std::fs::read_to_string(golden_dir().join(format!("{name}.yaml"))).unwrap();
        let docs = documents(&text);
        let config_maps: Vec<&serde_yaml::Value> =
            docs.iter().filter(|d| d["kind"] == "ConfigMap").collect();
        assert_eq!(config_maps.len(), 1, "{name}");
        let stack_file = config_maps[0]["data"]["shoal.yaml"].as_str().unwrap();
        let stack = shoal_config::parse(stack_file, "shoal.yaml")
            .unwrap_or_else(|d| panic!("{name}: the gateway's stack file is invalid:\n{d}"));
        // Every service is static upstreams: nothing for the gateway pod to run.
        assert!(
            stack
                .services
                .iter()
                .all(|s| matches!(s.source, Source::Servers(_))),
            "{name}"
        );
    }
}

#[test]
fn every_golden_object_has_kind_name_and_namespace() {
    for (_, name) in CASES {
        let text = std::fs::read_to_string(golden_dir().join(format!("{name}.yaml"))).unwrap();
        for d in documents(&text) {
            assert!(d["apiVersion"].is_string(), "{name}: {d:?}");
            assert!(d["kind"].is_string(), "{name}: {d:?}");
            assert!(d["metadata"]["name"].is_string(), "{name}: {d:?}");
            assert_eq!(d["metadata"]["namespace"], "default", "{name}: {d:?}");
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
