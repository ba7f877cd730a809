//! Zones on a Linux host: a cgroup2 identity node plus resource limits on whichever hierarchy
//! carries the controllers (DESIGN.md §4).

pub mod cgroup;

use cgroup::{CgroupError, CgroupManager, Limits};

use super::{BackendError, IsolationBackend, ReconcileReport, ZoneKernelInfo, ZoneUsage};
use crate::zone::Zone;

/// The Linux isolation backend.
pub struct LinuxBackend {
    cgroups: CgroupManager,
}

impl LinuxBackend {
    /// Detect the host's cgroup layout and prepare the daemon's cgroup parent.
    pub fn new(cgroup_parent: &str) -> Result<Self, CgroupError> {
        let cgroups = CgroupManager::detect(cgroup_parent)?;
        cgroups.ensure_parent()?;
        Ok(Self { cgroups })
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

fn kernel_info(node: &cgroup::CgroupNode) -> ZoneKernelInfo {
    ZoneKernelInfo {
        cgroup_path: node.identity_dir().display().to_string(),
        cgroup_id: node.cgroup_id().unwrap_or(0),
    }
}

impl IsolationBackend for LinuxBackend {
    fn describe(&self) -> String {
        format!("{:?}", self.cgroups.layout()).to_lowercase()
    }

    fn create_zone(&self, zone: &Zone) -> Result<ZoneKernelInfo, BackendError> {
        let node = self.cgroups.create(&zone.cgroup_name(), &limits_of(zone))?;
        Ok(kernel_info(&node))
    }

    fn zone_info(&self, zone: &Zone) -> Result<ZoneKernelInfo, BackendError> {
        Ok(kernel_info(&self.cgroups.open(&zone.cgroup_name())?))
    }

    fn apply_policy(&self, zone: &Zone) -> Result<Vec<String>, BackendError> {
        let node = self.cgroups.open(&zone.cgroup_name())?;
        let applied = node.apply(&limits_of(zone))?;
        Ok(applied
            .unavailable
            .into_iter()
            .map(|limit| format!("{}: {}", limit.controller.v2_name(), limit.reason))
            .collect())
    }

    fn destroy_zone(&self, zone: &Zone) -> Result<(), BackendError> {
        Ok(self.cgroups.remove(&zone.cgroup_name())?)
    }

    fn zone_usage(&self, zone: &Zone) -> Result<ZoneUsage, BackendError> {
        let stats = self.cgroups.open(&zone.cgroup_name())?.stats()?;
        Ok(ZoneUsage {
            cpu_usage_usec: stats.cpu_usage_usec,
            memory_usage_bytes: stats.memory_usage_bytes,
            memory_limit_bytes: stats.memory_limit_bytes,
            pids_current: stats.pids_current,
            pids_max: stats.pids_max,
            oom_kills: stats.oom_kills,
        })
    }

    fn reconcile(&self, zones: &[&Zone]) -> Result<ReconcileReport, BackendError> {
        let mut report = ReconcileReport::default();
        for zone in zones {
            if !self.cgroups.exists(&zone.cgroup_name()) {
                self.cgroups.create(&zone.cgroup_name(), &limits_of(zone))?;
                report.recreated.push(zone.name.clone());
            }
        }
        let owned: Vec<String> = zones.iter().map(|zone| zone.cgroup_name()).collect();
        for child in self.cgroups.children()? {
            if !owned.contains(&child) {
                self.cgroups.remove(&child)?;
                report.removed_orphans.push(child);
            }
        }
        Ok(report)
    }
}
