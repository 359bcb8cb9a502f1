//! The virtio-pci modern transport (virtio 1.x spec 4.1): a PCI function with vendor 0x1af4 and
//! device id 0x1040 + type whose one memory BAR holds the common configuration, the ISR
//! status, the device configuration, the notification area and the MSI-X table and PBA; vendor
//! capabilities in configuration space tell the driver where each one is.
//!
//! The transport runs the device status state machine (reset, feature negotiation,
//! DRIVER_OK) and hands the device its queues at DRIVER_OK. Every value the guest writes is
//! checked where it lands: a bad one is ignored (or read back as "failed", as the spec says
//! for vectors and FEATURES_OK) and counted in [`VirtioPciDevice::guest_errors`], never a
//! panic.

pub mod common;
pub mod interrupt;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use self::common::{CommonReg, COMMON_CFG_LEN};
use self::interrupt::{InterruptState, PciInterrupt};
use super::{device_id, Activation, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::devices::pci::config::{PciConfig, PciIdentity};
use crate::devices::pci::msix::{self, MsixVectors, MSIX_CAPABILITY_ID};
use crate::devices::pci::PciDevice;
use crate::dma;
use crate::error::VmError;
use crate::vstate::irq::GsiRouter;

pub use self::interrupt::NO_VECTOR;

/// The PCI vendor id of virtio devices, and the base of modern device ids.
pub const VIRTIO_PCI_VENDOR: u16 = 0x1af4;
pub const VIRTIO_PCI_DEVICE_BASE: u16 = 0x1040;
/// Device status bits (virtio spec 2.1).
pub const STATUS_ACKNOWLEDGE: u8 = 1;
pub const STATUS_DRIVER: u8 = 2;
pub const STATUS_DRIVER_OK: u8 = 4;
pub const STATUS_FEATURES_OK: u8 = 8;
pub const STATUS_NEEDS_RESET: u8 = 0x40;
pub const STATUS_FAILED: u8 = 0x80;
/// VIRTIO_F_RING_EVENT_IDX: the driver and device use the used/avail event fields.
const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;

/// BAR 0 layout. Each region starts on its own page so a driver can map them separately.
pub const BAR_SIZE: u64 = 0x8000;
const PAGE: u64 = 0x1000;
pub const COMMON_OFFSET: u64 = 0x0000;
pub const ISR_OFFSET: u64 = 0x1000;
pub const DEVICE_CFG_OFFSET: u64 = 0x2000;
pub const DEVICE_CFG_LEN: u64 = PAGE;
pub const NOTIFY_OFFSET: u64 = 0x3000;
/// Queue n is notified at NOTIFY_OFFSET + n * NOTIFY_MULTIPLIER.
pub const NOTIFY_MULTIPLIER: u32 = 4;
pub const MSIX_TABLE_OFFSET: u64 = 0x4000;
pub const MSIX_PBA_OFFSET: u64 = 0x5000;
/// The table region holds 256 vectors: one per queue plus the configuration vector.
pub const MAX_QUEUES: usize = 255;

/// Vendor capability (virtio_pci_cap) structure types.
const CAP_COMMON: u8 = 1;
const CAP_NOTIFY: u8 = 2;
const CAP_ISR: u8 = 3;
const CAP_DEVICE: u8 = 4;
const CAP_PCI_CFG: u8 = 5;
/// In the PCI_CFG capability: bar (+4), offset (+8) and length (+12) the driver writes,
/// then pci_cfg_data (+16), the 4-byte window onto that BAR location.
const PCI_CFG_BAR: usize = 4;
const PCI_CFG_OFFSET: usize = 8;
const PCI_CFG_LENGTH: usize = 12;
const PCI_CFG_DATA: usize = 16;
const VENDOR_CAPABILITY_ID: u8 = 0x09;

/// The class code a driver-less OS shows for each device type.
fn class_of(device_type: u32) -> (u8, u8) {
    match device_type {
        device_id::NET => (0x02, 0x00),
        device_id::BLOCK => (0x01, 0x80),
        device_id::CONSOLE => (0x07, 0x80),
        _ => (0xff, 0x00),
    }
}

/// A virtio_pci_cap body (after id and next pointer).
fn virtio_capability(cfg_type: u8, offset: u64, length: u64, extra: &[u8]) -> Vec<u8> {
    let cap_len = (2 + 14 + extra.len()) as u8;
    let mut body = vec![cap_len, cfg_type, 0, 0, 0, 0];
    body.extend_from_slice(&(offset as u32).to_le_bytes());
    body.extend_from_slice(&(length as u32).to_le_bytes());
    body.extend_from_slice(extra);
    body
}

/// The driver-visible configuration of one queue until DRIVER_OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QueueSetup {
    max_size: u16,
    size: u16,
    enabled: bool,
    desc: u64,
    driver: u64,
    device: u64,
}

