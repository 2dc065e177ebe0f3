//! `shoal scale SERVICE N`: set a service's desired replica count.
use std::process::ExitCode;

use hyper::Method;

use crate::admin_client::AdminClient;
use crate::cli::ScaleArgs;

pub(super) async fn scale(args: ScaleArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::from_args(&args.admin);
    let path = format!("/api/v1/services/{}/scale", args.service);
    let done = client
        .json(
            Method::POST,
            &path,
            Some(serde_json::json!({ "replicas": args.replicas })),
        )
        .await?;
    let replicas = done["replicas"].as_u64().unwrap_or(args.replicas.into());
    println!("{}: scaled to {replicas} replicas", args.service);
    if let Some(note) = done["note"].as_str() {
        println!("{note}");
    }
    Ok(ExitCode::SUCCESS)
}
