//! x86_64 boot state: where things live in guest memory, the GDT, identity page tables,
//! the CPU registers for real, protected and long mode, the CPUID runvm shows the guest,
//! and what a Linux guest needs besides (boot MSRs, LAPIC wiring, MP table).

pub mod acpi;
pub mod cpuid;
pub mod gdt;
pub mod lapic;
pub mod layout;
pub mod mptable;
pub mod msrs;
pub mod paging;
pub mod regs;
