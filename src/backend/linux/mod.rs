//! Zones on a Linux host: a cgroup2 identity node plus resource limits on whichever hierarchy
//! carries the controllers (DESIGN.md §4), and a network namespace of the zone's own unless it
//! shares the host's stack.

pub mod cgroup;
mod network;

use std::path::{Path, PathBuf};

use cgroup::{CgroupManager, CgroupNode, Limits};

use network::Networking;

use super::{
    BackendError, IsolationBackend, ReconcileReport, ZoneKernelInfo, ZoneNetwork, ZoneUsage,
};
use crate::net::NetConfig;
use crate::net::netns::NetnsDir;
use crate::shim::protocol::CgroupSpec;
use crate::zone::Zone;
use crate::zone::policy::NetworkMode;

/// The daemon-owned cgroup the shims live in, beside the zones: zone limits count only the
/// zones' workloads.
const SHIM_CGROUP: &str = "shims";

/// Limits of nodes that only group processes (shims, containers inside a limited zone).
const UNLIMITED: Limits = Limits {
    cpu_shares: 1024,
    memory_bytes: cgroup::UNLIMITED,
    pids_max: cgroup::UNLIMITED,
    io_weight: 100,
};

/// The Linux isolation backend.
pub struct LinuxBackend {
    cgroups: CgroupManager,
    netns: NetnsDir,
    networking: Networking,
}

impl LinuxBackend {
    /// Detect the host's cgroup layout, prepare the daemon's cgroup parent and the shim cgroup,
    /// and the directory where zone network namespaces are pinned.
    pub fn new(cgroup_parent: &str, run_dir: &Path, net: NetConfig) -> Result<Self, BackendError> {
        let cgroups = CgroupManager::detect(cgroup_parent)?;
        cgroups.ensure_parent()?;
        if !cgroups.exists(SHIM_CGROUP) {
            cgroups.create(SHIM_CGROUP, &UNLIMITED)?;
        }
        let netns = NetnsDir::new(run_dir.join("netns"));
        netns.setup()?;
        let networking = Networking::new(net)?;
        Ok(Self { cgroups, netns, networking })
    }

    /// `cgroup.procs` files a shim writes itself into before it execs.
    pub fn shim_procs_files(&self) -> Result<Vec<PathBuf>, BackendError> {
        Ok(self.cgroups.open(SHIM_CGROUP)?.procs_files())
    }

    fn has_netns(zone: &Zone) -> bool {
        zone.policy.network.mode != NetworkMode::Host
    }

    /// The kernel objects of a new zone: cgroup, and unless it shares the host's stack, its
    /// namespace, attached to the bridge if bridged.
    fn make_zone(&self, zone: &Zone, network: &ZoneNetwork) -> Result<CgroupNode, BackendError> {
        let node = self.cgroups.create(&zone.cgroup_name(), &limits_of(zone))?;
        if Self::has_netns(zone) {
            let ns = self.netns.create(zone.numeric_id)?;
            self.networking.attach_new(ns, zone, network)?;
        }
        Ok(node)
    }
}

fn limits_of(zone: &Zone) -> Limits {
    let resources = &zone.policy.resources;
    Limits {
        cpu_shares: resources.cpu_shares,
        memory_bytes: resources.memory_limit.bytes(),
        pids_max: resources.pids_max,
        io_weight: resources.io_weight,
    }
}

fn kernel_info(node: &CgroupNode) -> ZoneKernelInfo {
    ZoneKernelInfo {
        cgroup_path: node.identity_dir().display().to_string(),
        cgroup_id: node.cgroup_id().unwrap_or(0),
    }
}

fn container_cgroup(zone: &Zone, container: &str) -> String {
    format!("{}/ctr-{container}", zone.cgroup_name())
}

impl IsolationBackend for LinuxBackend {
    fn describe(&self) -> String {
        format!("{:?}", self.cgroups.layout()).to_lowercase()
    }

    fn create_zone(
        &self,
        zone: &Zone,
        network: &ZoneNetwork,
    ) -> Result<ZoneKernelInfo, BackendError> {
        // Rules first: nft works on them while the cgroup, namespace and veth are made.
        let rules = self.networking.begin_rules(zone, network)?;
        let made = self.make_zone(zone, network);
        // Waited for even when making failed, so the rollback below finds the rules.
        let applied = rules.map_or(Ok(()), |rules| rules.finish());
        match made.and_then(|node| applied.map(|()| node).map_err(BackendError::from)) {
            Ok(node) => Ok(kernel_info(&node)),
            Err(error) => {
                // All-or-nothing: whatever was made goes again.
                if let Err(cleanup) = self.destroy_zone(zone) {
                    tracing::warn!(%cleanup, zone = %zone.name, "roll back zone creation");
                }
                Err(error)
            }
        }
    }

    fn zone_info(&self, zone: &Zone) -> Result<ZoneKernelInfo, BackendError> {
        Ok(kernel_info(&self.cgroups.open(&zone.cgroup_name())?))
    }

