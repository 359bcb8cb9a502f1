//! Real clients driving runvm as their OCI runtime: podman 4.3 (through conmon), containerd 1.6
//! with ctr (through the io.containerd.runc.v2 shim and --runc-binary), dockerd 20.10 (through
//! containerd, `--add-runtime runvm=...`). All offline, on the busybox image setup.sh builds.
//!
//! Needs tests/clients/setup.sh DIR and RUNVM_CLIENTS_DIR=DIR (tests/clients/run.sh does both
//! and tears down); each test SKIPs when its client is missing or not set up.

// The harness lives beside this file, in tests/tests/clients/, so Cargo does not build it as a test.
#[path = "clients/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{assert_exit, Client, IMAGE};
use runvm_tests::{assert_failure, assert_success, stderr_of, stdout_of, unique_id};

/// A loop that exits 0 on SIGTERM: PID 1 ignores signals it has no handler for, so a plain
/// `sleep` would only prove that the client falls back to SIGKILL.
const TERM_EXITS_0: &str = "trap 'exit 0' TERM; while :; do sleep 0.1; done";

/// How long a stop may take when SIGTERM reached the container (clients wait 10 s before
/// SIGKILL, so anything below proves the TERM path works).
const STOP_BY_TERM: Duration = Duration::from_secs(8);

/// Removes a container through its client on drop, so a failing test leaks nothing.
struct Cleanup<'a> {
    client: &'a Client,
    tool: &'static str,
    name: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let name = self.name.as_str();
        match self.tool {
            "ctr" => {
                let _ = self
                    .client
                    .run("ctr", &["task", "kill", "-s", "SIGKILL", name]);
                let _ = self.client.run("ctr", &["task", "delete", "--force", name]);
                let _ = self.client.run("ctr", &["container", "delete", name]);
            }
            "podman" => {
                let _ = self
                    .client
                    .run("podman", &["rm", "--force", "--time", "0", name]);
            }
            "podman-pod" => {
                let _ = self
                    .client
                    .run("podman", &["pod", "rm", "--force", "--time", "0", name]);
            }
            _ => {
                let _ = self.client.run("docker", &["rm", "--force", name]);
            }
        }
    }
}

fn cleanup<'a>(client: &'a Client, tool: &'static str, name: &str) -> Cleanup<'a> {
    Cleanup {
        client,
        tool,
        name: name.to_string(),
    }
}

