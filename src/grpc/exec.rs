//! `ExecInContainer` and `ExecStream` onto `Daemon::exec_container` / `Daemon::wait_exec`: the
//! daemon hands out the process's stdio fds (a PTY master, or pipes) exactly as it does to the
//! CLI, and the facade relays them as messages.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::{Response, Status, Streaming};

use super::proto::container::exec_stream_request::Message as Inbound;
use super::proto::container::exec_stream_response::Message as Outbound;
use super::proto::container::{
    ExecInContainerRequest, ExecInContainerResponse, ExecStreamRequest, ExecStreamResponse,
};
use super::{blocking, container_id, env_list, status};
use crate::daemon::Daemon;
use crate::rpc::{ApiError, ErrorKind, ExecRequest};

/// Output `ExecInContainer` keeps, stdout and stderr together; the rest is read and dropped so
/// the process never blocks on a full pipe.
pub const EXEC_CAPTURE_LIMIT: usize = 16 << 20;
/// Response metadata naming the streams `ExecInContainer` cut.
pub const TRUNCATED_METADATA: &str = "rauha-output-truncated";
/// After the exit, how long output still in flight (a pipe a child holds) may take to drain.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
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

/// What a relay thread reports to the forwarder.
enum Chunk {
    Data(Outbound),
    /// One output stream reached its end.
    Ended,
    Exit(Result<i32, Status>),
}

/// What the client sent, for the input thread.
enum Input {
    Stdin(Vec<u8>),
    Resize(u32, u32),
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
    let io = Stdio::split(tty, fds).map_err(|reason| {
        status(ApiError::new(ErrorKind::Internal, format!("exec {exec_id}: {reason}")))
    })?;

    let (chunks, chunk_receiver) = std::sync::mpsc::channel::<Chunk>();
    let (responses, receiver) = mpsc::channel(64);
    let (done, mut done_signal) = tokio::sync::oneshot::channel::<()>();
    let (input, input_receiver) = std::sync::mpsc::channel::<Input>();

    for (fd, make) in io.outputs {
        let chunks = chunks.clone();
        spawn_thread("rauhad-exec-out", move || relay_output(fd, make, &chunks))?;
    }
    let readers = io.readers;
    let waiter_daemon = Arc::clone(daemon);
    let waiter_chunks = chunks.clone();
    let waiter_id = exec_id.clone();
    spawn_thread("rauhad-exec-wait", move || {
        let code = waiter_daemon.wait_exec(&waiter_id).map_err(|e| status(ApiError::from(e)));
        let _ = waiter_chunks.send(Chunk::Exit(code));
    })?;
    drop(chunks);
    spawn_thread("rauhad-exec-in", move || relay_input(io.stdin, io.master, tty, &input_receiver))?;
    tokio::task::spawn_blocking(move || {
        forward(&chunk_receiver, readers, &responses);
        let _ = done.send(());
    });
    // Client messages go to the input thread until the client half-closes, goes away, or the
    // exec is over (then nothing reads its input any more).
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                message = inbound.message() => message,
                _ = &mut done_signal => break,
            };
            let sent = match message {
                Ok(Some(ExecStreamRequest { message: Some(Inbound::StdinData(data)) })) => {
                    input.send(Input::Stdin(data))
                }
                Ok(Some(ExecStreamRequest { message: Some(Inbound::Resize(size)) })) => {
                    input.send(Input::Resize(size.rows, size.cols))
                }
                // A second start is meaningless once running; nothing to do with it.
                Ok(Some(_)) => Ok(()),
                Ok(None) | Err(_) => break,
            };
            if sent.is_err() {
                break;
            }
        }
    });
    Ok(ReceiverStream::new(receiver))
}

/// An output fd and the message its bytes travel in.
type Output = (OwnedFd, fn(Vec<u8>) -> Outbound);

/// The client's side of the exec's stdio, as the daemon handed it over.
struct Stdio {
    stdin: Option<OwnedFd>,
    /// With a TTY: the PTY master (input and resizes go to it).
    master: Option<OwnedFd>,
    outputs: Vec<Output>,
    readers: usize,
}

