//! ACPI tables for a Linux guest: how kernels built without MP-table support (Debian's
//! cloud kernels) find their CPUs and the IO-APIC, and how `poweroff` reaches the monitor.
//!
//! The platform is "hardware-reduced" ACPI (no PM timer, no SCI, no legacy PIC setup): an
//! RSDP pointing at an XSDT listing a FADT (with a sleep control register on port
//! [`ACPI_SLEEP_PORT`]), a MADT (one local APIC per vCPU, the IO-APIC) and a DSDT that
//! declares the S5 (soft-off) sleep state, COM1 and the PCI host bridge (PCI0: bus 0, the
//! conf1 ports, the 32-bit MMIO window). The acpi_tables crate encodes them.
//!
//! PCI0 is a conventional PCI root (PNP0A03) reached through the 0xCF8/0xCFC ports only: no
//! MCFG/ECAM (the virtio capabilities all sit in the first 256 bytes) and no _PRT (devices
//! have no INTx pins; they interrupt with MSI-X, which the FADT leaves enabled).

use acpi_tables::aml::{
    AddressSpace as AmlAddressSpace, AddressSpaceCacheable, Device, EISAName, Interrupt, Name,
    Package, Path, ResourceTemplate, IO,
};
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{
    ACPI_END, ACPI_START, APIC_BASE, IOAPIC_BASE, PCI_CONFIG_PORT, PCI_CONFIG_PORT_LEN,
    PCI_MMIO_SIZE, PCI_MMIO_START,
};
use crate::devices::legacy::{SERIAL_IRQ, SERIAL_PORT, SERIAL_PORT_LEN};
use crate::error::VmError;

/// The port of the sleep control/status register (the S5 write powers the guest off).
pub const ACPI_SLEEP_PORT: u16 = 0x600;
/// The sleep type the DSDT gives S5; the guest writes it to bits 2..5 with SLP_EN (bit 5).
pub const S5_SLEEP_TYPE: u8 = 5;
pub const SLEEP_TYPE_SHIFT: u8 = 2;
pub const SLEEP_TYPE_MASK: u8 = 0x1c;
pub const SLEEP_ENABLE: u8 = 1 << 5;

const OEM_ID: [u8; 6] = *b"RUNVM ";
const OEM_TABLE_ID: [u8; 8] = *b"RUNVMVM ";
const OEM_REVISION: u32 = 1;
const DSDT_REVISION: u8 = 6;
/// FADT IA-PC boot architecture flags: no VGA (bit 2), no CMOS RTC (bit 5). Without the
/// latter Linux probes ports 0x70/0x71, which read as all ones here, for seconds.
const IAPC_BOOT_ARCH_NO_VGA: u16 = 1 << 2;
const IAPC_BOOT_ARCH_NO_CMOS_RTC: u16 = 1 << 5;
/// "MSI not supported": must stay clear, PCI devices interrupt only through MSI-X.
#[cfg(test)]
const IAPC_BOOT_ARCH_NO_MSI: u16 = 1 << 3;

