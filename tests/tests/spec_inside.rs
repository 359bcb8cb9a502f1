//! What the OCI runtime-tools validation suite checks from *inside* its containers.
//!
//! The suite's "inside" programs start from one generated config (below: [`suite_config`]) and
//! run a checker in the container that compares the live process with that config: mounts in
//! /proc/self/mountinfo (destination, type and source, in config order; options are not
//! compared), the default device nodes and /dev symlinks, all five capability sets, rlimits,
//! hostname, cwd/env/args, no_new_privs, oom_score_adj, sysctls, id maps, a writable (or
//! read-only) root, masked paths (reading one byte must give EOF), read-only paths (creating a
//! file inside must fail) and the rootfs propagation. Each test here sets up one of the suite's
//! configurations and checks the same facts with busybox, reading /proc/self/*.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{mknod, Mode, SFlag};
use runvm_tests::*;
use serde_json::{json, Value};

/// The capabilities the suite's config generator puts in every one of the five sets.
const SUITE_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// [`SUITE_CAPS`] as /proc/self/status prints it: bits 0,1,3-8,10,13,18,27,29,31.
const SUITE_CAPS_MASK: &str = "00000000a80425fb";

/// What our deny-by-default (EPERM) filter allows: busybox's needs plus what runvm does between
/// installing the filter and execve. Every name is also allowed by the suite's own default
/// profile, so a runtime that starts under this list starts under the suite's too.
const ALLOWED_SYSCALLS: &[&str] = &[
    "access",
    "arch_prctl",
    "brk",
    "capget",
    "capset",
    "chdir",
    "close",
    "dup",
    "dup2",
    "dup3",
    "execve",
    "exit",
    "exit_group",
    "faccessat",
    "fchdir",
    "fcntl",
    "fstat",
    "fstatfs",
    "futex",
    "getcwd",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getpgrp",
    "getpid",
    "getppid",
    "getrlimit",
    "gettid",
    "getuid",
    "ioctl",
    "lseek",
    "lstat",
    "madvise",
    "mmap",
    "mprotect",
    "munmap",
    "newfstatat",
    "open",
    "openat",
    "pipe",
    "pipe2",
    "prctl",
    "prlimit64",
    "read",
    "readlink",
    "readlinkat",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "set_robust_list",
    "set_tid_address",
    "setgroups",
    "setpgid",
    "setresgid",
    "setresuid",
    "setrlimit",
    "stat",
    "statx",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utimensat",
    "vfork",
    "wait4",
    "write",
    "writev",
];

/// clone is allowed only without namespace flags (the flags argument masked with every
/// CLONE_NEW* bit must be 0), the way the suite's profile does it for a process without
/// CAP_SYS_ADMIN.
const CLONE_NEW_FLAGS: u64 = 0x7e02_0000;

fn suite_seccomp() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ALLOWED_SYSCALLS, "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": CLONE_NEW_FLAGS, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}]}
        ]
    })
}

/// Rewrites the bundle into the suite's shape: the bundle directory itself is the root
/// (`root.path` "."), and the config is the generator's default (six mounts, five namespaces,
/// fourteen capabilities in all five sets, one NOFILE rlimit, no masked or read-only paths,
/// a deny-by-default seccomp filter and no no_new_privs). The cgroups path stays so that the
/// bundle's cleanup finds the container's cgroups.
fn suite_config(bundle: &mut BusyboxBundle) {
    let dir = bundle.path().to_path_buf();
    for name in ["bin", "etc"] {
        symlink(format!("rootfs/{name}"), dir.join(name)).expect("link rootfs dir into bundle");
    }
    for name in ["proc", "dev", "sys", "tmp"] {
        std::fs::create_dir(dir.join(name)).expect("mkdir mount point in bundle");
    }
    let cgroups_path = bundle.cgroups_path().to_string();
    *bundle.config_mut() = json!({
        "ociVersion": "1.0.2",
        "hostname": "mrsdalloway",
        "root": {"path": ".", "readonly": false},
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": SUITE_CAPS, "effective": SUITE_CAPS, "inheritable": SUITE_CAPS,
                "permitted": SUITE_CAPS, "ambient": SUITE_CAPS
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                           {"type": "uts"}, {"type": "mount"}],
            "seccomp": suite_seccomp()
        }
    });
    bundle.write_config();
}

/// The root of a [`suite_config`] bundle, where the suite puts its own files.
fn suite_root(bundle: &BusyboxBundle) -> &Path {
    bundle.path()
}

