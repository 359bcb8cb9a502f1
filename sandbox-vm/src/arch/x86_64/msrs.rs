//! The model-specific registers a Linux guest expects at boot, as a firmware would leave
//! them: syscall MSRs cleared, fast strings on, MTRRs enabled with write-back as default.
//!
//! Hand-written: the indexes are architectural (Intel SDM vol. 4) and no rust-vmm crate
//! lists boot values.

use kvm_bindings::{kvm_msr_entry, Msrs};

const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

const MISC_ENABLE_FAST_STRING: u64 = 1 << 0;
/// MTRRs enabled (bit 11), default memory type write-back (6): without it Linux maps all
/// RAM uncached.
const MTRR_ENABLED_WRITE_BACK: u64 = (1 << 11) | 6;

/// (index, value) pairs to set on every vCPU before a Linux boot.
pub fn boot_msr_values() -> [(u32, u64); 11] {
    [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLED_WRITE_BACK),
    ]
}

/// [`boot_msr_values`] as a KVM_SET_MSRS list.
pub fn boot_msrs() -> Result<Msrs, String> {
    let entries: Vec<kvm_msr_entry> = boot_msr_values()
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    Msrs::from_entries(&entries).map_err(|e| format!("boot MSR list does not fit: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_enables_write_back_mtrrs_and_has_no_duplicates() {
        let msrs = boot_msrs().expect("fits");
        let entries = msrs.as_slice();
        assert_eq!(entries.len(), boot_msr_values().len());
        let mtrr = entries
            .iter()
            .find(|e| e.index == MSR_MTRR_DEF_TYPE)
            .expect("MTRR default type present");
        assert_eq!(mtrr.data & 0xff, 6);
        assert_ne!(mtrr.data & (1 << 11), 0);
        let mut indexes: Vec<u32> = entries.iter().map(|e| e.index).collect();
        indexes.sort_unstable();
        indexes.dedup();
        assert_eq!(indexes.len(), entries.len());
    }
}
