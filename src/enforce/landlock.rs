//! Landlock layer: inside the container's mount namespace, after `pivot_root`, the process
//! may read and execute anything in its rootfs but write only under the policy's
//! `writable_paths`, `/dev/shm` and a few device nodes; with ABI 6 it also may not signal, or
//! connect to abstract Unix sockets of, processes outside its own Landlock domain.
//!
//! **Rights.** The ruleset handles every filesystem right of the ABI in use, and grants:
//! - `/` (the rootfs): `EXECUTE | READ_FILE | READ_DIR`;
//! - each writable path and `/dev/shm`: every right (create, remove, rename across
//!   directories with `REFER`, truncate, device ioctls) except creating character and block
//!   device nodes: with `CAP_MKNOD` (in Docker's default set) a container could otherwise
//!   `mknod` a host disk in `/tmp` and open it; the only device nodes it may use are the ones
//!   below, so this layer holds the device boundary next to the cgroup device allow-list;
//! - `/dev/{null,zero,full,random,urandom,tty,ptmx,pts}` and `[devices].allowed`:
//!   `READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV` (a shell's `> /dev/null` opens with
//!   `O_TRUNC`; ttys need ioctls); `/dev/ptmx` resolves to `/dev/pts/ptmx`;
//! - `/proc`: nothing beyond the read right of `/`. Reopening `/proc/self/fd/N` still works:
//!   Landlock checks the target (pipes and sockets are not path-restricted, files are checked
//!   against their own rules). Writes to `/proc/self/*` (e.g. `oom_score_adj`) are denied:
//!   a rule on `/proc` would also open `/proc/sys` and friends, and rules cannot single out
//!   "self" because `/proc/PID` inodes are per process.
//!
//! A rule on a non-directory only takes file rights, so the child checks each path with
//! `fstat` and drops directory-only rights for files. The standard device nodes, `/dev/shm`
//! and policy devices are optional (skipped when absent); the rootfs and writable paths must
//! exist.
//!
//! **ABI.** The best ABI the kernel offers is used, capped at 7 (the newest this code was
//! tested with, so a newer kernel never adds restrictions nobody vetted, as the `landlock`
//! crate advises); missing features degrade with a report ([`LandlockStatus::unsupported`]):
//! ABI 1 denies every cross-directory rename/link, `TRUNCATE` needs 3, `IOCTL_DEV` needs 5,
//! scoping needs 6. Without Landlock (ABI 0) nothing is applied and the status says so.
//! Network rules (ABI 4 TCP bind/connect) are not used here: netns, nftables and
//! cgroup-BPF own the network boundary.
//!
//! **Fork safety.** [`PreparedLandlock::new`] (shim, before clone) allocates the path strings
//! and access masks; [`PreparedLandlock::apply`] (child) makes raw syscalls on them only:
//! `landlock_create_ruleset`, per rule `open(O_PATH)` + `fstat` + `landlock_add_rule`,
//! `prctl(PR_SET_NO_NEW_PRIVS)`, `landlock_restrict_self`.
//!
//! **Order.** Apply after every mount and `pivot_root` (a Landlock-restricted process may not
//! change its mount topology) and before seccomp, which must come last, right before
//! `execve` (see `enforce::seccomp`).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use landlock::{ABI, Access, AccessFs, Scope};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::enforce::child::{ChildFailure, ChildStep, OsError};
use crate::enforce::seccomp::last_errno;