/// The suite's privileged variant for the propagation checks: CAP_SYS_ADMIN added to every
/// set (it mounts) and no seccomp filter.
fn with_sys_admin(bundle: &mut BusyboxBundle) {
    let caps = &mut bundle.config_mut()["process"]["capabilities"];
    for set in [
        "bounding",
        "effective",
        "inheritable",
        "permitted",
        "ambient",
    ] {
        caps[set]
            .as_array_mut()
            .expect("capability set")
            .push(json!("CAP_SYS_ADMIN"));
    }
    bundle.config_mut()["linux"]
        .as_object_mut()
        .expect("linux")
        .remove("seccomp");
}

fn run_ok(bundle: &mut BusyboxBundle, script: &str) -> String {
    let rt = Runtime::new();
    let out = rt.run_script(bundle, script);
    assert_success(&out, script);
    rt.assert_no_leftovers(bundle);
    stdout_of(&out)
}

/// `create` must refuse the bundle; returns the error text.
fn create_refused(bundle: &BusyboxBundle) -> String {
    let rt = Runtime::new();
    let out = rt.create(bundle, &[]);
    assert_failure(&out, "create");
    rt.assert_root_empty();
    stderr_of(&out)
}

fn status_field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// Prints "mount-point fstype source" for each line of mountinfo, in order.
const MOUNT_TABLE: &str =
    r#"awk '{i=7; while ($i != "-") i++; print $5, $(i+1), $(i+2)}' /proc/self/mountinfo"#;

#[test]
fn default_mounts_appear_in_config_order_with_their_types_and_sources() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    let text = run_ok(&mut bundle, MOUNT_TABLE);
    let table: Vec<&str> = text.lines().collect();
    // The first line is the root (the bundle directory itself).
    assert!(table[0].starts_with("/ "), "{text}");
    assert_eq!(
        &table[1..7],
        [
            "/proc proc proc",
            "/dev tmpfs tmpfs",
            "/dev/pts devpts devpts",
            "/dev/shm tmpfs shm",
            "/dev/mqueue mqueue mqueue",
            "/sys sysfs sysfs",
        ],
        "{text}"
    );
}

#[test]
fn extra_tmpfs_mount_follows_the_defaults() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    bundle.config_mut()["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                     "options": ["nosuid", "strictatime", "mode=755", "size=1k"]}),
        );
    bundle.write_config();
    let text = run_ok(
        &mut bundle,
        &format!("{MOUNT_TABLE}; stat -c 'mode=%a' /tmp; grep ' /tmp ' /proc/self/mountinfo"),
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[6], "/sys sysfs sysfs", "{text}");
    assert_eq!(lines[7], "/tmp tmpfs tmpfs", "{text}");
    assert!(text.contains("mode=755\n"), "{text}");
    let tmp = lines.last().expect("mountinfo line for /tmp");
    assert!(
        tmp.contains(" rw,nosuid ") || tmp.contains(" rw,nosuid,"),
        "{text}"
    );
}

#[test]
fn default_devices_are_device_nodes_and_dev_links_point_into_proc() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    let text = run_ok(
        &mut bundle,
        "for d in null zero full random urandom tty ptmx; do \
           stat -L -c \"$d %F\" /dev/$d; done; \
         for l in fd stdin stdout stderr; do echo \"$l -> $(readlink /dev/$l)\"; done; \
         [ -e /dev/console ] && echo console-present || echo console-absent",
    );
    for dev in ["null", "zero", "full", "random", "urandom", "tty", "ptmx"] {
        assert!(
            text.contains(&format!("{dev} character special file\n")),
            "{dev}: {text}"
        );
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        assert!(
            text.contains(&format!("{link} -> {target}\n")),
            "{link}: {text}"
        );
    }
    // Only a terminal process gets /dev/console; the suite checks it only then.
    assert!(text.contains("console-absent"), "{text}");
}

