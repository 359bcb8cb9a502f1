//! The task service's state and operations: one entry per container (normally one per shim),
//! each with its init and exec processes. Requests that start a process go to the worker
//! (see `worker`); the rest call `runvm_runtime::lifecycle` directly.
//!
//! One mutex guards the table and is held across a start/exec and the event it publishes, and
//! exits are applied under it too: the worker reports an exit only after replying to the
//! request that started the process, so TaskExit always follows TaskStart/TaskExecStarted.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use containerd_shim::protos::api::Mount;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::ExitSignal;
use runvm_oci::ContainerState;
use runvm_runtime::container::{ContainerDir, Store};
use runvm_runtime::lifecycle;

use crate::error::ShimError;
use crate::events::Events;
use crate::process::{timestamp, Phase, Process};
use crate::stdio::{self, StdioPaths};
use crate::worker::{self, Request, Worker};

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub init: Process,
    pub execs: HashMap<String, Process>,
    pub mounted_rootfs: bool,
}

impl Container {
    fn process(&self, exec_id: &str) -> Result<&Process, ShimError> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs
            .get(exec_id)
            .ok_or_else(|| ShimError::NotFound(format!("exec {exec_id:?} of {}", self.id)))
    }

    fn process_mut(&mut self, exec_id: &str) -> Result<&mut Process, ShimError> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        let id = self.id.clone();
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| ShimError::NotFound(format!("exec {exec_id:?} of {id}")))
    }
}

pub struct Service {
    pub tasks: Mutex<HashMap<String, Container>>,
    pub exited: Condvar,
    /// The worker's request socket; requests are one at a time.
    worker_requests: Mutex<OwnedFd>,
    pub events: Events,
    /// runvm's state root for this namespace.
    pub root: PathBuf,
    pub exit: Arc<ExitSignal>,
}

/// A Create request, reduced to what the shim uses.
pub struct CreateSpec {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: Vec<Mount>,
    pub stdio: StdioPaths,
}

fn internal(e: impl std::fmt::Display) -> ShimError {
    ShimError::Internal(e.to_string())
}

