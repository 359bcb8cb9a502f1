//! The Intel MultiProcessor table: how a Linux guest without ACPI finds its CPUs, the
//! IO-APIC and which ISA interrupt goes to which IO-APIC pin.
//!
//! Hand-written: no rust-vmm crate builds MP tables (Firecracker and crosvm keep their own).
//! The layout is the one in the MultiProcessor Specification 1.4, chapter 4.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{APIC_BASE, IOAPIC_BASE, MPTABLE_START};
use crate::error::VmError;

/// Bytes available for the table: the EBDA kilobyte below 640 KiB.
const MPTABLE_ROOM: usize = 0x400;
const FLOATING_POINTER_LEN: usize = 16;
const HEADER_LEN: usize = 44;
const SPEC_REV_1_4: u8 = 4;
const LAPIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
/// IO-APIC input pins KVM's in-kernel IO-APIC has; ISA IRQ n goes to pin n.
const IOAPIC_PINS: u8 = 24;
/// CPU signature (family 6) and feature flags (FPU, on-chip APIC) in processor entries.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = (1 << 0) | (1 << 9);

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const CPU_ENABLED: u8 = 1 << 0;
const CPU_BOOTSTRAP: u8 = 1 << 1;
const INT_VECTORED: u8 = 0;
const INT_NMI: u8 = 1;
const INT_EXTINT: u8 = 3;
const ISA_BUS_ID: u8 = 0;
/// Destination LAPIC id meaning "every local APIC".
const ALL_LAPICS: u8 = 0xff;

/// The most vCPUs whose processor entries fit in [`MPTABLE_ROOM`].
pub fn max_vcpus() -> u8 {
    let fixed = FLOATING_POINTER_LEN + HEADER_LEN + 8 + 8 + 8 * usize::from(IOAPIC_PINS) + 16;
    ((MPTABLE_ROOM - fixed) / 20).min(254) as u8
}

/// Makes the bytes at `range` of `table` sum to zero (mod 256) by setting `table[at]`.
fn fix_checksum(table: &mut [u8], range: std::ops::Range<usize>, at: usize) {
    table[at] = 0;
    let sum = table[range].iter().fold(0u8, |acc, b| acc.wrapping_add(*b));
    table[at] = sum.wrapping_neg();
}

/// The floating pointer structure followed by the configuration table, for `vcpus` CPUs,
/// as placed at guest physical `base`.
pub fn build(vcpus: u8, base: u32) -> Result<Vec<u8>, VmError> {
    if vcpus == 0 || vcpus > max_vcpus() {
        return Err(VmError::Config(format!(
            "vcpus {vcpus}: the MP table has room for 1..={} CPUs",
            max_vcpus()
        )));
    }
    let ioapic_id = vcpus;
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for id in 0..vcpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BOOTSTRAP } else { 0 };
        entries.extend_from_slice(&[ENTRY_PROCESSOR, id, LAPIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_BUS, ISA_BUS_ID]);
    entries.extend_from_slice(b"ISA   ");
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, CPU_ENABLED]);
    entries.extend_from_slice(&IOAPIC_BASE.to_le_bytes());
    count += 2;
    for pin in 0..IOAPIC_PINS {
        // Flags 0: polarity and trigger mode "conform to the bus" (ISA: edge, active high).
        entries.extend_from_slice(&[ENTRY_IO_INTERRUPT, INT_VECTORED, 0, 0]);
        entries.extend_from_slice(&[ISA_BUS_ID, pin, ioapic_id, pin]);
        count += 1;
    }
    // The 8259 PIC reaches every LAPIC on LINT0 (virtual wire), NMIs on LINT1.
    for (kind, lint) in [(INT_EXTINT, 0u8), (INT_NMI, 1u8)] {
        entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, kind, 0, 0]);
        entries.extend_from_slice(&[ISA_BUS_ID, 0, ALL_LAPICS, lint]);
        count += 1;
    }

    let table_len = HEADER_LEN + entries.len();
    let mut table = Vec::with_capacity(FLOATING_POINTER_LEN + table_len);
    // Floating pointer: signature, table address, length in 16-byte units, revision.
    table.extend_from_slice(b"_MP_");
    table.extend_from_slice(&(base + FLOATING_POINTER_LEN as u32).to_le_bytes());
    table.extend_from_slice(&[1, SPEC_REV_1_4, 0, 0, 0, 0, 0, 0]);
    // Configuration table header.
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&(table_len as u16).to_le_bytes());
    table.extend_from_slice(&[SPEC_REV_1_4, 0]);
    table.extend_from_slice(b"RUNVM   ");
    table.extend_from_slice(b"RUNVM-MICRO ");
    table.extend_from_slice(&0u32.to_le_bytes()); // no OEM table
    table.extend_from_slice(&0u16.to_le_bytes());
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&APIC_BASE.to_le_bytes());
    table.extend_from_slice(&[0, 0, 0, 0]); // no extended table
    table.extend_from_slice(&entries);

    fix_checksum(&mut table, 0..FLOATING_POINTER_LEN, 10);
    let header = FLOATING_POINTER_LEN;
    fix_checksum(&mut table, header..header + table_len, header + 7);
    Ok(table)
}

/// Writes the MP table for `vcpus` CPUs at [`MPTABLE_START`].
pub fn write(mem: &GuestMemoryMmap, vcpus: u8) -> Result<(), VmError> {
    let table = build(vcpus, MPTABLE_START as u32)?;
    mem.write_slice(&table, GuestAddress(MPTABLE_START))
        .map_err(|e| VmError::GuestMemory(format!("MP table at {MPTABLE_START:#x}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
    }

    #[test]
    fn both_parts_checksum_to_zero_and_point_at_each_other() {
        let table = build(2, 0x9fc00).expect("2 vCPUs fit");
        assert_eq!(&table[..4], b"_MP_");
        assert_eq!(sum(&table[..16]), 0);
        let config = u32::from_le_bytes([table[4], table[5], table[6], table[7]]);
        assert_eq!(config, 0x9fc10);
        assert_eq!(&table[16..20], b"PCMP");
        let len = usize::from(u16::from_le_bytes([table[20], table[21]]));
        assert_eq!(16 + len, table.len());
        assert_eq!(sum(&table[16..]), 0);
    }

    #[test]
    fn one_processor_entry_per_vcpu_and_only_the_first_boots() {
        let table = build(3, 0x9fc00).expect("3 vCPUs fit");
        let entries = &table[16 + HEADER_LEN..];
        let cpus: Vec<&[u8]> = entries.chunks(20).take(3).collect();
        for (id, cpu) in cpus.iter().enumerate() {
            assert_eq!(cpu[0], ENTRY_PROCESSOR);
            assert_eq!(usize::from(cpu[1]), id);
            assert_eq!(cpu[3] & CPU_BOOTSTRAP != 0, id == 0);
        }
        let count = u16::from_le_bytes([table[16 + 34], table[16 + 35]]);
        assert_eq!(usize::from(count), 3 + 2 + usize::from(IOAPIC_PINS) + 2);
        // The IO-APIC entry follows the bus entry and takes the first free id.
        let ioapic = &entries[3 * 20 + 8..3 * 20 + 16];
        assert_eq!((ioapic[0], ioapic[1]), (ENTRY_IOAPIC, 3));
    }

    #[test]
    fn too_many_vcpus_for_the_room_are_refused() {
        assert!(build(0, 0).is_err());
        assert!(build(max_vcpus(), 0x9fc00).expect("max fits").len() <= MPTABLE_ROOM);
        assert!(build(max_vcpus() + 1, 0x9fc00).is_err());
    }
}
