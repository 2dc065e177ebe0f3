//! `shoal logs SERVICE`: the replicas' output, read through the admin API.
use std::io::Write;
use std::process::ExitCode;

use crate::admin_client::AdminClient;
use crate::cli::{ColorArg, LogsArgs};

/// `shoal logs`: the replicas' output through the admin API, so from any folder; `-f`
/// keeps the answer open and prints lines as the replicas write them. Lines are prefixed
/// `web.0 | ` unless `--replica` picks one; escape codes are kept or stripped as `--color`
/// says (the files keep them).
pub(super) async fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::from_args(&args.admin);
    let mut path = format!(
        "/api/v1/services/{}/logs?tail={}&follow={}",
        args.service, args.lines, args.follow
    );
    if let Some(r) = args.replica {
        path.push_str(&format!("&replica={r}"));
    }
    let color = match args.color {
        ColorArg::Always => true,
        ColorArg::Never => false,
        ColorArg::Auto => crate::format::color_for(&std::io::stdout()),
    };
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    let mut closed = false;
    client
        .follow(&path, |v| {
            if closed {
                return;
            }
            printed += 1;
            let line = v["line"].as_str().unwrap_or("");
            let written = if args.admin.json {
                writeln!(out, "{v}")
            } else {
                let text = if color {
                    std::borrow::Cow::Borrowed(line)
                } else {
                    shoal_supervise::strip_ansi(line)
                };
                match (args.replica, v["replica"].as_u64()) {
                    (None, Some(r)) => {
                        let r = u32::try_from(r).unwrap_or(u32::MAX);
                        let prefix = shoal_supervise::line_prefix(&args.service, r, color);
                        writeln!(out, "{prefix}{text}")
                    }
                    _ => writeln!(out, "{text}"),
                }
            };
            // A closed pipe (`| head`) ends the output quietly.
            closed = written.and_then(|()| out.flush()).is_err();
        })
        .await?;
    if printed == 0 && !args.follow && args.lines > 0 {
        eprintln!("`{}` has written no output yet", args.service);
    }
    Ok(ExitCode::SUCCESS)
}
