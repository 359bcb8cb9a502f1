//! Raw facts about the host's virtualization, read from /dev/kvm, /sys/module and
//! /proc/cpuinfo.

use std::path::Path;

use kvm_ioctls::Kvm;
use serde::Serialize;

/// KVM modules whose presence tells how guests run.
const KVM_MODULES: [&str; 4] = ["kvm", "kvm_intel", "kvm_amd", "kvm_pvm"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    pub dev_kvm_exists: bool,
    /// Why /dev/kvm could not be opened or used, if it could not.
    pub open_error: Option<String>,
    pub api_version: Option<i32>,
    /// Loaded KVM modules, from /sys/module.
    pub kvm_modules: Vec<String>,
    /// vmx and/or svm, if the CPU advertises them.
    pub cpu_virt_flags: Vec<String>,
    /// The CPU says it runs under a hypervisor (this host is itself a VM).
    pub cpu_hypervisor_flag: bool,
}

impl HostFacts {
    pub fn gather() -> HostFacts {
        let dev_kvm_exists = Path::new("/dev/kvm").exists();
        let (api_version, open_error) = if dev_kvm_exists {
            match Kvm::new() {
                Ok(kvm) => {
                    let v = kvm.get_api_version();
                    // KVM's API version has been 12 since 2007; anything else is not KVM.
                    let err = (v != 12).then(|| format!("KVM API version {v}, runvm needs 12"));
                    (Some(v), err)
                }
                Err(e) => (None, Some(format!("open /dev/kvm: {e}"))),
            }
        } else {
            (None, None)
        };
        let kvm_modules = KVM_MODULES
            .iter()
            .filter(|m| Path::new("/sys/module").join(m).exists())
            .map(|m| m.to_string())
            .collect();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let flags = cpu_flags(&cpuinfo);
        HostFacts {
            dev_kvm_exists,
            open_error,
            api_version,
            kvm_modules,
            cpu_virt_flags: ["vmx", "svm"]
                .iter()
                .filter(|f| flags.contains(f))
                .map(|f| f.to_string())
                .collect(),
            cpu_hypervisor_flag: flags.contains(&"hypervisor"),
        }
    }
}

/// The flags of the first CPU in /proc/cpuinfo text.
pub fn cpu_flags(cpuinfo: &str) -> Vec<&str> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, flags)| flags.split_whitespace().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_flags_reads_the_first_flags_line() {
        let text = "processor\t: 0\nflags\t\t: fpu vmx lm hypervisor\n\nflags\t: other\n";
        assert_eq!(cpu_flags(text), vec!["fpu", "vmx", "lm", "hypervisor"]);
        assert!(cpu_flags("processor: 0\n").is_empty());
    }
}
