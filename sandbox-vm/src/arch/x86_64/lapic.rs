//! Local APIC wiring a Linux guest expects from firmware: LINT0 delivers the 8259 PIC's
//! interrupts (ExtINT, "virtual wire" mode) and LINT1 delivers NMIs.
//!
//! Hand-written: KVM exposes the LAPIC as a raw register page (KVM_GET_LAPIC); the register
//! offsets and delivery modes are from the Intel SDM vol. 3, 11.5.1.

use kvm_bindings::kvm_lapic_state;

/// LVT LINT0 and LINT1 register offsets in the APIC page.
const APIC_LVT_LINT0: usize = 0x350;
const APIC_LVT_LINT1: usize = 0x360;
/// Delivery mode field (bits 8..11) of an LVT entry.
const DELIVERY_MODE_MASK: u32 = 0x700;
const DELIVERY_EXTINT: u32 = 0x7 << 8;
const DELIVERY_NMI: u32 = 0x4 << 8;

fn read_reg(state: &kvm_lapic_state, offset: usize) -> u32 {
    let b = |i: usize| state.regs[offset + i] as u8;
    u32::from_le_bytes([b(0), b(1), b(2), b(3)])
}

fn write_reg(state: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (i, byte) in value.to_le_bytes().iter().enumerate() {
        state.regs[offset + i] = *byte as std::os::raw::c_char;
    }
}

/// Sets LINT0 to ExtINT and LINT1 to NMI in `state`, keeping the other LVT bits.
pub fn set_virtual_wire(state: &mut kvm_lapic_state) {
    for (offset, mode) in [
        (APIC_LVT_LINT0, DELIVERY_EXTINT),
        (APIC_LVT_LINT1, DELIVERY_NMI),
    ] {
        let value = (read_reg(state, offset) & !DELIVERY_MODE_MASK) | mode;
        write_reg(state, offset, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint0_becomes_extint_and_lint1_nmi_keeping_other_bits() {
        let mut state = kvm_lapic_state::default();
        write_reg(&mut state, APIC_LVT_LINT0, 0x0001_0000 | 0x500);
        write_reg(&mut state, APIC_LVT_LINT1, 0x0001_0000);
        set_virtual_wire(&mut state);
        assert_eq!(read_reg(&state, APIC_LVT_LINT0), 0x0001_0700);
        assert_eq!(read_reg(&state, APIC_LVT_LINT1), 0x0001_0400);
    }
}
