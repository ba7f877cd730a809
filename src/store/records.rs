//! On-disk record layouts. A stored record is an enum over its versions, so a newer daemon reads
//! every older layout and converts it to the current one.

use std::net::Ipv4Addr;

use jiff::Timestamp;
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
    /// The zone's address on the bridge while it is bridged; held, never handed to another.
    pub address: Option<Ipv4Addr>,
}

/// Layout 1 of a zone record: before zones had bridge addresses.
#[derive(Serialize, Deserialize)]
pub(super) struct ZoneRecordV1 {
    id: Uuid,
    name: String,
    numeric_id: u32,
    policy_toml: String,
    state: ZoneRecordState,
    created_at_ms: i64,
}

#[cfg(test)]
impl ZoneRecordV1 {
    pub(super) fn for_test(id: Uuid, name: &str) -> Self {
        Self {
            id,
            name: name.to_owned(),
            numeric_id: 1,
            policy_toml: String::new(),
            state: ZoneRecordState::Ready,
            created_at_ms: 0,
        }
    }
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
    V1(ZoneRecordV1),
    V2(ZoneRecord),
}

impl StoredZone {
    pub(super) fn from_current(record: &ZoneRecord) -> Self {
        Self::V2(record.clone())
    }

    pub(super) fn into_current(self) -> ZoneRecord {
        match self {
            Self::V1(v1) => ZoneRecord {
                id: v1.id,
                name: v1.name,
                numeric_id: v1.numeric_id,
                policy_toml: v1.policy_toml,
                state: v1.state,
                created_at_ms: v1.created_at_ms,
                address: None,
            },
            Self::V2(record) => record,
        }
    }
}

/// Every layout a container record has had. Append new versions; never reorder or edit old ones.
#[derive(Serialize, Deserialize)]
pub(super) enum StoredContainer {
    V1(ContainerV1),
    V2(ContainerV2),
    /// Adds `tty` and `interactive`.
    V3(Container),
}

/// Layout 1 of a container record: before published ports.
#[derive(Serialize, Deserialize)]
pub(super) struct ContainerV1 {
    id: Uuid,
    name: String,
    zone_id: Uuid,
    image: String,
    image_digest: String,
    args: Vec<String>,
    state: crate::container::ContainerState,
    pid: u32,
    created_at: Timestamp,
    started_at: Option<Timestamp>,
    exit: Option<crate::container::ExitInfo>,
    auto_remove: bool,
}

/// Layout 2 of a container record: published ports, before `tty` and `interactive`.
#[derive(Serialize, Deserialize)]
pub(super) struct ContainerV2 {
    id: Uuid,
    name: String,
    zone_id: Uuid,
    image: String,
    image_digest: String,
    args: Vec<String>,
    state: crate::container::ContainerState,
    pid: u32,
    created_at: Timestamp,
    started_at: Option<Timestamp>,
    exit: Option<crate::container::ExitInfo>,
    auto_remove: bool,
    ports: Vec<crate::net::PortMapping>,
}

impl StoredContainer {
    pub(super) fn from_current(container: &Container) -> Self {
        Self::V3(container.clone())
    }

    pub(super) fn into_current(self) -> Container {
        match self {
            Self::V1(v1) => Container {
                id: v1.id,
                name: v1.name,
                zone_id: v1.zone_id,
                image: v1.image,
                image_digest: v1.image_digest,
                args: v1.args,
                state: v1.state,
                pid: v1.pid,
                created_at: v1.created_at,
                started_at: v1.started_at,
                exit: v1.exit,
                auto_remove: v1.auto_remove,
                ports: Vec::new(),
                tty: false,
                interactive: false,
            },
            Self::V2(v2) => Container {
                id: v2.id,
                name: v2.name,
                zone_id: v2.zone_id,
                image: v2.image,
                image_digest: v2.image_digest,
                args: v2.args,
                state: v2.state,
                pid: v2.pid,
                created_at: v2.created_at,
                started_at: v2.started_at,
                exit: v2.exit,
                auto_remove: v2.auto_remove,
                ports: v2.ports,
                tty: false,
                interactive: false,
            },
            Self::V3(container) => container,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ContainerState;
    use crate::net::{PortMapping, Proto};

    #[test]
    fn containers_stored_before_tty_load_without_one() {
        let v2 = StoredContainer::V2(ContainerV2 {
            id: Uuid::nil(),
            name: "old".into(),
            zone_id: Uuid::nil(),
            image: "busybox".into(),
            image_digest: "sha256:0".into(),
            args: vec!["sh".into()],
            state: ContainerState::Stopped,
            pid: 0,
            created_at: Timestamp::UNIX_EPOCH,
            started_at: None,
            exit: None,
            auto_remove: true,
            ports: vec![PortMapping { host_port: 8080, container_port: 80, proto: Proto::Tcp }],
        });
        let bytes = postcard::to_stdvec(&v2).unwrap();
        let loaded = postcard::from_bytes::<StoredContainer>(&bytes).unwrap().into_current();
        assert_eq!(
            (loaded.name.as_str(), loaded.auto_remove, loaded.ports.len()),
            ("old", true, 1)
        );
        assert!(!loaded.tty && !loaded.interactive);
    }
}
