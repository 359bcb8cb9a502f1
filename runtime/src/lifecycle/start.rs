//! `start`: release init from exec.fifo, wait until it has exec'd the user's program, then run
//! the poststart hooks (a failing poststart hook is a warning, as the spec asks).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use runvm_oci::{ContainerState, Status};

use super::Error;
use crate::container::{live_status, ContainerDir};

pub fn start(dir: &ContainerDir, state: &mut ContainerState) -> Result<(), Error> {
    let cgroup = super::cgroup_of(state)?;
    let status = live_status(state, dir, || cgroup.is_frozen().unwrap_or(false));
    if status != Status::Created {
        return Err(Error::WrongStatus {
            id: state.id.clone(),
            status,
            action: "start",
            needed: "created",
        });
    }
    let fifo_path = dir.fifo_path();
    // Non-blocking: if init is gone there is no reader and open fails with ENXIO at once.
    let mut fifo = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo_path)
        .map_err(|e| {
            Error::Setup(format!(
                "container init is not waiting ({}: {e})",
                fifo_path.display()
            ))
        })?;
    fifo.write_all(&[0])
        .map_err(|e| Error::Setup(format!("{}: {e}", fifo_path.display())))?;
    crate::fault::point("start:after-release");
    std::fs::remove_file(&fifo_path)
        .map_err(|e| Error::Setup(format!("{}: {e}", fifo_path.display())))?;
    // Init holds the only reader until execve closes it: POLLERR on our end means the user's
    // program runs (or init died).
    let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::empty())];
    while let Err(nix::errno::Errno::EINTR) = poll(&mut fds, PollTimeout::NONE) {}
    // Init writes init.err when it fails between `start` and execve (credentials, seccomp,
    // startContainer hooks); empty means the program was exec'd.
    let failure = std::fs::read_to_string(dir.path().join("init.err")).unwrap_or_default();
    if !failure.is_empty() {
        return Err(Error::Setup(format!(
            "container init failed after start: {failure}"
        )));
    }
    state.status = Status::Running;
    dir.save(state)?;
    let json = crate::hooks::state_json_of(state, Status::Running);
    for e in crate::hooks::run_all_hooks("poststart", &state.hooks.poststart, &json) {
        crate::logging::warn(&e.to_string());
    }
    Ok(())
}
