//! The image subsystem's error map: one variant per step that can fail.

use std::path::PathBuf;

/// Coarse class of an [`ImageError`], for mapping onto RPC status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The image, tag, manifest or blob does not exist (gRPC NotFound).
    NotFound,
    /// The caller's input is malformed (gRPC InvalidArgument).
    InvalidArgument,
    /// A registry could not be reached or answered with a server error (gRPC Unavailable).
    Unavailable,
    /// The registry refused our credentials (gRPC PermissionDenied / Unauthenticated).
    Unauthorized,
    /// The request conflicts with current state or content failed verification
    /// (gRPC FailedPrecondition).
    FailedPrecondition,
    /// Local storage or database failure (gRPC Internal).
    Internal,
}

/// Every way an image operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference string does not parse.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// The registry does not know the repository, tag or manifest.
    #[error("{reference} not found in registry {registry}")]
    NotFound { reference: String, registry: String },
    /// The registry has the image but no manifest for the wanted platform.
    #[error("{reference} in registry {registry} has no manifest for platform {platform}")]
    PlatformNotFound { reference: String, registry: String, platform: String },
    /// No local image matches the reference.
    #[error("image {reference} not found locally")]
    NotFoundLocal { reference: String },
    /// The registry rejected the (absent or given) credentials.
    #[error("registry {registry} refused access to {reference}: {detail}")]
    Unauthorized { reference: String, registry: String, detail: String },
    /// The registry could not be reached (connect, TLS, DNS, timeout or broken transfer).
    #[error("registry {registry} unreachable while pulling {reference}: {}", innermost(.source.as_ref()))]
    Unreachable {
        reference: String,
        registry: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Every endpoint for a registry (its mirrors, then itself) failed; `source` is the most
    /// telling failure, `tried` lists the endpoints in the order they were tried.
    #[error("{source} (tried {tried})")]
    AllEndpointsFailed { tried: String, source: Box<ImageError> },
    /// The registry answered with an unexpected protocol error.
    #[error("registry {registry} failed on {reference}: {detail}")]
    Registry { reference: String, registry: String, detail: String },
    /// Content did not hash to the digest that names it.
    #[error("digest mismatch for {digest} from {origin}: content hashes to {actual}")]
    DigestMismatch { digest: String, actual: String, origin: String },
    /// Content had another length than its descriptor says.
    #[error("size mismatch for {digest} from {origin}: expected {expected} bytes, got {actual}")]
    SizeMismatch { digest: String, expected: u64, actual: u64, origin: String },
    /// A digest string is not `sha256:<64 lowercase hex>`.
    #[error("invalid digest {digest:?}")]
    InvalidDigest { digest: String },
    /// A manifest, index or config is malformed.
    #[error("invalid {what} {digest}: {reason}")]
    InvalidManifest { what: &'static str, digest: String, reason: String },
    /// A layer or manifest uses a media type we cannot handle.
    #[error("unsupported media type {media_type:?} for {digest}")]
    UnsupportedMediaType { media_type: String, digest: String },
    /// The image is used by a container and cannot be removed.
    #[error("image {reference} is in use by a container")]
    InUse { reference: String },
    /// A layer entry tries something that is never allowed (e.g. a traversing whiteout).
    #[error("unsafe entry {entry:?} in layer {layer}: {reason}")]
    UnsafeEntry { layer: String, entry: String, reason: String },
    /// Applying one layer entry failed.
    #[error("unpacking entry {entry:?} of layer {layer}")]
    Unpack {
        layer: String,
        entry: String,
        #[source]
        source: std::io::Error,
    },
    /// Reading the layer's tar stream failed.
    #[error("reading tar stream of layer {layer}")]
    TarStream {
        layer: String,
        #[source]
        source: std::io::Error,
    },
    /// An import archive or directory is not an OCI layout or docker-save tarball.
    #[error("cannot import {path}: {reason}")]
    InvalidImport { path: PathBuf, reason: String },
    /// The HTTP client could not be built (e.g. no CA certificates on the system).
    #[error("cannot set up a registry client for {registry}: {reason}")]
    Client { registry: String, reason: String },
    /// The registry configuration file is malformed.
    #[error("registry config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    /// A file-system operation failed.
    #[error("i/o error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The metadata database failed.
    #[error("image database: {op}")]
    Database {
        op: &'static str,
        #[source]
        source: Box<redb::Error>,
    },
    /// A stored image record cannot be decoded: surfaced, never skipped.
    #[error("undecodable record {key:?} in table {table}: {reason}")]
    CorruptRecord { table: &'static str, key: String, reason: String },
}

impl ImageError {
    /// The error's class, for the RPC layers.
    pub fn kind(&self) -> ErrorKind {
        use ImageError as E;
        match self {
            E::AllEndpointsFailed { source, .. } => source.kind(),
            E::NotFound { .. } | E::PlatformNotFound { .. } | E::NotFoundLocal { .. } => {
                ErrorKind::NotFound
            }
            E::InvalidReference { .. } | E::InvalidDigest { .. } | E::InvalidImport { .. } => {
                ErrorKind::InvalidArgument
            }
            E::Unreachable { .. } | E::Registry { .. } => ErrorKind::Unavailable,
            E::Unauthorized { .. } => ErrorKind::Unauthorized,
            E::DigestMismatch { .. }
            | E::SizeMismatch { .. }
            | E::InvalidManifest { .. }
            | E::UnsupportedMediaType { .. }
            | E::InUse { .. }
            | E::UnsafeEntry { .. } => ErrorKind::FailedPrecondition,
            E::Unpack { .. }
            | E::TarStream { .. }
            | E::Config { .. }
            | E::Client { .. }
            | E::Io { .. }
            | E::Database { .. }
            | E::CorruptRecord { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io { path: path.into(), source }
    }

    pub(crate) fn db(op: &'static str, source: impl Into<redb::Error>) -> Self {
        ImageError::Database { op, source: Box::new(source.into()) }
    }
}

/// The deepest cause of `error`: for transport failures that is the OS-level reason
/// ("Connection refused") under reqwest's and hyper's generic wrappers.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
