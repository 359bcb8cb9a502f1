//! The supervisor: the host process that stands for a VM sandbox's container.
//!
//! `launch` (in the cli) prepares everything that can fail, forks the supervisor, puts it in
//! the sandbox's cgroup and drives it through the same channel protocol as a container's init
//! (`Go`, the create hooks, `Ready`). The supervisor builds the share, starts virtiofsd and
//! the VMM, waits for the guest agent, has it create the container, and reports `Ready`; it
//! then waits on `exec.fifo` for `start` exactly like init, and serves the sandbox until the
//! container's process exits: output from the guest to its stdout/stderr, its stdin to the
//! guest, every signal it receives to the container's init. It exits with the container's
//! status, after powering the VM off.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use runvm_agent_protocol::{check_version, AgentMessage, Fd, Frame, ReplyBody, RequestBody, Stdio};
use runvm_oci::IsolationClass;

use super::agent_link::{AgentFrame, AgentLink};
use super::image::{guest_image, GuestImage};
use super::qemu::{self, AGENT_SOCKET, CONSOLE_LOG};
use super::sizing::{vm_size, VmSize};
use super::{guest_config, share, tools};
use crate::hooks::pidfd_open;
use crate::isolation::VmSettings;
use crate::process::channel::{self, Channel, Msg};
use crate::process::launch::{drive_to_ready, start_files, InitGuard, LaunchRequest, Launched};
use crate::process::{clone3, Forked};

/// The stream id of the container's init in the agent protocol.
const INIT_STREAM: u32 = 0;
/// Under TCG a Linux boot takes seconds, more on a busy host (GUIDE §8).
const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Creating or starting the container once the agent answers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a powered-off guest's VMM may take to exit before it is killed.
const POWER_OFF_WAIT: Duration = Duration::from_secs(10);
/// What the VM's helpers print (QEMU's and virtiofsd's own messages).
const VMM_LOG: &str = "vmm.log";

/// Signals the supervisor passes on to the container's init instead of acting on them.
const FORWARDED: [Signal; 8] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGTERM,
    Signal::SIGALRM,
    Signal::SIGWINCH,
];

/// Everything the supervisor needs, prepared in the cli before the fork.
struct Plan {
    id: String,
    state_dir: PathBuf,
    rootfs: PathBuf,
    spec: Spec,
    guest_config: serde_json::Value,
    image: GuestImage,
    qemu: PathBuf,
    virtiofsd: PathBuf,
    size: VmSize,
    boot_timeout: Duration,
    /// exec.fifo opened O_RDWR: readable once `start` writes its byte.
    fifo: File,
    /// init.err: why the program could not be started after `start`.
    error_file: File,
    /// The state directory's lock, which only the cli may hold.
    lock_fd: i32,
}

