//! Task errors with the ttrpc codes containerd maps to its errdefs (not found, already
//! exists, failed precondition...), which clients like `ctr` act on.

use containerd_shim::protos::ttrpc::{self, Code};

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Internal(String),
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        let code = match &e {
            ShimError::NotFound(_) => Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ShimError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ShimError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ShimError::Internal(_) => Code::INTERNAL,
        };
        ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
    }
}

impl From<runvm_runtime::lifecycle::Error> for ShimError {
    fn from(e: runvm_runtime::lifecycle::Error) -> Self {
        use runvm_runtime::container::StoreError;
        use runvm_runtime::lifecycle::Error;
        match e {
            Error::Store(StoreError::NotFound(_)) => ShimError::NotFound(e.to_string()),
            Error::Store(StoreError::AlreadyExists(_)) => ShimError::AlreadyExists(e.to_string()),
            Error::WrongStatus { .. } => ShimError::FailedPrecondition(e.to_string()),
            other => ShimError::Internal(other.to_string()),
        }
    }
}

impl From<runvm_runtime::container::StoreError> for ShimError {
    fn from(e: runvm_runtime::container::StoreError) -> Self {
        runvm_runtime::lifecycle::Error::from(e).into()
    }
}
