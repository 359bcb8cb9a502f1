//! Giving up privileges once the VM is built: the monitor holds every fd it needs by then
//! (/dev/kvm, the VM and vCPU fds, guest images already read), so it keeps no capability.
//!
//! Capabilities and no_new_privs belong to a thread and are inherited by the threads it
//! starts: call this on the thread that starts the vCPUs, before it starts them.

use caps::{CapSet, Capability};

use super::ConfineError;

/// Empties the bounding, ambient, inheritable, effective and permitted sets of the calling
/// thread. The bounding set goes first, and only with CAP_SETPCAP (which the later steps
/// remove); without it (an unprivileged monitor) it stays, and no_new_privs keeps execve
/// from using it.
pub fn drop_all_capabilities() -> Result<(), ConfineError> {
    let can_drop_bounding = caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)
        .map_err(|e| ConfineError::Capabilities {
            set: "effective",
            detail: e.to_string(),
        })?;
    let sets = [
        (CapSet::Bounding, "bounding"),
        (CapSet::Ambient, "ambient"),
        (CapSet::Inheritable, "inheritable"),
        (CapSet::Effective, "effective"),
        (CapSet::Permitted, "permitted"),
    ];
    for (set, name) in sets {
        if matches!(set, CapSet::Bounding) && !can_drop_bounding {
            continue;
        }
        caps::clear(None, set).map_err(|e| ConfineError::Capabilities {
            set: name,
            detail: e.to_string(),
        })?;
    }
    Ok(())
}

/// Sets no_new_privs: execve can no longer grant privileges (setuid bits, file caps).
pub fn set_no_new_privs() -> Result<(), ConfineError> {
    nix::sys::prctl::set_no_new_privs().map_err(|errno| ConfineError::Syscall {
        what: "prctl(PR_SET_NO_NEW_PRIVS)",
        errno,
    })
}
