//! runvm's own containerd shim (`containerd-shim-runvm-v2`, crate runvm-shim) under containerd
//! 1.6's `ctr --runtime io.containerd.runvm.v2`: output and exit codes through containerd's
//! FIFOs, a detached task with exec, pause/resume, metrics, ps, kill and delete, the task
//! events the shim publishes, terminals, and that nothing (shim process, socket, runvm state,
//! cgroup, rootfs mount) is left behind.
//!
//! Needs tests/clients/setup.sh DIR (which links target/debug/containerd-shim-runvm-v2 onto
//! containerd's PATH) and RUNVM_CLIENTS_DIR=DIR; tests/clients/run.sh does both. Each test
//! SKIPs when containerd or the shim is missing.

// Shared with clients.rs, which uses the parts this file does not.
#[allow(dead_code)]
#[path = "clients/harness.rs"]
mod harness;
#[path = "shim/support.rs"]
mod support;

use std::time::Duration;

use harness::{assert_exit, IMAGE};
use runvm_tests::{assert_success, stderr_of, stdout_of, unique_id};
use support::{
    assert_nothing_left, run_args, shim_of, task_status, wait_status, Cleanup, EventLog,
};

/// Exits 0 on SIGTERM (PID 1 ignores signals it has no handler for).
const TERM_EXITS_0: &str = "trap 'exit 0' TERM; while :; do sleep 0.1; done";

fn rootfs_suffix(id: &str) -> String {
    format!("/{}/{id}/rootfs ", support::NAMESPACE)
}

#[test]
fn shim_run_passes_output_stdin_eof_and_exit_code() {
    let Some((client, dir)) = support::shim_ready() else {
        return;
    };
    let id = unique_id("shim-run");
    let _cleanup = Cleanup {
        client: &client,
        id: id.clone(),
    };
    let events = EventLog::start(&dir, &id);
    // `cat` returns only if the process sees EOF on the stdin FIFO (ctr's stdin is /dev/null).
    let script = "cat; echo to-stdout; echo to-stderr >&2; exit 3";
    let out = client.run("ctr", &run_args(&["--rm", IMAGE, &id, "sh", "-c", script]));
    assert_exit(&out, 3, "ctr run --rm (runvm shim)");
    assert_eq!(stdout_of(&out).trim(), "to-stdout");
    assert!(
        stderr_of(&out).contains("to-stderr"),
        "stderr: {}",
        stderr_of(&out)
    );

    let topics = events.topics_for(&id);
    for topic in [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
    ] {
        assert!(
            topics.iter().any(|t| t == topic),
            "no {topic} in {topics:?}"
        );
    }
    let start = topics.iter().position(|t| t == "/tasks/start").unwrap();
    let exit = topics.iter().position(|t| t == "/tasks/exit").unwrap();
    assert!(start < exit, "exit published before start: {topics:?}");
    let exits = events.lines(&id, "/tasks/exit");
    assert!(
        exits[0].contains("\"exit_status\":3"),
        "exit event: {exits:?}"
    );
    assert_nothing_left(&id, None, &rootfs_suffix(&id));
}

