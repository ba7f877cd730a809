//! The probe role (`rauha probe …`): attack probes run from inside a zone for `rauha zone
//! verify` (DESIGN.md §5, issue 6 item 3). Each check tries to cross one boundary with a raw
//! syscall against a real target outside the zone that the daemon names on the command line (a
//! host process, another zone's process, a file it planted, a foreign cgroup, a foreign
//! address) and reports `passed` only if the kernel denied it; one JSON line per check on
//! stdout. The daemon runs this binary from a memfd inside the zone, so it needs nothing from
//! any image.
//!
//! Every probe is harmless if it got through: exec attempts run in a child whose seccomp filter
//! kills the new program at its first system call, mounts and reboot use arguments the kernel
//! refuses after its permission checks, created files and nodes are removed, a sysctl gets its own
//! value back, a foreign `cgroup.procs` is only opened, and the namespace probes run in a forked
//! child that exits at once.
//!
//! Attribution: each check lists, per errno, the mechanisms that answer with it
//! ([`mechanism`]); the daemon keeps those of the layers that were active. An errno a check
//! does not expect is inconclusive and fails the check.
//!
//! `rauha probe --hold` is the other half: a host-side target the daemon starts outside every
//! zone; it waits until its stdin closes.

use std::io::Read;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::enforce::seccomp;

/// Names of the mechanisms an outcome can point at. The layer names match the daemon's layer
/// list (`zone verify`, `rauha info`).
pub mod mechanism {
    /// pid, mount, uts, ipc, cgroup and network namespaces.
    pub const NAMESPACES: &str = "namespaces";
    /// The read-only rootfs and `/proc/sys`, the masked paths.
    pub const READONLY_MOUNTS: &str = "read-only-mounts";
    /// The seccomp filter.
    pub const SECCOMP: &str = "seccomp";
    /// The Landlock ruleset (filesystem rights, signal scoping).
    pub const LANDLOCK: &str = "landlock";
    /// The capability allow-list.
    pub const CAPABILITIES: &str = "capabilities";
    /// The per-zone cgroup-BPF programs (devices, sysctl, egress).
    pub const CGROUP_BPF: &str = "cgroup-bpf";
    /// The BPF LSM programs.
    pub const LSM: &str = "lsm";
    /// The zone's nftables rules.
    pub const NFTABLES: &str = "nftables";
    /// The zone's cgroup: the probe's placement and the zone's limits.
    pub const CGROUPS: &str = "cgroups";
    /// The kernel itself lacks the feature (e.g. no module support).
    pub const KERNEL: &str = "kernel";
}

use mechanism::*;

/// The outcome of one check, one JSON line of the probe's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Short name, e.g. `mount`, `signal_host`.
    pub check: String,
    /// The boundary it attacks, e.g. `mounts`.
    pub boundary: String,
    /// Whether the attack was denied (or, for a structural check, the fact holds).
    pub passed: bool,
    /// The errno the attack got (`0` = it succeeded).
    pub errno: i32,
    /// The mechanisms that answer with this errno for this check (empty when not held).
    pub held_by: Vec<String>,
    /// What was tried and what came back.
    pub detail: String,
}

