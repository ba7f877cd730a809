//! The command-line client: argh commands, human and `--json` output. It talks to the daemon
//! only through `rpc`.

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
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encode JSON: {0}")]
    Json(#[from] serde_json::Error),
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

/// Entry point of the CLI role.
pub fn run(args: &[OsString]) -> ExitCode {
    let cli = match parse_role_args::<Cli>("rauha", args) {
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
        Command::Zone(command) => Request::Zone(command),
        Command::Policy(command) => Request::Policy(command),
        Command::Info(command) => Request::Info(command),
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
    let features = if features.is_empty() {
        "none".to_owned()
    } else {
        features.join(",")
    };
    format!(
        "rauha {} (git {}, features: {features})",
        crate::VERSION,
        crate::GIT_REVISION
    )
}

fn default_socket() -> PathBuf {
    let from_env = |name| std::env::var_os(name).filter(|v: &OsString| !v.is_empty());
    from_env("RAUHA_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            from_env("RAUHA_RUN")
                .map(PathBuf::from)
                .unwrap_or(DEFAULT_RUN.into())
                .join("rauhad.sock")
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
    Info(InfoCommand),
}

async fn execute(request: Request, socket: PathBuf) -> Result<ExitCode, CliError> {
    let client: RauhaClient = rpc::connect(&socket).await?;
    match request {
        Request::Zone(command) => zone::zone(&client, command).await,
        Request::Policy(command) => zone::policy(&client, command).await,
        Request::Info(InfoCommand { json }) => {
            let info = client.daemon_info(context()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!(
                    "Version:       {} (git {})",
                    info.version, info.git_revision
                );
                println!(
                    "Features:      {}",
                    output::or_none(&info.features.join(","))
                );
                println!("Cgroup layout: {}", info.cgroup_layout);
                println!("State dir:     {}", info.root_dir);
                println!("Zones:         {}", info.zone_count);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