fn to_bytes(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

fn dsdt() -> Vec<u8> {
    let mut dsdt = Sdt::new(
        *b"DSDT",
        36,
        DSDT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    let s5 = Name::new(Path::new("_S5_"), &Package::new(vec![&S5_SLEEP_TYPE]));
    dsdt.append_slice(&to_bytes(&s5));
    // COM1: a 16550 (PNP0501) at its legacy ports, edge-triggered active-high IRQ 4.
    let hid = Name::new(Path::new("_HID"), &EISAName::new("PNP0501"));
    let uid = Name::new(Path::new("_UID"), &0u8);
    let irq = Interrupt::new(true, true, false, false, SERIAL_IRQ);
    let ports = IO::new(SERIAL_PORT, SERIAL_PORT, 1, SERIAL_PORT_LEN as u8);
    let resources = ResourceTemplate::new(vec![&ports, &irq]);
    let crs = Name::new(Path::new("_CRS"), &resources);
    let com1 = Device::new(Path::new("_SB_.COM1"), vec![&hid, &uid, &crs]);
    dsdt.append_slice(&to_bytes(&com1));
    dsdt.append_slice(&pci_host_bridge());
    dsdt.as_slice().to_vec()
}

/// `Device (_SB.PCI0)`: the root bridge and the resources it decodes: bus 0, the conf1
/// ports, the rest of the port space as windows, and the MMIO window BARs are placed in.
fn pci_host_bridge() -> Vec<u8> {
    let hid = Name::new(Path::new("_HID"), &EISAName::new("PNP0A03"));
    let uid = Name::new(Path::new("_UID"), &0u8);
    let seg = Name::new(Path::new("_SEG"), &0u8);
    let bbn = Name::new(Path::new("_BBN"), &0u8);
    let buses = AmlAddressSpace::<u16>::new_bus_number(0, 0);
    let config_ports = IO::new(
        PCI_CONFIG_PORT,
        PCI_CONFIG_PORT,
        1,
        PCI_CONFIG_PORT_LEN as u8,
    );
    let io_low = AmlAddressSpace::<u16>::new_io(0, PCI_CONFIG_PORT - 1, None);
    let io_high =
        AmlAddressSpace::<u16>::new_io(PCI_CONFIG_PORT + PCI_CONFIG_PORT_LEN, 0xffff, None);
    let window_end = PCI_MMIO_START + PCI_MMIO_SIZE - 1;
    // The window sits below 4 GiB by construction (layout.rs): a DWord descriptor holds it.
    let mmio = AmlAddressSpace::<u32>::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        PCI_MMIO_START as u32,
        window_end as u32,
        None,
    );
    let resources = ResourceTemplate::new(vec![&buses, &config_ports, &io_low, &io_high, &mmio]);
    let crs = Name::new(Path::new("_CRS"), &resources);
    let pci0 = Device::new(Path::new("_SB_.PCI0"), vec![&hid, &uid, &seg, &bbn, &crs]);
    to_bytes(&pci0)
}

fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let sleep_reg = GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(ACPI_SLEEP_PORT),
    );
    let mut builder = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    builder.iapc_boot_arch = (IAPC_BOOT_ARCH_NO_VGA | IAPC_BOOT_ARCH_NO_CMOS_RTC).into();
    builder.sleep_control_reg = sleep_reg;
    builder.sleep_status_reg = sleep_reg;
    to_bytes(&builder.finalize())
}

fn madt(vcpus: u8) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(APIC_BASE),
    );
    for id in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    // The IO-APIC takes the first id after the CPUs; ISA IRQ n is its pin (GSI) n, which
    // is how KVM's in-kernel irqchip routes them.
    madt.add_structure(IoApic::new(vcpus, IOAPIC_BASE, 0));
    to_bytes(&madt)
}

