//! The MMIO bus: maps guest loads and stores outside RAM (KVM_EXIT_MMIO) to the device
//! owning that guest physical range.
//!
//! Hand-written for the same reason as the port bus (`super::bus`). Unlike the port bus its
//! devices take `&self` and lock what they need themselves: the PCI window is one entry
//! that fans out to many devices, and one vCPU's access to one device must not wait for
//! another vCPU's access to a different one.

use std::sync::Arc;

use crate::error::VmError;

/// A device reachable through memory-mapped I/O. `offset` is relative to the range's base.
pub trait MmioDevice: Send + Sync {
    fn read(&self, offset: u64, data: &mut [u8]);
    fn write(&self, offset: u64, data: &[u8]);
}

struct MmioEntry {
    base: u64,
    len: u64,
    device: Arc<dyn MmioDevice>,
}

impl MmioEntry {
    fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.len
    }
}

/// Devices by guest physical range; built once, then shared read-only by the vCPU threads.
#[derive(Default)]
pub struct MmioBus {
    entries: Vec<MmioEntry>,
}

impl std::fmt::Debug for MmioBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<_> = self
            .entries
            .iter()
            .map(|e| format!("{:#x}+{:#x}", e.base, e.len))
            .collect();
        f.debug_struct("MmioBus").field("ranges", &ranges).finish()
    }
}

impl MmioBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `device` at `base..base+len`; the range must not overlap another device.
    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        device: Arc<dyn MmioDevice>,
    ) -> Result<(), VmError> {
        let Some(end) = base.checked_add(len) else {
            return Err(VmError::MmioOverlap { base, len });
        };
        let overlaps = self
            .entries
            .iter()
            .any(|e| base < e.base + e.len && e.base < end);
        if len == 0 || overlaps {
            return Err(VmError::MmioOverlap { base, len });
        }
        self.entries.push(MmioEntry { base, len, device });
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<&MmioEntry> {
        self.entries.iter().find(|e| e.contains(addr))
    }

    /// A guest load at `addr`. Returns false (and reads all ones, like an unclaimed bus
    /// cycle) when no device owns the address.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some(entry) => {
                entry.device.read(addr - entry.base, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// A guest store at `addr`. Returns false when no device owns the address (dropped).
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some(entry) => {
                entry.device.write(addr - entry.base, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records writes and answers reads with the low byte of the offset.
    #[derive(Default)]
    struct Probe(Mutex<Vec<(u64, Vec<u8>)>>);

    impl MmioDevice for Probe {
        fn read(&self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&self, offset: u64, data: &[u8]) {
            self.0.lock().expect("probe").push((offset, data.to_vec()));
        }
    }

    #[test]
    fn routes_by_range_and_floats_elsewhere() {
        let probe = Arc::new(Probe::default());
        let mut bus = MmioBus::new();
        bus.insert(0xc000_0000, 0x1000, probe.clone())
            .expect("free range");
        assert!(bus.write(0xc000_0010, &[1, 2, 3, 4]));
        let mut word = [0u8; 4];
        assert!(bus.read(0xc000_0fff, &mut word));
        assert_eq!(word, [0xff; 4]);
        assert!(bus.read(0xc000_0020, &mut word));
        assert_eq!(word, [0x20; 4]);
        assert!(!bus.read(0xc000_1000, &mut word));
        assert_eq!(word, [0xff; 4]);
        assert!(!bus.write(0xbfff_ffff, &[0]));
        assert_eq!(
            *probe.0.lock().expect("log"),
            vec![(0x10, vec![1, 2, 3, 4])]
        );
    }

    #[test]
    fn rejects_overlapping_empty_and_wrapping_ranges() {
        let probe = Arc::new(Probe::default());
        let mut bus = MmioBus::new();
        bus.insert(0x1000, 0x1000, probe.clone()).expect("free");
        assert!(bus.insert(0x1fff, 2, probe.clone()).is_err());
        assert!(bus.insert(0x800, 0x801, probe.clone()).is_err());
        assert!(bus.insert(0x3000, 0, probe.clone()).is_err());
        assert!(bus.insert(u64::MAX, 2, probe.clone()).is_err());
        bus.insert(0x2000, 0x10, probe).expect("adjacent is fine");
    }
}
