//! Content-addressed blob store: `blobs/sha256/<hex>`, written atomically and verified.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use crate::image::error::ImageError;
use crate::image::reference::validate_digest;

/// Largest JSON document (manifest, index, config) we read into memory.
pub const MAX_JSON: u64 = 32 << 20;

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The on-disk store under `<state dir>/images`.
#[derive(Debug)]
pub struct ContentStore {
    root: PathBuf,
    blobs: PathBuf,
    layers: PathBuf,
    tmp: PathBuf,
    /// Digests that pulls or imports in progress need; garbage collection skips them.
    pinned: Mutex<HashMap<String, usize>>,
}

impl ContentStore {
    /// Creates the directory layout and clears temp files a crash may have left.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let s = Self {
            root: root.to_path_buf(),
            blobs: root.join("blobs/sha256"),
            layers: root.join("layers"),
            tmp: root.join("tmp"),
            pinned: Mutex::new(HashMap::new()),
        };
        if s.tmp.exists() {
            std::fs::remove_dir_all(&s.tmp).map_err(|e| ImageError::io(&s.tmp, e))?;
        }
        for d in [&s.blobs, &s.layers, &s.tmp] {
            std::fs::create_dir_all(d).map_err(|e| ImageError::io(d, e))?;
        }
        Ok(s)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory holding unpacked layers, named by diff-id hex.
    pub fn layers_dir(&self) -> &Path {
        &self.layers
    }

    /// A fresh unique path under `tmp/`.
    pub fn tmp_path(&self, what: &str) -> PathBuf {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{what}-{}-{n}", rustix::process::getpid().as_raw_nonzero()))
    }

    /// Path of the blob named `digest`.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.blobs.join(validate_digest(digest)?))
    }

    /// Whether the blob is present (and, if `size` is given, has that size). Blobs only
    /// appear after verification, so presence means verified.
    pub fn has_blob(&self, digest: &str, size: Option<u64>) -> bool {
        let Ok(p) = self.blob_path(digest) else {
            return false;
        };
        match std::fs::metadata(p) {
            Ok(m) => m.is_file() && size.is_none_or(|s| s == m.len()),
            Err(_) => false,
        }
    }

    /// Starts writing a new blob into a temp file.
    pub fn writer(&self) -> Result<BlobWriter, ImageError> {
        let path = self.tmp_path("blob");
        let file = File::create_new(&path).map_err(|e| ImageError::io(&path, e))?;
        Ok(BlobWriter { file, path, hasher: Sha256::new(), len: 0 })
    }

    /// Stores `bytes`, verifying they hash to `digest`.
    pub fn put_bytes(&self, digest: &str, bytes: &[u8], origin: &str) -> Result<(), ImageError> {
        if self.has_blob(digest, Some(bytes.len() as u64)) {
            return Ok(());
        }
        let mut w = self.writer()?;
        w.write(bytes)?;
        w.commit(self, Some(digest), Some(bytes.len() as u64), origin)?;
        Ok(())
    }

    /// Reads a small blob fully, re-verifying its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(digest)?;
        let f = File::open(&p).map_err(|e| ImageError::io(&p, e))?;
        let mut buf = Vec::new();
        f.take(MAX_JSON + 1).read_to_end(&mut buf).map_err(|e| ImageError::io(&p, e))?;
        if buf.len() as u64 > MAX_JSON {
            return Err(ImageError::InvalidManifest {
                what: "blob",
                digest: digest.to_string(),
                reason: format!("larger than {MAX_JSON} bytes"),
            });
        }
        let actual = sha256_digest(&buf);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                digest: digest.to_string(),
                actual,
                origin: p.display().to_string(),
            });
        }
        Ok(buf)
    }

    /// Every blob digest present.
    pub fn list_blobs(&self) -> Result<Vec<String>, ImageError> {
        let rd = std::fs::read_dir(&self.blobs).map_err(|e| ImageError::io(&self.blobs, e))?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|e| ImageError::io(&self.blobs, e))?;
            if let Some(n) = e.file_name().to_str() {
                out.push(format!("sha256:{n}"));
            }
        }
        Ok(out)
    }

    /// Deletes a blob; returns its size.
    pub fn remove_blob(&self, digest: &str) -> Result<u64, ImageError> {
        let p = self.blob_path(digest)?;
        let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(ImageError::io(p, e)),
        }
    }

    /// Marks digests as needed by an operation in progress until the guard drops.
    pub fn pin(&self, digests: &[String]) -> PinGuard<'_> {
        let mut m = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        for d in digests {
            *m.entry(d.clone()).or_insert(0) += 1;
        }
        PinGuard { store: self, digests: digests.to_vec() }
    }

    /// Whether an operation in progress needs `digest`.
    pub fn is_pinned(&self, digest: &str) -> bool {
        let m = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        m.contains_key(digest)
    }
}

/// Unpins its digests on drop.
pub struct PinGuard<'a> {
    store: &'a ContentStore,
    digests: Vec<String>,
}

impl Drop for PinGuard<'_> {
    fn drop(&mut self) {
        let mut m = self.store.pinned.lock().unwrap_or_else(|p| p.into_inner());
        for d in &self.digests {
            if let Some(n) = m.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    m.remove(d);
                }
            }
        }
    }
}

/// A blob being written: hashed as it streams; committed only once verified.
pub struct BlobWriter {
    file: File,
    path: PathBuf,
    hasher: Sha256,
    len: u64,
}

impl BlobWriter {
    /// Appends a chunk.
    pub fn write(&mut self, buf: &[u8]) -> Result<(), ImageError> {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        self.file.write_all(buf).map_err(|e| ImageError::io(&self.path, e))
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// `sha256:` of the bytes written so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Verifies size and digest (when expected ones are given), fsyncs and renames the blob
    /// into place; returns its digest and size.
    pub fn commit(
        mut self,
        store: &ContentStore,
        expected: Option<&str>,
        size: Option<u64>,
        origin: &str,
    ) -> Result<(String, u64), ImageError> {
        let actual = format!("sha256:{}", hex::encode(std::mem::take(&mut self.hasher).finalize()));
        let digest = expected.unwrap_or(&actual).to_string();
        // The temp file goes away on every error path.
        let cleanup = |e: ImageError| {
            let _ = std::fs::remove_file(&self.path);
            e
        };
        if let Some(s) = size {
            if s != self.len {
                return Err(cleanup(ImageError::SizeMismatch {
                    digest,
                    expected: s,
                    actual: self.len,
                    origin: origin.to_string(),
                }));
            }
        }
        if actual != digest {
            return Err(cleanup(ImageError::DigestMismatch {
                digest,
                actual,
                origin: origin.to_string(),
            }));
        }
        let dest = store.blob_path(&digest).map_err(cleanup)?;
        self.file.sync_all().map_err(|e| cleanup(ImageError::io(&self.path, e)))?;
        std::fs::rename(&self.path, &dest).map_err(|e| cleanup(ImageError::io(&dest, e)))?;
        // The rename is durable only once the directory is synced.
        sync_dir(&store.blobs)?;
        Ok((digest, self.len))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // No-op after a successful rename (the temp name is gone); cleans up abandoned writes.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// fsyncs a directory so renames into it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| ImageError::io(dir, e))
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