/// Which errnos mean "denied" for a check, and by what.
type Rules = &'static [(Errno, &'static [&'static str])];

/// Hidden by the pid or mount namespace.
const HIDDEN: Rules = &[(Errno::NOENT, &[NAMESPACES]), (Errno::SRCH, &[NAMESPACES])];
/// A syscall the profile and the capability allow-list both refuse.
const PRIVILEGED: Rules = &[(Errno::PERM, &[SECCOMP, CAPABILITIES])];
/// A path outside the zone.
const FOREIGN_FILE: Rules = &[
    (Errno::NOENT, &[NAMESPACES]),
    (Errno::SRCH, &[NAMESPACES]),
    // /proc/PID/root and /proc/PID/exe need ptrace read access to the target.
    (Errno::ACCESS, &[LANDLOCK, CAPABILITIES]),
    (Errno::PERM, &[LSM]),
];
/// A write inside the zone's own rootfs, outside its writable paths.
const OWN_WRITE: Rules = &[
    (Errno::ROFS, &[READONLY_MOUNTS]),
    (Errno::ACCESS, &[LANDLOCK]),
    (Errno::PERM, &[CGROUP_BPF]),
];

/// The verdict of an attack that got `errno`; unknown errnos are inconclusive.
fn judge(check: &str, boundary: &str, errno: i32, rules: Rules, tried: String) -> Check {
    let (passed, held_by, what) = if errno == 0 {
        (false, Vec::new(), "succeeded: the boundary was crossed".to_owned())
    } else {
        match rules.iter().find(|(e, _)| e.raw_os_error() == errno) {
            Some((_, by)) => (true, by.iter().map(|m| m.to_string()).collect(), errno_text(errno)),
            None => {
                (false, Vec::new(), format!("{}: inconclusive, not a denial", errno_text(errno)))
            }
        }
    };
    Check {
        check: check.to_owned(),
        boundary: boundary.to_owned(),
        passed,
        errno,
        held_by,
        detail: format!("{tried}: {what}"),
    }
}

/// `ENOENT (no such file or directory)`.
pub fn errno_text(errno: i32) -> String {
    let full = std::io::Error::from_raw_os_error(errno).to_string();
    let message = full.split(" (os error").next().unwrap_or(&full).to_lowercase();
    format!("{} ({message})", errno_name(errno))
}

/// The symbolic name of the errnos the probes can meet.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENOEXEC => "ENOEXEC",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EINVAL => "EINVAL",
        libc::EROFS => "EROFS",
        libc::ENOSYS => "ENOSYS",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        0 => "0",
        _ => return format!("errno {errno}"),
    };
    name.to_owned()
}

fn last_errno(rc: libc::c_long) -> i32 {
    if rc >= 0 { 0 } else { std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) }
}

fn open_errno(path: &str, flags: OFlags) -> i32 {
    match rustix::fs::open(path, flags | OFlags::CLOEXEC, Mode::from(0o600)) {
        Ok(_) => 0,
        Err(e) => e.raw_os_error(),
    }
}

/// An exec attempt on `path` as a check: denied, crossed, or inconclusive when the attempt
/// could not be confined (then nothing was tried).
fn exec_check(check: &str, path: &str) -> Check {
    let tried = format!("execve {path}");
    match exec_errno(path) {
        Ok(errno) => judge(check, "exec", errno, FOREIGN_FILE, tried),
        Err((errno, why)) => Check {
            check: check.to_owned(),
            boundary: "exec".to_owned(),
            passed: false,
            errno,
            held_by: Vec::new(),
            detail: format!("{tried}: inconclusive, not attempted: {why}"),
        },
    }
}

/// What the exec child reports on its pipe: which step failed, then the errno.
const EXEC_STEP_CONFINE: i32 = 1;
const EXEC_STEP_EXEC: i32 = 2;

/// Tries to execute `path` in a forked child that can do nothing else: under
/// [`seccomp::exec_only`] a program whose exec got through is killed at its first system call.
/// A failed exec's errno comes back on a close-on-exec pipe; end of file without a report means
/// the exec replaced the child: a crossing, `0`.
/// `Err` carries the errno and reason when the child could not be confined.
///
/// Not an exec with an invalid `argv` that fails with `EFAULT` after the permission checks:
/// only since Linux 6.8 does execve open the file before it reads the arguments; on 6.1 every
/// path, even a missing one, came back `EFAULT` (found by the VM tests).
fn exec_errno(path: &str) -> Result<i32, (i32, String)> {
    let path = std::ffi::CString::new(path)
        .map_err(|_| (libc::EINVAL, "the path contains a NUL byte".to_owned()))?;
    let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| (e.raw_os_error(), format!("pipe: {e}")))?;
    let report_fd = writer.as_raw_fd();
    let filter = seccomp::exec_only(report_fd as u32)
        .map_err(|e| (libc::EINVAL, format!("compile the exec-only filter: {e}")))?;
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: the child makes only raw system calls on memory prepared before the fork (no
    // allocation, no locks), so this holds even in a multi-threaded caller such as a test.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let report = |step: i32, errno: i32| -> ! {
            let mut message = [0u8; 8];
            message[..4].copy_from_slice(&step.to_ne_bytes());
            message[4..].copy_from_slice(&errno.to_ne_bytes());
            // SAFETY: writes 8 bytes from a local buffer to our pipe, then ends the child
            // without running the parent's atexit handlers.
            unsafe {
                libc::write(report_fd, message.as_ptr().cast(), message.len());
                libc::_exit(0)
            }
        };
        // A program killed by the filter leaves no core file.
        let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: setrlimit reads a valid rlimit; failing only leaves core files possible.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
        if let Err(failure) = seccomp::install(&filter) {
            report(EXEC_STEP_CONFINE, failure.errno.raw_os_error());
        }
        // SAFETY: path, argv and envp are NUL-terminated and outlive the call; on success this
        // process is replaced, confined by the filter just installed.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        report(EXEC_STEP_EXEC, last_errno(-1));
    }
    if pid < 0 {
        let errno = last_errno(-1);
        return Err((errno, format!("fork: {}", errno_text(errno))));
    }
    drop(writer);
    let mut message = [0u8; 8];
    let mut got = 0;
    while got < message.len() {
        match rustix::io::read(&reader, &mut message[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::INTR) => {}
            Err(_) => break,
        }
    }
    reap(pid);
    let field = |at: usize| {
        i32::from_ne_bytes([message[at], message[at + 1], message[at + 2], message[at + 3]])
    };
    match (got, field(0), field(4)) {
        (0, _, _) => Ok(0),
        (8, EXEC_STEP_EXEC, errno) => Ok(errno),
        (8, EXEC_STEP_CONFINE, errno) => {
            Err((errno, format!("install the exec-only seccomp filter: {}", errno_text(errno))))
        }
        _ => Err((libc::EIO, format!("the exec child sent {got} of 8 report bytes"))),
    }
}

