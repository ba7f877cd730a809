//! Per-zone network namespaces, persisted as bind mounts under a runtime directory
//! (`<run>/netns/zone-<id>`) the way `ip netns` persists its named namespaces, so the daemon
//! finds them again after a restart.

use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountPropagationFlags, UnmountFlags};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::net::NetError;
use crate::net::link::Rtnl;

/// `statfs.f_type` of nsfs, the filesystem namespace files live on.
const NSFS_MAGIC: u64 = 0x6e73_6673;
/// Prefix of the namespace files under the directory.
const FILE_PREFIX: &str = "zone-";

/// A directory holding one bind-mounted namespace file per zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsDir {
    dir: PathBuf,
}

/// A namespace just created, with a route netlink socket already inside it.
pub struct NewNetns {
    /// The namespace (open nsfs file).
    pub fd: OwnedFd,
    /// Route netlink socket bound to the namespace.
    pub rtnl: Rtnl,
}

/// One file found under the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsEntry {
    /// Zone id parsed from the file name.
    pub zone_id: u32,
    /// Whether a namespace is mounted on it (false: left over from an interrupted create).
    pub mounted: bool,
}

fn os(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Opens the calling thread's network namespace.
pub fn current_netns() -> Result<OwnedFd, NetError> {
    let path = Path::new("/proc/thread-self/ns/net");
    rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| NetError::NetnsOpen { path: path.to_owned(), source: os(e) })
}

/// Whether `fd` is a namespace file (nsfs), i.e. a mount is in place.
fn is_nsfs(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstatfs(fd).is_ok_and(|st| st.f_type as u64 == NSFS_MAGIC)
}

/// Runs `f` on a helper thread that has entered the network namespace `ns`.
///
/// setns(CLONE_NEWNET) is per thread, so a short-lived thread keeps the caller's own
/// namespace untouched whatever `f` does or however it fails.
pub fn in_netns<T, F>(ns: BorrowedFd<'_>, f: F) -> Result<T, NetError>
where
    T: Send,
    F: FnOnce() -> Result<T, NetError> + Send,
{
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("rauha-netns".into())
            .spawn_scoped(scope, move || {
                rustix::thread::move_into_link_name_space(ns, Some(LinkNameSpaceType::Network))
                    .map_err(|e| NetError::Setns { source: os(e) })?;
                f()
            })
            .map_err(|source| NetError::NetnsThread { source })?;
        handle.join().map_err(|_| NetError::NetnsThreadPanic)?
    })
}

impl NetnsDir {
    /// A namespace directory at `dir` (e.g. `/run/rauha/netns`); nothing is touched yet.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The namespace file of a zone.
    pub fn path_of(&self, zone_id: u32) -> PathBuf {
        self.dir.join(format!("{FILE_PREFIX}{zone_id}"))
    }

    /// Creates the directory and makes it a shared mount point.
    ///
    /// Shared, so that unmounting a namespace here also unmounts the copies that mount
    /// namespaces cloned later (containers) inherited; otherwise those copies would pin the
    /// namespace alive after delete. Same approach as iproute2.
    pub fn setup(&self) -> Result<(), NetError> {
        fs::create_dir_all(&self.dir)
            .map_err(|source| NetError::NetnsDir { path: self.dir.clone(), source })?;
        let shared = MountPropagationFlags::SHARED | MountPropagationFlags::REC;
        match rustix::mount::mount_change(&self.dir, shared) {
            Ok(()) => return Ok(()),
            // EINVAL: not a mount point yet; bind it onto itself and retry once.
            Err(rustix::io::Errno::INVAL) => {}
            Err(e) => {
                return Err(NetError::NetnsDirShared { path: self.dir.clone(), source: os(e) });
            }
        }
        rustix::mount::mount_bind_recursive(&self.dir, &self.dir)
            .map_err(|e| NetError::NetnsDirShared { path: self.dir.clone(), source: os(e) })?;
        rustix::mount::mount_change(&self.dir, shared)
            .map_err(|e| NetError::NetnsDirShared { path: self.dir.clone(), source: os(e) })
    }

