//! The shim protocol: versioned requests, responses and events in length-prefixed postcard frames.
//!
//! One enum set serves the Linux shim (Unix socket) and the guest agent (vsock): the transport is
//! any byte stream. A frame is a little-endian `u32` payload length followed by the postcard
//! payload. The client speaks first with [`ShimRequest::Hello`]; the shim answers with its own
//! version and refuses every other request until the versions agree.
//!
//! Byte streams (exec stdio, PTYs) never travel in frames: a reply that opens a stream carries
//! its fds with `SCM_RIGHTS` on the frame's first byte ([`fdpass`]); frames carry control only.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::shim::fdpass::{self, FdPassError};

/// Protocol version; bump on any incompatible change to the enums below.
pub const PROTOCOL_VERSION: u32 = 5;

/// Largest payload a peer may send; larger length prefixes are rejected before allocating.
pub const MAX_FRAME_LEN: u32 = 4 * 1024 * 1024;

/// Errors of the framing layer.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the stream at a frame boundary.
    #[error("connection closed by peer")]
    Closed,
    /// Reading a frame failed.
    #[error("read frame: {0}")]
    Read(#[source] io::Error),
    /// Writing a frame failed.
    #[error("write frame: {0}")]
    Write(#[source] io::Error),
    /// The length prefix exceeds [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")]
    TooLarge {
        /// The announced length.
        len: u64,
    },
    /// The payload did not decode as the expected message.
    #[error("decode frame: {0}")]
    Decode(#[source] postcard::Error),
    /// The message could not be encoded.
    #[error("encode frame: {0}")]
    Encode(#[source] postcard::Error),
    /// Sending or receiving a frame over a Unix socket (with fds) failed.
    #[error(transparent)]
    FdPass(#[from] FdPassError),
}

/// Errors of a client session with a shim.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting to the shim socket failed.
    #[error("connect to shim socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A frame could not be exchanged.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The shim speaks another protocol version.
    #[error("shim speaks protocol version {theirs}, this side speaks {ours}")]
    VersionMismatch {
        /// Our version.
        ours: u32,
        /// The shim's version.
        theirs: u32,
    },
    /// The shim answered the handshake with something other than `Hello`.
    #[error("shim answered the handshake with {0}")]
    Handshake(String),
}

/// An always-on enforcement layer the shim applies to every container process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Layer {
    /// The seccomp filter (default profile + `[syscalls] deny`) and its `no_new_privs`.
    Seccomp,
    /// The Landlock ruleset (write only under `writable_paths`, signal and socket scoping).
    Landlock,
    /// The capability allow-list: when disabled the process keeps every capability.
    Caps,
}

impl Layer {
    /// Every layer, in the order the child applies them.
    pub const ALL: [Layer; 3] = [Layer::Landlock, Layer::Caps, Layer::Seccomp];

    /// The layer's name as the daemon's flag spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Layer::Seccomp => "seccomp",
            Layer::Landlock => "landlock",
            Layer::Caps => "caps",
        }
    }

    /// The layer called `name` (`seccomp`, `landlock`, `caps`).
    pub fn from_name(name: &str) -> Option<Layer> {
        Layer::ALL.into_iter().find(|l| l.name() == name)
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
/// A container's process specification, fully resolved by the daemon (no image lookups here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Container id, unique within the shim.
    pub id: String,
    /// Hostname set in the container's UTS namespace.
    pub hostname: String,
    /// argv; `args[0]` is looked up in the container's `PATH` when it has no slash.
    pub args: Vec<String>,
    /// Environment as `KEY=VALUE` strings.
    pub env: Vec<String>,
    /// Working directory inside the container (absolute).
    pub cwd: PathBuf,
    /// User id the process runs as.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub additional_gids: Vec<u32>,
    /// Capability numbers allowed (bounding, permitted, effective, inheritable; ambient when uid != 0).
    pub capabilities: Vec<u8>,
    /// Set `PR_SET_NO_NEW_PRIVS` before exec.
    pub no_new_privs: bool,
    /// Overlay layout of the root filesystem.
    pub rootfs: RootfsSpec,
    /// Paths inside the container that stay writable; everything else is read-only.
    pub writable_paths: Vec<PathBuf>,
    /// `[syscalls] deny` of the zone's policy: denied on top of the default seccomp profile.
    pub syscall_deny: Vec<String>,
    /// `[devices] allowed` of the zone's policy: device nodes Landlock lets the container open
    /// for writing beyond the standard ones.
    pub devices: Vec<PathBuf>,
    /// Enforcement layers switched off: only the daemon's test-only `--unsafe-disable-layer`
    /// sets this, to show that the remaining layers still hold. Empty in production.
    pub disabled_layers: Vec<Layer>,
    /// Cgroups the container joins before it execs.
    pub cgroup: CgroupSpec,
    /// Network namespace to join (`/proc/PID/ns/net` or a bind-mounted nsfs file); `None` keeps
    /// the shim's.
    pub netns_path: Option<PathBuf>,
    /// Where and how the container's stdout/stderr are logged.
    pub log: LogSpec,
    /// Contents of `/etc/resolv.conf`; `None` leaves the image's file.
    pub resolv_conf: Option<String>,
    /// Contents of `/etc/hosts`; `None` leaves the image's file.
    pub hosts: Option<String>,
    /// Give the init a PTY of the container's own devpts instance as controlling terminal and
    /// stdin/stdout/stderr; the shim keeps the master, logs its output as stdout and hands
    /// dups of it to attachers.
    pub tty: bool,
    /// Keep stdin open for attachers: without `tty`, a pipe whose write end the shim holds;
    /// with `tty`, attachers may type into the master. Else stdin is `/dev/null` (without
    /// `tty`) and attachers get no input fd.
    pub interactive: bool,
    /// With `interactive` and without `tty`: the first attacher gets the shim's only stdin
    /// write end, so the container sees end of file when that attacher closes it (Docker's
    /// `StdinOnce`, what `run -i` wants). Later attachers get no stdin.
    pub stdin_once: bool,
    /// Run the shim's own executable instead of looking `args[0]` up in the rootfs: the shim
    /// copies it into a sealed memfd and the process `execveat`s that (`args[0]` is then only
    /// its `argv[0]`). For the attack probes of `zone verify`, which need nothing from an image.
    pub self_exec: bool,
}

/// Overlayfs layout: image layers below a per-container upper dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsSpec {
    /// Unpacked image layers, lowest first.
    pub lower_dirs: Vec<PathBuf>,
    /// Per-container writable layer.
    pub upper_dir: PathBuf,
    /// Overlay work dir, on the same filesystem as `upper_dir`.
    pub work_dir: PathBuf,
    /// Mount point of the merged tree (mounted inside the container's mount namespace only).
    pub merged_dir: PathBuf,
}

