//! `shoal load`: the load generator.
use std::process::ExitCode;

use anyhow::Context;

use super::EXIT_USAGE;
use crate::cli::LoadArgs;

/// `shoal load`: validate, run, print. Exit 1 if no request got a 2xx/3xx answer.
pub(super) fn load(args: &LoadArgs) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let plan = match shoal_loadgen::Plan::from_args(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let opts = shoal_loadgen::RunOptions {
        progress: !args.no_progress && std::io::stderr().is_terminal(),
        // Ctrl-C stops the run; what was measured so far is still reported.
        interrupt: Some(Box::pin(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = match runtime.block_on(shoal_loadgen::run(plan, opts)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(path) = &args.report {
        std::fs::write(path, shoal_loadgen::html::render(&report))
            .with_context(|| format!("--report: cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.summary());
        if let Some(path) = &args.report {
            println!("  report     {}", path.display());
        }
    }
    Ok(if report.requests.ok == 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
