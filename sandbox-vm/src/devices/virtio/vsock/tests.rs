//! The device driven the way a guest driver does: rings in real guest memory (virtio-queue's
//! mock split queues), packets written into guest buffers, notifications, and the used rings
//! read back; the host side is real Unix sockets in a temporary directory.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::packet::{op, shutdown, Header, HEADER_SIZE, HOST_CID, TYPE_STREAM};
use super::{Vsock, EVENT_QUEUE, RX_QUEUE, TX_QUEUE};
use crate::devices::virtio::{Activation, DeviceError, Interrupt, VirtioDevice};
use crate::dma;

const GUEST_CID: u64 = 3;
const RING_SIZE: u16 = 256;
const RAM_SIZE: usize = 0x100_0000;
const BUFFERS_START: u64 = 0x10_0000;
const WAIT: Duration = Duration::from_secs(5);

/// Remembers which queues were signalled.
#[derive(Default)]
struct RecordingInterrupt {
    queues: Mutex<Vec<u16>>,
}

impl Interrupt for RecordingInterrupt {
    fn notify_queue(&self, queue: u16) -> Result<(), DeviceError> {
        self.queues.lock().expect("test lock").push(queue);
        Ok(())
    }

    fn notify_config(&self) -> Result<(), DeviceError> {
        Ok(())
    }
}

impl RecordingInterrupt {
    fn signalled(&self, queue: u16) -> bool {
        self.queues.lock().expect("test lock").contains(&queue)
    }
}

/// One side of a split ring as the driver sees it.
struct Ring<'a> {
    mock: MockSplitQueue<'a, GuestMemoryMmap>,
    next_desc: u16,
    used_seen: u16,
}

impl<'a> Ring<'a> {
    fn new(memory: &'a GuestMemoryMmap, at: u64) -> Self {
        Ring {
            mock: MockSplitQueue::create(memory, GuestAddress(at), RING_SIZE),
            next_desc: 0,
            used_seen: 0,
        }
    }

    /// Publishes one chain made of `parts` (address, length, flags); returns its head index.
    fn publish(&mut self, parts: &[(u64, u32, u16)]) -> u16 {
        let count = parts.len() as u16;
        if self.next_desc + count > RING_SIZE {
            self.next_desc = 0;
        }
        let head = self.next_desc;
        let descriptors: Vec<RawDescriptor> = parts
            .iter()
            .enumerate()
            .map(|(index, &(addr, len, flags))| {
                let last = index + 1 == parts.len();
                let flags = if last {
                    flags
                } else {
                    flags | VRING_DESC_F_NEXT as u16
                };
                let next = if last { 0 } else { head + index as u16 + 1 };
                RawDescriptor::from(Descriptor::new(addr, len, flags, next))
            })
            .collect();
        self.mock
            .add_desc_chains(&descriptors, head)
            .expect("ring in guest memory");
        self.next_desc += count;
        head
    }

    /// The next used element (head index, length), if the device returned one.
    fn take_used(&mut self) -> Option<(u16, u32)> {
        if self.mock.used().idx().load() == self.used_seen {
            return None;
        }
        let element = self
            .mock
            .used()
            .ring()
            .ref_at(usize::from(self.used_seen % RING_SIZE))
            .expect("used ring in guest memory")
            .load();
        self.used_seen = self.used_seen.wrapping_add(1);
        Some((element.id() as u16, element.len()))
    }

    fn used_count(&self) -> u16 {
        self.mock.used().idx().load()
    }
}

/// The guest driver: memory, the rx and tx rings, and a bump allocator for buffers.
struct Guest<'a> {
    memory: &'a GuestMemoryMmap,
    rx: Ring<'a>,
    tx: Ring<'a>,
    next_buffer: u64,
    rx_buffers: HashMap<u16, u64>,
    device: Vsock,
    interrupt: Arc<RecordingInterrupt>,
}

fn ram() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM_SIZE)]).expect("16 MiB of RAM")
}

