//! The root bus: device slots, configuration mechanism #1 on the port bus, and the MMIO window
//! where the guest reaches BARs.
//!
//! The guest may move BARs (Linux sizes them, and reassigns those it dislikes), so the whole
//! window is one MMIO bus entry and the root looks up which BAR decodes an address. That
//! lookup uses a table rebuilt after every configuration write, so an MMIO access locks only
//! the device it reaches.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use super::config::{PciConfig, BAR_COUNT};
use super::{HostBridge, PciDevice};
use crate::devices::bus::PioDevice;
use crate::devices::mmio::MmioDevice;
use crate::error::VmError;

/// Device numbers on one bus (each with function 0 only).
pub const MAX_DEVICES: usize = 32;
/// conf1 address register: enable bit, then bus / device / function / register fields.
const CONFIG_ENABLE: u32 = 1 << 31;
const CONFIG_ADDRESS_MASK: u32 = 0x80ff_fffc;

/// One BAR as it decodes right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BarWindow {
    start: u64,
    size: u64,
    slot: usize,
    bar: usize,
}

fn bar_windows(slot: usize, config: &PciConfig) -> Vec<BarWindow> {
    if !config.memory_enabled() {
        return Vec::new();
    }
    (0..BAR_COUNT)
        .filter_map(|bar| {
            let start = config.bar_address(bar).filter(|a| *a != 0)?;
            Some(BarWindow {
                start,
                size: config.bar_size(bar),
                slot,
                bar,
            })
        })
        .collect()
}

/// PCI bus 0 with its devices.
pub struct PciRoot {
    slots: Vec<Mutex<Box<dyn PciDevice>>>,
    decode: RwLock<Vec<BarWindow>>,
    /// Guest physical base of the MMIO window this root is mapped at.
    window_base: u64,
    window_size: u64,
}

impl std::fmt::Debug for PciRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciRoot")
            .field("devices", &self.slots.len())
            .field("window_base", &format_args!("{:#x}", self.window_base))
            .finish()
    }
}

impl PciRoot {
    /// A bus holding the host bridge at device 0, with BARs placed in
    /// `window_base..window_base+window_size`.
    pub fn new(window_base: u64, window_size: u64) -> Self {
        PciRoot {
            slots: vec![Mutex::new(Box::new(HostBridge::new()))],
            decode: RwLock::new(Vec::new()),
            window_base,
            window_size,
        }
    }

    pub fn window(&self) -> (u64, u64) {
        (self.window_base, self.window_size)
    }

    fn lock(&self, slot: usize) -> Option<MutexGuard<'_, Box<dyn PciDevice>>> {
        self.slots
            .get(slot)
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Plugs `device` into the next free slot, places its BARs after those already placed
    /// (naturally aligned, as firmware would) and returns its device number.
    pub fn add(&mut self, mut device: Box<dyn PciDevice>) -> Result<u8, VmError> {
        let slot = self.slots.len();
        if slot >= MAX_DEVICES {
            return Err(VmError::Config(format!(
                "PCI device {slot}: bus 0 has room for {} devices after the host bridge",
                MAX_DEVICES - 1
            )));
        }
        let mut next = self.first_free_address();
        for bar in 0..BAR_COUNT {
            let size = device.config().bar_size(bar);
            if size == 0 {
                continue;
            }
            let start = next.next_multiple_of(size);
            let end = start + size;
            if end > self.window_base + self.window_size {
                return Err(VmError::Config(format!(
                    "PCI device {slot} BAR {bar} of {size:#x} bytes: the MMIO window \
                     {:#x}+{:#x} is full",
                    self.window_base, self.window_size
                )));
            }
            // 32-bit BARs: a window reaching above 4 GiB is refused here.
            let start32 = u32::try_from(start)
                .map_err(|_| VmError::Config(format!("PCI BAR at {start:#x} is above 4 GiB")))?;
            device.config_mut().set_bar_address(bar, start32);
            next = end;
        }
        self.slots.push(Mutex::new(device));
        self.refresh_all();
        Ok(slot as u8)
    }

