//! A type-0 PCI configuration space (PCI Local Bus spec 3.0, 6.1): the 64-byte header, memory
//! BARs the guest can size and move, and a capability list in the rest of the 256 bytes.
//!
//! Every byte has a write mask, so a guest write changes only the bits the spec lets it
//! change; BAR sizing falls out of the mask (the low address bits of a BAR are read-only 0).

use thiserror::Error;

/// Bytes of conventional (non-extended) configuration space.
pub const CONFIG_SPACE_SIZE: usize = 256;
/// Header fields the bus and the devices use.
pub const VENDOR_ID: usize = 0x00;
pub const DEVICE_ID: usize = 0x02;
pub const COMMAND: usize = 0x04;
pub const STATUS: usize = 0x06;
pub const REVISION_ID: usize = 0x08;
pub const CLASS_PROG_IF: usize = 0x09;
pub const HEADER_TYPE: usize = 0x0e;
pub const BAR0: usize = 0x10;
pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
pub const SUBSYSTEM_ID: usize = 0x2e;
pub const CAPABILITIES_POINTER: usize = 0x34;
pub const INTERRUPT_LINE: usize = 0x3c;
pub const INTERRUPT_PIN: usize = 0x3d;
/// Command register: memory space decoding, bus mastering, INTx disable.
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status register: a capability list is present.
pub const STATUS_CAPABILITIES: u16 = 1 << 4;
pub const BAR_COUNT: usize = 6;
/// Capabilities live after the 64-byte header.
const FIRST_CAPABILITY: usize = 0x40;
/// BAR bits 3:0 say "32-bit, non-prefetchable memory" when 0; smaller BARs cannot exist.
const MIN_MEMORY_BAR: u32 = 16;

/// What the guest identifies a function by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciIdentity {
    pub vendor_id: u16,
    pub device_id: u16,
    pub revision: u8,
    /// Base class, subclass and programming interface (class code bytes 0x0b, 0x0a, 0x09).
    pub class: u8,
    pub subclass: u8,
    pub prog_if: u8,
    pub subsystem_vendor_id: u16,
    pub subsystem_id: u16,
}

/// Why a device model could not lay out its configuration space (a monitor bug, not guest
/// input: the guest cannot add BARs or capabilities).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("BAR {index}: size {size:#x} must be a power of two of at least 16 bytes")]
    BarSize { index: usize, size: u64 },
    #[error("BAR {index}: no such BAR slot or already in use")]
    BarSlot { index: usize },
    #[error("capability {id:#x} of {len} bytes does not fit in configuration space")]
    CapabilityRoom { id: u8, len: usize },
}

/// One function's configuration space.
#[derive(Clone)]
pub struct PciConfig {
    bytes: [u8; CONFIG_SPACE_SIZE],
    writable: [u8; CONFIG_SPACE_SIZE],
    /// Size of each memory BAR (0: not implemented).
    bar_sizes: [u32; BAR_COUNT],
    /// Where the next capability goes, and where the last one's "next" pointer is.
    next_capability: usize,
    last_next_pointer: usize,
}

impl std::fmt::Debug for PciConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciConfig")
            .field("vendor", &format_args!("{:#06x}", self.read_u16(VENDOR_ID)))
            .field("device", &format_args!("{:#06x}", self.read_u16(DEVICE_ID)))
            .field("bar_sizes", &self.bar_sizes)
            .finish()
    }
}

impl PciConfig {
    /// A header with `id`, no BARs, no capabilities and no interrupt pin.
    pub fn new(id: &PciIdentity) -> Self {
        let mut config = PciConfig {
            bytes: [0; CONFIG_SPACE_SIZE],
            writable: [0; CONFIG_SPACE_SIZE],
            bar_sizes: [0; BAR_COUNT],
            next_capability: FIRST_CAPABILITY,
            last_next_pointer: CAPABILITIES_POINTER,
        };
        config.set_u16(VENDOR_ID, id.vendor_id);
        config.set_u16(DEVICE_ID, id.device_id);
        config.bytes[REVISION_ID] = id.revision;
        config.bytes[CLASS_PROG_IF] = id.prog_if;
        config.bytes[CLASS_PROG_IF + 1] = id.subclass;
        config.bytes[CLASS_PROG_IF + 2] = id.class;
        config.set_u16(SUBSYSTEM_VENDOR_ID, id.subsystem_vendor_id);
        config.set_u16(SUBSYSTEM_ID, id.subsystem_id);
        let command_mask = COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE;
        config.writable[COMMAND..COMMAND + 2].copy_from_slice(&command_mask.to_le_bytes());
        // Cache line size and latency timer are plain read/write registers.
        config.writable[0x0c] = 0xff;
        config.writable[0x0d] = 0xff;
        config.writable[INTERRUPT_LINE] = 0xff;
        config
    }

