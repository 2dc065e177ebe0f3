//! `shoal k8s …`: Kubernetes mode. Reads the stack file for Kubernetes, calls the pure
//! renderer in `shoal-k8s`, and writes its output; docs/kubernetes.md is the user's guide.
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use shoal_config::Runtime;
use shoal_k8s::{Options, Rendered};

use crate::cli::{K8sArgs, K8sCommand, RenderArgs};
use crate::commands::{EXIT_BAD_CONFIG, load_for_or_report};

pub(crate) fn run(args: K8sArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        K8sCommand::Render(args) => render(&args),
    }
}

fn render(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let path = &args.file.file;
    let stack = match load_for_or_report(path, Runtime::Kubernetes, "rendered") {
        Ok(stack) => stack,
        Err(code) => return Ok(code),
    };
    let opts = Options {
        namespace: args.namespace.clone(),
        ingress: args.ingress,
        gateway_image: args.gateway_image.clone(),
        gateway_service: args.gateway_service,
        gateway_replicas: args.gateway_replicas,
        service_monitor: args.service_monitor,
        grafana_dashboard: !args.no_grafana_dashboard,
        source: path.display().to_string(),
    };
    let rendered = match shoal_k8s::render(&stack, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_BAD_CONFIG));
        }
    };
    if let Some(dir) = &args.output {
        write_dir(&rendered, dir)?;
    }
    if args.explain {
        print!(
            "{}",
            rendered.explain.to_text(&format!(
                "{} → Kubernetes, namespace `{}`, ingress {}: {} objects",
                path.display(),
                opts.namespace,
                opts.ingress.as_str(),
                rendered.manifests.len()
            ))
        );
        return Ok(ExitCode::SUCCESS);
    }
    for w in &rendered.explain.warnings {
        eprintln!("warning: {w}");
    }
    if args.output.is_none() {
        print!("{}", rendered.to_stream());
    }
    Ok(ExitCode::SUCCESS)
}

/// One file per kind and a kustomization.yaml. Files of an earlier render that this one does
/// not produce (say, no HorizontalPodAutoscaler any more) are removed, but only when they
/// carry the render's marker: a file someone wrote by hand is never touched.
fn write_dir(rendered: &Rendered, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files = rendered.files();
    for name in Rendered::all_file_names() {
        let path = dir.join(name);
        if files.iter().any(|(n, _)| n == name) {
            continue;
        }
        if std::fs::read_to_string(&path).is_ok_and(|t| t.starts_with(Rendered::MARKER)) {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    let mut listed = Vec::new();
    for (name, text) in &files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        listed.push(name.as_str());
    }
    eprintln!(
        "wrote {} objects to {}: {}; apply them with `kubectl apply -k {}`",
        rendered.manifests.len(),
        dir.display(),
        listed.join(", "),
        dir.display()
    );
    Ok(())
}
