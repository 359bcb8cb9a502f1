//! The virtio-vsock device's tx path over packets the fuzzer builds: each becomes a descriptor
//! chain (header, payload, split, looped, device-writable or outside RAM as the input says) on
//! a hand-laid tx ring, next to a few rx buffers for the device's answers. The device runs
//! with its worker thread, a Unix socket in a temporary directory, and (for guest port 1024)
//! a host listener that echoes what it receives. See `Input` for the byte layout.
//!
//! Beyond "never panics or hangs": the worker serves every published tx chain (within a
//! deadline far above the usual sub-millisecond), used entries name only published heads,
//! every rx packet it writes is a well-formed host-to-guest stream packet whose length matches
//! the used length, the tx queue is interrupted once it has used chains, and dropping the
//! device joins its thread.
#![no_main]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use runvm_sandbox_vm::devices::virtio::vsock::{Vsock, RX_QUEUE, TX_QUEUE};
use runvm_sandbox_vm::devices::virtio::{Activation, DeviceError, Interrupt, VirtioDevice};
use runvm_sandbox_vm::dma;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM_SIZE: u64 = 1 << 20;
const RING_SIZE: u16 = 256;
const RX_RING: u64 = 0x0000;
const TX_RING: u64 = 0x8000;
/// Offsets of a ring's parts from its base.
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const RX_BUFFERS: u64 = 0x1_0000;
const RX_BUFFER_SPACE: u64 = 0x1000;
const TX_BUFFERS: u64 = 0x2_0000;
const GUEST_CID: u64 = 3;
const HOST_CID: u64 = 2;
const HEADER_SIZE: usize = 44;
const TYPE_STREAM: u16 = 1;
/// The guest port whose host end listens (and echoes).
const ECHO_PORT: u32 = 1024;
/// The first host port the device gives host-initiated connections.
const HOST_LOCAL_PORTS: u32 = 1 << 30;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const MAX_PACKETS: usize = 64;
/// How long the worker may take to serve the tx ring before it counts as stuck.
const SERVE_DEADLINE: Duration = Duration::from_secs(5);
/// Longest wait for host-to-guest traffic after the tx chains were served.
const LINGER: Duration = Duration::from_millis(3);

/// The input, read front to back (missing bytes read 0). `[0]`: bits 0-3 the number of rx
/// buffers, bit 4 a host client connects with `CONNECT 1234` before activation, bit 5 waits
/// up to 3 ms after the tx chains were served for the rx buffers to fill; `[1..]` the
/// rx buffer lengths (one byte each, 16 * (b + 1) bytes, so some are shorter than a header);
/// then packets until the input ends (at most 64), each:
/// `shape` byte (bit 0 raw CIDs, bit 1 raw type, bit 2 header split over two descriptors,
/// bit 3 raw header len, bit 4 payload descriptor device-writable, bit 5 last descriptor
/// loops back to the head, bit 6 payload address outside RAM, bit 7 dst port in the host's
/// range), op byte (mod 8), src port u16, dst port u16, payload length u16 (mod 4096),
/// flags u32, buf_alloc u32, fwd_cnt u32; then when the shape says so: src and dst CID (u64
/// each), type u16, header len u32; then the payload bytes.
struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }

    fn more(&self) -> bool {
        self.at < self.data.len()
    }
}

/// Which queues were signalled.
#[derive(Default)]
struct Recorder(Mutex<Vec<u16>>);

impl Recorder {
    fn signalled(&self, queue: u16) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&queue)
    }
}

impl Interrupt for Recorder {
    fn notify_queue(&self, queue: u16) -> Result<(), DeviceError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(queue);
        Ok(())
    }

    fn notify_config(&self) -> Result<(), DeviceError> {
        Ok(())
    }
}

/// A temporary directory for the whole run and, at `v_1024` in it, the host end of guest port
/// 1024 (non-blocking; each input's `echo` thread serves it). Each input's device listens at
/// `v` (its drop removes the socket).
fn sockets() -> &'static (tempfile::TempDir, UnixListener) {
    static SOCKETS: OnceLock<(tempfile::TempDir, UnixListener)> = OnceLock::new();
    SOCKETS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener =
            UnixListener::bind(dir.path().join(format!("v_{ECHO_PORT}"))).expect("echo listener");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        (dir, listener)
    })
}