impl Stdio {
    fn split(tty: bool, fds: Vec<OwnedFd>) -> Result<Self, String> {
        let count = fds.len();
        if tty {
            let [master] = <[OwnedFd; 1]>::try_from(fds)
                .map_err(|_| format!("expected a PTY master, got {count} fds"))?;
            let reader = master.try_clone().map_err(|e| format!("dup the PTY master: {e}"))?;
            Ok(Self {
                stdin: None,
                master: Some(master),
                outputs: vec![(reader, Outbound::StdoutData)],
                readers: 1,
            })
        } else {
            let [stdin, stdout, stderr] = <[OwnedFd; 3]>::try_from(fds)
                .map_err(|_| format!("expected stdin, stdout and stderr pipes, got {count} fds"))?;
            Ok(Self {
                stdin: Some(stdin),
                master: None,
                outputs: vec![(stdout, Outbound::StdoutData), (stderr, Outbound::StderrData)],
                readers: 2,
            })
        }
    }
}

fn spawn_thread(name: &str, work: impl FnOnce() + Send + 'static) -> Result<(), Status> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
        .map(drop)
        .map_err(|error| Status::internal(format!("exec: start a {name} thread: {error}")))
}

/// Copy one output fd into chunks until its end. A PTY master reads EIO once the last slave
/// closes: that is its end, not a failure.
fn relay_output(
    fd: OwnedFd,
    make: fn(Vec<u8>) -> Outbound,
    chunks: &std::sync::mpsc::Sender<Chunk>,
) {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        match rustix::io::read(&fd, &mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if chunks.send(Chunk::Data(make(buffer[..n].to_vec()))).is_err() {
                    // The stream is over; keep draining so the writer never blocks.
                    continue;
                }
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    let _ = chunks.send(Chunk::Ended);
}

/// Write stdin and apply resizes until the client is done; dropping stdin's write end then
/// gives the process EOF.
fn relay_input(
    stdin: Option<OwnedFd>,
    master: Option<OwnedFd>,
    tty: bool,
    inputs: &std::sync::mpsc::Receiver<Input>,
) {
    let target = if tty { master.as_ref() } else { stdin.as_ref() };
    while let Ok(input) = inputs.recv() {
        match input {
            Input::Stdin(data) => {
                let Some(fd) = target else { continue };
                if write_all(fd.as_fd(), &data).is_err() {
                    // The process closed its input; later data has nowhere to go.
                    return;
                }
            }
            Input::Resize(rows, cols) => {
                let (Some(master), Ok(rows), Ok(cols)) =
                    (master.as_ref(), u16::try_from(rows), u16::try_from(cols))
                else {
                    // Without a TTY there is no window; an out-of-range size is not one.
                    tracing::debug!(rows, cols, tty, "exec: resize ignored");
                    continue;
                };
                if let Err(error) = crate::shim::pty::set_window_size(master, rows, cols) {
                    tracing::debug!(%error, "exec: resize the PTY");
                }
            }
        }
    }
}

fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut data: &[u8]) -> rustix::io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Pass output on in order, then the exit code last: once the exit is known, output still in
/// flight gets [`DRAIN_GRACE`] to arrive.
fn forward(
    chunks: &std::sync::mpsc::Receiver<Chunk>,
    readers: usize,
    responses: &mpsc::Sender<Result<ExecStreamResponse, Status>>,
) {
    let send = |message: Outbound| {
        // A client that went away no longer needs output; the exec runs on regardless.
        let _ = responses.blocking_send(Ok(ExecStreamResponse { message: Some(message) }));
    };
    let mut ended = 0;
    let mut exit: Option<(Result<i32, Status>, Instant)> = None;
    loop {
        let next = match &exit {
            None => chunks.recv().ok(),
            Some((_, deadline)) => {
                chunks.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()
            }
        };
        match next {
            Some(Chunk::Data(message)) => send(message),
            Some(Chunk::Ended) => ended += 1,
            Some(Chunk::Exit(code)) => exit = Some((code, Instant::now() + DRAIN_GRACE)),
            // Every sender gone, or the grace is over.
            None => break,
        }
        if ended == readers && exit.is_some() {
            break;
        }
    }
    match exit {
        Some((Ok(code), _)) => send(Outbound::ExitCode(code)),
        Some((Err(error), _)) => {
            let _ = responses.blocking_send(Err(error));
        }
        None => {
            let _ = responses.blocking_send(Err(Status::internal(
                "exec: the exit code never arrived (the waiter ended without one)",
            )));
        }
    }
}
