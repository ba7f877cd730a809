//! `Attach` onto `Daemon::attach_container`: the container's stdio fds, exactly as the CLI's
//! `rauha attach` gets them, relayed as messages; the stream ends with the container's exit
//! code. The contract's `AttachResponse` has no stderr field, so without a TTY the container's
//! stderr arrives in `stdout_data` too. Leaving (dropping the stream) detaches without
//! affecting the container.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::proto::container::attach_request::Message as Inbound;
use super::proto::container::attach_response::Message as Outbound;
use super::proto::container::{AttachRequest, AttachResponse};
use super::relay::{self, Client, Input};
use super::{blocking, container_id, status};
use crate::daemon::Daemon;
use crate::rpc::{ApiError, ContainerInfo};

/// How often the exit waiter looks whether the client is still there.
const WAIT_SLICE: Duration = Duration::from_secs(1);

type Responses = ReceiverStream<Result<AttachResponse, Status>>;

/// `Attach`: attach on the first message (`start`), then relay input and resizes in, output
/// out, and end with the exit code.
pub(super) async fn attach(
    daemon: &Arc<Daemon>,
    mut inbound: Streaming<AttachRequest>,
) -> Result<Responses, Status> {
    let first = |what: &str| {
        Status::invalid_argument(format!("the first Attach message must be `start`, {what}"))
    };
    let start = match inbound.message().await? {
        Some(AttachRequest { message: Some(Inbound::Start(start)) }) => start,
        Some(AttachRequest { message: Some(Inbound::StdinData(_)) }) => {
            return Err(first("not `stdin_data`"));
        }
        Some(AttachRequest { message: Some(Inbound::Resize(_)) }) => {
            return Err(first("not `resize`"));
        }
        Some(AttachRequest { message: None }) => return Err(first("it was empty")),
        None => return Err(first("but the stream ended before it")),
    };
    let id = container_id("start.container_id", &start.container_id)?;
    let (info, fds) = blocking(daemon, move |d| {
        let info = d.get_container(&id)?;
        let fds = d.attach_container(&info.id)?;
        Ok::<_, ApiError>((info, fds))
    })
    .await?;
    let io = split(&info, fds)
        .map_err(|reason| Status::internal(format!("attach to container {}: {reason}", info.id)))?;
    let waiter = Arc::clone(daemon);
    relay::run(
        io,
        move |client| exit_code(&waiter, &info.id, &client),
        inbound,
        relay::Messages {
            response: |message| AttachResponse { message: Some(message) },
            exit: Outbound::ExitCode,
            // A second start is meaningless once attached; nothing to do with it.
            input: |request: AttachRequest| match request.message {
                Some(Inbound::StdinData(data)) => Some(Input::Stdin(data)),
                Some(Inbound::Resize(size)) => Some(Input::Resize(size.rows, size.cols)),
                _ => None,
            },
        },
    )
}

/// The fds in the daemon's order: with a TTY the PTY master (input when interactive,
/// resizes) and the output pipe; without, stdin's write end when the container still takes
/// input, then stdout's and stderr's read ends.
fn split(info: &ContainerInfo, fds: Vec<OwnedFd>) -> Result<relay::Stdio<Outbound>, String> {
    let count = fds.len();
    let mut fds = fds.into_iter();
    if info.tty {
        let (Some(master), Some(output), None) = (fds.next(), fds.next(), fds.next()) else {
            return Err(format!("expected a PTY master and an output pipe, got {count} fds"));
        };
        let input = match info.interactive {
            true => Some(master.try_clone().map_err(|e| format!("dup the PTY master: {e}"))?),
            false => None,
        };
        return Ok(relay::Stdio {
            input,
            master: Some(master),
            outputs: vec![(output, Outbound::StdoutData)],
        });
    }
    let input = match count {
        3 => fds.next(),
        2 => None,
        _ => return Err(format!("expected 2 or 3 pipes, got {count} fds")),
    };
    let outputs = fds.map(|fd| -> relay::Output<Outbound> { (fd, Outbound::StdoutData) }).collect();
    Ok(relay::Stdio { input, master: None, outputs })
}

/// Waits for the container to stop; gives up when the client has gone away.
fn exit_code(daemon: &Daemon, id: &str, client: &Client<AttachResponse>) -> Result<i32, Status> {
    loop {
        match daemon.wait_container_for(id, WAIT_SLICE) {
            Ok(Some(info)) => {
                return info.exit_code.ok_or_else(|| {
                    Status::internal(format!("container {id} stopped without an exit code"))
                });
            }
            Ok(None) if client.gone() => return Err(Status::cancelled("the client went away")),
            Ok(None) => {}
            Err(error) => return Err(status(ApiError::from(error))),
        }
    }
}
