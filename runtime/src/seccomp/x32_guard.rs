//! A six-instruction filter that answers x32-ABI syscalls with ENOSYS.
//!
//! x32 programs run on the x86_64 audit arch with `__X32_SYSCALL_BIT` (0x40000000) set in the
//! syscall number. seccompiler's arch check lets them through and its rules compare exact
//! x86_64 numbers, so an x32 `unshare` would slip past a deny rule when the default is ALLOW.
//! seccompiler cannot test a bit of the syscall number, hence this hand-written program.
//! ENOSYS is what a kernel without x32 support answers, so x32 programs see "no x32 here".

use seccompiler::{sock_filter, BpfProgram};

const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// `AUDIT_ARCH_X86_64` = EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// Offsets in `struct seccomp_data { int nr; __u32 arch; ... }`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

fn insn(code: u32, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter {
        // Every classic-BPF opcode fits in 16 bits.
        code: code as u16,
        jt,
        jf,
        k,
    }
}

pub fn x32_guard() -> BpfProgram {
    guard_returning(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32)
}

/// The guard with another answer for x32 calls, so tests can tell the guard's answer from the
/// ENOSYS of a kernel built without x32.
pub(super) fn guard_returning(x32_answer: u32) -> BpfProgram {
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    vec![
        insn(load, 0, 0, ARCH_OFFSET),
        // Another arch: not ours to judge (the seccompiler filters kill it anyway).
        insn(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            3,
            AUDIT_ARCH_X86_64,
        ),
        insn(load, 0, 0, NR_OFFSET),
        insn(
            libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
            0,
            1,
            X32_SYSCALL_BIT,
        ),
        insn(ret, 0, 0, x32_answer),
        insn(ret, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}
