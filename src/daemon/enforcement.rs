//! The daemon's eBPF enforcement: which BPF layers this kernel supports (probed once at start),
//! the per-zone cgroup-BPF programs (attached on create and at start, maps updated live on
//! `policy apply`, detached on delete), the system-wide LSM layer when the kernel runs it, and
//! the bridge from the deny-event ring buffer to the event bus.
//!
//! By default every link is owned by the daemon process: enforcement of this layer ends when
//! the daemon exits and is re-attached for every zone when it starts again. With `--pin` the
//! links and maps are pinned under the daemon's bpffs directory ([`PinDir`]) and stay attached
//! while the daemon is down; at start the daemon adopts what it finds there (verified, maps
//! rewritten from the store), attaches what is missing or does not match, and removes the pins
//! of zones that are gone. A daemon started without `--pin` removes pins an earlier run left,
//! once its own links hold.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak, mpsc};
use std::time::Instant;

use crate::enforce::bpf::{BpfError, cgroup_id};
use crate::enforce::bpf_events::{DenyEvent, EventConsumer, EventMaps};
use crate::enforce::bpf_pin::{self, PinDir};
use crate::enforce::bpf_policy::{self, DeviceRuleError};
use crate::enforce::cgroup_bpf::{DeviceRule, LoadedZonePrograms, ProgramTags, ZoneCgroupPrograms};
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
    /// This daemon's bpffs directory: where it pins with `--pin`, and where an earlier `--pin`
    /// run may have left pins otherwise.
    pins: PinDir,
    /// `--pin`.
    pinning: bool,
    /// With `--pin`, what pinned zone programs must run to be adopted. `None` when pinned zone
    /// objects cannot be adopted: they would write deny events into a ring no one reads when
    /// the pinned event maps were unusable.
    adopt_tags: Option<ProgramTags>,
    /// The LSM layer came from pins: its maps may hold entries of zones and containers that
    /// are gone, until [`Self::finish_start`].
    lsm_adopted: bool,
    /// Zones whose pinned programs this daemon adopted at start.
    adopted_zones: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The result of adopting pinned objects, or `None` (logged) when they cannot be adopted.
fn adopted<T>(what: &str, result: Result<T, BpfError>) -> Option<T> {
    result
        .inspect_err(|error| tracing::warn!(%error, "pinned {what} not adopted; attaching anew"))
        .ok()
}

/// The shared event maps, and whether they were adopted: with `pinning`, the pinned maps
/// when they are there and usable, else new ones, pinned. Only pinning failures are errors.
fn open_event_maps(
    pins: &PinDir,
    pinning: bool,
) -> Result<(Result<EventMaps, BpfError>, bool), BpfError> {
    if pinning && pins.events().exists() {
        let opened = EventMaps::open_pinned(&pins.events());
        if let Some(events) = adopted("bpf event maps (and every pinned program)", opened) {
            return Ok((Ok(events), true));
        }
    }
    let events = EventMaps::create();
    if let (true, Ok(events)) = (pinning, &events) {
        bpf_pin::remove_tree(&pins.events())?;
        events.pin(&pins.events())?;
    }
    Ok((events, false))
}

/// Loads the LSM layer: with `--pin`, the pinned layer when `adoptable` (the pinned event
/// maps were adopted) and it matches this build, else attached anew and pinned. Returns the
/// layer's state, the layer and whether it was adopted; only pinning failures are errors.
fn start_lsm(
    zone_level: u32,
    events: &EventMaps,
    pins: &PinDir,
    pinning: bool,
    adoptable: bool,
) -> Result<(LayerState, Option<LsmLayer>, bool), BpfError> {
    let loaded = match LsmLayer::load(zone_level, events) {
        Ok(loaded) => loaded,
        Err(error) => return Ok((LayerState::Unavailable(error.to_string()), None, false)),
    };
    if adoptable
        && pins.lsm().exists()
        && let Some(layer) = adopted("lsm programs", loaded.adopt(&pins.lsm()))
    {
        tracing::info!("adopted the pinned lsm programs");
        return Ok((LayerState::Active, Some(layer), true));
    }
    let layer = match loaded.attach() {
        Ok(layer) => layer,
        Err(error) => return Ok((LayerState::Unavailable(error.to_string()), None, false)),
    };
    if pinning {
        // The new links hold before the old pins go: no gap.
        bpf_pin::remove_tree(&pins.lsm())?;
        layer.pin(&pins.lsm())?;
    }
    Ok((LayerState::Active, Some(layer), false))
}

