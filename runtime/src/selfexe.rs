//! Run from a sealed in-memory copy of the runvm binary (CVE-2019-5736).
//!
//! A container process can reach the binary of a runtime process that enters its namespaces
//! (through /proc/PID/exe, or by making its entrypoint `#!/proc/self/exe`) and, as root inside,
//! overwrite the host's runvm. When runvm runs from a sealed memfd instead, /proc/self/exe is
//! that memfd: sealed against writes, and gone when the process ends.
//! Copying costs one read of the binary and one extra execve per create/run/exec; the other
//! commands never enter a container and skip it.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
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

/// Re-executes the current command from a sealed memfd copy unless already running from one.
pub fn ensure_sealed() -> io::Result<()> {
    let mut exe = File::open("/proc/self/exe")?;
    if is_sealed(&exe) {
        return Ok(());
    }
    let name = c"runvm";
    let memfd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let mut copy = File::from(memfd);
    io::copy(&mut exe, &mut copy)?;
    fcntl(copy.as_fd(), FcntlArg::F_ADD_SEALS(REQUIRED_SEALS))?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_vec()))
        .collect::<Result<_, _>>()
        .map_err(io::Error::other)?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv)
        })
        .collect::<Result<_, _>>()
        .map_err(io::Error::other)?;
    let empty: &CStr = c"";
    // execveat(AT_EMPTY_PATH) runs the memfd itself; with MFD_CLOEXEC it is closed once the new
    // image is loaded, leaving /proc/self/exe as the only reference.
    let err = nix::unistd::execveat(
        copy.as_fd(),
        empty,
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    );
    let _ = copy.as_raw_fd();
    Err(io::Error::other(format!(
        "re-exec from sealed copy: {err:?}"
    )))
}
