//! New namespaces and a jail root for the monitor, entered after the VM is built and before
//! its threads start (namespaces belong to a thread and are inherited by the threads it
//! starts). Like Firecracker's jailer, but in-process: the monitor needs no file after the
//! build, so the jail only has to hold what devices open later (nothing today).
//!
//! No PID namespace: a new one applies only to children, and Linux refuses to start threads
//! of a process whose children would be in another PID namespace (clone EINVAL), which is
//! the monitor's whole thread model. No user namespace: it needs a single-threaded process.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use serde::Serialize;

use super::ConfineError;

/// A namespace the monitor can move into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Namespace {
    /// Own mounts: needed for the jail; host mounts made later do not reach the monitor.
    Mount,
    /// No System V IPC or POSIX message queues shared with the host.
    Ipc,
    /// Own hostname.
    Uts,
    /// No network at all (only a down loopback); unix sockets on paths still work.
    Net,
}

impl Namespace {
    fn clone_flag(self) -> CloneFlags {
        match self {
            Namespace::Mount => CloneFlags::CLONE_NEWNS,
            Namespace::Ipc => CloneFlags::CLONE_NEWIPC,
            Namespace::Uts => CloneFlags::CLONE_NEWUTS,
            Namespace::Net => CloneFlags::CLONE_NEWNET,
        }
    }
}

/// Moves the calling thread into new `namespaces` (needs CAP_SYS_ADMIN).
pub fn unshare_namespaces(namespaces: &[Namespace]) -> Result<(), ConfineError> {
    let flags = namespaces
        .iter()
        .fold(CloneFlags::empty(), |all, ns| all | ns.clone_flag());
    if flags.is_empty() {
        return Ok(());
    }
    unshare(flags).map_err(|errno| ConfineError::Syscall {
        what: "unshare of the monitor's namespaces",
        errno,
    })
}

/// Makes `dir` the root of the calling thread's (new) mount namespace and detaches
/// everything else: the old root is gone, not just hidden as with chroot. The jail is
/// mounted nosuid, nodev, noexec. Needs a private mount namespace (see [`Namespace::Mount`]).
pub fn enter_jail(dir: &Path) -> Result<(), ConfineError> {
    let failed = |what: &'static str| {
        let dir: PathBuf = dir.to_path_buf();
        move |errno| ConfineError::Jail { dir, what, errno }
    };
    // Nothing this namespace mounts or unmounts may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(failed("make every mount private"))?;
    // pivot_root needs the new root to be a mount point.
    mount(
        Some(dir),
        dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(failed("bind-mount the jail on itself"))?;
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(failed("remount the jail nosuid,nodev,noexec"))?;
    nix::unistd::chdir(dir).map_err(failed("chdir into the jail"))?;
    // pivot_root(".", "."): the old root ends up stacked on the new one; detaching "."
    // then removes it, leaving the jail as the only root.
    nix::unistd::pivot_root(".", ".").map_err(failed("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(failed("detach the old root"))?;
    nix::unistd::chdir("/").map_err(failed("chdir to the new root"))?;
    Ok(())
}
