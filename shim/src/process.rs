//! What the shim records about each process of a task (init and execs): its pid and pidfd,
//! stdio, and how it ended.

use std::os::fd::OwnedFd;

use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::types::task::Status;

use crate::error::ShimError;
use crate::stdio::{Held, StdioPaths};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Exec registered (not started yet), or init created and waiting for start.
    Created,
    Running,
    Exited {
        status: u32,
        at_nanos: i64,
    },
}

#[derive(Debug)]
pub struct Process {
    /// containerd's id: the exec id, or empty for init.
    pub exec_id: String,
    pub pid: i32,
    pub pidfd: Option<OwnedFd>,
    pub paths: StdioPaths,
    pub held: Held,
    pub phase: Phase,
    /// An exec's process spec, kept from Exec until Start.
    pub spec: Option<Box<oci_spec::runtime::Process>>,
    /// CloseIO(stdin) arrived (possibly before Start).
    pub stdin_closed: bool,
}

impl Process {
    pub fn new(exec_id: &str, paths: StdioPaths) -> Process {
        Process {
            exec_id: exec_id.to_string(),
            pid: 0,
            pidfd: None,
            paths,
            held: Held::default(),
            phase: Phase::Created,
            spec: None,
            stdin_closed: false,
        }
    }

    pub fn exited(&self) -> Option<(u32, i64)> {
        match self.phase {
            Phase::Exited { status, at_nanos } => Some((status, at_nanos)),
            _ => None,
        }
    }

    /// Records the exit and lets go of the stdio placeholders, so the client's readers see EOF
    /// once the process's own descriptors are closed.
    pub fn set_exited(&mut self, status: u32, at_nanos: i64) {
        self.phase = Phase::Exited { status, at_nanos };
        self.held = Held::default();
        self.pidfd = None;
    }

    pub fn signal(&self, signal: u32) -> Result<(), ShimError> {
        let finished = || ShimError::NotFound(format!("process {} already finished", self.pid));
        if self.exited().is_some() {
            return Err(finished());
        }
        let Some(pidfd) = &self.pidfd else {
            return Err(ShimError::FailedPrecondition(
                "process is not started".to_string(),
            ));
        };
        runvm_runtime::process::launch::send_signal(pidfd, signal as i32).map_err(|e| {
            if e.raw_os_error() == Some(libc::ESRCH) {
                finished()
            } else {
                ShimError::Internal(format!("signal {signal} to pid {}: {e}", self.pid))
            }
        })
    }

    pub fn status(&self) -> Status {
        match self.phase {
            Phase::Created => Status::CREATED,
            Phase::Running => Status::RUNNING,
            Phase::Exited { .. } => Status::STOPPED,
        }
    }
}

pub fn timestamp(nanos: i64) -> MessageField<Timestamp> {
    MessageField::some(Timestamp {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
        ..Default::default()
    })
}