/// The container id a client wrote with --cidfile.
fn read_cidfile(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cidfile {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Runs `script` in the container through `tool exec NAME` and returns its stdout.
fn exec_stdout(client: &Client, tool: &str, name: &str, script: &str) -> String {
    let out = client.run(tool, &["exec", name, "sh", "-c", script]);
    assert_success(&out, &format!("{tool} exec {name} {script}"));
    stdout_of(&out)
}

// ---------------------------------------------------------------- podman and docker alike

/// `run` flags a client needs to pick runvm: docker names the runtime (and gets no bridge
/// network here); podman's runtime comes from the containers.conf setup.sh wrote.
fn runtime_flags(tool: &str) -> &'static [&'static str] {
    match tool {
        "docker" => &["--runtime", "runvm", "--network", "none"],
        _ => &[],
    }
}

/// Starts a detached container running [`TERM_EXITS_0`] with `tool`; returns its full id.
fn detached(client: &Client, tool: &str, name: &str) -> String {
    let mut args = vec!["run", "--detach"];
    args.extend(runtime_flags(tool));
    args.extend(["--name", name, IMAGE, "sh", "-c", TERM_EXITS_0]);
    let out = client.run(tool, &args);
    assert_success(&out, &format!("{tool} run --detach"));
    stdout_of(&out).trim().to_string()
}

fn podman_detached(client: &Client, name: &str) -> String {
    detached(client, "podman", name)
}

fn docker_detached(client: &Client, name: &str) -> String {
    detached(client, "docker", name)
}

/// exec passes output and exit code through, then [`exec_tty_stop_rm`].
fn detached_exec_stop_rm(tool: &'static str) {
    let Some(client) = Client::ready(tool) else {
        return;
    };
    let argv = client.argv_log();
    let name = unique_id(&format!("{tool}-life"));
    let _guard = cleanup(&client, tool, &name);
    let id = detached(&client, tool, &name);

    let out = client.run(tool, &["exec", &name, "sh", "-c", "echo in exec; exit 5"]);
    assert_exit(&out, 5, &format!("{tool} exec sh -c 'exit 5'"));
    assert_eq!(stdout_of(&out).trim(), "in exec");
    exec_tty_stop_rm(&client, tool, &name);

    for command in ["create", "start", "exec", "kill", "delete"] {
        argv.assert_called(&id, command);
    }
}

#[test]
fn podman_detached_exec_stop_rm() {
    detached_exec_stop_rm("podman");
}

#[test]
fn docker_detached_exec_stop_rm() {
    detached_exec_stop_rm("docker");
}

/// `stats` reads runvm's `events --stats` (the container's cgroup) and sees its processes.
fn stats_reads_the_container_cgroup(tool: &'static str) {
    let Some(client) = Client::ready(tool) else {
        return;
    };
    let _argv = client.argv_log();
    let name = unique_id(&format!("{tool}-stats"));
    let _guard = cleanup(&client, tool, &name);
    detached(&client, tool, &name);
    let out = client.run(
        tool,
        &["stats", "--no-stream", "--format", "{{.PIDs}}", &name],
    );
    assert_success(&out, &format!("{tool} stats"));
    let pids: u64 = stdout_of(&out).trim().parse().unwrap_or(0);
    assert!(pids >= 1, "stats shows no processes: {:?}", stdout_of(&out));
}

#[test]
fn podman_stats_reads_the_container_cgroup() {
    stats_reads_the_container_cgroup("podman");
}

#[test]
fn docker_stats_reads_the_container_cgroup() {
    stats_reads_the_container_cgroup("docker");
}

/// `update --memory` reaches the running container's memory cgroup through `runvm update`.
fn update_memory(tool: &'static str) {
    let Some(client) = Client::ready(tool) else {
        return;
    };
    let argv = client.argv_log();
    let name = unique_id(&format!("{tool}-update"));
    let _guard = cleanup(&client, tool, &name);
    let id = detached(&client, tool, &name);
    let out = client.run(
        tool,
        &["update", "--memory", "128m", "--memory-swap", "256m", &name],
    );
    assert_success(&out, &format!("{tool} update --memory 128m"));
    let limit = exec_stdout(
        &client,
        tool,
        &name,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    );
    assert_eq!(limit.trim(), "134217728");
    argv.assert_called(&id, "update");
}

#[test]
fn podman_update_memory() {
    update_memory("podman");
}

#[test]
fn docker_update_memory() {
    update_memory("docker");
}

// ---------------------------------------------------------------- podman (conmon)

#[test]
fn podman_run_rm_propagates_output_and_exit_code() {
    let Some(client) = Client::ready("podman") else {
        return;
    };
    let argv = client.argv_log();
    let cidfile = client.scratch(&unique_id("podman-cid"));
    let cid_arg = cidfile.to_string_lossy().into_owned();
    let out = client.run(
        "podman",
        &[
            "run",
            "--rm",
            "--cidfile",
            &cid_arg,
            IMAGE,
            "sh",
            "-c",
            "echo hello from runvm; exit 3",
        ],
    );
    assert_exit(&out, 3, "podman run --rm sh -c 'exit 3'");
    assert_eq!(stdout_of(&out).trim(), "hello from runvm");
    let id = read_cidfile(&cidfile);
    for command in ["create", "start", "delete"] {
        argv.assert_called(&id, command);
    }
    let exists = client.run("podman", &["container", "exists", &id]);
    assert_exit(&exists, 1, "podman container exists after run --rm");
}

/// The part of the detached flow podman and docker share: `exec --tty` gets a terminal,
/// `stop` ends the container through its SIGTERM trap (exit 0), `rm` removes it.
fn exec_tty_stop_rm(client: &Client, cli: &str, name: &str) {
    let out = client.run(cli, &["exec", "--tty", name, "tty"]);
    assert_success(&out, &format!("{cli} exec --tty tty"));
    assert!(
        stdout_of(&out).trim().starts_with("/dev/pts/"),
        "exec --tty got no terminal: {:?}",
        stdout_of(&out)
    );
    let begun = Instant::now();
    assert_success(
        &client.run(cli, &["stop", "--time", "10", name]),
        &format!("{cli} stop"),
    );
    assert!(
        begun.elapsed() < STOP_BY_TERM,
        "SIGTERM did not stop it: {:?}",
        begun.elapsed()
    );
    let code = client.run(cli, &["inspect", "--format", "{{.State.ExitCode}}", name]);
    assert_eq!(stdout_of(&code).trim(), "0", "exit code after SIGTERM trap");
    assert_success(&client.run(cli, &["rm", name]), &format!("{cli} rm"));
}

#[test]
fn podman_network_none_has_only_loopback() {
    let Some(client) = Client::ready("podman") else {
        return;
    };
    let _argv = client.argv_log();
    let out = client.run(
        "podman",
        &[
            "run",
            "--rm",
            "--network",
            "none",
            IMAGE,
            "ls",
            "/sys/class/net",
        ],
    );
    assert_success(&out, "podman run --network none");
    assert_eq!(
        stdout_of(&out).split_whitespace().collect::<Vec<_>>(),
        ["lo"]
    );
}

/// The first line of `podman inspect --format FORMAT NAME` (works for pods with `pod`).
fn podman_inspect(client: &Client, what: &[&str], format: &str) -> String {
    let mut args = what[..what.len() - 1].to_vec();
    args.extend_from_slice(&["inspect", "--format", format, what[what.len() - 1]]);
    let out = client.run("podman", &args);
    assert_success(&out, &format!("podman {}", args.join(" ")));
    stdout_of(&out).trim().to_string()
}

#[test]
fn podman_pod_shares_namespaces_with_its_infra_container() {
    let Some(client) = Client::ready("podman") else {
        return;
    };
    let argv = client.argv_log();
    let pod = unique_id("podman-pod");
    let _guard = cleanup(&client, "podman-pod", &pod);
    // The infra container is podman's own pause image (catatonit), built locally: no registry.
    let out = client.run(
        "podman",
        &[
            "pod",
            "create",
            "--name",
            &pod,
            "--share",
            "ipc,net,uts,pid",
        ],
    );
    assert_success(&out, "podman pod create");
    let infra = podman_inspect(&client, &["pod", &pod], "{{.InfraContainerID}}");
    let member = format!("{pod}-member");
    let out = client.run(
        "podman",
        &[
            "run",
            "--detach",
            "--pod",
            &pod,
            "--name",
            &member,
            IMAGE,
            "sh",
            "-c",
            TERM_EXITS_0,
        ],
    );
    assert_success(&out, "podman run --detach --pod");
    let member_id = stdout_of(&out).trim().to_string();

    // A second container sees the pod: its hostname, catatonit as PID 1, the member's shell,
    // and the infra container's net and ipc namespaces.
    // Presence, not a count of matching lines: the member's loop forks (and briefly shows a
    // second `sh -c trap...`) every time it starts `sleep`.
    let script = "hostname; cat /proc/1/comm; ps -o args | grep -q '^sh -c trap' && echo 1 || echo 0; \
                  for ns in net ipc; do [ $(readlink /proc/self/ns/$ns) = $(readlink /proc/1/ns/$ns) ] \
                  && echo same-$ns; done";
    let out = client.run(
        "podman",
        &["run", "--rm", "--pod", &pod, IMAGE, "sh", "-c", script],
    );
    assert_success(&out, "podman run --rm --pod");
    assert_eq!(
        stdout_of(&out).lines().collect::<Vec<_>>(),
        [pod.as_str(), "catatonit", "1", "same-net", "same-ipc"],
        "what a container in the pod sees"
    );

    assert_success(
        &client.run("podman", &["pod", "stop", "--time", "10", &pod]),
        "podman pod stop",
    );
    // podman signals infra and member at once; when catatonit (PID 1 of the shared pid
    // namespace) exits first the kernel SIGKILLs the member, so its code is 0 or 137.
    let state = podman_inspect(
        &client,
        &["container", &member],
        "{{.State.Status}} {{.State.ExitCode}}",
    );
    assert!(
        state == "exited 0" || state == "exited 137",
        "the member after pod stop: {state}"
    );
    assert_success(&client.run("podman", &["pod", "rm", &pod]), "podman pod rm");
    assert_exit(
        &client.run("podman", &["pod", "exists", &pod]),
        1,
        "podman pod exists after pod rm",
    );
    for id in [&infra, &member_id] {
        for command in ["create", "start", "delete"] {
            argv.assert_called(id, command);
        }
    }
}

#[test]
fn podman_slirp4netns_gives_a_user_mode_network() {
    let Some(client) = Client::ready("podman") else {
        return;
    };
    if !std::path::Path::new("/usr/bin/slirp4netns").is_file() {
        println!("SKIP: slirp4netns is not installed (Debian package slirp4netns)");
        return;
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        println!("SKIP: /dev/net/tun missing: slirp4netns needs a tap device");
        return;
    }
    let _argv = client.argv_log();
    // slirp4netns's defaults: tap0 at 10.0.2.100/24, gateway 10.0.2.2. No traffic leaves the
    // host (the test only looks at the container's side).
    let out = client.run(
        "podman",
        &[
            "run",
            "--rm",
            "--network",
            "slirp4netns",
            IMAGE,
            "sh",
            "-c",
            "ls /sys/class/net; ip -4 -o addr show tap0; ip route show default",
        ],
    );
    assert_success(&out, "podman run --network slirp4netns");
    let stdout = stdout_of(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.get(..2),
        Some(&["lo", "tap0"][..]),
        "interfaces: {stdout}"
    );
    assert!(
        stdout.contains("inet 10.0.2.100/24"),
        "tap0 has no slirp address: {stdout}"
    );
    assert!(
        stdout.contains("default via 10.0.2.2 dev tap0"),
        "no route through slirp's gateway: {stdout}"
    );
}

#[test]
fn podman_run_tty_gets_a_terminal() {
    let Some(client) = Client::ready("podman") else {
        return;
    };
    let _argv = client.argv_log();
    let out = client.run("podman", &["run", "--rm", "--tty", IMAGE, "tty"]);
    assert_success(&out, "podman run --tty tty");
    assert!(
        stdout_of(&out).trim().starts_with("/dev/pts/"),
        "run --tty got no terminal: {:?}",
        stdout_of(&out)
    );
}

#[test]
fn podman_resources_user_and_init_reach_the_container() {
    let Some(client) = Client::ready("podman") else {
        return;
    };
    let _argv = client.argv_log();
    let script =
        "id -u; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max";
    let out = client.run(
        "podman",
        &[
            "run",
            "--rm",
            "--memory",
            "64m",
            "--pids-limit",
            "50",
            "--user",
            "65534",
            IMAGE,
            "sh",
            "-c",
            script,
        ],
    );
    assert_success(&out, "podman run --memory --pids-limit --user");
    let lines: Vec<String> = stdout_of(&out).lines().map(String::from).collect();
    assert_eq!(lines, ["65534", "67108864", "50"]);

    let out = client.run(
        "podman",
        &["run", "--rm", "--init", IMAGE, "cat", "/proc/1/cmdline"],
    );
    assert_success(&out, "podman run --init");
    assert!(
        stdout_of(&out).starts_with("/run/podman-init"),
        "pid 1 is not catatonit: {:?}",
        stdout_of(&out)
    );
}

/// podman writes `"capabilities": {}` for --cap-drop all: absent sets mean empty sets
/// (runtime-spec; runc gives the process no capabilities at all).
#[test]
fn podman_cap_drop_all_leaves_no_capabilities() {
    let Some(client) = Client::ready("podman") else {
        return;
    };
    let _argv = client.argv_log();
    let out = client.run(
        "podman",
        &[
            "run",
            "--rm",
            "--cap-drop",
            "all",
            IMAGE,
            "grep",
            "^Cap",
            "/proc/self/status",
        ],
    );
    assert_success(&out, "podman run --cap-drop all");
    for line in stdout_of(&out).lines() {
        let (set, mask) = line.split_once(':').unwrap_or((line, ""));
        assert_eq!(
            mask.trim(),
            "0000000000000000",
            "{set} not empty with --cap-drop all"
        );
    }
    assert_eq!(stdout_of(&out).lines().count(), 5, "{}", stdout_of(&out));
}

#[test]
fn podman_pause_unpause() {
    let Some(client) = Client::ready("podman") else {
        return;
    };
    let argv = client.argv_log();
    let name = unique_id("podman-pause");
    let _guard = cleanup(&client, "podman", &name);
    let id = podman_detached(&client, &name);
    assert_success(&client.run("podman", &["pause", &name]), "podman pause");
    let status = client.run(
        "podman",
        &["inspect", "--format", "{{.State.Status}}", &name],
    );
    assert_eq!(stdout_of(&status).trim(), "paused");
    let freezer = format!("/sys/fs/cgroup/freezer/libpod_parent/libpod-{id}/freezer.state");
    if let Ok(state) = std::fs::read_to_string(&freezer) {
        assert_eq!(state.trim(), "FROZEN", "{freezer}");
    }
    assert_success(&client.run("podman", &["unpause", &name]), "podman unpause");
    assert_eq!(
        exec_stdout(&client, "podman", &name, "echo alive").trim(),
        "alive"
    );
    argv.assert_called(&id, "pause");
    argv.assert_called(&id, "resume");
}

// ---------------------------------------------------------------- containerd (ctr + runc shim)

/// `ctr run` options that make containerd's runc shim call runvm.
fn ctr_run_args<'a>(client_runtime: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--runtime",
        "io.containerd.runc.v2",
        "--runc-binary",
        client_runtime,
    ];
    args.extend_from_slice(extra);
    args
}

