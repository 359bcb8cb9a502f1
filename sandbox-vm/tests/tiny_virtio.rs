//! Tiny guests doing real I/O through virtio-blk, virtio-console and virtio-vsock on this
//! host's /dev/kvm: each drives its device like a minimal driver, reports on the serial port
//! and exits through the debug-exit port; the tests check both the guest's report and what
//! reached the host (image file, console sink, Unix socket).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use runvm_sandbox_vm::devices::virtio::block::Block;
use runvm_sandbox_vm::devices::virtio::console::Console;
use runvm_sandbox_vm::devices::virtio::vsock::Vsock;
use runvm_sandbox_vm::guest::virtio_io::{self as io, BLOCK_SECTOR, BLOCK_SHOWN};
use runvm_sandbox_vm::{
    ExitReason, GuestImage, IrqchipMode, SharedBuffer, VirtioDevice, Vm, VmConfig, VmOutcome,
};

mod support;

use support::kvm_usable;

/// Generous: each guest needs well under a second of emulated instructions, but the
/// machine is shared.
const LIMIT: Option<Duration> = Some(Duration::from_secs(20));
/// The device status a guest reads back after DRIVER_OK when nothing failed.
const DRIVER_READY: u8 = 0x0f;
/// virtio-blk status bytes.
const BLK_OK: u8 = 0;
const BLK_IOERR: u8 = 1;
/// vsock ops the host answers with.
const OP_RESPONSE: u8 = 2;
const OP_RST: u8 = 3;
const OP_RW: u8 = 5;

/// Runs `image` with `device` at 00:01.0; returns the outcome and the serial bytes.
fn run(device: Box<dyn VirtioDevice>, image: &GuestImage, what: &str) -> (VmOutcome, Vec<u8>) {
    run_with(&VmConfig::default(), device, image, what)
}

fn run_with(
    config: &VmConfig,
    device: Box<dyn VirtioDevice>,
    image: &GuestImage,
    what: &str,
) -> (VmOutcome, Vec<u8>) {
    let serial = SharedBuffer::new();
    let started = Instant::now();
    let vm = Vm::build_with_devices(config, image, Box::new(serial.clone()), vec![device])
        .expect("VM builds");
    let outcome = vm.run(LIMIT).expect("VM starts");
    println!(
        "{what}: {:?} in {:?} (guest exit after {:?})",
        outcome.reason,
        started.elapsed(),
        outcome.exit_after
    );
    (outcome, serial.contents())
}

/// Sector 0 of the test image: distinct from the guest's pattern, offset-dependent.
fn host_sector() -> Vec<u8> {
    (0..BLOCK_SECTOR).map(|i| (i * 13 + 1) as u8).collect()
}

/// A 4-sector image: sector 0 the host's pattern, the rest 0xee.
fn block_image(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let path = dir.join("disk.img");
    let mut contents = host_sector();
    contents.resize(4 * BLOCK_SECTOR, 0xee);
    std::fs::write(&path, &contents).expect("write image");
    (path, contents)
}

/// What the block guest should print for `statuses`: device status, '3' used, the three
/// request statuses, the first and last bytes of sector 0.
fn expected_block_report(statuses: [u8; 3]) -> Vec<u8> {
    let sector = host_sector();
    let mut report = vec![DRIVER_READY, b'3'];
    report.extend_from_slice(&statuses);
    report.extend_from_slice(&sector[..BLOCK_SHOWN]);
    report.extend_from_slice(&sector[BLOCK_SECTOR - BLOCK_SHOWN..]);
    report
}

#[test]
fn a_guest_reads_writes_and_flushes_through_virtio_blk() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, before) = block_image(dir.path());
    let block = Block::open(&path, false).expect("open image");
    let (outcome, serial) = run(Box::new(block), &io::long_mode_virtio_blk_io(0x31), "blk");
    assert_eq!(outcome.reason, ExitReason::DebugExit { status: 0x31 });
    assert_eq!(
        serial,
        expected_block_report([BLK_OK, BLK_OK, BLK_OK]),
        "device status, used index, IN/OUT/FLUSH status, sector 0 head and tail"
    );
    let after = std::fs::read(&path).expect("read image");
    let sector = |image: &[u8], n: usize| image[n * BLOCK_SECTOR..(n + 1) * BLOCK_SECTOR].to_vec();
    let written = usize::try_from(io::BLOCK_WRITTEN_SECTOR).expect("small");
    assert_eq!(sector(&after, written), io::block_write_pattern().to_vec());
    // Nothing else changed.
    for n in [0, 2, 3] {
        assert_eq!(sector(&after, n), sector(&before, n), "sector {n}");
    }
}

#[test]
fn a_read_only_virtio_blk_fails_the_guests_write_and_keeps_the_image() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, before) = block_image(dir.path());
    let block = Block::open(&path, true).expect("open image");
    let (outcome, serial) = run(
        Box::new(block),
        &io::long_mode_virtio_blk_io(0x32),
        "blk read-only",
    );
    assert_eq!(outcome.reason, ExitReason::DebugExit { status: 0x32 });
    assert_eq!(serial, expected_block_report([BLK_OK, BLK_IOERR, BLK_OK]));
    assert_eq!(std::fs::read(&path).expect("read image"), before);
}

