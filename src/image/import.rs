//! Offline import: OCI image layout (directory or tar) and `docker save` tarballs.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::image::Inner;
use crate::image::error::ImageError;
use crate::image::manifest::{
    DOCKER_LIST, Descriptor, ManifestJson, OCI_INDEX, Platform, build_record,
};
use crate::image::records::ImageRecord;
use crate::image::reference::{Reference, validate_digest};
use crate::image::store::{ContentStore, MAX_JSON, PinGuard};
use crate::image::unpack::{Compression, detect_compression};

/// Where the layout's files come from.
enum Source {
    /// An unpacked layout directory: files are read in place.
    Dir(PathBuf),
    /// A tar archive: every regular file was streamed into the content store once;
    /// this maps its cleaned path to (digest, size).
    Tar(PathMap),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerSaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Imports every image found at `path`; `tag` names the first one.
pub fn import(
    inner: &Inner,
    path: &Path,
    tag: Option<&str>,
) -> Result<Vec<ImageRecord>, ImageError> {
    let explicit = tag.map(|t| t.parse::<Reference>()).transpose()?;
    let meta = std::fs::metadata(path).map_err(|e| ImageError::io(path, e))?;
    let mut fresh = Vec::new();
    let source = if meta.is_dir() {
        Source::Dir(path.to_path_buf())
    } else {
        let (map, new) = scan_tar(&inner.store, path)?;
        fresh = new;
        Source::Tar(map)
    };
    let _pin = inner.store.pin(&fresh);
    let imp = Importer { inner, path, source, pins: Default::default() };
    let result = if imp.exists("index.json") {
        imp.oci(explicit.as_ref())
    } else if imp.exists("manifest.json") {
        imp.docker_save(explicit.as_ref())
    } else {
        Err(ImageError::InvalidImport {
            path: path.to_path_buf(),
            reason: "neither an OCI layout (index.json) nor a docker-save archive (manifest.json)"
                .into(),
        })
    };
    // Files of the archive that no image references (or of a failed import) are dropped now.
    let referenced = inner.referenced()?;
    for d in fresh {
        if !referenced.0.contains(&d) {
            inner.store.remove_blob(&d)?;
        }
    }
    result
}

/// Streams every regular file of the archive into the store; returns the path map and the
/// digests that were not in the store before.
fn scan_tar(store: &ContentStore, path: &Path) -> Result<(PathMap, Vec<String>), ImageError> {
    let mut f = File::open(path).map_err(|e| ImageError::io(path, e))?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(|e| ImageError::io(path, e))?;
    f.seek(SeekFrom::Start(0)).map_err(|e| ImageError::io(path, e))?;
    let reader: Box<dyn Read> = match detect_compression("", &magic[..n]) {
        Compression::None => Box::new(std::io::BufReader::new(f)),
        Compression::Gzip => {
            Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(f)))
        }
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(f).map_err(|e| ImageError::io(path, e))?)
        }
    };
    let bad = |e: std::io::Error| ImageError::InvalidImport {
        path: path.to_path_buf(),
        reason: format!("reading tar: {e}"),
    };
    let mut ar = tar::Archive::new(reader);
    let mut map = HashMap::new();
    let mut fresh = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let raw = entry.path().map_err(bad)?.into_owned();
        let Some(rel) = clean_rel(&raw) else {
            return Err(ImageError::InvalidImport {
                path: path.to_path_buf(),
                reason: format!("entry {} leaves the archive root", raw.display()),
            });
        };
        let mut w = store.writer()?;
        loop {
            let k = entry.read(&mut buf).map_err(bad)?;
            if k == 0 {
                break;
            }
            w.write(&buf[..k])?;
        }
        let existed = store.has_blob(&w.digest(), Some(w.len()));
        let (digest, size) = w.commit(store, None, None, &path.display().to_string())?;
        if !existed && !fresh.contains(&digest) {
            fresh.push(digest.clone());
        }
        map.insert(rel, (digest, size));
    }
    Ok((map, fresh))
}

/// `a/./b` → `a/b`; `None` for absolute paths or `..`.
fn clean_rel(p: &Path) -> Option<String> {
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if out.is_empty() { None } else { Some(out.join("/")) }
}

type PathMap = HashMap<String, (String, u64)>;

struct Importer<'a> {
    inner: &'a Inner,
    path: &'a Path,
    source: Source,
    /// Blobs put into the store so far, kept from garbage collection until records exist.
    pins: std::cell::RefCell<Vec<PinGuard<'a>>>,
}

