//! The monitor's error type: each variant names the step or value that failed.

use thiserror::Error;

/// Anything that can stop a VM from being built or run.
#[derive(Debug, Error)]
pub enum VmError {
    /// A KVM ioctl failed; `op` names the ioctl or step.
    #[error("KVM {op} failed: {source}")]
    Kvm {
        op: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    /// /dev/kvm could not be opened.
    #[error("cannot open /dev/kvm: {0}")]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// The requested configuration cannot be built; the message names the field.
    #[error("invalid VM config: {0}")]
    Config(String),
    /// Guest memory could not be allocated or written.
    #[error("guest memory: {0}")]
    GuestMemory(String),
    /// A kernel or initramfs file cannot be used; `what` says which.
    #[error("{what} {path}: {detail}")]
    BootImage {
        what: &'static str,
        path: std::path::PathBuf,
        detail: String,
    },
    /// Two devices asked for overlapping port ranges.
    #[error("port range {base:#x}+{len} overlaps a device already on the bus")]
    PortOverlap { base: u16, len: u16 },
    /// Two devices asked for overlapping MMIO ranges (or the range wraps).
    #[error("MMIO range {base:#x}+{len:#x} overlaps a device already on the bus")]
    MmioOverlap { base: u64, len: u64 },
    /// A vCPU thread could not be started.
    #[error("cannot start vCPU {index} thread: {source}")]
    VcpuThread {
        index: u8,
        #[source]
        source: std::io::Error,
    },
    /// The vCPU kick signal handler could not be installed.
    #[error("cannot install the vCPU kick signal handler: {0}")]
    KickSignal(#[source] vmm_sys_util::errno::Error),
    /// The monitor could not confine itself (seccomp, capabilities, cgroup, namespaces).
    #[error("monitor confinement: {0}")]
    Confine(#[from] crate::confine::ConfineError),
    /// The VM was already started.
    #[error("the VM was already started")]
    AlreadyStarted,
}

impl VmError {
    /// Wraps a failed KVM ioctl with the name of the step.
    pub fn kvm(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
        move |source| VmError::Kvm { op, source }
    }
}