impl QueueSetup {
    fn new(max_size: u16) -> Self {
        QueueSetup {
            max_size,
            size: max_size,
            enabled: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }
}

/// How often the guest did something invalid, and the last such thing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestErrors {
    pub count: u64,
    pub last: Option<String>,
}

/// A virtio device on PCI.
pub struct VirtioPciDevice {
    config: PciConfig,
    msix_capability: usize,
    pci_cfg_capability: usize,
    device: Box<dyn VirtioDevice>,
    memory: GuestMemoryMmap,
    interrupt: Arc<InterruptState>,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    queue_select: u16,
    queues: Vec<QueueSetup>,
    activated: bool,
    errors: GuestErrors,
}

impl std::fmt::Debug for VirtioPciDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioPciDevice")
            .field("type", &self.device.device_type())
            .field("status", &self.status)
            .field("activated", &self.activated)
            .finish()
    }
}

impl VirtioPciDevice {
    /// Wraps `device`; its queues get memory from `memory` at activation and its vectors are
    /// routed through `router` (none without an in-kernel irqchip: MSI-X then goes nowhere).
    pub fn new(
        device: Box<dyn VirtioDevice>,
        memory: GuestMemoryMmap,
        router: Option<Arc<GsiRouter>>,
    ) -> Result<Self, VmError> {
        let device_type = device.device_type();
        let sizes = device.queue_max_sizes().to_vec();
        let bad_size = sizes.iter().find(|s| Queue::new(**s).is_err()).copied();
        let type_offset = u16::try_from(device_type).ok().filter(|t| *t < 0x100);
        let Some(type_offset) = type_offset else {
            return Err(VmError::Config(format!(
                "virtio device type {device_type}: not a virtio device id"
            )));
        };
        if sizes.is_empty() || sizes.len() > MAX_QUEUES || bad_size.is_some() {
            return Err(VmError::Config(format!(
                "virtio device type {device_type}: queue sizes {sizes:?} (need 1..={MAX_QUEUES} \
                 queues, each a power of two up to 32768)"
            )));
        }
        let vectors = sizes.len() as u16 + 1;
        let (class, subclass) = class_of(device_type);
        let mut config = PciConfig::new(&PciIdentity {
            vendor_id: VIRTIO_PCI_VENDOR,
            device_id: VIRTIO_PCI_DEVICE_BASE + type_offset,
            // Revision 1 and a device id >= 0x1040: a modern-only device (spec 4.1.2.1).
            revision: 1,
            class,
            subclass,
            prog_if: 0,
            subsystem_vendor_id: VIRTIO_PCI_VENDOR,
            subsystem_id: 0x40,
        });
        let layout = |e: crate::devices::pci::config::ConfigError| {
            VmError::Config(format!("virtio device type {device_type}: {e}"))
        };
        config.add_memory_bar(0, BAR_SIZE).map_err(layout)?;
        let (body, mask) =
            msix::capability(vectors, 0, MSIX_TABLE_OFFSET as u32, MSIX_PBA_OFFSET as u32);
        let msix_capability = config
            .add_capability(MSIX_CAPABILITY_ID, &body, &mask)
            .map_err(layout)?;
        let notify_len = sizes.len() as u64 * u64::from(NOTIFY_MULTIPLIER);
        for body in [
            virtio_capability(CAP_COMMON, COMMON_OFFSET, COMMON_CFG_LEN, &[]),
            virtio_capability(CAP_ISR, ISR_OFFSET, 1, &[]),
            virtio_capability(CAP_DEVICE, DEVICE_CFG_OFFSET, DEVICE_CFG_LEN, &[]),
            virtio_capability(
                CAP_NOTIFY,
                NOTIFY_OFFSET,
                notify_len,
                &NOTIFY_MULTIPLIER.to_le_bytes(),
            ),
        ] {
            config
                .add_capability(VENDOR_CAPABILITY_ID, &body, &[])
                .map_err(layout)?;
        }
        // The PCI_CFG capability (spec 4.1.4.9): its bar, offset and length are the driver's.
        let pci_cfg = virtio_capability(CAP_PCI_CFG, 0, 0, &[0; 4]);
        let mut pci_cfg_mask = vec![0u8; pci_cfg.len()];
        pci_cfg_mask[PCI_CFG_BAR - 2] = 0xff;
        pci_cfg_mask[PCI_CFG_OFFSET - 2..PCI_CFG_DATA - 2].fill(0xff);
        let pci_cfg_capability = config
            .add_capability(VENDOR_CAPABILITY_ID, &pci_cfg, &pci_cfg_mask)
            .map_err(layout)?;
        let msix = Arc::new(MsixVectors::new(vectors, router)?);
        Ok(VirtioPciDevice {
            config,
            msix_capability,
            pci_cfg_capability,
            device,
            memory,
            interrupt: Arc::new(InterruptState::new(msix, sizes.len())),
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            queue_select: 0,
            queues: sizes.iter().map(|s| QueueSetup::new(*s)).collect(),
            activated: false,
            errors: GuestErrors::default(),
        })
    }

