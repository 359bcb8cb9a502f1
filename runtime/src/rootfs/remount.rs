//! Changing the flags of a mount that already exists: bind remounts and mount_setattr.

use super::error::{step, Failure};
use super::options::{attr, RecursiveAttrs, MS_NOSYMFOLLOW};
use super::resolve::fd_path;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{fstatvfs, FsFlags};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

/// ST_NOSYMFOLLOW from linux/statfs.h; nix's FsFlags lacks it.
const ST_NOSYMFOLLOW: u64 = 0x2000;

/// Per-mount flags that a less privileged mount namespace may not drop (they get "locked" when
/// the mount is copied into a user namespace); atime flags are locked too.
const LOCKABLE: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);
const ATIME: MsFlags = MsFlags::MS_NOATIME
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME)
    .union(MsFlags::MS_NODIRATIME);

/// The per-mount flags of the mount `fd` lives on, as MS_* flags.
pub fn current_flags(fd: impl AsFd) -> Result<MsFlags, Errno> {
    let st = fstatvfs(fd)?;
    let f = st.flags();
    let mut out = MsFlags::empty();
    let map = [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    for (st_flag, ms_flag) in map {
        if f.contains(st_flag) {
            out |= ms_flag;
        }
    }
    if f.bits() as u64 & ST_NOSYMFOLLOW != 0 {
        out |= MS_NOSYMFOLLOW;
    }
    Ok(out)
}

/// How a remount treats the flags the mount already has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Set exactly `flags`; only if the kernel refuses (EPERM: locked flags in a user namespace)
    /// retry with the locked flags of the current mount added.
    RequestedOnly,
    /// Add `flags` to everything the mount has now (read-only paths, root.readonly).
    Existing,
}

/// Remounts the mount at `fd` (an fd opened on the mount's root, after mounting) with MS_BIND
/// semantics, i.e. changing only per-mount flags, never the superblock.
pub fn remount_bind(fd: impl AsFd + AsRawFd, flags: MsFlags, keep: Keep) -> Result<(), Failure> {
    let current = current_flags(fd.as_fd()).map_err(step("statvfs before remount"))?;
    remount_at(&fd_path(&fd), current, flags, keep)
}

/// [`remount_bind`] for "/" itself, which needs no fd (it cannot be a symlink) and so works
/// without a procfs.
pub fn remount_root(flags: MsFlags, keep: Keep) -> Result<(), Failure> {
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(step("open /"))?;
    let current = current_flags(&root).map_err(step("statvfs / before remount"))?;
    remount_at(Path::new("/"), current, flags, keep)
}

fn remount_at(path: &Path, current: MsFlags, flags: MsFlags, keep: Keep) -> Result<(), Failure> {
    let attempt = |flags: MsFlags| {
        mount::<str, _, str, str>(
            None,
            path,
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
            None,
        )
    };
    let first = match keep {
        Keep::Existing => flags | current,
        Keep::RequestedOnly => flags,
    };
    match attempt(first) {
        Err(Errno::EPERM) => {
            let mut retry = first | (current & LOCKABLE);
            if !first.intersects(ATIME) {
                retry |= current & ATIME;
            }
            attempt(retry).map_err(step(format!("remount with flags {:?}", retry)))
        }
        other => other.map_err(step(format!("remount with flags {:?}", first))),
    }
}

/// The kernel's struct mount_attr (linux/mount.h); libc does not define it.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) on the mount behind `fd` (`recursive`: its whole tree). Hand-written:
/// neither nix nor libc wrap it.
pub fn mount_setattr(fd: RawFd, set: u64, clear: u64, recursive: bool) -> Result<(), Errno> {
    let arg = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let mut at_flags = libc::AT_EMPTY_PATH;
    if recursive {
        at_flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: mount_setattr reads `size` bytes from a valid, initialised MountAttr that outlives
    // the call; the path is a NUL-terminated empty string used with AT_EMPTY_PATH.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            at_flags as libc::c_uint,
            &arg as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(rc).map(drop)
}

/// Applies recursive attributes (rro, rnosuid, ...) to the whole mount tree at `fd`.
pub fn set_recursive(fd: &impl AsRawFd, attrs: &RecursiveAttrs) -> Result<(), Failure> {
    let mut set = attrs.set;
    let mut clear = attrs.clear;
    if let Some(mode) = attrs.atime {
        set = (set & !attr::ATIME_MASK) | mode;
        clear |= attr::ATIME_MASK;
    }
    mount_setattr(fd.as_raw_fd(), set, clear, true)
        .map_err(step(format!("mount_setattr set={set:#x} clear={clear:#x}")))
}
