//! `rauha events`: lifecycle and deny events, from the pipe the daemon hands over.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::ExitCode;

use argh::FromArgs;

use super::{CliError, context};
use crate::daemon::Event;
use crate::rpc::{self, RauhaClient};

/// Show recent events (zones, policies, containers, denials); -f keeps following.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "events")]
pub struct Events {
    /// only events of this zone
    #[argh(option)]
    zone: Option<String>,
    /// keep printing new events until interrupted
    #[argh(switch, short = 'f')]
    follow: bool,
    /// print one JSON object per line
    #[argh(switch)]
    json: bool,
}

pub async fn events(
    client: &RauhaClient,
    socket: &Path,
    args: Events,
) -> Result<ExitCode, CliError> {
    let ticket = client.events(context(), args.zone, args.follow).await??;
    let socket = socket.to_owned();
    let json = args.json;
    smol::unblock(move || {
        let pipe =
            rpc::fds::claim(&socket, ticket)?.pop().ok_or(CliError::MissingStream("events"))?;
        for line in BufReader::new(std::fs::File::from(pipe)).lines() {
            let line = line.map_err(CliError::ReadLog)?;
            if json {
                println!("{line}");
                continue;
            }
            let event: Event = serde_json::from_str(&line)?;
            println!(
                "{} {:<20} {:<12} {}",
                event.timestamp, event.event_type, event.zone, event.message
            );
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}
