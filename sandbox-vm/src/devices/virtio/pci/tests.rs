//! The transport's state machine driven the way a driver drives it, through BAR 0 and
//! configuration space, against a device that records what it is told.

use std::sync::{Arc, Mutex};

use virtio_queue::QueueT;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::*;
use crate::devices::pci::config::{BAR0, COMMAND, COMMAND_MEMORY};
use crate::devices::pci::msix::{MSIX_ENABLE, MSIX_FUNCTION_MASK};
use crate::devices::virtio::{DeviceError, Interrupt};

const FEATURE_X: u64 = 1 << 3;

#[derive(Default)]
struct Log {
    acked: Option<u64>,
    /// (size, ready, desc) of each queue at activation.
    activated: Option<Vec<(u16, bool, u64)>>,
    interrupt: Option<Arc<dyn Interrupt>>,
    notified: Vec<u16>,
    resets: usize,
    config_writes: Vec<(u64, Vec<u8>)>,
}

struct Recorder {
    log: Arc<Mutex<Log>>,
    sizes: Vec<u16>,
    fail_activation: bool,
}

impl VirtioDevice for Recorder {
    fn device_type(&self) -> u32 {
        device_id::RNG
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.sizes
    }
    fn offered_features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | FEATURE_X
    }
    fn ack_features(&mut self, features: u64) {
        self.log.lock().expect("log").acked = Some(features);
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset == 0 && !data.is_empty() {
            data[0] = 0x5a;
        }
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.log
            .lock()
            .expect("log")
            .config_writes
            .push((offset, data.to_vec()));
    }
    fn activate(&mut self, activation: Activation) -> Result<(), DeviceError> {
        if self.fail_activation {
            return Err(DeviceError::Activate("refused by test".to_string()));
        }
        let mut log = self.log.lock().expect("log");
        log.activated = Some(
            activation
                .queues
                .iter()
                .map(|q| (q.size(), q.ready(), q.desc_table()))
                .collect(),
        );
        log.interrupt = Some(activation.interrupt);
        Ok(())
    }
    fn queue_notify(&mut self, queue: u16) {
        self.log.lock().expect("log").notified.push(queue);
    }
    fn reset(&mut self) {
        self.log.lock().expect("log").resets += 1;
    }
}

struct Harness {
    dev: VirtioPciDevice,
    log: Arc<Mutex<Log>>,
}

fn harness_with(sizes: Vec<u16>, fail_activation: bool) -> Harness {
    let log = Arc::new(Mutex::new(Log::default()));
    let memory =
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).expect("1 MiB");
    let device = Recorder {
        log: Arc::clone(&log),
        sizes,
        fail_activation,
    };
    let dev = VirtioPciDevice::new(Box::new(device), memory, None).expect("transport");
    Harness { dev, log }
}

fn harness() -> Harness {
    harness_with(vec![64, 16], false)
}

