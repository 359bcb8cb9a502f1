//! virtio-vsock (virtio 1.2 §5.10) with a Unix-socket host end ("hybrid vsock").
//!
//! The guest sees a vsock device whose host is CID 2. On the host there are only Unix sockets:
//! - host → guest: a client connects to the device's listening socket `uds_path`, writes
//!   `CONNECT <guest port>\n`, and once the guest accepts reads `OK <host port>\n`; from then on
//!   the socket carries the stream.
//! - guest → host: a guest connecting to CID 2 port P is connected to the Unix socket
//!   `<uds_path>_P`; when nothing listens there the guest gets RST (connection refused).
//!
//! Stream sockets only, with the protocol's credit-based flow control. `packet` holds the wire
//! format, `connection` one stream, `muxer` all of them with the queues, `worker` the thread.

mod connection;
mod muxer;
mod packet;
mod worker;

#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;
use virtio_queue::QueueT;

use super::{device_id, Activation, DeviceError, VirtioDevice, VIRTIO_F_VERSION_1};
pub use muxer::MAX_CONNECTIONS;
pub use packet::HOST_CID;
use worker::Worker;

/// Queue indices (virtio 1.2 §5.10.2).
pub const RX_QUEUE: u16 = 0;
pub const TX_QUEUE: u16 = 1;
pub const EVENT_QUEUE: u16 = 2;
const QUEUE_SIZES: [u16; 3] = [256, 256, 256];

/// Why a vsock device could not be created.
#[derive(Debug, Error)]
pub enum VsockError {
    #[error("vsock guest_cid {0}: must be at least 3 and below 2^32-1 (0-2 and -1 are reserved)")]
    InvalidCid(u64),
    #[error("vsock uds_path {path}: {source}")]
    Listen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The virtio-vsock device.
pub struct Vsock {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: Arc<UnixListener>,
    worker: Option<Worker>,
}

impl Vsock {
    /// A device giving the guest address `guest_cid`, listening for host clients on the Unix
    /// socket `uds_path` (created now; it must not exist yet, and is removed when the device is
    /// dropped). Host clients may connect before the guest activates the device: they wait in
    /// the listen backlog.
    pub fn new(guest_cid: u64, uds_path: impl Into<PathBuf>) -> Result<Self, VsockError> {
        // The Linux driver takes the config as a u32 CID; u32::MAX is VMADDR_CID_ANY.
        if guest_cid <= HOST_CID || guest_cid >= u64::from(u32::MAX) {
            return Err(VsockError::InvalidCid(guest_cid));
        }
        let uds_path = uds_path.into();
        let listen_error = |source| VsockError::Listen {
            path: uds_path.clone(),
            source,
        };
        let listener = UnixListener::bind(&uds_path).map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;
        Ok(Vsock {
            guest_cid,
            uds_path,
            listener: Arc::new(listener),
            worker: None,
        })
    }

    pub fn guest_cid(&self) -> u64 {
        self.guest_cid
    }

    /// The listening socket host clients connect to; guest-initiated connections go to
    /// `<uds_path>_<port>`.
    pub fn uds_path(&self) -> &Path {
        &self.uds_path
    }

    #[cfg(test)]
    fn worker(&self) -> Option<&Worker> {
        self.worker.as_ref()
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        device_id::VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn offered_features(&self) -> u64 {
        // No VIRTIO_VSOCK_F_SEQPACKET: stream sockets only, which needs no feature bit.
        VIRTIO_F_VERSION_1
    }

    fn ack_features(&mut self, _features: u64) {
        // Nothing beyond VERSION_1 is offered, so nothing changes the device's behaviour.
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_vsock_config { le64 guest_cid; }
        let config = self.guest_cid.to_le_bytes();
        for (index, byte) in data.iter_mut().enumerate() {
            *byte = usize::try_from(offset)
                .ok()
                .and_then(|offset| offset.checked_add(index))
                .and_then(|at| config.get(at))
                .copied()
                .unwrap_or(0);
        }
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // guest_cid is read-only.
    }

    fn activate(&mut self, activation: Activation) -> Result<(), DeviceError> {
        // A second DRIVER_OK without a reset: start from a clean state.
        self.worker = None;
        let Activation {
            memory,
            queues,
            interrupt,
        } = activation;
        let [rx, tx, _event]: [_; 3] = queues.try_into().map_err(|queues: Vec<_>| {
            DeviceError::Activate(format!("vsock needs 3 queues, got {}", queues.len()))
        })?;
        if !rx.ready() || !tx.ready() {
            return Err(DeviceError::Activate(
                "vsock rx and tx queues must be enabled".into(),
            ));
        }
        let queues = muxer::Queues {
            memory,
            rx,
            tx,
            interrupt,
        };
        let worker = Worker::start(
            self.guest_cid,
            &self.uds_path,
            self.listener.clone(),
            queues,
        )
        .map_err(|source| DeviceError::Io {
            what: "starting the vsock worker".into(),
            source,
        })?;
        self.worker = Some(worker);
        Ok(())
    }

    fn queue_notify(&mut self, queue: u16) {
        let Some(worker) = &self.worker else {
            return;
        };
        match queue {
            // Both go to the worker: serving tx connects and writes host sockets, which the
            // vCPU thread's seccomp filter does not allow (and should not).
            TX_QUEUE | RX_QUEUE => worker.kick(),
            // The event queue only carries device → driver transport resets, which this
            // device never sends; its buffers just wait.
            _ => {}
        }
    }

    fn reset(&mut self) {
        // Dropping the worker joins its thread and closes every connection.
        self.worker = None;
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        self.worker = None;
        // Remove the socket this device created, and only if it still is a socket.
        if fs::symlink_metadata(&self.uds_path).is_ok_and(|meta| meta.file_type().is_socket()) {
            let _ = fs::remove_file(&self.uds_path);
        }
    }
}
