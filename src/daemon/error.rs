//! Request failures inside the daemon, and their classification on the wire.

use crate::backend::BackendError;
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
    RollbackFailed {
        zone: String,
        failure: String,
        rollback: BackendError,
    },
}

impl RequestError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidName { .. } | Self::InvalidPolicy(_) | Self::InvalidArgument(_) => {
                ErrorKind::InvalidArgument
            }
            Self::Registry(RegistryError::Duplicate(_)) => ErrorKind::AlreadyExists,
            Self::Registry(RegistryError::NotFound(_)) => ErrorKind::NotFound,
            Self::Registry(RegistryError::IdsExhausted(_)) => ErrorKind::Unavailable,
            Self::ZoneDeleting { .. } | Self::ZoneHasContainers { .. } => {
                ErrorKind::FailedPrecondition
            }
            Self::Store(_) | Self::Backend { .. } | Self::RollbackFailed { .. } => {
                ErrorKind::Internal
            }
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        ApiError::new(error.kind(), error.to_string())
    }
}
