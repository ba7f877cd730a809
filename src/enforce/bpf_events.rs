//! Deny events from every BPF layer: the shared ring buffer and per-zone rate-limit maps, and a
//! consumer thread that decodes records into [`DenyEvent`]s on a std channel.
//!
//! The consumer blocks in `epoll_wait` on its own thread so the daemon's smol executor never
//! blocks; the daemon bridges the channel into its event bus.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use libbpf_rs::{MapCore, MapHandle, MapType, OpenMapMut, RingBufferBuilder};

use crate::enforce::bpf::BpfError;
use crate::enforce::bpf_abi::{
    DEV_ACC_MKNOD, DEV_ACC_READ, DEV_ACC_WRITE, DEV_BLOCK, DenyEventRaw, EVENTS_RING_BYTES,
    RATE_MAX_ZONES, RateState,
};
use crate::enforce::bpf_pin::{self, PinError};

/// Name of the ring-buffer map in every BPF object.
const RING_MAP: &str = "rauha_events";
/// Name of the rate-limit map in every BPF object.
const RATE_MAP: &str = "rauha_rate";
/// How long the consumer waits in one poll before checking whether it should stop.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The ring buffer and rate-limit maps, created once and shared by every BPF object.
#[derive(Debug)]
pub struct EventMaps {
    ring: MapHandle,
    rate: MapHandle,
}

impl EventMaps {
    /// Creates the shared maps (same types and sizes as declared in `bpf/events.bpf.h`).
    pub fn create() -> Result<Self, BpfError> {
        let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        let ring =
            MapHandle::create(MapType::RingBuf, Some(RING_MAP), 0, 0, EVENTS_RING_BYTES, &opts)
                .map_err(|source| BpfError::CreateMap { map: RING_MAP, source })?;
        let rate = MapHandle::create(
            MapType::LruHash,
            Some(RATE_MAP),
            std::mem::size_of::<u32>() as u32,
            std::mem::size_of::<RateState>() as u32,
            RATE_MAX_ZONES,
            &opts,
        )
        .map_err(|source| BpfError::CreateMap { map: RATE_MAP, source })?;
        Ok(Self { ring, rate })
    }

    /// Opens the maps [`Self::pin`] pinned in `dir`, checking they have the shape this build
    /// creates (a changed ring size or record layout means the pins are another version's).
    pub fn open_pinned(dir: &Path) -> Result<Self, BpfError> {
        let open = |name: &str, ty: MapType, key: u32, value: u32, max: u32| {
            let path = dir.join(bpf_pin::map_name(name));
            let map = bpf_pin::open_map(&path)?;
            let shape = (map.map_type(), map.key_size(), map.value_size(), map.max_entries());
            if shape != (ty, key, value, max) {
                return Err(PinError::Mismatch {
                    path,
                    reason: format!(
                        "map type, key size, value size, entries {shape:?}, want {:?}",
                        (ty, key, value, max)
                    ),
                });
            }
            Ok(map)
        };
        Ok(Self {
            ring: open(RING_MAP, MapType::RingBuf, 0, 0, EVENTS_RING_BYTES)?,
            rate: open(
                RATE_MAP,
                MapType::LruHash,
                std::mem::size_of::<u32>() as u32,
                std::mem::size_of::<RateState>() as u32,
                RATE_MAX_ZONES,
            )?,
        })
    }

    /// Pins both maps in the new directory `dir`, so pinned programs that write to them and
    /// the next daemon that reads them share one ring.
    pub fn pin(&self, dir: &Path) -> Result<(), PinError> {
        use std::os::fd::AsFd;
        bpf_pin::pin_all(
            dir,
            &[
                (bpf_pin::map_name(RING_MAP), self.ring.as_fd()),
                (bpf_pin::map_name(RATE_MAP), self.rate.as_fd()),
            ],
        )
    }

