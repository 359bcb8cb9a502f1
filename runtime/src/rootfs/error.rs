//! Errors of rootfs setup: each names the config field (and index) that failed.

use nix::errno::Errno;
use std::fmt;

/// Why one step failed: a system call (with what was attempted) or an invalid config value.
#[derive(Debug)]
pub enum Failure {
    /// A system call failed; `step` says what was being done, e.g. "mount proc".
    Sys { step: String, errno: Errno },
    /// The configuration asks for something that cannot be done.
    Invalid(String),
}

impl Failure {
    /// Wraps a failed call with the step that was being attempted.
    pub fn sys(step: impl Into<String>, errno: Errno) -> Self {
        Failure::Sys {
            step: step.into(),
            errno,
        }
    }

    /// The errno when this is a system-call failure.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Failure::Sys { errno, .. } => Some(*errno),
            Failure::Invalid(_) => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Sys { step, errno } => write!(f, "{step}: {}", errno.desc()),
            Failure::Invalid(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Failure {}

/// Lets internal helpers write `syscall().map_err(step("mount proc"))?`.
pub fn step(what: impl Into<String>) -> impl FnOnce(Errno) -> Failure {
    let what = what.into();
    move |errno| Failure::sys(what, errno)
}

/// A rootfs setup error, naming the config field it comes from.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("root (path {path}): {failure}")]
    Root { path: String, failure: Failure },
    #[error("linux.rootfsPropagation ({value}): {failure}")]
    Propagation { value: String, failure: Failure },
    #[error("mounts[{index}] (destination {destination}): {failure}")]
    Mount {
        index: usize,
        destination: String,
        failure: Failure,
    },
    #[error("linux.devices[{index}] (path {path}): {failure}")]
    Device {
        index: usize,
        path: String,
        failure: Failure,
    },
    #[error("/dev setup ({path}): {failure}")]
    Dev { path: String, failure: Failure },
    #[error("linux.maskedPaths[{index}] ({path}): {failure}")]
    MaskedPath {
        index: usize,
        path: String,
        failure: Failure,
    },
    #[error("linux.readonlyPaths[{index}] ({path}): {failure}")]
    ReadonlyPath {
        index: usize,
        path: String,
        failure: Failure,
    },
    #[error("pivot into {path}: {failure}")]
    Pivot { path: String, failure: Failure },
}

impl RootfsError {
    /// The errno behind this error, if a system call failed.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            RootfsError::Root { failure, .. }
            | RootfsError::Propagation { failure, .. }
            | RootfsError::Mount { failure, .. }
            | RootfsError::Device { failure, .. }
            | RootfsError::Dev { failure, .. }
            | RootfsError::MaskedPath { failure, .. }
            | RootfsError::ReadonlyPath { failure, .. }
            | RootfsError::Pivot { failure, .. } => failure.errno(),
        }
    }
}