#[test]
fn shim_detached_task_exec_pause_metrics_kill_delete() {
    let Some((client, dir)) = support::shim_ready() else {
        return;
    };
    let id = unique_id("shim-life");
    let cleanup = Cleanup {
        client: &client,
        id: id.clone(),
    };
    let events = EventLog::start(&dir, &id);
    let out = client.run(
        "ctr",
        &run_args(&["-d", IMAGE, &id, "sh", "-c", TERM_EXITS_0]),
    );
    assert_success(&out, "ctr run -d");
    wait_status(&client, &id, "RUNNING", Duration::from_secs(10));
    let (shim_pid, socket) = shim_of(&id).expect("a runvm shim serves the task");
    assert!(std::path::Path::new(&socket).exists(), "socket {socket}");
    let state = std::path::Path::new("/run/containerd/runvm")
        .join(support::NAMESPACE)
        .join(&id);
    assert!(
        state.join("state.json").is_file(),
        "runvm state in {}",
        state.display()
    );

    // exec: output, exit status, and the namespaces of the container (its own pid 1).
    let out = client.run(
        "ctr",
        &[
            "task",
            "exec",
            "--exec-id",
            "e1",
            &id,
            "sh",
            "-c",
            "echo exec-pid1=$(cat /proc/1/comm); exit 7",
        ],
    );
    assert_exit(&out, 7, "ctr task exec");
    assert_eq!(stdout_of(&out).trim(), "exec-pid1=sh");

    // stdin through the exec's FIFO, to EOF.
    let out = support::ctr_with_stdin(
        &dir,
        &[
            "task",
            "exec",
            "--exec-id",
            "e2",
            &id,
            "sh",
            "-c",
            "cat; echo eof-seen",
        ],
        "piped-in\n",
    );
    assert_exit(&out, 0, "ctr task exec with stdin");
    assert_eq!(stdout_of(&out), "piped-in\neof-seen\n");

    // ps lists init (and nothing that is not in the container's cgroup).
    let init_pid = {
        let out = client.run("ctr", &["task", "ls"]);
        stdout_of(&out)
            .lines()
            .find(|l| l.starts_with(&id))
            .and_then(|l| l.split_whitespace().nth(1).map(String::from))
            .expect("init pid in task ls")
    };
    let out = client.run("ctr", &["task", "ps", &id]);
    assert_success(&out, "ctr task ps");
    assert!(
        stdout_of(&out)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(init_pid.as_str())),
        "task ps lacks init {init_pid}: {}",
        stdout_of(&out)
    );

    let out = client.run("ctr", &["task", "pause", &id]);
    assert_success(&out, "ctr task pause");
    assert_eq!(task_status(&client, &id).as_deref(), Some("PAUSED"));
    let freezer = format!(
        "/sys/fs/cgroup/freezer/{}/{id}/freezer.state",
        support::NAMESPACE
    );
    if let Ok(state) = std::fs::read_to_string(&freezer) {
        assert_eq!(state.trim(), "FROZEN", "{freezer}");
    }
    let out = client.run("ctr", &["task", "resume", &id]);
    assert_success(&out, "ctr task resume");
    assert_eq!(task_status(&client, &id).as_deref(), Some("RUNNING"));

    // metrics: containerd decodes the shim's cgroups v1 Metrics.
    let out = client.run("ctr", &["task", "metrics", &id]);
    assert_success(&out, "ctr task metrics");
    let metrics = stdout_of(&out);
    let value = |name: &str| -> Option<u64> {
        metrics
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    assert!(
        value("pids.current").is_some_and(|n| n >= 1),
        "metrics: {metrics}"
    );
    assert!(
        value("memory.usage_in_bytes").is_some_and(|n| n > 0),
        "metrics: {metrics}"
    );
    assert!(
        value("cpuacct.usage").is_some_and(|n| n > 0),
        "metrics: {metrics}"
    );

    // SIGTERM reaches init, whose trap exits 0.
    let out = client.run("ctr", &["task", "kill", &id]);
    assert_success(&out, "ctr task kill");
    wait_status(&client, &id, "STOPPED", Duration::from_secs(8));
    let out = client.run("ctr", &["task", "delete", &id]);
    assert_success(&out, "ctr task delete");
    let out = client.run("ctr", &["container", "rm", &id]);
    assert_success(&out, "ctr container rm");
    drop(cleanup);

    let topics = events.topics_for(&id);
    let expected = [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/exit",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/exit",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
    ];
    assert_eq!(topics, expected, "task events in order");
    let exits = events.lines(&id, "/tasks/exit");
    assert!(
        exits[0].contains("\"id\":\"e1\"") && exits[0].contains("\"exit_status\":7"),
        "{exits:?}"
    );
    // Exit status 0 is left out of containerd's JSON.
    assert!(
        !exits[1].contains("exit_status"),
        "init exit after TERM: {}",
        exits[1]
    );
    let _ = shim_pid;
    assert_nothing_left(&id, Some(&socket), &rootfs_suffix(&id));
}