/// Polls `ctr task ls` until task `id` has `status`.
fn ctr_wait_status(client: &Client, id: &str, status: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let out = client.run("ctr", &["task", "ls"]);
        let text = stdout_of(&out);
        let now = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2).map(String::from));
        if now.as_deref() == Some(status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} not {status} within {timeout:?}: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ctr_run_rm_propagates_output_and_exit_code() {
    let Some(client) = Client::ready("containerd") else {
        return;
    };
    let argv = client.argv_log();
    let id = unique_id("ctr-rm");
    let runtime = client.runtime_str();
    let args = ctr_run_args(
        &runtime,
        &[
            "--rm",
            IMAGE,
            &id,
            "sh",
            "-c",
            "echo hello from runvm; exit 3",
        ],
    );
    let out = client.run("ctr", &args);
    assert_exit(&out, 3, "ctr run --rm sh -c 'exit 3'");
    assert_eq!(stdout_of(&out).trim(), "hello from runvm");
    for command in ["create", "start", "delete"] {
        argv.assert_called(&id, command);
    }
    let left = client.run("ctr", &["container", "ls", "-q"]);
    assert!(
        !stdout_of(&left).lines().any(|l| l == id),
        "container {id} left after --rm"
    );
}

#[test]
fn ctr_detached_exec_kill_rm() {
    let Some(client) = Client::ready("containerd") else {
        return;
    };
    let argv = client.argv_log();
    let id = unique_id("ctr-life");
    let _guard = cleanup(&client, "ctr", &id);
    let runtime = client.runtime_str();
    let args = ctr_run_args(
        &runtime,
        &["--detach", IMAGE, &id, "sh", "-c", TERM_EXITS_0],
    );
    assert_success(&client.run("ctr", &args), "ctr run --detach");
    ctr_wait_status(&client, &id, "RUNNING", Duration::from_secs(10));

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
            "echo in exec; exit 5",
        ],
    );
    assert_exit(&out, 5, "ctr task exec sh -c 'exit 5'");
    assert_eq!(stdout_of(&out).trim(), "in exec");

    assert_success(
        &client.run("ctr", &["task", "kill", "--signal", "SIGTERM", &id]),
        "ctr task kill",
    );
    ctr_wait_status(&client, &id, "STOPPED", STOP_BY_TERM);
    assert_success(
        &client.run("ctr", &["task", "delete", &id]),
        "ctr task delete",
    );
    assert_success(
        &client.run("ctr", &["container", "delete", &id]),
        "ctr container delete",
    );

    for command in ["create", "start", "exec", "kill", "delete"] {
        argv.assert_called(&id, command);
    }
}

