//! `shoal`: the command-line entry point. Parses arguments and maps errors to exit codes;
//! everything else lives in the library crates (see ARCHITECTURE.md).
mod admin_client;
mod certs;
mod cli;
mod commands;
mod format;
mod k8s;
mod top;

use std::process::ExitCode;

/// jemalloc: as fast per request as mimalloc here and lighter than glibc's malloc with many
/// connections, because untouched parts of connection buffers stay unmapped
/// (docs/benchmarks.md has the figures).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
