use super::*;
use crate::store::records::ZoneRecordState;

fn record(name: &str, numeric_id: u32) -> ZoneRecord {
    ZoneRecord {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        numeric_id,
        policy_toml: String::new(),
        state: ZoneRecordState::Ready,
        created_at_ms: 1_764_000_000_000,
        address: None,
    }
}

#[test]
fn zones_round_trip_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let a = record("alpha", 1);
    let b = record("beta", 2);
    {
        let store = Store::open(dir.path()).unwrap();
        store.put_zone(&a).unwrap();
        store.put_zone(&b).unwrap();
        store.delete_zone(b.id).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.load_zones().unwrap(), vec![a]);
}

#[test]
fn second_open_of_the_same_state_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    match Store::open(dir.path()) {
        Err(StoreError::Locked { .. }) => {}
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn undecodable_record_is_an_error_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::new_v4();
    {
        let store = Store::open(dir.path()).unwrap();
        store.put_raw_zone(id, &[0xff, 0xff, 0xff]).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let error = store.load_zones().unwrap_err().to_string();
    assert!(error.contains(&id.to_string()), "{error}");
    assert!(error.contains("zones"), "{error}");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let txn = store.db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert("schema_version", SCHEMA_VERSION + 1).unwrap();
        txn.commit().unwrap();
    }
    match Store::open(dir.path()) {
        Err(StoreError::SchemaTooNew { found, .. }) => assert_eq!(found, SCHEMA_VERSION + 1),
        other => panic!("expected SchemaTooNew, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn layout_one_zone_records_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::new_v4();
    let v1 = records::ZoneRecordV1::for_test(id, "old");
    {
        let store = Store::open(dir.path()).unwrap();
        let bytes = postcard::to_stdvec(&records::StoredZone::V1(v1)).unwrap();
        store.put_raw_zone(id, &bytes).unwrap();
    }
    let zones = Store::open(dir.path()).unwrap().load_zones().unwrap();
    assert_eq!(zones.len(), 1);
    assert_eq!((zones[0].name.as_str(), zones[0].address), ("old", None));
}
