//! The guest agent in host mode, driven over its channel with the protocol crate: the real
//! binary, the real engine, busybox containers. Needs root.

mod common;

use std::time::{Duration, Instant};

use common::{bundle, guest_config, require_root, Agent};
use runvm_agent_protocol::{
    Frame, ReplyBody, RequestBody, Stdio, KIND_MESSAGE, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use serde_json::json;

const PIPES: Stdio = Stdio::Pipes { stdin: false };

#[test]
fn hello_comes_first_and_another_version_is_refused() {
    if !require_root() {
        return;
    }
    let mut agent = Agent::start_ungreeted();
    let err = agent
        .call(RequestBody::Processes {
            container_id: "x".into(),
        })
        .unwrap_err();
    assert!(err.contains("Hello must be the first request"), "{err}");
    let err = agent.call(RequestBody::Hello { version: 99 }).unwrap_err();
    assert!(
        err.contains("99") && err.contains(&format!("version {PROTOCOL_VERSION}")),
        "{err}"
    );
    match agent.call(RequestBody::Hello {
        version: PROTOCOL_VERSION,
    }) {
        Ok(ReplyBody::Hello {
            version,
            agent_version,
            kernel_release,
            boot_id,
        }) => {
            assert_eq!(version, PROTOCOL_VERSION);
            assert_eq!(agent_version, env!("CARGO_PKG_VERSION"));
            let host_release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
            assert_eq!(kernel_release, host_release.trim());
            assert_eq!(boot_id.len(), 36, "{boot_id}");
        }
        other => panic!("Hello: {other:?}"),
    }
}

#[test]
fn output_then_exit_status() {
    if !require_root() {
        return;
    }
    let b = bundle("echo hi; echo oops >&2");
    let mut agent = Agent::start();
    let pid = agent.create(&b, 1, PIPES);
    assert!(pid > 1);
    agent.start_container(b.id());
    let out = agent.collect(1);
    assert_eq!(out.stdout(), "hi\n");
    assert_eq!(out.stderr, b"oops\n");
    assert!(
        out.stdout_eof && out.stderr_eof,
        "Exited before the EOFs: {out:?}"
    );
    assert_eq!(out.status, 0);
}

#[test]
fn exit_code_and_killed_by_signal() {
    if !require_root() {
        return;
    }
    let three = bundle("exit 3");
    let sleeper = bundle("sleep 100");
    let mut agent = Agent::start();
    agent.create(&three, 1, PIPES);
    agent.start_container(three.id());
    assert_eq!(agent.collect(1).status, 3);

    agent.create(&sleeper, 2, PIPES);
    agent.start_container(sleeper.id());
    assert_eq!(
        agent.call(RequestBody::Signal {
            container_id: sleeper.id().into(),
            stream: None,
            signal: libc::SIGKILL,
            all: false,
        }),
        Ok(ReplyBody::Done)
    );
    assert_eq!(agent.collect(2).status, 128 + libc::SIGKILL);
}

#[test]
fn stdin_is_piped_and_closed() {
    if !require_root() {
        return;
    }
    let b = bundle("read line; echo \"got $line\"; cat; echo end");
    let mut agent = Agent::start();
    agent.create(&b, 5, Stdio::Pipes { stdin: true });
    agent.start_container(b.id());
    agent.conn.send_stdin(5, b"abc\nmore ").unwrap();
    agent.conn.send_stdin(5, b"text\n").unwrap();
    agent.conn.send_stdin(5, b"").unwrap();
    let out = agent.collect(5);
    // `cat` ends only at EOF, so "end" proves the empty frame closed stdin.
    assert_eq!(out.stdout(), "got abc\nmore text\nend\n");
    assert_eq!(out.status, 0);
}

#[test]
fn env_cwd_and_user_come_from_the_config() {
    if !require_root() {
        return;
    }
    let mut b = bundle("echo $FOO; pwd; id -u; id -g");
    b.config_mut()["process"]["env"] = json!(["PATH=/bin", "FOO=bar"]);
    b.config_mut()["process"]["cwd"] = json!("/tmp");
    b.config_mut()["process"]["user"] = json!({"uid": 1000, "gid": 2000});
    b.write_config();
    let mut agent = Agent::start();
    agent.create(&b, 1, PIPES);
    agent.start_container(b.id());
    let out = agent.collect(1);
    assert_eq!(out.stdout(), "bar\n/tmp\n1000\n2000\n");
    assert_eq!(out.status, 0);
}

#[test]
fn tty_process_sees_a_pty_and_its_resizes() {
    if !require_root() {
        return;
    }
    let b = bundle("tty; stty size; read go; stty size");
    let mut agent = Agent::start();
    agent.create(&b, 3, Stdio::Tty { rows: 24, cols: 80 });
    agent.start_container(b.id());
    // Wait for the first size before resizing, so the order is certain.
    let mut seen = Vec::new();
    let deadline = Instant::now() + common::STEP_TIMEOUT;
    while !String::from_utf8_lossy(&seen).contains("24 80") {
        assert!(Instant::now() < deadline, "no first size: {seen:?}");
        if let Some(Frame::Data {
            stream: 3, data, ..
        }) = agent.conn.read_frame().unwrap()
        {
            seen.extend(data);
        }
    }
    assert_eq!(
        agent.call(RequestBody::ResizeTty {
            stream: 3,
            rows: 40,
            cols: 100
        }),
        Ok(ReplyBody::Done)
    );
    agent.conn.send_stdin(3, b"go\n").unwrap();
    let out = agent.collect(3);
    seen.extend(out.stdout);
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("40 100"), "{text:?}");
    assert!(out.stdout_eof, "Exited before the pty's EOF");
    assert_eq!(out.status, 0);
    // A pipes stream has no tty to resize.
    let err = agent
        .call(RequestBody::ResizeTty {
            stream: 3,
            rows: 1,
            cols: 1,
        })
        .unwrap_err();
    assert!(err.contains("no live stream 3"), "{err}");
}

