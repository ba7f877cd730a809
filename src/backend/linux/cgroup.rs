//! cgroup nodes for zones and containers: an identity node in cgroup2 plus resource limits in
//! whichever hierarchy (cgroup2 or a v1 controller) holds each controller on this host.
//!
//! Layouts (DESIGN.md §4):
//! - unified: cgroup2 only; limits go to v2 controllers, enabled along the parent chain through
//!   `cgroup.subtree_control`.
//! - hybrid: cgroup2 (usually at `/sys/fs/cgroup/unified`, without controllers) holds identity
//!   (`cgroup_id`, `cgroup.kill`, `cgroup.freeze`, cgroup-BPF); limits and usage go to the v1
//!   controller hierarchies.
//! - legacy: no cgroup2; a v1 node stands in for identity and `cgroup_id` is `None`.
//!
//! Each controller is resolved on its own: a controller mounted as a v1 hierarchy is bound there
//! (the kernel then cannot offer it in cgroup2); otherwise it is used from cgroup2 if the cgroup2
//! root lists it; otherwise it is unavailable and reported as such, never silently skipped.
//! Hierarchies are found by the mount's super options (`cpu,cpuacct` co-mounts included), never by
//! guessing directory names.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, CWD, StatxFlags};
use rustix::process::{Pid, Signal};

/// Limit value meaning "no limit" for `memory_bytes` and `pids_max`.
pub const UNLIMITED: u64 = u64::MAX;

/// How long `remove` waits for killed processes to leave and for directories to become removable.
pub const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Accepted `cpu_shares` (the kernel's v1 MIN_SHARES..=MAX_SHARES).
pub const CPU_SHARES_RANGE: std::ops::RangeInclusive<u64> = 2..=262_144;
/// Accepted `io_weight` (cgroup2 `io.weight` range).
pub const IO_WEIGHT_RANGE: std::ops::RangeInclusive<u64> = 1..=10_000;
/// cgroup v1 `blkio.weight` range (CFQ's; BFQ accepts 1..=1000, so it fits both).
pub const BLKIO_WEIGHT_RANGE: std::ops::RangeInclusive<u64> = 10..=1000;

/// v1 `memory.limit_in_bytes` reports "unlimited" as `PAGE_COUNTER_MAX * PAGE_SIZE`, i.e. i64::MAX
/// rounded down to the page size; anything at or above this value (i64::MAX rounded down to 2 MiB,
/// covering every page size) is treated as unlimited.
const V1_MEMORY_UNLIMITED_MIN: u64 = 0x7FFF_FFFF_FFE0_0000;

/// Failure of one step of cgroup management, carrying the object it failed on.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Reading the mount table failed.
    #[error("read mount table {path}: {source}")]
    ReadMountinfo { path: PathBuf, source: io::Error },
    /// A mount table line did not have the documented fields.
    #[error("parse mount table line {line}: {reason}")]
    ParseMountinfo { line: usize, reason: &'static str },
    /// Neither cgroup2 nor any cgroup v1 hierarchy is mounted.
    #[error("no cgroup filesystem is mounted")]
    NoCgroupMounts,
    /// A parent or node name is not a safe relative cgroup path.
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// A limit is outside the range the kernel interface accepts.
    #[error("invalid {field} {value}: must be within {min}..={max}")]
    InvalidLimit { field: &'static str, value: u64, min: u64, max: u64 },
    /// `mkdir` of a cgroup directory failed.
    #[error("create cgroup {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    /// `rmdir` of a cgroup directory failed.
    #[error("remove cgroup {path}: {source}")]
    RemoveDir { path: PathBuf, source: io::Error },
    /// Listing a cgroup directory failed.
    #[error("list cgroup {path}: {source}")]
    ListDir { path: PathBuf, source: io::Error },
    /// Writing a cgroup interface file failed.
    #[error("write {value} to {path}: {source}")]
    Write { path: PathBuf, value: String, source: io::Error },
    /// Reading a cgroup interface file failed.
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// A cgroup interface file held something other than its documented format.
    #[error("parse {path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
    /// `statx` of the identity directory (for its inode number) failed.
    #[error("stat {path}: {source}")]
    Stat { path: PathBuf, source: io::Error },
    /// `open` found the node missing (entirely, or in one hierarchy).
    #[error("cgroup {path} does not exist")]
    NotFound { path: PathBuf },
    /// Sending SIGKILL to a member process failed (other than it being gone already).
    #[error("kill process {pid} in cgroup {path}: {source}")]
    Kill { pid: i32, path: PathBuf, source: io::Error },
    /// Processes were still in the node when the bounded wait ran out.
    #[error("processes {pids:?} still in cgroup {path} after {timeout:?}")]
    KillTimeout { path: PathBuf, pids: Vec<i32>, timeout: Duration },
}

/// What the host mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// cgroup2 only (or with no controller in any v1 hierarchy).
    Unified,
    /// cgroup2 for identity plus v1 controller hierarchies.
    Hybrid,
    /// v1 hierarchies only.
    Legacy,
}

/// A resource controller Rauha sets limits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Cpu,
    Memory,
    Pids,
    Io,
}

impl Controller {
    /// Every controller, in the order limits are applied.
    pub const ALL: [Controller; 4] =
        [Controller::Memory, Controller::Pids, Controller::Cpu, Controller::Io];

    /// Name in cgroup2 `cgroup.controllers`.
    pub fn v2_name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Io => "io",
        }
    }

    /// Name in a v1 mount's super options.
    pub fn v1_name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Io => "blkio",
        }
    }
}

/// Resource limits of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// v1 `cpu.shares` semantics, within [`CPU_SHARES_RANGE`]; converted for v2 `cpu.weight`.
    pub cpu_shares: u64,
    /// Memory limit in bytes, or [`UNLIMITED`]. Swap is not limited (see `apply`).
    pub memory_bytes: u64,
    /// Maximum number of tasks, or [`UNLIMITED`]; the kernel rejects values above its PID limit.
    pub pids_max: u64,
    /// v2 `io.weight` semantics, within [`IO_WEIGHT_RANGE`]; mapped for v1 `blkio`.
    pub io_weight: u64,
}

impl Default for Limits {
    /// The kernel's defaults: no memory or pids limit, default CPU and IO weight.
    fn default() -> Self {
        Limits { cpu_shares: 1024, memory_bytes: UNLIMITED, pids_max: UNLIMITED, io_weight: 100 }
    }
}

impl Limits {
    /// Check the ranges the kernel interfaces accept (values the kernel would clamp silently).
    pub fn validate(&self) -> Result<(), CgroupError> {
        check_range("cpu_shares", self.cpu_shares, &CPU_SHARES_RANGE)?;
        check_range("io_weight", self.io_weight, &IO_WEIGHT_RANGE)
    }
}

fn check_range(
    field: &'static str,
    value: u64,
    range: &std::ops::RangeInclusive<u64>,
) -> Result<(), CgroupError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(CgroupError::InvalidLimit { field, value, min: *range.start(), max: *range.end() })
    }
}

/// v2 `cpu.weight` for v1-style shares (the mapping runc and crun use).
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(*CPU_SHARES_RANGE.start(), *CPU_SHARES_RANGE.end());
    1 + ((shares - 2) * 9999) / 262_142
}

/// Smallest shares value whose `shares_to_weight` is `weight` (the inverse, for stats).
pub fn weight_to_shares(weight: u64) -> u64 {
    let weight = weight.clamp(*IO_WEIGHT_RANGE.start(), *IO_WEIGHT_RANGE.end());
    2 + ((weight - 1) * 262_142).div_ceil(9999)
}

/// v1 `blkio.weight` for a v2-style io weight: proportional, clamped to [`BLKIO_WEIGHT_RANGE`].
pub fn io_weight_to_blkio(weight: u64) -> u64 {
    let weight = weight.clamp(*IO_WEIGHT_RANGE.start(), *IO_WEIGHT_RANGE.end());
    (10 + ((weight - 1) * 990) / 9999).clamp(*BLKIO_WEIGHT_RANGE.start(), *BLKIO_WEIGHT_RANGE.end())
}

