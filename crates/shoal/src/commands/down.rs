//! `shoal down`: stop the running shoal and wait until it has stopped.
use std::process::ExitCode;
use std::time::Duration;

use hyper::Method;

use crate::admin_client::AdminClient;
use crate::cli::DownArgs;

/// `shoal down`: ask the running shoal to stop (`POST /api/v1/shutdown`), then wait until
/// its admin address stops answering — the admin API is the last thing a shoal stops.
pub(super) async fn down(args: DownArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::from_args(&args.admin);
    let answer = client.json(Method::POST, "/api/v1/shutdown", None).await?;
    let addr = client.addr;
    // No pooled connection of ours may keep the admin server waiting.
    drop(client);
    println!(
        "shoal at {addr}: {}",
        answer["message"].as_str().unwrap_or("stopping")
    );
    let started = tokio::time::Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        if started.elapsed() >= args.timeout {
            eprintln!(
                "error: shoal at {addr} still answers after {} (still draining? `shoal status` \
                 shows what is left; a longer --timeout waits more)",
                shoal_config::format_duration(args.timeout)
            );
            return Ok(ExitCode::from(1));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("shoal stopped");
    Ok(ExitCode::SUCCESS)
}
