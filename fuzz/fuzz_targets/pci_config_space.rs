//! The PCI root bus as the guest reaches it: conf1 ports on the port bus and the MMIO window on
//! the MMIO bus, wired the way the builder wires them, with a virtio-rng function at 00:01.0
//! and optionally a virtio-blk one at 00:02.0 (both virtio-pci, on 64 KiB of guest RAM). The
//! input is a sequence of guest accesses; see `Input` and `Op` for the byte layout.
//!
//! Beyond "never panics or hangs": every read fills its whole buffer; reads nobody claims
//! float to all ones (absent functions, disabled conf1, accesses crossing the data dword, the
//! MMIO window where no BAR decodes, addresses outside the window); and a device is only ever
//! told features it offered, VERSION_1 among them, before it is activated.
#![no_main]

use std::fs::File;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use libfuzzer_sys::fuzz_target;
use runvm_sandbox_vm::arch::x86_64::layout::{
    PCI_CONFIG_PORT, PCI_CONFIG_PORT_LEN, PCI_MMIO_SIZE, PCI_MMIO_START,
};
use runvm_sandbox_vm::devices::pci::config::{BAR0, COMMAND, COMMAND_BUS_MASTER, COMMAND_MEMORY};
use runvm_sandbox_vm::devices::pci::{PciConfigPorts, PciRoot};
use runvm_sandbox_vm::devices::virtio::block::Block;
use runvm_sandbox_vm::devices::virtio::pci::{
    VirtioPciDevice, BAR_SIZE, COMMON_OFFSET, NOTIFY_OFFSET, STATUS_ACKNOWLEDGE, STATUS_DRIVER,
    STATUS_DRIVER_OK, STATUS_FEATURES_OK,
};
use runvm_sandbox_vm::devices::virtio::rng::Rng;
use runvm_sandbox_vm::devices::virtio::{
    Activation, DeviceError, VirtioDevice, VIRTIO_F_VERSION_1,
};
use runvm_sandbox_vm::devices::{MmioBus, PioBus};
use vm_memory::{GuestAddress, GuestMemoryMmap};

const MEM_SIZE: usize = 64 << 10;
const IMAGE_SECTORS: u64 = 16;
const CONF1_ENABLE: u32 = 1 << 31;
/// What the conf1 address register keeps of a write (bus, device, function, dword register).
const CONF1_ADDRESS_MASK: u32 = 0x80ff_fffc;
/// Common configuration registers as (offset, width), in spec order.
const COMMON_REGS: [(u64, usize); 19] = [
    (0, 4),
    (4, 4),
    (8, 4),
    (12, 4),
    (16, 2),
    (18, 2),
    (20, 1),
    (21, 1),
    (22, 2),
    (24, 2),
    (26, 2),
    (28, 2),
    (30, 2),
    (32, 4),
    (36, 4),
    (40, 8),
    (44, 4),
    (48, 8),
    (52, 4),
];
const STATUS_REG: u64 = 20;

/// What the watched device was told since its last reset.
#[derive(Default)]
struct Watch {
    acked: Option<u64>,
}

/// A device model wrapped so the transport's calls into it are checked as they happen.
struct Watched {
    inner: Box<dyn VirtioDevice>,
    watch: Arc<Mutex<Watch>>,
}

