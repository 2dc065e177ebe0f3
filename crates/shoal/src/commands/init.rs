//! `shoal init`: write the demo stack to a file.
use std::process::ExitCode;

use anyhow::Context;
use shoal_config::DEMO_STACK;

use crate::cli::InitArgs;

pub(super) fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    if args.file.exists() && !args.force {
        eprintln!(
            "{} already exists; use --force to overwrite it",
            args.file.display()
        );
        return Ok(ExitCode::from(1));
    }
    std::fs::write(&args.file, DEMO_STACK)
        .with_context(|| format!("cannot write {}", args.file.display()))?;
    println!(
        "wrote {} — the demo stack. Start it with `shoal up`; a demo already running picks it up with `shoal reload`.",
        args.file.display()
    );
    Ok(ExitCode::SUCCESS)
}
