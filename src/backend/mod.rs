//! The isolation backend: what turns a zone's model into kernel objects. Linux builds zones from
//! cgroups and namespaces on the host; a macOS backend (one VM per zone) is the other design
//! target and plugs in behind the same trait.

pub mod linux;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::net::{PeerInfo, PortMapping};
use crate::shim::protocol::CgroupSpec;
use crate::zone::Zone;

/// Kernel-side facts about a zone, reported to clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneKernelInfo {
    /// The zone's identity cgroup directory.
    pub cgroup_path: String,
    /// cgroup2 inode number (what BPF sees); 0 without cgroup2.
    pub cgroup_id: u64,
}

/// What the daemon knows about a zone's place on the network beyond its policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneNetwork {
    /// The zone's bridge address (bridged zones).
    pub address: Option<Ipv4Addr>,
    /// Zones this zone lists in `allowed_zones`, with their addresses.
    pub peers: Vec<PeerInfo>,
    /// Host ports forwarded into the zone.
    pub published: Vec<PortMapping>,
}

/// Live readings of a zone's resource use and the limits in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneUsage {
    pub cpu_usage_usec: u64,
    pub memory_usage_bytes: u64,
    pub memory_limit_bytes: Option<u64>,
    pub pids_current: u64,
    pub pids_max: Option<u64>,
    pub oom_kills: u64,
    pub network_rx_bytes: u64,
    pub network_tx_bytes: u64,
}

/// What start-up reconciliation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Zones whose kernel objects were missing and were re-created.
    pub recreated: Vec<String>,
    /// Kernel objects no zone owns, removed.
    pub removed_orphans: Vec<String>,
}

/// Turns zones into kernel objects and back.
pub trait IsolationBackend: Send + Sync {
    /// One line describing the host facilities in use (for `daemon_info` and logs).
    fn describe(&self) -> String;
    /// Create the zone's kernel objects with its policy's limits and network; all-or-nothing.
    fn create_zone(
        &self,
        zone: &Zone,
        network: &ZoneNetwork,
    ) -> Result<ZoneKernelInfo, BackendError>;
    /// Kernel facts of an existing zone.
    fn zone_info(&self, zone: &Zone) -> Result<ZoneKernelInfo, BackendError>;
    /// Apply the zone's (new) policy in place: limits, attachment, rules. Returns the limits
    /// the host cannot enforce.
    fn apply_policy(&self, zone: &Zone, network: &ZoneNetwork)
    -> Result<Vec<String>, BackendError>;
    /// Re-apply the zone's network rules (its peers or published ports changed).
    fn refresh_network(&self, zone: &Zone, network: &ZoneNetwork) -> Result<(), BackendError>;
    /// Remove every kernel object of the zone, killing what runs in it. Absent objects are fine.
    fn destroy_zone(&self, zone: &Zone) -> Result<(), BackendError>;
    /// Live usage and limits.
    fn zone_usage(&self, zone: &Zone) -> Result<ZoneUsage, BackendError>;
    /// The pinned network namespace a zone's containers join; `None` for host-mode zones.
    fn zone_netns(&self, zone: &Zone) -> Option<PathBuf>;
    /// Create a container's cgroup inside its zone's; returns what the shim joins.
    fn create_container_cgroup(
        &self,
        zone: &Zone,
        container: &str,
    ) -> Result<CgroupSpec, BackendError>;
    /// Remove a container's cgroup, killing what is left in it.
    fn remove_container_cgroup(&self, zone: &Zone, container: &str) -> Result<(), BackendError>;
    /// Make the kernel match `zones`: re-create missing objects, remove unowned ones.
    fn reconcile(&self, zones: &[(&Zone, ZoneNetwork)]) -> Result<ReconcileReport, BackendError>;
}

/// A backend step that failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Cgroup(Box<linux::cgroup::CgroupError>),
    #[error(transparent)]
    Net(Box<crate::net::NetError>),
}

// Boxed: the step errors carry paths and OS errors, and every request error embeds this one.
impl From<linux::cgroup::CgroupError> for BackendError {
    fn from(error: linux::cgroup::CgroupError) -> Self {
        Self::Cgroup(Box::new(error))
    }
}

impl From<crate::net::NetError> for BackendError {
    fn from(error: crate::net::NetError) -> Self {
        Self::Net(Box::new(error))
    }
}
