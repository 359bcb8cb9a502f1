//! Named points where tests can make runvm die (SIGKILL, no cleanup) to prove that
//! `delete --force` restores the host from wherever a command was interrupted.
//!
//! Armed only by the environment variable RUNVM_FAULT_POINT, which names one point; the cost
//! when unset is one environment lookup per point. Killing itself is all it can do, so an
//! unprivileged user setting it gains nothing.

/// Points of `create`, in the order they are reached.
pub const CREATE_POINTS: [&str; 4] = [
    "create:after-state-dir",
    "create:after-cgroup",
    "create:after-clone",
    "create:after-ready",
];

/// Points of `start` and `delete`.
pub const START_POINTS: [&str; 1] = ["start:after-release"];
pub const DELETE_POINTS: [&str; 2] = ["delete:after-kill", "delete:after-cgroup"];

pub fn point(name: &str) {
    if std::env::var_os("RUNVM_FAULT_POINT").is_some_and(|p| p == name) {
        // SAFETY: raising SIGKILL on ourselves; nothing runs after it.
        unsafe { libc::raise(libc::SIGKILL) };
    }
}
