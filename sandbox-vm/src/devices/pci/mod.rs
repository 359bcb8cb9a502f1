//! Conventional PCI: one root bus (bus 0) reached through configuration mechanism #1 (ports
//! 0xCF8/0xCFC), a host bridge at 00:00.0, and endpoint functions whose memory BARs live in
//! the 32-bit MMIO window. Interrupts are MSI-X only (no INTx pins, no _PRT needed).

pub mod config;
pub mod msix;
pub mod root;

pub use config::{PciConfig, PciIdentity};
pub use root::{PciConfigPorts, PciRoot};

/// A PCI function on the root bus.
pub trait PciDevice: Send {
    /// The function's configuration space, as the bus needs it for BAR decoding.
    fn config(&self) -> &PciConfig;
    /// The same, for the monitor's own setup (initial BAR placement).
    fn config_mut(&mut self) -> &mut PciConfig;
    /// A guest configuration read (`data.len()` bytes at `offset`).
    fn config_read(&mut self, offset: usize, data: &mut [u8]) {
        self.config().read(offset, data);
    }
    /// A guest configuration write.
    fn config_write(&mut self, offset: usize, data: &[u8]);
    /// A guest load from BAR `bar` at `offset` inside it.
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]);
    /// A guest store to BAR `bar` at `offset` inside it.
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]);
}

/// Red Hat's PCI vendor id, which QEMU also uses for its generic host bridge (device 0x0008).
const HOST_BRIDGE_VENDOR: u16 = 0x1b36;
const HOST_BRIDGE_DEVICE: u16 = 0x0008;
/// Class 06 (bridge), subclass 00 (host bridge).
const CLASS_BRIDGE: u8 = 0x06;

/// The host bridge at 00:00.0: a header and nothing else. Linux's conf1 sanity check looks for
/// a host bridge (or an Intel/Compaq device) on bus 0 before trusting the mechanism.
pub struct HostBridge {
    config: PciConfig,
}

impl HostBridge {
    pub fn new() -> Self {
        HostBridge {
            config: PciConfig::new(&PciIdentity {
                vendor_id: HOST_BRIDGE_VENDOR,
                device_id: HOST_BRIDGE_DEVICE,
                revision: 0,
                class: CLASS_BRIDGE,
                subclass: 0,
                prog_if: 0,
                subsystem_vendor_id: HOST_BRIDGE_VENDOR,
                subsystem_id: 0x1100,
            }),
        }
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for HostBridge {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
    }

    fn bar_read(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn bar_write(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
}
