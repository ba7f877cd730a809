//! The BPF LSM layer: system-wide hooks that hold zone boundaries in the kernel's security
//! checks (`bpf/lsm.bpf.c`): `file_open` and `bprm_check_security` (files and binaries of
//! another zone's rootfs), `task_kill` and `ptrace_access_check` (tasks of another zone), and
//! `socket_connect` (zone pairs not in the allowed-comms map), plus the ban on opening another
//! cgroup's `cgroup.procs`.
//!
//! # Requirements
//! - Linux >= 6.1 (the oldest kernel Rauha supports; BPF LSM itself appeared in 5.7).
//! - `CONFIG_BPF_LSM=y` and `CONFIG_DEBUG_INFO_BTF=y` (`/sys/kernel/btf/vmlinux`): the programs
//!   are CO-RE and libbpf relocates them against the running kernel's BTF at load.
//! - `bpf` in the active LSM list, set at boot, e.g. `lsm=lockdown,capability,landlock,bpf`.
//!   Without it the programs load and attach without error but are never called, so
//!   [`LsmLayer::probe`] reads `/sys/kernel/security/lsm` (securityfs) and does not trust a
//!   successful load alone.
//! - Some kernels refuse BPF LSM programs outright (EPERM at load); the layer is then
//!   unavailable and the always-on layers (namespaces, Landlock, seccomp, cgroup-BPF) hold
//!   every boundary alone.
//!
//! # Example
//! ```no_run
//! use rauha::enforce::bpf_events::EventMaps;
//! use rauha::enforce::lsm::{LsmAvailability, LsmLayer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! if let LsmAvailability::Available = LsmLayer::probe() {
//!     let events = EventMaps::create()?;
//!     // Zone cgroups are /sys/fs/cgroup/rauha/zone-N: level 2.
//!     let lsm = LsmLayer::load_and_attach(2, &events)?;
//!     lsm.set_zone(4242, 1)?;
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;
use std::ffi::CStr;
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::enforce::bpf::skel::lsm::LsmSkelBuilder;
use crate::enforce::bpf::{BpfError, map_keys, map_u32_entries};
use crate::enforce::bpf_abi::{AddrKey, CommKey, MapBytes, ZONE_F_PTRACE_SELF, addr16};
use crate::enforce::bpf_events::EventMaps;
use crate::enforce::bpf_pin::{self, LinkTarget, PinError};

/// Where the kernel lists its active LSMs.
const LSM_LIST: &str = "/sys/kernel/security/lsm";
/// Where securityfs is mounted.
const SECURITYFS: &str = "/sys/kernel/security";
/// The kernel's BTF, needed for CO-RE relocation and to find the LSM hooks.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
const OBJECT: &str = "lsm";
const ZONES_MAP: &str = "rauha_zones";
const SB_ZONES_MAP: &str = "rauha_sb_zones";
const COMMS_MAP: &str = "rauha_comms";
const ZONE_IPS_MAP: &str = "rauha_zone_ips";
const ZONE_FLAGS_MAP: &str = "rauha_zone_flags";
const RODATA_MAP: &str = "rodata";

/// Whether this kernel runs BPF LSM programs, as found by [`LsmLayer::probe`].
#[derive(Debug)]
pub enum LsmAvailability {
    Available,
    Unavailable(LsmUnavailable),
}

/// Why the BPF LSM layer cannot be used on this kernel.
#[derive(Debug)]
pub enum LsmUnavailable {
    /// The kernel exposes no BTF (`CONFIG_DEBUG_INFO_BTF`).
    NoKernelBtf,
    /// The kernel's BTF has no `bpf_lsm_file_open` (`CONFIG_BPF_LSM` is off); the libbpf error.
    NoLsmHook { errno: i32 },
    /// `BPF_PROG_LOAD` of a trivial LSM program failed (EPERM: refused by this kernel; EINVAL:
    /// BPF LSM not built in).
    LoadRefused { errno: i32 },
    /// The trivial program loaded but `BPF_LINK_CREATE` refused to attach it.
    AttachRefused { errno: i32 },
    /// The active LSM list could not be read (securityfs not mounted?).
    LsmListUnreadable { source: io::Error },
    /// `bpf` is missing from the active LSM list (`lsm=...,bpf` not on the kernel command
    /// line): programs would attach but never run.
    NotInLsmList { active: String },
}

