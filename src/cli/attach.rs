//! `rauha attach`, and the foreground half of `rauha run -i`/`-t`: this terminal wired to a
//! container's main process through the fds its shim hands out (DESIGN.md §1 "Streams"). Output
//! arrives on pipes the shim tees the container's output into; input goes straight to the PTY
//! master or the stdin pipe. Closing them detaches; the container keeps running.

use std::io::IsTerminal;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use argh::FromArgs;

use super::exec::{RawTerminal, follow_window_size, pump, spawn};
use super::{CliError, context};
use crate::rpc::{self, ContainerInfo, RauhaClient};
use crate::shim::pty;

/// Attach this terminal to a running container's input and output; ends with the container,
/// exiting with its code. With a container TTY and a local terminal, the terminal goes raw and
/// resizes follow. Closing the input (or killing this command) detaches; the container runs on.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "attach")]
pub struct Attach {
    /// do not send this command's stdin to the container
    #[argh(switch)]
    no_stdin: bool,
    /// container id, id prefix or name
    #[argh(positional)]
    container: String,
}

/// A live attachment: copier threads running, the terminal possibly raw.
pub(super) struct Session {
    raw: Option<RawTerminal>,
    outputs: usize,
    output_ended: Receiver<()>,
}

/// Attaches to `info`'s container and starts copying; `forward_stdin` sends this process's
/// stdin to it (when the container takes input).
pub(super) async fn open(
    client: &RauhaClient,
    socket: &Path,
    info: &ContainerInfo,
    forward_stdin: bool,
) -> Result<Session, CliError> {
    let ticket = client.container_attach(context(), info.id.clone()).await??;
    let fds = rpc::fds::claim(socket, ticket)?;
    wire(info, fds, forward_stdin)
}

fn wire(info: &ContainerInfo, fds: Vec<OwnedFd>, forward_stdin: bool) -> Result<Session, CliError> {
    let local_tty = std::io::stdin().is_terminal();
    let count = fds.len();
    let mut fds = fds.into_iter();
    let mut next = |what: &'static str| fds.next().ok_or(CliError::MissingStream(what));
    let (ended, output_ended) = std::sync::mpsc::channel::<()>();
    let mut outputs = 0;
    let mut copy_out = |from: OwnedFd, to: Box<dyn std::io::Write + Send>| {
        let ended = ended.clone();
        outputs += 1;
        spawn("attach-output", move || {
            pump(std::fs::File::from(from), to);
            let _ = ended.send(());
        });
    };
    let mut raw = None;
    if info.tty {
        let master = next("pty master")?;
        let output = next("output pipe")?;
        if local_tty {
            // Best effort: a terminal without a size leaves the container's as it is.
            if let Ok((rows, cols)) = pty::window_size(std::io::stdin().as_fd()) {
                let _ = pty::set_window_size(&master, rows, cols);
            }
            follow_window_size(master.try_clone().map_err(CliError::Duplicate)?);
        }
        if info.interactive && forward_stdin {
            if local_tty {
                raw = RawTerminal::enter();
            }
            let writer = std::fs::File::from(master);
            spawn("attach-stdin", move || pump(std::io::stdin(), writer));
        }
        copy_out(output, Box::new(std::io::stdout()));
    } else {
        // stdin's write end comes first, when the container still takes input.
        if count == 3 {
            let stdin = std::fs::File::from(next("stdin pipe")?);
            if forward_stdin {
                // Our end of input closes our copy; for `run -i` that is the container's.
                spawn("attach-stdin", move || pump(std::io::stdin(), stdin));
            }
        }
        copy_out(next("stdout pipe")?, Box::new(std::io::stdout()));
        copy_out(next("stderr pipe")?, Box::new(std::io::stderr()));
    }
    Ok(Session { raw, outputs, output_ended })
}

impl Session {
    /// Waits for the container to stop, lets the output drain, restores the terminal; returns
    /// the container's final state.
    pub(super) async fn finish(
        self,
        client: &RauhaClient,
        container: &str,
    ) -> Result<ContainerInfo, CliError> {
        let done = client.container_wait(super::unbounded(), container.to_owned()).await;
        // The shim ends the output pipes right after the last output, before it reports the
        // exit; a short grace covers the copiers' last writes.
        let deadline = Instant::now() + Duration::from_secs(2);
        for _ in 0..self.outputs {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.output_ended.recv_timeout(left).is_err() {
                break;
            }
        }
        drop(self.raw);
        Ok(done??)
    }
}

pub async fn attach(
    client: &RauhaClient,
    socket: &Path,
    attach: Attach,
) -> Result<ExitCode, CliError> {
    let info = client.container_get(context(), attach.container).await??;
    let session = open(client, socket, &info, !attach.no_stdin).await?;
    let done = session.finish(client, &info.id).await?;
    Ok(super::container::exit_code(&done))
}
