//! create / start / state / kill / delete / run / list, as runc does them.

use std::time::Duration;

use runvm_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

fn pid_of(state: &Value) -> i64 {
    state["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("state has no numeric pid: {state}"))
}

fn proc_exists(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn create_start_kill_delete() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let id = bundle.id().to_string();

    rt.create_ok(&bundle);
    let state = rt.state(&id);
    assert_eq!(state["status"], "created", "{state}");
    assert_eq!(state["id"], id.as_str());
    assert!(state["ociVersion"].is_string(), "{state}");
    assert_eq!(
        std::fs::canonicalize(state["bundle"].as_str().unwrap_or("")).ok(),
        std::fs::canonicalize(bundle.path()).ok(),
        "{state}"
    );
    let pid = pid_of(&state);
    assert!(
        pid > 0 && proc_exists(pid),
        "created pid {pid} must be alive"
    );
    // The leftover checks below are only meaningful if they see the live container.
    assert!(
        cgroup_dirs(bundle.cgroups_path())
            .iter()
            .any(|d| d.exists()),
        "no cgroup dir for {}",
        bundle.cgroups_path()
    );
    assert!(proc_in_cgroup(bundle.cgroups_path()).contains(&(pid as i32)));

    assert_success(&rt.start(&id), "start");
    let state = rt.state(&id);
    assert_eq!(state["status"], "running", "{state}");
    assert_eq!(
        pid_of(&state),
        pid,
        "start must exec in the created process"
    );

    assert_success(&rt.kill(&id, "KILL"), "kill KILL");
    rt.wait_for_status(&id, "stopped", WAIT);

    assert_success(&rt.delete(&id), "delete");
    assert_failure(&rt.run(&["state", &id]), "state after delete");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn start_twice_fails() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    rt.create_ok(&bundle);
    assert_success(&rt.start(&id), "first start");
    assert_failure(&rt.start(&id), "second start");
    assert_eq!(rt.state(&id)["status"], "running");
    assert_success(&rt.delete_force(&id), "delete --force");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn delete_running_needs_force() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    rt.create_ok(&bundle);
    assert_success(&rt.start(&id), "start");
    let pid = pid_of(&rt.state(&id));

    assert_failure(&rt.delete(&id), "delete of a running container");
    assert_eq!(rt.state(&id)["status"], "running");
    assert!(proc_exists(pid));

    assert_success(&rt.delete_force(&id), "delete --force");
    assert_failure(&rt.run(&["state", &id]), "state after delete --force");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn delete_force_of_created_container() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["sleep", "1000"]);
    let rt = Runtime::new();
    rt.create_ok(&bundle);
    let pid = pid_of(&rt.state(bundle.id()));
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
    rt.assert_no_leftovers(&bundle);
    assert!(
        !proc_exists(pid) || is_zombie(pid),
        "init {pid} survived delete"
    );
}

fn is_zombie(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

#[test]
fn delete_of_stopped_container_without_force() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["true"]);
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    rt.create_ok(&bundle);
    assert_success(&rt.start(&id), "start");
    rt.delete_once_stopped(&bundle);
}

#[test]
fn run_returns_exit_code() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let rt = Runtime::new();
    let out = rt.run_script(&mut bundle, "echo out; echo err >&2; exit 3");
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "out\n");
    assert!(stderr_of(&out).contains("err\n"), "{}", stderr_of(&out));
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn run_killed_by_signal_exits_128_plus_signal() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    let out = std::thread::scope(|s| {
        let runner = s.spawn(|| rt.run_bundle(&bundle));
        rt.track(&id);
        wait_until_running(&rt, &id);
        assert_success(&rt.kill(&id, "9"), "kill 9");
        runner.join().expect("run thread")
    });
    assert_eq!(
        out.status.code(),
        Some(128 + 9),
        "stderr: {}",
        stderr_of(&out)
    );
    rt.assert_no_leftovers(&bundle);
}

/// `run` in another thread: wait until the container is up.
fn wait_until_running(rt: &Runtime, id: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if rt.try_state(id).is_some_and(|s| s["status"] == "running") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{id} never reached running");
}

