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

/// A device the config does not list can be neither created nor opened, even by root in the
/// container (the device cgroup and the missing CAP_MKNOD of the default set both stand in the
/// way; the cgroup holds even when the capability is granted).
#[test]
fn unlisted_devices_cannot_be_created_or_opened() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    for set in ["bounding", "effective", "permitted"] {
        let caps = bundle.config_mut()["process"]["capabilities"][set]
            .as_array_mut()
            .expect("capability set");
        caps.push(serde_json::json!("CAP_MKNOD"));
    }
    let rt = Runtime::new();
    let out = rt.run_script(
        &mut bundle,
        "mknod /tmp/disk b 8 0 2>/dev/null && echo mknod-ok; \
         mknod /tmp/mem c 1 1 && (head -c1 /tmp/mem >/dev/null 2>&1 && echo mem-readable || echo mem-denied)",
    );
    let text = stdout_of(&out);
    assert!(!text.contains("mem-readable"), "/dev/mem opened: {text}");
    assert!(
        text.contains("mem-denied") || !text.contains("mknod-ok"),
        "{text}"
    );
    rt.assert_no_leftovers(&bundle);
}

/// Masked and read-only paths stay that way: root in the container (without CAP_SYS_ADMIN)
/// cannot unmount the mask or remount a read-only path writable.
#[test]
fn masked_and_readonly_paths_survive_unmount_and_remount_attempts() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let rt = Runtime::new();
    let out = rt.run_script(
        &mut bundle,
        "umount /proc/timer_list 2>/dev/null; umount -l /proc/timer_list 2>/dev/null; \
         wc -c < /proc/timer_list; \
         mount -o remount,rw /proc/sys 2>/dev/null; \
         (echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo sys-writable || echo sys-readonly",
    );
    let text = stdout_of(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next().map(str::trim),
        Some("0"),
        "mask lifted: {text}"
    );
    assert_eq!(lines.next(), Some("sys-readonly"), "{text}");
    rt.assert_no_leftovers(&bundle);
}

/// A cwd that is a symlink pointing out of the rootfs resolves inside it (CVE-2024-21626 family):
/// init enters the cwd after pivot_root, where "/.." is "/".
#[test]
fn symlinked_cwd_cannot_leave_the_rootfs() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    std::os::unix::fs::symlink("../../../../../../../../..", bundle.rootfs().join("escape"))
        .expect("symlink");
    bundle.config_mut()["process"]["cwd"] = serde_json::json!("/escape");
    let rt = Runtime::new();
    let out = rt.run_script(&mut bundle, "pwd -P; ls");
    assert_success(&out, "run with a symlinked cwd");
    let text = stdout_of(&out);
    assert_eq!(text.lines().next(), Some("/"), "{text}");
    assert!(
        text.contains("escape"),
        "cwd is not the container's root: {text}"
    );
    assert!(!text.contains("work"), "host root listed: {text}");
    rt.assert_no_leftovers(&bundle);
}
