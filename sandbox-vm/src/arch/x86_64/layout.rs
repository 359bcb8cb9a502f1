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

// --- Linux (PVH) boot -------------------------------------------------------------------

/// The PVH `hvm_start_info` the kernel finds through %ebx.
pub const PVH_START_INFO: u64 = 0x6000;
/// The PVH module list (one entry: the initramfs), right after the start info.
pub const PVH_MODLIST: u64 = 0x6040;
/// The PVH memory map (e820-style entries).
pub const PVH_MEMMAP: u64 = 0x7000;
/// The kernel command line, NUL-terminated.
pub const CMDLINE_START: u64 = 0x2_0000;
/// Longest command line (with its NUL) the layout has room for.
pub const CMDLINE_MAX: usize = 0x1_0000;
/// The MP table lives in the last KiB below 640 KiB, where Linux scans for it (the EBDA).
pub const MPTABLE_START: u64 = 0x9_fc00;
/// Start of the legacy VGA/BIOS hole: no RAM is reported from MPTABLE_START up to 1 MiB.
pub const HIMEM_START: u64 = 0x10_0000;
/// Local APIC and IO-APIC MMIO bases (the PC defaults, emulated by KVM's irqchip).
pub const APIC_BASE: u32 = 0xfee0_0000;
pub const IOAPIC_BASE: u32 = 0xfec0_0000;
/// ACPI tables (RSDP first) in the BIOS area, reported as reserved in the memory map.
pub const ACPI_START: u64 = 0xe_0000;
pub const ACPI_END: u64 = 0xf_0000;

// --- PCI ------------------------------------------------------------------------------

/// The 32-bit MMIO window PCI BARs are placed in: from the top of the largest guest RAM
/// ([`MAX_GUEST_MEMORY`]) up to 0xE000_0000, leaving the space below the IO-APIC free for an
/// ECAM region later.
pub const PCI_MMIO_START: u64 = MAX_GUEST_MEMORY as u64;
pub const PCI_MMIO_SIZE: u64 = 0x2000_0000;
/// The PCI configuration mechanism #1 ports: address at 0xCF8, data at 0xCFC..0xCFF.
pub const PCI_CONFIG_PORT: u16 = 0xcf8;
pub const PCI_CONFIG_PORT_LEN: u16 = 8;
/// The first GSI above the IO-APIC's 24 pins: MSI vectors are routed from here up.
pub const MSI_GSI_START: u32 = 24;