    fn apply_policy(
        &self,
        zone: &Zone,
        network: &ZoneNetwork,
    ) -> Result<Vec<String>, BackendError> {
        let node = self.cgroups.open(&zone.cgroup_name())?;
        let applied = node.apply(&limits_of(zone))?;
        // To or from host mode (the daemon allows it only without running containers): the
        // zone gains or loses its namespace.
        let pinned = self.netns.path_of(zone.numeric_id).exists();
        if Self::has_netns(zone) {
            if !pinned {
                self.netns.create(zone.numeric_id)?;
            }
            self.networking.connect(&self.netns, zone, network)?;
        } else if pinned {
            self.networking.disconnect(zone.numeric_id)?;
            self.netns.delete(zone.numeric_id)?;
        }
        Ok(applied
            .unavailable
            .into_iter()
            .map(|limit| format!("{}: {}", limit.controller.v2_name(), limit.reason))
            .collect())
    }

    fn refresh_network(&self, zone: &Zone, network: &ZoneNetwork) -> Result<(), BackendError> {
        if Self::has_netns(zone) {
            self.networking.connect(&self.netns, zone, network)?;
        }
        Ok(())
    }

    fn destroy_zone(&self, zone: &Zone) -> Result<(), BackendError> {
        self.cgroups.remove(&zone.cgroup_name())?;
        // Published ports went with the containers; a stale one only costs a listing.
        let network = ZoneNetwork { address: zone.address, ..ZoneNetwork::default() };
        self.networking.release(zone, &network)?;
        if self.netns.path_of(zone.numeric_id).exists() {
            self.netns.delete(zone.numeric_id)?;
        }
        Ok(())
    }

    fn zone_usage(&self, zone: &Zone) -> Result<ZoneUsage, BackendError> {
        let stats = self.cgroups.open(&zone.cgroup_name())?.stats()?;
        let traffic = self.networking.counters(&self.netns, zone)?;
        Ok(ZoneUsage {
            network_rx_bytes: traffic.rx_bytes,
            network_tx_bytes: traffic.tx_bytes,
            cpu_usage_usec: stats.cpu_usage_usec,
            memory_usage_bytes: stats.memory_usage_bytes,
            memory_limit_bytes: stats.memory_limit_bytes,
            pids_current: stats.pids_current,
            pids_max: stats.pids_max,
            oom_kills: stats.oom_kills,
        })
    }

    fn zone_netns(&self, zone: &Zone) -> Option<PathBuf> {
        Self::has_netns(zone).then(|| self.netns.path_of(zone.numeric_id))
    }

    fn create_container_cgroup(
        &self,
        zone: &Zone,
        container: &str,
    ) -> Result<CgroupSpec, BackendError> {
        let node = self.cgroups.create(&container_cgroup(zone, container), &UNLIMITED)?;
        let identity = node.identity_dir().to_owned();
        let has_v2 = node.cgroup_id().is_some();
        Ok(CgroupSpec {
            v2_dir: has_v2.then(|| identity.clone()),
            v1_dirs: node
                .dirs()
                .iter()
                .filter(|dir| !has_v2 || **dir != identity)
                .cloned()
                .collect(),
        })
    }

    fn remove_container_cgroup(&self, zone: &Zone, container: &str) -> Result<(), BackendError> {
        Ok(self.cgroups.remove(&container_cgroup(zone, container))?)
    }

    fn reconcile(&self, zones: &[(&Zone, ZoneNetwork)]) -> Result<ReconcileReport, BackendError> {
        let mut report = ReconcileReport::default();
        let pinned = self.netns.list()?;
        for (zone, _) in zones {
            if !self.cgroups.exists(&zone.cgroup_name()) {
                self.cgroups.create(&zone.cgroup_name(), &limits_of(zone))?;
                report.recreated.push(format!("{} (cgroup)", zone.name));
            }
            let mounted = pinned.iter().any(|e| e.zone_id == zone.numeric_id && e.mounted);
            if Self::has_netns(zone) && !mounted {
                // A file left by an interrupted create goes first.
                if pinned.iter().any(|e| e.zone_id == zone.numeric_id) {
                    self.netns.delete(zone.numeric_id)?;
                }
                self.netns.create(zone.numeric_id)?;
                report.recreated.push(format!("{} (network namespace)", zone.name));
            }
        }
        // Attachments and rules last: they need every zone's namespace in place.
        for (zone, network) in zones {
            if Self::has_netns(zone) {
                self.networking.connect(&self.netns, zone, network)?;
            }
        }
        let known: Vec<u32> = zones.iter().map(|(zone, _)| zone.numeric_id).collect();
        for zone_id in self.networking.remove_unknown(&known)? {
            report.removed_orphans.push(format!("network rules of zone id {zone_id}"));
        }
        let owned: Vec<String> = zones.iter().map(|(zone, _)| zone.cgroup_name()).collect();
        for child in self.cgroups.children()? {
            if child != SHIM_CGROUP && !owned.contains(&child) {
                self.cgroups.remove(&child)?;
                report.removed_orphans.push(format!("cgroup {child}"));
            }
        }
        for entry in pinned {
            let known =
                zones.iter().any(|(z, _)| z.numeric_id == entry.zone_id && Self::has_netns(z));
            if !known {
                self.netns.delete(entry.zone_id)?;
                report
                    .removed_orphans
                    .push(format!("network namespace of zone id {}", entry.zone_id));
            }
        }
        Ok(report)
    }
}
