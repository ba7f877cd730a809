//! Image records in the daemon's redb database (tables prefixed `image_`).

use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::image::error::ImageError;

/// manifest digest → version byte + postcard(ImageRecord).
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("image_records");
/// full tag (`docker.io/library/alpine:latest`) → manifest digest.
const TAGS: TableDefinition<&str, &str> = TableDefinition::new("image_tags");

/// Schema version of encoded [`ImageRecord`]s.
const RECORD_V1: u8 = 1;

/// A locally stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Manifest digest (`sha256:…`) of the platform-specific image manifest.
    pub digest: String,
    /// Tags in full form (`docker.io/library/alpine:latest`).
    pub tags: Vec<String>,
    /// Sum of the layer blob sizes.
    pub size: u64,
    /// Image creation time from its config (RFC 3339 UTC), else the time it was stored.
    pub created_at: String,
    /// The image config JSON as stored.
    pub config_json: String,
    /// Layer blob digests, lowest first.
    pub layers: Vec<String>,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Uncompressed layer digests (config `rootfs.diff_ids`), lowest first.
    pub diff_ids: Vec<String>,
    /// Layer media types, parallel to `layers`.
    pub layer_media_types: Vec<String>,
    /// Config blob digest.
    pub config_digest: String,
    /// Manifest media type.
    pub manifest_media_type: String,
    /// Digest of the index (manifest list) it was chosen from, if any.
    pub index_digest: Option<String>,
    /// `registry/repository@digest` forms it was pulled as.
    pub repo_digests: Vec<String>,
}

/// The `image_*` tables.
#[derive(Clone)]
pub struct Records {
    db: Arc<redb::Database>,
}

impl Records {
    /// Creates the tables if missing.
    pub fn open(db: Arc<redb::Database>) -> Result<Self, ImageError> {
        let tx = db.begin_write().map_err(|e| ImageError::db("begin write", e))?;
        tx.open_table(RECORDS).map_err(|e| ImageError::db("open image_records", e))?;
        tx.open_table(TAGS).map_err(|e| ImageError::db("open image_tags", e))?;
        tx.commit().map_err(|e| ImageError::db("commit", e))?;
        Ok(Self { db })
    }

