//! Filters installed for real: a forked child installs a compiled profile, makes syscalls and
//! sends their results through a pipe; the parent checks results, exit status or signal.
//!
//! The child only makes raw syscalls (no allocation: other test threads may hold the malloc
//! lock at fork time), so everything it needs is prepared before fork.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator as Op, LinuxSyscall, LinuxSyscallBuilder,
};

use super::{compile, default_profile, CompiledSeccomp};

const MAX_RESULTS: usize = 8;
/// Marks result slots the probe left alone; trailing ones are not sent.
const UNSET: i64 = i64::MIN;
/// Exit code of a child whose `install` failed.
const INSTALL_FAILED: i32 = 101;

type Probe = fn(&mut [i64; MAX_RESULTS]);

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Exited { code: i32, results: Vec<i64> },
    Killed(Signal),
}

fn seccomp_available() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let available = status.lines().any(|line| line.starts_with("Seccomp:"));
    if !available {
        println!("SKIP: the kernel has no seccomp support");
    }
    available
}

/// The syscall's result as `rc`, or `-errno` when it failed.
fn result(rc: libc::c_long) -> i64 {
    if rc == -1 {
        -i64::from(nix::errno::Errno::last_raw())
    } else {
        rc
    }
}

fn run_confined(profile: &LinuxSeccomp, probe: Probe) -> Outcome {
    run_compiled(&compile(profile).expect("test profile compiles"), probe)
}

fn run_compiled(compiled: &CompiledSeccomp, probe: Probe) -> Outcome {
    let (read_end, write_end) = pipe().expect("pipe");
    // SAFETY: the child only makes async-signal-safe raw syscalls and leaves with _exit.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(read_end);
            child(compiled, probe, &write_end)
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut bytes = Vec::new();
            File::from(read_end)
                .read_to_end(&mut bytes)
                .expect("read results");
            let results = bytes
                .chunks_exact(8)
                .map(|chunk| i64::from_ne_bytes(chunk.try_into().expect("8 bytes")))
                .collect();
            match waitpid(child, None).expect("waitpid") {
                WaitStatus::Exited(_, code) => Outcome::Exited { code, results },
                WaitStatus::Signaled(_, signal, _) => Outcome::Killed(signal),
                other => panic!("unexpected child status {other:?}"),
            }
        }
    }
}

fn child(compiled: &CompiledSeccomp, probe: Probe, write_end: &OwnedFd) -> ! {
    // SAFETY: prctl with integer arguments only changes this process's flags.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if compiled.install().is_err() {
        // SAFETY: _exit ends the forked child without running the parent's destructors.
        unsafe { libc::_exit(INSTALL_FAILED) };
    }
    let mut results = [UNSET; MAX_RESULTS];
    probe(&mut results);
    let count = results
        .iter()
        .rposition(|&r| r != UNSET)
        .map_or(0, |i| i + 1);
    // SAFETY: writes `count` initialised i64s from a live stack array to our pipe.
    unsafe {
        libc::write(
            write_end.as_raw_fd(),
            results.as_ptr().cast(),
            count * std::mem::size_of::<i64>(),
        )
    };
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

fn rule(
    names: &[&str],
    action: Action,
    errno: Option<u32>,
    args: Vec<LinuxSeccompArg>,
) -> LinuxSyscall {
    let mut builder = LinuxSyscallBuilder::default()
        .names(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .action(action);
    if let Some(errno) = errno {
        builder = builder.errno_ret(errno);
    }
    if !args.is_empty() {
        builder = builder.args(args);
    }
    builder.build().unwrap()
}

fn arg(index: usize, op: Op, value: u64, value_two: u64) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value)
        .value_two(value_two)
        .build()
        .unwrap()
}

fn profile(default: Action, syscalls: Vec<LinuxSyscall>) -> LinuxSeccomp {
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(default);
    profile.set_syscalls(Some(syscalls));
    profile
}

