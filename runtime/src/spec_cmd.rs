//! `runvm spec`: a template config.json, with runvm's default seccomp profile.

use std::path::Path;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{Linux, LinuxBuilder, Spec};
use runvm_runtime::seccomp;

/// The runtime-spec version runvm's templates declare.
const TEMPLATE_OCI_VERSION: &str = "1.2.1";

pub fn write_spec(bundle: &Path, rootless: bool) -> Result<()> {
    let path = bundle.join(runvm_oci::CONFIG_FILE);
    if path.exists() {
        bail!("{}: already exists; remove it first", path.display());
    }
    let mut spec = Spec::default();
    spec.set_version(TEMPLATE_OCI_VERSION.into());
    spec.set_hostname(Some("runvm".into()));
    let base = if rootless {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        Linux::rootless(uid, gid)
    } else {
        Linux::default()
    };
    let linux = LinuxBuilder::default()
        .namespaces(base.namespaces().clone().unwrap_or_default())
        .masked_paths(base.masked_paths().clone().unwrap_or_default())
        .readonly_paths(base.readonly_paths().clone().unwrap_or_default())
        .uid_mappings(base.uid_mappings().clone().unwrap_or_default())
        .gid_mappings(base.gid_mappings().clone().unwrap_or_default())
        .seccomp(seccomp::default_profile())
        .build()?;
    spec.set_linux(Some(linux));
    let text = serde_json::to_string_pretty(&spec)?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}
