//! The shim role: one synchronous, single-threaded poll(2) loop per zone.
//!
//! It owns its containers' processes (parent and subreaper), so they outlive any daemon
//! connection; a reconnecting daemon re-adopts them with `List`. Being single-threaded is what
//! makes `clone3` in [`spawn`] safe: no other thread can hold a lock or be mid-allocation.
//!
//! Events: SIGCHLD arrives on a signalfd; every exit is reaped with `waitpid`, the container's
//! output is drained to its log, the OOM counter of its cgroup is compared with the value at
//! creation, and `ShimEvent::Exited` goes to every connected client at once. Processes started
//! by `Exec` are the shim's children too (see [`exec`]) and end in `ShimEvent::ExecExited`.
//!
//! Exec stdio never passes through the shim: the `ExecStarted` reply carries the PTY master or
//! the pipe ends as fds ([`crate::shim::fdpass`]) and the shim closes its copies.
//!
//! A container's *main* process is different: its output (pipes, or the PTY master with a TTY)
//! is the shim's own log feed, so it is never handed out. `Attach` instead gets fresh pipes into
//! which the shim tees every chunk it reads, before logging it, with non-blocking writes: a slow
//! attacher loses output, it never stalls the container or its log. Input is direct: a dup of
//! the PTY master, or of the stdin pipe's write end the shim holds for interactive containers.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::process::{Pid, WaitOptions, WaitStatus};

use crate::shim::exec::{self, ExecTarget};
use crate::shim::fdpass;
use crate::shim::layers::{LayerFactory, Layers};
use crate::shim::logs::{LineSplitter, LogError, LogWriter, Stream};
use crate::shim::protocol::{
    CgroupSpec, ContainerSpec, ContainerState, ContainerStatus, ExecSpec, ExitStatus, FailureKind,
    FrameDecoder, PROTOCOL_VERSION, ShimEvent, ShimFailure, ShimMessage, ShimRequest, ShimResponse,
    encode_frame,
};
use crate::shim::spawn::{self, ContainerFiles, Created, START_TIMEOUT, SpawnError};