impl Watched {
    fn watch(&self) -> std::sync::MutexGuard<'_, Watch> {
        self.watch.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl VirtioDevice for Watched {
    fn device_type(&self) -> u32 {
        self.inner.device_type()
    }
    fn queue_max_sizes(&self) -> &[u16] {
        self.inner.queue_max_sizes()
    }
    fn offered_features(&self) -> u64 {
        self.inner.offered_features()
    }
    fn ack_features(&mut self, features: u64) {
        let offered = self.inner.offered_features();
        assert_eq!(
            features & !offered,
            0,
            "acked {features:#x} of {offered:#x}"
        );
        assert_ne!(
            features & VIRTIO_F_VERSION_1,
            0,
            "acked {features:#x} without VERSION_1"
        );
        self.watch().acked = Some(features);
        self.inner.ack_features(features);
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        self.inner.read_config(offset, data);
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.inner.write_config(offset, data);
    }
    fn activate(&mut self, activation: Activation) -> Result<(), DeviceError> {
        assert!(
            self.watch().acked.is_some(),
            "DRIVER_OK without negotiated features"
        );
        self.inner.activate(activation)
    }
    fn queue_notify(&mut self, queue: u16) {
        self.inner.queue_notify(queue);
    }
    fn reset(&mut self) {
        self.watch().acked = None;
        self.inner.reset();
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

/// The input, read front to back (missing bytes read 0). `[0]`: bit 0 adds the virtio-blk
/// function, bit 1 makes its disk read-only, bit 2 turns on memory decoding and bus
/// mastering of both functions before the first op (what firmware would leave). Then ops,
/// each an opcode byte (mod 11) and its operands, until the input ends:
/// - 0 conf1 address: u32 written to 0xCF8 as a dword
/// - 1 port write: port 0xCF4 + (b & 15), width code, u32 value
/// - 2 port read: port byte, width code
/// - 3 config write: device (b & 3), register, width code, u32 value (sets 0xCF8, writes the data port)
/// - 4 config read: device, register, width code
/// - 5 MMIO write: target byte, u32 offset, width code, u64 value
/// - 6 MMIO read: target byte, u32 offset, width code
/// - 7 common config write: function (b & 1), register index, u64 value
/// - 8 status write: function, status byte
/// - 9 notify: function, queue byte, width code
/// - 10 driver init: function, feature byte, queue-size log2 byte (a whole reset .. DRIVER_OK
///   sequence with queue 0 placed inside RAM; feature byte bit 0 also accepts a feature the
///   device did not offer, bit 1 skips FEATURES_OK)
///
/// Width codes pick from 1, 2, 4, 8, 3 and 0 bytes (mod 6). MMIO targets (mod 4): 0 and 1
/// are BAR 0 of function 1 or 2 plus the offset mod 2 * BAR size (so past its end too), 2 is
/// the window base plus the offset, 3 is the raw offset (RAM and other unclaimed space).
struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    fn width(&mut self) -> usize {
        [1, 2, 4, 8, 3, 0][usize::from(self.byte() % 6)]
    }

    fn more(&self) -> bool {
        self.at < self.data.len()
    }
}

/// The machine: both buses, the root behind them, and what the harness remembers.
struct Machine {
    pio: PioBus,
    mmio: MmioBus,
    root: Arc<PciRoot>,
    functions: u8,
    /// The conf1 address register as the harness expects it.
    address: u32,
}

impl Machine {
    fn new(with_block: bool, read_only: bool) -> (Self, Vec<Arc<Mutex<Watch>>>) {
        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)])
            .expect("guest memory");
        let mut devices: Vec<Box<dyn VirtioDevice>> = vec![Box::new(Rng::new())];
        if with_block {
            devices.push(Box::new(
                Block::new(image(), read_only, b"fuzz").expect("block"),
            ));
        }
        let mut root = PciRoot::new(PCI_MMIO_START, PCI_MMIO_SIZE);
        let mut watches = Vec::new();
        for inner in devices {
            let watch = Arc::new(Mutex::new(Watch::default()));
            watches.push(Arc::clone(&watch));
            let watched = Box::new(Watched { inner, watch });
            let function = VirtioPciDevice::new(watched, memory.clone(), None).expect("function");
            root.add(Box::new(function)).expect("slot");
        }
        let functions = watches.len() as u8;
        let root = Arc::new(root);
        let mut pio = PioBus::new();
        pio.insert(
            PCI_CONFIG_PORT,
            PCI_CONFIG_PORT_LEN,
            Box::new(PciConfigPorts::new(Arc::clone(&root))),
        )
        .expect("conf1 ports");
        let mut mmio = MmioBus::new();
        mmio.insert(PCI_MMIO_START, PCI_MMIO_SIZE, root.clone())
            .expect("window");
        let machine = Machine {
            pio,
            mmio,
            root,
            functions,
            address: 0,
        };
        (machine, watches)
    }

    fn port_write(&mut self, port: u16, data: &[u8]) {
        let claimed = self.pio.write(port, data);
        let ours = (PCI_CONFIG_PORT..PCI_CONFIG_PORT + PCI_CONFIG_PORT_LEN).contains(&port);
        assert_eq!(claimed, ours, "port {port:#x} write claimed");
        if port == PCI_CONFIG_PORT && data.len() == 4 {
            let value = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            self.address = value & CONF1_ADDRESS_MASK;
        }
    }

    /// A port read twice over different fill patterns: a byte left untouched by both is one
    /// the bus did not fill.
    fn port_read(&mut self, port: u16, width: usize) -> Vec<u8> {
        let mut first = vec![0x5a; width];
        let claimed = self.pio.read(port, &mut first);
        let mut second = vec![0xa5; width];
        self.pio.read(port, &mut second);
        assert_filled(&first, &second, "port", u64::from(port));
        let ours = (PCI_CONFIG_PORT..PCI_CONFIG_PORT + PCI_CONFIG_PORT_LEN).contains(&port);
        assert_eq!(claimed, ours, "port {port:#x} read claimed");
        let floats = match port.wrapping_sub(PCI_CONFIG_PORT) {
            0 if width == 4 => {
                assert_eq!(first, self.address.to_le_bytes(), "conf1 address read back");
                false
            }
            byte @ 4..=7 => !self.selects_function(usize::from(byte - 4), width),
            _ => true,
        };
        if floats {
            assert!(
                first.iter().all(|b| *b == 0xff),
                "port {port:#x}: {first:x?}"
            );
        }
        first
    }

    /// Whether a data-port access of `width` bytes at byte `byte` reaches a present function.
    fn selects_function(&self, byte: usize, width: usize) -> bool {
        let bus = (self.address >> 16) & 0xff;
        let device = (self.address >> 11) & 0x1f;
        let function = (self.address >> 8) & 7;
        self.address & CONF1_ENABLE != 0
            && byte + width <= 4
            && bus == 0
            && function == 0
            && device <= u32::from(self.functions)
    }

    fn config_address(&mut self, device: u8, register: u8) {
        let address = CONF1_ENABLE | u32::from(device) << 11 | u32::from(register & 0xfc);
        self.port_write(PCI_CONFIG_PORT, &address.to_le_bytes());
    }

    /// The MMIO addresses BAR 0 of `device` decodes now, read the way the bus decides it.
    fn bar_window(&self, device: u8) -> Option<(u64, u64)> {
        let mut command = [0u8; 2];
        self.root.config_read(0, device, 0, COMMAND, &mut command);
        let mut bar = [0u8; 4];
        self.root.config_read(0, device, 0, BAR0, &mut bar);
        let start = u64::from(u32::from_le_bytes(bar) & !0xf);
        (u16::from_le_bytes(command) & COMMAND_MEMORY != 0 && start != 0)
            .then_some((start, BAR_SIZE))
    }

    fn decoded(&self, addr: u64) -> bool {
        let window = PCI_MMIO_START..PCI_MMIO_START + PCI_MMIO_SIZE;
        window.contains(&addr)
            && (1..=self.functions).any(|device| {
                self.bar_window(device)
                    .is_some_and(|(start, size)| addr >= start && addr - start < size)
            })
    }

    fn mmio_write(&mut self, addr: u64, data: &[u8]) {
        let claimed = self.mmio.write(addr, data);
        let window = PCI_MMIO_START..PCI_MMIO_START + PCI_MMIO_SIZE;
        assert_eq!(
            claimed,
            window.contains(&addr),
            "MMIO {addr:#x} write claimed"
        );
    }

    fn mmio_read(&mut self, addr: u64, width: usize) -> Vec<u8> {
        let mut first = vec![0x5a; width];
        let claimed = self.mmio.read(addr, &mut first);
        let mut second = vec![0xa5; width];
        self.mmio.read(addr, &mut second);
        assert_filled(&first, &second, "MMIO", addr);
        let window = PCI_MMIO_START..PCI_MMIO_START + PCI_MMIO_SIZE;
        assert_eq!(
            claimed,
            window.contains(&addr),
            "MMIO {addr:#x} read claimed"
        );
        if !self.decoded(addr) {
            assert!(
                first.iter().all(|b| *b == 0xff),
                "MMIO {addr:#x}: {first:x?}"
            );
        }
        first
    }

    /// BAR 0 of function `function` + 1 plus `offset`, wherever the guest left it.
    fn bar_address(&self, function: u8, offset: u64) -> u64 {
        let device = function % self.functions + 1;
        let mut bar = [0u8; 4];
        self.root.config_read(0, device, 0, BAR0, &mut bar);
        u64::from(u32::from_le_bytes(bar) & !0xf) + offset
    }

    fn common_write(&mut self, function: u8, register: u64, data: &[u8]) {
        let addr = self.bar_address(function, COMMON_OFFSET + register);
        self.mmio_write(addr, data);
    }

    fn common_read(&mut self, function: u8, register: u64, width: usize) -> u64 {
        let addr = self.bar_address(function, COMMON_OFFSET + register);
        let bytes = self.mmio_read(addr, width);
        let mut value = [0u8; 8];
        value[..width].copy_from_slice(&bytes);
        u64::from_le_bytes(value)
    }

    /// What a driver does from reset to DRIVER_OK, with queue 0 in RAM.
    fn driver_init(&mut self, function: u8, features: u8, size_log2: u8) {
        self.common_write(function, STATUS_REG, &[0]);
        self.common_write(function, STATUS_REG, &[STATUS_ACKNOWLEDGE]);
        self.common_write(function, STATUS_REG, &[STATUS_ACKNOWLEDGE | STATUS_DRIVER]);
        let mut offered = 0u64;
        for select in 0..2u32 {
            self.common_write(function, 0, &select.to_le_bytes());
            offered |= self.common_read(function, 4, 4) << (32 * select);
        }
        let mut accepted = offered;
        if features & 1 != 0 {
            accepted |= 1 << (features >> 2);
        }
        for select in 0..2u32 {
            self.common_write(function, 8, &select.to_le_bytes());
            let half = (accepted >> (32 * select)) as u32;
            self.common_write(function, 12, &half.to_le_bytes());
        }
        let mut status = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
        if features & 2 == 0 {
            status |= STATUS_FEATURES_OK;
            self.common_write(function, STATUS_REG, &[status]);
        }
        self.common_write(function, 22, &0u16.to_le_bytes());
        let size = 1u16 << (size_log2 % 10);
        self.common_write(function, 24, &size.to_le_bytes());
        for (register, area) in [(32u64, 0x1000u64), (40, 0x4000), (48, 0x6000)] {
            self.common_write(function, register, &area.to_le_bytes());
        }
        self.common_write(function, 28, &1u16.to_le_bytes());
        self.common_write(function, STATUS_REG, &[status | STATUS_DRIVER_OK]);
        let status = self.common_read(function, STATUS_REG, 1) as u8;
        let valid = accepted & !offered == 0;
        if status & STATUS_DRIVER_OK != 0 && self.bar_decodes(function) {
            assert!(
                valid,
                "DRIVER_OK with features {accepted:#x} of {offered:#x}"
            );
        }
    }

    /// Whether the status just read came from the function, not from a floating bus.
    fn bar_decodes(&self, function: u8) -> bool {
        self.decoded(self.bar_address(function, STATUS_REG))
    }
}