    fn first_free_address(&self) -> u64 {
        let mut next = self.window_base;
        for slot in 0..self.slots.len() {
            if let Some(device) = self.lock(slot) {
                let config = device.config();
                for bar in 0..BAR_COUNT {
                    if let Some(start) = config.bar_address(bar) {
                        next = next.max(start + config.bar_size(bar));
                    }
                }
            }
        }
        next
    }

    fn refresh_all(&self) {
        for slot in 0..self.slots.len() {
            if let Some(device) = self.lock(slot) {
                self.refresh(slot, device.config());
            }
        }
    }

    /// Rebuilds the decode entries of `slot` (called with that slot's lock held).
    fn refresh(&self, slot: usize, config: &PciConfig) {
        let mut decode = self.decode.write().unwrap_or_else(PoisonError::into_inner);
        decode.retain(|w| w.slot != slot);
        decode.extend(bar_windows(slot, config));
    }

    /// A configuration read of `data.len()` bytes at register `offset` of bus/device/function.
    /// Absent functions read all ones (vendor id 0xffff: "nothing here").
    pub fn config_read(&self, bus: u8, device: u8, function: u8, offset: usize, data: &mut [u8]) {
        match self.function(bus, device, function) {
            Some(slot) => match self.lock(slot) {
                Some(mut dev) => dev.config_read(offset, data),
                None => data.fill(0xff),
            },
            None => data.fill(0xff),
        }
    }

    /// A configuration write; writes to absent functions vanish.
    pub fn config_write(&self, bus: u8, device: u8, function: u8, offset: usize, data: &[u8]) {
        let Some(slot) = self.function(bus, device, function) else {
            return;
        };
        if let Some(mut dev) = self.lock(slot) {
            dev.config_write(offset, data);
            self.refresh(slot, dev.config());
        }
    }

    fn function(&self, bus: u8, device: u8, function: u8) -> Option<usize> {
        let slot = usize::from(device);
        (bus == 0 && function == 0 && slot < self.slots.len()).then_some(slot)
    }

    fn find_bar(&self, addr: u64) -> Option<BarWindow> {
        let decode = self.decode.read().unwrap_or_else(PoisonError::into_inner);
        decode
            .iter()
            .find(|w| addr >= w.start && addr - w.start < w.size)
            .copied()
    }
}

impl MmioDevice for PciRoot {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let addr = self.window_base.saturating_add(offset);
        match self.find_bar(addr) {
            Some(w) => match self.lock(w.slot) {
                Some(mut dev) => dev.bar_read(w.bar, addr - w.start, data),
                None => data.fill(0xff),
            },
            None => data.fill(0xff),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let addr = self.window_base.saturating_add(offset);
        if let Some(w) = self.find_bar(addr) {
            if let Some(mut dev) = self.lock(w.slot) {
                dev.bar_write(w.bar, addr - w.start, data);
            }
        }
    }
}

/// Configuration mechanism #1: the address register at 0xCF8 (dword accesses only; the
/// byte at 0xCF9 is the PC reset control register, 0xCFB the mechanism #2 enable) and the
/// data window at 0xCFC..0xCFF.
pub struct PciConfigPorts {
    root: Arc<PciRoot>,
    address: u32,
}

impl PciConfigPorts {
    pub fn new(root: Arc<PciRoot>) -> Self {
        PciConfigPorts { root, address: 0 }
    }

    /// The selected (bus, device, function, register + `byte`), if access is enabled and a
    /// `len`-byte access at data port byte `byte` stays inside the dword.
    fn target(&self, byte: usize, len: usize) -> Option<(u8, u8, u8, usize)> {
        if self.address & CONFIG_ENABLE == 0 || byte + len > 4 {
            return None;
        }
        let bus = (self.address >> 16) as u8;
        let device = ((self.address >> 11) & 0x1f) as u8;
        let function = ((self.address >> 8) & 0x7) as u8;
        let register = (self.address & 0xfc) as usize;
        Some((bus, device, function, register + byte))
    }
}

