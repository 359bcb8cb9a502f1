//! Bad configs and ids: create must fail, say which field is wrong (runvm),
//! and leave nothing behind.

use runvm_tests::*;
use serde_json::json;

/// Runs `create`, expects failure naming `field` (runvm only), then checks leftovers.
fn expect_rejected(bundle: &BusyboxBundle, field: &str) {
    let rt = Runtime::new();
    let out = rt.create(bundle, &[]);
    assert_failure(&out, &format!("create with bad {field}"));
    if is_runvm() {
        let err = stderr_of(&out);
        assert!(err.contains(field), "stderr should name {field:?}: {err}");
    }
    assert_failure(
        &rt.run(&["state", bundle.id()]),
        "state of a refused container",
    );
    rt.assert_no_leftovers(bundle);
    rt.assert_root_empty();
}

#[test]
fn invalid_json() {
    if !require_root() {
        return;
    }
    let bundle = BusyboxBundle::new();
    std::fs::write(bundle.path().join("config.json"), "{ \"ociVersion\": ").expect("write");
    expect_rejected(&bundle, "config.json");
}

#[test]
fn unsupported_oci_version() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["ociVersion"] = json!("2.0.0");
    bundle.write_config();
    expect_rejected(&bundle, "ociVersion");
}

#[test]
fn missing_rootfs_directory() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["root"]["path"] = json!("no-such-rootfs");
    bundle.write_config();
    expect_rejected(&bundle, "root.path");
}

fn expect_bad_id(bad_id: &str) {
    let bundle = BusyboxBundle::new();
    let rt = Runtime::new();
    rt.track(bad_id);
    let out = rt.run(&["create", "--bundle", bundle.path_str(), bad_id]);
    assert_failure(&out, &format!("create with id {bad_id:?}"));
    if is_runvm() {
        assert!(
            stderr_of(&out).contains("container id"),
            "{}",
            stderr_of(&out)
        );
    }
    rt.assert_root_empty();
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn id_with_slash() {
    if !require_root() {
        return;
    }
    expect_bad_id("a/b");
}

#[test]
fn id_dot_dot() {
    if !require_root() {
        return;
    }
    expect_bad_id("..");
}

#[test]
fn id_escaping_root() {
    if !require_root() {
        return;
    }
    expect_bad_id("../escape");
}

#[test]
fn duplicate_id_from_another_bundle() {
    if !require_root() {
        return;
    }
    let mut first = BusyboxBundle::new();
    first.set_args(&["sleep", "1000"]);
    let second = BusyboxBundle::new();
    let rt = Runtime::new();
    rt.create_ok(&first);
    let out = rt.run(&["create", "--bundle", second.path_str(), first.id()]);
    assert_failure(&out, "create with a taken id");
    if is_runvm() {
        assert!(
            stderr_of(&out).contains("container id"),
            "{}",
            stderr_of(&out)
        );
    }
    let state = rt.state(first.id());
    assert_eq!(state["status"], "created");
    assert_eq!(
        std::fs::canonicalize(state["bundle"].as_str().unwrap_or("")).ok(),
        std::fs::canonicalize(first.path()).ok()
    );
    // The refused create must not have mounted anything from the second bundle.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(second.path_str()));
    assert_success(&rt.delete_force(first.id()), "delete --force");
    rt.assert_no_leftovers(&first);
}

#[test]
fn unknown_capability() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["process"]["capabilities"]["bounding"] =
        json!(["CAP_KILL", "CAP_NOT_A_THING"]);
    bundle.write_config();
    expect_rejected(&bundle, "process.capabilities");
}

#[test]
fn unknown_rlimit_type() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOT_A_THING", "soft": 1, "hard": 1}]);
    bundle.write_config();
    expect_rejected(&bundle, "process.rlimits");
}

#[test]
fn unknown_namespace_type() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "not-a-namespace"}));
    bundle.write_config();
    expect_rejected(&bundle, "linux.namespaces");
}

#[test]
fn unknown_syscall_name() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["not_a_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    bundle.write_config();
    expect_rejected(&bundle, "linux.seccomp");
}

#[test]
fn hook_path_does_not_exist() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["hooks"] =
        json!({"prestart": [{"path": "/no/such/hook", "args": ["hook"]}]});
    bundle.write_config();
    expect_rejected(&bundle, "hooks");
}