#[test]
fn ctr_run_tty_gets_a_terminal() {
    let Some(client) = Client::ready("containerd") else {
        return;
    };
    let _argv = client.argv_log();
    let id = unique_id("ctr-tty");
    let _guard = cleanup(&client, "ctr", &id);
    let runtime = client.runtime_str();
    let args = ctr_run_args(&runtime, &["--rm", "--tty", IMAGE, &id, "tty"]);
    let out = client.run_in_terminal("ctr", &args);
    assert_success(&out, "ctr run --tty tty");
    assert!(
        stdout_of(&out).contains("/dev/pts/"),
        "run --tty got no terminal: {:?}",
        stdout_of(&out)
    );
}

#[test]
fn ctr_pause_resume_ps() {
    let Some(client) = Client::ready("containerd") else {
        return;
    };
    let argv = client.argv_log();
    let id = unique_id("ctr-pause");
    let _guard = cleanup(&client, "ctr", &id);
    let runtime = client.runtime_str();
    let args = ctr_run_args(
        &runtime,
        &["--detach", IMAGE, &id, "sh", "-c", TERM_EXITS_0],
    );
    assert_success(&client.run("ctr", &args), "ctr run --detach");
    ctr_wait_status(&client, &id, "RUNNING", Duration::from_secs(10));

    let out = client.run("ctr", &["task", "ps", &id]);
    assert_success(&out, "ctr task ps");
    assert!(
        stdout_of(&out).lines().count() >= 2,
        "ctr task ps lists no pid: {}",
        stdout_of(&out)
    );

    assert_success(
        &client.run("ctr", &["task", "pause", &id]),
        "ctr task pause",
    );
    ctr_wait_status(&client, &id, "PAUSED", Duration::from_secs(10));
    assert_success(
        &client.run("ctr", &["task", "resume", &id]),
        "ctr task resume",
    );
    ctr_wait_status(&client, &id, "RUNNING", Duration::from_secs(10));
    // Metrics come from the container's cgroup, which runvm created where the shim expects it.
    let out = client.run("ctr", &["task", "metrics", &id]);
    assert_success(&out, "ctr task metrics");
    assert!(
        stdout_of(&out).contains("pids.current") || stdout_of(&out).contains("memory"),
        "ctr task metrics shows no cgroup data: {}",
        stdout_of(&out)
    );
    for command in ["ps", "pause", "resume"] {
        argv.assert_called(&id, command);
    }
}

