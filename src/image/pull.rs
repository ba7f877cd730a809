//! Registry pull with oci-client: manifests, platform selection, verified streaming downloads.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};

use crate::image::error::ImageError;
use crate::image::manifest::{
    DOCKER_LIST, DOCKER_MANIFEST, Descriptor, ManifestJson, OCI_INDEX, OCI_MANIFEST, Platform,
    build_record,
};
use crate::image::records::ImageRecord;
use crate::image::reference::Reference;
use crate::image::store::{MAX_JSON, sha256_digest};
use crate::image::{Inner, PullProgress};

/// Layers downloaded at once per pull.
const PARALLEL_LAYERS: usize = 4;
/// Progress is reported every this many bytes of a layer.
const PROGRESS_STEP: u64 = 1 << 20;

/// Callback receiving pull progress.
pub type ProgressFn = dyn Fn(PullProgress) + Send + Sync;

/// Pulls `r` for `platform`, trying the registry's mirrors first.
pub async fn pull(
    inner: &Inner,
    r: &Reference,
    platform: &Platform,
    progress: &ProgressFn,
) -> Result<ImageRecord, ImageError> {
    let endpoints = inner.registries.endpoints(&r.registry);
    let mut errors = Vec::new();
    for ep in &endpoints {
        match pull_from(inner, r, ep, platform, progress).await {
            Ok(rec) => return Ok(rec),
            Err(e) => {
                tracing::info!(registry = %ep, reference = %r, error = %e, "pull attempt failed");
                progress(PullProgress {
                    status: format!("failed: {e}"),
                    layer: String::new(),
                    current: 0,
                    total: 0,
                    done: false,
                });
                errors.push(e);
            }
        }
    }
    // The most telling failure: a mirror's "not found" or "digest mismatch" beats the
    // upstream being unreachable from an air-gapped host.
    let idx = errors
        .iter()
        .position(|e| !matches!(e, ImageError::Unreachable { .. }))
        .unwrap_or(errors.len().saturating_sub(1));
    let chosen = errors.into_iter().nth(idx).unwrap_or_else(|| ImageError::NotFound {
        reference: r.to_string(),
        registry: r.registry.clone(),
    });
    if endpoints.len() > 1 {
        // With mirrors, one registry's message alone would hide where else we looked.
        return Err(ImageError::AllEndpointsFailed {
            tried: endpoints.join(", "),
            source: Box::new(chosen),
        });
    }
    Err(chosen)
}

/// The registry client. oci-client panics when its HTTP client cannot be built (a system
/// without CA certificates, for one); a pull request must fail with a message instead of
/// taking a daemon thread down.
fn client_for(inner: &Inner, registry: &str) -> Result<Client, ImageError> {
    let config = ClientConfig {
        // Plain HTTP only for hosts listed as insecure.
        protocol: ClientProtocol::HttpsExcept(inner.registries.insecure_hosts()),
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Client::new(config))).map_err(
        |panic| {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "the HTTP client could not be built".to_owned());
            ImageError::Client { registry: registry.to_owned(), reason }
        },
    )
}

/// What one pull needs to name its failures.
struct Ctx<'a> {
    inner: &'a Inner,
    client: Client,
    auth: RegistryAuth,
    ep: &'a str,
    r: &'a Reference,
    progress: &'a ProgressFn,
}