/// Regression: `delete --force ..` once removed the parent of the state root (the id named a
/// path outside it). Every command must refuse path-like ids and touch nothing outside the root.
#[test]
fn path_like_ids_never_touch_anything_outside_the_root() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new();
    let parent = rt.root().parent().expect("root has a parent").to_path_buf();
    let sentinel = tempfile::NamedTempFile::new_in(&parent).expect("sentinel");
    std::fs::create_dir_all(rt.root()).expect("root");
    let root_sentinel = rt.root().join("keep");
    std::fs::write(&root_sentinel, "x").expect("root sentinel");
    for id in ["..", ".", "../x", "a/../..", ""] {
        for args in [
            vec!["delete", "--force", id],
            vec!["delete", id],
            vec!["state", id],
            vec!["kill", id, "KILL"],
            vec!["start", id],
        ] {
            let out = rt.run(&args);
            assert_failure(&out, &format!("{args:?}"));
            assert!(
                sentinel.path().exists(),
                "{args:?} removed a file next to the root"
            );
            assert!(
                root_sentinel.exists(),
                "{args:?} removed a file in the root"
            );
        }
    }
}

/// Restores a host sysctl if a test (wrongly) changed it, so one regression does not leak into
/// the host for every later test.
struct HostSysctl {
    path: std::path::PathBuf,
    before: String,
}

impl HostSysctl {
    fn read(key: &str) -> Self {
        let path = std::path::Path::new("/proc/sys").join(key.replace('.', "/"));
        let before = std::fs::read_to_string(&path).expect("host sysctl");
        HostSysctl { path, before }
    }

    /// A value different from the host's, so a write that wrongly reached the host shows.
    fn other_value(&self) -> String {
        let current: i64 = self.before.trim().parse().expect("numeric sysctl");
        (if current == 1 { 0 } else { current.max(2) - 1 }).to_string()
    }

    fn assert_unchanged(&self) {
        let now = std::fs::read_to_string(&self.path).expect("host sysctl");
        assert_eq!(
            now,
            self.before,
            "{} changed on the host",
            self.path.display()
        );
    }
}

impl Drop for HostSysctl {
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.path).ok().as_ref() != Some(&self.before) {
            let _ = std::fs::write(&self.path, &self.before);
        }
    }
}

/// A config whose sysctl `key` must be refused: `create` and `run` fail naming the key, the
/// host's value stays, nothing is left behind.
fn expect_sysctl_refused(key: &str, namespaces: serde_json::Value) {
    let host = HostSysctl::read(key);
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["true"]);
    bundle.config_mut()["linux"]["namespaces"] = namespaces;
    // Only the sysctl is wrong: the hostname would need a uts namespace.
    bundle.config_mut()["hostname"] = json!(null);
    bundle.config_mut()["linux"]["sysctl"] = json!({ key: host.other_value() });
    bundle.write_config();
    expect_rejected(&bundle, &format!("linux.sysctl.{key}"));
    let rt = Runtime::new();
    assert_failure(&rt.run_bundle(&bundle), &format!("run with sysctl {key}"));
    host.assert_unchanged();
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn ipc_sysctl_without_an_ipc_namespace_is_refused() {
    if !require_root() {
        return;
    }
    expect_sysctl_refused(
        "fs.mqueue.queues_max",
        json!([{"type": "pid"}, {"type": "mount"}, {"type": "network"}]),
    );
    expect_sysctl_refused(
        "kernel.msgmnb",
        json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts"}]),
    );
}

#[test]
fn network_sysctl_without_a_network_namespace_is_refused() {
    if !require_root() {
        return;
    }
    expect_sysctl_refused(
        "net.ipv4.ip_forward",
        json!([{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}]),
    );
}

#[test]
fn sysctl_of_the_hosts_namespace_joined_by_path_is_refused() {
    if !require_root() {
        return;
    }
    // This test process lives in the host's namespaces.
    let own = |kind: &str| format!("/proc/{}/ns/{kind}", std::process::id());
    expect_sysctl_refused(
        "fs.mqueue.msg_max",
        json!([{"type": "pid"}, {"type": "mount"}, {"type": "ipc", "path": own("ipc")}]),
    );
    expect_sysctl_refused(
        "net.ipv4.ip_forward",
        json!([{"type": "mount"}, {"type": "network", "path": own("net")}]),
    );
}

#[test]
fn hostname_and_global_sysctls_are_refused() {
    if !require_root() {
        return;
    }
    // The uts namespace is the container's own, but its names have their own fields.
    for key in ["kernel.hostname", "kernel.domainname"] {
        let mut bundle = BusyboxBundle::new();
        bundle.set_args(&["true"]);
        bundle.config_mut()["linux"]["sysctl"] = json!({ key: "changed" });
        bundle.write_config();
        expect_rejected(&bundle, &format!("linux.sysctl.{key}"));
    }
    // Not namespaced at all: every namespace of the default config does not help.
    expect_sysctl_refused(
        "vm.swappiness",
        json!([{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]),
    );
}
