//! One seccomp filter per kind of monitor thread, built with seccompiler and installed by
//! each thread on itself (no TSYNC) before it touches guest input.
//!
//! A kind's allow list is a union of small syscall groups, so a new device thread, or a
//! device that needs one more call on a vCPU thread, is a one-line change in [`groups_of`]
//! or in a group. Threads inherit their creator's filter: a thread started from a vCPU
//! thread runs under the vCPU filter *and* its own, so its calls must be allowed by both.
//!
//! The lists were derived from the code (what each thread runs after its filter is in
//! place) and checked by running the tiny guests under [`SeccompMode::Report`] and
//! `strace -f` (see `tests/confinement.rs`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use kvm_bindings::KVMIO;
use libc::c_long;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::Serialize;

use super::ConfineError;

/// What a filter does with a syscall outside its thread's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeccompMode {
    /// Kill the whole monitor (SECCOMP_RET_KILL_PROCESS): production.
    Kill,
    /// Debugging: a SIGSYS handler names the refused syscall and thread on stderr, and the
    /// call fails with ENOSYS; the monitor goes on (to find every missing call in one run).
    Report,
}

/// The kinds of monitor threads, each with its own filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThreadKind {
    /// Runs KVM_RUN and the devices whose registers the guest touches (port and MMIO exits).
    Vcpu,
    /// A device's own thread serving host-side input (epoll, unix sockets, eventfds).
    DeviceWorker,
    /// The thread that started the VM and waits for it: kicks and joins vCPUs, cleans up.
    Main,
    /// Starts device workers on request (see `confine::workers`): the worker list plus
    /// thread creation; each worker narrows itself to the worker list at once.
    WorkerSpawner,
}

/// The syscall groups a kind's filter allows. Add a group (or a call to a group) here when
/// a thread kind gains work.
fn groups_of(kind: ThreadKind) -> &'static [&'static [Allowed]] {
    match kind {
        ThreadKind::Vcpu => &[
            MEMORY,
            LOCKS_AND_TIME,
            THREAD_END,
            SIGNALS,
            CLOSE,
            FILE_IO,
            VCPU_IOCTLS,
            RANDOM,
        ],
        ThreadKind::DeviceWorker => &[
            MEMORY,
            LOCKS_AND_TIME,
            THREAD_END,
            SIGNALS,
            CLOSE,
            FILE_IO,
            EVENT_LOOP,
            UNIX_SOCKETS,
            RANDOM,
        ],
        ThreadKind::WorkerSpawner => &[
            MEMORY,
            LOCKS_AND_TIME,
            THREAD_END,
            SIGNALS,
            CLOSE,
            FILE_IO,
            EVENT_LOOP,
            UNIX_SOCKETS,
            RANDOM,
            THREAD_START,
        ],
        ThreadKind::Main => &[
            MEMORY,
            LOCKS_AND_TIME,
            THREAD_END,
            SIGNALS,
            CLOSE,
            FILE_IO,
            STOP_AND_CLEAN_UP,
        ],
    }
}

/// One allowed syscall, with or without conditions on its arguments.
#[derive(Debug, Clone, Copy)]
enum Allowed {
    /// Any arguments.
    Call(c_long),
    /// Only when argument `arg` (32-bit compare) is one of `values`.
    ArgIn {
        nr: c_long,
        arg: u8,
        values: fn() -> Vec<u64>,
    },
}
use Allowed::{ArgIn, Call};

/// The allocator (glibc malloc, Rust's Vec/String growth) and thread stacks being freed.
const MEMORY: &[Allowed] = &[
    Call(libc::SYS_brk),
    Call(libc::SYS_mmap),
    Call(libc::SYS_munmap),
    Call(libc::SYS_mremap),
    Call(libc::SYS_mprotect),
    Call(libc::SYS_madvise),
];

/// Mutexes/condvars (futex), clocks that may leave the vDSO, yielding in spin loops.
const LOCKS_AND_TIME: &[Allowed] = &[
    Call(libc::SYS_futex),
    Call(libc::SYS_clock_gettime),
    Call(libc::SYS_sched_yield),
    Call(libc::SYS_getpid),
    Call(libc::SYS_gettid),
];

