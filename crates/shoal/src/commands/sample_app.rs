//! `shoal sample-app`: the small HTTP service the demo stack and the tests run.
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::SampleAppArgs;

pub(super) async fn sample_app(args: SampleAppArgs) -> anyhow::Result<ExitCode> {
    let mut opts = match args.listen {
        Some(_) => shoal_sample_app::Options::default(),
        None => shoal_sample_app::Options::from_env(|k| std::env::var(k).ok())
            .context("run it under shoal, or pass --listen ADDR")?,
    };
    if let Some(l) = args.listen {
        opts.listen = l;
    }
    if let Some(n) = args.name {
        opts.name = n;
    }
    if let Some(d) = args.startup_delay {
        opts.startup_delay = d;
    }
    opts.capacity = args.capacity.map(|n| n as usize);
    match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => opts.tls = Some(shoal_sample_app::TlsFiles { cert, key }),
        _ if opts.tls.is_none() => {
            opts.tls = shoal_sample_app::TlsFiles::from_env(|k| std::env::var(k).ok())?;
        }
        _ => {}
    }
    shoal_sample_app::run_until_signal(opts).await?;
    Ok(ExitCode::SUCCESS)
}
