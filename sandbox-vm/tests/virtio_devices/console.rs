//! virtio-console: guest output to the sink, host input into receive buffers, malformed
//! chains on both queues.

use std::io::{Cursor, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runvm_sandbox_vm::devices::virtio::console::{
    Console, MAX_PENDING_INPUT, VIRTIO_CONSOLE_F_EMERG_WRITE, VIRTIO_CONSOLE_F_SIZE,
};
use runvm_sandbox_vm::devices::virtio::{device_id, VirtioDevice};
use runvm_sandbox_vm::SharedBuffer;

use crate::driver::{Driver, RecordingInterrupt, Seg, MEM_SIZE, VRING_DESC_F_NEXT};

const RX: usize = 0;
const TX: usize = 1;

struct Rig {
    driver: Driver,
    device: Console,
    output: SharedBuffer,
    interrupt: Arc<RecordingInterrupt>,
}

fn unactivated(size: Option<(u16, u16)>) -> Rig {
    let output = SharedBuffer::new();
    let mut device = Console::new(Box::new(output.clone()), size);
    device.ack_features(device.offered_features());
    Rig {
        driver: Driver::new(&[64, 64]),
        device,
        output,
        interrupt: Arc::new(RecordingInterrupt::default()),
    }
}

fn rig() -> Rig {
    let mut rig = unactivated(Some((80, 25)));
    rig.activate();
    rig
}

impl Rig {
    fn activate(&mut self) {
        let activation = self.driver.activation(self.interrupt.clone());
        self.device.activate(activation).expect("activate");
    }

    /// Sends `text` on the transmit queue split over `pieces` buffers.
    fn send(&mut self, text: &[u8], pieces: usize) -> u16 {
        let step = text.len().div_ceil(pieces).max(1);
        let segs: Vec<Seg> = text
            .chunks(step)
            .map(|piece| {
                let addr = self.driver.alloc(piece.len() as u64);
                self.driver.write_bytes(addr, piece);
                Seg::read(addr, piece.len() as u32)
            })
            .collect();
        self.driver.add_chain(TX, &segs)
    }

    /// Offers one receive buffer of `len` bytes.
    fn offer(&mut self, len: u32) -> (u16, u64) {
        let addr = self.driver.alloc(u64::from(len));
        let head = self.driver.add_chain(RX, &[Seg::write(addr, len)]);
        (head, addr)
    }

    /// Output round trip still works.
    fn assert_still_serves(&mut self) {
        let before = self.output.contents().len();
        let used = self.driver.used(TX).len();
        self.send(b"still here", 1);
        self.device.queue_notify(TX as u16);
        assert_eq!(&self.output.contents()[before..], b"still here");
        assert_eq!(self.driver.used(TX).len(), used + 1);
    }
}

#[test]
fn features_and_config() {
    let rig = unactivated(Some((132, 43)));
    assert_eq!(rig.device.device_type(), device_id::CONSOLE);
    assert_eq!(rig.device.queue_max_sizes().len(), 2);
    let features = rig.device.offered_features();
    assert_ne!(features & (1 << VIRTIO_CONSOLE_F_SIZE), 0);
    assert_ne!(features & (1 << VIRTIO_CONSOLE_F_EMERG_WRITE), 0);
    assert_eq!(features & (1 << 1), 0, "no multiport");
    let mut config = [0u8; 8];
    rig.device.read_config(0, &mut config);
    assert_eq!(u16::from_le_bytes([config[0], config[1]]), 132);
    assert_eq!(u16::from_le_bytes([config[2], config[3]]), 43);
    let mut past = [0xff; 4];
    rig.device.read_config(12, &mut past);
    assert_eq!(past, [0; 4]);

    let plain = unactivated(None);
    assert_eq!(
        plain.device.offered_features() & (1 << VIRTIO_CONSOLE_F_SIZE),
        0
    );
}

#[test]
fn resize_updates_config_and_interrupts() {
    let rig = rig();
    rig.device.set_size(100, 50);
    let mut config = [0u8; 4];
    rig.device.read_config(0, &mut config);
    assert_eq!(config, [100, 0, 50, 0]);
    assert_eq!(rig.interrupt.config_interrupts(), 1);
}

#[test]
fn guest_output_reaches_the_sink() {
    let mut rig = rig();
    let head = rig.send(b"hello, virtio console\n", 3);
    rig.device.queue_notify(TX as u16);
    assert_eq!(rig.output.text(), "hello, virtio console\n");
    assert_eq!(rig.driver.used(TX), vec![(u32::from(head), 0)]);
    assert_eq!(rig.interrupt.queue_interrupts(), vec![TX as u16]);
    assert_eq!(rig.device.error_count(), 0);
}

#[test]
fn emergency_write_outputs_one_character() {
    let mut rig = rig();
    rig.device.write_config(8, &[b'!', 0, 0, 0]);
    rig.device.write_config(0, b"x");
    assert_eq!(rig.output.text(), "!");
}

#[test]
fn input_waits_for_receive_buffers_and_splits_across_them() {
    let mut rig = rig();
    assert_eq!(rig.device.push_input(b"abcdefghij"), 10);
    assert_eq!(rig.device.pending_input(), 10);
    assert!(rig.driver.used(RX).is_empty());
    let (first, a) = rig.offer(4);
    let (second, b) = rig.offer(16);
    rig.device.queue_notify(RX as u16);
    assert_eq!(
        rig.driver.used(RX),
        vec![(u32::from(first), 4), (u32::from(second), 6)]
    );
    assert_eq!(rig.driver.read_bytes(a, 4), b"abcd");
    assert_eq!(rig.driver.read_bytes(b, 6), b"efghij");
    assert_eq!(rig.device.pending_input(), 0);
    assert_eq!(rig.interrupt.queue_interrupts(), vec![RX as u16]);

    // Buffers already offered: input goes in at once.
    let (third, c) = rig.offer(8);
    assert_eq!(rig.device.input().push(b"xy"), 2);
    assert_eq!(rig.driver.used(RX).last(), Some(&(u32::from(third), 2)));
    assert_eq!(rig.driver.read_bytes(c, 2), b"xy");
}

#[test]
fn input_before_activation_is_delivered_at_activation() {
    let mut rig = unactivated(None);
    rig.device.push_input(b"early");
    let (head, addr) = rig.offer(64);
    rig.activate();
    assert_eq!(rig.driver.used(RX), vec![(u32::from(head), 5)]);
    assert_eq!(rig.driver.read_bytes(addr, 5), b"early");
}

#[test]
fn pending_input_is_bounded() {
    let rig = rig();
    let big = vec![b'z'; MAX_PENDING_INPUT + 100];
    assert_eq!(rig.device.push_input(&big), MAX_PENDING_INPUT);
    assert_eq!(rig.device.push_input(b"more"), 0);
    assert_eq!(rig.device.pending_input(), MAX_PENDING_INPUT);
}

#[test]
fn input_pump_thread_feeds_the_guest() {
    let mut rig = rig();
    // More than the pending cap, so the pump must wait for the guest to drain it.
    let text: Vec<u8> = (0..MAX_PENDING_INPUT + 5000)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let pump = rig
        .device
        .input()
        .pump_from(Box::new(Cursor::new(text.clone())))
        .expect("spawn pump");
    let mut received = Vec::new();
    let mut outstanding = None;
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.len() < text.len() {
        assert!(
            Instant::now() < deadline,
            "pump stalled at {}",
            received.len()
        );
        // One receive buffer at a time, as a slow guest would.
        let addr = *outstanding.get_or_insert_with(|| rig.offer(8192).1);
        rig.device.queue_notify(RX as u16);
        let used = rig.driver.used(RX);
        if used.len() == seen {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let (_, len) = used[seen];
        seen += 1;
        outstanding = None;
        received.extend(rig.driver.read_bytes(addr, len as usize));
    }
    assert_eq!(received, text);
    pump.join().expect("pump thread").expect("pump result");
}

#[test]
fn malformed_receive_chains_are_returned_empty() {
    let mut rig = rig();
    rig.device.push_input(b"data");
    // A receive buffer the device may not write.
    let addr = rig.driver.alloc(16);
    let ro = rig.driver.add_chain(RX, &[Seg::read(addr, 16)]);
    // One outside guest memory.
    let outside = rig
        .driver
        .add_chain(RX, &[Seg::write(MEM_SIZE + 0x1000, 16)]);
    // A good one afterwards gets the data.
    let (good, good_addr) = rig.offer(16);
    rig.device.queue_notify(RX as u16);
    assert_eq!(
        rig.driver.used(RX),
        vec![
            (u32::from(ro), 0),
            (u32::from(outside), 0),
            (u32::from(good), 4)
        ]
    );
    assert_eq!(rig.driver.read_bytes(good_addr, 4), b"data");
    assert_eq!(rig.device.error_count(), 2);
}

#[test]
fn malformed_transmit_chains_do_not_stop_output() {
    let mut rig = rig();
    // Outside memory and a 4 GiB length: rejected.
    let outside = rig.driver.add_chain(TX, &[Seg::read(MEM_SIZE - 8, 64)]);
    let huge = rig.driver.add_chain(TX, &[Seg::read(0x10_0000, u32::MAX)]);
    rig.device.queue_notify(TX as u16);
    assert_eq!(
        rig.driver.used(TX),
        vec![(u32::from(outside), 0), (u32::from(huge), 0)]
    );
    assert_eq!(rig.output.text(), "");
    assert_eq!(rig.device.error_count(), 2);
    rig.assert_still_serves();

    // A descriptor loop: the walk ends after a queue's worth of descriptors.
    let addr = rig.driver.alloc(2);
    rig.driver.write_bytes(addr, b"ab");
    rig.driver
        .write_desc(TX, 40, addr, 2, VRING_DESC_F_NEXT, 41);
    rig.driver
        .write_desc(TX, 41, addr, 2, VRING_DESC_F_NEXT, 40);
    rig.driver.push_avail(TX, 40);
    let before = rig.output.contents().len();
    rig.device.queue_notify(TX as u16);
    assert!(rig.output.contents().len() - before <= 2 * 64);
    rig.assert_still_serves();

    // A bad avail index and a head past the table.
    let idx = rig.driver.avail_idx(TX);
    rig.driver.set_avail_idx(TX, idx.wrapping_add(500));
    rig.device.queue_notify(TX as u16);
    rig.driver.set_avail_idx(TX, idx);
    rig.driver.push_avail(TX, 1000);
    rig.device.queue_notify(TX as u16);
    rig.assert_still_serves();
    rig.device.queue_notify(7);
}

/// A sink that always fails.
struct BrokenSink;

impl Write for BrokenSink {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("sink is gone"))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_sink_is_a_device_error_and_buffers_still_return() {
    let mut driver = Driver::new(&[64, 64]);
    let mut device = Console::new(Box::new(BrokenSink), None);
    let interrupt = Arc::new(RecordingInterrupt::default());
    device
        .activate(driver.activation(interrupt.clone()))
        .expect("activate");
    let addr = driver.alloc(3);
    let head = driver.add_chain(TX, &[Seg::read(addr, 3)]);
    device.queue_notify(TX as u16);
    assert_eq!(driver.used(TX), vec![(u32::from(head), 0)]);
    assert_eq!(device.error_count(), 1);
    assert!(device.last_error().expect("error").contains("sink is gone"));
}

#[test]
fn reset_stops_delivery() {
    let mut rig = rig();
    rig.device.reset();
    rig.offer(16);
    rig.device.push_input(b"later");
    rig.send(b"ignored", 1);
    rig.device.queue_notify(TX as u16);
    assert!(rig.driver.used(RX).is_empty());
    assert!(rig.driver.used(TX).is_empty());
    assert_eq!(rig.output.text(), "");
}
