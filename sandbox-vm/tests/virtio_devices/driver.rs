//! The guest driver side of split virtqueues, on real guest memory: lays out the rings with
//! virtio-queue's `MockSplitQueue`, writes descriptors (well-formed or not), publishes them in
//! the avail ring and reads back the used ring.

use std::sync::{Arc, Mutex};

use runvm_sandbox_vm::devices::virtio::{Activation, DeviceError, Interrupt};
use runvm_sandbox_vm::dma::{self, DmaMemory};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const VRING_DESC_F_NEXT: u16 = 1;
pub const VRING_DESC_F_WRITE: u16 = 2;

/// Guest RAM: big enough for a request over the device's per-request byte cap.
pub const MEM_SIZE: u64 = 64 << 20;
/// Each queue's rings live in their own 16 KiB slot from address 0.
const QUEUE_SLOT: u64 = 0x4000;
/// Data buffers are allocated upwards from here.
const DATA_START: u64 = 0x10_0000;

/// One buffer of a chain: guest address, length, device-writable or not.
#[derive(Clone, Copy, Debug)]
pub struct Seg {
    pub addr: u64,
    pub len: u32,
    pub writable: bool,
}

impl Seg {
    pub fn read(addr: u64, len: u32) -> Self {
        Self {
            addr,
            len,
            writable: false,
        }
    }

    pub fn write(addr: u64, len: u32) -> Self {
        Self {
            addr,
            len,
            writable: true,
        }
    }
}

/// Records every interrupt a device raises.
#[derive(Default)]
pub struct RecordingInterrupt {
    pub queues: Mutex<Vec<u16>>,
    pub configs: Mutex<usize>,
}

impl RecordingInterrupt {
    pub fn queue_interrupts(&self) -> Vec<u16> {
        self.queues.lock().expect("interrupt record").clone()
    }

    pub fn config_interrupts(&self) -> usize {
        *self.configs.lock().expect("interrupt record")
    }
}

impl Interrupt for RecordingInterrupt {
    fn notify_queue(&self, queue: u16) -> Result<(), DeviceError> {
        self.queues.lock().expect("interrupt record").push(queue);
        Ok(())
    }

    fn notify_config(&self) -> Result<(), DeviceError> {
        *self.configs.lock().expect("interrupt record") += 1;
        Ok(())
    }
}

/// Where one queue's rings are.
#[derive(Clone, Copy)]
struct Layout {
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
}

pub struct Driver {
    pub mem: GuestMemoryMmap,
    queues: Vec<Layout>,
    next_desc: Vec<u16>,
    next_data: u64,
}