#[test]
fn process_matches_the_default_config() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    let text = run_ok(
        &mut bundle,
        "cat /proc/self/status; echo host=$(hostname); echo cwd=$(readlink /proc/self/cwd); \
         echo env=$PATH:$TERM; grep 'Max open files' /proc/self/limits; \
         cat /proc/self/uid_map /proc/self/gid_map; echo oom=$(cat /proc/self/oom_score_adj); \
         echo probe > /written && rm /written && echo root=writable; \
         tr '\\0' '|' < /proc/1/cmdline; echo",
    );
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(&text, set), SUITE_CAPS_MASK, "{set}: {text}");
    }
    // The process's argv is exactly process.args.
    let script = bundle.config()["process"]["args"][2]
        .as_str()
        .expect("script arg");
    assert_eq!(
        text.lines().last(),
        Some(format!("sh|-c|{script}|").as_str()),
        "{text}"
    );
    // The filter is installed although no_new_privs is not requested, and stays unset.
    assert_eq!(status_field(&text, "NoNewPrivs"), "0", "{text}");
    assert_eq!(status_field(&text, "Seccomp"), "2", "{text}");
    assert_eq!(status_field(&text, "Uid"), "0\t0\t0\t0", "{text}");
    assert!(text.contains("host=mrsdalloway\n"), "{text}");
    assert!(text.contains("cwd=/\n"), "{text}");
    assert!(
        text.contains("env=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:xterm\n"),
        "{text}"
    );
    let limits = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("limits line");
    assert_eq!(
        limits.split_whitespace().collect::<Vec<_>>()[3..5],
        ["1024", "1024"],
        "{text}"
    );
    // Without a user namespace the id maps are the identity, three fields per line.
    let identity: Vec<&str> = text
        .lines()
        .filter(|l| l.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .collect();
    assert_eq!(identity.len(), 2, "{text}");
    assert!(
        text.contains("oom=0\n") && text.contains("root=writable\n"),
        "{text}"
    );
}

#[test]
fn seccomp_errno_rule_on_top_of_allow_default() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    // The suite's seccomp test: its allow-listed rules stay, the default becomes allow, and
    // getcwd alone returns an errno. Rules whose action equals the default must be accepted.
    let seccomp = &mut bundle.config_mut()["linux"]["seccomp"];
    seccomp["defaultAction"] = json!("SCMP_ACT_ALLOW");
    seccomp["syscalls"]
        .as_array_mut()
        .expect("syscalls")
        .push(json!({"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}));
    bundle.write_config();
    let text = run_ok(
        &mut bundle,
        "busybox pwd 2>&1; echo pwd=$?; hostname >/dev/null && echo uname-ok; \
         grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status",
    );
    // A checker that asks the kernel for its cwd gets an error here, whatever the runtime.
    assert!(text.contains("getcwd: Operation not permitted"), "{text}");
    assert!(
        text.contains("pwd=1\n") && text.contains("uname-ok\n"),
        "{text}"
    );
    assert_eq!(status_field(&text, "Seccomp"), "2", "{text}");
    assert_eq!(status_field(&text, "NoNewPrivs"), "0", "{text}");
}

#[test]
fn hostname_is_set_and_may_be_left_out() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    bundle.config_mut()["hostname"] = json!("hostname-specific");
    bundle.write_config();
    assert_eq!(run_ok(&mut bundle, "hostname"), "hostname-specific\n");

    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    bundle
        .config_mut()
        .as_object_mut()
        .expect("config")
        .remove("hostname");
    bundle.write_config();
    let text = run_ok(&mut bundle, "hostname");
    assert!(!text.trim().is_empty(), "{text}");
}

#[test]
fn configured_devices_get_type_numbers_mode_and_owner() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    // 432 is 0660: the umask must not take bits away.
    bundle.config_mut()["linux"]["devices"] = json!([
        {"path": "/dev/test1", "type": "c", "major": 10, "minor": 666,
         "fileMode": 432, "uid": 0, "gid": 0},
        {"path": "/dev/test2", "type": "b", "major": 8, "minor": 666,
         "fileMode": 432, "uid": 0, "gid": 0},
        {"path": "/dev/test3", "type": "p", "major": 8, "minor": 666, "fileMode": 432}
    ]);
    bundle.write_config();
    let text = run_ok(
        &mut bundle,
        "stat -c '%n %F %t:%T %a %u:%g' /dev/test1 /dev/test2 /dev/test3",
    );
    assert_eq!(
        text,
        "/dev/test1 character special file a:29a 660 0:0\n\
         /dev/test2 block special file 8:29a 660 0:0\n\
         /dev/test3 fifo 0:0 660 0:0\n"
    );
}