impl Importer<'_> {
    fn invalid(&self, reason: String) -> ImageError {
        ImageError::InvalidImport { path: self.path.to_path_buf(), reason }
    }

    fn exists(&self, rel: &str) -> bool {
        match &self.source {
            Source::Dir(d) => d.join(rel).is_file(),
            Source::Tar(m) => m.contains_key(rel),
        }
    }

    fn rel(&self, rel: &str) -> Result<String, ImageError> {
        clean_rel(Path::new(rel))
            .ok_or_else(|| self.invalid(format!("path {rel:?} leaves the layout")))
    }

    /// Reads a small JSON file of the layout.
    fn read_json(&self, rel: &str) -> Result<Vec<u8>, ImageError> {
        let rel = self.rel(rel)?;
        match &self.source {
            Source::Dir(d) => {
                let p = d.join(&rel);
                let f = File::open(&p).map_err(|e| ImageError::io(&p, e))?;
                let mut buf = Vec::new();
                f.take(MAX_JSON + 1).read_to_end(&mut buf).map_err(|e| ImageError::io(&p, e))?;
                if buf.len() as u64 > MAX_JSON {
                    return Err(self.invalid(format!("{rel} larger than 32 MiB")));
                }
                Ok(buf)
            }
            Source::Tar(m) => {
                let (d, _) = m.get(&rel).ok_or_else(|| self.invalid(format!("missing {rel}")))?;
                self.inner.store.read_blob(d)
            }
        }
    }

    /// Puts the file `rel` into the store (verifying `expected` if given).
    fn blob(&self, rel: &str, expected: Option<&str>) -> Result<(String, u64), ImageError> {
        let (digest, size) = self.blob_unpinned(rel, expected)?;
        let pin = self.inner.store.pin(std::slice::from_ref(&digest));
        self.pins.borrow_mut().push(pin);
        Ok((digest, size))
    }

    fn blob_unpinned(
        &self,
        rel: &str,
        expected: Option<&str>,
    ) -> Result<(String, u64), ImageError> {
        let rel = self.rel(rel)?;
        let origin = format!("{} ({rel})", self.path.display());
        match &self.source {
            Source::Dir(d) => {
                let p = d.join(&rel);
                if let Some(e) = expected {
                    let len = std::fs::metadata(&p).map_err(|er| ImageError::io(&p, er))?.len();
                    if self.inner.store.has_blob(e, Some(len)) {
                        return Ok((e.to_string(), len));
                    }
                }
                let mut f = File::open(&p).map_err(|er| ImageError::io(&p, er))?;
                let mut w = self.inner.store.writer()?;
                let mut buf = vec![0u8; 256 << 10];
                loop {
                    let k = f.read(&mut buf).map_err(|er| ImageError::io(&p, er))?;
                    if k == 0 {
                        break;
                    }
                    w.write(&buf[..k])?;
                }
                w.commit(&self.inner.store, expected, None, &origin)
            }
            Source::Tar(m) => {
                let (d, s) = m.get(&rel).ok_or_else(|| self.invalid(format!("missing {rel}")))?;
                if let Some(e) = expected {
                    if e != d {
                        return Err(ImageError::DigestMismatch {
                            digest: e.to_string(),
                            actual: d.clone(),
                            origin,
                        });
                    }
                }
                Ok((d.clone(), *s))
            }
        }
    }

    fn blob_desc(&self, d: &Descriptor) -> Result<(), ImageError> {
        let hex = validate_digest(&d.digest)?;
        let (_, size) = self.blob(&format!("blobs/sha256/{hex}"), Some(&d.digest))?;
        if size != d.size {
            return Err(ImageError::SizeMismatch {
                digest: d.digest.clone(),
                expected: d.size,
                actual: size,
                origin: self.path.display().to_string(),
            });
        }
        Ok(())
    }

    fn oci(&self, explicit: Option<&Reference>) -> Result<Vec<ImageRecord>, ImageError> {
        let index = self.read_json("index.json")?;
        let idx = ManifestJson::parse(&index, "index.json")?;
        let mut out = Vec::new();
        for desc in idx.manifests.unwrap_or_default() {
            let tags = match (explicit, out.is_empty()) {
                (Some(r), true) => r.tagged_name().into_iter().collect(),
                _ => annotation_tags(&desc),
            };
            out.push(self.oci_manifest(&desc, tags, None, 0)?);
        }
        if out.is_empty() {
            return Err(self.invalid("index.json lists no manifests".into()));
        }
        Ok(out)
    }

    fn oci_manifest(
        &self,
        desc: &Descriptor,
        tags: Vec<String>,
        index_digest: Option<String>,
        depth: u32,
    ) -> Result<ImageRecord, ImageError> {
        if depth > 4 {
            return Err(self.invalid("indexes nested too deep".into()));
        }
        self.blob_desc(desc)?;
        let bytes = self.inner.store.read_blob(&desc.digest)?;
        let m = ManifestJson::parse(&bytes, &desc.digest)?;
        if m.is_index() || matches!(desc.media_type.as_str(), OCI_INDEX | DOCKER_LIST) {
            let entries = m.manifests.unwrap_or_default();
            let host = Platform::host();
            let entry = host.select(&entries).ok_or_else(|| {
                self.invalid(format!("index {} has no manifest for {host}", desc.digest))
            })?;
            return self.oci_manifest(entry, tags, Some(desc.digest.clone()), depth + 1);
        }
        let config = m
            .config
            .as_ref()
            .ok_or_else(|| self.invalid(format!("manifest {} has no config", desc.digest)))?;
        self.blob_desc(config)?;
        for l in &m.layers {
            self.blob_desc(l)?;
        }
        let rec =
            build_record(&self.inner.store, &desc.digest, &bytes, index_digest, tags, Vec::new())?;
        self.inner.records.commit(&rec)
    }

    fn docker_save(&self, explicit: Option<&Reference>) -> Result<Vec<ImageRecord>, ImageError> {
        let text = self.read_json("manifest.json")?;
        let entries: Vec<DockerSaveEntry> = serde_json::from_slice(&text)
            .map_err(|e| self.invalid(format!("manifest.json: {e}")))?;
        let mut out = Vec::new();
        for e in entries {
            let (config_digest, config_size) = self.blob(&e.config, None)?;
            let mut layers = Vec::new();
            for l in &e.layers {
                let (d, s) = self.blob(l, None)?;
                let mt = layer_media_type(&self.inner.store, &d)?;
                layers.push(serde_json::json!({"mediaType": mt, "digest": d, "size": s}));
            }
            // docker-save has no manifest of its own: synthesise an OCI one over the blobs.
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": crate::image::manifest::OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest,
                    "size": config_size,
                },
                "layers": layers,
            });
            let bytes = serde_json::to_vec(&manifest)
                .map_err(|er| self.invalid(format!("encoding manifest: {er}")))?;
            let digest = crate::image::store::sha256_digest(&bytes);
            let _pin = self.inner.store.pin(std::slice::from_ref(&digest));
            self.inner.store.put_bytes(&digest, &bytes, "synthesised manifest")?;
            let tags = match (explicit, out.is_empty()) {
                (Some(r), true) => r.tagged_name().into_iter().collect(),
                _ => {
                    let mut t = Vec::new();
                    for rt in e.repo_tags.unwrap_or_default() {
                        if let Some(n) = rt.parse::<Reference>()?.tagged_name() {
                            t.push(n);
                        }
                    }
                    t
                }
            };
            let rec = build_record(&self.inner.store, &digest, &bytes, None, tags, Vec::new())?;
            out.push(self.inner.records.commit(&rec)?);
        }
        if out.is_empty() {
            return Err(self.invalid("manifest.json lists no images".into()));
        }
        Ok(out)
    }
}

