//! `rauha`: one executable, several roles, chosen by the name it was invoked as. Installing is
//! copying this file and making symlinks.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use rauha::{cli, daemon, shim};

/// The role this process plays.
#[derive(Debug, PartialEq, Eq)]
enum Role {
    Daemon,
    Shim,
    Probe,
    Cli,
}

/// Pick the role from argv[0]'s basename; every other name is the CLI. Returns the role and the
/// arguments that role parses.
fn dispatch(args: &[OsString]) -> (Role, Vec<OsString>) {
    let invoked_as = args
        .first()
        .and_then(|arg0| Path::new(arg0).file_name())
        .and_then(|name| name.to_str())
        .unwrap_or("rauha");
    let rest = args.get(1..).unwrap_or_default().to_vec();
    match invoked_as {
        "rauhad" => (Role::Daemon, rest),
        "rauha-shim" => (Role::Shim, rest),
        // The daemon starts shims as `rauha shim …`: an internal role, kept out of the CLI's
        // help.
        _ if rest.first().is_some_and(|arg| arg == "shim") => (Role::Shim, rest[1..].to_vec()),
        // `rauha probe …`: attack probes run inside a zone by `zone verify`; internal too.
        _ if rest.first().is_some_and(|arg| arg == "probe") => (Role::Probe, rest[1..].to_vec()),
        // `rauha daemon …` reaches the daemon through the CLI's `daemon` subcommand, so that
        // `rauha --help` lists it.
        _ => (Role::Cli, rest),
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let (role, rest) = dispatch(&args);
    match role {
        Role::Daemon => match cli::parse_role_args::<daemon::DaemonArgs>("rauhad", &rest) {
            Ok(daemon_args) => daemon::run(daemon_args),
            Err(code) => code,
        },
        Role::Shim => run_shim(rest),
        Role::Probe => {
            let args: Vec<String> =
                rest.into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
            rauha::probe::main(&args)
        }
        Role::Cli => cli::run(&rest),
    }
}

/// The shim must stay single-threaded (it clones container processes without exec'ing), so it
/// runs straight from `main`, before anything could start a thread.
fn run_shim(args: Vec<OsString>) -> ExitCode {
    let Some(args) = args.into_iter().map(|arg| arg.into_string().ok()).collect::<Option<Vec<_>>>()
    else {
        eprintln!("rauha-shim: arguments must be valid UTF-8");
        return ExitCode::from(2);
    };
    match shim::ShimArgs::parse(args).and_then(|args| shim::run_shim(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rauha-shim: {error}");
            ExitCode::FAILURE
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
    fn role_comes_from_the_invoked_name() {
        assert_eq!(
            dispatch(&os(&["/usr/bin/rauhad", "--root", "/x"])),
            (Role::Daemon, os(&["--root", "/x"]))
        );
        assert_eq!(dispatch(&os(&["rauha", "zone", "list"])), (Role::Cli, os(&["zone", "list"])));
        let shim_args = os(&["--zone", "1"]);
        assert_eq!(
            dispatch(&os(&["/x/rauha-shim", "--zone", "1"])),
            (Role::Shim, shim_args.clone())
        );
        assert_eq!(dispatch(&os(&["rauha", "shim", "--zone", "1"])), (Role::Shim, shim_args));
        assert_eq!(dispatch(&os(&["rauha", "probe"])), (Role::Probe, vec![]));
    }

    #[test]
    fn every_other_name_is_the_cli() {
        assert_eq!(
            dispatch(&os(&["/usr/local/bin/rauha", "daemon", "--root", "/x"])),
            (Role::Cli, os(&["daemon", "--root", "/x"]))
        );
        assert_eq!(dispatch(&os(&["rauha"])), (Role::Cli, vec![]));
        assert_eq!(dispatch(&os(&[])), (Role::Cli, vec![]));
    }
}