#[test]
fn cwd_and_env_from_the_config() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    std::fs::create_dir(suite_root(&bundle).join("test")).expect("mkdir test");
    std::fs::set_permissions(
        suite_root(&bundle).join("test"),
        std::fs::Permissions::from_mode(0o700),
    )
    .expect("chmod test");
    bundle.config_mut()["process"]["cwd"] = json!("/test");
    let env = bundle.config_mut()["process"]["env"]
        .as_array_mut()
        .expect("env");
    env.push(json!("testa=valuea"));
    env.push(json!("testb=123"));
    bundle.write_config();
    let text = run_ok(
        &mut bundle,
        "echo cwd=$(readlink /proc/self/cwd) a=$testa b=$testb",
    );
    assert_eq!(text, "cwd=/test a=valuea b=123\n");
}

#[test]
fn every_rlimit_gets_its_soft_and_hard_value() {
    if !require_root() {
        return;
    }
    let gib: u64 = 1 << 30;
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    bundle.config_mut()["process"]["rlimits"] = json!([
        {"type": "RLIMIT_AS", "hard": 2 * gib, "soft": gib},
        {"type": "RLIMIT_CORE", "hard": 4 * gib, "soft": 3 * gib},
        {"type": "RLIMIT_DATA", "hard": 6 * gib, "soft": 5 * gib},
        {"type": "RLIMIT_FSIZE", "hard": 8 * gib, "soft": 7 * gib},
        {"type": "RLIMIT_STACK", "hard": 10 * gib, "soft": 9 * gib},
        {"type": "RLIMIT_CPU", "hard": 120, "soft": 60},
        {"type": "RLIMIT_NOFILE", "hard": 4000, "soft": 3000}
    ]);
    bundle.write_config();
    let text = run_ok(&mut bundle, "cat /proc/self/limits");
    let want = [
        ("Max address space", gib, 2 * gib),
        ("Max core file size", 3 * gib, 4 * gib),
        ("Max data size", 5 * gib, 6 * gib),
        ("Max file size", 7 * gib, 8 * gib),
        ("Max stack size", 9 * gib, 10 * gib),
        ("Max cpu time", 60, 120),
        ("Max open files", 3000, 4000),
    ];
    for (name, soft, hard) in want {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {text}"));
        let values: Vec<&str> = line[name.len()..].split_whitespace().collect();
        assert_eq!(
            values[..2],
            [soft.to_string(), hard.to_string()],
            "{name}: {text}"
        );
    }
}

#[test]
fn oom_score_adj_is_raised() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    bundle.config_mut()["process"]["oomScoreAdj"] = json!(500);
    bundle.write_config();
    assert_eq!(run_ok(&mut bundle, "cat /proc/self/oom_score_adj"), "500\n");
}

#[test]
fn sysctl_applies_inside_the_new_network_namespace_only() {
    if !require_root() {
        return;
    }
    let host_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("host");
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    bundle.config_mut()["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    bundle.write_config();
    assert_eq!(
        run_ok(&mut bundle, "cat /proc/sys/net/ipv4/ip_forward"),
        "1\n"
    );
    let host_after = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("host");
    assert_eq!(host_before, host_after);
}

#[test]
fn non_root_user_keeps_all_configured_capabilities() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    // The suite's bundle directory is a 0700 root-owned temp dir: uid 10 only gets to its
    // program and writes to "/" through CAP_DAC_OVERRIDE, which must therefore be ambient.
    std::fs::set_permissions(bundle.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod bundle");
    bundle.config_mut()["process"]["user"] =
        json!({"uid": 10, "gid": 10, "additionalGids": [5], "umask": 2});
    bundle.write_config();
    let text = run_ok(
        &mut bundle,
        "grep -E '^(Uid|Gid|Groups|Umask|Cap[A-Za-z]+):' /proc/self/status; \
         echo probe > /written && rm /written && echo root=writable",
    );
    assert_eq!(status_field(&text, "Uid"), "10\t10\t10\t10", "{text}");
    assert_eq!(status_field(&text, "Gid"), "10\t10\t10\t10", "{text}");
    assert_eq!(status_field(&text, "Groups"), "5", "{text}");
    assert_eq!(status_field(&text, "Umask"), "0002", "{text}");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(&text, set), SUITE_CAPS_MASK, "{set}: {text}");
    }
    assert!(text.contains("root=writable\n"), "{text}");
}

#[test]
fn readonly_root_refuses_writes() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    bundle.config_mut()["root"]["readonly"] = json!(true);
    bundle.write_config();
    let text = run_ok(
        &mut bundle,
        "(echo probe > /written) 2>&1; echo write=$?; awk '$5 == \"/\" {print $6}' /proc/self/mountinfo",
    );
    assert!(text.contains("Read-only file system"), "{text}");
    assert!(
        text.contains("write=1\n") || text.contains("write=2\n"),
        "{text}"
    );
    assert!(
        text.lines().last().unwrap_or("").starts_with("ro"),
        "{text}"
    );
}