impl Harness {
    fn w8(&mut self, offset: u64, v: u8) {
        self.dev.bar_write(0, offset, &[v]);
    }
    fn w16(&mut self, offset: u64, v: u16) {
        self.dev.bar_write(0, offset, &v.to_le_bytes());
    }
    fn w32(&mut self, offset: u64, v: u32) {
        self.dev.bar_write(0, offset, &v.to_le_bytes());
    }
    fn r8(&mut self, offset: u64) -> u8 {
        let mut b = [0u8; 1];
        self.dev.bar_read(0, offset, &mut b);
        b[0]
    }
    fn r16(&mut self, offset: u64) -> u16 {
        let mut b = [0u8; 2];
        self.dev.bar_read(0, offset, &mut b);
        u16::from_le_bytes(b)
    }
    fn r32(&mut self, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        self.dev.bar_read(0, offset, &mut b);
        u32::from_le_bytes(b)
    }
    fn status(&mut self) -> u8 {
        self.r8(20)
    }
    /// ACKNOWLEDGE, DRIVER, the features, FEATURES_OK: returns the status read back.
    fn negotiate(&mut self, features: u64) -> u8 {
        self.w8(20, STATUS_ACKNOWLEDGE);
        self.w8(20, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        self.w32(8, 0);
        self.w32(12, features as u32);
        self.w32(8, 1);
        self.w32(12, (features >> 32) as u32);
        self.w8(20, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
        self.status()
    }
    fn setup_queue(&mut self, index: u16, size: u16, base: u64) {
        self.w16(22, index);
        self.w16(24, size);
        self.w32(32, base as u32);
        self.w32(36, (base >> 32) as u32);
        self.w32(40, (base + 0x400) as u32);
        self.w32(44, 0);
        self.w32(48, (base + 0x800) as u32);
        self.w32(52, 0);
        self.w16(28, 1);
    }
    fn driver_ok(&mut self) -> u8 {
        self.w8(
            20,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
        );
        self.status()
    }
    fn errors(&self) -> u64 {
        self.dev.guest_errors().count
    }
}

#[test]
fn identity_bar_and_capabilities_are_those_of_a_modern_virtio_device() {
    let mut h = harness();
    let mut word = [0u8; 4];
    h.dev.config_read(0, &mut word);
    assert_eq!(u32::from_le_bytes(word), 0x1044_1af4, "1af4:1040+4 (rng)");
    h.dev.config_read(8, &mut word);
    assert_eq!(word[0], 1, "revision 1: modern only");
    h.dev.config_write(BAR0, &u32::MAX.to_le_bytes());
    h.dev.config_read(BAR0, &mut word);
    assert_eq!(u32::from_le_bytes(word), !(BAR_SIZE as u32 - 1));
    let caps = h.dev.config().capabilities();
    let ids: Vec<u8> = caps.iter().map(|c| c.1).collect();
    assert_eq!(ids, [0x11, 0x09, 0x09, 0x09, 0x09, 0x09]);
    // Each vendor capability: cfg_type at +3, bar at +4, offset at +8, length at +12.
    let config = h.dev.config();
    let layout: Vec<(u8, u8, u32, u32)> = caps[1..]
        .iter()
        .map(|(at, _)| {
            let mut cap = [0u8; 16];
            for (i, b) in cap.iter_mut().enumerate() {
                let mut one = [0u8; 1];
                config.read(at + i, &mut one);
                *b = one[0];
            }
            (
                cap[3],
                cap[4],
                u32::from_le_bytes([cap[8], cap[9], cap[10], cap[11]]),
                u32::from_le_bytes([cap[12], cap[13], cap[14], cap[15]]),
            )
        })
        .collect();
    assert_eq!(
        layout,
        [
            (CAP_COMMON, 0, 0, 56),
            (CAP_ISR, 0, 0x1000, 1),
            (CAP_DEVICE, 0, 0x2000, 0x1000),
            (CAP_NOTIFY, 0, 0x3000, 8),
            (CAP_PCI_CFG, 0, 0, 0),
        ]
    );
    let notify_cap = caps[4].0;
    assert_eq!(config.read_u32(notify_cap + 16), NOTIFY_MULTIPLIER);
    // MSI-X: 3 vectors (2 queues + config), table and PBA in BAR 0.
    let msix_cap = caps[0].0;
    assert_eq!(config.read_u16(msix_cap + 2) & 0x7ff, 2);
    assert_eq!(config.read_u32(msix_cap + 4), MSIX_TABLE_OFFSET as u32);
    assert_eq!(config.read_u32(msix_cap + 8), MSIX_PBA_OFFSET as u32);
}

#[test]
fn feature_negotiation_accepts_only_offered_features_with_version_1() {
    let mut h = harness();
    assert_eq!(h.r16(18), 2, "num_queues");
    h.w32(0, 1);
    assert_eq!(h.r32(4), 1, "VERSION_1 is bit 32");
    h.w32(0, 0);
    assert_eq!(h.r32(4), FEATURE_X as u32);
    h.w32(0, 7);
    assert_eq!(h.r32(4), 0, "no feature word 7");

    let status = h.negotiate(VIRTIO_F_VERSION_1 | 1 << 5);
    assert_eq!(status & STATUS_FEATURES_OK, 0, "bit 5 was never offered");
    assert_eq!(h.log.lock().expect("log").acked, None);

    h.w8(20, 0);
    let status = h.negotiate(FEATURE_X);
    assert_eq!(status & STATUS_FEATURES_OK, 0, "VERSION_1 is required");

    h.w8(20, 0);
    let status = h.negotiate(VIRTIO_F_VERSION_1 | FEATURE_X);
    assert_ne!(status & STATUS_FEATURES_OK, 0);
    assert_eq!(
        h.log.lock().expect("log").acked,
        Some(VIRTIO_F_VERSION_1 | FEATURE_X)
    );
    // After FEATURES_OK the features are frozen.
    let before = h.errors();
    h.w32(8, 0);
    h.w32(12, 0);
    assert_eq!(h.r32(12), FEATURE_X as u32);
    assert!(h.errors() > before);
}

#[test]
fn queues_set_up_by_the_driver_reach_the_device_at_driver_ok() {
    let mut h = harness();
    h.negotiate(VIRTIO_F_VERSION_1);
    h.setup_queue(0, 32, 0x1_0000);
    assert_eq!(h.r16(24), 32);
    assert_eq!(h.r16(30), 0, "queue_notify_off of queue 0");
    h.w16(22, 1);
    assert_eq!(h.r16(24), 16, "queue 1 keeps its maximum size");
    assert_eq!(h.r16(28), 0, "queue 1 not enabled");
    assert_eq!(h.r16(30), 1);
    // Before DRIVER_OK a notification goes nowhere.
    h.w16(NOTIFY_OFFSET, 0);
    assert!(h.log.lock().expect("log").notified.is_empty());

    let status = h.driver_ok();
    assert_eq!(
        status & (STATUS_DRIVER_OK | STATUS_NEEDS_RESET),
        STATUS_DRIVER_OK
    );
    assert!(h.dev.is_activated());
    assert_eq!(
        h.log.lock().expect("log").activated,
        Some(vec![(32, true, 0x1_0000), (16, false, 0)])
    );
    h.w16(NOTIFY_OFFSET + 4, 1);
    h.w16(NOTIFY_OFFSET, 0);
    assert_eq!(h.log.lock().expect("log").notified, vec![1, 0]);
    // Queue registers are frozen once the device runs.
    h.w16(22, 0);
    h.w16(24, 8);
    assert_eq!(h.r16(24), 32);
    // Device configuration space passes through.
    assert_eq!(h.r8(DEVICE_CFG_OFFSET), 0x5a);
    h.w16(DEVICE_CFG_OFFSET + 2, 0x1234);
    assert_eq!(
        h.log.lock().expect("log").config_writes,
        vec![(2, vec![0x34, 0x12])]
    );
}

#[test]
fn reset_stops_the_device_and_forgets_the_driver_state() {
    let mut h = harness();
    h.negotiate(VIRTIO_F_VERSION_1);
    h.setup_queue(0, 32, 0x1_0000);
    h.w16(26, 0);
    h.driver_ok();
    h.w8(20, 0);
    assert_eq!(h.status(), 0);
    assert!(!h.dev.is_activated());
    assert_eq!(h.log.lock().expect("log").resets, 1);
    h.w16(22, 0);
    assert_eq!(h.r16(24), 64, "size back to the maximum");
    assert_eq!(h.r16(28), 0, "disabled");
    assert_eq!(h.r32(32), 0, "address forgotten");
    assert_eq!(h.r16(26), NO_VECTOR);
    h.w32(8, 0);
    assert_eq!(h.r32(12), 0, "driver features forgotten");
    // A notification after reset does not reach the device.
    h.w16(NOTIFY_OFFSET, 0);
    assert!(h.log.lock().expect("log").notified.is_empty());
    // Resetting an idle device does not bother it.
    h.w8(20, 0);
    assert_eq!(h.log.lock().expect("log").resets, 1);
}

#[test]
fn invalid_queue_values_are_ignored_and_flagged() {
    let mut h = harness();
    h.negotiate(VIRTIO_F_VERSION_1);
    h.w16(22, 0);
    for bad in [0u16, 3, 128, u16::MAX] {
        let before = h.errors();
        h.w16(24, bad);
        assert_eq!(h.r16(24), 64, "size {bad} refused");
        assert_eq!(h.errors(), before + 1);
    }
    h.w16(28, 0);
    assert_eq!(h.r16(28), 0, "enable accepts only 1");
    h.w16(26, 3);
    assert_eq!(
        h.r16(26),
        NO_VECTOR,
        "vector 3 does not exist (3 vectors: 0..=2)"
    );
    h.w16(26, 2);
    assert_eq!(h.r16(26), 2);
    h.w16(16, 500);
    assert_eq!(h.r16(16), NO_VECTOR);
    // An absent queue reads as size 0 and ignores writes.
    h.w16(22, 9);
    assert_eq!(h.r16(24), 0);
    h.w16(24, 8);
    h.w16(28, 1);
    assert_eq!(h.r16(28), 0);
    assert_eq!(h.r16(26), NO_VECTOR);
    // Wrong widths and offsets do nothing.
    h.w16(22, 0);
    h.w32(24, 16);
    h.w8(24, 16);
    h.w16(25, 16);
    assert_eq!(h.r16(24), 64);
    assert_eq!(
        h.r32(22),
        0,
        "a dword across queue_select/queue_size reads 0"
    );
    h.dev.bar_write(0, 24, &[0; 16]);
    h.dev.bar_write(3, 24, &[16, 0]);
    assert_eq!(h.r16(24), 64);
    // Addresses cannot change once the queue is enabled.
    h.setup_queue(0, 16, 0x2_0000);
    h.w32(32, 0x3_0000);
    assert_eq!(h.r32(32), 0x2_0000);
    // Notifications at odd offsets, widths or queues are dropped.
    h.driver_ok();
    let before = h.errors();
    h.w16(NOTIFY_OFFSET + 2, 0);
    h.w8(NOTIFY_OFFSET, 0);
    h.w16(NOTIFY_OFFSET + 8, 2);
    h.w16(NOTIFY_OFFSET + 0xffc, 0);
    assert!(h.log.lock().expect("log").notified.is_empty());
    assert_eq!(h.errors(), before + 4);
    // Reads past any region and writes to read-only ones are harmless.
    assert_eq!(h.r32(0x7ff0), 0);
    assert_eq!(h.r32(BAR_SIZE + 0x10), 0);
    h.w32(MSIX_PBA_OFFSET, u32::MAX);
    assert_eq!(h.r32(MSIX_PBA_OFFSET), 0);
}

#[test]
fn status_changes_out_of_order_are_refused() {
    let mut h = harness();
    h.w8(20, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK);
    assert_eq!(
        h.status() & STATUS_DRIVER_OK,
        0,
        "DRIVER_OK before FEATURES_OK"
    );
    assert!(!h.dev.is_activated());
    h.negotiate(VIRTIO_F_VERSION_1);
    h.w8(20, STATUS_ACKNOWLEDGE);
    assert_eq!(
        h.status(),
        STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        "bits are only cleared by a reset"
    );
    h.w8(
        20,
        STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_NEEDS_RESET,
    );
    assert_eq!(
        h.status() & STATUS_NEEDS_RESET,
        0,
        "NEEDS_RESET is the device's bit"
    );
}

#[test]
fn bad_rings_or_a_failing_device_end_in_needs_reset() {
    let mut h = harness();
    h.negotiate(VIRTIO_F_VERSION_1);
    // Rings past the end of the 1 MiB of guest RAM.
    h.setup_queue(0, 64, 0xf_ff00);
    let status = h.driver_ok();
    assert_ne!(status & STATUS_NEEDS_RESET, 0);
    assert!(!h.dev.is_activated());
    assert!(h.log.lock().expect("log").activated.is_none());
    assert!(h
        .dev
        .guest_errors()
        .last
        .as_deref()
        .is_some_and(|e| e.contains("queue 0")));
    // A reset clears it.
    h.w8(20, 0);
    assert_eq!(h.status(), 0);
    // A misaligned descriptor table.
    h.negotiate(VIRTIO_F_VERSION_1);
    h.setup_queue(0, 64, 0x1_0008);
    assert_ne!(h.driver_ok() & STATUS_NEEDS_RESET, 0);

    let mut h = harness_with(vec![8], true);
    h.negotiate(VIRTIO_F_VERSION_1);
    h.setup_queue(0, 8, 0x1_0000);
    assert_ne!(h.driver_ok() & STATUS_NEEDS_RESET, 0);
}

#[test]
fn interrupts_use_msix_vectors_or_fall_back_to_the_isr() {
    let mut h = harness();
    h.negotiate(VIRTIO_F_VERSION_1);
    h.setup_queue(0, 32, 0x1_0000);
    h.w16(26, 1);
    h.driver_ok();
    let interrupt = h
        .log
        .lock()
        .expect("log")
        .interrupt
        .clone()
        .expect("activated");
    // MSI-X off: the ISR says why, and reading it clears it.
    interrupt.notify_queue(0).expect("notify");
    interrupt.notify_config().expect("config");
    assert_eq!(h.r8(ISR_OFFSET), 3);
    assert_eq!(h.r8(ISR_OFFSET), 0);
    assert_eq!(h.r8(21), 1, "config generation moved");
    assert!(interrupt.notify_queue(5).is_err(), "no queue 5");
    // MSI-X on, function masked: vector 1 pends in the PBA.
    let msix_cap = h.dev.config().capabilities()[0].0;
    let control = MSIX_ENABLE | MSIX_FUNCTION_MASK;
    h.dev.config_write(msix_cap + 2, &control.to_le_bytes());
    h.dev.config_write(COMMAND, &COMMAND_MEMORY.to_le_bytes());
    interrupt.notify_queue(0).expect("notify");
    assert_eq!(h.r8(ISR_OFFSET), 0, "ISR unused with MSI-X");
    assert_eq!(h.r32(MSIX_PBA_OFFSET), 0b10);
    // Program and unmask vector 1, unmask the function: the pending message goes out.
    h.w32(MSIX_TABLE_OFFSET + 16, 0xfee0_0000);
    h.w32(MSIX_TABLE_OFFSET + 24, 0x31);
    h.w32(MSIX_TABLE_OFFSET + 28, 0);
    assert_eq!(h.r32(MSIX_TABLE_OFFSET + 24), 0x31);
    h.dev.config_write(msix_cap + 2, &MSIX_ENABLE.to_le_bytes());
    assert_eq!(h.r32(MSIX_PBA_OFFSET), 0);
}

#[test]
fn the_pci_cfg_capability_reaches_bar_0_through_configuration_space() {
    let mut h = harness();
    let cap = h.dev.config().capabilities()[5].0;
    let data = cap + PCI_CFG_DATA;
    // Nothing selected yet (length 0): reads 0, writes are flagged.
    let mut word = [0u8; 4];
    h.dev.config_read(data, &mut word);
    assert_eq!(word, [0; 4]);
    let before = h.errors();
    h.dev.config_write(data, &[1, 0, 0, 0]);
    assert_eq!(h.errors(), before + 1);
    // Select device_status (1 byte at BAR offset 20) and write ACKNOWLEDGE through it.
    h.dev
        .config_write(cap + PCI_CFG_OFFSET, &20u32.to_le_bytes());
    h.dev
        .config_write(cap + PCI_CFG_LENGTH, &1u32.to_le_bytes());
    h.dev.config_write(data, &[STATUS_ACKNOWLEDGE, 0, 0, 0]);
    assert_eq!(h.status(), STATUS_ACKNOWLEDGE);
    h.dev.config_read(data, &mut word);
    assert_eq!(word[0], STATUS_ACKNOWLEDGE);
    // num_queues (2 bytes at 18) reads through the window too.
    h.dev
        .config_write(cap + PCI_CFG_OFFSET, &18u32.to_le_bytes());
    h.dev
        .config_write(cap + PCI_CFG_LENGTH, &2u32.to_le_bytes());
    h.dev.config_read(data, &mut word);
    assert_eq!(u16::from_le_bytes([word[0], word[1]]), 2);
    // A misaligned or oversized selection reads 0; another BAR is refused.
    h.dev
        .config_write(cap + PCI_CFG_OFFSET, &19u32.to_le_bytes());
    h.dev.config_read(data, &mut word);
    assert_eq!(word, [0; 4]);
    h.dev
        .config_write(cap + PCI_CFG_OFFSET, &20u32.to_le_bytes());
    h.dev
        .config_write(cap + PCI_CFG_LENGTH, &8u32.to_le_bytes());
    h.dev.config_read(data, &mut word);
    assert_eq!(word, [0; 4]);
    h.dev
        .config_write(cap + PCI_CFG_LENGTH, &1u32.to_le_bytes());
    h.dev.config_write(cap + PCI_CFG_BAR, &[2]);
    h.dev.config_read(data, &mut word);
    assert_eq!(word, [0; 4]);
    // The capability's type and the other header bytes stay read-only.
    h.dev.config_write(cap, &u32::MAX.to_le_bytes());
    assert_eq!(h.dev.config().capabilities().len(), 6);
}
