//! PC legacy devices tiny guests (and early Linux) talk to through port I/O.

pub mod debug_exit;
pub mod i8042;
pub mod serial;

/// COM1.
pub const SERIAL_PORT: u16 = 0x3f8;
pub const SERIAL_PORT_LEN: u16 = 8;
/// COM1's ISA interrupt line.
pub const SERIAL_IRQ: u32 = 4;
/// The i8042 keyboard controller: data at 0x60, command/status at 0x64.
pub const I8042_PORT: u16 = 0x60;
pub const I8042_PORT_LEN: u16 = 5;
/// The command that pulses the CPU reset line.
pub const I8042_RESET_COMMAND: u8 = 0xfe;
/// The debug-exit port, where QEMU puts isa-debug-exit by default.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
