//! clone3(2) with namespace flags and a pidfd, used like fork(2).

use std::os::fd::{FromRawFd, OwnedFd};

use nix::sched::CloneFlags;

/// `struct clone_args` (CLONE_ARGS_SIZE_VER2). libc does not export it for every target, and
/// its layout is a fixed kernel ABI, so it is written out here.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_PIDFD: u64 = 0x1000;

pub enum Forked {
    Child,
    Parent { pid: i32, pidfd: OwnedFd },
}

/// Forks the calling process into new namespaces. The caller must be single-threaded: the child
/// gets a copy of this thread only.
pub fn clone3(flags: CloneFlags) -> std::io::Result<Forked> {
    let mut pidfd: i32 = -1;
    let mut args = CloneArgs {
        flags: flags.bits() as u64 | CLONE_PIDFD,
        pidfd: &mut pidfd as *mut i32 as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: `args` is a valid clone_args of the size passed; with no stack given, the child
    // continues on a copy of this stack exactly like fork(2); `pidfd` outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: pid as i32,
            // SAFETY: with CLONE_PIDFD the kernel stored a new descriptor that only we own.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}