impl fmt::Display for LsmUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoKernelBtf => write!(f, "kernel has no btf ({VMLINUX_BTF} missing)"),
            Self::NoLsmHook { errno } => write!(
                f,
                "kernel btf has no bpf lsm hooks (config_bpf_lsm off?): {}",
                io::Error::from_raw_os_error(*errno)
            ),
            Self::LoadRefused { errno } => write!(
                f,
                "kernel refused to load a bpf lsm program: {}",
                io::Error::from_raw_os_error(*errno)
            ),
            Self::AttachRefused { errno } => write!(
                f,
                "kernel refused to attach a bpf lsm program: {}",
                io::Error::from_raw_os_error(*errno)
            ),
            Self::LsmListUnreadable { source } => {
                write!(f, "read active lsm list {LSM_LIST}: {source}")
            }
            Self::NotInLsmList { active } => {
                write!(f, "bpf is not an active lsm (active: {active}); boot with lsm=...,bpf")
            }
        }
    }
}

/// Per-zone switches of the LSM layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoneLsmFlags {
    /// Tasks of the zone may ptrace-attach to each other (a privileged policy's choice).
    pub ptrace_self: bool,
}

/// The maps of the LSM object the daemon keeps current, and its configuration.
#[derive(Debug)]
struct LsmMaps {
    zones: MapHandle,
    sb_zones: MapHandle,
    comms: MapHandle,
    zone_ips: MapHandle,
    zone_flags: MapHandle,
    /// The frozen configuration (`rauha_zone_level`), compared before pinned programs are
    /// adopted: a program's tag does not cover it.
    rodata: MapHandle,
}

impl LsmMaps {
    fn named(&self) -> [(&'static str, &MapHandle); 6] {
        [
            (ZONES_MAP, &self.zones),
            (SB_ZONES_MAP, &self.sb_zones),
            (COMMS_MAP, &self.comms),
            (ZONE_IPS_MAP, &self.zone_ips),
            (ZONE_FLAGS_MAP, &self.zone_flags),
            (RODATA_MAP, &self.rodata),
        ]
    }

    fn open_pinned(dir: &Path) -> Result<Self, PinError> {
        let open = |name: &str| bpf_pin::open_map(&dir.join(bpf_pin::map_name(name)));
        Ok(Self {
            zones: open(ZONES_MAP)?,
            sb_zones: open(SB_ZONES_MAP)?,
            comms: open(COMMS_MAP)?,
            zone_ips: open(ZONE_IPS_MAP)?,
            zone_flags: open(ZONE_FLAGS_MAP)?,
            rodata: open(RODATA_MAP)?,
        })
    }

    fn rodata(&self) -> Result<Option<Vec<u8>>, BpfError> {
        self.rodata
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|source| BpfError::ReadMap { map: RODATA_MAP, source })
    }
}

/// The LSM programs loaded (verified, CO-RE relocated) but not attached: attach them, or adopt
/// a pinned layer that runs the same programs with the same configuration.
#[derive(Debug)]
pub struct LoadedLsm {
    programs: Vec<(&'static str, OwnedFd)>,
    maps: LsmMaps,
}

/// The loaded and attached LSM programs and the maps the daemon keeps current.
#[derive(Debug)]
pub struct LsmLayer {
    // Links first: they detach before the maps close.
    links: Vec<(&'static str, OwnedFd)>,
    maps: LsmMaps,
}

impl LsmLayer {
    /// Finds out whether BPF LSM programs can enforce here: loads and attaches a trivial
    /// program (detached again at once) and checks that `bpf` is an active LSM.
    pub fn probe() -> LsmAvailability {
        match probe_inner() {
            Ok(()) => LsmAvailability::Available,
            Err(reason) => LsmAvailability::Unavailable(reason),
        }
    }

