//! CPU register state for the boot vCPU: real mode, or 64-bit long mode straight away.
//!
//! Hand-written: linux-loader writes boot params but leaves registers to the monitor.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::gdt::{self, CODE64_INDEX, DATA_INDEX, TSS_INDEX};
use super::layout::{BOOT_STACK_TOP, GDT_START, IDT_START};
use super::paging;
use crate::error::VmError;

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// RFLAGS bit 1 is reserved and always reads as 1.
const RFLAGS_RESERVED: u64 = 1 << 1;

/// Writes the GDT, an empty IDT and the identity page tables; returns the CR3 to load.
pub fn write_long_mode_tables(mem: &GuestMemoryMmap) -> Result<u64, VmError> {
    write_gdt_and_empty_idt(mem, &gdt::long_mode_gdt())?;
    paging::write_identity_tables(mem)
}

/// Writes `table` at GDT_START and a zero IDT descriptor at IDT_START.
fn write_gdt_and_empty_idt(mem: &GuestMemoryMmap, table: &[u64]) -> Result<(), VmError> {
    for (i, entry) in table.iter().enumerate() {
        let addr = GDT_START + i as u64 * 8;
        mem.write_obj(*entry, GuestAddress(addr))
            .map_err(|e| VmError::GuestMemory(format!("GDT entry at {addr:#x}: {e}")))?;
    }
    mem.write_obj(0u64, GuestAddress(IDT_START))
        .map_err(|e| VmError::GuestMemory(format!("IDT at {IDT_START:#x}: {e}")))
}

/// Points GDTR and IDTR at the monitor's tables and loads flat segments from `table`:
/// `code_index` for CS, the data entry for the others, the TSS for TR.
fn load_segments(sregs: &mut kvm_sregs, table: &[u64; 4], code_index: usize) {
    let data = gdt::segment_from_entry(table[DATA_INDEX], DATA_INDEX);
    sregs.gdt.base = GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(table) - 1) as u16;
    sregs.idt.base = IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = gdt::segment_from_entry(table[code_index], code_index);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = gdt::segment_from_entry(table[TSS_INDEX], TSS_INDEX);
}

/// Special registers for 64-bit long mode with paging on, starting from the vCPU's
/// reset state `sregs`.
pub fn long_mode_sregs(mut sregs: kvm_sregs, cr3: u64) -> kvm_sregs {
    load_segments(&mut sregs, &gdt::long_mode_gdt(), CODE64_INDEX);
    sregs.cr3 = cr3;
    sregs.cr4 |= CR4_PAE;
    sregs.cr0 |= CR0_PE | CR0_ET | CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    sregs
}

/// Writes the protected-mode GDT and an empty IDT for the PVH entry.
pub fn write_protected_mode_tables(mem: &GuestMemoryMmap) -> Result<(), VmError> {
    write_gdt_and_empty_idt(mem, &gdt::protected_mode_gdt())
}

/// Special registers for the PVH entry (Xen's "HVM direct boot" ABI, which Linux
/// implements): 32-bit protected mode, paging off, flat code and data segments.
pub fn protected_mode_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    // The 32-bit code entry sits at the index the 64-bit one has in the long-mode table.
    load_segments(&mut sregs, &gdt::protected_mode_gdt(), CODE64_INDEX);
    // Exactly PE (+ET): the reset value's cache-disable bits must not survive into the
    // kernel, which only ORs in PG later.
    sregs.cr0 = CR0_PE | CR0_ET;
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    sregs
}

/// General registers for the PVH entry: %ebx holds the start-info address.
pub fn pvh_entry_regs(entry: u64, start_info: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rbx: start_info,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    }
}

/// Special registers for real mode with every data segment and CS based at `code_start`
/// (which must be 16-byte aligned and below 1 MiB).
pub fn real_mode_sregs(mut sregs: kvm_sregs, code_start: u64) -> kvm_sregs {
    let selector = (code_start >> 4) as u16;
    for seg in [
        &mut sregs.cs,
        &mut sregs.ds,
        &mut sregs.es,
        &mut sregs.fs,
        &mut sregs.gs,
        &mut sregs.ss,
    ] {
        seg.base = code_start;
        seg.selector = selector;
    }
    sregs.cr0 &= !(CR0_PE | CR0_PG);
    sregs.efer &= !(EFER_LME | EFER_LMA);
    sregs
}

/// General registers: start at `rip` with a stack and the reserved flag bit.
pub fn entry_regs(rip: u64, long_mode: bool) -> kvm_regs {
    kvm_regs {
        rip,
        rflags: RFLAGS_RESERVED,
        // In real mode SS:SP is relative to the code segment, so keep the stack under the code.
        rsp: if long_mode { BOOT_STACK_TOP } else { 0xfff0 },
        ..Default::default()
    }
}

/// x87/SSE state after a reset that long-mode code expects (masked exceptions).
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_mode_sregs_enable_paging_pae_and_lma() {
        let s = long_mode_sregs(kvm_sregs::default(), 0x9000);
        assert_eq!(s.cr3, 0x9000);
        assert_ne!(s.cr0 & CR0_PG, 0);
        assert_ne!(s.cr0 & CR0_PE, 0);
        assert_ne!(s.cr4 & CR4_PAE, 0);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.cs.l, 1);
        assert_eq!(s.gdt.limit, 31);
    }

    #[test]
    fn pvh_sregs_are_protected_mode_without_paging() {
        let reset = kvm_sregs {
            cr0: 0x6000_0010,
            ..Default::default()
        };
        let s = protected_mode_sregs(reset);
        assert_eq!(
            s.cr0,
            CR0_PE | CR0_ET,
            "cache-disable bits cleared, no paging"
        );
        assert_eq!((s.cr4, s.efer), (0, 0));
        assert_eq!((s.cs.db, s.cs.l, s.cs.selector), (1, 0, 0x08));
        assert_eq!(s.ss.selector, 0x10);
        let r = pvh_entry_regs(0x100_0000, 0x6000);
        assert_eq!((r.rip, r.rbx, r.rflags), (0x100_0000, 0x6000, 2));
    }

    #[test]
    fn real_mode_sregs_base_every_segment_at_the_code() {
        let start = kvm_sregs {
            cr0: CR0_PE | CR0_PG,
            ..Default::default()
        };
        let s = real_mode_sregs(start, 0x1_0000);
        assert_eq!((s.cs.base, s.cs.selector), (0x1_0000, 0x1000));
        assert_eq!((s.ss.base, s.ds.selector), (0x1_0000, 0x1000));
        assert_eq!(s.cr0 & (CR0_PE | CR0_PG), 0);
    }
}