impl Driver {
    /// Guest memory with one queue of each given size.
    pub fn new(queue_sizes: &[u16]) -> Self {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)])
            .expect("guest memory");
        // The mock lays out (and zeroes) the rings once; creating it again would zero the
        // indexes, so later ring accesses go straight to memory.
        let queues = queue_sizes
            .iter()
            .enumerate()
            .map(|(q, &size)| {
                let mock = MockSplitQueue::create(&mem, GuestAddress(q as u64 * QUEUE_SLOT), size);
                Layout {
                    size,
                    desc: mock.desc_table_addr().0,
                    avail: mock.avail_addr().0,
                    used: mock.used_addr().0,
                }
            })
            .collect();
        Self {
            mem,
            queues,
            next_desc: vec![0; queue_sizes.len()],
            next_data: DATA_START,
        }
    }

    /// The queues as the transport hands them over at DRIVER_OK, on `memory`.
    pub fn activation_on(
        &self,
        memory: DmaMemory,
        interrupt: Arc<RecordingInterrupt>,
    ) -> Activation {
        let queues = self
            .queues
            .iter()
            .map(|layout| {
                let mut queue = Queue::new(layout.size).expect("queue size");
                queue.set_size(layout.size);
                queue.set_desc_table_address(Some(layout.desc as u32), Some(0));
                queue.set_avail_ring_address(Some(layout.avail as u32), Some(0));
                queue.set_used_ring_address(Some(layout.used as u32), Some(0));
                queue.set_ready(true);
                queue
            })
            .collect();
        Activation {
            memory,
            queues,
            interrupt,
        }
    }

    /// Activation with the identity DMA space (no IOMMU).
    pub fn activation(&self, interrupt: Arc<RecordingInterrupt>) -> Activation {
        self.activation_on(dma::identity(&self.mem), interrupt)
    }

    /// Guest addresses of queue `queue`'s descriptor table, avail ring and used ring with their
    /// sizes in bytes.
    pub fn ring_ranges(&self, queue: usize) -> [(u64, usize); 3] {
        let layout = self.queues[queue];
        let size = usize::from(layout.size);
        [
            (layout.desc, 16 * size),
            (layout.avail, 6 + 2 * size),
            (layout.used, 6 + 8 * size),
        ]
    }

    /// A fresh zeroed data buffer of `len` bytes.
    pub fn alloc(&mut self, len: u64) -> u64 {
        let addr = self.next_data;
        self.next_data = (addr + len + 0xf) & !0xf;
        assert!(self.next_data <= MEM_SIZE, "test data does not fit in RAM");
        self.mem
            .write_slice(&vec![0u8; len as usize], GuestAddress(addr))
            .expect("zero buffer");
        addr
    }

    fn read_u16(&self, addr: u64) -> u16 {
        u16::from_le(self.mem.read_obj(GuestAddress(addr)).expect("ring in RAM"))
    }

    fn write_u16(&self, addr: u64, value: u16) {
        self.mem
            .write_obj(value.to_le(), GuestAddress(addr))
            .expect("ring in RAM");
    }

    /// Writes raw descriptor `index` of queue `queue`.
    pub fn write_desc(&self, queue: usize, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let layout = self.queues[queue];
        assert!(index < layout.size, "descriptor index inside the table");
        self.mem
            .write_obj(
                RawDescriptor::from(Descriptor::new(addr, len, flags, next)),
                GuestAddress(layout.desc + 16 * u64::from(index)),
            )
            .expect("descriptor table in RAM");
    }

    /// Publishes `head` in the avail ring (without checking it).
    pub fn push_avail(&self, queue: usize, head: u16) {
        let layout = self.queues[queue];
        let idx = self.avail_idx(queue);
        let slot = u64::from(idx % layout.size);
        self.write_u16(layout.avail + 4 + 2 * slot, head);
        self.set_avail_idx(queue, idx.wrapping_add(1));
    }

    pub fn avail_idx(&self, queue: usize) -> u16 {
        self.read_u16(self.queues[queue].avail + 2)
    }

    pub fn set_avail_idx(&self, queue: usize, idx: u16) {
        self.write_u16(self.queues[queue].avail + 2, idx);
    }

    /// Takes the next descriptors of the table for a well-formed chain over `segs` and
    /// publishes it; returns its head index.
    pub fn add_chain(&mut self, queue: usize, segs: &[Seg]) -> u16 {
        let size = self.queues[queue].size;
        let head = self.next_desc[queue];
        for (i, seg) in segs.iter().enumerate() {
            let index = (head + i as u16) % size;
            let last = i + 1 == segs.len();
            let mut flags = if seg.writable { VRING_DESC_F_WRITE } else { 0 };
            if !last {
                flags |= VRING_DESC_F_NEXT;
            }
            self.write_desc(queue, index, seg.addr, seg.len, flags, (index + 1) % size);
        }
        self.next_desc[queue] = (head + segs.len() as u16) % size;
        self.push_avail(queue, head);
        head
    }

    /// Every used-ring entry so far, as (head id, length).
    pub fn used(&self, queue: usize) -> Vec<(u32, u32)> {
        let layout = self.queues[queue];
        let count = self.read_u16(layout.used + 2);
        (0..count)
            .map(|i| {
                let slot = u64::from(i % layout.size);
                let elem: [u32; 2] = self
                    .mem
                    .read_obj(GuestAddress(layout.used + 4 + 8 * slot))
                    .expect("used ring in RAM");
                (u32::from_le(elem[0]), u32::from_le(elem[1]))
            })
            .collect()
    }

    pub fn read_bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.mem
            .read_slice(&mut buf, GuestAddress(addr))
            .expect("read guest memory");
        buf
    }

    pub fn write_bytes(&self, addr: u64, bytes: &[u8]) {
        self.mem
            .write_slice(bytes, GuestAddress(addr))
            .expect("write guest memory");
    }
}
