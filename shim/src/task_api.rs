//! containerd's Task service over ttrpc: decodes requests, calls `Service`, encodes answers.

use std::sync::Arc;

use containerd_shim::protos::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PauseRequest,
    PidsRequest, PidsResponse, ProcessInfo, ResizePtyRequest, ResumeRequest, ShutdownRequest,
    StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::MessageFull;
use containerd_shim::protos::shim::oci::ProcessDetails;
use containerd_shim::protos::types::task::Status;
use containerd_shim::{Task, TtrpcContext, TtrpcResult};
use runvm_runtime::lifecycle;

use crate::error::ShimError;
use crate::process::timestamp;
use crate::service::{CreateSpec, Service};
use crate::stdio::StdioPaths;

/// The Task service handed to the ttrpc server.
pub struct TaskApi(pub Arc<Service>);

/// Packs `msg` the way containerd's typeurl does (the bare message name as the type URL).
fn to_any<M: MessageFull>(msg: &M) -> Result<Any, ShimError> {
    Ok(Any {
        type_url: M::descriptor().full_name().to_string(),
        value: msg
            .write_to_bytes()
            .map_err(|e| ShimError::Internal(e.to_string()))?,
        ..Default::default()
    })
}

/// containerd sends OCI structures (exec process, update resources) as JSON in an Any.
fn json_of<T: serde::de::DeserializeOwned>(any: &Any, field: &str) -> Result<T, ShimError> {
    serde_json::from_slice(&any.value)
        .map_err(|e| ShimError::InvalidArgument(format!("{field} ({}): {e}", any.type_url)))
}

fn runtime_status(status: runvm_oci::Status) -> Status {
    match status {
        runvm_oci::Status::Creating | runvm_oci::Status::Created => Status::CREATED,
        runvm_oci::Status::Running => Status::RUNNING,
        runvm_oci::Status::Paused => Status::PAUSED,
        runvm_oci::Status::Stopped => Status::STOPPED,
    }
}

impl Task for TaskApi {
    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let service = &self.0;
        let tasks = service.lock();
        let container = tasks
            .get(&req.id)
            .ok_or_else(|| ShimError::NotFound(format!("task {}", req.id)))?;
        let process = if req.exec_id.is_empty() {
            &container.init
        } else {
            container
                .execs
                .get(&req.exec_id)
                .ok_or_else(|| ShimError::NotFound(format!("exec {}", req.exec_id)))?
        };
        let mut status = process.status();
        // Paused is the cgroup's state, not the shim's: ask runvm for a live init.
        if req.exec_id.is_empty() && status == Status::RUNNING {
            if let Ok(dir) = runvm_runtime::container::Store::new(&service.root).open(&req.id) {
                if let Ok((_, live)) = lifecycle::container_state(&dir) {
                    status = runtime_status(live);
                }
            }
        }
        let (exit_status, exited_at) = process.exited().unwrap_or((0, 0));
        Ok(StateResponse {
            id: req.id.clone(),
            bundle: container.bundle.display().to_string(),
            pid: process.pid.max(0) as u32,
            status: status.into(),
            stdin: process.paths.stdin.clone(),
            stdout: process.paths.stdout.clone(),
            stderr: process.paths.stderr.clone(),
            terminal: process.paths.terminal,
            exit_status,
            exited_at: if process.exited().is_some() {
                timestamp(exited_at)
            } else {
                Default::default()
            },
            exec_id: req.exec_id,
            ..Default::default()
        })
    }

    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        if !req.checkpoint.is_empty() {
            return Err(
                ShimError::InvalidArgument("checkpoint restore is not supported".into()).into(),
            );
        }
        let pid = self.0.create(CreateSpec {
            id: req.id,
            bundle: req.bundle.into(),
            rootfs: req.rootfs,
            stdio: StdioPaths {
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
                terminal: req.terminal,
            },
        })?;
        Ok(CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let pid = self.0.start(&req.id, &req.exec_id)?;
        Ok(StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let (pid, exit_status, at) = self.0.delete(&req.id, &req.exec_id)?;
        Ok(DeleteResponse {
            pid,
            exit_status,
            exited_at: timestamp(at),
            ..Default::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let (_, state) = self.0.open(&req.id)?;
        let pids = lifecycle::pids(&state).map_err(ShimError::from)?;
        let tasks = self.0.lock();
        let execs: Vec<(i32, String)> = tasks
            .get(&req.id)
            .map(|c| {
                c.execs
                    .values()
                    .map(|p| (p.pid, p.exec_id.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut processes = Vec::with_capacity(pids.len());
        for pid in pids {
            let mut info = ProcessInfo {
                pid: pid as u32,
                ..Default::default()
            };
            if let Some((_, exec_id)) = execs.iter().find(|(p, _)| *p == pid) {
                let details = ProcessDetails {
                    exec_id: exec_id.clone(),
                    ..Default::default()
                };
                info.info = Some(to_any(&details)?).into();
            }
            processes.push(info);
        }
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        self.0.pause(&req.id)?;
        Ok(Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        self.0.resume(&req.id)?;
        Ok(Empty::new())
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        self.0.kill(&req.id, &req.exec_id, req.signal, req.all)?;
        Ok(Empty::new())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let spec: oci_spec::runtime::Process = json_of(&req.spec, "exec spec")?;
        self.0.add_exec(
            &req.id,
            &req.exec_id,
            spec,
            StdioPaths {
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
                terminal: req.terminal,
            },
        )?;
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        self.0
            .resize(&req.id, &req.exec_id, req.width, req.height)?;
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        if req.stdin {
            self.0.close_stdin(&req.id, &req.exec_id)?;
        }
        Ok(Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let resources: oci_spec::runtime::LinuxResources = json_of(&req.resources, "resources")?;
        let _tasks = self.0.lock();
        let (dir, state) = self.0.open(&req.id)?;
        lifecycle::update(&dir, &state, &resources).map_err(ShimError::from)?;
        Ok(Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let (exit_status, at) = self.0.wait(&req.id, &req.exec_id)?;
        Ok(WaitResponse {
            exit_status,
            exited_at: timestamp(at),
            ..Default::default()
        })
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let (_, state) = self.0.open(&req.id)?;
        let stats = lifecycle::stats(&state).map_err(ShimError::from)?;
        let metrics = crate::metrics::to_metrics(&stats);
        Ok(StatsResponse {
            stats: Some(to_any(&metrics)?).into(),
            ..Default::default()
        })
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let task_pid = self
            .0
            .lock()
            .get(&req.id)
            .map_or(0, |c| c.init.pid.max(0) as u32);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        // Other tasks may still live in this shim; it exits with the last one.
        if self.0.is_empty() {
            self.0.exit.signal();
        }
        Ok(Empty::new())
    }
}
