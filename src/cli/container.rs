//! Container commands, with Docker's habits: `run`, `create`, `start`, `ps`, `stop`, `kill`,
//! `rm`, `logs`, `inspect`, `wait`.

use std::path::Path;
use std::process::ExitCode;

use argh::FromArgs;

use super::attach;
use super::logs::{self, Printing};
use super::{CliError, context, output, unbounded};
use crate::rpc::{ContainerCreateRequest, ContainerInfo, ErrorKind, RauhaClient};

/// Create and start a container in a zone; without -d, print its output and exit with its code.
/// -i sends stdin to it (end of input closes its stdin), -t gives it a terminal (this one goes
/// raw and resizes follow); -d with -i/-t leaves it running for `rauha attach`.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "run")]
pub struct Run {
    #[argh(option)]
    /// the zone to run in
    zone: String,
    /// container name (default: a generated one)
    #[argh(option)]
    name: Option<String>,
    /// set an environment variable (KEY=VALUE); repeatable
    #[argh(option, short = 'e')]
    env: Vec<String>,
    /// working directory inside the container
    #[argh(option, short = 'w')]
    workdir: Option<String>,
    /// user to run as: name, uid, name:group or uid:gid
    #[argh(option, short = 'u')]
    user: Option<String>,
    /// publish a port of the zone to the host: HOSTPORT:CONTAINERPORT[/tcp|udp]; repeatable
    #[argh(option, short = 'p')]
    publish: Vec<String>,
    /// run in the background and print the container id
    #[argh(switch, short = 'd')]
    detach: bool,
    /// remove the container when it exits
    #[argh(switch)]
    rm: bool,
    /// keep stdin open and send this command's stdin to the container
    #[argh(switch, short = 'i')]
    interactive: bool,
    /// give the container a pseudo-terminal (its own /dev/pts) as its terminal
    #[argh(switch, short = 't')]
    tty: bool,
    /// image reference (pulled when not in the local store)
    #[argh(positional)]
    image: String,
    /// command and arguments (default: the image's)
    #[argh(positional, greedy)]
    command: Vec<String>,
}

/// Create a container without starting it (-i/-t as for `run`; attach before start to see
/// all its output).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "create")]
pub struct Create {
    #[argh(option)]
    /// the zone to create it in
    zone: String,
    /// container name (default: a generated one)
    #[argh(option)]
    name: Option<String>,
    /// set an environment variable (KEY=VALUE); repeatable
    #[argh(option, short = 'e')]
    env: Vec<String>,
    /// working directory inside the container
    #[argh(option, short = 'w')]
    workdir: Option<String>,
    /// user to run as: name, uid, name:group or uid:gid
    #[argh(option, short = 'u')]
    user: Option<String>,
    /// keep stdin open for attachers
    #[argh(switch, short = 'i')]
    interactive: bool,
    /// give the container a pseudo-terminal (its own /dev/pts) as its terminal
    #[argh(switch, short = 't')]
    tty: bool,
    /// image reference (pulled when not in the local store)
    #[argh(positional)]
    image: String,
    /// command and arguments (default: the image's)
    #[argh(positional, greedy)]
    command: Vec<String>,
}

/// Start created containers.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "start")]
pub struct Start {
    /// container ids, id prefixes or names
    #[argh(positional)]
    containers: Vec<String>,
}

/// List containers (running ones unless -a).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ps")]
pub struct Ps {
    /// show all containers, not only running ones
    #[argh(switch, short = 'a')]
    all: bool,
    /// only containers of this zone
    #[argh(option)]
    zone: Option<String>,
    /// print JSON instead of a table
    #[argh(switch)]
    json: bool,
}

/// Stop containers: SIGTERM, then SIGKILL after the timeout.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stop")]
pub struct Stop {
    /// seconds to wait after SIGTERM before SIGKILL (default 10)
    #[argh(option, short = 't', default = "10")]
    time: u32,
    /// container ids, id prefixes or names
    #[argh(positional)]
    containers: Vec<String>,
}

/// Send a signal to containers' main process.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "kill")]
pub struct Kill {
    /// signal name or number (default KILL)
    #[argh(option, short = 's', default = "String::from(\"KILL\")")]
    signal: String,
    /// container ids, id prefixes or names
    #[argh(positional)]
    containers: Vec<String>,
}

