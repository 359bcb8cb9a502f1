//! The steps of a minimal virtio-pci driver, emitted as tiny-guest code: map the PCI MMIO
//! window, enable a function and load its BAR 0 into rbx, negotiate features, set up split
//! virtqueues in guest RAM, offer descriptor chains, notify, and wait (bounded) for the
//! device to use them. The guests poll; none takes interrupts.

use super::asm::Asm;
use super::pci::{config_address, read_config, CONFIG_DATA_PORT};
use crate::arch::x86_64::layout::{PCI_CONFIG_PORT, PCI_MMIO_START, PDPT_START};
use crate::devices::legacy::{DEBUG_EXIT_PORT, SERIAL_PORT};
use crate::devices::virtio::pci::{
    NOTIFY_MULTIPLIER, NOTIFY_OFFSET, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK,
    STATUS_FEATURES_OK,
};

/// A second page directory, in the free page after the monitor's identity tables, that maps
/// the first 2 MiB of the PCI MMIO window (the identity tables stop at 1 GiB).
pub(super) const WINDOW_PD: u32 = 0xc000;
/// Page directory entry flags: present, writable, write-through, cache-disable, 2 MiB page.
pub(super) const PDE_MMIO: u64 = 0x9b;
/// PCI command register bits: memory decoding and bus mastering.
const COMMAND_MEMORY_AND_MASTER: u32 = 6;
/// Descriptor flags (virtio spec 2.7.5).
pub const VRING_DESC_F_NEXT: u16 = 1;
pub const VRING_DESC_F_WRITE: u16 = 2;
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
/// How many times a guest polls a used ring before it gives up. Each poll costs an exit to
/// the monitor (see [`Asm::wait_for_byte`]): about 12 µs on a PVM host (2.4 s in all), a
/// few µs with hardware KVM; far more than a device thread needs to answer.
pub const POLL_ITERATIONS: u32 = 200_000;
/// The register every poll reads to pace itself: COM1's line status, which has no side
/// effect worth noting.
const PACE_PORT: u16 = SERIAL_PORT + 5;

/// One split virtqueue the guest lays out in its RAM (all below 4 GiB, so the high halves
/// of the addresses are 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitQueue {
    pub index: u16,
    pub size: u16,
    pub desc: u32,
    pub avail: u32,
    pub used: u32,
}

/// One descriptor: `len` bytes at `addr`, with `flags` and the `next` index of its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub addr: u32,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

impl SplitQueue {
    /// Queue `index` of `size` (at most 16) entries in the 1 KiB at `base`: descriptor table
    /// at +0, driver area at +0x100, device area at +0x200.
    pub const fn at(index: u16, size: u16, base: u32) -> Self {
        assert!(size <= 16, "the 1 KiB layout holds at most 16 entries");
        SplitQueue {
            index,
            size,
            desc: base,
            avail: base + 0x100,
            used: base + 0x200,
        }
    }

    /// The low byte of the device's used index: how many chains it has returned (mod 256).
    pub const fn used_idx_addr(&self) -> u32 {
        self.used + 2
    }

    /// The low byte of the length the device wrote into used element `slot`.
    pub const fn used_len_addr(&self, slot: u16) -> u32 {
        self.used + 4 + 8 * slot as u32 + 4
    }
}

/// Maps the first 2 MiB of the PCI MMIO window (where BAR 0 of the first functions lies)
/// through a page directory of its own, then flushes the TLB.
pub fn map_pci_window(asm: &mut Asm) {
    asm.store_u64(WINDOW_PD, PCI_MMIO_START | PDE_MMIO)
        .store_u64(PDPT_START as u32 + 8 * 3, u64::from(WINDOW_PD) | 3)
        .reload_cr3();
}

/// Turns on memory decoding and bus mastering of 00:`device`.0 and leaves its BAR 0 (a
/// 32-bit memory BAR: no flag bits) in rbx, the base of every later register access.
pub fn enable_function(asm: &mut Asm, device: u8) {
    write_config(asm, device, 4, COMMAND_MEMORY_AND_MASTER);
    read_config(asm, device, 0x10);
    asm.mov_ebx_eax();
}

/// Config dword (device, reg) = `value`; clobbers eax and dx.
pub fn write_config(asm: &mut Asm, device: u8, reg: u8, value: u32) {
    asm.mov_eax(config_address(device, reg))
        .mov_dx(PCI_CONFIG_PORT)
        .out_dx_eax()
        .mov_eax(value)
        .mov_dx(CONFIG_DATA_PORT)
        .out_dx_eax();
}

