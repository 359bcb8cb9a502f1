//! The virtio-vsock packet (virtio 1.2 §5.10.6): a 44-byte little-endian header followed by
//! `len` payload bytes, and the reading/writing of packets from/into descriptor chains.
//!
//! Why not the `virtio-vsock` crate's `VsockPacket`: it needs the header and the payload each in
//! one contiguous host slice and fails otherwise, while a confined (IOMMU) address space may split
//! a guest buffer across pages that are not contiguous on the host. virtio-queue's
//! `Reader`/`Writer` walk any chain, so the header codec here is all that is left to write.

use std::io::{self, Read, Write};
use std::ops::Deref;

use thiserror::Error;
use virtio_queue::{DescriptorChain, Reader, Writer};
use vm_memory::GuestMemory;

/// The host's address on the vsock bus (VMADDR_CID_HOST).
pub const HOST_CID: u64 = 2;
/// Size of `struct virtio_vsock_hdr`.
pub const HEADER_SIZE: usize = 44;
/// The only socket type this device carries (VIRTIO_VSOCK_TYPE_STREAM).
pub const TYPE_STREAM: u16 = 1;
/// Largest payload the device accepts or produces in one packet; Linux's driver never exceeds
/// it (VIRTIO_VSOCK_MAX_PKT_BUF_SIZE), so a bigger `len` is malformed.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// VIRTIO_VSOCK_OP_* values.
pub mod op {
    pub const REQUEST: u16 = 1;
    pub const RESPONSE: u16 = 2;
    pub const RST: u16 = 3;
    pub const SHUTDOWN: u16 = 4;
    pub const RW: u16 = 5;
    pub const CREDIT_UPDATE: u16 = 6;
    pub const CREDIT_REQUEST: u16 = 7;
}

/// VIRTIO_VSOCK_SHUTDOWN_F_* flags of a SHUTDOWN packet.
pub mod shutdown {
    /// The sender will receive no more data.
    pub const RCV: u32 = 1;
    /// The sender will send no more data.
    pub const SEND: u32 = 2;
    pub const BOTH: u32 = RCV | SEND;
}

/// `struct virtio_vsock_hdr` in host byte order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

impl Header {
    pub fn from_bytes(bytes: &[u8; HEADER_SIZE]) -> Self {
        let u64_at = |at: usize| {
            let mut field = [0u8; 8];
            field.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(field)
        };
        let u32_at = |at: usize| {
            let mut field = [0u8; 4];
            field.copy_from_slice(&bytes[at..at + 4]);
            u32::from_le_bytes(field)
        };
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        Header {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            type_: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }

    pub fn to_bytes(self) -> [u8; HEADER_SIZE] {
        let mut bytes = [0u8; HEADER_SIZE];
        bytes[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        bytes[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        bytes[24..28].copy_from_slice(&self.len.to_le_bytes());
        bytes[28..30].copy_from_slice(&self.type_.to_le_bytes());
        bytes[30..32].copy_from_slice(&self.op.to_le_bytes());
        bytes[32..36].copy_from_slice(&self.flags.to_le_bytes());
        bytes[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        bytes[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        bytes
    }
}

/// Why a tx chain did not hold a packet.
#[derive(Debug, Error)]
pub enum PacketError {
    #[error("descriptor chain: {0}")]
    Chain(#[from] virtio_queue::Error),
    #[error("chain holds {available} readable bytes, less than the {HEADER_SIZE}-byte header")]
    ShortHeader { available: usize },
    #[error("header len {len} exceeds the {MAX_PAYLOAD}-byte payload limit")]
    Oversized { len: u32 },
    #[error("header len {len} but the chain holds only {available} payload bytes")]
    ShortPayload { len: u32, available: usize },
    #[error("copying the packet: {0}")]
    Copy(#[from] io::Error),
}

/// A packet the driver put on the tx queue, copied out of guest memory so a guest that rewrites
/// its buffer meanwhile cannot change what was checked.
#[derive(Debug)]
pub struct TxPacket {
    pub header: Header,
    pub payload: Vec<u8>,
}

/// Reads the packet in `chain` (its device-readable part).
pub fn read_tx<M, T>(memory: &M, chain: DescriptorChain<T>) -> Result<TxPacket, PacketError>
where
    M: GuestMemory,
    T: Deref,
    T::Target: GuestMemory + Sized,
{
    let mut reader: Reader<'_, _> = Reader::new(memory, chain)?;
    let available = reader.available_bytes();
    if available < HEADER_SIZE {
        return Err(PacketError::ShortHeader { available });
    }
    let mut raw = [0u8; HEADER_SIZE];
    reader.read_exact(&mut raw)?;
    let header = Header::from_bytes(&raw);
    let len = header.len;
    if len as usize > MAX_PAYLOAD {
        return Err(PacketError::Oversized { len });
    }
    let available = reader.available_bytes();
    if available < len as usize {
        return Err(PacketError::ShortPayload { len, available });
    }
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload)?;
    Ok(TxPacket { header, payload })
}

/// A driver-given rx buffer, ready to take one packet.
pub struct RxBuffer<'a, B> {
    writer: Writer<'a, B>,
}

impl<'a, B: vm_memory::bitmap::BitmapSlice> RxBuffer<'a, B> {
    /// Wraps the device-writable part of `chain`; `None` when it cannot hold even a header
    /// (the driver gave a useless buffer) or lies outside memory.
    pub fn new<M, T>(memory: &'a M, chain: DescriptorChain<T>) -> Option<Self>
    where
        M: GuestMemory,
        <M as GuestMemory>::Bitmap: vm_memory::bitmap::WithBitmapSlice<'a, S = B>,
        T: Deref,
        T::Target: GuestMemory + Sized,
    {
        let writer = Writer::new(memory, chain).ok()?;
        (writer.available_bytes() >= HEADER_SIZE).then_some(RxBuffer { writer })
    }

    /// How many payload bytes fit after the header.
    pub fn payload_room(&self) -> usize {
        (self.writer.available_bytes() - HEADER_SIZE).min(MAX_PAYLOAD)
    }

    /// Writes `header` (its `len` set to the payload's) and `payload`; returns the bytes used.
    pub fn fill(mut self, mut header: Header, payload: &[u8]) -> io::Result<u32> {
        header.len = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "payload over 4 GiB"))?;
        self.writer.write_all(&header.to_bytes())?;
        self.writer.write_all(payload)?;
        u32::try_from(self.writer.bytes_written())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet over 4 GiB"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_through_its_wire_form() {
        let header = Header {
            src_cid: 3,
            dst_cid: HOST_CID,
            src_port: 0x1234_5678,
            dst_port: 80,
            len: 9,
            type_: TYPE_STREAM,
            op: op::RW,
            flags: shutdown::BOTH,
            buf_alloc: 65536,
            fwd_cnt: 0xdead_beef,
        };
        let bytes = header.to_bytes();
        assert_eq!(&bytes[0..8], &3u64.to_le_bytes());
        assert_eq!(&bytes[30..32], &op::RW.to_le_bytes());
        assert_eq!(&bytes[40..44], &0xdead_beef_u32.to_le_bytes());
        assert_eq!(Header::from_bytes(&bytes), header);
    }
}