#[test]
fn exec_runs_in_the_container_with_its_own_stream() {
    if !require_root() {
        return;
    }
    let b = bundle("sleep 100 & exec sleep 101");
    let mut agent = Agent::start();
    let init = agent.create(&b, 1, PIPES);
    agent.start_container(b.id());
    let process = json!({
        "args": ["sh", "-c", "echo from-exec $(hostname); exit 5"],
        "env": ["PATH=/bin"],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
    });
    match agent.call(RequestBody::Exec {
        container_id: b.id().into(),
        process,
        stream: 2,
        stdio: PIPES,
    }) {
        Ok(ReplyBody::Started { pid }) => assert!(pid > 1 && pid != init),
        other => panic!("Exec: {other:?}"),
    }
    let out = agent.collect(2);
    // The container's own hostname: the exec joined its namespaces.
    assert_eq!(out.stdout(), "from-exec runvm-test\n");
    assert_eq!(out.status, 5);

    // Processes: init and its background sleep.
    let deadline = Instant::now() + common::STEP_TIMEOUT;
    let pids = loop {
        match agent.call(RequestBody::Processes {
            container_id: b.id().into(),
        }) {
            Ok(ReplyBody::Processes { pids }) if pids.len() == 2 => break pids,
            Ok(ReplyBody::Processes { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => panic!("Processes: {other:?}"),
        }
    };
    assert!(pids.contains(&init), "{pids:?} lacks init {init}");

    // Signal with all = every process (the background sleep too).
    assert_eq!(
        agent.call(RequestBody::Signal {
            container_id: b.id().into(),
            stream: None,
            signal: libc::SIGKILL,
            all: true,
        }),
        Ok(ReplyBody::Done)
    );
    assert_eq!(agent.collect(1).status, 128 + libc::SIGKILL);
    let pids = agent.call(RequestBody::Processes {
        container_id: b.id().into(),
    });
    assert_eq!(pids, Ok(ReplyBody::Processes { pids: vec![] }));
}

#[test]
fn delete_leaves_no_process_cgroup_or_state() {
    if !require_root() {
        return;
    }
    let b = bundle("sleep 100");
    let mut agent = Agent::start();
    let pid = agent.create(&b, 1, PIPES);
    agent.start_container(b.id());
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(
        agent.call(RequestBody::DeleteContainer {
            container_id: b.id().into(),
        }),
        Ok(ReplyBody::Done)
    );
    runvm_tests::assert_no_leftovers(&agent.runtime_root(), b.id(), b.cgroups_path(), b.path());
    assert!(!agent.bundles_dir().join(b.id()).exists());
    // The killed init is still reported.
    assert_eq!(agent.collect(1).status, 128 + libc::SIGKILL);
    // Deleting again is not an error; anything else on it is.
    assert_eq!(
        agent.call(RequestBody::DeleteContainer {
            container_id: b.id().into(),
        }),
        Ok(ReplyBody::Done)
    );
    let err = agent
        .call(RequestBody::StartContainer {
            container_id: b.id().into(),
        })
        .unwrap_err();
    assert!(err.contains("no container"), "{err}");
}

#[test]
fn bad_create_requests_are_refused_and_leave_nothing() {
    if !require_root() {
        return;
    }
    let b = bundle("true");
    let mut agent = Agent::start();
    let mut relative = guest_config(&b);
    relative["root"]["path"] = json!("rootfs");
    let err = agent
        .call(RequestBody::CreateContainer {
            container_id: b.id().into(),
            config: relative,
            stream: 1,
            stdio: PIPES,
        })
        .unwrap_err();
    assert!(err.contains("root.path"), "{err}");
    let err = agent
        .call(RequestBody::CreateContainer {
            container_id: "../escape".into(),
            config: guest_config(&b),
            stream: 1,
            stdio: PIPES,
        })
        .unwrap_err();
    assert!(err.contains("../escape"), "{err}");
    // The engine's own validation, after the agent wrote the bundle: that is removed again.
    let mut bad_cap = guest_config(&b);
    bad_cap["process"]["capabilities"]["bounding"] = json!(["CAP_NOPE"]);
    let err = agent
        .call(RequestBody::CreateContainer {
            container_id: b.id().into(),
            config: bad_cap,
            stream: 1,
            stdio: PIPES,
        })
        .unwrap_err();
    assert!(err.contains("capabilities.bounding"), "{err}");
    let left: Vec<_> = std::fs::read_dir(agent.bundles_dir()).unwrap().collect();
    assert!(left.is_empty(), "bundles left: {left:?}");
    runvm_tests::assert_no_leftovers(&agent.runtime_root(), b.id(), b.cgroups_path(), b.path());
}

#[test]
fn malformed_frames_get_error_replies_and_the_channel_survives() {
    if !require_root() {
        return;
    }
    let mut agent = Agent::start();
    let bad = br#"{"id":7,"body":{"no_such_request":{}}}"#;
    let mut frame = (bad.len() as u32 + 1).to_be_bytes().to_vec();
    frame.push(KIND_MESSAGE);
    frame.extend(bad);
    agent.conn.write_raw(&frame).unwrap();
    let reply = agent.conn.wait_reply(7).unwrap();
    assert!(reply.unwrap_err().contains("bad frame"));
    agent.conn.write_raw(&[0, 0, 0, 2, 9, 9]).unwrap();
    let reply = agent.conn.wait_reply(0).unwrap();
    assert!(reply.unwrap_err().contains("kind 9"));
    // Still serving.
    assert!(matches!(
        agent.call(RequestBody::Hello {
            version: PROTOCOL_VERSION
        }),
        Ok(ReplyBody::Hello { .. })
    ));
}

#[test]
fn an_oversized_length_ends_the_agent_and_its_containers() {
    if !require_root() {
        return;
    }
    let b = bundle("sleep 100");
    let mut agent = Agent::start();
    agent.create(&b, 1, PIPES);
    agent.start_container(b.id());
    agent
        .conn
        .write_raw(&(MAX_FRAME_LEN as u32 + 1).to_be_bytes())
        .unwrap();
    let reply = agent.conn.wait_reply(0).unwrap();
    assert!(
        reply.unwrap_err().contains("outside"),
        "bad length not named"
    );
    // Then the agent closes the channel and exits, removing the container.
    loop {
        match agent.conn.read_frame() {
            Ok(None) => break,
            Ok(Some(_)) => continue,
            Err(e) => panic!("expected a clean close, got {e}"),
        }
    }
    assert!(!agent.wait_exit().success());
    runvm_tests::assert_no_leftovers(&agent.runtime_root(), b.id(), b.cgroups_path(), b.path());
}

#[test]
fn closing_the_channel_kills_the_containers_and_ends_the_agent() {
    if !require_root() {
        return;
    }
    let b = bundle("sleep 100");
    let mut agent = Agent::start();
    let pid = agent.create(&b, 1, PIPES);
    agent.start_container(b.id());
    agent.hang_up();
    assert!(agent.wait_exit().success());
    runvm_tests::assert_no_leftovers(&agent.runtime_root(), b.id(), b.cgroups_path(), b.path());
    assert!(!std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists());
}

#[test]
fn shutdown_replies_then_removes_everything() {
    if !require_root() {
        return;
    }
    let b = bundle("sleep 100");
    let mut agent = Agent::start();
    agent.create(&b, 1, PIPES);
    // Created but never started: shutdown must remove it too.
    assert_eq!(agent.call(RequestBody::Shutdown), Ok(ReplyBody::Done));
    assert!(agent.wait_exit().success());
    runvm_tests::assert_no_leftovers(&agent.runtime_root(), b.id(), b.cgroups_path(), b.path());
}
