//! `exec`: start one more process in a running container. The cli joins init's pid namespace
//! (that only affects children), clones, puts the child in the container's cgroup, and the
//! child joins the other namespaces and execs (see process::join).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

use nix::sched::{setns, CloneFlags};
use oci_spec::runtime::{LinuxNamespaceType, Process};
use runvm_oci::{ContainerState, Status, CONFIG_FILE};

use super::Error;
use crate::container::{live_status, proc_start_time, ContainerDir};
use crate::hooks::pidfd_open;
use crate::process::channel::{self, Msg};
use crate::process::exec::ExecPlan;
use crate::process::join::{self, JoinPlan};
use crate::process::launch::Launched;
use crate::process::{clone3, Forked};

#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub console_stream: Option<Arc<UnixStream>>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    /// Descriptors for the process's stdin, stdout and stderr; `None` keeps the caller's own.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
}

/// Namespace types in the order the child joins them: user first, so the rest are entered with
/// its privileges; mount last, since it changes the root the other paths resolve in.
const JOIN_ORDER: [(LinuxNamespaceType, &str); 7] = [
    (LinuxNamespaceType::User, "user"),
    (LinuxNamespaceType::Ipc, "ipc"),
    (LinuxNamespaceType::Uts, "uts"),
    (LinuxNamespaceType::Network, "net"),
    (LinuxNamespaceType::Cgroup, "cgroup"),
    (LinuxNamespaceType::Time, "time"),
    (LinuxNamespaceType::Mount, "mnt"),
];

fn same_namespace(a: &str, b: &str) -> bool {
    match (std::fs::read_link(a), std::fs::read_link(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The container's namespaces that differ from ours: its pid namespace (joined by the cli) and
/// the rest in join order (joined by the child).
struct ContainerNamespaces {
    pid: Option<File>,
    others: Vec<(LinuxNamespaceType, File)>,
}

/// Opens the namespaces of init `pid` (while init is verified alive).
fn open_namespaces(pid: i32) -> Result<ContainerNamespaces, Error> {
    let open = |name: &str| {
        let path = format!("/proc/{pid}/ns/{name}");
        File::open(&path).map_err(|e| Error::Setup(format!("{path}: {e}")))
    };
    let differs = |name: &str| {
        !same_namespace(
            &format!("/proc/{pid}/ns/{name}"),
            &format!("/proc/self/ns/{name}"),
        )
    };
    let pid_ns = if differs("pid") {
        Some(open("pid")?)
    } else {
        None
    };
    let mut joins = Vec::new();
    for (typ, name) in JOIN_ORDER {
        if differs(name) {
            joins.push((typ, open(name)?));
        }
    }
    Ok(ContainerNamespaces {
        pid: pid_ns,
        others: joins,
    })
}

pub fn exec(
    dir: &ContainerDir,
    state: &ContainerState,
    opts: &ExecOptions,
) -> Result<Launched, Error> {
    let cgroup = super::cgroup_of(state)?;
    let status = live_status(state, dir, || cgroup.is_frozen().unwrap_or(false));
    if status != Status::Running && status != Status::Created {
        return Err(Error::WrongStatus {
            id: state.id.clone(),
            status,
            action: "exec",
            needed: "running",
        });
    }
    let engine = crate::engine::for_class(state.isolation, &Default::default());
    if let Some(why) = engine.exec_unsupported() {
        return Err(Error::Setup(format!("container {}: {why}", state.id)));
    }
    let spec = runvm_oci::load_spec(&state.bundle.join(CONFIG_FILE))?;
    let profile = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let credentials = crate::process::credentials::Credentials::prepare(&opts.process, profile)?;
    let exec = ExecPlan::from_process(&opts.process)?;

    // Pin init before reading its namespaces: a pidfd cannot follow a recycled pid.
    let init_fd = pidfd_open(state.pid)
        .filter(|_| proc_start_time(state.pid).is_some_and(|(t, _)| t == state.pid_start_time))
        .ok_or_else(|| Error::Setup(format!("container {} has no live init", state.id)))?;
    let ContainerNamespaces {
        pid: pid_ns,
        others: namespaces,
    } = open_namespaces(state.pid)?;
    if crate::hooks::has_exited(&init_fd) {
        return Err(Error::Setup(format!("container {} stopped", state.id)));
    }

    let console = crate::process::console::endpoint(
        opts.console_stream.as_deref(),
        opts.console_socket.as_deref(),
    )?;
    let (cli_chan, child_chan) =
        channel::pair().map_err(|e| Error::Setup(format!("socketpair: {e}")))?;
    // setns of a pid namespace only moves the caller's future children: join it for this one
    // clone, then go back, so a long-lived caller (the shim) is not left pointing its later
    // children into this container.
    let own_pid_ns = match &pid_ns {
        Some(_) => Some(
            File::open("/proc/self/ns/pid_for_children")
                .map_err(|e| Error::Setup(format!("/proc/self/ns/pid_for_children: {e}")))?,
        ),
        None => None,
    };
    if let Some(ns) = &pid_ns {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWPID)
            .map_err(|e| Error::Setup(format!("joining the container's pid namespace: {e}")))?;
    }
    let forked = clone3(CloneFlags::empty());
    // Only the parent goes back: the child's own children belong in the container.
    if !matches!(forked, Ok(Forked::Child)) {
        if let Some(own) = &own_pid_ns {
            setns(own.as_fd(), CloneFlags::CLONE_NEWPID).map_err(|e| {
                Error::Setup(format!("returning to the runtime's pid namespace: {e}"))
            })?;
        }
    }
    let forked = forked.map_err(|e| Error::Setup(format!("clone3: {e}")))?;
    let (pid, pidfd) = match forked {
        Forked::Child => {
            drop(cli_chan);
            let plan = JoinPlan {
                process: &opts.process,
                namespaces,
                chroot: state.rootfs_mounted_on_host.then(|| state.rootfs.clone()),
                credentials,
                exec,
                console_fd: console.as_ref().map(|c| c.as_raw_fd()),
                preserve_fds: opts.preserve_fds,
                close_fds: vec![dir.lock_fd()],
                stdio: opts.stdio,
            };
            join::run(plan, child_chan)
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(child_chan);
    drop(console);
    let launched = Launched { pid, pidfd };
    let result = cgroup
        .add_task(pid)
        .map_err(Error::from)
        .and_then(|()| {
            cli_chan
                .send(&Msg::Go(pid))
                .map_err(|e| Error::Setup(format!("channel: {e}")))
        })
        .and_then(|()| match cli_chan.recv() {
            // The channel closes on a successful execve (close-on-exec).
            Ok(None) => Ok(()),
            Ok(Some(Msg::Error(msg))) => Err(Error::Setup(msg)),
            Ok(Some(other)) => Err(Error::Setup(format!("exec child sent {other:?}"))),
            Err(e) => Err(Error::Setup(format!("channel: {e}"))),
        })
        .and_then(|()| match &opts.pid_file {
            Some(path) => super::create::write_pid_file(path, pid),
            None => Ok(()),
        });
    if let Err(e) = result {
        launched.kill_and_reap();
        return Err(e);
    }
    Ok(launched)
}
