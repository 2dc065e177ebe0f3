//! `shoal check`: validate a stack file and the certificates it names, without starting
//! anything.
use std::path::Path;
use std::process::ExitCode;

use shoal_config::Stack;

use super::{EXIT_BAD_CONFIG, load_or_report};

pub(super) fn check(path: &Path) -> ExitCode {
    match load_or_report(path) {
        Ok(stack) => {
            // Certificates are read and checked as loading them would: every problem is an
            // error, certificates expiring within 30 days are warnings.
            let mut problems = 0;
            for ep in &stack.gateway.entrypoints {
                let Some(tls) = &ep.tls else {
                    continue;
                };
                let found = shoal_proxy::tls::check(tls);
                for e in &found.errors {
                    eprintln!("{}: entrypoint `{}`: {e}", path.display(), ep.name);
                }
                for w in &found.warnings {
                    eprintln!("{}: warning: entrypoint `{}`: {w}", path.display(), ep.name);
                }
                problems += found.errors.len();
            }
            problems += check_service_tls(path, &stack);
            if problems > 0 {
                eprintln!(
                    "{}: {problems} certificate problem{} found",
                    path.display(),
                    if problems == 1 { "" } else { "s" }
                );
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            let eps: Vec<String> = stack
                .gateway
                .entrypoints
                .iter()
                .map(|e| {
                    let kind = if e.tls.is_some() {
                        " (https)"
                    } else if e.redirect_to.is_some() {
                        " (redirects to https)"
                    } else {
                        ""
                    };
                    format!("{} on {}{kind}", e.name, e.listen)
                })
                .collect();
            println!(
                "{}: ok — {} service{}, {} route{}, entrypoint{} {}",
                path.display(),
                stack.services.len(),
                if stack.services.len() == 1 { "" } else { "s" },
                stack.routes.len(),
                if stack.routes.len() == 1 { "" } else { "s" },
                if eps.len() == 1 { "" } else { "s" },
                eps.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// The services' `tls:` settings, built as the gateway builds them: a `ca` bundle that
/// cannot be read or holds no usable certificate is an error naming the service and the
/// file (the gateway would answer the service's requests with 502s);
/// `insecure_skip_verify: true` is a warning. Returns the number of errors.
fn check_service_tls(path: &Path, stack: &Stack) -> usize {
    let mut errors = 0;
    for service in &stack.services {
        let Some(tls) = &service.tls else {
            continue;
        };
        if tls.insecure_skip_verify {
            eprintln!(
                "{}: warning: service `{}`: tls.insecure_skip_verify is on: the replicas' \
                 certificates are NOT verified (encrypted, but anyone on the path can pose as \
                 a replica)",
                path.display(),
                service.name
            );
        }
        // Without `ca` the system's roots are used: nothing in the stack file to check.
        if tls.ca.is_none() {
            continue;
        }
        let settings = shoal_health::tls::TlsSettings {
            ca: tls.ca.clone(),
            server_name: tls.server_name.clone(),
            insecure_skip_verify: tls.insecure_skip_verify,
            alpn: Vec::new(),
        };
        if let Err(e) = shoal_health::ClientTls::new(settings) {
            eprintln!("{}: service `{}`: tls: {e}", path.display(), service.name);
            errors += 1;
        }
    }
    errors
}
