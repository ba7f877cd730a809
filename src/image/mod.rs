//! Images: reference parsing, registry config, pull, import, content store, layer unpacking.
//!
//! Layout under `root` (`<state dir>/images`): `blobs/sha256/<hex>` (verified content),
//! `layers/<diff-id hex>/` (unpacked layers shared by containers), `tmp/` (in-progress writes,
//! cleared at open). Records live in the daemon's redb database, tables `image_records` and
//! `image_tags`.
//!
//! `pull` is async and needs a tokio reactor for oci-client: the daemon calls it inside
//! `async_compat::Compat`. The other methods block on file I/O; call them from a blocking
//! thread (e.g. `smol::unblock`).

pub mod error;
pub mod import;
pub mod manifest;
pub mod pull;
pub mod records;
pub mod reference;
pub mod registry_config;
pub mod store;
pub mod unpack;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use crate::image::error::{ErrorKind, ImageError};
pub use crate::image::manifest::{ImageConfig, Platform};
pub use crate::image::records::ImageRecord;
pub use crate::image::reference::Reference;
pub use crate::image::registry_config::{RegistryConfig, RegistryEntry};

use crate::image::import::referenced_sets;
use crate::image::pull::{BlobLock, ProgressFn};
use crate::image::records::Records;
use crate::image::reference::validate_digest;
use crate::image::store::ContentStore;

/// One pull progress event; the last one of a successful pull has `done = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    /// Human-readable status ("downloading", "already exists", "pulled …").
    pub status: String,
    /// Short layer digest the event is about (empty for image-level events).
    pub layer: String,
    /// Bytes of the layer done.
    pub current: u64,
    /// Layer size in bytes.
    pub total: u64,
    /// Whether this is the final event.
    pub done: bool,
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Untagged image records deleted (manifest digests).
    pub images_removed: Vec<String>,
    /// Blobs deleted.
    pub blobs_removed: u64,
    /// Unpacked layer directories deleted.
    pub layers_removed: u64,
    /// Bytes of blobs freed (unpacked layer sizes are not counted).
    pub bytes_freed: u64,
}

/// The image service: cheap to clone, shareable across threads.
#[derive(Clone)]
pub struct ImageService {
    inner: Arc<Inner>,
}

/// Shared state behind [`ImageService`].
pub struct Inner {
    pub(crate) store: ContentStore,
    pub(crate) records: Records,
    pub(crate) registries: RegistryConfig,
    /// In-flight blob downloads: concurrent pulls of the same blob share one download.
    blob_locks: Mutex<HashMap<String, BlobLock>>,
}

impl Inner {
    pub(crate) fn blob_lock(&self, digest: &str) -> BlobLock {
        let mut m = self.blob_locks.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(digest.to_string()).or_default().clone()
    }

    pub(crate) fn release_blob_lock(&self, digest: &str, lock: BlobLock) {
        let mut m = self.blob_locks.lock().unwrap_or_else(|p| p.into_inner());
        drop(lock);
        if m.get(digest).is_some_and(|l| Arc::strong_count(l) == 1) {
            m.remove(digest);
        }
    }

    /// Blob digests and layer diff-id hexes that some record references.
    pub(crate) fn referenced(
        &self,
    ) -> Result<(std::collections::HashSet<String>, std::collections::HashSet<String>), ImageError>
    {
        Ok(referenced_sets(&self.records.list()?))
    }

