//! virtio-blk against a driver that sends good and malformed requests.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use runvm_sandbox_vm::devices::virtio::block::{Block, MAX_REQUEST_BYTES, SEG_MAX, SIZE_MAX};
use runvm_sandbox_vm::devices::virtio::{device_id, VirtioDevice, VIRTIO_F_VERSION_1};
use runvm_sandbox_vm::dma;
use vm_memory::{GuestAddress, Permissions};

use crate::driver::{
    Driver, RecordingInterrupt, Seg, MEM_SIZE, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const T_DISCARD: u32 = 11;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;
const SECTOR: usize = 512;
/// Disk size in sectors for most tests.
const SECTORS: u64 = 64;

struct Rig {
    driver: Driver,
    device: Block,
    interrupt: Arc<RecordingInterrupt>,
    image: tempfile::NamedTempFile,
}

/// The byte at image offset `at` before any write: differs per sector and within it.
fn pattern(at: usize) -> u8 {
    ((at / SECTOR) as u8).wrapping_mul(31) ^ (at as u8)
}

fn image(sectors: u64) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp image");
    let bytes: Vec<u8> = (0..sectors as usize * SECTOR).map(pattern).collect();
    file.write_all(&bytes).expect("fill image");
    file
}

fn rig_with(image: tempfile::NamedTempFile, read_only: bool, queue_size: u16) -> Rig {
    let file = image.reopen().expect("reopen image");
    let mut device = Block::new(file, read_only, b"runvm-test-disk").expect("device");
    let driver = Driver::new(&[queue_size]);
    let interrupt = Arc::new(RecordingInterrupt::default());
    device.ack_features(device.offered_features());
    device
        .activate(driver.activation(interrupt.clone()))
        .expect("activate");
    Rig {
        driver,
        device,
        interrupt,
        image,
    }
}

fn rig(read_only: bool) -> Rig {
    rig_with(image(SECTORS), read_only, 256)
}

fn header(request_type: u32, sector: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&request_type.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    h
}

/// Addresses of one request's header, data and status buffers.
struct Request {
    head: u16,
    data: u64,
    status: u64,
}

impl Rig {
    fn header_buf(&mut self, request_type: u32, sector: u64) -> u64 {
        let addr = self.driver.alloc(16);
        self.driver.write_bytes(addr, &header(request_type, sector));
        addr
    }

    /// A well-formed request: header, one data buffer of `len` bytes (writable unless
    /// `data_readable`), status byte.
    fn request(
        &mut self,
        request_type: u32,
        sector: u64,
        len: u32,
        data_readable: bool,
    ) -> Request {
        let hdr = self.header_buf(request_type, sector);
        let data = self.driver.alloc(u64::from(len));
        let status = self.driver.alloc(1);
        self.driver.write_bytes(status, &[0xff]);
        let mut segs = vec![Seg::read(hdr, 16)];
        if len > 0 {
            segs.push(if data_readable {
                Seg::read(data, len)
            } else {
                Seg::write(data, len)
            });
        }
        segs.push(Seg::write(status, 1));
        let head = self.driver.add_chain(0, &segs);
        Request { head, data, status }
    }

    fn status(&self, request: &Request) -> u8 {
        self.driver.read_bytes(request.status, 1)[0]
    }

    fn last_used(&self) -> (u32, u32) {
        *self.driver.used(0).last().expect("a used entry")
    }

    fn notify(&mut self) {
        self.device.queue_notify(0);
    }

    /// A good read still works after whatever came before it.
    fn assert_still_serves(&mut self) {
        let used_before = self.driver.used(0).len();
        let req = self.request(T_IN, 3, SECTOR as u32, false);
        self.notify();
        assert_eq!(
            self.driver.used(0).len(),
            used_before + 1,
            "good request served"
        );
        assert_eq!(self.last_used(), (u32::from(req.head), SECTOR as u32 + 1));
        assert_eq!(self.status(&req), S_OK);
        let expected: Vec<u8> = (3 * SECTOR..4 * SECTOR).map(pattern).collect();
        assert_eq!(self.driver.read_bytes(req.data, SECTOR), expected);
    }
}

