//! Seccomp: errno rules, kill-process rules, argument conditions.

use runvm_tests::*;
use serde_json::{json, Value};

fn set_seccomp(bundle: &mut BusyboxBundle, syscalls: Value) {
    bundle.config_mut()["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls
    });
    bundle.write_config();
}

#[test]
fn errno_rule_makes_mkdir_fail_with_eperm() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    set_seccomp(
        &mut bundle,
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]),
    );
    let rt = Runtime::new();
    let out = rt.run_script(
        &mut bundle,
        "mkdir /tmp/blocked 2>&1; echo mkdir=$?; touch /tmp/f; echo touch=$?",
    );
    assert_success(&out, "run");
    let text = stdout_of(&out);
    assert!(text.contains("Operation not permitted"), "{text}");
    assert!(
        text.contains("mkdir=1") && text.contains("touch=0"),
        "{text}"
    );
    assert!(!bundle.rootfs().join("tmp/blocked").exists());
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn errno_rule_returns_the_configured_errno() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    // ENOSPC (28) is distinctive: nothing else would make mkdir report it here.
    set_seccomp(
        &mut bundle,
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28}]),
    );
    let rt = Runtime::new();
    let out = rt.run_script(&mut bundle, "mkdir /tmp/blocked 2>&1; true");
    assert_success(&out, "run");
    assert!(
        stdout_of(&out).contains("No space left on device"),
        "{}",
        stdout_of(&out)
    );
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn kill_process_rule_kills_with_sigsys() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    set_seccomp(
        &mut bundle,
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]),
    );
    let rt = Runtime::new();
    let out = rt.run_script(&mut bundle, "mkdir /tmp/x; echo status=$?");
    // Only the forked mkdir dies (SIGSYS); its parent shell reports that and goes on.
    assert_success(&out, "run");
    assert_eq!(stdout_of(&out), format!("status={}\n", 128 + libc::SIGSYS));
    assert!(!bundle.rootfs().join("tmp/x").exists());
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn kill_process_on_init_kills_the_container() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    set_seccomp(
        &mut bundle,
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]),
    );
    // exec: the container init itself makes the syscall.
    let rt = Runtime::new();
    let out = rt.run_script(&mut bundle, "exec mkdir /tmp/x");
    assert_eq!(
        out.status.code(),
        Some(128 + libc::SIGSYS),
        "stderr: {}",
        stderr_of(&out)
    );
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn argument_condition_only_matches_its_value() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    // chmod to any mode whose permission bits are 0700 fails; other modes work.
    let cond = |index: u32| json!([{"index": index, "value": 0o777, "valueTwo": 0o700, "op": "SCMP_CMP_MASKED_EQ"}]);
    set_seccomp(
        &mut bundle,
        json!([
            {"names": ["chmod", "fchmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": cond(1)},
            {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": cond(2)}
        ]),
    );
    let rt = Runtime::new();
    let out = rt.run_script(
        &mut bundle,
        "touch /tmp/f; chmod 755 /tmp/f; echo open=$?; chmod 700 /tmp/f 2>&1; echo closed=$?; \
         stat -c %a /tmp/f",
    );
    assert_success(&out, "run");
    let text = stdout_of(&out);
    assert!(text.contains("open=0"), "{text}");
    assert!(
        text.contains("Operation not permitted") && text.contains("closed=1"),
        "{text}"
    );
    assert!(text.ends_with("755\n"), "{text}");
    rt.assert_no_leftovers(&bundle);
}
