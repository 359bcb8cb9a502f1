//! Syscall name -> x86_64 syscall number, with the `syscalls` crate's tables.
//!
//! Real profiles (Docker's, podman's, containerd's) list names of every architecture in one
//! list (`_llseek`, `socketcall`, `arm_fadvise64_64`, ...). runc ignores names its host arch
//! lacks, and clients depend on that, so a name that is a syscall on *another* architecture is
//! skipped; only a name no architecture knows is an error (most likely a typo).

use std::str::FromStr;

/// What a profile's syscall name means on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// A native (x86_64) syscall with this number.
    Native(i64),
    /// A syscall of another architecture only: nothing to filter here.
    OtherArchOnly,
    /// Not a syscall anywhere.
    Unknown,
}

pub fn resolve(name: &str) -> Resolved {
    if let Ok(sysno) = syscalls::x86_64::Sysno::from_str(name) {
        return Resolved::Native(i64::from(sysno.id()));
    }
    if known_on_other_arch(name) {
        Resolved::OtherArchOnly
    } else {
        Resolved::Unknown
    }
}

fn known_on_other_arch(name: &str) -> bool {
    // The syscalls crate has no arch-independent lookup, so ask each table.
    syscalls::x86::Sysno::from_str(name).is_ok()
        || syscalls::aarch64::Sysno::from_str(name).is_ok()
        || syscalls::arm::Sysno::from_str(name).is_ok()
        || syscalls::riscv64::Sysno::from_str(name).is_ok()
        || syscalls::riscv32::Sysno::from_str(name).is_ok()
        || syscalls::powerpc::Sysno::from_str(name).is_ok()
        || syscalls::powerpc64::Sysno::from_str(name).is_ok()
        || syscalls::s390x::Sysno::from_str(name).is_ok()
        || syscalls::mips::Sysno::from_str(name).is_ok()
        || syscalls::mips64::Sysno::from_str(name).is_ok()
        || syscalls::loongarch64::Sysno::from_str(name).is_ok()
        || syscalls::sparc::Sysno::from_str(name).is_ok()
        || syscalls::sparc64::Sysno::from_str(name).is_ok()
        || ARCH_PRIVATE_NAMES.contains(&name)
}

/// Architecture-private calls (ARM's `__ARM_NR_*`, s390's PCI calls, ...) that profiles list but
/// the `syscalls` tables leave out; hand-listed because no crate has them.
const ARCH_PRIVATE_NAMES: &[&str] = &[
    "breakpoint",
    "cacheflush",
    "set_tls",
    "get_tls",
    "usr26",
    "usr32",
    "s390_pci_mmio_read",
    "s390_pci_mmio_write",
    "s390_runtime_instr",
    "s390_guarded_storage",
    "s390_sthyi",
    "riscv_flush_icache",
    "riscv_hwprobe",
    "sys_debug_setcontext",
    "subpage_prot",
    "switch_endian",
    "spu_run",
    "spu_create",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_names_get_x86_64_numbers() {
        assert_eq!(resolve("read"), Resolved::Native(libc::SYS_read));
        assert_eq!(resolve("getcwd"), Resolved::Native(libc::SYS_getcwd));
        assert_eq!(resolve("clone3"), Resolved::Native(libc::SYS_clone3));
    }

    #[test]
    fn other_arch_names_are_skipped_and_nonsense_is_unknown() {
        assert_eq!(resolve("_llseek"), Resolved::OtherArchOnly);
        assert_eq!(resolve("socketcall"), Resolved::OtherArchOnly);
        assert_eq!(resolve("arm_fadvise64_64"), Resolved::OtherArchOnly);
        assert_eq!(resolve("cacheflush"), Resolved::OtherArchOnly);
        assert_eq!(resolve("foo"), Resolved::Unknown);
        assert_eq!(resolve(""), Resolved::Unknown);
    }
}