/// Remove containers.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "rm")]
pub struct Rm {
    /// kill running containers first
    #[argh(switch, short = 'f')]
    force: bool,
    /// container ids, id prefixes or names
    #[argh(positional)]
    containers: Vec<String>,
}

/// Print a container's output.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "logs")]
pub struct Logs {
    /// keep printing new output until the container stops
    #[argh(switch, short = 'f')]
    follow: bool,
    /// only the last N lines
    #[argh(option)]
    tail: Option<usize>,
    /// prefix each line with the time it was written
    #[argh(switch, short = 't')]
    timestamps: bool,
    /// container id, id prefix or name
    #[argh(positional)]
    container: String,
}

/// Show everything about containers, as JSON.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "inspect")]
pub struct Inspect {
    /// container ids, id prefixes or names
    #[argh(positional)]
    containers: Vec<String>,
}

/// Wait for containers to stop and print their exit codes.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "wait")]
pub struct Wait {
    /// container ids, id prefixes or names
    #[argh(positional)]
    containers: Vec<String>,
}

/// Create a container, pulling its image first when the store lacks it.
async fn create(
    client: &RauhaClient,
    socket: &Path,
    request: ContainerCreateRequest,
) -> Result<ContainerInfo, CliError> {
    match client.container_create(context(), request.clone()).await? {
        Err(error) if error.kind == ErrorKind::NotFound && error.message.starts_with("image ") => {
            eprintln!("image {} not found locally; pulling", request.image);
            super::image::pull(client, socket, &request.image, None, false).await?;
            Ok(client.container_create(context(), request).await??)
        }
        result => Ok(result?),
    }
}

/// The process exit code a container's end maps to.
pub(super) fn exit_code(info: &ContainerInfo) -> ExitCode {
    ExitCode::from(info.exit_code.map(|code| code.clamp(0, 255) as u8).unwrap_or(255))
}

pub async fn run(client: &RauhaClient, socket: &Path, run: Run) -> Result<ExitCode, CliError> {
    let request = ContainerCreateRequest {
        zone: run.zone,
        name: run.name.unwrap_or_default(),
        image: run.image,
        command: run.command,
        env: run.env,
        working_dir: run.workdir.unwrap_or_default(),
        user: run.user.unwrap_or_default(),
        auto_remove: run.rm,
        ports: run.publish,
        tty: run.tty,
        interactive: run.interactive,
        // In the foreground our end of input is the container's; a detached one keeps stdin
        // open across attachers.
        stdin_once: !run.detach,
    };
    let created = create(client, socket, request).await?;
    if run.detach {
        client.container_start(context(), created.id.clone()).await??;
        println!("{}", created.id);
        return Ok(ExitCode::SUCCESS);
    }
    let done = if run.tty || run.interactive {
        // Attached before the start, so not a byte of output is missed.
        let session = attach::open(client, socket, &created, true).await?;
        client.container_start(context(), created.id.clone()).await??;
        session.finish(client, &created.id).await?
    } else {
        let output = logs::open(client, socket, &created.id).await?;
        client.container_start(context(), created.id.clone()).await??;
        let printing = Printing { timestamps: false };
        logs::stream(client, socket, &created.id, output, None, true, printing).await?;
        client.container_wait(unbounded(), created.id).await??
    };
    if done.oom_killed {
        eprintln!("rauha: container {} was killed by the OOM killer", done.name);
    }
    Ok(exit_code(&done))
}

pub async fn create_only(
    client: &RauhaClient,
    socket: &Path,
    create_args: Create,
) -> Result<ExitCode, CliError> {
    let request = ContainerCreateRequest {
        zone: create_args.zone,
        name: create_args.name.unwrap_or_default(),
        image: create_args.image,
        command: create_args.command,
        env: create_args.env,
        working_dir: create_args.workdir.unwrap_or_default(),
        user: create_args.user.unwrap_or_default(),
        auto_remove: false,
        ports: Vec::new(),
        tty: create_args.tty,
        interactive: create_args.interactive,
        stdin_once: false,
    };
    println!("{}", create(client, socket, request).await?.id);
    Ok(ExitCode::SUCCESS)
}

