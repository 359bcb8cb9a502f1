//! runvm behind containerd 1.6's CRI plugin, the way a kubelet drives it: a RuntimeClass
//! names a runtime handler, and each handler runs a pod the kubelet's way (RunPodSandbox,
//! CreateContainer, StartContainer, ExecSync, ContainerStatus, StopContainer,
//! RemoveContainer, StopPodSandbox, RemovePodSandbox). Two handlers: `runvm` (containerd's
//! runc shim with `BinaryName` = runvm) and `runvm-shim` (runvm's own shim,
//! `io.containerd.runvm.v2`). Pods use host networking, so no CNI plugin is involved.
//!
//! Needs tests/clients/setup.sh DIR (a second containerd with the CRI plugin, the pause and
//! busybox images in namespace k8s.io, tests/clients/cri/cri.py as DIR/bin/cri) and
//! RUNVM_CLIENTS_DIR=DIR; tests/clients/run.sh does both. SKIPs without containerd,
//! python3-grpcio or protoc.

// Shared with clients.rs, which uses the parts this file does not.
#[allow(dead_code)]
#[path = "clients/harness.rs"]
mod harness;
#[path = "cri/support.rs"]
mod support;

use serde_json::json;

use runvm_tests::unique_id;
use support::{
    assert_nothing_left, namespace_of, own_namespace, pid_in_verbose_info, string_at, wait_gone,
    Cri, Pod, HANDLER_RUNC_SHIM, HANDLER_RUNVM_SHIM,
};

/// Prints once it runs, then exits 0 on SIGTERM (PID 1 of a pid namespace ignores signals it
/// has no handler for) so StopContainer's graceful path is what stops it.
const SERVICE: &str = "echo started; trap 'exit 0' TERM; while :; do sleep 0.1; done";

#[test]
fn cri_pod_lifecycle_through_the_runc_shim() {
    pod_lifecycle(HANDLER_RUNC_SHIM);
}

#[test]
fn cri_pod_lifecycle_through_runvms_shim() {
    pod_lifecycle(HANDLER_RUNVM_SHIM);
}

/// The kubelet's calls for one pod with one container, checking what each did on the host.
fn pod_lifecycle(handler: &str) {
    let Some(cri) = Cri::ready(handler) else {
        return;
    };
    let argv = cri.client.argv_log();
    let name = unique_id(&format!("pod-{handler}"));
    let pod = Pod::run(&cri, &name, handler);

    let status = cri.must(
        "PodSandboxStatus",
        json!({"pod_sandbox_id": pod.id, "verbose": true}),
    );
    assert_eq!(string_at(&status, "/status/state"), "SANDBOX_READY");
    assert_eq!(string_at(&status, "/status/runtime_handler"), handler);
    let sandbox_pid = pid_in_verbose_info(&status);

    let ctr = pod.create_container("app", SERVICE);
    let created = cri.must("ContainerStatus", json!({"container_id": ctr}));
    assert_eq!(string_at(&created, "/status/state"), "CONTAINER_CREATED");
    cri.must("StartContainer", json!({"container_id": ctr}));

    let running = cri.must(
        "ContainerStatus",
        json!({"container_id": ctr, "verbose": true}),
    );
    assert_eq!(string_at(&running, "/status/state"), "CONTAINER_RUNNING");
    let pid = pid_in_verbose_info(&running);
    // Host network (NODE): the test's (host's) net namespace; pid and ipc are the pod's (the pause
    // container's), which CRI passes to the runtime as /proc/PID/ns paths.
    // A host-network pod keeps the host's hostname too (CRI drops the uts namespace).
    for kind in ["net", "uts"] {
        assert_eq!(
            namespace_of(pid, kind),
            own_namespace(kind),
            "host-network container not in the host's {kind} namespace"
        );
    }
    for kind in ["pid", "ipc"] {
        assert_eq!(
            namespace_of(pid, kind),
            namespace_of(sandbox_pid, kind),
            "the container is not in its pod's {kind} namespace"
        );
        assert_ne!(
            namespace_of(pid, kind),
            own_namespace(kind),
            "the pod has no {kind} namespace of its own"
        );
    }
    // runvm's state for the container, where each shim keeps it (checked gone at the end).
    let state = cri.runvm_state_dir(handler, &ctr);
    assert!(state.is_dir(), "no runvm state at {}", state.display());
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let want = format!("/{}/{name}/{ctr}", support::CGROUP_PARENT);
    assert!(
        cgroups.lines().any(|l| l.ends_with(&want)),
        "container not in cgroup {want}:\n{cgroups}"
    );

    let hi = cri.must(
        "ExecSync",
        json!({"container_id": ctr, "cmd": ["echo", "hi"], "timeout": 60}),
    );
    assert_eq!(string_at(&hi, "/stdout"), "hi\n");
    assert_eq!(hi["exit_code"], 0, "{hi}");
    let failing = cri.must(
        "ExecSync",
        json!({"container_id": ctr, "cmd": ["sh", "-c", "echo oops >&2; exit 3"], "timeout": 60}),
    );
    assert_eq!(failing["exit_code"], 3, "{failing}");
    assert_eq!(string_at(&failing, "/stderr"), "oops\n");
    assert!(
        pod.log_of("app").contains("stdout F started"),
        "CRI log of the container: {:?}",
        pod.log_of("app")
    );

    cri.must("StopContainer", json!({"container_id": ctr, "timeout": 10}));
    let exited = cri.must("ContainerStatus", json!({"container_id": ctr}));
    assert_eq!(string_at(&exited, "/status/state"), "CONTAINER_EXITED");
    assert_eq!(exited["status"]["exit_code"], 0, "{exited}");
    assert_eq!(string_at(&exited, "/status/reason"), "Completed");
    wait_gone(pid);

    cri.must("RemoveContainer", json!({"container_id": ctr}));
    let gone = cri.call("ContainerStatus", &json!({"container_id": ctr}));
    assert!(
        gone.as_ref().is_err_and(|e| e.contains("NOT_FOUND")),
        "ContainerStatus after RemoveContainer: {gone:?}"
    );
    cri.must("StopPodSandbox", json!({"pod_sandbox_id": pod.id}));
    cri.must("RemovePodSandbox", json!({"pod_sandbox_id": pod.id}));
    wait_gone(sandbox_pid);
    let pods = cri.must("ListPodSandbox", json!({}));
    assert!(
        !pods.to_string().contains(&pod.id),
        "pod {} still listed: {pods}",
        pod.id
    );
    assert_nothing_left(&cri, &name, &[&pod.id, &ctr]);

    // Which path ran the containers: the runc shim calls the runvm binary for both the
    // sandbox and the container; runvm's shim links runvm's library and calls no binary.
    let calls_for = |id: &str| argv.commands_for(id);
    if handler == HANDLER_RUNC_SHIM {
        for id in [pod.id.as_str(), ctr.as_str()] {
            for command in ["create", "start", "delete"] {
                argv.assert_called(id, command);
            }
        }
        argv.assert_called(&ctr, "exec");
        argv.assert_called(&ctr, "kill");
    } else {
        assert!(
            calls_for(&pod.id).is_empty() && calls_for(&ctr).is_empty(),
            "runvm's shim ran the runvm binary: {:?} {:?}",
            calls_for(&pod.id),
            calls_for(&ctr)
        );
    }
}

