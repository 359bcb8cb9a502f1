//! x86_64 boot state: where things live in guest memory, the GDT, identity page tables,
//! the CPU registers for real mode and long mode, and the CPUID runvm shows the guest.

pub mod cpuid;
pub mod gdt;
pub mod layout;
pub mod paging;
pub mod regs;