#[test]
fn config_space_and_features_describe_the_image() {
    let file = image(SECTORS).reopen().expect("reopen");
    let device = Block::new(file, true, b"id").expect("device");
    assert_eq!(device.device_type(), device_id::BLOCK);
    assert_eq!(device.queue_max_sizes().len(), 1);
    let features = device.offered_features();
    assert_ne!(features & VIRTIO_F_VERSION_1, 0);
    assert_ne!(
        features & (1 << 5),
        0,
        "VIRTIO_BLK_F_RO on a read-only disk"
    );
    assert_ne!(features & (1 << 9), 0, "VIRTIO_BLK_F_FLUSH");
    let mut config = [0u8; 16];
    device.read_config(0, &mut config);
    assert_eq!(
        u64::from_le_bytes(config[0..8].try_into().unwrap()),
        SECTORS
    );
    assert_eq!(
        u32::from_le_bytes(config[8..12].try_into().unwrap()),
        SIZE_MAX
    );
    assert_eq!(
        u32::from_le_bytes(config[12..16].try_into().unwrap()),
        SEG_MAX
    );
    // Unaligned and past-the-end reads.
    let mut two = [0xaa; 2];
    device.read_config(1, &mut two);
    assert_eq!(two, [config[1], config[2]]);
    device.read_config(u64::MAX, &mut two);
    assert_eq!(two, [0, 0]);

    let rw = Block::new(image(1).reopen().expect("reopen"), false, b"id").expect("device");
    assert_eq!(rw.offered_features() & (1 << 5), 0);
}

#[test]
fn reads_sectors_into_guest_buffers_and_interrupts() {
    let mut rig = rig(false);
    let req = rig.request(T_IN, 5, 3 * SECTOR as u32, false);
    rig.notify();
    assert_eq!(
        rig.last_used(),
        (u32::from(req.head), 3 * SECTOR as u32 + 1)
    );
    assert_eq!(rig.status(&req), S_OK);
    let expected: Vec<u8> = (5 * SECTOR..8 * SECTOR).map(pattern).collect();
    assert_eq!(rig.driver.read_bytes(req.data, 3 * SECTOR), expected);
    assert_eq!(rig.interrupt.queue_interrupts(), vec![0]);
    assert_eq!(rig.device.error_count(), 0);
}

#[test]
fn reads_into_scattered_buffers() {
    let mut rig = rig(false);
    let hdr = rig.header_buf(T_IN, 10);
    let a = rig.driver.alloc(100);
    let b = rig.driver.alloc(924);
    let status = rig.driver.alloc(1);
    rig.driver.add_chain(
        0,
        &[
            Seg::read(hdr, 16),
            Seg::write(a, 100),
            Seg::write(b, 924),
            Seg::write(status, 1),
        ],
    );
    rig.notify();
    assert_eq!(rig.driver.read_bytes(status, 1), [S_OK]);
    let expected: Vec<u8> = (10 * SECTOR..12 * SECTOR).map(pattern).collect();
    let mut got = rig.driver.read_bytes(a, 100);
    got.extend(rig.driver.read_bytes(b, 924));
    assert_eq!(got, expected);
}

#[test]
fn writes_reach_the_image_and_read_back() {
    let mut rig = rig(false);
    let req = rig.request(T_OUT, 7, 2 * SECTOR as u32, true);
    let data: Vec<u8> = (0..2 * SECTOR).map(|i| (i % 251) as u8).collect();
    rig.driver.write_bytes(req.data, &data);
    rig.notify();
    assert_eq!(rig.status(&req), S_OK);
    assert_eq!(rig.last_used(), (u32::from(req.head), 1));
    let mut on_disk = vec![0u8; 2 * SECTOR];
    rig.image
        .as_file()
        .read_exact_at(&mut on_disk, 7 * SECTOR as u64)
        .expect("read image");
    assert_eq!(on_disk, data);

    let back = rig.request(T_IN, 7, 2 * SECTOR as u32, false);
    rig.notify();
    assert_eq!(rig.status(&back), S_OK);
    assert_eq!(rig.driver.read_bytes(back.data, 2 * SECTOR), data);
}

#[test]
fn flush_get_id_and_unsupported_requests() {
    let mut rig = rig(false);
    let flush = rig.request(T_FLUSH, 0, 0, false);
    rig.notify();
    assert_eq!(rig.status(&flush), S_OK);

    let id = rig.request(T_GET_ID, 0, 20, false);
    rig.notify();
    assert_eq!(rig.status(&id), S_OK);
    assert_eq!(rig.last_used(), (u32::from(id.head), 21));
    let mut expected = b"runvm-test-disk".to_vec();
    expected.resize(20, 0);
    assert_eq!(rig.driver.read_bytes(id.data, 20), expected);

    let discard = rig.request(T_DISCARD, 0, 16, true);
    rig.notify();
    assert_eq!(rig.status(&discard), S_UNSUPP);
    assert_eq!(rig.last_used(), (u32::from(discard.head), 1));
    let odd = rig.request(0xdead_beef, 0, 0, false);
    rig.notify();
    assert_eq!(rig.status(&odd), S_UNSUPP);
    rig.assert_still_serves();
}

