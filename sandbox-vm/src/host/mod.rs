//! What this host can do with KVM, in plain words: for `runvm check` / `runvm features`.
//!
//! Three sources: /dev/kvm itself (present, opens, API version), which KVM vendor module is
//! loaded (kvm_intel / kvm_amd run guests in hardware; kvm_pvm runs them through KVM's
//! instruction emulator) and the CPU's vmx/svm flags; optionally a calibration run of a tiny
//! guest measures how fast guest code really goes.

mod bare_vm;
pub mod calibrate;
pub mod facts;

use serde::Serialize;

pub use calibrate::{calibrate, Calibration};
pub use facts::HostFacts;

/// How KVM runs guests here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvmMode {
    /// No /dev/kvm.
    Absent,
    /// /dev/kvm exists but cannot be used (permissions, wrong API version).
    Unusable,
    /// Hardware virtualization (VT-x / AMD-V): Linux guests run at near native speed.
    Hardware,
    /// KVM with the PVM module and no vmx/svm: every guest instruction is emulated.
    EmulatedPvm,
    /// KVM works but the CPU shows no vmx/svm and no known vendor module is loaded.
    NoHardwareSupport,
}

impl KvmMode {
    /// Whether a Linux guest can be expected to boot.
    pub fn can_boot_linux(self) -> bool {
        self == KvmMode::Hardware
    }
}

/// The probe's answer.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub facts: HostFacts,
    pub mode: KvmMode,
    pub can_boot_linux: bool,
    /// One or two sentences for a person.
    pub explanation: String,
    pub calibration: Option<Calibration>,
}

/// Decides the mode from the gathered facts (pure, so every branch is testable).
pub fn classify(facts: &HostFacts) -> (KvmMode, String) {
    let has = |m: &str| facts.kvm_modules.iter().any(|x| x == m);
    let virt_flag = !facts.cpu_virt_flags.is_empty();
    if !facts.dev_kvm_exists {
        return (
            KvmMode::Absent,
            "No /dev/kvm: this host cannot run VM sandboxes (load kvm_intel or kvm_amd, or \
             enable nested virtualization on the machine hosting this one)."
                .to_string(),
        );
    }
    if let Some(err) = &facts.open_error {
        return (
            KvmMode::Unusable,
            format!("/dev/kvm exists but cannot be used: {err}."),
        );
    }
    if has("kvm_pvm") && !has("kvm_intel") && !has("kvm_amd") {
        return (
            KvmMode::EmulatedPvm,
            "KVM present but emulated (PVM): the CPU has no vmx/svm here and KVM runs guests \
             through its instruction emulator at about a million instructions per second. \
             Tiny guests only; Linux guests are not possible."
                .to_string(),
        );
    }
    if virt_flag && (has("kvm_intel") || has("kvm_amd") || !has("kvm_pvm")) {
        return (
            KvmMode::Hardware,
            format!(
                "KVM runs guests in hardware ({}): Linux guests can boot.",
                facts.cpu_virt_flags.join(", ")
            ),
        );
    }
    (
        KvmMode::NoHardwareSupport,
        "KVM opens but the CPU shows neither vmx nor svm and no hardware KVM module is \
         loaded: guests are probably emulated in software; expect only tiny guests to work."
            .to_string(),
    )
}

/// Probes this host; with `calibration_iterations`, also times a tiny guest loop (skipped
/// when KVM is not usable).
pub fn probe(calibration_iterations: Option<u32>) -> HostReport {
    let facts = HostFacts::gather();
    let (mode, explanation) = classify(&facts);
    let usable = !matches!(mode, KvmMode::Absent | KvmMode::Unusable);
    let calibration = match calibration_iterations {
        Some(n) if usable => Some(calibrate(n)),
        _ => None,
    };
    HostReport {
        facts,
        mode,
        can_boot_linux: mode.can_boot_linux(),
        explanation,
        calibration,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(modules: &[&str], flags: &[&str]) -> HostFacts {
        HostFacts {
            dev_kvm_exists: true,
            open_error: None,
            api_version: Some(12),
            kvm_modules: modules.iter().map(|s| s.to_string()).collect(),
            cpu_virt_flags: flags.iter().map(|s| s.to_string()).collect(),
            cpu_hypervisor_flag: true,
        }
    }

    #[test]
    fn classify_covers_each_kind_of_host() {
        assert_eq!(
            classify(&facts(&["kvm", "kvm_pvm"], &[])).0,
            KvmMode::EmulatedPvm
        );
        assert_eq!(
            classify(&facts(&["kvm", "kvm_intel"], &["vmx"])).0,
            KvmMode::Hardware
        );
        assert_eq!(
            classify(&facts(&["kvm", "kvm_amd"], &["svm"])).0,
            KvmMode::Hardware
        );
        assert_eq!(
            classify(&facts(&["kvm"], &[])).0,
            KvmMode::NoHardwareSupport
        );
        let mut absent = facts(&[], &[]);
        absent.dev_kvm_exists = false;
        assert_eq!(classify(&absent).0, KvmMode::Absent);
        let mut denied = facts(&["kvm", "kvm_intel"], &["vmx"]);
        denied.open_error = Some("permission denied".into());
        assert_eq!(classify(&denied).0, KvmMode::Unusable);
        assert!(classify(&facts(&["kvm", "kvm_pvm"], &[])).1.contains("PVM"));
    }

    /// Runs on whatever host the tests run on: the report must agree with the raw facts.
    #[test]
    fn this_hosts_report_is_consistent_with_its_facts() {
        let report = probe(None);
        let f = &report.facts;
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_has_virt = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|w| w == "vmx" || w == "svm"));
        assert_eq!(!f.cpu_virt_flags.is_empty(), cpu_has_virt);
        assert_eq!(f.dev_kvm_exists, std::path::Path::new("/dev/kvm").exists());
        let pvm_loaded = std::path::Path::new("/sys/module/kvm_pvm").exists();
        assert_eq!(f.kvm_modules.iter().any(|m| m == "kvm_pvm"), pvm_loaded);
        if report.mode == KvmMode::Hardware {
            assert!(cpu_has_virt, "hardware mode needs vmx or svm");
        }
        if f.dev_kvm_exists && f.open_error.is_none() && !cpu_has_virt {
            assert_ne!(report.mode, KvmMode::Hardware);
            if pvm_loaded {
                assert_eq!(report.mode, KvmMode::EmulatedPvm);
            }
        }
        if f.open_error.is_none() && f.dev_kvm_exists {
            assert_eq!(f.api_version, Some(12));
        }
        assert_eq!(report.can_boot_linux, report.mode == KvmMode::Hardware);
        // Serializes for `runvm features`.
        let json = serde_json::to_string(&report).expect("report serializes");
        assert!(json.contains("\"mode\""));
    }
}
