//! Zone operations: each validates first, changes the kernel and the store in an order that a
//! failure can undo, and updates the in-memory registry last.

use std::path::{Path, PathBuf};
use std::time::Instant;

use jiff::Timestamp;
use uuid::Uuid;

use super::Daemon;
use super::enforcement::ZoneRules;
use super::error::RequestError;
use crate::backend::ZoneKernelInfo;
use crate::rpc::{PolicyApplied, ZoneCreateRequest, ZoneInfo, ZoneStats};
use crate::zone::{self, Policy, Zone, ZoneRegistry, ZoneState, ZoneType, policy};

impl Daemon {
    /// Zone info as clients see it.
    fn info(&self, zone: &Zone) -> ZoneInfo {
        let kernel = self.kernel_info(zone.id);
        ZoneInfo {
            id: zone.id.to_string(),
            name: zone.name.clone(),
            numeric_id: zone.numeric_id,
            zone_type: zone::zone_type_label(zone.zone_type()).to_owned(),
            state: zone.state.as_str().to_owned(),
            container_count: self.container_count(zone.id),
            created_at: format_timestamp(zone.created_at),
            cgroup_path: kernel.cgroup_path,
            cgroup_id: kernel.cgroup_id,
            address: zone.address.map(|a| a.to_string()).unwrap_or_default(),
            network_mode: zone.policy.network.mode.to_string(),
        }
    }

    fn container_count(&self, zone_id: Uuid) -> u32 {
        self.containers().values().filter(|c| c.zone_id == zone_id).count() as u32
    }

    pub(super) fn kernel_info(&self, id: Uuid) -> ZoneKernelInfo {
        self.kernel.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned().unwrap_or_default()
    }

    pub fn create_zone(&self, request: ZoneCreateRequest) -> Result<ZoneInfo, RequestError> {
        zone::validate_zone_name(&request.name)
            .map_err(|source| RequestError::InvalidName { name: request.name.clone(), source })?;
        let requested_type = zone::parse_requested_type(&request.zone_type)
            .map_err(RequestError::InvalidArgument)?;
        let policy = Policy::parse_for_type(&request.policy_toml, requested_type)?;
        let rules = ZoneRules::from_policy(&policy)?;

        let mut zones = self.registry();
        if zones.contains(&request.name) {
            return Err(zone::RegistryError::Duplicate(request.name).into());
        }
        let mut zone = Zone {
            id: Uuid::new_v4(),
            name: request.name,
            numeric_id: zones.free_numeric_id()?,
            policy,
            state: ZoneState::Ready,
            created_at: Timestamp::now(),
            address: None,
        };
        self.assign_address(&zones, &mut zone)?;
        let network = self.zone_network(&zones, &zone);
        let kernel = self
            .backend
            .create_zone(&zone, &network)
            .map_err(|source| RequestError::Backend { zone: zone.name.clone(), source })?;
        let cgroup_dir = PathBuf::from(&kernel.cgroup_path);
        // All-or-nothing: a zone whose programs do not attach is not created.
        if let Err(source) = self.bpf.attach_zone(&zone, &cgroup_dir, &rules) {
            let failure = RequestError::Bpf { zone: zone.name.clone(), source };
            return Err(self.roll_back_creation(&zone, &cgroup_dir, failure));
        }
        if let Err(error) = self.store.put_zone(&zone.to_record()) {
            return Err(self.roll_back_creation(&zone, &cgroup_dir, error.into()));
        }
        self.kernel.lock().unwrap_or_else(|e| e.into_inner()).insert(zone.id, kernel);
        let info = self.info(&zone);
        zones.insert(zone)?;
        self.refresh_peers_of(&zones, &info.name);
        if let Err(error) = self.bpf.sync_peers(zones.iter()) {
            tracing::error!(%error, "update the bpf peer-address maps");
        }
        if let Err(error) = self.bpf.sync_comms(zones.iter()) {
            tracing::error!(%error, zone = %info.name, "update the lsm allowed-comms map");
        }
        tracing::info!(zone = %info.name, id = %info.id, numeric_id = info.numeric_id, "zone created");
        self.events.publish(&info.name, "zone.created", format!("zone {} created", info.id));
        Ok(info)
    }

    fn roll_back_creation(
        &self,
        zone: &Zone,
        cgroup_dir: &Path,
        failure: RequestError,
    ) -> RequestError {
        if let Err(error) = self.bpf.detach_zone(zone, cgroup_dir) {
            tracing::error!(%error, zone = %zone.name, "roll back the bpf programs");
        }
        self.bpf.forget_name(zone.numeric_id);
        match self.backend.destroy_zone(zone) {
            Ok(()) => failure,
            Err(rollback) => RequestError::RollbackFailed {
                zone: zone.name.clone(),
                failure: failure.to_string(),
                rollback,
            },
        }
    }

    pub fn list_zones(&self) -> Vec<ZoneInfo> {
        self.registry().iter().map(|zone| self.info(zone)).collect()
    }

    pub fn get_zone(&self, name: &str) -> Result<ZoneInfo, RequestError> {
        check_zone_name(name)?;
        Ok(self.info(self.registry().get(name)?))
    }