fn exited_ok(results: &[i64]) -> Outcome {
    Outcome::Exited {
        code: 0,
        results: results.to_vec(),
    }
}

/// The results of a child that exited normally.
fn results_of(outcome: Outcome) -> Vec<i64> {
    match outcome {
        Outcome::Exited { code: 0, results } => results,
        other => panic!("child failed: {other:?}"),
    }
}

#[test]
fn errno_rules_under_an_allow_default() {
    if !seccomp_available() {
        return;
    }
    let profile = profile(
        Action::ScmpActAllow,
        vec![rule(
            &["getcwd", "mkdir"],
            Action::ScmpActErrno,
            Some(38),
            vec![],
        )],
    );
    let results = results_of(run_confined(&profile, |r| {
        let mut buf = [0u8; 256];
        // SAFETY: raw syscalls on a stack buffer and a static NUL-terminated path.
        unsafe {
            r[0] = result(libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()));
            r[1] = result(libc::syscall(
                libc::SYS_mkdir,
                c"/nonexistent-runvm/x".as_ptr(),
                0o700,
            ));
            r[2] = result(libc::syscall(libc::SYS_getpid));
        }
    }));
    assert_eq!(results[..2], [-38, -38]);
    assert!(results[2] > 0, "getpid must still work: {results:?}");
}

#[test]
fn argument_conditions_allow_only_the_listed_value() {
    if !seccomp_available() {
        return;
    }
    // Default deny: the child may only write its results, exit, and query its persona.
    let profile = profile(
        Action::ScmpActErrno,
        vec![
            rule(
                &["write", "exit", "exit_group"],
                Action::ScmpActAllow,
                None,
                vec![],
            ),
            rule(
                &["personality"],
                Action::ScmpActAllow,
                None,
                vec![arg(0, Op::ScmpCmpEq, 0xffff_ffff, 0)],
            ),
        ],
    );
    let results = results_of(run_confined(&profile, |r| {
        // SAFETY: personality with these values only reads or sets this child's persona.
        unsafe {
            r[0] = result(libc::syscall(libc::SYS_personality, 0xffff_ffffu64));
            r[1] = result(libc::syscall(libc::SYS_personality, 0x0008u64));
            r[2] = result(libc::syscall(libc::SYS_getpid));
        }
    }));
    assert!(results[0] >= 0, "query must be allowed: {results:?}");
    // Other personas, and getpid (not listed), get the default action.
    assert_eq!(
        results[1..],
        [-i64::from(libc::EPERM), -i64::from(libc::EPERM)]
    );
}

#[test]
fn masked_eq_and_same_index_conditions_are_ored() {
    if !seccomp_available() {
        return;
    }
    let profile = profile(
        Action::ScmpActAllow,
        vec![
            // (mode & 0o700) == 0o700 -> EACCES.
            rule(
                &["umask"],
                Action::ScmpActErrno,
                Some(13),
                vec![arg(0, Op::ScmpCmpMaskedEq, 0o700, 0o700)],
            ),
            // Two conditions on arg 0: either value -> EINVAL.
            rule(
                &["umask"],
                Action::ScmpActErrno,
                Some(22),
                vec![
                    arg(0, Op::ScmpCmpEq, 0o011, 0),
                    arg(0, Op::ScmpCmpEq, 0o033, 0),
                ],
            ),
        ],
    );
    let results = results_of(run_confined(&profile, |r| {
        // SAFETY: umask only changes this child's file mode mask.
        unsafe {
            r[0] = result(libc::syscall(libc::SYS_umask, 0o022));
            r[1] = result(libc::syscall(libc::SYS_umask, 0o777));
            r[2] = result(libc::syscall(libc::SYS_umask, 0o700));
            r[3] = result(libc::syscall(libc::SYS_umask, 0o070));
            r[4] = result(libc::syscall(libc::SYS_umask, 0o011));
            r[5] = result(libc::syscall(libc::SYS_umask, 0o033));
        }
    }));
    assert!(results[0] >= 0 && results[3] >= 0, "{results:?}");
    assert_eq!(results[1..3], [-13, -13]);
    assert_eq!(results[4..6], [-22, -22]);
}

