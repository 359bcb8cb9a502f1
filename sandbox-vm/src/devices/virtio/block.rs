//! virtio-blk (virtio 1.x spec 5.2) on a raw image file, one request queue.
//!
//! A request is a descriptor chain: a 16-byte device-readable header (type, reserved, sector),
//! the data buffers (device-writable for IN and GET_ID, device-readable for OUT) and a final
//! device-writable status byte. A chain whose shape cannot carry a status (loops, cut short,
//! status descriptor read-only or empty, buffers outside the device's memory) is returned
//! with length 0 and counted as a device error; every other bad request gets a status byte
//! (IOERR or UNSUPP). Nothing the guest writes can make the device panic or stop serving.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX,
    VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT, Reader, Writer};

use super::{
    device_id, Activation, DeviceError, Interrupt, VirtioDevice, MAX_CHAINS_PER_NOTIFY,
    VIRTIO_F_VERSION_1,
};
use crate::dma::DmaMemory;

/// Bytes per sector: the unit of `capacity` and of the request header's `sector`.
pub const SECTOR_SIZE: u64 = 512;
/// Size of the one request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Most data segments in one request (config `seg_max`): the queue less the header and the
/// status descriptors, as Linux expects.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Largest data segment (config `size_max`).
pub const SIZE_MAX: u32 = 64 * 1024;
/// Most data bytes one request may move: what a driver honouring seg_max and size_max can
/// send; anything larger is an IOERR, so one request's work stays bounded.
pub const MAX_REQUEST_BYTES: u64 = SEG_MAX as u64 * SIZE_MAX as u64;

/// Length of the request header (`struct virtio_blk_outhdr`).
const HEADER_LEN: usize = 16;
/// Host-side copy unit between guest buffers and the image: bounds the device's memory use
/// per request whatever the request size.
const COPY_CHUNK: usize = 64 * 1024;
/// Config space: capacity (u64) at 0, size_max (u32) at 8, seg_max (u32) at 12; the rest of
/// `struct virtio_blk_config` reads as zero.
const CONFIG_LEN: usize = 16;
/// Bytes of the GET_ID answer.
const ID_LEN: usize = VIRTIO_BLK_ID_BYTES as usize;