impl PioDevice for PciConfigPorts {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        match offset {
            0 if data.len() == 4 => data.copy_from_slice(&self.address.to_le_bytes()),
            4..=7 => match self.target(usize::from(offset - 4), data.len()) {
                Some((bus, dev, func, reg)) => self.root.config_read(bus, dev, func, reg, data),
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        match offset {
            0 if data.len() == 4 => {
                let value = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                self.address = value & CONFIG_ADDRESS_MASK;
            }
            4..=7 => {
                if let Some((bus, dev, func, reg)) =
                    self.target(usize::from(offset - 4), data.len())
                {
                    self.root.config_write(bus, dev, func, reg, data);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::{PciIdentity, BAR0, COMMAND, COMMAND_MEMORY};
    use super::*;

    /// (BAR, offset, bytes) of each BAR write a probe saw.
    type BarWrites = Arc<Mutex<Vec<(usize, u64, Vec<u8>)>>>;

    /// A function with one BAR that answers reads with the offset's low byte.
    struct Probe {
        config: PciConfig,
        writes: BarWrites,
    }

    impl Probe {
        fn new(bar_size: u64) -> (Self, BarWrites) {
            let mut config = PciConfig::new(&PciIdentity {
                vendor_id: 0x1af4,
                device_id: 0x1044,
                revision: 1,
                class: 0xff,
                subclass: 0,
                prog_if: 0,
                subsystem_vendor_id: 0x1af4,
                subsystem_id: 0x40,
            });
            config.add_memory_bar(0, bar_size).expect("bar");
            let writes = Arc::new(Mutex::new(Vec::new()));
            (
                Probe {
                    config,
                    writes: Arc::clone(&writes),
                },
                writes,
            )
        }
    }

    impl PciDevice for Probe {
        fn config(&self) -> &PciConfig {
            &self.config
        }
        fn config_mut(&mut self) -> &mut PciConfig {
            &mut self.config
        }
        fn config_write(&mut self, offset: usize, data: &[u8]) {
            self.config.write(offset, data);
        }
        fn bar_read(&mut self, _bar: usize, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
            self.writes
                .lock()
                .expect("log")
                .push((bar, offset, data.to_vec()));
        }
    }

    fn conf1_read32(ports: &mut PciConfigPorts, dev: u8, reg: u8) -> u32 {
        let address = CONFIG_ENABLE | u32::from(dev) << 11 | u32::from(reg);
        ports.write(0, &address.to_le_bytes());
        let mut word = [0u8; 4];
        ports.read(4, &mut word);
        u32::from_le_bytes(word)
    }

    fn conf1_write(ports: &mut PciConfigPorts, dev: u8, reg: u8, data: &[u8]) {
        let address = CONFIG_ENABLE | u32::from(dev) << 11 | u32::from(reg & !3);
        ports.write(0, &address.to_le_bytes());
        ports.write(4 + u16::from(reg & 3), data);
    }

    #[test]
    fn conf1_finds_the_host_bridge_and_devices_and_nothing_else() {
        let mut root = PciRoot::new(0xc000_0000, 0x1000_0000);
        let (probe, _) = Probe::new(0x1000);
        assert_eq!(root.add(Box::new(probe)).expect("slot"), 1);
        let mut ports = PciConfigPorts::new(Arc::new(root));
        assert_eq!(conf1_read32(&mut ports, 0, 0), 0x0008_1b36);
        assert_eq!(
            conf1_read32(&mut ports, 0, 8) >> 16,
            0x0600,
            "host bridge class"
        );
        assert_eq!(conf1_read32(&mut ports, 1, 0), 0x1044_1af4);
        assert_eq!(conf1_read32(&mut ports, 2, 0), u32::MAX, "empty slot");
        // The address register reads back (Linux's conf1 probe checks this).
        let mut word = [0u8; 4];
        ports.read(0, &mut word);
        assert_eq!(u32::from_le_bytes(word), CONFIG_ENABLE | 2 << 11);
        // Function 1 and bus 1 are empty.
        ports.write(0, &(CONFIG_ENABLE | 1 << 11 | 1 << 8).to_le_bytes());
        ports.read(4, &mut word);
        assert_eq!(word, [0xff; 4]);
        ports.write(0, &(CONFIG_ENABLE | 1 << 16 | 1 << 11).to_le_bytes());
        ports.read(4, &mut word);
        assert_eq!(word, [0xff; 4]);
        // With the enable bit clear nothing is selected.
        ports.write(0, &(1u32 << 11).to_le_bytes());
        ports.read(4, &mut word);
        assert_eq!(word, [0xff; 4]);
    }

    #[test]
    fn conf1_sub_dword_accesses_use_the_data_port_offset() {
        let mut root = PciRoot::new(0xc000_0000, 0x1000_0000);
        root.add(Box::new(Probe::new(0x1000).0)).expect("slot");
        let mut ports = PciConfigPorts::new(Arc::new(root));
        ports.write(0, &(CONFIG_ENABLE | 1 << 11).to_le_bytes());
        let mut half = [0u8; 2];
        ports.read(6, &mut half);
        assert_eq!(u16::from_le_bytes(half), 0x1044, "device id at 0xCFE");
        let mut byte = [0u8; 1];
        ports.read(7, &mut byte);
        assert_eq!(byte, [0x10]);
        // A word at 0xCFF would cross the dword: ignored.
        ports.read(7, &mut half);
        assert_eq!(half, [0xff; 2]);
        // Byte and word writes to the address register are not address writes.
        ports.write(3, &[1]);
        ports.write(0, &[0, 0]);
        let mut word = [0u8; 4];
        ports.read(0, &mut word);
        assert_eq!(u32::from_le_bytes(word), CONFIG_ENABLE | 1 << 11);
    }

    #[test]
    fn bars_are_placed_in_the_window_and_decode_only_with_memory_enabled() {
        let mut root = PciRoot::new(0xc000_0000, 0x10_0000);
        let (first, first_writes) = Probe::new(0x1000);
        let (second, second_writes) = Probe::new(0x8000);
        root.add(Box::new(first)).expect("slot 1");
        root.add(Box::new(second)).expect("slot 2");
        let root = Arc::new(root);
        let mut ports = PciConfigPorts::new(Arc::clone(&root));
        assert_eq!(conf1_read32(&mut ports, 1, BAR0 as u8), 0xc000_0000);
        assert_eq!(
            conf1_read32(&mut ports, 2, BAR0 as u8),
            0xc000_8000,
            "aligned"
        );
        // Decoding is off until the command register says otherwise.
        let mut word = [0u8; 4];
        root.read(0x8010, &mut word);
        assert_eq!(word, [0xff; 4]);
        conf1_write(&mut ports, 2, COMMAND as u8, &COMMAND_MEMORY.to_le_bytes());
        root.read(0x8010, &mut word);
        assert_eq!(word, [0x10; 4]);
        root.write(0x8020, &[5]);
        assert_eq!(
            *second_writes.lock().expect("log"),
            vec![(0, 0x20, vec![5])]
        );
        assert!(first_writes.lock().expect("log").is_empty());
        // The guest moves the BAR: the old address floats, the new one decodes.
        conf1_write(&mut ports, 2, BAR0 as u8, &0xc004_0000u32.to_le_bytes());
        root.read(0x8010, &mut word);
        assert_eq!(word, [0xff; 4]);
        root.read(0x4_0010, &mut word);
        assert_eq!(word, [0x10; 4]);
    }

    #[test]
    fn a_full_window_or_bus_is_refused() {
        let mut root = PciRoot::new(0xc000_0000, 0x1_0000);
        root.add(Box::new(Probe::new(0x8000).0)).expect("fits");
        root.add(Box::new(Probe::new(0x8000).0)).expect("fits");
        assert!(root.add(Box::new(Probe::new(0x1000).0)).is_err());
        let mut root = PciRoot::new(0xc000_0000, 0x1000_0000);
        for _ in 1..MAX_DEVICES {
            root.add(Box::new(Probe::new(0x1000).0)).expect("room");
        }
        assert!(root.add(Box::new(Probe::new(0x1000).0)).is_err());
    }
}
