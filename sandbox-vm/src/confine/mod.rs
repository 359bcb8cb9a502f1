//! The monitor confines itself once the VM is built: its own cgroup and namespaces and a jail
//! root (`isolation`, `cgroup`; opt-in, needs root), no capabilities and no_new_privs
//! (`privileges`), and a seccomp filter per thread kind (`seccomp`), installed by each
//! thread on itself before it touches guest input.
//!
//! Order, all on the thread that starts the VM and before any VM thread exists, so every
//! thread inherits the result: compile the filters, join the cgroup, unshare namespaces,
//! enter the jail, drop privileges. Then each vCPU thread installs its filter first thing,
//! device workers are started through [`workers::spawn_device_worker`], and the starting thread may filter
//! itself last ([`Confinement::filter_starting_thread`]).

pub mod cgroup;
pub mod isolation;
pub mod privileges;
pub mod seccomp;
pub mod workers;

use std::path::PathBuf;
use std::sync::Arc;

use seccompiler::BpfProgram;
use serde::Serialize;
use thiserror::Error;

use crate::exit::{ExitReason, ExitSignal};
pub use cgroup::{CgroupMembership, CgroupPlacement};
pub use isolation::Namespace;
pub use seccomp::{SeccompMode, ThreadKind};

/// How the monitor confines itself when the VM starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confinement {
    /// Per-thread seccomp filters, and what they do with a call off the list; None: none.
    pub seccomp: Option<SeccompMode>,
    /// Drop every capability and set no_new_privs before the vCPU threads start.
    pub drop_privileges: bool,
    /// Also filter the thread that calls `Vm::start` (with the main-thread list) once the
    /// vCPUs run. That thread must then do nothing beyond waiting for the VM, printing and
    /// exiting: only for a process whose only job is this VM.
    pub filter_starting_thread: bool,
    /// Own cgroup, namespaces and jail root; None: stay where the caller is.
    pub isolation: Option<Isolation>,
}

impl Confinement {
    /// Filters that kill the monitor on a call off the list, and no privileges: needs
    /// nothing from the host, costs a few hundred microseconds.
    pub fn standard() -> Confinement {
        Confinement {
            seccomp: Some(SeccompMode::Kill),
            drop_privileges: true,
            filter_starting_thread: false,
            isolation: None,
        }
    }
}

/// Where the monitor moves before its threads start (needs root).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Isolation {
    /// The monitor's own cgroup: created, joined, and removed when the VM ends.
    pub cgroup: Option<CgroupPlacement>,
    /// New namespaces for the monitor.
    pub namespaces: Vec<Namespace>,
    /// A directory that becomes the monitor's root (pivot_root); needs [`Namespace::Mount`].
    /// It should hold only what devices open after the build (nothing today).
    pub jail: Option<PathBuf>,
}

/// Why the monitor could not confine itself.
#[derive(Debug, Error)]
pub enum ConfineError {
    #[error("cannot build the seccomp filter of {kind:?} threads: {detail}")]
    SeccompCompile { kind: ThreadKind, detail: String },
    #[error("cannot install the seccomp filter of a {kind:?} thread: {detail}")]
    SeccompInstall { kind: ThreadKind, detail: String },
    #[error("cannot clear the {set} capability set: {detail}")]
    Capabilities { set: &'static str, detail: String },
    #[error("{what} failed: {errno}")]
    Syscall {
        what: &'static str,
        errno: nix::Error,
    },
    #[error("cgroup {path}: {detail}")]
    Cgroup { path: PathBuf, detail: String },
    #[error("jail {dir}: {what} failed: {errno}")]
    Jail {
        dir: PathBuf,
        what: &'static str,
        errno: nix::Error,
    },
    #[error("invalid confinement: {0}")]
    Policy(String),
}

/// A compiled filter and its mode, shared by the threads of one kind.
#[derive(Debug, Clone)]
pub struct ThreadFilter {
    kind: ThreadKind,
    mode: SeccompMode,
    program: Arc<BpfProgram>,
}

impl ThreadFilter {
    pub fn new(kind: ThreadKind, mode: SeccompMode) -> Result<ThreadFilter, ConfineError> {
        Ok(ThreadFilter {
            kind,
            mode,
            program: Arc::new(seccomp::compile(kind, mode)?),
        })
    }

    /// Installs the filter on the calling thread.
    pub fn install(&self) -> Result<(), ConfineError> {
        seccomp::install_on_this_thread(self.kind, self.mode, &self.program)
    }
}

/// The monitor after [`ConfinedMonitor::enter`]: holds the vCPU and main filters and the
/// cgroup membership (left and removed on drop, after the VM's threads are joined).
pub struct ConfinedMonitor {
    vcpu: Option<ThreadFilter>,
    main: Option<ThreadFilter>,
    _cgroup: Option<CgroupMembership>,
}

impl ConfinedMonitor {
    /// Applies `policy` to the calling thread (see the module comment for the order).
    pub fn enter(policy: &Confinement) -> Result<ConfinedMonitor, ConfineError> {
        let filter = |kind| policy.seccomp.map(|mode| ThreadFilter::new(kind, mode));
        let vcpu = filter(ThreadKind::Vcpu).transpose()?;
        let main = if policy.filter_starting_thread {
            filter(ThreadKind::Main).transpose()?
        } else {
            None
        };
        if let Some(mode) = policy.seccomp {
            seccomp::set_worker_filter(mode)?;
        }
        let mut cgroup = None;
        if let Some(isolation) = &policy.isolation {
            if isolation.jail.is_some() && !isolation.namespaces.contains(&Namespace::Mount) {
                return Err(ConfineError::Policy(
                    "isolation.jail needs Namespace::Mount in isolation.namespaces".into(),
                ));
            }
            cgroup = isolation
                .cgroup
                .as_ref()
                .map(CgroupMembership::join)
                .transpose()?;
            isolation::unshare_namespaces(&isolation.namespaces)?;
            if let Some(jail) = &isolation.jail {
                isolation::enter_jail(jail)?;
            }
        }
        if policy.drop_privileges {
            privileges::set_no_new_privs()?;
            privileges::drop_all_capabilities()?;
        }
        // Last, so the spawner (and every worker it starts) inherits the cgroup, the
        // namespaces, the jail and the dropped privileges.
        if let Some(mode) = policy.seccomp {
            workers::start_spawner(mode)?;
        }
        Ok(ConfinedMonitor {
            vcpu,
            main,
            _cgroup: cgroup,
        })
    }

    /// The filter each vCPU thread installs first.
    pub fn vcpu_filter(&self) -> Option<ThreadFilter> {
        self.vcpu.clone()
    }

    /// Filters the calling (starting) thread, if the policy asked for it.
    pub fn filter_starting_thread(&self) -> Result<(), ConfineError> {
        self.main.as_ref().map_or(Ok(()), ThreadFilter::install)
    }
}

/// The first thing a vCPU thread does: installs its filter. On failure the VM ends with a
/// vCPU error (the thread must not run the guest unconfined) and this returns false.
pub fn enter_vcpu_thread(filter: Option<&ThreadFilter>, vcpu: u8, signal: &ExitSignal) -> bool {
    let Some(filter) = filter else {
        return true;
    };
    match filter.install() {
        Ok(()) => true,
        Err(e) => {
            signal.report(ExitReason::VcpuError {
                vcpu,
                detail: e.to_string(),
            });
            false
        }
    }
}
