//! The child side of `exec`: a clone of the cli that enters a running container's namespaces
//! and becomes the extra process. Like init it reports failures over the channel; unlike init
//! it does not wait for `start`: the channel closing on execve (close-on-exec) is the success.

use std::fs::File;
use std::os::fd::{AsFd, RawFd};
use std::path::PathBuf;

use nix::sched::setns;
use nix::sys::signal::{signal, SigHandler, SigSet, SigmaskHow, Signal};
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::channel::{Channel, Msg};
use super::credentials::{self, Credentials};
use super::exec::ExecPlan;
use crate::namespaces::flag_of;

/// Everything the exec'd process needs, prepared by the cli before clone.
pub struct JoinPlan<'a> {
    pub process: &'a Process,
    /// The container's namespaces that differ from the cli's, user first (pid is joined by
    /// the cli before clone).
    pub namespaces: Vec<(LinuxNamespaceType, File)>,
    /// For a container in the host's mount namespace: its rootfs to chroot into.
    pub chroot: Option<PathBuf>,
    pub credentials: Credentials,
    pub exec: ExecPlan,
    pub console_fd: Option<RawFd>,
    pub preserve_fds: u32,
    pub close_fds: Vec<RawFd>,
    /// Descriptors for the process's stdin, stdout and stderr; `None` keeps the cli's own.
    pub stdio: Option<[RawFd; 3]>,
}

pub fn run(mut plan: JoinPlan, chan: Channel) -> ! {
    let Err(err) = setup(&mut plan, &chan);
    if chan.send(&Msg::Error(err.clone())).is_err() {
        eprintln!("runvm exec: {err}");
    }
    // SAFETY: _exit ends this child without running the cli's destructors.
    unsafe { libc::_exit(1) }
}

/// Returns only on failure: success ends in execve.
fn setup(plan: &mut JoinPlan, chan: &Channel) -> Result<std::convert::Infallible, String> {
    for fd in &plan.close_fds {
        // SAFETY: closing a descriptor inherited from the cli that this child must not hold.
        unsafe { libc::close(*fd) };
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    match chan.recv() {
        Ok(Some(Msg::Go(_))) => {}
        other => return Err(format!("exec: expected Go from the runtime, got {other:?}")),
    }
    let joined_user = plan
        .namespaces
        .iter()
        .any(|(t, _)| *t == LinuxNamespaceType::User);
    for (typ, file) in &plan.namespaces {
        setns(file.as_fd(), flag_of(*typ))
            .map_err(|e| format!("joining the container's {typ} namespace: {e}"))?;
    }
    if let Some(root) = &plan.chroot {
        nix::unistd::chroot(root).map_err(|e| format!("chroot {}: {e}", root.display()))?;
    }
    let cwd = plan.process.cwd();
    nix::unistd::chdir(cwd).map_err(|e| format!("process.cwd {}: {e}", cwd.display()))?;
    if let Some(stdio) = plan.stdio {
        super::stdio::install(stdio)?;
    }
    let terminal = plan.process.terminal().unwrap_or(false);
    match (terminal, plan.console_fd) {
        (true, Some(sock)) => super::console::setup(sock, plan.process.console_size())?,
        (true, None) => return Err("--tty needs a console socket".into()),
        (false, _) => {
            let _ = nix::unistd::setsid();
        }
    }
    crate::rlimits::apply(plan.process.rlimits().as_deref().unwrap_or_default())?;
    plan.exec.add_home(plan.process.user().uid());
    let program = plan.exec.resolve()?;
    plan.credentials.apply(joined_user)?;
    credentials::close_inherited_fds(plan.preserve_fds);
    // SAFETY: setting a default disposition installs no handler code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    Err(plan.exec.exec(&program))
}
