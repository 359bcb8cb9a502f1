//! Making the rootfs the process's "/": pivot_root, or MS_MOVE + chroot when asked not to pivot.

use super::error::{step, Failure, RootfsError};
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, chroot, fchdir, pivot_root};
use std::os::fd::OwnedFd;
use std::path::Path;

/// `root` is the rootfs self-bind (an O_PATH fd): entering it by descriptor needs no lookup
/// through the bundle path, which init may no longer be allowed to traverse.
pub fn pivot(
    root: &OwnedFd,
    rootfs: &Path,
    no_pivot: bool,
    shared_mount_ns: bool,
) -> Result<(), RootfsError> {
    let result = if shared_mount_ns {
        chroot_only(root)
    } else if no_pivot {
        move_and_chroot(root)
    } else {
        pivot_here(root)
    };
    result.map_err(|failure| RootfsError::Pivot {
        path: rootfs.display().to_string(),
        failure,
    })
}

/// pivot_root(".", ".") stacks the old root on top of the new one, so no put_old directory is
/// needed inside the rootfs; the old root is then detached from where we stand.
fn pivot_here(new_root: &OwnedFd) -> Result<(), Failure> {
    let dir_flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let old_root = open("/", dir_flags, Mode::empty()).map_err(step("open /"))?;
    fchdir(new_root).map_err(step("chdir into the rootfs"))?;
    pivot_root(".", ".").map_err(step("pivot_root"))?;
    fchdir(&old_root).map_err(step("chdir into the old root"))?;
    // Unmounting must not propagate to the host's mounts.
    mount::<str, _, str, str>(None, ".", None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None)
        .map_err(step("make the old root rslave"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(step("detach the old root"))?;
    chdir("/").map_err(step("chdir /"))
}

/// In the host's mount namespace neither pivot_root nor MS_MOVE may be used: both would change
/// the host's own root. A chroot changes only this process.
fn chroot_only(root: &OwnedFd) -> Result<(), Failure> {
    fchdir(root).map_err(step("chdir into the rootfs"))?;
    chroot(".").map_err(step("chroot"))?;
    chdir("/").map_err(step("chdir /"))
}

/// For roots pivot_root cannot handle (e.g. an initramfs): move the rootfs mount over "/" and
/// chroot into it. Weaker than pivot_root (the old root stays reachable to CAP_SYS_CHROOT).
fn move_and_chroot(root: &OwnedFd) -> Result<(), Failure> {
    fchdir(root).map_err(step("chdir into the rootfs"))?;
    mount::<_, _, str, str>(Some("."), "/", None, MsFlags::MS_MOVE, None)
        .map_err(step("move the rootfs mount onto /"))?;
    chroot(".").map_err(step("chroot"))?;
    chdir("/").map_err(step("chdir /"))
}
