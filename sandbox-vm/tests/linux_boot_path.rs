//! Drives the Linux boot path (PVH entry state, start info, initramfs, command line, ACPI
//! power-off, boot MSRs, LAPIC wiring) with a stand-in kernel of a few instructions, so it
//! runs on any /dev/kvm, including this host's emulating one. The real kernel is booted by
//! tests/nested_linux.rs.

use std::path::PathBuf;
use std::time::Duration;

use runvm_sandbox_vm::guest::{self, pvh_elf};
use runvm_sandbox_vm::{ExitReason, GuestImage, SharedBuffer, Vm, VmConfig, VmError};

mod support;

use support::kvm_usable;

/// A scratch file removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, bytes: &[u8]) -> Scratch {
        let path = std::env::temp_dir().join(format!(
            "runvm-linux-boot-path-{}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, bytes).expect("write scratch file");
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn boot(vcpus: u8, tag: &str) -> Result<(ExitReason, String), VmError> {
    let kernel = Scratch::new(
        &format!("{tag}-vmlinux"),
        &pvh_elf::kernel(&guest::pvh_report_code()),
    );
    let initrd = Scratch::new(&format!("{tag}-initrd"), b"Zinitramfs bytes");
    let image = GuestImage::Linux {
        kernel: kernel.0.clone(),
        initrd: Some(initrd.0.clone()),
        cmdline: "console=ttyS0 reboot=k".to_string(),
    };
    let config = VmConfig {
        vcpus,
        ..VmConfig::default()
    };
    let out = SharedBuffer::new();
    let vm = Vm::build(&config, &image, Box::new(out.clone()))?;
    let outcome = vm.run(Some(Duration::from_secs(20)))?;
    Ok((outcome.reason, out.text()))
}

#[test]
fn the_pvh_entry_sees_start_info_initrd_and_cmdline_and_powers_off() {
    if !kvm_usable() {
        return;
    }
    let (reason, text) = boot(1, "one").expect("the stand-in kernel boots");
    // 'P', start-info magic ok, one module, paging off, initrd's first byte, cmdline's.
    assert_eq!(text, "P110Zc");
    assert_eq!(reason, ExitReason::PowerOff);
    assert_eq!(reason.status(), 0);
}

#[test]
fn extra_vcpus_wait_for_a_startup_ipi_while_the_boot_vcpu_runs() {
    if !kvm_usable() {
        return;
    }
    let (reason, text) = boot(2, "two").expect("two vCPUs build and run");
    assert_eq!(text, "P110Zc");
    assert_eq!(reason, ExitReason::PowerOff);
}

#[test]
fn a_missing_kernel_is_named_in_the_error() {
    let image = GuestImage::Linux {
        kernel: PathBuf::from("/nonexistent/runvm-vmlinux"),
        initrd: None,
        cmdline: String::new(),
    };
    if !kvm_usable() {
        return;
    }
    let err = Vm::build(&VmConfig::default(), &image, Box::new(SharedBuffer::new()))
        .err()
        .expect("no kernel, no VM");
    assert!(
        err.to_string().contains("/nonexistent/runvm-vmlinux"),
        "{err}"
    );
}
