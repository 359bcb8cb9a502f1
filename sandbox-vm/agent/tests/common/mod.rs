//! Drives the real `runvm-agent` binary in host mode over a Unix socket.

#![allow(dead_code)]

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio as ProcStdio};
use std::time::{Duration, Instant};

use runvm_agent_protocol::{
    AgentMessage, Connection, Fd, Frame, ReplyBody, RequestBody, Stdio, PROTOCOL_VERSION,
};
use runvm_tests::BusyboxBundle;
use serde_json::Value;

/// No single step of a test may wait longer than this: a hang is a failure, not a stuck run.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Prints why and returns false when the tests cannot run here.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        println!("SKIP: the agent creates containers, which needs root (euid is {euid})");
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        println!("SKIP: no /bin/busybox for the container rootfs");
        return false;
    }
    true
}

/// A running agent, its state dir and the host end of its channel.
pub struct Agent {
    pub conn: Connection<UnixStream>,
    child: Child,
    dir: tempfile::TempDir,
}

impl Agent {
    /// Starts the agent and greets it.
    pub fn start() -> Agent {
        let mut agent = Agent::start_ungreeted();
        match agent.call(RequestBody::Hello {
            version: PROTOCOL_VERSION,
        }) {
            Ok(ReplyBody::Hello { version, .. }) => assert_eq!(version, PROTOCOL_VERSION),
            other => panic!("Hello: {other:?}"),
        }
        agent
    }

    pub fn start_ungreeted() -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("runvm-agent-test-")
            .tempdir()
            .expect("tempdir");
        let sock = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&sock).expect("bind the channel socket");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let child = Command::new(env!("CARGO_BIN_EXE_runvm-agent"))
            .arg("--channel")
            .arg(format!("unix:{}", sock.display()))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .stdin(ProcStdio::null())
            .spawn()
            .expect("spawn runvm-agent");
        let deadline = Instant::now() + STEP_TIMEOUT;
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "the agent never connected");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        stream.set_nonblocking(false).expect("blocking stream");
        stream
            .set_read_timeout(Some(STEP_TIMEOUT))
            .expect("read timeout");
        Agent {
            conn: Connection::new(stream),
            child,
            dir,
        }
    }

    /// The engine's state root inside the agent's state dir.
    pub fn runtime_root(&self) -> PathBuf {
        self.dir.path().join("state/runtime")
    }

    pub fn bundles_dir(&self) -> PathBuf {
        self.dir.path().join("state/bundles")
    }

    pub fn call(&mut self, body: RequestBody) -> Result<ReplyBody, String> {
        self.conn.call(body).expect("channel to the agent")
    }

    /// Creates a container from `bundle` whose init is `stream`; returns init's pid.
    pub fn create(&mut self, bundle: &BusyboxBundle, stream: u32, stdio: Stdio) -> i32 {
        match self.call(RequestBody::CreateContainer {
            container_id: bundle.id().to_string(),
            config: guest_config(bundle),
            stream,
            stdio,
        }) {
            Ok(ReplyBody::Created { pid }) => pid,
            other => panic!("CreateContainer: {other:?}"),
        }
    }

    pub fn start_container(&mut self, id: &str) {
        match self.call(RequestBody::StartContainer {
            container_id: id.to_string(),
        }) {
            Ok(ReplyBody::Started { .. }) => {}
            other => panic!("StartContainer: {other:?}"),
        }
    }

    /// Reads frames until `stream` exits; frames of other streams are skipped. Checks that
    /// `Exited` comes after the EOF of every output the stream had.
    pub fn collect(&mut self, stream: u32) -> Collected {
        let mut out = Collected::default();
        loop {
            let frame = self
                .conn
                .read_frame()
                .expect("reading from the agent")
                .unwrap_or_else(|| {
                    panic!("the agent closed the channel before stream {stream} exited")
                });
            match frame {
                Frame::Data {
                    stream: s,
                    fd,
                    data,
                } if s == stream => {
                    let (buf, eof) = match fd {
                        Fd::Stdout => (&mut out.stdout, &mut out.stdout_eof),
                        Fd::Stderr => (&mut out.stderr, &mut out.stderr_eof),
                        Fd::Stdin => panic!("the agent sent stdin data"),
                    };
                    assert!(!*eof, "{fd:?} data after its EOF");
                    if data.is_empty() {
                        *eof = true;
                    } else {
                        buf.extend_from_slice(&data);
                    }
                }
                Frame::Message(AgentMessage::Exited { stream: s, status }) if s == stream => {
                    out.status = status;
                    return out;
                }
                _ => {}
            }
        }
    }

    /// Waits (bounded) for the agent process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the agent did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes the host end of the channel.
    pub fn hang_up(&self) {
        let _ = self.conn.get_ref().shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Closing the channel makes the agent remove its containers and exit; kill it only if
        // it does not.
        self.hang_up();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Default)]
pub struct Collected {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_eof: bool,
    pub stderr_eof: bool,
    pub status: i32,
}

impl Collected {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// The bundle's config as the host sends it: root.path absolute, as it is in a guest.
pub fn guest_config(bundle: &BusyboxBundle) -> Value {
    let mut config = bundle.config().clone();
    config["root"]["path"] = Value::String(bundle.rootfs().to_string_lossy().into_owned());
    config
}

pub fn bundle(script: &str) -> BusyboxBundle {
    let mut b = BusyboxBundle::with_prefix("agent");
    b.set_script(script);
    b
}
