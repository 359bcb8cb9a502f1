//! The profile `runvm spec` writes: an allowlist in the spirit of Docker's default.
//!
//! Everything not listed fails with EPERM. Deliberately left out (so denied): mount and the new
//! mount API, umount2, pivot_root, namespace changes (unshare, setns, clone with
//! CLONE_NEW* flags), the kernel keyring (add_key, request_key, keyctl), bpf, ptrace and
//! process_vm_*, kcmp, pidfd_getfd, perf_event_open, fanotify_init, userfaultfd, io_uring,
//! module loading, kexec, reboot, swapon/swapoff, acct, quotactl, iopl/ioperm, syslog,
//! open_by_handle_at, NUMA policy calls, clock/time setting, sethostname/setdomainname,
//! vhangup, and obsolete calls (uselib, ustat, sysfs, _sysctl, nfsservctl, ...).

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// x86_64 syscalls an ordinary container needs, allowed whatever their arguments.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    // Files and directories.
    "access", "chdir", "chmod", "chown", "close", "close_range", "copy_file_range", "creat",
    "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fallocate", "fchdir",
    "fchmod", "fchmodat", "fchmodat2", "fchown", "fchownat", "fcntl", "fdatasync", "flock",
    "fstat", "fstatfs", "fsync", "ftruncate", "futimesat", "getcwd", "getdents", "getdents64",
    "lchown", "link", "linkat", "lseek", "lstat", "mkdir", "mkdirat", "mknod", "mknodat",
    "name_to_handle_at", "newfstatat", "open", "openat", "openat2", "pread64", "preadv",
    "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink",
    "readlinkat", "readv", "rename", "renameat", "renameat2", "rmdir", "sendfile", "splice",
    "stat", "statfs", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs",
    "tee", "truncate", "umask", "unlink", "unlinkat", "utime", "utimensat", "utimes",
    "vmsplice", "write", "writev", "cachestat",
    // Extended attributes.
    "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "lgetxattr",
    "listxattr", "llistxattr", "lremovexattr", "lsetxattr", "removexattr", "setxattr",
    "getxattrat", "listxattrat", "removexattrat", "setxattrat", "file_getattr", "file_setattr",
    // Memory.
    "brk", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "mincore", "mlock",
    "mlock2", "mlockall", "mmap", "mprotect", "mremap", "mseal", "msync", "munlock",
    "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect", "remap_file_pages",
    // Processes, threads and credentials (clone and personality are argument-checked below).
    "arch_prctl", "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork",
    "get_robust_list", "get_thread_area", "getcpu", "getegid", "geteuid", "getgid",
    "getgroups", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getresgid",
    "getresuid", "getrlimit", "getrusage", "getsid", "gettid", "getuid", "ioprio_get",
    "ioprio_set", "kill", "modify_ldt", "pidfd_open", "pidfd_send_signal", "prctl",
    "prlimit64", "process_mrelease", "restart_syscall", "rseq", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_getscheduler", "sched_rr_get_interval", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "set_robust_list",
    "set_thread_area", "set_tid_address", "setfsgid", "setfsuid", "setgid", "setgroups",
    "setpgid", "setpriority", "setregid", "setresgid", "setresuid", "setreuid", "setrlimit",
    "setsid", "setuid", "tgkill", "tkill", "uname", "vfork", "wait4", "waitid",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
    "lsm_get_self_attr", "lsm_list_modules", "uretprobe", "chroot",
    // Signals.
    "pause", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
    "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_tgsigqueueinfo", "sigaltstack",
    "signalfd", "signalfd4",
    // Time (reading it; setting it needs CAP_SYS_TIME and is denied).
    "alarm", "clock_adjtime", "clock_getres", "clock_gettime", "clock_nanosleep", "getitimer",
    "gettimeofday", "nanosleep", "setitimer", "time", "timer_create", "timer_delete",
    "timer_getoverrun", "timer_gettime", "timer_settime", "timerfd_create", "timerfd_gettime",
    "timerfd_settime", "times", "adjtimex",
    // Waiting, events, futexes and async I/O.
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait",
    "eventfd", "eventfd2", "fanotify_mark", "futex", "futex_requeue", "futex_wait",
    "futex_waitv", "futex_wake", "inotify_add_watch", "inotify_init", "inotify_init1",
    "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_setup",
    "io_submit", "ioctl", "pipe", "pipe2", "poll", "ppoll", "pselect6", "select",
    // Sockets.
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
    "listen", "recvfrom", "recvmmsg", "recvmsg", "sendmmsg", "sendmsg", "sendto", "setsockopt",
    "shutdown", "socket", "socketpair",
    // System V and POSIX IPC (namespaced with the IPC namespace).
    "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink",
    "msgctl", "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop", "semtimedop", "shmat",
    "shmctl", "shmdt", "shmget",
    // System information and randomness.
    "getrandom", "sysinfo",
];