/// What Rust std and glibc do when a thread returns: the alternate signal stack is
/// disabled and unmapped, signals are blocked, the stack is given back, then exit.
const THREAD_END: &[Allowed] = &[
    Call(libc::SYS_sigaltstack),
    Call(libc::SYS_rt_sigprocmask),
    Call(libc::SYS_exit),
];

/// Starting a thread (Rust std over glibc): clone3 (clone on older kernels), and what the
/// new thread does before its body: robust futex list, rseq, its name, its signal stack,
/// then installing its own (narrower) filter: no_new_privs and seccomp(2), which can only
/// ever add restrictions.
const THREAD_START: &[Allowed] = &[
    Call(libc::SYS_clone3),
    Call(libc::SYS_clone),
    Call(libc::SYS_set_robust_list),
    Call(libc::SYS_rseq),
    ArgIn {
        nr: libc::SYS_prctl,
        arg: 0,
        values: || {
            vec![
                libc::PR_SET_NAME as u64,
                libc::PR_SET_NO_NEW_PRIVS as u64,
                libc::PR_SET_SECCOMP as u64,
            ]
        },
    },
    Call(libc::SYS_seccomp),
    Call(libc::SYS_sched_getaffinity),
];

/// Returning from the kick handler (and the Report-mode SIGSYS handler).
const SIGNALS: &[Allowed] = &[Call(libc::SYS_rt_sigreturn)];

/// Dropping an owned fd (a vCPU thread drops its vCPU fd when it ends). Debug builds of
/// Rust std check that the fd is open (F_GETFD) before closing it.
const CLOSE: &[Allowed] = &[
    Call(libc::SYS_close),
    ArgIn {
        nr: libc::SYS_fcntl,
        arg: 1,
        values: || vec![libc::F_GETFD as u64],
    },
];

/// Console output, interrupt eventfds (an 8-byte write), block device backing files.
const FILE_IO: &[Allowed] = &[
    Call(libc::SYS_read),
    Call(libc::SYS_write),
    Call(libc::SYS_readv),
    Call(libc::SYS_writev),
    Call(libc::SYS_pread64),
    Call(libc::SYS_pwrite64),
    Call(libc::SYS_preadv),
    Call(libc::SYS_pwritev),
    Call(libc::SYS_preadv2),
    Call(libc::SYS_pwritev2),
    Call(libc::SYS_lseek),
    Call(libc::SYS_fsync),
    Call(libc::SYS_fdatasync),
];

/// KVM_RUN on the vCPU's own fd, and KVM_SET_GSI_ROUTING: the guest programs an MSI-X
/// vector by writing the device's table, on this thread, and the route must follow. Nothing
/// else of KVM's API is reachable from a vCPU thread.
const VCPU_IOCTLS: &[Allowed] = &[ArgIn {
    nr: libc::SYS_ioctl,
    arg: 1,
    values: || vec![kvm_run_request(), kvm_set_gsi_routing_request()],
}];

/// virtio-rng fills the guest's buffers on the vCPU thread that notified it; Rust's
/// HashMap seeds its hasher from getrandom on the first map a thread makes (vsock's worker).
const RANDOM: &[Allowed] = &[Call(libc::SYS_getrandom)];

/// Waiting on several fds at once and draining eventfds; a worker makes its own epoll
/// instance and eventfds when it starts.
const EVENT_LOOP: &[Allowed] = &[
    Call(libc::SYS_epoll_create1),
    Call(libc::SYS_eventfd2),
    Call(libc::SYS_epoll_wait),
    Call(libc::SYS_epoll_pwait),
    Call(libc::SYS_epoll_ctl),
    Call(libc::SYS_ppoll),
    Call(libc::SYS_poll),
];