    /// The device status as the driver reads it.
    pub fn status(&self) -> u8 {
        self.status
    }

    pub fn is_activated(&self) -> bool {
        self.activated
    }

    /// Invalid things the guest did so far.
    pub fn guest_errors(&self) -> &GuestErrors {
        &self.errors
    }

    fn flag(&mut self, what: String) {
        self.errors.count += 1;
        self.errors.last = Some(what);
    }

    fn selected_queue(&self) -> Option<usize> {
        let index = usize::from(self.queue_select);
        (index < self.queues.len()).then_some(index)
    }

    fn read_common(&self, offset: u64, data: &mut [u8]) {
        let value: u64 = match common::decode(offset, data.len()) {
            None => 0,
            Some(reg) => self.common_value(reg),
        };
        let bytes = value.to_le_bytes();
        data.copy_from_slice(&bytes[..data.len()]);
    }

    fn common_value(&self, reg: CommonReg) -> u64 {
        let queue = self.selected_queue().map(|i| (i, self.queues[i]));
        let offered = self.device.offered_features();
        let half_of = |features: u64, select: u32| match select {
            0 => features & 0xffff_ffff,
            1 => features >> 32,
            _ => 0,
        };
        match reg {
            CommonReg::DeviceFeatureSelect => u64::from(self.device_feature_select),
            CommonReg::DeviceFeature => half_of(offered, self.device_feature_select),
            CommonReg::DriverFeatureSelect => u64::from(self.driver_feature_select),
            CommonReg::DriverFeature => half_of(self.driver_features, self.driver_feature_select),
            CommonReg::ConfigMsixVector => {
                u64::from(self.interrupt.config_vector.load(Ordering::Acquire))
            }
            CommonReg::NumQueues => self.queues.len() as u64,
            CommonReg::DeviceStatus => u64::from(self.status),
            CommonReg::ConfigGeneration => {
                u64::from(self.interrupt.config_generation.load(Ordering::Acquire))
            }
            CommonReg::QueueSelect => u64::from(self.queue_select),
            CommonReg::QueueSize => queue.map_or(0, |(_, q)| u64::from(q.size)),
            CommonReg::QueueMsixVector => queue.map_or(u64::from(NO_VECTOR), |(i, _)| {
                u64::from(self.interrupt.queue_vectors[i].load(Ordering::Acquire))
            }),
            CommonReg::QueueEnable => queue.map_or(0, |(_, q)| u64::from(q.enabled)),
            CommonReg::QueueNotifyOff => queue.map_or(0, |(i, _)| i as u64),
            CommonReg::QueueDesc(h) => queue.map_or(0, |(_, q)| common::extract(q.desc, h)),
            CommonReg::QueueDriver(h) => queue.map_or(0, |(_, q)| common::extract(q.driver, h)),
            CommonReg::QueueDevice(h) => queue.map_or(0, |(_, q)| common::extract(q.device, h)),
        }
    }

