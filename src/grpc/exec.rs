//! `ExecInContainer` and `ExecStream` onto `Daemon::exec_container` / `Daemon::wait_exec`: the
//! daemon hands out the process's stdio fds (a PTY master, or pipes) exactly as it does to the
//! CLI, and the facade relays them as messages.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::{Response, Status, Streaming};

use super::proto::container::exec_stream_request::Message as Inbound;
use super::proto::container::exec_stream_response::Message as Outbound;
use super::proto::container::{
    ExecInContainerRequest, ExecInContainerResponse, ExecStreamRequest, ExecStreamResponse,
};
use super::relay::{self, Input};
use super::{blocking, container_id, env_list, status};
use crate::daemon::Daemon;
use crate::rpc::{ApiError, ErrorKind, ExecRequest};

/// Output `ExecInContainer` keeps, stdout and stderr together; the rest is read and dropped so
/// the process never blocks on a full pipe.
pub const EXEC_CAPTURE_LIMIT: usize = 16 << 20;
/// Response metadata naming the streams `ExecInContainer` cut.
pub const TRUNCATED_METADATA: &str = "rauha-output-truncated";
/// Read size for relaying output.
const CHUNK: usize = 32 * 1024;

/// `ExecInContainer`: run to completion, capture output up to the cap.
pub(super) async fn exec_captured(
    daemon: &Arc<Daemon>,
    request: ExecInContainerRequest,
) -> Result<Response<ExecInContainerResponse>, Status> {
    let exec = ExecRequest {
        container: container_id("container_id", &request.container_id)?,
        command: request.command,
        env: env_list(request.env, "env")?,
        ..ExecRequest::default()
    };
    let (exit_code, stdout, stderr) = blocking(daemon, move |d| {
        let (exec_id, fds) = d.exec_container(exec).map_err(ApiError::from)?;
        let [stdout, stderr] = <[OwnedFd; 2]>::try_from(fds).map_err(|fds| {
            ApiError::new(
                ErrorKind::Internal,
                format!("exec {exec_id}: expected stdout and stderr pipes, got {} fds", fds.len()),
            )
        })?;
        let budget = AtomicUsize::new(EXEC_CAPTURE_LIMIT);
        let (stdout, stderr) = std::thread::scope(|scope| {
            let stderr = scope.spawn(|| capture(stderr, &budget));
            let stdout = capture(stdout, &budget);
            (stdout, stderr.join())
        });
        let read_error = |stream: &str, error: std::io::Error| {
            ApiError::new(ErrorKind::Internal, format!("exec {exec_id}: read {stream}: {error}"))
        };
        let stdout = stdout.map_err(|e| read_error("stdout", e))?;
        let stderr = match stderr {
            Ok(result) => result.map_err(|e| read_error("stderr", e))?,
            Err(_) => return Err(read_error("stderr", std::io::Error::other("reader panicked"))),
        };
        let code = d.wait_exec(&exec_id).map_err(ApiError::from)?;
        Ok::<_, ApiError>((code, stdout, stderr))
    })
    .await?;
    let truncated: Vec<&str> = [("stdout", stdout.1), ("stderr", stderr.1)]
        .into_iter()
        .filter_map(|(name, cut)| cut.then_some(name))
        .collect();
    let mut stderr = stderr.0;
    if !truncated.is_empty() {
        stderr.extend_from_slice(
            format!(
                "\n[rauha: output truncated ({}): stdout and stderr together are capped at {} \
                 MiB; use ExecStream for more]\n",
                truncated.join(", "),
                EXEC_CAPTURE_LIMIT >> 20
            )
            .as_bytes(),
        );
    }
    let mut response =
        Response::new(ExecInContainerResponse { exit_code, stdout: stdout.0, stderr });
    if !truncated.is_empty()
        && let Ok(value) = MetadataValue::try_from(truncated.join(","))
    {
        response.metadata_mut().insert(TRUNCATED_METADATA, value);
    }
    Ok(response)
}

