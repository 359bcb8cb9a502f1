//! The shim binary's three roles, chosen by containerd's command line:
//! - `start`: spawn the long-lived shim (this binary without an action) and print its socket
//!   address, which containerd 1.6 reads as a bare string;
//! - no action: serve the Task API on `-socket` until Shutdown;
//! - `delete`: clean up after a shim that died (force-delete the container, unmount rootfs).
//!
//! containerd-shim 0.12's own `run` speaks containerd 2.x's start protocol (a JSON or protobuf
//! reply) and registers the task service only as `containerd.task.v3.Task`; containerd 1.6
//! expects a bare address and calls `containerd.task.v2.Task` (same messages). So the
//! bootstrap is written here, from the crate's parts, and serves both service names.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use containerd_shim::protos::api::DeleteResponse;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::ttrpc::{MethodHandler, Server};
use containerd_shim::protos::{create_task, Task};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{ExitSignal, Flags};

use crate::events::Events;
use crate::process::timestamp;
use crate::service::{state_root, Service};
use crate::task_api::TaskApi;
use crate::worker::{self, Worker};

/// What the served process writes to `start` once its socket listens.
const READY: &str = "ready";

pub fn main() -> i32 {
    let args: Vec<_> = std::env::args_os().collect();
    let flags = match containerd_shim::parse(&args[1..]) {
        Ok(flags) => flags,
        Err(e) => {
            eprintln!("containerd-shim-runvm-v2: {e}");
            return 2;
        }
    };
    if flags.version {
        println!("containerd-shim-runvm-v2 {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    if flags.namespace.is_empty() || flags.id.is_empty() {
        eprintln!("containerd-shim-runvm-v2: -namespace and -id are required");
        return 2;
    }
    let result = match flags.action.as_str() {
        "start" => start(&flags),
        "delete" => delete(&flags),
        "" => serve(&flags),
        other => Err(format!("unknown action {other:?}")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("containerd-shim-runvm-v2: {e}");
            1
        }
    }
}

fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

fn start(flags: &Flags) -> Result<(), String> {
    let address = containerd_shim::socket_address(&flags.address, &flags.namespace, &flags.id);
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(["-namespace", &flags.namespace, "-id", &flags.id])
        .args(["-address", &flags.address, "-socket", &address])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Out of containerd's process group: signals to it must not reach the shim.
        .process_group(0);
    if !flags.publish_binary.is_empty() {
        cmd.args(["-publish-binary", &flags.publish_binary]);
    }
    if flags.debug {
        cmd.arg("-debug");
    }
    let mut child = cmd.spawn().map_err(|e| format!("spawning the shim: {e}"))?;
    let mut said = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut said);
    }
    if said.trim() != READY {
        let _ = child.wait();
        return Err(format!(
            "the shim did not start serving on {address} (see containerd's log)"
        ));
    }
    std::fs::write("address", &address).map_err(|e| format!("writing address: {e}"))?;
    std::fs::write("shim.pid", child.id().to_string())
        .map_err(|e| format!("writing shim.pid: {e}"))?;
    print!("{address}");
    std::io::stdout().flush().map_err(|e| e.to_string())
}

fn delete(flags: &Flags) -> Result<(), String> {
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir().map_err(|e| format!("bundle: {e}"))?
    } else {
        PathBuf::from(&flags.bundle)
    };
    let store = runvm_runtime::container::Store::new(&state_root(&flags.namespace));
    match store.open(&flags.id) {
        Ok(dir) => {
            let state = dir.load().map_err(|e| e.to_string())?;
            runvm_runtime::lifecycle::delete(dir, &state, true).map_err(|e| e.to_string())?;
        }
        Err(runvm_runtime::container::StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.to_string()),
    }
    crate::rootfs::unmount(&bundle);
    // The dead shim could not remove its socket; `start` recorded where it was.
    if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
        let _ = std::fs::remove_file(socket_path(address.trim()));
    }
    let response = DeleteResponse {
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: timestamp(worker::now_nanos()),
        ..Default::default()
    };
    let bytes = response.write_to_bytes().map_err(|e| e.to_string())?;
    std::io::stdout()
        .write_all(&bytes)
        .map_err(|e| e.to_string())
}