/// Smallest io weight whose `io_weight_to_blkio` is `blkio` (the inverse, for stats).
pub fn blkio_to_io_weight(blkio: u64) -> u64 {
    let blkio = blkio.clamp(*BLKIO_WEIGHT_RANGE.start(), *BLKIO_WEIGHT_RANGE.end());
    (1 + ((blkio - 10) * 9999).div_ceil(990))
        .clamp(*IO_WEIGHT_RANGE.start(), *IO_WEIGHT_RANGE.end())
}

/// A cgroup v1 hierarchy's mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mount {
    /// Where the hierarchy's root (as visible to us) is mounted.
    pub mount_point: PathBuf,
    /// Super options: controller names plus flags such as `rw` or `name=systemd`.
    pub options: Vec<String>,
}

impl V1Mount {
    /// Whether the hierarchy carries `controller` (an exact super option, so `cpu` ≠ `cpuacct`).
    pub fn has(&self, controller: &str) -> bool {
        self.options.iter().any(|o| o == controller)
    }
}

/// The cgroup mounts of a mount table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mounts {
    /// The cgroup2 mount point, if any.
    pub unified: Option<PathBuf>,
    /// One mount per v1 hierarchy.
    pub v1: Vec<V1Mount>,
}

impl Mounts {
    /// Read `/proc/self/mountinfo`.
    pub fn from_proc() -> Result<Self, CgroupError> {
        let path = PathBuf::from("/proc/self/mountinfo");
        let text = fs::read_to_string(&path)
            .map_err(|source| CgroupError::ReadMountinfo { path, source })?;
        Self::parse(&text)
    }

    /// Parse mountinfo text (proc_pid_mountinfo(5)). A hierarchy mounted more than once is taken
    /// once, preferring a mount under `/sys/fs/cgroup`.
    pub fn parse(mountinfo: &str) -> Result<Self, CgroupError> {
        // (device, mount) for v1, so bind mounts of one hierarchy collapse to one entry.
        let mut v1: Vec<(String, V1Mount)> = Vec::new();
        let mut unified: Option<PathBuf> = None;
        for (index, line) in mountinfo.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let err = |reason| CgroupError::ParseMountinfo { line: index + 1, reason };
            let (pre, post) = line.split_once(" - ").ok_or(err("no ' - ' separator"))?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 6 {
                return Err(err("fewer than 6 fields before the separator"));
            }
            if post.len() < 3 {
                return Err(err("fewer than 3 fields after the separator"));
            }
            let device = pre[2];
            let mount_point = PathBuf::from(unescape_mountinfo(pre[4]));
            let (fstype, super_options) = (post[0], post[2]);
            match fstype {
                "cgroup2" => {
                    let better = match &unified {
                        None => true,
                        Some(old) => prefer_mount(&mount_point, old),
                    };
                    if better {
                        unified = Some(mount_point);
                    }
                }
                "cgroup" => {
                    let mount = V1Mount {
                        mount_point,
                        options: super_options.split(',').map(str::to_owned).collect(),
                    };
                    match v1.iter_mut().find(|(d, _)| d == device) {
                        Some((_, old)) => {
                            if prefer_mount(&mount.mount_point, &old.mount_point) {
                                *old = mount;
                            }
                        }
                        None => v1.push((device.to_owned(), mount)),
                    }
                }
                _ => {}
            }
        }
        Ok(Mounts { unified, v1: v1.into_iter().map(|(_, m)| m).collect() })
    }

    /// The layout these mounts make; `None` when no cgroup filesystem is mounted.
    pub fn layout(&self) -> Option<Layout> {
        let v1_controllers = self
            .v1
            .iter()
            .any(|m| Controller::ALL.iter().any(|c| m.has(c.v1_name())) || m.has("cpuacct"));
        match (&self.unified, v1_controllers) {
            (Some(_), true) => Some(Layout::Hybrid),
            (Some(_), false) => Some(Layout::Unified),
            (None, _) if !self.v1.is_empty() => Some(Layout::Legacy),
            (None, _) => None,
        }
    }

    /// The v1 hierarchy carrying `controller`.
    pub fn v1_with(&self, controller: &str) -> Option<&V1Mount> {
        self.v1.iter().find(|m| m.has(controller))
    }
}

fn prefer_mount(new: &Path, old: &Path) -> bool {
    new.starts_with("/sys/fs/cgroup") && !old.starts_with("/sys/fs/cgroup")
}

/// Undo mountinfo's octal escapes (`\040` for space, `\011`, `\012`, `\134`).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                bytes[i + 1..i + 4].iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    V2,
    V1,
}

/// One hierarchy nodes are created in.
#[derive(Debug, Clone)]
struct Hierarchy {
    kind: Kind,
    /// Mount point joined with the configured parent path.
    parent_dir: PathBuf,
    /// Mount point.
    root: PathBuf,
}

#[derive(Debug)]
struct Inner {
    layout: Layout,
    parent: PathBuf,
    /// v2 first when present, then each distinct v1 hierarchy used.
    hierarchies: Vec<Hierarchy>,
    /// Index into `hierarchies` per controller (in `Controller::ALL` order); `None` = unavailable.
    backends: [Option<usize>; 4],
    /// v1 cpuacct hierarchy, for CPU usage when the cpu controller is not in cgroup2.
    cpuacct: Option<usize>,
    /// v1 freezer hierarchy, used only without cgroup2 (whose `cgroup.freeze` is preferred).
    freezer: Option<usize>,
    /// The hierarchy of the identity node.
    identity: usize,
    /// v2 controllers to enable along the parent chain.
    v2_controllers: Vec<Controller>,
}

impl Inner {
    fn backend(&self, controller: Controller) -> Option<(usize, &Hierarchy)> {
        let slot = Controller::ALL.iter().position(|c| *c == controller)?;
        let index = self.backends[slot]?;
        Some((index, self.hierarchies.get(index)?))
    }

    fn has_v2(&self) -> bool {
        self.hierarchies.first().is_some_and(|h| h.kind == Kind::V2)
    }
}

/// Creates, opens and removes the cgroup nodes of zones and containers under one parent path.
#[derive(Debug, Clone)]
pub struct CgroupManager {
    inner: Arc<Inner>,
}

impl CgroupManager {
    /// Detect the layout from `/proc/self/mountinfo`; `parent` is a relative path (e.g. "rauha"
    /// or "rauha-test-1234/x") under which all nodes live, in every hierarchy used.
    pub fn detect(parent: &str) -> Result<Self, CgroupError> {
        Self::with_mounts(parent, &Mounts::from_proc()?)
    }

    /// Same as [`detect`](Self::detect) with explicit mounts (for tests and unusual hosts). Reads
    /// the cgroup2 root's `cgroup.controllers` to see which controllers cgroup2 offers.
    pub fn with_mounts(parent: &str, mounts: &Mounts) -> Result<Self, CgroupError> {
        validate_relative(parent)?;
        let layout = mounts.layout().ok_or(CgroupError::NoCgroupMounts)?;
        let parent = PathBuf::from(parent);
        let mut hierarchies = Vec::new();
        let v2_offered = match &mounts.unified {
            Some(root) => {
                hierarchies.push(Hierarchy {
                    kind: Kind::V2,
                    parent_dir: root.join(&parent),
                    root: root.clone(),
                });
                read_controllers(&root.join("cgroup.controllers"))?
            }
            None => Vec::new(),
        };
        let mut use_v1 = |mount: &V1Mount| -> usize {
            match hierarchies.iter().position(|h| h.root == mount.mount_point) {
                Some(index) => index,
                None => {
                    hierarchies.push(Hierarchy {
                        kind: Kind::V1,
                        parent_dir: mount.mount_point.join(&parent),
                        root: mount.mount_point.clone(),
                    });
                    hierarchies.len() - 1
                }
            }
        };
        let mut backends = [None; 4];
        let mut v2_controllers = Vec::new();
        for (slot, controller) in Controller::ALL.iter().enumerate() {
            if let Some(mount) = mounts.v1_with(controller.v1_name()) {
                backends[slot] = Some(use_v1(mount));
            } else if mounts.unified.is_some()
                && v2_offered.iter().any(|c| c == controller.v2_name())
            {
                backends[slot] = Some(0);
                v2_controllers.push(*controller);
            }
        }
        let cpuacct = mounts.v1_with("cpuacct").map(&mut use_v1);
        let freezer = match mounts.unified {
            Some(_) => None,
            None => mounts.v1_with("freezer").map(&mut use_v1),
        };
        let identity = if mounts.unified.is_some() {
            0
        } else {
            // Legacy: prefer the hierarchy whose node is most likely to exist with members.
            let legacy_order =
                [Controller::Memory, Controller::Pids, Controller::Cpu, Controller::Io];
            let preferred = legacy_order
                .iter()
                .find_map(|c| mounts.v1_with(c.v1_name()))
                .or_else(|| mounts.v1.first());
            match preferred {
                Some(mount) => use_v1(mount),
                None => return Err(CgroupError::NoCgroupMounts),
            }
        };
        Ok(CgroupManager {
            inner: Arc::new(Inner {
                layout,
                parent,
                hierarchies,
                backends,
                cpuacct,
                freezer,
                identity,
                v2_controllers,
            }),
        })
    }

