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

/// A state filesystem with no room left: create fails naming the state file, and nothing of the
/// container stays behind (no cgroup, process or mount).
#[test]
fn full_state_filesystem_gives_a_clear_error_and_a_clean_host() {
    if !require_root() || !is_runvm() {
        return;
    }
    let root = tempfile::tempdir().expect("mount point");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(root.path())
        .status()
        .expect("mount tmpfs");
    assert!(mounted.success(), "mount a tiny tmpfs");
    // Fill it, leaving no block for state.json.
    let _ = std::fs::write(root.path().join("filler"), vec![0u8; 1 << 20]);
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["true"]);
    let out = std::process::Command::new(runtime_bin())
        .arg("--root")
        .arg(root.path())
        .args(["create", "--bundle", bundle.path_str(), bundle.id()])
        .output()
        .expect("run create");
    let unmount = || {
        let _ = std::process::Command::new("umount")
            .arg(root.path())
            .status();
    };
    if out.status.success() {
        unmount();
        panic!("create succeeded on a full state filesystem");
    }
    let err = stderr_of(&out);
    let cgroup_left: Vec<_> = cgroup_dirs(bundle.cgroups_path())
        .into_iter()
        .filter(|dir| dir.exists())
        .collect();
    let state_left = root.path().join(bundle.id()).exists();
    unmount();
    assert!(err.contains("No space left"), "{err}");
    assert!(
        cgroup_left.is_empty(),
        "cgroups left: {cgroup_left:?}; runvm said: {err}"
    );
    assert!(!state_left, "state dir left behind");
}

/// A resource value the kernel rejects (a CPU that does not exist): create fails naming the
/// field, and the cgroup it had made is gone.
#[test]
fn rejected_cgroup_write_names_the_field_and_cleans_up() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["linux"]["resources"] = json!({"cpu": {"cpus": "4095"}});
    bundle.write_config();
    let rt = Runtime::new();
    let out = rt.create(&bundle, &[]);
    assert_failure(&out, "create with cpuset.cpus 4095");
    if is_runvm() {
        assert!(
            stderr_of(&out).contains("linux.resources.cpu.cpus"),
            "{}",
            stderr_of(&out)
        );
    }
    rt.assert_no_leftovers(&bundle);
}

/// `start` and `delete` killed at their named points: a second `delete --force` restores the
/// host whatever the first one got to.
#[test]
fn start_and_delete_killed_midway_are_cleaned_by_delete_force() {
    if !require_root() || !is_runvm() {
        return;
    }
    for (point, command) in [
        ("start:after-release", "start"),
        ("delete:after-kill", "delete"),
        ("delete:after-cgroup", "delete"),
    ] {
        let mut bundle = BusyboxBundle::new();
        bundle.set_args(&["sleep", "1000"]);
        let rt = Runtime::new();
        rt.create_ok(&bundle);
        if command == "delete" {
            assert_success(&rt.start(bundle.id()), "start");
        }
        let mut cmd = rt.command();
        cmd.env("RUNVM_FAULT_POINT", point);
        if command == "start" {
            cmd.args(["start", bundle.id()]);
        } else {
            cmd.args(["delete", "--force", bundle.id()]);
        }
        let out = rt.run_command(cmd, &[command], Duration::from_secs(30));
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "{point}: not killed there: {}",
            stderr_of(&out)
        );
        assert_success(
            &rt.delete_force(bundle.id()),
            &format!("delete --force after {point}"),
        );
        rt.assert_no_leftovers(&bundle);
    }
}