    fn write_common(&mut self, offset: u64, data: &[u8]) {
        let Some(reg) = common::decode(offset, data.len()) else {
            self.flag(format!(
                "common config write of {} bytes at {offset:#x}: no such register",
                data.len()
            ));
            return;
        };
        let mut bytes = [0u8; 8];
        bytes[..data.len()].copy_from_slice(data);
        let value = u64::from_le_bytes(bytes);
        match reg {
            CommonReg::DeviceFeatureSelect => self.device_feature_select = value as u32,
            CommonReg::DriverFeatureSelect => self.driver_feature_select = value as u32,
            CommonReg::DriverFeature => self.write_driver_features(value as u32),
            CommonReg::ConfigMsixVector => {
                let vector = self.checked_vector(value as u16, "config");
                self.interrupt
                    .config_vector
                    .store(vector, Ordering::Release);
            }
            CommonReg::DeviceStatus => self.write_status(value as u8),
            CommonReg::QueueSelect => self.queue_select = value as u16,
            CommonReg::QueueMsixVector => {
                if let Some(index) = self.selected_queue() {
                    let vector = self.checked_vector(value as u16, "queue");
                    self.interrupt.queue_vectors[index].store(vector, Ordering::Release);
                } else {
                    self.flag(format!(
                        "queue_msix_vector of absent queue {}",
                        self.queue_select
                    ));
                }
            }
            CommonReg::QueueSize
            | CommonReg::QueueEnable
            | CommonReg::QueueDesc(_)
            | CommonReg::QueueDriver(_)
            | CommonReg::QueueDevice(_) => self.write_queue(reg, value),
            CommonReg::DeviceFeature
            | CommonReg::NumQueues
            | CommonReg::ConfigGeneration
            | CommonReg::QueueNotifyOff => {
                self.flag(format!("write to read-only common register {reg:?}"));
            }
        }
    }

    fn checked_vector(&mut self, vector: u16, what: &str) -> u16 {
        let checked = self.interrupt.checked_vector(vector);
        if checked != vector {
            self.flag(format!("{what} MSI-X vector {vector}: no such table entry"));
        }
        checked
    }

    fn write_driver_features(&mut self, half: u32) {
        if self.status & STATUS_FEATURES_OK != 0 {
            self.flag("driver_feature written after FEATURES_OK".to_string());
            return;
        }
        let half = u64::from(half);
        self.driver_features = match self.driver_feature_select {
            0 => (self.driver_features & !0xffff_ffff) | half,
            1 => (self.driver_features & 0xffff_ffff) | (half << 32),
            select => {
                self.flag(format!(
                    "driver_feature_select {select}: no such feature word"
                ));
                return;
            }
        };
    }

    fn write_queue(&mut self, reg: CommonReg, value: u64) {
        let Some(index) = self.selected_queue() else {
            self.flag(format!("{reg:?} of absent queue {}", self.queue_select));
            return;
        };
        if self.status & STATUS_DRIVER_OK != 0 {
            self.flag(format!("{reg:?} of queue {index} after DRIVER_OK"));
            return;
        }
        let queue = &mut self.queues[index];
        if queue.enabled && reg != CommonReg::QueueEnable {
            self.flag(format!("{reg:?} of queue {index} after it was enabled"));
            return;
        }
        match reg {
            CommonReg::QueueSize => {
                let size = value as u16;
                if size == 0 || !size.is_power_of_two() || size > queue.max_size {
                    let max = queue.max_size;
                    self.flag(format!(
                        "queue {index} size {size}: must be a power of two up to {max}"
                    ));
                } else {
                    queue.size = size;
                }
            }
            CommonReg::QueueEnable => {
                if value == 1 {
                    queue.enabled = true;
                } else {
                    self.flag(format!("queue {index} enable {value}: only 1 is allowed"));
                }
            }
            CommonReg::QueueDesc(h) => queue.desc = common::merge(queue.desc, h, value),
            CommonReg::QueueDriver(h) => queue.driver = common::merge(queue.driver, h, value),
            CommonReg::QueueDevice(h) => queue.device = common::merge(queue.device, h, value),
            _ => {}
        }
    }