type Methods = HashMap<String, Box<dyn MethodHandler + Send + Sync>>;

/// The generated table names `containerd.task.v3.Task`; containerd 1.6 calls v2.
fn task_methods(task: Arc<dyn Task + Send + Sync>) -> (Methods, Methods) {
    let v3 = create_task(Arc::clone(&task));
    let v2 = create_task(task)
        .into_iter()
        .map(|(path, handler)| {
            let renamed =
                path.replacen("/containerd.task.v3.Task/", "/containerd.task.v2.Task/", 1);
            (renamed, handler)
        })
        .collect();
    (v3, v2)
}

fn listen(path: &str) -> Result<UnixListener, String> {
    if let Some(parent) = Path::new(path).parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    match UnixListener::bind(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            // A stale socket from a shim that died: nothing else can own this task's name.
            std::fs::remove_file(path).map_err(|e| format!("{path}: {e}"))?;
            UnixListener::bind(path).map_err(|e| format!("{path}: {e}"))
        }
        other => other.map_err(|e| format!("{path}: {e}")),
    }
}

fn serve(flags: &Flags) -> Result<(), String> {
    // First, while this process has a single thread (see `worker`).
    let Worker {
        pid: worker_pid,
        requests,
        exits,
    } = Worker::spawn()?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "PR_SET_CHILD_SUBREAPER: {}",
            std::io::Error::last_os_error()
        ));
    }
    if let Err(e) = containerd_shim::logger::init(flags.debug, "info", &flags.namespace, &flags.id)
    {
        eprintln!("containerd-shim-runvm-v2: no log FIFO: {e}");
    }
    let ttrpc_address =
        std::env::var("TTRPC_ADDRESS").map_err(|_| "TTRPC_ADDRESS is not set".to_string())?;
    let publisher = RemotePublisher::new(&ttrpc_address)
        .map_err(|e| format!("connecting to containerd at {ttrpc_address}: {e}"))?;
    let events = Events::start(publisher, flags.namespace.clone());
    let exit = Arc::new(ExitSignal::default());
    let service = Arc::new(Service::new(
        requests,
        events,
        state_root(&flags.namespace),
        Arc::clone(&exit),
    ));
    spawn_exit_reader(Arc::clone(&service), exits);

    let socket = socket_path(&flags.socket).to_string();
    let listener = listen(&socket)?;
    let (v3, v2) = task_methods(Arc::new(TaskApi(Arc::clone(&service))));
    let mut server = Server::new()
        .add_listener(listener.into_raw_fd())
        .map_err(|e| format!("ttrpc listener: {e}"))?
        .register_service(v3)
        .register_service(v2);
    server.start().map_err(|e| format!("ttrpc server: {e}"))?;
    log::info!("runvm shim serving {socket} (worker pid {worker_pid})");
    tell_start_we_listen();

    exit.wait();
    server.shutdown();
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// Writes [`READY`] on stdout (the pipe `start` reads), then points stdout at stderr, which
/// closes the pipe and lets `start` print the address.
fn tell_start_we_listen() {
    let mut out = std::io::stdout();
    let _ = out.write_all(READY.as_bytes());
    let _ = out.flush();
    // SAFETY: dup2 between the process's own stdio descriptors.
    unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) };
}

/// Applies the worker's exit reports. If the worker dies, its children are reparented to this
/// process (a subreaper), so from then on this thread reaps them itself.
fn spawn_exit_reader(service: Arc<Service>, exits: OwnedFd) {
    std::thread::spawn(move || {
        while let Ok(Some((exited, _))) = crate::wire::recv::<worker::Exited>(exits.as_fd()) {
            service.on_exit(exited);
        }
        log::error!("the shim's worker is gone; reaping container processes in the shim");
        loop {
            use nix::sys::wait::{waitpid, WaitStatus};
            let (pid, status) = match waitpid(None, None) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code as u32),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as u32),
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    continue;
                }
            };
            service.on_exit(worker::Exited {
                pid: pid.as_raw(),
                status,
                at_nanos: worker::now_nanos(),
            });
        }
    });
}
