//! virtio devices, independent of the transport that carries them (virtio-pci here).
//!
//! A device sees three things from its transport: the feature bits the driver accepted, its
//! queues once the driver set DRIVER_OK (each a `virtio_queue::Queue` with the addresses the
//! driver wrote), and an [`Interrupt`] to tell the driver about used buffers. It reaches guest
//! memory only through the [`DmaMemory`] given at activation (see `crate::dma`).
//!
//! Work model: the transport calls [`VirtioDevice::queue_notify`] when the driver kicks a queue
//! (today on the vCPU thread that wrote the notify register). A device handles at most one
//! queue's worth of chains per call ([`MAX_CHAINS_PER_NOTIFY`] bounds it further) so a guest
//! that floods notifications cannot make one exit do unbounded work. Devices with host-side
//! input (console input, vsock) own a worker thread started by `activate` and stopped by
//! `reset` or drop.

pub mod block;
pub mod console;
pub mod pci;
pub mod rng;
pub mod vsock;

use std::sync::Arc;

use thiserror::Error;
use virtio_queue::Queue;

use crate::dma::DmaMemory;

/// Most descriptor chains one notification processes before the device returns to the exit
/// loop; the rest waits for the next notification or the worker's next turn.
pub const MAX_CHAINS_PER_NOTIFY: usize = 256;

/// virtio 1.x device ids (virtio spec 5): the ones runvm implements.
pub mod device_id {
    pub const NET: u32 = 1;
    pub const BLOCK: u32 = 2;
    pub const CONSOLE: u32 = 3;
    pub const RNG: u32 = 4;
    pub const VSOCK: u32 = 19;
    pub const IOMMU: u32 = 23;
}

/// VIRTIO_F_VERSION_1: every runvm device is a modern (1.x) device and offers it.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// VIRTIO_F_ACCESS_PLATFORM: the device's memory accesses go through the platform's IOMMU.
pub const VIRTIO_F_ACCESS_PLATFORM: u64 = 1 << 33;

/// How a device tells the driver that something happened.
pub trait Interrupt: Send + Sync {
    /// Used buffers were added to queue `queue`.
    fn notify_queue(&self, queue: u16) -> Result<(), DeviceError>;
    /// The device configuration space changed.
    fn notify_config(&self) -> Result<(), DeviceError>;
}

/// What a device gets when the driver sets DRIVER_OK.
pub struct Activation {
    /// Guest memory as this device may reach it.
    pub memory: DmaMemory,
    /// One entry per queue the device declared, in order; a queue the driver did not enable
    /// has `ready() == false`.
    pub queues: Vec<Queue>,
    pub interrupt: Arc<dyn Interrupt>,
}

/// A virtio device model.
pub trait VirtioDevice: Send {
    /// The virtio device id ([`device_id`]).
    fn device_type(&self) -> u32;
    /// The largest size of each queue; its length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits the device offers (includes [`VIRTIO_F_VERSION_1`]).
    fn offered_features(&self) -> u64;
    /// The driver's accepted features (a subset of the offered ones; the transport enforces it),
    /// told once, before activation.
    fn ack_features(&mut self, features: u64);
    /// Reads the device-specific configuration space at `offset`. Bytes past its end read 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific configuration space; writes to read-only fields are ignored.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// The driver set DRIVER_OK: the device starts using its queues.
    fn activate(&mut self, activation: Activation) -> Result<(), DeviceError>;
    /// The driver notified queue `queue`.
    fn queue_notify(&mut self, queue: u16);
    /// The driver reset the device (status 0): stop all work, drop the queues and memory.
    fn reset(&mut self);
}

/// Why a device could not do what the driver asked. Guest-caused errors end up here, never in
/// a panic: the device logs them, sets DEVICE_NEEDS_RESET where it must, and goes on.
#[derive(Debug, Error)]
pub enum DeviceError {
    #[error("virtio queue {queue}: {source}")]
    Queue {
        queue: u16,
        #[source]
        source: virtio_queue::Error,
    },
    #[error("guest memory at {addr:#x}+{len}: {detail}")]
    Memory { addr: u64, len: u64, detail: String },
    #[error("descriptor chain on queue {queue}: {detail}")]
    BadChain { queue: u16, detail: String },
    #[error("interrupt for {what}: {source}")]
    Interrupt {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("activation: {0}")]
    Activate(String),
}
