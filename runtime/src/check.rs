//! `runvm check`: what this host can run, in plain words, for each isolation class. The same
//! facts go into `runvm features` (as annotations), so a client sees what `check` says.

use std::path::Path;

use serde::Serialize;

use crate::cgroups::{self, Layout};

/// Where runvm looks for the guest kernel of VM sandboxes (override with RUNVM_GUEST_KERNEL).
pub const DEFAULT_GUEST_KERNEL: &str = "/var/lib/runvm/vmlinux";

#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// OS-level isolation (the default class).
    pub container: ClassReport,
    /// Hardware-assisted VM sandboxes with runvm's own monitor.
    pub vm: ClassReport,
    /// Software full virtualization / emulation (QEMU TCG).
    pub emulated: ClassReport,
    pub cgroup_layout: String,
    pub kvm: runvm_sandbox_vm::host::HostReport,
    pub qemu: Option<String>,
    pub guest_kernel: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ClassReport {
    pub available: bool,
    pub why: String,
}

fn seccomp_available() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Seccomp:")))
}

fn guest_kernel() -> Option<String> {
    let path = std::env::var("RUNVM_GUEST_KERNEL").unwrap_or_else(|_| DEFAULT_GUEST_KERNEL.into());
    Path::new(&path).is_file().then_some(path)
}

/// Gathers the report. `calibrate` runs a tiny guest loop to measure guest speed (~tens of ms).
pub fn check(calibrate: bool) -> CheckReport {
    let layout = cgroups::detect_layout();
    let cgroup_layout = match &layout {
        Ok(Layout::V1) => "cgroup v1".to_string(),
        Ok(Layout::V2) => "cgroup v2 (unified)".to_string(),
        Ok(Layout::Hybrid) => "hybrid: cgroup v1 controllers plus a cgroup2 hierarchy".to_string(),
        Err(e) => format!("unknown: {e}"),
    };
    let seccomp = seccomp_available();
    let container = ClassReport {
        available: layout.is_ok() && seccomp,
        why: match (layout.is_ok(), seccomp) {
            (true, true) => {
                format!("namespaces, {cgroup_layout}, seccomp and capabilities are all usable")
            }
            (false, _) => format!("no usable cgroup hierarchy: {cgroup_layout}"),
            (true, false) => "the kernel has no seccomp".into(),
        },
    };
    let kvm = runvm_sandbox_vm::host::probe(calibrate.then_some(20_000));
    let kernel = guest_kernel();
    let vm = ClassReport {
        available: false,
        why: format!(
            "{} runvm's monitor runs tiny guests today; VM sandboxes for containers are not built yet.",
            kvm.explanation
        ),
    };
    let qemu = crate::vm::in_path("qemu-system-x86_64").map(|p| p.display().to_string());
    let emulated = ClassReport {
        available: false,
        why: match &qemu {
            Some(path) => format!("QEMU is installed ({path}); runvm does not drive it as a sandbox yet."),
            None => "QEMU (qemu-system-x86_64) is not installed; runvm does not drive it as a sandbox yet.".into(),
        },
    };
    CheckReport {
        container,
        vm,
        emulated,
        cgroup_layout,
        kvm,
        qemu,
        guest_kernel: kernel,
    }
}

impl CheckReport {
    /// The report as a person reads it.
    pub fn to_text(&self) -> String {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let mut out = String::new();
        out.push_str(&format!(
            "container (namespaces, cgroups, seccomp): {}\n  {}\n",
            yes_no(self.container.available),
            self.container.why
        ));
        out.push_str(&format!(
            "vm (KVM, hardware-assisted): {}\n  {}\n",
            yes_no(self.vm.available),
            self.vm.why
        ));
        if let Some(c) = &self.kvm.calibration {
            out.push_str(&format!("  guest speed check: {}\n", c.note));
        }
        out.push_str(&format!(
            "  Linux guests possible on this KVM: {}\n",
            yes_no(self.kvm.can_boot_linux)
        ));
        out.push_str(&format!(
            "  guest kernel: {}\n",
            self.guest_kernel
                .clone()
                .unwrap_or_else(|| format!("none ({DEFAULT_GUEST_KERNEL} or $RUNVM_GUEST_KERNEL)"))
        ));
        out.push_str(&format!(
            "vm-full / emulated (QEMU TCG): {}\n  {}\n",
            yes_no(self.emulated.available),
            self.emulated.why
        ));
        out
    }
}
