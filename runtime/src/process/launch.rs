//! The cli side of starting init: prepare everything that can fail before clone, clone, then
//! drive init through the channel until it is `Ready` (waiting for `start`).

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};
use runvm_oci::Bundle;

use super::channel::{self, Msg};
use super::credentials::Credentials;
use super::exec::ExecPlan;
use super::init::{self, InitPlan};
use super::{clone3, Forked};
use crate::cgroups::CgroupManager;
use crate::container::ContainerDir;
use crate::hooks;
use crate::namespaces::{self, NamespacePlan};

pub struct LaunchRequest<'a> {
    pub bundle: &'a Bundle,
    pub id: &'a str,
    pub dir: &'a ContainerDir,
    pub cgroup: &'a CgroupManager,
    pub console_socket: Option<&'a Path>,
    pub console_stream: Option<&'a UnixStream>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// Called with init's pid right after clone, before init does anything (create records
    /// it, so an interrupted create can be cleaned up).
    pub on_spawned: &'a dyn Fn(i32) -> Result<(), String>,
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
}

/// A live init waiting for `start`.
#[derive(Debug)]
pub struct Launched {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

impl Launched {
    /// For a failure after init is ready: no process may outlive a failed `create`.
    pub fn kill_and_reap(&self) {
        let _ = send_signal(&self.pidfd, libc::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
    }
}

/// Kills and reaps init if launching fails part-way, so no process is left behind.
pub(crate) struct InitGuard {
    pub(crate) pid: i32,
    pub(crate) pidfd: Option<OwnedFd>,
}

impl InitGuard {
    /// Launching succeeded: the process lives on as the container's.
    pub(crate) fn disarm(mut self, pid: i32) -> Result<Launched, String> {
        let pidfd = self.pidfd.take().ok_or("launch guard lost its pidfd")?;
        Ok(Launched { pid, pidfd })
    }
}

impl Drop for InitGuard {
    fn drop(&mut self) {
        if let Some(pidfd) = &self.pidfd {
            let _ = send_signal(pidfd, libc::SIGKILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
        }
    }
}

/// pidfd_send_signal(2): signals exactly the process the pidfd refers to, never a reused pid.
pub fn send_signal(pidfd: &OwnedFd, signal: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal with a valid pidfd, a signal number, no siginfo and no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub fn launch(req: &LaunchRequest) -> Result<Launched, String> {
    let spec = &req.bundle.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or("process: missing (create needs a process to run)")?;
    let linux = spec.linux().as_ref();
    let ns = NamespacePlan::from_spec(
        linux
            .and_then(|l| l.namespaces().as_deref())
            .unwrap_or_default(),
    )?;
    let credentials = Credentials::prepare(process, linux.and_then(|l| l.seccomp().as_ref()))?;
    if !ns.new_user {
        // Without a user namespace the container can only hold what runvm holds: say so now
        // rather than have init fail after `start`.
        crate::identity::CapsPlan::from_spec(process.capabilities().as_ref())?.check_grantable()?;
    }
    let exec = ExecPlan::from_process(process)?;

    let (fifo, error_file) = start_files(req.dir)?;
    let console = super::console::endpoint(req.console_stream, req.console_socket)?;
    let (cli_chan, init_chan) = channel::pair().map_err(|e| format!("socketpair: {e}"))?;
    if let Some(path) = &ns.pid_join {
        // Only affects children: the cli itself stays where it is.
        namespaces::join(LinuxNamespaceType::Pid, path)?;
    }

    let forked = clone3(ns.clone_flags)
        .map_err(|e| format!("linux.namespaces: clone3({:?}): {e}", ns.clone_flags))?;
    let (pid, pidfd) = match forked {
        Forked::Child => {
            drop(cli_chan);
            let plan = InitPlan {
                spec,
                rootfs: &req.bundle.rootfs,
                bundle: &req.bundle.dir,
                ns,
                credentials,
                exec,
                cgroup_sources: req.cgroup.mount_sources(),
                no_pivot: req.no_pivot,
                new_keyring: !req.no_new_keyring,
                id: req.id,
                host_pid: 0,
                fifo_fd: fifo.as_raw_fd(),
                console_fd: console.as_ref().map(|c| c.as_raw_fd()),
                preserve_fds: req.preserve_fds,
                close_fds: vec![req.dir.lock_fd()],
                error_fd: error_file.as_raw_fd(),
                stdio: req.stdio,
            };
            init::run(plan, init_chan)
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(init_chan);
    drop(fifo);
    drop(error_file);
    drop(console);
    let guard = InitGuard {
        pid,
        pidfd: Some(pidfd),
    };
    (req.on_spawned)(pid)?;

    if ns.new_user {
        write_id_maps(pid, linux)?;
    }
    req.cgroup.add_task(pid).map_err(|e| e.to_string())?;
    drive_to_ready(&cli_chan, req, pid, "container init")?;
    guard.disarm(pid)
}

/// What `start` talks to the standing process through (init, or a VM's supervisor): exec.fifo
/// and init.err in the state directory. O_RDWR never blocks on a FIFO and makes the standing
/// process's later read block (not see EOF) until `start` writes.
pub(crate) fn start_files(dir: &ContainerDir) -> Result<(std::fs::File, std::fs::File), String> {
    let fifo_path = dir.fifo_path();
    nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o600))
        .map_err(|e| format!("{}: mkfifo: {e}", fifo_path.display()))?;
    let fifo = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo_path)
        .map_err(|e| format!("{}: {e}", fifo_path.display()))?;
    let error_path = dir.path().join("init.err");
    let error_file =
        std::fs::File::create(&error_path).map_err(|e| format!("{}: {e}", error_path.display()))?;
    Ok((fifo, error_file))
}

/// The cli's half of the channel protocol, shared by every engine's standing process (init, or
/// a VM's supervisor): `Go`, then the create hooks when asked, until `Ready`.
pub(crate) fn drive_to_ready(
    chan: &channel::Channel,
    req: &LaunchRequest,
    pid: i32,
    peer: &str,
) -> Result<(), String> {
    let channel_err = |e: std::io::Error| format!("channel to {peer}: {e}");
    chan.send(&Msg::Go(pid)).map_err(channel_err)?;
    loop {
        match chan.recv().map_err(channel_err)? {
            Some(Msg::Hooks) => {
                run_create_hooks(&req.bundle.spec, req, pid)?;
                chan.send(&Msg::HooksDone).map_err(channel_err)?;
            }
            Some(Msg::Ready) => return Ok(()),
            Some(Msg::Error(msg)) => return Err(msg),
            Some(other) => return Err(format!("{peer} sent {other:?} out of order")),
            None => return Err(format!("{peer} exited during setup")),
        }
    }
}

/// prestart (deprecated, still honoured) then createRuntime, in the runtime's namespaces.
fn run_create_hooks(spec: &Spec, req: &LaunchRequest, pid: i32) -> Result<(), String> {
    let Some(h) = spec.hooks() else { return Ok(()) };
    // prestart is the legacy "before the program starts" hook: it is told "created", the
    // status runtime-tools' hooks_stdin expects of it; createRuntime sees "creating".
    let created = hooks::state_json(spec, req.id, "created", pid, &req.bundle.dir);
    let state = hooks::state_json(spec, req.id, "creating", pid, &req.bundle.dir);
    #[allow(deprecated)]
    let prestart = h.prestart().as_deref().unwrap_or_default();
    hooks::run_hooks("prestart", prestart, &created).map_err(|e| e.to_string())?;
    let create_runtime = h.create_runtime().as_deref().unwrap_or_default();
    hooks::run_hooks("createRuntime", create_runtime, &state).map_err(|e| e.to_string())
}

fn write_id_maps(pid: i32, linux: Option<&oci_spec::runtime::Linux>) -> Result<(), String> {
    let format = |maps: Option<&Vec<LinuxIdMapping>>| {
        maps.into_iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    let uid = format(linux.and_then(|l| l.uid_mappings().as_ref()));
    let gid = format(linux.and_then(|l| l.gid_mappings().as_ref()));
    std::fs::write(format!("/proc/{pid}/uid_map"), uid)
        .map_err(|e| format!("linux.uidMappings: writing /proc/{pid}/uid_map: {e}"))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), gid)
        .map_err(|e| format!("linux.gidMappings: writing /proc/{pid}/gid_map: {e}"))
}