    /// What the host mounts.
    pub fn layout(&self) -> Layout {
        self.inner.layout
    }

    /// The parent path, relative to each hierarchy's root.
    pub fn parent(&self) -> &Path {
        &self.inner.parent
    }

    /// Where `controller`'s limits are written: the hierarchy's parent directory and whether it is
    /// cgroup2; `None` when the host offers the controller nowhere.
    pub fn controller_parent_dir(&self, controller: Controller) -> Option<(&Path, bool)> {
        self.inner.backend(controller).map(|(_, h)| (h.parent_dir.as_path(), h.kind == Kind::V2))
    }

    /// The parent directory in every hierarchy used (cgroup2 first).
    pub fn parent_dirs(&self) -> Vec<PathBuf> {
        self.inner.hierarchies.iter().map(|h| h.parent_dir.clone()).collect()
    }

    /// Create the parent nodes if missing (idempotent); on cgroup2 with controllers, enable them
    /// in `cgroup.subtree_control` from the mount root down to the parent itself.
    pub fn ensure_parent(&self) -> Result<(), CgroupError> {
        for h in &self.inner.hierarchies {
            let mut dir = h.root.clone();
            if h.kind == Kind::V2 {
                enable_controllers(&dir, &self.inner.v2_controllers)?;
            }
            for component in self.inner.parent.components() {
                dir.push(component);
                match fs::create_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(source) => return Err(CgroupError::CreateDir { path: dir, source }),
                }
                if h.kind == Kind::V2 {
                    enable_controllers(&dir, &self.inner.v2_controllers)?;
                }
            }
        }
        Ok(())
    }

    /// Create node `name` ("zone-7", or "zone-7/ctr-ab12" under an existing zone) in every
    /// hierarchy used and apply `limits`. All-or-nothing: on failure the directories this call
    /// created are removed. Requires [`ensure_parent`](Self::ensure_parent) to have run.
    pub fn create(&self, name: &str, limits: &Limits) -> Result<CgroupNode, CgroupError> {
        self.create_with_report(name, limits).map(|(node, _)| node)
    }

    /// [`create`](Self::create), also returning what `apply` wrote and what was unavailable.
    pub fn create_with_report(
        &self,
        name: &str,
        limits: &Limits,
    ) -> Result<(CgroupNode, AppliedLimits), CgroupError> {
        validate_relative(name)?;
        limits.validate()?;
        let dirs = self.node_dirs(name);
        let mut created: Vec<&Path> = Vec::new();
        let result = (|| {
            for (h, dir) in self.inner.hierarchies.iter().zip(&dirs) {
                if h.kind == Kind::V2 {
                    // Nested node: its zone must pass the controllers down. A write to an
                    // existing zone is not undone on failure; enabling controllers is harmless.
                    // A missing zone is left to mkdir to report.
                    if let Some(up) = dir.parent().filter(|up| *up != h.parent_dir && up.is_dir()) {
                        enable_controllers(up, &self.inner.v2_controllers)?;
                    }
                }
                fs::create_dir(dir)
                    .map_err(|source| CgroupError::CreateDir { path: dir.clone(), source })?;
                created.push(dir);
            }
            let node = self.node(name, dirs.clone())?;
            let applied = node.apply(limits)?;
            Ok((node, applied))
        })();
        if result.is_err() {
            // Best effort: the directories are fresh and empty, so rmdir fails only if someone
            // else raced a process into them; the original error is the one worth reporting.
            for dir in created.iter().rev() {
                let _ = fs::remove_dir(dir);
            }
        }
        result
    }

    /// Open an existing node; it must exist in every hierarchy used.
    pub fn open(&self, name: &str) -> Result<CgroupNode, CgroupError> {
        validate_relative(name)?;
        let dirs = self.node_dirs(name);
        if let Some(missing) = dirs.iter().find(|d| !d.is_dir()) {
            return Err(CgroupError::NotFound { path: missing.clone() });
        }
        self.node(name, dirs)
    }

    /// Whether node `name` exists in any hierarchy used (possibly only partly, e.g. after a crash
    /// in `create`; [`open`](Self::open) needs all, [`remove`](Self::remove) handles both).
    pub fn exists(&self, name: &str) -> bool {
        validate_relative(name).is_ok() && self.node_dirs(name).iter().any(|d| d.is_dir())
    }

    /// Names of direct child nodes of the parent in any hierarchy used, sorted; empty when the
    /// parent does not exist.
    pub fn children(&self) -> Result<Vec<String>, CgroupError> {
        let mut names = BTreeSet::new();
        for h in &self.inner.hierarchies {
            for dir in subdirs(&h.parent_dir, true)? {
                if let Some(name) = dir.file_name().and_then(|n| n.to_str()) {
                    names.insert(name.to_owned());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Kill every process in node `name` and its descendants, then remove its directories
    /// bottom-up in every hierarchy. A missing node is not an error. Uses `cgroup.kill` when the
    /// kernel has it, else freeze + SIGKILL each member until empty, waiting at most
    /// [`REMOVE_TIMEOUT`].
    pub fn remove(&self, name: &str) -> Result<(), CgroupError> {
        self.remove_with(name, KillMode::Auto)
    }

    fn remove_with(&self, name: &str, mode: KillMode) -> Result<(), CgroupError> {
        validate_relative(name)?;
        let dirs: Vec<(usize, PathBuf)> =
            self.node_dirs(name).into_iter().enumerate().filter(|(_, d)| d.is_dir()).collect();
        if dirs.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        self.kill_all(&dirs, mode, deadline)?;
        let mut first_error = None;
        for (_, dir) in &dirs {
            if let Err(e) = remove_tree(dir, deadline) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Remove all children, then the parent path itself in every hierarchy. Ancestors of the
    /// parent ("a" of "a/b") are removed too when empty; ones still holding other nodes are kept.
    pub fn remove_parent(&self) -> Result<(), CgroupError> {
        for child in self.children()? {
            self.remove(&child)?;
        }
        let depth = self.inner.parent.components().count();
        for h in &self.inner.hierarchies {
            let mut dir = h.parent_dir.clone();
            for level in 0..depth {
                match fs::remove_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    // An ancestor shared with other parents stays.
                    Err(e)
                        if level > 0
                            && matches!(
                                rustix::io::Errno::from_io_error(&e),
                                Some(rustix::io::Errno::BUSY | rustix::io::Errno::NOTEMPTY)
                            ) =>
                    {
                        break;
                    }
                    Err(source) => return Err(CgroupError::RemoveDir { path: dir, source }),
                }
                dir.pop();
            }
        }
        Ok(())
    }

    fn node_dirs(&self, name: &str) -> Vec<PathBuf> {
        self.inner.hierarchies.iter().map(|h| h.parent_dir.join(name)).collect()
    }

    fn node(&self, name: &str, dirs: Vec<PathBuf>) -> Result<CgroupNode, CgroupError> {
        let identity = dirs.get(self.inner.identity).cloned().ok_or(CgroupError::NoCgroupMounts)?;
        let cgroup_id = if self.inner.has_v2() {
            let stat = rustix::fs::statx(CWD, &identity, AtFlags::empty(), StatxFlags::INO)
                .map_err(|e| CgroupError::Stat { path: identity.clone(), source: e.into() })?;
            Some(stat.stx_ino)
        } else {
            None
        };
        Ok(CgroupNode {
            inner: Arc::clone(&self.inner),
            name: name.to_owned(),
            identity,
            dirs,
            cgroup_id,
        })
    }

    /// Stop every process under `dirs`: `cgroup.kill` if present (and allowed by `mode`), else
    /// freeze, SIGKILL each listed pid, thaw; repeat until no hierarchy lists a member.
    fn kill_all(
        &self,
        dirs: &[(usize, PathBuf)],
        mode: KillMode,
        deadline: Instant,
    ) -> Result<(), CgroupError> {
        let v2_dir = dirs
            .iter()
            .find(|(i, _)| self.inner.hierarchies[*i].kind == Kind::V2)
            .map(|(_, d)| d.as_path());
        if let (Some(dir), KillMode::Auto) = (v2_dir, mode) {
            let kill_file = dir.join("cgroup.kill");
            if kill_file.exists() && !collect_pids(dir)?.is_empty() {
                write_file(&kill_file, "1")?;
            }
        }
        // v1 freezer only lets SIGKILLed tasks die once thawed, so freeze/kill/thaw per round;
        // the freeze stops members from forking new ones between listing and signalling.
        let freeze_file = match v2_dir {
            Some(dir) => Some((dir.join("cgroup.freeze"), "1", "0")),
            None => self
                .inner
                .freezer
                .and_then(|f| dirs.iter().find(|(i, _)| *i == f))
                .map(|(_, d)| (d.join("freezer.state"), "FROZEN", "THAWED")),
        }
        .filter(|(path, _, _)| path.exists());
        loop {
            let mut pids = BTreeSet::new();
            for (_, dir) in dirs {
                pids.extend(collect_pids(dir)?);
            }
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(CgroupError::KillTimeout {
                    path: dirs.first().map(|(_, d)| d.clone()).unwrap_or_default(),
                    pids: pids.into_iter().collect(),
                    timeout: REMOVE_TIMEOUT,
                });
            }
            if let Some((path, frozen, _)) = &freeze_file {
                write_file(path, frozen)?;
            }
            let mut result = Ok(());
            for (_, dir) in dirs {
                // List again while frozen, so nothing forked since the first listing escapes.
                for pid in collect_pids(dir)? {
                    if let Err(e) = kill(pid, dir) {
                        result = Err(e);
                    }
                }
            }
            if let Some((path, _, thawed)) = &freeze_file {
                write_file(path, thawed)?;
            }
            result?;
            thread::sleep(POLL_INTERVAL);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillMode {
    /// `cgroup.kill` when present, else freeze + signal.
    Auto,
    /// Freeze + signal even when `cgroup.kill` exists (tests the fallback of older kernels).
    #[cfg_attr(not(test), allow(dead_code))]
    FreezeAndSignal,
}

fn kill(pid: i32, dir: &Path) -> Result<(), CgroupError> {
    // 0 = a member outside our pid namespace: not ours to signal from here.
    let Some(target) = Pid::from_raw(pid) else {
        return Ok(());
    };
    match rustix::process::kill_process(target, Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(CgroupError::Kill { pid, path: dir.to_owned(), source: e.into() }),
    }
}

/// A node of one zone or container, present in every hierarchy used.
#[derive(Debug, Clone)]
pub struct CgroupNode {
    inner: Arc<Inner>,
    name: String,
    identity: PathBuf,
    /// One per hierarchy, same order as `Inner::hierarchies`.
    dirs: Vec<PathBuf>,
    cgroup_id: Option<u64>,
}

/// One limit written by [`CgroupNode::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenLimit {
    pub controller: Controller,
    pub path: PathBuf,
    pub value: String,
}

/// A limit [`CgroupNode::apply`] could not set because the host lacks the interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnavailableLimit {
    pub controller: Controller,
    pub reason: String,
}

/// What [`CgroupNode::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedLimits {
    pub written: Vec<WrittenLimit>,
    pub unavailable: Vec<UnavailableLimit>,
}

/// Usage and limits of one node (recursive over its children, as the kernel counts them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    pub memory_usage_bytes: u64,
    /// `None` = unlimited.
    pub memory_limit_bytes: Option<u64>,
    pub pids_current: u64,
    /// `None` = unlimited.
    pub pids_max: Option<u64>,
    pub cpu_usage_usec: u64,
    /// On cgroup2 the smallest shares value mapping to the node's `cpu.weight`.
    pub cpu_shares: Option<u64>,
    /// On v1 the smallest io weight mapping to the node's blkio weight.
    pub io_weight: Option<u64>,
    pub oom_kills: u64,
    /// Fields this host cannot provide (left 0 / `None`), by field name.
    pub unavailable: Vec<&'static str>,
}

impl CgroupNode {
    /// The node's name relative to the parent.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Write `limits` in place. Controllers the host lacks are listed in `unavailable`. Not atomic:
    /// on error, limits written before the failing one stay.
    pub fn apply(&self, limits: &Limits) -> Result<AppliedLimits, CgroupError> {
        limits.validate()?;
        let mut applied = AppliedLimits::default();
        for controller in Controller::ALL {
            let Some((index, h)) = self.inner.backend(controller) else {
                applied.unavailable.push(UnavailableLimit {
                    controller,
                    reason: format!(
                        "no v1 hierarchy carries {} and cgroup2 does not offer {}",
                        controller.v1_name(),
                        controller.v2_name()
                    ),
                });
                continue;
            };
            let dir = &self.dirs[index];
            let v2 = h.kind == Kind::V2;
            let target = match controller {
                Controller::Cpu if v2 => {
                    Some(("cpu.weight", shares_to_weight(limits.cpu_shares).to_string()))
                }
                Controller::Cpu => Some(("cpu.shares", limits.cpu_shares.to_string())),
                Controller::Memory => {
                    // Swap (v2 memory.swap.max, v1 memory.memsw.limit_in_bytes) is left alone:
                    // policy has no swap limit, and v1 rejects a memsw below memory anyway.
                    let (file, unlimited) =
                        if v2 { ("memory.max", "max") } else { ("memory.limit_in_bytes", "-1") };
                    Some((file, limit_value(limits.memory_bytes, unlimited)))
                }
                Controller::Pids => Some(("pids.max", limit_value(limits.pids_max, "max"))),
                Controller::Io => {
                    // Weight files exist only with a proportional io scheduler (iocost / BFQ,
                    // CFQ before 5.0), and then in non-root nodes only.
                    let candidates: [(&str, String); 2] = if v2 {
                        [
                            ("io.weight", format!("default {}", limits.io_weight)),
                            ("io.bfq.weight", limits.io_weight.to_string()),
                        ]
                    } else {
                        let mapped = io_weight_to_blkio(limits.io_weight).to_string();
                        [("blkio.weight", mapped.clone()), ("blkio.bfq.weight", mapped)]
                    };
                    let found = candidates.into_iter().find(|(f, _)| dir.join(f).exists());
                    if found.is_none() {
                        applied.unavailable.push(UnavailableLimit {
                            controller,
                            reason: format!(
                                "{} has neither {} nor {} (no proportional-weight io scheduler)",
                                dir.display(),
                                if v2 { "io.weight" } else { "blkio.weight" },
                                if v2 { "io.bfq.weight" } else { "blkio.bfq.weight" },
                            ),
                        });
                    }
                    found
                }
            };
            if let Some((file, value)) = target {
                let path = dir.join(file);
                write_file(&path, &value)?;
                applied.written.push(WrittenLimit { controller, path, value });
            }
        }
        Ok(applied)
    }

    /// Read usage and limits.
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        let mut stats = CgroupStats::default();
        match self.backend_dir(Controller::Memory) {
            Some((dir, true)) => {
                stats.memory_usage_bytes = read_u64(&dir.join("memory.current"))?;
                stats.memory_limit_bytes = read_max(&dir.join("memory.max"))?;
                match read_key(&dir.join("memory.events"), "oom_kill")? {
                    Some(n) => stats.oom_kills = n,
                    None => stats.unavailable.push("oom_kills"),
                }
            }
            Some((dir, false)) => {
                stats.memory_usage_bytes = read_u64(&dir.join("memory.usage_in_bytes"))?;
                let limit = read_u64(&dir.join("memory.limit_in_bytes"))?;
                stats.memory_limit_bytes = (limit < V1_MEMORY_UNLIMITED_MIN).then_some(limit);
                // v1 counts a kill only in the victim's own cgroup, not in its ancestors.
                match sum_key_below(dir, "memory.oom_control", "oom_kill")? {
                    Some(n) => stats.oom_kills = n,
                    None => stats.unavailable.push("oom_kills"),
                }
            }
            None => {
                stats.unavailable.extend(["memory_usage_bytes", "memory_limit_bytes", "oom_kills"])
            }
        }
        match self.backend_dir(Controller::Pids) {
            Some((dir, _)) => {
                stats.pids_current = read_u64(&dir.join("pids.current"))?;
                stats.pids_max = read_max(&dir.join("pids.max"))?;
            }
            None => stats.unavailable.extend(["pids_current", "pids_max"]),
        }
        match self.backend_dir(Controller::Cpu) {
            Some((dir, true)) => {
                stats.cpu_shares = Some(weight_to_shares(read_u64(&dir.join("cpu.weight"))?));
            }
            Some((dir, false)) => stats.cpu_shares = Some(read_u64(&dir.join("cpu.shares"))?),
            None => stats.unavailable.push("cpu_shares"),
        }
        // cgroup2 keeps cpu.stat usage_usec even without the cpu controller; v1 has cpuacct.
        let usage = match self.backend_dir(Controller::Cpu) {
            Some((dir, true)) => read_key(&dir.join("cpu.stat"), "usage_usec")?,
            _ => match self.inner.cpuacct.and_then(|i| self.dirs.get(i)) {
                Some(dir) => Some(read_u64(&dir.join("cpuacct.usage"))? / 1000),
                None if self.inner.has_v2() => {
                    read_key(&self.dirs[0].join("cpu.stat"), "usage_usec")?
                }
                None => None,
            },
        };
        match usage {
            Some(usec) => stats.cpu_usage_usec = usec,
            None => stats.unavailable.push("cpu_usage_usec"),
        }
        stats.io_weight = match self.backend_dir(Controller::Io) {
            Some((dir, true)) => {
                let file = ["io.weight", "io.bfq.weight"]
                    .into_iter()
                    .map(|f| dir.join(f))
                    .find(|p| p.exists());
                match file {
                    Some(path) => Some(read_default_weight(&path)?),
                    None => None,
                }
            }
            Some((dir, false)) => {
                let file = ["blkio.weight", "blkio.bfq.weight"]
                    .into_iter()
                    .map(|f| dir.join(f))
                    .find(|p| p.exists());
                match file {
                    Some(path) => Some(blkio_to_io_weight(read_default_weight(&path)?)),
                    None => None,
                }
            }
            None => None,
        };
        if stats.io_weight.is_none() {
            stats.unavailable.push("io_weight");
        }
        Ok(stats)
    }

    /// cgroup2 inode number = what `bpf_get_current_cgroup_id()` returns for tasks in the node;
    /// `None` on legacy hosts.
    pub fn cgroup_id(&self) -> Option<u64> {
        self.cgroup_id
    }

    /// The cgroup2 directory (identity), for cgroup-BPF attach and CLONE_INTO_CGROUP; on legacy
    /// hosts a v1 directory (memory's when mounted).
    pub fn identity_dir(&self) -> &Path {
        &self.identity
    }

    /// The node's directory in every hierarchy used (cgroup2 first).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The `cgroup.procs` a new process must join before exec: one per hierarchy (cgroup2 first).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Every member pid of the node and its descendants in any hierarchy, sorted, deduplicated.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = BTreeSet::new();
        for dir in &self.dirs {
            pids.extend(collect_pids(dir)?);
        }
        Ok(pids.into_iter().collect())
    }

    fn backend_dir(&self, controller: Controller) -> Option<(&Path, bool)> {
        let (index, h) = self.inner.backend(controller)?;
        Some((self.dirs.get(index)?.as_path(), h.kind == Kind::V2))
    }
}

