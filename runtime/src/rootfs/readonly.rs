//! linux.readonlyPaths and root.readonly, after pivot_root.

use super::error::{step, Failure, RootfsError};
use super::remount::{remount_bind, remount_root, Keep};
use super::resolve::{fd_path, open_host_dir, open_in_root, require_procfs};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Spec;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Binds each existing path onto itself and makes that mount read-only, keeping the flags the
/// underlying mount has (dropping a locked nosuid/nodev/noexec fails with EPERM in a userns).
pub fn readonly_paths(spec: &Spec) -> Result<(), RootfsError> {
    let paths = spec
        .linux()
        .as_ref()
        .and_then(|l| l.readonly_paths().clone())
        .unwrap_or_default();
    if paths.is_empty() {
        return Ok(());
    }
    let error = |index: usize, path: &str, failure| RootfsError::ReadonlyPath {
        index,
        path: path.to_string(),
        failure,
    };
    let root =
        open_host_dir(Path::new("/")).map_err(|e| error(0, "/", Failure::sys("open /", e)))?;
    for (index, path) in paths.iter().enumerate() {
        readonly_one(&root, Path::new(path)).map_err(|failure| error(index, path, failure))?;
    }
    Ok(())
}

fn readonly_one(root: &OwnedFd, path: &Path) -> Result<(), Failure> {
    let target = match open_in_root(root, path) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(Failure::sys("open", e)),
    };
    require_procfs()?;
    let fd_name = fd_path(&target);
    mount::<_, _, str, str>(
        Some(&fd_name),
        &fd_name,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(step("bind onto itself"))?;
    let mounted = open_in_root(root, path).map_err(step("reopen after the bind"))?;
    remount_bind(mounted, MsFlags::MS_RDONLY, Keep::Existing)
}

/// root.readonly: remount the container's "/" read-only, keeping its other flags.
pub fn readonly_root(spec: &Spec) -> Result<(), RootfsError> {
    let Some(root) = spec.root().as_ref() else {
        return Ok(());
    };
    if root.readonly() != Some(true) {
        return Ok(());
    }
    remount_root(MsFlags::MS_RDONLY, Keep::Existing).map_err(|failure| RootfsError::Root {
        path: root.path().display().to_string(),
        failure,
    })
}
