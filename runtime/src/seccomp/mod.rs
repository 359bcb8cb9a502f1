//! TEMPORARY compile stub; replaced by the seccomp branch.
use oci_spec::runtime::LinuxSeccomp;
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SeccompError(pub String);
#[derive(Debug)]
pub struct CompiledSeccomp;
pub fn compile(_p: &LinuxSeccomp) -> Result<CompiledSeccomp, SeccompError> { Ok(CompiledSeccomp) }
impl CompiledSeccomp { pub fn install(&self) -> Result<(), SeccompError> { Ok(()) } }
pub fn default_profile() -> LinuxSeccomp { LinuxSeccomp::default() }
pub fn features() -> serde_json::Value { serde_json::json!({"enabled": true}) }