#[test]
fn kill_sigterm_reaches_a_trapping_init() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_script("trap 'exit 0' TERM; while :; do sleep 0.2; done");
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    rt.create_ok(&bundle);
    assert_success(&rt.start(&id), "start");
    assert_success(&rt.kill(&id, "SIGTERM"), "kill SIGTERM");
    rt.delete_once_stopped(&bundle);
}

#[test]
fn run_detach_returns_while_container_runs() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    rt.track(&id);
    let out = rt.run_with_timeout(
        &["run", "--detach", "--bundle", bundle.path_str(), &id],
        Duration::from_secs(30),
    );
    assert_success(&out, "run --detach");
    let state = rt.state(&id);
    assert_eq!(state["status"], "running", "{state}");
    assert!(proc_exists(pid_of(&state)));
    assert_success(&rt.kill(&id, "KILL"), "kill");
    rt.delete_once_stopped(&bundle);
}

#[test]
fn run_keep_leaves_stopped_container() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_script("exit 5");
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    rt.track(&id);
    let out = rt.run(&["run", "--keep", "--bundle", bundle.path_str(), &id]);
    assert_eq!(out.status.code(), Some(5), "stderr: {}", stderr_of(&out));
    assert_eq!(rt.state(&id)["status"], "stopped");
    assert_success(&rt.delete(&id), "delete");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn pid_file_matches_state_pid() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let pid_file = bundle.path().join("init.pid");
    let out = rt.create(&bundle, &["--pid-file", pid_file.to_str().expect("utf-8")]);
    assert_success(&out, "create --pid-file");
    let text = std::fs::read_to_string(&pid_file).expect("pid file written");
    let from_file: i64 = text.trim().parse().expect("pid file holds a number");
    assert_eq!(from_file, pid_of(&rt.state(bundle.id())));
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn duplicate_id_fails_and_keeps_first() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    rt.create_ok(&bundle);
    let first = rt.state(&id);

    let out = rt.create(&bundle, &[]);
    assert_failure(&out, "second create with the same id");
    if is_runvm() {
        assert!(
            stderr_of(&out).contains("container id"),
            "{}",
            stderr_of(&out)
        );
    }
    let after = rt.state(&id);
    assert_eq!(after["status"], "created");
    assert_eq!(after["pid"], first["pid"]);
    assert!(proc_exists(pid_of(&after)));

    assert_success(&rt.delete_force(&id), "delete --force");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn list_shows_container_in_table_and_json() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&["sleep", "1000"]);
    let rt = Runtime::new();
    let id = bundle.id().to_string();
    rt.create_ok(&bundle);
    let pid = pid_of(&rt.state(&id));

    let table = rt.run(&["list"]);
    assert_success(&table, "list");
    let text = stdout_of(&table);
    let row = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id.as_str()))
        .unwrap_or_else(|| panic!("no row for {id} in:\n{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols.get(1).copied(),
        Some(pid.to_string().as_str()),
        "{row}"
    );
    assert_eq!(cols.get(2).copied(), Some("created"), "{row}");
    assert!(
        text.lines().next().unwrap_or("").starts_with("ID"),
        "{text}"
    );

    let json = rt.run(&["list", "--format", "json"]);
    assert_success(&json, "list --format json");
    let list: Value = serde_json::from_slice(&json.stdout).expect("list json parses");
    let entry = list
        .as_array()
        .expect("list json is an array")
        .iter()
        .find(|c| c["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} missing from {list}"));
    assert_eq!(entry["status"], "created");
    assert_eq!(entry["pid"], pid);

    assert_success(&rt.delete_force(&id), "delete --force");
    let empty = rt.run(&["list", "--format", "json"]);
    assert_success(&empty, "list after delete");
    let list: Value = serde_json::from_slice(&empty.stdout).unwrap_or(Value::Null);
    assert!(
        list.is_null() || list.as_array().is_some_and(|a| a.is_empty()),
        "list after delete: {list}"
    );
    rt.assert_no_leftovers(&bundle);
}
