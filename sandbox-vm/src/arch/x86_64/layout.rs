//! Guest physical memory layout for tiny guests (and the low part of a Linux boot later).
//!
//! Everything the monitor writes lives below 1 MiB, away from the guest code at
//! [`CODE_START`]; the addresses follow the usual PC/Firecracker conventions so the same
//! layout can carry boot params and an e820 map when Linux is booted.

/// The GDT the monitor writes for protected/long mode.
pub const GDT_START: u64 = 0x500;
/// A zero-length IDT: tiny guests take no interrupts.
pub const IDT_START: u64 = 0x520;
/// Identity page tables: one PML4, one PDPT, one page directory of 2 MiB pages.
pub const PML4_START: u64 = 0x9000;
pub const PDPT_START: u64 = 0xa000;
pub const PD_START: u64 = 0xb000;
/// Top of the boot stack (grows down, below the page tables).
pub const BOOT_STACK_TOP: u64 = 0x8ff0;
/// Where tiny guest code is loaded and started.
pub const CODE_START: u64 = 0x1_0000;
/// Guest code may fill memory from CODE_START up to here (the legacy VGA/BIOS hole).
pub const CODE_END: u64 = 0xa_0000;
/// KVM needs a 3-page region for its real-mode TSS on Intel; keep it out of guest RAM.
pub const KVM_TSS_ADDRESS: usize = 0xfffb_d000;
/// Guest RAM must stay below the 32-bit MMIO hole until an e820 map splits it.
pub const MAX_GUEST_MEMORY: usize = 0xc000_0000;
/// Smallest guest RAM that holds the layout above.
pub const MIN_GUEST_MEMORY: usize = 0x10_0000;
