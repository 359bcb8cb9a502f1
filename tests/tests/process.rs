//! The container process: env, cwd, user and groups, umask, capabilities,
//! rlimits, no_new_privs, oom_score_adj and file descriptors.

use runvm_tests::*;
use serde_json::json;

/// CAP_KILL (5) | CAP_NET_BIND_SERVICE (10) | CAP_AUDIT_WRITE (29).
const DEFAULT_CAPS_MASK: &str = "0000000020000420";

fn status_field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

fn run_ok(bundle: &mut BusyboxBundle, script: &str) -> String {
    let rt = Runtime::new();
    let out = rt.run_script(bundle, script);
    assert_success(&out, script);
    rt.assert_no_leftovers(bundle);
    stdout_of(&out)
}

#[test]
fn env_is_exactly_passed() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["process"]["env"] =
        json!(["PATH=/bin", "FOO=bar baz", "EMPTY=", "HOME=/home/x"]);
    let text = run_ok(&mut bundle, "echo \"[$FOO]\"; env | sort");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("[bar baz]"));
    let env: Vec<&str> = lines.collect();
    for want in ["PATH=/bin", "FOO=bar baz", "EMPTY=", "HOME=/home/x"] {
        assert!(env.contains(&want), "{want} missing from {env:?}");
    }
}

#[test]
fn cwd_is_applied() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["process"]["cwd"] = json!("/etc");
    assert_eq!(run_ok(&mut bundle, "pwd"), "/etc\n");
}

#[test]
fn user_uid_gid_and_additional_gids() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "additionalGids": [2000]});
    let text = run_ok(
        &mut bundle,
        "id -u; id -g; id -un; grep -E '^(Uid|Gid|Groups):' /proc/self/status",
    );
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("1000"), "{text}");
    assert_eq!(lines.next(), Some("1000"), "{text}");
    assert_eq!(lines.next(), Some("test"), "{text}");
    let squash = |f: &str| {
        status_field(&text, f)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(squash("Uid"), "1000 1000 1000 1000");
    assert_eq!(squash("Gid"), "1000 1000 1000 1000");
    assert_eq!(
        squash("Groups"),
        "2000",
        "supplementary groups are exactly additionalGids"
    );
}

#[test]
fn umask_is_applied() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["process"]["user"]["umask"] = json!(0o027);
    assert_eq!(run_ok(&mut bundle, "umask"), "0027\n");
}

#[test]
fn root_capabilities_are_limited_to_the_config() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let text = run_ok(&mut bundle, "grep ^Cap /proc/self/status");
    for field in ["CapBnd", "CapPrm", "CapEff"] {
        assert_eq!(
            status_field(&text, field),
            DEFAULT_CAPS_MASK,
            "{field}:\n{text}"
        );
    }
    assert_eq!(status_field(&text, "CapInh"), "0000000000000000", "{text}");
}

#[test]
fn non_root_user_keeps_ambient_capabilities() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let caps = json!(DEFAULT_CAPS);
    bundle.config_mut()["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    bundle.config_mut()["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps,
        "inheritable": caps, "ambient": caps
    });
    let text = run_ok(&mut bundle, "grep ^Cap /proc/self/status");
    for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            status_field(&text, field),
            DEFAULT_CAPS_MASK,
            "{field}:\n{text}"
        );
    }
}

#[test]
fn no_capabilities_at_all() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["process"]["capabilities"] = json!({
        "bounding": [], "effective": [], "permitted": [], "inheritable": [], "ambient": []
    });
    let text = run_ok(&mut bundle, "grep ^Cap /proc/self/status");
    for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            status_field(&text, field),
            "0000000000000000",
            "{field}:\n{text}"
        );
    }
}

#[test]
fn rlimits_are_applied() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
    ]);
    assert_eq!(
        run_ok(&mut bundle, "ulimit -n; ulimit -Hn; ulimit -c"),
        "512\n1024\n0\n"
    );
}

#[test]
fn no_new_privileges_on_and_off() {
    if !require_root() {
        return;
    }
    for (flag, want) in [(true, "1"), (false, "0")] {
        let mut bundle = BusyboxBundle::new();
        bundle.config_mut()["process"]["noNewPrivileges"] = json!(flag);
        let text = run_ok(&mut bundle, "grep ^NoNewPrivs /proc/self/status");
        assert_eq!(
            status_field(&text, "NoNewPrivs"),
            want,
            "noNewPrivileges={flag}"
        );
    }
}