/// Errors that stop the shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The command line is wrong.
    #[error("usage: rauha shim --socket PATH --zone ID --state-dir DIR ({0})")]
    Usage(String),
    /// The state directory could not be created.
    #[error("create state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A stale socket could not be removed.
    #[error("remove stale socket {path}: {source}")]
    RemoveSocket {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Another shim is listening on the socket.
    #[error("socket {0} is in use by a running shim")]
    SocketInUse(PathBuf),
    /// Binding the socket failed.
    #[error("bind socket {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Making the listener non-blocking failed.
    #[error("configure socket {path}: {source}")]
    ConfigureSocket {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// PR_SET_CHILD_SUBREAPER failed.
    #[error("become child subreaper: {0}")]
    Subreaper(#[source] io::Error),
    /// Blocking SIGCHLD or creating the signalfd failed.
    #[error("set up SIGCHLD signalfd: {0}")]
    Signalfd(#[source] io::Error),
    /// Making sure fds 0-2 are open failed.
    #[error("open /dev/null for stdio: {0}")]
    Stdio(#[source] io::Error),
    /// poll(2) failed.
    #[error("poll: {0}")]
    Poll(#[source] io::Error),
}

/// Command-line arguments of the shim role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimArgs {
    /// Unix socket to listen on.
    pub socket: PathBuf,
    /// The zone this shim serves.
    pub zone: String,
    /// Directory for per-container files (hosts, resolv.conf).
    pub state_dir: PathBuf,
}

impl ShimArgs {
    /// Parses `--socket PATH --zone ID --state-dir DIR` (the arguments after `shim`).
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Self, ShimError> {
        let (mut socket, mut zone, mut state_dir) = (None, None, None);
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let slot = match flag.as_str() {
                "--socket" => &mut socket,
                "--zone" => &mut zone,
                "--state-dir" => &mut state_dir,
                other => return Err(ShimError::Usage(format!("unknown argument {other:?}"))),
            };
            *slot =
                Some(it.next().ok_or_else(|| ShimError::Usage(format!("{flag} needs a value")))?);
        }
        let need = |v: Option<String>, name: &str| {
            v.ok_or_else(|| ShimError::Usage(format!("missing {name}")))
        };
        Ok(ShimArgs {
            socket: need(socket, "--socket")?.into(),
            zone: need(zone, "--zone")?,
            state_dir: need(state_dir, "--state-dir")?.into(),
        })
    }
}

/// Failures of a single request, turned into `ShimResponse::Error`.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("protocol version {theirs} is not supported (shim speaks {PROTOCOL_VERSION})")]
    Version { theirs: u32 },
    #[error("the first request must be Hello")]
    NoHandshake,
    #[error("container {0} not found")]
    NotFound(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("container id {0:?} must be 1-128 characters of [A-Za-z0-9_.-] not starting with '.'")]
    BadId(String),
    #[error("container {id} is {state}, {action} needs it {needed}")]
    State { id: String, state: &'static str, action: &'static str, needed: &'static str },
    #[error("write {path}: {source}")]
    WriteFile { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("container {id}: {source}")]
    Spawn { id: String, source: SpawnError },
    #[error("signal container {id}: {source}")]
    Signal { id: String, source: io::Error },
    #[error("container {id} is {state}, exec needs it running")]
    NotRunning { id: String, state: &'static str },
    #[error("exec id {0:?} must be 1-128 characters of [A-Za-z0-9_.-] not starting with '.'")]
    BadExecId(String),
    #[error("container {id} already has a running exec {exec_id}")]
    ExecExists { id: String, exec_id: String },
    #[error("exec {exec_id} in container {id}: {source}")]
    Exec { id: String, exec_id: String, source: SpawnError },
    #[error("container {id}: duplicate the pty master for the log reader: {source}")]
    DupMaster { id: String, source: io::Error },
    #[error("attach to container {id}: {what}: {source}")]
    Attach { id: String, what: &'static str, source: io::Error },
    #[error("shim is shutting down")]
    ShuttingDown,
}

impl RequestError {
    fn kind(&self) -> FailureKind {
        match self {
            RequestError::Version { .. } | RequestError::NoHandshake => FailureKind::Protocol,
            RequestError::NotFound(_) => FailureKind::NotFound,
            RequestError::Exists(_) => FailureKind::AlreadyExists,
            RequestError::BadId(_) | RequestError::BadExecId(_) => FailureKind::InvalidRequest,
            RequestError::ExecExists { .. } => FailureKind::AlreadyExists,
            RequestError::NotRunning { .. } => FailureKind::NotRunning,
            // The init exited but its SIGCHLD is not processed yet: its namespaces are gone.
            RequestError::Exec {
                source: SpawnError::EnterNamespaces { source: spawn::OsError(libc::ESRCH), .. },
                ..
            } => FailureKind::NotRunning,
            RequestError::Exec {
                source:
                    SpawnError::Rootfs(_)
                    | SpawnError::Caps(_)
                    | SpawnError::BadId(_)
                    | SpawnError::Nul { .. }
                    | SpawnError::EmptyCommand { .. }
                    | SpawnError::SizeWithoutTty,
                ..
            } => FailureKind::InvalidRequest,
            RequestError::Exec { .. } => FailureKind::StartFailed,
            RequestError::State { .. } | RequestError::ShuttingDown => FailureKind::InvalidState,
            RequestError::Spawn { source: SpawnError::Rootfs(_) | SpawnError::Caps(_), .. } => {
                FailureKind::InvalidRequest
            }
            RequestError::Spawn { .. } => FailureKind::StartFailed,
            RequestError::WriteFile { .. }
            | RequestError::Log(_)
            | RequestError::Signal { .. }
            | RequestError::Attach { .. }
            | RequestError::DupMaster { .. } => FailureKind::Internal,
        }
    }
}

struct Container {
    id: String,
    cgroup: CgroupSpec,
    /// The enforcement layers and `no_new_privs` that every exec gets too.
    layers: Layers,
    no_new_privs: bool,
    /// Live execs: exec id to pid (the shim is their parent).
    execs: BTreeMap<String, Pid>,
    log_path: PathBuf,
    files_dir: PathBuf,
    proc: Created,
    status: ContainerStatus,
    outputs: [Option<Output>; 2],
    /// Per output, the write ends of attachers' pipes (non-blocking).
    attachers: [Vec<OwnedFd>; 2],
    /// The container has a PTY: `outputs[0]` reads its master, lines lose the tty's `\r`.
    tty: bool,
    /// Input is offered to attachers.
    interactive: bool,
    /// The first attacher takes `stdin` instead of a dup of it.
    stdin_once: bool,
    /// Write end of the stdin pipe (interactive without a TTY), until handed away.
    stdin: Option<OwnedFd>,
    /// The PTY master (with a TTY), for attachers' dups.
    pty_master: Option<OwnedFd>,
    log: LogWriter,
    oom_baseline: u64,
}

/// Capacity asked for each attacher's pipe: what a reader may fall behind before it loses
/// output.
const ATTACH_PIPE_SIZE: usize = 1 << 20;

/// Writes `data` to every attacher's pipe without blocking. A full pipe loses this chunk (or its
/// rest); a pipe whose reader is gone (the attacher detached) is dropped.
fn tee(attachers: &mut Vec<OwnedFd>, data: &[u8]) {
    attachers.retain(|fd| {
        let mut rest = data;
        while !rest.is_empty() {
            match rustix::io::write(fd, rest) {
                Ok(n) => rest = &rest[n..],
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return true,
                Err(_) => return false,
            }
        }
        true
    });
}

struct Output {
    fd: OwnedFd,
    stream: Stream,
    splitter: LineSplitter,
}

struct Conn {
    stream: UnixStream,
    decoder: FrameDecoder,
    handshaken: bool,
    closed: bool,
}

struct Shim {
    listener: UnixListener,
    sigfd: OwnedFd,
    state_dir: PathBuf,
    conns: Vec<Conn>,
    containers: BTreeMap<String, Container>,
    /// Seccomp cache and Landlock ABI, shared by every container of this shim.
    layers: LayerFactory,
    shutting_down: bool,
}

enum Source {
    Listener,
    Signal,
    Conn(usize),
    Output(String, usize),
}

/// Runs the shim until a `Shutdown` request: listens on `args.socket`, serves clients, owns
/// containers.
pub fn run_shim(args: &ShimArgs) -> Result<(), ShimError> {
    ensure_stdio()?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.state_dir)
        .map_err(|source| ShimError::StateDir { path: args.state_dir.clone(), source })?;
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| ShimError::Subreaper(e.into()))?;
    let sigfd = sigchld_fd()?;
    let listener = listen(&args.socket)?;
    let mut shim = Shim {
        listener,
        sigfd,
        state_dir: args.state_dir.clone(),
        conns: Vec::new(),
        containers: BTreeMap::new(),
        layers: LayerFactory::default(),
        shutting_down: false,
    };
    let result = shim.run();
    // The socket file is ours (we bound it); a leftover only confuses the next start.
    let _ = fs::remove_file(&args.socket);
    result
}

/// Daemon-started shims get /dev/null as stdio; if any of 0-2 is closed, a pipe could land
/// there and be mistaken for stdio by the container setup.
fn ensure_stdio() -> Result<(), ShimError> {
    for fd in 0..3 {
        // SAFETY: fds 0-2 are borrowed only for the duration of the fcntl call.
        let probe = rustix::io::fcntl_getfd(unsafe { BorrowedFd::borrow_raw(fd) });
        if probe == Err(Errno::BADF) {
            // Opening fills the lowest free fd, which is this one; leak it on purpose.
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(ShimError::Stdio)?;
            std::mem::forget(f);
        }
    }
    Ok(())
}

fn sigchld_fd() -> Result<OwnedFd, ShimError> {
    // SAFETY: mask is a zero-initialised sigset_t filled by sigemptyset/sigaddset before use;
    // the shim is single-threaded, so blocking SIGCHLD with sigprocmask covers the process.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut mask);
        libc::sigaddset(&mut mask, libc::SIGCHLD);
        if libc::sigprocmask(libc::SIG_BLOCK, &mask, std::ptr::null_mut()) != 0 {
            return Err(ShimError::Signalfd(io::Error::last_os_error()));
        }
        let fd = libc::signalfd(-1, &mask, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(ShimError::Signalfd(io::Error::last_os_error()));
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn listen(path: &Path) -> Result<UnixListener, ShimError> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ShimError::SocketInUse(path.to_owned()));
        }
        fs::remove_file(path)
            .map_err(|source| ShimError::RemoveSocket { path: path.to_owned(), source })?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|source| ShimError::Bind { path: path.to_owned(), source })?;
    let configure = |source| ShimError::ConfigureSocket { path: path.to_owned(), source };
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(configure)?;
    listener.set_nonblocking(true).map_err(configure)?;
    Ok(listener)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Sum of OOM kills recorded for the container's cgroups (v2 `memory.events`, v1
/// `memory.oom_control`); missing files count as zero.
pub fn oom_kills(cgroup: &CgroupSpec) -> u64 {
    let read = |path: PathBuf| -> u64 {
        fs::read_to_string(path)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill ").and_then(|v| v.trim().parse().ok()))
            })
            .unwrap_or(0)
    };
    let v2 = cgroup.v2_dir.as_ref().map_or(0, |d| read(d.join("memory.events")));
    v2 + cgroup.v1_dirs.iter().map(|d| read(d.join("memory.oom_control"))).sum::<u64>()
}

