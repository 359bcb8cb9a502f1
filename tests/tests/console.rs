//! process.terminal with --console-socket: the runtime hands the pty master
//! to us over a unix socket (SCM_RIGHTS), as containerd and conmon expect.

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use runvm_tests::*;
use serde_json::json;

/// Accepts one connection and returns the fd it carries.
fn receive_master(listener: &UnixListener) -> OwnedFd {
    let (conn, _) = listener
        .accept()
        .expect("runtime connects to console socket");
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg on console socket");
    for cmsg in msg.cmsgs().expect("control messages") {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            let fd = *fds.first().expect("one fd");
            // SAFETY: SCM_RIGHTS just installed this fd in our table; we own it now.
            return unsafe { OwnedFd::from_raw_fd(fd) };
        }
    }
    panic!("console socket message carried no fd");
}

/// Reads the pty until the slave side closes (EIO) or `timeout` passes.
fn read_until_hangup(master: &mut std::fs::File, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(master),
            PollFlags::POLLIN,
        )];
        let ready = poll(&mut fds, PollTimeout::from(200u16)).unwrap_or(0);
        if ready == 0 {
            continue;
        }
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Like containerd's shim: become the reaper of orphaned container inits,
/// so the exit status of the process started by `create` comes to us.
fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "prctl(PR_SET_CHILD_SUBREAPER)");
}

#[test]
fn terminal_via_console_socket() {
    if !require_root() {
        return;
    }
    become_subreaper();
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["process"]["terminal"] = json!(true);
    bundle.config_mut()["process"]["env"] = json!(["PATH=/bin", "TERM=xterm", "PS1=$ "]);
    bundle.set_args(&["sh"]);
    let socket = bundle.path().join("console.sock");
    let listener = UnixListener::bind(&socket).expect("bind console socket");
    let rt = Runtime::new();
    let id = bundle.id().to_string();

    let master = std::thread::scope(|s| {
        let receiver = s.spawn(|| receive_master(&listener));
        let out = rt.create(
            &bundle,
            &["--console-socket", socket.to_str().expect("utf-8")],
        );
        assert_success(&out, "create --console-socket");
        receiver.join().expect("receiver thread")
    });
    let pid = rt.state(&id)["pid"].as_i64().expect("pid") as i32;
    let mut master = std::fs::File::from(master);
    assert_success(&rt.start(&id), "start");
    master
        .write_all(b"tty; [ -t 0 ] && [ -t 1 ] && echo both-tty; echo hi; exit 7\n")
        .expect("write to pty master");
    let text = read_until_hangup(&mut master, Duration::from_secs(20));
    let lines: Vec<&str> = text.split("\r\n").map(str::trim).collect();
    assert!(lines.contains(&"hi"), "pty output: {text:?}");
    assert!(
        lines.contains(&"both-tty"),
        "stdin/stdout are not the pty: {text:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("/dev/pts/")), "{text:?}");

    let status = waitpid(Pid::from_raw(pid), None).expect("reap container init");
    assert_eq!(status, WaitStatus::Exited(Pid::from_raw(pid), 7));
    assert_eq!(rt.state(&id)["status"], "stopped");
    assert_success(&rt.delete(&id), "delete");
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn terminal_without_console_socket_is_refused_for_create() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["process"]["terminal"] = json!(true);
    bundle.write_config();
    let rt = Runtime::new();
    let out = rt.create(&bundle, &[]);
    assert_failure(&out, "create with terminal=true and no --console-socket");
    if is_runvm() {
        assert!(stderr_of(&out).contains("console"), "{}", stderr_of(&out));
    }
    rt.assert_no_leftovers(&bundle);
}

/// Foreground `run` with a terminal and no console socket: runvm proxies the pty between its
/// own stdio and the container (`script` gives runvm a terminal of its own here).
#[test]
fn foreground_run_proxies_the_terminal() {
    if !require_root() {
        return;
    }
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIP: script(1) from util-linux is not installed");
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.set_args(&[
        "sh",
        "-c",
        "tty; stty size; read line; echo got:$line; exit 6",
    ]);
    bundle.config_mut()["process"]["terminal"] = json!(true);
    bundle.write_config();
    let rt = Runtime::new();
    let command = format!(
        "stty cols 91 rows 33; {} --root {} run --bundle {} {}",
        runtime_bin().display(),
        rt.root_str(),
        bundle.path_str(),
        bundle.id()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn script");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"hello\n")
        .expect("type a line");
    let out = child.wait_with_output().expect("script output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(6), "{text}");
    assert!(text.contains("/dev/pts/"), "no pty inside: {text}");
    assert!(text.contains("33 91"), "window size not passed on: {text}");
    assert!(
        text.contains("got:hello"),
        "input did not reach the container: {text}"
    );
    rt.assert_no_leftovers(&bundle);
}