    /// Declares BAR `index` as 32-bit non-prefetchable memory of `size` bytes.
    pub fn add_memory_bar(&mut self, index: usize, size: u64) -> Result<(), ConfigError> {
        if index >= BAR_COUNT || self.bar_sizes[index] != 0 {
            return Err(ConfigError::BarSlot { index });
        }
        let size32 = u32::try_from(size)
            .ok()
            .filter(|s| s.is_power_of_two() && *s >= MIN_MEMORY_BAR)
            .ok_or(ConfigError::BarSize { index, size })?;
        self.bar_sizes[index] = size32;
        let mask = !(size32 - 1);
        let at = BAR0 + 4 * index;
        self.writable[at..at + 4].copy_from_slice(&mask.to_le_bytes());
        Ok(())
    }

    /// Size of BAR `index` (0 when it is not implemented).
    pub fn bar_size(&self, index: usize) -> u64 {
        self.bar_sizes.get(index).map_or(0, |s| u64::from(*s))
    }

    /// The address BAR `index` decodes, if it is implemented.
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        if self.bar_size(index) == 0 {
            return None;
        }
        let raw = self.read_u32(BAR0 + 4 * index);
        Some(u64::from(raw & !0xf))
    }

    /// Places BAR `index` at `address` (the monitor's initial assignment, like firmware's).
    pub fn set_bar_address(&mut self, index: usize, address: u32) {
        if let Some(size) = self.bar_sizes.get(index).copied().filter(|s| *s != 0) {
            self.set_u32(BAR0 + 4 * index, address & !(size - 1));
        }
    }

    /// Whether the guest turned memory decoding on.
    pub fn memory_enabled(&self) -> bool {
        self.read_u16(COMMAND) & COMMAND_MEMORY != 0
    }

    /// Appends a capability with `id` and `body` (the bytes after the id and next pointer);
    /// `writable` gives the guest-writable bits of the body (shorter means read-only rest).
    /// Returns the capability's offset.
    pub fn add_capability(
        &mut self,
        id: u8,
        body: &[u8],
        writable: &[u8],
    ) -> Result<usize, ConfigError> {
        let at = self.next_capability;
        let len = 2 + body.len();
        if at + len > CONFIG_SPACE_SIZE {
            return Err(ConfigError::CapabilityRoom { id, len });
        }
        self.bytes[at] = id;
        self.bytes[at + 1] = 0;
        self.bytes[at + 2..at + len].copy_from_slice(body);
        for (mask, bits) in self.writable[at + 2..at + len].iter_mut().zip(writable) {
            *mask = *bits;
        }
        self.bytes[self.last_next_pointer] = at as u8;
        self.last_next_pointer = at + 1;
        // Capabilities are dword aligned.
        self.next_capability = (at + len).next_multiple_of(4);
        let status = self.read_u16(STATUS) | STATUS_CAPABILITIES;
        self.set_u16(STATUS, status);
        Ok(at)
    }

    /// The (offset, id) of each capability, following the list as a guest would. Stops at a
    /// loop or a pointer into the header, so it always ends.
    pub fn capabilities(&self) -> Vec<(usize, u8)> {
        let mut found = Vec::new();
        let mut at = usize::from(self.bytes[CAPABILITIES_POINTER]) & !3;
        while at >= FIRST_CAPABILITY && found.len() < CONFIG_SPACE_SIZE / 4 {
            if found.iter().any(|(seen, _)| *seen == at) {
                break;
            }
            found.push((at, self.bytes[at]));
            at = usize::from(self.bytes[at + 1]) & !3;
        }
        found
    }

    /// Whether a guest access of `len` bytes at `offset` is one the hardware would carry:
    /// 1, 2 or 4 bytes, naturally aligned, inside the space.
    pub fn valid_access(offset: usize, len: usize) -> bool {
        matches!(len, 1 | 2 | 4) && offset.is_multiple_of(len) && offset + len <= CONFIG_SPACE_SIZE
    }

    /// A guest read; invalid accesses read all ones.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        if Self::valid_access(offset, data.len()) {
            data.copy_from_slice(&self.bytes[offset..offset + data.len()]);
        } else {
            data.fill(0xff);
        }
    }

    /// A guest write: only writable bits change; invalid accesses are dropped. Returns
    /// whether the write was carried out.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> bool {
        if !Self::valid_access(offset, data.len()) {
            return false;
        }
        for (i, value) in data.iter().enumerate() {
            let mask = self.writable[offset + i];
            let old = self.bytes[offset + i];
            self.bytes[offset + i] = (old & !mask) | (value & mask);
        }
        true
    }

    pub fn read_u16(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self.bytes[offset], self.bytes[offset + 1]])
    }

    pub fn read_u32(&self, offset: usize) -> u32 {
        let mut word = [0u8; 4];
        word.copy_from_slice(&self.bytes[offset..offset + 4]);
        u32::from_le_bytes(word)
    }

    /// Monitor-side stores, past the write masks (read-only fields the device model owns).
    pub fn set_u16(&mut self, offset: usize, value: u16) {
        self.bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
    }

    pub fn set_u32(&mut self, offset: usize, value: u32) {
        self.bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> PciIdentity {
        PciIdentity {
            vendor_id: 0x1af4,
            device_id: 0x1044,
            revision: 1,
            class: 0xff,
            subclass: 0,
            prog_if: 0,
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x40,
        }
    }

    fn read32(config: &PciConfig, offset: usize) -> u32 {
        let mut word = [0u8; 4];
        config.read(offset, &mut word);
        u32::from_le_bytes(word)
    }

    #[test]
    fn the_header_shows_the_identity_and_ignores_writes_to_it() {
        let mut config = PciConfig::new(&identity());
        assert_eq!(read32(&config, 0), 0x1044_1af4);
        assert_eq!(read32(&config, 8), 0xff00_0001);
        assert!(config.write(0, &0u32.to_le_bytes()));
        assert_eq!(read32(&config, 0), 0x1044_1af4);
        assert_eq!(read32(&config, SUBSYSTEM_VENDOR_ID), 0x0040_1af4);
        // Only the command bits the model implements stick.
        assert!(config.write(COMMAND, &0xffffu16.to_le_bytes()));
        assert_eq!(
            config.read_u16(COMMAND),
            COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE
        );
        assert!(config.memory_enabled());
    }

    #[test]
    fn bar_sizing_reads_back_the_size_mask_and_restores() {
        let mut config = PciConfig::new(&identity());
        config.add_memory_bar(0, 0x8000).expect("bar");
        config.set_bar_address(0, 0xc000_0000);
        assert_eq!(config.bar_address(0), Some(0xc000_0000));
        config.write(BAR0, &u32::MAX.to_le_bytes());
        assert_eq!(
            read32(&config, BAR0),
            0xffff_8000,
            "size 32 KiB, memory, 32-bit"
        );
        config.write(BAR0, &0xd000_1234u32.to_le_bytes());
        assert_eq!(
            config.bar_address(0),
            Some(0xd000_0000),
            "low bits are read-only"
        );
        // Unimplemented BARs size to 0, i.e. "absent".
        config.write(BAR0 + 4, &u32::MAX.to_le_bytes());
        assert_eq!(read32(&config, BAR0 + 4), 0);
        assert_eq!(config.bar_address(1), None);
    }

    #[test]
    fn bad_bar_layouts_are_refused() {
        let mut config = PciConfig::new(&identity());
        assert!(config.add_memory_bar(0, 0x3000).is_err());
        assert!(config.add_memory_bar(0, 8).is_err());
        assert!(config.add_memory_bar(0, 1 << 32).is_err());
        assert!(config.add_memory_bar(6, 0x1000).is_err());
        config.add_memory_bar(2, 0x1000).expect("bar 2");
        assert!(config.add_memory_bar(2, 0x1000).is_err());
    }

    #[test]
    fn capabilities_chain_from_the_pointer_and_honour_write_masks() {
        let mut config = PciConfig::new(&identity());
        assert_eq!(config.read_u16(STATUS) & STATUS_CAPABILITIES, 0);
        assert!(config.capabilities().is_empty());
        let first = config
            .add_capability(0x11, &[0xaa, 0xbb, 1, 2, 3, 4, 5, 6, 7, 8], &[0, 0xc0])
            .expect("msix");
        let second = config.add_capability(0x09, &[14, 1], &[]).expect("vendor");
        assert_eq!((first, second), (0x40, 0x4c));
        assert_eq!(config.capabilities(), vec![(0x40, 0x11), (0x4c, 0x09)]);
        assert_ne!(config.read_u16(STATUS) & STATUS_CAPABILITIES, 0);
        config.write(first + 2, &0xffffu16.to_le_bytes());
        assert_eq!(
            config.read_u16(first + 2),
            0xfbaa,
            "only bits 14 and 15 changed"
        );
        // A guest cannot rewrite the chain.
        config.write(first, &0u16.to_le_bytes());
        assert_eq!(config.capabilities().len(), 2);
    }

    #[test]
    fn capabilities_that_do_not_fit_are_refused() {
        let mut config = PciConfig::new(&identity());
        assert!(config.add_capability(0x09, &[0; 180], &[]).is_ok());
        assert!(config.add_capability(0x09, &[0; 40], &[]).is_err());
    }

    #[test]
    fn odd_widths_and_unaligned_or_outside_accesses_are_ignored() {
        let mut config = PciConfig::new(&identity());
        let mut three = [0u8; 3];
        config.read(0, &mut three);
        assert_eq!(three, [0xff; 3]);
        let mut word = [0u8; 4];
        config.read(2, &mut word);
        assert_eq!(word, [0xff; 4]);
        config.read(254, &mut word);
        assert_eq!(word, [0xff; 4]);
        let mut eight = [0u8; 8];
        config.read(0, &mut eight);
        assert_eq!(eight, [0xff; 8]);
        assert!(!config.write(INTERRUPT_LINE + 1, &[1, 2]));
        assert!(!config.write(255, &[1, 2]));
        assert!(!config.write(0x100, &[1]));
        assert!(config.write(INTERRUPT_LINE, &[9]));
        assert_eq!(config.bytes[INTERRUPT_LINE], 9);
        assert_eq!(config.bytes[INTERRUPT_PIN], 0, "no INTx pin");
    }
}
