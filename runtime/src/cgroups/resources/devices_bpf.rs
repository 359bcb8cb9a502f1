//! Device rules on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the cgroup.
//!
//! Hand-written because no well-kept small crate does this: aya/libbpf-rs need a toolchain or a
//! prebuilt object file for what is a dozen instructions, so the program is assembled here and
//! loaded with the bpf(2) syscall through libc.
//!
//! The kernel calls the program with a `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
//! u32 minor; }` where access_type = (access bits << 16) | device type; returning 1 allows the
//! access, 0 denies it. Rules are checked from the last to the first and the first one matching
//! decides, which gives the same result as replaying them in order on v1 after "deny all".

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::devices::DeviceRule;
use crate::cgroups::error::CgroupError;

const FIELD: &str = "linux.resources.devices";

// bpf(2) commands, program type and attach type (include/uapi/linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

// Device types in the low half of access_type.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

// Opcodes used below.
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU32_MOV_X: u8 = 0xbc; // w_dst = w_src
const ALU32_AND_K: u8 = 0x54; // w_dst &= imm
const ALU32_RSH_K: u8 = 0x74; // w_dst >>= imm
const JMP32_JNE_K: u8 = 0x56; // if w_dst != imm goto +off
const JMP32_JEQ_K: u8 = 0x16; // if w_dst == imm goto +off
const ALU64_MOV_K: u8 = 0xb7; // r_dst = imm
const JMP_EXIT: u8 = 0x95;

// Register roles.
const R_CTX: u8 = 1;
const R_ACCESS_TYPE: u8 = 2;
const R_TYPE: u8 = 3;
const R_ACCESS: u8 = 4;
const R_MAJOR: u8 = 5;
const R_MINOR: u8 = 6;
const R_SCRATCH: u8 = 7;

/// struct bpf_insn.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high nibble
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// Assembles the filter program for `rules` (default: deny).
pub(crate) fn assemble(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut prog = vec![
        insn(LDX_MEM_W, R_ACCESS_TYPE, R_CTX, 0, 0),
        insn(ALU32_MOV_X, R_TYPE, R_ACCESS_TYPE, 0, 0),
        insn(ALU32_AND_K, R_TYPE, 0, 0, 0xffff),
        insn(ALU32_MOV_X, R_ACCESS, R_ACCESS_TYPE, 0, 0),
        insn(ALU32_RSH_K, R_ACCESS, 0, 0, 16),
        insn(LDX_MEM_W, R_MAJOR, R_CTX, 4, 0),
        insn(LDX_MEM_W, R_MINOR, R_CTX, 8, 0),
    ];
    const ALL: u32 =
        super::devices::ACCESS_MKNOD | super::devices::ACCESS_READ | super::devices::ACCESS_WRITE;
    for rule in rules.iter().rev() {
        // Each test jumps to the end of this rule's block when the rule does not match; the
        // offsets are patched once the block length is known.
        let mut block: Vec<Insn> = Vec::new();
        let mut jumps: Vec<usize> = Vec::new();
        let mut skip_unless = |block: &mut Vec<Insn>, code: u8, reg: u8, imm: i32| {
            jumps.push(block.len());
            block.push(insn(code, reg, 0, 0, imm));
        };
        match rule.kind {
            'b' => skip_unless(&mut block, JMP32_JNE_K, R_TYPE, DEV_BLOCK),
            'c' => skip_unless(&mut block, JMP32_JNE_K, R_TYPE, DEV_CHAR),
            _ => {}
        }
        if let Some(major) = rule.major {
            skip_unless(&mut block, JMP32_JNE_K, R_MAJOR, major as i32);
        }
        if let Some(minor) = rule.minor {
            skip_unless(&mut block, JMP32_JNE_K, R_MINOR, minor as i32);
        }
        if rule.access & ALL != ALL {
            block.push(insn(ALU32_MOV_X, R_SCRATCH, R_ACCESS, 0, 0));
            if rule.allow {
                // Allow only if every requested bit is in the rule.
                block.push(insn(
                    ALU32_AND_K,
                    R_SCRATCH,
                    0,
                    0,
                    (!rule.access & ALL) as i32,
                ));
                skip_unless(&mut block, JMP32_JNE_K, R_SCRATCH, 0);
            } else {
                // Deny if any requested bit is in the rule.
                block.push(insn(ALU32_AND_K, R_SCRATCH, 0, 0, rule.access as i32));
                skip_unless(&mut block, JMP32_JEQ_K, R_SCRATCH, 0);
            }
        }
        block.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow)));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let unconditional = jumps.is_empty();
        let len = block.len();
        for at in jumps {
            block[at].off = (len - at - 1) as i16;
        }
        prog.extend(block);
        // The verifier rejects unreachable instructions, and nothing after a rule that always
        // matches can run anyway.
        if unconditional {
            return prog;
        }
    }
    prog.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
    prog
}