    /// Another handle on the same maps (new fds), e.g. for loading objects on another thread.
    pub fn try_clone(&self) -> Result<Self, BpfError> {
        let dup = |map: &MapHandle, name: &'static str| {
            MapHandle::try_from(map).map_err(|source| BpfError::DupMap { map: name, source })
        };
        Ok(Self { ring: dup(&self.ring, RING_MAP)?, rate: dup(&self.rate, RATE_MAP)? })
    }

    /// Points an opened (not yet loaded) object's event maps at the shared ones.
    pub(crate) fn share_with(
        &self,
        object: &'static str,
        ring: &mut OpenMapMut<'_>,
        rate: &mut OpenMapMut<'_>,
    ) -> Result<(), BpfError> {
        use std::os::fd::AsFd;
        ring.reuse_fd(self.ring.as_fd()).map_err(|source| BpfError::ReuseMap {
            object,
            map: RING_MAP,
            source,
        })?;
        rate.reuse_fd(self.rate.as_fd()).map_err(|source| BpfError::ReuseMap {
            object,
            map: RATE_MAP,
            source,
        })
    }

    /// Starts the consumer thread; events go to `tx` until the returned handle is dropped or
    /// the receiver is gone.
    pub fn spawn_consumer(&self, tx: mpsc::Sender<DenyEvent>) -> Result<EventConsumer, BpfError> {
        let ring = MapHandle::try_from(&self.ring)
            .map_err(|source| BpfError::DupMap { map: RING_MAP, source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("rauha-bpf-events".to_owned())
            .spawn(move || consume(ring, tx, thread_stop, ready_tx))
            .map_err(|source| BpfError::SpawnThread { source })?;
        // The ring buffer is set up on the thread (libbpf's ring_buffer is not Send); wait for
        // its verdict so a setup error is returned here rather than lost.
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(EventConsumer { stop, thread: Some(thread) }),
            Ok(Err(source)) => {
                let _ = thread.join();
                Err(BpfError::RingBuffer { map: RING_MAP, source })
            }
            Err(_) => {
                let _ = thread.join();
                Err(BpfError::EventThreadGone)
            }
        }
    }
}

fn consume(
    ring: MapHandle,
    tx: mpsc::Sender<DenyEvent>,
    stop: Arc<AtomicBool>,
    ready: mpsc::SyncSender<Result<(), libbpf_rs::Error>>,
) {
    let callback_stop = Arc::clone(&stop);
    let mut builder = RingBufferBuilder::new();
    let added = builder.add(&ring, move |data: &[u8]| {
        let Some(event) = DenyEventRaw::from_bytes(data).map(DenyEvent::from_raw) else {
            return 0;
        };
        if tx.send(event).is_err() {
            // Nobody listens any more: stop polling.
            callback_stop.store(true, Ordering::Relaxed);
            return -1;
        }
        0
    });
    let built = match added {
        Ok(_) => builder.build(),
        Err(err) => Err(err),
    };
    let ring_buffer = match built {
        Ok(rb) => {
            let _ = ready.send(Ok(()));
            rb
        }
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        // EINTR and a stopping callback both surface as errors; the loop condition decides.
        let _ = ring_buffer.poll(POLL_INTERVAL);
    }
}

/// The running consumer thread; dropping it stops the thread (within one poll interval).
#[derive(Debug)]
pub struct EventConsumer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for EventConsumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Which BPF hook denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Device,
    Sysctl,
    Connect4,
    Connect6,
    Sendmsg4,
    Sendmsg6,
    FileOpen,
    BprmCheck,
    TaskKill,
    Ptrace,
    SocketConnect,
    CgroupProcs,
    /// A hook number this build does not know (a newer BPF object).
    Unknown(u32),
}

impl Hook {
    fn from_raw(raw: u32) -> Self {
        match raw {
            1 => Self::Device,
            2 => Self::Sysctl,
            3 => Self::Connect4,
            4 => Self::Connect6,
            5 => Self::Sendmsg4,
            6 => Self::Sendmsg6,
            7 => Self::FileOpen,
            8 => Self::BprmCheck,
            9 => Self::TaskKill,
            10 => Self::Ptrace,
            11 => Self::SocketConnect,
            12 => Self::CgroupProcs,
            other => Self::Unknown(other),
        }
    }

