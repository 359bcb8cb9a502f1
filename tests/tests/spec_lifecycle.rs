//! The lifecycle rules the OCI runtime-tools validation programs check (create, start,
//! state, kill, delete, pidfile, hooks and their stdin, misc config properties), each
//! driven the way those programs drive a runtime: bare `ID` arguments, signal names
//! without the SIG prefix, `state` polled until the wanted status shows up.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use runvm_tests::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

/// The fields of the runtime-spec State object (what the suite compares).
fn spec_state(state: &Value) -> Value {
    json!({
        "ociVersion": state["ociVersion"],
        "id": state["id"],
        "status": state["status"],
        "pid": state["pid"],
        "bundle": state["bundle"],
        "annotations": state["annotations"],
    })
}

fn pid_of(state: &Value) -> i64 {
    state["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("state has no numeric pid: {state}"))
}

/// A file the container writes at `/name`, seen from the host.
fn rootfs_file(bundle: &BusyboxBundle, name: &str) -> PathBuf {
    bundle.rootfs().join(name)
}

fn read_or_empty(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A host-side hook that runs the bundle's busybox `sh -c script`.
fn sh_hook(bundle: &BusyboxBundle, script: &str) -> Value {
    json!({"path": bundle.rootfs().join("bin/sh"), "args": ["sh", "-c", script]})
}

fn false_hook(bundle: &BusyboxBundle) -> Value {
    json!({"path": bundle.rootfs().join("bin/false"), "args": ["false"]})
}

fn wait_for_file(path: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn create_needs_an_id_and_refuses_a_duplicate() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["ls"]);
    let rt = Runtime::new();
    let id = bundle.id().to_string();

    let out = rt.run(&["create", "--bundle", bundle.path_str()]);
    assert_failure(&out, "create without an id");
    rt.assert_root_empty();

    rt.create_ok(&bundle);
    assert_eq!(rt.state(&id)["id"], id.as_str());

    assert_failure(&rt.create(&bundle, &[]), "create with an id in use");
    let state = rt.state(&id);
    assert_eq!(
        state["status"], "created",
        "the first container must survive: {state}"
    );

    assert_success(&rt.delete_force(&id), "delete --force");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn delete_refuses_created_and_running_containers() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new();
    assert_failure(&rt.run(&["delete"]), "delete without an id");

    // (process, started?) like the suite: a created `true`, then a running `sleep`.
    for (args, start) in [(&["true"][..], false), (&["sleep", "30"][..], true)] {
        let mut bundle = BusyboxBundle::new();
        bundle.set_args(args);
        let id = bundle.id().to_string();
        rt.create_ok(&bundle);
        if start {
            assert_success(&rt.start(&id), "start");
        }
        let before = rt.state(&id);
        let pid = pid_of(&before);

        assert_failure(
            &rt.delete(&id),
            &format!("delete of a {} container", before["status"]),
        );
        let after = rt.state(&id);
        assert_eq!(
            spec_state(&after),
            spec_state(&before),
            "delete must have no effect"
        );
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} was killed"
        );

        assert_success(&rt.kill(&id, "KILL"), "kill KILL");
        rt.delete_once_stopped(&bundle);
    }
}

#[test]
fn start_runs_the_process_once_and_only_on_start() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_script("echo 'process called' >> /output");
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    let output = rootfs_file(&bundle, "output");

    assert_failure(&rt.run(&["start"]), "start without an id");
    assert_failure(&rt.start(&id), "start of a container that does not exist");

    rt.create_ok(&bundle);
    assert!(!output.exists(), "process.args ran before start");
    assert_success(&rt.start(&id), "start");
    rt.wait_for_status(&id, "stopped", WAIT);
    assert_eq!(read_or_empty(&output), "process called\n");

    assert_failure(&rt.start(&id), "start of a stopped container");
    assert_eq!(rt.state(&id)["status"], "stopped");
    assert_eq!(
        read_or_empty(&output),
        "process called\n",
        "second start must not run it"
    );
    assert_success(&rt.delete(&id), "delete");
    rt.assert_no_leftovers(&bundle);
}

