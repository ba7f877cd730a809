//! Pinned BPF objects (`rauhad --pin`): the links and maps of every zone's cgroup programs, the
//! shared deny-event maps and the LSM layer's links and maps, kept under a bpffs directory of
//! the daemon's own so that enforcement outlives the daemon and the next daemon adopts it
//! instead of attaching anew.
//!
//! A pin is a name in bpffs holding a reference: a pinned link stays attached while no process
//! holds it, a pinned map keeps its contents. Removing the last name of a link nobody holds
//! detaches it.
//!
//! ```text
//! /sys/fs/bpf/rauha/<instance>/   instance: the state dir's name and a hash of its path
//!   events/map_rauha_events, map_rauha_rate
//!   zones/<zone uuid>/link_<program>, map_<map>
//!   lsm/link_<program>, map_<map>
//! ```
//!
//! (bpffs refuses names with a dot, hence the underscores.)
//!
//! A pinned object is adopted only after it is verified: a link must still be attached where
//! the zone is (a re-created cgroup has a new id) and run the program this build loads (the
//! kernel's tag hashes the instructions with map references masked, so an upgraded daemon
//! replaces what an older one pinned).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use libbpf_rs::MapHandle;
use libbpf_rs::libbpf_sys;
use libbpf_rs::query::{LinkInfo, LinkTypeInfo};
use sha2::{Digest, Sha256};

/// Where bpffs is mounted (and mounted by the daemon when it is not).
pub const BPFFS: &str = "/sys/fs/bpf";
/// The directory below [`BPFFS`] holding one directory per daemon instance.
const BASE: &str = "rauha";
/// `BPF_FS_MAGIC` of statfs(2).
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;

/// Why a pinning step failed: the step, the pin path and the OS error.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("lock {} to mount bpffs: {source}", path.display())]
    LockBpffs { path: PathBuf, source: io::Error },
    #[error("mount bpffs at {}: {source}", path.display())]
    Mount { path: PathBuf, source: io::Error },
    #[error("create pin directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("read pin directory {}: {source}", path.display())]
    ReadDir { path: PathBuf, source: io::Error },
    #[error("pin bpf object at {}: {source}", path.display())]
    Pin { path: PathBuf, source: io::Error },
    #[error("open pinned bpf object {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("query pinned bpf object {}: {source}", path.display())]
    Query { path: PathBuf, source: io::Error },
    #[error("remove pin {}: {source}", path.display())]
    Remove { path: PathBuf, source: io::Error },
    #[error("pinned bpf object {} does not match this daemon: {reason}", path.display())]
    Mismatch { path: PathBuf, reason: String },
}

/// The pin directory of one daemon instance, `/sys/fs/bpf/rauha/<instance>`.
#[derive(Debug, Clone)]
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    /// The pin directory of the daemon whose state dir is `root`: named after the state dir
    /// and a hash of its canonical path, so daemons with different state dirs (parallel test
    /// daemons) never share one and the same daemon finds its own again.
    pub fn for_state_dir(root: &Path) -> Self {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
        let hash = Sha256::digest(root.as_os_str().as_bytes());
        // bpffs refuses names with a dot (reserved); keep to a plain, readable set.
        let name: String = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".to_owned())
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' })
            .take(64)
            .collect();
        Self {
            path: Path::new(BPFFS).join(BASE).join(format!("{name}-{}", hex::encode(&hash[..4]))),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shared deny-event maps.
    pub fn events(&self) -> PathBuf {
        self.path.join("events")
    }

    /// The parent of every zone's directory.
    pub fn zones(&self) -> PathBuf {
        self.path.join("zones")
    }

    /// One zone's links and maps; `key` is the zone's stable id.
    pub fn zone(&self, key: &str) -> PathBuf {
        self.zones().join(key)
    }

    /// The LSM layer's links and maps.
    pub fn lsm(&self) -> PathBuf {
        self.path.join("lsm")
    }

    /// Whether an instance directory exists (left by this daemon or an earlier `--pin` run).
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Mounts bpffs at [`BPFFS`] when nothing is mounted there and creates the instance
    /// directory.
    pub fn prepare(&self) -> Result<(), PinError> {
        ensure_bpffs()?;
        create_dir(&self.zones())
    }

    /// Removes the instance directory and everything pinned in it (detaching every link no
    /// process holds), then the shared parent when no other instance uses it.
    pub fn remove(&self) -> Result<(), PinError> {
        remove_tree(&self.path)?;
        if let Some(parent) = self.path.parent() {
            // Another instance may live there or be creating its directory (it retries).
            let _ = std::fs::remove_dir(parent);
        }
        Ok(())
    }

    /// Names of the zone directories present (zone ids).
    pub fn zone_keys(&self) -> Result<Vec<String>, PinError> {
        let dir = self.zones();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(PinError::ReadDir { path: dir, source }),
        };
        entries
            .map(|entry| {
                entry
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .map_err(|source| PinError::ReadDir { path: dir.clone(), source })
            })
            .collect()
    }
}