/// Host-side sockets of vsock-style devices: unix sockets only, never the network. Rust's
/// `set_nonblocking` is ioctl(FIONBIO).
const UNIX_SOCKETS: &[Allowed] = &[
    ArgIn {
        nr: libc::SYS_ioctl,
        arg: 1,
        values: || vec![libc::FIONBIO],
    },
    ArgIn {
        nr: libc::SYS_socket,
        arg: 0,
        values: || vec![libc::AF_UNIX as u64],
    },
    ArgIn {
        nr: libc::SYS_socketpair,
        arg: 0,
        values: || vec![libc::AF_UNIX as u64],
    },
    Call(libc::SYS_connect),
    Call(libc::SYS_accept4),
    Call(libc::SYS_recvfrom),
    Call(libc::SYS_recvmsg),
    Call(libc::SYS_sendto),
    Call(libc::SYS_sendmsg),
    Call(libc::SYS_shutdown),
    ArgIn {
        nr: libc::SYS_fcntl,
        arg: 1,
        values: || {
            vec![
                libc::F_GETFL as u64,
                libc::F_SETFL as u64,
                libc::F_SETFD as u64,
            ]
        },
    },
];

/// The waiter kicks vCPUs out of KVM_RUN (only with the kick signal), sleeps between kicks,
/// closes the VM's fds, measures resident guest memory, leaves its cgroup (through
/// cgroup.procs files opened before the filter), reaps the cgroup remover, removes device
/// sockets and exits.
const STOP_AND_CLEAN_UP: &[Allowed] = &[
    ArgIn {
        nr: libc::SYS_tgkill,
        arg: 2,
        values: || vec![crate::vstate::kick::kick_signal() as u64],
    },
    Call(libc::SYS_clock_nanosleep),
    Call(libc::SYS_nanosleep),
    Call(libc::SYS_mincore),
    Call(libc::SYS_wait4),
    Call(libc::SYS_exit_group),
    // Dropping the devices: vsock removes its Unix socket file (checking it still is one).
    Call(libc::SYS_statx),
    Call(libc::SYS_newfstatat),
    Call(libc::SYS_unlink),
    Call(libc::SYS_unlinkat),
];

/// KVM_RUN = _IO(KVMIO, 0x80).
fn kvm_run_request() -> u64 {
    u64::from((KVMIO << 8) | 0x80)
}

/// KVM_SET_GSI_ROUTING = _IOW(KVMIO, 0x6a, struct kvm_irq_routing).
fn kvm_set_gsi_routing_request() -> u64 {
    const IOC_WRITE: u64 = 1;
    let size = std::mem::size_of::<kvm_bindings::kvm_irq_routing>() as u64;
    (IOC_WRITE << 30) | (size << 16) | u64::from(KVMIO << 8) | 0x6a
}

