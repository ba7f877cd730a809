//! Zones: the model, the policy that governs each one, and the in-memory registry the daemon
//! serves reads from.

pub mod policy;
mod registry;

use jiff::Timestamp;
use uuid::Uuid;

use crate::store::{ZoneRecord, ZoneRecordState};
pub use policy::{NameError, Policy, PolicyError, ZoneType, validate_zone_name};
pub use registry::{RegistryError, ZoneRegistry};

/// Where a zone is in its life, as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Ready,
    Deleting,
}

impl ZoneState {
    /// The contract's string form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Deleting => "Deleting",
        }
    }
}

/// One zone: its identity, its policy and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub id: Uuid,
    pub name: String,
    /// Small number unique among held zones; names kernel objects (cgroups, interfaces), whose
    /// names cannot hold a 128-byte UTF-8 zone name.
    pub numeric_id: u32,
    pub policy: Policy,
    pub state: ZoneState,
    pub created_at: Timestamp,
    /// Address on the bridge while the zone is bridged.
    pub address: Option<std::net::Ipv4Addr>,
}

/// A stored zone record that no longer makes a valid zone.
#[derive(Debug, thiserror::Error)]
pub enum ZoneRecordError {
    #[error("zone {name} ({id}): stored policy is invalid: {source}")]
    Policy { id: Uuid, name: String, source: PolicyError },
    #[error("zone {name} ({id}): stored creation time {millis} is out of range")]
    CreatedAt { id: Uuid, name: String, millis: i64 },
}

impl Zone {
    /// The zone's type, which its policy carries.
    pub fn zone_type(&self) -> ZoneType {
        self.policy.zone_type()
    }

    /// Name of the zone's cgroup node under the daemon's cgroup parent.
    pub fn cgroup_name(&self) -> String {
        format!("zone-{}", self.numeric_id)
    }

    /// The persisted form.
    pub fn to_record(&self) -> ZoneRecord {
        ZoneRecord {
            id: self.id,
            name: self.name.clone(),
            numeric_id: self.numeric_id,
            policy_toml: self.policy.to_toml(),
            state: match self.state {
                ZoneState::Ready => ZoneRecordState::Ready,
                ZoneState::Deleting => ZoneRecordState::Deleting,
            },
            created_at_ms: self.created_at.as_millisecond(),
            address: self.address,
        }
    }

    /// Rebuild a zone from its persisted form.
    pub fn from_record(record: ZoneRecord) -> Result<Self, ZoneRecordError> {
        let policy = Policy::parse(&record.policy_toml).map_err(|source| {
            ZoneRecordError::Policy { id: record.id, name: record.name.clone(), source }
        })?;
        let created_at = Timestamp::from_millisecond(record.created_at_ms).map_err(|_| {
            ZoneRecordError::CreatedAt {
                id: record.id,
                name: record.name.clone(),
                millis: record.created_at_ms,
            }
        })?;
        Ok(Self {
            id: record.id,
            name: record.name,
            numeric_id: record.numeric_id,
            policy,
            state: match record.state {
                ZoneRecordState::Ready => ZoneState::Ready,
                ZoneRecordState::Deleting => ZoneState::Deleting,
            },
            created_at,
            address: record.address,
        })
    }
}

/// The contract's string for a zone type in responses.
pub fn zone_type_label(zone_type: ZoneType) -> &'static str {
    match zone_type {
        ZoneType::NonGlobal => "NonGlobal",
        ZoneType::Privileged => "Privileged",
    }
}

/// Parse a requested zone type: "" means "as the policy says".
pub fn parse_requested_type(value: &str) -> Result<Option<ZoneType>, String> {
    match value {
        "" => Ok(None),
        "non-global" | "NonGlobal" => Ok(Some(ZoneType::NonGlobal)),
        "privileged" | "Privileged" => Ok(Some(ZoneType::Privileged)),
        "global" => Err("zone_type: \"global\" is the host and cannot be created".to_owned()),
        other => Err(format!(
            "zone_type: unknown zone type {other:?} (expected non-global or privileged)"
        )),
    }
}