#[test]
fn oom_score_adj_can_be_raised() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["process"]["oomScoreAdj"] = json!(500);
    assert_eq!(run_ok(&mut bundle, "cat /proc/self/oom_score_adj"), "500\n");
}

/// True when this process's bounding set holds CAP_SYS_RESOURCE (bit 24).
fn host_has_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let bnd = u64::from_str_radix(&status_field(&status, "CapBnd"), 16).expect("hex CapBnd");
    bnd & (1 << 24) != 0
}

#[test]
fn oom_score_adj_lowering_needs_sys_resource() {
    if !require_root() {
        return;
    }
    let own: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .expect("own oom_score_adj")
        .trim()
        .parse()
        .expect("number");
    if own <= -1000 {
        println!("SKIP: this process already has the lowest oom_score_adj");
        return;
    }
    let lower = (own - 500).max(-1000);
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["process"]["oomScoreAdj"] = json!(lower);
    let rt = Runtime::new();
    let out = rt.run_script(&mut bundle, "cat /proc/self/oom_score_adj");
    if host_has_sys_resource() {
        assert_success(&out, "lower oomScoreAdj with CAP_SYS_RESOURCE");
        assert_eq!(stdout_of(&out), format!("{lower}\n"));
    } else {
        // Without CAP_SYS_RESOURCE the write fails: the runtime must say so,
        // not start the container with a silently different value.
        assert_failure(&out, "lower oomScoreAdj without CAP_SYS_RESOURCE");
        if is_runvm() {
            assert!(
                stderr_of(&out).contains("oomScoreAdj"),
                "{}",
                stderr_of(&out)
            );
        }
    }
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn only_stdio_fds_reach_the_container() {
    if !require_root() {
        return;
    }
    // An fd this process leaks into the runtime (no CLOEXEC) must not reach the container.
    // SAFETY: the path is a valid NUL-terminated string; the fd is closed below.
    let leaked = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
    assert!(leaked >= 0, "open /dev/null");
    let mut bundle = BusyboxBundle::new();
    let text = run_ok(&mut bundle, "ls /proc/self/fd");
    // SAFETY: `leaked` is an fd this test opened and nobody else uses.
    unsafe { libc::close(leaked) };
    let mut fds: Vec<&str> = text.split_whitespace().collect();
    fds.sort();
    // 0, 1, 2 and the directory fd ls itself opened to list /proc/self/fd.
    assert_eq!(fds.len(), 4, "fds in container: {fds:?}");
    assert_eq!(&fds[..3], ["0", "1", "2"], "fds in container: {fds:?}");
}

#[test]
fn io_priority_is_applied() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["process"]["ioPriority"] =
        json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    let rt = Runtime::new();
    let out = rt.run_script(&mut bundle, "ionice -p $$");
    assert_success(&out, "run with ioPriority");
    assert!(stdout_of(&out).contains("idle"), "{}", stdout_of(&out));
}

/// A capability the runtime itself does not hold (this host's bounding set lacks
/// CAP_SYS_RESOURCE) cannot be given to a container: `create` says so instead of init dying
/// after `start`.
#[test]
fn capability_missing_from_the_runtime_fails_create() {
    if !require_root() || !is_runvm() {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .expect("CapBnd");
    const CAP_SYS_RESOURCE: u64 = 24;
    if bounding & (1 << CAP_SYS_RESOURCE) != 0 {
        println!("SKIP: this host's bounding set holds CAP_SYS_RESOURCE");
        return;
    }
    let mut bundle = BusyboxBundle::new();
    for set in ["bounding", "effective", "permitted"] {
        bundle.config_mut()["process"]["capabilities"][set] = json!(["CAP_SYS_RESOURCE"]);
    }
    bundle.write_config();
    let rt = Runtime::new();
    let out = rt.create(&bundle, &[]);
    assert_failure(&out, "create with a capability the runtime lacks");
    assert!(
        stderr_of(&out).contains("process.capabilities"),
        "{}",
        stderr_of(&out)
    );
    rt.assert_no_leftovers(&bundle);
}

/// `"capabilities": {}` (what podman writes for `--cap-drop all`) means no capabilities at all:
/// a set the object leaves out is empty, not "keep what the runtime has".
#[test]
fn empty_capabilities_object_drops_everything() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["process"]["capabilities"] = json!({});
    let status = run_ok(&mut bundle, "cat /proc/self/status");
    for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(&status, field), "0000000000000000", "{field}");
    }
}
