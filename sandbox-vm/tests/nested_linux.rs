//! Boots a real Linux guest with runvm's monitor on a nested test host: tests/nested/run.sh
//! starts an L1 Linux under QEMU TCG (which emulates AMD SVM), loads kvm-amd there, and
//! runs the boot_linux example on that /dev/kvm against an L2 kernel + busybox initramfs.
//! This host's own /dev/kvm cannot boot Linux (it emulates every instruction), so this is
//! how the Linux boot path is tested here and in CI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/nested/run.sh")
}

#[test]
fn l2_linux_boots_to_init_and_powers_off_through_the_monitor() {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("SKIP: the nested harness boots x86_64 guests only");
        return;
    }
    if !in_path("qemu-system-x86_64") {
        eprintln!(
            "SKIP: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86); \
             it provides the nested KVM host this test boots Linux on"
        );
        return;
    }
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(harness())
        .output()
        .expect("bash runs the nested harness");
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    eprintln!(
        "nested harness took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        output.status.success(),
        "the nested harness failed ({}); its log is above",
        output.status
    );
    // The harness's own checks passed; make sure the evidence is in its summary too.
    assert!(
        stderr.contains("runvm-L2-init-ok"),
        "no L2 marker in the summary"
    );
    assert!(
        stderr.contains("runvm-L1-monitor-status=0"),
        "the monitor did not report status 0"
    );
}
