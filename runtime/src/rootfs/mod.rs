//! The container root filesystem: mounts, devices, masked and read-only paths, pivot_root.
//!
//! Runs inside the container's init, already in its own mount namespace (maybe a user namespace
//! too), single-threaded. The order is: [`prepare`] (propagation, rootfs self-bind, the config's
//! mounts, /dev), [`pivot`], then [`finish`] (masked and read-only paths, root.readonly, final
//! propagation). Every config path is resolved inside the rootfs and never through a symlink
//! out of it (see [`resolve`]).

mod cgroup;
mod copyup;
mod devices;
pub mod error;
mod masked;
mod mounts;
pub mod options;
mod pivot;
mod propagation;
mod readonly;
pub(crate) mod remount;
pub mod resolve;

#[cfg(test)]
mod tests;

pub use error::{Failure, RootfsError};

use nix::mount::MsFlags;
use oci_spec::runtime::Spec;
use std::os::fd::OwnedFd;
use std::path::Path;

/// The cgroups module describes each hierarchy the container sees under its "cgroup" mount.
pub use crate::cgroups::CgroupMountSource;

/// Everything [`prepare`] needs.
pub struct RootfsPlan<'a> {
    pub spec: &'a Spec,
    /// The rootfs directory: absolute and canonical.
    pub rootfs: &'a Path,
    /// The bundle directory: relative bind-mount sources are relative to it.
    pub bundle: &'a Path,
    /// init runs in a user namespace it created (mknod and sysfs are not allowed there).
    pub in_new_userns: bool,
    /// init runs in its own cgroup namespace.
    pub cgroup_ns: bool,
    /// The container's cgroup hierarchies, for mounts of type "cgroup".
    pub cgroup_sources: Vec<CgroupMountSource>,
    /// The config has no mount namespace: init mounts in the host's namespace, below a private
    /// self-bind of the rootfs, and never touches the host's own mounts.
    pub shared_mount_ns: bool,
}

/// What the mount helpers share.
struct Ctx<'a> {
    /// O_PATH fd of the rootfs self-bind: the root all config paths are resolved in.
    root: OwnedFd,
    bundle: &'a Path,
    in_new_userns: bool,
    cgroup_ns: bool,
    cgroup_sources: &'a [CgroupMountSource],
}

/// Before pivot_root: propagation of "/", the rootfs bound onto itself, every config mount in
/// order, then /dev.
pub fn prepare(plan: &RootfsPlan) -> Result<PreparedRoot, RootfsError> {
    let root = bind_root(plan)?;
    mount_all(plan, &root)?;
    Ok(root)
}

/// The rootfs bound onto itself, held from [`bind_root`] to [`pivot`] as an O_PATH descriptor:
/// everything after the bind resolves through it, never through the bundle's path again.
#[derive(Debug)]
pub struct PreparedRoot {
    fd: OwnedFd,
    path: std::path::PathBuf,
}

/// Step one of [`prepare`]: propagation of "/" and the self-bind of the rootfs. The only step
/// that looks the rootfs up by path, so a caller can run it with ids that may enter the bundle
/// (a new user namespace's init still has the host's root ids here).
pub fn bind_root(plan: &RootfsPlan) -> Result<PreparedRoot, RootfsError> {
    propagation::prepare_root(plan.spec, plan.rootfs, plan.shared_mount_ns)?;
    // Opened after the self-bind, so what follows is mounted on the bind that pivot_root moves.
    let fd = resolve::open_host_dir(plan.rootfs).map_err(|e| RootfsError::Root {
        path: plan.rootfs.display().to_string(),
        failure: Failure::sys("open the rootfs", e),
    })?;
    Ok(PreparedRoot {
        fd,
        path: plan.rootfs.to_path_buf(),
    })
}

/// Step two of [`prepare`]: every config mount in order, then /dev.
pub fn mount_all(plan: &RootfsPlan, prepared: &PreparedRoot) -> Result<(), RootfsError> {
    let root = prepared.fd.try_clone().map_err(|e| RootfsError::Root {
        path: plan.rootfs.display().to_string(),
        failure: Failure::sys(
            "duplicate the rootfs descriptor",
            nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)),
        ),
    })?;
    let ctx = Ctx {
        root,
        bundle: plan.bundle,
        in_new_userns: plan.in_new_userns,
        cgroup_ns: plan.cgroup_ns,
        cgroup_sources: &plan.cgroup_sources,
    };

    let mounts = plan.spec.mounts().as_deref().unwrap_or(&[]);
    let mut readonly_dev: Option<usize> = None;
    for (index, m) in mounts.iter().enumerate() {
        let mut opts = options::parse(m.options().as_deref().unwrap_or(&[]));
        let is_bind = opts.bind || m.typ().as_deref() == Some("bind");
        let is_dev = resolve::clean_absolute(m.destination()) == Path::new("/dev");
        // A read-only /dev is mounted writable first: its devices are created afterwards.
        if is_dev && !is_bind && opts.flags.contains(MsFlags::MS_RDONLY) {
            opts.flags.remove(MsFlags::MS_RDONLY);
            readonly_dev = Some(index);
        }
        mounts::mount_entry(&ctx, m, &opts).map_err(|failure| mount_error(index, m, failure))?;
    }

    devices::setup_dev(&ctx, plan.spec)?;

    if let Some(index) = readonly_dev {
        let m = &mounts[index];
        mounts::reopen(&ctx, m.destination())
            .and_then(|fd| remount::remount_bind(fd, MsFlags::MS_RDONLY, remount::Keep::Existing))
            .map_err(|failure| mount_error(index, m, failure))?;
    }
    Ok(())
}

fn mount_error(index: usize, m: &oci_spec::runtime::Mount, failure: Failure) -> RootfsError {
    RootfsError::Mount {
        index,
        destination: m.destination().display().to_string(),
        failure,
    }
}

/// Makes `rootfs` the process's root: pivot_root, or MS_MOVE + chroot when `no_pivot`, or a
/// plain chroot in the host's mount namespace (where moving mounts would change the host).
pub fn pivot(
    root: &PreparedRoot,
    no_pivot: bool,
    shared_mount_ns: bool,
) -> Result<(), RootfsError> {
    pivot::pivot(&root.fd, &root.path, no_pivot, shared_mount_ns)
}

/// Undoes the mounts of a container that shared the host's mount namespace: everything it
/// mounted hangs below the self-bind of its rootfs, so detaching that bind removes it all.
pub fn unmount_shared(rootfs: &Path) -> Result<(), RootfsError> {
    propagation::unmount_self_bind(rootfs)
}

/// After pivot: maskedPaths, readonlyPaths, the final rootfs propagation and root.readonly.
pub fn finish(spec: &Spec) -> Result<(), RootfsError> {
    masked::mask_paths(spec)?;
    readonly::readonly_paths(spec)?;
    propagation::finish_root(spec)?;
    readonly::readonly_root(spec)
}