fn status_name(s: &ContainerStatus) -> &'static str {
    match s {
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped { .. } => "stopped",
    }
}

impl Container {
    fn state(&self) -> ContainerState {
        ContainerState {
            id: self.id.clone(),
            pid: self.proc.pid.as_raw_nonzero().get() as u32,
            status: self.status.clone(),
            log_path: self.log_path.clone(),
        }
    }

    fn wrong_state(&self, action: &'static str, needed: &'static str) -> RequestError {
        RequestError::State {
            id: self.id.clone(),
            state: status_name(&self.status),
            action,
            needed,
        }
    }

    /// Reads what is available on output `i`; returns false once the pipe is closed.
    fn pump(&mut self, i: usize) -> bool {
        let Some(out) = self.outputs[i].as_mut() else {
            return false;
        };
        let mut buf = [0u8; 16 * 1024];
        let open = loop {
            match rustix::io::read(&out.fd, &mut buf) {
                Ok(0) => break false,
                Ok(n) => {
                    tee(&mut self.attachers[i], &buf[..n]);
                    for (partial, mut text) in out.splitter.push(&buf[..n]) {
                        // The tty's output processing ends lines with "\r\n".
                        if self.tty && !partial && text.last() == Some(&b'\r') {
                            text.pop();
                        }
                        if let Err(e) = self.log.write(out.stream, partial, &text) {
                            eprintln!("rauha-shim: container {}: {e}", self.id);
                        }
                    }
                    // One read per poll round keeps a chatty container from starving others.
                    break true;
                }
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => break true,
                // A PTY master once no process holds the slave any more.
                Err(Errno::IO) if self.tty => break false,
                Err(e) => {
                    eprintln!("rauha-shim: container {}: read {}: {e}", self.id, out.stream.tag());
                    break false;
                }
            }
        };
        if !open {
            if let Some((partial, text)) = out.splitter.finish() {
                if let Err(e) = self.log.write(out.stream, partial, &text) {
                    eprintln!("rauha-shim: container {}: {e}", self.id);
                }
            }
            self.outputs[i] = None;
            // Attachers see the end of this stream.
            self.attachers[i].clear();
        }
        open
    }