    fn write_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        // DEVICE_NEEDS_RESET belongs to the device; the driver can only add bits.
        let requested = (value & !STATUS_NEEDS_RESET) | (old & STATUS_NEEDS_RESET);
        if old & !requested != 0 {
            self.flag(format!(
                "device status {value:#x} clears bits of {old:#x} without a reset"
            ));
            return;
        }
        let mut new = requested;
        if new & STATUS_FEATURES_OK != 0 && old & STATUS_FEATURES_OK == 0 {
            let offered = self.device.offered_features();
            let accepted = self.driver_features;
            if accepted & !offered != 0 || accepted & VIRTIO_F_VERSION_1 == 0 {
                // Left clear: the driver reads status back and gives up (spec 3.1.1).
                new &= !STATUS_FEATURES_OK;
                self.flag(format!(
                    "features {accepted:#x}: not a subset of {offered:#x} with VERSION_1"
                ));
            } else {
                self.device.ack_features(accepted);
            }
        }
        if new & STATUS_DRIVER_OK != 0 && old & STATUS_DRIVER_OK == 0 {
            if new & STATUS_FEATURES_OK == 0 {
                new &= !STATUS_DRIVER_OK;
                self.flag("DRIVER_OK before FEATURES_OK".to_string());
            } else if let Err(e) = self.activate() {
                new |= STATUS_NEEDS_RESET;
                self.flag(format!("activation: {e}"));
            }
        }
        self.status = new;
        if new & STATUS_NEEDS_RESET != 0 && old & STATUS_NEEDS_RESET == 0 {
            // Tell the driver; it finds NEEDS_RESET in the status. Nothing to do if the
            // interrupt cannot be sent: the status still says it.
            let interrupt = PciInterrupt {
                state: Arc::clone(&self.interrupt),
            };
            let _ = super::Interrupt::notify_config(&interrupt);
        }
    }

    /// Builds the queues from what the driver wrote and starts the device.
    fn activate(&mut self) -> Result<(), String> {
        let memory = dma::identity(&self.memory);
        let event_idx = self.driver_features & VIRTIO_RING_F_EVENT_IDX != 0;
        let mut queues = Vec::with_capacity(self.queues.len());
        for (index, setup) in self.queues.iter().enumerate() {
            let problem = |what: String| format!("queue {index}: {what}");
            let mut queue = Queue::new(setup.max_size).map_err(|e| problem(e.to_string()))?;
            queue
                .try_set_size(setup.size)
                .map_err(|e| problem(format!("size {}: {e}", setup.size)))?;
            if setup.enabled {
                queue
                    .try_set_desc_table_address(GuestAddress(setup.desc))
                    .map_err(|e| problem(format!("descriptor table {:#x}: {e}", setup.desc)))?;
                queue
                    .try_set_avail_ring_address(GuestAddress(setup.driver))
                    .map_err(|e| problem(format!("driver area {:#x}: {e}", setup.driver)))?;
                queue
                    .try_set_used_ring_address(GuestAddress(setup.device))
                    .map_err(|e| problem(format!("device area {:#x}: {e}", setup.device)))?;
                queue.set_event_idx(event_idx);
                queue.set_ready(true);
                if !queue.is_valid(&memory) {
                    return Err(problem("rings outside guest memory".to_string()));
                }
            }
            queues.push(queue);
        }
        let interrupt = Arc::new(PciInterrupt {
            state: Arc::clone(&self.interrupt),
        });
        self.device
            .activate(Activation {
                memory,
                queues,
                interrupt,
            })
            .map_err(|e| e.to_string())?;
        self.activated = true;
        Ok(())
    }

    /// Status 0: the device stops and the transport forgets everything the driver set.
    fn reset(&mut self) {
        if self.activated {
            self.device.reset();
            self.activated = false;
        }
        self.status = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.queue_select = 0;
        for queue in &mut self.queues {
            *queue = QueueSetup::new(queue.max_size);
        }
        self.interrupt.reset();
    }

    /// The BAR access the PCI_CFG capability selects: (offset, length), if it is one the
    /// window can carry (BAR 0, 1/2/4 bytes, aligned).
    fn pci_cfg_target(&self) -> Option<(u64, usize)> {
        let cap = self.pci_cfg_capability;
        let mut bar = [0u8; 1];
        self.config.read(cap + PCI_CFG_BAR, &mut bar);
        let offset = u64::from(self.config.read_u32(cap + PCI_CFG_OFFSET));
        let length = self.config.read_u32(cap + PCI_CFG_LENGTH) as usize;
        (bar[0] == 0 && matches!(length, 1 | 2 | 4) && offset.is_multiple_of(length as u64))
            .then_some((offset, length))
    }

    /// Whether a config access of `len` bytes at `offset` lies inside pci_cfg_data.
    fn hits_pci_cfg_data(&self, offset: usize, len: usize) -> bool {
        let data = self.pci_cfg_capability + PCI_CFG_DATA;
        offset >= data && offset + len <= data + 4
    }

    fn notify(&mut self, offset: u64, len: usize) {
        let multiplier = u64::from(NOTIFY_MULTIPLIER);
        let queue = offset / multiplier;
        if !offset.is_multiple_of(multiplier)
            || !matches!(len, 2 | 4)
            || queue >= self.queues.len() as u64
        {
            self.flag(format!("notify write of {len} bytes at {offset:#x}"));
            return;
        }
        if self.activated {
            self.device.queue_notify(queue as u16);
        }
    }
}

