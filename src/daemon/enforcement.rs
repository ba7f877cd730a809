//! The daemon's eBPF enforcement: which BPF layers this kernel supports (probed once at start),
//! the per-zone cgroup-BPF programs (attached on create and at start, maps updated live on
//! `policy apply`, detached on delete), the system-wide LSM layer when the kernel runs it, and
//! the bridge from the deny-event ring buffer to the event bus.
//!
//! Every link is owned by the daemon process: enforcement of this layer ends when the daemon
//! exits and is re-attached for every zone when it starts again.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, Weak, mpsc};

use crate::enforce::bpf::{BpfError, cgroup_id};
use crate::enforce::bpf_events::{DenyEvent, EventConsumer, EventMaps};
use crate::enforce::bpf_policy::{self, DeviceRuleError};
use crate::enforce::cgroup_bpf::{DeviceRule, LoadedZonePrograms, ZoneCgroupPrograms};
use crate::enforce::lsm::{LsmAvailability, LsmLayer};
use crate::rpc::EnforcementLayer;
use crate::zone::{Policy, Zone};

/// Layer name of the per-zone cgroup-BPF programs in `rauha info`.
const CGROUP_BPF: &str = "cgroup-bpf";
/// Layer name of the BPF LSM programs in `rauha info`.
const LSM: &str = "lsm";

/// Whether a layer enforces, and why not.
#[derive(Debug, Clone)]
enum LayerState {
    Active,
    Unavailable(String),
}

/// A zone's policy turned into BPF map contents (the `stat` of device paths done).
#[derive(Debug, Clone)]
pub struct ZoneRules {
    devices: Vec<DeviceRule>,
    egress: Vec<crate::enforce::cgroup_bpf::EgressRule>,
}

impl ZoneRules {
    /// Resolves a policy; a device path that is not a device is an error naming the key.
    pub fn from_policy(policy: &Policy) -> Result<Self, DeviceRuleError> {
        Ok(Self {
            devices: bpf_policy::device_rules(&policy.devices.allowed)?,
            egress: bpf_policy::egress_rules(&policy.network.allowed_egress),
        })
    }
}

