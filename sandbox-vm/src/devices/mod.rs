//! Emulated devices and the bus that routes guest port I/O to them.

pub mod acpi_sleep;
pub mod bus;
pub mod legacy;
pub mod mmio;
pub mod pci;
pub mod virtio;

pub use bus::{PioBus, PioDevice};
pub use mmio::{MmioBus, MmioDevice};
