//! The container's init, from clone to execve. It runs in a single-threaded copy of the cli and
//! only applies what the cli prepared; every failure before `Ready` is sent back to the cli.
//!
//! Order (each step needs the one before):
//! 1. wait for the cli's `Go` (cgroups joined, id maps written)
//! 2. namespaces: join paths, new cgroup ns, new time ns
//! 3. sysctls, hostname, oom_score_adj, keyring (in the container's namespaces, before pivot)
//! 4. rootfs self-bind, root of a new user ns, rootfs mounts; cli runs prestart +
//!    createRuntime hooks; createContainer hooks here
//! 5. pivot_root, masked/readonly paths, console, cwd, rlimits, program lookup -> `Ready`
//! 6. wait on exec.fifo for `start`; startContainer hooks
//! 7. personality, credentials, capabilities, no_new_privs, seccomp -> execve

use std::fs;
use std::io::Read;
use std::os::fd::{FromRawFd, RawFd};
use std::path::Path;

use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{signal, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::{setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::{LinuxPersonalityDomain, Spec};

use super::channel::{Channel, Msg};
use super::credentials::{self, Credentials};
use super::exec::ExecPlan;
use crate::namespaces::{self, NamespacePlan};
use crate::rootfs::{self, CgroupMountSource, RootfsPlan};

/// Everything init needs, prepared and validated by the cli before clone.
pub struct InitPlan<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub ns: NamespacePlan,
    pub credentials: Credentials,
    pub exec: ExecPlan,
    pub cgroup_sources: Vec<CgroupMountSource>,
    pub no_pivot: bool,
    pub new_keyring: bool,
    pub id: &'a str,
    pub bundle: &'a Path,
    /// Filled in from the cli's `Go`.
    pub host_pid: i32,
    /// exec.fifo opened O_RDWR: init blocks reading it until `start` writes a byte.
    pub fifo_fd: RawFd,
    pub console_fd: Option<RawFd>,
    /// Descriptors 3..3+N handed to the container on purpose (--preserve-fds).
    pub preserve_fds: u32,
    /// Descriptors of the cli that init must not keep (the state-dir lock).
    pub close_fds: Vec<RawFd>,
    /// Descriptors to become init's stdin, stdout and stderr (a shim passes containerd's FIFOs);
    /// `None` keeps the cli's own.
    pub stdio: Option<[RawFd; 3]>,
    /// `init.err` in the state dir (close-on-exec): where a failure after `Ready` is written
    /// for `start` to report, since the cli that created init is gone by then.
    pub error_fd: RawFd,
}

/// Runs init to the end. Never returns: execs the user's program or exits.
pub fn run(mut plan: InitPlan, chan: Channel) -> ! {
    let Err(err) = setup(&mut plan, &chan);
    // Before Ready the cli reports the error; after it, `start` reads init.err.
    if chan.send(&Msg::Error(err.clone())).is_err() {
        // SAFETY: a write of our own buffer to the error file descriptor the cli opened for us.
        unsafe { libc::write(plan.error_fd, err.as_ptr().cast(), err.len()) };
        eprintln!("runvm init: {err}");
    }
    // SAFETY: _exit ends this process without running the cli's atexit handlers or destructors.
    unsafe { libc::_exit(1) }
}

/// Returns only on failure: success ends in execve (or `_exit(127)` when execve fails).
fn setup(plan: &mut InitPlan, chan: &Channel) -> Result<std::convert::Infallible, String> {
    for fd in &plan.close_fds {
        // SAFETY: closing a descriptor inherited from the cli that init must not hold.
        unsafe { libc::close(*fd) };
    }
    // The cli blocks signals it forwards; the container must start with none blocked.
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let spec = plan.spec;

    plan.host_pid = match chan.recv() {
        Ok(Some(Msg::Go(pid))) => pid,
        other => return Err(format!("init: expected Go from the runtime, got {other:?}")),
    };
    enter_namespaces(&plan.ns)?;
    if plan.ns.new_time {
        enter_time_namespace(spec)?;
    }
    let linux = spec.linux().as_ref();

    for (key, value) in linux
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        write_sysctl(key, value)?;
    }
    if let Some(host) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(host).map_err(|e| format!("hostname {host:?}: {e}"))?;
    }
    if let Some(domain) = spec.domainname().as_deref().filter(|h| !h.is_empty()) {
        set_domainname(domain)?;
    }
    let process = spec.process().as_ref();
    if let Some(adj) = process.and_then(|p| p.oom_score_adj()) {
        fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| format!("process.oomScoreAdj {adj}: {e}"))?;
    }
    if let Some(io) = process.and_then(|p| p.io_priority().as_ref()) {
        set_io_priority(io)?;
    }
    if plan.new_keyring {
        join_session_keyring(plan.id);
    }

    let rootfs_plan = RootfsPlan {
        spec,
        rootfs: plan.rootfs,
        bundle: plan.bundle,
        in_new_userns: plan.ns.new_user,
        cgroup_ns: plan.ns.new_cgroup,
        cgroup_sources: std::mem::take(&mut plan.cgroup_sources),
        shared_mount_ns: plan.ns.shares_host_mounts(),
    };
    let root = rootfs::bind_root(&rootfs_plan).map_err(|e| e.to_string())?;
    // From here on nothing is looked up through the bundle path, so init can take its
    // container ids now (files it creates must belong to mapped ids in the new namespace).
    if plan.ns.new_user {
        become_userns_root()?;
    }
    rootfs::mount_all(&rootfs_plan, &root).map_err(|e| e.to_string())?;

    chan.send(&Msg::Hooks)
        .map_err(|e| format!("init: channel: {e}"))?;
    expect(chan, Msg::HooksDone)?;
    if let Some(hooks) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().as_ref())
    {
        crate::hooks::run_hooks("createContainer", hooks, &hook_state(plan, "creating"))
            .map_err(|e| e.to_string())?;
    }

    rootfs::pivot(&root, plan.no_pivot, plan.ns.shares_host_mounts()).map_err(|e| e.to_string())?;
    rootfs::finish(spec).map_err(|e| e.to_string())?;

    if let Some(stdio) = plan.stdio {
        super::stdio::install(stdio)?;
    }
    let terminal = process.and_then(|p| p.terminal()).unwrap_or(false);
    match (terminal, plan.console_fd) {
        (true, Some(sock)) => {
            super::console::setup(sock, process.and_then(|p| p.console_size()))?;
            // SAFETY: the console socket was inherited from the cli and is used up now.
            unsafe { libc::close(sock) };
        }
        (true, None) => {
            return Err("process.terminal is true but no --console-socket was given".into())
        }
        (false, _) => {
            // A session of its own keeps the container out of the caller's job control.
            let _ = nix::unistd::setsid();
        }
    }

    if let Some(p) = process {
        nix::unistd::chdir(p.cwd())
            .map_err(|e| format!("process.cwd {}: {e}", p.cwd().display()))?;
        crate::rlimits::apply(p.rlimits().as_deref().unwrap_or_default())?;
        plan.exec.add_home(p.user().uid());
    }
    let program = plan.exec.resolve()?;
    check_start_hooks(spec)?;

    chan.send(&Msg::Ready)
        .map_err(|e| format!("init: channel: {e}"))?;
    wait_for_start(plan.fifo_fd)?;

    if let Some(hooks) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref())
    {
        crate::hooks::run_hooks("startContainer", hooks, &hook_state(plan, "created"))
            .map_err(|e| e.to_string())?;
    }
    if let Some(personality) = linux.and_then(|l| l.personality().as_ref()) {
        // <linux/personality.h>: PER_LINUX = 0, PER_LINUX32 = 8 (libc does not export them).
        let persona: libc::c_ulong = match personality.domain() {
            LinuxPersonalityDomain::PerLinux32 => 0x0008,
            LinuxPersonalityDomain::PerLinux => 0x0000,
        };
        // SAFETY: personality(2) only changes the execution domain of this process.
        if unsafe { libc::personality(persona) } < 0 {
            return Err(format!(
                "linux.personality: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    plan.credentials.apply(plan.ns.new_user)?;
    credentials::close_inherited_fds(plan.preserve_fds);
    // Rust ignores SIGPIPE; execve keeps ignored signals ignored, so restore the default.
    // SAFETY: setting a default disposition installs no handler code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let failure = plan.exec.exec(&program);
    // `start` has already returned success when execve itself fails: report it the way a shell
    // reports a program it cannot run, on stderr with status 127, like a program that exits.
    eprintln!("runvm: {failure}");
    // SAFETY: _exit ends init without running the cli's destructors.
    unsafe { libc::_exit(127) }
}

/// startContainer hooks resolve inside the container: a missing one fails `create`, not `start`.
fn check_start_hooks(spec: &Spec) -> Result<(), String> {
    let hooks = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref());
    for (i, hook) in hooks.into_iter().flatten().enumerate() {
        if !hook.path().is_file() {
            return Err(format!(
                "hooks.startContainer[{i}].path: {} does not exist in the container",
                hook.path().display()
            ));
        }
    }
    Ok(())
}

fn expect(chan: &Channel, want: Msg) -> Result<(), String> {
    match chan.recv() {
        Ok(Some(msg)) if msg == want => Ok(()),
        Ok(other) => Err(format!(
            "init: expected {want:?} from the runtime, got {other:?}"
        )),
        Err(e) => Err(format!("init: channel: {e}")),
    }
}

/// Becomes root of the new user namespace (container uid/gid 0, which the cli mapped).
///
/// Done only after the rootfs is built: until then init keeps the host ids it was cloned with,
/// so it can still reach a rootfs inside a bundle directory only the host's root may enter
/// (e.g. a 0700 temp dir); it holds every capability of the new namespace either way.
fn become_userns_root() -> Result<(), String> {
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(|e| format!("linux.gidMappings: setresgid(0) in the new user namespace: {e}"))?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(|e| format!("linux.uidMappings: setresuid(0) in the new user namespace: {e}"))
}

fn enter_namespaces(ns: &NamespacePlan) -> Result<(), String> {
    for (typ, path) in &ns.joins {
        namespaces::join(*typ, path)?;
    }
    if ns.new_cgroup {
        unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| format!("linux.namespaces (cgroup): unshare: {e}"))?;
    }
    Ok(())
}

/// Creates the time namespace and writes its offsets. The calling process enters it at execve.
fn enter_time_namespace(spec: &Spec) -> Result<(), String> {
    unshare(namespaces::flag_of(
        oci_spec::runtime::LinuxNamespaceType::Time,
    ))
    .map_err(|e| format!("linux.namespaces (time): unshare: {e}"))?;
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref());
    let mut text = String::new();
    for (clock, off) in offsets.into_iter().flatten() {
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    if !text.is_empty() {
        fs::write("/proc/self/timens_offsets", text)
            .map_err(|e| format!("linux.timeOffsets: /proc/self/timens_offsets: {e}"))?;
    }
    Ok(())
}

fn write_sysctl(key: &str, value: &str) -> Result<(), String> {
    if key.contains("..") || key.contains('/') && key.contains('.') {
        return Err(format!("linux.sysctl.{key}: not a valid sysctl name"));
    }
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    fs::write(&path, value).map_err(|e| format!("linux.sysctl.{key}: {}: {e}", path.display()))
}

fn set_domainname(name: &str) -> Result<(), String> {
    // SAFETY: setdomainname reads `len` bytes from a buffer that lives for the call.
    let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if rc != 0 {
        return Err(format!(
            "domainname {name:?}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// ioprio_set(2) for the whole process (libc has no wrapper; the encoding is the kernel's
/// IOPRIO_PRIO_VALUE: class in the top 3 of 16 bits).
fn set_io_priority(io: &oci_spec::runtime::LinuxIOPriority) -> Result<(), String> {
    use oci_spec::runtime::IOPriorityClass;
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_SHIFT: i64 = 13;
    let class: i64 = match io.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let value = (class << IOPRIO_CLASS_SHIFT) | io.priority();
    // SAFETY: ioprio_set takes three integers and touches only this process's I/O priority.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    if rc != 0 {
        return Err(format!(
            "process.ioPriority: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// A fresh session keyring keeps the container from reading the host's keys. Failure (e.g. the
/// keyctl syscall is filtered on this host) is not fatal, as in runc.
fn join_session_keyring(id: &str) {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let Ok(name) = std::ffi::CString::new(format!("_ses.{id}")) else {
        return;
    };
    // SAFETY: keyctl(JOIN_SESSION_KEYRING) reads a NUL-terminated name that outlives the call.
    unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
}

/// The state hooks run by init read, with init's pid as the host sees it.
fn hook_state(plan: &InitPlan, status: &str) -> Vec<u8> {
    crate::hooks::state_json(plan.spec, plan.id, status, plan.host_pid, plan.bundle)
}

/// Blocks until `runvm start` writes a byte to exec.fifo.
fn wait_for_start(fifo_fd: RawFd) -> Result<(), String> {
    // SAFETY: the cli opened exec.fifo for init and gave it this descriptor; init owns it now.
    let mut fifo = unsafe { fs::File::from_raw_fd(fifo_fd) };
    let mut byte = [0u8; 1];
    loop {
        match fifo.read(&mut byte) {
            Ok(1) => break,
            Ok(_) => return Err("exec.fifo closed before start".into()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("exec.fifo: {e}")),
        }
    }
    // Keep the descriptor open until execve closes it (O_CLOEXEC): `start` waits for that to
    // know the program is running before it runs poststart hooks.
    std::mem::forget(fifo);
    Ok(())
}
