//! Starting device worker threads in a confined monitor.
//!
//! A device starts its worker when the guest driver activates it, and that happens on the vCPU
//! thread whose register write set DRIVER_OK. A thread started there would inherit the vCPU
//! filter, which allows neither thread creation nor the worker's sockets and event loop. So a
//! confined monitor starts a spawner thread before any vCPU exists; devices hand it the
//! worker's body and it starts the thread. The spawner's filter is the worker list plus thread
//! creation, and each worker installs the worker filter on itself before running its body,
//! so no worker runs with more than the worker list.
//!
//! Unconfined (no spawner started), [`spawn_device_worker`] starts the thread directly.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;

use super::seccomp::{self, SeccompMode, ThreadKind};
use super::{ConfineError, ThreadFilter};

type Body = Box<dyn FnOnce() + Send + 'static>;

struct Request {
    name: String,
    body: Body,
    reply: Sender<std::io::Result<JoinHandle<()>>>,
}

/// The spawner's inbox, set once when a confined monitor starts.
static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();

/// Starts a device worker thread named `name` running `body`, under the device-worker
/// filter when the monitor is confined. Callable from any thread, vCPU threads included.
pub fn spawn_device_worker<F>(name: &str, body: F) -> std::io::Result<JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    let body: Body = Box::new(body);
    let Some(inbox) = SPAWNER.get() else {
        return start_worker(name.to_string(), body);
    };
    let (reply, answer) = mpsc::channel();
    inbox
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send(Request {
            name: name.to_string(),
            body,
            reply,
        })
        .map_err(|_| spawner_gone())?;
    answer.recv().map_err(|_| spawner_gone())?
}

fn spawner_gone() -> std::io::Error {
    std::io::Error::other("the device worker spawner thread has ended")
}

/// Starts the spawner with its filter (once per process: one confined VM per process).
pub(crate) fn start_spawner(mode: SeccompMode) -> Result<(), ConfineError> {
    if SPAWNER.get().is_some() {
        return Ok(());
    }
    let filter = ThreadFilter::new(ThreadKind::WorkerSpawner, mode)?;
    let (inbox, requests) = mpsc::channel();
    let (ready, installed) = mpsc::channel();
    std::thread::Builder::new()
        .name("worker-spawner".into())
        .spawn(move || {
            let result = filter.install();
            let ok = result.is_ok();
            let _ = ready.send(result);
            if ok {
                serve(requests);
            }
        })
        .map_err(|e| ConfineError::Policy(format!("cannot start the worker spawner: {e}")))?;
    installed.recv().map_err(|_| {
        ConfineError::Policy("the worker spawner ended before it was ready".into())
    })??;
    let _ = SPAWNER.set(Mutex::new(inbox));
    Ok(())
}

fn serve(requests: Receiver<Request>) {
    for request in requests {
        let _ = request.reply.send(start_worker(request.name, request.body));
    }
}

/// Starts the thread; it filters itself before the body runs and never runs it unfiltered.
fn start_worker(name: String, body: Body) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.clone()).spawn(
        move || match seccomp::enter_device_worker() {
            Ok(()) => body(),
            Err(e) => eprintln!("runvm: device worker {name} not started: {e}"),
        },
    )
}