/// Cgroups of a container, created by the daemon before `CreateContainer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupSpec {
    /// The container's cgroup2 directory (its identity); joined atomically by `clone3`.
    pub v2_dir: Option<PathBuf>,
    /// cgroup v1 controller directories (memory, pids, cpu, ...); the shim writes the child's
    /// pid to each `cgroup.procs` before releasing it.
    pub v1_dirs: Vec<PathBuf>,
}

/// Log file settings for a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSpec {
    /// The current log file; rotated files get `.1`, `.2`, ... appended.
    pub path: PathBuf,
    /// Size at which the file is rotated.
    pub max_size: u64,
    /// Number of files kept, the current one included (at least 1).
    pub max_files: u32,
}

/// A process to run inside a running container (`rauha exec`).
///
/// It enters the container's namespaces and cgroups and gets the container's capability
/// allow-list and `no_new_privs`; only user, command, environment and stdio are per exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The container to enter.
    pub container_id: String,
    /// Id of this exec session, unique among the container's live execs.
    pub exec_id: String,
    /// argv; `args[0]` is looked up in `PATH` (from `env`) inside the container.
    pub args: Vec<String>,
    /// Environment as `KEY=VALUE` strings.
    pub env: Vec<String>,
    /// Working directory inside the container (absolute).
    pub cwd: PathBuf,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub additional_gids: Vec<u32>,
    /// Allocate a PTY in the container's devpts: the process gets it as controlling terminal and
    /// stdin/stdout/stderr, the client gets the master.
    pub tty: bool,
    /// Initial window size as `(rows, cols)`; only with `tty`.
    pub tty_size: Option<(u16, u16)>,
    /// Without `tty`: give the process a stdin pipe (else it reads `/dev/null`).
    pub interactive: bool,
}

