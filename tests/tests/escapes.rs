//! Escape regressions: what other runtimes shipped CVEs for must stay closed in runvm.

use std::fs::OpenOptions;

use runvm_tests::*;

/// CVE-2019-5736: a container reaching the runtime's own binary through /proc/PID/exe could
/// overwrite it on the host. runvm runs create/run from a sealed memfd copy, so what a
/// container can reach is that copy, and the seals refuse writes even to root.
#[test]
fn init_runs_from_a_sealed_copy_of_the_runtime() {
    if !require_root() || !is_runvm() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["true"]);
    let rt = Runtime::new();
    rt.create_ok(&bundle);
    let pid = rt.state(bundle.id())["pid"].as_i64().expect("pid");
    let exe = format!("/proc/{pid}/exe");
    let target = std::fs::read_link(&exe).expect("read init's exe link");
    assert!(
        target.to_string_lossy().contains("memfd:runvm"),
        "init runs from {target:?}, not from a sealed copy"
    );
    let write = OpenOptions::new().write(true).open(&exe);
    assert!(write.is_err(), "init's binary could be opened for writing");
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
    rt.assert_no_leftovers(&bundle);
}
