//! Named points where tests can make runvm die (SIGKILL, no cleanup) to prove that
//! `delete --force` restores the host from wherever a command was interrupted.
//!
//! Armed only by the environment variable RUNVM_FAULT_POINT, which names one point; the cost
//! when unset is one environment lookup per point. Killing itself is all it can do, so an
//! unprivileged user setting it gains nothing.

/// The points: create:after-state-dir, create:after-cgroup, create:after-clone,
/// create:after-ready, start:after-release, delete:after-kill, delete:after-cgroup
/// (tests/tests/faults.rs kills runvm at each).
pub fn point(name: &str) {
    if std::env::var_os("RUNVM_FAULT_POINT").is_some_and(|p| p == name) {
        // SAFETY: raising SIGKILL on ourselves; nothing runs after it.
        unsafe { libc::raise(libc::SIGKILL) };
    }
}
