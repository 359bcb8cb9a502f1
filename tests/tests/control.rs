//! Commands on a running container: exec, pause/resume, ps, update, events.

use runvm_tests::*;
use serde_json::Value;

fn running(rt: &Runtime, bundle: &mut BusyboxBundle) {
    bundle.set_args(&["sleep", "1000"]);
    rt.create_ok(bundle);
    assert_success(&rt.start(bundle.id()), "start");
}

#[test]
fn exec_runs_in_the_containers_namespaces_and_returns_its_code() {
    if !require_root() || !is_runvm() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let rt = Runtime::new();
    running(&rt, &mut bundle);
    let init = rt.state(bundle.id())["pid"].as_i64().expect("pid");
    let out = rt.run(&[
        "exec",
        "--env",
        "EXTRA=1",
        "--user",
        "1000:1000",
        bundle.id(),
        "sh",
        "-c",
        "readlink /proc/self/ns/pid; id -u; echo $EXTRA; readlink /proc/self/ns/pid_for_children; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr_of(&out));
    let lines: Vec<String> = stdout_of(&out).lines().map(String::from).collect();
    let init_pidns = std::fs::read_link(format!("/proc/{init}/ns/pid")).expect("init pid ns");
    assert_eq!(
        lines[0],
        init_pidns.to_string_lossy(),
        "exec is not in the container's pid ns"
    );
    assert_eq!(lines[1], "1000");
    assert_eq!(lines[2], "1");
    assert_eq!(
        lines[3], lines[0],
        "the exec'd process's children would leave the container"
    );
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn exec_with_a_process_file_and_detach_writes_the_pid() {
    if !require_root() || !is_runvm() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let rt = Runtime::new();
    running(&rt, &mut bundle);
    let process = bundle.path().join("process.json");
    std::fs::write(
        &process,
        r#"{"cwd":"/tmp","args":["sleep","300"],"env":["PATH=/bin"],"user":{"uid":0,"gid":0}}"#,
    )
    .expect("process.json");
    let pid_file = bundle.path().join("exec.pid");
    let out = rt.run(&[
        "exec",
        "--detach",
        "--process",
        process.to_str().expect("utf-8"),
        "--pid-file",
        pid_file.to_str().expect("utf-8"),
        bundle.id(),
    ]);
    assert_success(&out, "exec --detach --process");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .parse()
        .expect("a pid");
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).expect("cwd of the exec'd process");
    assert!(cwd.ends_with("tmp"), "{cwd:?}");
    let ps: Value = serde_json::from_str(&stdout_of(&rt.run(&[
        "ps",
        "--format",
        "json",
        bundle.id(),
    ])))
    .expect("ps json");
    assert!(
        ps.as_array().expect("array").iter().any(|p| p == pid),
        "{ps}"
    );
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn exec_of_a_missing_program_fails_clearly() {
    if !require_root() || !is_runvm() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let rt = Runtime::new();
    running(&rt, &mut bundle);
    let out = rt.run(&["exec", bundle.id(), "no-such-program"]);
    assert_failure(&out, "exec of a missing program");
    assert!(stderr_of(&out).contains("not found"), "{}", stderr_of(&out));
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
}

#[test]
fn pause_freezes_and_resume_thaws() {
    if !require_root() || !is_runvm() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let rt = Runtime::new();
    running(&rt, &mut bundle);
    assert_success(&rt.run(&["pause", bundle.id()]), "pause");
    assert_eq!(rt.state(bundle.id())["status"], "paused");
    let pid = rt.state(bundle.id())["pid"].as_i64().expect("pid");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let proc_state = stat
        .rsplit(')')
        .next()
        .expect("stat")
        .split_whitespace()
        .next();
    assert!(
        matches!(proc_state, Some("D") | Some("S") | Some("T")),
        "{stat}"
    );
    assert_failure(
        &rt.run(&["pause", bundle.id()]),
        "pause of a paused container",
    );
    assert_success(&rt.run(&["resume", bundle.id()]), "resume");
    assert_eq!(rt.state(bundle.id())["status"], "running");
    assert_failure(
        &rt.run(&["resume", bundle.id()]),
        "resume of a running container",
    );
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn update_changes_limits_from_flags_and_from_a_document() {
    if !require_root() || !is_runvm() {
        return;
    }
    if !std::path::Path::new("/sys/fs/cgroup/pids").is_dir() {
        println!("SKIP: needs the v1 pids hierarchy to read the limit back");
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let rt = Runtime::new();
    running(&rt, &mut bundle);
    let pids_max = format!("/sys/fs/cgroup/pids{}/pids.max", bundle.cgroups_path());
    assert_success(
        &rt.run(&["update", "--pids-limit", "42", bundle.id()]),
        "update --pids-limit",
    );
    assert_eq!(
        std::fs::read_to_string(&pids_max).expect("pids.max").trim(),
        "42"
    );
    let doc = bundle.path().join("resources.json");
    std::fs::write(&doc, r#"{"pids":{"limit":17}}"#).expect("resources.json");
    assert_success(
        &rt.run(&[
            "update",
            "--resources",
            doc.to_str().expect("utf-8"),
            bundle.id(),
        ]),
        "update --resources",
    );
    assert_eq!(
        std::fs::read_to_string(&pids_max).expect("pids.max").trim(),
        "17"
    );
    let bad = rt.run(&["update", "--memory", "12q", bundle.id()]);
    assert_failure(&bad, "update with a bad size");
    assert!(stderr_of(&bad).contains("--memory"), "{}", stderr_of(&bad));
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn events_stats_reports_the_containers_pids() {
    if !require_root() || !is_runvm() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let rt = Runtime::new();
    running(&rt, &mut bundle);
    let out = rt.run(&["events", "--stats", bundle.id()]);
    assert_success(&out, "events --stats");
    let event: Value = serde_json::from_str(stdout_of(&out).trim()).expect("one JSON event");
    assert_eq!(event["type"], "stats");
    assert_eq!(event["id"], bundle.id());
    assert_eq!(event["data"]["pids"]["current"], 1, "{event}");
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
}