#[test]
fn a_guest_writes_to_and_reads_from_virtio_console() {
    if !kvm_usable() {
        return;
    }
    let sink = SharedBuffer::new();
    let console = Console::new(Box::new(sink.clone()), None);
    let input = b"keys from host";
    assert_eq!(console.push_input(input), input.len());
    let message = b"hello from a tiny guest\n";
    let (outcome, serial) = run(
        Box::new(console),
        &io::long_mode_virtio_console_io(message, 0x33),
        "console",
    );
    assert_eq!(outcome.reason, ExitReason::DebugExit { status: 0x33 });
    assert_eq!(sink.contents(), message, "transmitq reached the sink");
    let mut expected = vec![DRIVER_READY, input.len() as u8];
    expected.extend_from_slice(input);
    expected.resize(2 + io::CONSOLE_RECEIVE_LEN as usize, 0);
    assert_eq!(serial, expected, "status, used length, receive buffer");
}

#[test]
fn a_console_guest_without_input_gives_up_waiting_and_says_so() {
    if !kvm_usable() {
        return;
    }
    let sink = SharedBuffer::new();
    let console = Console::new(Box::new(sink.clone()), None);
    let (outcome, serial) = run(
        Box::new(console),
        &io::long_mode_virtio_console_io(b"anyone?", 0x34),
        "console without input",
    );
    assert_eq!(
        outcome.reason,
        ExitReason::DebugExit {
            status: io::CONSOLE_RECEIVE_TIMEOUT
        }
    );
    assert_eq!(sink.contents(), b"anyone?");
    assert_eq!(serial, vec![DRIVER_READY]);
}

/// Accepts one connection on `listener`, reads `expect_len` bytes, answers `reply`, and
/// hands back what it read with the still-open stream (closing it early would make the
/// device tell the guest the host hung up).
fn serve_once(
    listener: UnixListener,
    expect_len: usize,
    reply: &'static [u8],
) -> JoinHandle<std::io::Result<(Vec<u8>, UnixStream)>> {
    std::thread::spawn(move || {
        listener.set_nonblocking(true)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(e);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut received = vec![0u8; expect_len];
        stream.read_exact(&mut received)?;
        stream.write_all(reply)?;
        Ok((received, stream))
    })
}

#[test]
fn a_guest_connects_to_a_host_socket_through_vsock_and_exchanges_data() {
    if !kvm_usable() {
        return;
    }
    // The worker thread signals used buffers through an irqfd or, without an irqchip, not
    // at all: the polling guest must get through either way.
    for irqchip in [IrqchipMode::Auto, IrqchipMode::Off] {
        let dir = tempfile::tempdir().expect("temp dir");
        let uds = dir.path().join("vsock.sock");
        let port = 5000;
        let listener = UnixListener::bind(dir.path().join(format!("vsock.sock_{port}")))
            .expect("listen for the guest");
        let payload = b"hello host, from the guest";
        let reply: &'static [u8] = b"pong!";
        let host = serve_once(listener, payload.len(), reply);
        let vsock = Vsock::new(3, &uds).expect("vsock device");
        let config = VmConfig {
            irqchip,
            ..VmConfig::default()
        };
        let (outcome, serial) = run_with(
            &config,
            Box::new(vsock),
            &io::long_mode_vsock_connect(3, port, payload, 0x35),
            &format!("vsock {irqchip:?}"),
        );
        let (received, _stream) = host.join().expect("host thread").expect("host side");
        assert_eq!(outcome.reason, ExitReason::DebugExit { status: 0x35 });
        assert_eq!(
            received, payload,
            "the guest's RW payload reached the socket"
        );
        let mut expected = vec![DRIVER_READY, OP_RESPONSE, OP_RW, reply.len() as u8];
        expected.extend_from_slice(reply);
        expected.resize(4 + io::VSOCK_REPLY_SHOWN as usize, 0);
        assert_eq!(serial, expected, "status, RESPONSE, then the host's reply");
    }
}

#[test]
fn a_guest_connecting_to_a_port_nobody_listens_on_gets_reset() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let vsock = Vsock::new(3, dir.path().join("vsock.sock")).expect("vsock device");
    let (outcome, serial) = run(
        Box::new(vsock),
        &io::long_mode_vsock_connect(3, 5001, b"lost", 0x36),
        "vsock refused",
    );
    assert_eq!(outcome.reason, ExitReason::DebugExit { status: 0x36 });
    // The REQUEST is refused, and so is the RW sent anyway on a connection that never was.
    let mut expected = vec![DRIVER_READY, OP_RST, OP_RST, 0];
    expected.resize(4 + io::VSOCK_REPLY_SHOWN as usize, 0);
    assert_eq!(serial, expected);
}
