//! The probe role (`rauha probe [--foreign-pid PID]...`): attack probes run from inside a zone
//! for `rauha zone verify` (DESIGN.md §5, issue 6 item 3). Each check tries to cross one boundary
//! with a raw syscall and reports `passed` only if the kernel denied it; one JSON line per check
//! on stdout. It needs nothing from the container image, so it can run from a memfd.
//!
//! Every probe is harmless if it got through: invalid arguments make the kernel refuse the
//! call after its permission checks (`EINVAL`/`EFAULT`), created files are removed, and the
//! namespace probes run in a forked child that exits at once.

use rustix::io::Errno;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// Short name, e.g. `mount`.
    pub check: &'static str,
    /// The boundary it attacks, e.g. `mounts`.
    pub boundary: &'static str,
    /// Whether the attack was denied.
    pub passed: bool,
    /// The errno the attack got (`0` = it succeeded).
    pub errno: i32,
    /// What the errno points at: the mechanism that held, or why it did not.
    pub held_by: &'static str,
}

/// What an errno from an attack says about who stopped it.
fn held_by(errno: i32, hidden_ok: bool) -> (bool, &'static str) {
    if errno == 0 {
        return (false, "nothing: the attack succeeded");
    }
    if !(1..4096).contains(&errno) {
        return (false, "inconclusive: failed for another reason");
    }
    match Errno::from_raw_os_error(errno) {
        Errno::PERM => (true, "seccomp or capabilities (EPERM)"),
        Errno::ACCESS => (true, "Landlock or permissions (EACCES)"),
        Errno::ROFS => (true, "read-only mount (EROFS)"),
        Errno::NOSYS => (true, "seccomp or kernel without the feature (ENOSYS)"),
        Errno::NOENT | Errno::SRCH if hidden_ok => (true, "namespace hides the target"),
        _ => (false, "inconclusive: failed for another reason"),
    }
}

fn errno_of(rc: libc::c_long) -> i32 {
    if rc >= 0 { 0 } else { std::io::Error::last_os_error().raw_os_error().unwrap_or(0) }
}

fn check(check: &'static str, boundary: &'static str, errno: i32, hidden_ok: bool) -> Check {
    let (passed, held_by) = held_by(errno, hidden_ok);
    Check { check, boundary, passed, errno, held_by }
}