fn limit_value(value: u64, unlimited: &str) -> String {
    if value == UNLIMITED { unlimited.to_owned() } else { value.to_string() }
}

/// Reject names that could leave the parent or are not plain relative paths.
fn validate_relative(name: &str) -> Result<(), CgroupError> {
    let err = |reason| CgroupError::InvalidName { name: name.to_owned(), reason };
    if name.is_empty() {
        return Err(err("empty"));
    }
    if name.starts_with('/') {
        return Err(err("absolute path"));
    }
    if name.contains('\0') {
        return Err(err("contains NUL"));
    }
    for component in name.split('/') {
        match component {
            "" => return Err(err("empty path component")),
            "." | ".." => return Err(err("'.' or '..' component")),
            _ => {}
        }
    }
    Ok(())
}

fn read_controllers(path: &Path) -> Result<Vec<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text.split_whitespace().map(str::to_owned).collect()),
        // An explicit mount set without cgroup2 files (e.g. a test's fake root) offers none.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(CgroupError::Read { path: path.to_owned(), source }),
    }
}

/// Enable `controllers` in `dir/cgroup.subtree_control`, writing only the missing ones (each on
/// its own so an error names the controller).
fn enable_controllers(dir: &Path, controllers: &[Controller]) -> Result<(), CgroupError> {
    if controllers.is_empty() {
        return Ok(());
    }
    let path = dir.join("cgroup.subtree_control");
    let enabled = read_controllers(&path)?;
    for controller in controllers {
        if !enabled.iter().any(|c| c == controller.v2_name()) {
            write_file(&path, &format!("+{}", controller.v2_name()))?;
        }
    }
    Ok(())
}