/// Waits for the exec child to end; one that got through and makes no system call (it would
/// spin) is SIGKILLed after a second.
fn reap(pid: libc::pid_t) {
    for _ in 0..1000 {
        // SAFETY: waiting for our own child without blocking; a null status pointer is allowed.
        if unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) } != 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: our own child, still running: killed, then reaped.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// Runs `f` in a forked child and returns the errno it reports (the child's exit code).
fn in_child(f: fn() -> i32) -> i32 {
    // SAFETY: the probe is single-threaded (it runs straight from main), so the child may run
    // ordinary code; it exits with `_exit` without returning into the parent's state.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = f();
        // SAFETY: _exit ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(code.clamp(0, 255)) }
    }
    if pid < 0 {
        return last_errno(-1);
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { libc::EINTR }
}

fn unshare_mount() -> i32 {
    // SAFETY: runs in the forked child of `in_child`, which exits right after.
    last_errno(unsafe { libc::unshare(libc::CLONE_NEWNS) } as libc::c_long)
}

fn unshare_user() -> i32 {
    // SAFETY: runs in the forked child of `in_child`, which exits right after.
    last_errno(unsafe { libc::unshare(libc::CLONE_NEWUSER) } as libc::c_long)
}

fn setns_net() -> i32 {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC;
    match rustix::fs::open("/proc/self/ns/net", flags, Mode::empty()) {
        // Re-entering its own namespace: harmless, and still needs CAP_SYS_ADMIN.
        // SAFETY: a valid nsfs fd; runs in the forked child of `in_child`.
        Ok(fd) => last_errno(unsafe {
            libc::setns(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::CLONE_NEWNET)
        } as libc::c_long),
        Err(e) => e.raw_os_error(),
    }
}

/// What the probes attack, from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// `--foreign-pid LABEL:PID`: processes outside the zone (`host`, `zone`), host pids.
    pub pids: Vec<(String, u32)>,
    /// `--host-file PATH`: a readable file the daemon planted on the host.
    pub host_file: Option<String>,
    /// `--host-exec PATH`: an executable file the daemon planted on the host.
    pub host_exec: Option<String>,
    /// `--foreign-cgroup LABEL:PATH`: `cgroup.procs` files of cgroups outside the zone.
    pub cgroups: Vec<(String, String)>,
    /// `--connect LABEL:IP:PORT`: addresses outside the zone the policy does not allow.
    pub connect: Vec<(String, SocketAddr)>,
    /// `--writable DIR`: the zone's writable paths (where a device node could be made).
    pub writable: Vec<String>,
    /// `--host-ns KIND:INODE`: the host's namespaces, which the probe's must differ from.
    pub host_ns: Vec<(String, u64)>,
    /// `--zone-netns INODE`: the network namespace the probe must be in.
    pub zone_netns: Option<u64>,
}

/// Namespace kinds `--host-ns` may name (files of `/proc/self/ns`).
const NS_KINDS: [&str; 6] = ["mnt", "pid", "uts", "ipc", "cgroup", "net"];

