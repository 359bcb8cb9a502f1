//! `state` and `list`: recorded state with the live status.

use runvm_oci::{ContainerState, Status};

use super::Error;
use crate::container::{live_status, ContainerDir, Store};

/// The state of one container and its live status.
pub fn container_state(dir: &ContainerDir) -> Result<(ContainerState, Status), Error> {
    let state = dir.load()?;
    let cgroup = super::cgroup_of(&state)?;
    let status = live_status(&state, dir, || cgroup.is_frozen().unwrap_or(false));
    Ok((state, status))
}

pub struct Listed {
    pub state: ContainerState,
    pub status: Status,
}

/// Every container under the root; ones deleted meanwhile are skipped.
pub fn list(store: &Store) -> Result<Vec<Listed>, Error> {
    let mut out = Vec::new();
    for id in store.ids()? {
        let Ok(dir) = store.open(&id) else { continue };
        if let Ok((state, status)) = container_state(&dir) {
            out.push(Listed { state, status });
        }
    }
    Ok(out)
}
