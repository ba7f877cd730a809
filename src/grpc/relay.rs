//! Relaying a process's stdio fds (as the daemon hands them out for exec and attach) to a
//! bidirectional gRPC stream: a thread per output fd, one for input, one waiting for the exit
//! code, and a forwarder that passes output on in order and the exit code last.
//!
//! A client that goes away (its response stream dropped) ends the relay: the output threads
//! stop reading within [`POLL_INTERVAL`] and close their fds, which detaches from the process
//! without affecting it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

/// After the exit, how long output still in flight (a pipe a child holds) may take to drain.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Read size for relaying output.
const CHUNK: usize = 32 * 1024;
/// How often a blocked output reader looks whether the client is still there.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What the client sent, for the input thread.
pub(super) enum Input {
    Stdin(Vec<u8>),
    Resize(u32, u32),
}

/// An output fd and the message its bytes travel in.
pub(super) type Output<M> = (OwnedFd, fn(Vec<u8>) -> M);

/// The client's side of a process's stdio, as the daemon handed it over.
pub(super) struct Stdio<M> {
    /// Where input goes: a stdin pipe, a PTY master, or nowhere.
    pub input: Option<OwnedFd>,
    /// The PTY master, for resizes (with a TTY).
    pub master: Option<OwnedFd>,
    pub outputs: Vec<Output<M>>,
}

/// Whether the client is still reading the response stream. Weak, so that the relay's
/// threads never keep the stream open after the forwarder ended it.
pub(super) struct Client<R>(mpsc::WeakSender<Result<R, Status>>);

impl<R> Client<R> {
    /// The client dropped the stream, or the relay is over.
    pub(super) fn gone(&self) -> bool {
        self.0.upgrade().is_none_or(|sender| sender.is_closed())
    }
}

/// What a relay thread reports to the forwarder.
enum Chunk<M> {
    Data(M),
    /// One output stream reached its end.
    Ended,
    Exit(Result<i32, Status>),
}

/// How the messages of one rpc are built.
pub(super) struct Messages<M, R, Q> {
    /// An output message into a response.
    pub response: fn(M) -> R,
    /// The exit code as an output message.
    pub exit: fn(i32) -> M,
    /// A client message after the first: input, a resize, or nothing to do.
    pub input: fn(Q) -> Option<Input>,
}

/// Relays `io` to a response stream until output ended and `wait` returned the exit code;
/// client messages go to the input thread until the client half-closes its stream, goes away,
/// or the process is over.
pub(super) fn run<M, R, Q>(
    io: Stdio<M>,
    wait: impl FnOnce(Client<R>) -> Result<i32, Status> + Send + 'static,
    mut inbound: Streaming<Q>,
    messages: Messages<M, R, Q>,
) -> Result<ReceiverStream<Result<R, Status>>, Status>
where
    M: Send + 'static,
    R: Send + 'static,
    Q: Send + 'static,
{
    let (chunks, chunk_receiver) = std::sync::mpsc::channel::<Chunk<M>>();
    let (responses, receiver) = mpsc::channel(64);
    let (done, mut done_signal) = tokio::sync::oneshot::channel::<()>();
    let (input, input_receiver) = std::sync::mpsc::channel::<Input>();
    let readers = io.outputs.len();
    for (fd, make) in io.outputs {
        let chunks = chunks.clone();
        let client = Client(responses.downgrade());
        spawn_thread("rauhad-relay-out", move || relay_output(fd, make, &chunks, &client))?;
    }
    let waiter_chunks = chunks.clone();
    let client = Client(responses.downgrade());
    spawn_thread("rauhad-relay-wait", move || {
        let _ = waiter_chunks.send(Chunk::Exit(wait(client)));
    })?;
    drop(chunks);
    spawn_thread("rauhad-relay-in", move || relay_input(io.input, io.master, &input_receiver))?;
    let Messages { response, exit, input: to_input } = messages;
    tokio::task::spawn_blocking(move || {
        forward(&chunk_receiver, readers, &responses, response, exit);
        let _ = done.send(());
    });
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                message = inbound.message() => message,
                _ = &mut done_signal => break,
            };
            let sent = match message {
                Ok(Some(message)) => match to_input(message) {
                    Some(data) => input.send(data),
                    None => Ok(()),
                },
                Ok(None) | Err(_) => break,
            };
            if sent.is_err() {
                break;
            }
        }
    });
    Ok(ReceiverStream::new(receiver))
}

pub(super) fn spawn_thread(name: &str, work: impl FnOnce() + Send + 'static) -> Result<(), Status> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
        .map(drop)
        .map_err(|error| Status::internal(format!("start a {name} thread: {error}")))
}

/// Copy one output fd into chunks until its end or the client's departure. A PTY master reads
/// EIO once the last slave closes: that is its end, not a failure.
fn relay_output<M, R>(
    fd: OwnedFd,
    make: fn(Vec<u8>) -> M,
    chunks: &std::sync::mpsc::Sender<Chunk<M>>,
    client: &Client<R>,
) {
    let mut buffer = vec![0u8; CHUNK];
    let interval = rustix::fs::Timespec {
        tv_sec: POLL_INTERVAL.as_secs() as i64,
        tv_nsec: POLL_INTERVAL.subsec_nanos().into(),
    };
    loop {
        let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&interval)) {
            Ok(0) if client.gone() => break,
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(_) => break,
        }
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

/// Write input and apply resizes until the client is done; dropping the input fd then gives
/// the process EOF (a stdin pipe whose only writer it was).
fn relay_input(
    input: Option<OwnedFd>,
    master: Option<OwnedFd>,
    inputs: &std::sync::mpsc::Receiver<Input>,
) {
    while let Ok(message) = inputs.recv() {
        match message {
            Input::Stdin(data) => {
                let Some(fd) = &input else { continue };
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
                    tracing::debug!(rows, cols, "relay: resize ignored");
                    continue;
                };
                if let Err(error) = crate::shim::pty::set_window_size(master, rows, cols) {
                    tracing::debug!(%error, "relay: resize the PTY");
                }
            }
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> rustix::io::Result<()> {
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
fn forward<M, R>(
    chunks: &std::sync::mpsc::Receiver<Chunk<M>>,
    readers: usize,
    responses: &mpsc::Sender<Result<R, Status>>,
    response: fn(M) -> R,
    exit_message: fn(i32) -> M,
) {
    let send = |message: M| {
        // A client that went away no longer needs output; the process runs on regardless.
        let _ = responses.blocking_send(Ok(response(message)));
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
        Some((Ok(code), _)) => send(exit_message(code)),
        Some((Err(error), _)) => {
            let _ = responses.blocking_send(Err(error));
        }
        None => {
            let _ = responses.blocking_send(Err(Status::internal(
                "the exit code never arrived (the waiter ended without one)",
            )));
        }
    }
}
