//! Errors of the seccomp module. Every message starts with the config field at fault
//! (`linux.seccomp...`) so a user can find it in config.json.

use nix::errno::Errno;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(
        "linux.seccomp: the profile compiles to {instructions} BPF instructions, more than the \
         kernel's limit of {limit} for all filters of a process"
    )]
    TooLarge { instructions: usize, limit: usize },

    #[error("{field}: unknown syscall {name:?}")]
    UnknownSyscall { field: String, name: String },

    #[error("{field}: SCMP_ACT_NOTIFY is not supported (runvm has no seccomp notify listener)")]
    NotifyUnsupported { field: String },

    #[error(
        "linux.seccomp.listenerPath: seccomp notify listeners are not supported (got {path:?})"
    )]
    ListenerUnsupported { path: String },

    #[error("{field}: errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {action}")]
    ErrnoRetWithoutErrnoAction { field: String, action: String },

    #[error("{field}: {value} is too large for {action} (at most {max})")]
    ErrnoRetOutOfRange {
        field: String,
        value: u32,
        action: String,
        max: u32,
    },

    #[error("{field}.index: {index} is out of range (syscall arguments are numbered 0 to 5)")]
    ArgIndexOutOfRange { field: String, index: usize },

    #[error("{field}.valueTwo: only SCMP_CMP_MASKED_EQ uses valueTwo, but op is {op}")]
    ValueTwoWithoutMaskedEq { field: String, op: String },

    #[error(
        "{field}: SCMP_CMP_MASKED_EQ can never match: valueTwo {value_two:#x} has bits outside \
         the mask (value) {mask:#x}"
    )]
    MaskedEqNeverMatches {
        field: String,
        mask: u64,
        value_two: u64,
    },

    #[error(
        "linux.seccomp: seccomp(2) itself is restricted by {actions}; runvm installs a profile as \
         several filters and can install only one filter that restricts seccomp(2) (the last)"
    )]
    SeccompDeniedTwice { actions: String },

    /// seccompiler refused a filter (e.g. more than 4096 BPF instructions).
    #[error("linux.seccomp: cannot compile the filter for {filter}: {source}")]
    Backend {
        filter: String,
        source: seccompiler::BackendError,
    },

    #[error(
        "linux.seccomp: installing filter {index} of {count} was refused (EACCES): the process \
         needs no_new_privs or CAP_SYS_ADMIN"
    )]
    InstallNotPermitted { index: usize, count: usize },

    #[error("linux.seccomp: installing filter {index} of {count} failed: {errno}")]
    Install {
        index: usize,
        count: usize,
        errno: Errno,
    },

    #[error("linux.seccomp.flags: SECCOMP_FILTER_FLAG_TSYNC failed: thread {tid} cannot be synchronised")]
    ThreadSync { tid: i64 },
}