#[test]
fn cri_rejects_an_unknown_runtime_handler() {
    let Some(cri) = Cri::ready(HANDLER_RUNC_SHIM) else {
        return;
    };
    let name = unique_id("pod-unknown-handler");
    let reply = cri.call(
        "RunPodSandbox",
        &json!({"config": cri.pod_config(&name), "runtime_handler": "no-such-handler"}),
    );
    let err = reply.expect_err("RunPodSandbox accepted a handler containerd has no runtime for");
    assert!(
        err.contains("no-such-handler"),
        "error names the handler: {err}"
    );
}

#[test]
fn cri_exit_code_of_a_failed_container_through_the_runc_shim() {
    exited_container(HANDLER_RUNC_SHIM);
}

#[test]
fn cri_exit_code_of_a_failed_container_through_runvms_shim() {
    exited_container(HANDLER_RUNVM_SHIM);
}

/// A container that exits by itself: its code reaches ContainerStatus, ExecSync is refused,
/// and removing the pod (without StopContainer/RemoveContainer first) cleans up everything.
fn exited_container(handler: &str) {
    let Some(cri) = Cri::ready(handler) else {
        return;
    };
    let name = unique_id(&format!("pod-exit-{handler}"));
    let pod = Pod::run(&cri, &name, handler);
    let ctr = pod.create_container("oneshot", "exit 7");
    cri.must("StartContainer", json!({"container_id": ctr}));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let exited = loop {
        let status = cri.must("ContainerStatus", json!({"container_id": ctr}));
        if string_at(&status, "/status/state") == "CONTAINER_EXITED" {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "container never exited: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(exited["status"]["exit_code"], 7, "{exited}");
    assert_eq!(string_at(&exited, "/status/reason"), "Error");
    let exec = cri.call(
        "ExecSync",
        &json!({"container_id": ctr, "cmd": ["true"], "timeout": 30}),
    );
    assert!(exec.is_err(), "ExecSync in an exited container: {exec:?}");
    let pod_id = pod.id.clone();
    drop(pod);
    assert_nothing_left(&cri, &name, &[&pod_id, &ctr]);
}