/// clone(2) flags that create namespaces; clone is allowed only without them. (CLONE_NEWTIME
/// is left out: its bit is part of the exit-signal byte in clone(2) and only works in clone3.)
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// personality(2) values that change nothing dangerous: PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE
/// (alone and with UNAME26) and 0xffffffff, which only queries the current persona.
const SAFE_PERSONAS: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

pub fn default_profile() -> LinuxSeccomp {
    let mut syscalls = vec![syscall(
        ALLOWED,
        LinuxSeccompAction::ScmpActAllow,
        None,
        None,
    )];
    syscalls.push(syscall(
        &["clone"],
        LinuxSeccompAction::ScmpActAllow,
        None,
        Some(vec![arg(
            0,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
            CLONE_NAMESPACE_FLAGS,
            0,
        )]),
    ));
    // One rule per value: the values must be ORed, and a rule's conditions are ANDed.
    for &persona in SAFE_PERSONAS {
        syscalls.push(syscall(
            &["personality"],
            LinuxSeccompAction::ScmpActAllow,
            None,
            Some(vec![arg(0, LinuxSeccompOperator::ScmpCmpEq, persona, 0)]),
        ));
    }
    // clone3 passes its flags in memory, out of seccomp's reach, so it cannot be checked like
    // clone. ENOSYS (not EPERM) makes glibc fall back to the checked clone.
    syscalls.push(syscall(
        &["clone3"],
        LinuxSeccompAction::ScmpActErrno,
        Some(libc::ENOSYS as u32),
        None,
    ));

    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(libc::EPERM as u32));
    profile.set_architectures(Some(vec![Arch::ScmpArchX86_64]));
    profile.set_syscalls(Some(syscalls));
    profile
}

fn syscall(
    names: &[&str],
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: Option<Vec<LinuxSeccompArg>>,
) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names.iter().map(|name| name.to_string()).collect());
    rule.set_action(action);
    rule.set_errno_ret(errno_ret);
    rule.set_args(args);
    rule
}

fn arg(index: usize, op: LinuxSeccompOperator, value: u64, value_two: u64) -> LinuxSeccompArg {
    // LinuxSeccompArg has no setters, only a builder, which cannot fail once every field is set.
    LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value)
        .value_two(value_two)
        .build()
        .expect("every LinuxSeccompArg field is set")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::names::{resolve, Resolved};

    #[test]
    fn every_allowed_name_is_a_native_syscall_listed_once() {
        for name in ALLOWED {
            assert!(
                matches!(resolve(name), Resolved::Native(_)),
                "{name} is not an x86_64 syscall"
            );
        }
        let mut sorted = ALLOWED.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ALLOWED.len(), "duplicate names in ALLOWED");
    }

    #[test]
    fn dangerous_calls_are_not_allowed_unconditionally() {
        let denied = [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "ptrace",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "reboot",
            "swapon",
            "swapoff",
            "open_by_handle_at",
            "perf_event_open",
            "userfaultfd",
            "acct",
            "pivot_root",
            "iopl",
            "ioperm",
            "process_vm_readv",
            "process_vm_writev",
            "io_uring_setup",
            "fsopen",
            "move_mount",
            "open_tree",
            "syslog",
            "settimeofday",
            "clock_settime",
            "sethostname",
            "quotactl",
            "personality",
            "clone",
            "clone3",
            "kcmp",
            "pidfd_getfd",
            "memfd_secret",
        ];
        for name in denied {
            assert!(matches!(resolve(name), Resolved::Native(_)), "{name}");
            assert!(
                !ALLOWED.contains(&name),
                "{name} must not be in the unconditional allowlist"
            );
        }
    }

    #[test]
    fn default_profile_compiles_and_round_trips_through_json() {
        let profile = default_profile();
        let json = serde_json::to_string(&profile).unwrap();
        let parsed: LinuxSeccomp = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, profile);
        assert!(
            json.contains("\"defaultAction\":\"SCMP_ACT_ERRNO\""),
            "{json}"
        );
        crate::seccomp::compile(&parsed).unwrap();
    }
}
