//! The one directory virtiofsd serves to the guest, built in the supervisor's private mount
//! namespace: a tmpfs holding `rootfs/` (a bind of the bundle's rootfs) and `mounts/N` (a bind
//! of the source of the config's mount N). Nothing of it is visible on the host, and it goes
//! away with the supervisor's namespace, so no mount can be left behind.

use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use oci_spec::runtime::Spec;

use super::guest_config::is_bind;

fn mount_err(what: &str, path: &Path, e: nix::Error) -> String {
    format!("VM share: {what} {}: {e}", path.display())
}

/// Enters a private mount namespace (only this process and its children see the share).
pub fn enter_private_mounts() -> Result<(), String> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("VM share: unshare(mount): {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| format!("VM share: making / a slave: {e}"))
}

fn bind(source: &Path, target: &Path, recursive: bool, readonly: bool) -> Result<(), String> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(Some(source), target, None::<&str>, flags, None::<&str>)
        .map_err(|e| mount_err(&format!("binding {} onto", source.display()), target, e))?;
    if readonly {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| mount_err("remounting read-only", target, e))?;
    }
    Ok(())
}

/// Builds the share at `share` (an empty directory) for `spec`, whose rootfs is `rootfs`.
pub fn build(share: &Path, rootfs: &Path, spec: &Spec) -> Result<(), String> {
    mount(
        Some("runvm-share"),
        share,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=64k"),
    )
    .map_err(|e| mount_err("mounting a tmpfs on", share, e))?;
    let root_target = share.join("rootfs");
    std::fs::create_dir(&root_target).map_err(|e| format!("{}: {e}", root_target.display()))?;
    let readonly = spec
        .root()
        .as_ref()
        .is_some_and(|r| r.readonly() == Some(true));
    // Recursive: podman's overlay rootfs is one mount, but a rootfs may hold mounts of its own.
    bind(rootfs, &root_target, true, readonly)?;
    let mounts_dir = share.join("mounts");
    std::fs::create_dir(&mounts_dir).map_err(|e| format!("{}: {e}", mounts_dir.display()))?;
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !is_bind(m) {
            continue;
        }
        let source = m
            .source()
            .as_deref()
            .ok_or_else(|| format!("mounts[{i}].source: a bind mount needs a source"))?;
        let target = mounts_dir.join(i.to_string());
        let made = if source.is_dir() {
            std::fs::create_dir(&target)
        } else {
            std::fs::File::create(&target).map(drop)
        };
        made.map_err(|e| format!("{}: {e}", target.display()))?;
        let options = m.options().as_deref().unwrap_or_default();
        let recursive = options.iter().any(|o| o == "rbind");
        let ro = options.iter().any(|o| o == "ro");
        bind(source, &target, recursive, ro).map_err(|e| format!("mounts[{i}]: {e}"))?;
    }
    Ok(())
}