/// Which region of BAR 0 an offset falls in, and the offset inside it.
enum Region {
    Common(u64),
    Isr,
    DeviceConfig(u64),
    Notify(u64),
    MsixTable(u64),
    MsixPba(u64),
    Unused,
}

fn region(offset: u64, len: usize) -> Region {
    let inside = |start: u64, size: u64| {
        offset >= start && offset - start < size && offset - start + len as u64 <= size
    };
    if inside(COMMON_OFFSET, COMMON_CFG_LEN) {
        Region::Common(offset - COMMON_OFFSET)
    } else if offset == ISR_OFFSET && len == 1 {
        Region::Isr
    } else if inside(DEVICE_CFG_OFFSET, DEVICE_CFG_LEN) {
        Region::DeviceConfig(offset - DEVICE_CFG_OFFSET)
    } else if inside(NOTIFY_OFFSET, PAGE) {
        Region::Notify(offset - NOTIFY_OFFSET)
    } else if inside(MSIX_TABLE_OFFSET, MSIX_PBA_OFFSET - MSIX_TABLE_OFFSET) {
        Region::MsixTable(offset - MSIX_TABLE_OFFSET)
    } else if inside(MSIX_PBA_OFFSET, BAR_SIZE - MSIX_PBA_OFFSET) {
        Region::MsixPba(offset - MSIX_PBA_OFFSET)
    } else {
        Region::Unused
    }
}

impl PciDevice for VirtioPciDevice {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn config_read(&mut self, offset: usize, data: &mut [u8]) {
        if !self.hits_pci_cfg_data(offset, data.len()) {
            self.config.read(offset, data);
            return;
        }
        data.fill(0);
        let Some((at, length)) = self.pci_cfg_target() else {
            return;
        };
        let mut window = [0u8; 4];
        self.bar_read(0, at, &mut window[..length]);
        let start = offset - (self.pci_cfg_capability + PCI_CFG_DATA);
        data.copy_from_slice(&window[start..start + data.len()]);
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) {
        if self.hits_pci_cfg_data(offset, data.len()) {
            let start = offset - (self.pci_cfg_capability + PCI_CFG_DATA);
            match self.pci_cfg_target() {
                // The driver writes the whole field at once (spec 4.1.4.9.1).
                Some((at, length)) if start == 0 && data.len() >= length => {
                    self.bar_write(0, at, &data[..length]);
                }
                _ => self.flag(format!(
                    "pci_cfg_data write of {} bytes without a valid bar/offset/length",
                    data.len()
                )),
            }
            return;
        }
        if !self.config.write(offset, data) {
            self.flag(format!(
                "PCI config write of {} bytes at {offset:#x}",
                data.len()
            ));
            return;
        }
        let control = self.msix_capability + 2;
        if offset < control + 2 && control < offset + data.len() {
            let value = self.config.read_u16(control);
            if let Err(e) = self.interrupt.msix.set_control(value) {
                self.flag(e);
            }
        }
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if bar != 0 || data.len() > 8 {
            return;
        }
        match region(offset, data.len()) {
            Region::Common(at) => self.read_common(at, data),
            Region::Isr => {
                // Reading the ISR clears it (spec 4.1.4.5).
                data[0] = self.interrupt.isr.swap(0, Ordering::AcqRel);
            }
            Region::DeviceConfig(at) => self.device.read_config(at, data),
            Region::MsixTable(at) => self.interrupt.msix.read_table(at, data),
            Region::MsixPba(at) => self.interrupt.msix.read_pba(at, data),
            Region::Notify(_) | Region::Unused => {}
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != 0 || data.len() > 8 {
            self.flag(format!("BAR {bar} write of {} bytes", data.len()));
            return;
        }
        match region(offset, data.len()) {
            Region::Common(at) => self.write_common(at, data),
            Region::DeviceConfig(at) => self.device.write_config(at, data),
            Region::Notify(at) => self.notify(at, data.len()),
            Region::MsixTable(at) => {
                if let Err(e) = self.interrupt.msix.write_table(at, data) {
                    self.flag(e);
                }
            }
            Region::Isr | Region::MsixPba(_) | Region::Unused => {
                self.flag(format!("write to read-only BAR offset {offset:#x}"));
            }
        }
    }
}

#[cfg(test)]
mod tests;