/// Until `stop`, accepts the device's connections to port 1024 and sends back what they carry
/// (what does not fit the socket right away is dropped). Runs on a scoped thread joined at the
/// end of each input, so no thread outlives it.
fn echo(listener: &UnixListener, stop: &AtomicBool) {
    let mut streams: Vec<UnixStream> = Vec::new();
    let mut buffer = [0u8; 4096];
    while !stop.load(Ordering::Acquire) {
        while let Ok((stream, _)) = listener.accept() {
            if stream.set_nonblocking(true).is_ok() {
                streams.push(stream);
            }
        }
        streams.retain_mut(|stream| match stream.read(&mut buffer) {
            Ok(0) => false,
            Ok(n) => stream.write(&buffer[..n]).is_ok(),
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        });
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The split ring at `base` as the driver lays it out.
struct Ring<'a> {
    mem: &'a GuestMemoryMmap,
    base: u64,
    next_desc: u16,
    heads: Vec<u16>,
}

impl<'a> Ring<'a> {
    fn new(mem: &'a GuestMemoryMmap, base: u64) -> Self {
        Ring {
            mem,
            base,
            next_desc: 0,
            heads: Vec::new(),
        }
    }

    /// Writes `parts` (address, length, flags) as a chain and publishes it, unless the table
    /// is full; `loop_back` makes the last descriptor point at the head.
    fn publish(&mut self, parts: &[(u64, u32, u16)], loop_back: bool) -> bool {
        let count = parts.len() as u16;
        if usize::from(self.next_desc) + parts.len() > usize::from(RING_SIZE) {
            return false;
        }
        let head = self.next_desc;
        for (i, &(addr, len, flags)) in parts.iter().enumerate() {
            let index = head + i as u16;
            let last = i + 1 == parts.len();
            let (flags, next) = match (last, loop_back) {
                (false, _) => (flags | DESC_F_NEXT, index + 1),
                (true, true) => (flags | DESC_F_NEXT, head),
                (true, false) => (flags, 0),
            };
            let mut desc = [0u8; 16];
            desc[0..8].copy_from_slice(&addr.to_le_bytes());
            desc[8..12].copy_from_slice(&len.to_le_bytes());
            desc[12..14].copy_from_slice(&flags.to_le_bytes());
            desc[14..16].copy_from_slice(&next.to_le_bytes());
            self.mem
                .write_slice(&desc, GuestAddress(self.base + 16 * u64::from(index)))
                .expect("descriptor");
        }
        self.next_desc += count;
        let slot = self.heads.len() as u64;
        self.mem
            .write_obj(head.to_le(), GuestAddress(self.base + AVAIL + 4 + 2 * slot))
            .expect("avail entry");
        self.heads.push(head);
        self.mem
            .write_obj(
                (self.heads.len() as u16).to_le(),
                GuestAddress(self.base + AVAIL + 2),
            )
            .expect("avail idx");
        true
    }

    fn queue(&self) -> Queue {
        let mut queue = Queue::new(RING_SIZE).expect("ring size");
        queue.set_desc_table_address(Some(self.base as u32), Some(0));
        queue.set_avail_ring_address(Some((self.base + AVAIL) as u32), Some(0));
        queue.set_used_ring_address(Some((self.base + USED) as u32), Some(0));
        queue.set_ready(true);
        queue
    }

    fn used_idx(&self) -> u16 {
        let idx: u16 = self
            .mem
            .read_obj(GuestAddress(self.base + USED + 2))
            .expect("used idx");
        u16::from_le(idx)
    }

    /// The (id, len) of used entry `slot`.
    fn used(&self, slot: u16) -> (u32, u32) {
        let at = self.base + USED + 4 + 8 * u64::from(slot);
        let id: u32 = self.mem.read_obj(GuestAddress(at)).expect("used id");
        let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).expect("used len");
        (u32::from_le(id), u32::from_le(len))
    }
}

