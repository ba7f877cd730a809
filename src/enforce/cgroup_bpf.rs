//! cgroup-BPF programs of one zone: the device allow-list (`cgroup/dev`), the sysctl write ban
//! (`cgroup/sysctl`) and the egress allow-list (`cgroup/connect4|6`, `cgroup/sendmsg4|6`),
//! attached to the zone's cgroup2 node so they cover every container cgroup below it.
//!
//! Each zone loads its own instance of the programs (one linked object) with its own maps: a
//! program attached to the zone node runs for every cgroup below it and needs no lookup to know
//! its zone (a program shared by all zones and keyed by `bpf_get_current_cgroup_id()` would see
//! container cgroup ids, and for sockets the cgroup that matters is the socket's, not the
//! caller's), and `policy apply` rewrites only that zone's maps, live, without re-attaching.
//! The price is one object load per zone (about 1.2 ms, nearly all of it the verifier: the
//! object has no CO-RE relocations, so libbpf never parses the kernel BTF);
//! [`LoadedZonePrograms`] lets the daemon pay it ahead of zone creation.
//!
//! Attachment is by bpf_link (multi-attach semantics, like `BPF_F_ALLOW_MULTI`, so other
//! programs on the node keep running); the links are owned here and detach when this value is
//! dropped or the daemon exits, unless they were pinned ([`ZoneCgroupPrograms::pin`]): then
//! they stay attached until the pins go, and a later daemon takes them over with
//! [`ZoneCgroupPrograms::adopt`].

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::enforce::bpf::skel::cgroup_zone::CgroupZoneSkelBuilder;
use crate::enforce::bpf::{BpfError, cgroup_id, map_keys, map_u32_entries};
use crate::enforce::bpf_abi::{
    AddrKey, DEV_ACC_MKNOD, DEV_ACC_READ, DEV_ACC_WRITE, DEV_ANY_MINOR, DEV_BLOCK, DEV_CHAR,
    DevKey, EGRESS_FULL_PREFIX, EgressKey, MapBytes, addr16,
};
use crate::enforce::bpf_events::EventMaps;
use crate::enforce::bpf_pin::{self, LinkTarget, PinError};

/// Character or block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    Char,
    Block,
}

/// One extra device a zone may use beyond the built-in set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceRule {
    pub kind: DeviceKind,
    pub major: u32,
    /// `None` allows every minor of `major`.
    pub minor: Option<u32>,
    pub read: bool,
    pub write: bool,
    pub mknod: bool,
}

/// One `allowed_egress` entry: a network and optionally one destination port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EgressRule {
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// `None` (or `Some(0)`) allows every port.
    pub port: Option<u16>,
}

/// One zone's programs, loaded and verified but not attached yet: the expensive half of
/// [`ZoneCgroupPrograms::attach`], which the daemon can do ahead of time (a warm spare) so that
/// zone creation pays only for filling maps and creating links.
#[derive(Debug)]
pub struct LoadedZonePrograms {
    programs: Vec<LoadedProgram>,
    zone: MapHandle,
    devices: MapHandle,
    egress: MapHandle,
    peers: MapHandle,
}

#[derive(Debug)]
struct LoadedProgram {
    name: &'static str,
    attach_type: libbpf_sys::bpf_attach_type,
    fd: OwnedFd,
}

