//! `shoal reload`: ask the running shoal to re-read its stack file.
use std::process::ExitCode;

use hyper::Method;

use super::EXIT_BAD_CONFIG;
use crate::admin_client::AdminClient;
use crate::cli::AdminArgs;

pub(super) async fn reload(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::from_args(&args);
    match client.json(Method::POST, "/api/v1/reload", None).await {
        Ok(v) => {
            println!("{}", v["message"].as_str().unwrap_or("reloaded"));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("reload rejected; the previous configuration keeps serving:\n{e}");
            Ok(ExitCode::from(EXIT_BAD_CONFIG))
        }
    }
}
