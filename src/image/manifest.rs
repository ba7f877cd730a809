//! OCI / Docker v2 manifest, index and config documents, and building records from them.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::image::error::ImageError;
use crate::image::records::ImageRecord;
use crate::image::store::{ContentStore, sha256_digest};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker uncompressed layer (docker-save).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Platform (index entries only).
    pub platform: Option<PlatformJson>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// An index entry's platform.
#[derive(Debug, Clone, Deserialize)]
pub struct PlatformJson {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64` ...
    pub architecture: String,
    /// `v8` ...
    pub variant: Option<String>,
}

/// A manifest or index (fields of both, told apart by media type or `manifests`).
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestJson {
    /// Declared media type (optional in OCI).
    #[serde(rename = "mediaType")]
    pub media_type: Option<String>,
    /// Config descriptor (manifests).
    pub config: Option<Descriptor>,
    /// Layers, lowest first (manifests).
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Entries (indexes).
    pub manifests: Option<Vec<Descriptor>>,
}

impl ManifestJson {
    /// Parses `bytes` named by `digest`.
    pub fn parse(bytes: &[u8], digest: &str) -> Result<Self, ImageError> {
        serde_json::from_slice(bytes).map_err(|e| ImageError::InvalidManifest {
            what: "manifest",
            digest: digest.to_string(),
            reason: e.to_string(),
        })
    }

    /// Whether this is an index / manifest list.
    pub fn is_index(&self) -> bool {
        match self.media_type.as_deref() {
            Some(OCI_INDEX) | Some(DOCKER_LIST) => true,
            Some(_) => false,
            None => self.manifests.is_some() && self.config.is_none(),
        }
    }
}

/// The parts of an image config a container needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env` (`KEY=value`).
    pub env: Vec<String>,
    /// `WorkingDir` (empty = `/`).
    pub working_dir: String,
    /// `User` (empty = root).
    pub user: String,
}

#[derive(Debug, Deserialize)]
struct ConfigJson {
    created: Option<String>,
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    variant: Option<String>,
    config: Option<ContainerConfigJson>,
    rootfs: RootFsJson,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfigJson {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RootFsJson {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// Parses the container-relevant part of a config JSON.
pub fn parse_image_config(json: &str, digest: &str) -> Result<ImageConfig, ImageError> {
    let c = parse_config(json.as_bytes(), digest)?;
    let cc = c.config.unwrap_or_default();
    Ok(ImageConfig {
        entrypoint: cc.entrypoint.unwrap_or_default(),
        cmd: cc.cmd.unwrap_or_default(),
        env: cc.env.unwrap_or_default(),
        working_dir: cc.working_dir.unwrap_or_default(),
        user: cc.user.unwrap_or_default(),
    })
}

fn parse_config(bytes: &[u8], digest: &str) -> Result<ConfigJson, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::InvalidManifest {
        what: "image config",
        digest: digest.to_string(),
        reason: e.to_string(),
    })
}

/// Whether we can unpack layers of this media type.
pub fn layer_media_type_supported(mt: &str) -> bool {
    matches!(
        mt,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | DOCKER_LAYER_TAR
            | DOCKER_LAYER_GZIP
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

/// A wanted platform: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64` ...
    pub arch: String,
    /// `v8` ...
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this process runs on.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "arm" => "arm",
            other => other,
        };
        Self { os: "linux".into(), arch: arch.into(), variant: None }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Self, ImageError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric());
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => {
                Ok(Self { os: os.to_string(), arch: arch.to_string(), variant: None })
            }
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Self {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(ImageError::InvalidReference {
                reference: s.to_string(),
                reason: "platform must be os/arch[/variant]".into(),
            }),
        }
    }

    /// Picks the index entry for this platform (a variant, when asked for, must match).
    pub fn select<'a>(&self, entries: &'a [Descriptor]) -> Option<&'a Descriptor> {
        entries.iter().find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.os == self.os
                    && p.architecture == self.arch
                    && (self.variant.is_none() || p.variant == self.variant)
            })
        })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Builds the record of an image whose manifest, config and layer blobs are all in `store`.
pub fn build_record(
    store: &ContentStore,
    manifest_digest: &str,
    manifest_bytes: &[u8],
    index_digest: Option<String>,
    tags: Vec<String>,
    repo_digests: Vec<String>,
) -> Result<ImageRecord, ImageError> {
    let m = ManifestJson::parse(manifest_bytes, manifest_digest)?;
    let bad = |reason: String| ImageError::InvalidManifest {
        what: "manifest",
        digest: manifest_digest.to_string(),
        reason,
    };
    let config = m.config.as_ref().ok_or_else(|| bad("no config".into()))?;
    let config_bytes = store.read_blob(&config.digest)?;
    let c = parse_config(&config_bytes, &config.digest)?;
    if c.rootfs.diff_ids.len() != m.layers.len() {
        return Err(bad(format!(
            "{} layers but config {} lists {} diff ids",
            m.layers.len(),
            config.digest,
            c.rootfs.diff_ids.len()
        )));
    }
    for l in &m.layers {
        if !layer_media_type_supported(&l.media_type) {
            return Err(ImageError::UnsupportedMediaType {
                media_type: l.media_type.clone(),
                digest: l.digest.clone(),
            });
        }
        if !store.has_blob(&l.digest, Some(l.size)) {
            return Err(ImageError::NotFoundLocal { reference: l.digest.clone() });
        }
    }
    for d in &c.rootfs.diff_ids {
        crate::image::reference::validate_digest(d)?;
    }
    let mut platform = format!("{}/{}", c.os, c.architecture);
    if let Some(v) = &c.variant {
        platform = format!("{platform}/{v}");
    }
    let created_at = c
        .created
        .as_deref()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .unwrap_or_else(jiff::Timestamp::now);
    debug_assert_eq!(sha256_digest(manifest_bytes), manifest_digest);
    Ok(ImageRecord {
        digest: manifest_digest.to_string(),
        tags,
        size: m.layers.iter().map(|l| l.size).sum(),
        created_at: created_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        config_json: String::from_utf8_lossy(&config_bytes).into_owned(),
        layers: m.layers.iter().map(|l| l.digest.clone()).collect(),
        platform,
        diff_ids: c.rootfs.diff_ids,
        layer_media_types: m.layers.iter().map(|l| l.media_type.clone()).collect(),
        config_digest: config.digest.clone(),
        manifest_media_type: m.media_type.clone().unwrap_or_else(|| OCI_MANIFEST.to_string()),
        index_digest,
        repo_digests,
    })
}
