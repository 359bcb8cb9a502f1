//! Installing compiled filters with seccomp(2). Runs in init after fork, so nothing here
//! allocates: the programs were built by `compile` and the error values hold only integers.

use nix::errno::Errno;
use seccompiler::{sock_filter, BpfProgram};

use super::SeccompError;

/// `struct sock_fprog` from <linux/filter.h>. seccompiler keeps its own copy private, and
/// libc's points at `libc::sock_filter`, a different (same-layout) type; this one avoids a cast.
#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const sock_filter,
}

/// Installs `filters` in order with seccomp(SECCOMP_SET_MODE_FILTER, flags). seccompiler's own
/// `apply_filter` takes no flags and also sets no_new_privs, which is the caller's decision.
pub fn install_filters(filters: &[BpfProgram], flags: libc::c_ulong) -> Result<(), SeccompError> {
    let count = filters.len();
    for (index, program) in filters.iter().enumerate() {
        let len = match libc::c_ushort::try_from(program.len()) {
            Ok(len) => len,
            // compile() rejects programs over BPF_MAXINSNS (4096), so this cannot happen.
            Err(_) => {
                return Err(SeccompError::Install {
                    index,
                    count,
                    errno: Errno::E2BIG,
                })
            }
        };
        let fprog = SockFprog {
            len,
            filter: program.as_ptr(),
        };
        // SAFETY: `fprog` points at `len` valid, initialised instructions that outlive the call;
        // the kernel only copies them (copy_from_user) and keeps no reference.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &fprog as *const SockFprog,
            )
        };
        if rc > 0 {
            // With TSYNC the kernel returns the id of a thread it could not synchronise.
            return Err(SeccompError::ThreadSync { tid: rc });
        }
        if rc < 0 {
            return Err(match Errno::last() {
                Errno::EACCES => SeccompError::InstallNotPermitted { index, count },
                errno => SeccompError::Install {
                    index,
                    count,
                    errno,
                },
            });
        }
    }
    Ok(())
}