    /// After the init exited, every process of its pid namespace is gone, so the pipes hold
    /// their last bytes and then EOF; drain them completely.
    fn drain(&mut self) {
        for i in 0..2 {
            while self.outputs[i].is_some() {
                if let Some(out) = &self.outputs[i] {
                    // Blocking reads are bounded: no writer is left once init has been reaped.
                    let _ = rustix::fs::fcntl_setfl(&out.fd, rustix::fs::OFlags::empty());
                }
                self.pump(i);
            }
        }
    }
}

impl Shim {
    fn run(&mut self) -> Result<(), ShimError> {
        while !self.shutting_down {
            let ready = self.poll_once()?;
            for (src, flags) in ready {
                self.dispatch(src, flags);
            }
            self.conns.retain(|c| !c.closed);
        }
        Ok(())
    }

    fn poll_once(&mut self) -> Result<Vec<(Source, PollFlags)>, ShimError> {
        let mut sources = vec![Source::Listener, Source::Signal];
        let mut fds: Vec<BorrowedFd<'_>> = vec![self.listener.as_fd(), self.sigfd.as_fd()];
        for (i, c) in self.conns.iter().enumerate() {
            sources.push(Source::Conn(i));
            fds.push(c.stream.as_fd());
        }
        for c in self.containers.values() {
            for (oi, out) in c.outputs.iter().enumerate() {
                if let Some(out) = out {
                    sources.push(Source::Output(c.id.clone(), oi));
                    fds.push(out.fd.as_fd());
                }
            }
        }
        let mut pollfds: Vec<PollFd<'_>> =
            fds.iter().map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN)).collect();
        loop {
            match rustix::event::poll(&mut pollfds, None) {
                Ok(_) => break,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(ShimError::Poll(e.into())),
            }
        }
        Ok(sources
            .into_iter()
            .zip(pollfds.iter().map(PollFd::revents))
            .filter(|(_, r)| !r.is_empty())
            .collect())
    }

    fn dispatch(&mut self, src: Source, flags: PollFlags) {
        match src {
            Source::Listener => self.accept(),
            Source::Signal => self.reap(),
            Source::Conn(i) => self.read_conn(i, flags),
            Source::Output(id, oi) => {
                if let Some(c) = self.containers.get_mut(&id) {
                    c.pump(oi);
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    // Replies are small; a daemon that stops reading for this long is dropped
                    // rather than allowed to stall every container's logging.
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                    self.conns.push(Conn {
                        stream,
                        decoder: FrameDecoder::default(),
                        handshaken: false,
                        closed: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("rauha-shim: accept: {e}");
                    return;
                }
            }
        }
    }

    fn read_conn(&mut self, i: usize, _flags: PollFlags) {
        let mut buf = [0u8; 64 * 1024];
        let Some(conn) = self.conns.get_mut(i).filter(|c| !c.closed) else {
            return;
        };
        // poll reported readable (or hangup), so this read does not block.
        let n = match conn.stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(_) => 0,
        };
        if n == 0 {
            self.close_conn(i);
            return;
        }
        conn.decoder.push(&buf[..n]);
        loop {
            let Some(conn) = self.conns.get_mut(i).filter(|c| !c.closed) else {
                return;
            };
            match conn.decoder.next_frame::<ShimRequest>() {
                Ok(Some(req)) => {
                    let (resp, fds) = self.handle(i, req);
                    // `fds` (the client's stream ends) drop after sending: the shim keeps none.
                    if !self.send(i, &ShimMessage::Response(resp), &fds) {
                        self.close_conn(i);
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    eprintln!("rauha-shim: client: {e}");
                    self.close_conn(i);
                    return;
                }
            }
        }
    }

    /// Marks a connection dead; it is removed after this poll round so indices stay valid.
    fn close_conn(&mut self, i: usize) {
        if let Some(c) = self.conns.get_mut(i) {
            c.handshaken = false;
            c.closed = true;
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn send(&mut self, i: usize, msg: &ShimMessage, fds: &[OwnedFd]) -> bool {
        let Some(conn) = self.conns.get_mut(i) else {
            return false;
        };
        match encode_frame(msg) {
            Ok(frame) if fds.is_empty() => conn.stream.write_all(&frame).is_ok(),
            Ok(frame) => {
                let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
                match fdpass::send_with_fds(&conn.stream, &frame, &fds) {
                    Ok(()) => true,
                    Err(e) => {
                        eprintln!("rauha-shim: send reply: {e}");
                        false
                    }
                }
            }
            Err(e) => {
                eprintln!("rauha-shim: encode reply: {e}");
                false
            }
        }
    }

    fn broadcast(&mut self, event: ShimEvent) {
        let msg = ShimMessage::Event(event);
        for i in 0..self.conns.len() {
            if self.conns[i].handshaken && !self.send(i, &msg, &[]) {
                self.close_conn(i);
            }
        }
    }

    /// Handles one request; returns the reply and the fds it carries (`ExecStarted` and
    /// `Attached` have some).
    fn handle(&mut self, conn: usize, req: ShimRequest) -> (ShimResponse, Vec<OwnedFd>) {
        let handshaken = self.conns.get(conn).is_some_and(|c| c.handshaken);
        let no_fds = |r: ShimResponse| (r, Vec::new());
        let result = match req {
            ShimRequest::Hello { version } if version == PROTOCOL_VERSION => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.handshaken = true;
                }
                Ok(no_fds(ShimResponse::Hello {
                    version: PROTOCOL_VERSION,
                    shim_pid: std::process::id(),
                }))
            }
            ShimRequest::Hello { version } => Err(RequestError::Version { theirs: version }),
            _ if !handshaken => Err(RequestError::NoHandshake),
            ShimRequest::CreateContainer(spec) => self.create(*spec).map(no_fds),
            ShimRequest::Start { id } => self.start(&id).map(no_fds),
            ShimRequest::Kill { id, signal } => self.kill(&id, signal).map(no_fds),
            ShimRequest::Delete { id } => self.delete(&id).map(no_fds),
            ShimRequest::State { id } => self
                .containers
                .get(&id)
                .map(|c| no_fds(ShimResponse::State(c.state())))
                .ok_or(RequestError::NotFound(id)),
            ShimRequest::List => Ok(no_fds(ShimResponse::List(
                self.containers.values().map(Container::state).collect(),
            ))),
            ShimRequest::Exec(spec) => self.exec(&spec),
            ShimRequest::Attach { id } => self.attach(&id),
            ShimRequest::Shutdown => {
                self.shutdown();
                Ok(no_fds(ShimResponse::Ok))
            }
        };
        result.unwrap_or_else(|e| no_fds(failure(&e)))
    }

    fn exec(&mut self, spec: &ExecSpec) -> Result<(ShimResponse, Vec<OwnedFd>), RequestError> {
        if self.shutting_down {
            return Err(RequestError::ShuttingDown);
        }
        let id = &spec.container_id;
        let c = self.containers.get_mut(id).ok_or_else(|| RequestError::NotFound(id.clone()))?;
        if c.status != ContainerStatus::Running {
            return Err(RequestError::NotRunning { id: id.clone(), state: status_name(&c.status) });
        }
        if !valid_id(&spec.exec_id) {
            return Err(RequestError::BadExecId(spec.exec_id.clone()));
        }
        if c.execs.contains_key(&spec.exec_id) {
            return Err(RequestError::ExecExists { id: id.clone(), exec_id: spec.exec_id.clone() });
        }
        let target = ExecTarget {
            pid: c.proc.pid,
            pidfd: c.proc.pidfd.as_fd(),
            cgroup: &c.cgroup,
            layers: &c.layers,
            no_new_privs: c.no_new_privs,
        };
        let started = exec::start(&target, spec, START_TIMEOUT).map_err(|source| {
            RequestError::Exec { id: id.clone(), exec_id: spec.exec_id.clone(), source }
        })?;
        c.execs.insert(spec.exec_id.clone(), started.pid);
        Ok((
            ShimResponse::ExecStarted {
                exec_id: spec.exec_id.clone(),
                pid: started.pid.as_raw_nonzero().get() as u32,
            },
            started.client_fds,
        ))
    }

    fn attach(&mut self, id: &str) -> Result<(ShimResponse, Vec<OwnedFd>), RequestError> {
        let c = self.containers.get_mut(id).ok_or_else(|| RequestError::NotFound(id.to_owned()))?;
        if matches!(c.status, ContainerStatus::Stopped { .. }) {
            return Err(c.wrong_state("attach", "created or running"));
        }
        let fail = |what| move |source| RequestError::Attach { id: id.to_owned(), what, source };
        let streams = if c.tty { 1 } else { 2 };
        let mut outputs = Vec::with_capacity(streams);
        let mut write_ends = Vec::with_capacity(streams);
        for _ in 0..streams {
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| fail("create output pipe")(e.into()))?;
            // Only the shim's end is non-blocking; the attacher reads as it likes.
            rustix::fs::fcntl_setfl(&w, rustix::fs::OFlags::NONBLOCK)
                .map_err(|e| fail("configure output pipe")(e.into()))?;
            // Best effort: a smaller pipe only means a slow reader loses output sooner.
            let _ = rustix::pipe::fcntl_setpipe_size(&w, ATTACH_PIPE_SIZE);
            outputs.push(r);
            write_ends.push(w);
        }
        let mut fds = Vec::with_capacity(streams + 1);
        let stdin = if c.tty {
            if let Some(master) = &c.pty_master {
                fds.push(master.try_clone().map_err(fail("duplicate the pty master"))?);
            }
            c.interactive
        } else if c.stdin_once {
            c.stdin.take().map(|w| fds.push(w)).is_some()
        } else if let Some(w) = &c.stdin {
            fds.push(w.try_clone().map_err(fail("duplicate the stdin pipe"))?);
            true
        } else {
            false
        };
        for (i, w) in write_ends.into_iter().enumerate() {
            // A stream that already ended gets no writer: its reader sees end of file at once.
            if c.outputs[i].is_some() {
                c.attachers[i].push(w);
            }
        }
        fds.extend(outputs);
        Ok((ShimResponse::Attached { tty: c.tty, stdin }, fds))
    }

    fn create(&mut self, spec: ContainerSpec) -> Result<ShimResponse, RequestError> {
        if self.shutting_down {
            return Err(RequestError::ShuttingDown);
        }
        if !valid_id(&spec.id) {
            return Err(RequestError::BadId(spec.id));
        }
        if self.containers.contains_key(&spec.id) {
            return Err(RequestError::Exists(spec.id));
        }
        let files_dir = self.state_dir.join(&spec.id);
        let result = self.create_in(&spec, &files_dir);
        if result.is_err() {
            // Nothing else refers to these files yet.
            let _ = fs::remove_dir_all(&files_dir);
        }
        result
    }

    fn create_in(
        &mut self,
        spec: &ContainerSpec,
        files_dir: &Path,
    ) -> Result<ShimResponse, RequestError> {
        let write_err = |path: &Path| {
            let path = path.to_owned();
            move |source| RequestError::WriteFile { path, source }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(files_dir)
            .map_err(write_err(files_dir))?;
        let mut files = ContainerFiles::default();
        for (name, content, slot) in [
            ("hosts", &spec.hosts, &mut files.hosts),
            ("resolv.conf", &spec.resolv_conf, &mut files.resolv_conf),
        ] {
            if let Some(content) = content {
                let path = files_dir.join(name);
                fs::write(&path, content).map_err(write_err(&path))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
                    .map_err(write_err(&path))?;
                *slot = Some(path);
            }
        }
        let log = LogWriter::open(&spec.log)?;
        let oom_baseline = oom_kills(&spec.cgroup);
        let layers = self
            .layers
            .prepare(spec)
            .map_err(|e| RequestError::Spawn { id: spec.id.clone(), source: e.into() })?;
        let mut proc = spawn::create(spec, &files, &layers)
            .map_err(|source| RequestError::Spawn { id: spec.id.clone(), source })?;
        let pid = proc.pid.as_raw_nonzero().get() as u32;
        let output = |fd: Option<OwnedFd>, stream| {
            fd.map(|fd| {
                // Non-blocking so one poll round never waits on a container.
                let _ = rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK);
                Output { fd, stream, splitter: LineSplitter::default() }
            })
        };
        let pty_master = proc.pty_master.take();
        let outputs = match &pty_master {
            Some(master) => {
                let fd = match master.try_clone() {
                    Ok(fd) => fd,
                    Err(source) => {
                        spawn::abort(&proc);
                        return Err(RequestError::DupMaster { id: spec.id.clone(), source });
                    }
                };
                // Left blocking: O_NONBLOCK would be shared with every attacher's dup (one open
                // file); the shim reads once per poll readiness, which does not block.
                [
                    Some(Output { fd, stream: Stream::Stdout, splitter: LineSplitter::default() }),
                    None,
                ]
            }
            None => [
                output(proc.stdout.take(), Stream::Stdout),
                output(proc.stderr.take(), Stream::Stderr),
            ],
        };
        let stdin = proc.stdin.take();
        self.containers.insert(
            spec.id.clone(),
            Container {
                id: spec.id.clone(),
                cgroup: spec.cgroup.clone(),
                layers,
                no_new_privs: spec.no_new_privs,
                execs: BTreeMap::new(),
                log_path: spec.log.path.clone(),
                files_dir: files_dir.to_owned(),
                proc,
                status: ContainerStatus::Created,
                outputs,
                attachers: Default::default(),
                tty: spec.tty,
                interactive: spec.interactive,
                stdin_once: spec.stdin_once,
                stdin,
                pty_master,
                log,
                oom_baseline,
            },
        );
        Ok(ShimResponse::Created { pid })
    }

    fn start(&mut self, id: &str) -> Result<ShimResponse, RequestError> {
        let c = self.containers.get_mut(id).ok_or_else(|| RequestError::NotFound(id.to_owned()))?;
        if c.status != ContainerStatus::Created {
            return Err(c.wrong_state("start", "created"));
        }
        spawn::start(&mut c.proc, START_TIMEOUT)
            .map_err(|source| RequestError::Spawn { id: id.to_owned(), source })?;
        // The reaper may already have marked it stopped if the command exited at once.
        if c.status == ContainerStatus::Created {
            c.status = ContainerStatus::Running;
        }
        Ok(ShimResponse::Ok)
    }

    fn kill(&mut self, id: &str, signal: i32) -> Result<ShimResponse, RequestError> {
        let c = self.containers.get(id).ok_or_else(|| RequestError::NotFound(id.to_owned()))?;
        if matches!(c.status, ContainerStatus::Stopped { .. }) {
            return Err(c.wrong_state("kill", "created or running"));
        }
        spawn::send_signal(&c.proc.pidfd, signal)
            .map_err(|source| RequestError::Signal { id: id.to_owned(), source })?;
        Ok(ShimResponse::Ok)
    }

    fn delete(&mut self, id: &str) -> Result<ShimResponse, RequestError> {
        let c = self.containers.get(id).ok_or_else(|| RequestError::NotFound(id.to_owned()))?;
        match c.status {
            ContainerStatus::Running => return Err(c.wrong_state("delete", "stopped")),
            // Never released: kill and reap it here, so its cgroups are empty when we reply.
            ContainerStatus::Created => spawn::abort(&c.proc),
            ContainerStatus::Stopped { .. } => {}
        }
        if let Some(c) = self.containers.remove(id) {
            // Best effort: a leftover hosts file is harmless and the reply is about the
            // container, which is gone.
            let _ = fs::remove_dir_all(&c.files_dir);
        }
        Ok(ShimResponse::Ok)
    }

    fn shutdown(&mut self) {
        self.shutting_down = true;
        let live: Vec<Pid> = self
            .containers
            .values()
            .filter(|c| !matches!(c.status, ContainerStatus::Stopped { .. }))
            .map(|c| {
                let _ = spawn::send_signal(&c.proc.pidfd, libc::SIGKILL);
                c.proc.pid
            })
            .collect();
        // Wait for any child, not for each init in turn: an init finishes exiting only after
        // the processes exec'd into its pid namespace (our children) have been reaped.
        let mut live = live;
        while !live.is_empty() {
            match rustix::process::wait(WaitOptions::empty()) {
                Ok(Some((pid, status))) => {
                    live.retain(|p| *p != pid);
                    self.exited(pid, status);
                }
                Ok(None) | Err(Errno::INTR) => {}
                Err(_) => break,
            }
        }
        for c in self.containers.values() {
            let _ = fs::remove_dir_all(&c.files_dir);
        }
    }

    /// Reaps every exited child (containers and any orphan reparented to us as subreaper).
    fn reap(&mut self) {
        // Drain the signalfd; its contents do not matter, waitpid tells who exited.
        let mut buf = [0u8; 128 * 8];
        while let Ok(n) = rustix::io::read(&self.sigfd, &mut buf) {
            if n == 0 {
                break;
            }
        }
        // wait(2), i.e. wait4(-1): rustix's `waitpid(None)` is wait4(0), which only sees
        // children in the shim's process group and so misses execs (they call setsid) and
        // orphans that did.
        loop {
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => self.exited(pid, status),
                Ok(None) | Err(Errno::CHILD) => return,
                Err(Errno::INTR) => {}
                Err(e) => {
                    eprintln!("rauha-shim: waitpid: {e}");
                    return;
                }
            }
        }
    }

    fn exited(&mut self, pid: Pid, status: WaitStatus) {
        let exit = match (status.exit_status(), status.terminating_signal()) {
            (Some(code), _) => ExitStatus::Code(code),
            (None, Some(sig)) => ExitStatus::Signaled(sig),
            (None, None) => return, // stopped/continued, not an exit
        };
        let exec = self.containers.values_mut().find_map(|c| {
            let exec_id = c.execs.iter().find_map(|(e, p)| (*p == pid).then(|| e.clone()))?;
            c.execs.remove(&exec_id);
            Some((c.id.clone(), exec_id))
        });
        if let Some((container_id, exec_id)) = exec {
            self.broadcast(ShimEvent::ExecExited { container_id, exec_id, status: exit });
            return;
        }
        let Some(c) = self.containers.values_mut().find(|c| c.proc.pid == pid) else {
            return;
        };
        if matches!(c.status, ContainerStatus::Stopped { .. }) {
            return;
        }
        c.drain();
        // Attachers see end of file; input has nobody left to read it.
        c.attachers = Default::default();
        c.stdin = None;
        c.pty_master = None;
        let oom_killed = oom_kills(&c.cgroup) > c.oom_baseline;
        let finished_at = SystemTime::now();
        c.status = ContainerStatus::Stopped { status: exit, oom_killed, finished_at };
        let event =
            ShimEvent::Exited { container_id: c.id.clone(), status: exit, oom_killed, finished_at };
        self.broadcast(event);
    }
}

