//! Hostile tiny guests: they flood the monitor with notifications and garbage register
//! accesses, or spin on one vCPU while another ends the VM. The monitor must stay bounded
//! and responsive under each (see `tests/guest_abuse.rs`).

use super::asm::{Asm, Bits};
use super::pci::{
    read_config, RNG_AVAIL, RNG_BUFFER, RNG_DESC, RNG_QUEUE, RNG_QUEUE_SIZE, RNG_REQUEST,
};
use super::virtio_driver::{
    self as driver, map_pci_window, write_config, PDE_MMIO, VRING_DESC_F_WRITE, WINDOW_PD,
};
use crate::arch::x86_64::layout::{APIC_BASE, PCI_CONFIG_PORT, PCI_MMIO_START, PDPT_START};
use crate::builder::{CpuMode, GuestImage};
use crate::devices::legacy::{DEBUG_EXIT_PORT, SERIAL_PORT};
use crate::devices::virtio::pci::{BAR_SIZE, NOTIFY_MULTIPLIER, NOTIFY_OFFSET};
use crate::devices::virtio::VIRTIO_F_VERSION_1;

/// What the notification flood offers the virtio-rng device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyFlood {
    /// `buffers` (1..=[`RNG_QUEUE_SIZE`]) buffers offered once before the flood: every
    /// notification after the first finds the queue empty.
    OfferedOnce { buffers: u16 },
    /// One more buffer (the avail index plus one) before every notification, forever.
    NewBufferEach,
    /// One buffer offered before the flood, and two invalid notifications before each valid
    /// one: an absent queue's, and a misaligned one.
    StrayNotifies,
}

/// The queue the stray notifications name: virtio-rng has only queue 0.
const ABSENT_QUEUE: u32 = 5;

/// Long mode: sets up virtio-rng at 00:01.0 with [`RNG_QUEUE_SIZE`] descriptors (descriptor
/// `i` a device-writable [`RNG_REQUEST`]-byte buffer at [`RNG_BUFFER`] + i * RNG_REQUEST,
/// avail ring entry `i` naming descriptor `i`), sends 'F' to COM1, then writes the queue's
/// notify register in an endless loop as `flood` says. Only the monitor can end it.
pub fn long_mode_rng_notify_flood(flood: NotifyFlood) -> GuestImage {
    let mut asm = Asm::new(Bits::Long64);
    map_pci_window(&mut asm);
    driver::enable_function(&mut asm, 1);
    let offered = match flood {
        NotifyFlood::OfferedOnce { buffers } => u64::from(buffers),
        NotifyFlood::NewBufferEach => 0,
        NotifyFlood::StrayNotifies => 1,
    };
    for i in 0..RNG_QUEUE_SIZE {
        let desc = RNG_DESC + 16 * i;
        let buffer = RNG_BUFFER + RNG_REQUEST * i;
        asm.store_u64(desc, u64::from(buffer)).store_u64(
            desc + 8,
            u64::from(RNG_REQUEST) | u64::from(VRING_DESC_F_WRITE) << 32,
        );
    }
    // flags 0 and idx first (this store also zeroes ring[0..2]), then ring[i] = i.
    asm.store_u64(RNG_AVAIL, offered << 16);
    for first in (0..RNG_QUEUE_SIZE).step_by(4) {
        let four = (0..4u64).fold(0u64, |acc, k| acc | (u64::from(first) + k) << (16 * k));
        asm.store_u64(RNG_AVAIL + 4 + 2 * first, four);
    }
    driver::negotiate(&mut asm, VIRTIO_F_VERSION_1);
    driver::setup_queue(&mut asm, &RNG_QUEUE);
    driver::driver_ok(&mut asm);
    asm.print(SERIAL_PORT, b"F");
    let top = asm.label();
    match flood {
        NotifyFlood::NewBufferEach => {
            asm.inc_word(RNG_AVAIL + 2);
        }
        NotifyFlood::StrayNotifies => {
            let notify = NOTIFY_OFFSET as u32;
            asm.store_rbx(notify + NOTIFY_MULTIPLIER * ABSENT_QUEUE, 2, 0)
                .store_rbx(notify + 1, 2, 0);
        }
        NotifyFlood::OfferedOnce { .. } => {}
    }
    asm.store_rbx(NOTIFY_OFFSET as u32, 2, 0).jmp_back(top);
    GuestImage::Code {
        mode: CpuMode::LongMode,
        code: asm.finish(),
    }
}