/// The BPF side of every zone.
pub struct BpfEnforcement {
    events: Option<EventMaps>,
    cgroup_state: LayerState,
    lsm_state: LayerState,
    lsm: Option<LsmLayer>,
    /// cgroup programs per zone numeric id, with the rules their maps hold.
    zones: Mutex<HashMap<u32, (ZoneCgroupPrograms, ZoneRules)>>,
    /// Peer-zone addresses per zone (fed by networking through `update_peers`).
    peers: Mutex<HashMap<u32, Vec<IpAddr>>>,
    /// Zone numeric id → name, for deny events.
    names: Arc<Mutex<HashMap<u32, String>>>,
    /// One loaded, unattached instance of the cgroup programs, so zone creation does not pay
    /// for loading (the verifier's work, about a millisecond).
    spare: Arc<Mutex<Option<LoadedZonePrograms>>>,
    /// LSM allowed-comms pairs currently in the map.
    comms: Mutex<BTreeSet<(u32, u32)>>,
    consumer: Mutex<Option<EventConsumer>>,
    /// Root filesystems (overlay superblocks) of running containers in the LSM map, by
    /// container id, so an exit removes the entry before the kernel reuses the device number.
    roots: Mutex<HashMap<String, u32>>,
    /// Zone bridge addresses in the LSM map (destination zone of `socket_connect`).
    addresses: Mutex<HashMap<IpAddr, u32>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl BpfEnforcement {
    /// Probes the layers: creates the shared event maps, loads one instance of the cgroup
    /// programs (kept as the first spare), probes the LSM layer and loads it when available.
    /// `zone_level` is the cgroup2 depth of the zone nodes.
    pub fn start(zone_level: u32) -> Self {
        let mut lsm = None;
        let (events, cgroup_state, spare) = match EventMaps::create() {
            Ok(events) => match LoadedZonePrograms::load(&events) {
                Ok(spare) => (Some(events), LayerState::Active, Some(spare)),
                Err(error) => (Some(events), LayerState::Unavailable(error.to_string()), None),
            },
            Err(error) => (None, LayerState::Unavailable(error.to_string()), None),
        };
        let lsm_state = match (LsmLayer::probe(), &events) {
            (LsmAvailability::Unavailable(reason), _) => {
                LayerState::Unavailable(reason.to_string())
            }
            (LsmAvailability::Available, None) => {
                LayerState::Unavailable("no bpf event maps (see cgroup-bpf)".to_owned())
            }
            (LsmAvailability::Available, Some(events)) => {
                match LsmLayer::load_and_attach(zone_level, events) {
                    Ok(layer) => {
                        lsm = Some(layer);
                        LayerState::Active
                    }
                    Err(error) => LayerState::Unavailable(error.to_string()),
                }
            }
        };
        for (name, state) in [(CGROUP_BPF, &cgroup_state), (LSM, &lsm_state)] {
            match state {
                LayerState::Active => tracing::info!(layer = name, "enforcement layer active"),
                LayerState::Unavailable(reason) => tracing::warn!(
                    layer = name,
                    %reason,
                    "enforcement layer unavailable; the always-on layers (namespaces, seccomp, \
                     landlock, capabilities) still hold the zone boundaries"
                ),
            }
        }
        Self {
            events,
            cgroup_state,
            lsm_state,
            lsm,
            zones: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            names: Arc::new(Mutex::new(HashMap::new())),
            spare: Arc::new(Mutex::new(spare)),
            comms: Mutex::new(BTreeSet::new()),
            consumer: Mutex::new(None),
            roots: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// The layers and their state, for `rauha info`.
    pub fn layers(&self) -> Vec<EnforcementLayer> {
        [(CGROUP_BPF, &self.cgroup_state), (LSM, &self.lsm_state)]
            .into_iter()
            .map(|(name, state)| EnforcementLayer {
                name: name.to_owned(),
                active: matches!(state, LayerState::Active),
                reason: match state {
                    LayerState::Active => String::new(),
                    LayerState::Unavailable(reason) => reason.clone(),
                },
            })
            .collect()
    }

    fn cgroup_active(&self) -> bool {
        matches!(self.cgroup_state, LayerState::Active)
    }

    /// Starts forwarding deny events: `publish(zone name, event)` runs on a thread of its own
    /// for each event read from the ring buffer.
    pub fn forward_events(&self, publish: impl Fn(&str, &DenyEvent) + Send + 'static) {
        let Some(events) = &self.events else { return };
        let (tx, rx) = mpsc::channel::<DenyEvent>();
        let consumer = match events.spawn_consumer(tx) {
            Ok(consumer) => consumer,
            Err(error) => {
                tracing::error!(%error, "bpf deny events will not be reported");
                return;
            }
        };
        let names = Arc::downgrade(&self.names);
        let spawned =
            std::thread::Builder::new().name("rauha-deny-events".to_owned()).spawn(move || {
                for event in rx {
                    let Some(names) = Weak::upgrade(&names) else { break };
                    let name = lock(&names)
                        .get(&event.zone_id)
                        .cloned()
                        .unwrap_or_else(|| format!("zone-id-{}", event.zone_id));
                    publish(&name, &event);
                }
            });
        match spawned {
            Ok(_) => *lock(&self.consumer) = Some(consumer),
            Err(error) => tracing::error!(%error, "spawn the deny-event forwarder"),
        }
    }

    /// Attaches the zone's cgroup programs to its cgroup2 node and registers it with the LSM
    /// layer. Nothing is left attached when it fails.
    pub fn attach_zone(
        &self,
        zone: &Zone,
        cgroup_dir: &Path,
        rules: &ZoneRules,
    ) -> Result<(), BpfError> {
        lock(&self.names).insert(zone.numeric_id, zone.name.clone());
        if let (true, Some(events)) = (self.cgroup_active(), &self.events) {
            let spare = lock(&self.spare).take();
            let loaded = match spare {
                Some(loaded) => loaded,
                None => LoadedZonePrograms::load(events)?,
            };
            let peers = lock(&self.peers).get(&zone.numeric_id).cloned().unwrap_or_default();
            let programs = loaded.attach(
                zone.numeric_id,
                cgroup_dir,
                &rules.devices,
                &rules.egress,
                &peers,
            )?;
            lock(&self.zones).insert(zone.numeric_id, (programs, rules.clone()));
            self.refill_spare();
        }
        if let Some(lsm) = &self.lsm {
            let registered =
                cgroup_id(cgroup_dir).and_then(|id| lsm.set_zone(id, zone.numeric_id)).and_then(
                    |()| lsm.set_zone_flags(zone.numeric_id, bpf_policy::lsm_flags(&zone.policy)),
                );
            if let Err(error) = registered {
                self.detach_zone(zone.numeric_id, cgroup_dir);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Tell the LSM layer that the files of a running container (its overlay root, found
    /// through its init's `/proc/PID/root`) belong to `zone_id`.
    pub fn register_root(&self, container: &str, pid: u32, zone_id: u32) -> Result<(), BpfError> {
        let Some(lsm) = &self.lsm else { return Ok(()) };
        let dev = crate::enforce::bpf::superblock_dev(Path::new(&format!("/proc/{pid}/root")))?;
        lsm.set_superblock_zone(dev, zone_id)?;
        lock(&self.roots).insert(container.to_owned(), dev);
        Ok(())
    }

    /// Forget a container's root filesystem (it stopped; its overlay goes with its mount
    /// namespace).
    pub fn forget_root(&self, container: &str) {
        let dev = lock(&self.roots).remove(container);
        if let (Some(lsm), Some(dev)) = (&self.lsm, dev)
            && let Err(error) = lsm.remove_superblock(dev)
        {
            tracing::warn!(%error, container, "forget container root in the lsm map");
        }
    }

    /// Loads the next spare on a thread of its own, off the request path.
    fn refill_spare(&self) {
        if !self.cgroup_active() || lock(&self.spare).is_some() {
            return;
        }
        let Some(events) = &self.events else { return };
        // The thread needs its own handles on the event maps.
        let events = match events.try_clone() {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, "no spare cgroup programs; the next zone loads its own");
                return;
            }
        };
        let spare = Arc::clone(&self.spare);
        let spawned =
            std::thread::Builder::new().name("rauha-bpf-spare".to_owned()).spawn(move || {
                match LoadedZonePrograms::load(&events) {
                    Ok(loaded) => {
                        let mut slot = lock(&spare);
                        if slot.is_none() {
                            *slot = Some(loaded);
                        }
                    }
                    Err(error) => tracing::warn!(%error, "load spare cgroup programs"),
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "spawn the spare loader");
        }
    }

    /// Detaches the zone's programs and forgets it in the LSM maps. Absent entries are fine.
    pub fn detach_zone(&self, numeric_id: u32, cgroup_dir: &Path) {
        lock(&self.zones).remove(&numeric_id);
        lock(&self.peers).remove(&numeric_id);
        if let Some(lsm) = &self.lsm
            && let Ok(id) = cgroup_id(cgroup_dir)
            && let Err(error) = lsm.remove_zone(id)
        {
            tracing::warn!(%error, zone_id = numeric_id, "forget zone in the lsm map");
        }
    }

    /// Forgets the zone's name once its last deny event can no longer arrive.
    pub fn forget_name(&self, numeric_id: u32) {
        lock(&self.names).remove(&numeric_id);
    }

    /// The rules a zone's maps hold now (`None` without attached programs).
    pub fn rules(&self, numeric_id: u32) -> Option<ZoneRules> {
        lock(&self.zones).get(&numeric_id).map(|(_, rules)| rules.clone())
    }

    /// Rewrites the zone's maps for a new policy, live. Returns which maps changed.
    pub fn apply_policy(&self, zone: &Zone, new: &ZoneRules) -> Result<Vec<String>, BpfError> {
        let mut changed = Vec::new();
        if let Some((programs, current)) = lock(&self.zones).get_mut(&zone.numeric_id) {
            if current.devices != new.devices {
                programs.update_devices(&new.devices)?;
                current.devices = new.devices.clone();
                changed.push("bpf map rauha_devices (devices.allowed)".to_owned());
            }
            if current.egress != new.egress {
                let peers = lock(&self.peers).get(&zone.numeric_id).cloned().unwrap_or_default();
                programs.update_network(&new.egress, &peers)?;
                current.egress = new.egress.clone();
                changed.push("bpf map rauha_egress (network.allowed_egress)".to_owned());
            }
        }
        if let Some(lsm) = &self.lsm {
            let flags = bpf_policy::lsm_flags(&zone.policy);
            lsm.set_zone_flags(zone.numeric_id, flags)?;
        }
        Ok(changed)
    }

    /// Gives every zone's egress programs the addresses of the zones it may reach (both list
    /// each other in `allowed_zones` and the peer holds a bridge address), live. Returns how
    /// many zones' peer sets changed.
    pub fn sync_peers<'a>(&self, zones: impl Iterator<Item = &'a Zone>) -> Result<usize, BpfError> {
        let zones: Vec<&Zone> = zones.collect();
        let entries: Vec<(u32, &str, &[String])> = zones
            .iter()
            .map(|z| (z.numeric_id, z.name.as_str(), z.policy.network.allowed_zones.as_slice()))
            .collect();
        let pairs = bpf_policy::allowed_comms(&entries);
        let address: HashMap<u32, IpAddr> =
            zones.iter().filter_map(|z| z.address.map(|a| (z.numeric_id, IpAddr::V4(a)))).collect();
        self.sync_addresses(&address)?;
        let mut changed = 0;
        for &(id, _, _) in &entries {
            let mut wanted: Vec<IpAddr> = pairs
                .iter()
                .filter(|(src, _)| *src == id)
                .filter_map(|(_, dst)| address.get(dst).copied())
                .collect();
            wanted.sort();
            let current = lock(&self.peers).get(&id).cloned().unwrap_or_default();
            if current != wanted {
                self.update_peers(id, wanted)?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Make the LSM map of zone addresses hold exactly `wanted` (zone id by address).
    fn sync_addresses(&self, wanted: &HashMap<u32, IpAddr>) -> Result<(), BpfError> {
        let Some(lsm) = &self.lsm else { return Ok(()) };
        let mut held = lock(&self.addresses);
        let stale: Vec<IpAddr> = held
            .iter()
            .filter(|(ip, zone)| wanted.get(zone) != Some(ip))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in stale {
            lsm.remove_zone_ip(ip)?;
            held.remove(&ip);
        }
        for (&zone, &ip) in wanted {
            if held.get(&ip) != Some(&zone) {
                lsm.set_zone_ip(ip, zone)?;
                held.insert(ip, zone);
            }
        }
        Ok(())
    }

    /// Replaces the peer-zone addresses a zone may reach, live.
    pub fn update_peers(&self, numeric_id: u32, peers: Vec<IpAddr>) -> Result<(), BpfError> {
        if let Some((programs, rules)) = lock(&self.zones).get_mut(&numeric_id) {
            programs.update_network(&rules.egress, &peers)?;
        }
        lock(&self.peers).insert(numeric_id, peers);
        Ok(())
    }

    /// Makes the LSM allowed-comms map hold exactly the mutual `allowed_zones` pairs of `zones`.
    /// Returns whether the map changed.
    pub fn sync_comms<'a>(&self, zones: impl Iterator<Item = &'a Zone>) -> Result<bool, BpfError> {
        let Some(lsm) = &self.lsm else { return Ok(false) };
        let entries: Vec<(u32, &str, &[String])> = zones
            .map(|z| (z.numeric_id, z.name.as_str(), z.policy.network.allowed_zones.as_slice()))
            .collect();
        let wanted = bpf_policy::allowed_comms(&entries);
        let mut current = lock(&self.comms);
        for &(src, dst) in current.difference(&wanted) {
            lsm.revoke_comm(src, dst)?;
        }
        for &(src, dst) in wanted.difference(&current) {
            lsm.allow_comm(src, dst)?;
        }
        let changed = *current != wanted;
        *current = wanted;
        Ok(changed)
    }

    /// How many zones have their cgroup programs attached.
    pub fn attached_zones(&self) -> usize {
        lock(&self.zones).len()
    }
}

/// The message of a deny event on the bus.
pub fn deny_message(event: &DenyEvent) -> String {
    let mut message = format!("pid {}", event.pid);
    if let Some(comm) = &event.comm {
        message.push_str(&format!(" ({comm})"));
    }
    message.push_str(&format!(": {} denied by {}", event.target, event.hook.as_str()));
    if event.suppressed > 0 {
        message
            .push_str(&format!("; {} earlier denies not reported (rate limit)", event.suppressed));
    }
    message
}
