//! `rauha exec`: starting a new process inside a running container.
//!
//! The process enters everything the container's init has, through the init's pidfd:
//! `setns(pidfd, MOUNT|UTS|IPC|NET|CGROUP|PID)` (atomic, kernel >= 5.8) gives it the
//! container's root (the mount namespace's root is the pivoted rootfs; never a bare chroot),
//! hostname, IPC, network, cgroup view and pid namespace. Its cgroups are joined before any of
//! its code runs: the first clone goes straight into the container's cgroup2 node
//! (`CLONE_INTO_CGROUP`) and the shim writes it into the v1 controllers while it waits on the
//! sync pipe. Privileges are dropped by the same `apply_privileges` and `seal` as the init, with
//! the container's own prepared layers: its Landlock ruleset (whose paths resolve inside the
//! container, since the process has entered its mount namespace), capability allow-list,
//! `no_new_privs` and seccomp filter.
//!
//! The exec'd process gets a Landlock domain of its own (a domain cannot be joined), so with
//! signal scoping (ABI 6) it cannot signal the container's init or its other processes, nor they
//! it; processes it starts itself share its domain.
//!
//! Why two clones: `setns(CLONE_NEWPID)` changes only the namespace of the caller's future
//! children, and a process cannot enter a mount namespace while the shim must stay in its own.
//! So the shim clones an intermediate process, which enters the namespaces and clones the real
//! process with `CLONE_PARENT`: the shim (parent and subreaper) becomes its parent directly,
//! reaps it like any container process and reports its exit; the intermediate writes the pid
//! to a pipe and exits at once. (A plain fork + reparenting to the subreaper would leave a
//! window in which the process has no waiting parent, and the intermediate would have to stay
//! around to relay the exit status.)
//!
//! Both clones run only raw syscalls on memory prepared here before the first clone. Failures
//! of either are reported as `(step, index, errno)` on the close-on-exec error pipe, exactly
//! like the init's; EOF on it with no report means exec succeeded.
//!
//! The shim must keep reaping while an exec'd process is a zombie: the kernel lets the
//! container's init finish exiting only once every process of its pid namespace is reaped,
//! including these, whose parent is outside the namespace.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::OFlags;
use rustix::process::{Pid, Signal, WaitOptions};
use rustix::thread::ThreadNameSpaceType;

use crate::shim::layers::Layers;
use crate::shim::protocol::{CgroupSpec, ExecSpec};
use crate::shim::pty;
use crate::shim::rootfs;
use crate::shim::spawn::{
    self, CLONE_INTO_CGROUP, ChildFailure, CloneArgs, Command, Context, Privileges, SignalReset,
    SpawnError, Step, apply_privileges, close_other_fds, decode_report, exit, open, pipe,
    prepare_command, prepare_privileges, prepare_signal_reset, read_full, report_and_exit,
    reset_signals, seal, step,
};

/// The namespaces an exec enters; the container has no user or time namespace of its own.
const NAMESPACES: ThreadNameSpaceType = ThreadNameSpaceType::MOUNT
    .union(ThreadNameSpaceType::CONTROL_GROUP)
    .union(ThreadNameSpaceType::HOST_NAME_AND_NIS_DOMAIN_NAME)
    .union(ThreadNameSpaceType::INTER_PROCESS_COMMUNICATION)
    .union(ThreadNameSpaceType::NETWORK)
    .union(ThreadNameSpaceType::PROCESS_ID);

/// The running container an exec enters, as the shim knows it.
#[derive(Debug, Clone, Copy)]
pub struct ExecTarget<'a> {
    /// Pid of the container's init in the shim's pid namespace.
    pub pid: Pid,
    /// pidfd of the container's init: the handle its namespaces are entered through.
    pub pidfd: BorrowedFd<'a>,
    /// The container's cgroups.
    pub cgroup: &'a CgroupSpec,
    /// The container's prepared layers (Landlock, capabilities, seccomp).
    pub layers: &'a Layers,
    /// The container's `no_new_privs` setting.
    pub no_new_privs: bool,
}

/// A started exec.
#[derive(Debug)]
pub struct Started {
    /// Pid of the process in the shim's pid namespace (the shim is its parent).
    pub pid: Pid,
    /// The client's stdio ends, in the order documented on `ShimResponse::ExecStarted`.
    pub client_fds: Vec<OwnedFd>,
}

/// The process's side of its stdio.
enum ChildStdio {
    /// PTY slave: controlling terminal and fds 0-2.
    Tty(OwnedFd),
    /// Separate stdin (pipe or /dev/null), stdout and stderr.
    Pipes { stdin: OwnedFd, stdout: OwnedFd, stderr: OwnedFd },
}

/// Everything both clones touch, prepared before the first one.
struct Prepared {
    cmd: Command,
    cwd: CString,
    privileges: Privileges,
    signals: SignalReset,
    stdio: ChildStdio,
    container_pidfd: RawFd,
    keep_fds: Vec<RawFd>,
    sync_r: OwnedFd,
    err_w: OwnedFd,
    pid_w: OwnedFd,
}