fn assert_filled(first: &[u8], second: &[u8], what: &str, at: u64) {
    for (i, (a, b)) in first.iter().zip(second).enumerate() {
        assert!(
            !(*a == 0x5a && *b == 0xa5),
            "{what} read at {at:#x}: byte {i} left unfilled"
        );
    }
}

fn value_bytes(value: u64, width: usize) -> Vec<u8> {
    value.to_le_bytes()[..width].to_vec()
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input { data, at: 0 };
    let flags = input.byte();
    let (mut machine, _watches) = Machine::new(flags & 1 != 0, flags & 2 != 0);
    if flags & 4 != 0 {
        for device in 1..=machine.functions {
            machine.config_address(device, COMMAND as u8);
            let command = COMMAND_MEMORY | COMMAND_BUS_MASTER;
            machine.port_write(PCI_CONFIG_PORT + 4, &command.to_le_bytes());
        }
    }
    // Bounded: every op takes at least its opcode byte.
    while input.more() {
        let op = input.byte() % 11;
        match op {
            0 => {
                let value = input.u32();
                machine.port_write(PCI_CONFIG_PORT, &value.to_le_bytes());
            }
            1 => {
                let port = PCI_CONFIG_PORT - 4 + u16::from(input.byte() & 15);
                let width = input.width();
                let value = input.u32();
                machine.port_write(port, &value_bytes(u64::from(value), width.min(4)));
            }
            2 => {
                let port = PCI_CONFIG_PORT - 4 + u16::from(input.byte() & 15);
                let width = input.width();
                machine.port_read(port, width.min(4));
            }
            3 => {
                let device = input.byte() & 3;
                let register = input.byte();
                let width = input.width().min(4);
                let value = input.u32();
                machine.config_address(device, register);
                let port = PCI_CONFIG_PORT + 4 + u16::from(register & 3);
                machine.port_write(port, &value_bytes(u64::from(value), width));
            }
            4 => {
                let device = input.byte() & 3;
                let register = input.byte();
                let width = input.width().min(4);
                machine.config_address(device, register);
                machine.port_read(PCI_CONFIG_PORT + 4 + u16::from(register & 3), width);
            }
            5 | 6 => {
                let write = op == 5;
                let target = input.byte();
                let offset = u64::from(input.u32());
                let width = input.width();
                let addr = match target % 4 {
                    0 | 1 => machine.bar_address(target % 4, offset % (2 * BAR_SIZE)),
                    2 => PCI_MMIO_START + offset,
                    _ => offset,
                };
                if write {
                    let value = input.u64();
                    machine.mmio_write(addr, &value_bytes(value, width));
                } else {
                    machine.mmio_read(addr, width);
                }
            }
            7 => {
                let function = input.byte() & 1;
                let (register, width) = COMMON_REGS[usize::from(input.byte()) % COMMON_REGS.len()];
                let value = input.u64();
                machine.common_write(function, register, &value_bytes(value, width));
            }
            8 => {
                let function = input.byte() & 1;
                let status = input.byte();
                machine.common_write(function, STATUS_REG, &[status]);
            }
            9 => {
                let function = input.byte() & 1;
                let queue = u64::from(input.byte());
                let width = input.width();
                let addr = machine.bar_address(function, NOTIFY_OFFSET + 4 * queue);
                machine.mmio_write(addr, &value_bytes(queue, width));
            }
            _ => {
                let function = input.byte() & 1;
                let features = input.byte();
                let size_log2 = input.byte();
                machine.driver_init(function, features, size_log2);
            }
        }
    }
});
