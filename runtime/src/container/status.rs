//! The live status of a container, derived from the kernel rather than trusted from state.json:
//! a dead or replaced init means `stopped`, a waiting init (exec.fifo present) means `created`,
//! a frozen cgroup means `paused`.

use std::fs;

use runvm_oci::{ContainerState, Status};

use super::ContainerDir;

/// Start time (clock ticks after boot, field 22 of /proc/PID/stat) and whether the process is a
/// zombie; `None` when there is no such process.
pub fn proc_start_time(pid: i32) -> Option<(u64, bool)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    // `rest` starts at field 3 (state); the start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

/// Whether the container's init is the same live process that `create` started.
pub fn init_alive(state: &ContainerState) -> bool {
    state.pid > 0
        && matches!(proc_start_time(state.pid), Some((start, false)) if start == state.pid_start_time)
}

pub fn live_status(
    state: &ContainerState,
    dir: &ContainerDir,
    frozen: impl FnOnce() -> bool,
) -> Status {
    if !init_alive(state) {
        return Status::Stopped;
    }
    // Only seen when a create was interrupted (it holds the lock until it finishes).
    if state.status == Status::Creating {
        return Status::Creating;
    }
    if dir.fifo_path().exists() {
        return Status::Created;
    }
    if frozen() {
        return Status::Paused;
    }
    Status::Running
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_start_time() {
        let (start, zombie) = proc_start_time(std::process::id() as i32).unwrap();
        assert!(start > 0);
        assert!(!zombie);
    }

    #[test]
    fn missing_process_has_no_start_time() {
        assert!(proc_start_time(i32::MAX).is_none());
    }
}