/// Why a block device could not be set up.
#[derive(Debug, Error)]
pub enum BlockError {
    #[error("block image {path}: open: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("block image {what}: size: {source}")]
    Size {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// The queue, memory and interrupt the device uses between DRIVER_OK and reset.
struct Active {
    memory: DmaMemory,
    queue: Queue,
    interrupt: Arc<dyn Interrupt>,
}

/// A virtio-blk device on a raw image.
pub struct Block {
    image: File,
    read_only: bool,
    capacity_sectors: u64,
    id: [u8; ID_LEN],
    acked_features: u64,
    active: Option<Active>,
    chunk: Vec<u8>,
    error_count: u64,
    last_error: Option<String>,
}

/// What one well-formed request produced: its status and the data bytes written to the guest.
struct Completion {
    status: u8,
    data_written: u32,
}

impl Completion {
    fn status(status: u32) -> Self {
        Self {
            // The status codes are all below 256 (spec 5.2.6).
            status: status as u8,
            data_written: 0,
        }
    }
}

impl Block {
    /// Opens the raw image at `path` (read-write unless `read_only`); its file name, cut to
    /// 20 bytes, is the device id the guest reads with GET_ID.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        let image = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|source| BlockError::Open {
                path: path.to_owned(),
                source,
            })?;
        let id = path
            .file_name()
            .map(|name| name.as_encoded_bytes().to_vec())
            .unwrap_or_default();
        Self::new(image, read_only, &id)
    }

    /// A device on an already open image. `id` (at most 20 bytes kept) answers GET_ID. The
    /// capacity is the file's size at this call in whole sectors; a trailing partial sector is
    /// not visible to the guest.
    pub fn new(image: File, read_only: bool, id: &[u8]) -> Result<Self, BlockError> {
        let len = image
            .metadata()
            .map_err(|source| BlockError::Size {
                what: String::from_utf8_lossy(id).into_owned(),
                source,
            })?
            .len();
        let mut id_bytes = [0u8; ID_LEN];
        let kept = id.len().min(ID_LEN);
        id_bytes[..kept].copy_from_slice(&id[..kept]);
        Ok(Self {
            image,
            read_only,
            capacity_sectors: len / SECTOR_SIZE,
            id: id_bytes,
            acked_features: 0,
            active: None,
            chunk: Vec::new(),
            error_count: 0,
            last_error: None,
        })
    }

    /// The disk size the guest sees, in 512-byte sectors.
    pub fn capacity_sectors(&self) -> u64 {
        self.capacity_sectors
    }

    /// How many device errors (malformed chains, queue or image failures) happened so far.
    pub fn error_count(&self) -> u64 {
        self.error_count
    }

    /// The most recent device error, for diagnostics.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    fn record(&mut self, error: DeviceError) {
        self.error_count += 1;
        self.last_error = Some(error.to_string());
    }

    fn config_bytes(&self) -> [u8; CONFIG_LEN] {
        let mut config = [0u8; CONFIG_LEN];
        config[0..8].copy_from_slice(&self.capacity_sectors.to_le_bytes());
        config[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        config
    }

    /// Serves up to [`MAX_CHAINS_PER_NOTIFY`] chains, then interrupts the driver if it used any.
    fn process_queue(&mut self) {
        let Some(mut active) = self.active.take() else {
            return;
        };
        let mut used_any = false;
        for _ in 0..MAX_CHAINS_PER_NOTIFY {
            let chain = match active.queue.iter(&active.memory) {
                Ok(mut chains) => chains.next(),
                Err(source) => {
                    // A bad avail index or unreachable ring: nothing more can be trusted on
                    // this queue until the driver resets it.
                    self.record(DeviceError::Queue { queue: 0, source });
                    break;
                }
            };
            let Some(chain) = chain else { break };
            let head = chain.head_index();
            let used_len = match self.serve(chain, &active.memory) {
                Ok(len) => len,
                Err(error) => {
                    self.record(error);
                    0
                }
            };
            match active.queue.add_used(&active.memory, head, used_len) {
                Ok(()) => used_any = true,
                // A head index past the queue size has no used slot: the chain is dropped.
                Err(source) => self.record(DeviceError::Queue { queue: 0, source }),
            }
        }
        if used_any {
            match active.queue.needs_notification(&active.memory) {
                Ok(true) => {
                    if let Err(error) = active.interrupt.notify_queue(0) {
                        self.record(error);
                    }
                }
                Ok(false) => {}
                Err(source) => self.record(DeviceError::Queue { queue: 0, source }),
            }
        }
        self.active = Some(active);
    }

    /// Serves one chain; returns the used length (bytes written to guest buffers).
    fn serve(
        &mut self,
        chain: DescriptorChain<&DmaMemory>,
        memory: &DmaMemory,
    ) -> Result<u32, DeviceError> {
        check_chain_shape(chain.clone())?;
        let mut reader = Reader::new(memory, chain.clone())
            .map_err(|source| DeviceError::Queue { queue: 0, source })?;
        let mut writer =
            Writer::new(memory, chain).map_err(|source| DeviceError::Queue { queue: 0, source })?;
        // The shape check saw a non-empty writable last descriptor, so this is at least 1.
        let data_len = writer.available_bytes().saturating_sub(1);
        let mut status_writer = writer
            .split_at(data_len)
            .map_err(|source| DeviceError::Queue { queue: 0, source })?;
        let completion = self.execute(&mut reader, &mut writer);
        status_writer
            .write_all(&[completion.status])
            .map_err(|source| DeviceError::Io {
                what: "virtio-blk status byte".into(),
                source,
            })?;
        Ok(completion.data_written.saturating_add(1))
    }

    fn execute(&mut self, reader: &mut Reader<'_>, writer: &mut Writer<'_>) -> Completion {
        let mut header = [0u8; HEADER_LEN];
        if reader.read_exact(&mut header).is_err() {
            return Completion::status(VIRTIO_BLK_S_IOERR);
        }
        let request_type = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let mut sector_bytes = [0u8; 8];
        sector_bytes.copy_from_slice(&header[8..16]);
        let sector = u64::from_le_bytes(sector_bytes);
        match request_type {
            VIRTIO_BLK_T_IN => self.read_sectors(sector, reader, writer),
            VIRTIO_BLK_T_OUT => self.write_sectors(sector, reader, writer),
            VIRTIO_BLK_T_FLUSH => self.flush(),
            VIRTIO_BLK_T_GET_ID => {
                let n = writer.available_bytes().min(ID_LEN);
                match writer.write_all(&self.id[..n]) {
                    Ok(()) => Completion {
                        status: VIRTIO_BLK_S_OK as u8,
                        // n <= 20.
                        data_written: n as u32,
                    },
                    Err(_) => Completion::status(VIRTIO_BLK_S_IOERR),
                }
            }
            _ => Completion::status(VIRTIO_BLK_S_UNSUPP),
        }
    }

    /// The image byte offset for `len` bytes at `sector`, if the request is whole sectors,
    /// within the size cap and inside the disk.
    fn checked_offset(&self, sector: u64, len: usize) -> Option<u64> {
        let len = u64::try_from(len).ok()?;
        if len % SECTOR_SIZE != 0 || len > MAX_REQUEST_BYTES {
            return None;
        }
        let end_sector = sector.checked_add(len / SECTOR_SIZE)?;
        if end_sector > self.capacity_sectors {
            return None;
        }
        sector.checked_mul(SECTOR_SIZE)
    }

    fn read_sectors(
        &mut self,
        sector: u64,
        reader: &mut Reader<'_>,
        writer: &mut Writer<'_>,
    ) -> Completion {
        // Data buffers of a read must be device-writable: readable bytes after the header
        // mean the driver gave the data buffers the wrong direction.
        if reader.available_bytes() != 0 {
            return Completion::status(VIRTIO_BLK_S_IOERR);
        }
        let len = writer.available_bytes();
        let Some(offset) = self.checked_offset(sector, len) else {
            return Completion::status(VIRTIO_BLK_S_IOERR);
        };
        let mut chunk = std::mem::take(&mut self.chunk);
        let image = &self.image;
        let result = in_chunks(&mut chunk, len, offset, |piece, at| {
            image
                .read_exact_at(piece, at)
                .map_err(|source| DeviceError::Io {
                    what: format!(
                        "virtio-blk read of {} bytes at image offset {at}",
                        piece.len()
                    ),
                    source,
                })?;
            writer.write_all(piece).map_err(|source| DeviceError::Io {
                what: "virtio-blk copy into guest buffers".into(),
                source,
            })
        });
        self.chunk = chunk;
        let written = u32::try_from(writer.bytes_written()).unwrap_or(u32::MAX);
        match result {
            Ok(()) => Completion {
                status: VIRTIO_BLK_S_OK as u8,
                data_written: written,
            },
            Err(error) => {
                self.record(error);
                Completion {
                    status: VIRTIO_BLK_S_IOERR as u8,
                    data_written: written,
                }
            }
        }
    }

    fn write_sectors(
        &mut self,
        sector: u64,
        reader: &mut Reader<'_>,
        writer: &mut Writer<'_>,
    ) -> Completion {
        // A write to a read-only disk fails without touching it (spec 5.2.6.1); so does one
        // whose data buffers are device-writable.
        if self.read_only || writer.available_bytes() != 0 {
            return Completion::status(VIRTIO_BLK_S_IOERR);
        }
        let len = reader.available_bytes();
        let Some(offset) = self.checked_offset(sector, len) else {
            return Completion::status(VIRTIO_BLK_S_IOERR);
        };
        let mut chunk = std::mem::take(&mut self.chunk);
        let image = &self.image;
        let result = in_chunks(&mut chunk, len, offset, |piece, at| {
            reader.read_exact(piece).map_err(|source| DeviceError::Io {
                what: "virtio-blk copy from guest buffers".into(),
                source,
            })?;
            image
                .write_all_at(piece, at)
                .map_err(|source| DeviceError::Io {
                    what: format!(
                        "virtio-blk write of {} bytes at image offset {at}",
                        piece.len()
                    ),
                    source,
                })
        });
        self.chunk = chunk;
        match result {
            Ok(()) => Completion::status(VIRTIO_BLK_S_OK),
            Err(error) => {
                self.record(error);
                Completion::status(VIRTIO_BLK_S_IOERR)
            }
        }
    }

    fn flush(&mut self) -> Completion {
        if self.read_only {
            return Completion::status(VIRTIO_BLK_S_OK);
        }
        // fdatasync: a raw image's metadata (its size) never changes under the guest.
        match self.image.sync_data() {
            Ok(()) => Completion::status(VIRTIO_BLK_S_OK),
            Err(source) => {
                self.record(DeviceError::Io {
                    what: "virtio-blk flush (fdatasync of the image)".into(),
                    source,
                });
                Completion::status(VIRTIO_BLK_S_IOERR)
            }
        }
    }
}