#[test]
fn the_first_listed_rule_wins_between_errno_values() {
    if !seccomp_available() {
        return;
    }
    let profile = profile(
        Action::ScmpActAllow,
        vec![
            rule(
                &["umask"],
                Action::ScmpActErrno,
                Some(22),
                vec![arg(0, Op::ScmpCmpEq, 0o077, 0)],
            ),
            rule(&["umask"], Action::ScmpActErrno, Some(13), vec![]),
        ],
    );
    let results = results_of(run_confined(&profile, |r| {
        // SAFETY: umask only changes this child's file mode mask.
        unsafe {
            r[0] = result(libc::syscall(libc::SYS_umask, 0o077));
            r[1] = result(libc::syscall(libc::SYS_umask, 0o022));
        }
    }));
    assert_eq!(results, [-22, -13]);
}

#[test]
fn a_rule_denying_seccomp_itself_does_not_block_the_other_filters() {
    if !seccomp_available() {
        return;
    }
    let profile = profile(
        Action::ScmpActAllow,
        vec![
            rule(&["seccomp"], Action::ScmpActErrno, Some(1), vec![]),
            rule(&["getppid"], Action::ScmpActErrno, Some(13), vec![]),
        ],
    );
    let results = results_of(run_confined(&profile, |r| {
        // SAFETY: SECCOMP_GET_ACTION_AVAIL only reads the u32 it is given.
        unsafe {
            r[0] = result(libc::syscall(libc::SYS_getppid));
            let action: u32 = libc::SECCOMP_RET_LOG;
            r[1] = result(libc::syscall(
                libc::SYS_seccomp,
                2, /* GET_ACTION_AVAIL */
                0,
                &action,
            ));
        }
    }));
    assert_eq!(results, [-13, -1]);
}

#[test]
fn kill_actions_end_the_child_with_sigsys() {
    if !seccomp_available() {
        return;
    }
    for action in [
        Action::ScmpActKillProcess,
        Action::ScmpActKill,
        Action::ScmpActKillThread,
    ] {
        let profile = profile(
            Action::ScmpActAllow,
            vec![rule(&["getppid"], action, None, vec![])],
        );
        let outcome = run_confined(&profile, |r| {
            // SAFETY: getppid has no arguments or side effects.
            r[0] = result(unsafe { libc::syscall(libc::SYS_getppid) });
        });
        assert_eq!(outcome, Outcome::Killed(Signal::SIGSYS), "{action:?}");
    }
}

#[test]
fn flags_are_accepted_by_the_kernel() {
    if !seccomp_available() {
        return;
    }
    let mut profile = profile(
        Action::ScmpActAllow,
        vec![rule(&["getppid"], Action::ScmpActErrno, Some(1), vec![])],
    );
    profile.set_flags(Some(vec![
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
    ]));
    let outcome = run_confined(&profile, |r| {
        // SAFETY: getppid has no arguments or side effects.
        r[0] = result(unsafe { libc::syscall(libc::SYS_getppid) });
    });
    assert_eq!(outcome, exited_ok(&[-1]));
}