/// Tag from `io.containerd.image.name`, or a full `org.opencontainers.image.ref.name`.
/// A bare tag (`latest`) names no repository, so it yields none.
fn annotation_tags(d: &Descriptor) -> Vec<String> {
    let name = d.annotations.get("io.containerd.image.name").or_else(|| {
        d.annotations.get("org.opencontainers.image.ref.name").filter(|n| n.contains('/'))
    });
    name.and_then(|n| n.parse::<Reference>().ok())
        .and_then(|r| r.tagged_name())
        .into_iter()
        .collect()
}

fn layer_media_type(store: &ContentStore, digest: &str) -> Result<&'static str, ImageError> {
    let p = store.blob_path(digest)?;
    let mut f = File::open(&p).map_err(|e| ImageError::io(&p, e))?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(|e| ImageError::io(&p, e))?;
    Ok(match detect_compression("", &magic[..n]) {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    })
}

/// Digests referenced by `records` (blobs) and their diff-id hexes (unpacked layers).
pub fn referenced_sets(records: &[ImageRecord]) -> (HashSet<String>, HashSet<String>) {
    let mut blobs = HashSet::new();
    let mut layers = HashSet::new();
    for r in records {
        blobs.insert(r.digest.clone());
        blobs.insert(r.config_digest.clone());
        blobs.extend(r.layers.iter().cloned());
        if let Some(i) = &r.index_digest {
            blobs.insert(i.clone());
        }
        for d in &r.diff_ids {
            if let Some(h) = d.strip_prefix("sha256:") {
                layers.insert(h.to_string());
            }
        }
    }
    (blobs, layers)
}
