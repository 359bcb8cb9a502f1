//! The container lifecycle, one operation per file. The `runvm` CLI and (later) the shim call
//! these; they print nothing themselves.

mod control;
mod create;
mod delete;
mod devices;
mod error;
mod exec;
mod kill;
mod start;
mod state;

pub use control::{pause, pids, resume, stats, update};
pub use create::{create, CreateOptions, Created};
pub use delete::delete;
pub use devices::with_default_devices;
pub use error::Error;
pub use exec::{exec, ExecOptions};
pub use kill::{kill, parse_signal};
pub use start::start;
pub use state::{container_state, list, Listed};

use crate::cgroups::{CgroupManager, SavedCgroup};
use runvm_oci::ContainerState;

/// The cgroup manager of an existing container, rebuilt from its state.
pub(crate) fn cgroup_of(state: &ContainerState) -> Result<CgroupManager, Error> {
    let saved: SavedCgroup = serde_json::from_value(state.cgroup.clone())
        .map_err(|e| Error::Setup(format!("state of {}: cgroup record: {e}", state.id)))?;
    Ok(CgroupManager::restore(saved))
}
