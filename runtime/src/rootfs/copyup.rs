//! The "tmpcopyup" mount option: a new tmpfs starts with a copy of the directory it hides.

use super::error::{step, Failure};
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fchmodat, fstatat, mkdirat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, Gid, Uid};
use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};

/// Opens a directory for reading its entries, from an O_PATH fd of it.
pub fn open_dir(fd: impl AsFd) -> Result<OwnedFd, Errno> {
    openat(
        fd,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Copies everything in `from` into `to` (both open directories), keeping types, modes, owners
/// and symlink targets. Nothing is followed: symlinks are copied as symlinks.
pub fn copy_tree(from: &OwnedFd, to: &OwnedFd) -> Result<(), Failure> {
    let listing = open_dir(from).map_err(step("open the hidden directory"))?;
    let mut dir = Dir::from_fd(listing).map_err(step("read the hidden directory"))?;
    let names: Vec<_> = dir
        .iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        copy_entry(from, to, &name)
            .map_err(|f| Failure::Invalid(format!("copy {}: {f}", name.to_string_lossy())))?;
    }
    Ok(())
}

fn copy_entry(from: &OwnedFd, to: &OwnedFd, name: &CStr) -> Result<(), Failure> {
    let st = fstatat(from, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(step("stat"))?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
    let no_follow = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    if kind == SFlag::S_IFDIR {
        mkdirat(to, name, Mode::from_bits_truncate(0o700)).map_err(step("mkdir"))?;
        let src = openat(
            from,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | no_follow,
            Mode::empty(),
        )
        .map_err(step("open source directory"))?;
        let dst = openat(
            to,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | no_follow,
            Mode::empty(),
        )
        .map_err(step("open copied directory"))?;
        copy_tree(&src, &dst)?;
    } else if kind == SFlag::S_IFREG {
        let src = openat(from, name, OFlag::O_RDONLY | no_follow, Mode::empty())
            .map_err(step("open source file"))?;
        let dst = openat(
            to,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | no_follow,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(step("create file"))?;
        let (mut src, mut dst) = (std::fs::File::from(src), std::fs::File::from(dst));
        std::io::copy(&mut src, &mut dst).map_err(|e| {
            Failure::sys(
                "copy contents",
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })?;
    } else if kind == SFlag::S_IFLNK {
        let target = readlinkat(from, name).map_err(step("readlink"))?;
        symlinkat(target.as_os_str(), to, name).map_err(step("symlink"))?;
    } else {
        mknodat(to, name, kind, Mode::from_bits_truncate(0o600), st.st_rdev)
            .map_err(step("mknod"))?;
    }
    fchownat(
        to,
        name,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(step("chown"))?;
    if kind != SFlag::S_IFLNK {
        // Set after chown, which clears set-id bits; exact because the umask trimmed the
        // creation mode. Following is fine: we just created it and it is not a symlink.
        fchmodat(to, name, mode, FchmodatFlags::FollowSymlink).map_err(step("chmod"))?;
    }
    Ok(())
}
