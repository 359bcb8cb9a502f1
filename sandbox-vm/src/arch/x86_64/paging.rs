//! Identity page tables for entering long mode.
//!
//! Hand-written: long mode cannot be entered without paging and no rust-vmm crate builds
//! page tables. One PML4 entry -> one PDPT entry -> a page directory of 512 2 MiB pages
//! identity-maps the first 1 GiB, which covers all guest RAM a tiny guest uses.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{PDPT_START, PD_START, PML4_START};
use crate::error::VmError;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const PAGE_SIZE_2M: u64 = 1 << 7;
const TWO_MIB: u64 = 2 << 20;
/// Bytes of guest address space the tables map.
pub const IDENTITY_MAPPED_BYTES: u64 = 512 * TWO_MIB;

/// The page directory entries: entry `i` maps guest virtual `i * 2 MiB` to the same physical.
pub fn page_directory() -> [u64; 512] {
    let mut pd = [0u64; 512];
    for (i, entry) in pd.iter_mut().enumerate() {
        *entry = (i as u64 * TWO_MIB) | PRESENT | WRITABLE | PAGE_SIZE_2M;
    }
    pd
}

/// Writes PML4, PDPT and PD into guest memory and returns the CR3 value to load.
pub fn write_identity_tables(mem: &GuestMemoryMmap) -> Result<u64, VmError> {
    let write = |addr: u64, value: u64| {
        mem.write_obj(value, GuestAddress(addr))
            .map_err(|e| VmError::GuestMemory(format!("page table entry at {addr:#x}: {e}")))
    };
    write(PML4_START, PDPT_START | PRESENT | WRITABLE)?;
    write(PDPT_START, PD_START | PRESENT | WRITABLE)?;
    for (i, entry) in page_directory().iter().enumerate() {
        write(PD_START + i as u64 * 8, *entry)?;
    }
    Ok(PML4_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_identity_map_the_first_gigabyte() {
        let mem =
            GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("test memory");
        let cr3 = write_identity_tables(&mem).expect("tables fit");
        let pml4: u64 = mem.read_obj(GuestAddress(cr3)).expect("pml4");
        let pdpt: u64 = mem.read_obj(GuestAddress(pml4 & !0xfff)).expect("pdpt");
        let pd_base = pdpt & !0xfff;
        // Walk a few virtual addresses by hand: each must land on itself.
        for va in [0u64, 0x1_0000, 0x20_1234, IDENTITY_MAPPED_BYTES - 1] {
            let pde: u64 = mem
                .read_obj(GuestAddress(pd_base + ((va >> 21) & 0x1ff) * 8))
                .expect("pde");
            assert_eq!(pde & (PRESENT | PAGE_SIZE_2M), PRESENT | PAGE_SIZE_2M);
            let pa = (pde & !(TWO_MIB - 1) & 0x000f_ffff_ffff_f000) | (va & (TWO_MIB - 1));
            assert_eq!(pa, va);
        }
    }
}
