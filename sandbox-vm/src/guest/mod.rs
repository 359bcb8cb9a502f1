//! The tiny guests runvm builds itself: used by the tests, the calibration run and the
//! boot-time example. Each runs a few dozen instructions, so they finish quickly even on a
//! KVM that emulates every instruction (about 1 µs each on a PVM host).

pub mod abuse;
pub mod asm;
pub mod pci;
pub mod pvh_elf;
pub mod virtio_driver;
pub mod virtio_io;

use asm::{Asm, Bits};

use crate::arch::x86_64::acpi::{ACPI_SLEEP_PORT, S5_SLEEP_TYPE, SLEEP_ENABLE, SLEEP_TYPE_SHIFT};
use crate::builder::{CpuMode, GuestImage};
use crate::devices::legacy::{DEBUG_EXIT_PORT, I8042_PORT, I8042_RESET_COMMAND, SERIAL_PORT};

/// The i8042 command port (base + 4).
const I8042_COMMAND_PORT: u8 = (I8042_PORT + 4) as u8;

/// Real mode: prints `text` on COM1, then writes `status` to the debug-exit port.
pub fn real_mode_hello(text: &[u8], status: u8) -> GuestImage {
    let code = Asm::new(Bits::Real16)
        .print(SERIAL_PORT, text)
        .out_imm_port(DEBUG_EXIT_PORT as u8, status)
        .hlt()
        .finish();
    GuestImage::Code {
        mode: CpuMode::RealMode,
        code,
    }
}

/// Long mode: prints `text`, then 'L' computed in a 64-bit register, then EFER.LMA ('1'),
/// then powers off through the i8042 reset command.
pub fn long_mode_hello(text: &[u8]) -> GuestImage {
    let code = Asm::new(Bits::Long64)
        .print(SERIAL_PORT, text)
        .print_via_64bit_register(SERIAL_PORT)
        .print_efer_lma(SERIAL_PORT)
        .out_imm_port(I8042_COMMAND_PORT, I8042_RESET_COMMAND)
        .hlt()
        .finish();
    GuestImage::Code {
        mode: CpuMode::LongMode,
        code,
    }
}

/// Long mode: prints the CPUID hypervisor bit ('1'/'0') and the first byte of the
/// hypervisor signature leaf, then powers off through the i8042.
pub fn long_mode_cpuid_report() -> GuestImage {
    let code = Asm::new(Bits::Long64)
        .print_cpuid_hypervisor(SERIAL_PORT)
        .out_imm_port(I8042_COMMAND_PORT, I8042_RESET_COMMAND)
        .hlt()
        .finish();
    GuestImage::Code {
        mode: CpuMode::LongMode,
        code,
    }
}

/// Long mode: prints `marker`, then executes `int3` with no IDT. Hardware KVM ends it with a
/// triple fault; PVM's emulator cannot run int3 and reports an internal error.
pub fn long_mode_breakpoint(marker: u8) -> GuestImage {
    let code = Asm::new(Bits::Long64)
        .print(SERIAL_PORT, &[marker])
        .int3()
        .hlt()
        .finish();
    GuestImage::Code {
        mode: CpuMode::LongMode,
        code,
    }
}

/// The 32-bit code of a stand-in Linux kernel for the PVH boot path: prints 'P', then what
/// it finds through the start info ([`Asm::print_pvh_start_info`]), then powers off through
/// the ACPI sleep register, as Linux's `poweroff` does. Wrap it with [`pvh_elf::kernel`].
pub fn pvh_report_code() -> Vec<u8> {
    Asm::new(Bits::Protected32)
        .print(SERIAL_PORT, b"P")
        .print_pvh_start_info(SERIAL_PORT)
        .mov_dx(ACPI_SLEEP_PORT)
        .out_dx_byte((S5_SLEEP_TYPE << SLEEP_TYPE_SHIFT) | SLEEP_ENABLE)
        .hlt()
        .finish()
}

/// Prints `marker`, then spins forever: only the monitor can stop it.
pub fn spin_forever(mode: CpuMode, marker: u8) -> GuestImage {
    let bits = match mode {
        CpuMode::RealMode => Bits::Real16,
        CpuMode::LongMode => Bits::Long64,
    };
    let code = Asm::new(bits).print(SERIAL_PORT, &[marker]).spin().finish();
    GuestImage::Code { mode, code }
}

/// Real mode: prints 'S', runs `iterations` of a two-instruction loop, prints 'E' and exits
/// with `status` through the debug-exit port. The time between the two bytes measures
/// guest speed.
pub fn real_mode_count_down(iterations: u32, status: u8) -> GuestImage {
    let code = Asm::new(Bits::Real16)
        .print(SERIAL_PORT, b"S")
        .count_down(iterations)
        .print(SERIAL_PORT, b"E")
        .out_imm_port(DEBUG_EXIT_PORT as u8, status)
        .hlt()
        .finish();
    GuestImage::Code {
        mode: CpuMode::RealMode,
        code,
    }
}
