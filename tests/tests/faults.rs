//! Fault injection: `create` killed (SIGKILL, no cleanup) at each of its named points, then
//! `delete --force` must leave no cgroup, state dir, mount or process behind.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use runvm_tests::*;
use serde_json::json;

/// The points of runvm's `create` (runtime/src/fault.rs), in order.
const CREATE_POINTS: [&str; 4] = [
    "create:after-state-dir",
    "create:after-cgroup",
    "create:after-clone",
    "create:after-ready",
];

fn kill_create_at(point: &str, shared_mounts: bool) {
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["sleep", "1000"]);
    if shared_mounts {
        // No mount namespace: init's mounts live in the host's namespace until delete.
        bundle.config_mut()["linux"]["namespaces"] = json!([{"type": "pid"}]);
        bundle.config_mut()["hostname"] = json!(null);
        bundle.write_config();
    }
    let rt = Runtime::new();
    rt.track(bundle.id());
    let mut cmd = rt.command();
    cmd.env("RUNVM_FAULT_POINT", point).args([
        "create",
        "--bundle",
        bundle.path_str(),
        bundle.id(),
    ]);
    let out = rt.run_command(cmd, &["create"], Duration::from_secs(30));
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "{point}: create was not killed there: {:?} {}",
        out.status,
        stderr_of(&out)
    );
    let del = rt.delete_force(bundle.id());
    assert_success(&del, &format!("delete --force after a kill at {point}"));
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn create_killed_at_any_point_is_cleaned_by_delete_force() {
    if !require_root() || !is_runvm() {
        return;
    }
    for point in CREATE_POINTS {
        kill_create_at(point, false);
    }
}

#[test]
fn create_without_mount_namespace_killed_at_any_point_is_cleaned() {
    if !require_root() || !is_runvm() {
        return;
    }
    for point in CREATE_POINTS {
        kill_create_at(point, true);
    }
}