/// Write `value` in a single `write(2)` to an existing interface file (never creating one).
fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    let err =
        |source| CgroupError::Write { path: path.to_owned(), value: value.to_owned(), source };
    let mut file = fs::OpenOptions::new().write(true).open(path).map_err(err)?;
    file.write_all(value.as_bytes()).map_err(err)
}

fn read_string(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read { path: path.to_owned(), source })
}

fn parse_error(path: &Path, content: &str) -> CgroupError {
    CgroupError::Parse { path: path.to_owned(), content: content.to_owned() }
}

fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let text = read_string(path)?;
    text.trim().parse().map_err(|_| parse_error(path, &text))
}

/// A `max`-or-number file (`memory.max`, `pids.max`); `None` = `max`.
fn read_max(path: &Path) -> Result<Option<u64>, CgroupError> {
    let text = read_string(path)?;
    match text.trim() {
        "max" => Ok(None),
        n => n.parse().map(Some).map_err(|_| parse_error(path, &text)),
    }
}

/// A flat-keyed file (`key value` per line); `None` when the key is absent.
/// The sum of `key` in `file` over `dir` and every cgroup below it; `None` if `dir` lacks it.
fn sum_key_below(dir: &Path, file: &str, key: &str) -> Result<Option<u64>, CgroupError> {
    let Some(mut total) = read_key(&dir.join(file), key)? else { return Ok(None) };
    let entries = fs::read_dir(dir)
        .map_err(|source| CgroupError::ListDir { path: dir.to_owned(), source })?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            // A child removed meanwhile simply no longer counts.
            if let Ok(Some(n)) = sum_key_below(&entry.path(), file, key) {
                total += n;
            }
        }
    }
    Ok(Some(total))
}