/// Makes a device node or fifo at `path` in the bundle, as the suite's pre-start step does.
fn make_node(path: &Path, kind: SFlag) {
    let mode = Mode::from_bits_truncate(0o666);
    if kind == SFlag::S_IFIFO {
        nix::unistd::mkfifo(path, mode).expect("mkfifo");
    } else {
        mknod(path, kind, mode, 0).expect("mknod");
    }
}

/// The nested layout the suite masks or makes read-only: a directory, a file, a directory
/// inside the directory and files at both depths, all with content.
fn nested_layout(root: &Path, prefix: &str) -> Vec<String> {
    let top = root.join(format!("{prefix}-dir"));
    std::fs::create_dir_all(top.join(format!("{prefix}-subdir"))).expect("mkdir layout");
    std::fs::write(top.join(format!("{prefix}-subdir/tmp1")), "").expect("write tmp");
    let files = [
        format!("/{prefix}-file"),
        format!("/{prefix}-dir/{prefix}-file"),
        format!("/{prefix}-dir/{prefix}-subdir/{prefix}-file"),
    ];
    for f in &files {
        std::fs::write(root.join(&f[1..]), "content").expect("write layout file");
    }
    vec![
        format!("/{prefix}-dir"),
        files[0].clone(),
        format!("/{prefix}-dir/{prefix}-subdir"),
        files[1].clone(),
        files[2].clone(),
    ]
}

#[test]
fn masked_files_and_device_nodes_read_as_empty() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    let root = suite_root(&bundle).to_path_buf();
    let mut masked = nested_layout(&root, "masked");
    for (name, kind) in [
        ("masked-blk", SFlag::S_IFBLK),
        ("masked-chr", SFlag::S_IFCHR),
        ("masked-fifo", SFlag::S_IFIFO),
    ] {
        make_node(&root.join(name), kind);
        masked.push(format!("/{name}"));
    }
    bundle.config_mut()["linux"]["maskedPaths"] = json!(masked);
    bundle.write_config();
    // A masked fifo that is not replaced would block this read forever: the test would time out.
    let text = run_ok(
        &mut bundle,
        "for p in /masked-file /masked-blk /masked-chr /masked-fifo; do \
           echo \"$p bytes=$(head -c 1 $p | wc -c)\"; done; \
         echo \"dir=[$(ls -A /masked-dir)]\"; \
         [ -e /masked-dir/masked-file ] && echo nested-visible || echo nested-hidden",
    );
    for p in ["/masked-file", "/masked-blk", "/masked-chr", "/masked-fifo"] {
        assert!(text.contains(&format!("{p} bytes=0\n")), "{p}: {text}");
    }
    // A masked directory is an empty read-only tmpfs: still a directory, so read(2) on it can
    // only fail with EISDIR. The suite's checker expects EOF from every masked path and so
    // rejects masked directories under any runtime.
    assert!(text.contains("dir=[]\n"), "{text}");
    assert!(text.contains("nested-hidden\n"), "{text}");
}

#[test]
fn readonly_dirs_files_and_device_nodes() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    let root = suite_root(&bundle).to_path_buf();
    let mut readonly = nested_layout(&root, "readonly");
    for (name, kind) in [
        ("readonly-blk", SFlag::S_IFBLK),
        ("readonly-chr", SFlag::S_IFCHR),
        ("readonly-fifo", SFlag::S_IFIFO),
    ] {
        make_node(&root.join(name), kind);
        readonly.push(format!("/{name}"));
    }
    bundle.config_mut()["linux"]["readonlyPaths"] = json!(readonly);
    bundle.write_config();
    let text = run_ok(
        &mut bundle,
        "for d in /readonly-dir /readonly-dir/readonly-subdir; do \
           touch $d/new 2>/dev/null && echo \"$d writable\" || echo \"$d refused\"; done; \
         for f in /readonly-file /readonly-dir/readonly-file \
                  /readonly-dir/readonly-subdir/readonly-file; do \
           (echo more >> $f) 2>/dev/null && echo \"$f writable\" || echo \"$f refused\"; done; \
         for n in /readonly-blk /readonly-chr /readonly-fifo; do \
           awk -v p=$n '$5 == p {print p, substr($6, 1, 2)}' /proc/self/mountinfo; done",
    );
    for path in [
        "/readonly-dir",
        "/readonly-dir/readonly-subdir",
        "/readonly-file",
        "/readonly-dir/readonly-file",
        "/readonly-dir/readonly-subdir/readonly-file",
    ] {
        assert!(
            text.contains(&format!("{path} refused\n")),
            "{path}: {text}"
        );
    }
    for node in ["/readonly-blk", "/readonly-chr", "/readonly-fifo"] {
        assert!(text.contains(&format!("{node} ro\n")), "{node}: {text}");
    }
    assert!(!root.join("readonly-dir/new").exists());
}