fn failure(e: &RequestError) -> ShimResponse {
    ShimResponse::Error(ShimFailure { kind: e.kind(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_parse_and_report_missing() {
        let a = ShimArgs::parse(
            ["--socket", "/s", "--zone", "z1", "--state-dir", "/d"].map(String::from),
        )
        .unwrap();
        assert_eq!(a.socket, PathBuf::from("/s"));
        assert_eq!(a.zone, "z1");
        let e = ShimArgs::parse(["--socket", "/s"].map(String::from)).unwrap_err();
        assert!(e.to_string().contains("missing --zone"), "{e}");
    }

    #[test]
    fn exec_failures_map_to_actionable_kinds() {
        let exec = |source| RequestError::Exec { id: "c1".into(), exec_id: "e1".into(), source };
        let gone =
            exec(SpawnError::EnterNamespaces { pid: 7, source: spawn::OsError(libc::ESRCH) });
        assert_eq!(gone.kind(), FailureKind::NotRunning);
        assert_eq!(
            gone.to_string(),
            "exec e1 in container c1: enter namespaces of container process 7: no such process"
        );
        let missing =
            exec(SpawnError::Exec { path: "nosuch".into(), source: spawn::OsError(libc::ENOENT) });
        assert_eq!(missing.kind(), FailureKind::StartFailed);
        assert_eq!(exec(SpawnError::SizeWithoutTty).kind(), FailureKind::InvalidRequest);
        let stopped = RequestError::NotRunning { id: "c1".into(), state: "stopped" };
        assert_eq!(stopped.kind(), FailureKind::NotRunning);
    }

    #[test]
    fn ids_are_restricted() {
        assert!(valid_id("web-1.a_b"));
        assert!(!valid_id(""));
        assert!(!valid_id("../x"));
        assert!(!valid_id(".hidden"));
        assert!(!valid_id(&"a".repeat(129)));
    }
}
