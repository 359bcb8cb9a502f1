//! Emulated devices and the bus that routes guest port I/O to them.

pub mod bus;
pub mod legacy;

pub use bus::{PioBus, PioDevice};