#[test]
fn default_profile_denies_namespaces_mounts_and_keys_but_runs_programs() {
    if !seccomp_available() {
        return;
    }
    if !std::path::Path::new("/bin/true").exists() {
        println!("SKIP: /bin/true is missing");
        return;
    }
    let results = results_of(run_confined(&default_profile(), |r| {
        // SAFETY: every call below is refused by the filter or harmless (getpid, personality
        // query); if the filter failed, unshare would only affect this child and mount fails
        // on the nonexistent target.
        unsafe {
            r[0] = result(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS));
            r[1] = result(libc::syscall(
                libc::SYS_mount,
                c"none".as_ptr(),
                c"/nonexistent-runvm".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                0,
            ));
            r[2] = result(libc::syscall(
                libc::SYS_keyctl,
                0, /* KEYCTL_GET_KEYRING_ID */
                -3,
                0,
            ));
            // CLONE_NEWUSER with CLONE_FS is EINVAL in the kernel: no child can be created.
            r[3] = result(libc::syscall(
                libc::SYS_clone,
                libc::CLONE_NEWUSER | libc::CLONE_FS,
                0,
                0,
                0,
                0,
            ));
            r[4] = result(libc::syscall(libc::SYS_clone3, 0, 0));
            r[5] = result(libc::syscall(libc::SYS_getpid));
            r[6] = result(libc::syscall(libc::SYS_personality, 0xffff_ffffu64));
            r[7] = result(libc::syscall(libc::SYS_personality, 0x0040_0000u64));
        }
    }));
    let eperm = -i64::from(libc::EPERM);
    assert_eq!(results[..4], [eperm, eperm, eperm, eperm], "{results:?}");
    assert_eq!(
        results[4],
        -i64::from(libc::ENOSYS),
        "clone3 must say ENOSYS"
    );
    assert!(results[5] > 0 && results[6] >= 0, "{results:?}");
    assert_eq!(
        results[7], eperm,
        "READ_IMPLIES_EXEC persona must be refused"
    );
}

#[test]
fn default_profile_lets_a_program_be_executed() {
    if !seccomp_available() {
        return;
    }
    if !std::path::Path::new("/bin/true").exists() {
        println!("SKIP: /bin/true is missing");
        return;
    }
    let outcome = run_confined(&default_profile(), |r| {
        let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
        let envp: [*const libc::c_char; 1] = [std::ptr::null()];
        // SAFETY: NUL-terminated static path and NULL-terminated argument arrays.
        r[0] = result(unsafe {
            libc::syscall(libc::SYS_execve, argv[0], argv.as_ptr(), envp.as_ptr())
        });
    });
    // Exit 0 with no results means execve succeeded and /bin/true ran under the filter.
    assert_eq!(outcome, exited_ok(&[]));
}

#[test]
fn x32_syscalls_get_enosys() {
    if !seccomp_available() {
        return;
    }
    let x32_getpid = 0x4000_0000 | libc::SYS_getpid;
    // SAFETY: getpid has no side effects under either ABI.
    if unsafe { libc::syscall(x32_getpid) } < 0 {
        println!("SKIP: the kernel does not run x32 syscalls, so the guard cannot be observed");
        return;
    }
    let profile = profile(
        Action::ScmpActAllow,
        vec![rule(&["getpid"], Action::ScmpActErrno, Some(1), vec![])],
    );
    let results = results_of(run_confined(&profile, |r| {
        // SAFETY: as above.
        r[0] = result(unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) });
    }));
    assert_eq!(results, [-i64::from(libc::ENOSYS)]);
}

#[test]
fn the_x32_guard_matches_only_x32_numbers() {
    if !seccomp_available() {
        return;
    }
    // EDOM instead of ENOSYS, so the guard's answer differs from a kernel without x32.
    let guard = CompiledSeccomp {
        filters: vec![super::x32_guard::guard_returning(
            libc::SECCOMP_RET_ERRNO | libc::EDOM as u32,
        )],
        flags: 0,
    };
    let results = results_of(run_compiled(&guard, |r| {
        // SAFETY: getpid has no side effects under either ABI; the x32 one is refused anyway.
        unsafe {
            r[0] = result(libc::syscall(0x4000_0000 | libc::SYS_getpid));
            r[1] = result(libc::syscall(libc::SYS_getpid));
        }
    }));
    assert_eq!(results[0], -i64::from(libc::EDOM), "{results:?}");
    assert!(results[1] > 0, "{results:?}");
}
