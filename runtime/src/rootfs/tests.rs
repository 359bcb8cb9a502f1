//! Root-only scenario tests: each runs in a forked child with its own mount namespace, on a
//! temporary rootfs holding a few directories and a copy of busybox.

use super::*;
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::{lstat, major, minor, SFlag};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::Command;
use tempfile::TempDir;

type Check = Result<(), String>;

/// Prints the skip reason and returns true when the test cannot run here.
fn skip() -> bool {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP: rootfs scenario tests need root");
        return true;
    }
    if !Path::new("/bin/busybox").exists() {
        println!("SKIP: /bin/busybox is missing");
        return true;
    }
    false
}

/// Runs `f` in a forked child inside a new mount namespace and returns its verdict. The child
/// reports failures through a pipe; its mounts vanish with its namespace.
fn in_child(f: impl FnOnce() -> Check) -> Check {
    let (reader, writer) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the child only runs the scenario and leaves with _exit, never returning into the
    // test harness; glibc keeps malloc usable after fork.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(reader);
            let verdict = catch_unwind(AssertUnwindSafe(|| {
                unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare: {e}"))?;
                f()
            }))
            .unwrap_or_else(|_| Err("scenario panicked".into()));
            let code = match verdict {
                Ok(()) => 0,
                Err(msg) => {
                    let mut w = fs::File::from(writer);
                    let _ = w.write_all(msg.as_bytes());
                    1
                }
            };
            // SAFETY: ends the forked child without running the parent's destructors or atexit.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(writer);
            let mut msg = String::new();
            let _ = fs::File::from(reader).read_to_string(&mut msg);
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => Ok(()),
                Ok(status) => Err(format!("child {status:?}: {msg}")),
                Err(e) => Err(format!("waitpid: {e}")),
            }
        }
    }
}

/// A temporary bundle with a rootfs: bin/busybox, etc/marker, and some directories.
struct Fixture {
    dir: TempDir,
    rootfs: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("runvm-rootfs-test")
        .tempdir()
        .expect("tempdir");
    let rootfs = dir.path().join("rootfs");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "ro"] {
        fs::create_dir_all(rootfs.join(d)).expect("mkdir");
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    fs::write(rootfs.join("etc/marker"), "container").expect("marker");
    let rootfs = rootfs.canonicalize().expect("canonicalize");
    Fixture { dir, rootfs }
}

impl Fixture {
    fn plan<'a>(&'a self, spec: &'a Spec) -> RootfsPlan<'a> {
        RootfsPlan {
            spec,
            rootfs: &self.rootfs,
            bundle: self.dir.path(),
            in_new_userns: false,
            cgroup_ns: false,
            cgroup_sources: Vec::new(),
            shared_mount_ns: false,
        }
    }
}

fn spec(json: serde_json::Value) -> Spec {
    serde_json::from_value(json).expect("test spec parses")
}

/// (mount options, fstype, super options) of the topmost mount at `mount_point`.
fn mount_at(mount_point: &Path) -> Option<(String, String, String)> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        if Path::new(fields.get(4)?) != mount_point {
            return None;
        }
        Some((
            fields.get(5)?.to_string(),
            fields.get(sep + 1)?.to_string(),
            fields.get(sep + 3)?.to_string(),
        ))
    })
}

fn has_opt(opts: &str, want: &str) -> bool {
    opts.split(',').any(|o| o == want)
}

