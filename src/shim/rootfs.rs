//! The container's root filesystem as a plan of mount steps, built before fork and executed by
//! the child with raw syscalls only.
//!
//! Building the plan is pure (unit-tested without root); executing it is [`run_op`], which the
//! child calls between fork and exec, so it touches only the prepared `CString`s.
//!
//! The overlay is mounted inside the container's own mount namespace and `pivot_root` happens
//! right after, so every later step resolves paths (and image-controlled symlinks) inside the
//! container root, never on the host. Host objects needed after the pivot (hosts/resolv files,
//! host `/sys` for the fallback) are cloned by the child before the pivot into detached mount
//! trees (`open_tree(OPEN_TREE_CLONE)`) on fd numbers the parent reserved, and attached after
//! it with `move_mount`. A plain bind would not do: after the old root is detached, its mounts
//! belong to no namespace and the kernel refuses to bind from them (EINVAL).
//! Nothing is mounted in the shim's namespace: when the container's last process exits the
//! kernel tears every mount down, so delete has no mounts to clean up.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::{Component, Path, PathBuf};

use libc::c_ulong;
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MoveMountFlags, OpenTreeFlags, UnmountFlags};

use crate::shim::protocol::ContainerSpec;

/// Errors found while planning the root filesystem (before any process exists).
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A path in the spec is relative or climbs with `..`.
    #[error("{what} {path}: must be absolute without '..'")]
    BadPath {
        /// Which field.
        what: &'static str,
        /// The offending path.
        path: PathBuf,
    },
    /// A path contains a NUL byte.
    #[error("{what} {path}: contains a NUL byte")]
    Nul {
        /// Which field.
        what: &'static str,
        /// The offending path.
        path: PathBuf,
    },
    /// An overlay directory contains a character overlayfs options cannot carry.
    #[error("overlay directory {path}: ',' ':' and '\\' are not supported in layer paths")]
    OverlayChar {
        /// The offending path.
        path: PathBuf,
    },
    /// The spec has no image layer.
    #[error("rootfs has no lower dir")]
    NoLayers,
    /// The overlay option string exceeds one page, the limit of mount(2) data.
    #[error("overlay options are {len} bytes, more than the {max} mount(2) accepts")]
    OverlayOptionsTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// One step of the rootfs setup, with every string prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsOp {
    /// Make every mount in the new namespace private so nothing propagates back to the host.
    MakePrivate,
    /// Clone the mount of a host path into a detached tree on a reserved fd number.
    CloneTree {
        /// The host path.
        path: CString,
        /// The fd number to occupy.
        fd: RawFd,
        /// Include submounts.
        recursive: bool,
    },
    /// Attach a tree cloned by `CloneTree` at a path.
    AttachTree {
        /// The host path it was cloned from, or what the tree is (for messages).
        source: CString,
        /// Its fd.
        fd: RawFd,
        /// Mount point.
        target: CString,
    },
    /// A plain mount(2).
    Mount {
        /// Source (device, fs name or bind source).
        source: CString,
        /// Mount point.
        target: CString,
        /// Filesystem type, `None` for binds and remounts.
        fstype: Option<CString>,
        /// `MS_*` flags.
        flags: c_ulong,
        /// Filesystem options.
        data: Option<CString>,
    },
    /// Create a directory; an existing one is fine.
    Mkdir {
        /// The directory.
        path: CString,
    },
    /// Create an empty file as a bind target; an existing one is fine.
    TouchFile {
        /// The file.
        path: CString,
    },
    /// Create a character device node (mode 0666).
    Mknod {
        /// The node.
        path: CString,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// Create a symlink; an existing entry is fine.
    Symlink {
        /// What it points to.
        target: CString,
        /// The link itself.
        link: CString,
    },
    /// Hide a path: `/dev/null` over a file, a read-only tmpfs over a directory; absent is fine.
    Mask {
        /// The path.
        path: CString,
    },
    /// Make a path read-only with a bind mount onto itself; absent is fine.
    ReadonlyBind {
        /// The path.
        path: CString,
    },
    /// Mount sysfs read-only; where the kernel refuses (a netns we do not own), bind the host's
    /// `/sys` (passed as an fd) recursively and make the top read-only.
    Sysfs {
        /// Mount point.
        target: CString,
        /// fd of the detached clone of the host's `/sys`.
        fallback_fd: RawFd,
    },
    /// `pivot_root` into the directory and detach the old root.
    PivotRoot {
        /// The new root (the overlay mount point).
        new_root: CString,
    },
    /// Remount `/` read-only (a per-mount flag; writable binds are separate mounts).
    RemountRootReadonly,
}