    /// Loads the LSM programs (CO-RE relocated against this kernel) without attaching them.
    /// `zone_level` is the cgroup2 depth of the zone nodes (root = 0; e.g. 2 for
    /// `/sys/fs/cgroup/rauha/zone-N`); deny events go to `events`.
    pub fn load(zone_level: u32, events: &EventMaps) -> Result<LoadedLsm, BpfError> {
        let mut storage = MaybeUninit::uninit();
        let mut open = LsmSkelBuilder::default()
            .open(&mut storage)
            .map_err(|source| BpfError::OpenObject { object: OBJECT, source })?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .ok_or(BpfError::MissingRodata { object: OBJECT })?
            .rauha_zone_level = zone_level;
        events.share_with(OBJECT, &mut open.maps.rauha_events, &mut open.maps.rauha_rate)?;
        let skel = open.load().map_err(|source| BpfError::LoadObject { object: OBJECT, source })?;
        let dup = |map: &libbpf_rs::MapMut<'_>, name: &'static str| {
            MapHandle::try_from(map).map_err(|source| BpfError::DupMap { map: name, source })
        };
        let dup_prog = |prog: &libbpf_rs::ProgramMut<'_>, name: &'static str| {
            prog.as_fd()
                .try_clone_to_owned()
                .map(|fd| (name, fd))
                .map_err(|source| BpfError::DupProgram { program: name, source })
        };
        let progs = &skel.progs;
        // The skeleton closes on return; the duplicated fds keep programs and maps alive.
        Ok(LoadedLsm {
            programs: vec![
                dup_prog(&progs.rauha_file_open, "rauha_file_open")?,
                dup_prog(&progs.rauha_bprm_check, "rauha_bprm_check")?,
                dup_prog(&progs.rauha_task_kill, "rauha_task_kill")?,
                dup_prog(&progs.rauha_ptrace_access_check, "rauha_ptrace_access_check")?,
                dup_prog(&progs.rauha_socket_connect, "rauha_socket_connect")?,
            ],
            maps: LsmMaps {
                zones: dup(&skel.maps.rauha_zones, ZONES_MAP)?,
                sb_zones: dup(&skel.maps.rauha_sb_zones, SB_ZONES_MAP)?,
                comms: dup(&skel.maps.rauha_comms, COMMS_MAP)?,
                zone_ips: dup(&skel.maps.rauha_zone_ips, ZONE_IPS_MAP)?,
                zone_flags: dup(&skel.maps.rauha_zone_flags, ZONE_FLAGS_MAP)?,
                rodata: dup(&skel.maps.rodata, RODATA_MAP)?,
            },
        })
    }

    /// [`Self::load`], then [`LoadedLsm::attach`].
    pub fn load_and_attach(zone_level: u32, events: &EventMaps) -> Result<Self, BpfError> {
        Self::load(zone_level, events)?.attach()
    }

    /// Pins the links and maps in the new directory `dir`: the programs stay attached after
    /// the daemon exits, until the directory is removed. Nothing stays pinned when it fails.
    pub fn pin(&self, dir: &Path) -> Result<(), PinError> {
        let links = self.links.iter().map(|(name, link)| (bpf_pin::link_name(name), link.as_fd()));
        let maps =
            self.maps.named().into_iter().map(|(name, map)| (bpf_pin::map_name(name), map.as_fd()));
        bpf_pin::pin_all(dir, &links.chain(maps).collect::<Vec<_>>())
    }

    /// The allowed-comms pairs in the map (an adopted layer's, for the daemon to start from).
    pub fn comm_pairs(&self) -> Vec<(u32, u32)> {
        map_keys::<CommKey>(&self.maps.comms)
            .into_iter()
            .map(|k| (k.src_zone, k.dst_zone))
            .collect()
    }

    /// The zone addresses in the map (an adopted layer's, for the daemon to start from).
    pub fn zone_ips(&self) -> Result<Vec<(IpAddr, u32)>, BpfError> {
        Ok(map_u32_entries::<AddrKey>(&self.maps.zone_ips, ZONE_IPS_MAP)?
            .into_iter()
            .map(|(key, zone)| (ip_of(key.addr), zone))
            .collect())
    }