pub(super) fn launch(
    class: IsolationClass,
    settings: &VmSettings,
    req: &LaunchRequest,
) -> Result<Launched, String> {
    let spec = &req.bundle.spec;
    if spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
    {
        return Err(format!(
            "process.terminal: a terminal in a {class} sandbox is not supported yet"
        ));
    }
    let missing = |what: &str| format!("isolation class {class}: {what} not found");
    let plan_tools = (
        tools::qemu(settings).ok_or_else(|| missing("qemu-system-x86_64"))?,
        tools::virtiofsd(settings).ok_or_else(|| missing("virtiofsd"))?,
    );
    let image = guest_image(settings)?;
    let (fifo, error_file) = start_files(req.dir)?;
    let plan = Plan {
        id: req.id.to_string(),
        state_dir: req.dir.path().to_path_buf(),
        rootfs: req.bundle.rootfs.clone(),
        spec: spec.clone(),
        guest_config: guest_config::guest_config(spec, req.id)?,
        image,
        qemu: plan_tools.0,
        virtiofsd: plan_tools.1,
        size: vm_size(spec, settings),
        boot_timeout: settings
            .boot_timeout_secs
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_BOOT_TIMEOUT),
        fifo,
        error_file,
        lock_fd: req.dir.lock_fd(),
    };
    let (cli_chan, supervisor_chan) = channel::pair().map_err(|e| format!("socketpair: {e}"))?;
    // The cli is single-threaded here, so the child may go on running Rust code.
    let (pid, pidfd) = match clone3(CloneFlags::empty()).map_err(|e| format!("fork: {e}"))? {
        Forked::Child => {
            drop(cli_chan);
            std::process::exit(run(plan, supervisor_chan))
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(supervisor_chan);
    drop(plan);
    let guard = InitGuard {
        pid,
        pidfd: Some(pidfd),
    };
    (req.on_spawned)(pid)?;
    req.cgroup.add_task(pid).map_err(|e| e.to_string())?;
    drive_to_ready(&cli_chan, req, pid, "the VM supervisor")?;
    guard.disarm(pid)
}

/// The supervisor process: returns its exit status.
fn run(plan: Plan, chan: Channel) -> i32 {
    // SAFETY: closing our copy of the state directory's lock descriptor; nothing here uses it.
    unsafe { libc::close(plan.lock_fd) };
    match chan.recv() {
        Ok(Some(Msg::Go(_))) => {}
        _ => return 1,
    }
    let mut vm = match Sandbox::boot(&plan) {
        Ok(vm) => vm,
        Err(e) => {
            let _ = chan.send(&Msg::Error(e));
            return 1;
        }
    };
    // The cli runs the prestart and createRuntime hooks now, with our pid (our network
    // namespace is the sandbox's).
    let hooks_done = chan.send(&Msg::Hooks).is_ok()
        && matches!(chan.recv(), Ok(Some(Msg::HooksDone)))
        && chan.send(&Msg::Ready).is_ok();
    drop(chan);
    if !hooks_done {
        vm.power_off();
        return 1;
    }
    vm.serve(plan.fifo, plan.error_file, &plan.id)
}

/// A booted VM whose agent has created the container.
struct Sandbox {
    link: AgentLink,
    qemu: Child,
    qemu_fd: OwnedFd,
    virtiofsd: Child,
    signals: SignalFd,
    id: String,
}

fn console_tail() -> String {
    let text = std::fs::read_to_string(CONSOLE_LOG).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(12)..].join("\n  ");
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("\n  guest console (last lines):\n  {tail}")
    }
}

/// Joins or creates the network namespace the config gives, so the VMM's network (none yet,
/// later a tap) lives where the container's would.
fn enter_network(spec: &Spec) -> Result<(), String> {
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_deref())
        .unwrap_or_default();
    match namespaces
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
    {
        Some(ns) => match ns.path() {
            Some(path) => crate::namespaces::join(LinuxNamespaceType::Network, path),
            None => nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("linux.namespaces (network): unshare: {e}")),
        },
        None => Ok(()),
    }
}

/// Whether fd 0 is /dev/null (then the container gets no stdin pipe).
fn stdin_is_null() -> bool {
    let Ok(meta) = std::fs::metadata("/proc/self/fd/0") else {
        return true;
    };
    use std::os::unix::fs::MetadataExt;
    meta.file_type().is_char_device() && meta.rdev() == libc::makedev(1, 3)
}

