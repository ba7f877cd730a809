//! Creating a container process: clone3 into its namespaces and cgroup, then setup and exec.
//!
//! Everything the child needs (strings, pointer arrays, the mount plan, capability masks, fds)
//! is prepared in `Prepared` before `clone3`. Between clone and exec the child only makes raw
//! syscalls on that prepared memory: no allocation, no locks, nothing that could deadlock on
//! state copied from the parent mid-operation.
//!
//! Protocol with the child: the child blocks on the sync pipe until [`start`] writes one byte
//! (by then the parent has put it in its cgroup v1 controllers; the v2 cgroup was joined
//! atomically by `CLONE_INTO_CGROUP`). Then it sets itself up and execs. A failure is written to
//! the close-on-exec error pipe as `(step, index, errno)`; EOF on that pipe means exec
//! succeeded.
//!
//! The pieces every process started in a container shares (the container's init here, each
//! `exec` in [`crate::shim::exec`]) live here: `prepare_privileges`/`apply_privileges`,
//! the signal reset, the fd cleanup, the `execve` loop and the failure report. One code path
//! therefore confines both: `apply_privileges` applies Landlock then drops credentials, and `seal`
//! installs the seccomp filter as the very last step before `execve`.
//!
//! A `self_exec` container (the attack probes of `zone verify`) runs the shim's own executable:
//! the shim copies `/proc/self/exe` into a sealed memfd before clone and the child `execveat`s
//! it by fd after every layer is in place, so it gets exactly a container's confinement while
//! needing no file of its own in the rootfs.

use std::convert::Infallible;
use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::{Gid, Pid, Uid};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::enforce::child::{self as enforce_child, ChildStep};
use crate::enforce::landlock::PreparedLandlock;
use crate::enforce::seccomp::{self, SeccompError, SeccompProgram};
use crate::shim::caps::{self, CapPlan, CapsError};
use crate::shim::layers::{Layers, LayersError};
use crate::shim::protocol::ContainerSpec;
use crate::shim::pty::{self, PtyError};
use crate::shim::rootfs::{self, HostFds, RootfsError, RootfsOp};

/// An OS error number with a lowercase message (`no such file or directory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsError(pub i32);

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = io::Error::from_raw_os_error(self.0).to_string();
        let msg = full.split(" (os error").next().unwrap_or(&full);
        let mut chars = msg.chars();
        match chars.next() {
            Some(c) => write!(f, "{}{}", c.to_lowercase(), chars.as_str()),
            None => write!(f, "os error {}", self.0),
        }
    }
}

impl std::error::Error for OsError {}

impl From<Errno> for OsError {
    fn from(e: Errno) -> Self {
        OsError(e.raw_os_error())
    }
}

