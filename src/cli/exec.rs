//! `rauha exec`: run a process in a running container, wired to this terminal. The bytes flow
//! between this process and the container directly through the fds the daemon handed over.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::ExitCode;

use argh::FromArgs;

use super::{CliError, context};
use crate::rpc::{self, ExecRequest, RauhaClient};

/// Run a command in a running container (-i keeps stdin open, -t allocates a terminal).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "exec")]
pub struct Exec {
    /// keep stdin open and send it to the process
    #[argh(switch, short = 'i')]
    interactive: bool,
    /// allocate a pseudo-terminal
    #[argh(switch, short = 't')]
    tty: bool,
    /// set an environment variable (KEY=VALUE); repeatable
    #[argh(option, short = 'e')]
    env: Vec<String>,
    /// working directory inside the container (default: the container's)
    #[argh(option, short = 'w')]
    workdir: Option<String>,
    /// user to run as (default: the container's)
    #[argh(option, short = 'u')]
    user: Option<String>,
    /// container id, id prefix or name
    #[argh(positional)]
    container: String,
    /// command and arguments
    #[argh(positional, greedy)]
    command: Vec<String>,
}

/// Copy from `from` to `to` until end of input or a write error; `flush` after each chunk.
pub(super) fn pump(mut from: impl Read, mut to: impl Write) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buffer[..n]).and_then(|()| to.flush()).is_err() {
                    return;
                }
            }
        }
    }
}

/// Puts this terminal into raw mode for the session and restores it when dropped.
pub(super) struct RawTerminal {
    saved: rustix::termios::Termios,
}

impl RawTerminal {
    pub(super) fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(stdin.as_fd(), rustix::termios::OptionalActions::Now, &raw)
            .ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let stdin = std::io::stdin();
        let _ = rustix::termios::tcsetattr(
            stdin.as_fd(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

pub(super) fn spawn(name: &str, work: impl FnOnce() + Send + 'static) {
    // A copier that cannot start only loses that direction; the exit code still arrives.
    let _ = std::thread::Builder::new().name(name.to_owned()).spawn(work);
}

pub async fn exec(client: &RauhaClient, socket: &Path, exec: Exec) -> Result<ExitCode, CliError> {
    if exec.command.is_empty() {
        return Err(CliError::Usage("exec: a command is required".into()));
    }
    let local_tty = std::io::stdin().is_terminal();
    let tty_size = if exec.tty && local_tty {
        crate::shim::pty::window_size(std::io::stdin().as_fd()).ok()
    } else {
        None
    };
    let request = ExecRequest {
        container: exec.container,
        command: exec.command,
        env: exec.env,
        tty: exec.tty,
        interactive: exec.interactive,
        tty_size,
        user: exec.user.unwrap_or_default(),
        working_dir: exec.workdir.unwrap_or_default(),
    };
    let (exec_id, ticket) = client.container_exec(context(), request).await??;
    let mut fds = rpc::fds::claim(socket, ticket)?.into_iter();
    let mut next = |what: &'static str| fds.next().ok_or(CliError::MissingStream(what));
    let mut raw = None;
    // Each output copier reports when its stream ended.
    let (ended, output_ended) = std::sync::mpsc::channel::<()>();
    let mut outputs = 0;
    let mut copy_out = |from: std::fs::File, to: Box<dyn Write + Send>| {
        let ended = ended.clone();
        outputs += 1;
        spawn("exec-output", move || {
            pump(from, to);
            let _ = ended.send(());
        });
    };
    if exec.tty {
        let master: OwnedFd = next("pty master")?;
        if exec.interactive && local_tty {
            raw = RawTerminal::enter();
            follow_window_size(master.try_clone().map_err(CliError::ReadLog)?);
        }
        let reader = std::fs::File::from(master.try_clone().map_err(CliError::ReadLog)?);
        if exec.interactive {
            let writer = std::fs::File::from(master);
            spawn("exec-stdin", move || pump(std::io::stdin(), writer));
        }
        // Reading the master ends with EIO once the process and its children close the slave.
        copy_out(reader, Box::new(std::io::stdout()));
    } else {
        if exec.interactive {
            let stdin = std::fs::File::from(next("stdin pipe")?);
            // Closing the pipe at our end of input is the process's end of file.
            spawn("exec-stdin", move || pump(std::io::stdin(), stdin));
        }
        let stdout = std::fs::File::from(next("stdout pipe")?);
        let stderr = std::fs::File::from(next("stderr pipe")?);
        copy_out(stdout, Box::new(std::io::stdout()));
        copy_out(stderr, Box::new(std::io::stderr()));
    }
    let code = client.exec_wait(super::unbounded(), exec_id).await??;
    // Output written just before the exit may still be in flight: let the copiers drain it, but
    // not forever — a background process that inherited the streams may keep them open.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    for _ in 0..outputs {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if output_ended.recv_timeout(left).is_err() {
            break;
        }
    }
    drop(raw);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Resize the container's terminal whenever this one is resized (SIGWINCH).
pub(super) fn follow_window_size(master: OwnedFd) {
    spawn("exec-winch", move || {
        let Ok(mut signals) = async_signal::Signals::new([async_signal::Signal::Winch]) else {
            return;
        };
        smol::block_on(async move {
            use futures::StreamExt;
            while signals.next().await.is_some() {
                if let Ok((rows, cols)) = crate::shim::pty::window_size(std::io::stdin().as_fd()) {
                    let _ = crate::shim::pty::set_window_size(&master, rows, cols);
                }
            }
        });
    });
}
