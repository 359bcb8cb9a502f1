//! The last steps before execve, shared by init and `exec`: user, groups, capabilities,
//! no_new_privs and seccomp, then nothing of the runtime left open.

use oci_spec::runtime::{LinuxSeccomp, Process, User};

use crate::identity::{switch_user, CapsPlan};
use crate::seccomp::{self, CompiledSeccomp};

/// Prepared before fork (so config errors surface in the cli), applied in the child.
#[derive(Debug)]
pub struct Credentials {
    user: Option<User>,
    caps: CapsPlan,
    seccomp: Option<CompiledSeccomp>,
    no_new_privs: bool,
}

impl Credentials {
    pub fn prepare(process: &Process, profile: Option<&LinuxSeccomp>) -> Result<Self, String> {
        Ok(Credentials {
            user: Some(process.user().clone()),
            caps: CapsPlan::from_spec(process.capabilities().as_ref())?,
            seccomp: profile
                .map(seccomp::compile)
                .transpose()
                .map_err(|e| e.to_string())?,
            no_new_privs: process.no_new_privileges().unwrap_or(false),
        })
    }

    /// Applies everything in the order the kernel allows: seccomp early only when it needs
    /// CAP_SYS_ADMIN (no no_new_privs), bounding set before setuid (needs CAP_SETPCAP), the other
    /// sets after it, then no_new_privs and seccomp last so the filter judges only the program.
    pub fn apply(&self, in_new_userns: bool) -> Result<(), String> {
        if !self.no_new_privs {
            if let Some(filter) = &self.seccomp {
                filter.install().map_err(|e| e.to_string())?;
            }
        }
        self.caps.drop_bounding()?;
        if let Some(user) = &self.user {
            switch_user(user, !in_new_userns || setgroups_allowed())?;
        }
        self.caps.apply()?;
        if self.no_new_privs {
            // SAFETY: PR_SET_NO_NEW_PRIVS only sets a flag of this process.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return Err(format!(
                    "process.noNewPrivileges: {}",
                    std::io::Error::last_os_error()
                ));
            }
            if let Some(filter) = &self.seccomp {
                filter.install().map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() == "allow")
}

/// Marks every descriptor above stdio and the preserved ones close-on-exec, so nothing of the
/// runtime reaches the container (CVE-2024-21626 was such a leak).
pub fn close_inherited_fds(preserve: u32) {
    let first = 3 + preserve;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptors of this process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        // Kernels before 5.11 lack CLOSE_RANGE_CLOEXEC: mark them one by one.
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            for fd in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
                if fd >= first as i32 {
                    // SAFETY: only sets FD_CLOEXEC on a descriptor number of this process.
                    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
                }
            }
        }
    }
}
