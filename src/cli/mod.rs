//! The command-line client: argh commands, human and `--json` output. It talks to the daemon
//! only through `rpc`.

mod attach;
mod container;
mod events;
mod exec;
mod image;
pub(crate) mod logs;
mod output;
mod zone;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use argh::FromArgs;
use async_compat::Compat;

use crate::daemon::{DEFAULT_RUN, DaemonArgs};
use crate::rpc::{self, RauhaClient};

/// Rauha: an isolation-first container runtime. Zones tie a cgroup, namespaces, a network
/// identity, a rootfs and kernel-enforced policy into one boundary.
#[derive(FromArgs, Debug)]
struct Cli {
    /// print the version, git revision and enabled features
    #[argh(switch)]
    version: bool,
    /// daemon socket (default $RAUHA_SOCKET, else $RAUHA_RUN/rauhad.sock, else
    /// /run/rauha/rauhad.sock)
    #[argh(option)]
    socket: Option<PathBuf>,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Command {
    Zone(zone::ZoneCommand),
    Policy(zone::PolicyCommand),
    Run(container::Run),
    Create(container::Create),
    Start(container::Start),
    Ps(container::Ps),
    Stop(container::Stop),
    Kill(container::Kill),
    Rm(container::Rm),
    Logs(container::Logs),
    Exec(exec::Exec),
    Attach(attach::Attach),
    Inspect(container::Inspect),
    Wait(container::Wait),
    Image(image::ImageCommand),
    Events(events::Events),
    Info(InfoCommand),
    Daemon(DaemonArgs),
}

/// Show the daemon's version, host facilities and counts.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "info")]
struct InfoCommand {
    /// print JSON instead of text
    #[argh(switch)]
    json: bool,
}

/// A CLI failure, printed as `rauha: MESSAGE`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Connect(#[from] rpc::ConnectError),
    #[error("lost the daemon connection: {0}")]
    Rpc(#[from] tarpc::client::RpcError),
    #[error("{0}")]
    Api(#[from] rpc::ApiError),
    #[error("read {}: {source}", path.display())]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Claim(#[from] rpc::fds::ClaimError),
    #[error("read container output: {0}")]
    ReadLog(std::io::Error),
    #[error("duplicate a terminal descriptor: {0}")]
    Duplicate(std::io::Error),
    #[error("the daemon sent no {0}")]
    MissingStream(&'static str),
    #[error("{0}")]
    Usage(String),
}

/// Parse the arguments of a role that has its own top-level flags (`rauhad …`).
pub fn parse_role_args<T: FromArgs>(name: &str, args: &[OsString]) -> Result<T, ExitCode> {
    let strings: Option<Vec<&str>> = args.iter().map(|arg| arg.to_str()).collect();
    let Some(strings) = strings else {
        eprintln!("{name}: arguments must be valid UTF-8");
        return Err(ExitCode::from(2));
    };
    T::from_args(&[name], &strings).map_err(|early| {
        if early.status.is_ok() {
            println!("{}", early.output);
            ExitCode::SUCCESS
        } else {
            eprintln!("{}", early.output);
            ExitCode::from(2)
        }
    })
}

/// Options (of `run`, `create`, `exec`) that take a value, so the token after them is theirs.
const VALUE_OPTIONS: &[&str] = &[
    "--socket",
    "--zone",
    "--name",
    "-e",
    "--env",
    "-w",
    "--workdir",
    "-u",
    "--user",
    "-p",
    "--publish",
];

/// Split Docker-style combined short switches (`-it`, `-dt`) of `run`, `create` and `exec`
/// into single ones for argh — only before the image or container argument, so the command
/// run inside keeps its own arguments untouched (`ls -la`).
fn expand_combined_switches(args: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.iter();
    let mut in_container_command = false;
    while let Some(arg) = iter.next() {
        out.push(arg.clone());
        let text = arg.to_str().unwrap_or_default();
        if VALUE_OPTIONS.contains(&text) {
            if let Some(value) = iter.next() {
                out.push(value.clone());
            }
        } else if ["run", "create", "exec"].contains(&text) {
            in_container_command = true;
            break;
        } else if !text.starts_with('-') {
            break;
        }
    }
    if !in_container_command {
        out.extend(iter.cloned());
        return out;
    }
    while let Some(arg) = iter.next() {
        let text = arg.to_str().unwrap_or_default();
        let combined = text.len() > 2
            && text.starts_with('-')
            && text[1..].bytes().all(|b| b.is_ascii_alphabetic());
        if combined {
            out.extend(text[1..].chars().map(|c| OsString::from(format!("-{c}"))));
            continue;
        }
        out.push(arg.clone());
        if VALUE_OPTIONS.contains(&text) {
            if let Some(value) = iter.next() {
                out.push(value.clone());
            }
        } else if !text.starts_with('-') || text == "--" {
            break;
        }
    }
    out.extend(iter.cloned());
    out
}

/// Entry point of the CLI role.
pub fn run(args: &[OsString]) -> ExitCode {
    let args = expand_combined_switches(args);
    let cli = match parse_role_args::<Cli>("rauha", &args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if cli.version {
        println!("{}", version_line());
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        eprintln!("rauha: no command given; see `rauha --help`");
        return ExitCode::from(2);
    };
    let request = match command {
        Command::Daemon(daemon_args) => return crate::daemon::run(daemon_args),
        Command::Zone(c) => Request::Zone(c),
        Command::Policy(c) => Request::Policy(c),
        Command::Run(c) => Request::Run(c),
        Command::Create(c) => Request::Create(c),
        Command::Start(c) => Request::Start(c),
        Command::Ps(c) => Request::Ps(c),
        Command::Stop(c) => Request::Stop(c),
        Command::Kill(c) => Request::Kill(c),
        Command::Rm(c) => Request::Rm(c),
        Command::Logs(c) => Request::Logs(c),
        Command::Exec(c) => Request::Exec(c),
        Command::Attach(c) => Request::Attach(c),
        Command::Inspect(c) => Request::Inspect(c),
        Command::Wait(c) => Request::Wait(c),
        Command::Image(c) => Request::Image(c),
        Command::Events(c) => Request::Events(c),
        Command::Info(c) => Request::Info(c),
    };
    let socket = cli.socket.unwrap_or_else(default_socket);
    match smol::block_on(Compat::new(execute(request, socket))) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("rauha: {error}");
            ExitCode::FAILURE
        }
    }
}

fn version_line() -> String {
    let features = crate::features();
    let features = if features.is_empty() { "none".to_owned() } else { features.join(",") };
    format!("rauha {} (git {}, features: {features})", crate::VERSION, crate::GIT_REVISION)
}

fn default_socket() -> PathBuf {
    let from_env = |name| std::env::var_os(name).filter(|v: &OsString| !v.is_empty());
    from_env("RAUHA_SOCKET").map(PathBuf::from).unwrap_or_else(|| {
        from_env("RAUHA_RUN").map(PathBuf::from).unwrap_or(DEFAULT_RUN.into()).join("rauhad.sock")
    })
}

/// A request context whose deadline suits operations that wait on the kernel (deleting a zone
/// stops its containers first).
pub(crate) fn context() -> tarpc::context::Context {
    let mut context = tarpc::context::current();
    context.deadline = Instant::now() + Duration::from_secs(600);
    context
}

/// The commands that are requests to a running daemon.
enum Request {
    Zone(zone::ZoneCommand),
    Policy(zone::PolicyCommand),
    Run(container::Run),
    Create(container::Create),
    Start(container::Start),
    Ps(container::Ps),
    Stop(container::Stop),
    Kill(container::Kill),
    Rm(container::Rm),
    Logs(container::Logs),
    Exec(exec::Exec),
    Attach(attach::Attach),
    Inspect(container::Inspect),
    Wait(container::Wait),
    Image(image::ImageCommand),
    Events(events::Events),
    Info(InfoCommand),
}

/// A request context for waits that last as long as a container runs (a year: tarpc's timer
/// wheel takes no longer deadline).
pub(crate) fn unbounded() -> tarpc::context::Context {
    let mut context = tarpc::context::current();
    context.deadline = Instant::now() + Duration::from_secs(365 * 86400);
    context
}

async fn execute(request: Request, socket: PathBuf) -> Result<ExitCode, CliError> {
    let client: RauhaClient = rpc::connect(&socket).await?;
    match request {
        Request::Zone(command) => zone::zone(&client, command).await,
        Request::Policy(command) => zone::policy(&client, command).await,
        Request::Run(c) => container::run(&client, &socket, c).await,
        Request::Create(c) => container::create_only(&client, &socket, c).await,
        Request::Start(c) => container::start(&client, c).await,
        Request::Ps(c) => container::ps(&client, c).await,
        Request::Stop(c) => container::stop(&client, c).await,
        Request::Kill(c) => container::kill(&client, c).await,
        Request::Rm(c) => container::rm(&client, c).await,
        Request::Logs(c) => container::logs(&client, &socket, c).await,
        Request::Exec(c) => exec::exec(&client, &socket, c).await,
        Request::Attach(c) => attach::attach(&client, &socket, c).await,
        Request::Inspect(c) => container::inspect(&client, c).await,
        Request::Wait(c) => container::wait(&client, c).await,
        Request::Image(c) => image::image(&client, &socket, c).await,
        Request::Events(c) => events::events(&client, &socket, c).await,
        Request::Info(InfoCommand { json }) => {
            let info = client.daemon_info(context()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!("Version:       {} (git {})", info.version, info.git_revision);
                println!("Features:      {}", output::or_none(&info.features.join(",")));
                println!("Cgroup layout: {}", info.cgroup_layout);
                println!("State dir:     {}", info.root_dir);
                println!("Zones:         {}", info.zone_count);
                println!("Enforcement:");
                for layer in &info.enforcement {
                    if layer.active {
                        println!("  {}: active", layer.name);
                    } else {
                        println!("  {}: unavailable ({})", layer.name, layer.reason);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn combined_switches_split_only_before_the_container_command() {
        assert_eq!(
            expand_combined_switches(&os(&["exec", "-it", "c", "ls", "-la"])),
            os(&["exec", "-i", "-t", "c", "ls", "-la"])
        );
        assert_eq!(
            expand_combined_switches(&os(&[
                "--socket", "/s", "run", "--zone", "z", "-dt", "-e", "A=-xy", "img", "-it"
            ])),
            os(&["--socket", "/s", "run", "--zone", "z", "-d", "-t", "-e", "A=-xy", "img", "-it"])
        );
        assert_eq!(expand_combined_switches(&os(&["ps", "-aq"])), os(&["ps", "-aq"]));
    }
}