/// Writes the tables for `vcpus` CPUs at [`ACPI_START`]; returns the RSDP address.
pub fn write(mem: &GuestMemoryMmap, vcpus: u8) -> Result<u64, VmError> {
    let align = |addr: u64| addr.next_multiple_of(16);
    let rsdp_addr = ACPI_START;
    let xsdt_addr = align(rsdp_addr + Rsdp::len() as u64);
    // The XSDT lists two tables: its 36-byte header plus two 8-byte pointers.
    let dsdt_addr = align(xsdt_addr + 36 + 16);
    let dsdt = dsdt();
    let fadt_addr = align(dsdt_addr + dsdt.len() as u64);
    let fadt = fadt(dsdt_addr);
    let madt_addr = align(fadt_addr + fadt.len() as u64);
    let madt = madt(vcpus);
    let end = madt_addr + madt.len() as u64;
    if end > ACPI_END {
        return Err(VmError::Config(format!(
            "vcpus {vcpus}: the ACPI tables end at {end:#x}, past {ACPI_END:#x}"
        )));
    }
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let rsdp = Rsdp::new(OEM_ID, xsdt_addr);
    for (addr, bytes) in [
        (rsdp_addr, to_bytes(&rsdp)),
        (xsdt_addr, to_bytes(&xsdt)),
        (dsdt_addr, dsdt),
        (fadt_addr, fadt),
        (madt_addr, madt),
    ] {
        mem.write_slice(&bytes, GuestAddress(addr))
            .map_err(|e| VmError::GuestMemory(format!("ACPI table at {addr:#x}: {e}")))?;
    }
    Ok(rsdp_addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum_ok(bytes: &[u8]) -> bool {
        bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b)) == 0
    }

    fn read_table(mem: &GuestMemoryMmap, addr: u64) -> Vec<u8> {
        let mut header = [0u8; 8];
        mem.read_slice(&mut header, GuestAddress(addr))
            .expect("header");
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut table = vec![0u8; len];
        mem.read_slice(&mut table, GuestAddress(addr))
            .expect("table");
        table
    }

    #[test]
    fn tables_chain_from_the_rsdp_and_checksum() {
        let mem = crate::vstate::memory::create_guest_memory(2 << 20).expect("memory");
        let rsdp_addr = write(&mem, 2).expect("tables fit");
        let mut rsdp = [0u8; 36];
        mem.read_slice(&mut rsdp, GuestAddress(rsdp_addr))
            .expect("rsdp");
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert!(checksum_ok(&rsdp[..20]) && checksum_ok(&rsdp));
        let xsdt_addr = u64::from_le_bytes(rsdp[24..32].try_into().expect("8 bytes"));
        let xsdt = read_table(&mem, xsdt_addr);
        assert_eq!(&xsdt[..4], b"XSDT");
        assert!(checksum_ok(&xsdt));
        let entries: Vec<u64> = xsdt[36..]
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let signatures: Vec<Vec<u8>> = entries
            .iter()
            .map(|a| read_table(&mem, *a)[..4].to_vec())
            .collect();
        assert_eq!(signatures, vec![b"FACP".to_vec(), b"APIC".to_vec()]);
        // FADT offset 109: IA-PC boot architecture flags.
        let fadt = read_table(&mem, entries[0]);
        let boot_arch = u16::from_le_bytes([fadt[109], fadt[110]]);
        assert_ne!(boot_arch & IAPC_BOOT_ARCH_NO_CMOS_RTC, 0);
        assert_eq!(boot_arch & IAPC_BOOT_ARCH_NO_MSI, 0, "MSI stays allowed");
        for addr in &entries {
            assert!(checksum_ok(&read_table(&mem, *addr)));
        }
        // The MADT: 44-byte header, two local APICs (8 bytes each), one IO-APIC (12 bytes).
        let madt = read_table(&mem, entries[1]);
        assert_eq!(madt.len(), 44 + 2 * 8 + 12);
        assert_eq!((madt[44], madt[44 + 3]), (0, 0), "type 0, APIC id 0");
        assert_eq!((madt[52], madt[52 + 3]), (0, 1), "type 0, APIC id 1");
        assert_eq!(
            (madt[60], madt[62]),
            (1, 2),
            "IO-APIC with the id after the CPUs"
        );
    }

    #[test]
    fn the_dsdt_declares_s5_and_com1() {
        let dsdt = dsdt();
        assert_eq!(&dsdt[..4], b"DSDT");
        assert!(checksum_ok(&dsdt));
        assert!(dsdt.windows(4).any(|w| w == b"_S5_"));
        assert!(dsdt.windows(4).any(|w| w == b"COM1"));
    }

    #[test]
    fn the_dsdt_declares_the_pci_root_with_its_windows() {
        let dsdt = dsdt();
        assert!(dsdt.windows(4).any(|w| w == b"PCI0"));
        // PNP0A03 as a compressed EISA id: 0x41d0 ("PNP") then 0x0a03.
        assert!(dsdt.windows(5).any(|w| w == [0x0c, 0x41, 0xd0, 0x0a, 0x03]));
        // The DWord memory descriptor (0x87) covering the MMIO window: its min and max
        // follow tag, length, type, flags, type flags and granularity (10 bytes).
        let mut window = PCI_MMIO_START.to_le_bytes()[..4].to_vec();
        window.extend_from_slice(&((PCI_MMIO_START + PCI_MMIO_SIZE - 1) as u32).to_le_bytes());
        let at = dsdt
            .windows(8)
            .position(|w| w == window.as_slice())
            .expect("MMIO window in _CRS");
        assert_eq!(dsdt[at - 10], 0x87, "DWord address space descriptor");
        // The conf1 ports: an IO descriptor (0x47) for 0xCF8, 8 ports.
        assert!(dsdt
            .windows(8)
            .any(|w| w == [0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08]));
    }
}
