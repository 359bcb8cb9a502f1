//! Escape regressions: what other runtimes shipped CVEs for must stay closed in runvm.

use std::fs::OpenOptions;

use runvm_tests::*;

/// CVE-2019-5736: a container reaching the runtime's own binary through /proc/PID/exe could
/// keep a handle on it and, once the runtime process has exited (so the binary is no longer
/// busy), open it for writing and overwrite the host's runvm. runvm's create runs from a
/// read-only bind of its binary (or, on old kernels, a sealed memfd copy), so that late write
/// must fail.
#[test]
fn runtime_binary_cannot_be_written_through_init_exe() {
    if !require_root() || !is_runvm() {
        return;
    }
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["true"]);
    let rt = Runtime::new();
    rt.create_ok(&bundle);
    let pid = rt.state(bundle.id())["pid"].as_i64().expect("pid");
    let exe = format!("/proc/{pid}/exe");
    let target = std::fs::read_link(&exe).expect("read init's exe link");
    // The attacker's handle: a path-only descriptor that outlives init.
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(&exe)
        .expect("O_PATH open of init's exe");
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
    let reopen = format!("/proc/self/fd/{}", handle.as_raw_fd());
    if target.to_string_lossy().contains("memfd:") {
        // Fallback path: a sealed copy; writes are refused by its seals.
        let mut file = OpenOptions::new()
            .write(true)
            .open(&reopen)
            .expect("reopen memfd");
        use std::io::Write;
        assert!(
            file.write_all(b"x").is_err(),
            "sealed copy accepted a write"
        );
    } else {
        // While another test's runvm runs the same binary the kernel answers ETXTBSY before it
        // gets to the read-only mount: wait (bounded) for those to finish.
        let mut tries = 0;
        let err = loop {
            let err = OpenOptions::new()
                .write(true)
                .open(&reopen)
                .expect_err("init's binary could be opened for writing after init exited");
            tries += 1;
            if err.raw_os_error() != Some(libc::ETXTBSY) || tries == 100 {
                break err;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    }
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

/// CVE-2021-30465: a mount destination swapped for a symlink to the host *while* the runtime
/// sets up mounts must not redirect the mount. A host thread keeps exchanging
/// rootfs/swap (a directory) with a symlink to an outside directory while containers mount
/// tmpfs filesystems under /swap; nothing may ever land in the outside directory.
#[test]
fn mount_destinations_swapped_during_setup_stay_inside() {
    if !require_root() {
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    let outside = tempfile::tempdir().expect("outside dir");
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["true"]);
    let mounts = bundle.config_mut()["mounts"]
        .as_array_mut()
        .expect("mounts");
    for i in 0..8 {
        mounts.push(serde_json::json!({
            "destination": format!("/swap/m{i}"), "type": "tmpfs", "source": "tmpfs",
            "options": ["size=64k"]
        }));
    }
    bundle.write_config();
    let rootfs = bundle.rootfs().to_path_buf();
    let real = rootfs.join("swap");
    let parked = rootfs.join("swap.real");
    let link = rootfs.join("swap.link");
    std::fs::create_dir_all(&real).expect("swap dir");
    std::os::unix::fs::symlink(outside.path(), &link).expect("symlink to outside");
    let stop = AtomicBool::new(false);
    let rt = Runtime::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            // Flip rootfs/swap between the real directory and the outside symlink.
            while !stop.load(Ordering::Relaxed) {
                let _ = std::fs::rename(&real, &parked);
                let _ = std::fs::rename(&link, &real);
                std::thread::yield_now();
                let _ = std::fs::rename(&real, &link);
                let _ = std::fs::rename(&parked, &real);
            }
        });
        for _ in 0..20 {
            let _ = rt.run_bundle(&bundle);
        }
        stop.store(true, Ordering::Relaxed);
    });
    let outside_path = outside.path().to_string_lossy().into_owned();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mountinfo.contains(&outside_path),
        "a container mount landed outside the rootfs: {outside_path}"
    );
    let entries: Vec<_> = std::fs::read_dir(outside.path())
        .expect("outside dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        entries.is_empty(),
        "the runtime wrote outside the rootfs: {entries:?}"
    );
    rt.assert_no_leftovers(&bundle);
}
