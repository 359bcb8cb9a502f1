//! The host programs a VM class needs, and why a class cannot run here (the words `runvm check`
//! and `create` both use).

use std::path::{Path, PathBuf};

use runvm_oci::IsolationClass;

use crate::isolation::VmSettings;

/// The first `program` on PATH.
pub fn in_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

pub fn qemu(settings: &VmSettings) -> Option<PathBuf> {
    settings
        .qemu
        .clone()
        .filter(|p| p.is_file())
        .or_else(|| in_path("qemu-system-x86_64"))
}

/// virtiofsd is not packaged by Debian 12; `cargo install virtiofsd` puts it in ~/.cargo/bin.
pub fn virtiofsd(settings: &VmSettings) -> Option<PathBuf> {
    if let Some(p) = settings.virtiofsd.clone().filter(|p| p.is_file()) {
        return Some(p);
    }
    in_path("virtiofsd").or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        [
            Some(PathBuf::from("/usr/libexec/virtiofsd")),
            Some(PathBuf::from("/usr/lib/qemu/virtiofsd")),
            home.map(|h| h.join(".cargo/bin/virtiofsd")),
            Some(PathBuf::from("/root/.cargo/bin/virtiofsd")),
        ]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
    })
}

/// Why this host cannot run `class`, or `None` when it can.
pub fn unavailable_reason(class: IsolationClass, settings: &VmSettings) -> Option<String> {
    match class {
        IsolationClass::Container => None,
        IsolationClass::Emulated => {
            let mut missing = Vec::new();
            if qemu(settings).is_none() {
                missing.push("QEMU (qemu-system-x86_64; Debian package qemu-system-x86)");
            }
            if virtiofsd(settings).is_none() {
                missing.push("virtiofsd (`cargo install virtiofsd`, or [vm] virtiofsd in /etc/runvm/config.toml)");
            }
            (!missing.is_empty()).then(|| format!("{} not found", missing.join(" and ")))
        }
        IsolationClass::Vm => Some(
            "container sandboxes on runvm's own KVM monitor are not built yet (use `emulated`)"
                .into(),
        ),
    }
}