fn label(text: &str) -> Result<String, String> {
    if !text.is_empty() && text.len() <= 16 && text.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(text.to_owned())
    } else {
        Err(format!("label {text:?} must be 1-16 lowercase letters"))
    }
}

impl Targets {
    /// Parses the probe's flags.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut t = Targets::default();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let pair = || {
                value.split_once(':').ok_or_else(|| format!("{flag}: {value:?} is not LABEL:VALUE"))
            };
            let number = |text: &str| {
                text.parse::<u64>().map_err(|e| format!("{flag}: {text:?} is not a number: {e}"))
            };
            match flag.as_str() {
                "--foreign-pid" => {
                    let (l, pid) = pair()?;
                    let pid = u32::try_from(number(pid)?).map_err(|e| format!("{flag}: {e}"))?;
                    t.pids.push((label(l)?, pid));
                }
                "--host-file" => t.host_file = Some(value.clone()),
                "--host-exec" => t.host_exec = Some(value.clone()),
                "--foreign-cgroup" => {
                    let (l, path) = pair()?;
                    t.cgroups.push((label(l)?, path.to_owned()));
                }
                "--connect" => {
                    let (l, addr) = pair()?;
                    let addr = addr.parse().map_err(|e| format!("{flag}: {addr:?}: {e}"))?;
                    t.connect.push((label(l)?, addr));
                }
                "--writable" => t.writable.push(value.clone()),
                "--host-ns" => {
                    let (kind, inode) = pair()?;
                    if !NS_KINDS.contains(&kind) {
                        return Err(format!("{flag}: unknown namespace kind {kind:?}"));
                    }
                    t.host_ns.push((kind.to_owned(), number(inode)?));
                }
                "--zone-netns" => t.zone_netns = Some(number(value)?),
                other => return Err(format!("unknown flag {other:?}")),
            }
        }
        Ok(t)
    }

    /// The flags that [`Targets::parse`] reads back.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, value: String| {
            args.push(flag.to_owned());
            args.push(value);
        };
        for (l, pid) in &self.pids {
            push("--foreign-pid", format!("{l}:{pid}"));
        }
        if let Some(path) = &self.host_file {
            push("--host-file", path.clone());
        }
        if let Some(path) = &self.host_exec {
            push("--host-exec", path.clone());
        }
        for (l, path) in &self.cgroups {
            push("--foreign-cgroup", format!("{l}:{path}"));
        }
        for (l, addr) in &self.connect {
            push("--connect", format!("{l}:{addr}"));
        }
        for dir in &self.writable {
            push("--writable", dir.clone());
        }
        for (kind, inode) in &self.host_ns {
            push("--host-ns", format!("{kind}:{inode}"));
        }
        if let Some(inode) = self.zone_netns {
            push("--zone-netns", inode.to_string());
        }
        args
    }
}

/// Attacks on one process outside the zone.
fn process_checks(label: &str, pid: u32, host_file: Option<&str>, out: &mut Vec<Check>) {
    let proc_dir = format!("/proc/{pid}");
    let see = match rustix::fs::stat(proc_dir.as_str()) {
        Ok(_) => 0,
        Err(e) => e.raw_os_error(),
    };
    out.push(judge(&format!("see_{label}"), "visibility", see, HIDDEN, format!("stat {proc_dir}")));
    // SAFETY: signal 0 only checks existence and permission.
    let kill = last_errno(unsafe { libc::kill(pid as i32, 0) } as libc::c_long);
    let rules: Rules = &[(Errno::SRCH, &[NAMESPACES]), (Errno::PERM, &[LANDLOCK, LSM])];
    out.push(judge(&format!("signal_{label}"), "signals", kill, rules, format!("kill({pid}, 0)")));
    // SAFETY: PTRACE_ATTACH on a pid; if it succeeded we detach at once below.
    let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid as libc::pid_t, 0, 0) };
    let attach = last_errno(rc);
    if attach == 0 {
        // SAFETY: detaching the tracee we just attached.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, pid as libc::pid_t, 0, 0) };
    }
    let rules: Rules =
        &[(Errno::SRCH, &[NAMESPACES]), (Errno::PERM, &[SECCOMP, CAPABILITIES, LSM])];
    let tried = format!("ptrace(PTRACE_ATTACH, {pid})");
    out.push(judge(&format!("ptrace_{label}"), "ptrace", attach, rules, tried));
    // Its root: a planted file for the host, the rootfs itself for another zone.
    let (path, flags) = match host_file {
        Some(file) => (format!("{proc_dir}/root{file}"), OFlags::RDONLY),
        None => (format!("{proc_dir}/root/"), OFlags::RDONLY | OFlags::DIRECTORY),
    };
    let open = open_errno(&path, flags);
    out.push(judge(&format!("files_{label}"), "files", open, FOREIGN_FILE, format!("open {path}")));
    let exe = format!("{proc_dir}/exe");
    out.push(exec_check(&format!("exec_{label}"), &exe));
}