impl Ctx<'_> {
    fn map(&self, e: OciDistributionError) -> ImageError {
        map_oci(e, self.ep, &self.r.to_string())
    }

    fn oci_ref(&self, digest: Option<&str>) -> oci_client::Reference {
        match (digest.or(self.r.digest.as_deref()), &self.r.tag) {
            (Some(d), _) => oci_client::Reference::with_digest(
                self.ep.to_string(),
                self.r.repository.clone(),
                d.to_string(),
            ),
            (None, Some(t)) => oci_client::Reference::with_tag(
                self.ep.to_string(),
                self.r.repository.clone(),
                t.clone(),
            ),
            (None, None) => oci_client::Reference::with_tag(
                self.ep.to_string(),
                self.r.repository.clone(),
                "latest".to_string(),
            ),
        }
    }

    async fn manifest(
        &self,
        digest: Option<&str>,
        accept: &[&str],
    ) -> Result<(Vec<u8>, String), ImageError> {
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&self.oci_ref(digest), &self.auth, accept)
            .await
            .map_err(|e| self.map(e))?;
        if bytes.len() as u64 > MAX_JSON {
            return Err(ImageError::Registry {
                reference: self.r.to_string(),
                registry: self.ep.to_string(),
                detail: "manifest larger than 32 MiB".into(),
            });
        }
        // Hash it ourselves: the digest is what everything else is checked against.
        let actual = sha256_digest(&bytes);
        if let Some(want) = digest.or(self.r.digest.as_deref()) {
            if want != actual {
                return Err(ImageError::DigestMismatch {
                    digest: want.to_string(),
                    actual,
                    origin: format!("registry {}", self.ep),
                });
            }
        }
        Ok((bytes.to_vec(), actual))
    }

    async fn fetch_blob(&self, desc: &Descriptor, report: bool) -> Result<(), ImageError> {
        let store = &self.inner.store;
        let lock = self.inner.blob_lock(&desc.digest);
        // Concurrent pulls needing the same blob wait here; the first downloads it.
        let guard = lock.lock().await;
        let layer = short(&desc.digest);
        let emit = |status: &str, current: u64| {
            if report {
                (self.progress)(PullProgress {
                    status: status.to_string(),
                    layer: layer.clone(),
                    current,
                    total: desc.size,
                    done: false,
                });
            }
        };
        let result = async {
            if store.has_blob(&desc.digest, Some(desc.size)) {
                emit("already exists", desc.size);
                return Ok(());
            }
            let od = OciDescriptor {
                media_type: desc.media_type.clone(),
                digest: desc.digest.clone(),
                size: i64::try_from(desc.size).unwrap_or(i64::MAX),
                ..Default::default()
            };
            emit("downloading", 0);
            let mut stream = self
                .client
                .pull_blob_stream(&self.oci_ref(None), &od)
                .await
                .map_err(|e| self.map(e))?;
            let mut w = store.writer()?;
            let mut last = 0u64;
            let origin = format!("registry {}", self.ep);
            while let Some(chunk) = stream.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    // oci-client's own digest check fails the stream at its end; our commit
                    // below checks again and reports the actual digest.
                    Err(e) if !is_transport(&e) => break,
                    Err(e) => {
                        return Err(ImageError::Unreachable {
                            reference: self.r.to_string(),
                            registry: self.ep.to_string(),
                            source: Box::new(e),
                        });
                    }
                };
                // Never accept more than the descriptor promises.
                if w.len() + chunk.len() as u64 > desc.size {
                    return Err(ImageError::SizeMismatch {
                        digest: desc.digest.clone(),
                        expected: desc.size,
                        actual: w.len() + chunk.len() as u64,
                        origin,
                    });
                }
                w.write(&chunk)?;
                if w.len() - last >= PROGRESS_STEP {
                    last = w.len();
                    emit("downloading", last);
                }
            }
            w.commit(store, Some(&desc.digest), Some(desc.size), &origin)?;
            emit("download complete", desc.size);
            Ok(())
        }
        .await;
        drop(guard);
        self.inner.release_blob_lock(&desc.digest, lock);
        result
    }
}

fn is_transport(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.downcast_ref::<reqwest::Error>().is_some())
}