/// Read `fd` to its end, keeping what the shared budget allows; returns the bytes and whether
/// any were dropped.
fn capture(fd: OwnedFd, budget: &AtomicUsize) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = match rustix::io::read(&fd, &mut buffer) {
            Ok(0) => return Ok((kept, truncated)),
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(error) => return Err(error.into()),
        };
        let granted = budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| Some(left - left.min(n)))
            .map_or(0, |left| left.min(n));
        kept.extend_from_slice(&buffer[..granted]);
        truncated |= granted < n;
    }
}

type Responses = ReceiverStream<Result<ExecStreamResponse, Status>>;

/// `ExecStream`: start on the first message, then relay stdin and resizes in, output out, and
/// end with the exit code.
pub(super) async fn exec_stream(
    daemon: &Arc<Daemon>,
    mut inbound: Streaming<ExecStreamRequest>,
) -> Result<Responses, Status> {
    let start = match inbound.message().await? {
        Some(ExecStreamRequest { message: Some(Inbound::Start(start)) }) => start,
        Some(ExecStreamRequest { message: Some(Inbound::StdinData(_)) }) => {
            return Err(Status::invalid_argument(
                "the first ExecStream message must be `start`, not `stdin_data`",
            ));
        }
        Some(ExecStreamRequest { message: Some(Inbound::Resize(_)) }) => {
            return Err(Status::invalid_argument(
                "the first ExecStream message must be `start`, not `resize`",
            ));
        }
        Some(ExecStreamRequest { message: None }) => {
            return Err(Status::invalid_argument(
                "the first ExecStream message must be `start`; it was empty",
            ));
        }
        None => {
            return Err(Status::invalid_argument(
                "the ExecStream request stream ended before its `start` message",
            ));
        }
    };
    let tty = start.tty;
    let request = ExecRequest {
        container: container_id("start.container_id", &start.container_id)?,
        command: start.command,
        env: env_list(start.env, "start.env")?,
        tty,
        // The client decides when input ends, by half-closing its stream.
        interactive: true,
        ..ExecRequest::default()
    };
    let (exec_id, fds) = blocking(daemon, move |d| d.exec_container(request)).await?;
    let io = split(tty, fds).map_err(|reason| {
        status(ApiError::new(ErrorKind::Internal, format!("exec {exec_id}: {reason}")))
    })?;
    let waiter = Arc::clone(daemon);
    relay::run(
        io,
        move |_| waiter.wait_exec(&exec_id).map_err(|e| status(ApiError::from(e))),
        inbound,
        relay::Messages {
            response: |message| ExecStreamResponse { message: Some(message) },
            exit: Outbound::ExitCode,
            // A second start is meaningless once running; nothing to do with it.
            input: |request: ExecStreamRequest| match request.message {
                Some(Inbound::StdinData(data)) => Some(Input::Stdin(data)),
                Some(Inbound::Resize(size)) => Some(Input::Resize(size.rows, size.cols)),
                _ => None,
            },
        },
    )
}

/// The exec's stdio as the daemon handed it over: with a TTY the PTY master (input, output and
/// resizes), else stdin, stdout and stderr pipes.
fn split(tty: bool, fds: Vec<OwnedFd>) -> Result<relay::Stdio<Outbound>, String> {
    let count = fds.len();
    if tty {
        let [master] = <[OwnedFd; 1]>::try_from(fds)
            .map_err(|_| format!("expected a PTY master, got {count} fds"))?;
        let dup = || master.try_clone().map_err(|e| format!("dup the PTY master: {e}"));
        Ok(relay::Stdio {
            input: Some(dup()?),
            outputs: vec![(dup()?, Outbound::StdoutData)],
            master: Some(master),
        })
    } else {
        let [stdin, stdout, stderr] = <[OwnedFd; 3]>::try_from(fds)
            .map_err(|_| format!("expected stdin, stdout and stderr pipes, got {count} fds"))?;
        Ok(relay::Stdio {
            input: Some(stdin),
            master: None,
            outputs: vec![(stdout, Outbound::StdoutData), (stderr, Outbound::StderrData)],
        })
    }
}