/// The BPF_PROG_LOAD part of union bpf_attr, zero-padded (the kernel requires unknown tail
/// bytes to be zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    padding: [u64; 7],
}

/// The BPF_PROG_ATTACH part of union bpf_attr.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    padding: [u32; 11],
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a live, properly sized #[repr(C)] bpf_attr prefix; every pointer inside it
    // points at buffers that outlive the call.
    let ret =
        unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn load(prog: &[Insn]) -> Result<OwnedFd, CgroupError> {
    let license = CString::new("Apache-2.0").unwrap_or_default();
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"runvm_devic");
    let attr_for = |log: &mut Vec<u8>, level: u32| ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: level,
        log_size: log.len() as u32,
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        prog_name: name,
        ..Default::default()
    };
    let mut no_log = Vec::new();
    let first = bpf(BPF_PROG_LOAD, &mut attr_for(&mut no_log, 0));
    let result = match first {
        Ok(fd) => Ok(fd),
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            // Load again with the verifier log so the error says why.
            let mut log = vec![0u8; 64 * 1024];
            let second = bpf(BPF_PROG_LOAD, &mut attr_for(&mut log, 1));
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            second.map_err(|e| std::io::Error::new(e.kind(), format!("{e}; verifier: {text}")))
        }
        Err(e) => Err(e),
    };
    let fd = result.map_err(|source| CgroupError::Bpf {
        field: FIELD.to_string(),
        what: "loading the eBPF device filter".to_string(),
        source,
    })?;
    // SAFETY: a successful BPF_PROG_LOAD returns a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Loads a device filter for `rules` and attaches it to the cgroup2 directory `dir`, replacing
/// the filter a previous call attached there.
///
/// Attached without BPF_F_ALLOW_MULTI, so a new attach replaces the old program (an update)
/// instead of stacking it; descendants then cannot attach filters of their own.
pub(crate) fn attach_device_filter(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    let prog = assemble(rules);
    let prog_fd = load(&prog)?;
    let cgroup = std::fs::File::open(dir).map_err(|source| CgroupError::Read {
        field: FIELD.to_string(),
        path: dir.to_path_buf(),
        source,
    })?;
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // The cgroup keeps its own reference to the program; our fds can close afterwards.
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|source| CgroupError::Bpf {
        field: FIELD.to_string(),
        what: format!("attaching the eBPF device filter to {}", dir.display()),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::resources::devices::{ACCESS_MKNOD, ACCESS_READ, ACCESS_WRITE};

    const RWM: u32 = ACCESS_READ | ACCESS_WRITE | ACCESS_MKNOD;

    fn rule(
        allow: bool,
        kind: char,
        major: Option<u32>,
        minor: Option<u32>,
        access: u32,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access,
        }
    }

    #[test]
    fn no_rules_is_deny_everything() {
        let prog = assemble(&[]);
        assert_eq!(prog.len(), 9);
        assert_eq!(prog[7], insn(ALU64_MOV_K, 0, 0, 0, 0));
        assert_eq!(prog[8].code, JMP_EXIT);
    }

    #[test]
    fn jump_offsets_land_on_the_next_rule() {
        let prog = assemble(&[rule(true, 'c', Some(1), Some(3), ACCESS_READ)]);
        // prologue(7) + type, major, minor tests + mov, and, access test + mov r0, exit + default(2)
        assert_eq!(prog.len(), 7 + 3 + 3 + 2 + 2);
        let block = &prog[7..15];
        for (i, ins) in block.iter().enumerate() {
            if ins.code == JMP32_JNE_K || ins.code == JMP32_JEQ_K {
                // Every "does not match" jump must land on the default-deny instruction.
                assert_eq!(7 + i + 1 + ins.off as usize, 15, "insn {i}");
            }
        }
        // Allow only when no bit outside "r" is requested.
        assert_eq!(block[4].imm, (ACCESS_WRITE | ACCESS_MKNOD) as i32);
    }

    #[test]
    fn a_catch_all_rule_ends_the_program() {
        // Evaluated last-to-first: the final allow-all makes the earlier deny unreachable.
        let prog = assemble(&[
            rule(false, 'c', Some(1), Some(3), RWM),
            rule(true, 'a', None, None, RWM),
        ]);
        assert_eq!(prog.len(), 7 + 2);
        assert_eq!(prog[7], insn(ALU64_MOV_K, 0, 0, 0, 1));
    }
}