    /// Deletes what an adopted layer still holds for zones and containers that are gone: every
    /// zone cgroup not in `cgroups`, zone id not in `zone_ids` and superblock not in
    /// `superblocks`. Returns how many entries went.
    pub fn retain(
        &self,
        cgroups: &HashSet<u64>,
        zone_ids: &HashSet<u32>,
        superblocks: &HashSet<u32>,
    ) -> Result<usize, BpfError> {
        let key32 = |k: &[u8]| <[u8; 4]>::try_from(k).ok().map(u32::from_ne_bytes);
        let key64 = |k: &[u8]| <[u8; 8]>::try_from(k).ok().map(u64::from_ne_bytes);
        Ok(delete_unless(&self.maps.zones, ZONES_MAP, |k| {
            key64(k).is_some_and(|id| cgroups.contains(&id))
        })? + delete_unless(&self.maps.zone_flags, ZONE_FLAGS_MAP, |k| {
            key32(k).is_some_and(|id| zone_ids.contains(&id))
        })? + delete_unless(&self.maps.sb_zones, SB_ZONES_MAP, |k| {
            key32(k).is_some_and(|dev| superblocks.contains(&dev))
        })?)
    }

    /// How many LSM programs are attached (five when complete).
    pub fn attached_programs(&self) -> usize {
        self.links.len()
    }

    /// Registers a zone: tasks in the cgroup2 node `cgroup_id` (and below) belong to `zone_id`.
    pub fn set_zone(&self, cgroup_id: u64, zone_id: u32) -> Result<(), BpfError> {
        nonzero(zone_id)?;
        update(&self.maps.zones, ZONES_MAP, &cgroup_id.to_ne_bytes(), &zone_id.to_ne_bytes())
    }

    /// Forgets a zone's cgroup.
    pub fn remove_zone(&self, cgroup_id: u64) -> Result<(), BpfError> {
        delete(&self.maps.zones, ZONES_MAP, &cgroup_id.to_ne_bytes())
    }

    /// Marks every file on the superblock `dev` (a container's overlay rootfs; see
    /// `crate::enforce::bpf::superblock_dev`) as belonging to `zone_id`.
    pub fn set_superblock_zone(&self, dev: u32, zone_id: u32) -> Result<(), BpfError> {
        nonzero(zone_id)?;
        update(&self.maps.sb_zones, SB_ZONES_MAP, &dev.to_ne_bytes(), &zone_id.to_ne_bytes())
    }

    /// Forgets a superblock (its container stopped and the overlay is unmounted).
    pub fn remove_superblock(&self, dev: u32) -> Result<(), BpfError> {
        delete(&self.maps.sb_zones, SB_ZONES_MAP, &dev.to_ne_bytes())
    }

    /// Lets `src_zone` connect to `dst_zone` (insert both directions when both zones allow).
    pub fn allow_comm(&self, src_zone: u32, dst_zone: u32) -> Result<(), BpfError> {
        let key = CommKey { src_zone, dst_zone };
        update(&self.maps.comms, COMMS_MAP, key.bytes(), &[1])
    }

    /// Withdraws a permission given by [`LsmLayer::allow_comm`].
    pub fn revoke_comm(&self, src_zone: u32, dst_zone: u32) -> Result<(), BpfError> {
        let key = CommKey { src_zone, dst_zone };
        delete(&self.maps.comms, COMMS_MAP, key.bytes())
    }

    /// Records that `ip` is an address of `zone_id` (a connect target the comms map governs).
    pub fn set_zone_ip(&self, ip: IpAddr, zone_id: u32) -> Result<(), BpfError> {
        nonzero(zone_id)?;
        let key = AddrKey { addr: addr16(ip) };
        update(&self.maps.zone_ips, ZONE_IPS_MAP, key.bytes(), &zone_id.to_ne_bytes())
    }

    /// Forgets a zone address.
    pub fn remove_zone_ip(&self, ip: IpAddr) -> Result<(), BpfError> {
        let key = AddrKey { addr: addr16(ip) };
        delete(&self.maps.zone_ips, ZONE_IPS_MAP, key.bytes())
    }