/// The BPF program for `kind` under `mode`.
pub fn compile(kind: ThreadKind, mode: SeccompMode) -> Result<BpfProgram, ConfineError> {
    let compile_error = |e: seccompiler::BackendError| ConfineError::SeccompCompile {
        kind,
        detail: e.to_string(),
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for allowed in groups_of(kind).iter().flat_map(|group| group.iter()) {
        match *allowed {
            // An empty rule list allows the call with any arguments, and wins over any
            // argument rules another group added for the same call.
            Call(nr) => {
                rules.insert(nr, Vec::new());
            }
            ArgIn { nr, arg, values } => {
                let entry = rules.entry(nr).or_default();
                if entry.is_empty() && groups_allow_unconditionally(kind, nr) {
                    continue;
                }
                for value in values() {
                    let condition = SeccompCondition::new(
                        arg,
                        SeccompCmpArgLen::Dword,
                        SeccompCmpOp::Eq,
                        value,
                    )
                    .map_err(compile_error)?;
                    entry.push(SeccompRule::new(vec![condition]).map_err(compile_error)?);
                }
            }
        }
    }
    let refused = match mode {
        SeccompMode::Kill => SeccompAction::KillProcess,
        SeccompMode::Report => SeccompAction::Trap,
    };
    let filter = SeccompFilter::new(rules, refused, SeccompAction::Allow, TargetArch::x86_64)
        .map_err(compile_error)?;
    filter.try_into().map_err(
        |e: seccompiler::BackendError| ConfineError::SeccompCompile {
            kind,
            detail: e.to_string(),
        },
    )
}

fn groups_allow_unconditionally(kind: ThreadKind, nr: c_long) -> bool {
    groups_of(kind)
        .iter()
        .flat_map(|group| group.iter())
        .any(|allowed| matches!(allowed, Call(n) if *n == nr))
}

/// Installs `filter` on the calling thread only (and the threads it starts later); sets
/// no_new_privs for this thread, which an unprivileged filter install requires.
pub fn install_on_this_thread(
    kind: ThreadKind,
    mode: SeccompMode,
    filter: &BpfProgram,
) -> Result<(), ConfineError> {
    if mode == SeccompMode::Report {
        install_report_handler()?;
        // Report mode names refused calls by thread id: say which kind each id is.
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        eprintln!("runvm confine: thread {tid:010} is {kind:?}");
    }
    seccompiler::apply_filter(filter).map_err(|e| ConfineError::SeccompInstall {
        kind,
        detail: e.to_string(),
    })
}

/// The filter a device worker installs at its start (see [`enter_device_worker`]).
static WORKER_FILTER: OnceLock<(SeccompMode, BpfProgram)> = OnceLock::new();

/// Remembers the device-worker filter for the process: one monitor process runs one VM,
/// and device threads are started by devices that do not see the VM's confinement.
pub(crate) fn set_worker_filter(mode: SeccompMode) -> Result<(), ConfineError> {
    if WORKER_FILTER.get().is_none() {
        let program = compile(ThreadKind::DeviceWorker, mode)?;
        let _ = WORKER_FILTER.set((mode, program));
    }
    Ok(())
}

/// The first call of a device worker thread: installs the device-worker filter if the VM
/// was started confined (nothing otherwise).
pub fn enter_device_worker() -> Result<(), ConfineError> {
    match WORKER_FILTER.get() {
        Some((mode, program)) => install_on_this_thread(ThreadKind::DeviceWorker, *mode, program),
        None => Ok(()),
    }
}

/// Installs (once) the SIGSYS handler of [`SeccompMode::Report`].
fn install_report_handler() -> Result<(), ConfineError> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    static INSTALLED: OnceLock<Result<(), nix::Error>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        let action = SigAction::new(
            SigHandler::SigAction(on_refused_syscall),
            SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK,
            SigSet::empty(),
        );
        // SAFETY: the handler only reads its siginfo, writes to stderr with write(2) and
        // edits the interrupted context's return register: all async-signal-safe.
        unsafe { sigaction(Signal::SIGSYS, &action) }.map(|_| ())
    });
    result.map_err(|errno| ConfineError::Syscall {
        what: "sigaction(SIGSYS) for seccomp report mode",
        errno,
    })
}

/// SIGSYS from a SECCOMP_RET_TRAP: says which syscall on which thread, and makes the call
/// return -ENOSYS. Hand-written: no crate offers a seccomp report handler.
extern "C" fn on_refused_syscall(
    _: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // siginfo's SIGSYS fields (si_call_addr, si_syscall, si_arch) are not in libc's
    // siginfo_t accessors: si_syscall is the int at byte offset 24 on x86_64.
    const SI_SYSCALL_OFFSET: usize = 24;
    if info.is_null() || context.is_null() {
        return;
    }
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; for SIGSYS from
    // seccomp it fills si_syscall at this offset (see <asm-generic/siginfo.h>).
    let nr = unsafe {
        info.cast::<u8>()
            .add(SI_SYSCALL_OFFSET)
            .cast::<i32>()
            .read()
    };
    let mut line = *b"runvm confine: refused syscall 0000000000 on thread 0000000000\n";
    write_decimal(&mut line[31..41], u64::try_from(nr).unwrap_or(0));
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    write_decimal(&mut line[52..62], u64::try_from(tid).unwrap_or(0));
    // SAFETY: writing a stack buffer to fd 2; the result does not matter.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
    if i64::from(nr) == libc::SYS_openat {
        // SAFETY: `context` is the interrupted thread's ucontext_t; RSI held openat's path.
        let path = unsafe {
            (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RSI as usize]
        };
        report_path(path as *const u8);
    }
    // SAFETY: for SA_SIGINFO handlers `context` is the interrupted thread's ucontext_t;
    // RAX holds the syscall's return value when the handler returns.
    unsafe {
        let uc = context.cast::<libc::ucontext_t>();
        (*uc).uc_mcontext.gregs[libc::REG_RAX as usize] = -i64::from(libc::ENOSYS);
    }
}

