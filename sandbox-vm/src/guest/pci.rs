//! Tiny guests that find PCI devices through configuration mechanism #1 and drive virtio-rng
//! through one split virtqueue, proving the PCI and virtio-pci path without Linux.

use super::asm::{Asm, Bits};
use super::virtio_driver::{self as driver, Descriptor, SplitQueue, VRING_DESC_F_WRITE};
use crate::arch::x86_64::layout::PCI_CONFIG_PORT;
use crate::builder::{CpuMode, GuestImage};
use crate::devices::legacy::{DEBUG_EXIT_PORT, SERIAL_PORT};
use crate::devices::virtio::VIRTIO_F_VERSION_1;

pub(super) const CONFIG_DATA_PORT: u16 = PCI_CONFIG_PORT + 4;
/// The queue the rng guest builds: descriptor table, driver (avail) and device (used) areas,
/// and the buffer the device fills.
pub const RNG_DESC: u32 = 0x8_0000;
pub const RNG_AVAIL: u32 = 0x8_0100;
pub const RNG_USED: u32 = 0x8_0200;
pub const RNG_BUFFER: u32 = 0x8_0400;
/// Bytes the rng guest asks for.
pub const RNG_REQUEST: u32 = 16;
/// The queue size the rng guest sets.
pub const RNG_QUEUE_SIZE: u32 = 8;
/// The rng guest's queue: its table, driver and device areas in the 1 KiB at RNG_DESC.
pub(super) const RNG_QUEUE: SplitQueue = SplitQueue::at(0, RNG_QUEUE_SIZE as u16, RNG_DESC);
const _: () = assert!(RNG_QUEUE.avail == RNG_AVAIL && RNG_QUEUE.used == RNG_USED);

/// The conf1 address of register `reg` of 00:`device`.0.
pub(super) fn config_address(device: u8, reg: u8) -> u32 {
    0x8000_0000 | u32::from(device) << 11 | u32::from(reg & 0xfc)
}

/// `eax = config dword (device, reg)`.
pub(super) fn read_config(asm: &mut Asm, device: u8, reg: u8) {
    asm.mov_eax(config_address(device, reg))
        .mov_dx(PCI_CONFIG_PORT)
        .out_dx_eax()
        .mov_dx(CONFIG_DATA_PORT)
        .in_eax_dx();
}

/// Long mode: for device numbers 0..`devices` on bus 0, sends the vendor/device dword of
/// function 0 to COM1 (4 raw bytes, low first; all ones where nothing answers), then writes
/// `status` to the debug-exit port.
pub fn long_mode_pci_scan(devices: u8, status: u8) -> GuestImage {
    let mut asm = Asm::new(Bits::Long64);
    for device in 0..devices {
        read_config(&mut asm, device, 0);
        asm.mov_dx(SERIAL_PORT).out_dx_eax_bytes();
    }
    asm.out_imm_port(DEBUG_EXIT_PORT as u8, status).hlt();
    GuestImage::Code {
        mode: CpuMode::LongMode,
        code: asm.finish(),
    }
}

/// Long mode: drives the virtio-rng at 00:01.0 like a minimal driver, polling instead of
/// taking interrupts. It maps the MMIO window, turns on memory decoding, reads BAR 0,
/// negotiates VERSION_1, sets up queue 0 with one device-writable descriptor of
/// [`RNG_REQUEST`] bytes, sets DRIVER_OK and notifies. Then it sends to COM1: the device
/// status it reads back, '0' + the used ring index, the used length, and the buffer; and
/// writes `status` to the debug-exit port.
pub fn long_mode_virtio_rng_read(status: u8) -> GuestImage {
    let mut asm = Asm::new(Bits::Long64);
    driver::map_pci_window(&mut asm);
    driver::enable_function(&mut asm, 1);
    // The queue in guest RAM: one device-writable descriptor, offered in the driver area.
    let buffer = Descriptor {
        addr: RNG_BUFFER,
        len: RNG_REQUEST,
        flags: VRING_DESC_F_WRITE,
        next: 0,
    };
    driver::write_descriptor(&mut asm, &RNG_QUEUE, 0, buffer);
    driver::offer(&mut asm, &RNG_QUEUE, 0, 0);
    driver::negotiate(&mut asm, VIRTIO_F_VERSION_1);
    driver::setup_queue(&mut asm, &RNG_QUEUE);
    driver::driver_ok_and_report(&mut asm);
    // The notification is handled during this store's exit: the used ring is filled after it.
    driver::notify(&mut asm, &RNG_QUEUE);
    asm.load_al(RNG_USED + 2).add_al(b'0').out_dx_al();
    asm.load_al(RNG_USED + 8).out_dx_al();
    driver::print_memory(&mut asm, RNG_BUFFER, RNG_REQUEST);
    driver::exit_with(&mut asm, status);
    GuestImage::Code {
        mode: CpuMode::LongMode,
        code: asm.finish(),
    }
}