    /// Sets a zone's switches (live).
    pub fn set_zone_flags(&self, zone_id: u32, flags: ZoneLsmFlags) -> Result<(), BpfError> {
        nonzero(zone_id)?;
        let raw = if flags.ptrace_self { ZONE_F_PTRACE_SELF } else { 0 };
        update(&self.maps.zone_flags, ZONE_FLAGS_MAP, &zone_id.to_ne_bytes(), &raw.to_ne_bytes())
    }
}

impl LoadedLsm {
    /// Attaches every program (system-wide, by BPF link).
    pub fn attach(self) -> Result<LsmLayer, BpfError> {
        let links = self
            .programs
            .iter()
            .map(|(name, prog)| {
                attach_lsm_fd(prog).map(|link| (*name, link)).map_err(|errno| BpfError::Attach {
                    program: name,
                    target: "lsm".to_owned(),
                    source: libbpf_rs::Error::from_raw_os_error(errno),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(LsmLayer { links, maps: self.maps })
    }

    /// Takes over the layer [`LsmLayer::pin`] left in `dir` when every link runs one of these
    /// programs and its configuration equals this load's; the maps keep their entries (the
    /// daemon reconciles them, see [`LsmLayer::retain`]).
    pub fn adopt(&self, dir: &Path) -> Result<LsmLayer, BpfError> {
        let mut links = Vec::new();
        for (name, prog) in &self.programs {
            let tag = bpf_pin::program_tag(prog.as_fd())
                .map_err(|source| BpfError::QueryProgram { program: name, source })?;
            let path = dir.join(bpf_pin::link_name(name));
            let link = bpf_pin::open(&path)?;
            bpf_pin::check_link(&path, link.as_fd(), LinkTarget::Lsm, tag)?;
            links.push((*name, link));
        }
        let maps = LsmMaps::open_pinned(dir)?;
        if maps.rodata()? != self.maps.rodata()? {
            return Err(PinError::Mismatch {
                path: dir.join(bpf_pin::map_name(RODATA_MAP)),
                reason: "configuration (zone cgroup level) differs".to_owned(),
            }
            .into());
        }
        Ok(LsmLayer { links, maps })
    }
}

/// A 16-byte map address back as the daemon writes it: IPv4-mapped ones as IPv4.
fn ip_of(addr: [u8; 16]) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(addr);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

fn nonzero(zone_id: u32) -> Result<(), BpfError> {
    if zone_id == 0 {
        return Err(BpfError::ZoneIdZero);
    }
    Ok(())
}

fn update(map: &MapHandle, name: &'static str, key: &[u8], value: &[u8]) -> Result<(), BpfError> {
    map.update(key, value, MapFlags::ANY)
        .map_err(|source| BpfError::UpdateMap { map: name, source })
}

/// Deletes every key of `map` that `keep` refuses; how many went.
fn delete_unless(
    map: &MapHandle,
    name: &'static str,
    keep: impl Fn(&[u8]) -> bool,
) -> Result<usize, BpfError> {
    let stale: Vec<Vec<u8>> = map.keys().filter(|key| !keep(key)).collect();
    for key in &stale {
        delete(map, name, key)?;
    }
    Ok(stale.len())
}

/// Deleting an absent key is not an error: the caller's goal (no entry) holds.
fn delete(map: &MapHandle, name: &'static str, key: &[u8]) -> Result<(), BpfError> {
    match map.delete(key) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BpfError::DeleteMap { map: name, source }),
    }
}

fn probe_inner() -> Result<(), LsmUnavailable> {
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(LsmUnavailable::NoKernelBtf);
    }
    let hook = c"file_open";
    // SAFETY: `hook` is a NUL-terminated string that outlives the call; the function only
    // reads it and the kernel BTF.
    let btf_id =
        unsafe { libbpf_sys::libbpf_find_vmlinux_btf_id(hook.as_ptr(), libbpf_sys::BPF_LSM_MAC) };
    if btf_id < 0 {
        return Err(LsmUnavailable::NoLsmHook { errno: -btf_id });
    }
    let prog =
        load_trivial_lsm(btf_id as u32).map_err(|errno| LsmUnavailable::LoadRefused { errno })?;
    let _link = attach_lsm_fd(&prog).map_err(|errno| LsmUnavailable::AttachRefused { errno })?;
    // The program (and its link) close when this function returns; it allowed everything.
    ensure_securityfs();
    let active = std::fs::read_to_string(LSM_LIST)
        .map_err(|source| LsmUnavailable::LsmListUnreadable { source })?;
    if !lsm_list_has_bpf(&active) {
        return Err(LsmUnavailable::NotInLsmList { active: active.trim().to_owned() });
    }
    Ok(())
}

/// Mounts securityfs at `/sys/kernel/security` when the LSM list is not there (a minimal host
/// or container that never mounted it), as systemd would at boot. A failure is left for the
/// read of the list to report.
fn ensure_securityfs() {
    if Path::new(LSM_LIST).exists() {
        return;
    }
    let target = Path::new(SECURITYFS);
    match rustix::mount::mount(
        "securityfs",
        target,
        "securityfs",
        rustix::mount::MountFlags::NOSUID
            | rustix::mount::MountFlags::NODEV
            | rustix::mount::MountFlags::NOEXEC,
        None::<&CStr>,
    ) {
        Ok(()) => {
            tracing::info!(path = SECURITYFS, "mounted securityfs to read the active lsm list")
        }
        Err(error) => tracing::warn!(path = SECURITYFS, %error, "mount securityfs"),
    }
}

/// `lsm` is a comma-separated list such as `lockdown,capability,landlock,bpf`.
fn lsm_list_has_bpf(list: &str) -> bool {
    list.trim().split(',').any(|name| name == "bpf")
}

/// Loads `r0 = 0; exit` as an LSM program on `file_open`; the fd or the errno.
fn load_trivial_lsm(attach_btf_id: u32) -> Result<OwnedFd, i32> {
    let mov_r0_0 = libbpf_sys::bpf_insn {
        code: 0xb7, // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm 0
        ..Default::default()
    };
    let exit = libbpf_sys::bpf_insn {
        code: 0x95, // BPF_JMP | BPF_EXIT
        ..Default::default()
    };
    let insns = [mov_r0_0, exit];
    let mut opts = libbpf_sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        expected_attach_type: libbpf_sys::BPF_LSM_MAC,
        attach_btf_id,
        ..Default::default()
    };
    let name: &CStr = c"rauha_probe";
    let license: &CStr = c"GPL";
    // SAFETY: name and license are NUL-terminated, `insns` holds insns.len() instructions and
    // `opts` is a fully initialised options struct with `sz` set; all outlive the call.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_LSM,
            name.as_ptr(),
            license.as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            &mut opts,
        )
    };
    if fd < 0 {
        return Err(-fd);
    }
    // SAFETY: a non-negative return of bpf_prog_load is a new program fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attaches a loaded LSM program fd by BPF link; the link fd or the errno.
fn attach_lsm_fd(prog: &OwnedFd) -> Result<OwnedFd, i32> {
    // SAFETY: `prog` is a valid program fd for the duration of the call; a null opts pointer
    // asks for defaults.
    let fd = unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), 0, libbpf_sys::BPF_LSM_MAC, std::ptr::null())
    };
    if fd < 0 {
        return Err(-fd);
    }
    // SAFETY: a non-negative return of bpf_link_create is a new link fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// libbpf's log lines while the test runs (libbpf's print callback is process-global).
    static LIBBPF_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

    fn capture(_level: libbpf_rs::PrintLevel, msg: String) {
        if let Ok(mut log) = LIBBPF_LOG.lock() {
            log.push(msg);
        }
    }

    /// Root is needed for bpf(2); without it skip, or fail under CI=true.
    fn privileged() -> bool {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return true;
        }
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true: the lsm tests need root");
        eprintln!("skipped: needs root");
        false
    }

    /// The programs this object must contain, as libbpf names them in its log.
    const PROGRAMS: [&str; 5] = [
        "rauha_file_open",
        "rauha_bprm_check",
        "rauha_task_kill",
        "rauha_ptrace_access_check",
        "rauha_socket_connect",
    ];

    #[test]
    fn lsm_object_relocates_against_this_kernel_and_load_outcome_is_explained() {
        if !privileged() {
            return;
        }
        assert!(Path::new(VMLINUX_BTF).exists(), "kernel btf is required");
        let previous = libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Debug, capture)));
        let events = EventMaps::create().unwrap();
        let result = LsmLayer::load_and_attach(2, &events);
        libbpf_rs::set_print(previous);
        let log = LIBBPF_LOG.lock().unwrap().join("");

        // CO-RE: libbpf relocates every program against the running kernel's BTF before it
        // loads any of them. Each program has relocations, all resolved, none poisoned.
        for prog in PROGRAMS {
            let relos: Vec<&str> =
                log.lines().filter(|l| l.contains(&format!("prog '{prog}': relo #"))).collect();
            assert!(!relos.is_empty(), "no co-re relocations logged for {prog}:\n{log}");
            assert!(
                relos.iter().any(|l| l.contains("patched insn")),
                "{prog}: no instruction patched:\n{}",
                relos.join("\n")
            );
            for line in &relos {
                assert!(
                    !line.contains("failed") && !line.contains("poison"),
                    "{prog}: unresolved relocation: {line}"
                );
            }
        }
        assert!(!log.contains("failed to relocate"), "{log}");

        if std::env::var_os("RAUHA_SHOW_LIBBPF_LOG").is_some() {
            eprintln!("{log}");
        }
        match result {
            Ok(layer) => {
                // A kernel that runs BPF LSM (the VM tests): everything attached.
                assert_eq!(layer.attached_programs(), PROGRAMS.len());
            }
            Err(BpfError::LoadObject { source, .. }) => {
                // This machine: the kernel refuses BPF_PROG_LOAD for LSM programs. It must be
                // that refusal, at the first program load, after relocation succeeded.
                assert_eq!(source.kind(), libbpf_rs::ErrorKind::PermissionDenied, "{source:#}");
                let refusal = log
                    .lines()
                    .find(|l| l.contains("BPF program load failed"))
                    .unwrap_or_else(|| panic!("no load failure in the log:\n{log}"));
                assert!(
                    refusal.contains("EPERM") || refusal.contains("Operation not permitted"),
                    "{refusal}"
                );
                // EPERM before verification: no verifier log was produced.
                assert!(!log.contains("-- BEGIN PROG LOAD LOG --"), "{log}");
                eprintln!("lsm load refused as expected: {refusal}");
            }
            Err(other) => panic!("unexpected lsm failure: {other}"),
        }
    }

    #[test]
    fn probe_reports_availability_with_reason() {
        if !privileged() {
            return;
        }
        let expect_available = std::env::var("RAUHA_EXPECT_BPF_LSM").as_deref() == Ok("1");
        match LsmLayer::probe() {
            LsmAvailability::Available => {
                assert!(expect_available, "bpf lsm unexpectedly available");
                let list = std::fs::read_to_string(LSM_LIST).unwrap();
                assert!(lsm_list_has_bpf(&list));
            }
            LsmAvailability::Unavailable(reason) => {
                eprintln!("bpf lsm unavailable: {reason}");
                assert!(!expect_available, "bpf lsm expected: {reason}");
                if let LsmUnavailable::LoadRefused { errno } = reason {
                    assert!(errno == libc::EPERM || errno == libc::EINVAL, "errno {errno}");
                }
            }
        }
    }

    #[test]
    fn map_addresses_read_back_as_written() {
        for ip in ["10.89.0.7", "fd00::7"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_of(addr16(ip)), ip);
        }
    }

    #[test]
    fn lsm_list_parsing() {
        assert!(lsm_list_has_bpf("lockdown,capability,landlock,bpf\n"));
        assert!(!lsm_list_has_bpf("lockdown,capability,landlock"));
        assert!(!lsm_list_has_bpf("bpfx,capability"));
    }

    #[test]
    fn unavailable_reasons_are_lowercase_and_name_the_cause() {
        let text = LsmUnavailable::LoadRefused { errno: libc::EPERM }.to_string();
        assert!(text.starts_with("kernel refused to load a bpf lsm program"));
        assert!(text.contains("not permitted"));
        let text =
            LsmUnavailable::NotInLsmList { active: "capability,landlock".into() }.to_string();
        assert!(text.contains("lsm=...,bpf"));
    }
}