async fn pull_from(
    inner: &Inner,
    r: &Reference,
    ep: &str,
    platform: &Platform,
    progress: &ProgressFn,
) -> Result<ImageRecord, ImageError> {
    let auth = match inner.registries.credentials(ep) {
        Some((u, p)) => RegistryAuth::Basic(u, p),
        None => RegistryAuth::Anonymous,
    };
    let ctx = Ctx { inner, client: client_for(inner, ep)?, auth, ep, r, progress };
    progress(PullProgress {
        status: format!("resolving {r} at {ep}"),
        layer: String::new(),
        current: 0,
        total: 0,
        done: false,
    });
    ctx.client
        .auth(&ctx.oci_ref(None), &ctx.auth, RegistryOperation::Pull)
        .await
        .map_err(|e| ctx.map(e))?;
    let accept = [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST];
    let (top, top_digest) = ctx.manifest(None, &accept).await?;
    let parsed = ManifestJson::parse(&top, &top_digest)?;
    let mut pins = Vec::new();
    let (manifest, manifest_digest, index_digest) = if parsed.is_index() {
        pins.push(inner.store.pin(std::slice::from_ref(&top_digest)));
        inner.store.put_bytes(&top_digest, &top, &format!("registry {ep}"))?;
        let entries = parsed.manifests.unwrap_or_default();
        let entry = platform.select(&entries).ok_or_else(|| ImageError::PlatformNotFound {
            reference: r.to_string(),
            registry: ep.to_string(),
            platform: platform.to_string(),
        })?;
        let (m, d) = ctx.manifest(Some(&entry.digest), &[OCI_MANIFEST, DOCKER_MANIFEST]).await?;
        (m, d, Some(top_digest))
    } else {
        (top, top_digest, None)
    };
    let m = ManifestJson::parse(&manifest, &manifest_digest)?;
    let config = m.config.clone().ok_or_else(|| ImageError::InvalidManifest {
        what: "manifest",
        digest: manifest_digest.clone(),
        reason: "no config descriptor".into(),
    })?;
    if config.size > MAX_JSON {
        return Err(ImageError::InvalidManifest {
            what: "manifest",
            digest: manifest_digest.clone(),
            reason: "config larger than 32 MiB".into(),
        });
    }
    let mut wanted = vec![manifest_digest.clone(), config.digest.clone()];
    wanted.extend(m.layers.iter().map(|l| l.digest.clone()));
    pins.push(inner.store.pin(&wanted));
    inner.store.put_bytes(&manifest_digest, &manifest, &format!("registry {ep}"))?;
    for l in &m.layers {
        crate::image::reference::validate_digest(&l.digest)?;
        if !crate::image::manifest::layer_media_type_supported(&l.media_type) {
            return Err(ImageError::UnsupportedMediaType {
                media_type: l.media_type.clone(),
                digest: l.digest.clone(),
            });
        }
    }
    ctx.fetch_blob(&config, false).await?;
    // Collected first: a lazy `map` closure held across the await would make the future
    // not `Send` (higher-ranked lifetime inference).
    let downloads: Vec<_> = m.layers.iter().map(|l| ctx.fetch_blob(l, true)).collect();
    futures::stream::iter(downloads)
        .buffer_unordered(PARALLEL_LAYERS)
        .try_collect::<Vec<()>>()
        .await?;
    let tags = r.tagged_name().into_iter().collect();
    let mut repo_digests = vec![format!("{}@{}", r.name(), manifest_digest)];
    if let Some(i) = &index_digest {
        repo_digests.push(format!("{}@{}", r.name(), i));
    }
    let rec =
        build_record(&inner.store, &manifest_digest, &manifest, index_digest, tags, repo_digests)?;
    let rec = inner.records.commit(&rec)?;
    drop(pins);
    Ok(rec)
}

fn short(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.chars().take(12).collect()
}

/// Turns an oci-client error into ours, naming the registry tried.
fn map_oci(e: OciDistributionError, registry: &str, reference: &str) -> ImageError {
    let reference = reference.to_string();
    let registry = registry.to_string();
    match e {
        OciDistributionError::RequestError(source) => {
            ImageError::Unreachable { reference, registry, source: Box::new(source) }
        }
        OciDistributionError::IoError(source) => {
            ImageError::Unreachable { reference, registry, source: Box::new(source) }
        }
        OciDistributionError::UnauthorizedError { url } => {
            ImageError::Unauthorized { reference, registry, detail: format!("401 on {url}") }
        }
        OciDistributionError::AuthenticationFailure(detail) => {
            ImageError::Unauthorized { reference, registry, detail }
        }
        OciDistributionError::ImageManifestNotFoundError(_) => {
            ImageError::NotFound { reference, registry }
        }
        OciDistributionError::RegistryError { envelope, url } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                ImageError::NotFound { reference, registry }
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                ImageError::Unauthorized { reference, registry, detail: format!("denied on {url}") }
            } else {
                ImageError::Registry { reference, registry, detail: format!("{envelope} on {url}") }
            }
        }
        OciDistributionError::ServerError { code, url, message } => match code {
            404 => ImageError::NotFound { reference, registry },
            401 | 403 => {
                ImageError::Unauthorized { reference, registry, detail: format!("{code} on {url}") }
            }
            _ => ImageError::Registry {
                reference,
                registry,
                detail: format!("http {code} on {url}: {message}"),
            },
        },
        OciDistributionError::DigestError(d) => ImageError::DigestMismatch {
            digest: reference.clone(),
            actual: d.to_string(),
            origin: format!("registry {registry}"),
        },
        other => ImageError::Registry { reference, registry, detail: other.to_string() },
    }
}

/// Keeps `Arc` in scope for the in-flight map type.
pub type BlobLock = Arc<futures::lock::Mutex<()>>;
