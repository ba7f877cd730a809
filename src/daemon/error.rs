//! Request failures inside the daemon, and their classification on the wire.

use std::path::PathBuf;

use super::shims::ShimCallError;
use crate::backend::BackendError;
use crate::image::ImageError;
use crate::rpc::{ApiError, ErrorKind};
use crate::store::StoreError;
use crate::zone::{NameError, PolicyError, RegistryError};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("invalid zone name {name:?}: {source}")]
    InvalidName { name: String, source: NameError },
    #[error("invalid policy: {0}")]
    InvalidPolicy(#[from] PolicyError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("zone {zone:?} is being deleted")]
    ZoneDeleting { zone: String },
    #[error("zone {zone:?} has {count} container(s); stop and remove them first or pass --force")]
    ZoneHasContainers { zone: String, count: usize },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("zone {zone:?}: {source}")]
    Backend { zone: String, source: BackendError },
    #[error("zone {zone:?}: {failure}; rolling back also failed: {rollback}")]
    RollbackFailed { zone: String, failure: String, rollback: BackendError },
    #[error("container {0:?} not found")]
    ContainerNotFound(String),
    #[error("exec session {0:?} not found (unknown, or its exit code was already collected)")]
    ExecNotFound(String),
    #[error("a container named {0:?} already exists")]
    ContainerExists(String),
    #[error("container {container:?} is {state}; cannot {action}")]
    ContainerState { container: String, state: &'static str, action: &'static str },
    #[error("container {0:?} is running; stop it first or use --force")]
    ContainerRunning(String),
    #[error("image {0:?} not found locally; pull it first (rauha image pull {0})")]
    ImageNotFound(String),
    #[error(transparent)]
    Image(Box<ImageError>),
    #[error(transparent)]
    Shim(Box<ShimCallError>),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("network: {0}")]
    Network(Box<crate::net::NetError>),
    #[error("invalid policy: {0}")]
    InvalidDevices(#[from] crate::enforce::bpf_policy::DeviceRuleError),
    #[error("zone {zone:?}: {source}")]
    Bpf { zone: String, source: crate::enforce::bpf::BpfError },
    #[error("verify zone {zone:?}: {reason}")]
    Verify { zone: String, reason: String },
}

impl RequestError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidName { .. }
            | Self::InvalidPolicy(_)
            | Self::InvalidArgument(_)
            | Self::InvalidDevices(_) => ErrorKind::InvalidArgument,
            Self::Registry(RegistryError::Duplicate(_)) => ErrorKind::AlreadyExists,
            Self::Registry(RegistryError::NotFound(_)) => ErrorKind::NotFound,
            Self::Registry(RegistryError::IdsExhausted(_)) => ErrorKind::Unavailable,
            Self::ZoneDeleting { .. }
            | Self::ZoneHasContainers { .. }
            | Self::ContainerState { .. }
            | Self::ContainerRunning(_) => ErrorKind::FailedPrecondition,
            Self::ContainerNotFound(_) | Self::ImageNotFound(_) | Self::ExecNotFound(_) => {
                ErrorKind::NotFound
            }
            Self::ContainerExists(_) => ErrorKind::AlreadyExists,
            Self::Image(error) => match error.kind() {
                crate::image::ErrorKind::NotFound => ErrorKind::NotFound,
                crate::image::ErrorKind::InvalidArgument => ErrorKind::InvalidArgument,
                crate::image::ErrorKind::Unavailable => ErrorKind::Unavailable,
                crate::image::ErrorKind::Unauthorized => ErrorKind::PermissionDenied,
                crate::image::ErrorKind::FailedPrecondition => ErrorKind::FailedPrecondition,
                crate::image::ErrorKind::Internal => ErrorKind::Internal,
            },
            Self::Shim(error) if matches!(**error, ShimCallError::Failed(_)) => match &**error {
                ShimCallError::Failed(failure) => match failure.kind {
                    crate::shim::protocol::FailureKind::NotFound => ErrorKind::NotFound,
                    crate::shim::protocol::FailureKind::AlreadyExists => ErrorKind::AlreadyExists,
                    crate::shim::protocol::FailureKind::InvalidRequest
                    | crate::shim::protocol::FailureKind::StartFailed => ErrorKind::InvalidArgument,
                    crate::shim::protocol::FailureKind::InvalidState
                    | crate::shim::protocol::FailureKind::NotRunning => {
                        ErrorKind::FailedPrecondition
                    }
                    _ => ErrorKind::Internal,
                },
                _ => ErrorKind::Internal,
            },
            Self::Store(_)
            | Self::Backend { .. }
            | Self::RollbackFailed { .. }
            | Self::Shim(_)
            | Self::Io { .. }
            | Self::Bpf { .. }
            | Self::Verify { .. } => ErrorKind::Internal,
            Self::Network(error) => match **error {
                crate::net::NetError::PoolExhausted { .. } => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            },
        }
    }
}

impl From<ImageError> for RequestError {
    fn from(error: ImageError) -> Self {
        RequestError::Image(Box::new(error))
    }
}

impl From<ShimCallError> for RequestError {
    fn from(error: ShimCallError) -> Self {
        RequestError::Shim(Box::new(error))
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        ApiError::new(error.kind(), error.to_string())
    }
}