fn open_errno(path: &str, flags: rustix::fs::OFlags) -> i32 {
    match rustix::fs::open(path, flags | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::from(0o600))
    {
        Ok(_) => 0,
        Err(e) => e.raw_os_error(),
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
        return errno_of(-1);
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { libc::EINTR }
}

/// Runs every check; `foreign` are host pids of processes outside this zone (another zone's,
/// the host's) that must be invisible.
pub fn run_checks(foreign: &[u32]) -> Vec<Check> {
    let mut out = Vec::new();
    for &pid in foreign {
        // SAFETY: signal 0 only checks existence and permission.
        let kill = errno_of(unsafe { libc::kill(pid as i32, 0) } as libc::c_long);
        out.push(check("signal_foreign", "signals", kill, true));
        // SAFETY: PTRACE_ATTACH on a pid; if it succeeded we detach at once below.
        let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid as libc::pid_t, 0, 0) };
        let attach = errno_of(rc);
        if attach == 0 {
            // SAFETY: detaching the tracee we just attached.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, pid as libc::pid_t, 0, 0) };
        }
        out.push(check("ptrace_foreign", "ptrace", attach, true));
        let root = open_errno(&format!("/proc/{pid}/root/"), rustix::fs::OFlags::PATH);
        out.push(check("files_foreign_root", "files", root, true));
    }
    let create = open_errno(
        "/etc/.rauha-probe",
        rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::EXCL,
    );
    if create == 0 {
        let _ = rustix::fs::unlink("/etc/.rauha-probe");
    }
    out.push(check("write_rootfs", "files", create, false));
    let sysctl = open_errno("/proc/sys/vm/overcommit_ratio", rustix::fs::OFlags::WRONLY);
    out.push(check("write_sysctl", "sysctl", sysctl, false));
    let node = "/tmp/.rauha-probe-disk";
    let mknod = match rustix::fs::mknodat(
        rustix::fs::CWD,
        node,
        rustix::fs::FileType::BlockDevice,
        rustix::fs::Mode::from(0o600),
        rustix::fs::makedev(8, 0),
    ) {
        Ok(()) => {
            let _ = rustix::fs::unlink(node);
            0
        }
        Err(e) => e.raw_os_error(),
    };
    out.push(check("mknod_device", "devices", mknod, false));
    // Re-applies read-only to the already read-only root: a no-op if it got through.
    let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
    // SAFETY: a valid C string target, null source/type/data as a bind remount takes them.
    let mount = errno_of(unsafe {
        libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), flags, std::ptr::null())
    } as libc::c_long);
    out.push(check("mount", "mounts", mount, false));
    // SAFETY: a null image of length 0: refused (EFAULT/EINVAL/ENOEXEC) if allowed at all.
    let module = errno_of(unsafe {
        libc::syscall(libc::SYS_init_module, std::ptr::null::<u8>(), 0, c"".as_ptr())
    });
    out.push(check("load_module", "kernel", module, false));
    // SAFETY: no segments and unknown flags: EINVAL if allowed, nothing is loaded.
    let kexec = errno_of(unsafe {
        libc::syscall(libc::SYS_kexec_load, 0, 0, std::ptr::null::<u8>(), 0xdead_0000u64)
    });
    out.push(check("kexec", "kernel", kexec, false));
    // SAFETY: wrong magic numbers: EINVAL if allowed, never reboots.
    let reboot = errno_of(unsafe { libc::syscall(libc::SYS_reboot, 0, 0, 0, 0) });
    out.push(check("reboot", "kernel", reboot, false));
    out.push(check("unshare_mount", "namespaces", in_child(unshare_mount), false));
    out.push(check("unshare_user", "namespaces", in_child(unshare_user), false));
    out.push(check("setns", "namespaces", in_child(setns_net), false));
    out
}

fn unshare_mount() -> i32 {
    // SAFETY: runs in the forked child of `in_child`, which exits right after.
    errno_of(unsafe { libc::unshare(libc::CLONE_NEWNS) } as libc::c_long)
}

fn unshare_user() -> i32 {
    // SAFETY: runs in the forked child of `in_child`, which exits right after.
    errno_of(unsafe { libc::unshare(libc::CLONE_NEWUSER) } as libc::c_long)
}

fn setns_net() -> i32 {
    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC;
    match rustix::fs::open("/proc/self/ns/net", flags, rustix::fs::Mode::empty()) {
        // Re-entering its own namespace: harmless, and still needs CAP_SYS_ADMIN.
        // SAFETY: a valid nsfs fd; runs in the forked child of `in_child`.
        Ok(fd) => errno_of(unsafe {
            libc::setns(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::CLONE_NEWNET)
        } as libc::c_long),
        Err(e) => e.raw_os_error(),
    }
}

/// Entry point of the probe role: prints one JSON line per check; exit code 0 if all passed.
pub fn main(args: &[String]) -> std::process::ExitCode {
    let mut foreign = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match (arg.as_str(), it.next().and_then(|v| v.parse().ok())) {
            ("--foreign-pid", Some(pid)) => foreign.push(pid),
            _ => {
                eprintln!("usage: rauha probe [--foreign-pid PID]...");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let checks = run_checks(&foreign);
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
    fn errnos_map_to_the_layer_that_held() {
        assert_eq!(held_by(libc::EPERM, false), (true, "seccomp or capabilities (EPERM)"));
        assert!(!held_by(0, true).0);
        assert!(held_by(libc::ESRCH, true).0);
        assert!(!held_by(libc::ESRCH, false).0);
        assert!(!held_by(libc::EINVAL, false).0);
    }
}