/// Start of the guest-physical hole the garbage guest pokes: above its RAM (at most
/// 16 MiB here), below the 1 GiB its identity page tables map.
const HOLE_BITS: u32 = 0x0100_0000;
/// Keeps a hole address below 1 GiB with room for an 8-byte access.
const HOLE_MASK: u32 = 0x3eff_fff7;
/// Keeps a window address inside the mapped first 2 MiB with room for an 8-byte access.
const WINDOW_MASK: u32 = 0x1f_fff7;
/// Keeps an address inside virtio BAR 0 with room for an 8-byte access.
const BAR_MASK: u32 = BAR_SIZE as u32 - 1 - 8;

/// Long mode: sends 'G' to COM1, then for `iterations` rounds of an xorshift32 generator
/// seeded with `seed` (non-zero) hammers the monitor with garbage. Each round first puts
/// virtio-rng's BAR 0 back at the window start and turns memory decoding back on (the
/// garbage may have moved or disabled it), then:
/// - a random conf1 address, then byte/word/dword writes and reads at a random port of
///   0xCF8..0xCFF (any bus, device, function, register; enable bit or not);
/// - a conf1 address on bus 0 device 0 or 1 (function 0..7), then every width at a random
///   data port: random writes into the host bridge's and the virtio-rng's config space;
/// - writes and reads of every width (1, 2, 4, 8 bytes, any alignment) at a random offset
///   of virtio-rng's BAR 0 where the monitor placed it, anywhere in the first 2 MiB of the
///   PCI window, and in the unbacked hole between RAM and 1 GiB.
///
/// Then it sends the vendor/device dword of 00:01.0 (4 raw bytes) and writes `status` to the
/// debug-exit port. It never touches its own RAM, so only the monitor can stop it early.
pub fn long_mode_register_garbage(iterations: u32, seed: u32, status: u8) -> GuestImage {
    let mut asm = Asm::new(Bits::Long64);
    map_pci_window(&mut asm);
    asm.print(SERIAL_PORT, b"G")
        .mov_esi(seed.max(1))
        .mov_ecx(iterations.max(1));
    let top = asm.label();
    write_config(&mut asm, 1, 0x10, PCI_MMIO_START as u32);
    write_config(&mut asm, 1, 4, 6);
    // conf1, fully random.
    asm.xorshift_esi()
        .eax_from_esi(u32::MAX)
        .mov_dx(PCI_CONFIG_PORT)
        .out_dx_eax()
        .dx_from_esi(8, 7, PCI_CONFIG_PORT)
        .eax_from_esi(u32::MAX)
        .pio_every_width();
    // conf1 aimed at the devices that exist.
    asm.xorshift_esi()
        .eax_from_esi(0x8000_0fff)
        .mov_dx(PCI_CONFIG_PORT)
        .out_dx_eax()
        .dx_from_esi(12, 3, PCI_CONFIG_PORT + 4)
        .eax_from_esi(u32::MAX)
        .pio_every_width();
    // MMIO: virtio BAR 0, the window, the hole.
    asm.xorshift_esi()
        .mov_ebx(PCI_MMIO_START as u32)
        .rdi_from_esi_plus_rbx(BAR_MASK)
        .mem_every_width_rdi()
        .xorshift_esi()
        .rdi_from_esi_plus_rbx(WINDOW_MASK)
        .mem_every_width_rdi()
        .xorshift_esi()
        .rdi_from_esi_or(HOLE_MASK, HOLE_BITS)
        .mem_every_width_rdi();
    asm.loop_back(top);
    read_config(&mut asm, 1, 0);
    asm.mov_dx(SERIAL_PORT)
        .out_dx_eax_bytes()
        .out_imm_port(DEBUG_EXIT_PORT as u8, status)
        .hlt();
    GuestImage::Code {
        mode: CpuMode::LongMode,
        code: asm.finish(),
    }
}

/// Which vCPU of [`long_mode_two_cpus_one_spins`] spins forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spinner {
    /// vCPU 0 starts vCPU 1 and spins; vCPU 1 ends the VM.
    BootCpu,
    /// vCPU 1 spins once started; vCPU 0 waits until it runs, then ends the VM.
    SecondCpu,
}

/// Where vCPU 1 starts: the startup IPI's vector is the page number (real mode, CS = 0x0d00).
const AP_TRAMPOLINE: u32 = 0xd000;
/// The byte vCPU 1 sets to 1 once it runs.
const AP_RUNNING_FLAG: u16 = 0xdf00;
/// Local APIC registers: spurious-interrupt vector (bit 8: APIC on), interrupt command.
const APIC_SVR: u32 = 0xf0;
const APIC_ICR_LOW: u32 = 0x300;
/// ICR: INIT (level assert), then STARTUP, both to all but self.
const ICR_INIT_OTHERS: u32 = 0x000c_4500;
const ICR_STARTUP_OTHERS: u32 = 0x000c_4600;