// ---------------------------------------------------------------- docker (dockerd -> containerd)

#[test]
fn docker_run_rm_propagates_output_and_exit_code() {
    let Some(client) = Client::ready("docker") else {
        return;
    };
    let argv = client.argv_log();
    let cidfile = client.scratch(&unique_id("docker-cid"));
    let cid_arg = cidfile.to_string_lossy().into_owned();
    let script = "ls /sys/class/net; exit 3";
    let out = client.run(
        "docker",
        &[
            "run",
            "--rm",
            "--runtime",
            "runvm",
            "--network",
            "none",
            "--cidfile",
            &cid_arg,
            IMAGE,
            "sh",
            "-c",
            script,
        ],
    );
    assert_exit(&out, 3, "docker run --rm sh -c 'exit 3'");
    assert_eq!(
        stdout_of(&out).split_whitespace().collect::<Vec<_>>(),
        ["lo"]
    );
    let id = read_cidfile(&cidfile);
    for command in ["create", "start", "delete"] {
        argv.assert_called(&id, command);
    }
}

#[test]
fn docker_pause_unpause_top() {
    let Some(client) = Client::ready("docker") else {
        return;
    };
    let argv = client.argv_log();
    let name = unique_id("docker-pause");
    let _guard = cleanup(&client, "docker", &name);
    let id = docker_detached(&client, &name);

    let out = client.run("docker", &["top", &name]);
    assert_success(&out, "docker top");
    assert!(
        stdout_of(&out).contains("sleep") || stdout_of(&out).contains("sh"),
        "{}",
        stdout_of(&out)
    );

    assert_success(&client.run("docker", &["pause", &name]), "docker pause");
    let status = client.run(
        "docker",
        &["inspect", "--format", "{{.State.Status}}", &name],
    );
    assert_eq!(stdout_of(&status).trim(), "paused");
    assert_success(&client.run("docker", &["unpause", &name]), "docker unpause");
    assert_eq!(
        exec_stdout(&client, "docker", &name, "echo alive").trim(),
        "alive"
    );
    for command in ["ps", "pause", "resume"] {
        argv.assert_called(&id, command);
    }
}

