//! The virtio-blk device over a request queue the fuzzer writes: descriptor table, avail ring
//! (index and entries), the device's starting position, and the bytes of the buffers the
//! descriptors point at (headers, data); see `Input` for the byte layout. Addresses are mostly folded into guest RAM so
//! requests get parsed, with some left wild (outside RAM, wrapping).
//!
//! Beyond "never panics or hangs": the device never returns more chains than were published,
//! every used entry names a descriptor of the table, and it interrupts at most once per
//! notification.
#![no_main]

use std::fs::File;
use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use runvm_sandbox_vm::devices::virtio::block::Block;
use runvm_sandbox_vm::devices::virtio::{Activation, DeviceError, Interrupt, VirtioDevice};
use runvm_sandbox_vm::dma;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM_SIZE: u64 = 1 << 20;
const DESC_TABLE: u64 = 0;
const AVAIL_RING: u64 = 0x1000;
const USED_RING: u64 = 0x2000;
const BUFFERS: u64 = 0x4000;
const IMAGE_SECTORS: u64 = 64;

/// The input, in a plain byte layout so seeds can be written by hand (missing bytes read 0):
/// `[0]` log2 of the queue size (mod 9), `[1]` bit 0 read-only disk, `[2..4]` the device's
/// next_avail, `[4..6]` avail idx (LE), `[6]` notifications - 1 (mod 4), `[7]` descriptor
/// count, `[8]` avail entry count, then 16 bytes per descriptor (addr u64, len u32, flags u16,
/// next u16, LE), 2 bytes per avail entry, and the rest is copied to guest RAM at `BUFFERS`.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn byte(&self, at: usize) -> u8 {
        self.data.get(at).copied().unwrap_or(0)
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.byte(at), self.byte(at + 1)])
    }

    fn bytes(&self, at: usize, len: usize) -> Vec<u8> {
        (at..at + len).map(|i| self.byte(i)).collect()
    }

    fn tail(&self, at: usize) -> &'a [u8] {
        self.data.get(at..).unwrap_or(&[])
    }
}

/// Counts queue interrupts.
#[derive(Default)]
struct Counter(Mutex<usize>);

impl Interrupt for Counter {
    fn notify_queue(&self, _queue: u16) -> Result<(), DeviceError> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Ok(())
    }

    fn notify_config(&self) -> Result<(), DeviceError> {
        Ok(())
    }
}

/// One unlinked image file for the whole run; each input gets its own descriptor on it.
fn image() -> File {
    static IMAGE: OnceLock<File> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let file = tempfile::tempfile().expect("temp image");
            file.set_len(IMAGE_SECTORS * 512).expect("size image");
            file
        })
        .try_clone()
        .expect("dup image")
}

/// Top bit clear: an address in the buffer area; set: the raw value (outside RAM, near
/// u64::MAX). Buffers never overlap the rings: a guest may make the device write over its
/// own rings, but then the used ring checked below would be the guest's data.
fn fold_addr(addr: u64) -> u64 {
    if addr >> 63 == 0 {
        BUFFERS + addr % (MEM_SIZE - BUFFERS)
    } else {
        addr
    }
}

/// Top bit clear: a length up to 16 KiB; set: the raw value (up to 4 GiB).
fn fold_len(len: u32) -> u32 {
    if len >> 31 == 0 {
        len % 0x4000
    } else {
        len
    }
}

fuzz_target!(|data: &[u8]| {
    let input = Input { data };
    let size: u16 = 1 << (input.byte(0) % 9);
    let read_only = input.byte(1) & 1 == 1;
    let next_avail = input.u16_at(2);
    let avail_idx = input.u16_at(4);
    let notifies = usize::from(input.byte(6) % 4) + 1;
    let descs = usize::from(input.byte(7)).min(usize::from(size));
    let entries = usize::from(input.byte(8)).min(usize::from(size));
    let avail_at = 9 + 16 * descs;
    let buffers_at = avail_at + 2 * entries;

    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)])
        .expect("guest memory");
    let buffers = input.tail(buffers_at);
    let buffers = &buffers[..buffers.len().min((MEM_SIZE - BUFFERS) as usize)];
    mem.write_slice(buffers, GuestAddress(BUFFERS))
        .expect("buffers");
    for i in 0..descs {
        let raw = input.bytes(9 + 16 * i, 16);
        let addr = u64::from_le_bytes(raw[0..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes"));
        let mut desc = [0u8; 16];
        desc[0..8].copy_from_slice(&fold_addr(addr).to_le_bytes());
        desc[8..12].copy_from_slice(&fold_len(len).to_le_bytes());
        desc[12..16].copy_from_slice(&raw[12..16]);
        mem.write_slice(&desc, GuestAddress(DESC_TABLE + 16 * i as u64))
            .expect("descriptor");
    }
    mem.write_obj(avail_idx.to_le(), GuestAddress(AVAIL_RING + 2))
        .expect("avail idx");
    for i in 0..entries {
        let head = input.u16_at(avail_at + 2 * i);
        mem.write_obj(head.to_le(), GuestAddress(AVAIL_RING + 4 + 2 * i as u64))
            .expect("avail entry");
    }

    let mut queue = Queue::new(size).expect("power-of-two size");
    queue.set_size(size);
    queue.set_desc_table_address(Some(DESC_TABLE as u32), Some(0));
    queue.set_avail_ring_address(Some(AVAIL_RING as u32), Some(0));
    queue.set_used_ring_address(Some(USED_RING as u32), Some(0));
    queue.set_next_avail(next_avail);
    queue.set_ready(true);

    let mut device = Block::new(image(), read_only, b"fuzz").expect("device");
    device.ack_features(device.offered_features());
    let interrupt = Arc::new(Counter::default());
    let activation = Activation {
        memory: dma::identity(&mem),
        queues: vec![queue],
        interrupt: interrupt.clone(),
    };
    device.activate(activation).expect("rings are inside RAM");
    for _ in 0..notifies {
        device.queue_notify(0);
    }

    let published = avail_idx.wrapping_sub(next_avail);
    let used_idx: u16 = mem.read_obj(GuestAddress(USED_RING + 2)).expect("used idx");
    let used_idx = u16::from_le(used_idx);
    if published > size {
        assert_eq!(used_idx, 0, "served chains past an invalid avail index");
    } else {
        assert!(
            used_idx <= published,
            "{used_idx} used of {published} published"
        );
    }
    for slot in 0..used_idx.min(size) {
        let id: u32 = mem
            .read_obj(GuestAddress(USED_RING + 4 + 8 * u64::from(slot)))
            .expect("used id");
        assert!(
            u32::from_le(id) < u32::from(size),
            "used id {id} past the table"
        );
    }
    assert!(*interrupt.0.lock().unwrap_or_else(|e| e.into_inner()) <= notifies);
});