    /// The hook's name in event types (`deny.<name>` on the daemon's event bus).
    pub fn event_name(self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Sysctl => "sysctl",
            Self::Connect4 => "connect4",
            Self::Connect6 => "connect6",
            Self::Sendmsg4 => "sendmsg4",
            Self::Sendmsg6 => "sendmsg6",
            Self::FileOpen => "file_open",
            Self::BprmCheck => "bprm_check_security",
            Self::TaskKill => "task_kill",
            Self::Ptrace => "ptrace_access_check",
            Self::SocketConnect => "socket_connect",
            Self::CgroupProcs => "cgroup_procs",
            Self::Unknown(_) => "unknown",
        }
    }

    /// Short stable name of the layer and hook, for logs and `rauha events`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Device => "cgroup/dev",
            Self::Sysctl => "cgroup/sysctl",
            Self::Connect4 => "cgroup/connect4",
            Self::Connect6 => "cgroup/connect6",
            Self::Sendmsg4 => "cgroup/sendmsg4",
            Self::Sendmsg6 => "cgroup/sendmsg6",
            Self::FileOpen => "lsm/file_open",
            Self::BprmCheck => "lsm/bprm_check_security",
            Self::TaskKill => "lsm/task_kill",
            Self::Ptrace => "lsm/ptrace_access_check",
            Self::SocketConnect => "lsm/socket_connect",
            Self::CgroupProcs => "lsm/file_open(cgroup.procs)",
            Self::Unknown(_) => "unknown",
        }
    }
}

/// What a denied operation aimed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyTarget {
    /// A device node; `access` holds `DEV_ACC_*` bits.
    Device { block: bool, major: u32, minor: u32, access: u32 },
    /// A sysctl path below /proc/sys (e.g. `kernel/hostname`).
    Sysctl { name: String },
    /// A network destination; `zone` is the destination's zone for the LSM hook.
    Address { addr: SocketAddr, zone: Option<u32> },
    /// A file of another zone (open or exec): its superblock's dev, zone and name.
    File { dev: u32, zone: u32, name: String },
    /// A task of another zone (or of the host when `zone` is `None`).
    Task { pid: u32, zone: Option<u32>, comm: String, signal: Option<u16> },
    /// Another cgroup's membership file.
    CgroupProcs { cgroup_id: u64, name: String },
    /// A record of an unknown hook, kept raw.
    Raw { target: u64 },
}

impl std::fmt::Display for DenyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Device { block, major, minor, access } => {
                let kind = if *block { "block" } else { "char" };
                let mut acc = String::new();
                for (bit, c) in [(DEV_ACC_READ, 'r'), (DEV_ACC_WRITE, 'w'), (DEV_ACC_MKNOD, 'm')] {
                    if access & bit != 0 {
                        acc.push(c);
                    }
                }
                write!(f, "{kind} device {major}:{minor} ({acc})")
            }
            Self::Sysctl { name } => write!(f, "sysctl write {name}"),
            Self::Address { addr, zone: Some(zone) } => write!(f, "{addr} (zone id {zone})"),
            Self::Address { addr, zone: None } => write!(f, "{addr}"),
            Self::File { dev, zone, name } => {
                write!(f, "file {name} (dev {dev:#x}, zone id {zone})")
            }
            Self::Task { pid, zone, comm, signal } => {
                write!(f, "task {pid} ({comm})")?;
                if let Some(zone) = zone {
                    write!(f, " of zone id {zone}")?;
                }
                if let Some(signal) = signal {
                    write!(f, ", signal {signal}")?;
                }
                Ok(())
            }
            Self::CgroupProcs { cgroup_id, name } => write!(f, "{name} of cgroup {cgroup_id}"),
            Self::Raw { target } => write!(f, "target {target:#x}"),
        }
    }
}