/// Errors of preparing and applying the Landlock layer.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    /// The ABI version probe failed unexpectedly.
    #[error("probe landlock abi: {0}")]
    Probe(#[source] OsError),
    /// A policy path is not absolute.
    #[error("landlock rule for {0:?}: not an absolute path")]
    NotAbsolute(String),
    /// A path contains a NUL byte.
    #[error("landlock rule for {0:?}: path contains a NUL byte")]
    Nul(PathBuf),
    /// Child: `landlock_create_ruleset` failed.
    #[error("create landlock ruleset: {0}")]
    CreateRuleset(#[source] OsError),
    /// Child: a rule's path could not be opened.
    #[error("landlock rule for {path}: open: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: OsError,
    },
    /// Child: a rule's path could not be examined.
    #[error("landlock rule for {path}: stat: {source}")]
    Stat {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: OsError,
    },
    /// Child: `landlock_add_rule` failed.
    #[error("landlock rule for {path}: add rule: {source}")]
    AddRule {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: OsError,
    },
    /// Child: `prctl(PR_SET_NO_NEW_PRIVS)` failed.
    #[error("set no_new_privs for landlock: {0}")]
    NoNewPrivs(#[source] OsError),
    /// Child: `landlock_restrict_self` failed.
    #[error("restrict process with landlock ruleset: {0}")]
    Restrict(#[source] OsError),
}

/// Newest ABI this module was tested with; a newer kernel is used at this level.
pub const TESTED_ABI: u32 = 7;

/// Device nodes every container may read and write (beyond the policy's `[devices]`).
pub const STANDARD_DEVICES: [&str; 8] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
];

/// The container's POSIX shared memory tmpfs, writable as in Docker.
pub const SHM_DIR: &str = "/dev/shm";

const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
const LANDLOCK_RULE_PATH_BENEATH: u32 = 1;

/// `struct landlock_ruleset_attr` (ABI 6 layout; older kernels accept the zero tail).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `struct landlock_path_beneath_attr` (packed in the UAPI).
#[repr(C, packed)]
#[derive(Debug, Clone, Copy)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// Landlock ABI version the kernel offers: 0 when Landlock is not built in or not enabled.
pub fn probe_abi() -> Result<u32, LandlockError> {
    // SAFETY: the version query takes a null attribute pointer and size 0 by definition and
    // touches no memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if rc >= 0 {
        return Ok(u32::try_from(rc).unwrap_or(0));
    }
    match last_errno() {
        // ENOSYS: not built in; EOPNOTSUPP: built in but disabled at boot.
        Errno::NOSYS | Errno::OPNOTSUPP => Ok(0),
        e => Err(LandlockError::Probe(OsError(e))),
    }
}

/// What the layer enforces on this kernel, for `rauha info` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandlockStatus {
    /// ABI the kernel offers (0 = none).
    pub kernel_abi: u32,
    /// ABI in use (kernel ABI capped at [`TESTED_ABI`]; 0 = layer inactive).
    pub abi: u32,
    /// Handled filesystem rights (`LANDLOCK_ACCESS_FS_*` bits).
    pub handled_fs: u64,
    /// Scopes (`LANDLOCK_SCOPE_*` bits).
    pub scoped: u64,
    /// Features of this layer the kernel lacks, e.g. `signal and abstract unix socket scoping (abi 6)`.
    pub unsupported: Vec<&'static str>,
}

/// One rule: a path (absolute, host view at apply time) and the rights beneath it.
#[derive(Debug)]
struct Rule {
    path: CString,
    access: u64,
    /// `access` restricted to rights valid on a non-directory.
    file_access: u64,
    required: bool,
}

/// The Landlock ruleset of one container, prepared before clone and applied in the child.
#[derive(Debug)]
pub struct PreparedLandlock {
    attr: RulesetAttr,
    rules: Vec<Rule>,
    status: LandlockStatus,
    enabled: bool,
}

fn abi_of(version: u32) -> ABI {
    ABI::from(i32::try_from(version).unwrap_or(i32::MAX))
}

impl PreparedLandlock {
    /// Prepares the ruleset for ABI `kernel_abi` (from [`probe_abi`]). `root` is the rootfs as
    /// seen at apply time (`/` after `pivot_root`); `writable_paths` and `devices` are
    /// container paths under it.
    pub fn new<S: AsRef<str>>(
        kernel_abi: u32,
        root: &Path,
        writable_paths: &[S],
        devices: &[S],
    ) -> Result<PreparedLandlock, LandlockError> {
        let abi_num = kernel_abi.min(TESTED_ABI);
        let abi = abi_of(abi_num);
        let handled = AccessFs::from_all(abi).bits();
        let scoped = Scope::from_all(abi).bits();
        let file_rights = AccessFs::from_file(abi).bits();
        let read_exec =
            (AccessFs::Execute | AccessFs::ReadFile | AccessFs::ReadDir).bits() & handled;
        let device =
            (AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev)
                .bits()
                & handled;

        let writable = handled & !(AccessFs::MakeChar | AccessFs::MakeBlock).bits();

        let mut unsupported = Vec::new();
        for (need, what) in [
            (1, "filesystem access control (abi 1)"),
            (2, "rename and link across directories (abi 2)"),
            (3, "truncate control (abi 3)"),
            (5, "device ioctl control (abi 5)"),
            (6, "signal and abstract unix socket scoping (abi 6)"),
        ] {
            if abi_num < need {
                unsupported.push(what);
            }
        }
        let status =
            LandlockStatus { kernel_abi, abi: abi_num, handled_fs: handled, scoped, unsupported };

        let mut rules = Vec::new();
        let mut push = |container_path: &str, access: u64, required: bool| {
            let host = join(root, container_path)?;
            let path = CString::new(host.as_os_str().as_bytes())
                .map_err(|_| LandlockError::Nul(host.clone()))?;
            rules.push(Rule { path, access, file_access: access & file_rights, required });
            Ok::<(), LandlockError>(())
        };
        push("/", read_exec, true)?;
        for p in writable_paths {
            push(p.as_ref(), writable, true)?;
        }
        push(SHM_DIR, writable, false)?;
        for d in STANDARD_DEVICES {
            push(d, device, false)?;
        }
        for d in devices {
            push(d.as_ref(), device, false)?;
        }

        Ok(PreparedLandlock {
            attr: RulesetAttr { handled_access_fs: handled, handled_access_net: 0, scoped },
            rules,
            status,
            enabled: abi_num > 0,
        })
    }