/// Makes a `/dev/mem` node (char 1:1) in each candidate directory and opens the first one made:
/// the policy allows neither making it (Landlock, read-only mounts) nor opening it (device
/// allow-list).
fn open_device(writable: &[String]) -> Check {
    let mut dirs: Vec<&str> = Vec::new();
    for dir in writable.iter().map(String::as_str).chain(["/dev", "/tmp"]) {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    let mut attempts = Vec::new();
    let mut first = None;
    for dir in dirs {
        let node = format!("{}/.rauha-probe-mem", dir.trim_end_matches('/'));
        let made = rustix::fs::mknodat(
            rustix::fs::CWD,
            node.as_str(),
            rustix::fs::FileType::CharacterDevice,
            Mode::from(0o600),
            rustix::fs::makedev(1, 1),
        );
        match made {
            Ok(()) => {
                let open = open_errno(&node, OFlags::RDONLY);
                let _ = rustix::fs::unlink(node.as_str());
                let rules: Rules =
                    &[(Errno::PERM, &[CGROUP_BPF, LSM]), (Errno::ACCESS, &[LANDLOCK])];
                let tried = format!("mknod {node} (char 1:1, /dev/mem) succeeded; open it");
                return judge("open_device", "devices", open, rules, tried);
            }
            Err(e) => {
                attempts.push(format!("mknod {node}: {}", errno_text(e.raw_os_error())));
                first.get_or_insert(e.raw_os_error());
            }
        }
    }
    let rules: Rules = &[
        (Errno::ACCESS, &[LANDLOCK]),
        (Errno::ROFS, &[READONLY_MOUNTS]),
        // The device allow-list refuses making a node too; CAP_MKNOD is the other gate.
        (Errno::PERM, &[CGROUP_BPF, CAPABILITIES]),
        (Errno::NOENT, &[READONLY_MOUNTS]),
    ];
    let errno = first.unwrap_or(libc::EINVAL);
    let mut check = judge("open_device", "devices", errno, rules, "make a device node".into());
    check.detail = format!("no device node could be made: {}", attempts.join("; "));
    check
}

/// Writes a sysctl's own value back (harmless if it got through).
fn write_sysctl() -> Check {
    let path = "/proc/sys/vm/overcommit_ratio";
    let errno = match rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) {
        Err(e) => e.raw_os_error(),
        Ok(fd) => {
            let mut value = [0u8; 32];
            match rustix::io::read(&fd, &mut value) {
                Err(e) => e.raw_os_error(),
                Ok(n) => match rustix::io::pwrite(&fd, &value[..n], 0) {
                    Ok(_) => 0,
                    Err(e) => e.raw_os_error(),
                },
            }
        }
    };
    judge("write_sysctl", "sysctl", errno, OWN_WRITE, format!("write {path}"))
}

/// A non-blocking TCP connect with a timeout; `ETIMEDOUT` when nothing answered.
fn connect_errno(addr: SocketAddr, timeout: Duration) -> i32 {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let socket = match rustix::net::socket_with(family, SocketType::STREAM, flags, None) {
        Ok(socket) => socket,
        Err(e) => return e.raw_os_error(),
    };
    match rustix::net::connect(&socket, &addr) {
        Ok(()) => return 0,
        Err(Errno::INPROGRESS) => {}
        Err(e) => return e.raw_os_error(),
    }
    let ts = rustix::fs::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: timeout.subsec_nanos().into(),
    };
    let mut fds = [rustix::event::PollFd::new(&socket, rustix::event::PollFlags::OUT)];
    match rustix::event::poll(&mut fds, Some(&ts)) {
        Ok(0) => libc::ETIMEDOUT,
        Ok(_) => match rustix::net::sockopt::socket_error(socket.as_fd()) {
            Ok(Ok(())) => 0,
            Ok(Err(e)) | Err(e) => e.raw_os_error(),
        },
        Err(e) => e.raw_os_error(),
    }
}