/// What a zone's pinned links must run before a daemon adopts them: each program's name, attach
/// type and kernel tag, as this build loads it ([`LoadedZonePrograms::tags`]).
#[derive(Debug, Clone)]
pub struct ProgramTags(Vec<(&'static str, libbpf_sys::bpf_attach_type, [u8; 8])>);

/// The attached cgroup-BPF programs of one zone and the maps `policy apply` updates.
#[derive(Debug)]
pub struct ZoneCgroupPrograms {
    // Field order matters: links drop (detach) first, then the maps they read close.
    links: Vec<(&'static str, OwnedFd)>,
    zone_id: u32,
    cgroup_dir: PathBuf,
    zone: MapHandle,
    devices: MapHandle,
    egress: MapHandle,
    peers: MapHandle,
    device_entries: HashMap<DevKey, u32>,
    egress_entries: HashSet<EgressKey>,
    peer_entries: HashSet<AddrKey>,
}

const OBJECT: &str = "cgroup_zone";
const ZONE_MAP: &str = "rauha_zone";
const DEVICES_MAP: &str = "rauha_devices";
const EGRESS_MAP: &str = "rauha_egress";
const PEERS_MAP: &str = "rauha_peers";
const ALLOWED: [u8; 1] = [1];

impl LoadedZonePrograms {
    /// Opens the linked cgroup object, points its event maps at `events` and loads it.
    pub fn load(events: &EventMaps) -> Result<Self, BpfError> {
        let mut storage = MaybeUninit::uninit();
        let mut open = CgroupZoneSkelBuilder::default()
            .open(&mut storage)
            .map_err(|source| BpfError::OpenObject { object: OBJECT, source })?;
        events.share_with(OBJECT, &mut open.maps.rauha_events, &mut open.maps.rauha_rate)?;
        let skel = open.load().map_err(|source| BpfError::LoadObject { object: OBJECT, source })?;
        let dup_map = |map: &libbpf_rs::MapMut<'_>, name: &'static str| {
            MapHandle::try_from(map).map_err(|source| BpfError::DupMap { map: name, source })
        };
        let dup_prog = |prog: &libbpf_rs::ProgramMut<'_>,
                        name: &'static str,
                        attach_type: libbpf_sys::bpf_attach_type| {
            prog.as_fd()
                .try_clone_to_owned()
                .map(|fd| LoadedProgram { name, attach_type, fd })
                .map_err(|source| BpfError::DupProgram { program: name, source })
        };
        let progs = &skel.progs;
        let programs = vec![
            dup_prog(&progs.rauha_dev, "rauha_dev", libbpf_sys::BPF_CGROUP_DEVICE)?,
            dup_prog(&progs.rauha_sysctl, "rauha_sysctl", libbpf_sys::BPF_CGROUP_SYSCTL)?,
            dup_prog(
                &progs.rauha_connect4,
                "rauha_connect4",
                libbpf_sys::BPF_CGROUP_INET4_CONNECT,
            )?,
            dup_prog(
                &progs.rauha_connect6,
                "rauha_connect6",
                libbpf_sys::BPF_CGROUP_INET6_CONNECT,
            )?,
            dup_prog(&progs.rauha_sendmsg4, "rauha_sendmsg4", libbpf_sys::BPF_CGROUP_UDP4_SENDMSG)?,
            dup_prog(&progs.rauha_sendmsg6, "rauha_sendmsg6", libbpf_sys::BPF_CGROUP_UDP6_SENDMSG)?,
        ];
        // The skeleton (and its own fds) closes on return; the duplicated fds keep the
        // programs and maps alive.
        Ok(Self {
            programs,
            zone: dup_map(&skel.maps.rauha_zone, ZONE_MAP)?,
            devices: dup_map(&skel.maps.rauha_devices, DEVICES_MAP)?,
            egress: dup_map(&skel.maps.rauha_egress, EGRESS_MAP)?,
            peers: dup_map(&skel.maps.rauha_peers, PEERS_MAP)?,
        })
    }

    /// The tags of these programs, which pinned programs must match to be adopted.
    pub fn tags(&self) -> Result<ProgramTags, BpfError> {
        self.programs
            .iter()
            .map(|prog| {
                bpf_pin::program_tag(prog.fd.as_fd())
                    .map(|tag| (prog.name, prog.attach_type, tag))
                    .map_err(|source| BpfError::QueryProgram { program: prog.name, source })
            })
            .collect::<Result<_, _>>()
            .map(ProgramTags)
    }

    /// Names the zone, fills the maps from the policy and attaches every program to the
    /// zone's cgroup2 node `cgroup_dir` (fill first: the first checked operation sees the whole
    /// policy).
    pub fn attach(
        self,
        zone_id: u32,
        cgroup_dir: &Path,
        devices: &[DeviceRule],
        egress: &[EgressRule],
        peers: &[IpAddr],
    ) -> Result<ZoneCgroupPrograms, BpfError> {
        if zone_id == 0 {
            return Err(BpfError::ZoneIdZero);
        }
        let egress_wanted = egress_keys(egress)?;
        let device_wanted = device_entries(devices);
        let peer_wanted = peer_keys(peers);
        let cgroup = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(cgroup_dir)
            .map_err(|source| BpfError::OpenCgroup { path: cgroup_dir.to_owned(), source })?;
        update(&self.zone, ZONE_MAP, &0u32.to_ne_bytes(), &zone_id.to_ne_bytes())?;
        write_devices(&self.devices, &HashMap::new(), &device_wanted)?;
        write_set(&self.egress, EGRESS_MAP, &HashSet::new(), &egress_wanted)?;
        write_set(&self.peers, PEERS_MAP, &HashSet::new(), &peer_wanted)?;
        let links = self
            .programs
            .iter()
            .map(|prog| {
                link_cgroup(prog, &cgroup).map(|link| (prog.name, link)).map_err(|source| {
                    BpfError::Attach {
                        program: prog.name,
                        target: cgroup_dir.display().to_string(),
                        source,
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ZoneCgroupPrograms {
            links,
            zone_id,
            cgroup_dir: cgroup_dir.to_owned(),
            zone: self.zone,
            devices: self.devices,
            egress: self.egress,
            peers: self.peers,
            device_entries: device_wanted,
            egress_entries: egress_wanted,
            peer_entries: peer_wanted,
        })
    }
}

/// Attaches a program to a cgroup by BPF link. A link never replaces programs that others
/// attached to the node (multi-attach semantics, as BPF_F_ALLOW_MULTI), and it detaches when
/// its last fd closes: when the owner drops it or the daemon exits.
fn link_cgroup(prog: &LoadedProgram, cgroup: &std::fs::File) -> Result<OwnedFd, libbpf_rs::Error> {
    // SAFETY: both fds are valid for the duration of the call; null opts asks for defaults.
    let fd = unsafe {
        libbpf_sys::bpf_link_create(
            prog.fd.as_raw_fd(),
            cgroup.as_raw_fd(),
            prog.attach_type,
            std::ptr::null(),
        )
    };
    if fd < 0 {
        return Err(libbpf_rs::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a non-negative return of bpf_link_create is a new link fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl ZoneCgroupPrograms {
    /// Loads the zone's programs, fills their maps from the policy, and attaches them to the
    /// zone's cgroup2 node `cgroup_dir`. Deny events carry `zone_id` and go to `events`.
    /// Equivalent to [`LoadedZonePrograms::load`] then [`LoadedZonePrograms::attach`].
    pub fn attach(
        zone_id: u32,
        cgroup_dir: &Path,
        events: &EventMaps,
        devices: &[DeviceRule],
        egress: &[EgressRule],
        peers: &[IpAddr],
    ) -> Result<Self, BpfError> {
        if zone_id == 0 {
            return Err(BpfError::ZoneIdZero);
        }
        LoadedZonePrograms::load(events)?.attach(zone_id, cgroup_dir, devices, egress, peers)
    }

    /// Takes over the programs a daemon pinned in `dir` ([`Self::pin`]) for zone `zone_id`,
    /// after checking that each link is still attached to `cgroup_dir` and runs the program
    /// `expected` names, and rewrites the maps from the policy (the store is the truth; the
    /// pinned maps hold what the last daemon wrote). Every check comes before the first write.
    pub fn adopt(
        dir: &Path,
        expected: &ProgramTags,
        zone_id: u32,
        cgroup_dir: &Path,
        devices: &[DeviceRule],
        egress: &[EgressRule],
        peers: &[IpAddr],
    ) -> Result<Self, BpfError> {
        let egress_wanted = egress_keys(egress)?;
        let device_wanted = device_entries(devices);
        let peer_wanted = peer_keys(peers);
        let cgroup = cgroup_id(cgroup_dir)?;
        let mut links = Vec::new();
        for &(name, attach_type, tag) in &expected.0 {
            let path = dir.join(bpf_pin::link_name(name));
            let link = bpf_pin::open(&path)?;
            let target = LinkTarget::Cgroup { cgroup_id: cgroup, attach_type };
            bpf_pin::check_link(&path, link.as_fd(), target, tag)?;
            links.push((name, link));
        }
        let map = |name: &str| bpf_pin::open_map(&dir.join(bpf_pin::map_name(name)));
        let zone = map(ZONE_MAP)?;
        let pinned_zone = zone
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|source| BpfError::ReadMap { map: ZONE_MAP, source })?;
        if pinned_zone.as_deref() != Some(&zone_id.to_ne_bytes()[..]) {
            return Err(PinError::Mismatch {
                path: dir.join(bpf_pin::map_name(ZONE_MAP)),
                reason: format!("instance of another zone (want zone id {zone_id})"),
            }
            .into());
        }
        let devices_map = map(DEVICES_MAP)?;
        let egress_map = map(EGRESS_MAP)?;
        let peers_map = map(PEERS_MAP)?;
        let device_current: HashMap<DevKey, u32> =
            map_u32_entries(&devices_map, DEVICES_MAP)?.into_iter().collect();
        let egress_current: HashSet<EgressKey> = map_keys(&egress_map).into_iter().collect();
        let peer_current: HashSet<AddrKey> = map_keys(&peers_map).into_iter().collect();
        write_devices(&devices_map, &device_current, &device_wanted)?;
        write_set(&egress_map, EGRESS_MAP, &egress_current, &egress_wanted)?;
        write_set(&peers_map, PEERS_MAP, &peer_current, &peer_wanted)?;
        Ok(ZoneCgroupPrograms {
            links,
            zone_id,
            cgroup_dir: cgroup_dir.to_owned(),
            zone,
            devices: devices_map,
            egress: egress_map,
            peers: peers_map,
            device_entries: device_wanted,
            egress_entries: egress_wanted,
            peer_entries: peer_wanted,
        })
    }

    /// Pins the links and the maps in the new directory `dir`, so the programs stay attached
    /// after this value is dropped (and the daemon exits) until the directory is removed.
    /// Nothing stays pinned when it fails.
    pub fn pin(&self, dir: &Path) -> Result<(), PinError> {
        let links = self.links.iter().map(|(name, link)| (bpf_pin::link_name(name), link.as_fd()));
        let maps = [
            (ZONE_MAP, &self.zone),
            (DEVICES_MAP, &self.devices),
            (EGRESS_MAP, &self.egress),
            (PEERS_MAP, &self.peers),
        ]
        .into_iter()
        .map(|(name, map)| (bpf_pin::map_name(name), map.as_fd()));
        bpf_pin::pin_all(dir, &links.chain(maps).collect::<Vec<_>>())
    }

    /// The zone these programs serve.
    pub fn zone_id(&self) -> u32 {
        self.zone_id
    }

    /// How many programs are attached (six when complete).
    pub fn attached_programs(&self) -> usize {
        self.links.len()
    }

    /// The cgroup2 node they are attached to.
    pub fn cgroup_dir(&self) -> &Path {
        &self.cgroup_dir
    }

    /// Replaces the extra-device allow-list in place; takes effect for the next open.
    pub fn update_devices(&mut self, devices: &[DeviceRule]) -> Result<(), BpfError> {
        let wanted = device_entries(devices);
        write_devices(&self.devices, &self.device_entries, &wanted)?;
        self.device_entries = wanted;
        Ok(())
    }

    /// Replaces the egress rules and the peer-zone addresses in place, without re-attaching.
    pub fn update_network(
        &mut self,
        egress: &[EgressRule],
        peers: &[IpAddr],
    ) -> Result<(), BpfError> {
        let egress_wanted = egress_keys(egress)?;
        let peer_wanted = peer_keys(peers);
        write_set(&self.egress, EGRESS_MAP, &self.egress_entries, &egress_wanted)?;
        self.egress_entries = egress_wanted;
        write_set(&self.peers, PEERS_MAP, &self.peer_entries, &peer_wanted)?;
        self.peer_entries = peer_wanted;
        Ok(())
    }
}

/// Makes the device map hold exactly `wanted`, given that it holds `current`.
fn write_devices(
    map: &MapHandle,
    current: &HashMap<DevKey, u32>,
    wanted: &HashMap<DevKey, u32>,
) -> Result<(), BpfError> {
    // Remove first so a revoked device is never allowed longer than needed.
    for key in current.keys() {
        if !wanted.contains_key(key) {
            delete(map, DEVICES_MAP, key.bytes())?;
        }
    }
    for (key, mask) in wanted {
        if current.get(key) != Some(mask) {
            update(map, DEVICES_MAP, key.bytes(), &mask.to_ne_bytes())?;
        }
    }
    Ok(())
}

fn device_entries(devices: &[DeviceRule]) -> HashMap<DevKey, u32> {
    let mut out: HashMap<DevKey, u32> = HashMap::new();
    for rule in devices {
        let key = DevKey {
            kind: match rule.kind {
                DeviceKind::Char => DEV_CHAR,
                DeviceKind::Block => DEV_BLOCK,
            },
            major: rule.major,
            minor: rule.minor.unwrap_or(DEV_ANY_MINOR),
        };
        let mask = (if rule.read { DEV_ACC_READ } else { 0 })
            | (if rule.write { DEV_ACC_WRITE } else { 0 })
            | (if rule.mknod { DEV_ACC_MKNOD } else { 0 });
        *out.entry(key).or_default() |= mask;
    }
    out
}

/// LPM keys for the egress rules, host bits cleared so equal networks give equal keys.
fn egress_keys(rules: &[EgressRule]) -> Result<HashSet<EgressKey>, BpfError> {
    rules
        .iter()
        .map(|rule| {
            let (max, base) = match rule.addr {
                IpAddr::V4(_) => (32u32, 96u32),
                IpAddr::V6(_) => (128, 0),
            };
            let len = u32::from(rule.prefix_len);
            if len > max {
                return Err(BpfError::EgressPrefix {
                    addr: rule.addr,
                    prefix_len: rule.prefix_len,
                });
            }
            let addr_bits = base + len;
            let full = u128::from_be_bytes(addr16(rule.addr));
            let mask = if addr_bits == 0 { 0 } else { u128::MAX << (128 - addr_bits) };
            Ok(EgressKey {
                // The port and pad bits always take part in the match.
                prefixlen: EGRESS_FULL_PREFIX - 128 + addr_bits,
                port_be: rule.port.unwrap_or(0).to_be(),
                pad: 0,
                addr: (full & mask).to_be_bytes(),
            })
        })
        .collect()
}

fn peer_keys(peers: &[IpAddr]) -> HashSet<AddrKey> {
    peers.iter().map(|&ip| AddrKey { addr: addr16(ip) }).collect()
}

/// Makes the map hold exactly `wanted` (value 1), given that it holds `current`.
fn write_set<K: MapBytes + Eq + std::hash::Hash>(
    map: &MapHandle,
    name: &'static str,
    current: &HashSet<K>,
    wanted: &HashSet<K>,
) -> Result<(), BpfError> {
    for key in current.difference(wanted) {
        delete(map, name, key.bytes())?;
    }
    for key in wanted.difference(current) {
        update(map, name, key.bytes(), &ALLOWED)?;
    }
    Ok(())
}

fn update(map: &MapHandle, name: &'static str, key: &[u8], value: &[u8]) -> Result<(), BpfError> {
    map.update(key, value, MapFlags::ANY)
        .map_err(|source| BpfError::UpdateMap { map: name, source })
}

fn delete(map: &MapHandle, name: &'static str, key: &[u8]) -> Result<(), BpfError> {
    map.delete(key).map_err(|source| BpfError::DeleteMap { map: name, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_keys_mask_host_bits_and_map_ipv4() {
        let keys = egress_keys(&[EgressRule {
            addr: "10.1.2.3".parse().unwrap(),
            prefix_len: 16,
            port: Some(443),
        }])
        .unwrap();
        let key = keys.into_iter().next().unwrap();
        assert_eq!(key.prefixlen, 32 + 96 + 16);
        assert_eq!(key.port_be, 443u16.to_be());
        assert_eq!(key.addr[10..], [0xff, 0xff, 10, 1, 0, 0]);
    }

    #[test]
    fn egress_default_route_any_port() {
        let keys =
            egress_keys(&[EgressRule { addr: "::".parse().unwrap(), prefix_len: 0, port: None }])
                .unwrap();
        let key = keys.into_iter().next().unwrap();
        assert_eq!(key.prefixlen, 32);
        assert_eq!(key.addr, [0; 16]);
        assert_eq!(key.port_be, 0);
    }

    #[test]
    fn egress_prefix_too_long_is_rejected() {
        let err = egress_keys(&[EgressRule {
            addr: "10.0.0.0".parse().unwrap(),
            prefix_len: 33,
            port: None,
        }])
        .unwrap_err();
        assert!(matches!(err, BpfError::EgressPrefix { prefix_len: 33, .. }));
    }

    #[test]
    fn device_masks_merge() {
        let rule = |read, write| DeviceRule {
            kind: DeviceKind::Char,
            major: 10,
            minor: Some(229),
            read,
            write,
            mknod: false,
        };
        let entries = device_entries(&[rule(true, false), rule(false, true)]);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries.values().next(), Some(&(DEV_ACC_READ | DEV_ACC_WRITE)));
    }
}