/// Requests from the daemon (or CLI through it) to a shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShimRequest {
    /// Handshake; must be the first request of a connection.
    Hello {
        /// The client's [`PROTOCOL_VERSION`].
        version: u32,
    },
    /// Create the container process, stopped before its setup, in its cgroups.
    CreateContainer(Box<ContainerSpec>),
    /// Let a created container set itself up and exec; answers after exec succeeded or failed.
    Start {
        /// Container id.
        id: String,
    },
    /// Send a signal to the container's init process.
    Kill {
        /// Container id.
        id: String,
        /// Signal number.
        signal: i32,
    },
    /// Forget a stopped (or never started) container and remove the shim's files for it.
    Delete {
        /// Container id.
        id: String,
    },
    /// State of one container.
    State {
        /// Container id.
        id: String,
    },
    /// State of every container of this shim.
    List,
    /// Run a process inside a running container; answered by `ExecStarted` with its stdio fds.
    Exec(Box<ExecSpec>),
    /// Attach to a created or running container's stdio; answered by `Attached` with fds.
    /// Detaching is closing them; it never affects the container.
    Attach {
        /// Container id.
        id: String,
    },
    /// Kill every container and stop the shim.
    Shutdown,
}

/// Replies of the shim, one per request, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShimResponse {
    /// Handshake reply.
    Hello {
        /// The shim's [`PROTOCOL_VERSION`].
        version: u32,
        /// The shim's pid.
        shim_pid: u32,
    },
    /// The container exists, its process waits in its cgroups.
    Created {
        /// Pid of the container's init in the shim's pid namespace.
        pid: u32,
    },
    /// The request succeeded and has nothing to return.
    Ok,
    /// Reply to `State`.
    State(ContainerState),
    /// Reply to `List`.
    List(Vec<ContainerState>),
    /// Reply to `Exec`: the process has exec'd. The frame carries the client's stdio fds with
    /// `SCM_RIGHTS`, in this order: with `tty`, the PTY master alone; without, the stdin write
    /// end (only when `interactive`), then the stdout and stderr read ends. The shim keeps no
    /// copy. Resize by `TIOCSWINSZ` on the master (`pty::set_window_size`).
    ExecStarted {
        /// The exec id.
        exec_id: String,
        /// Pid of the process in the shim's pid namespace.
        pid: u32,
    },
    /// Reply to `Attach`. The frame carries, with `SCM_RIGHTS` and in this order: with `tty`,
    /// a dup of the PTY master (write input to it, resize with `TIOCSWINSZ`; never read it,
    /// the shim does) and the read end of an output pipe; without `tty`, the stdin pipe's
    /// write end (only when `stdin`), then the read ends of a stdout and a stderr pipe. The
    /// shim tees everything the container writes from now on into the output pipes, without
    /// blocking: a reader that falls behind by more than a pipe's capacity loses output. The
    /// pipes end (EOF) when the container's output does, at its exit at the latest.
    Attached {
        /// The container has a PTY.
        tty: bool,
        /// Input is offered: with `tty`, the container is interactive (typing into the master
        /// is meant to be forwarded); without, the stdin pipe's write end is among the fds.
        stdin: bool,
    },
    /// The request failed.
    Error(ShimFailure),
}

/// A failed request: a machine-readable kind and the full message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// Human-readable message naming the failed step and object.
    pub message: String,
}

/// Failure kinds a client may act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// No container with that id.
    NotFound,
    /// A container with that id exists already.
    AlreadyExists,
    /// The container's state does not allow the request.
    InvalidState,
    /// The container is not running (exec into a created or stopped container).
    NotRunning,
    /// The request is malformed.
    InvalidRequest,
    /// The container's setup or exec failed (the message names the step).
    StartFailed,
    /// The protocol versions differ or the handshake is missing.
    Protocol,
    /// The request is not implemented by this shim.
    Unsupported,
    /// Any OS-level failure in the shim itself.
    Internal,
}

/// Asynchronous notifications, sent to every connected client as they happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShimEvent {
    /// A container's init process exited and its output has been written to the log.
    Exited {
        /// Container id.
        container_id: String,
        /// How it ended.
        status: ExitStatus,
        /// The container's cgroup recorded an OOM kill during its lifetime.
        oom_killed: bool,
        /// When the shim reaped it.
        finished_at: SystemTime,
    },
    /// A process started by `Exec` exited (or was killed with its container's pid namespace).
    ExecExited {
        /// Container id.
        container_id: String,
        /// Exec id.
        exec_id: String,
        /// How it ended.
        status: ExitStatus,
    },
}

/// Everything the shim sends: replies and events share the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShimMessage {
    /// Reply to the oldest unanswered request.
    Response(ShimResponse),
    /// An event.
    Event(ShimEvent),
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// Shell-style code: the exit code, or 128 + signal.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

