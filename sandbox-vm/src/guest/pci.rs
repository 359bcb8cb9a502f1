//! Tiny guests that find PCI devices through configuration mechanism #1 and drive virtio-rng
//! through one split virtqueue, proving the PCI and virtio-pci path without Linux.

use super::asm::{Asm, Bits};
use crate::arch::x86_64::layout::{PCI_CONFIG_PORT, PCI_MMIO_START, PDPT_START};
use crate::builder::{CpuMode, GuestImage};
use crate::devices::legacy::{DEBUG_EXIT_PORT, SERIAL_PORT};
use crate::devices::virtio::pci::{
    NOTIFY_OFFSET, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK,
};

pub(super) const CONFIG_DATA_PORT: u16 = PCI_CONFIG_PORT + 4;
/// A second page directory, in the free page after the monitor's identity tables, that maps
/// the first 2 MiB of the PCI MMIO window (the identity tables stop at 1 GiB).
pub(super) const WINDOW_PD: u32 = 0xc000;
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
/// Page directory entry flags: present, writable, write-through, cache-disable, 2 MiB page.
pub(super) const PDE_MMIO: u64 = 0x9b;
pub(super) const VRING_DESC_F_WRITE: u64 = 2;
/// virtio common configuration offsets (virtio spec 4.1.4.3).
const DRIVER_FEATURE_SELECT: u32 = 8;
const DRIVER_FEATURE: u32 = 12;
const DEVICE_STATUS: u32 = 20;
const QUEUE_SELECT: u32 = 22;
const QUEUE_SIZE: u32 = 24;
const QUEUE_ENABLE: u32 = 28;
const QUEUE_DESC: u32 = 32;
const QUEUE_DRIVER: u32 = 40;
const QUEUE_DEVICE: u32 = 48;

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
    map_pci_window(&mut asm);
    enable_device_and_load_bar0(&mut asm, 1);
    // The queue in guest RAM: one descriptor, offered in the driver area (idx 1, ring[0] 0).
    asm.store_u64(RNG_DESC, u64::from(RNG_BUFFER))
        .store_u64(
            RNG_DESC + 8,
            u64::from(RNG_REQUEST) | VRING_DESC_F_WRITE << 32,
        )
        .store_u64(RNG_AVAIL, 1 << 16);
    set_up_queue0_and_driver_ok(&mut asm, RNG_QUEUE_SIZE);
    asm.mov_dx(SERIAL_PORT)
        .load_al_rbx(DEVICE_STATUS)
        .out_dx_al();
    // The notification is handled during this store's exit: the used ring is filled after it.
    asm.store_rbx(NOTIFY_OFFSET as u32, 2, 0);
    asm.load_al(RNG_USED + 2).add_al(b'0').out_dx_al();
    asm.load_al(RNG_USED + 8).out_dx_al();
    for i in 0..RNG_REQUEST {
        asm.load_al(RNG_BUFFER + i).out_dx_al();
    }
    asm.out_imm_port(DEBUG_EXIT_PORT as u8, status).hlt();
    GuestImage::Code {
        mode: CpuMode::LongMode,
        code: asm.finish(),
    }
}

/// Maps the first 2 MiB of the PCI MMIO window (and nothing else of the 4th GiB) through
/// [`WINDOW_PD`], with the caches off.
pub(super) fn map_pci_window(asm: &mut Asm) {
    asm.store_u64(WINDOW_PD, PCI_MMIO_START | PDE_MMIO)
        .store_u64(PDPT_START as u32 + 8 * 3, u64::from(WINDOW_PD) | 3)
        .reload_cr3();
}

/// Turns on memory decoding and bus mastering of 00:`device`.0 and leaves its BAR 0 in rbx.
pub(super) fn enable_device_and_load_bar0(asm: &mut Asm, device: u8) {
    write_config(asm, device, 4, 6);
    read_config(asm, device, 0x10);
    asm.mov_ebx_eax();
}

/// Config dword (device, reg) = `value`; clobbers eax and dx.
pub(super) fn write_config(asm: &mut Asm, device: u8, reg: u8, value: u32) {
    asm.mov_eax(config_address(device, reg))
        .mov_dx(PCI_CONFIG_PORT)
        .out_dx_eax()
        .mov_eax(value)
        .mov_dx(CONFIG_DATA_PORT)
        .out_dx_eax();
}

/// The minimal driver handshake on the virtio-pci function whose BAR 0 is in rbx: negotiates
/// VERSION_1, sets up queue 0 of `queue_size` on the RNG_* rings and sets DRIVER_OK.
pub(super) fn set_up_queue0_and_driver_ok(asm: &mut Asm, queue_size: u32) {
    let ack_driver = u32::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    asm.store_rbx(DEVICE_STATUS, 1, u32::from(STATUS_ACKNOWLEDGE))
        .store_rbx(DEVICE_STATUS, 1, ack_driver)
        .store_rbx(DRIVER_FEATURE_SELECT, 4, 1)
        .store_rbx(DRIVER_FEATURE, 4, 1) // bit 32: VIRTIO_F_VERSION_1
        .store_rbx(DEVICE_STATUS, 1, ack_driver | u32::from(STATUS_FEATURES_OK))
        .store_rbx(QUEUE_SELECT, 2, 0)
        .store_rbx(QUEUE_SIZE, 2, queue_size)
        .store_rbx(QUEUE_DESC, 4, RNG_DESC)
        .store_rbx(QUEUE_DESC + 4, 4, 0)
        .store_rbx(QUEUE_DRIVER, 4, RNG_AVAIL)
        .store_rbx(QUEUE_DRIVER + 4, 4, 0)
        .store_rbx(QUEUE_DEVICE, 4, RNG_USED)
        .store_rbx(QUEUE_DEVICE + 4, 4, 0)
        .store_rbx(QUEUE_ENABLE, 2, 1)
        .store_rbx(
            DEVICE_STATUS,
            1,
            ack_driver | u32::from(STATUS_FEATURES_OK | STATUS_DRIVER_OK),
        );
}
