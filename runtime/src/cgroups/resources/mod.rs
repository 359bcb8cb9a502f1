//! Writing `linux.resources` into cgroup files: one module per controller, each knowing the v1
//! and the v2 file names. This module only routes each resource to the hierarchy owning its
//! controller.

mod blkio;
mod cpu;
mod devices;
mod devices_bpf;
mod hugetlb;
mod memory;
mod network;
mod pids;
mod rdma;
mod unified;

use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;

use super::error::CgroupError;

/// Which cgroup version a target directory belongs to (decides file names and value formats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V2,
}

/// The container's cgroup directory for one controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub dir: PathBuf,
    pub version: Version,
}

/// What the resource writers need from a manager.
pub(crate) trait Controllers {
    /// The container's cgroup in the hierarchy owning `controller` (enabling the controller on
    /// cgroup2 first), or `None` when no hierarchy on this host has it.
    fn target(&self, controller: &str) -> Result<Option<Target>, CgroupError>;
    /// The container's cgroup in the cgroup2 hierarchy, if the layout has one.
    fn unified_dir(&self) -> Option<PathBuf>;
    /// Enables `controller` for the container's cgroup in the cgroup2 hierarchy.
    fn enable_unified(&self, controller: &str) -> Result<(), CgroupError>;
}

/// Like [`Controllers::target`], but a missing controller is an error naming `field`.
fn require(c: &dyn Controllers, controller: &str, field: &str) -> Result<Target, CgroupError> {
    c.target(controller)?.ok_or_else(|| {
        CgroupError::unsupported(
            field,
            format!("no cgroup hierarchy on this host has the {controller} controller"),
        )
    })
}

/// Applies every field of `r`. Stops at the first failure.
pub(crate) fn apply(c: &dyn Controllers, r: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(memory) = r.memory() {
        memory::apply(&require(c, "memory", "linux.resources.memory")?, memory)?;
    }
    if let Some(cpu) = r.cpu() {
        cpu::apply(c, cpu)?;
    }
    if let Some(pids) = r.pids() {
        pids::apply(&require(c, "pids", "linux.resources.pids")?, pids)?;
    }
    if let Some(block_io) = r.block_io() {
        let field = "linux.resources.blockIO";
        // v1 calls the controller blkio, v2 calls it io.
        let target = match c.target("blkio")? {
            Some(t) => t,
            None => require(c, "io", field)?,
        };
        blkio::apply(&target, block_io)?;
    }
    if let Some(limits) = r.hugepage_limits() {
        if !limits.is_empty() {
            hugetlb::apply(
                &require(c, "hugetlb", "linux.resources.hugepageLimits")?,
                limits,
            )?;
        }
    }
    if let Some(network) = r.network() {
        network::apply(c, network)?;
    }
    if let Some(rdma) = r.rdma() {
        if !rdma.is_empty() {
            rdma::apply(&require(c, "rdma", "linux.resources.rdma")?, rdma)?;
        }
    }
    if let Some(rules) = r.devices() {
        devices::apply(c, rules)?;
    }
    if let Some(map) = r.unified() {
        unified::apply(c, map)?;
    }
    Ok(())
}
