//! Make the runvm binary that a container can reach unwritable (CVE-2019-5736).
//!
//! A container can reach the binary of a runtime process that enters its namespaces (through
//! /proc/PID/exe, or by making its entrypoint `#!/proc/self/exe`) and, as root inside,
//! overwrite the host's runvm. create/run/exec therefore re-execute through a copy of the
//! binary that cannot be written:
//! - first choice: a detached, read-only bind mount of the binary itself (open_tree +
//!   mount_setattr; attached nowhere, so no namespace sees or changes it). /proc/self/exe then
//!   names a file on a read-only mount: writes fail with EROFS. Nothing is copied.
//! - fallback (kernels before 5.12, or no mount privilege): a sealed memfd copy, which costs a
//!   read of the whole binary and its pages in memory for as long as the process lives.
//!
//! A binary that already sits on a read-only mount, or a sealed memfd, needs neither.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

const REQUIRED_SEALS: SealFlag = SealFlag::F_SEAL_SEAL
    .union(SealFlag::F_SEAL_SHRINK)
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_WRITE);

fn is_sealed(exe: &File) -> bool {
    match fcntl(exe.as_fd(), FcntlArg::F_GET_SEALS) {
        Ok(bits) => SealFlag::from_bits_truncate(bits).contains(REQUIRED_SEALS),
        Err(_) => false,
    }
}

fn on_read_only_mount(exe: &File) -> bool {
    nix::sys::statvfs::fstatvfs(exe)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// Re-executes the current command from an unwritable copy of runvm unless already running
/// from one.
pub fn ensure_sealed() -> io::Result<()> {
    let exe = File::open("/proc/self/exe")?;
    if is_sealed(&exe) || on_read_only_mount(&exe) {
        return Ok(());
    }
    let image = match read_only_bind() {
        Ok(fd) => fd,
        Err(_) => sealed_copy(exe)?,
    };
    Err(exec_image(&image))
}

/// A detached bind mount of the running binary, made read-only, as an O_PATH descriptor.
fn read_only_bind() -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    // SAFETY: open_tree reads a NUL-terminated path and returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c"/proc/self/exe".as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    crate::rootfs::remount::mount_setattr(
        tree.as_raw_fd(),
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV,
        0,
        false,
    )?;
    Ok(tree)
}

fn sealed_copy(mut exe: File) -> io::Result<OwnedFd> {
    let memfd = memfd_create(
        c"runvm",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )?;
    let mut copy = File::from(memfd);
    io::copy(&mut exe, &mut copy)?;
    fcntl(copy.as_fd(), FcntlArg::F_ADD_SEALS(REQUIRED_SEALS))?;
    Ok(OwnedFd::from(copy))
}

/// execveat(AT_EMPTY_PATH) of `image` with this process's arguments and environment; only
/// returns on failure.
fn exec_image(image: &OwnedFd) -> io::Error {
    let args: Result<Vec<CString>, _> = std::env::args_os()
        .map(|a| CString::new(a.into_vec()))
        .collect();
    let env: Result<Vec<CString>, _> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv)
        })
        .collect();
    let (Ok(args), Ok(env)) = (args, env) else {
        return io::Error::other("an argument or variable contains a NUL byte");
    };
    let empty: &CStr = c"";
    match nix::unistd::execveat(
        image.as_fd(),
        empty,
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    ) {
        Err(e) => io::Error::other(format!("re-exec from a read-only copy of runvm: {e}")),
    }
}
