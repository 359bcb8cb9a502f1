//! The isolation classes a sandbox can run in, as named in `--isolation`, the
//! `runvm.io/isolation` annotation, `/etc/runvm/config.toml` and `state.json`.

use serde::{Deserialize, Serialize};

/// The annotation that picks a class per container (podman `--annotation`, CRI pod annotations).
pub const ISOLATION_ANNOTATION: &str = "runvm.io/isolation";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IsolationClass {
    /// OS-level virtualization: namespaces, cgroups, seccomp, capabilities.
    #[default]
    Container,
    /// A microVM on KVM with runvm's own monitor (hardware-assisted, paravirtual devices).
    Vm,
    /// A VM under QEMU's TCG: every guest instruction emulated in software, no KVM needed.
    Emulated,
}

impl IsolationClass {
    pub const ALL: [IsolationClass; 3] = [Self::Container, Self::Vm, Self::Emulated];

    pub fn name(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::Vm => "vm",
            Self::Emulated => "emulated",
        }
    }

    /// Whether the workload runs in a guest kernel of its own.
    pub fn is_vm(self) -> bool {
        self != Self::Container
    }
}

impl std::fmt::Display for IsolationClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for IsolationClass {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|c| c.name()).collect();
                format!(
                    "unknown isolation class {s:?} (one of: {})",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for class in IsolationClass::ALL {
            assert_eq!(class.name().parse::<IsolationClass>(), Ok(class));
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{class}\""));
        }
        let e = "kvm".parse::<IsolationClass>().unwrap_err();
        assert!(e.contains("container, vm, emulated"), "{e}");
    }
}
