//! The container's root filesystem: containerd passes the snapshot as mounts (usually one
//! overlay) in Create, and the shim mounts them on `<bundle>/rootfs` and unmounts them when the
//! task is deleted.

use std::path::{Path, PathBuf};

use containerd_shim::protos::api::Mount;

pub fn rootfs_of(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

/// Mounts `mounts` in order on `<bundle>/rootfs`; on failure unmounts what was mounted.
pub fn mount_all(bundle: &Path, mounts: &[Mount]) -> Result<(), String> {
    if mounts.is_empty() {
        return Ok(());
    }
    let target = rootfs_of(bundle);
    std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    for m in mounts {
        let fs_type = (!m.type_.is_empty()).then_some(m.type_.as_str());
        let source = (!m.source.is_empty()).then_some(m.source.as_str());
        if let Err(e) = containerd_shim::mount::mount_rootfs(fs_type, source, &m.options, &target)
        {
            unmount(bundle);
            return Err(format!(
                "mounting rootfs ({} {} on {}): {e}",
                m.type_,
                m.source,
                target.display()
            ));
        }
    }
    Ok(())
}

/// Unmounts everything on `<bundle>/rootfs` (lazily: the container is gone by now, but a
/// straggler with an open file must not keep the shim from finishing).
pub fn unmount(bundle: &Path) {
    let target = rootfs_of(bundle);
    for _ in 0..16 {
        if nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
}
