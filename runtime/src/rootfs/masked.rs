//! linux.maskedPaths, after pivot_root: files get /dev/null bound over them, directories an
//! empty read-only tmpfs. Paths that do not exist are skipped.

use super::error::{step, Failure, RootfsError};
use super::resolve::{fd_path, open_in_root, require_procfs};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, SFlag};
use oci_spec::runtime::Spec;
use std::os::fd::OwnedFd;
use std::path::Path;

pub fn mask_paths(spec: &Spec) -> Result<(), RootfsError> {
    let paths = spec
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default();
    if paths.is_empty() {
        return Ok(());
    }
    let root =
        super::resolve::open_host_dir(Path::new("/")).map_err(|e| RootfsError::MaskedPath {
            index: 0,
            path: "/".into(),
            failure: Failure::sys("open /", e),
        })?;
    let mut null: Option<OwnedFd> = None;
    for (index, path) in paths.iter().enumerate() {
        mask_one(&root, Path::new(path), &mut null).map_err(|failure| RootfsError::MaskedPath {
            index,
            path: path.clone(),
            failure,
        })?;
    }
    Ok(())
}

fn mask_one(root: &OwnedFd, path: &Path, null: &mut Option<OwnedFd>) -> Result<(), Failure> {
    let target = match open_in_root(root, path) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(Failure::sys("open", e)),
    };
    require_procfs()?;
    let st = fstat(&target).map_err(step("stat"))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        return mount(
            Some("tmpfs"),
            &fd_path(&target),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(step("mount a read-only tmpfs over the directory"));
    }
    if null.is_none() {
        *null = Some(open_dev_null(root)?);
    }
    let Some(null) = null.as_ref() else {
        return Err(Failure::Invalid("/dev/null is unavailable".into()));
    };
    mount::<_, _, str, str>(
        Some(&fd_path(null)),
        &fd_path(&target),
        None,
        MsFlags::MS_BIND,
        None,
    )
    .map_err(step("bind /dev/null over the file"))
}

/// The container's /dev/null, checked to really be the null device (a file the image ships
/// there could otherwise leak its content into every masked file).
fn open_dev_null(root: &OwnedFd) -> Result<OwnedFd, Failure> {
    let fd = open_in_root(root, Path::new("/dev/null")).map_err(step("open /dev/null"))?;
    let st = fstat(&fd).map_err(step("stat /dev/null"))?;
    let is_char = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_char || st.st_rdev != nix::sys::stat::makedev(1, 3) {
        return Err(Failure::Invalid(
            "/dev/null in the container is not the null device (1:3)".into(),
        ));
    }
    Ok(fd)
}