/// Lifecycle status of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerStatus {
    /// Process exists and waits to be started.
    Created,
    /// Process has exec'd the container command.
    Running,
    /// Process has exited.
    Stopped {
        /// How it ended.
        status: ExitStatus,
        /// It was OOM-killed.
        oom_killed: bool,
        /// When it was reaped.
        finished_at: SystemTime,
    },
}

/// A container as the shim knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    /// Container id.
    pub id: String,
    /// Pid of the container's init in the shim's pid namespace.
    pub pid: u32,
    /// Lifecycle status.
    pub status: ContainerStatus,
    /// The log file.
    pub log_path: PathBuf,
}

/// Encodes `msg` as one frame (length prefix included).
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; 4];
    out = postcard::to_extend(msg, out).map_err(FrameError::Encode)?;
    let len = out.len() - 4;
    if len > MAX_FRAME_LEN as usize {
        return Err(FrameError::TooLarge { len: len as u64 });
    }
    out[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(out)
}

/// Writes `msg` as one frame to a blocking writer.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let frame = encode_frame(msg)?;
    w.write_all(&frame).map_err(FrameError::Write)?;
    w.flush().map_err(FrameError::Write)
}

/// Reads one frame from a blocking reader; [`FrameError::Closed`] on EOF at a frame boundary.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    let mut len_buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len_buf[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Read(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Read(e)),
        }
    }
    let len = u32::from_le_bytes(len_buf);
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len: len.into() });
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).map_err(FrameError::Read)?;
    postcard::from_bytes(&payload).map_err(FrameError::Decode)
}

/// Writes `msg` as one frame to a Unix stream socket, with `fds` riding on its first byte.
pub fn write_frame_with_fds<T: Serialize>(
    sock: impl AsFd,
    msg: &T,
    fds: &[BorrowedFd<'_>],
) -> Result<(), FrameError> {
    let frame = encode_frame(msg)?;
    fdpass::send_with_fds(sock, &frame, fds)?;
    Ok(())
}

/// Reads one frame from a Unix stream socket together with the fds that arrived with its bytes.
///
/// Reads exactly the frame's bytes (length prefix, then payload), never into the next frame,
/// so fds attached to the next frame's first byte cannot be taken for this one's.
pub fn read_frame_with_fds<T: DeserializeOwned>(
    sock: impl AsFd,
) -> Result<(T, Vec<OwnedFd>), FrameError> {
    let sock = sock.as_fd();
    let mut fds = Vec::new();
    let mut len_buf = [0u8; 4];
    recv_exact(sock, &mut len_buf, &mut fds, true)?;
    let len = u32::from_le_bytes(len_buf);
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len: len.into() });
    }
    let mut payload = vec![0u8; len as usize];
    recv_exact(sock, &mut payload, &mut fds, false)?;
    let msg = postcard::from_bytes(&payload).map_err(FrameError::Decode)?;
    Ok((msg, fds))
}

fn recv_exact(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    at_boundary: bool,
) -> Result<(), FrameError> {
    let mut got = 0;
    while got < buf.len() {
        let (n, more) = fdpass::recv_with_fds(sock, &mut buf[got..])?;
        fds.extend(more);
        if n == 0 {
            return Err(if at_boundary && got == 0 {
                FrameError::Closed
            } else {
                FrameError::Read(io::ErrorKind::UnexpectedEof.into())
            });
        }
        got += n;
    }
    Ok(())
}

/// Incremental frame decoder for non-blocking readers (the shim's poll loop).
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Takes the next complete frame, if one is buffered.
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        let Some(len_bytes) = self.buf.get(..4) else {
            return Ok(None);
        };
        let mut len_buf = [0u8; 4];
        len_buf.copy_from_slice(len_bytes);
        let len = u32::from_le_bytes(len_buf);
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge { len: len.into() });
        }
        let end = 4 + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let msg = postcard::from_bytes(&self.buf[4..end]).map_err(FrameError::Decode);
        self.buf.drain(..end);
        msg.map(Some)
    }
}

/// A blocking client of one shim: sends requests, returns replies, queues events that arrive
/// in between.
#[derive(Debug)]
pub struct ShimClient {
    stream: UnixStream,
    events: VecDeque<ShimEvent>,
    /// The shim's pid, from the handshake.
    pub shim_pid: u32,
}