/// The suite's propagation probe, in busybox: bind-mount "/" recursively somewhere, mount a
/// directory on a second mount point, and see whether that mount shows up under the first.
const PROPAGATION_PROBE: &str = "mkdir /target /mnt /probe && touch /probe/example; \
    if mount --rbind / /target 2>/dev/null; then \
      mount --bind /probe /mnt; \
      [ -e /target/mnt/example ] && echo propagated || echo not-propagated; \
      umount -l /mnt; umount -l /target; \
      [ -e /proc/self/status ] && echo proc-kept || echo proc-lost; \
    else echo rbind-refused; fi";

fn propagation_result(value: &str) -> String {
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    with_sys_admin(&mut bundle);
    bundle.config_mut()["linux"]["rootfsPropagation"] = json!(value);
    bundle.write_config();
    run_ok(&mut bundle, PROPAGATION_PROBE)
}

#[test]
fn rootfs_propagation_shared_slave_private_unbindable() {
    if !require_root() {
        return;
    }
    // Shared: the bind of "/" is a peer of "/", so the new mount shows through it. The lazy
    // unmount of that bind then propagates back to "/" and takes /proc with it (kernel
    // semantics), which is why the suite's later /proc checks fail in this mode under any
    // runtime that really makes "/" shared.
    assert_eq!(propagation_result("shared"), "propagated\nproc-lost\n");
    for value in ["slave", "private", "rslave", "rprivate"] {
        assert_eq!(
            propagation_result(value),
            "not-propagated\nproc-kept\n",
            "{value}"
        );
    }
    // Unbindable: create succeeds and binding "/" is refused (EINVAL).
    for value in ["unbindable", "runbindable"] {
        assert_eq!(propagation_result(value), "rbind-refused\n", "{value}");
    }
}

#[test]
fn unknown_capability_or_rlimit_fails_create() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    bundle.config_mut()["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .expect("bounding")
        .push(json!("CAP_TEST"));
    bundle.write_config();
    let err = create_refused(&bundle);
    assert!(err.contains("CAP_TEST"), "{err}");

    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    bundle.config_mut()["process"]["rlimits"]
        .as_array_mut()
        .expect("rlimits")
        .push(json!({"type": "RLIMIT_TEST", "hard": 1024, "soft": 1024}));
    bundle.write_config();
    let err = create_refused(&bundle);
    assert!(err.contains("RLIMIT_TEST"), "{err}");
}

#[test]
fn uid_mappings_need_a_user_namespace() {
    if !require_root() {
        return;
    }
    // Mappings without a user namespace cannot show in /proc/self/uid_map: refused.
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    bundle.config_mut()["linux"]["uidMappings"] =
        json!([{"hostID": 1000, "containerID": 0, "size": 3200}]);
    bundle.write_config();
    let err = create_refused(&bundle);
    assert!(err.contains("uidMappings"), "{err}");

    // With one, the maps are exactly the configured ones. The root directory belongs to the
    // host's root, which is not mapped, so the container's root cannot write to it.
    let mut bundle = BusyboxBundle::new();
    suite_config(&mut bundle);
    bundle.config_mut()["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "user"}));
    bundle.config_mut()["linux"]["uidMappings"] =
        json!([{"hostID": 1000, "containerID": 0, "size": 3200}]);
    bundle.config_mut()["linux"]["gidMappings"] =
        json!([{"hostID": 1000, "containerID": 0, "size": 3200}]);
    bundle.write_config();
    let text = run_ok(
        &mut bundle,
        "cat /proc/self/uid_map /proc/self/gid_map; \
         touch /written 2>/dev/null && echo root=writable || echo root=refused",
    );
    let maps: Vec<Vec<&str>> = text
        .lines()
        .take(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        maps,
        [["0", "1000", "3200"], ["0", "1000", "3200"]],
        "{text}"
    );
    assert!(text.contains("root=refused\n"), "{text}");
}