/// runvm refuses a config without `process` at create (the spec only needs the error by
/// `start`); the validation program `start` expects both to succeed, which no runtime that
/// follows runtime.md ("start MUST generate an error if process was not set") can do.
#[test]
fn create_without_process_is_refused() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle
        .config_mut()
        .as_object_mut()
        .expect("config object")
        .remove("process");
    bundle.write_config();
    let rt = Runtime::new();
    let out = rt.create(&bundle, &[]);
    assert_failure(&out, "create without process");
    if is_runvm() {
        assert!(stderr_of(&out).contains("process"), "{}", stderr_of(&out));
    }
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn state_needs_an_existing_container() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["true"]);
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    assert_failure(&rt.run(&["state"]), "state without an id");
    assert_failure(&rt.run(&["state", &id]), "state of an unknown container");

    rt.create_ok(&bundle);
    let state = rt.state(&id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], id.as_str());
    assert!(state["ociVersion"].is_string(), "{state}");
    assert!(pid_of(&state) > 0, "{state}");
    assert_eq!(
        state["bundle"],
        bundle.path_str(),
        "bundle must be the path given"
    );

    assert_success(&rt.kill(&id, "KILL"), "kill KILL");
    let stopped = rt.wait_for_status(&id, "stopped", WAIT);
    assert_eq!(
        stopped["pid"], 0,
        "a stopped container reports pid 0: {stopped}"
    );
    assert_success(&rt.delete(&id), "delete");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn kill_works_only_on_created_or_running_containers() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new();
    // `kill KILL`: the signal is taken for an id, which does not exist.
    assert_failure(&rt.run(&["kill", "KILL"]), "kill without an id");
    assert_failure(
        &rt.kill("no-such-container-here", "KILL"),
        "kill of an unknown id",
    );

    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["true"]);
    let id = bundle.id().to_string();
    rt.create_ok(&bundle);
    assert_success(&rt.kill(&id, "KILL"), "kill of a created container");
    rt.wait_for_status(&id, "stopped", WAIT);
    assert_success(&rt.delete(&id), "delete");

    rt.create_ok(&bundle);
    assert_success(&rt.start(&id), "start");
    let stopped = rt.wait_for_status(&id, "stopped", WAIT);
    assert_failure(&rt.kill(&id, "KILL"), "kill of a stopped container");
    let after = rt.state(&id);
    assert_eq!(
        spec_state(&after),
        spec_state(&stopped),
        "kill must have no effect"
    );
    assert_success(&rt.delete(&id), "delete");

    bundle.set_args(&["sleep", "30"]);
    rt.create_ok(&bundle);
    assert_success(&rt.start(&id), "start");
    assert_success(&rt.kill(&id, "KILL"), "kill of a running container");
    rt.delete_once_stopped(&bundle);
}

#[test]
fn kill_delivers_named_signals_to_a_trapping_init() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    // One id reused for each signal, as the suite does.
    for signal in ["TERM", "USR1", "USR2"] {
        bundle.set_script(&format!(
            "trap 'touch /{signal}' {signal}; touch /ready-{signal}; sleep 10 & wait $!"
        ));
        rt.create_ok(&bundle);
        assert_success(&rt.start(&id), "start");
        wait_for_file(&rootfs_file(&bundle, &format!("ready-{signal}")), WAIT);
        assert_success(&rt.kill(&id, signal), &format!("kill {signal}"));
        rt.wait_for_status(&id, "stopped", Duration::from_secs(5));
        assert!(
            rootfs_file(&bundle, signal).exists(),
            "the {signal} trap did not run"
        );
        assert_success(&rt.delete(&id), "delete");
    }
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn pid_file_holds_the_state_pid_without_newline() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["true"]);
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    let pid_dir = tempfile::tempdir().expect("pid file dir");
    let pid_file = pid_dir.path().join("pidfile");

    let out = rt.create(&bundle, &["--pid-file", pid_file.to_str().expect("utf-8")]);
    assert_success(&out, "create --pid-file");
    let text = std::fs::read_to_string(&pid_file).expect("read pid file");
    // The suite parses the whole file with strconv.Atoi: digits only.
    assert!(
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()),
        "pid file {text:?}"
    );
    assert_eq!(text.parse::<i64>().ok(), Some(pid_of(&rt.state(&id))));

    assert_success(&rt.start(&id), "start");
    rt.delete_once_stopped(&bundle);
}

/// What each hook kind read on stdin, parsed.
fn hook_stdin(bundle: &BusyboxBundle, kind: &str) -> Value {
    let path = rootfs_file(bundle, kind);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{kind} hook wrote nothing ({}): {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{kind} stdin is not JSON ({e}): {text}"))
}

/// A bundle whose prestart, poststart and poststop hooks save their stdin in the rootfs,
/// each with the one-second timeout the suite uses.
fn bundle_saving_hook_stdin() -> BusyboxBundle {
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["true"]);
    let save = |bundle: &BusyboxBundle, kind: &str| {
        let mut hook = sh_hook(
            bundle,
            &format!("cat > {}", rootfs_file(bundle, kind).display()),
        );
        hook["timeout"] = json!(1);
        json!([hook])
    };
    let hooks = json!({
        "prestart": save(&bundle, "prestart"),
        "poststart": save(&bundle, "poststart"),
        "poststop": save(&bundle, "poststop"),
    });
    bundle.config_mut()["hooks"] = hooks;
    bundle.config_mut()["annotations"] =
        json!({"org.opencontainers.runtime-tools": "hook stdin test"});
    bundle.write_config();
    bundle
}