/// Mounts bpffs at [`BPFFS`] unless it is mounted there already. The check and the mount run
/// under an exclusive lock on the mount point, so two daemons starting together do not stack
/// two mounts (the second would hide what the first pinned).
fn ensure_bpffs() -> Result<(), PinError> {
    let path = Path::new(BPFFS);
    let dir = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| PinError::LockBpffs { path: path.to_owned(), source })?;
    rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| PinError::LockBpffs { path: path.to_owned(), source: e.into() })?;
    // By path, not by the locked fd: a mount made while we waited is on top of that inode.
    let mounted = rustix::fs::statfs(path)
        .map(|fs| fs.f_type as u64 == BPF_FS_MAGIC)
        .map_err(|e| PinError::Mount { path: path.to_owned(), source: e.into() })?;
    if !mounted {
        rustix::mount::mount(
            "bpf",
            path,
            "bpf",
            rustix::mount::MountFlags::NOSUID
                | rustix::mount::MountFlags::NODEV
                | rustix::mount::MountFlags::NOEXEC,
            c"mode=0700",
        )
        .map_err(|e| PinError::Mount { path: path.to_owned(), source: e.into() })?;
        tracing::info!(path = BPFFS, "mounted bpffs to pin bpf objects");
    }
    Ok(())
}

/// `mkdir -p`, retrying once when a concurrent [`PinDir::remove`] of another instance took
/// the shared parent away between the two steps.
pub fn create_dir(path: &Path) -> Result<(), PinError> {
    let mut result = std::fs::create_dir_all(path);
    if matches!(&result, Err(e) if e.kind() == io::ErrorKind::NotFound) {
        result = std::fs::create_dir_all(path);
    }
    result.map_err(|source| PinError::CreateDir { path: path.to_owned(), source })
}

/// Removes `path` and everything below it; an absent path is fine.
pub fn remove_tree(path: &Path) -> Result<(), PinError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PinError::Remove { path: path.to_owned(), source }),
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// Pins each `(name, fd)` in the new directory `dir`; nothing stays pinned when one fails.
pub fn pin_all(dir: &Path, objects: &[(String, BorrowedFd<'_>)]) -> Result<(), PinError> {
    create_dir(dir)?;
    let pinned = objects.iter().try_for_each(|(name, fd)| pin(*fd, &dir.join(name)));
    if pinned.is_err() {
        let _ = remove_tree(dir);
    }
    pinned
}

fn pin(fd: BorrowedFd<'_>, path: &Path) -> Result<(), PinError> {
    let error = |source| PinError::Pin { path: path.to_owned(), source };
    let c = c_path(path).map_err(error)?;
    // SAFETY: `fd` is open for the call and `c` is a NUL-terminated path that outlives it.
    let rc = unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), c.as_ptr()) };
    if rc < 0 {
        return Err(error(io::Error::from_raw_os_error(-rc)));
    }
    Ok(())
}