#[test]
fn open_uses_the_file_name_as_id_and_honours_read_only() {
    let file = image(4);
    let mut device = Block::open(file.path(), true).expect("open");
    assert_eq!(device.capacity_sectors(), 4);
    let mut config = [0u8; 8];
    device.read_config(0, &mut config);
    assert_eq!(u64::from_le_bytes(config), 4);
    device.reset();
    assert!(Block::open(&file.path().with_extension("missing"), true).is_err());
}

#[test]
fn out_of_range_and_oversized_requests_are_ioerr() {
    let mut rig = rig(false);
    // Last sector plus one past the end.
    let past_end = rig.request(T_IN, SECTORS - 1, 2 * SECTOR as u32, false);
    // A sector number whose byte offset overflows.
    let overflow = rig.request(T_IN, u64::MAX, SECTOR as u32, false);
    // Not a whole number of sectors.
    let partial = rig.request(T_IN, 0, 100, false);
    let write_past = rig.request(T_OUT, SECTORS, SECTOR as u32, true);
    rig.notify();
    for req in [&past_end, &overflow, &partial, &write_past] {
        assert_eq!(rig.status(req), S_IOERR);
    }
    // Nothing was copied into the guest for the failed reads.
    assert_eq!(rig.driver.read_bytes(past_end.data, 4), [0; 4]);
    rig.assert_still_serves();
}

#[test]
fn a_request_over_the_byte_cap_is_ioerr_even_inside_the_disk() {
    let big_sectors = (MAX_REQUEST_BYTES / 512) + 64;
    let file = tempfile::NamedTempFile::new().expect("temp");
    file.as_file()
        .set_len(big_sectors * 512)
        .expect("sparse image");
    let mut rig = rig_with(file, false, 256);
    let len = MAX_REQUEST_BYTES as u32 + SECTOR as u32;
    assert!(
        2 * u64::from(len) < MEM_SIZE,
        "both requests fit in guest RAM"
    );
    let req = rig.request(T_IN, 0, len, false);
    rig.notify();
    assert_eq!(rig.status(&req), S_IOERR);
    let ok = rig.request(T_IN, 0, MAX_REQUEST_BYTES as u32, false);
    rig.notify();
    assert_eq!(rig.status(&ok), S_OK);
}

#[test]
fn write_to_a_read_only_disk_is_ioerr_and_leaves_it_unchanged() {
    let mut rig = rig(true);
    let req = rig.request(T_OUT, 1, SECTOR as u32, true);
    rig.driver.write_bytes(req.data, &[0x5a; SECTOR]);
    rig.notify();
    assert_eq!(rig.status(&req), S_IOERR);
    let mut on_disk = vec![0u8; SECTOR];
    rig.image
        .as_file()
        .read_exact_at(&mut on_disk, SECTOR as u64)
        .expect("read image");
    let expected: Vec<u8> = (SECTOR..2 * SECTOR).map(pattern).collect();
    assert_eq!(on_disk, expected);
    let flush = rig.request(T_FLUSH, 0, 0, false);
    rig.notify();
    assert_eq!(rig.status(&flush), S_OK);
    rig.assert_still_serves();
}

#[test]
fn wrong_direction_data_buffers_are_ioerr() {
    let mut rig = rig(false);
    // IN whose data buffer is device-readable.
    let read_into_ro = rig.request(T_IN, 0, SECTOR as u32, true);
    // OUT whose data buffer is device-writable.
    let write_from_wo = rig.request(T_OUT, 0, SECTOR as u32, false);
    rig.notify();
    assert_eq!(rig.status(&read_into_ro), S_IOERR);
    assert_eq!(rig.status(&write_from_wo), S_IOERR);
    assert_eq!(rig.driver.read_bytes(read_into_ro.data, 8), [0; 8]);
    rig.assert_still_serves();
}

