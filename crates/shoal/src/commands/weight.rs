//! `shoal weight ROUTE SERVICE=W...`: change a split route's weights.
use std::process::ExitCode;

use hyper::Method;

use crate::admin_client::AdminClient;
use crate::cli::WeightArgs;

/// `shoal weight ROUTE SERVICE=W...`.
pub(super) async fn weight(args: WeightArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::from_args(&args.admin);
    let path = format!("/api/v1/routes/{}/weights", args.route);
    let weights: serde_json::Map<String, serde_json::Value> = args
        .weights
        .iter()
        .map(|(s, w)| (s.clone(), serde_json::Value::from(*w)))
        .collect();
    let done = client
        .json(
            Method::POST,
            &path,
            Some(serde_json::json!({ "weights": weights })),
        )
        .await?;
    if args.admin.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now: Vec<String> = done["weights"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| format!("{}={}", w["service"].as_str().unwrap_or("?"), w["weight"]))
        .collect();
    println!("route {}: {}", args.route, now.join(" "));
    Ok(ExitCode::SUCCESS)
}
