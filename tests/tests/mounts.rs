//! Mounts: options honoured, read-only binds, masked/readonly paths,
//! read-only root, and symlinked destinations that must stay in the rootfs.

use runvm_tests::*;
use serde_json::{json, Value};

fn add_mount(bundle: &mut BusyboxBundle, mount: Value) {
    bundle.config_mut()["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(mount);
}

#[test]
fn tmpfs_size_option_limits_space() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    add_mount(
        &mut bundle,
        json!({"destination": "/mnt/small", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "size=1m"]}),
    );
    let rt = Runtime::new();
    let out = rt.run_script(
        &mut bundle,
        "grep ' /mnt/small ' /proc/self/mounts; \
         dd if=/dev/zero of=/mnt/small/fill bs=1024 count=2048 2>&1; echo dd=$?",
    );
    assert_success(&out, "run");
    let text = stdout_of(&out);
    let mount_line = text.lines().next().unwrap_or("");
    assert!(mount_line.starts_with("tmpfs /mnt/small tmpfs"), "{text}");
    assert!(mount_line.contains("size=1024k"), "{text}");
    assert!(
        mount_line.contains("nosuid") && mount_line.contains("nodev"),
        "{text}"
    );
    assert!(text.contains("No space left on device"), "{text}");
    assert!(!text.contains("dd=0"), "{text}");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn readonly_bind_mount_refuses_writes() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let share = bundle.path().join("share");
    std::fs::create_dir(&share).expect("mkdir share");
    std::fs::write(share.join("hello"), "from host\n").expect("write share file");
    add_mount(
        &mut bundle,
        json!({"destination": "/data", "type": "bind", "source": share,
               "options": ["rbind", "ro"]}),
    );
    let rt = Runtime::new();
    let out = rt.run_script(
        &mut bundle,
        "cat /data/hello; touch /data/new 2>&1; echo touch=$?",
    );
    assert_success(&out, "run");
    let text = stdout_of(&out);
    assert!(text.starts_with("from host\n"), "{text}");
    assert!(text.contains("Read-only file system"), "{text}");
    assert!(text.contains("touch=1"), "{text}");
    assert!(!share.join("new").exists(), "write reached the host");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn masked_paths_read_empty() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    std::fs::write(bundle.rootfs().join("secret"), "top secret\n").expect("write secret");
    std::fs::create_dir(bundle.rootfs().join("secretdir")).expect("mkdir secretdir");
    std::fs::write(bundle.rootfs().join("secretdir/inner"), "x").expect("write inner");
    let masked = bundle.config_mut()["linux"]["maskedPaths"]
        .as_array_mut()
        .expect("maskedPaths");
    masked.push(json!("/secret"));
    masked.push(json!("/secretdir"));
    masked.push(json!("/does/not/exist"));
    // The checks only prove masking if the host sees content there.
    assert!(std::fs::read_to_string("/proc/timer_list").is_ok_and(|t| !t.is_empty()));
    assert!(std::fs::read_dir("/sys/firmware").is_ok_and(|mut d| d.next().is_some()));
    let rt = Runtime::new();
    let out = rt.run_script(
        &mut bundle,
        "echo timers=$(wc -c < /proc/timer_list); echo secret=$(cat /secret); \
         echo dir=$(ls -A /secretdir); echo firmware=$(ls -A /sys/firmware)",
    );
    assert_success(&out, "run");
    assert_eq!(
        stdout_of(&out),
        "timers=0\nsecret=\ndir=\nfirmware=\n",
        "stderr: {}",
        stderr_of(&out)
    );
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn readonly_paths_refuse_writes() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    std::fs::create_dir(bundle.rootfs().join("rodir")).expect("mkdir rodir");
    bundle.config_mut()["linux"]["readonlyPaths"]
        .as_array_mut()
        .expect("readonlyPaths")
        .push(json!("/rodir"));
    let rt = Runtime::new();
    let out = rt.run_script(
        &mut bundle,
        "touch /rodir/x 2>&1; echo rodir=$?; \
         echo 1 > /proc/sys/kernel/sysrq 2>&1; echo sysctl=$?; \
         touch /elsewhere; echo root=$?",
    );
    assert_success(&out, "run");
    let text = stdout_of(&out);
    assert!(text.contains("Read-only file system"), "{text}");
    assert!(text.contains("rodir=1"), "{text}");
    assert!(!text.contains("sysctl=0"), "{text}");
    assert!(
        text.contains("root=0"),
        "rest of the rootfs must stay writable: {text}"
    );
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn readonly_root_refuses_writes_but_mounts_work() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["root"]["readonly"] = json!(true);
    let rt = Runtime::new();
    let out = rt.run_script(
        &mut bundle,
        "touch /newfile 2>&1; echo root=$?; touch /dev/shm/ok; echo shm=$?",
    );
    assert_success(&out, "run");
    let text = stdout_of(&out);
    assert!(text.contains("Read-only file system"), "{text}");
    assert!(text.contains("root=1") && text.contains("shm=0"), "{text}");
    assert!(!bundle.rootfs().join("newfile").exists());
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn symlinked_destination_stays_inside_rootfs() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let target = tempfile::Builder::new()
        .prefix("runvm-escape-")
        .tempdir()
        .expect("host target dir");
    let target_path = target.path().to_str().expect("utf-8").to_string();
    std::os::unix::fs::symlink(
        format!("/../../..{target_path}"),
        bundle.rootfs().join("evil"),
    )
    .expect("symlink evil");
    add_mount(
        &mut bundle,
        json!({"destination": "/evil", "type": "tmpfs", "source": "tmpfs",
               "options": ["size=1m"]}),
    );
    bundle.set_script("echo pwned > /evil/marker; sleep 1000");
    let rt = Runtime::new();
    rt.create_ok(&bundle);
    assert_success(&rt.start(bundle.id()), "start");
    // The container's own view: the tmpfs exists somewhere inside its root.
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !host_mounts.lines().any(|l| l.contains(&target_path)),
        "host {target_path} got a mount:\n{host_mounts}"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let listing: Vec<_> = std::fs::read_dir(target.path())
        .expect("read host target")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        listing.is_empty(),
        "container wrote to host dir: {listing:?}"
    );
    let pid = rt.state(bundle.id())["pid"].as_i64().expect("pid");
    let inner = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    assert!(
        inner
            .lines()
            .any(|l| l.contains(&target_path) && l.contains(" tmpfs ")),
        "tmpfs should be mounted at the in-rootfs resolution {target_path}:\n{inner}"
    );
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
    rt.assert_no_leftovers(&bundle);
}