/// Starts `spec` inside `target` and waits until it has exec'd or reported a failed step.
pub fn start(
    target: &ExecTarget<'_>,
    spec: &ExecSpec,
    timeout: Duration,
) -> Result<Started, SpawnError> {
    let argv0 = spec
        .args
        .first()
        .ok_or_else(|| SpawnError::EmptyCommand { id: spec.container_id.clone() })?
        .clone();
    if spec.tty_size.is_some() && !spec.tty {
        return Err(SpawnError::SizeWithoutTty);
    }
    let cwd = rootfs::clean_absolute("working directory", &spec.cwd)?;
    let privileges = prepare_privileges(
        spec.uid,
        spec.gid,
        &spec.additional_gids,
        target.layers,
        target.no_new_privs,
    )?;
    let cmd = prepare_command(&spec.args, &spec.env)?;
    let container_pid = target.pid.as_raw_nonzero().get();

    let (stdio, client_fds) = if spec.tty {
        // The init is the shim's child and is reaped only by the caller's loop, so its pid
        // cannot be reused while this runs.
        let root = rustix::fs::open(
            format!("/proc/{container_pid}/root"),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| SpawnError::OpenRoot { pid: container_pid as u32, source: e.into() })?;
        let pty = pty::open_in_root(&root, spec.uid)?;
        if let Some((rows, cols)) = spec.tty_size {
            pty::set_window_size(&pty.master, rows, cols)?;
        }
        (ChildStdio::Tty(pty.slave), vec![pty.master])
    } else {
        let (stdin, stdin_w) = if spec.interactive {
            let (r, w) = pipe("stdin")?;
            (r, Some(w))
        } else {
            (open(Path::new("/dev/null"), OFlags::RDONLY)?, None)
        };
        let (stdout_r, stdout) = pipe("stdout")?;
        let (stderr_r, stderr) = pipe("stderr")?;
        let client = stdin_w.into_iter().chain([stdout_r, stderr_r]).collect();
        (ChildStdio::Pipes { stdin, stdout, stderr }, client)
    };

    let (sync_r, sync_w) = pipe("sync")?;
    let (err_r, err_w) = pipe("error")?;
    let (pid_r, pid_w) = pipe("pid report")?;
    let cgroup_fd = match &target.cgroup.v2_dir {
        Some(p) => Some(open(p, OFlags::DIRECTORY | OFlags::RDONLY)?),
        None => None,
    };

    let mut keep_fds: Vec<RawFd> =
        vec![sync_r.as_raw_fd(), err_w.as_raw_fd(), pid_w.as_raw_fd(), target.pidfd.as_raw_fd()];
    match &stdio {
        ChildStdio::Tty(slave) => keep_fds.push(slave.as_raw_fd()),
        ChildStdio::Pipes { stdin, stdout, stderr } => {
            keep_fds.extend([stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()])
        }
    }
    keep_fds.sort_unstable();

    let prepared = Prepared {
        cmd,
        cwd: spawn::cstr("working directory", cwd.as_os_str().as_encoded_bytes())?,
        privileges,
        signals: prepare_signal_reset(),
        stdio,
        container_pidfd: target.pidfd.as_raw_fd(),
        keep_fds,
        sync_r,
        err_w,
        pid_w,
    };
    let ctx = Context {
        argv0,
        cwd,
        uid: spec.uid,
        gid: spec.gid,
        groups: spec.additional_gids.clone(),
        container_pid: container_pid as u32,
        landlock: Some(std::sync::Arc::clone(&target.layers.landlock)),
        ..Context::default()
    };

    let mut args = CloneArgs { exit_signal: libc::SIGCHLD as u64, ..CloneArgs::default() };
    if let Some(fd) = &cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: clone3 without a stack behaves like fork: the child continues here on a copy of
    // this thread's stack. `args` is valid for the call. The child branch calls only
    // `intermediate`, which never returns and uses only async-signal-safe raw syscalls on
    // memory prepared above (the shim is single-threaded, so no lock is held anyway).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        return Err(SpawnError::Clone {
            cgroup: target.cgroup.v2_dir.clone(),
            source: io::Error::last_os_error(),
        });
    }
    if ret == 0 {
        intermediate(&prepared);
    }
    // Closes the parent's copies of the children's ends, so EOF on the pipes means they are
    // gone or exec'd.
    drop(prepared);
    drop(cgroup_fd);
    let Some(middle) = Pid::from_raw(ret as i32) else {
        return Err(SpawnError::Clone {
            cgroup: target.cgroup.v2_dir.clone(),
            source: io::Error::other("clone3 returned pid 0 in the parent"),
        });
    };

    // The process it will clone inherits these memberships.
    for dir in &target.cgroup.v1_dirs {
        let path = dir.join("cgroup.procs");
        if let Err(source) = fs::write(&path, middle.as_raw_nonzero().to_string()) {
            kill_and_reap(&[middle]);
            return Err(SpawnError::JoinCgroup { path, source });
        }
    }
    if let Err(e) = rustix::io::write(&sync_w, &[1]) {
        kill_and_reap(&[middle]);
        return Err(SpawnError::Release(e.into()));
    }
    drop(sync_w);

    let deadline = Instant::now() + timeout;
    let mut pid_buf = [0u8; 4];
    let got_pid = match read_full(&pid_r, &mut pid_buf, deadline) {
        Ok(n) => n,
        Err(e) => {
            kill_and_reap(&[middle]);
            return Err(e.into_spawn(timeout));
        }
    };
    let process = (got_pid == 4).then(|| Pid::from_raw(i32::from_ne_bytes(pid_buf))).flatten();
    let mut report = [0u8; 12];
    let got_report = read_full(&err_r, &mut report, deadline);
    let children: Vec<Pid> = [Some(middle), process].into_iter().flatten().collect();
    let result = match (got_report, process) {
        (Ok(0), Some(pid)) => {
            reap(middle);
            return Ok(Started { pid, client_fds });
        }
        (Ok(12), _) => Err(decode_report(&report, &ctx)),
        (Ok(0), None) => Err(SpawnError::BadReport(got_pid)),
        (Ok(n), _) => Err(SpawnError::BadReport(n)),
        (Err(e), _) => Err(e.into_spawn(timeout)),
    };
    // The failed process exits by itself right after its report; killing first bounds the wait
    // when it did not (timeout).
    kill_and_reap(&children);
    result
}

