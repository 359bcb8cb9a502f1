//! TEMPORARY compile stub; replaced by the cgroups branch.
use std::path::{Path, PathBuf};
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CgroupError(pub String);
#[derive(Debug, Clone, Copy)]
pub enum Layout { V1, V2, Hybrid }
pub fn detect_layout() -> Result<Layout, CgroupError> { Ok(Layout::Hybrid) }
#[derive(Debug, Clone)]
pub struct CgroupManager { path: PathBuf }
#[derive(Debug, Clone, serde::Serialize, Default)]
pub struct Stats {}
impl CgroupManager {
    pub fn new(_l: Layout, path: Option<&Path>, id: &str) -> Result<Self, CgroupError> { Ok(Self{ path: path.map(|p| p.to_path_buf()).unwrap_or_else(|| PathBuf::from(format!("/runvm/{id}")))}) }
    pub fn create(&self) -> Result<(), CgroupError> { Ok(()) }
    pub fn apply(&self, _r: &oci_spec::runtime::LinuxResources) -> Result<(), CgroupError> { Ok(()) }
    pub fn add_task(&self, _pid: i32) -> Result<(), CgroupError> { Ok(()) }
    pub fn freeze(&self) -> Result<(), CgroupError> { Ok(()) }
    pub fn thaw(&self) -> Result<(), CgroupError> { Ok(()) }
    pub fn is_frozen(&self) -> Result<bool, CgroupError> { Ok(false) }
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> { Ok(vec![]) }
    pub fn stats(&self) -> Result<Stats, CgroupError> { Ok(Stats{}) }
    pub fn remove(&self) -> Result<(), CgroupError> { Ok(()) }
    pub fn mount_sources(&self) -> Vec<crate::rootfs::CgroupMountSource> { vec![] }
    pub fn hierarchy_paths(&self) -> Vec<PathBuf> { vec![self.path.clone()] }
}