/// Opens a pinned object (a new fd holding it).
pub fn open(path: &Path) -> Result<OwnedFd, PinError> {
    let error = |source| PinError::Open { path: path.to_owned(), source };
    let c = c_path(path).map_err(error)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let fd = unsafe { libbpf_sys::bpf_obj_get(c.as_ptr()) };
    if fd < 0 {
        return Err(error(io::Error::from_raw_os_error(-fd)));
    }
    // SAFETY: a non-negative return of bpf_obj_get is a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a pinned map.
pub fn open_map(path: &Path) -> Result<MapHandle, PinError> {
    // Checked first: libbpf-rs panics on a path with a NUL byte.
    c_path(path).map_err(|source| PinError::Open { path: path.to_owned(), source })?;
    MapHandle::from_pinned_path(path)
        .map_err(|e| PinError::Open { path: path.to_owned(), source: libbpf_io_error(&e) })
}

/// The pin name of a link of program `program`.
pub fn link_name(program: &str) -> String {
    format!("link_{program}")
}

/// The pin name of map `map`.
pub fn map_name(map: &str) -> String {
    format!("map_{map}")
}

fn libbpf_io_error(error: &libbpf_rs::Error) -> io::Error {
    io::Error::other(format!("{error:#}"))
}

/// The kernel's tag of a loaded program: a hash of its instructions with map references
/// masked, equal for two loads of the same code.
pub fn program_tag(program: BorrowedFd<'_>) -> io::Result<[u8; 8]> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: `info` is a zeroed bpf_prog_info whose array pointers are null (the kernel fills
    // no user buffers) and `len` is its size; both outlive the call.
    let rc =
        unsafe { libbpf_sys::bpf_prog_get_info_by_fd(program.as_raw_fd(), &mut info, &mut len) };
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(info.tag)
}

/// Where a pinned link must be attached.
#[derive(Debug, Clone, Copy)]
pub enum LinkTarget {
    /// A cgroup2 node (by id) with an attach type.
    Cgroup { cgroup_id: u64, attach_type: u32 },
    /// An LSM hook.
    Lsm,
}

/// Checks that the link pinned at `path` (open as `link`) is attached to `target` and runs a
/// program with tag `tag`.
pub fn check_link(
    path: &Path,
    link: BorrowedFd<'_>,
    target: LinkTarget,
    tag: [u8; 8],
) -> Result<(), PinError> {
    let query = |source| PinError::Query { path: path.to_owned(), source };
    let mismatch = |reason: String| PinError::Mismatch { path: path.to_owned(), reason };
    let info = LinkInfo::from_fd(link).map_err(|e| query(libbpf_io_error(&e)))?;
    match (&info.info, target) {
        (LinkTypeInfo::Cgroup(cgroup), LinkTarget::Cgroup { cgroup_id, attach_type }) => {
            if cgroup.cgroup_id != cgroup_id {
                // 0 when the cgroup it was attached to is gone.
                return Err(mismatch(format!(
                    "attached to cgroup id {}, the zone's cgroup is {cgroup_id}",
                    cgroup.cgroup_id
                )));
            }
            if cgroup.attach_type.clone() as u32 != attach_type {
                return Err(mismatch(format!(
                    "attach type {} instead of {attach_type}",
                    cgroup.attach_type.clone() as u32
                )));
            }
        }
        (LinkTypeInfo::Tracing(tracing), LinkTarget::Lsm) => {
            if tracing.attach_type.clone() as u32 != libbpf_sys::BPF_LSM_MAC {
                return Err(mismatch("not an lsm link".to_owned()));
            }
        }
        (other, _) => return Err(mismatch(format!("unexpected link type {other:?}"))),
    }
    // SAFETY: plain syscall wrapper; a non-negative return is a new fd that we own.
    let prog = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(info.prog_id) };
    if prog < 0 {
        return Err(query(io::Error::from_raw_os_error(-prog)));
    }
    // SAFETY: see above.
    let prog = unsafe { OwnedFd::from_raw_fd(prog) };
    let pinned = program_tag(std::os::fd::AsFd::as_fd(&prog)).map_err(query)?;
    if pinned != tag {
        return Err(mismatch(format!(
            "program tag {} differs from this build's {} (daemon upgraded?)",
            hex::encode(pinned),
            hex::encode(tag)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_readable_distinct_and_stable() {
        let a = PinDir::for_state_dir(Path::new("/nonexistent/var/lib/rauha"));
        let b = PinDir::for_state_dir(Path::new("/nonexistent/other/rauha"));
        let name = a.path().file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("rauha-") && name.len() == "rauha-".len() + 8, "{name}");
        assert_eq!(a.path().parent().unwrap(), Path::new("/sys/fs/bpf/rauha"));
        assert_ne!(a.path(), b.path());
        assert_eq!(a.path(), PinDir::for_state_dir(Path::new("/nonexistent/var/lib/rauha")).path());
        let odd = PinDir::for_state_dir(Path::new("/nonexistent/.a b:c"));
        assert!(odd.path().file_name().unwrap().to_str().unwrap().starts_with("-a-b-c-"));
        assert_eq!(a.zone("k"), a.path().join("zones/k"));
    }

    #[test]
    fn nul_in_a_path_is_an_error_not_a_panic() {
        let path = Path::new(std::ffi::OsStr::from_bytes(b"/sys/fs/bpf/a\0b"));
        assert!(matches!(open(path), Err(PinError::Open { .. })));
        assert!(matches!(open_map(path), Err(PinError::Open { .. })));
    }
}