impl RootfsOp {
    /// Human description of the step for error messages, e.g. `mount proc on /proc`.
    pub fn describe(&self) -> String {
        fn s(c: &CStr) -> String {
            c.to_string_lossy().into_owned()
        }
        match self {
            RootfsOp::MakePrivate => "make mounts private".into(),
            RootfsOp::CloneTree { path, .. } => format!("clone mount of {}", s(path)),
            RootfsOp::AttachTree { source, target, .. } => {
                format!("bind mount {} on {}", s(source), s(target))
            }
            RootfsOp::Mount { source, target, fstype, flags, .. } => match fstype {
                Some(t) => format!("mount {} on {}", s(t), s(target)),
                None if flags & libc::MS_REMOUNT != 0 => {
                    format!("remount {} read-only", s(target))
                }
                None => format!("bind mount {} on {}", s(source), s(target)),
            },
            RootfsOp::Mkdir { path } => format!("create directory {}", s(path)),
            RootfsOp::TouchFile { path } => format!("create file {}", s(path)),
            RootfsOp::Mknod { path, .. } => format!("create device {}", s(path)),
            RootfsOp::Symlink { link, .. } => format!("create symlink {}", s(link)),
            RootfsOp::Mask { path } => format!("mask {}", s(path)),
            RootfsOp::ReadonlyBind { path } => format!("make {} read-only", s(path)),
            RootfsOp::Sysfs { target, .. } => format!("mount sysfs on {}", s(target)),
            RootfsOp::PivotRoot { new_root } => format!("pivot_root to {}", s(new_root)),
            RootfsOp::RemountRootReadonly => "remount / read-only".into(),
        }
    }
}

/// runc's default masked paths: hidden from the container.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's default read-only paths.
pub const READONLY_PATHS: &[&str] =
    &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The minimal device set: name, major, minor.
pub const DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Host files the plan attaches after the pivot: the fd number the parent reserved (by opening
/// the file itself) and the path the child clones onto it.
#[derive(Debug, Clone, Copy)]
pub struct HostFds<'a> {
    /// The prepared hosts file.
    pub hosts: Option<(RawFd, &'a Path)>,
    /// The prepared resolv.conf.
    pub resolv: Option<(RawFd, &'a Path)>,
    /// The host's `/sys`.
    pub sys: RawFd,
    /// A detached devpts instance (`fsmount`) the shim made for a container with a TTY, its
    /// PTY already allocated; attached at `/dev/pts` instead of mounting a fresh instance.
    pub devpts: Option<RawFd>,
}

fn cstring(what: &'static str, path: &Path) -> Result<CString, RootfsError> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| RootfsError::Nul { what, path: path.to_owned() })
}

fn lit(s: &str) -> CString {
    // Only called with literals and formatted numbers, which contain no NUL.
    CString::new(s).unwrap_or_default()
}

/// Checks that `path` is absolute and has no `..`, and returns it normalised (no `.` parts).
pub fn clean_absolute(what: &'static str, path: &Path) -> Result<PathBuf, RootfsError> {
    let bad = || RootfsError::BadPath { what, path: path.to_owned() };
    if !path.is_absolute() {
        return Err(bad());
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => out.push(p),
            Component::ParentDir | Component::Prefix(_) => return Err(bad()),
        }
    }
    Ok(out)
}

/// The overlayfs option string: lowerdir lists the top-most layer first.
pub fn overlay_options(spec: &ContainerSpec) -> Result<String, RootfsError> {
    const MAX: usize = 4095;
    let r = &spec.rootfs;
    if r.lower_dirs.is_empty() {
        return Err(RootfsError::NoLayers);
    }
    let mut all: Vec<&Path> = r.lower_dirs.iter().map(PathBuf::as_path).collect();
    all.push(&r.upper_dir);
    all.push(&r.work_dir);
    for p in &all {
        clean_absolute("overlay directory", p)?;
        let bytes = p.as_os_str().as_encoded_bytes();
        if bytes.iter().any(|b| matches!(b, b',' | b':' | b'\\')) {
            return Err(RootfsError::OverlayChar { path: p.to_path_buf() });
        }
    }
    let lower: Vec<String> =
        r.lower_dirs.iter().rev().map(|p| p.to_string_lossy().into_owned()).collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        r.upper_dir.to_string_lossy(),
        r.work_dir.to_string_lossy()
    );
    if opts.len() > MAX {
        return Err(RootfsError::OverlayOptionsTooLong { len: opts.len(), max: MAX });
    }
    Ok(opts)
}