fn expect(cond: bool, what: impl FnOnce() -> String) -> Check {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

fn write_fails_with(path: &Path, errno: i32) -> Check {
    match fs::write(path, "x") {
        Err(e) if e.raw_os_error() == Some(errno) => Ok(()),
        other => Err(format!(
            "write {}: expected errno {errno}, got {other:?}",
            path.display()
        )),
    }
}

#[test]
fn mounts_land_with_their_flags_and_pivot_hides_the_host() {
    if skip() {
        return;
    }
    let fx = fixture();
    let host_data = fx.dir.path().join("hostdata");
    fs::create_dir(&host_data).expect("mkdir");
    fs::write(host_data.join("hello"), "hi").expect("write");
    fs::write(fx.dir.path().join("hostfile"), "file").expect("write");
    let spec = spec(serde_json::json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1755", "size=1m"]},
            {"destination": "/data", "type": "bind", "source": host_data,
             "options": ["rbind", "ro", "nosuid", "rprivate"]},
            {"destination": "/etc/new/hostfile", "source": "hostfile", "options": ["bind"]}
        ]
    }));
    let rootfs = fx.rootfs.clone();
    let tmpdir = fx.dir.path().to_path_buf();
    in_child(|| {
        let root = prepare(&fx.plan(&spec)).map_err(|e| e.to_string())?;
        let (opts, fstype, sup) = mount_at(&rootfs.join("tmp")).ok_or("no mount at /tmp")?;
        expect(fstype == "tmpfs", || format!("/tmp fstype {fstype}"))?;
        expect(has_opt(&opts, "nosuid") && has_opt(&opts, "nodev"), || {
            format!("/tmp options {opts}")
        })?;
        expect(has_opt(&sup, "mode=1755"), || format!("/tmp data {sup}"))?;
        let (opts, _, _) = mount_at(&rootfs.join("data")).ok_or("no mount at /data")?;
        expect(has_opt(&opts, "ro") && has_opt(&opts, "nosuid"), || {
            format!("/data options {opts}")
        })?;
        write_fails_with(&rootfs.join("data/new"), libc::EROFS)?;
        let file =
            fs::read_to_string(rootfs.join("etc/new/hostfile")).map_err(|e| e.to_string())?;
        expect(file == "file", || format!("bound file reads {file:?}"))?;

        pivot(&root, false, false).map_err(|e| e.to_string())?;
        finish(&spec).map_err(|e| e.to_string())?;
        let hello = fs::read_to_string("/data/hello").map_err(|e| e.to_string())?;
        expect(hello == "hi", || format!("/data/hello reads {hello:?}"))?;
        // The new root really is the rootfs: its busybox runs and sees its own /etc.
        let out = Command::new("/bin/busybox")
            .args(["cat", "/etc/marker"])
            .output()
            .map_err(|e| format!("exec busybox: {e}"))?;
        let out = String::from_utf8_lossy(&out.stdout).to_string();
        expect(out == "container", || {
            format!("busybox cat /etc/marker: {out:?}")
        })?;
        // Old root gone: every mount point is one the container asked for.
        let info = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        let allowed = [
            "/",
            "/proc",
            "/tmp",
            "/data",
            "/etc/new/hostfile",
            "/dev/pts",
            "/dev/shm",
        ];
        for line in info.lines() {
            let mp = line.split(' ').nth(4).unwrap_or("");
            expect(allowed.contains(&mp), || {
                format!("host mount visible: {line}")
            })?;
            expect(!mp.starts_with(&*tmpdir.to_string_lossy()), || {
                format!("host path: {line}")
            })?;
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn symlinked_destinations_stay_inside_the_rootfs() {
    if skip() {
        return;
    }
    let fx = fixture();
    let unique = fx
        .dir
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    symlink("/../../etc", fx.rootfs.join("evil")).expect("symlink");
    symlink("../../../../../../../..", fx.rootfs.join("up")).expect("symlink");
    let escape_target = format!("/../../../{unique}-escape");
    symlink(&escape_target, fx.rootfs.join("away")).expect("symlink");
    let spec = spec(serde_json::json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/evil", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/up/sys", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/away/sub", "type": "tmpfs", "source": "tmpfs"}
        ]
    }));
    let rootfs = fx.rootfs.clone();
    in_child(|| {
        prepare(&fx.plan(&spec)).map_err(|e| e.to_string())?;
        // /evil -> /../../etc resolved as the rootfs's /etc: the marker is now hidden.
        expect(mount_at(&rootfs.join("etc")).is_some(), || {
            "no mount at rootfs/etc".into()
        })?;
        expect(!rootfs.join("etc/marker").exists(), || {
            "rootfs/etc not covered".into()
        })?;
        expect(mount_at(Path::new("/etc")).is_none(), || {
            "host /etc was mounted over".into()
        })?;
        expect(Path::new("/etc/passwd").exists(), || {
            "host /etc changed".into()
        })?;
        expect(mount_at(&rootfs.join("sys")).is_some(), || {
            "no mount at rootfs/sys".into()
        })?;
        // The missing symlink target was created inside the rootfs, not on the host.
        let inside = rootfs.join(format!("{unique}-escape/sub"));
        expect(mount_at(&inside).is_some(), || {
            format!("no mount at {}", inside.display())
        })?;
        expect(!Path::new(&format!("/{unique}-escape")).exists(), || {
            "created on host".into()
        })
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

fn check_char_device(path: &Path, maj: u64, min: u64, mode: u32) -> Check {
    let st = lstat(path).map_err(|e| format!("stat {}: {e}", path.display()))?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    expect(
        kind == SFlag::S_IFCHR
            && major(st.st_rdev) == maj
            && minor(st.st_rdev) == min
            && st.st_mode & 0o7777 == mode,
        || {
            format!(
                "{}: mode {:o}, rdev {}:{}",
                path.display(),
                st.st_mode,
                major(st.st_rdev),
                minor(st.st_rdev)
            )
        },
    )
}

#[test]
fn dev_gets_default_and_configured_devices() {
    if skip() {
        return;
    }
    let fx = fixture();
    let spec = spec(serde_json::json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "process": {"terminal": true, "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "mounts": [
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
        ],
        "linux": {"devices": [
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
             "fileMode": 0o600, "uid": 1, "gid": 2},
            {"path": "/dev/sub/fifo", "type": "p"}
        ]}
    }));
    let dev = fx.rootfs.join("dev");
    in_child(|| {
        prepare(&fx.plan(&spec)).map_err(|e| e.to_string())?;
        for (name, maj, min) in [
            ("null", 1, 3),
            ("zero", 1, 5),
            ("full", 1, 7),
            ("random", 1, 8),
            ("urandom", 1, 9),
            ("tty", 5, 0),
        ] {
            check_char_device(&dev.join(name), maj, min, 0o666)?;
        }
        check_char_device(&dev.join("fuse"), 10, 229, 0o600)?;
        let st = lstat(&dev.join("fuse")).map_err(|e| e.to_string())?;
        expect(st.st_uid == 1 && st.st_gid == 2, || {
            format!("fuse owner {}:{}", st.st_uid, st.st_gid)
        })?;
        let st = lstat(&dev.join("sub/fifo")).map_err(|e| e.to_string())?;
        expect(
            SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO,
            || "fifo is not a fifo".into(),
        )?;
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ] {
            let got = fs::read_link(dev.join(name)).map_err(|e| format!("readlink {name}: {e}"))?;
            expect(got == Path::new(target), || {
                format!("/dev/{name} -> {}", got.display())
            })?;
        }
        let (_, fstype, sup) = mount_at(&dev.join("pts")).ok_or("no /dev/pts mount")?;
        expect(fstype == "devpts" && has_opt(&sup, "ptmxmode=666"), || {
            format!("pts {fstype} {sup}")
        })?;
        let (_, fstype, _) = mount_at(&dev.join("shm")).ok_or("no /dev/shm mount")?;
        expect(fstype == "tmpfs", || format!("shm {fstype}"))?;
        let console = fs::metadata(dev.join("console")).map_err(|e| format!("console: {e}"))?;
        expect(console.is_file(), || {
            "console placeholder is not a file".into()
        })
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn errors_name_the_config_entry() {
    if skip() {
        return;
    }
    let fx = fixture();
    fs::write(fx.rootfs.join("dev/conflict"), "").expect("write");
    let bad_fs = spec(serde_json::json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/x", "type": "no-such-fs", "source": "none"}
        ]
    }));
    let bad_dev = spec(serde_json::json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "linux": {"devices": [{"path": "/dev/conflict", "type": "c", "major": 1, "minor": 3}]}
    }));
    in_child(|| {
        let err = prepare(&fx.plan(&bad_fs))
            .err()
            .ok_or("bad fstype accepted")?
            .to_string();
        expect(
            err.starts_with("mounts[1] (destination /x): mount no-such-fs: "),
            || err.clone(),
        )?;
        let err = prepare(&fx.plan(&bad_dev))
            .err()
            .ok_or("conflicting device accepted")?
            .to_string();
        expect(
            err.starts_with("linux.devices[0] (path /dev/conflict): "),
            || err.clone(),
        )
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn masked_and_readonly_paths() {
    if skip() {
        return;
    }
    let fx = fixture();
    fs::write(fx.rootfs.join("etc/secret"), "top secret").expect("write");
    fs::create_dir(fx.rootfs.join("etc/secretdir")).expect("mkdir");
    fs::write(fx.rootfs.join("etc/secretdir/key"), "k").expect("write");
    let spec = spec(serde_json::json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}
        ],
        "linux": {
            "maskedPaths": ["/etc/secret", "/etc/secretdir", "/no/such/path"],
            "readonlyPaths": ["/ro", "/missing"]
        }
    }));
    in_child(|| {
        let root = prepare(&fx.plan(&spec)).map_err(|e| e.to_string())?;
        pivot(&root, false, false).map_err(|e| e.to_string())?;
        finish(&spec).map_err(|e| e.to_string())?;
        let secret = fs::read_to_string("/etc/secret").map_err(|e| e.to_string())?;
        expect(secret.is_empty(), || {
            format!("masked file reads {secret:?}")
        })?;
        let entries = fs::read_dir("/etc/secretdir")
            .map_err(|e| e.to_string())?
            .count();
        expect(entries == 0, || format!("masked dir has {entries} entries"))?;
        write_fails_with(Path::new("/etc/secretdir/new"), libc::EROFS)?;
        write_fails_with(Path::new("/ro/file"), libc::EROFS)?;
        // Only the listed paths are read-only.
        fs::write("/etc/writable", "ok").map_err(|e| format!("write /etc/writable: {e}"))
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn readonly_root_with_chroot_instead_of_pivot() {
    if skip() {
        return;
    }
    let fx = fixture();
    let spec = spec(serde_json::json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}],
        "linux": {"rootfsPropagation": "private"}
    }));
    in_child(|| {
        let root = prepare(&fx.plan(&spec)).map_err(|e| e.to_string())?;
        pivot(&root, true, false).map_err(|e| e.to_string())?;
        finish(&spec).map_err(|e| e.to_string())?;
        let marker = fs::read_to_string("/etc/marker").map_err(|e| e.to_string())?;
        expect(marker == "container", || {
            format!("/etc/marker reads {marker:?}")
        })?;
        write_fails_with(Path::new("/etc/new"), libc::EROFS)?;
        fs::write("/tmp/ok", "x").map_err(|e| format!("write /tmp/ok: {e}"))
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn cgroup_mount_binds_the_hierarchies() {
    if skip() {
        return;
    }
    let memory = Path::new("/sys/fs/cgroup/memory");
    let cpu = Path::new("/sys/fs/cgroup/cpu");
    if !memory.join("memory.limit_in_bytes").exists() || !cpu.join("cpu.shares").exists() {
        println!("SKIP: no cgroup v1 memory and cpu hierarchies");
        return;
    }
    let fx = fixture();
    let spec = spec(serde_json::json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "mounts": [{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                    "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}]
    }));
    let cg = fx.rootfs.join("sys/fs/cgroup");
    in_child(|| {
        let mut plan = fx.plan(&spec);
        plan.cgroup_sources = vec![
            CgroupMountSource {
                name: "memory".into(),
                host_path: memory.to_path_buf(),
                fstype: "cgroup".into(),
                options: "memory".into(),
            },
            CgroupMountSource {
                name: "cpu,cpuacct".into(),
                host_path: cpu.to_path_buf(),
                fstype: "cgroup".into(),
                options: "cpu".into(),
            },
        ];
        prepare(&plan).map_err(|e| e.to_string())?;
        let (opts, fstype, _) = mount_at(&cg).ok_or("no tmpfs at /sys/fs/cgroup")?;
        expect(fstype == "tmpfs" && has_opt(&opts, "ro"), || {
            format!("top {fstype} {opts}")
        })?;
        let (opts, fstype, _) = mount_at(&cg.join("memory")).ok_or("no memory mount")?;
        expect(
            fstype == "cgroup" && has_opt(&opts, "ro") && has_opt(&opts, "noexec"),
            || format!("memory {fstype} {opts}"),
        )?;
        expect(cg.join("memory/memory.limit_in_bytes").exists(), || {
            "memory files missing".into()
        })?;
        expect(cg.join("cpu/cpu.shares").exists(), || {
            "cpu -> cpu,cpuacct link missing".into()
        })?;
        write_fails_with(&cg.join("memory/memory.limit_in_bytes"), libc::EROFS)
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn rootfs_propagation_values() {
    let with = |v: &str| spec(serde_json::json!({"linux": {"rootfsPropagation": v}}));
    let got = propagation::configured(&with("rslave"))
        .ok()
        .flatten()
        .map(|(_, f)| f);
    assert_eq!(got, Some(MsFlags::MS_SLAVE | MsFlags::MS_REC));
    let got = propagation::configured(&with("shared"))
        .ok()
        .flatten()
        .map(|(_, f)| f);
    assert_eq!(got, Some(MsFlags::MS_SHARED));
    let err = propagation::configured(&with("sideways"))
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.starts_with("linux.rootfsPropagation (sideways): ")),
        "{err:?}"
    );
    assert!(matches!(
        propagation::configured(&spec(serde_json::json!({}))),
        Ok(None)
    ));
}

/// Enters a new user namespace mapping only root to root, then a mount namespace it owns:
/// mounts inherited from outside become locked, as in a rootless or userns container.
fn enter_userns() -> Check {
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| format!("unshare user: {e}"))?;
    fs::write("/proc/self/setgroups", "deny").map_err(|e| format!("setgroups: {e}"))?;
    fs::write("/proc/self/uid_map", "0 0 1").map_err(|e| format!("uid_map: {e}"))?;
    fs::write("/proc/self/gid_map", "0 0 1").map_err(|e| format!("gid_map: {e}"))?;
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare mnt: {e}"))
}

#[test]
fn user_namespace_binds_devices_and_keeps_locked_flags() {
    if skip() {
        return;
    }
    let fx = fixture();
    let spec = spec(serde_json::json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "bind", "source": "/proc", "options": ["rbind"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev"]}
        ],
        "linux": {"readonlyPaths": ["/ro"]}
    }));
    let rootfs = fx.rootfs.clone();
    in_child(|| {
        // Outside the user namespace: a nosuid,nodev,noexec mount that will be locked inside.
        nix::mount::mount(
            Some("tmpfs"),
            &rootfs.join("ro"),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| format!("mount locked tmpfs: {e}"))?;
        enter_userns()?;
        let mut plan = fx.plan(&spec);
        plan.in_new_userns = true;
        let root = prepare(&plan).map_err(|e| e.to_string())?;
        check_char_device(&rootfs.join("dev/null"), 1, 3, 0o666)?;
        let (opts, _, _) = mount_at(&rootfs.join("dev/null")).ok_or("/dev/null not bound")?;
        expect(!opts.is_empty(), || "no options".into())?;
        let (opts, _, _) = mount_at(&rootfs.join("sys")).ok_or("no /sys mount")?;
        expect(has_opt(&opts, "ro"), || format!("/sys options {opts}"))?;
        expect(rootfs.join("sys/kernel").exists(), || {
            "/sys has no kernel dir".into()
        })?;
        pivot(&root, false, false).map_err(|e| e.to_string())?;
        finish(&spec).map_err(|e| e.to_string())?;
        write_fails_with(Path::new("/ro/x"), libc::EROFS)?;
        let (opts, _, _) = mount_at(Path::new("/ro")).ok_or("no /ro mount")?;
        expect(has_opt(&opts, "nosuid") && has_opt(&opts, "noexec"), || {
            format!("/ro {opts}")
        })?;
        write_fails_with(Path::new("/etc/x"), libc::EROFS)
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn tmpcopyup_copies_what_the_tmpfs_hides() {
    if skip() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let fx = fixture();
    let etc = fx.rootfs.join("etc");
    fs::create_dir(etc.join("sub")).expect("mkdir");
    fs::write(etc.join("sub/file"), "nested").expect("write");
    fs::set_permissions(etc.join("sub/file"), fs::Permissions::from_mode(0o640)).expect("chmod");
    symlink("../marker", etc.join("sub/link")).expect("symlink");
    let spec = spec(serde_json::json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "mounts": [{"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                    "options": ["tmpcopyup", "ro", "mode=755"]}]
    }));
    in_child(|| {
        prepare(&fx.plan(&spec)).map_err(|e| e.to_string())?;
        let (opts, fstype, _) = mount_at(&etc).ok_or("no mount at /etc")?;
        expect(fstype == "tmpfs" && has_opt(&opts, "ro"), || {
            format!("/etc {fstype} {opts}")
        })?;
        let marker = fs::read_to_string(etc.join("marker")).map_err(|e| e.to_string())?;
        expect(marker == "container", || format!("marker {marker:?}"))?;
        let nested = fs::read_to_string(etc.join("sub/file")).map_err(|e| e.to_string())?;
        expect(nested == "nested", || format!("nested {nested:?}"))?;
        let mode = fs::metadata(etc.join("sub/file"))
            .map_err(|e| e.to_string())?
            .permissions()
            .mode();
        expect(mode & 0o7777 == 0o640, || format!("mode {mode:o}"))?;
        let link = fs::read_link(etc.join("sub/link")).map_err(|e| e.to_string())?;
        expect(link == Path::new("../marker"), || {
            format!("link -> {}", link.display())
        })?;
        write_fails_with(&etc.join("new"), libc::EROFS)
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn rro_makes_nested_mounts_read_only_too() {
    if skip() {
        return;
    }
    let fx = fixture();
    let host_data = fx.dir.path().join("hostdata");
    fs::create_dir_all(host_data.join("nested")).expect("mkdir");
    let spec = spec(serde_json::json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "mounts": [{"destination": "/data", "type": "bind", "source": host_data,
                    "options": ["rbind", "rro"]}]
    }));
    let rootfs = fx.rootfs.clone();
    in_child(|| {
        let nested = host_data.join("nested");
        nix::mount::mount(
            Some("tmpfs"),
            &nested,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| format!("mount nested tmpfs: {e}"))?;
        prepare(&fx.plan(&spec)).map_err(|e| e.to_string())?;
        write_fails_with(&rootfs.join("data/x"), libc::EROFS)?;
        write_fails_with(&rootfs.join("data/nested/x"), libc::EROFS)?;
        // The host side stays writable.
        fs::write(nested.join("x"), "x").map_err(|e| format!("host side: {e}"))
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn default_oci_config_sets_up_a_complete_container() {
    if skip() {
        return;
    }
    let memory = Path::new("/sys/fs/cgroup/memory");
    let masked_exist = ["/proc/timer_list", "/sys/firmware"]
        .iter()
        .all(|p| Path::new(p).exists());
    if !memory.join("memory.limit_in_bytes").exists() || !masked_exist {
        println!("SKIP: no cgroup v1 memory hierarchy, /proc/timer_list or /sys/firmware");
        return;
    }
    let fx = fixture();
    // oci-spec's defaults: proc, /dev tmpfs, devpts, shm, mqueue, sysfs ro, cgroup ro,
    // the usual masked and read-only paths, and a read-only root.
    let spec = Spec::default();
    in_child(|| {
        // proc must belong to a PID namespace of its own: run as its PID 1.
        unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("unshare pid: {e}"))?;
        in_child(|| {
            let mut plan = fx.plan(&spec);
            plan.cgroup_sources = vec![CgroupMountSource {
                name: "memory".into(),
                host_path: memory.to_path_buf(),
                fstype: "cgroup".into(),
                options: "memory".into(),
            }];
            let root = prepare(&plan).map_err(|e| e.to_string())?;
            pivot(&root, false, false).map_err(|e| e.to_string())?;
            finish(&spec).map_err(|e| e.to_string())?;
            let timers = fs::read("/proc/timer_list").map_err(|e| format!("timer_list: {e}"))?;
            expect(timers.is_empty(), || {
                "/proc/timer_list is not masked".into()
            })?;
            let firmware = fs::read_dir("/sys/firmware")
                .map_err(|e| e.to_string())?
                .count();
            expect(firmware == 0, || "/sys/firmware is not masked".into())?;
            write_fails_with(Path::new("/proc/sys/kernel/domainname"), libc::EROFS)?;
            write_fails_with(Path::new("/etc/new"), libc::EROFS)?;
            write_fails_with(Path::new("/sys/kernel/new"), libc::EROFS)?;
            expect(
                Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists(),
                || "no memory controller in the container".into(),
            )?;
            let (_, fstype, _) = mount_at(Path::new("/dev/mqueue")).ok_or("no mqueue")?;
            expect(fstype == "mqueue", || format!("mqueue is {fstype}"))?;
            let (_, fstype, _) = mount_at(Path::new("/proc")).ok_or("no /proc")?;
            expect(fstype == "proc", || format!("/proc is {fstype}"))?;
            expect(std::process::id() == 1, || {
                format!("pid {}", std::process::id())
            })?;
            fs::write("/dev/shm/ok", "x").map_err(|e| format!("write /dev/shm: {e}"))
        })
    })
    .unwrap_or_else(|e| panic!("{e}"));
}