    /// A ruleset that applies nothing: the test-only "Landlock layer off" switch.
    pub fn disabled() -> PreparedLandlock {
        PreparedLandlock {
            attr: RulesetAttr::default(),
            rules: Vec::new(),
            status: LandlockStatus {
                kernel_abi: 0,
                abi: 0,
                handled_fs: 0,
                scoped: 0,
                unsupported: Vec::new(),
            },
            enabled: false,
        }
    }

    /// What this ruleset enforces on this kernel.
    pub fn status(&self) -> &LandlockStatus {
        &self.status
    }

    /// Whether [`apply`](Self::apply) restricts anything.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Restricts the calling thread. Child-side: raw syscalls on prepared memory only.
    pub fn apply(&self) -> Result<(), ChildFailure> {
        if !self.enabled {
            return Ok(());
        }
        // SAFETY: `attr` is a valid, initialised landlock_ruleset_attr of the given size that
        // lives for the call; the kernel only reads it.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &self.attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            )
        };
        if fd < 0 {
            return Err(ChildFailure::new(ChildStep::LandlockCreateRuleset, 0, last_errno()));
        }
        // SAFETY: on success the syscall returned a new fd that nothing else owns; OwnedFd
        // closes it on every return path (close is async-signal-safe, no allocation).
        let ruleset = unsafe { OwnedFd::from_raw_fd(fd as i32) };

        for (i, rule) in self.rules.iter().enumerate() {
            let index = i as u32;
            let fail = |step, errno| ChildFailure::new(step, index, errno);
            let file = match rustix::fs::open(
                rule.path.as_c_str(),
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(f) => f,
                Err(Errno::NOENT) if !rule.required => continue,
                Err(e) => return Err(fail(ChildStep::LandlockOpen, e)),
            };
            let access = if rule.access == rule.file_access {
                rule.access
            } else {
                let st = rustix::fs::fstat(&file).map_err(|e| fail(ChildStep::LandlockStat, e))?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    rule.access
                } else {
                    rule.file_access
                }
            };
            if access == 0 {
                continue;
            }
            let beneath = PathBeneathAttr { allowed_access: access, parent_fd: file.as_raw_fd() };
            // SAFETY: `ruleset` and `file` are open fds owned here; `beneath` is a valid packed
            // landlock_path_beneath_attr on the stack that the kernel only reads.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_landlock_add_rule,
                    ruleset.as_raw_fd(),
                    LANDLOCK_RULE_PATH_BENEATH,
                    &beneath as *const PathBeneathAttr,
                    0u32,
                )
            };
            if rc != 0 {
                return Err(fail(ChildStep::LandlockAddRule, last_errno()));
            }
        }

        rustix::thread::set_no_new_privs(true)
            .map_err(|e| ChildFailure::new(ChildStep::LandlockNoNewPrivs, 0, e))?;
        // SAFETY: `ruleset` is an open Landlock ruleset fd; flags 0; no memory is passed.
        let rc =
            unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) };
        if rc != 0 {
            return Err(ChildFailure::new(ChildStep::LandlockRestrict, 0, last_errno()));
        }
        Ok(())
    }

    /// The typed error for a failure the child reported; `None` for a non-Landlock step.
    pub fn error(&self, failure: ChildFailure) -> Option<LandlockError> {
        let source = OsError(failure.errno);
        let path = || {
            self.rules
                .get(failure.index as usize)
                .map(|r| PathBuf::from(std::ffi::OsStr::from_bytes(r.path.as_bytes())))
                .unwrap_or_default()
        };
        Some(match failure.step {
            ChildStep::LandlockCreateRuleset => LandlockError::CreateRuleset(source),
            ChildStep::LandlockOpen => LandlockError::Open { path: path(), source },
            ChildStep::LandlockStat => LandlockError::Stat { path: path(), source },
            ChildStep::LandlockAddRule => LandlockError::AddRule { path: path(), source },
            ChildStep::LandlockNoNewPrivs => LandlockError::NoNewPrivs(source),
            ChildStep::LandlockRestrict => LandlockError::Restrict(source),
            ChildStep::SeccompNoNewPrivs | ChildStep::SeccompInstall => return None,
        })
    }
}

