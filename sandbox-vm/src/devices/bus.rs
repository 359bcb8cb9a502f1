//! The port-I/O bus: maps guest `in`/`out` on a port to the device owning that range.
//!
//! Hand-written: the rust-vmm `vm-device` bus is not among the crates runvm builds on yet,
//! and port routing is a page of code.

use std::sync::Mutex;

use crate::error::VmError;

/// A device reachable through x86 port I/O. `offset` is relative to the device's base port.
pub trait PioDevice: Send {
    fn read(&mut self, offset: u16, data: &mut [u8]);
    fn write(&mut self, offset: u16, data: &[u8]);
}

struct BusEntry {
    base: u16,
    len: u16,
    device: Mutex<Box<dyn PioDevice>>,
}

impl BusEntry {
    fn end(&self) -> u32 {
        u32::from(self.base) + u32::from(self.len)
    }

    fn contains(&self, port: u16) -> bool {
        port >= self.base && u32::from(port) < self.end()
    }
}

/// Devices by port range. Built once, then shared read-only by all vCPU threads; each
/// device has its own lock so two vCPUs only contend on the same device.
#[derive(Default)]
pub struct PioBus {
    entries: Vec<BusEntry>,
}

impl std::fmt::Debug for PioBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<_> = self
            .entries
            .iter()
            .map(|e| format!("{:#x}+{}", e.base, e.len))
            .collect();
        f.debug_struct("PioBus").field("ranges", &ranges).finish()
    }
}

impl PioBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `device` at ports `base..base+len`; the range must not overlap another device.
    pub fn insert(
        &mut self,
        base: u16,
        len: u16,
        device: Box<dyn PioDevice>,
    ) -> Result<(), VmError> {
        let end = u32::from(base) + u32::from(len);
        let overlaps = self
            .entries
            .iter()
            .any(|e| u32::from(base) < e.end() && u32::from(e.base) < end);
        if len == 0 || end > 0x1_0000 || overlaps {
            return Err(VmError::PortOverlap { base, len });
        }
        self.entries.push(BusEntry {
            base,
            len,
            device: Mutex::new(device),
        });
        Ok(())
    }

    fn find(&self, port: u16) -> Option<&BusEntry> {
        self.entries.iter().find(|e| e.contains(port))
    }

    /// Guest `in` from `port`. Returns false (and reads all ones, like a floating ISA bus)
    /// when no device owns the port.
    pub fn read(&self, port: u16, data: &mut [u8]) -> bool {
        match self.find(port) {
            Some(entry) => {
                let mut device = entry.device.lock().unwrap_or_else(|e| e.into_inner());
                device.read(port - entry.base, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Guest `out` to `port`. Returns false when no device owns the port (write dropped).
    pub fn write(&self, port: u16, data: &[u8]) -> bool {
        match self.find(port) {
            Some(entry) => {
                let mut device = entry.device.lock().unwrap_or_else(|e| e.into_inner());
                device.write(port - entry.base, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    type WriteLog = Arc<Mutex<Vec<(u16, Vec<u8>)>>>;

    /// Records writes and answers reads with the offset.
    struct Probe(WriteLog);

    impl PioDevice for Probe {
        fn read(&mut self, offset: u16, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u16, data: &[u8]) {
            self.0.lock().expect("probe").push((offset, data.to_vec()));
        }
    }

    #[test]
    fn routes_by_range_with_offsets() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut bus = PioBus::new();
        bus.insert(0x3f8, 8, Box::new(Probe(Arc::clone(&log))))
            .expect("free range");
        assert!(bus.write(0x3fd, &[7]));
        let mut byte = [0u8];
        assert!(bus.read(0x3ff, &mut byte));
        assert_eq!(byte, [7]);
        assert!(!bus.write(0x400, &[1]));
        assert!(!bus.read(0x3f7, &mut byte));
        assert_eq!(byte, [0xff]);
        assert_eq!(*log.lock().expect("log"), vec![(5, vec![7])]);
    }

    #[test]
    fn rejects_overlaps_empty_and_wrapping_ranges() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut bus = PioBus::new();
        bus.insert(0x60, 5, Box::new(Probe(Arc::clone(&log))))
            .expect("free range");
        assert!(bus
            .insert(0x64, 1, Box::new(Probe(Arc::clone(&log))))
            .is_err());
        assert!(bus
            .insert(0x5f, 2, Box::new(Probe(Arc::clone(&log))))
            .is_err());
        assert!(bus
            .insert(0x10, 0, Box::new(Probe(Arc::clone(&log))))
            .is_err());
        assert!(bus
            .insert(0xffff, 2, Box::new(Probe(Arc::clone(&log))))
            .is_err());
        bus.insert(0x65, 1, Box::new(Probe(log)))
            .expect("adjacent is fine");
    }
}
