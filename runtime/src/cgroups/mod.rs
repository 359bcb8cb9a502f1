//! cgroup managers for v1, v2 and the hybrid layout.
//!
//! [`detect_layout`] tells the layouts apart; [`CgroupManager`] places one container's cgroup in
//! every hierarchy of that layout, writes `linux.resources` to whichever hierarchy owns each
//! controller, and removes only the directories it created.

mod cgroup_path;
mod error;
mod fsio;
mod hierarchy;
mod layout;
mod manager;
mod resources;
mod stats;
mod tree;
mod v1;
mod v2;

#[cfg(test)]
mod tests_fake;
#[cfg(test)]
mod tests_host;

pub use error::CgroupError;
pub use layout::{detect_layout, detect_layout_at, Layout, CGROUP_ROOT};
pub use manager::{CgroupManager, CgroupMountSource, SavedCgroup};
pub use stats::{
    BlkioEntry, BlkioStats, CpuStats, CpuUsage, HugetlbStats, MemoryEntry, MemoryStats, PidsStats,
    Stats, Throttling,
};