fn reap(pid: Pid) {
    // The pid is our unreaped child; ECHILD (already reaped) is the only expected error and
    // leaves nothing to do.
    let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
}

/// Kills and reaps exec children that failed; they are unreaped children of the shim, so their
/// pids cannot have been reused.
fn kill_and_reap(pids: &[Pid]) {
    for pid in pids {
        // Best effort: the process may already have exited.
        let _ = rustix::process::kill_process(*pid, Signal::KILL);
    }
    for pid in pids {
        reap(*pid);
    }
}

/// The first clone: enters the container's namespaces, clones the exec'd process as the
/// shim's child, reports its pid and exits. Never returns; raw syscalls on `p` only.
fn intermediate(p: &Prepared) -> ! {
    close_other_fds(&p.keep_fds);
    let mut go = [0u8; 1];
    loop {
        match rustix::io::read(&p.sync_r, &mut go) {
            Ok(1) => break,
            Err(rustix::io::Errno::INTR) => continue,
            // EOF: the shim gave up on this exec.
            _ => exit(1),
        }
    }
    // SAFETY: container_pidfd is kept open by the shim for the duration of this call and is in
    // keep_fds, so close_other_fds left it open in this process.
    let pidfd = unsafe { BorrowedFd::borrow_raw(p.container_pidfd) };
    if let Err(e) = rustix::thread::move_into_thread_name_spaces(pidfd, NAMESPACES) {
        report_and_exit(&p.err_w, (Step::EnterNamespaces, 0, e));
    }
    // CLONE_PARENT makes the shim the parent; clone3 then requires exit_signal 0 and the child
    // inherits this process's (SIGCHLD).
    let mut args = CloneArgs { flags: libc::CLONE_PARENT as u64, ..CloneArgs::default() };
    // SAFETY: as for the first clone: fork-like clone3 without a stack, `args` valid for the
    // call, and the child runs only `exec_process` on prepared memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        let e = rustix::io::Errno::from_raw_os_error(rootfs::errno());
        report_and_exit(&p.err_w, (Step::CloneExec, 0, e));
    }
    if ret == 0 {
        exec_process(p);
    }
    // The pid as seen from the shim's namespace, which is this process's own.
    let _ = rustix::io::write(&p.pid_w, &(ret as i32).to_ne_bytes());
    exit(0)
}

/// The exec'd process after the second clone. Never returns.
fn exec_process(p: &Prepared) -> ! {
    let failure = match setup_and_exec(p) {
        Err(f) => f,
        Ok(never) => match never {},
    };
    report_and_exit(&p.err_w, failure)
}

fn setup_and_exec(p: &Prepared) -> Result<Infallible, ChildFailure> {
    reset_signals(&p.signals)?;
    // A session of its own: signals to the shim's process group never reach it, and with a
    // PTY it can take the terminal as its controlling one.
    step(Step::Session, rustix::process::setsid())?;
    let (stdin, stdout, stderr) = match &p.stdio {
        ChildStdio::Tty(slave) => {
            step(Step::ControllingTerminal, rustix::process::ioctl_tiocsctty(slave))?;
            (slave.as_fd(), slave.as_fd(), slave.as_fd())
        }
        ChildStdio::Pipes { stdin, stdout, stderr } => {
            (stdin.as_fd(), stdout.as_fd(), stderr.as_fd())
        }
    };
    step(Step::Stdio, rustix::stdio::dup2_stdin(stdin))?;
    step(Step::Stdio, rustix::stdio::dup2_stdout(stdout))?;
    step(Step::Stdio, rustix::stdio::dup2_stderr(stderr))?;
    apply_privileges(&p.privileges)?;
    step(Step::Chdir, rustix::process::chdir(p.cwd.as_c_str()))?;
    seal(&p.privileges)?;
    Err(spawn::exec_command(&p.cmd))
}