    /// Unmounts every namespace and the directory's own mount, then removes the directory
    /// (uninstall and tests).
    pub fn teardown(&self) -> Result<(), NetError> {
        for entry in self.list()? {
            self.delete(entry.zone_id)?;
        }
        // Our self-bind may be stacked if setup ran twice; unmount until none is left.
        for _ in 0..8 {
            match rustix::mount::unmount(&self.dir, UnmountFlags::DETACH) {
                Ok(()) => {}
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => break,
                Err(e) => {
                    return Err(NetError::NetnsUnmount { path: self.dir.clone(), source: os(e) });
                }
            }
        }
        match fs::remove_dir(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(NetError::NetnsRemove { path: self.dir.clone(), source: e })
            }
            _ => Ok(()),
        }
    }

    /// Creates and persists the namespace of `zone_id`, with loopback up.
    pub fn create(&self, zone_id: u32) -> Result<NewNetns, NetError> {
        let path = self.path_of(zone_id);
        // O_EXCL: an existing file means the zone's namespace exists (or a stale one needs
        // delete first); never mount twice onto one file.
        let file = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| NetError::NetnsFile { path: path.clone(), source: os(e) })?;
        drop(file);
        let result = std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name("rauha-netns-new".into())
                .spawn_scoped(scope, || Self::create_on_thread(&path))
                .map_err(|source| NetError::NetnsThread { source })?;
            handle.join().map_err(|_| NetError::NetnsThreadPanic)?
        });
        if result.is_err() {
            // Best effort: a half-made namespace must not block the next attempt.
            let _ = rustix::mount::unmount(&path, UnmountFlags::DETACH);
            let _ = fs::remove_file(&path);
        }
        result
    }

    /// Body of `create` on its own thread: unshare moves only this thread.
    fn create_on_thread(path: &Path) -> Result<NewNetns, NetError> {
        // SAFETY: CLONE_NEWNET only changes this thread's network namespace; no file
        // descriptor table or fs state is unshared, so no other thread is affected.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }
            .map_err(|e| NetError::Unshare { source: os(e) })?;
        rustix::mount::mount_bind("/proc/thread-self/ns/net", path)
            .map_err(|e| NetError::NetnsMount { path: path.to_owned(), source: os(e) })?;
        let fd = current_netns()?;
        let mut rtnl = Rtnl::open_current()?;
        rtnl.set_up_by_name("lo").map_err(|source| NetError::LoopbackUp { source })?;
        Ok(NewNetns { fd, rtnl })
    }

    /// Opens the namespace of `zone_id`; fails if none is mounted there.
    pub fn open(&self, zone_id: u32) -> Result<OwnedFd, NetError> {
        let path = self.path_of(zone_id);
        let fd = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| NetError::NetnsOpen { path: path.clone(), source: os(e) })?;
        if !is_nsfs(fd.as_fd()) {
            return Err(NetError::NotNetns { path });
        }
        Ok(fd)
    }

    /// Unmounts and removes the namespace of `zone_id`; a missing one is not an error.
    pub fn delete(&self, zone_id: u32) -> Result<(), NetError> {
        let path = self.path_of(zone_id);
        match rustix::mount::unmount(&path, UnmountFlags::DETACH) {
            // EINVAL: not mounted (interrupted create); ENOENT: already gone.
            Ok(()) | Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => {}
            Err(e) => {
                return Err(NetError::NetnsUnmount { path, source: os(e) });
            }
        }
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(NetError::NetnsRemove { path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Zone namespace files present, sorted by zone id (for reconciliation at start).
    pub fn list(&self) -> Result<Vec<NetnsEntry>, NetError> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(NetError::NetnsList { path: self.dir.clone(), source });
            }
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry =
                entry.map_err(|source| NetError::NetnsList { path: self.dir.clone(), source })?;
            let name = entry.file_name();
            let Some(zone_id) = name
                .to_str()
                .and_then(|n| n.strip_prefix(FILE_PREFIX))
                .and_then(|id| id.parse::<u32>().ok())
            else {
                continue;
            };
            let mounted =
                rustix::fs::open(entry.path(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                    .is_ok_and(|fd| is_nsfs(fd.as_fd()));
            out.push(NetnsEntry { zone_id, mounted });
        }
        out.sort_by_key(|e| e.zone_id);
        Ok(out)
    }
}