/// Builds the ordered mount plan for `spec`.
pub fn plan(spec: &ContainerSpec, fds: HostFds) -> Result<Vec<RootfsOp>, RootfsError> {
    use libc::{
        MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT, MS_STRICTATIME,
    };
    let merged = cstring("merged dir", &clean_absolute("merged dir", &spec.rootfs.merged_dir)?)?;
    let mut ops = vec![RootfsOp::MakePrivate];
    for (fd, path, recursive) in [
        fds.hosts.map(|(fd, p)| (fd, p, false)),
        fds.resolv.map(|(fd, p)| (fd, p, false)),
        Some((fds.sys, Path::new("/sys"), true)),
    ]
    .into_iter()
    .flatten()
    {
        ops.push(RootfsOp::CloneTree { path: cstring("host file", path)?, fd, recursive });
    }
    ops.extend([
        RootfsOp::Mount {
            source: lit("overlay"),
            target: merged.clone(),
            fstype: Some(lit("overlay")),
            flags: 0,
            data: Some(CString::new(overlay_options(spec)?).map_err(|_| RootfsError::Nul {
                what: "overlay directory",
                path: spec.rootfs.upper_dir.clone(),
            })?),
        },
        RootfsOp::PivotRoot { new_root: merged },
    ]);
    let mount = |source: &str, target: &str, fstype: Option<&str>, flags, data: Option<&str>| {
        RootfsOp::Mount {
            source: lit(source),
            target: lit(target),
            fstype: fstype.map(lit),
            flags,
            data: data.map(lit),
        }
    };
    let mkdir = |p: &str| RootfsOp::Mkdir { path: lit(p) };

    ops.push(mkdir("/proc"));
    ops.push(mount("proc", "/proc", Some("proc"), MS_NOSUID | MS_NODEV | MS_NOEXEC, None));

    ops.push(mkdir("/dev"));
    ops.push(mount(
        "tmpfs",
        "/dev",
        Some("tmpfs"),
        MS_NOSUID | MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    ));
    for (name, major, minor) in DEVICES {
        ops.push(RootfsOp::Mknod {
            path: lit(&format!("/dev/{name}")),
            major: *major,
            minor: *minor,
        });
    }
    ops.push(mkdir("/dev/pts"));
    match fds.devpts {
        Some(fd) => ops.push(RootfsOp::AttachTree {
            source: lit("the prepared devpts instance"),
            fd,
            target: lit("/dev/pts"),
        }),
        None => ops.push(mount(
            "devpts",
            "/dev/pts",
            Some("devpts"),
            MS_NOSUID | MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        )),
    }
    ops.push(mkdir("/dev/shm"));
    ops.push(mount(
        "shm",
        "/dev/shm",
        Some("tmpfs"),
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    ));
    for (target, link) in [
        ("pts/ptmx", "/dev/ptmx"),
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
    ] {
        ops.push(RootfsOp::Symlink { target: lit(target), link: lit(link) });
    }

    ops.push(mkdir("/sys"));
    ops.push(RootfsOp::Sysfs { target: lit("/sys"), fallback_fd: fds.sys });

    for p in MASKED_PATHS {
        ops.push(RootfsOp::Mask { path: lit(p) });
    }
    for p in READONLY_PATHS {
        ops.push(RootfsOp::ReadonlyBind { path: lit(p) });
    }

    let etc_files = [("/etc/hosts", fds.hosts), ("/etc/resolv.conf", fds.resolv)];
    if etc_files.iter().any(|(_, f)| f.is_some()) {
        ops.push(mkdir("/etc"));
    }
    for (path, file) in etc_files {
        let Some((fd, source)) = file else { continue };
        ops.push(RootfsOp::TouchFile { path: lit(path) });
        ops.push(RootfsOp::AttachTree {
            source: cstring("host file", source)?,
            fd,
            target: lit(path),
        });
        ops.push(RootfsOp::Mount {
            source: lit("none"),
            target: lit(path),
            fstype: None,
            flags: MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
            data: None,
        });
    }

    // Parents before children, so a writable /var binds before a writable /var/log.
    let mut writable = Vec::new();
    for p in &spec.writable_paths {
        writable.push(clean_absolute("writable path", p)?);
    }
    writable.sort_by_key(|p| p.components().count());
    writable.dedup();
    let mut root_writable = false;
    for p in &writable {
        if p == Path::new("/") {
            root_writable = true;
            continue;
        }
        let mut partial = PathBuf::from("/");
        for c in p.components().skip(1) {
            partial.push(c);
            ops.push(RootfsOp::Mkdir { path: cstring("writable path", &partial)? });
        }
        let c = cstring("writable path", p)?;
        ops.push(RootfsOp::Mount {
            source: c.clone(),
            target: c,
            fstype: None,
            flags: MS_BIND | MS_REC,
            data: None,
        });
    }
    if !root_writable {
        ops.push(RootfsOp::RemountRootReadonly);
    }
    Ok(ops)
}

