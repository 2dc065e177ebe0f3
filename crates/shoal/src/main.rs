//! `shoal`: the command-line entry point. Parses arguments and maps errors to exit codes;
//! everything else lives in the library crates (see ARCHITECTURE.md).
mod admin_client;
mod cli;
mod commands;

use std::process::ExitCode;

/// mimalloc: lower CPU per request and less fragmentation than glibc's malloc under many
/// connections (see docs/benchmarks.md for the figures).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = <cli::Cli as clap::Parser>::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