/// Errors of creating and starting a container process.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The spec has no argv.
    #[error("container {id}: empty command")]
    EmptyCommand {
        /// Container id.
        id: String,
    },
    /// A string of the spec contains a NUL byte.
    #[error("{what} contains a NUL byte")]
    Nul {
        /// Which field.
        what: &'static str,
    },
    /// The hostname is longer than the kernel accepts.
    #[error("hostname {0:?} is longer than 64 bytes")]
    HostnameTooLong(String),
    /// uid or gid -1, which the kernel reads as "unchanged".
    #[error("id {0} is not a valid user or group id")]
    BadId(u32),
    /// Planning the rootfs failed.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// Planning capabilities failed.
    #[error(transparent)]
    Caps(#[from] CapsError),
    /// Preparing or applying an enforcement layer (seccomp, Landlock) failed.
    #[error(transparent)]
    Layers(#[from] LayersError),
    /// A pipe could not be created.
    #[error("create {what} pipe: {source}")]
    Pipe {
        /// Which pipe.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A file the child needs could not be opened.
    #[error("open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// clone3 failed.
    #[error("clone3 container process into cgroup {}: {source}", cgroup.as_deref().map_or("(none)".into(), |p| p.display().to_string()))]
    Clone {
        /// The cgroup2 directory it was cloned into.
        cgroup: Option<PathBuf>,
        /// The OS error.
        source: io::Error,
    },
    /// The container process could not move itself into a cgroup v1 controller.
    #[error("container process: join cgroup {path}: {source}")]
    JoinCgroupChild {
        /// The `cgroup.procs` file.
        path: PathBuf,
        /// The OS error.
        source: OsError,
    },
    /// Writing the child's pid to a cgroup v1 `cgroup.procs` failed.
    #[error("join cgroup {path}: {source}")]
    JoinCgroup {
        /// The `cgroup.procs` file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Releasing the child failed (it died before it was started).
    #[error("release container process: {0}")]
    Release(#[source] io::Error),
    /// Waiting for the child's exec report failed.
    #[error("wait for container exec: {0}")]
    WaitExec(#[source] io::Error),
    /// The child neither exec'd nor reported within the timeout.
    #[error("container setup did not finish within {0:?}")]
    StartTimeout(Duration),
    /// The child's report was malformed.
    #[error("container process sent a malformed report ({0} bytes)")]
    BadReport(usize),
    /// Child: restoring signal mask/dispositions failed.
    #[error("reset signals: {0}")]
    Signals(#[source] OsError),
    /// Child: wiring stdio failed.
    #[error("set up stdio: {0}")]
    Stdio(#[source] OsError),
    /// Child: joining the network namespace failed.
    #[error("join network namespace {path}: {source}")]
    Setns {
        /// The namespace file.
        path: PathBuf,
        /// The OS error.
        source: OsError,
    },
    /// Child: creating the cgroup namespace failed.
    #[error("unshare cgroup namespace: {0}")]
    UnshareCgroup(#[source] OsError),
    /// Child: a rootfs step failed.
    #[error("{step}: {source}")]
    RootfsStep {
        /// The step, e.g. `mount proc on /proc`.
        step: String,
        /// The OS error.
        source: OsError,
    },
    /// Child: sethostname failed.
    #[error("set hostname {name}: {source}")]
    Hostname {
        /// The hostname.
        name: String,
        /// The OS error.
        source: OsError,
    },
    /// Child: dropping the bounding set failed.
    #[error("drop capability bounding set: {0}")]
    Bounding(#[source] OsError),
    /// Child: PR_SET_KEEPCAPS failed.
    #[error("keep capabilities across setuid: {0}")]
    KeepCaps(#[source] OsError),
    /// Child: setgroups failed.
    #[error("set supplementary groups {groups:?}: {source}")]
    SetGroups {
        /// The groups.
        groups: Vec<u32>,
        /// The OS error.
        source: OsError,
    },
    /// Child: setresgid failed.
    #[error("set gid {gid}: {source}")]
    SetGid {
        /// The gid.
        gid: u32,
        /// The OS error.
        source: OsError,
    },
    /// Child: setresuid failed.
    #[error("set uid {uid}: {source}")]
    SetUid {
        /// The uid.
        uid: u32,
        /// The OS error.
        source: OsError,
    },
    /// Child: capset failed.
    #[error("set capabilities: {0}")]
    Capset(#[source] OsError),
    /// Child: setting the ambient set failed.
    #[error("set ambient capabilities: {0}")]
    Ambient(#[source] OsError),
    /// Child: PR_SET_NO_NEW_PRIVS failed.
    #[error("set no_new_privs: {0}")]
    NoNewPrivs(#[source] OsError),
    /// Child: chdir to the working directory failed.
    #[error("chdir {path}: {source}")]
    Chdir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: OsError,
    },
    /// Copying the shim's own executable into a sealed memfd failed (`self_exec`).
    #[error("{step} (the shim's own executable, for a self_exec container): {source}")]
    SelfImage {
        /// The step, e.g. `copy /proc/self/exe into a memfd`.
        step: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Child: execve failed.
    #[error("exec {path}: {source}")]
    Exec {
        /// `argv[0]` as given.
        path: String,
        /// The OS error.
        source: OsError,
    },
    /// Exec: the container's root could not be opened to allocate its PTY.
    #[error("open root of container process {pid}: {source}")]
    OpenRoot {
        /// The container's init pid.
        pid: u32,
        /// The OS error.
        source: io::Error,
    },
    /// Exec: allocating the PTY failed.
    #[error(transparent)]
    Pty(#[from] PtyError),
    /// Exec: the window size was given without a PTY.
    #[error("a window size needs a tty")]
    SizeWithoutTty,
    /// Exec child: joining the container's namespaces through its pidfd failed.
    #[error("enter namespaces of container process {pid}: {source}")]
    EnterNamespaces {
        /// The container's init pid.
        pid: u32,
        /// The OS error.
        source: OsError,
    },
    /// Exec child: cloning the process inside the container's pid namespace failed.
    #[error("clone process into the container's pid namespace: {0}")]
    CloneExec(#[source] OsError),
    /// Exec child: setsid failed.
    #[error("create session: {0}")]
    Session(#[source] OsError),
    /// Exec child: making the PTY the controlling terminal failed.
    #[error("set controlling terminal: {0}")]
    ControllingTerminal(#[source] OsError),
    /// Child: the report named an unknown step.
    #[error("container setup failed at unknown step {step}: {source}")]
    UnknownStep {
        /// The step code.
        step: u32,
        /// The OS error.
        source: OsError,
    },
}

/// Steps of the child, as reported through the error pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Step {
    Signals = 1,
    Stdio,
    Setns,
    UnshareCgroup,
    Rootfs,
    Hostname,
    Bounding,
    KeepCaps,
    SetGroups,
    SetGid,
    SetUid,
    Capset,
    Ambient,
    NoNewPrivs,
    Chdir,
    Exec,
    EnterNamespaces,
    CloneExec,
    Session,
    ControllingTerminal,
    /// An enforcement layer step; the index carries the `ChildStep` in its top byte.
    Enforce,
    /// Joining a cgroup v1 controller; the index names it.
    JoinCgroup,
}

const STEPS: [Step; 22] = [
    Step::Signals,
    Step::Stdio,
    Step::Setns,
    Step::UnshareCgroup,
    Step::Rootfs,
    Step::Hostname,
    Step::Bounding,
    Step::KeepCaps,
    Step::SetGroups,
    Step::SetGid,
    Step::SetUid,
    Step::Capset,
    Step::Ambient,
    Step::NoNewPrivs,
    Step::Chdir,
    Step::Exec,
    Step::EnterNamespaces,
    Step::CloneExec,
    Step::Session,
    Step::ControllingTerminal,
    Step::Enforce,
    Step::JoinCgroup,
];

/// Packs an enforcement layer's child failure into the shim's report format.
pub(crate) fn enforce_failure(f: enforce_child::ChildFailure) -> ChildFailure {
    (Step::Enforce, (f.step as u32) << 24 | (f.index & 0x00ff_ffff), f.errno)
}

/// A child failure: step, index within the step (rootfs op), errno.
pub(crate) type ChildFailure = (Step, u32, Errno);

/// Host files prepared by the shim for one container.
#[derive(Debug, Clone, Default)]
pub struct ContainerFiles {
    /// File to bind on `/etc/hosts`.
    pub hosts: Option<PathBuf>,
    /// File to bind on `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
}

/// What the parent keeps to describe a child failure.
#[derive(Debug, Clone, Default)]
pub(crate) struct Context {
    pub(crate) rootfs_steps: Vec<String>,
    pub(crate) argv0: String,
    pub(crate) hostname: String,
    pub(crate) cwd: PathBuf,
    pub(crate) netns: Option<PathBuf>,
    /// The v1 `cgroup.procs` files the child writes itself into, by index.
    pub(crate) v1_procs: Vec<PathBuf>,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) groups: Vec<u32>,
    /// The container init whose namespaces an exec enters.
    pub(crate) container_pid: u32,
    /// The Landlock ruleset, to name the rule a child failure refers to.
    pub(crate) landlock: Option<Arc<PreparedLandlock>>,
}

/// Credentials and confinement of a process started in a container, prepared before clone and
/// applied by `apply_privileges` in the child.
///
/// Built from the container's spec for both its init and its execs (only the user may differ),
/// so an exec is never more privileged than the container.
pub(crate) struct Privileges {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    caps: CapPlan,
    no_new_privs: bool,
    landlock: Arc<PreparedLandlock>,
    seccomp: SeccompProgram,
}

/// Plans `Privileges`: ids checked, capability sets computed against this kernel, the
/// container's prepared enforcement layers attached.
pub(crate) fn prepare_privileges(
    uid: u32,
    gid: u32,
    groups: &[u32],
    layers: &Layers,
    no_new_privs: bool,
) -> Result<Privileges, SpawnError> {
    for id in [uid, gid].iter().chain(groups.iter()) {
        if *id == u32::MAX {
            return Err(SpawnError::BadId(*id));
        }
    }
    Ok(Privileges {
        uid: Uid::from_raw(uid),
        gid: Gid::from_raw(gid),
        groups: groups.iter().map(|g| Gid::from_raw(*g)).collect(),
        caps: {
            caps::check_held(&layers.capabilities, caps::in_bounding_set)?;
            caps::plan(&layers.capabilities, caps::last_cap()?, uid)?
        },
        no_new_privs,
        landlock: Arc::clone(&layers.landlock),
        seccomp: layers.seccomp.clone(),
    })
}

/// Child-side: restricts the process with Landlock, then drops to the prepared user and
/// capabilities and sets `no_new_privs`. Raw syscalls on prepared memory only.
///
/// This is the single place where a container process gives up privileges before exec. Landlock
/// comes first: it must follow every mount and `pivot_root` (a restricted process may not change
/// its mount topology), and its rule paths are opened while the process still has the
/// capabilities to open them. The seccomp filter comes later, in [`seal`].
pub(crate) fn apply_privileges(p: &Privileges) -> Result<(), ChildFailure> {
    p.landlock.apply().map_err(enforce_failure)?;
    step(Step::Bounding, caps::drop_bounding(&p.caps))?;
    if p.uid.as_raw() != 0 {
        step(Step::KeepCaps, caps::keep_caps())?;
    }
    // Thread-level syscalls: glibc's process-wide setxid broadcast would signal threads that
    // do not exist in this child.
    step(Step::SetGroups, rustix::thread::set_thread_groups(&p.groups))?;
    step(Step::SetGid, rustix::thread::set_thread_res_gid(p.gid, p.gid, p.gid))?;
    step(Step::SetUid, rustix::thread::set_thread_res_uid(p.uid, p.uid, p.uid))?;
    step(Step::Capset, caps::set_sets(&p.caps))?;
    step(Step::Ambient, caps::set_ambient(&p.caps))?;
    if p.no_new_privs {
        step(Step::NoNewPrivs, rustix::thread::set_no_new_privs(true))?;
    }
    Ok(())
}

/// Child-side: installs the seccomp filter. The LAST step before `execve` (after `chdir`), so
/// the filter never sees the setup's own syscalls. Raw syscalls on prepared memory only.
pub(crate) fn seal(p: &Privileges) -> Result<(), ChildFailure> {
    seccomp::install(&p.seccomp).map_err(enforce_failure)
}

/// An empty signal mask and a default disposition, prepared for `reset_signals`.
pub(crate) struct SignalReset {
    empty_sigset: libc::sigset_t,
    default_action: libc::sigaction,
}

/// Prepares `SignalReset` (before clone).
pub(crate) fn prepare_signal_reset() -> SignalReset {
    // SAFETY: sigset_t and sigaction are plain C structs for which all-zero is a valid value;
    // sigemptyset then initialises the set properly.
    let (mut empty_sigset, mut default_action): (libc::sigset_t, libc::sigaction) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: the pointers refer to the live, writable locals just created.
    unsafe {
        libc::sigemptyset(&mut empty_sigset);
        libc::sigemptyset(&mut default_action.sa_mask);
    }
    default_action.sa_sigaction = libc::SIG_DFL;
    SignalReset { empty_sigset, default_action }
}

/// Child-side: unblocks every signal and restores default dispositions.
///
/// The shim blocks SIGCHLD for its signalfd and Rust ignores SIGPIPE; neither may leak into
/// the container (a blocked mask and ignored dispositions survive execve).
pub(crate) fn reset_signals(r: &SignalReset) -> Result<(), ChildFailure> {
    // SAFETY: the prepared sigset and sigaction are initialised; sigprocmask and sigaction are
    // async-signal-safe.
    let rc = unsafe { libc::sigprocmask(libc::SIG_SETMASK, &r.empty_sigset, std::ptr::null_mut()) };
    if rc != 0 {
        return Err((Step::Signals, 0, Errno::from_raw_os_error(rootfs::errno())));
    }
    for sig in 1..=31 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: as above; failures only mean the signal keeps a default disposition already.
        unsafe {
            libc::sigaction(sig, &r.default_action, std::ptr::null_mut());
        }
    }
    Ok(())
}

/// A command line prepared for `execve` (argv, envp, the `PATH` candidates).
pub(crate) struct Command {
    // Owners of the strings `argv_ptrs`/`envp_ptrs` point into; never read directly.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    candidates: Vec<CString>,
}

/// Prepares a `Command`; `args` must not be empty.
pub(crate) fn prepare_command(args: &[String], env: &[String]) -> Result<Command, SpawnError> {
    let argv0 = args.first().map_or("", String::as_str);
    let argv =
        args.iter().map(|a| cstr("argument", a.as_bytes())).collect::<Result<Vec<_>, _>>()?;
    let envp = env
        .iter()
        .map(|e| cstr("environment entry", e.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let candidates = exec_candidates(argv0, env)
        .into_iter()
        .map(|c| cstr("command path", c))
        .collect::<Result<Vec<_>, _>>()?;
    let argv_ptrs = null_terminated(&argv);
    let envp_ptrs = null_terminated(&envp);
    Ok(Command { _argv: argv, argv_ptrs, _envp: envp, envp_ptrs, candidates })
}

/// The shim's own executable in a sealed memfd (`ContainerSpec::self_exec`): the process
/// `execveat`s it by fd, so the program needs no file in the container's rootfs. Sealed against
/// every change, so what runs is exactly the shim's binary.
pub(crate) fn self_image() -> Result<OwnedFd, SpawnError> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fail = |step| move |source: io::Error| SpawnError::SelfImage { step, source };
    let mut exe = std::fs::File::open("/proc/self/exe").map_err(fail("open /proc/self/exe"))?;
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // MFD_EXEC (6.3+) keeps it executable where `vm.memfd_noexec` would default to no-exec;
    // older kernels reject the flag, and their memfds are executable anyway.
    let memfd = match rustix::fs::memfd_create("rauha-probe", flags | MemfdFlags::EXEC) {
        Err(Errno::INVAL) => rustix::fs::memfd_create("rauha-probe", flags),
        other => other,
    }
    .map_err(|e| fail("create a memfd")(e.into()))?;
    let mut image = std::fs::File::from(memfd);
    io::copy(&mut exe, &mut image).map_err(fail("copy /proc/self/exe into the memfd"))?;
    let seals = SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE;
    rustix::fs::fcntl_add_seals(&image, seals).map_err(|e| fail("seal the memfd")(e.into()))?;
    Ok(image.into())
}

/// Child-side: `execveat`s the prepared image fd (`AT_EMPTY_PATH`); returns only on failure.
fn exec_image(image: &OwnedFd, cmd: &Command) -> ChildFailure {
    // SAFETY: the fd is open (kept by close_other_fds); "" and the null-terminated argv/envp
    // arrays point into `cmd`, which outlives the call. execveat is a raw, async-signal-safe
    // syscall that only returns on failure.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            image.as_raw_fd(),
            c"".as_ptr(),
            cmd.argv_ptrs.as_ptr(),
            cmd.envp_ptrs.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    (Step::Exec, 0, Errno::from_raw_os_error(rootfs::errno()))
}

/// Child-side: tries every candidate path; returns only on failure, with execvp's error rule
/// (EACCES from any candidate wins over a later ENOENT).
pub(crate) fn exec_command(cmd: &Command) -> ChildFailure {
    let mut err = Errno::NOENT;
    for path in &cmd.candidates {
        exec(path, cmd);
        let e = Errno::from_raw_os_error(rootfs::errno());
        if e != Errno::NOENT && e != Errno::NOTDIR {
            err = e;
            if e != Errno::ACCESS {
                break;
            }
        }
    }
    (Step::Exec, 0, err)
}

/// Everything the child touches, prepared before clone3.
struct Prepared {
    cmd: Command,
    hostname: CString,
    cwd: CString,
    privileges: Privileges,
    rootfs: Vec<RootfsOp>,
    signals: SignalReset,
    keep_fds: Vec<RawFd>,
    // Child-side fds; the parent closes its copies when this struct drops after clone3.
    stdio: InitStdio,
    /// The detached devpts instance holding the TTY's pair, attached at `/dev/pts` by the
    /// rootfs plan (only with a TTY).
    _devpts: Option<OwnedFd>,
    sync_r: OwnedFd,
    err_w: OwnedFd,
    netns: Option<OwnedFd>,
    /// The container's cgroup v1 `cgroup.procs` files, opened for the child to join.
    v1_procs: Vec<OwnedFd>,
    _hosts: Option<OwnedFd>,
    _resolv: Option<OwnedFd>,
    _sys: OwnedFd,
    /// The shim's own executable, for a `self_exec` container.
    self_image: Option<OwnedFd>,
}

/// The init's side of its stdio.
enum InitStdio {
    /// Separate stdin (`/dev/null` or a pipe the shim writes), stdout and stderr pipes.
    Pipes { stdin: OwnedFd, stdout: OwnedFd, stderr: OwnedFd },
    /// The PTY slave: a session of its own with this as controlling terminal, and fds 0-2.
    Tty(OwnedFd),
}

impl InitStdio {
    fn raw_fds(&self) -> Vec<RawFd> {
        match self {
            InitStdio::Pipes { stdin, stdout, stderr } => {
                vec![stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()]
            }
            InitStdio::Tty(slave) => vec![slave.as_raw_fd()],
        }
    }
}

/// A cloned container process waiting to be started.
#[derive(Debug)]
pub struct Created {
    /// Pid in the shim's namespace.
    pub pid: Pid,
    /// pidfd of the process, for race-free signalling.
    pub pidfd: OwnedFd,
    /// Read end of the container's stdout (taken by the server).
    pub stdout: Option<OwnedFd>,
    /// Read end of the container's stderr (taken by the server).
    pub stderr: Option<OwnedFd>,
    /// Write end of the container's stdin pipe, when interactive without a TTY (taken by the
    /// server).
    pub stdin: Option<OwnedFd>,
    /// The PTY master, with a TTY (taken by the server): the container's output and input.
    pub pty_master: Option<OwnedFd>,
    sync_w: Option<OwnedFd>,
    err_r: Option<OwnedFd>,
    ctx: Context,
}

/// Default `PATH` for the command lookup when the spec's env has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long [`start`] waits for the child to exec.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn cstr(what: &'static str, s: impl Into<Vec<u8>>) -> Result<CString, SpawnError> {
    CString::new(s).map_err(|_| SpawnError::Nul { what })
}

/// The paths `execve` is tried with, in order: argv0 itself if it has a slash, else each `PATH`
/// entry joined with it (execvp's rule, evaluated inside the container).
pub fn exec_candidates(argv0: &str, env: &[String]) -> Vec<String> {
    if argv0.contains('/') {
        return vec![argv0.to_owned()];
    }
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|dir| if dir.is_empty() { "." } else { dir })
        .map(|dir| format!("{}/{argv0}", dir.trim_end_matches('/')))
        .collect()
}

fn null_terminated(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

pub(crate) fn open(path: &Path, flags: OFlags) -> Result<OwnedFd, SpawnError> {
    rustix::fs::open(path, flags | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| SpawnError::Open { path: path.to_owned(), source: e.into() })
}

pub(crate) fn pipe(what: &'static str) -> Result<(OwnedFd, OwnedFd), SpawnError> {
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
        .map_err(|e| SpawnError::Pipe { what, source: e.into() })
}

/// `CLONE_INTO_CGROUP` (libc's constant has the wrong width for clone3's 64-bit flags).
pub(crate) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3 arguments (struct clone_args, version 2 layout with `cgroup`).
#[repr(C)]
#[derive(Default)]
pub(crate) struct CloneArgs {
    pub(crate) flags: u64,
    pub(crate) pidfd: u64,
    pub(crate) child_tid: u64,
    pub(crate) parent_tid: u64,
    pub(crate) exit_signal: u64,
    pub(crate) stack: u64,
    pub(crate) stack_size: u64,
    pub(crate) tls: u64,
    pub(crate) set_tid: u64,
    pub(crate) set_tid_size: u64,
    pub(crate) cgroup: u64,
}

/// Creates the container process: cloned into new mount, pid, uts and ipc namespaces and its
/// cgroup2 node; it joins its v1 cgroups, sets up its rootfs and privileges, and then waits for
/// [`start`] to release its exec. A failed setup step is reported by [`start`].
///
/// With `spec.tty` its PTY is allocated here, in a devpts instance the child attaches at
/// `/dev/pts` ([`pty::new_instance`]), so the master exists before the process starts.
pub fn create(
    spec: &ContainerSpec,
    files: &ContainerFiles,
    layers: &Layers,
) -> Result<Created, SpawnError> {
    let argv0 =
        spec.args.first().ok_or_else(|| SpawnError::EmptyCommand { id: spec.id.clone() })?.clone();
    if spec.hostname.len() > 64 {
        return Err(SpawnError::HostnameTooLong(spec.hostname.clone()));
    }
    let privileges =
        prepare_privileges(spec.uid, spec.gid, &spec.additional_gids, layers, spec.no_new_privs)?;
    let cwd_clean = rootfs::clean_absolute("working directory", &spec.cwd)?;

    let (sync_r, sync_w) = pipe("sync")?;
    let (err_r, err_w) = pipe("error")?;
    // The shim's ends: (stdout, stderr, stdin, pty master).
    let (stdio, devpts, (stdout_r, stderr_r, stdin_w, pty_master)) = if spec.tty {
        let (devpts, pty) = pty::new_instance(spec.uid)?;
        (InitStdio::Tty(pty.slave), Some(devpts), (None, None, None, Some(pty.master)))
    } else {
        let (stdout_r, stdout) = pipe("stdout")?;
        let (stderr_r, stderr) = pipe("stderr")?;
        let (stdin, stdin_w) = if spec.interactive {
            let (r, w) = pipe("stdin")?;
            (r, Some(w))
        } else {
            (open(Path::new("/dev/null"), OFlags::RDONLY)?, None)
        };
        let stdio = InitStdio::Pipes { stdin, stdout, stderr };
        (stdio, None, (Some(stdout_r), Some(stderr_r), stdin_w, None))
    };
    let netns = match &spec.netns_path {
        Some(p) => Some(open(p, OFlags::RDONLY)?),
        None => None,
    };
    let cgroup_fd = match &spec.cgroup.v2_dir {
        Some(p) => Some(open(p, OFlags::DIRECTORY | OFlags::RDONLY)?),
        None => None,
    };
    let v1_paths: Vec<PathBuf> =
        spec.cgroup.v1_dirs.iter().map(|dir| dir.join("cgroup.procs")).collect();
    let v1_procs =
        v1_paths.iter().map(|path| open(path, OFlags::WRONLY)).collect::<Result<Vec<_>, _>>()?;
    let sys = open(Path::new("/sys"), OFlags::PATH | OFlags::DIRECTORY)?;
    let hosts = match &files.hosts {
        Some(p) => Some(open(p, OFlags::PATH)?),
        None => None,
    };
    let resolv = match &files.resolv_conf {
        Some(p) => Some(open(p, OFlags::PATH)?),
        None => None,
    };
    let host_fds = HostFds {
        hosts: hosts.as_ref().zip(files.hosts.as_deref()).map(|(fd, p)| (fd.as_raw_fd(), p)),
        resolv: resolv
            .as_ref()
            .zip(files.resolv_conf.as_deref())
            .map(|(fd, p)| (fd.as_raw_fd(), p)),
        sys: sys.as_raw_fd(),
        devpts: devpts.as_ref().map(AsRawFd::as_raw_fd),
    };
    let rootfs_ops = rootfs::plan(spec, host_fds)?;
    let cmd = prepare_command(&spec.args, &spec.env)?;
    let self_image = if spec.self_exec { Some(self_image()?) } else { None };

    let mut keep_fds: Vec<RawFd> = [&sync_r, &err_w, &sys]
        .iter()
        .map(|f| f.as_raw_fd())
        .chain(stdio.raw_fds())
        .chain(devpts.iter().map(AsRawFd::as_raw_fd))
        .chain(netns.iter().map(AsRawFd::as_raw_fd))
        .chain(v1_procs.iter().map(AsRawFd::as_raw_fd))
        .chain(hosts.iter().map(AsRawFd::as_raw_fd))
        .chain(resolv.iter().map(AsRawFd::as_raw_fd))
        .chain(self_image.iter().map(AsRawFd::as_raw_fd))
        .collect();
    keep_fds.sort_unstable();

    let prepared = Prepared {
        cmd,
        hostname: cstr("hostname", spec.hostname.as_bytes())?,
        cwd: cstr("working directory", cwd_clean.as_os_str().as_encoded_bytes())?,
        privileges,
        rootfs: rootfs_ops,
        signals: prepare_signal_reset(),
        keep_fds,
        stdio,
        _devpts: devpts,
        sync_r,
        err_w,
        netns,
        v1_procs,
        _hosts: hosts,
        _resolv: resolv,
        _sys: sys,
        self_image,
    };
    let ctx = Context {
        rootfs_steps: prepared.rootfs.iter().map(RootfsOp::describe).collect(),
        argv0: if spec.self_exec {
            format!("{argv0} (the shim's executable, by memfd)")
        } else {
            argv0
        },
        hostname: spec.hostname.clone(),
        cwd: cwd_clean,
        netns: spec.netns_path.clone(),
        v1_procs: v1_paths,
        uid: spec.uid,
        gid: spec.gid,
        groups: spec.additional_gids.clone(),
        container_pid: 0,
        landlock: Some(Arc::clone(&layers.landlock)),
    };

    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: (libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_PIDFD) as u64,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(fd) = &cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: clone3 without a stack behaves like fork: the child gets a copy of this thread's
    // stack and continues here. `args` and `pidfd` are valid for the call. The child branch
    // calls only `child`, which never returns and uses only async-signal-safe raw syscalls on
    // memory prepared above, so state copied from other threads (locks, allocator) is never
    // touched.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        return Err(SpawnError::Clone {
            cgroup: spec.cgroup.v2_dir.clone(),
            source: io::Error::last_os_error(),
        });
    }
    if ret == 0 {
        child(&prepared);
    }
    // SAFETY: on success clone3 stored a new pidfd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let pid = Pid::from_raw(ret as i32).ok_or_else(|| SpawnError::Clone {
        cgroup: spec.cgroup.v2_dir.clone(),
        source: io::Error::other("clone3 returned pid 0 in the parent"),
    })?;
    // Closes the parent's copies of the child's ends.
    drop(prepared);
    drop(cgroup_fd);

    let created = Created {
        pid,
        pidfd,
        stdout: stdout_r,
        stderr: stderr_r,
        stdin: stdin_w,
        pty_master,
        sync_w: Some(sync_w),
        err_r: Some(err_r),
        ctx,
    };
    Ok(created)
}

/// Kills a created (not yet started) child and reaps it.
pub fn abort(created: &Created) {
    // Best effort: the process may already be gone, and the caller reports the original error.
    let _ = send_signal(&created.pidfd, libc::SIGKILL);
    let _ = rustix::process::waitpid(Some(created.pid), rustix::process::WaitOptions::empty());
}

/// Sends `signal` through a pidfd (immune to pid reuse).
pub fn send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: pidfd is a valid open pidfd; a null siginfo and zero flags are the documented
    // "like kill(2)" form.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Releases the child and waits until it has exec'd (Ok) or reported a failed step.
pub fn start(created: &mut Created, timeout: Duration) -> Result<(), SpawnError> {
    let Some(sync_w) = created.sync_w.take() else {
        return Ok(());
    };
    let Some(err_r) = created.err_r.take() else {
        return Ok(());
    };
    // EPIPE: the child is gone before its release, normally after reporting a failed setup
    // step, which the read below returns; its exit is reported by the reaper.
    let released = rustix::io::write(&sync_w, &[1]);
    drop(sync_w);

    let deadline = std::time::Instant::now() + timeout;
    let mut report = [0u8; 12];
    let got = match read_full(&err_r, &mut report, deadline) {
        Ok(n) => n,
        Err(e) => {
            abort(created);
            return Err(e.into_spawn(timeout));
        }
    };
    match (got, released) {
        (12, _) => Err(decode_report(&report, &created.ctx)),
        (0, Ok(_)) => Ok(()),
        (0, Err(e)) => Err(SpawnError::Release(e.into())),
        (n, _) => Err(SpawnError::BadReport(n)),
    }
}

/// Why [`read_full`] stopped early.
pub(crate) enum ReadFullError {
    Timeout,
    Os(Errno),
}

impl ReadFullError {
    pub(crate) fn into_spawn(self, timeout: Duration) -> SpawnError {
        match self {
            ReadFullError::Timeout => SpawnError::StartTimeout(timeout),
            ReadFullError::Os(e) => SpawnError::WaitExec(e.into()),
        }
    }
}

/// Reads from a pipe until `buf` is full or EOF, giving up at `deadline`; returns the count.
pub(crate) fn read_full(
    fd: &OwnedFd,
    buf: &mut [u8],
    deadline: std::time::Instant,
) -> Result<usize, ReadFullError> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(ReadFullError::Timeout);
        }
        let ts = rustix::fs::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos().into(),
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(ReadFullError::Os(e)),
        }
        match rustix::io::read(fd, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::INTR) | Err(Errno::AGAIN) => {}
            Err(e) => return Err(ReadFullError::Os(e)),
        }
    }
    Ok(got)
}

pub(crate) fn decode_report(report: &[u8; 12], ctx: &Context) -> SpawnError {
    let word = |i: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&report[i * 4..i * 4 + 4]);
        b
    };
    let step = u32::from_ne_bytes(word(0));
    let index = u32::from_ne_bytes(word(1)) as usize;
    let source = OsError(i32::from_ne_bytes(word(2)));
    let Some(step_kind) = STEPS.iter().find(|s| **s as u32 == step) else {
        return SpawnError::UnknownStep { step, source };
    };
    match step_kind {
        Step::Signals => SpawnError::Signals(source),
        Step::Stdio => SpawnError::Stdio(source),
        Step::Setns => SpawnError::Setns { path: ctx.netns.clone().unwrap_or_default(), source },
        Step::UnshareCgroup => SpawnError::UnshareCgroup(source),
        Step::Rootfs => SpawnError::RootfsStep {
            step: ctx
                .rootfs_steps
                .get(index)
                .cloned()
                .unwrap_or_else(|| format!("rootfs step {index}")),
            source,
        },
        Step::Hostname => SpawnError::Hostname { name: ctx.hostname.clone(), source },
        Step::Bounding => SpawnError::Bounding(source),
        Step::KeepCaps => SpawnError::KeepCaps(source),
        Step::SetGroups => SpawnError::SetGroups { groups: ctx.groups.clone(), source },
        Step::SetGid => SpawnError::SetGid { gid: ctx.gid, source },
        Step::SetUid => SpawnError::SetUid { uid: ctx.uid, source },
        Step::Capset => SpawnError::Capset(source),
        Step::Ambient => SpawnError::Ambient(source),
        Step::NoNewPrivs => SpawnError::NoNewPrivs(source),
        Step::Chdir => SpawnError::Chdir { path: ctx.cwd.clone(), source },
        Step::Exec => SpawnError::Exec { path: ctx.argv0.clone(), source },
        Step::EnterNamespaces => SpawnError::EnterNamespaces { pid: ctx.container_pid, source },
        Step::CloneExec => SpawnError::CloneExec(source),
        Step::Session => SpawnError::Session(source),
        Step::ControllingTerminal => SpawnError::ControllingTerminal(source),
        Step::Enforce => decode_enforce(index as u32, source, ctx),
        Step::JoinCgroup => SpawnError::JoinCgroupChild {
            path: ctx.v1_procs.get(index).cloned().unwrap_or_default(),
            source,
        },
    }
}

/// The typed layer error for a `Step::Enforce` report.
fn decode_enforce(index: u32, source: OsError, ctx: &Context) -> SpawnError {
    let Some(step) = ChildStep::from_code(index >> 24) else {
        return SpawnError::UnknownStep { step: Step::Enforce as u32, source };
    };
    let failure = enforce_child::ChildFailure::new(
        step,
        index & 0x00ff_ffff,
        // The report is untrusted input: an out-of-range errno must not panic the shim.
        Errno::from_raw_os_error(if (1..4096).contains(&source.0) { source.0 } else { libc::EIO }),
    );
    if let Some(e) = SeccompError::from_child(failure) {
        return LayersError::from(e).into();
    }
    match ctx.landlock.as_deref().and_then(|ll| ll.error(failure)) {
        Some(e) => LayersError::from(e).into(),
        None => SpawnError::UnknownStep { step: Step::Enforce as u32, source },
    }
}

/// The child after clone3. Never returns; only raw syscalls on `p`.
fn child(p: &Prepared) -> ! {
    let failure = match setup_and_exec(p) {
        Err(f) => f,
        Ok(never) => match never {},
    };
    // A setup step that failed before the release still waits for it (or for the shim to give
    // up), so the shim's `start` reads this report before its reaper sees an exit: the client
    // learns which step failed, not merely that the container is gone. After the release the
    // pipe is at EOF and this returns at once.
    // Nothing useful can be done if the report cannot be written (see `report_and_exit`).
    let _ = rustix::io::write(&p.err_w, &encode_report(failure));
    wait_for_release(&p.sync_r);
    exit(127)
}

/// Blocks until the shim releases this process (true) or gives up on it (false: EOF).
fn wait_for_release(sync_r: &OwnedFd) -> bool {
    let mut go = [0u8; 1];
    loop {
        match rustix::io::read(sync_r, &mut go) {
            Ok(1) => return true,
            Err(Errno::INTR) => continue,
            _ => return false,
        }
    }
}

/// Child-side: writes the failure report to the error pipe and exits 127.
pub(crate) fn report_and_exit(err_w: &OwnedFd, failure: ChildFailure) -> ! {
    // Nothing useful can be done if the report cannot be written; the parent then sees EOF
    // followed by exit status 127.
    let _ = rustix::io::write(err_w, &encode_report(failure));
    exit(127)
}

/// The 12-byte failure report: step, index, errno.
fn encode_report((step, index, errno): ChildFailure) -> [u8; 12] {
    let mut report = [0u8; 12];
    report[..4].copy_from_slice(&(step as u32).to_ne_bytes());
    report[4..8].copy_from_slice(&index.to_ne_bytes());
    report[8..].copy_from_slice(&errno.raw_os_error().to_ne_bytes());
    report
}

pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and skips atexit handlers and stdio flushing, which
    // belong to the parent's copied state.
    unsafe { libc::_exit(code) }
}

/// Closes every fd except `keep` (sorted), so no other container's pipes leak into this one
/// and none of the shim's sockets survive (some may lack close-on-exec in future code).
pub(crate) fn close_other_fds(keep: &[RawFd]) {
    let mut next: u32 = 3;
    for &fd in keep {
        let fd = fd as u32;
        if fd > next {
            close_range(next, fd - 1);
        }
        next = next.max(fd + 1);
    }
    close_range(next, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    // SAFETY: close_range only closes descriptors; the fds in the range are not used by the
    // child afterwards (the ones it needs are excluded by the caller). Raw syscall, AS-safe.
    // Its only failures are EINVAL/ENOMEM, after which leaked fds are still close-on-exec.
    unsafe {
        libc::syscall(libc::SYS_close_range, first, last, 0u32);
    }
}

pub(crate) fn step<T>(s: Step, r: Result<T, Errno>) -> Result<T, ChildFailure> {
    r.map_err(|e| (s, 0, e))
}

fn setup_and_exec(p: &Prepared) -> Result<Infallible, ChildFailure> {
    close_other_fds(&p.keep_fds);
    // Joining a v1 controller waits for an RCU grace period (the cgroup threadgroup lock's
    // writer side), milliseconds each time: done here, it overlaps with the shim's reply and
    // the daemon's commit instead of delaying them. Before the cgroup namespace is unshared,
    // whose root would hide the target.
    for (i, procs) in p.v1_procs.iter().enumerate() {
        rustix::io::write(procs, b"0").map_err(|e| (Step::JoinCgroup, i as u32, e))?;
    }

    reset_signals(&p.signals)?;

    let (stdin, stdout, stderr) = match &p.stdio {
        InitStdio::Tty(slave) => {
            // A session of its own, so the PTY can become its controlling terminal: job
            // control, ^C and SIGWINCH on resize then reach the container's foreground group.
            step(Step::Session, rustix::process::setsid())?;
            step(Step::ControllingTerminal, rustix::process::ioctl_tiocsctty(slave))?;
            (slave.as_fd(), slave.as_fd(), slave.as_fd())
        }
        InitStdio::Pipes { stdin, stdout, stderr } => {
            (stdin.as_fd(), stdout.as_fd(), stderr.as_fd())
        }
    };
    step(Step::Stdio, rustix::stdio::dup2_stdin(stdin))?;
    step(Step::Stdio, rustix::stdio::dup2_stdout(stdout))?;
    step(Step::Stdio, rustix::stdio::dup2_stderr(stderr))?;

    if let Some(ns) = &p.netns {
        step(
            Step::Setns,
            rustix::thread::move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network)),
        )?;
    }
    // After the v1 joins (above) and the v2 join (at clone), so the new namespace's root is
    // the container's own cgroup.
    // SAFETY: unshare of the cgroup namespace affects only this single-threaded child; no
    // other thread can observe an inconsistent namespace set.
    step(Step::UnshareCgroup, unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWCGROUP) })?;

    rustix::process::umask(Mode::empty());
    for (i, op) in p.rootfs.iter().enumerate() {
        rootfs::run_op(op).map_err(|e| (Step::Rootfs, i as u32, e))?;
    }
    if !p.hostname.is_empty() {
        step(Step::Hostname, rustix::system::sethostname(p.hostname.as_bytes()))?;
    }
    rustix::process::umask(Mode::from_raw_mode(0o022));

    apply_privileges(&p.privileges)?;
    step(Step::Chdir, rustix::process::chdir(p.cwd.as_c_str()))?;

    // Set up while created, like runc's init: `start` then only releases the exec. The
    // seccomp filter comes after the wait, so a policy's deny list never meets this read.
    if !wait_for_release(&p.sync_r) {
        // The shim gave up on this container.
        exit(1);
    }
    seal(&p.privileges)?;
    match &p.self_image {
        Some(image) => Err(exec_image(image, &p.cmd)),
        None => Err(exec_command(&p.cmd)),
    }
}