    pub fn delete_zone(&self, name: &str, force: bool) -> Result<(), RequestError> {
        check_zone_name(name)?;
        let zone = {
            let mut zones = self.registry();
            let mut zone = zones.get(name)?.clone();
            let containers = self.container_count(zone.id) as usize;
            if containers > 0 && !force {
                return Err(RequestError::ZoneHasContainers { zone: zone.name, count: containers });
            }
            // Persist the intent first: a daemon that dies half-way finishes the job at start
            // instead of resurrecting a half-removed zone. It also closes the zone to new
            // containers.
            if zone.state != ZoneState::Deleting {
                zone.state = ZoneState::Deleting;
                self.store.put_zone(&zone.to_record())?;
                zones.update(zone.clone());
            }
            zone
        };
        for container in self.zone_containers(zone.id) {
            match self.delete_container(&container.id.to_string(), true) {
                // Auto-removed (`--rm`) since the list was taken: already gone.
                Err(RequestError::ContainerNotFound(_)) => {}
                other => other?,
            }
        }
        self.shims.stop(zone.numeric_id);
        let mut zones = self.registry();
        self.finish_deletion(&zone)?;
        zones.remove(name);
        self.refresh_peers_of(&zones, name);
        if let Err(error) = self.bpf.sync_peers(zones.iter()) {
            tracing::error!(%error, "update the bpf peer-address maps");
        }
        if let Err(error) = self.bpf.sync_comms(zones.iter()) {
            tracing::error!(%error, zone = %name, "update the lsm allowed-comms map");
        }
        tracing::info!(zone = %name, "zone deleted");
        self.events.publish(name, "zone.deleted", format!("zone {} deleted", zone.id));
        Ok(())
    }

    /// Remove the kernel objects and the record of a zone already marked `Deleting`.
    pub(super) fn finish_deletion(&self, zone: &Zone) -> Result<(), RequestError> {
        // Detach before the cgroup goes; the links would otherwise pin it until they close.
        let cgroup_dir = PathBuf::from(self.kernel_info(zone.id).cgroup_path);
        self.bpf
            .detach_zone(zone, &cgroup_dir)
            .map_err(|source| RequestError::Bpf { zone: zone.name.clone(), source })?;
        self.bpf.forget_name(zone.numeric_id);
        self.backend
            .destroy_zone(zone)
            .map_err(|source| RequestError::Backend { zone: zone.name.clone(), source })?;
        self.store.delete_zone(zone.id)?;
        self.kernel.lock().unwrap_or_else(|e| e.into_inner()).remove(&zone.id);
        self.cpu_samples.lock().unwrap_or_else(|e| e.into_inner()).remove(&zone.id);
        Ok(())
    }

    pub fn apply_policy(
        &self,
        name: &str,
        policy_toml: &str,
    ) -> Result<PolicyApplied, RequestError> {
        check_zone_name(name)?;
        let mut zones = self.registry();
        // Validate before looking up, so a broken policy reads as such even for an unknown zone.
        let current_type = zones.get(name).map(Zone::zone_type).unwrap_or(ZoneType::NonGlobal);
        let policy = Policy::parse_for_type(policy_toml, Some(current_type))?;
        let rules = ZoneRules::from_policy(&policy)?;
        let old = zones.get(name)?.clone();
        if old.state == ZoneState::Deleting {
            return Err(RequestError::ZoneDeleting { zone: old.name });
        }
        let changes = policy::live_changes(&old.policy, &policy);
        let keys = |mode: policy::ApplyMode| -> Vec<String> {
            changes
                .changes
                .iter()
                .filter(|change| change.apply == mode)
                .map(|change| change.part.key().to_owned())
                .collect()
        };
        if changes.needs_no_running_containers() {
            let running = self
                .zone_containers(old.id)
                .iter()
                .filter(|c| c.state != crate::container::ContainerState::Stopped)
                .count();
            if running > 0 {
                return Err(RequestError::InvalidArgument(format!(
                    "network.mode: zone {name:?} has {running} live container(s); a running process \
                     cannot change network namespace, so switching to or from host mode needs \
                     them stopped"
                )));
            }
        }
        let mut new = old.clone();
        new.policy = policy;
        self.assign_address(&zones, &mut new)?;
        let network = self.zone_network(&zones, &new);

        let backend_error = |source| RequestError::Backend { zone: name.to_owned(), source };
        let unavailable = self.backend.apply_policy(&new, &network).map_err(backend_error)?;
        let previous_rules = self.bpf.rules(old.numeric_id);
        let bpf_changed = match self.bpf.apply_policy(&new, &rules) {
            Ok(changed) => changed,
            Err(source) => {
                let failure = RequestError::Bpf { zone: name.to_owned(), source };
                return Err(self.roll_back_policy(&zones, &old, previous_rules.as_ref(), failure));
            }
        };
        if let Err(error) = self.store.put_zone(&new.to_record()) {
            return Err(self.roll_back_policy(&zones, &old, previous_rules.as_ref(), error.into()));
        }
        zones.update(new);
        self.refresh_peers_of(&zones, name);
        let peers_changed = match self.bpf.sync_peers(zones.iter()) {
            Ok(changed) => changed > 0,
            Err(error) => {
                tracing::error!(%error, zone = %name, "update the bpf peer-address maps");
                false
            }
        };
        let comms_changed = match self.bpf.sync_comms(zones.iter()) {
            Ok(changed) => changed,
            Err(error) => {
                tracing::error!(%error, zone = %name, "update the lsm allowed-comms map");
                false
            }
        };
        let changed: Vec<String> = changes.changes.iter().map(ToString::to_string).collect();
        tracing::info!(zone = %name, changes = %changed.join("; "), "policy applied");
        let summary = if changed.is_empty() { "no changes".to_owned() } else { changed.join("; ") };
        self.events.publish(name, "policy.applied", summary);
        let mut applied_live = keys(policy::ApplyMode::Live);
        applied_live.extend(bpf_changed);
        if peers_changed {
            applied_live.push("bpf map rauha_peers (network.allowed_zones)".to_owned());
        }
        if comms_changed {
            applied_live.push("bpf map rauha_comms (network.allowed_zones)".to_owned());
        }
        Ok(PolicyApplied {
            applied_live,
            on_next_start: keys(policy::ApplyMode::NewProcesses),
            unavailable,
        })
    }