/// How long a connect attempt may wait for an answer (a dropping firewall never answers).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The inode of one of this process's namespaces.
fn own_ns(kind: &str) -> Result<u64, i32> {
    rustix::fs::stat(format!("/proc/self/ns/{kind}").as_str())
        .map(|st| st.st_ino)
        .map_err(|e| e.raw_os_error())
}

fn structural(check: String, passed: bool, detail: String) -> Check {
    Check {
        check,
        boundary: "namespaces".to_owned(),
        passed,
        errno: 0,
        held_by: if passed { vec![NAMESPACES.to_owned()] } else { Vec::new() },
        detail,
    }
}

/// What confines this process, to drop candidate mechanisms that cannot have answered.
struct Confinement {
    /// Effective capabilities.
    caps: u64,
    /// A seccomp filter is installed.
    seccomp: bool,
}

impl Confinement {
    fn read() -> Self {
        let caps = rustix::thread::capabilities(None).map_or(0, |sets| sets.effective.bits());
        let seccomp = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status.lines().find_map(|l| l.strip_prefix("Seccomp:").map(|v| v.trim() != "0"))
            })
            // Unknown: keep seccomp among the candidates.
            .unwrap_or(true);
        Self { caps, seccomp }
    }

    /// The capability allow-list cannot have refused what needs a capability this process
    /// holds, nor seccomp without a filter.
    fn refine(&self, mut check: Check) -> Check {
        let held = needed_capability(&check.check).is_some_and(|cap| self.caps & (1 << cap) != 0);
        let answered = |m: &str| match m {
            CAPABILITIES => !held,
            SECCOMP => self.seccomp,
            _ => true,
        };
        check.held_by.retain(|m| answered(m));
        check
    }
}

/// The capability the attack of `check` needs (`linux/capability.h` numbers).
fn needed_capability(check: &str) -> Option<u8> {
    match check {
        "mount" | "unshare_mount" | "setns" => Some(21), // CAP_SYS_ADMIN
        "load_module" => Some(16),                       // CAP_SYS_MODULE
        "kexec" | "reboot" => Some(22),                  // CAP_SYS_BOOT
        "open_device" => Some(27),                       // CAP_MKNOD
        _ if check.starts_with("ptrace_") => Some(19),   // CAP_SYS_PTRACE
        _ => None,
    }
}

/// Runs every check against `targets`.
pub fn run_checks(targets: &Targets) -> Vec<Check> {
    let confinement = Confinement::read();
    attack(targets).into_iter().map(|check| confinement.refine(check)).collect()
}