#[test]
fn hooks_read_the_container_state_on_stdin() {
    if !require_root() {
        return;
    }
    let bundle = bundle_saving_hook_stdin();
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    rt.create_ok(&bundle);
    let pid = pid_of(&rt.state(&id));
    assert_success(&rt.start(&id), "start");
    rt.wait_for_status(&id, "stopped", WAIT);
    assert_success(&rt.delete(&id), "delete");

    let annotations = json!({"org.opencontainers.runtime-tools": "hook stdin test"});
    for kind in ["prestart", "poststart", "poststop"] {
        let state = hook_stdin(&bundle, kind);
        assert_eq!(state["id"], id.as_str(), "{kind}: {state}");
        assert_eq!(state["bundle"], bundle.path_str(), "{kind}: {state}");
        assert_eq!(state["annotations"], annotations, "{kind}: {state}");
        assert!(
            state["status"].as_str().is_some_and(|s| !s.is_empty()),
            "{kind}: {state}"
        );
        if kind != "poststop" {
            assert_eq!(pid_of(&state), pid, "{kind}: {state}");
        }
    }
    assert_eq!(hook_stdin(&bundle, "poststart")["status"], "running");
    rt.assert_no_leftovers(&bundle);
}

/// The validation program hooks_stdin wants `created` in the prestart hook's state; runvm
/// still says `creating` there (process/launch.rs, run_create_hooks).
#[test]

fn prestart_hook_sees_status_created() {
    if !require_root() {
        return;
    }
    let bundle = bundle_saving_hook_stdin();
    let rt = Runtime::new();
    rt.create_ok(&bundle);
    assert_eq!(hook_stdin(&bundle, "prestart")["status"], "created");
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
}

#[test]
fn hooks_run_in_order_and_poststop_waits_for_delete() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let output = rootfs_file(&bundle, "output");
    let echo = |bundle: &BusyboxBundle, text: &str| {
        sh_hook(bundle, &format!("echo '{text}' >> {}", output.display()))
    };
    let hooks = json!({
        "prestart": [echo(&bundle, "pre-start1"), echo(&bundle, "pre-start2")],
        "poststart": [echo(&bundle, "post-start1"), echo(&bundle, "post-start2")],
        "poststop": [echo(&bundle, "post-stop1"), echo(&bundle, "post-stop2")],
    });
    bundle.config_mut()["hooks"] = hooks;
    bundle.set_script("echo 'process called' >> /output");
    let rt = Runtime::new();
    let id = bundle.id().to_string();

    rt.create_ok(&bundle);
    // runvm runs prestart hooks during create, after the namespaces exist (runtime-spec 1.0.2).
    assert_eq!(read_or_empty(&output), "pre-start1\npre-start2\n");
    assert_success(&rt.start(&id), "start");
    rt.wait_for_status(&id, "stopped", WAIT);
    let before_delete = read_or_empty(&output);
    assert!(
        !before_delete.contains("post-stop"),
        "poststop ran before delete"
    );
    // The process and the poststart hooks run concurrently: only compare each one's order.
    let mut lines: Vec<&str> = before_delete.lines().collect();
    lines.retain(|l| *l != "process called");
    assert_eq!(
        lines,
        ["pre-start1", "pre-start2", "post-start1", "post-start2"],
        "{before_delete}"
    );
    assert_eq!(
        before_delete.matches("process called").count(),
        1,
        "{before_delete}"
    );
    assert_success(&rt.delete(&id), "delete");
    assert_eq!(
        read_or_empty(&output),
        format!("{before_delete}post-stop1\npost-stop2\n")
    );
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn failing_prestart_hook_aborts_create() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["hooks"] = json!({"prestart": [false_hook(&bundle)]});
    bundle.set_script("touch /output");
    let rt = Runtime::new();
    let id = bundle.id().to_string();

    assert_failure(
        &rt.create(&bundle, &[]),
        "create with a failing prestart hook",
    );
    assert_failure(&rt.start(&id), "start after the failed create");
    assert!(!rootfs_file(&bundle, "output").exists(), "the process ran");
    assert_failure(&rt.run(&["state", &id]), "state after the failed create");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn failing_poststart_and_poststop_hooks_only_warn() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let output = rootfs_file(&bundle, "output");
    let note = |bundle: &BusyboxBundle, text: &str| {
        sh_hook(bundle, &format!("echo '{text}' >> {}", output.display()))
    };
    let hooks = json!({
        "poststart": [false_hook(&bundle), note(&bundle, "post-start called")],
        "poststop": [false_hook(&bundle), note(&bundle, "post-stop called")],
    });
    bundle.config_mut()["hooks"] = hooks;
    bundle.set_args(&["true"]);
    let rt = Runtime::new();
    let id = bundle.id().to_string();

    rt.create_ok(&bundle);
    let start = rt.start(&id);
    assert_success(&start, "start with a failing poststart hook");
    rt.wait_for_status(&id, "stopped", WAIT);
    assert_eq!(read_or_empty(&output), "post-start called\n");
    let delete = rt.delete(&id);
    assert_success(&delete, "delete with a failing poststop hook");
    assert_eq!(
        read_or_empty(&output),
        "post-start called\npost-stop called\n"
    );
    if is_runvm() {
        assert!(
            stderr_of(&start).contains("poststart[0]"),
            "{}",
            stderr_of(&start)
        );
        assert!(
            stderr_of(&delete).contains("poststop[0]"),
            "{}",
            stderr_of(&delete)
        );
    }
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn unknown_properties_pass_and_invalid_version_fails() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new();
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["process"]["args"] = json!(["true"]);
    bundle.config_mut()["annotations"] = json!({format!("org.{}", bundle.id()): ""});
    bundle.config_mut()["unknown"] = json!("unknown");
    bundle.write_config();
    let id = bundle.id().to_string();
    rt.create_ok(&bundle);
    assert_success(&rt.start(&id), "start");
    rt.wait_for_status(&id, "stopped", WAIT);
    assert_success(&rt.delete(&id), "delete");

    bundle.config_mut()["ociVersion"] = json!("invalid");
    bundle.write_config();
    assert_failure(
        &rt.create(&bundle, &[]),
        "create with ociVersion \"invalid\"",
    );
    rt.assert_no_leftovers(&bundle);
}

