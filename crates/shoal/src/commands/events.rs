//! `shoal events`: what happened, one line per event; `-f` follows.
use std::process::ExitCode;

use hyper::Method;

use crate::admin_client::AdminClient;
use crate::cli::EventsArgs;
use crate::format::format_event;

pub(super) async fn events(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let client = AdminClient::from_args(&args.admin);
    if args.follow {
        client
            .follow("/api/v1/events/follow", |e| {
                println!("{}", format_event(&e));
            })
            .await?;
    } else {
        let v = client.json(Method::GET, "/api/v1/events", None).await?;
        for e in v.as_array().into_iter().flatten() {
            println!("{}", format_event(e));
        }
    }
    Ok(ExitCode::SUCCESS)
}