impl ShimClient {
    /// Connects to the shim at `path` and performs the version handshake.
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path)
            .map_err(|source| ClientError::Connect { path: path.to_owned(), source })?;
        let mut client = ShimClient { stream, events: VecDeque::new(), shim_pid: 0 };
        match client.call(&ShimRequest::Hello { version: PROTOCOL_VERSION })? {
            ShimResponse::Hello { version, shim_pid } if version == PROTOCOL_VERSION => {
                client.shim_pid = shim_pid;
                Ok(client)
            }
            ShimResponse::Hello { version, .. } => {
                Err(ClientError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: version })
            }
            other => Err(ClientError::Handshake(format!("{other:?}"))),
        }
    }

    /// Sends one request and waits for its reply, queueing events received meanwhile; fds that
    /// came with the reply are closed.
    pub fn call(&mut self, req: &ShimRequest) -> Result<ShimResponse, ClientError> {
        self.call_with_fds(req).map(|(r, _)| r)
    }

    /// Sends one request and returns its reply with the fds the reply carried (see
    /// [`ShimResponse::ExecStarted`] for their order).
    pub fn call_with_fds(
        &mut self,
        req: &ShimRequest,
    ) -> Result<(ShimResponse, Vec<OwnedFd>), ClientError> {
        write_frame(&mut self.stream, req)?;
        loop {
            match read_frame_with_fds(&self.stream)? {
                (ShimMessage::Response(r), fds) => return Ok((r, fds)),
                // Events carry no fds; any that came are dropped (closed) here.
                (ShimMessage::Event(e), _) => self.events.push_back(e),
            }
        }
    }

    /// Returns the next event, waiting for it if none is queued.
    pub fn next_event(&mut self) -> Result<ShimEvent, ClientError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(e);
        }
        loop {
            match read_frame_with_fds(&self.stream)?.0 {
                ShimMessage::Event(e) => return Ok(e),
                // A reply without a request cannot happen with this client; skip it defensively.
                ShimMessage::Response(_) => {}
            }
        }
    }

    /// Sets a read timeout for waiting on replies and events.
    pub fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_roundtrip_and_incremental_decode() {
        let req = ShimRequest::Kill { id: "c1".into(), signal: 9 };
        let frame = encode_frame(&req).unwrap();
        assert_eq!(u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize, frame.len() - 4);
        let back: ShimRequest = read_frame(&mut &frame[..]).unwrap();
        assert_eq!(back, req);

        let mut dec = FrameDecoder::default();
        let two = [frame.clone(), frame].concat();
        dec.push(&two[..3]);
        assert!(dec.next_frame::<ShimRequest>().unwrap().is_none());
        dec.push(&two[3..]);
        assert_eq!(dec.next_frame::<ShimRequest>().unwrap(), Some(req.clone()));
        assert_eq!(dec.next_frame::<ShimRequest>().unwrap(), Some(req));
        assert!(dec.next_frame::<ShimRequest>().unwrap().is_none());
    }

    #[test]
    fn oversized_frame_is_rejected_before_allocation() {
        let mut bytes = (MAX_FRAME_LEN + 1).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 8]);
        let err = read_frame::<_, ShimRequest>(&mut &bytes[..]).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }));
        let mut dec = FrameDecoder::default();
        dec.push(&bytes);
        assert!(matches!(dec.next_frame::<ShimRequest>(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn frames_with_fds_keep_their_own_fds() {
        let (a, b) = UnixStream::pair().unwrap();
        let (pr, _pw) = rustix::pipe::pipe().unwrap();
        let first = ShimMessage::Response(ShimResponse::Ok);
        let second =
            ShimMessage::Response(ShimResponse::ExecStarted { exec_id: "e1".into(), pid: 42 });
        write_frame_with_fds(&a, &first, &[]).unwrap();
        write_frame_with_fds(&a, &second, &[pr.as_fd()]).unwrap();
        let (m, fds) = read_frame_with_fds::<ShimMessage>(&b).unwrap();
        assert_eq!((m, fds.len()), (first, 0));
        let (m, fds) = read_frame_with_fds::<ShimMessage>(&b).unwrap();
        assert_eq!((m, fds.len()), (second, 1));
        drop(a);
        assert!(matches!(read_frame_with_fds::<ShimMessage>(&b), Err(FrameError::Closed)));
    }

    #[test]
    fn eof_at_boundary_is_closed() {
        let empty: &[u8] = &[];
        assert!(matches!(read_frame::<_, ShimRequest>(&mut &empty[..]), Err(FrameError::Closed)));
    }
}
