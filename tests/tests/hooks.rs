//! OCI hooks: all six kinds, their order and state, poststop on delete,
//! and failing or hanging hooks that must abort create cleanly.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use runvm_tests::*;
use serde_json::json;

/// Appends "<kind> <status> <pid>" from the state JSON on stdin to $2.
const HOOK_SCRIPT: &str = r#"#!/bin/sh
state=$(cat)
status=$(echo "$state" | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p')
pid=$(echo "$state" | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
echo "$1 $status $pid" >> "$2"
"#;

/// Host-side and container-side locations of the hook script and its log.
struct HookFiles {
    host_script: PathBuf,
    host_log: PathBuf,
}

/// Installs the hook script on the host and in the rootfs (for
/// startContainer, which resolves in the container), and bind-mounts the
/// log directory at /hooklog so container-side hooks can append to it.
fn install_hooks(bundle: &mut BusyboxBundle) -> HookFiles {
    let host_script = bundle.path().join("hook.sh");
    write_executable(&host_script, HOOK_SCRIPT);
    write_executable(&bundle.rootfs().join("hook.sh"), HOOK_SCRIPT);
    let log_dir = bundle.path().join("hooklog");
    std::fs::create_dir(&log_dir).expect("mkdir hooklog");
    let host_log = log_dir.join("log");
    bundle.config_mut()["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(
            json!({"destination": "/hooklog", "type": "bind", "source": log_dir,
                     "options": ["rbind", "rw"]}),
        );
    let host_hook = |kind: &str| json!({"path": host_script, "args": ["hook.sh", kind, host_log]});
    bundle.config_mut()["hooks"] = json!({
        "createRuntime": [host_hook("createRuntime")],
        "createContainer": [host_hook("createContainer")],
        "prestart": [host_hook("prestart")],
        "startContainer": [{"path": "/hook.sh",
                            "args": ["hook.sh", "startContainer", "/hooklog/log"]}],
        "poststart": [host_hook("poststart")],
        "poststop": [host_hook("poststop")]
    });
    bundle.write_config();
    HookFiles {
        host_script,
        host_log,
    }
}

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write hook script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .expect("chmod hook script");
}

/// Log lines as (kind, status, pid).
fn read_log(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut f = l.split(' ');
            let mut next = || f.next().unwrap_or("").to_string();
            (next(), next(), next())
        })
        .collect()
}

fn kinds(log: &[(String, String, String)]) -> Vec<&str> {
    log.iter().map(|(k, _, _)| k.as_str()).collect()
}

fn position(log: &[(String, String, String)], kind: &str) -> usize {
    let found: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, (k, _, _))| k == kind)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{kind} must run exactly once: {:?}",
        kinds(log)
    );
    found[0]
}

#[test]
fn all_hook_kinds_run_in_order_with_state() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["sleep", "1000"]);
    let files = install_hooks(&mut bundle);
    let rt = Runtime::new();
    let id = bundle.id().to_string();

    rt.create_ok(&bundle);
    let pid = rt.state(&id)["pid"].as_i64().expect("pid").to_string();
    let log = read_log(&files.host_log);
    // poststart belongs to `start`, not `create` (runc 1.1 runs it early).
    assert_eq!(kinds(&log).len(), 3, "create runs 3 hooks: {log:?}");
    assert!(position(&log, "createRuntime") < position(&log, "createContainer"));
    position(&log, "prestart");

    assert_success(&rt.start(&id), "start");
    // poststart may finish just after start returns.
    let deadline = Instant::now() + Duration::from_secs(5);
    while read_log(&files.host_log).len() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = read_log(&files.host_log);
    assert!(position(&log, "createContainer") < position(&log, "startContainer"));
    assert!(position(&log, "prestart") < position(&log, "startContainer"));
    assert!(position(&log, "startContainer") < position(&log, "poststart"));

    assert_success(&rt.kill(&id, "KILL"), "kill");
    rt.wait_for_status(&id, "stopped", Duration::from_secs(10));
    assert!(
        !kinds(&read_log(&files.host_log)).contains(&"poststop"),
        "poststop must wait for delete"
    );
    assert_success(&rt.delete(&id), "delete");
    let log = read_log(&files.host_log);
    assert_eq!(
        position(&log, "poststop"),
        log.len() - 1,
        "{:?}",
        kinds(&log)
    );

    let expected_status = [
        ("createRuntime", "creating"),
        ("createContainer", "creating"),
        ("prestart", "created"),
        ("startContainer", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ];
    for (kind, status) in expected_status {
        let entry = &log[position(&log, kind)];
        assert_eq!(entry.1, status, "{kind} state.status; log {log:?}");
        if kind != "poststop" {
            assert_eq!(entry.2, pid, "{kind} state.pid; log {log:?}");
        }
    }
    assert!(files.host_script.exists());
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn failing_create_runtime_hook_fails_create_cleanly() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["sleep", "1000"]);
    bundle.config_mut()["hooks"] = json!({
        "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]
    });
    bundle.write_config();
    let rt = Runtime::new();
    let out = rt.create(&bundle, &[]);
    assert_failure(&out, "create with failing createRuntime hook");
    if is_runvm() {
        assert!(stderr_of(&out).contains("hooks"), "{}", stderr_of(&out));
    }
    assert_failure(
        &rt.run(&["state", bundle.id()]),
        "state after failed create",
    );
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn failing_poststop_hook_does_not_block_delete() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["true"]);
    bundle.config_mut()["hooks"] = json!({
        "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]
    });
    bundle.write_config();
    let rt = Runtime::new();
    rt.create_ok(&bundle);
    assert_success(&rt.start(bundle.id()), "start");
    rt.wait_for_status(bundle.id(), "stopped", Duration::from_secs(10));
    // The spec: a failing poststop hook is only a warning; the delete completes.
    assert_success(&rt.delete(bundle.id()), "delete with failing poststop hook");
    assert_failure(&rt.run(&["state", bundle.id()]), "state after delete");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn hook_exceeding_timeout_fails_create() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["sleep", "1000"]);
    bundle.config_mut()["hooks"] = json!({
        "createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]
    });
    bundle.write_config();
    let rt = Runtime::new();
    let started = Instant::now();
    let out = rt.create(&bundle, &[]);
    let took = started.elapsed();
    assert_failure(&out, "create with hanging hook");
    assert!(
        took < Duration::from_secs(15),
        "hook timeout not enforced: {took:?}"
    );
    if is_runvm() {
        assert!(stderr_of(&out).contains("hooks"), "{}", stderr_of(&out));
    }
    rt.assert_no_leftovers(&bundle);
}

/// A failure between `start` and the program's execve (here a failing startContainer hook)
/// makes `start` fail and say why, instead of reporting success for a program that never ran.
#[test]
fn failing_start_container_hook_fails_start() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["sleep", "1000"]);
    bundle.config_mut()["hooks"] = json!({"startContainer": [{"path": "/bin/false"}]});
    bundle.write_config();
    let rt = Runtime::new();
    rt.create_ok(&bundle);
    let out = rt.start(bundle.id());
    assert_failure(&out, "start with a failing startContainer hook");
    if is_runvm() {
        assert!(
            stderr_of(&out).contains("startContainer"),
            "{}",
            stderr_of(&out)
        );
    }
    assert_eq!(rt.state(bundle.id())["status"], "stopped");
    assert_success(&rt.delete(bundle.id()), "delete");
    rt.assert_no_leftovers(&bundle);
}