/// `root` joined with the absolute container path `p`.
fn join(root: &Path, p: &str) -> Result<PathBuf, LandlockError> {
    let rel = p.strip_prefix('/').ok_or_else(|| LandlockError::NotAbsolute(p.to_owned()))?;
    Ok(if rel.is_empty() { root.to_path_buf() } else { root.join(rel) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ_EXEC: u64 = 1 | (1 << 2) | (1 << 3);

    #[test]
    fn rules_cover_root_writable_and_devices() {
        let p = PreparedLandlock::new(7, Path::new("/"), &["/tmp", "/var/log"], &["/dev/fuse"])
            .unwrap();
        let paths: Vec<_> = p.rules.iter().map(|r| r.path.to_str().unwrap()).collect();
        assert_eq!(paths[..4], ["/", "/tmp", "/var/log", "/dev/shm"]);
        assert!(paths.contains(&"/dev/null") && paths.contains(&"/dev/fuse"));
        assert_eq!(p.rules[0].access, READ_EXEC);
        let make_dev = (AccessFs::MakeChar | AccessFs::MakeBlock).bits();
        assert_eq!(p.rules[1].access, p.attr.handled_access_fs & !make_dev);
        assert_eq!(p.attr.scoped, 0b11);
        assert!(p.status().unsupported.is_empty());
        // Device rights are file rights only.
        let null = p.rules.iter().find(|r| r.path.to_str() == Ok("/dev/null")).unwrap();
        assert_eq!(null.access, null.file_access);
    }

    #[test]
    fn root_prefix_is_joined() {
        let p = PreparedLandlock::new(7, Path::new("/r"), &["/w"], &[]).unwrap();
        assert_eq!(p.rules[0].path.to_str(), Ok("/r"));
        assert_eq!(p.rules[1].path.to_str(), Ok("/r/w"));
    }

    #[test]
    fn old_abi_degrades_and_reports() {
        let p = PreparedLandlock::new(3, Path::new("/"), &["/tmp"], &[]).unwrap();
        assert_eq!(p.attr.scoped, 0);
        assert_eq!(
            p.status().unsupported,
            ["device ioctl control (abi 5)", "signal and abstract unix socket scoping (abi 6)"]
        );
        let none = PreparedLandlock::new(0, Path::new("/"), &["/tmp"], &[]).unwrap();
        assert!(!none.is_enabled());
        assert!(none.apply().is_ok());
        // A newer kernel is used at the tested level.
        let new = PreparedLandlock::new(99, Path::new("/"), &["/tmp"], &[]).unwrap();
        assert_eq!(new.status().abi, TESTED_ABI);
    }

    #[test]
    fn relative_path_is_an_error() {
        let e = PreparedLandlock::new(7, Path::new("/"), &["tmp"], &[]).unwrap_err();
        assert_eq!(e.to_string(), "landlock rule for \"tmp\": not an absolute path");
    }

    #[test]
    fn child_failure_names_the_path() {
        let p = PreparedLandlock::new(7, Path::new("/"), &["/data"], &[]).unwrap();
        let e = p.error(ChildFailure::new(ChildStep::LandlockOpen, 1, Errno::NOENT)).unwrap();
        assert_eq!(e.to_string(), "landlock rule for /data: open: no such file or directory");
    }
}