/// The real-mode code vCPU 1 runs after the startup IPI: 'A' to COM1, the running flag,
/// then spin or end the VM with `status`.
fn second_cpu_code(spinner: Spinner, status: u8) -> Vec<u8> {
    let mut asm = Asm::new(Bits::Real16);
    asm.print(SERIAL_PORT, b"A")
        .store_byte_real(AP_RUNNING_FLAG, 1);
    match spinner {
        Spinner::SecondCpu => asm.spin(),
        Spinner::BootCpu => asm.out_imm_port(DEBUG_EXIT_PORT as u8, status).hlt(),
    };
    asm.finish()
}

/// Long mode, 2 vCPUs (needs the in-kernel irqchip): vCPU 0 copies vCPU 1's real-mode code to
/// [`AP_TRAMPOLINE`], maps its local APIC and starts vCPU 1 with INIT + STARTUP. vCPU 1 sends
/// 'A' to COM1. Then the [`Spinner`] spins forever while the other vCPU writes `status` to
/// the debug-exit port; with `Spinner::SecondCpu`, vCPU 0 first waits for vCPU 1 to run,
/// sends 'B', and runs `busy_iterations` of a loop beside the spinning vCPU before 'E'.
pub fn long_mode_two_cpus_one_spins(
    spinner: Spinner,
    busy_iterations: u32,
    status: u8,
) -> GuestImage {
    let mut asm = Asm::new(Bits::Long64);
    let mut trampoline = second_cpu_code(spinner, status);
    trampoline.resize(trampoline.len().next_multiple_of(8), 0xf4);
    for (i, chunk) in trampoline.chunks(8).enumerate() {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0xf4; 8]));
        asm.store_u64(AP_TRAMPOLINE + 8 * i as u32, word);
    }
    // The local APIC's 2 MiB page, in the page directory of the 4th GiB.
    let apic_pde = (u64::from(APIC_BASE) - PCI_MMIO_START) >> 21;
    asm.store_u64(
        WINDOW_PD + 8 * apic_pde as u32,
        u64::from(APIC_BASE) | PDE_MMIO,
    )
    .store_u64(PDPT_START as u32 + 8 * 3, u64::from(WINDOW_PD) | 3)
    .reload_cr3();
    let vector = AP_TRAMPOLINE >> 12;
    asm.mov_ebx(APIC_BASE)
        .store_rbx(APIC_SVR, 4, 0x1ff)
        .store_rbx(APIC_ICR_LOW, 4, ICR_INIT_OTHERS)
        .store_rbx(APIC_ICR_LOW, 4, ICR_STARTUP_OTHERS | vector)
        .store_rbx(APIC_ICR_LOW, 4, ICR_STARTUP_OTHERS | vector);
    match spinner {
        Spinner::BootCpu => {
            asm.spin();
        }
        Spinner::SecondCpu => {
            asm.spin_until_byte(u32::from(AP_RUNNING_FLAG), 1)
                .print(SERIAL_PORT, b"B")
                .count_down(busy_iterations)
                .print(SERIAL_PORT, b"E")
                .out_imm_port(DEBUG_EXIT_PORT as u8, status)
                .hlt();
        }
    }
    GuestImage::Code {
        mode: CpuMode::LongMode,
        code: asm.finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(image: GuestImage) -> Vec<u8> {
        match image {
            GuestImage::Code { code, .. } => code,
            other => panic!("not flat code: {other:?}"),
        }
    }

    #[test]
    fn the_flood_ends_in_a_backward_jump_to_the_notify_store() {
        let once = code(long_mode_rng_notify_flood(NotifyFlood::OfferedOnce {
            buffers: 3,
        }));
        // mov word [rbx + NOTIFY_OFFSET], 0 (9 bytes), then jmp -11.
        assert_eq!(&once[once.len() - 2..], &[0xeb, (-11i8) as u8]);
        let each = code(long_mode_rng_notify_flood(NotifyFlood::NewBufferEach));
        // inc word [abs32] (8 bytes) is inside the loop too.
        assert_eq!(&each[each.len() - 2..], &[0xeb, (-19i8) as u8]);
    }

    #[test]
    fn the_second_cpu_code_fits_below_its_flag() {
        for spinner in [Spinner::BootCpu, Spinner::SecondCpu] {
            let len = second_cpu_code(spinner, 1).len() as u32;
            assert!(AP_TRAMPOLINE + len < u32::from(AP_RUNNING_FLAG));
        }
    }
}
