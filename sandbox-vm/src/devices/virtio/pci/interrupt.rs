//! The [`Interrupt`] a virtio-pci device signals: its queues' and its configuration's MSI-X
//! vectors, or the ISR status bits when the driver left MSI-X off (no INTx line exists, so a
//! driver without MSI-X polls).

use std::sync::atomic::{AtomicU16, AtomicU8, Ordering};
use std::sync::Arc;

use crate::devices::pci::msix::{MsixVectors, Signalled};
use crate::devices::virtio::{DeviceError, Interrupt};

/// The "no vector" value of the MSI-X vector registers.
pub const NO_VECTOR: u16 = 0xffff;
/// ISR status bits: a queue was used; the configuration changed.
pub const ISR_QUEUE: u8 = 1;
pub const ISR_CONFIG: u8 = 2;

/// The transport state an interrupt needs, shared between the transport (vCPU threads) and
/// the device (any thread).
#[derive(Debug)]
pub struct InterruptState {
    pub msix: Arc<MsixVectors>,
    pub isr: AtomicU8,
    pub config_generation: AtomicU8,
    pub config_vector: AtomicU16,
    pub queue_vectors: Vec<AtomicU16>,
}

impl InterruptState {
    pub fn new(msix: Arc<MsixVectors>, queues: usize) -> Self {
        InterruptState {
            msix,
            isr: AtomicU8::new(0),
            config_generation: AtomicU8::new(0),
            config_vector: AtomicU16::new(NO_VECTOR),
            queue_vectors: (0..queues).map(|_| AtomicU16::new(NO_VECTOR)).collect(),
        }
    }

    /// Back to the reset state (vectors unassigned, ISR clear).
    pub fn reset(&self) {
        self.isr.store(0, Ordering::Release);
        self.config_vector.store(NO_VECTOR, Ordering::Release);
        for vector in &self.queue_vectors {
            vector.store(NO_VECTOR, Ordering::Release);
        }
    }

    /// A vector number the driver may use: an existing table entry or NO_VECTOR; anything
    /// else becomes NO_VECTOR, which the driver reads back as "mapping failed".
    pub fn checked_vector(&self, vector: u16) -> u16 {
        if vector < self.msix.len() {
            vector
        } else {
            NO_VECTOR
        }
    }

    fn signal(&self, vector: u16, isr_bit: u8, what: &str) -> Result<(), DeviceError> {
        if !self.msix.enabled() {
            self.isr.fetch_or(isr_bit, Ordering::AcqRel);
            return Ok(());
        }
        if vector == NO_VECTOR {
            return Ok(());
        }
        match self.msix.signal(vector) {
            Ok(Signalled::Delivered | Signalled::Pending | Signalled::Disabled) => Ok(()),
            Err(source) => Err(DeviceError::Interrupt {
                what: format!("{what} (MSI-X vector {vector})"),
                source,
            }),
        }
    }
}

/// What a device gets as its [`Interrupt`] at activation.
#[derive(Debug, Clone)]
pub struct PciInterrupt {
    pub state: Arc<InterruptState>,
}

impl Interrupt for PciInterrupt {
    fn notify_queue(&self, queue: u16) -> Result<(), DeviceError> {
        let Some(vector) = self.state.queue_vectors.get(usize::from(queue)) else {
            return Err(DeviceError::Interrupt {
                what: format!("queue {queue}"),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no such queue"),
            });
        };
        let vector = vector.load(Ordering::Acquire);
        self.state
            .signal(vector, ISR_QUEUE, &format!("queue {queue}"))
    }

    fn notify_config(&self) -> Result<(), DeviceError> {
        self.state.config_generation.fetch_add(1, Ordering::AcqRel);
        let vector = self.state.config_vector.load(Ordering::Acquire);
        self.state
            .signal(vector, ISR_CONFIG, "configuration change")
    }
}