fn read_key(path: &Path, key: &str) -> Result<Option<u64>, CgroupError> {
    let text = read_string(path)?;
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(' ')
            && k == key
        {
            return v.trim().parse().map(Some).map_err(|_| parse_error(path, &text));
        }
    }
    Ok(None)
}

/// A weight file: `default N` (plus per-device lines) or a bare `N`.
fn read_default_weight(path: &Path) -> Result<u64, CgroupError> {
    let text = read_string(path)?;
    let first = text.lines().next().unwrap_or_default().trim();
    let number = first.strip_prefix("default ").unwrap_or(first);
    number.trim().parse().map_err(|_| parse_error(path, &text))
}

/// Child directories of `dir`; with `missing_ok`, a missing `dir` has none.
fn subdirs(dir: &Path, missing_ok: bool) -> Result<Vec<PathBuf>, CgroupError> {
    let list_err = |source| CgroupError::ListDir { path: dir.to_owned(), source };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if missing_ok && e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(list_err(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(list_err)?;
        if entry.file_type().map_err(list_err)?.is_dir() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Member pids of `dir` and all its descendants. Directories vanishing meanwhile count as empty.
fn collect_pids(dir: &Path) -> Result<BTreeSet<i32>, CgroupError> {
    let mut pids = BTreeSet::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let path = dir.join("cgroup.procs");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(CgroupError::Read { path, source }),
        };
        for line in text.lines() {
            let pid = line.trim().parse().map_err(|_| parse_error(&path, &text))?;
            pids.insert(pid);
        }
        stack.extend(subdirs(&dir, true)?);
    }
    Ok(pids)
}

/// rmdir `dir` and its descendants, deepest first, retrying EBUSY (a member still exiting) until
/// `deadline`. Already-removed directories are fine.
fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    for child in subdirs(dir, true)? {
        remove_tree(&child, deadline)?;
    }
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if rustix::io::Errno::from_io_error(&e) == Some(rustix::io::Errno::BUSY)
                    && Instant::now() < deadline =>
            {
                thread::sleep(POLL_INTERVAL);
            }
            Err(source) => {
                return Err(CgroupError::RemoveDir { path: dir.to_owned(), source });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    // ---- pure: conversions ----

    #[test]
    fn shares_to_weight_endpoints_and_default() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
        // Out-of-range input is clamped, never underflows.
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(u64::MAX), 10_000);
    }

    #[test]
    fn weight_to_shares_inverts_every_weight() {
        for weight in IO_WEIGHT_RANGE {
            assert_eq!(shares_to_weight(weight_to_shares(weight)), weight, "weight {weight}");
        }
        assert_eq!(weight_to_shares(1), 2);
    }

    #[test]
    fn io_weight_maps_proportionally_to_blkio() {
        assert_eq!(io_weight_to_blkio(1), 10);
        assert_eq!(io_weight_to_blkio(10_000), 1000);
        assert_eq!(io_weight_to_blkio(5000), 10 + 4999 * 990 / 9999);
        assert_eq!(io_weight_to_blkio(0), 10);
        assert_eq!(io_weight_to_blkio(99_999), 1000);
        for blkio in BLKIO_WEIGHT_RANGE {
            assert_eq!(io_weight_to_blkio(blkio_to_io_weight(blkio)), blkio, "blkio {blkio}");
        }
    }

    #[test]
    fn limits_validation_rejects_out_of_range() {
        assert!(Limits::default().validate().is_ok());
        let bad = Limits { cpu_shares: 1, ..Limits::default() };
        assert!(matches!(
            bad.validate(),
            Err(CgroupError::InvalidLimit { field: "cpu_shares", value: 1, .. })
        ));
        let bad = Limits { io_weight: 10_001, ..Limits::default() };
        assert!(matches!(
            bad.validate(),
            Err(CgroupError::InvalidLimit { field: "io_weight", .. })
        ));
    }

    #[test]
    fn names_must_be_plain_relative_paths() {
        for good in ["zone-7", "zone-7/ctr-ab12", "rauha-test-1/x"] {
            assert!(validate_relative(good).is_ok(), "{good}");
        }
        for bad in ["", "/abs", "a//b", "a/", "..", "a/../b", "./a", "a\0b"] {
            assert!(validate_relative(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn error_messages_name_step_and_object() {
        let e = CgroupError::Write {
            path: PathBuf::from("/sys/fs/cgroup/pids/x/pids.max"),
            value: "7".into(),
            source: io::Error::from_raw_os_error(22),
        };
        assert!(e.to_string().starts_with("write 7 to /sys/fs/cgroup/pids/x/pids.max: "));
        let e = CgroupError::CreateDir {
            path: PathBuf::from("/x"),
            source: io::Error::from_raw_os_error(17),
        };
        assert!(e.to_string().starts_with("create cgroup /x: "));
    }

    // ---- pure: mountinfo ----

    const HYBRID: &str = "\
22 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const UNIFIED: &str = "\
25 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
29 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    // systemd-era legacy with co-mounted cpu,cpuacct and a bind mount of memory elsewhere.
    const LEGACY: &str = "\
24 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
25 24 0:22 / /sys/fs/cgroup/systemd rw,nosuid shared:5 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
28 24 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
29 24 0:26 / /sys/fs/cgroup/memory rw,nosuid shared:10 - cgroup cgroup rw,memory
30 24 0:27 / /sys/fs/cgroup/pids rw,nosuid shared:11 - cgroup cgroup rw,pids
31 24 0:28 / /sys/fs/cgroup/blkio rw,nosuid shared:12 - cgroup cgroup rw,blkio
32 24 0:29 / /sys/fs/cgroup/freezer rw,nosuid shared:13 - cgroup cgroup rw,freezer
90 60 0:26 / /mnt/mem\\040copy rw - cgroup cgroup rw,memory
";

    #[test]
    fn parses_hybrid() {
        let m = Mounts::parse(HYBRID).unwrap();
        assert_eq!(m.layout(), Some(Layout::Hybrid));
        assert_eq!(m.unified.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(
            m.v1_with("cpu").map(|v| v.mount_point.as_path()),
            Some(Path::new("/sys/fs/cgroup/cpu"))
        );
        assert_eq!(
            m.v1_with("cpuacct").map(|v| v.mount_point.as_path()),
            Some(Path::new("/sys/fs/cgroup/cpuacct"))
        );
        assert_eq!(
            m.v1_with("blkio").map(|v| v.mount_point.as_path()),
            Some(Path::new("/sys/fs/cgroup/blkio"))
        );
        assert_eq!(m.v1.len(), 9);
    }

    #[test]
    fn parses_unified() {
        let m = Mounts::parse(UNIFIED).unwrap();
        assert_eq!(m.layout(), Some(Layout::Unified));
        assert_eq!(m.unified.as_deref(), Some(Path::new("/sys/fs/cgroup")));
        assert!(m.v1.is_empty());
    }

    #[test]
    fn parses_legacy_with_comount_and_bind_duplicate() {
        let m = Mounts::parse(LEGACY).unwrap();
        assert_eq!(m.layout(), Some(Layout::Legacy));
        assert_eq!(m.unified, None);
        let cpu = m.v1_with("cpu").unwrap();
        assert_eq!(cpu.mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m.v1_with("cpuacct"), Some(cpu));
        // The bind mount of the memory hierarchy (same device) collapses into the preferred one.
        assert_eq!(m.v1.len(), 6);
        assert_eq!(m.v1_with("memory").unwrap().mount_point, Path::new("/sys/fs/cgroup/memory"));
        assert!(!m.v1_with("memory").unwrap().has("mem"));
    }

    #[test]
    fn unescapes_mount_points() {
        let text = "90 60 0:26 / /mnt/mem\\040copy rw - cgroup cgroup rw,memory\n";
        let m = Mounts::parse(text).unwrap();
        assert_eq!(m.v1[0].mount_point, Path::new("/mnt/mem copy"));
        assert_eq!(unescape_mountinfo("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape_mountinfo("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn no_cgroup_mounts_and_malformed_lines() {
        let m = Mounts::parse("22 28 0:20 / /sys rw - sysfs sysfs rw\n").unwrap();
        assert_eq!(m.layout(), None);
        assert!(matches!(
            CgroupManager::with_mounts("rauha", &m),
            Err(CgroupError::NoCgroupMounts)
        ));
        assert!(matches!(
            Mounts::parse("garbage without separator\n"),
            Err(CgroupError::ParseMountinfo { line: 1, .. })
        ));
    }

    #[test]
    fn cgroup2_without_v1_controllers_is_unified() {
        // Only a named (controller-less) v1 hierarchy beside cgroup2.
        let text = "\
1 0 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
2 1 0:27 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
";
        assert_eq!(Mounts::parse(text).unwrap().layout(), Some(Layout::Unified));
    }

    #[test]
    fn manager_resolution_on_fake_hybrid_roots() {
        // Fake roots without cgroup2 files: cgroup2 offers nothing, so v1 carries every limit.
        let m = Mounts::parse(HYBRID).unwrap();
        let mut fake = m.clone();
        fake.unified = Some(PathBuf::from("/nonexistent/unified"));
        let mgr = CgroupManager::with_mounts("rauha/zones", &fake).unwrap();
        assert_eq!(mgr.layout(), Layout::Hybrid);
        let (dir, v2) = mgr.controller_parent_dir(Controller::Memory).unwrap();
        assert_eq!(dir, Path::new("/sys/fs/cgroup/memory/rauha/zones"));
        assert!(!v2);
        let (dir, _) = mgr.controller_parent_dir(Controller::Io).unwrap();
        assert_eq!(dir, Path::new("/sys/fs/cgroup/blkio/rauha/zones"));
        // v2 + cpu + memory + pids + blkio + cpuacct; no freezer (cgroup2 freezes), no cpuset.
        let dirs = mgr.parent_dirs();
        assert_eq!(dirs.len(), 6);
        assert_eq!(dirs[0], Path::new("/nonexistent/unified/rauha/zones"));
        assert!(mgr.inner.v2_controllers.is_empty());
        assert!(CgroupManager::with_mounts("../escape", &m).is_err());
    }

    #[test]
    fn manager_resolution_on_fake_legacy_roots() {
        let m = Mounts::parse(LEGACY).unwrap();
        let mgr = CgroupManager::with_mounts("rauha", &m).unwrap();
        assert_eq!(mgr.layout(), Layout::Legacy);
        // cpu,cpuacct co-mounted is one hierarchy: memory, cpu+cpuacct, pids, blkio, freezer.
        assert_eq!(mgr.parent_dirs().len(), 5);
        assert_eq!(
            mgr.inner.hierarchies[mgr.inner.identity].root,
            Path::new("/sys/fs/cgroup/memory")
        );
        assert!(mgr.inner.freezer.is_some());
        assert_eq!(mgr.inner.cpuacct, mgr.inner.backend(Controller::Cpu).map(|(i, _)| i));
    }

    // ---- privileged: the real cgroupfs ----

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// A manager with its own parent, removed (with everything under it) on drop.
    struct TestParent {
        mgr: CgroupManager,
    }

    impl Drop for TestParent {
        fn drop(&mut self) {
            if let Err(e) = self.mgr.remove_parent() {
                eprintln!("cleanup of {}: {e}", self.mgr.parent().display());
            }
        }
    }

    fn skip_or_fail(reason: &str) {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("privileged cgroup test cannot run under CI=true: {reason}");
        }
        eprintln!("skipping privileged cgroup test: {reason}");
    }

    /// A fresh parent like `rauha-test-cg-<pid>-<n>/zones`, or `None` (after printing why) when
    /// this process may not manage cgroups.
    fn test_parent() -> Option<TestParent> {
        test_parent_with(CgroupManager::detect)
    }

    fn test_parent_with(
        make: impl FnOnce(&str) -> Result<CgroupManager, CgroupError>,
    ) -> Option<TestParent> {
        if !rustix::process::geteuid().is_root() {
            skip_or_fail("not running as root");
            return None;
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let parent = format!("rauha-test-cg-{}-{n}/zones", std::process::id());
        let mgr = match make(&parent) {
            Ok(mgr) => mgr,
            Err(e) => {
                skip_or_fail(&format!("no usable cgroup mounts: {e}"));
                return None;
            }
        };
        let guard = TestParent { mgr };
        match guard.mgr.ensure_parent() {
            Ok(()) => Some(guard),
            Err(e) => {
                skip_or_fail(&format!("cannot create cgroups: {e}"));
                None
            }
        }
    }

    fn limits() -> Limits {
        Limits { cpu_shares: 512, memory_bytes: 64 << 20, pids_max: 33, io_weight: 500 }
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    fn hybrid_v1_dir(mgr: &CgroupManager, controller: &str, name: &str) -> PathBuf {
        let mounts = Mounts::from_proc().unwrap();
        mounts.v1_with(controller).unwrap().mount_point.join(mgr.parent()).join(name)
    }

    /// `sleep 100` moved into `node` through every procs file, as the shim would do.
    fn spawn_member(node: &CgroupNode) -> Child {
        let child = Command::new("sleep").arg("100").spawn().unwrap();
        for procs in node.procs_files() {
            write_file(&procs, &child.id().to_string()).unwrap();
        }
        child
    }

    fn assert_killed(mut child: Child) {
        use std::os::unix::process::ExitStatusExt;
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }

    #[test]
    fn create_writes_limits_in_every_hierarchy() {
        let Some(t) = test_parent() else { return };
        let (node, applied) = t.mgr.create_with_report("zone-1", &limits()).unwrap();
        assert!(node.identity_dir().is_dir());
        assert!(node.dirs().iter().all(|d| d.is_dir()));
        for w in &applied.written {
            assert_eq!(read(&w.path), w.value, "{}", w.path.display());
        }
        match t.mgr.layout() {
            Layout::Hybrid | Layout::Legacy => {
                let mem = hybrid_v1_dir(&t.mgr, "memory", "zone-1");
                assert_eq!(read(&mem.join("memory.limit_in_bytes")), (64u64 << 20).to_string());
                let cpu = hybrid_v1_dir(&t.mgr, "cpu", "zone-1");
                assert_eq!(read(&cpu.join("cpu.shares")), "512");
                let pids = hybrid_v1_dir(&t.mgr, "pids", "zone-1");
                assert_eq!(read(&pids.join("pids.max")), "33");
                let blkio = hybrid_v1_dir(&t.mgr, "blkio", "zone-1");
                assert!(blkio.is_dir());
                assert!(hybrid_v1_dir(&t.mgr, "cpuacct", "zone-1").is_dir());
            }
            Layout::Unified => {
                let dir = node.identity_dir();
                assert_eq!(read(&dir.join("memory.max")), (64u64 << 20).to_string());
                assert_eq!(read(&dir.join("cpu.weight")), shares_to_weight(512).to_string());
                assert_eq!(read(&dir.join("pids.max")), "33");
            }
        }
        if t.mgr.layout() != Layout::Legacy {
            let id = node.cgroup_id().unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_eq!(id, fs::metadata(node.identity_dir()).unwrap().ino());
            assert!(node.identity_dir().join("cgroup.procs").exists());
            assert_eq!(node.procs_files()[0], node.identity_dir().join("cgroup.procs"));
        }
        // Every controller is either written or reported unavailable.
        for c in Controller::ALL {
            let written = applied.written.iter().any(|w| w.controller == c);
            let missing = applied.unavailable.iter().any(|u| u.controller == c);
            assert!(written ^ missing, "{c:?}: {applied:?}");
        }
        eprintln!("applied on this host: {applied:#?}");
    }

    #[test]
    fn apply_changes_values_in_place_and_stats_read_them() {
        let Some(t) = test_parent() else { return };
        let node = t.mgr.create("zone-a", &limits()).unwrap();
        let stats = node.stats().unwrap();
        assert_eq!(stats.memory_limit_bytes, Some(64 << 20));
        assert_eq!(stats.pids_max, Some(33));
        assert_eq!(stats.pids_current, 0);
        assert_eq!(stats.cpu_shares.map(shares_to_weight), Some(shares_to_weight(512)));

        let new =
            Limits { cpu_shares: 2048, memory_bytes: UNLIMITED, pids_max: 7, io_weight: 10_000 };
        let applied = node.apply(&new).unwrap();
        for w in &applied.written {
            // v1 takes "-1" for unlimited and shows its page-counter maximum instead.
            if w.value != "-1" {
                assert_eq!(read(&w.path), w.value);
            }
        }
        let stats = node.stats().unwrap();
        assert_eq!(stats.memory_limit_bytes, None);
        assert_eq!(stats.pids_max, Some(7));
        assert_eq!(stats.cpu_shares.map(shares_to_weight), Some(shares_to_weight(2048)));
        if applied.written.iter().any(|w| w.controller == Controller::Io) {
            assert_eq!(stats.io_weight, Some(10_000));
        }
        // Same node through open().
        let reopened = t.mgr.open("zone-a").unwrap();
        assert_eq!(reopened.cgroup_id(), node.cgroup_id());
        assert_eq!(reopened.stats().unwrap().pids_max, Some(7));
    }

    #[test]
    fn remove_kills_members_and_removes_dirs() {
        let Some(t) = test_parent() else { return };
        let node = t.mgr.create("zone-k", &limits()).unwrap();
        let child = spawn_member(&node);
        let pid = i32::try_from(child.id()).unwrap();
        assert_eq!(node.pids().unwrap(), vec![pid]);
        let stats = node.stats().unwrap();
        // Memory usage is not asserted: v1 does not move charges with a migrating task.
        assert_eq!(stats.pids_current, 1);
        t.mgr.remove("zone-k").unwrap();
        assert_killed(child);
        assert!(node.dirs().iter().all(|d| !d.exists()));
        assert!(!t.mgr.exists("zone-k"));
        // Missing node: Ok.
        t.mgr.remove("zone-k").unwrap();
    }

    #[test]
    fn remove_without_cgroup_kill_freezes_and_signals() {
        let Some(t) = test_parent() else { return };
        let node = t.mgr.create("zone-f", &limits()).unwrap();
        let inner = t.mgr.create("zone-f/ctr-1", &limits()).unwrap();
        let a = spawn_member(&node);
        let b = spawn_member(&inner);
        assert_eq!(node.pids().unwrap().len(), 2);
        t.mgr.remove_with("zone-f", KillMode::FreezeAndSignal).unwrap();
        assert_killed(a);
        assert_killed(b);
        assert!(node.dirs().iter().all(|d| !d.exists()));
    }

    #[test]
    fn children_lists_nodes() {
        let Some(t) = test_parent() else { return };
        assert!(t.mgr.children().unwrap().is_empty());
        t.mgr.create("zone-2", &limits()).unwrap();
        t.mgr.create("zone-1", &limits()).unwrap();
        t.mgr.create("zone-1/ctr-x", &limits()).unwrap();
        assert_eq!(t.mgr.children().unwrap(), vec!["zone-1", "zone-2"]);
        t.mgr.remove("zone-2").unwrap();
        assert_eq!(t.mgr.children().unwrap(), vec!["zone-1"]);
    }

    #[test]
    fn create_rolls_back_when_the_kernel_rejects_a_limit() {
        let Some(t) = test_parent() else { return };
        // Above PID_MAX_LIMIT (4194304): pids.max write fails with EINVAL after every mkdir.
        let bad = Limits { pids_max: 10_000_000, ..limits() };
        let err = t.mgr.create("zone-bad", &bad).unwrap_err();
        assert!(
            matches!(&err, CgroupError::Write { path, .. } if path.ends_with("pids.max")),
            "{err}"
        );
        assert!(!t.mgr.exists("zone-bad"));
        assert!(t.mgr.children().unwrap().is_empty());
    }

    #[test]
    fn create_rolls_back_on_conflicting_existing_node() {
        let Some(t) = test_parent() else { return };
        // A leftover in the last hierarchy only: create fails there and undoes the others.
        let last = t.mgr.parent_dirs().last().unwrap().join("zone-c");
        fs::create_dir(&last).unwrap();
        let err = t.mgr.create("zone-c", &limits()).unwrap_err();
        assert!(
            matches!(&err, CgroupError::CreateDir { path, source }
            if *path == last && source.kind() == io::ErrorKind::AlreadyExists),
            "{err}"
        );
        let dirs = t.mgr.node_dirs("zone-c");
        assert!(dirs[..dirs.len() - 1].iter().all(|d| !d.exists()));
        // The pre-existing one was not this call's to remove; open sees the partial node.
        assert!(last.is_dir());
        assert!(t.mgr.exists("zone-c"));
        assert!(matches!(t.mgr.open("zone-c"), Err(CgroupError::NotFound { .. })));
        t.mgr.remove("zone-c").unwrap();
        assert!(!last.exists());
    }

    #[test]
    fn nested_node_works_and_goes_with_its_zone() {
        let Some(t) = test_parent() else { return };
        t.mgr.create("zone-x", &limits()).unwrap();
        let ctr = t.mgr.create("zone-x/ctr-y", &Limits { pids_max: 5, ..limits() }).unwrap();
        assert!(ctr.dirs().iter().all(|d| d.is_dir()));
        assert_eq!(ctr.stats().unwrap().pids_max, Some(5));
        assert_ne!(ctr.cgroup_id(), t.mgr.open("zone-x").unwrap().cgroup_id());
        let child = spawn_member(&ctr);
        // The zone sees its container's member.
        let zone = t.mgr.open("zone-x").unwrap();
        assert_eq!(zone.pids().unwrap(), vec![i32::try_from(child.id()).unwrap()]);
        // A container needs its zone.
        assert!(matches!(
            t.mgr.create("zone-none/ctr", &limits()),
            Err(CgroupError::CreateDir { .. })
        ));
        t.mgr.remove("zone-x").unwrap();
        assert_killed(child);
        assert!(ctr.dirs().iter().all(|d| !d.exists()));
        assert!(zone.dirs().iter().all(|d| !d.exists()));
    }

    #[test]
    fn remove_parent_removes_everything_and_is_idempotent() {
        let Some(t) = test_parent() else { return };
        let node = t.mgr.create("zone-p", &limits()).unwrap();
        let child = spawn_member(&node);
        t.mgr.remove_parent().unwrap();
        assert_killed(child);
        for dir in t.mgr.parent_dirs() {
            assert!(!dir.exists(), "{}", dir.display());
            // The per-test top directory went too.
            assert!(!dir.parent().unwrap().exists(), "{}", dir.display());
        }
        t.mgr.remove_parent().unwrap();
        assert!(t.mgr.children().unwrap().is_empty());
    }

    #[test]
    fn legacy_layout_on_real_v1_hierarchies() {
        // Pretend cgroup2 is absent: identity falls back to a v1 node, kill uses the v1 freezer.
        let Some(t) = test_parent_with(|parent| {
            let mut mounts = Mounts::from_proc()?;
            if mounts.v1_with("freezer").is_none() {
                return Err(CgroupError::NoCgroupMounts);
            }
            mounts.unified = None;
            CgroupManager::with_mounts(parent, &mounts)
        }) else {
            return;
        };
        assert_eq!(t.mgr.layout(), Layout::Legacy);
        t.mgr.create("zone-l", &limits()).unwrap();
        let ctr = t.mgr.create("zone-l/ctr", &limits()).unwrap();
        assert_eq!(ctr.cgroup_id(), None);
        assert!(ctr.identity_dir().starts_with(hybrid_v1_dir(&t.mgr, "memory", "")));
        assert!(!ctr.identity_dir().starts_with("/sys/fs/cgroup/unified"));
        assert_eq!(ctr.stats().unwrap().pids_max, Some(33));
        let child = spawn_member(&ctr);
        t.mgr.remove("zone-l").unwrap();
        assert_killed(child);
        assert!(ctr.dirs().iter().all(|d| !d.exists()));
    }
}