/// Rejects chains with no place for the status byte: empty, cut short (a loop, longer than
/// the queue, a next index past the table, a descriptor outside memory) or ending in a
/// read-only or empty descriptor.
fn check_chain_shape(chain: DescriptorChain<&DmaMemory>) -> Result<(), DeviceError> {
    let bad = |detail: &str| DeviceError::BadChain {
        queue: 0,
        detail: detail.to_string(),
    };
    // The iterator stops after queue-size descriptors, so this ends even for a loop.
    let Some(last) = chain.last() else {
        return Err(bad("head descriptor index is past the table or unreadable"));
    };
    if last.has_next() {
        return Err(bad(
            "chain does not end: it loops, exceeds the queue size, or names an unreadable descriptor",
        ));
    }
    if !last.is_write_only() {
        return Err(bad("status descriptor is not device-writable"));
    }
    if last.len() == 0 {
        return Err(bad("status descriptor has length 0"));
    }
    Ok(())
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        device_id::BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn offered_features(&self) -> u64 {
        let mut features = VIRTIO_F_VERSION_1
            | 1 << VIRTIO_BLK_F_SIZE_MAX
            | 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_FLUSH;
        if self.read_only {
            features |= 1 << VIRTIO_BLK_F_RO;
        }
        features
    }

    fn ack_features(&mut self, features: u64) {
        self.acked_features = features & self.offered_features();
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let config = self.config_bytes();
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = offset
                .checked_add(i as u64)
                .and_then(|at| usize::try_from(at).ok())
                .and_then(|at| config.get(at).copied())
                .unwrap_or(0);
        }
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // Every field runvm exposes is read-only (no writeback-cache toggle).
    }

    fn activate(&mut self, activation: Activation) -> Result<(), DeviceError> {
        let Some(queue) = activation.queues.into_iter().next() else {
            return Err(DeviceError::Activate(
                "virtio-blk needs its request queue".into(),
            ));
        };
        if !queue.is_valid(&activation.memory) {
            return Err(DeviceError::Activate(
                "virtio-blk request queue 0 is not enabled or its rings are outside the device's memory"
                    .into(),
            ));
        }
        self.active = Some(Active {
            memory: activation.memory,
            queue,
            interrupt: activation.interrupt,
        });
        Ok(())
    }

    fn queue_notify(&mut self, queue: u16) {
        if queue == 0 {
            self.process_queue();
        } else {
            self.record(DeviceError::BadChain {
                queue,
                detail: "virtio-blk has only queue 0".into(),
            });
        }
    }

    fn reset(&mut self) {
        self.active = None;
        self.acked_features = 0;
    }
}

/// Moves `len` bytes from image `offset` on in pieces of at most [`COPY_CHUNK`] through
/// `buf` (kept between requests so a request allocates nothing); `step` moves one piece.
fn in_chunks(
    buf: &mut Vec<u8>,
    len: usize,
    mut offset: u64,
    mut step: impl FnMut(&mut [u8], u64) -> Result<(), DeviceError>,
) -> Result<(), DeviceError> {
    let mut done = 0usize;
    while done < len {
        let n = (len - done).min(COPY_CHUNK);
        buf.resize(n, 0);
        step(buf, offset)?;
        done += n;
        offset += n as u64;
    }
    Ok(())
}
