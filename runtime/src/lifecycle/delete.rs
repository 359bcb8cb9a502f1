//! `delete`: stop what is left, remove the cgroup, run poststop hooks, forget the container.
//! A failing poststop hook is a warning: it must never keep the host from being cleaned.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use runvm_oci::{ContainerState, Status};

use super::kill::signal_pid;
use super::Error;
use crate::container::{live_status, ContainerDir};
use crate::hooks::pidfd_open;

/// How long `delete --force` waits for killed processes before giving up on the cgroup.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub fn delete(dir: ContainerDir, state: &ContainerState, force: bool) -> Result<(), Error> {
    let cgroup = super::cgroup_of(state)?;
    let status = live_status(state, &dir, || cgroup.is_frozen().unwrap_or(false));
    match status {
        Status::Stopped => {}
        // Unlike runc, a created container is not stopped either: the spec wants `delete`
        // to fail and leave it alone (runtime.md, "delete"); `--force` still removes it.
        _ if force => {}
        Status::Created | Status::Creating | Status::Running | Status::Paused => {
            return Err(Error::WrongStatus {
                id: state.id.clone(),
                status,
                action: "delete",
                needed: "stopped (or use --force)",
            })
        }
    }
    if status != Status::Stopped {
        if status == Status::Paused {
            let _ = cgroup.thaw();
        }
        let _ = signal_pid(state.pid, state.pid_start_time, libc::SIGKILL);
        for pid in cgroup.pids().unwrap_or_default() {
            let _ = signal_pid(pid, 0, libc::SIGKILL);
        }
        wait_gone(state.pid);
    }
    crate::fault::point("delete:after-kill");
    remove_cgroup(&cgroup)?;
    crate::fault::point("delete:after-cgroup");
    if state.rootfs_mounted_on_host {
        crate::rootfs::unmount_shared(&state.rootfs).map_err(|e| Error::Setup(e.to_string()))?;
    }
    let json = crate::hooks::state_json_of(state, Status::Stopped);
    for e in crate::hooks::run_all_hooks("poststop", &state.hooks.poststop, &json) {
        crate::logging::warn(&e.to_string());
    }
    dir.remove()?;
    Ok(())
}

/// Removes the cgroup, killing stragglers (e.g. processes of a container without a pid
/// namespace) until it is empty.
fn remove_cgroup(cgroup: &crate::cgroups::CgroupManager) -> Result<(), Error> {
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        match cgroup.remove() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => {
                for pid in cgroup.pids().unwrap_or_default() {
                    let _ = signal_pid(pid, 0, libc::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Waits (bounded) until `pid` has exited; we are usually not its parent, so a pidfd is the
/// way to wait.
fn wait_gone(pid: i32) {
    let Some(pidfd) = pidfd_open(pid) else { return };
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let ms = KILL_WAIT.as_millis() as i32;
    let _ = poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    );
}