impl Service {
    /// `worker_requests` is [`Worker::requests`]; the worker's exits go to [`Service::on_exit`].
    pub fn new(
        worker_requests: OwnedFd,
        events: Events,
        root: PathBuf,
        exit: Arc<ExitSignal>,
    ) -> Self {
        Service {
            tasks: Mutex::new(HashMap::new()),
            exited: Condvar::new(),
            worker_requests: Mutex::new(worker_requests),
            events,
            root,
            exit,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, Container>> {
        self.tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn store(&self) -> Store {
        Store::new(&self.root)
    }

    /// The runvm state of container `id`, locked.
    pub fn open(&self, id: &str) -> Result<(ContainerDir, ContainerState), ShimError> {
        let dir = self.store().open(id)?;
        let state = dir.load()?;
        Ok((dir, state))
    }

    /// Starts a process through the worker, with stdio from `paths`.
    fn launch(
        &self,
        request: impl FnOnce(worker::Stdio) -> Request,
        paths: &StdioPaths,
    ) -> Result<(i32, OwnedFd, stdio::Held), ShimError> {
        let prepared = stdio::prepare(paths).map_err(internal)?;
        let req = request(prepared.mode());
        let (pid, pidfd) = {
            let sock = self
                .worker_requests
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            Worker::call(sock.as_fd(), &req, &prepared.raw_fds()).map_err(ShimError::Internal)?
        };
        let held = prepared.finish(paths).map_err(internal)?;
        Ok((pid, pidfd, held))
    }

    pub fn create(&self, spec: CreateSpec) -> Result<i32, ShimError> {
        let mut tasks = self.lock();
        if tasks.contains_key(&spec.id) {
            return Err(ShimError::AlreadyExists(format!("task {}", spec.id)));
        }
        crate::rootfs::mount_all(&spec.bundle, &spec.rootfs).map_err(ShimError::Internal)?;
        let launched = self.launch(
            |stdio| Request::Create {
                root: self.root.clone(),
                id: spec.id.clone(),
                bundle: spec.bundle.clone(),
                stdio,
            },
            &spec.stdio,
        );
        let (pid, pidfd, held) = match launched {
            Ok(l) => l,
            Err(e) => {
                if !spec.rootfs.is_empty() {
                    crate::rootfs::unmount(&spec.bundle);
                }
                return Err(e);
            }
        };
        let mut init = Process::new("", spec.stdio.clone());
        init.pid = pid;
        init.pidfd = Some(pidfd);
        init.held = held;
        self.events.send(TaskCreate {
            container_id: spec.id.clone(),
            bundle: spec.bundle.display().to_string(),
            rootfs: spec.rootfs.clone(),
            io: Some(TaskIO {
                stdin: spec.stdio.stdin.clone(),
                stdout: spec.stdio.stdout.clone(),
                stderr: spec.stdio.stderr.clone(),
                terminal: spec.stdio.terminal,
                ..Default::default()
            })
            .into(),
            pid: pid as u32,
            ..Default::default()
        });
        tasks.insert(
            spec.id.clone(),
            Container {
                id: spec.id,
                bundle: spec.bundle,
                init,
                execs: HashMap::new(),
                mounted_rootfs: !spec.rootfs.is_empty(),
            },
        );
        Ok(pid)
    }

    pub fn start(&self, id: &str, exec_id: &str) -> Result<i32, ShimError> {
        let mut tasks = self.lock();
        let container = tasks
            .get_mut(id)
            .ok_or_else(|| ShimError::NotFound(format!("task {id}")))?;
        if exec_id.is_empty() {
            if container.init.phase != Phase::Created {
                return Err(ShimError::FailedPrecondition(format!(
                    "task {id} already started"
                )));
            }
            let (dir, mut state) = self.open(id)?;
            lifecycle::start(&dir, &mut state)?;
            container.init.phase = Phase::Running;
            // The client opened its stdin writer when Create opened our reader, an RPC ago:
            // from now on its close is the process's EOF.
            container.init.held.stdin_writer = None;
            let pid = container.init.pid;
            self.events.send(TaskStart {
                container_id: id.to_string(),
                pid: pid as u32,
                ..Default::default()
            });
            return Ok(pid);
        }
        let process = container.process_mut(exec_id)?;
        if process.phase != Phase::Created {
            return Err(ShimError::FailedPrecondition(format!(
                "exec {exec_id} already started"
            )));
        }
        let spec = process
            .spec
            .take()
            .ok_or_else(|| ShimError::Internal(format!("exec {exec_id} has no process spec")))?;
        let paths = process.paths.clone();
        let launched = self.launch(
            |stdio| Request::Exec {
                root: self.root.clone(),
                id: id.to_string(),
                process: spec,
                stdio,
            },
            &paths,
        );
        let (pid, pidfd, mut held) = match launched {
            Ok(l) => l,
            Err(e) => {
                // containerd deletes a failed exec; it never ran, so it has no exit status.
                process.set_exited(255, worker::now_nanos());
                return Err(e);
            }
        };
        // Unlike init's, an exec's stdin FIFO is first opened here, so the client's writer may
        // not be connected yet: the placeholder stays until CloseIO (ctr, docker and the CRI
        // send it when their stdin ends) or the exit.
        if process.stdin_closed {
            held.stdin_writer = None;
        }
        process.pid = pid;
        process.pidfd = Some(pidfd);
        process.held = held;
        process.phase = Phase::Running;
        self.events.send(TaskExecStarted {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            pid: pid as u32,
            ..Default::default()
        });
        Ok(pid)
    }

    pub fn add_exec(
        &self,
        id: &str,
        exec_id: &str,
        spec: oci_spec::runtime::Process,
        paths: StdioPaths,
    ) -> Result<(), ShimError> {
        let mut tasks = self.lock();
        let container = tasks
            .get_mut(id)
            .ok_or_else(|| ShimError::NotFound(format!("task {id}")))?;
        if container.init.exited().is_some() {
            return Err(ShimError::FailedPrecondition(format!(
                "task {id} has stopped"
            )));
        }
        if exec_id.is_empty() || container.execs.contains_key(exec_id) {
            return Err(ShimError::AlreadyExists(format!(
                "exec {exec_id:?} of {id}"
            )));
        }
        let mut process = Process::new(exec_id, paths);
        process.spec = Some(Box::new(spec));
        container.execs.insert(exec_id.to_string(), process);
        self.events.send(TaskExecAdded {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        });
        Ok(())
    }

    /// Applies an exit the worker reported; unknown pids (reparented strays) are ignored.
    pub fn on_exit(&self, exited: worker::Exited) {
        let mut tasks = self.lock();
        for container in tasks.values_mut() {
            let id = container.id.clone();
            let running = std::iter::once(&mut container.init)
                .chain(container.execs.values_mut())
                .find(|p| p.pid == exited.pid && p.exited().is_none() && p.pid > 0);
            if let Some(process) = running {
                process.set_exited(exited.status, exited.at_nanos);
                let exec_id = process.exec_id.clone();
                self.events.send(TaskExit {
                    container_id: id.clone(),
                    id: if exec_id.is_empty() { id } else { exec_id },
                    pid: exited.pid as u32,
                    exit_status: exited.status,
                    exited_at: timestamp(exited.at_nanos),
                    ..Default::default()
                });
                self.exited.notify_all();
                return;
            }
        }
    }

    /// Blocks until the process has exited; returns its status and time.
    pub fn wait(&self, id: &str, exec_id: &str) -> Result<(u32, i64), ShimError> {
        let mut tasks = self.lock();
        loop {
            let container = tasks
                .get(id)
                .ok_or_else(|| ShimError::NotFound(format!("task {id}")))?;
            if let Some(done) = container.process(exec_id)?.exited() {
                return Ok(done);
            }
            tasks = self
                .exited
                .wait(tasks)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    pub fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<(), ShimError> {
        let tasks = self.lock();
        let container = tasks
            .get(id)
            .ok_or_else(|| ShimError::NotFound(format!("task {id}")))?;
        if exec_id.is_empty() && all {
            let (dir, state) = self.open(id)?;
            return Ok(lifecycle::kill(&dir, &state, signal as i32, true)?);
        }
        container.process(exec_id)?.signal(signal)
    }

    /// Deletes an exited (or never started) process; for init, the whole container.
    pub fn delete(&self, id: &str, exec_id: &str) -> Result<(u32, u32, i64), ShimError> {
        let mut tasks = self.lock();
        let container = tasks
            .get_mut(id)
            .ok_or_else(|| ShimError::NotFound(format!("task {id}")))?;
        if !exec_id.is_empty() {
            let process = container.process(exec_id)?;
            if process.phase == Phase::Running {
                return Err(ShimError::FailedPrecondition(format!(
                    "exec {exec_id} of {id} is still running"
                )));
            }
            let (status, at) = process.exited().unwrap_or((0, 0));
            let pid = process.pid as u32;
            container.execs.remove(exec_id);
            return Ok((pid, status, at));
        }
        if container.init.phase == Phase::Running {
            return Err(ShimError::FailedPrecondition(format!(
                "task {id} is still running"
            )));
        }
        // A created task that never started is killed here (as containerd expects).
        match self.open(id) {
            Ok((dir, state)) => lifecycle::delete(dir, &state, true)?,
            Err(ShimError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        if container.mounted_rootfs {
            crate::rootfs::unmount(&container.bundle);
        }
        let pid = container.init.pid as u32;
        let (status, at) = container
            .init
            .exited()
            .unwrap_or((128 + libc::SIGKILL as u32, worker::now_nanos()));
        self.events.send(TaskDelete {
            container_id: id.to_string(),
            pid,
            exit_status: status,
            exited_at: timestamp(at),
            id: id.to_string(),
            ..Default::default()
        });
        tasks.remove(id);
        Ok((pid, status, at))
    }

    pub fn pause(&self, id: &str) -> Result<(), ShimError> {
        let _tasks = self.lock();
        let (dir, state) = self.open(id)?;
        lifecycle::pause(&dir, &state)?;
        self.events.send(TaskPaused {
            container_id: id.to_string(),
            ..Default::default()
        });
        Ok(())
    }

    pub fn resume(&self, id: &str) -> Result<(), ShimError> {
        let _tasks = self.lock();
        let (dir, state) = self.open(id)?;
        lifecycle::resume(&dir, &state)?;
        self.events.send(TaskResumed {
            container_id: id.to_string(),
            ..Default::default()
        });
        Ok(())
    }

    /// Releases the stdin placeholder (non-terminal) so the process reads EOF once the
    /// client's writer is closed too.
    pub fn close_stdin(&self, id: &str, exec_id: &str) -> Result<(), ShimError> {
        let mut tasks = self.lock();
        let container = tasks
            .get_mut(id)
            .ok_or_else(|| ShimError::NotFound(format!("task {id}")))?;
        let process = container.process_mut(exec_id)?;
        process.stdin_closed = true;
        process.held.stdin_writer = None;
        Ok(())
    }

    pub fn resize(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), ShimError> {
        let tasks = self.lock();
        let container = tasks
            .get(id)
            .ok_or_else(|| ShimError::NotFound(format!("task {id}")))?;
        let process = container.process(exec_id)?;
        let Some(master) = &process.held.console else {
            return Err(ShimError::FailedPrecondition(format!(
                "process {} has no terminal",
                process.pid
            )));
        };
        stdio::resize(master, width, height).map_err(internal)
    }

    pub fn bundle_of(&self, id: &str) -> Option<PathBuf> {
        self.lock().get(id).map(|c| c.bundle.clone())
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// runvm's state root for containerd namespace `namespace`.
pub fn state_root(namespace: &str) -> PathBuf {
    Path::new("/run/containerd/runvm").join(namespace)
}
