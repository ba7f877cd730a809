//! The in-memory view of all zones, kept in step with the store by the daemon (store first, then
//! here), so reads never touch the database.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::Zone;

/// A registry rule the request broke.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("zone {0:?} already exists")]
    Duplicate(String),
    #[error("zone {0:?} not found")]
    NotFound(String),
    #[error("no free numeric zone id (all {0} are held)")]
    IdsExhausted(u32),
}

/// Zones by name, with the numeric ids they hold.
#[derive(Debug, Default)]
pub struct ZoneRegistry {
    by_name: BTreeMap<String, Zone>,
    held_ids: BTreeSet<u32>,
    /// The numeric id handed out last; the next one is searched for after it.
    last_id: u32,
}

/// Largest numeric id; keeps derived kernel names (`zone-N`, interface names) short.
const MAX_NUMERIC_ID: u32 = 1 << 20;

impl ZoneRegistry {
    /// Build from zones loaded at start.
    pub fn from_zones(zones: impl IntoIterator<Item = Zone>) -> Self {
        let mut registry = Self::default();
        for zone in zones {
            registry.held_ids.insert(zone.numeric_id);
            registry.by_name.insert(zone.name.clone(), zone);
        }
        registry.last_id = registry.held_ids.last().copied().unwrap_or(0);
        registry
    }

    pub fn get(&self, name: &str) -> Result<&Zone, RegistryError> {
        self.by_name.get(name).ok_or_else(|| RegistryError::NotFound(name.to_owned()))
    }

    pub fn get_by_id(&self, id: Uuid) -> Option<&Zone> {
        self.by_name.values().find(|zone| zone.id == id)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// All zones, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.by_name.values()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The first numeric id after the one handed out last that no held zone uses, wrapping to
    /// 1 after the largest. Ids go round rather than back to the lowest free one: a deleted
    /// zone's kernel names (its veth `rz<id>`) live on until the kernel has reaped its network
    /// namespace in the background, and a new zone taking the same id at once would have to
    /// wait for that.
    pub fn free_numeric_id(&self) -> Result<u32, RegistryError> {
        self.first_free(self.last_id.saturating_add(1), MAX_NUMERIC_ID)
            .or_else(|| self.first_free(1, self.last_id))
            .ok_or(RegistryError::IdsExhausted(MAX_NUMERIC_ID))
    }

    /// The lowest id in `from..=to` no held zone uses.
    fn first_free(&self, from: u32, to: u32) -> Option<u32> {
        if from > to {
            return None;
        }
        let mut candidate = from;
        for &held in self.held_ids.range(from..=to) {
            if held != candidate {
                break;
            }
            candidate += 1;
        }
        (candidate <= to).then_some(candidate)
    }

    /// Add a zone whose record is already committed.
    pub fn insert(&mut self, zone: Zone) -> Result<(), RegistryError> {
        if self.by_name.contains_key(&zone.name) {
            return Err(RegistryError::Duplicate(zone.name));
        }
        self.held_ids.insert(zone.numeric_id);
        self.last_id = zone.numeric_id;
        self.by_name.insert(zone.name.clone(), zone);
        Ok(())
    }

    /// Replace a zone's entry (same name) after its record changed.
    pub fn update(&mut self, zone: Zone) {
        self.by_name.insert(zone.name.clone(), zone);
    }

    /// Drop a zone whose record is already deleted.
    pub fn remove(&mut self, name: &str) -> Option<Zone> {
        let zone = self.by_name.remove(name)?;
        self.held_ids.remove(&zone.numeric_id);
        Some(zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::{Policy, ZoneState};

    fn zone(name: &str, numeric_id: u32) -> Zone {
        Zone {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            numeric_id,
            policy: Policy::default(),
            state: ZoneState::Ready,
            created_at: jiff::Timestamp::UNIX_EPOCH,
            address: None,
        }
    }

    #[test]
    fn numeric_ids_go_round_and_are_not_reused_while_held() {
        let mut registry = ZoneRegistry::default();
        for (n, name) in ["a", "b", "c"].iter().enumerate() {
            let id = registry.free_numeric_id().unwrap();
            assert_eq!(id, n as u32 + 1);
            registry.insert(zone(name, id)).unwrap();
        }
        // A freed id is not handed out again at once.
        registry.remove("b");
        assert_eq!(registry.free_numeric_id().unwrap(), 4);
        registry.insert(zone("d", 4)).unwrap();
        // After the largest id the search wraps to the lowest free one.
        registry.insert(zone("top", MAX_NUMERIC_ID)).unwrap();
        assert_eq!(registry.free_numeric_id().unwrap(), 2);
        registry.insert(zone("e", 2)).unwrap();
        assert_eq!(registry.free_numeric_id().unwrap(), 5);
        // A restarted daemon continues after the largest held id.
        let reloaded = ZoneRegistry::from_zones(registry.by_name.values().cloned());
        assert_eq!(reloaded.free_numeric_id().unwrap(), 5);
    }

    #[test]
    fn numeric_ids_run_out_only_when_all_are_held() {
        let mut registry = ZoneRegistry {
            held_ids: (1..=MAX_NUMERIC_ID).collect(),
            last_id: 7,
            ..ZoneRegistry::default()
        };
        assert!(matches!(registry.free_numeric_id(), Err(RegistryError::IdsExhausted(_))));
        registry.held_ids.remove(&3);
        assert_eq!(registry.free_numeric_id().unwrap(), 3);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut registry = ZoneRegistry::default();
        registry.insert(zone("a", 1)).unwrap();
        assert!(matches!(registry.insert(zone("a", 2)), Err(RegistryError::Duplicate(_))));
        assert!(registry.held_ids.contains(&1) && !registry.held_ids.contains(&2));
    }
}
