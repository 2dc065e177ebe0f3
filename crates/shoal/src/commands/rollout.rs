//! `shoal rollout status|undo|restart SERVICE` (and `shoal restart`): start a rollout
//! action, or follow one until it completes or is rolled back.
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use hyper::Method;

use crate::admin_client::AdminClient;
use crate::cli::{RolloutServiceArgs, RolloutStatusArgs};

/// `shoal rollout undo|restart SERVICE`.
pub(super) async fn rollout(args: RolloutServiceArgs, action: &str) -> anyhow::Result<ExitCode> {
    let client = AdminClient::from_args(&args.admin);
    let path = format!("/api/v1/services/{}/rollout", args.service);
    let done = client
        .json(
            Method::POST,
            &path,
            Some(serde_json::json!({ "action": action })),
        )
        .await?;
    match done["message"].as_str() {
        Some(m) => println!("{}: {m}", args.service),
        None => println!("{}: rollout {action} started", args.service),
    }
    println!("follow it with `shoal rollout status {}`", args.service);
    Ok(ExitCode::SUCCESS)
}

/// What `shoal rollout status` makes of a service now: a line to print when it changes,
/// and whether (and how) it is over.
#[derive(Debug, PartialEq)]
enum RolloutView {
    /// Still rolling: this progress line.
    Waiting(String),
    /// Finished well (exit 0): this line.
    Done(String),
    /// Rolled back (exit 1): this line.
    Failed(String),
}

/// `service` as `GET /api/v1/services/{name}` answers it, as `shoal rollout status` sees it.
fn rollout_view(service: &serde_json::Value) -> RolloutView {
    let name = service["name"].as_str().unwrap_or("?");
    let r = &service["rollout"];
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    let Some(version) = r["version"].as_str() else {
        let mut versions: Vec<&str> = service["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["version"].as_str())
            .collect();
        versions.sort_unstable();
        versions.dedup();
        return RolloutView::Done(match versions.as_slice() {
            [] => format!("{name} has had no rollout"),
            [one] => format!("{name} has had no rollout; it runs version {one}"),
            many => format!(
                "{name} has had no rollout; its replicas run versions {}",
                many.join(", ")
            ),
        });
    };
    let why = r["message"]
        .as_str()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    match r["state"].as_str().unwrap_or("") {
        "complete" => RolloutView::Done(format!(
            "rollout of {name} to version {version} complete: {} of {} replicas updated and ready",
            n("updated_ready"),
            n("desired")
        )),
        "rolledback" => {
            let to = r["previous"]
                .as_str()
                .map(|p| format!(" to {p}"))
                .unwrap_or_default();
            // The supervisor's message says it again ("v2 rolled back to v1: why").
            let said = format!(": {version} rolled back{to}: ");
            let why = why
                .strip_prefix(&said)
                .map_or(why.clone(), |w| format!(": {w}"));
            RolloutView::Failed(format!(
                "rollout of {name} to version {version} was rolled back{to}{why}"
            ))
        }
        _ if n("updated") < n("desired") => RolloutView::Waiting(format!(
            "Waiting for rollout of {name} to finish: {} of {} replicas updated to {version}...",
            n("updated"),
            n("desired")
        )),
        _ => RolloutView::Waiting(format!(
            "Waiting for rollout of {name} to finish: {} of {} updated replicas are ready...",
            n("updated_ready"),
            n("desired")
        )),
    }
}

/// `shoal rollout status SERVICE`: follow until it finishes, is rolled back, or times out.
pub(super) async fn rollout_status(args: RolloutStatusArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::from_args(&args.admin);
    let path = format!("/api/v1/services/{}", args.service);
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut last = String::new();
    loop {
        let service = client.json(Method::GET, &path, None).await?;
        if args.admin.json {
            // The rollout as the API has it, once it is over.
            if !matches!(rollout_view(&service), RolloutView::Waiting(_)) {
                println!("{}", serde_json::to_string_pretty(&service["rollout"])?);
            }
        }
        match rollout_view(&service) {
            RolloutView::Done(line) => {
                if !args.admin.json {
                    println!("{line}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            RolloutView::Failed(line) => {
                eprintln!("error: {line}");
                return Ok(ExitCode::from(1));
            }
            RolloutView::Waiting(line) => {
                if line != last && !args.admin.json {
                    println!("{line}");
                    let _ = std::io::stdout().flush();
                }
                last = line;
            }
        }
        if let (Some(deadline), Some(timeout)) = (deadline, args.timeout)
            && tokio::time::Instant::now() >= deadline
        {
            eprintln!(
                "error: timed out after {} waiting for the rollout of {} ({})",
                shoal_config::format_duration(timeout),
                args.service,
                last.trim_end_matches("...")
            );
            return Ok(ExitCode::from(1));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_status_reads_progress_completion_and_rollback() {
        let service = |rollout: serde_json::Value| {
            serde_json::json!({
                "name": "api", "state": "progressing", "ready": 3, "desired": 3,
                "replicas": [
                    { "index": 0, "state": "ready", "version": "v1" },
                    { "index": 3, "state": "ready", "version": "v2" }
                ],
                "rollout": rollout
            })
        };
        let rollout = |state: &str, updated: u32, ready: u32, message: serde_json::Value| {
            serde_json::json!({
                "version": "v2", "previous": "v1", "state": state, "updated": updated,
                "updated_ready": ready, "desired": 3, "message": message, "started_ms": 1
            })
        };
        let none = serde_json::Value::Null;
        assert_eq!(
            rollout_view(&service(rollout("progressing", 1, 0, none.clone()))),
            RolloutView::Waiting(
                "Waiting for rollout of api to finish: 1 of 3 replicas updated to v2...".into()
            )
        );
        assert_eq!(
            rollout_view(&service(rollout("progressing", 3, 2, none.clone()))),
            RolloutView::Waiting(
                "Waiting for rollout of api to finish: 2 of 3 updated replicas are ready...".into()
            )
        );
        assert_eq!(
            rollout_view(&service(rollout("complete", 3, 3, none.clone()))),
            RolloutView::Done(
                "rollout of api to version v2 complete: 3 of 3 replicas updated and ready".into()
            )
        );
        let why = serde_json::json!(
            "v2 rolled back to v1: no new replica ready within 2s: api/3 exited with code 3"
        );
        assert_eq!(
            rollout_view(&service(rollout("rolledback", 1, 0, why))),
            RolloutView::Failed(
                "rollout of api to version v2 was rolled back to v1: no new replica ready \
                 within 2s: api/3 exited with code 3"
                    .into()
            )
        );
        assert_eq!(
            rollout_view(&service(none)),
            RolloutView::Done("api has had no rollout; its replicas run versions v1, v2".into())
        );
    }
}