    /// Every record; an undecodable one is an error.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let tx = self.db.begin_read().map_err(|e| ImageError::db("begin read", e))?;
        let t = tx.open_table(RECORDS).map_err(|e| ImageError::db("open image_records", e))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| ImageError::db("iterate image_records", e))? {
            let (k, v) = item.map_err(|e| ImageError::db("read image_records", e))?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// The record with manifest digest `digest`.
    pub fn get(&self, digest: &str) -> Result<Option<ImageRecord>, ImageError> {
        let tx = self.db.begin_read().map_err(|e| ImageError::db("begin read", e))?;
        let t = tx.open_table(RECORDS).map_err(|e| ImageError::db("open image_records", e))?;
        let v = t.get(digest).map_err(|e| ImageError::db("read image_records", e))?;
        v.map(|v| decode(digest, v.value())).transpose()
    }

    /// The digest a full tag points at.
    pub fn tag(&self, tag: &str) -> Result<Option<String>, ImageError> {
        let tx = self.db.begin_read().map_err(|e| ImageError::db("begin read", e))?;
        let t = tx.open_table(TAGS).map_err(|e| ImageError::db("open image_tags", e))?;
        let v = t.get(tag).map_err(|e| ImageError::db("read image_tags", e))?;
        Ok(v.map(|v| v.value().to_string()))
    }

    /// Stores `rec` (merging tags and repo digests with an existing record of the same digest)
    /// and moves its tags away from other records, all in one transaction.
    pub fn commit(&self, rec: &ImageRecord) -> Result<ImageRecord, ImageError> {
        let tx = self.db.begin_write().map_err(|e| ImageError::db("begin write", e))?;
        let merged;
        {
            let mut recs =
                tx.open_table(RECORDS).map_err(|e| ImageError::db("open image_records", e))?;
            let mut tags = tx.open_table(TAGS).map_err(|e| ImageError::db("open image_tags", e))?;
            let mut new = rec.clone();
            let old = recs
                .get(rec.digest.as_str())
                .map_err(|e| ImageError::db("read image_records", e))?
                .map(|v| decode(&rec.digest, v.value()))
                .transpose()?;
            if let Some(old) = old {
                for t in old.tags {
                    if !new.tags.contains(&t) {
                        new.tags.push(t);
                    }
                }
                for r in old.repo_digests {
                    if !new.repo_digests.contains(&r) {
                        new.repo_digests.push(r);
                    }
                }
                if new.index_digest.is_none() {
                    new.index_digest = old.index_digest;
                }
            }
            new.tags.sort();
            for t in &rec.tags {
                let prev = tags
                    .insert(t.as_str(), rec.digest.as_str())
                    .map_err(|e| ImageError::db("write image_tags", e))?
                    .map(|v| v.value().to_string());
                // The tag moved: strip it from the image it used to name.
                if let Some(prev) = prev.filter(|p| p != &rec.digest) {
                    let other = recs
                        .get(prev.as_str())
                        .map_err(|e| ImageError::db("read image_records", e))?
                        .map(|v| decode(&prev, v.value()))
                        .transpose()?;
                    if let Some(mut other) = other {
                        other.tags.retain(|x| x != t);
                        recs.insert(prev.as_str(), encode(&other)?.as_slice())
                            .map_err(|e| ImageError::db("write image_records", e))?;
                    }
                }
            }
            recs.insert(new.digest.as_str(), encode(&new)?.as_slice())
                .map_err(|e| ImageError::db("write image_records", e))?;
            merged = new;
        }
        tx.commit().map_err(|e| ImageError::db("commit", e))?;
        Ok(merged)
    }

    /// Removes `tag` from its record; deletes the record when `delete_record` or when no tag
    /// remains. Returns whether the record was deleted.
    pub fn untag_or_delete(
        &self,
        rec: &ImageRecord,
        tag: Option<&str>,
    ) -> Result<bool, ImageError> {
        let tx = self.db.begin_write().map_err(|e| ImageError::db("begin write", e))?;
        let deleted;
        {
            let mut recs =
                tx.open_table(RECORDS).map_err(|e| ImageError::db("open image_records", e))?;
            let mut tags = tx.open_table(TAGS).map_err(|e| ImageError::db("open image_tags", e))?;
            let mut new = rec.clone();
            let drop_tags: Vec<String> = match tag {
                Some(t) => vec![t.to_string()],
                None => rec.tags.clone(),
            };
            for t in &drop_tags {
                tags.remove(t.as_str()).map_err(|e| ImageError::db("write image_tags", e))?;
            }
            new.tags.retain(|t| !drop_tags.contains(t));
            deleted = new.tags.is_empty();
            if deleted {
                recs.remove(rec.digest.as_str())
                    .map_err(|e| ImageError::db("write image_records", e))?;
            } else {
                recs.insert(rec.digest.as_str(), encode(&new)?.as_slice())
                    .map_err(|e| ImageError::db("write image_records", e))?;
            }
        }
        tx.commit().map_err(|e| ImageError::db("commit", e))?;
        Ok(deleted)
    }
}

fn encode(rec: &ImageRecord) -> Result<Vec<u8>, ImageError> {
    let mut out = vec![RECORD_V1];
    let body = postcard::to_stdvec(rec).map_err(|e| ImageError::CorruptRecord {
        table: "image_records",
        key: rec.digest.clone(),
        reason: format!("encode: {e}"),
    })?;
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode(key: &str, bytes: &[u8]) -> Result<ImageRecord, ImageError> {
    let bad = |reason: String| ImageError::CorruptRecord {
        table: "image_records",
        key: key.to_string(),
        reason,
    };
    match bytes.split_first() {
        Some((&RECORD_V1, body)) => postcard::from_bytes(body).map_err(|e| bad(e.to_string())),
        Some((v, _)) => Err(bad(format!("unknown record version {v}"))),
        None => Err(bad("empty record".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
        let r = Records::open(db.clone()).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(RECORDS).unwrap().insert("sha256:x", &[9u8, 1, 2][..]).unwrap();
        tx.commit().unwrap();
        let e = r.list().unwrap_err();
        assert!(e.to_string().contains("sha256:x"), "{e}");
    }
}
