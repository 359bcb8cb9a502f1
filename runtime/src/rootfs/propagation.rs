//! Mount propagation of the container root (linux.rootfsPropagation) and the bind of the rootfs
//! onto itself that pivot_root needs.

use super::error::{step, Failure, RootfsError};
use super::options::propagation_option;
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

/// The parsed linux.rootfsPropagation: None when the config does not set it.
pub fn configured(spec: &Spec) -> Result<Option<(String, MsFlags)>, RootfsError> {
    let Some(value) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
    else {
        return Ok(None);
    };
    if value.is_empty() {
        return Ok(None);
    }
    match propagation_option(&value) {
        Some(flags) => Ok(Some((value, flags))),
        None => Err(RootfsError::Propagation {
            value,
            failure: Failure::Invalid(
                "expected shared, slave, private or unbindable (optionally r-prefixed)".into(),
            ),
        }),
    }
}

/// Before any mount: set the propagation of every mount in our namespace (default rslave, so
/// nothing we mount leaks back to the host), make the rootfs's parent mount private (pivot_root
/// refuses a shared parent, and the self-bind must not propagate), then bind the rootfs onto
/// itself so it is a mount point.
///
/// In the host's mount namespace (`shared_mount_ns`: the config has no mount namespace) the
/// host's propagation is left alone; the self-bind is made private instead, so nothing mounted
/// below it reaches other mounts of the host.
pub fn prepare_root(spec: &Spec, rootfs: &Path, shared_mount_ns: bool) -> Result<(), RootfsError> {
    if shared_mount_ns {
        return bind_private(rootfs);
    }
    let configured = configured(spec)?;
    let (value, kind) = match &configured {
        // An unbindable "/" would make the rootfs self-bind below fail with EINVAL. Unbindable
        // mounts are private too, so rprivate gives the same isolation until finish_root makes
        // the container's "/" unbindable after pivot_root.
        Some((value, flags)) if flags.contains(MsFlags::MS_UNBINDABLE) => {
            (value.clone(), MsFlags::MS_PRIVATE | MsFlags::MS_REC)
        }
        Some((value, flags)) => (value.clone(), *flags | MsFlags::MS_REC),
        None => (
            "rslave (default)".to_string(),
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
        ),
    };
    mount::<str, _, str, str>(None, "/", None, kind, None).map_err(|e| {
        RootfsError::Propagation {
            value,
            failure: Failure::sys("set propagation of /", e),
        }
    })?;

    let root_err = root_error(rootfs);
    let parent = parent_mount_point(rootfs).map_err(&root_err)?;
    if parent.shared {
        mount::<str, _, str, str>(None, &parent.path, None, MsFlags::MS_PRIVATE, None)
            .map_err(step(format!(
                "make parent mount {} private",
                parent.path.display()
            )))
            .map_err(&root_err)?;
    }
    bind_self(rootfs)
}

fn root_error(rootfs: &Path) -> impl Fn(Failure) -> RootfsError + '_ {
    move |failure| RootfsError::Root {
        path: rootfs.display().to_string(),
        failure,
    }
}

/// Binds the rootfs onto itself (recursively), making it a mount point of its own.
fn bind_self(rootfs: &Path) -> Result<(), RootfsError> {
    mount::<_, _, str, str>(
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(step("bind the rootfs onto itself"))
    .map_err(root_error(rootfs))
}

fn bind_private(rootfs: &Path) -> Result<(), RootfsError> {
    bind_self(rootfs)?;
    mount::<str, _, str, str>(
        None,
        rootfs,
        None,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None,
    )
    .map_err(step("make the rootfs bind private"))
    .map_err(root_error(rootfs))
}

/// Detaches the self-bind of `rootfs` (and all below it) until `rootfs` is no mount point.
pub fn unmount_self_bind(rootfs: &Path) -> Result<(), RootfsError> {
    // Bounded: one self-bind per create, but a crash between binds could stack two.
    for _ in 0..8 {
        match nix::mount::umount2(rootfs, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => {
                return Err(RootfsError::Root {
                    path: rootfs.display().to_string(),
                    failure: Failure::sys("unmount the rootfs", e),
                })
            }
        }
    }
    Ok(())
}

/// After pivot_root: give "/" the configured propagation. Private needs nothing more (the
/// parent was made private already); doing this before the pivot would change host mounts.
pub fn finish_root(spec: &Spec) -> Result<(), RootfsError> {
    let Some((value, flags)) = configured(spec)? else {
        return Ok(());
    };
    if flags.contains(MsFlags::MS_PRIVATE) {
        return Ok(());
    }
    mount::<str, _, str, str>(None, "/", None, flags, None).map_err(|e| RootfsError::Propagation {
        value,
        failure: Failure::sys("set propagation of the container's /", e),
    })
}

/// The mount a path lives on, from /proc/self/mountinfo.
struct MountPoint {
    path: PathBuf,
    shared: bool,
}

fn parent_mount_point(path: &Path) -> Result<MountPoint, Failure> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| {
        Failure::sys(
            "read /proc/self/mountinfo",
            nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })?;
    best_mount_point(&info, path).ok_or_else(|| {
        Failure::Invalid(format!(
            "no mount in /proc/self/mountinfo contains {}",
            path.display()
        ))
    })
}

/// The deepest mount point containing `path`; the later line wins on ties (it is mounted on top).
fn best_mount_point(mountinfo: &str, path: &Path) -> Option<MountPoint> {
    let mut best: Option<MountPoint> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(mount_point) = fields.get(4).map(|f| PathBuf::from(unescape(f))) else {
            continue;
        };
        if !path.starts_with(&mount_point) {
            continue;
        }
        let deeper = best
            .as_ref()
            .is_none_or(|b| mount_point.components().count() >= b.path.components().count());
        if deeper {
            // Optional fields sit between field 6 and the "-" separator.
            let shared = fields
                .iter()
                .skip(6)
                .take_while(|f| **f != "-")
                .any(|f| f.starts_with("shared:"));
            best = Some(MountPoint {
                path: mount_point,
                shared,
            });
        }
    }
    best
}

/// Undoes mountinfo's octal escapes (\040 for a space, etc.).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b));
        if bytes[i] == b'\\' && octal {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:40 / /tmp rw,nosuid shared:7 - tmpfs tmpfs rw
31 30 0:41 / /tmp/a\\040b rw master:3 - tmpfs tmpfs rw
";

    #[test]
    fn deepest_mount_point_is_found() {
        let m = best_mount_point(INFO, Path::new("/tmp/x/rootfs")).map(|m| (m.path, m.shared));
        assert_eq!(m, Some((PathBuf::from("/tmp"), true)));
        let m = best_mount_point(INFO, Path::new("/tmp/a b/r")).map(|m| (m.path, m.shared));
        assert_eq!(m, Some((PathBuf::from("/tmp/a b"), false)));
        let m = best_mount_point(INFO, Path::new("/tmpfoo")).map(|m| m.path);
        assert_eq!(m, Some(PathBuf::from("/")));
    }
}