#[test]
fn podman_kill_start_and_restart() {
    let Some(client) = Client::ready("podman") else {
        return;
    };
    let name = unique_id("podman-restart");
    let _guard = cleanup(&client, "podman", &name);
    podman_detached(&client, &name);
    assert_success(
        &client.run("podman", &["kill", "--signal", "KILL", &name]),
        "podman kill",
    );
    let code = client.run(
        "podman",
        &["inspect", "--format", "{{.State.ExitCode}}", &name],
    );
    assert_eq!(stdout_of(&code).trim(), "137", "exit code after SIGKILL");
    assert_success(&client.run("podman", &["start", &name]), "podman start");
    let out = client.run("podman", &["exec", &name, "echo", "back"]);
    assert_success(&out, "exec after start");
    assert_eq!(stdout_of(&out).trim(), "back");
    assert_success(
        &client.run("podman", &["restart", "--time", "10", &name]),
        "podman restart",
    );
    let out = client.run("podman", &["exec", &name, "echo", "again"]);
    assert_success(&out, "exec after restart");
    assert_eq!(stdout_of(&out).trim(), "again");
    assert_success(
        &client.run("podman", &["rm", "--force", &name]),
        "podman rm --force",
    );
}

/// An rlimit above the host's hard limit cannot be granted (raising a hard limit needs
/// CAP_SYS_RESOURCE, which this host's root lacks): podman must show runvm's error, which
/// names the field.
#[test]
fn podman_shows_runvms_error_for_an_impossible_rlimit() {
    let Some(client) = Client::ready("podman") else {
        return;
    };
    let hard = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_whitespace().nth(4).map(str::to_string))
        })
        .and_then(|v| v.parse::<u64>().ok());
    let Some(hard) = hard else {
        println!("SKIP: cannot read this process's open-files hard limit");
        return;
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let can_raise = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0);
    if can_raise {
        println!("SKIP: this host's root holds CAP_SYS_RESOURCE and may raise any limit");
        return;
    }
    let too_high = format!("nofile={}:{}", hard + 1, hard + 1);
    let name = unique_id("podman-rlimit");
    let _guard = cleanup(&client, "podman", &name);
    let out = client.run(
        "podman",
        &[
            "run", "--rm", "--name", &name, "--ulimit", &too_high, IMAGE, "true",
        ],
    );
    assert_failure(&out, "podman run with an rlimit above the hard limit");
    let said = format!("{}{}", stdout_of(&out), stderr_of(&out));
    assert!(
        said.contains("process.rlimits"),
        "podman did not show runvm's error: {said}"
    );
}