/// Lays out the next packet of the input as a tx chain; false when the ring is full.
fn publish_packet(input: &mut Input, ring: &mut Ring, next_buffer: &mut u64) -> bool {
    let shape = input.byte();
    let op = u16::from(input.byte() % 8);
    let src_port = u32::from(input.u16());
    let mut dst_port = u32::from(input.u16());
    if shape & 0x80 != 0 {
        dst_port += HOST_LOCAL_PORTS;
    }
    let payload_len = usize::from(input.u16() % 4096);
    let flags = input.u32();
    let buf_alloc = input.u32();
    let fwd_cnt = input.u32();
    let (src_cid, dst_cid) = if shape & 1 != 0 {
        (input.u64(), input.u64())
    } else {
        (GUEST_CID, HOST_CID)
    };
    let type_ = if shape & 2 != 0 {
        input.u16()
    } else {
        TYPE_STREAM
    };
    let len = if shape & 8 != 0 {
        input.u32()
    } else {
        payload_len as u32
    };
    let payload = input.bytes(payload_len);

    let mut header = [0u8; HEADER_SIZE];
    header[0..8].copy_from_slice(&src_cid.to_le_bytes());
    header[8..16].copy_from_slice(&dst_cid.to_le_bytes());
    header[16..20].copy_from_slice(&src_port.to_le_bytes());
    header[20..24].copy_from_slice(&dst_port.to_le_bytes());
    header[24..28].copy_from_slice(&len.to_le_bytes());
    header[28..30].copy_from_slice(&type_.to_le_bytes());
    header[30..32].copy_from_slice(&op.to_le_bytes());
    header[32..36].copy_from_slice(&flags.to_le_bytes());
    header[36..40].copy_from_slice(&buf_alloc.to_le_bytes());
    header[40..44].copy_from_slice(&fwd_cnt.to_le_bytes());

    let header_at = *next_buffer;
    let payload_at = header_at + HEADER_SIZE as u64;
    let end = payload_at + payload_len as u64;
    if end > MEM_SIZE {
        return false;
    }
    ring.mem
        .write_slice(&header, GuestAddress(header_at))
        .expect("header");
    ring.mem
        .write_slice(&payload, GuestAddress(payload_at))
        .expect("payload");
    *next_buffer = end.next_multiple_of(16);

    let mut parts = Vec::new();
    if shape & 4 != 0 {
        parts.push((header_at, 20, 0));
        parts.push((header_at + 20, (HEADER_SIZE - 20) as u32, 0));
    } else {
        parts.push((header_at, HEADER_SIZE as u32, 0));
    }
    if payload_len > 0 {
        let addr = if shape & 0x40 != 0 {
            u64::MAX - 8
        } else {
            payload_at
        };
        let flags = if shape & 0x10 != 0 { DESC_F_WRITE } else { 0 };
        parts.push((addr, payload_len as u32, flags));
    }
    ring.publish(&parts, shape & 0x20 != 0)
}

/// Waits (bounded) for the worker to use `count` tx chains.
fn wait_for_tx(ring: &Ring, count: u16) {
    let deadline = Instant::now() + SERVE_DEADLINE;
    while ring.used_idx() < count {
        assert!(
            Instant::now() < deadline,
            "the worker used {} of {count} tx chains in {SERVE_DEADLINE:?}",
            ring.used_idx()
        );
        std::thread::sleep(Duration::from_micros(50));
    }
}

fuzz_target!(|data: &[u8]| {
    let (dir, listener) = sockets();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let echo = scope.spawn(|| echo(listener, &stop));
        let stopper = StopOnDrop(&stop);
        run(data, dir.path().join("v"));
        drop(stopper);
        // Joined here rather than by the scope, which only waits for the closure to return:
        // a thread still running its exit code would count as a leak.
        let _ = echo.join();
    });
});