impl<'a> Guest<'a> {
    /// Activates `device` on fresh rings in `memory` and gives it `rx_buffers` buffers.
    fn start(memory: &'a GuestMemoryMmap, mut device: Vsock, rx_buffers: usize) -> Self {
        let rx = Ring::new(memory, 0);
        let tx = Ring::new(memory, 0x1_0000);
        let event = Ring::new(memory, 0x2_0000);
        let queues: Vec<Queue> = [&rx, &tx, &event]
            .iter()
            .map(|ring| ring.mock.create_queue().expect("valid queue"))
            .collect();
        let interrupt = Arc::new(RecordingInterrupt::default());
        device
            .activate(Activation {
                memory: dma::identity(memory),
                queues,
                interrupt: interrupt.clone(),
            })
            .expect("activate");
        let mut guest = Guest {
            memory,
            rx,
            tx,
            next_buffer: BUFFERS_START,
            rx_buffers: HashMap::new(),
            device,
            interrupt,
        };
        guest.post_rx(rx_buffers);
        guest
    }

    fn alloc(&mut self, len: u64) -> u64 {
        let at = self.next_buffer;
        self.next_buffer += len.next_multiple_of(64);
        assert!(
            self.next_buffer < RAM_SIZE as u64,
            "test ran out of buffers"
        );
        at
    }

    /// Gives the device `count` rx buffers of header + 4 KiB, header and data in one descriptor
    /// as Linux ≥ 6.2 does.
    fn post_rx(&mut self, count: usize) {
        for _ in 0..count {
            let len = HEADER_SIZE as u64 + 4096;
            let at = self.alloc(len);
            let head = self
                .rx
                .publish(&[(at, len as u32, VRING_DESC_F_WRITE as u16)]);
            self.rx_buffers.insert(head, at);
        }
        self.device.queue_notify(RX_QUEUE);
    }

    /// Sends a packet the way older drivers do: header descriptor, then a data descriptor.
    fn send(&mut self, header: Header, payload: &[u8]) {
        let header = Header {
            len: payload.len() as u32,
            ..header
        };
        let at = self.alloc(HEADER_SIZE as u64);
        self.memory
            .write_slice(&header.to_bytes(), GuestAddress(at))
            .expect("in RAM");
        if payload.is_empty() {
            self.tx.publish(&[(at, HEADER_SIZE as u32, 0)]);
        } else {
            let data = self.alloc(payload.len() as u64);
            self.memory
                .write_slice(payload, GuestAddress(data))
                .expect("in RAM");
            self.tx
                .publish(&[(at, HEADER_SIZE as u32, 0), (data, payload.len() as u32, 0)]);
        }
        self.notify_tx_and_wait();
    }

    /// Sends a chain made of raw parts (for malformed packets).
    fn send_raw(&mut self, parts: &[(u64, u32, u16)]) {
        self.tx.publish(parts);
        self.notify_tx_and_wait();
    }