/// Apply `action` to each named container; report each failure and exit 1 if any failed.
async fn each<F, Fut>(containers: Vec<String>, mut action: F) -> Result<ExitCode, CliError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<String, CliError>>,
{
    let mut failed = false;
    for container in containers {
        match action(container).await {
            Ok(line) => println!("{line}"),
            Err(error) => {
                eprintln!("rauha: {error}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

pub async fn start(client: &RauhaClient, start: Start) -> Result<ExitCode, CliError> {
    each(start.containers, |c| async move {
        client.container_start(context(), c.clone()).await??;
        Ok(c)
    })
    .await
}

pub async fn stop(client: &RauhaClient, stop: Stop) -> Result<ExitCode, CliError> {
    each(stop.containers, |c| async move {
        client.container_stop(context(), c.clone(), stop.time).await??;
        Ok(c)
    })
    .await
}

/// A signal by name (`TERM`, `SIGTERM`) or number.
pub fn parse_signal(name: &str) -> Result<i32, CliError> {
    if let Ok(number) = name.parse::<i32>() {
        return Ok(number);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let number = match bare {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "ALRM" => libc::SIGALRM,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "WINCH" => libc::SIGWINCH,
        _ => return Err(CliError::Usage(format!("--signal: unknown signal {name:?}"))),
    };
    Ok(number)
}

pub async fn kill(client: &RauhaClient, kill: Kill) -> Result<ExitCode, CliError> {
    let signal = parse_signal(&kill.signal)?;
    each(kill.containers, |c| async move {
        client.container_kill(context(), c.clone(), signal).await??;
        Ok(c)
    })
    .await
}

pub async fn rm(client: &RauhaClient, rm: Rm) -> Result<ExitCode, CliError> {
    each(rm.containers, |c| async move {
        client.container_delete(context(), c.clone(), rm.force).await??;
        Ok(c)
    })
    .await
}

pub async fn wait(client: &RauhaClient, wait: Wait) -> Result<ExitCode, CliError> {
    each(wait.containers, |c| async move {
        let info = client.container_wait(unbounded(), c).await??;
        Ok(info.exit_code.unwrap_or(-1).to_string())
    })
    .await
}

pub async fn inspect(client: &RauhaClient, inspect: Inspect) -> Result<ExitCode, CliError> {
    let mut found = Vec::new();
    for container in inspect.containers {
        found.push(client.container_get(context(), container).await??);
    }
    println!("{}", serde_json::to_string_pretty(&found)?);
    Ok(ExitCode::SUCCESS)
}

fn status(info: &ContainerInfo) -> String {
    match (info.state.as_str(), info.exit_code) {
        ("Running", _) => format!("Up since {}", info.started_at),
        ("Stopped", Some(code)) if info.oom_killed => format!("Exited ({code}, OOM killed)"),
        ("Stopped", Some(code)) => format!("Exited ({code})"),
        (state, _) => state.to_owned(),
    }
}

pub async fn ps(client: &RauhaClient, ps: Ps) -> Result<ExitCode, CliError> {
    let containers: Vec<ContainerInfo> = client
        .container_list(context(), ps.zone)
        .await??
        .into_iter()
        .filter(|c| ps.all || c.state == "Running")
        .collect();
    if ps.json {
        println!("{}", serde_json::to_string_pretty(&containers)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = containers
        .iter()
        .map(|c| {
            vec![
                c.id.replace('-', "").chars().take(12).collect(),
                c.name.clone(),
                c.zone_name.clone(),
                c.image.clone(),
                format!("{:?}", c.command.join(" ")),
                status(c),
                c.ports.join(", "),
                c.created_at.clone(),
            ]
        })
        .collect();
    output::table(
        &["CONTAINER ID", "NAME", "ZONE", "IMAGE", "COMMAND", "STATUS", "PORTS", "CREATED"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn logs(client: &RauhaClient, socket: &Path, logs: Logs) -> Result<ExitCode, CliError> {
    logs::show(
        client,
        socket,
        &logs.container,
        logs.tail,
        logs.follow,
        Printing { timestamps: logs.timestamps },
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("sigkill").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert!(parse_signal("BOGUS").is_err());
    }
}
