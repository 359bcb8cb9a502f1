//! TEMPORARY compile stub; replaced by the rootfs branch.
use std::path::{Path, PathBuf};
use oci_spec::runtime::Spec;
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RootfsError(pub String);
#[derive(Debug, Clone)]
pub struct CgroupMountSource { pub name: String, pub host_path: PathBuf, pub fstype: &'static str, pub options: String }
pub struct RootfsPlan<'a> { pub spec: &'a Spec, pub rootfs: &'a Path, pub in_new_userns: bool, pub cgroup_ns: bool, pub cgroup_sources: Vec<CgroupMountSource> }
pub fn prepare(_p: &RootfsPlan) -> Result<(), RootfsError> { Ok(()) }
pub fn pivot(rootfs: &Path, _no_pivot: bool) -> Result<(), RootfsError> { nix::unistd::chroot(rootfs).map_err(|e| RootfsError(e.to_string()))?; nix::unistd::chdir("/").map_err(|e| RootfsError(e.to_string())) }
pub fn finish(_s: &Spec) -> Result<(), RootfsError> { Ok(()) }
