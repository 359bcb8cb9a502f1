//! OCI `linux.seccomp` profiles compiled to BPF with seccompiler, and installed in init.
//!
//! `compile` runs in the cli before anything is forked, so every config error surfaces at
//! `create`; `CompiledSeccomp::install` runs in init right before execve and only makes syscalls.
//!
//! # Design: a stack of single-action filters
//! A seccompiler `SeccompFilter` has one match action, but a profile has many. So:
//! - rules are grouped by action *including its data* (ERRNO(1) and ERRNO(38) are two groups);
//! - each non-ALLOW group becomes a filter: its rules -> its action, everything else -> ALLOW;
//! - unless the default action is ALLOW, a final filter has every rule of every group (with its
//!   argument conditions) -> ALLOW and everything else -> the default action.
//!
//! The kernel runs every installed filter and keeps the most severe result (KILL_PROCESS >
//! KILL_THREAD > TRAP > ERRNO > TRACE > LOG > ALLOW), so the stack acts as one profile: a
//! syscall matching a rule gets ALLOW from the final filter and the rule's action from its group;
//! one matching no rule gets ALLOW from every group filter and the default from the final one.
//! ALLOW groups need no filter of their own: they only feed the final filter.
//!
//! Corner cases, all decided by that kernel rule:
//! - one syscall call matching rules of several groups gets the most severe of their actions
//!   (runc/libseccomp would pick one rule; profiles rarely overlap except ALLOW vs. ERRNO, where
//!   denying is the safe answer);
//! - between equal actions with different data (ERRNO(1) vs ERRNO(22)) the kernel keeps the
//!   most recently installed filter's value; groups are installed in reverse profile order, so
//!   the rule listed first wins. One exception: the filter that denies seccomp(2) itself must
//!   be installed last, or the later filters could not be installed (`install_order`); a
//!   profile with two such filters is refused;
//! - a syscall named only in rules whose action equals the default is dropped from the filters
//!   (its outcome is the default either way), which often saves a whole filter.
//!
//! # Architectures
//! Filters are compiled for x86_64 only; `architectures` entries are accepted but cannot add
//! anything. seccompiler's filters begin with an arch check that returns KILL_PROCESS for any
//! other audit arch, so 32-bit x86 (int 0x80) syscalls kill the process, even when the profile
//! lists SCMP_ARCH_X86. x32 syscalls share the x86_64 audit arch but carry bit 30 in their
//! number; seccompiler cannot test that, so a hand-written guard filter (`x32_guard`, installed
//! first) answers them with ENOSYS, as a kernel without x32 support would, whatever
//! SCMP_ARCH_X32 says (an ERRNO default of the profile, installed later, wins the tie, so x32
//! calls then get the default errno instead: still denied).

mod action;
mod args;
mod compile;
mod default_profile;
mod error;
mod features;
mod groups;
mod install;
mod install_order;
mod names;
mod x32_guard;

#[cfg(test)]
mod behaviour_tests;

use seccompiler::BpfProgram;

pub use compile::compile;
pub use default_profile::default_profile;
pub use error::SeccompError;
pub use features::features;

/// A profile ready to install: BPF programs in install order and the seccomp(2) flags.
pub struct CompiledSeccomp {
    filters: Vec<BpfProgram>,
    flags: libc::c_ulong,
}

impl CompiledSeccomp {
    /// Installs the filters on the calling thread (all threads with SECCOMP_FILTER_FLAG_TSYNC).
    /// Called in the container's init right before execve, after capabilities and
    /// no_new_privs. Does not allocate, as it runs after fork. Every syscall init makes after
    /// this (even a write to a sync pipe) is judged by the profile, so call it last. A profile
    /// that restricts nothing (ALLOW default, only ALLOW rules) installs nothing.
    pub fn install(&self) -> Result<(), SeccompError> {
        install::install_filters(&self.filters, self.flags)
    }

    /// The BPF programs in install order.
    pub fn filters(&self) -> &[BpfProgram] {
        &self.filters
    }

    /// The seccomp(2) `SECCOMP_FILTER_FLAG_*` bits every filter is installed with.
    pub fn flags(&self) -> libc::c_ulong {
        self.flags
    }
}

impl std::fmt::Debug for CompiledSeccomp {
    // The instructions themselves are thousands of lines; their counts say enough.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lengths: Vec<usize> = self.filters.iter().map(Vec::len).collect();
        f.debug_struct("CompiledSeccomp")
            .field("filter_lengths", &lengths)
            .field("flags", &format_args!("{:#x}", self.flags))
            .finish()
    }
}