    /// Deletes blobs and unpacked layers no record references (pinned blobs are kept).
    fn collect_garbage(&self, report: &mut PruneReport) -> Result<(), ImageError> {
        let (blobs, layers) = self.referenced()?;
        for d in self.store.list_blobs()? {
            if !blobs.contains(&d) && !self.store.is_pinned(&d) {
                report.bytes_freed += self.store.remove_blob(&d)?;
                report.blobs_removed += 1;
            }
        }
        let dir = self.store.layers_dir();
        let rd = std::fs::read_dir(dir).map_err(|e| ImageError::io(dir, e))?;
        for e in rd {
            let e = e.map_err(|e| ImageError::io(dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !layers.contains(&name) {
                let p = e.path();
                // std's remove_dir_all does not follow symlinks inside the tree.
                std::fs::remove_dir_all(&p).map_err(|er| ImageError::io(&p, er))?;
                report.layers_removed += 1;
            }
        }
        Ok(())
    }
}

impl ImageService {
    /// Opens the store under `root` and the `image_*` tables of `db`.
    pub fn open(
        root: &Path,
        db: Arc<redb::Database>,
        registries: RegistryConfig,
    ) -> Result<Self, ImageError> {
        Ok(Self {
            inner: Arc::new(Inner {
                store: ContentStore::open(root)?,
                records: Records::open(db)?,
                registries,
                blob_locks: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Pulls `reference` (for `platform` `os/arch[/variant]`, default the host's), reporting
    /// progress; already-stored blobs are not fetched again.
    pub async fn pull(
        &self,
        reference: &str,
        platform: Option<&str>,
        progress: impl Fn(PullProgress) + Send + Sync + 'static,
    ) -> Result<ImageRecord, ImageError> {
        let r: Reference = reference.parse()?;
        let platform = match platform {
            Some(p) => Platform::parse(p)?,
            None => Platform::host(),
        };
        let progress: Arc<ProgressFn> = Arc::new(progress);
        let rec = pull::pull(&self.inner, &r, &platform, &*progress).await?;
        progress(PullProgress {
            status: format!("pulled {r} ({})", rec.digest),
            layer: String::new(),
            current: rec.size,
            total: rec.size,
            done: true,
        });
        Ok(rec)
    }

    /// Imports an OCI layout directory, its tar archive, or a `docker save` tarball; `tag`
    /// names the (first) image.
    pub fn import(&self, path: &Path, tag: Option<&str>) -> Result<Vec<ImageRecord>, ImageError> {
        import::import(&self.inner, path, tag)
    }

    /// All stored images.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        self.inner.records.list()
    }

    /// The image named by a full or short reference, a manifest/index digest, or an ID prefix.
    pub fn inspect(&self, reference: &str) -> Result<ImageRecord, ImageError> {
        Ok(self.find(reference)?.0)
    }

    /// Removes a tag (or, by digest, the whole image) unless `in_use` says a container uses
    /// it; content no image references any more is deleted.
    pub fn remove(
        &self,
        reference: &str,
        in_use: impl Fn(&ImageRecord) -> bool,
    ) -> Result<(), ImageError> {
        let (rec, tag) = self.find(reference)?;
        if in_use(&rec) {
            return Err(ImageError::InUse { reference: reference.to_string() });
        }
        self.inner.records.untag_or_delete(&rec, tag.as_deref())?;
        self.inner.collect_garbage(&mut PruneReport::default())
    }

    /// Deletes untagged images not in use, then every unreferenced blob and unpacked layer.
    pub fn prune(&self, in_use: impl Fn(&ImageRecord) -> bool) -> Result<PruneReport, ImageError> {
        let mut report = PruneReport::default();
        for rec in self.inner.records.list()? {
            if rec.tags.is_empty() && !in_use(&rec) {
                self.inner.records.untag_or_delete(&rec, None)?;
                report.images_removed.push(rec.digest);
            }
        }
        self.inner.collect_garbage(&mut report)?;
        Ok(report)
    }

    /// Unpacked layer directories, lowest first (overlayfs `lowerdir` wants them reversed),
    /// unpacking any not yet unpacked, plus the image's run configuration.
    pub fn rootfs_layers(
        &self,
        reference: &str,
    ) -> Result<(Vec<PathBuf>, ImageConfig), ImageError> {
        let (rec, _) = self.find(reference)?;
        let config = manifest::parse_image_config(&rec.config_json, &rec.config_digest)?;
        let _pin = self.inner.store.pin(&rec.layers);
        let mut dirs = Vec::with_capacity(rec.layers.len());
        for ((blob, mt), diff) in rec.layers.iter().zip(&rec.layer_media_types).zip(&rec.diff_ids) {
            dirs.push(unpack::ensure_layer(&self.inner.store, blob, mt, diff)?);
        }
        Ok((dirs, config))
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        self.inner.store.root()
    }

    /// Record and the tag the reference named (if it named one).
    fn find(&self, reference: &str) -> Result<(ImageRecord, Option<String>), ImageError> {
        let records = &self.inner.records;
        let not_found = || ImageError::NotFoundLocal { reference: reference.to_string() };
        if validate_digest(reference).is_ok() {
            return self.by_digest(reference)?.map(|r| (r, None)).ok_or_else(not_found);
        }
        let parsed = reference.parse::<Reference>();
        if let Ok(r) = &parsed {
            if let Some(d) = &r.digest {
                return self.by_digest(d)?.map(|rec| (rec, None)).ok_or_else(not_found);
            }
            if let Some(tag) = r.tagged_name() {
                if let Some(d) = records.tag(&tag)? {
                    let rec = records.get(&d)?.ok_or_else(not_found)?;
                    return Ok((rec, Some(tag)));
                }
            }
        }
        // An image ID prefix (at least 12 hex digits), as `docker images` prints them.
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<ImageRecord> = records
                .list()?
                .into_iter()
                .filter(|r| r.digest["sha256:".len()..].starts_with(hex))
                .collect();
            if matches.len() == 1 {
                return Ok((matches.into_iter().next().ok_or_else(not_found)?, None));
            }
        }
        match parsed {
            Err(e) => Err(e),
            Ok(_) => Err(not_found()),
        }
    }

    fn by_digest(&self, d: &str) -> Result<Option<ImageRecord>, ImageError> {
        if let Some(r) = self.inner.records.get(d)? {
            return Ok(Some(r));
        }
        // An index digest names the platform image pulled from it.
        Ok(self.inner.records.list()?.into_iter().find(|r| r.index_digest.as_deref() == Some(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn service_and_pull_future_are_send() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
        let svc =
            ImageService::open(&dir.path().join("images"), db, RegistryConfig::default()).unwrap();
        // The daemon may run pulls on a multi-threaded executor.
        let fut = svc.pull("alpine", None, |_| {});
        assert_send(&fut);
        fn assert_sync<T: Send + Sync + Clone>(_: &T) {}
        assert_sync(&svc);
    }
}