fn attack(targets: &Targets) -> Vec<Check> {
    let mut out = Vec::new();
    for (label, pid) in &targets.pids {
        let planted = (label == "host").then_some(targets.host_file.as_deref()).flatten();
        process_checks(label, *pid, planted, &mut out);
    }
    if let Some(file) = &targets.host_file {
        let open = open_errno(file, OFlags::RDONLY);
        out.push(judge("files_host_path", "files", open, FOREIGN_FILE, format!("open {file}")));
    }
    if let Some(file) = &targets.host_exec {
        out.push(exec_check("exec_host_path", file));
    }
    for (label, path) in &targets.cgroups {
        // Opening for writing is the crossing: the write itself would move the probe.
        let open = open_errno(path, OFlags::WRONLY);
        let rules: Rules = &[
            (Errno::NOENT, &[NAMESPACES]),
            (Errno::ROFS, &[READONLY_MOUNTS]),
            (Errno::ACCESS, &[LANDLOCK]),
            (Errno::PERM, &[LSM]),
        ];
        let name = format!("cgroup_procs_{label}");
        out.push(judge(&name, "cgroups", open, rules, format!("open {path} for writing")));
    }

    let create = OFlags::CREATE | OFlags::WRONLY | OFlags::EXCL;
    for (check, file) in [("write_rootfs", "/.rauha-probe"), ("write_dev", "/dev/.rauha-probe")] {
        let errno = open_errno(file, create);
        if errno == 0 {
            let _ = rustix::fs::unlink(file);
        }
        out.push(judge(check, "files", errno, OWN_WRITE, format!("create {file}")));
    }
    out.push(write_sysctl());
    out.push(open_device(&targets.writable));

    // Re-applies read-only to the already read-only root: a no-op if it got through.
    let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
    // SAFETY: a valid C string target, null source/type/data as a bind remount takes them.
    let mount = last_errno(unsafe {
        libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), flags, std::ptr::null())
    } as libc::c_long);
    out.push(judge("mount", "mounts", mount, PRIVILEGED, "remount / read-only".into()));
    // SAFETY: a null image of length 0: refused (EFAULT/EINVAL/ENOEXEC) if allowed at all.
    let module = last_errno(unsafe {
        libc::syscall(libc::SYS_init_module, std::ptr::null::<u8>(), 0, c"".as_ptr())
    });
    let rules: Rules = &[(Errno::PERM, &[SECCOMP, CAPABILITIES]), (Errno::NOSYS, &[KERNEL])];
    out.push(judge("load_module", "kernel", module, rules, "init_module(empty image)".into()));
    // SAFETY: no segments and unknown flags: EINVAL if allowed, nothing is loaded.
    let kexec = last_errno(unsafe {
        libc::syscall(libc::SYS_kexec_load, 0, 0, std::ptr::null::<u8>(), 0xdead_0000u64)
    });
    out.push(judge("kexec", "kernel", kexec, rules, "kexec_load(no segments)".into()));
    // SAFETY: wrong magic numbers: EINVAL if allowed, never reboots.
    let reboot = last_errno(unsafe { libc::syscall(libc::SYS_reboot, 0, 0, 0, 0) });
    out.push(judge("reboot", "kernel", reboot, PRIVILEGED, "reboot(wrong magic)".into()));
    let unshare = in_child(unshare_mount);
    out.push(judge("unshare_mount", "namespaces", unshare, PRIVILEGED, "unshare(NEWNS)".into()));
    // Creating a user namespace needs no capability: only the seccomp profile refuses it.
    let rules: Rules = &[(Errno::PERM, &[SECCOMP])];
    let unshare = in_child(unshare_user);
    out.push(judge("unshare_user", "namespaces", unshare, rules, "unshare(NEWUSER)".into()));
    let setns = in_child(setns_net);
    out.push(judge("setns", "namespaces", setns, PRIVILEGED, "setns(own netns)".into()));

    for (label, addr) in &targets.connect {
        let errno = connect_errno(*addr, CONNECT_TIMEOUT);
        let rules: Rules = &[
            (Errno::PERM, &[CGROUP_BPF, LSM]),
            (Errno::NETUNREACH, &[NAMESPACES]),
            (Errno::HOSTUNREACH, &[NFTABLES]),
            (Errno::TIMEDOUT, &[NFTABLES]),
        ];
        let mut check =
            judge(&format!("connect_{label}"), "network", errno, rules, format!("connect {addr}"));
        if errno == libc::ECONNREFUSED {
            check.detail = format!(
                "connect {addr}: {}: the target's stack answered, the packet crossed",
                errno_text(errno)
            );
        }
        out.push(check);
    }

    for (kind, host) in &targets.host_ns {
        let check = format!("namespace_{kind}");
        out.push(match own_ns(kind) {
            Ok(own) => {
                structural(check, own != *host, format!("own {kind} inode {own}, host {host}"))
            }
            Err(e) => {
                structural(check, false, format!("stat /proc/self/ns/{kind}: {}", errno_text(e)))
            }
        });
    }
    if let Some(zone) = targets.zone_netns {
        let check = "namespace_net_zone".to_owned();
        out.push(match own_ns("net") {
            Ok(own) => structural(check, own == zone, format!("net inode {own}, zone's {zone}")),
            Err(e) => {
                structural(check, false, format!("stat /proc/self/ns/net: {}", errno_text(e)))
            }
        });
    }
    out
}

/// `--hold`: wait until stdin closes (the daemon ends the hold by closing it or killing us).
fn hold() -> std::process::ExitCode {
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin();
    while let Ok(n) = stdin.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
    std::process::ExitCode::SUCCESS
}