/// Calls mount(2) with prepared strings.
///
/// libc rather than rustix: the plan carries arbitrary `MS_*` combinations (bind + remount +
/// rdonly), which rustix splits over several functions.
fn sys_mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    let p = |c: Option<&CStr>| c.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is null or points at a NUL-terminated string that outlives the call;
    // mount(2) is a raw syscall wrapper and async-signal-safe, so it may run between fork and exec.
    let rc = unsafe { libc::mount(p(source), target.as_ptr(), p(fstype), flags, p(data).cast()) };
    if rc == 0 { Ok(()) } else { Err(Errno::from_raw_os_error(errno())) }
}

/// The calling thread's errno (async-signal-safe: a thread-local read).
pub(crate) fn errno() -> i32 {
    // SAFETY: __errno_location returns a valid pointer to the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

fn ok_if_exists(r: Result<(), Errno>) -> Result<(), Errno> {
    match r {
        Err(Errno::EXIST) => Ok(()),
        other => other,
    }
}

/// Executes one step. Runs in the child between fork and exec: raw syscalls on prepared
/// strings only, no allocation.
pub fn run_op(op: &RootfsOp) -> Result<(), Errno> {
    use libc::{
        MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT,
    };
    match op {
        RootfsOp::MakePrivate => sys_mount(None, c"/", None, MS_REC | MS_PRIVATE, None),
        RootfsOp::CloneTree { path, fd, recursive } => {
            let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
            if *recursive {
                flags |= OpenTreeFlags::AT_RECURSIVE;
            }
            let tmp = rustix::mount::open_tree(rustix::fs::CWD, path.as_c_str(), flags)?;
            // SAFETY: dup3 onto a number this process reserved for exactly this file; the old
            // description there (the parent's copy from the other namespace) is replaced
            // atomically. Raw syscall, async-signal-safe.
            let rc = unsafe { libc::dup3(tmp.as_raw_fd(), *fd, libc::O_CLOEXEC) };
            if rc < 0 { Err(Errno::from_raw_os_error(errno())) } else { Ok(()) }
        }
        RootfsOp::Mount { source, target, fstype, flags, data } => {
            sys_mount(Some(source), target, fstype.as_deref(), *flags, data.as_deref())
        }
        RootfsOp::Mkdir { path } => {
            ok_if_exists(rustix::fs::mkdir(path.as_c_str(), Mode::from_raw_mode(0o755)))
        }
        RootfsOp::TouchFile { path } => {
            match rustix::fs::open(
                path.as_c_str(),
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(_fd) => Ok(()),
                Err(Errno::EXIST) => Ok(()),
                Err(e) => Err(e),
            }
        }
        RootfsOp::Mknod { path, major, minor } => rustix::fs::mknodat(
            rustix::fs::CWD,
            path.as_c_str(),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(*major, *minor),
        ),
        RootfsOp::Symlink { target, link } => {
            ok_if_exists(rustix::fs::symlink(target.as_c_str(), link.as_c_str()))
        }
        RootfsOp::Mask { path } => match rustix::fs::stat(path.as_c_str()) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => sys_mount(
                Some(c"tmpfs"),
                path,
                Some(c"tmpfs"),
                MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                None,
            ),
            Ok(_) => sys_mount(Some(c"/dev/null"), path, None, MS_BIND, None),
        },
        RootfsOp::ReadonlyBind { path } => {
            match sys_mount(Some(path), path, None, MS_BIND | MS_REC, None) {
                Err(Errno::NOENT) => return Ok(()),
                other => other?,
            }
            sys_mount(
                None,
                path,
                None,
                MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                None,
            )
        }
        RootfsOp::AttachTree { fd, target, .. } => attach(*fd, target),
        RootfsOp::Sysfs { target, fallback_fd } => {
            let flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
            match sys_mount(Some(c"sysfs"), target, Some(c"sysfs"), flags, None) {
                Ok(()) => Ok(()),
                Err(Errno::PERM) | Err(Errno::ACCESS) => {
                    attach(*fallback_fd, target)?;
                    sys_mount(None, target, None, MS_BIND | MS_REMOUNT | flags, None)
                }
                Err(e) => Err(e),
            }
        }
        RootfsOp::PivotRoot { new_root } => {
            rustix::process::chdir(new_root.as_c_str())?;
            // pivot_root(".", ".") stacks the old root on top of the new one; detaching "."
            // then removes it without needing a directory for it inside the image.
            rustix::process::pivot_root(c".", c".")?;
            rustix::mount::unmount(c".", UnmountFlags::DETACH)?;
            rustix::process::chdir(c"/")
        }
        RootfsOp::RemountRootReadonly => {
            sys_mount(None, c"/", None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
        }
    }
}

/// Attaches the detached tree on `fd` at `target`.
fn attach(fd: RawFd, target: &CStr) -> Result<(), Errno> {
    // SAFETY: `fd` was placed by a CloneTree step of this plan, or is the prepared devpts mount
    // the parent kept open for the child (in its keep list); either stays open until exec.
    let tree = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::mount::move_mount(
        tree,
        c"",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::shim::protocol::{CgroupSpec, LogSpec, RootfsSpec};

    pub(crate) fn spec() -> ContainerSpec {
        ContainerSpec {
            id: "c1".into(),
            hostname: "box".into(),
            args: vec!["sh".into()],
            env: vec![],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            capabilities: vec![],
            no_new_privs: true,
            syscall_deny: vec![],
            devices: vec![],
            disabled_layers: vec![],
            rootfs: RootfsSpec {
                lower_dirs: vec!["/l/base".into(), "/l/top".into()],
                upper_dir: "/c/upper".into(),
                work_dir: "/c/work".into(),
                merged_dir: "/c/merged".into(),
            },
            writable_paths: vec!["/var/log".into(), "/tmp".into(), "/var".into()],
            cgroup: CgroupSpec { v2_dir: None, v1_dirs: vec![] },
            netns_path: None,
            log: LogSpec { path: "/c/log".into(), max_size: 1 << 20, max_files: 2 },
            resolv_conf: None,
            hosts: None,
            tty: false,
            interactive: false,
            stdin_once: false,
            self_exec: false,
        }
    }

    #[test]
    fn overlay_lists_top_layer_first() {
        assert_eq!(
            overlay_options(&spec()).unwrap(),
            "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work"
        );
    }

    #[test]
    fn overlay_rejects_separator_characters() {
        let mut s = spec();
        s.rootfs.lower_dirs.push("/l/a,b".into());
        assert!(matches!(overlay_options(&s), Err(RootfsError::OverlayChar { .. })));
    }

    #[test]
    fn plan_pivots_first_binds_parents_first_and_ends_read_only() {
        let fds = HostFds {
            hosts: Some((7, Path::new("/state/c1/hosts"))),
            resolv: None,
            sys: 9,
            devpts: None,
        };
        let ops = plan(&spec(), fds).unwrap();
        assert_eq!(ops[0], RootfsOp::MakePrivate);
        assert_eq!(
            ops[1],
            RootfsOp::CloneTree { path: c"/state/c1/hosts".into(), fd: 7, recursive: false }
        );
        assert!(matches!(ops[2], RootfsOp::CloneTree { fd: 9, recursive: true, .. }));
        assert!(matches!(ops[4], RootfsOp::PivotRoot { .. }));
        assert_eq!(ops.last(), Some(&RootfsOp::RemountRootReadonly));
        let binds: Vec<String> = ops
            .iter()
            .filter_map(|o| match o {
                RootfsOp::Mount { target, fstype: None, flags, .. }
                    if flags & libc::MS_REC != 0 =>
                {
                    Some(target.to_string_lossy().into_owned())
                }
                _ => None,
            })
            .collect();
        assert_eq!(binds, ["/tmp", "/var", "/var/log"]);
        assert!(ops.iter().any(|o| matches!(o, RootfsOp::AttachTree { fd: 7, target, .. }
            if target.as_c_str() == c"/etc/hosts")));
        assert!(ops.iter().any(|o| matches!(o, RootfsOp::Sysfs { fallback_fd: 9, .. })));
    }

    #[test]
    fn a_prepared_devpts_is_attached_instead_of_mounted() {
        let fds = HostFds { hosts: None, resolv: None, sys: 3, devpts: Some(11) };
        let ops = plan(&spec(), fds).unwrap();
        assert!(ops.iter().any(|o| matches!(o, RootfsOp::AttachTree { fd: 11, target, .. }
            if target.as_c_str() == c"/dev/pts")));
        assert!(!ops.iter().any(|o| matches!(o, RootfsOp::Mount { fstype: Some(t), .. }
            if t.as_c_str() == c"devpts")));
    }

    #[test]
    fn writable_root_skips_read_only_remount_and_dotdot_is_refused() {
        let mut s = spec();
        s.writable_paths = vec!["/".into()];
        let fds = HostFds { hosts: None, resolv: None, sys: 3, devpts: None };
        let ops = plan(&s, fds).unwrap();
        assert!(!ops.contains(&RootfsOp::RemountRootReadonly));
        s.writable_paths = vec!["/tmp/../etc".into()];
        assert!(matches!(plan(&s, fds), Err(RootfsError::BadPath { .. })));
    }
}