/// One denied operation, as the daemon's event bus sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyEvent {
    pub zone_id: u32,
    pub hook: Hook,
    pub pid: u32,
    pub target: DenyTarget,
    /// The caller's command name where the hook records it (cgroup hooks).
    pub comm: Option<String>,
    /// Events of this zone dropped by the rate limit just before this one.
    pub suppressed: u64,
    /// Kernel monotonic time of the deny (`bpf_ktime_get_ns`).
    pub ktime_ns: u64,
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn socket_addr(raw: &DenyEventRaw) -> SocketAddr {
    let v6 = Ipv6Addr::from(raw.addr);
    let ip = match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    };
    SocketAddr::new(ip, u16::from_be(raw.port_be))
}

impl DenyEvent {
    /// Decodes a raw ring-buffer record.
    pub fn from_raw(raw: DenyEventRaw) -> Self {
        let hook = Hook::from_raw(raw.hook);
        let name = c_string(&raw.name);
        let some_zone = |z: u32| (z != 0).then_some(z);
        let (target, comm) = match hook {
            Hook::Device => (
                DenyTarget::Device {
                    block: (raw.target >> 48) as u32 == DEV_BLOCK,
                    major: ((raw.target >> 24) & 0xff_ffff) as u32,
                    minor: (raw.target & 0xff_ffff) as u32,
                    access: raw.aux,
                },
                Some(name),
            ),
            Hook::Sysctl => (DenyTarget::Sysctl { name }, None),
            Hook::Connect4 | Hook::Connect6 | Hook::Sendmsg4 | Hook::Sendmsg6 => {
                (DenyTarget::Address { addr: socket_addr(&raw), zone: None }, Some(name))
            }
            Hook::SocketConnect => (
                DenyTarget::Address { addr: socket_addr(&raw), zone: some_zone(raw.target as u32) },
                Some(name),
            ),
            Hook::FileOpen | Hook::BprmCheck => {
                (DenyTarget::File { dev: raw.target as u32, zone: raw.aux, name }, None)
            }
            Hook::TaskKill | Hook::Ptrace => (
                DenyTarget::Task {
                    pid: raw.target as u32,
                    zone: some_zone(raw.aux),
                    comm: name,
                    signal: (hook == Hook::TaskKill).then_some(raw.port_be),
                },
                None,
            ),
            Hook::CgroupProcs => (DenyTarget::CgroupProcs { cgroup_id: raw.target, name }, None),
            Hook::Unknown(_) => (DenyTarget::Raw { target: raw.target }, None),
        };
        Self {
            zone_id: raw.zone_id,
            hook,
            pid: raw.pid,
            target,
            comm,
            suppressed: raw.suppressed,
            ktime_ns: raw.ts_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforce::bpf_abi::EVENT_NAME_LEN;

    fn raw(hook: u32) -> DenyEventRaw {
        DenyEventRaw {
            ts_ns: 1,
            target: 0,
            suppressed: 3,
            zone_id: 7,
            hook,
            pid: 42,
            aux: 0,
            addr: [0; 16],
            port_be: 0,
            family: 0,
            pad: 0,
            name: [0; EVENT_NAME_LEN],
        }
    }

    #[test]
    fn decodes_device() {
        let mut r = raw(1);
        r.target = (2u64 << 48) | (1 << 24) | 11;
        r.aux = 2;
        r.name[..2].copy_from_slice(b"sh");
        let ev = DenyEvent::from_raw(r);
        assert_eq!(ev.zone_id, 7);
        assert_eq!(ev.hook, Hook::Device);
        assert_eq!(ev.target, DenyTarget::Device { block: false, major: 1, minor: 11, access: 2 });
        assert_eq!(ev.comm.as_deref(), Some("sh"));
        assert_eq!(ev.suppressed, 3);
    }

    #[test]
    fn decodes_ipv4_mapped_destination() {
        let mut r = raw(3);
        r.addr = crate::enforce::bpf_abi::addr16("10.203.1.1".parse().unwrap());
        r.port_be = 9090u16.to_be();
        let ev = DenyEvent::from_raw(r);
        assert_eq!(
            ev.target,
            DenyTarget::Address { addr: "10.203.1.1:9090".parse().unwrap(), zone: None }
        );
    }

    #[test]
    fn short_record_is_rejected() {
        assert!(DenyEventRaw::from_bytes(&[0; 12]).is_none());
    }
}