/// misc_props runs the generator's default program (/runtimetest) without copying it
/// into the bundle: create and start must still succeed, the exec failure only shows as
/// the container stopping.
#[test]
fn missing_program_fails_after_start_not_at_create() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["/runtimetest", "--path=/"]);
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    rt.create_ok(&bundle);
    assert_success(&rt.start(&id), "start of a missing program");
    rt.delete_once_stopped(&bundle);
}

#[test]
fn config_rewritten_after_create_does_not_matter() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    {
        let config = bundle.config_mut();
        config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        config["linux"]["rootfsPropagation"] = json!("shared");
        config["process"]["oomScoreAdj"] = json!(100);
    }
    bundle.set_script(
        "cat /proc/sys/net/ipv4/ip_forward /proc/self/oom_score_adj > /out; ulimit -n >> /out",
    );
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    rt.create_ok(&bundle);
    std::fs::write(
        bundle.path().join("config.json"),
        r#"{"ociVersion": "1.0.0"}"#,
    )
    .expect("overwrite config.json");
    assert_success(&rt.start(&id), "start after config.json was replaced");
    rt.wait_for_status(&id, "stopped", WAIT);
    assert_eq!(
        read_or_empty(&rootfs_file(&bundle, "out")),
        "1\n100\n1024\n"
    );
    assert_success(&rt.delete(&id), "delete");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn delete_removes_its_cgroup_but_not_foreign_ones() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["linux"]["resources"]["pids"] = json!({"limit": 1000});
    bundle.set_args(&["true"]);
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    let foreign = PathBuf::from(format!("/sys/fs/cgroup/pids/foreign-{id}"));
    if !Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists() {
        println!("SKIP: no cgroup v1 pids hierarchy");
        return;
    }
    std::fs::create_dir(&foreign).expect("mkdir foreign cgroup");

    rt.create_ok(&bundle);
    let pid = pid_of(&rt.state(&id));
    let own = Path::new("/sys/fs/cgroup/pids").join(bundle.cgroups_path().trim_start_matches('/'));
    assert_eq!(read_or_empty(&own.join("pids.max")).trim(), "1000");
    // Like delete_only_create_resources: move the container into a cgroup it did not make.
    std::fs::write(foreign.join("tasks"), pid.to_string()).expect("move into foreign cgroup");
    assert_success(&rt.start(&id), "start");
    rt.wait_for_status(&id, "stopped", WAIT);
    assert_success(&rt.delete(&id), "delete");

    let survived = foreign.exists();
    let _ = std::fs::remove_dir(&foreign);
    assert!(survived, "delete removed a cgroup it did not create");
    rt.assert_no_leftovers(&bundle);
}