    /// Notifies the tx queue and waits (2 s at most) until the worker, which serves tx on
    /// its own thread, has returned the chain: the tests then see its effects in order.
    fn notify_tx_and_wait(&mut self) {
        let before = self.tx.used_count();
        self.device.queue_notify(TX_QUEUE);
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.tx.used_count() == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Writes `header` (len untouched) into fresh memory and returns its address.
    fn place_header(&mut self, header: Header) -> u64 {
        let at = self.alloc(HEADER_SIZE as u64);
        self.memory
            .write_slice(&header.to_bytes(), GuestAddress(at))
            .expect("in RAM");
        at
    }

    /// The next packet the device put on the rx ring within `wait`.
    fn recv_within(&mut self, wait: Duration) -> Option<(Header, Vec<u8>)> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some((head, len)) = self.rx.take_used() {
                let at = self
                    .rx_buffers
                    .remove(&head)
                    .expect("a buffer the guest gave");
                assert!(len as usize >= HEADER_SIZE, "rx packet of {len} bytes");
                let mut raw = [0u8; HEADER_SIZE];
                self.memory
                    .read_slice(&mut raw, GuestAddress(at))
                    .expect("in RAM");
                let header = Header::from_bytes(&raw);
                assert_eq!(header.len as usize, len as usize - HEADER_SIZE);
                let mut payload = vec![0u8; header.len as usize];
                self.memory
                    .read_slice(&mut payload, GuestAddress(at + HEADER_SIZE as u64))
                    .expect("in RAM");
                // Keep the device supplied, as a driver refills its rx ring.
                self.post_rx(1);
                return Some((header, payload));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The next packet that is not credit bookkeeping.
    fn recv(&mut self) -> (Header, Vec<u8>) {
        loop {
            let (header, payload) = self
                .recv_within(WAIT)
                .expect("a packet from the device in time");
            if header.op != op::CREDIT_REQUEST && header.op != op::CREDIT_UPDATE {
                return (header, payload);
            }
        }
    }

    /// Collects RW payload on one connection until `len` bytes arrived.
    fn recv_stream(&mut self, len: usize) -> Vec<u8> {
        let mut data = Vec::new();
        while data.len() < len {
            let (header, payload) = self.recv();
            assert_eq!(header.op, op::RW, "expected data, got {header:?}");
            data.extend(payload);
        }
        data
    }
}

/// A header from the guest at `guest_port` to host port `host_port`.
fn from_guest(guest_port: u32, host_port: u32, op_code: u16) -> Header {
    Header {
        src_cid: GUEST_CID,
        dst_cid: HOST_CID,
        src_port: guest_port,
        dst_port: host_port,
        type_: TYPE_STREAM,
        op: op_code,
        buf_alloc: 64 * 1024,
        ..Header::default()
    }
}

fn socket_path(dir: &Path) -> PathBuf {
    dir.join("vsock.sock")
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// A host client connects to guest port `guest_port`; the guest accepts with a window of
/// `buf_alloc`. Returns the client and the host port the device chose.
fn host_connect(
    guest: &mut Guest<'_>,
    uds: &Path,
    guest_port: u32,
    buf_alloc: u32,
) -> (UnixStream, u32) {
    let mut client = UnixStream::connect(uds).expect("connect to the device's socket");
    client.set_read_timeout(Some(WAIT)).expect("timeout");
    client
        .write_all(format!("CONNECT {guest_port}\n").as_bytes())
        .expect("CONNECT");
    let (request, _) = guest.recv();
    assert_eq!(request.op, op::REQUEST, "{request:?}");
    assert_eq!(request.src_cid, HOST_CID);
    assert_eq!(request.dst_cid, GUEST_CID);
    assert_eq!(request.dst_port, guest_port);
    assert_eq!(request.type_, TYPE_STREAM);
    let host_port = request.src_port;
    guest.send(
        Header {
            buf_alloc,
            ..from_guest(guest_port, host_port, op::RESPONSE)
        },
        &[],
    );
    let mut line = String::new();
    // One byte at a time, so nothing after the line is consumed by a buffer.
    let mut byte = [0u8; 1];
    while !line.ends_with('\n') {
        client.read_exact(&mut byte).expect("the OK line");
        line.push(char::from(byte[0]));
    }
    assert_eq!(line, format!("OK {host_port}\n"));
    (client, host_port)
}

#[test]
fn host_connect_reaches_the_guest_and_relays_both_ways() {
    let dir = temp_dir();
    let uds = socket_path(dir.path());
    let memory = ram();
    let mut guest = Guest::start(&memory, Vsock::new(GUEST_CID, &uds).expect("device"), 8);

    let (mut client, host_port) = host_connect(&mut guest, &uds, 1234, 64 * 1024);
    assert!(host_port >= 1 << 30, "host port {host_port}");

    client.write_all(b"hello from the host").expect("write");
    assert_eq!(guest.recv_stream(19), b"hello from the host");

    guest.send(from_guest(1234, host_port, op::RW), b"hello from the guest");
    let mut echoed = [0u8; 20];
    client.read_exact(&mut echoed).expect("relayed bytes");
    assert_eq!(&echoed, b"hello from the guest");
    // The device's forwarded count is exactly the guest's bytes (the OK line is not counted).
    guest.send(from_guest(1234, host_port, op::CREDIT_REQUEST), &[]);
    let (credit, _) = guest.recv_within(WAIT).expect("a credit update");
    assert_eq!(credit.op, op::CREDIT_UPDATE, "{credit:?}");
    assert_eq!(credit.fwd_cnt, 20);
    assert_eq!(credit.buf_alloc, super::connection::HOST_BUF_ALLOC);

    assert!(guest.interrupt.signalled(RX_QUEUE));
    assert!(guest.interrupt.signalled(TX_QUEUE));

    // The host closes: the guest hears SHUTDOWN and answers RST.
    drop(client);
    let (closing, _) = guest.recv();
    assert_eq!(closing.op, op::SHUTDOWN, "{closing:?}");
    assert_eq!(closing.flags, shutdown::BOTH);
    assert_eq!((closing.src_port, closing.dst_port), (host_port, 1234));
    guest.send(from_guest(1234, host_port, op::RST), &[]);
    let worker = guest.device.worker().expect("active");
    assert!(worker.muxer().connection(host_port, 1234).is_none());
}

#[test]
fn guest_connect_reaches_the_port_socket_and_a_missing_one_is_refused() {
    let dir = temp_dir();
    let uds = socket_path(dir.path());
    let port_listener =
        UnixListener::bind(dir.path().join("vsock.sock_5000")).expect("bind the port socket");
    let memory = ram();
    let mut guest = Guest::start(&memory, Vsock::new(GUEST_CID, &uds).expect("device"), 8);

    guest.send(from_guest(777, 5000, op::REQUEST), &[]);
    let (response, _) = guest.recv();
    assert_eq!(response.op, op::RESPONSE, "{response:?}");
    assert_eq!((response.src_port, response.dst_port), (5000, 777));
    assert_eq!((response.src_cid, response.dst_cid), (HOST_CID, GUEST_CID));
    let (mut host, _) = port_listener.accept().expect("the device connected");
    host.set_read_timeout(Some(WAIT)).expect("timeout");

    guest.send(from_guest(777, 5000, op::RW), b"ping");
    let mut ping = [0u8; 4];
    host.read_exact(&mut ping).expect("relayed to the host");
    assert_eq!(&ping, b"ping");
    host.write_all(b"pong").expect("write");
    assert_eq!(guest.recv_stream(4), b"pong");

    // Nothing listens on port 5001.
    guest.send(from_guest(778, 5001, op::REQUEST), &[]);
    let (refused, _) = guest.recv();
    assert_eq!(refused.op, op::RST, "{refused:?}");
    assert_eq!((refused.src_port, refused.dst_port), (5001, 778));

    // A full shutdown from the guest closes the host socket and is answered with RST.
    guest.send(
        Header {
            flags: shutdown::BOTH,
            ..from_guest(777, 5000, op::SHUTDOWN)
        },
        &[],
    );
    let (closed, _) = guest.recv();
    assert_eq!(closed.op, op::RST, "{closed:?}");
    let mut rest = Vec::new();
    host.read_to_end(&mut rest).expect("EOF");
    assert!(rest.is_empty());
}

#[test]
fn host_reads_stop_at_the_guest_credit() {
    let dir = temp_dir();
    let uds = socket_path(dir.path());
    let memory = ram();
    let mut guest = Guest::start(&memory, Vsock::new(GUEST_CID, &uds).expect("device"), 8);
    let (mut client, host_port) = host_connect(&mut guest, &uds, 80, 16);

    let sent: Vec<u8> = (0..100).collect();
    client.write_all(&sent).expect("write");
    assert_eq!(guest.recv_stream(16), &sent[..16]);

    // The window is full: no more data, and nothing was read from the socket beyond it.
    let deadline = Instant::now() + Duration::from_millis(300);
    while let Some((header, _)) =
        guest.recv_within(deadline.saturating_duration_since(Instant::now()))
    {
        assert_ne!(header.op, op::RW, "data beyond the guest's credit");
        if Instant::now() >= deadline {
            break;
        }
    }
    {
        let worker = guest.device.worker().expect("active");
        let muxer = worker.muxer();
        let conn = muxer.connection(host_port, 80).expect("still open");
        assert_eq!(conn.buffered_for_guest(), 0);
    }

    // The guest consumed the 16 bytes: exactly 16 more come.
    guest.send(
        Header {
            buf_alloc: 16,
            fwd_cnt: 16,
            ..from_guest(80, host_port, op::CREDIT_UPDATE)
        },
        &[],
    );
    assert_eq!(guest.recv_stream(16), &sent[16..32]);
}

#[test]
fn a_guest_sending_beyond_its_credit_is_reset() {
    let dir = temp_dir();
    let uds = socket_path(dir.path());
    // The host end accepts but never reads, so the device has to hold what the guest sends.
    let port_listener = UnixListener::bind(dir.path().join("vsock.sock_6000")).expect("bind");
    let memory = ram();
    let mut guest = Guest::start(&memory, Vsock::new(GUEST_CID, &uds).expect("device"), 8);
    guest.send(from_guest(700, 6000, op::REQUEST), &[]);
    let (response, _) = guest.recv();
    assert_eq!(response.op, op::RESPONSE, "{response:?}");
    let (_host, _) = port_listener.accept().expect("accept");

    // 2 MiB, far beyond the 256 KiB window plus what the socket itself buffers.
    let chunk = vec![0x5a_u8; 64 * 1024];
    for _ in 0..32 {
        guest.send(from_guest(700, 6000, op::RW), &chunk);
    }
    let (reset, _) = guest.recv();
    assert_eq!(reset.op, op::RST, "{reset:?}");
    assert_eq!((reset.src_port, reset.dst_port), (6000, 700));
    let worker = guest.device.worker().expect("active");
    assert!(worker.muxer().connection(6000, 700).is_none());
}

#[test]
fn malformed_packets_are_survived() {
    let dir = temp_dir();
    let uds = socket_path(dir.path());
    let memory = ram();
    let mut guest = Guest::start(&memory, Vsock::new(GUEST_CID, &uds).expect("device"), 16);
    let (mut client, host_port) = host_connect(&mut guest, &uds, 22, 64 * 1024);
    let tx_used_before = guest.tx.used_count();

    // A header descriptor shorter than a header.
    let short = guest.alloc(HEADER_SIZE as u64);
    guest.send_raw(&[(short, 20, 0)]);
    // A descriptor far outside guest memory.
    guest.send_raw(&[(0xffff_0000_0000, HEADER_SIZE as u32, 0)]);
    // A device-writable descriptor where the device must read.
    let writable = guest.place_header(from_guest(22, host_port, op::RW));
    guest.send_raw(&[(writable, HEADER_SIZE as u32, VRING_DESC_F_WRITE as u16)]);
    // len far beyond any packet.
    let oversized = guest.place_header(Header {
        len: 16 << 20,
        ..from_guest(22, host_port, op::RW)
    });
    let data = guest.alloc(64);
    guest.send_raw(&[(oversized, HEADER_SIZE as u32, 0), (data, 64, 0)]);
    // len larger than the data the chain holds.
    let short_data = guest.place_header(Header {
        len: 100,
        ..from_guest(22, host_port, op::RW)
    });
    guest.send_raw(&[(short_data, HEADER_SIZE as u32, 0), (data, 10, 0)]);
    // Addressed to a CID that is not the host: dropped without an answer.
    guest.send(
        Header {
            dst_cid: 7,
            ..from_guest(22, host_port, op::RW)
        },
        b"lost",
    );
    // A seqpacket REQUEST and an unknown op: answered with RST.
    guest.send(
        Header {
            type_: 2,
            ..from_guest(900, 5000, op::REQUEST)
        },
        &[],
    );
    guest.send(from_guest(901, 5000, 99), &[]);

    assert_eq!(
        guest.tx.used_count().wrapping_sub(tx_used_before),
        8,
        "every chain was returned"
    );
    let mut reset_ports = Vec::new();
    for _ in 0..2 {
        let (rst, _) = guest.recv();
        assert_eq!(rst.op, op::RST, "{rst:?}");
        reset_ports.push(rst.dst_port);
    }
    reset_ports.sort_unstable();
    assert_eq!(reset_ports, [900, 901]);

    // The good connection still works both ways, and none of the bad payload reached it.
    guest.send(from_guest(22, host_port, op::RW), b"still here");
    let mut relayed = [0u8; 10];
    client.read_exact(&mut relayed).expect("relayed");
    assert_eq!(&relayed, b"still here");
    client.write_all(b"and here").expect("write");
    assert_eq!(guest.recv_stream(8), b"and here");
}

#[test]
fn a_guest_that_never_answers_gets_rst_and_the_client_is_closed() {
    let dir = temp_dir();
    let uds = socket_path(dir.path());
    let memory = ram();
    let mut guest = Guest::start(&memory, Vsock::new(GUEST_CID, &uds).expect("device"), 8);
    let mut client = UnixStream::connect(&uds).expect("connect");
    client.set_read_timeout(Some(WAIT)).expect("timeout");
    client.write_all(b"CONNECT 44\n").expect("CONNECT");
    let (request, _) = guest.recv();
    assert_eq!(request.op, op::REQUEST, "{request:?}");

    // No RESPONSE: after the handshake timeout the request is withdrawn.
    let (withdrawn, _) = guest.recv();
    assert_eq!(withdrawn.op, op::RST, "{withdrawn:?}");
    assert_eq!(
        (withdrawn.src_port, withdrawn.dst_port),
        (request.src_port, 44)
    );
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("EOF");
    assert!(rest.is_empty(), "no OK line: {rest:?}");

    // A client that never finishes its line is closed too; one that sends garbage at once.
    let mut silent = UnixStream::connect(&uds).expect("connect");
    silent.set_read_timeout(Some(WAIT)).expect("timeout");
    silent.write_all(b"CONNE").expect("partial line");
    let mut garbage = UnixStream::connect(&uds).expect("connect");
    garbage.set_read_timeout(Some(WAIT)).expect("timeout");
    garbage.write_all(b"HELLO 1\n").expect("bad line");
    for client in [&mut garbage, &mut silent] {
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).expect("EOF");
        assert!(rest.is_empty());
    }
    // Neither reached the guest.
    assert!(guest.recv_within(Duration::from_millis(100)).is_none());
}

#[test]
fn reset_closes_connections_and_drop_removes_the_socket() {
    let dir = temp_dir();
    let uds = socket_path(dir.path());
    let memory = ram();
    let mut guest = Guest::start(&memory, Vsock::new(GUEST_CID, &uds).expect("device"), 8);
    let (mut client, _) = host_connect(&mut guest, &uds, 7, 64 * 1024);

    guest.device.reset();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("EOF after reset");
    assert!(rest.is_empty());
    assert!(uds.exists(), "the listener outlives a reset");

    drop(guest);
    assert!(!uds.exists(), "dropping the device removes its socket");
}

#[test]
fn config_space_holds_the_guest_cid_and_bad_cids_are_refused() {
    let dir = temp_dir();
    let device = Vsock::new(0x1_2345_6789 & 0xffff_ffff, socket_path(dir.path())).expect("device");
    let mut cid = [0xaau8; 8];
    device.read_config(0, &mut cid);
    assert_eq!(u64::from_le_bytes(cid), 0x2345_6789);
    let mut tail = [0xaau8; 8];
    device.read_config(4, &mut tail);
    assert_eq!(tail, [0; 8]);
    let mut far = [0xaau8; 2];
    device.read_config(u64::MAX, &mut far);
    assert_eq!(far, [0; 2]);
    assert_eq!(device.queue_max_sizes().len(), 3);
    assert_eq!(EVENT_QUEUE, 2);

    for bad in [0, 1, HOST_CID, u64::from(u32::MAX), 1 << 40] {
        assert!(Vsock::new(bad, dir.path().join(format!("bad{bad}"))).is_err());
    }
    // The path is taken by the first device.
    assert!(Vsock::new(5, socket_path(dir.path())).is_err());
}
