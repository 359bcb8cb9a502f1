//! Safe path resolution inside the container root.
//!
//! Every path taken from the config is resolved with openat2(RESOLVE_IN_ROOT), so `..` and
//! symlinks (absolute or relative) can never lead out of the rootfs, and magic links
//! (/proc/PID/fd/...) are refused. Work is then done on the resulting O_PATH fd through its
//! /proc/self/fd/N name, so a symlink swapped in after the check cannot redirect a mount
//! (CVE-2021-30465).

use super::error::{step, Failure};
use nix::errno::Errno;
use nix::fcntl::readlinkat;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};
use nix::sys::statfs::{statfs, PROC_SUPER_MAGIC};
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// What to create at the end of a path that does not exist yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// Lexically cleans a container path into its components relative to the root:
/// "." vanish, ".." drop the previous component and stop at the root.
pub fn components(path: &Path) -> Vec<&OsStr> {
    let mut out: Vec<&OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The cleaned path relative to the root ("." for the root itself).
pub fn relative(path: &Path) -> PathBuf {
    let comps = components(path);
    if comps.is_empty() {
        PathBuf::from(".")
    } else {
        comps.iter().collect()
    }
}

/// The cleaned absolute form of a container path, for comparing destinations ("/dev/" == "/dev").
pub fn clean_absolute(path: &Path) -> PathBuf {
    Path::new("/").join(relative(path))
}

/// Opens a directory on the host (trusted path) as an O_PATH fd.
pub fn open_host_dir(path: &Path) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens a host path (trusted, symlinks followed) as an O_PATH fd.
pub fn open_host_path(path: &Path) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
}

/// Opens `path` (a container path) as an O_PATH fd, resolving it as if `root` were "/".
pub fn open_in_root(root: impl AsFd, path: &Path) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, &relative(path), how)
}

/// Like [`open_in_root`], but creates missing components: directories on the way, and the last
/// one as `kind`. Each one is created with mkdirat/openat on the already resolved parent fd, so
/// creation never follows a symlink out of the root either.
pub fn ensure_in_root(root: impl AsFd, path: &Path, kind: Kind) -> Result<OwnedFd, Failure> {
    ensure_at_depth(root.as_fd(), path, kind, 0)
}

/// How many dangling symlinks one creation may go through (the kernel's own limit is 40).
const MAX_LINK_DEPTH: usize = 40;

fn ensure_at_depth(
    root: BorrowedFd,
    path: &Path,
    kind: Kind,
    depth: usize,
) -> Result<OwnedFd, Failure> {
    let display = clean_absolute(path);
    match open_in_root(root.as_fd(), path) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(Failure::sys(format!("open {}", display.display()), e)),
    }
    let comps = components(path);
    let mut parent =
        open_in_root(root.as_fd(), Path::new(".")).map_err(step("open the root directory"))?;
    let mut prefix = PathBuf::new();
    for (i, name) in comps.iter().enumerate() {
        prefix.push(name);
        let shown = Path::new("/").join(&prefix);
        match open_in_root(root.as_fd(), &prefix) {
            Ok(fd) => {
                parent = fd;
                continue;
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(Failure::sys(format!("open {}", shown.display()), e)),
        }
        let last = i + 1 == comps.len();
        let created = if last && kind == Kind::File {
            openat(
                &parent,
                *name,
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop)
        } else {
            mkdirat(&parent, *name, Mode::from_bits_truncate(0o755))
        };
        // EEXIST: someone created it meanwhile, or it is a dangling symlink (checked below).
        if let Err(e) = created {
            if e != Errno::EEXIST {
                return Err(Failure::sys(format!("create {}", shown.display()), e));
            }
        }
        parent = match open_in_root(root.as_fd(), &prefix) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                // A dangling symlink: create what it points to (still inside the root), as
                // `mkdir -p` through the link would.
                if depth >= MAX_LINK_DEPTH {
                    return Err(Failure::sys(
                        format!("resolve {}", shown.display()),
                        Errno::ELOOP,
                    ));
                }
                let link = readlinkat(&parent, *name)
                    .map_err(step(format!("readlink {}", shown.display())))?;
                let target = match prefix.parent() {
                    Some(dir) => dir.join(&link),
                    None => PathBuf::from(&link),
                };
                let want = if last { kind } else { Kind::Dir };
                ensure_at_depth(root, &target, want, depth + 1)?;
                open_in_root(root.as_fd(), &prefix)
                    .map_err(step(format!("open {}", shown.display())))?
            }
            Err(e) => return Err(Failure::sys(format!("open {}", shown.display()), e)),
        };
    }
    Ok(parent)
}

/// The /proc/self/fd/N name of an fd, usable as a mount source or target.
pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Checks that /proc is a real procfs, so /proc/self/fd/N names cannot be faked by files the
/// rootfs image ships (matters after pivot_root, when "/proc" is the container's).
pub fn require_procfs() -> Result<(), Failure> {
    match statfs("/proc/self/fd") {
        Ok(fs) if fs.filesystem_type() == PROC_SUPER_MAGIC => Ok(()),
        Ok(_) => Err(Failure::Invalid(
            "/proc is not a procfs mount: cannot address files safely through /proc/self/fd".into(),
        )),
        Err(e) => Err(Failure::sys("statfs /proc/self/fd (is /proc mounted?)", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_cleaned_and_clamped_at_root() {
        assert_eq!(relative(Path::new("/a/./b/../c/")), PathBuf::from("a/c"));
        assert_eq!(relative(Path::new("/../../etc")), PathBuf::from("etc"));
        assert_eq!(relative(Path::new("/")), PathBuf::from("."));
        assert_eq!(relative(Path::new("dev/pts")), PathBuf::from("dev/pts"));
        assert_eq!(clean_absolute(Path::new("/dev/")), PathBuf::from("/dev"));
    }
}