fn exec(path: &CStr, p: &Command) {
    // SAFETY: path is NUL-terminated; argv_ptrs/envp_ptrs are null-terminated arrays of
    // pointers into `p._argv`/`p._envp`, which `p` keeps alive. execve is async-signal-safe and
    // only returns on failure.
    unsafe {
        libc::execve(path.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_candidates_follow_path() {
        assert_eq!(exec_candidates("/bin/x", &[]), ["/bin/x"]);
        assert_eq!(exec_candidates("ls", &["PATH=/a:/b/".into()]), ["/a/ls", "/b/ls"]);
        assert_eq!(exec_candidates("ls", &[]).len(), 6);
    }

    #[test]
    fn os_error_is_lowercase_without_code() {
        assert_eq!(OsError(2).to_string(), "no such file or directory");
    }

    #[test]
    fn report_decodes_to_named_step() {
        let ctx = Context {
            rootfs_steps: vec!["mount proc on /proc".into()],
            argv0: "/bin/foo".into(),
            hostname: "h".into(),
            cwd: "/".into(),
            netns: None,
            v1_procs: vec!["/sys/fs/cgroup/pids/z/cgroup.procs".into()],
            uid: 0,
            gid: 0,
            groups: vec![],
            container_pid: 0,
            landlock: None,
        };
        let mut r = [0u8; 12];
        r[..4].copy_from_slice(&(Step::Exec as u32).to_ne_bytes());
        r[8..].copy_from_slice(&2i32.to_ne_bytes());
        assert_eq!(decode_report(&r, &ctx).to_string(), "exec /bin/foo: no such file or directory");
        r[..4].copy_from_slice(&(Step::Rootfs as u32).to_ne_bytes());
        r[8..].copy_from_slice(&1i32.to_ne_bytes());
        assert_eq!(
            decode_report(&r, &ctx).to_string(),
            "mount proc on /proc: operation not permitted"
        );
    }
}