#[test]
fn short_header_is_ioerr() {
    let mut rig = rig(false);
    let hdr = rig.header_buf(T_IN, 0);
    let status = rig.driver.alloc(1);
    rig.driver
        .add_chain(0, &[Seg::read(hdr, 8), Seg::write(status, 1)]);
    // No readable header at all.
    let status2 = rig.driver.alloc(1);
    rig.driver.add_chain(0, &[Seg::write(status2, 1)]);
    rig.notify();
    assert_eq!(rig.driver.read_bytes(status, 1), [S_IOERR]);
    assert_eq!(rig.driver.read_bytes(status2, 1), [S_IOERR]);
    rig.assert_still_serves();
}

/// Chains with no usable status byte come back with length 0 and count as device errors.
fn assert_rejected(rig: &mut Rig, head: u16, errors_before: u64) {
    rig.notify();
    assert_eq!(rig.last_used(), (u32::from(head), 0));
    assert!(rig.device.error_count() > errors_before, "error counted");
    assert!(rig.device.last_error().is_some());
}

#[test]
fn read_only_or_empty_status_descriptor_is_rejected() {
    let mut rig = rig(false);
    let hdr = rig.header_buf(T_IN, 0);
    let data = rig.driver.alloc(SECTOR as u64);
    let status = rig.driver.alloc(1);
    rig.driver.write_bytes(status, &[0xee]);
    let head = rig.driver.add_chain(
        0,
        &[
            Seg::read(hdr, 16),
            Seg::write(data, SECTOR as u32),
            Seg::read(status, 1),
        ],
    );
    assert_rejected(&mut rig, head, 0);
    assert_eq!(
        rig.driver.read_bytes(status, 1),
        [0xee],
        "read-only byte untouched"
    );

    let errors = rig.device.error_count();
    let head = rig.driver.add_chain(
        0,
        &[
            Seg::read(hdr, 16),
            Seg::write(data, SECTOR as u32),
            Seg::write(status, 0),
        ],
    );
    assert_rejected(&mut rig, head, errors);
    rig.assert_still_serves();
}

#[test]
fn descriptor_loops_and_over_long_chains_are_rejected() {
    let mut rig = rig_with(image(SECTORS), false, 16);
    let hdr = rig.header_buf(T_IN, 0);
    let status = rig.driver.alloc(1);
    // 0 -> 1 -> 0 -> ...
    rig.driver.write_desc(0, 0, hdr, 16, VRING_DESC_F_NEXT, 1);
    rig.driver
        .write_desc(0, 1, status, 1, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0);
    rig.driver.push_avail(0, 0);
    assert_rejected(&mut rig, 0, 0);

    // Every descriptor of the table chained: longer than the queue allows.
    let errors = rig.device.error_count();
    for i in 0..16u16 {
        rig.driver.write_desc(
            0,
            i,
            status,
            1,
            VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
            (i + 1) % 16,
        );
    }
    rig.driver.push_avail(0, 4);
    assert_rejected(&mut rig, 4, errors);

    // A next index past the table.
    let errors = rig.device.error_count();
    rig.driver.write_desc(0, 2, hdr, 16, VRING_DESC_F_NEXT, 300);
    rig.driver.push_avail(0, 2);
    assert_rejected(&mut rig, 2, errors);

    // The driver's own descriptors restart at 0: overwrite the bad ones.
    rig.assert_still_serves();
}

#[test]
fn buffers_outside_guest_memory_or_huge_are_rejected() {
    let mut rig = rig(false);
    let hdr = rig.header_buf(T_IN, 0);
    let status = rig.driver.alloc(1);
    let outside = rig.driver.add_chain(
        0,
        &[
            Seg::read(hdr, 16),
            Seg::write(MEM_SIZE + 0x1000, SECTOR as u32),
            Seg::write(status, 1),
        ],
    );
    assert_rejected(&mut rig, outside, 0);

    let errors = rig.device.error_count();
    let huge = rig.driver.add_chain(
        0,
        &[
            Seg::read(hdr, 16),
            Seg::write(0x20_0000, u32::MAX),
            Seg::write(status, 1),
        ],
    );
    assert_rejected(&mut rig, huge, errors);

    // Header address wrapping around the address space.
    let errors = rig.device.error_count();
    let wrap = rig
        .driver
        .add_chain(0, &[Seg::read(u64::MAX - 4, 16), Seg::write(status, 1)]);
    assert_rejected(&mut rig, wrap, errors);

    // Descriptors whose lengths add up past 4 GiB.
    let errors = rig.device.error_count();
    let sum = rig.driver.add_chain(
        0,
        &[
            Seg::read(hdr, 16),
            Seg::write(0x20_0000, 0xffff_0000),
            Seg::write(0x20_0000, 0xffff_0000),
            Seg::write(status, 1),
        ],
    );
    assert_rejected(&mut rig, sum, errors);
    rig.assert_still_serves();
}