/// Writes `  path: <the NUL-terminated string at path>\n` (at most 120 bytes of it) to
/// stderr, to name the file a refused openat wanted.
fn report_path(path: *const u8) {
    if path.is_null() {
        return;
    }
    let mut line = [0u8; 130];
    line[..8].copy_from_slice(b"  path: ");
    let mut len = 8;
    while len < line.len() - 1 {
        // SAFETY: the interrupted openat was about to read this NUL-terminated string, so
        // it is readable up to its NUL; the loop stops there or at 120 bytes.
        let byte = unsafe { path.add(len - 8).read() };
        if byte == 0 {
            break;
        }
        line[len] = byte;
        len += 1;
    }
    line[len] = b'\n';
    // SAFETY: writing a stack buffer to fd 2; the result does not matter.
    unsafe { libc::write(2, line.as_ptr().cast(), len + 1) };
}

/// Right-aligned decimal digits, zero-padded, into `out` (no allocation: signal handler).
fn write_decimal(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_compiles_in_both_modes() {
        for kind in [
            ThreadKind::Vcpu,
            ThreadKind::DeviceWorker,
            ThreadKind::WorkerSpawner,
            ThreadKind::Main,
        ] {
            for mode in [SeccompMode::Kill, SeccompMode::Report] {
                let program = compile(kind, mode).expect("filter compiles");
                assert!(program.len() > 10 && program.len() < 4096, "{kind:?}");
            }
        }
    }

    #[test]
    fn vcpu_threads_cannot_open_files_or_sockets_or_exec() {
        let allowed = |kind, nr| {
            groups_of(kind)
                .iter()
                .flat_map(|g| g.iter())
                .any(|a| matches!(a, Call(n) | ArgIn { nr: n, .. } if *n == nr))
        };
        for nr in [
            libc::SYS_openat,
            libc::SYS_open,
            libc::SYS_socket,
            libc::SYS_execve,
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_fork,
        ] {
            assert!(!allowed(ThreadKind::Vcpu, nr), "vCPU allows {nr}");
        }
        assert!(allowed(ThreadKind::Vcpu, libc::SYS_ioctl));
        assert!(allowed(ThreadKind::DeviceWorker, libc::SYS_accept4));
        // A worker's only ioctl is FIONBIO (set_nonblocking), never a KVM one.
        let worker_ioctls: Vec<u64> = groups_of(ThreadKind::DeviceWorker)
            .iter()
            .flat_map(|g| g.iter())
            .flat_map(|a| match a {
                Call(n) => {
                    assert_ne!(*n, libc::SYS_ioctl, "workers may not issue any ioctl");
                    Vec::new()
                }
                ArgIn { nr, values, .. } if *nr == libc::SYS_ioctl => values(),
                ArgIn { .. } => Vec::new(),
            })
            .collect();
        assert_eq!(worker_ioctls, [libc::FIONBIO]);
    }

    #[test]
    fn kvm_run_is_the_kvm_ioctl_number() {
        assert_eq!(kvm_run_request(), 0xae80);
        // The value linux/kvm.h gives KVM_SET_GSI_ROUTING on x86_64.
        assert_eq!(kvm_set_gsi_routing_request(), 0x4008_ae6a);
    }

    #[test]
    fn decimal_digits_are_padded() {
        let mut out = [0u8; 5];
        write_decimal(&mut out, 307);
        assert_eq!(&out, b"00307");
    }
}
