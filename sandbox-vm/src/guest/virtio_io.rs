//! Tiny guests that do I/O through virtio-blk, virtio-console and virtio-vsock at 00:01.0,
//! each a few hundred instructions built from [`super::virtio_driver`]'s steps. They report
//! raw bytes on COM1 and end through the debug-exit port: with the caller's status when all
//! waits ended, or with one of the `*_TIMEOUT` statuses when a device never answered.

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};

use super::asm::{Asm, Bits};
use super::virtio_driver::{
    self as driver, Descriptor, SplitQueue, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use crate::builder::{CpuMode, GuestImage};
use crate::devices::virtio::vsock::HOST_CID;
use crate::devices::virtio::VIRTIO_F_VERSION_1;

/// The PCI device number every guest here drives: the first device on bus 0.
const DEVICE: u8 = 1;
/// Where the guests put their queues and buffers: free RAM between the code (at 0x10000)
/// and the MP table (at 0x9fc00).
const RAM: u32 = 0x8_0000;

/// Exit statuses of a guest whose device never returned the buffers it waited for.
pub const BLOCK_TIMEOUT: u8 = 0xe1;
pub const CONSOLE_TRANSMIT_TIMEOUT: u8 = 0xe2;
pub const CONSOLE_RECEIVE_TIMEOUT: u8 = 0xe3;
pub const VSOCK_RESPONSE_TIMEOUT: u8 = 0xe4;
pub const VSOCK_REPLY_TIMEOUT: u8 = 0xe5;

fn long_mode(asm: &Asm) -> GuestImage {
    GuestImage::Code {
        mode: CpuMode::LongMode,
        code: asm.finish(),
    }
}

/// The common start: map the MMIO window, enable 00:01.0 (BAR 0 in rbx).
fn start() -> Asm {
    let mut asm = Asm::new(Bits::Long64);
    driver::map_pci_window(&mut asm);
    driver::enable_function(&mut asm, DEVICE);
    asm
}

// ---- virtio-blk ----

const BLOCK_QUEUE: SplitQueue = SplitQueue::at(0, 16, RAM);
/// Three 16-byte request headers (IN, OUT, FLUSH), then their three status bytes.
const BLOCK_HEADERS: u32 = RAM + 0x1000;
const BLOCK_STATUS: u32 = RAM + 0x1100;
const BLOCK_READ_BUFFER: u32 = RAM + 0x2000;
const BLOCK_WRITE_BUFFER: u32 = RAM + 0x2200;
/// One sector: the size of the guest's read and of its write.
pub const BLOCK_SECTOR: usize = 512;
/// The sector the guest writes [`block_write_pattern`] to (it reads sector 0).
pub const BLOCK_WRITTEN_SECTOR: u64 = 1;
/// How many bytes of the sector it read the guest prints: the first and the last 8.
pub const BLOCK_SHOWN: usize = 8;
/// A value the device never writes as a status (OK 0, IOERR 1, UNSUPP 2): an untouched
/// status byte stays at it.
pub const BLOCK_STATUS_UNSET: u8 = 0xff;

/// What the block guest writes to sector [`BLOCK_WRITTEN_SECTOR`]: every byte depends on
/// its offset, so a short or shifted write shows.
pub fn block_write_pattern() -> [u8; BLOCK_SECTOR] {
    let mut sector = [0u8; BLOCK_SECTOR];
    for (i, byte) in sector.iter_mut().enumerate() {
        *byte = (i * 7 + 3) as u8;
    }
    sector
}

/// Writes one request chain starting at descriptor `head`: the header, the data buffer if
/// any (`device_writes` for IN), the status byte. Returns the next free descriptor.
fn block_request(
    asm: &mut Asm,
    head: u16,
    request_type: u32,
    sector: u64,
    data: Option<(u32, bool)>,
    status: u32,
) -> u16 {
    let header = BLOCK_HEADERS + 16 * u32::from(head);
    asm.store_u64(header, u64::from(request_type))
        .store_u64(header + 8, sector);
    let mut slot = head;
    let mut link = |asm: &mut Asm, addr: u32, len: u32, flags: u16| {
        let desc = Descriptor {
            addr,
            len,
            flags,
            next: slot + 1,
        };
        driver::write_descriptor(asm, &BLOCK_QUEUE, slot, desc);
        slot += 1;
    };
    link(asm, header, 16, VRING_DESC_F_NEXT);
    if let Some((buffer, device_writes)) = data {
        let direction = if device_writes { VRING_DESC_F_WRITE } else { 0 };
        link(
            asm,
            buffer,
            BLOCK_SECTOR as u32,
            VRING_DESC_F_NEXT | direction,
        );
    }
    let last = Descriptor {
        addr: status,
        len: 1,
        flags: VRING_DESC_F_WRITE,
        next: 0,
    };
    driver::write_descriptor(asm, &BLOCK_QUEUE, slot, last);
    slot + 1
}

/// Long mode: drives the virtio-blk at 00:01.0 (accepting VERSION_1 and FLUSH). It offers
/// three chains at once: IN of sector 0 (header, 512-byte device-writable buffer, status),
/// OUT of [`block_write_pattern`] to sector 1 (header, buffer, status) and FLUSH (header,
/// status: a flush carries no data), notifies, and waits for all three to be used. It sends
/// to COM1: the device status, '0' + the used index, the three status bytes (IN, OUT,
/// FLUSH), then the first and last [`BLOCK_SHOWN`] bytes of sector 0; and exits with
/// `status` ([`BLOCK_TIMEOUT`] if the device never returned them).
pub fn long_mode_virtio_blk_io(status: u8) -> GuestImage {
    let mut asm = start();
    asm.store_u64(BLOCK_STATUS, u64::from_le_bytes([BLOCK_STATUS_UNSET; 8]));
    driver::store_bytes(&mut asm, BLOCK_WRITE_BUFFER, &block_write_pattern());
    let read = (BLOCK_READ_BUFFER, true);
    let write = (BLOCK_WRITE_BUFFER, false);
    let out_head = block_request(&mut asm, 0, VIRTIO_BLK_T_IN, 0, Some(read), BLOCK_STATUS);
    let flush_head = block_request(
        &mut asm,
        out_head,
        VIRTIO_BLK_T_OUT,
        BLOCK_WRITTEN_SECTOR,
        Some(write),
        BLOCK_STATUS + 1,
    );
    block_request(
        &mut asm,
        flush_head,
        VIRTIO_BLK_T_FLUSH,
        0,
        None,
        BLOCK_STATUS + 2,
    );
    for (slot, head) in (0u16..).zip([0, out_head, flush_head]) {
        driver::offer(&mut asm, &BLOCK_QUEUE, slot, head);
    }
    driver::negotiate(&mut asm, VIRTIO_F_VERSION_1 | 1 << VIRTIO_BLK_F_FLUSH);
    driver::setup_queue(&mut asm, &BLOCK_QUEUE);
    driver::driver_ok_and_report(&mut asm);
    driver::notify(&mut asm, &BLOCK_QUEUE);
    driver::wait_used(&mut asm, &BLOCK_QUEUE, 3, BLOCK_TIMEOUT);
    asm.load_al(BLOCK_QUEUE.used_idx_addr())
        .add_al(b'0')
        .out_dx_al();
    driver::print_memory(&mut asm, BLOCK_STATUS, 3);
    driver::print_memory(&mut asm, BLOCK_READ_BUFFER, BLOCK_SHOWN as u32);
    let tail = BLOCK_READ_BUFFER + (BLOCK_SECTOR - BLOCK_SHOWN) as u32;
    driver::print_memory(&mut asm, tail, BLOCK_SHOWN as u32);
    driver::exit_with(&mut asm, status);
    long_mode(&asm)
}

// ---- virtio-console ----

const CONSOLE_RECEIVE: SplitQueue = SplitQueue::at(0, 8, RAM);
const CONSOLE_TRANSMIT: SplitQueue = SplitQueue::at(1, 8, RAM + 0x400);
const CONSOLE_RECEIVE_BUFFER: u32 = RAM + 0x1000;
const CONSOLE_TRANSMIT_BUFFER: u32 = RAM + 0x1100;
/// Size of the guest's one receive buffer, all of which it prints.
pub const CONSOLE_RECEIVE_LEN: u32 = 16;
/// Longest message the console guest sends; a longer one is cut.
pub const CONSOLE_MAX_MESSAGE: usize = 256;

/// Long mode: drives the virtio-console at 00:01.0. Before DRIVER_OK it offers one
/// [`CONSOLE_RECEIVE_LEN`]-byte receive buffer (queue 0) and `message` on the transmitq
/// (queue 1); then it notifies the transmitq, waits for the message to be used, notifies
/// the receiveq and waits for input there. It sends to COM1: the device status, the used
/// length of the receive buffer, and the whole receive buffer (zeros past what came); and
/// exits with `status` ([`CONSOLE_TRANSMIT_TIMEOUT`] / [`CONSOLE_RECEIVE_TIMEOUT`] when a
/// wait ran out: the latter when the host gave no input).
pub fn long_mode_virtio_console_io(message: &[u8], status: u8) -> GuestImage {
    let message = &message[..message.len().min(CONSOLE_MAX_MESSAGE)];
    let mut asm = start();
    let receive = Descriptor {
        addr: CONSOLE_RECEIVE_BUFFER,
        len: CONSOLE_RECEIVE_LEN,
        flags: VRING_DESC_F_WRITE,
        next: 0,
    };
    driver::write_descriptor(&mut asm, &CONSOLE_RECEIVE, 0, receive);
    driver::offer(&mut asm, &CONSOLE_RECEIVE, 0, 0);
    driver::store_bytes(&mut asm, CONSOLE_TRANSMIT_BUFFER, message);
    let transmit = Descriptor {
        addr: CONSOLE_TRANSMIT_BUFFER,
        len: message.len() as u32,
        flags: 0,
        next: 0,
    };
    driver::write_descriptor(&mut asm, &CONSOLE_TRANSMIT, 0, transmit);
    driver::offer(&mut asm, &CONSOLE_TRANSMIT, 0, 0);
    driver::negotiate(&mut asm, VIRTIO_F_VERSION_1);
    driver::setup_queue(&mut asm, &CONSOLE_RECEIVE);
    driver::setup_queue(&mut asm, &CONSOLE_TRANSMIT);
    driver::driver_ok_and_report(&mut asm);
    driver::notify(&mut asm, &CONSOLE_TRANSMIT);
    driver::wait_used(&mut asm, &CONSOLE_TRANSMIT, 1, CONSOLE_TRANSMIT_TIMEOUT);
    driver::notify(&mut asm, &CONSOLE_RECEIVE);
    driver::wait_used(&mut asm, &CONSOLE_RECEIVE, 1, CONSOLE_RECEIVE_TIMEOUT);
    driver::print_memory(&mut asm, CONSOLE_RECEIVE.used_len_addr(0), 1);
    driver::print_memory(&mut asm, CONSOLE_RECEIVE_BUFFER, CONSOLE_RECEIVE_LEN);
    driver::exit_with(&mut asm, status);
    long_mode(&asm)
}

// ---- virtio-vsock ----

const VSOCK_RX: SplitQueue = SplitQueue::at(0, 8, RAM);
const VSOCK_TX: SplitQueue = SplitQueue::at(1, 8, RAM + 0x400);
/// Three rx buffers of 256 bytes: a header and up to 212 payload bytes each.
const VSOCK_RX_BUFFERS: u32 = RAM + 0x1000;
const VSOCK_RX_BUFFER_LEN: u32 = 0x100;
const VSOCK_RX_COUNT: u16 = 3;
const VSOCK_REQUEST_HEADER: u32 = RAM + 0x2000;
const VSOCK_RW_HEADER: u32 = RAM + 0x2100;
const VSOCK_PAYLOAD: u32 = RAM + 0x2200;
/// `struct virtio_vsock_hdr` (virtio 1.2 §5.10.6): its size and the offsets the guest reads.
const VSOCK_HEADER_LEN: u32 = 44;
const VSOCK_LEN_OFFSET: u32 = 24;
const VSOCK_OP_OFFSET: u32 = 30;
/// VIRTIO_VSOCK_TYPE_STREAM and the ops the guest sends.
const VSOCK_TYPE_STREAM: u64 = 1;
const VSOCK_OP_REQUEST: u16 = 1;
const VSOCK_OP_RW: u16 = 5;
/// The receive window the guest announces: room for the host's reply.
const VSOCK_BUF_ALLOC: u64 = 4096;
/// The guest's own port.
pub const VSOCK_GUEST_PORT: u32 = 4000;
/// Longest payload the vsock guest sends; a longer one is cut.
pub const VSOCK_MAX_PAYLOAD: usize = 256;
/// How many bytes of the host's reply payload the guest prints.
pub const VSOCK_REPLY_SHOWN: u32 = 8;

/// A guest → host header: from `guest_cid`:[`VSOCK_GUEST_PORT`] to CID 2:`host_port`.
fn vsock_header(asm: &mut Asm, addr: u32, guest_cid: u64, host_port: u32, op: u16, len: u32) {
    asm.store_u64(addr, guest_cid)
        .store_u64(addr + 8, HOST_CID)
        .store_u64(
            addr + 16,
            u64::from(VSOCK_GUEST_PORT) | u64::from(host_port) << 32,
        )
        .store_u64(
            addr + 24,
            u64::from(len) | VSOCK_TYPE_STREAM << 32 | u64::from(op) << 48,
        )
        // flags 0, buf_alloc; then fwd_cnt 0 (nothing received yet).
        .store_u64(addr + 32, VSOCK_BUF_ALLOC << 32)
        .store_abs(addr + 40, 4, 0);
}

/// Long mode: connects through the virtio-vsock at 00:01.0 to host port `host_port` and
/// sends `payload`. It offers three rx buffers (queue 0), puts a REQUEST on tx (queue 1),
/// notifies and polls rx until the device returns a packet (the RESPONSE); then sends an RW
/// packet (header and payload in two descriptors) and polls rx for the next packet (the
/// host's reply). It sends to COM1: the device status, the op of the first rx packet, the
/// op and the low byte of the len of the second, and the first [`VSOCK_REPLY_SHOWN`] bytes
/// of its payload; and exits with `status` ([`VSOCK_RESPONSE_TIMEOUT`] /
/// [`VSOCK_REPLY_TIMEOUT`] when a wait ran out). `guest_cid` must be the device's.
pub fn long_mode_vsock_connect(
    guest_cid: u64,
    host_port: u32,
    payload: &[u8],
    status: u8,
) -> GuestImage {
    let payload = &payload[..payload.len().min(VSOCK_MAX_PAYLOAD)];
    let mut asm = start();
    for slot in 0..VSOCK_RX_COUNT {
        let buffer = Descriptor {
            addr: VSOCK_RX_BUFFERS + u32::from(slot) * VSOCK_RX_BUFFER_LEN,
            len: VSOCK_RX_BUFFER_LEN,
            flags: VRING_DESC_F_WRITE,
            next: 0,
        };
        driver::write_descriptor(&mut asm, &VSOCK_RX, slot, buffer);
        driver::offer(&mut asm, &VSOCK_RX, slot, slot);
    }
    // tx descriptor 0: the REQUEST; 1 → 2: the RW header and its payload.
    let len = payload.len() as u32;
    vsock_header(
        &mut asm,
        VSOCK_REQUEST_HEADER,
        guest_cid,
        host_port,
        VSOCK_OP_REQUEST,
        0,
    );
    vsock_header(
        &mut asm,
        VSOCK_RW_HEADER,
        guest_cid,
        host_port,
        VSOCK_OP_RW,
        len,
    );
    driver::store_bytes(&mut asm, VSOCK_PAYLOAD, payload);
    let tx = [
        (VSOCK_REQUEST_HEADER, VSOCK_HEADER_LEN, 0, 0),
        (VSOCK_RW_HEADER, VSOCK_HEADER_LEN, VRING_DESC_F_NEXT, 2),
        (VSOCK_PAYLOAD, len, 0, 0),
    ];
    for (slot, (addr, len, flags, next)) in (0u16..).zip(tx) {
        let desc = Descriptor {
            addr,
            len,
            flags,
            next,
        };
        driver::write_descriptor(&mut asm, &VSOCK_TX, slot, desc);
    }
    driver::offer(&mut asm, &VSOCK_TX, 0, 0);
    // The event queue stays disabled: the device never uses it.
    driver::negotiate(&mut asm, VIRTIO_F_VERSION_1);
    driver::setup_queue(&mut asm, &VSOCK_RX);
    driver::setup_queue(&mut asm, &VSOCK_TX);
    driver::driver_ok_and_report(&mut asm);
    // The worker thread serves tx: the guest polls rx for its answer.
    driver::notify(&mut asm, &VSOCK_TX);
    driver::wait_used(&mut asm, &VSOCK_RX, 1, VSOCK_RESPONSE_TIMEOUT);
    driver::print_memory(&mut asm, VSOCK_RX_BUFFERS + VSOCK_OP_OFFSET, 1);
    driver::offer(&mut asm, &VSOCK_TX, 1, 1);
    driver::notify(&mut asm, &VSOCK_TX);
    driver::wait_used(&mut asm, &VSOCK_RX, 2, VSOCK_REPLY_TIMEOUT);
    let second = VSOCK_RX_BUFFERS + VSOCK_RX_BUFFER_LEN;
    driver::print_memory(&mut asm, second + VSOCK_OP_OFFSET, 1);
    driver::print_memory(&mut asm, second + VSOCK_LEN_OFFSET, 1);
    driver::print_memory(&mut asm, second + VSOCK_HEADER_LEN, VSOCK_REPLY_SHOWN);
    driver::exit_with(&mut asm, status);
    long_mode(&asm)
}