impl BpfEnforcement {
    /// Probes the layers: creates the shared event maps, loads one instance of the cgroup
    /// programs (kept as the first spare), probes the LSM layer and loads it when available.
    /// `zone_level` is the cgroup2 depth of the zone nodes. With `pinning` (`--pin`), the
    /// event maps and the LSM layer are adopted from `pins` when they are there and usable, and
    /// pinned otherwise; the only errors are pinning failures (an unavailable layer is a state,
    /// not an error).
    pub fn start(zone_level: u32, pins: PinDir, pinning: bool) -> Result<Self, BpfError> {
        if pinning {
            pins.prepare()?;
        }
        let (events, events_adopted) = open_event_maps(&pins, pinning)?;
        let mut adopt_tags = None;
        let (events, cgroup_state, spare) = match events {
            Ok(events) => match LoadedZonePrograms::load(&events) {
                Ok(spare) => {
                    if events_adopted {
                        adopt_tags = adopted("cgroup-bpf programs", spare.tags());
                    }
                    (Some(events), LayerState::Active, Some(spare))
                }
                Err(error) => (Some(events), LayerState::Unavailable(error.to_string()), None),
            },
            Err(error) => (None, LayerState::Unavailable(error.to_string()), None),
        };
        let (lsm_state, lsm, lsm_adopted) = match (LsmLayer::probe(), &events) {
            (LsmAvailability::Unavailable(reason), _) => {
                (LayerState::Unavailable(reason.to_string()), None, false)
            }
            (LsmAvailability::Available, None) => (
                LayerState::Unavailable("no bpf event maps (see cgroup-bpf)".to_owned()),
                None,
                false,
            ),
            (LsmAvailability::Available, Some(events)) => {
                start_lsm(zone_level, events, &pins, pinning, events_adopted)?
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
        if pinning {
            tracing::info!(dir = %pins.path().display(), "bpf links and maps are pinned (--pin)");
        }
        // An adopted LSM layer's maps are where the daemon starts from; the syncs at start
        // remove what the store no longer has.
        let (comms, addresses) = match (&lsm, lsm_adopted) {
            (Some(layer), true) => (
                layer.comm_pairs().into_iter().collect(),
                layer
                    .zone_ips()
                    .inspect_err(
                        |error| tracing::warn!(%error, "read the pinned lsm zone addresses"),
                    )
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            ),
            _ => (BTreeSet::new(), HashMap::new()),
        };
        Ok(Self {
            events,
            cgroup_state,
            lsm_state,
            lsm,
            zones: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            names: Arc::new(Mutex::new(HashMap::new())),
            spare: Arc::new(Mutex::new(spare)),
            comms: Mutex::new(comms),
            consumer: Mutex::new(None),
            roots: Mutex::new(HashMap::new()),
            addresses: Mutex::new(addresses),
            pins,
            pinning,
            adopt_tags,
            lsm_adopted,
            adopted_zones: AtomicUsize::new(0),
        })
    }

    /// Ends start-up once every live zone is attached and every running container's root is
    /// registered (`live`: each zone with its cgroup2 node). With `--pin`: removes the pins of
    /// zones that no longer exist (and of an LSM layer no longer loaded) and what an adopted
    /// LSM layer's maps hold for gone zones and containers. Without: removes the pins an
    /// earlier `--pin` run left, detaching their links now that this daemon's own hold.
    pub fn finish_start(&self, live: &[(&Zone, PathBuf)]) -> Result<(), BpfError> {
        if !self.pinning {
            if self.pins.exists() {
                self.pins.remove()?;
                tracing::info!(
                    dir = %self.pins.path().display(),
                    "removed the bpf pins an earlier --pin run left and detached their links; \
                     this daemon's links end with it (no --pin)"
                );
            }
            return Ok(());
        }
        let keep: HashSet<String> = live.iter().map(|(zone, _)| zone.id.to_string()).collect();
        for key in self.pins.zone_keys()? {
            if !keep.contains(&key) {
                bpf_pin::remove_tree(&self.pins.zone(&key))?;
                tracing::info!(
                    zone_id = %key,
                    "unpinned and detached the bpf programs of a zone that no longer exists"
                );
            }
        }
        match &self.lsm {
            None if self.pins.lsm().exists() => {
                bpf_pin::remove_tree(&self.pins.lsm())?;
                tracing::info!(
                    "unpinned the lsm programs of an earlier run (lsm layer not active)"
                );
            }
            Some(lsm) if self.lsm_adopted => {
                let cgroups = live.iter().filter_map(|(_, dir)| cgroup_id(dir).ok()).collect();
                let ids = live.iter().map(|(zone, _)| zone.numeric_id).collect();
                let roots = lock(&self.roots).values().copied().collect();
                let removed = lsm.retain(&cgroups, &ids, &roots)?;
                if removed > 0 {
                    tracing::info!(removed, "removed lsm map entries of gone zones and containers");
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Says at shutdown what happens to the BPF layers while the daemon is down.
    pub fn log_shutdown(&self) {
        if self.pinning {
            tracing::info!(
                dir = %self.pins.path().display(),
                zones = self.attached_zones(),
                "bpf links stay pinned: cgroup-bpf and lsm enforcement continue while the \
                 daemon is down"
            );
        }
    }

    /// How many zones' programs were adopted from pins at start.
    pub fn adopted_zones(&self) -> usize {
        self.adopted_zones.load(Ordering::Relaxed)
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

    /// Attaches the zone's cgroup programs to its cgroup2 node (with `--pin`: adopts them from
    /// the pins when they match, pins them otherwise) and registers it with the LSM layer.
    /// Nothing is left attached when it fails.
    pub fn attach_zone(
        &self,
        zone: &Zone,
        cgroup_dir: &Path,
        rules: &ZoneRules,
    ) -> Result<(), BpfError> {
        lock(&self.names).insert(zone.numeric_id, zone.name.clone());
        if let (true, Some(events)) = (self.cgroup_active(), &self.events) {
            let peers = lock(&self.peers).get(&zone.numeric_id).cloned().unwrap_or_default();
            let programs = match self.adopt_zone(zone, cgroup_dir, rules, &peers) {
                Some(programs) => programs,
                None => {
                    let spare = lock(&self.spare).take();
                    let loaded = match spare {
                        Some(loaded) => loaded,
                        None => LoadedZonePrograms::load(events)?,
                    };
                    let programs = loaded.attach(
                        zone.numeric_id,
                        cgroup_dir,
                        &rules.devices,
                        &rules.egress,
                        &peers,
                    )?;
                    if self.pinning {
                        // Pins of this zone that were not adopted go only now that the new
                        // links hold: no gap.
                        let dir = self.pins.zone(&zone.id.to_string());
                        bpf_pin::remove_tree(&dir)?;
                        programs.pin(&dir)?;
                    }
                    programs
                }
            };
            lock(&self.zones).insert(zone.numeric_id, (programs, rules.clone()));
            self.refill_spare();
        }
        if let Some(lsm) = &self.lsm {
            let registered =
                cgroup_id(cgroup_dir).and_then(|id| lsm.set_zone(id, zone.numeric_id)).and_then(
                    |()| lsm.set_zone_flags(zone.numeric_id, bpf_policy::lsm_flags(&zone.policy)),
                );
            if let Err(error) = registered {
                if let Err(detach) = self.detach_zone(zone, cgroup_dir) {
                    tracing::error!(error = %detach, zone = %zone.name, "roll back bpf attach");
                }
                return Err(error);
            }
        }
        Ok(())
    }

    /// The zone's pinned programs when `--pin` left some that match the zone (see
    /// [`ZoneCgroupPrograms::adopt`]), their maps rewritten from `rules`.
    fn adopt_zone(
        &self,
        zone: &Zone,
        cgroup_dir: &Path,
        rules: &ZoneRules,
        peers: &[IpAddr],
    ) -> Option<ZoneCgroupPrograms> {
        let tags = self.adopt_tags.as_ref()?;
        let dir = self.pins.zone(&zone.id.to_string());
        if !dir.exists() {
            return None;
        }
        let started = Instant::now();
        let adopted = ZoneCgroupPrograms::adopt(
            &dir,
            tags,
            zone.numeric_id,
            cgroup_dir,
            &rules.devices,
            &rules.egress,
            peers,
        );
        match adopted {
            Ok(programs) => {
                self.adopted_zones.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    zone = %zone.name,
                    micros = started.elapsed().as_micros() as u64,
                    "adopted the zone's pinned cgroup-bpf programs"
                );
                Some(programs)
            }
            Err(error) => {
                tracing::warn!(
                    zone = %zone.name,
                    %error,
                    "pinned cgroup-bpf programs not adopted; attaching anew"
                );
                None
            }
        }
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

    /// Detaches the zone's programs (and removes their pins) and forgets it in the LSM maps.
    /// Absent entries are fine; a pin that cannot be removed is the error, after everything
    /// else is done.
    pub fn detach_zone(&self, zone: &Zone, cgroup_dir: &Path) -> Result<(), BpfError> {
        lock(&self.zones).remove(&zone.numeric_id);
        lock(&self.peers).remove(&zone.numeric_id);
        if let Some(lsm) = &self.lsm
            && let Ok(id) = cgroup_id(cgroup_dir)
            && let Err(error) = lsm.remove_zone(id)
        {
            tracing::warn!(%error, zone_id = zone.numeric_id, "forget zone in the lsm map");
        }
        if self.pinning {
            bpf_pin::remove_tree(&self.pins.zone(&zone.id.to_string()))?;
        }
        Ok(())
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
