//! The container's root filesystem: containerd passes the snapshot as mounts (usually one
//! overlay) in Create, and the shim mounts them on `<bundle>/rootfs` and unmounts them when the
//! task is deleted.
//!
//! Written here rather than with `containerd_shim::mount::mount_rootfs`: that function forks a
//! child to mount (unsafe from the shim's ttrpc threads, the hazard `worker` exists to avoid)
//! and waits for it through the crate's own SIGCHLD monitor, which this shim does not run. A
//! plain mount(2) from the calling thread needs neither.

use std::path::{Path, PathBuf};

use containerd_shim::protos::api::Mount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

pub fn rootfs_of(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

/// Splits containerd's mount options into mount flags and the data string, with the same
/// parser runvm uses for config.json mounts.
pub fn parse_options(options: &[String]) -> (MsFlags, String) {
    let parsed = runvm_runtime::rootfs::options::parse(options);
    let mut flags = parsed.flags;
    if parsed.bind {
        flags |= MsFlags::MS_BIND;
    }
    if parsed.recursive {
        flags |= MsFlags::MS_REC;
    }
    (flags, parsed.data_string().unwrap_or_default())
}

fn mount_one(m: &Mount, target: &Path) -> Result<(), String> {
    let (flags, data) = parse_options(&m.options);
    let fs_type = (!m.type_.is_empty()).then_some(m.type_.as_str());
    let source = (!m.source.is_empty()).then_some(m.source.as_str());
    let data = (!data.is_empty()).then_some(data.as_str());
    // A read-only bind needs a second, remounting call: the first ignores MS_RDONLY.
    let bind_ro = flags.contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY);
    mount(source, target, fs_type, flags, data).map_err(|e| e.to_string())?;
    if bind_ro {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            flags | MsFlags::MS_REMOUNT,
            None::<&str>,
        )
        .map_err(|e| format!("read-only remount: {e}"))?;
    }
    Ok(())
}

/// Mounts `mounts` in order on `<bundle>/rootfs`; on failure unmounts what was mounted.
pub fn mount_all(bundle: &Path, mounts: &[Mount]) -> Result<(), String> {
    if mounts.is_empty() {
        return Ok(());
    }
    let target = rootfs_of(bundle);
    std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    for m in mounts {
        if let Err(e) = mount_one(m, &target) {
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
    // Stacked mounts come off one per call; EINVAL means nothing is mounted there any more.
    for _ in 0..16 {
        if umount2(&target, MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_data_are_split() {
        let opts: Vec<String> = ["ro", "nosuid", "index=off", "lowerdir=/a:/b", "rw"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (flags, data) = parse_options(&opts);
        assert_eq!(flags, MsFlags::MS_NOSUID);
        assert_eq!(data, "index=off,lowerdir=/a:/b");
    }
}
