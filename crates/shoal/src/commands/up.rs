//! `shoal up`: load the stack, start it, print the banner and each event until Ctrl-C or
//! `shoal down`.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use shoal_app::{ClusterOptions, Discovery, Shoal, StartOptions};
use shoal_config::DEMO_STACK;

use super::{EXIT_USAGE, load_for_or_report, load_or_report};
use crate::cli::{DiscoveryArg, UpArgs};
use crate::format::format_event;

pub(super) fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let discovery = match args.discovery {
        DiscoveryArg::Local => {
            for (flag, given) in [
                ("--kubeconfig", args.kubeconfig.is_some()),
                ("--namespace", args.namespace.is_some()),
            ] {
                if given {
                    eprintln!("error: {flag} is for `--discovery kubernetes` only");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            }
            Discovery::Local
        }
        DiscoveryArg::Kubernetes => {
            if args.file.is_none() {
                eprintln!(
                    "error: `--discovery kubernetes` needs the stack file: --file FILE (the \
                     services' `image:` and `port:` say which pods to balance over)"
                );
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            Discovery::Kubernetes(ClusterOptions {
                kubeconfig: args.kubeconfig.clone(),
                namespace: args.namespace.clone(),
                identity: None,
            })
        }
    };
    let runtime = discovery.runtime();
    let default_file = PathBuf::from("shoal.yaml");
    let (stack, path) = match (&args.file, args.demo) {
        (Some(f), _) => match load_for_or_report(f, runtime, "started") {
            Ok(s) => (s, Some(f.clone())),
            Err(code) => return Ok(code),
        },
        (None, false) if default_file.exists() => match load_or_report(&default_file) {
            Ok(s) => (s, Some(default_file.clone())),
            Err(code) => return Ok(code),
        },
        _ => (
            shoal_config::parse(DEMO_STACK, "<demo>").map_err(|d| anyhow::anyhow!("{d}"))?,
            None,
        ),
    };
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| state_dir_for(path.as_deref()));
    let workers = stack.gateway.workers;
    let runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if workers > 0 {
            b.worker_threads(workers);
        }
        b.enable_all().build()?
    };
    let quiet = args.quiet;
    runtime.block_on(async move {
        let stack_desc = match &path {
            Some(p) => p.display().to_string(),
            None => "built-in demo stack (`shoal init` writes it to shoal.yaml)".to_owned(),
        };
        let n_services = stack.services.len();
        let schemes: Vec<(String, &str)> = stack
            .gateway
            .entrypoints
            .iter()
            .map(|e| {
                let scheme = if e.tls.is_some() {
                    "https"
                } else if e.redirect_to.is_some() {
                    "redirect"
                } else {
                    "http"
                };
                (e.name.clone(), scheme)
            })
            .collect();
        let routes = route_lines(&stack.routes);
        let opts = StartOptions {
            stack,
            // The demo adopts ./shoal.yaml on reload once `shoal init` has written it.
            demo_file: path.is_none().then(|| default_file.clone()),
            stack_path: path,
            state_dir,
            echo_logs: !args.quiet,
            color: crate::format::color_for(&std::io::stdout()),
            shoal_exe: std::env::current_exe().context("cannot find the shoal binary's own path")?,
            discovery,
        };
        let shoal = match Shoal::start(opts).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(1));
            }
        };
        println!("shoal {} — {stack_desc}: {n_services} services, {} routes", env!("CARGO_PKG_VERSION"), routes.len());
        for line in &routes {
            println!("  route       {line}");
        }
        for (name, addr) in shoal.gateway_addrs() {
            match schemes.iter().find(|(n, _)| n == name).map(|(_, s)| *s) {
                Some("https") => println!("  gateway     https://{addr}/   (entrypoint {name})"),
                Some("redirect") => println!("  gateway     http://{addr}/   (entrypoint {name}, redirects to https)"),
                _ => println!("  gateway     http://{addr}/   (entrypoint {name})"),
            }
        }
        println!("  admin API   http://{}/api/v1/services", shoal.admin_addr());
        println!("  dashboard   http://{}/dashboard/", shoal.admin_addr());
        println!("  metrics     http://{}/metrics", shoal.admin_addr());
        if !quiet {
            println!("  try         shoal top · shoal status · shoal scale SERVICE N · shoal logs SERVICE -f · Ctrl-C or shoal down to stop");
        }
        let _ = std::io::stdout().flush();
        // Each event once, here (the planes log events at debug only); with --quiet, only
        // trouble.
        let mut events = shoal.events().subscribe();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Ok(e) if quiet && !e.kind.is_trouble() => {}
                    Ok(e) => println!("{}", format_event(&serde_json::to_value(&e).unwrap_or_default())),
                    Err(RecvError::Lagged(n)) => println!("({n} events not shown; `shoal events` has them)"),
                    Err(RecvError::Closed) => break,
                }
            }
        });
        shoal.run_until_signal().await?;
        println!("shoal stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// The banner's route lines, in the order routes are tried: `rule → service`, with the
/// entrypoints a route is limited to.
fn route_lines(routes: &[shoal_config::Route]) -> Vec<String> {
    routes
        .iter()
        .map(|r| {
            let to = match &r.split {
                Some(split) => split
                    .targets
                    .iter()
                    .map(|t| format!("{}={}", t.service, t.weight))
                    .collect::<Vec<_>>()
                    .join(" "),
                None => r.service.clone(),
            };
            let mut line = format!("{} → {to}", r.rule.source());
            if let Some(eps) = &r.entrypoints {
                line.push_str(&format!("   (entrypoints {})", eps.join(", ")));
            }
            line
        })
        .collect()
}

/// `.shoal` next to the stack file, or in the current folder for the demo.
fn state_dir_for(stack: Option<&Path>) -> PathBuf {
    match stack.and_then(Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(".shoal"),
        _ => PathBuf::from(".shoal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_lists_each_route_as_rule_to_service() {
        let stack = shoal_config::parse(
            "services:
  users: { servers: [http://127.0.0.1:9001] }
  web: { servers: [http://127.0.0.1:9002] }
gateway:
  entrypoints: { web: { listen: 127.0.0.1:0 }, internal: { listen: 127.0.0.2:0 } }
routes:
  - { match: PathPrefix(`/api/users`), service: users }
  - { match: PathPrefix(`/canary`), services: [{ name: users, weight: 90 }, { name: web, weight: 10 }] }
  - { match: PathPrefix(`/`), service: web, entrypoints: [internal] }
",
            "f",
        )
        .unwrap();
        assert_eq!(
            route_lines(&stack.routes),
            [
                "PathPrefix(`/api/users`) → users",
                "PathPrefix(`/canary`) → users=90 web=10",
                "PathPrefix(`/`) → web   (entrypoints internal)",
            ]
        );
    }
}
