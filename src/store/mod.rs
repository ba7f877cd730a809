//! Durable state: one redb database under the state dir, and the lock that keeps a second daemon
//! off it.
//!
//! Every mutating request commits here before it replies. Records are versioned enums; a record
//! that does not decode stops start-up with its table and key named, never silently dropped.

mod records;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use rustix::fs::{FlockOperation, flock};
use uuid::Uuid;

use records::{StoredContainer, StoredZone};
pub use records::{ZoneRecord, ZoneRecordState};

use crate::container::Container;

/// Schema of the database as a whole; bumped when a table's layout changes incompatibly.
const SCHEMA_VERSION: u32 = 1;
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");
const ZONES: TableDefinition<u128, &[u8]> = TableDefinition::new("zones");
const CONTAINERS: TableDefinition<u128, &[u8]> = TableDefinition::new("containers");

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("create state dir {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("open lock file {}: {source}", path.display())]
    OpenLock { path: PathBuf, source: std::io::Error },
    #[error("another daemon already uses the state dir {} (lock {} is held)", root.display(), lock.display())]
    Locked { root: PathBuf, lock: PathBuf },
    #[error("lock {}: {source}", path.display())]
    Lock { path: PathBuf, source: rustix::io::Errno },
    #[error("open database {}: {source}", path.display())]
    Open { path: PathBuf, source: redb::Error },
    #[error("database {step}: {source}")]
    Database { step: &'static str, source: redb::Error },
    #[error("database schema version {found} is newer than this daemon supports ({supported})")]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("encode {what}: {source}")]
    Encode { what: String, source: postcard::Error },
    #[error("undecodable record in table {table}, key {key}: {reason}")]
    Corrupt { table: &'static str, key: String, reason: String },
}

fn db_step<E: Into<redb::Error>>(step: &'static str) -> impl FnOnce(E) -> StoreError {
    move |source| StoreError::Database { step, source: source.into() }
}

/// The daemon's database and its exclusive hold on the state dir.
pub struct Store {
    db: Arc<Database>,
    /// Held for the daemon's lifetime; the kernel drops the lock when the process dies.
    _lock: File,
}

impl Store {
    /// Lock `root` against other daemons and open (or create) `root/meta.redb`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(root)
            .map_err(|source| StoreError::CreateDir { path: root.to_owned(), source })?;
        let lock_path = root.join("rauhad.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::OpenLock { path: lock_path.clone(), source })?;
        flock(&lock, FlockOperation::NonBlockingLockExclusive).map_err(|errno| {
            if errno == rustix::io::Errno::WOULDBLOCK {
                StoreError::Locked { root: root.to_owned(), lock: lock_path.clone() }
            } else {
                StoreError::Lock { path: lock_path.clone(), source: errno }
            }
        })?;

        let db_path = root.join("meta.redb");
        let db = Database::create(&db_path)
            .map_err(|source| StoreError::Open { path: db_path.clone(), source: source.into() })?;
        let store = Self { db: Arc::new(db), _lock: lock };
        store.check_schema()?;
        Ok(store)
    }

    /// The shared database, for subsystems that keep their own tables (images).
    pub fn database(&self) -> Arc<Database> {
        Arc::clone(&self.db)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_step("begin write"))?;
        {
            let mut meta = txn.open_table(META).map_err(db_step("open table meta"))?;
            let found = meta
                .get("schema_version")
                .map_err(db_step("read schema version"))?
                .map(|v| v.value());
            match found {
                Some(found) if found > SCHEMA_VERSION => {
                    return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
                }
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)
                        .map_err(db_step("write schema version"))?;
                }
            }
            // Create the tables so read transactions never meet a missing one.
            txn.open_table(ZONES).map_err(db_step("open table zones"))?;
            txn.open_table(CONTAINERS).map_err(db_step("open table containers"))?;
        }
        txn.commit().map_err(db_step("commit schema"))
    }

    /// Every zone record, failing on the first one that does not decode.
    pub fn load_zones(&self) -> Result<Vec<ZoneRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_step("begin read"))?;
        let table = txn.open_table(ZONES).map_err(db_step("open table zones"))?;
        let mut zones = Vec::new();
        for entry in table.iter().map_err(db_step("iterate zones"))? {
            let (key, value) = entry.map_err(db_step("read zone"))?;
            let key = Uuid::from_u128(key.value());
            let stored: StoredZone =
                postcard::from_bytes(value.value()).map_err(|error| StoreError::Corrupt {
                    table: "zones",
                    key: key.to_string(),
                    reason: error.to_string(),
                })?;
            let record = stored.into_current();
            if record.id != key {
                return Err(StoreError::Corrupt {
                    table: "zones",
                    key: key.to_string(),
                    reason: format!("record carries id {}", record.id),
                });
            }
            zones.push(record);
        }
        Ok(zones)
    }

    /// Insert or replace a zone record, durably.
    pub fn put_zone(&self, record: &ZoneRecord) -> Result<(), StoreError> {
        let bytes = postcard::to_stdvec(&StoredZone::from_current(record)).map_err(|source| {
            StoreError::Encode { what: format!("zone {}", record.name), source }
        })?;
        let txn = self.db.begin_write().map_err(db_step("begin write"))?;
        {
            let mut table = txn.open_table(ZONES).map_err(db_step("open table zones"))?;
            table.insert(record.id.as_u128(), bytes.as_slice()).map_err(db_step("write zone"))?;
        }
        txn.commit().map_err(db_step("commit zone"))
    }

    /// Remove a zone record, durably. Removing an absent record is not an error.
    pub fn delete_zone(&self, id: Uuid) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_step("begin write"))?;
        {
            let mut table = txn.open_table(ZONES).map_err(db_step("open table zones"))?;
            table.remove(id.as_u128()).map_err(db_step("remove zone"))?;
        }
        txn.commit().map_err(db_step("commit zone removal"))
    }

    /// Every container record, failing on the first one that does not decode.
    pub fn load_containers(&self) -> Result<Vec<Container>, StoreError> {
        let txn = self.db.begin_read().map_err(db_step("begin read"))?;
        let table = txn.open_table(CONTAINERS).map_err(db_step("open table containers"))?;
        let mut containers = Vec::new();
        for entry in table.iter().map_err(db_step("iterate containers"))? {
            let (key, value) = entry.map_err(db_step("read container"))?;
            let key = Uuid::from_u128(key.value());
            let corrupt = |reason: String| StoreError::Corrupt {
                table: "containers",
                key: key.to_string(),
                reason,
            };
            let stored: StoredContainer =
                postcard::from_bytes(value.value()).map_err(|e| corrupt(e.to_string()))?;
            let container = stored.into_current();
            if container.id != key {
                return Err(corrupt(format!("record carries id {}", container.id)));
            }
            containers.push(container);
        }
        Ok(containers)
    }

    /// Insert or replace a container record, durably.
    pub fn put_container(&self, container: &Container) -> Result<(), StoreError> {
        let bytes =
            postcard::to_stdvec(&StoredContainer::from_current(container)).map_err(|source| {
                StoreError::Encode { what: format!("container {}", container.id), source }
            })?;
        let txn = self.db.begin_write().map_err(db_step("begin write"))?;
        {
            let mut table = txn.open_table(CONTAINERS).map_err(db_step("open table containers"))?;
            table
                .insert(container.id.as_u128(), bytes.as_slice())
                .map_err(db_step("write container"))?;
        }
        txn.commit().map_err(db_step("commit container"))
    }

    /// Remove a container record, durably. Removing an absent record is not an error.
    pub fn delete_container(&self, id: Uuid) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_step("begin write"))?;
        {
            let mut table = txn.open_table(CONTAINERS).map_err(db_step("open table containers"))?;
            table.remove(id.as_u128()).map_err(db_step("remove container"))?;
        }
        txn.commit().map_err(db_step("commit container removal"))
    }

    /// Write raw bytes under a zone key, bypassing encoding: lets tests plant an undecodable
    /// record.
    #[cfg(test)]
    fn put_raw_zone(&self, id: Uuid, bytes: &[u8]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_step("begin write"))?;
        {
            let mut table = txn.open_table(ZONES).map_err(db_step("open table zones"))?;
            table.insert(id.as_u128(), bytes).map_err(db_step("write zone"))?;
        }
        txn.commit().map_err(db_step("commit zone"))
    }
}

#[cfg(test)]
mod tests;