/// ACKNOWLEDGE, DRIVER, accept `features` (both 32-bit halves), FEATURES_OK.
pub fn negotiate(asm: &mut Asm, features: u64) {
    let ack_driver = u32::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    asm.store_rbx(DEVICE_STATUS, 1, u32::from(STATUS_ACKNOWLEDGE))
        .store_rbx(DEVICE_STATUS, 1, ack_driver)
        .store_rbx(DRIVER_FEATURE_SELECT, 4, 0)
        .store_rbx(DRIVER_FEATURE, 4, features as u32)
        .store_rbx(DRIVER_FEATURE_SELECT, 4, 1)
        .store_rbx(DRIVER_FEATURE, 4, (features >> 32) as u32)
        .store_rbx(DEVICE_STATUS, 1, ack_driver | u32::from(STATUS_FEATURES_OK));
}

/// Selects `queue`, sets its size and ring addresses and enables it.
pub fn setup_queue(asm: &mut Asm, queue: &SplitQueue) {
    asm.store_rbx(QUEUE_SELECT, 2, u32::from(queue.index))
        .store_rbx(QUEUE_SIZE, 2, u32::from(queue.size))
        .store_rbx(QUEUE_DESC, 4, queue.desc)
        .store_rbx(QUEUE_DESC + 4, 4, 0)
        .store_rbx(QUEUE_DRIVER, 4, queue.avail)
        .store_rbx(QUEUE_DRIVER + 4, 4, 0)
        .store_rbx(QUEUE_DEVICE, 4, queue.used)
        .store_rbx(QUEUE_DEVICE + 4, 4, 0)
        .store_rbx(QUEUE_ENABLE, 2, 1);
}

/// Sets DRIVER_OK (the device activates), then sends the status the device reports back to
/// COM1: 0x0f when all went well, with NEEDS_RESET (0x40) or FAILED (0x80) otherwise.
pub fn driver_ok_and_report(asm: &mut Asm) {
    driver_ok(asm);
    asm.mov_dx(SERIAL_PORT)
        .load_al_rbx(DEVICE_STATUS)
        .out_dx_al();
}

/// Sets DRIVER_OK: the device activates.
pub fn driver_ok(asm: &mut Asm) {
    let all = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK;
    asm.store_rbx(DEVICE_STATUS, 1, u32::from(all));
}

/// Writes descriptor `slot` of `queue`'s table.
pub fn write_descriptor(asm: &mut Asm, queue: &SplitQueue, slot: u16, desc: Descriptor) {
    let entry = queue.desc + 16 * u32::from(slot);
    let tail = u64::from(desc.len) | u64::from(desc.flags) << 32 | u64::from(desc.next) << 48;
    asm.store_u64(entry, u64::from(desc.addr))
        .store_u64(entry + 8, tail);
}

/// Puts chain `head` in driver-ring slot `slot`, then publishes it by setting the driver
/// index to `slot + 1` (the ring entry must be in place before the index moves).
pub fn offer(asm: &mut Asm, queue: &SplitQueue, slot: u16, head: u16) {
    asm.store_abs(queue.avail + 4 + 2 * u32::from(slot), 2, u32::from(head))
        .store_abs(queue.avail + 2, 2, u32::from(slot) + 1);
}

/// Kicks `queue` through its notify register.
pub fn notify(asm: &mut Asm, queue: &SplitQueue) {
    let offset = NOTIFY_OFFSET as u32 + u32::from(queue.index) * NOTIFY_MULTIPLIER;
    asm.store_rbx(offset, 2, u32::from(queue.index));
}

/// Waits until the device has returned `count` chains on `queue`; after
/// [`POLL_ITERATIONS`] polls the guest gives up and exits with `timeout_status`. Leaves dx
/// at COM1 again, as the reports that follow expect.
pub fn wait_used(asm: &mut Asm, queue: &SplitQueue, count: u8, timeout_status: u8) {
    asm.wait_for_byte(
        queue.used_idx_addr(),
        count,
        POLL_ITERATIONS,
        PACE_PORT,
        DEBUG_EXIT_PORT as u8,
        timeout_status,
    )
    .mov_dx(SERIAL_PORT);
}

/// Copies `bytes` to guest RAM at `addr`, 8 at a time (the last store pads with zeros, so
/// up to 7 bytes past the end are cleared).
pub fn store_bytes(asm: &mut Asm, addr: u32, bytes: &[u8]) {
    for (i, chunk) in bytes.chunks(8).enumerate() {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        asm.store_u64(addr + 8 * i as u32, u64::from_le_bytes(word));
    }
}

/// Sends `len` bytes of guest RAM at `addr` to COM1, one `out` each.
pub fn print_memory(asm: &mut Asm, addr: u32, len: u32) {
    asm.mov_dx(SERIAL_PORT);
    for i in 0..len {
        asm.load_al(addr + i).out_dx_al();
    }
}

/// Writes `status` to the debug-exit port and halts: the guest's end.
pub fn exit_with(asm: &mut Asm, status: u8) {
    asm.out_imm_port(DEBUG_EXIT_PORT as u8, status).hlt();
}
