//! The single-threaded worker that starts container processes.
//!
//! Why a worker: `lifecycle::create` and `lifecycle::exec` clone3 a child that keeps running
//! Rust code (allocating, formatting, locking stdio) until it execs the user's program. In a
//! multi-threaded process another thread may hold the malloc or stdio lock at clone time, and
//! the child, which has only the cloning thread, would deadlock on it. The shim's ttrpc server
//! and event publisher are threads, so the shim forks this worker first thing in `serve`,
//! before any thread exists, and the worker never starts one. Forking per request from the
//! threaded shim would have the same problem, and re-executing a helper per request would cost
//! an exec each time; one long-lived worker costs one idle process.
//!
//! The worker does the two clone3 operations (create, exec) and is the parent of every
//! container process it starts, so it is also their reaper: SIGCHLD is blocked and read from a
//! signalfd in the same poll loop as requests, and every exit goes to the shim as an
//! [`Exited`] message on a second socket. It is a child subreaper too, so processes orphaned
//! inside the container's tree (a daemonising exec, a hook's grandchild) come back to it and
//! are reaped. Every other lifecycle call (start, kill, pause, delete, stats...) forks nothing
//! and runs in the shim's threads directly.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use oci_spec::runtime::Process;
use runvm_runtime::container::Store;
use runvm_runtime::lifecycle::{self, CreateOptions, ExecOptions};
use serde::{Deserialize, Serialize};

use crate::wire;

/// How the container process gets its stdio; the descriptors follow the message.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Stdio {
    /// Three descriptors: stdin, stdout, stderr.
    Files,
    /// One descriptor: a connected socket that receives the pty master (`process.terminal`).
    Console,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Create {
        root: PathBuf,
        id: String,
        bundle: PathBuf,
        stdio: Stdio,
    },
    Exec {
        root: PathBuf,
        id: String,
        process: Box<Process>,
        stdio: Stdio,
    },
}

/// The answer to a [`Request`]; `Launched` carries the process's pidfd.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Launched { pid: i32 },
    Failed(String),
}

/// A child of the worker ended. `status` is containerd's convention: the exit code, or 128 +
/// the signal that killed it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Exited {
    pub pid: i32,
    pub status: u32,
    /// Nanoseconds since the Unix epoch, taken when the worker reaped it.
    pub at_nanos: i64,
}

/// The shim's side of a running worker.
pub struct Worker {
    pub pid: i32,
    pub requests: OwnedFd,
    pub exits: OwnedFd,
}

impl Worker {
    /// Forks the worker. Must be called while the process is still single-threaded.
    pub fn spawn() -> Result<Worker, String> {
        let (requests, worker_requests) = wire::pair().map_err(|e| e.to_string())?;
        let (exits, worker_exits) = wire::pair().map_err(|e| e.to_string())?;
        // SAFETY: the caller guarantees no other thread exists, so the child gets a consistent
        // heap and may run ordinary Rust code; it never returns from `run`.
        match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork of the worker: {e}"))? {
            nix::unistd::ForkResult::Child => {
                drop(requests);
                drop(exits);
                run(worker_requests, worker_exits)
            }
            nix::unistd::ForkResult::Parent { child } => Ok(Worker {
                pid: child.as_raw(),
                requests,
                exits,
            }),
        }
    }

    /// Sends one request with its descriptors and waits for the reply (the caller serialises
    /// requests). Returns the pid and pidfd of the new process.
    pub fn call(
        requests: BorrowedFd,
        req: &Request,
        fds: &[RawFd],
    ) -> Result<(i32, OwnedFd), String> {
        let worker_err = |e: wire::WireError| format!("shim worker: {e}");
        wire::send(requests, req, fds).map_err(worker_err)?;
        match wire::recv::<Reply>(requests).map_err(worker_err)? {
            None => Err("shim worker exited".into()),
            Some((Reply::Failed(msg), _)) => Err(msg),
            Some((Reply::Launched { pid }, fds)) => {
                let pidfd = fds
                    .into_iter()
                    .next()
                    .ok_or("shim worker sent no pidfd with the new process")?;
                Ok((pid, pidfd))
            }
        }
    }
}

/// The worker's main loop; exits when the shim closes the request socket.
fn run(requests: OwnedFd, exits: OwnedFd) -> ! {
    let code = match serve(&requests, &exits) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    // SAFETY: leaves the forked worker without unwinding into the shim's call stack.
    unsafe { libc::_exit(code) }
}

