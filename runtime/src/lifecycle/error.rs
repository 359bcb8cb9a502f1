use runvm_oci::{OciError, Status};

use crate::cgroups::CgroupError;
use crate::container::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// A setup step failed; the message names the field or file.
    #[error("{0}")]
    Setup(String),
    #[error("container {id:?} is {status}: {action} needs it {needed}")]
    WrongStatus {
        id: String,
        status: Status,
        action: &'static str,
        needed: &'static str,
    },
}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error::Setup(s)
    }
}
