//! Operations on a live container's cgroup: pause, resume, update, and the reads behind `ps`
//! and `events`.

use oci_spec::runtime::LinuxResources;
use runvm_oci::{ContainerState, Status};

use super::Error;
use crate::cgroups::Stats;
use crate::container::{live_status, ContainerDir};

fn require(
    dir: &ContainerDir,
    state: &ContainerState,
    action: &'static str,
    needed: &[Status],
) -> Result<(), Error> {
    let cgroup = super::cgroup_of(state)?;
    let status = live_status(state, dir, || cgroup.is_frozen().unwrap_or(false));
    if needed.contains(&status) {
        return Ok(());
    }
    Err(Error::WrongStatus {
        id: state.id.clone(),
        status,
        action,
        needed: match needed {
            [Status::Running] => "running",
            [Status::Paused] => "paused",
            _ => "created, running or paused",
        },
    })
}

/// Freezes every process of the container (cgroup freezer, v1 or v2).
pub fn pause(dir: &ContainerDir, state: &ContainerState) -> Result<(), Error> {
    require(dir, state, "pause", &[Status::Running])?;
    Ok(super::cgroup_of(state)?.freeze()?)
}

pub fn resume(dir: &ContainerDir, state: &ContainerState) -> Result<(), Error> {
    require(dir, state, "resume", &[Status::Paused])?;
    Ok(super::cgroup_of(state)?.thaw()?)
}

/// Applies new resource limits to a live container. Device rules, when given, get the
/// runtime's default-device rules appended as at create.
pub fn update(
    dir: &ContainerDir,
    state: &ContainerState,
    resources: &LinuxResources,
) -> Result<(), Error> {
    require(
        dir,
        state,
        "update",
        &[Status::Created, Status::Running, Status::Paused],
    )?;
    let cgroup = super::cgroup_of(state)?;
    if resources.devices().is_some() {
        let spec = runvm_oci::load_spec(&state.bundle.join(runvm_oci::CONFIG_FILE))?;
        cgroup.apply(&super::devices::with_default_devices(
            &spec,
            Some(resources),
        ))?;
    } else {
        cgroup.apply(resources)?;
    }
    Ok(())
}

/// Pids of every process in the container's cgroup.
pub fn pids(state: &ContainerState) -> Result<Vec<i32>, Error> {
    Ok(super::cgroup_of(state)?.pids()?)
}

pub fn stats(state: &ContainerState) -> Result<Stats, Error> {
    Ok(super::cgroup_of(state)?.stats()?)
}