/// Entry point of the probe role: prints one JSON line per check; exit code 0 if all passed,
/// 1 if some did not, 2 on bad arguments.
pub fn main(args: &[String]) -> std::process::ExitCode {
    if args.len() == 1 && args[0] == "--hold" {
        return hold();
    }
    let targets = match Targets::parse(args) {
        Ok(targets) => targets,
        Err(error) => {
            eprintln!("usage: rauha probe [--hold] [--foreign-pid LABEL:PID]... ({error})");
            return std::process::ExitCode::from(2);
        }
    };
    let checks = run_checks(&targets);
    for c in &checks {
        match serde_json::to_string(c) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("rauha probe: encode {}: {e}", c.check),
        }
    }
    if checks.iter().all(|c| c.passed) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_map_to_the_mechanisms_that_answer_with_them() {
        let c = judge("mount", "mounts", libc::EPERM, PRIVILEGED, "x".into());
        assert!(c.passed);
        assert_eq!(c.held_by, [SECCOMP, CAPABILITIES]);
        assert_eq!(c.detail, "x: EPERM (operation not permitted)");
        let c = judge("see_host", "visibility", 0, HIDDEN, "stat".into());
        assert!(!c.passed && c.held_by.is_empty());
        assert!(c.detail.contains("crossed"), "{}", c.detail);
        assert!(judge("s", "b", libc::ESRCH, HIDDEN, "x".into()).passed);
        let c = judge("w", "files", libc::EINVAL, OWN_WRITE, "x".into());
        assert!(!c.passed);
        assert!(c.detail.contains("inconclusive"), "{}", c.detail);
    }

    #[test]
    fn held_capabilities_and_a_missing_filter_are_not_credited() {
        let mount = || judge("mount", "mounts", libc::EPERM, PRIVILEGED, "x".into());
        let free = Confinement { caps: 1 << 21, seccomp: true };
        assert_eq!(free.refine(mount()).held_by, [SECCOMP]);
        let unfiltered = Confinement { caps: 0, seccomp: false };
        assert_eq!(unfiltered.refine(mount()).held_by, [CAPABILITIES]);
        let signal = judge("signal_host", "signals", libc::ESRCH, HIDDEN, "x".into());
        assert_eq!(free.refine(signal).held_by, [NAMESPACES]);
    }

    #[test]
    fn targets_round_trip_through_their_flags() {
        let t = Targets {
            pids: vec![("host".into(), 12), ("zone".into(), 34)],
            host_file: Some("/x/secret".into()),
            host_exec: Some("/x/exec".into()),
            cgroups: vec![("host".into(), "/sys/fs/cgroup/a:b/cgroup.procs".into())],
            connect: vec![("zone".into(), "10.89.0.3:9".parse().unwrap())],
            writable: vec!["/tmp".into()],
            host_ns: vec![("mnt".into(), 4026531841)],
            zone_netns: Some(4026532000),
        };
        assert_eq!(Targets::parse(&t.to_args()).unwrap(), t);
        let bad = |args: &[&str]| {
            Targets::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap_err()
        };
        assert!(bad(&["--foreign-pid", "12"]).contains("LABEL:VALUE"));
        assert!(bad(&["--foreign-pid", "Host:12"]).contains("lowercase"));
        assert!(bad(&["--host-ns", "time:1"]).contains("unknown namespace kind"));
        assert!(bad(&["--frob", "1"]).contains("unknown flag"));
        assert!(bad(&["--writable"]).contains("needs a value"));
    }

    #[test]
    fn exec_attempts_tell_denied_from_crossed_and_run_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("ran");
        // A script that leaves a mark if anything of it (or of its interpreter) gets to run.
        let script = dir.path().join("run-me");
        std::fs::write(&script, format!("#!/bin/sh\ntouch {}\n", mark.display())).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "not executable").unwrap();
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();

        // Not /proc/self/exe: were the filter missing, the test binary would run every test again.
        assert_eq!(exec_errno(&path(&script)), Ok(0), "executable: crossed");
        assert!(!mark.exists(), "the exec'd program ran");
        // Refused before any argument is read: on kernels before 6.8 the old invalid-argv
        // attempt answered EFAULT ("crossed") for all of these.
        assert_eq!(exec_errno("/nonexistent/rauha-probe"), Ok(libc::ENOENT));
        assert_eq!(exec_errno(&path(&plain)), Ok(libc::EACCES));
        assert_eq!(exec_errno(&path(dir.path())), Ok(libc::EACCES));
        let check = exec_check("exec_host_path", "/nonexistent/rauha-probe");
        assert!(check.passed && check.held_by == [NAMESPACES], "{check:?}");
    }
}