fn serve(requests: &OwnedFd, exits: &OwnedFd) -> Result<(), String> {
    detach_stdio()?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "PR_SET_CHILD_SUBREAPER: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: prctl with integer arguments only; a worker without its shim has no purpose.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), None)
        .map_err(|e| format!("blocking SIGCHLD: {e}"))?;
    let sigchld = SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("signalfd: {e}"))?;
    // exec joins the container's pid namespace for its children; this puts us back after.
    let own_pid_ns =
        std::fs::File::open("/proc/self/ns/pid").map_err(|e| format!("/proc/self/ns/pid: {e}"))?;
    loop {
        let mut fds = [
            PollFd::new(requests.as_fd(), PollFlags::POLLIN),
            PollFd::new(sigchld.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
            Ok(_) => {}
        }
        let request_ready = fds[0].any().unwrap_or(false);
        if fds[1].any().unwrap_or(false) {
            while let Ok(Some(_)) = sigchld.read_signal() {}
            reap_all(exits)?;
        }
        if request_ready {
            let Some((req, fds)) =
                wire::recv::<Request>(requests.as_fd()).map_err(|e| e.to_string())?
            else {
                return Ok(());
            };
            let reply = handle(req, fds);
            if let Err(e) = setns(own_pid_ns.as_fd(), CloneFlags::CLONE_NEWPID) {
                return Err(format!("returning to the worker's pid namespace: {e}"));
            }
            let (msg, pidfd) = match reply {
                Ok((pid, pidfd)) => (Reply::Launched { pid }, Some(pidfd)),
                Err(e) => (Reply::Failed(e), None),
            };
            let raw: Vec<RawFd> = pidfd.iter().map(|fd| fd.as_raw_fd()).collect();
            wire::send(requests.as_fd(), &msg, &raw).map_err(|e| e.to_string())?;
        }
    }
}

/// Points 0, 1 and 2 at /dev/null: the worker must not hold the pipe `start` reads the
/// address from, nor write to containerd's descriptors.
fn detach_stdio() -> Result<(), String> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("/dev/null: {e}"))?;
    for target in 0..=2 {
        // SAFETY: dup2 of a descriptor we own onto a stdio number.
        if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
            return Err(format!(
                "dup2 /dev/null: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

fn reap_all(exits: &OwnedFd) -> Result<(), String> {
    loop {
        let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, code as u32),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as u32),
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return Ok(()),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("waitpid: {e}")),
        };
        let exited = Exited {
            pid: pid.as_raw(),
            status,
            at_nanos: now_nanos(),
        };
        wire::send(exits.as_fd(), &exited, &[]).map_err(|e| e.to_string())?;
    }
}

pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Runs one request; the descriptors are closed when this returns (the new process has its
/// own copies by then).
fn handle(req: Request, fds: Vec<OwnedFd>) -> Result<(i32, OwnedFd), String> {
    let (stdio_mode, root) = match &req {
        Request::Create { stdio, root, .. } | Request::Exec { stdio, root, .. } => (*stdio, root),
    };
    let (stdio, console) = stdio_of(stdio_mode, &fds)?;
    let store = Store::new(root);
    match req {
        Request::Create { id, bundle, .. } => {
            let opts = CreateOptions {
                id,
                bundle,
                console_stream: console,
                stdio,
                ..Default::default()
            };
            let created = lifecycle::create(&store, &opts).map_err(|e| e.to_string())?;
            Ok((created.init.pid, created.init.pidfd))
        }
        Request::Exec { id, process, .. } => {
            let dir = store.open(&id).map_err(|e| e.to_string())?;
            let state = dir.load().map_err(|e| e.to_string())?;
            let opts = ExecOptions {
                process: *process,
                console_socket: None,
                console_stream: console,
                pid_file: None,
                preserve_fds: 0,
                stdio,
            };
            let launched = lifecycle::exec(&dir, &state, &opts).map_err(|e| e.to_string())?;
            Ok((launched.pid, launched.pidfd))
        }
    }
}

type StdioParts = (Option<[RawFd; 3]>, Option<Arc<UnixStream>>);

fn stdio_of(mode: Stdio, fds: &[OwnedFd]) -> Result<StdioParts, String> {
    match (mode, fds) {
        (Stdio::Files, [stdin, stdout, stderr]) => Ok((
            Some([stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()]),
            None,
        )),
        (Stdio::Console, [sock]) => {
            let sock = sock
                .try_clone()
                .map_err(|e| format!("console socket: {e}"))?;
            Ok((None, Some(Arc::new(UnixStream::from(sock)))))
        }
        _ => Err(format!(
            "shim worker: {mode:?} stdio arrived with {} descriptors",
            fds.len()
        )),
    }
}
