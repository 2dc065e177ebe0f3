//! What each subcommand does, one module per command; this root dispatches, sets up
//! logging and loads stack files for the commands that read one. Text that several
//! commands and `shoal top` print alike lives in [`crate::format`].
//!
//! Exit codes: 0 success, 1 failure, 2 invalid stack file or usage.
mod check;
mod down;
mod events;
mod init;
mod load;
mod logs;
mod reload;
mod rollout;
mod sample_app;
mod scale;
mod status;
mod up;
mod weight;

use std::path::Path;
use std::process::ExitCode;

use shoal_config::Stack;

use crate::cli::{CertsCommand, Cli, Command, RolloutCommand};

/// Exit code for an invalid stack file.
pub(crate) const EXIT_BAD_CONFIG: u8 = 2;

/// Exit code for unusable arguments (as clap uses).
const EXIT_USAGE: u8 = 2;

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let quiet = matches!(&cli.command, Command::Up(up) if up.quiet);
    init_tracing(cli.verbose, quiet);
    match cli.command {
        Command::Up(args) => up::up(args),
        Command::Check(args) => Ok(check::check(&args.file)),
        Command::Reload(args) => block_on(reload::reload(args)),
        Command::Status(args) => block_on(status::status(args)),
        Command::Top(args) => crate::top::run(&args),
        Command::Scale(args) => block_on(scale::scale(args)),
        Command::Rollout(args) => match args.command {
            RolloutCommand::Status(args) => block_on(rollout::rollout_status(args)),
            RolloutCommand::Undo(args) => block_on(rollout::rollout(args, "undo")),
            RolloutCommand::Restart(args) => block_on(rollout::rollout(args, "restart")),
        },
        Command::Weight(args) => block_on(weight::weight(args)),
        Command::Events(args) => block_on(events::events(args)),
        Command::Logs(args) => block_on(logs::logs(args)),
        Command::Down(args) => block_on(down::down(args)),
        Command::Restart(args) => block_on(rollout::rollout(args, "restart")),
        Command::Init(args) => init::init(&args),
        Command::SampleApp(args) => block_on(sample_app::sample_app(args)),
        Command::Load(args) => load::load(&args),
        Command::Certs(args) => match args.command {
            CertsCommand::Dev(args) => crate::certs::dev(&args),
        },
        Command::K8s(args) => crate::k8s::run(args),
    }
}

/// Logs go to stderr: info by default, warnings and errors only with `up --quiet`, more
/// with `-v`; `RUST_LOG` overrides all of these. Events are not logged at info level (the
/// planes log them at debug): `shoal up` prints each event once, itself. rustls warns about
/// what a client sent (an IP address as SNI, say) once per connection: a client could flood
/// the log, so it is heard from at error level only, unless asked (`-vv`, `RUST_LOG`).
fn init_tracing(verbose: u8, quiet: bool) {
    let default = match verbose {
        0 if quiet => "warn,rustls=error",
        0 => "info,hyper=warn,rustls=error",
        1 => "debug,hyper=info,rustls=error",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal: a replica's stderr is a pipe to its log file.
    let ansi = crate::format::color_for(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    f: F,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Load a stack file for `shoal up`, printing every problem on failure.
fn load_or_report(path: &Path) -> Result<Stack, ExitCode> {
    load_for_or_report(path, shoal_config::Runtime::Local, "started")
}

/// Load a stack file for `runtime`; on failure print every problem and that nothing was
/// `done` (started, rendered), and give the exit code for a bad file.
pub(crate) fn load_for_or_report(
    path: &Path,
    runtime: shoal_config::Runtime,
    done: &str,
) -> Result<Stack, ExitCode> {
    shoal_config::load_for(path, runtime).map_err(|diags| {
        eprintln!("{diags}");
        let n = diags.0.len();
        eprintln!(
            "{}: {n} problem{} found; nothing was {done}",
            path.display(),
            if n == 1 { "" } else { "s" }
        );
        ExitCode::from(EXIT_BAD_CONFIG)
    })
}