    /// Puts the old limits and maps back so kernel and store agree again.
    fn roll_back_policy(
        &self,
        zones: &ZoneRegistry,
        old: &Zone,
        previous_rules: Option<&ZoneRules>,
        failure: RequestError,
    ) -> RequestError {
        if let Some(rules) = previous_rules
            && let Err(error) = self.bpf.apply_policy(old, rules)
        {
            tracing::error!(%error, zone = %old.name, "restore the bpf maps");
        }
        let old_network = self.zone_network(zones, old);
        match self.backend.apply_policy(old, &old_network) {
            Ok(_) => failure,
            Err(rollback) => RequestError::RollbackFailed {
                zone: old.name.clone(),
                failure: failure.to_string(),
                rollback,
            },
        }
    }

    pub fn policy_toml(&self, name: &str) -> Result<String, RequestError> {
        check_zone_name(name)?;
        Ok(self.registry().get(name)?.policy.to_toml())
    }

    pub fn zone_stats(&self, name: &str) -> Result<ZoneStats, RequestError> {
        check_zone_name(name)?;
        let zone = self.registry().get(name)?.clone();
        let backend_error = |source| RequestError::Backend { zone: name.to_owned(), source };
        let mut usage = self.backend.zone_usage(&zone).map_err(backend_error)?;
        let known =
            self.cpu_samples.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&zone.id);
        if !known {
            // A first reading has no interval to measure over: take a short one now.
            self.cpu_percent(zone.id, usage.cpu_usage_usec);
            std::thread::sleep(FIRST_CPU_SAMPLE);
            usage = self.backend.zone_usage(&zone).map_err(backend_error)?;
        }
        let cpu_usage_percent = self.cpu_percent(zone.id, usage.cpu_usage_usec);
        Ok(ZoneStats {
            zone_id: zone.id.to_string(),
            container_count: self.container_count(zone.id),
            cpu_usage_percent,
            cpu_usage_usec: usage.cpu_usage_usec,
            memory_usage_bytes: usage.memory_usage_bytes,
            memory_limit_bytes: usage.memory_limit_bytes.unwrap_or(0),
            pids_current: usage.pids_current,
            pids_max: usage.pids_max.unwrap_or(0),
            oom_kills: usage.oom_kills,
            network_rx_bytes: usage.network_rx_bytes,
            network_tx_bytes: usage.network_tx_bytes,
        })
    }

    /// CPU use since the previous reading of this zone, as a percentage of one CPU.
    fn cpu_percent(&self, id: Uuid, usage_usec: u64) -> f64 {
        let now = Instant::now();
        let mut samples = self.cpu_samples.lock().unwrap_or_else(|e| e.into_inner());
        let percent = match samples.get(&id) {
            Some(&(at, previous)) => {
                let wall_usec = now.duration_since(at).as_micros() as f64;
                if wall_usec > 0.0 {
                    usage_usec.saturating_sub(previous) as f64 / wall_usec * 100.0
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        samples.insert(id, (now, usage_usec));
        percent
    }
}

/// The interval of a zone's first CPU reading.
const FIRST_CPU_SAMPLE: std::time::Duration = std::time::Duration::from_millis(100);

/// A name no zone can have is a bad request, not an unknown zone: validation comes before lookup
/// (API-GRPC.md), on every path that takes a zone name.
pub(super) fn check_zone_name(name: &str) -> Result<(), RequestError> {
    zone::validate_zone_name(name)
        .map_err(|source| RequestError::InvalidName { name: name.to_owned(), source })
}

/// RFC 3339 in UTC with millisecond precision, as the API contract writes timestamps.
pub fn format_timestamp(at: Timestamp) -> String {
    format!("{at:.3}")
}