#[test]
fn bad_head_and_avail_indexes_do_not_stop_the_device() {
    let mut rig = rig_with(image(SECTORS), false, 16);
    // A head index past the table: no used slot can name it, so the entry is dropped.
    rig.driver.push_avail(0, 300);
    rig.notify();
    assert!(rig.driver.used(0).is_empty());
    assert!(rig.device.error_count() >= 1);
    rig.assert_still_serves();

    // An avail index more than a queue ahead of the device.
    let errors = rig.device.error_count();
    let good_idx = rig.driver.avail_idx(0);
    let used_before = rig.driver.used(0).len();
    rig.driver.set_avail_idx(0, good_idx.wrapping_add(100));
    rig.notify();
    assert_eq!(rig.driver.used(0).len(), used_before, "nothing served");
    assert!(rig.device.error_count() > errors);
    rig.driver.set_avail_idx(0, good_idx);
    rig.assert_still_serves();
}

#[test]
fn notifications_outside_the_active_queue_are_harmless() {
    let mut rig = rig(false);
    rig.device.queue_notify(1);
    rig.device.queue_notify(u16::MAX);
    assert_eq!(rig.device.error_count(), 2);
    assert!(rig.interrupt.queue_interrupts().is_empty());
    rig.assert_still_serves();

    // After reset the device no longer touches the queue.
    rig.device.reset();
    let req = rig.request(T_IN, 0, SECTOR as u32, false);
    rig.notify();
    assert_eq!(rig.status(&req), 0xff);
}

#[test]
fn activation_checks_the_queue() {
    let file = image(1).reopen().expect("reopen");
    let mut device = Block::new(file, false, b"x").expect("device");
    let driver = Driver::new(&[16]);
    let interrupt = Arc::new(RecordingInterrupt::default());
    let mut activation = driver.activation(interrupt.clone());
    activation.queues.clear();
    assert!(device.activate(activation).is_err());
    // Rings the device cannot reach through its (empty) confined DMA space.
    let activation = driver.activation_on(dma::confined(&driver.mem), interrupt);
    assert!(device.activate(activation).is_err());
}

#[test]
fn confined_dma_reaches_only_mapped_buffers() {
    let file = image(SECTORS).reopen().expect("reopen");
    let mut device = Block::new(file, false, b"x").expect("device");
    let mut driver = Driver::new(&[16]);
    let memory = dma::confined(&driver.mem);
    // Identity-map the rings and a window of data buffers, not the rest.
    for (addr, len) in driver.ring_ranges(0) {
        let perms = Permissions::ReadWrite;
        memory
            .iommu()
            .map(GuestAddress(addr), GuestAddress(addr), len, perms)
            .expect("map ring");
    }
    let window = driver.alloc(0x1000);
    memory
        .iommu()
        .map(
            GuestAddress(window),
            GuestAddress(window),
            0x1000,
            Permissions::ReadWrite,
        )
        .expect("map window");
    let interrupt = Arc::new(RecordingInterrupt::default());
    device
        .activate(driver.activation_on(memory, interrupt))
        .expect("activate");

    // Header, data and status inside the window: served.
    driver.write_bytes(window, &header(T_IN, 2));
    let (data, status) = (window + 0x100, window + 0x300);
    driver.add_chain(
        0,
        &[
            Seg::read(window, 16),
            Seg::write(data, SECTOR as u32),
            Seg::write(status, 1),
        ],
    );
    device.queue_notify(0);
    assert_eq!(driver.read_bytes(status, 1), [S_OK]);
    let expected: Vec<u8> = (2 * SECTOR..3 * SECTOR).map(pattern).collect();
    assert_eq!(driver.read_bytes(data, SECTOR), expected);

    // The data buffer outside the mapped window: a device error, nothing written there.
    let outside = driver.alloc(SECTOR as u64);
    let head = driver.add_chain(
        0,
        &[
            Seg::read(window, 16),
            Seg::write(outside, SECTOR as u32),
            Seg::write(status, 1),
        ],
    );
    device.queue_notify(0);
    assert_eq!(driver.used(0).last(), Some(&(u32::from(head), 0)));
    assert_eq!(driver.read_bytes(outside, 8), [0; 8]);
    assert_eq!(device.error_count(), 1);
}