/// Stops the echo thread however `run` ends, so the scope can join it.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// One input against a fresh device listening at `uds_path`.
fn run(data: &[u8], uds_path: PathBuf) {
    let mut input = Input { data, at: 0 };
    let setup = input.byte();
    let rx_buffers = usize::from(setup & 15);
    let host_client = setup & 0x10 != 0;
    let linger = setup & 0x20 != 0;

    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)])
        .expect("guest memory");
    let mut rx = Ring::new(&mem, RX_RING);
    let mut rx_lengths = Vec::new();
    for i in 0..rx_buffers {
        let len = 16 * (u32::from(input.byte()) + 1);
        let addr = RX_BUFFERS + RX_BUFFER_SPACE * i as u64;
        rx.publish(&[(addr, len, DESC_F_WRITE)], false);
        rx_lengths.push(len);
    }
    let mut tx = Ring::new(&mem, TX_RING);
    let mut next_buffer = TX_BUFFERS;
    while input.more() && tx.heads.len() < MAX_PACKETS {
        if !publish_packet(&mut input, &mut tx, &mut next_buffer) {
            break;
        }
    }

    let mut device = Vsock::new(GUEST_CID, &uds_path).expect("vsock device");
    let client = host_client.then(|| {
        let mut stream = UnixStream::connect(&uds_path).expect("host client");
        stream.write_all(b"CONNECT 1234\n").expect("connect line");
        stream
    });
    device.ack_features(device.offered_features());
    let interrupt = Arc::new(Recorder::default());
    let mut event = Queue::new(RING_SIZE).expect("ring size");
    event.set_ready(false);
    device
        .activate(Activation {
            memory: dma::identity(&mem),
            queues: vec![rx.queue(), tx.queue(), event],
            interrupt: interrupt.clone(),
        })
        .expect("activation");
    device.queue_notify(RX_QUEUE);
    device.queue_notify(TX_QUEUE);
    let published = tx.heads.len() as u16;
    wait_for_tx(&tx, published);
    if linger {
        // Time for the echo (or the host client) to answer through the rx buffers.
        let until = Instant::now() + LINGER;
        while usize::from(rx.used_idx()) < rx_buffers && Instant::now() < until {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    // Joins the worker: from here on the rings are final.
    drop(device);
    drop(client);

    assert_eq!(
        tx.used_idx(),
        published,
        "tx chains used after the last notify"
    );
    for slot in 0..published {
        let (id, len) = tx.used(slot);
        assert!(
            tx.heads.contains(&(id as u16)) && id < u32::from(RING_SIZE),
            "tx used id {id}"
        );
        assert_eq!(len, 0, "the device wrote into tx chain {id}");
    }
    if published > 0 {
        assert!(
            interrupt.signalled(TX_QUEUE),
            "tx chains used without an interrupt"
        );
    }
    let rx_used = rx.used_idx();
    assert!(
        usize::from(rx_used) <= rx_buffers,
        "{rx_used} rx of {rx_buffers} buffers"
    );
    for slot in 0..rx_used {
        let (id, len) = rx.used(slot);
        let index = rx
            .heads
            .iter()
            .position(|head| u32::from(*head) == id)
            .unwrap_or_else(|| panic!("rx used id {id} was never published"));
        assert!(
            len <= rx_lengths[index],
            "rx used len {len} of {}",
            rx_lengths[index]
        );
        if len == 0 {
            continue;
        }
        let mut header = [0u8; HEADER_SIZE];
        mem.read_slice(
            &mut header,
            GuestAddress(RX_BUFFERS + RX_BUFFER_SPACE * index as u64),
        )
        .expect("rx header");
        let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8"));
        let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4"));
        let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
        assert_eq!(
            (u64_at(0), u64_at(8)),
            (HOST_CID, GUEST_CID),
            "rx packet addresses"
        );
        assert_eq!(u16_at(28), TYPE_STREAM, "rx packet type");
        assert!((1..=7).contains(&u16_at(30)), "rx packet op {}", u16_at(30));
        assert_eq!(
            len,
            HEADER_SIZE as u32 + u32_at(24),
            "rx used len vs header len"
        );
    }
    if rx_used > 0 {
        assert!(
            interrupt.signalled(RX_QUEUE),
            "rx buffers used without an interrupt"
        );
    }
}