impl Sandbox {
    fn boot(plan: &Plan) -> Result<Sandbox, String> {
        std::env::set_current_dir(&plan.state_dir)
            .map_err(|e| format!("{}: {e}", plan.state_dir.display()))?;
        let mut mask = SigSet::empty();
        for s in FORWARDED {
            mask.add(s);
        }
        mask.thread_set_mask()
            .map_err(|e| format!("VM supervisor: signal mask: {e}"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| format!("VM supervisor: signalfd: {e}"))?;
        share::enter_private_mounts()?;
        let share_dir = plan.state_dir.join("share");
        std::fs::create_dir(&share_dir).map_err(|e| format!("{}: {e}", share_dir.display()))?;
        share::build(&share_dir, &plan.rootfs, &plan.spec)?;
        enter_network(&plan.spec)?;
        let log = File::create(VMM_LOG).map_err(|e| format!("{VMM_LOG}: {e}"))?;
        let listener =
            UnixListener::bind(AGENT_SOCKET).map_err(|e| format!("{AGENT_SOCKET}: {e}"))?;
        let mut virtiofsd = qemu::spawn_virtiofsd(&plan.virtiofsd, &share_dir, &log)?;
        let started = (|| {
            qemu::wait_for_virtiofsd(&mut virtiofsd, Duration::from_secs(10))?;
            let args = qemu::qemu_args(&plan.image, plan.size);
            qemu::spawn_qemu(&plan.qemu, &args, &log)
        })();
        let qemu = match started {
            Ok(qemu) => qemu,
            Err(e) => {
                let _ = virtiofsd.kill();
                let _ = virtiofsd.wait();
                return Err(e);
            }
        };
        let qemu_fd = pidfd_open(qemu.id() as i32).ok_or("QEMU exited at once")?;
        let mut vm = PartialVm {
            qemu: Some(qemu),
            virtiofsd: Some(virtiofsd),
        };
        let deadline = Instant::now() + plan.boot_timeout;
        let stream = accept_agent(&listener, qemu_fd.as_fd(), deadline)
            .map_err(|e| format!("{e}{}", console_tail()))?;
        drop(listener);
        let _ = std::fs::remove_file(AGENT_SOCKET);
        let mut link = AgentLink::new(stream);
        let hello = link
            .call(
                RequestBody::Hello {
                    version: runvm_agent_protocol::PROTOCOL_VERSION,
                },
                deadline,
                qemu_fd.as_fd(),
                "hello",
            )
            .map_err(|e| format!("{e}{}", console_tail()))?;
        record_guest(&hello)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        link.call(
            RequestBody::SetClock {
                unix_secs: now.as_secs() as i64,
                nanos: now.subsec_nanos(),
            },
            deadline,
            qemu_fd.as_fd(),
            "set-clock",
        )?;
        link.call(
            RequestBody::CreateContainer {
                container_id: plan.id.clone(),
                config: plan.guest_config.clone(),
                stream: INIT_STREAM,
                stdio: Stdio::Pipes {
                    stdin: !stdin_is_null(),
                },
            },
            deadline,
            qemu_fd.as_fd(),
            "create-container",
        )?;
        let (qemu, virtiofsd) = vm.take()?;
        Ok(Sandbox {
            link,
            qemu,
            qemu_fd,
            virtiofsd,
            signals,
            id: plan.id.clone(),
        })
    }

    /// Serves the sandbox until the container's init exits; returns its status.
    fn serve(&mut self, fifo: File, mut error_file: File, id: &str) -> i32 {
        let mut fifo = Some(fifo);
        let mut stdin_open = false;
        let mut pending = self.link.take_pending();
        loop {
            for frame in pending.drain(..) {
                if let Some(status) = self.handle(frame) {
                    self.power_off();
                    return status;
                }
            }
            let mut fds = vec![
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.link.fd(), PollFlags::POLLIN),
                PollFd::new(self.qemu_fd.as_fd(), PollFlags::POLLIN),
            ];
            let stdin = std::io::stdin();
            if let Some(f) = &fifo {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            } else if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    crate::logging::error(&format!("VM supervisor: poll: {e}"));
                    self.power_off();
                    return 1;
                }
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| {
                    f.revents().is_some_and(|r| {
                        r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
                    })
                })
                .collect();
            drop(fds);
            if ready[0] {
                self.forward_signals();
            }
            if ready[1] {
                match self.link.read_frames() {
                    Ok(Some(frames)) => pending.extend(frames),
                    Ok(None) => {
                        crate::logging::error(&format!(
                            "container {id}: the guest agent closed its channel{}",
                            console_tail()
                        ));
                        self.power_off();
                        return 1;
                    }
                    Err(e) => {
                        crate::logging::error(&format!("container {id}: {e}"));
                        self.power_off();
                        return 1;
                    }
                }
            }
            if ready[2] {
                crate::logging::error(&format!(
                    "container {id}: the VM stopped before the container's process exited{}",
                    console_tail()
                ));
                self.power_off();
                return 1;
            }
            if ready.len() > 3 && ready[3] {
                if let Some(f) = fifo.as_mut() {
                    let mut byte = [0u8; 1];
                    if matches!(f.read(&mut byte), Ok(1)) {
                        if let Err(e) = self.start() {
                            let _ = error_file.write_all(e.as_bytes());
                            drop(fifo.take());
                            self.power_off();
                            return 1;
                        }
                        // Dropping our end tells `start` the program runs.
                        fifo = None;
                        stdin_open = !stdin_is_null();
                        pending.extend(self.link.take_pending());
                    }
                } else if stdin_open {
                    stdin_open = self.forward_stdin();
                }
            }
        }
    }

    fn start(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        self.link
            .call(
                RequestBody::StartContainer {
                    container_id: self.id.clone(),
                },
                deadline,
                self.qemu_fd.as_fd(),
                "start-container",
            )
            .map(drop)
    }

    /// Handles one frame from the agent; `Some(status)` when the container's init exited.
    fn handle(&mut self, frame: AgentFrame) -> Option<i32> {
        match frame {
            Frame::Data { stream, fd, data } if stream == INIT_STREAM && !data.is_empty() => {
                // A reader that went away (EPIPE) loses the output, as it would in container mode.
                let _ = match fd {
                    Fd::Stderr => std::io::stderr().write_all(&data),
                    _ => std::io::stdout()
                        .write_all(&data)
                        .and_then(|()| std::io::stdout().flush()),
                };
                None
            }
            Frame::Data { .. } => None,
            Frame::Message(AgentMessage::Exited { stream, status }) if stream == INIT_STREAM => {
                Some(status.clamp(0, 255))
            }
            Frame::Message(AgentMessage::Exited { .. }) => None,
            Frame::Message(AgentMessage::Reply(reply)) => {
                if let Err(e) = reply.result {
                    crate::logging::warn(&format!("container {}: guest agent: {e}", self.id));
                }
                None
            }
        }
    }

    fn forward_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            let signal = info.ssi_signo as i32;
            if signal == Signal::SIGWINCH as i32 {
                continue;
            }
            let _ = self.link.send(RequestBody::Signal {
                container_id: self.id.clone(),
                stream: None,
                signal,
                all: false,
            });
        }
    }

    /// Passes what is on stdin to the guest; false once stdin is at its end.
    fn forward_stdin(&mut self) -> bool {
        let mut buf = vec![0u8; 64 * 1024];
        match std::io::stdin().lock().read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = self.link.send_stdin(INIT_STREAM, &[]);
                false
            }
            Ok(n) => self.link.send_stdin(INIT_STREAM, &buf[..n]).is_ok(),
        }
    }

    /// Asks the agent to power the guest off, waits a bounded time, then ends the helpers.
    fn power_off(&mut self) {
        let _ = self.link.send(RequestBody::Shutdown);
        let mut fds = [PollFd::new(self.qemu_fd.as_fd(), PollFlags::POLLIN)];
        let ms = POWER_OFF_WAIT.as_millis() as u16;
        let _ = poll(&mut fds, PollTimeout::from(ms));
        for child in [&mut self.qemu, &mut self.virtiofsd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The VM's helpers until the sandbox exists: killed if booting fails.
struct PartialVm {
    qemu: Option<Child>,
    virtiofsd: Option<Child>,
}

impl PartialVm {
    fn take(&mut self) -> Result<(Child, Child), String> {
        match (self.qemu.take(), self.virtiofsd.take()) {
            (Some(q), Some(v)) => Ok((q, v)),
            _ => Err("VM supervisor: the VM's helpers were handed over twice".into()),
        }
    }
}

impl Drop for PartialVm {
    fn drop(&mut self) {
        for child in [self.qemu.as_mut(), self.virtiofsd.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for the guest's channel: QEMU connects to our socket when it starts.
fn accept_agent(
    listener: &UnixListener,
    vm: std::os::fd::BorrowedFd<'_>,
    deadline: Instant,
) -> Result<UnixStream, String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("QEMU did not connect the agent channel in time".into());
        }
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(vm, PollFlags::POLLIN),
        ];
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let _ = poll(&mut fds, PollTimeout::from(ms));
        if fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            return listener
                .accept()
                .map(|(s, _)| s)
                .map_err(|e| format!("agent channel: accept: {e}"));
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            let log = std::fs::read_to_string(VMM_LOG).unwrap_or_default();
            return Err(format!("QEMU exited at start: {}", log.trim()));
        }
    }
}

/// Keeps what the guest said of itself next to the state, for diagnostics and tests.
fn record_guest(hello: &ReplyBody) -> Result<(), String> {
    let ReplyBody::Hello {
        version,
        agent_version,
        kernel_release,
        boot_id,
    } = hello
    else {
        return Err(format!("the guest agent answered hello with {hello:?}"));
    };
    check_version(*version).map_err(|e| format!("guest agent: {e}"))?;
    let json = serde_json::json!({
        "kernel_release": kernel_release,
        "boot_id": boot_id,
        "agent_version": agent_version,
    });
    std::fs::write("guest.json", json.to_string()).map_err(|e| format!("guest.json: {e}"))
}
