//! The one error type of the cgroup layer: every variant names the OCI field and the file involved.

use std::io;
use std::path::PathBuf;

/// A failure of the cgroup layer. `field` is the OCI config path (e.g. `linux.resources.memory.limit`)
/// or, for lifecycle operations, a short name of what was being done (e.g. `cgroup.procs`).
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{field}: writing {value} to {}: {}", path.display(), os_text(source))]
    Write {
        field: String,
        value: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{field}: reading {}: {}", path.display(), os_text(source))]
    Read {
        field: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{field}: cannot parse {content:?} from {}", path.display())]
    Parse {
        field: String,
        path: PathBuf,
        content: String,
    },
    #[error("creating cgroup directory {}: {}", path.display(), os_text(source))]
    Create { path: PathBuf, source: io::Error },
    #[error("removing cgroup directory {}: {}", path.display(), os_text(source))]
    Remove { path: PathBuf, source: io::Error },
    #[error("{field}: invalid value {value:?}: {reason}")]
    Invalid {
        field: String,
        value: String,
        reason: String,
    },
    #[error("{field}: {reason}")]
    Unsupported { field: String, reason: String },
    #[error("linux.cgroupsPath {path:?}: {reason}")]
    Path { path: String, reason: String },
    #[error("detecting the cgroup layout at {}: {reason}", path.display())]
    Layout { path: PathBuf, reason: String },
    #[error("{field}: {what}: {}", os_text(source))]
    Bpf {
        field: String,
        what: String,
        source: io::Error,
    },
    #[error("{what}: timed out after {millis} ms waiting for {}", path.display())]
    Timeout {
        what: String,
        path: PathBuf,
        millis: u64,
    },
}

/// The kernel's message for an errno without Rust's "(os error N)" suffix, so messages read like
/// "Device or resource busy".
fn os_text(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => err.to_string(),
    }
}

impl CgroupError {
    pub(crate) fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CgroupError::Unsupported {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        CgroupError::Invalid {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// True when the error came from a file that does not exist (a controller file this kernel
    /// lacks), so callers can fall back to an alternative file.
    pub(crate) fn is_not_found(&self) -> bool {
        match self {
            CgroupError::Write { source, .. } | CgroupError::Read { source, .. } => {
                source.kind() == io::ErrorKind::NotFound
            }
            _ => false,
        }
    }
}
