//! Emulated devices and the buses that route guest port I/O and MMIO to them.

pub mod acpi_sleep;
pub mod bus;
pub mod legacy;
pub mod mmio;
pub mod pci;
pub mod virtio;

pub use bus::{PioBus, PioDevice};
pub use mmio::{MmioBus, MmioDevice};

/// Both buses, as a vCPU routes its I/O exits.
#[derive(Debug, Default)]
pub struct Buses {
    pub pio: PioBus,
    pub mmio: MmioBus,
}
