//! On-disk record layouts. A stored record is an enum over its versions, so a newer daemon reads
//! every older layout and converts it to the current one.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::container::Container;

/// A zone as persisted (the current layout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneRecord {
    pub id: Uuid,
    pub name: String,
    /// Names the zone's kernel objects; unique among held zones.
    pub numeric_id: u32,
    /// The effective policy in its canonical TOML form. Kept as text, not as the parsed
    /// structure, so that policy keys added later take their defaults when old records load.
    pub policy_toml: String,
    pub state: ZoneRecordState,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// The persisted lifecycle state. `Deleting` is written before a zone's kernel objects are
/// removed, so a daemon that dies half-way finishes the deletion at its next start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZoneRecordState {
    Ready,
    Deleting,
}

/// Every layout a zone record has had. Append new versions; never reorder or edit old ones.
#[derive(Serialize, Deserialize)]
pub(super) enum StoredZone {
    V1(ZoneRecord),
}

impl StoredZone {
    pub(super) fn from_current(record: &ZoneRecord) -> Self {
        Self::V1(record.clone())
    }

    pub(super) fn into_current(self) -> ZoneRecord {
        match self {
            Self::V1(record) => record,
        }
    }
}

/// Every layout a container record has had. Append new versions; never reorder or edit old ones.
#[derive(Serialize, Deserialize)]
pub(super) enum StoredContainer {
    V1(Container),
}

impl StoredContainer {
    pub(super) fn from_current(container: &Container) -> Self {
        Self::V1(container.clone())
    }

    pub(super) fn into_current(self) -> Container {
        match self {
            Self::V1(container) => container,
        }
    }
}