#[test]
fn shim_kill_all_reaches_every_process() {
    let Some((client, _dir)) = support::shim_ready() else {
        return;
    };
    let id = unique_id("shim-all");
    let _cleanup = Cleanup {
        client: &client,
        id: id.clone(),
    };
    // The background sleep holds the task open even if init alone were killed.
    let out = client.run(
        "ctr",
        &run_args(&[
            "-d",
            IMAGE,
            &id,
            "sh",
            "-c",
            "sleep 1000 & sleep 1000; wait",
        ]),
    );
    assert_success(&out, "ctr run -d");
    wait_status(&client, &id, "RUNNING", Duration::from_secs(10));
    let (_, socket) = shim_of(&id).expect("shim");
    let cgroup_procs = format!(
        "/sys/fs/cgroup/pids/{}/{id}/cgroup.procs",
        support::NAMESPACE
    );
    let count = || {
        std::fs::read_to_string(&cgroup_procs)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    assert!(count() >= 3, "sh and two sleeps in {cgroup_procs}");
    let out = client.run("ctr", &["task", "kill", "--all", "-s", "SIGKILL", &id]);
    assert_success(&out, "ctr task kill --all");
    wait_status(&client, &id, "STOPPED", Duration::from_secs(10));
    assert_eq!(count(), 0, "processes left in {cgroup_procs}");
    let out = client.run("ctr", &["task", "delete", &id]);
    assert_success(&out, "ctr task delete");
    let out = client.run("ctr", &["container", "rm", &id]);
    assert_success(&out, "ctr container rm");
    assert_nothing_left(&id, Some(&socket), &rootfs_suffix(&id));
}

#[test]
fn shim_terminal_for_run_and_exec() {
    let Some((client, dir)) = support::shim_ready() else {
        return;
    };
    if !std::path::Path::new("/usr/bin/script").is_file() {
        println!("SKIP: script(1) (bsdutils) is needed to give ctr a terminal");
        return;
    }
    let id = unique_id("shim-tty");
    let _cleanup = Cleanup {
        client: &client,
        id: id.clone(),
    };
    let out = client.run_in_terminal(
        "ctr",
        &run_args(&["--rm", "-t", IMAGE, &id, "sh", "-c", "tty; exit 4"]),
    );
    assert_exit(&out, 4, "ctr run -t");
    assert!(
        stdout_of(&out).contains("/dev/pts/"),
        "tty: {}",
        stdout_of(&out)
    );

    // ResizePty: ctr passes its terminal's size on after start; wait for it to arrive.
    let wait_size = "for i in $(seq 100); do s=$(stty size 2>/dev/null); \
                     [ -n \"$s\" ] && [ \"$s\" != '0 0' ] && break; \
                     sleep 0.1; done; echo size=$s";
    let line = format!(
        "stty rows 33 cols 101; {} run --rm -t --runtime {} {IMAGE} {id} sh -c '{}'",
        dir.join("bin/ctr").display(),
        support::RUNTIME,
        wait_size.replace('\'', "'\\''")
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"]);
    let out = harness::run_timed(cmd, &line, Duration::from_secs(60));
    assert_exit(&out, 0, "ctr run -t with a 33x101 terminal");
    assert!(
        stdout_of(&out).contains("size=33 101"),
        "pty size: {}",
        stdout_of(&out)
    );

    let out = client.run("ctr", &run_args(&["-d", IMAGE, &id, "sleep", "1000"]));
    assert_success(&out, "ctr run -d");
    wait_status(&client, &id, "RUNNING", Duration::from_secs(10));
    let out = client.run_in_terminal(
        "ctr",
        &[
            "task",
            "exec",
            "-t",
            "--exec-id",
            "t1",
            &id,
            "sh",
            "-c",
            "tty; exit 5",
        ],
    );
    assert_exit(&out, 5, "ctr task exec -t");
    assert!(
        stdout_of(&out).contains("/dev/pts/"),
        "exec tty: {}",
        stdout_of(&out)
    );
}

#[test]
fn shim_crash_is_cleaned_up_by_the_delete_action() {
    let Some((client, _dir)) = support::shim_ready() else {
        return;
    };
    let id = unique_id("shim-crash");
    let _cleanup = Cleanup {
        client: &client,
        id: id.clone(),
    };
    let out = client.run("ctr", &run_args(&["-d", IMAGE, &id, "sleep", "1000"]));
    assert_success(&out, "ctr run -d");
    wait_status(&client, &id, "RUNNING", Duration::from_secs(10));
    let (shim_pid, socket) = shim_of(&id).expect("shim");
    let cgroup_procs = format!(
        "/sys/fs/cgroup/pids/{}/{id}/cgroup.procs",
        support::NAMESPACE
    );
    let container_pids = std::fs::read_to_string(&cgroup_procs).expect("container cgroup");
    // The shim and its worker die without a word (this test started them, through ctr).
    let worker = std::fs::read_to_string(format!("/proc/{shim_pid}/task/{shim_pid}/children"))
        .unwrap_or_default();
    for pid in
        std::iter::once(shim_pid.to_string()).chain(worker.split_whitespace().map(String::from))
    {
        let pid: i32 = pid.parse().expect("pid");
        // SAFETY: kill(2) with a pid read from /proc and a signal number.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // containerd notices and runs `containerd-shim-runvm-v2 ... delete`, which force-deletes
    // the container and removes the socket.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while task_status(&client, &id).is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "task {id} outlived its shim by 15 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in container_pids.split_whitespace() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty()
                || stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z')),
            "container process {pid} survived: {stat}"
        );
    }
    let out = client.run("ctr", &["container", "rm", &id]);
    assert_success(&out, "ctr container rm");
    assert_nothing_left(&id, Some(&socket), &rootfs_suffix(&id));
}
