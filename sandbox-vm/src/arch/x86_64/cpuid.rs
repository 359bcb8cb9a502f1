//! The CPUID runvm shows a guest: KVM's supported CPUID passed through a filter.
//!
//! The filter is runvm policy (whether the guest may know it is virtualized, and each
//! vCPU's APIC id), so it is written here; the data comes from KVM_GET_SUPPORTED_CPUID.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};
use serde::Serialize;

/// Leaf 1 ECX bit 31: "running under a hypervisor".
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Hypervisor leaves (KVM's signature "KVMKVMKVM" and paravirtual features) live here.
const HYPERVISOR_LEAVES: std::ops::RangeInclusive<u32> = 0x4000_0000..=0x4fff_ffff;

/// What of the virtualization the guest may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CpuidPolicy {
    /// Set CPUID.1:ECX[31] (the hypervisor bit). KVM's supported list leaves it clear; a
    /// Linux guest only looks for the KVM leaves (kvmclock, its TSC frequency) when it is set.
    pub show_hypervisor_bit: bool,
    /// Keep KVM's paravirtual leaves 0x40000000.. (kvmclock, PV EOI, ...).
    pub show_kvm_leaves: bool,
}

impl Default for CpuidPolicy {
    /// Show both, like Firecracker: a Linux guest then uses kvmclock and PV features.
    fn default() -> Self {
        CpuidPolicy {
            show_hypervisor_bit: true,
            show_kvm_leaves: true,
        }
    }
}

impl CpuidPolicy {
    /// Hide every sign of the hypervisor.
    pub fn hidden() -> Self {
        CpuidPolicy {
            show_hypervisor_bit: false,
            show_kvm_leaves: false,
        }
    }
}

/// The entries vCPU `vcpu_id` gets from KVM's `supported` list under `policy`.
pub fn filter_entries(
    supported: &[kvm_cpuid_entry2],
    policy: CpuidPolicy,
    vcpu_id: u8,
) -> Vec<kvm_cpuid_entry2> {
    supported
        .iter()
        .filter(|e| policy.show_kvm_leaves || !HYPERVISOR_LEAVES.contains(&e.function))
        .map(|e| {
            let mut e = *e;
            match e.function {
                1 => {
                    if policy.show_hypervisor_bit {
                        e.ecx |= LEAF1_ECX_HYPERVISOR;
                    } else {
                        e.ecx &= !LEAF1_ECX_HYPERVISOR;
                    }
                    // EBX[31:24] is the initial APIC id: each vCPU must see its own.
                    e.ebx = (e.ebx & 0x00ff_ffff) | (u32::from(vcpu_id) << 24);
                }
                // Extended topology: EDX is the x2APIC id.
                0xb | 0x1f => e.edx = u32::from(vcpu_id),
                _ => {}
            }
            e
        })
        .collect()
}

/// [`filter_entries`] over a KVM `CpuId` list, ready for KVM_SET_CPUID2.
pub fn filter(supported: &CpuId, policy: CpuidPolicy, vcpu_id: u8) -> Result<CpuId, String> {
    CpuId::from_entries(&filter_entries(supported.as_slice(), policy, vcpu_id))
        .map_err(|e| format!("filtered CPUID does not fit a kvm_cpuid2: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, ebx: u32, ecx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            ebx,
            ecx,
            ..Default::default()
        }
    }

    fn sample() -> Vec<kvm_cpuid_entry2> {
        vec![
            entry(0, 0x756e_6547, 0),
            entry(1, 0x0102_0800, 0x8120_2000),
            entry(0x4000_0000, 0x4b4d_564b, 0),
            entry(0x4000_0001, 0, 0),
            entry(0x8000_0001, 0, 0x101),
        ]
    }

    #[test]
    fn hidden_policy_drops_the_hypervisor_bit_and_kvm_leaves() {
        let out = filter_entries(&sample(), CpuidPolicy::hidden(), 0);
        assert!(out.iter().all(|e| !HYPERVISOR_LEAVES.contains(&e.function)));
        let leaf1 = out.iter().find(|e| e.function == 1).expect("leaf 1 kept");
        assert_eq!(leaf1.ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_eq!(leaf1.ecx, 0x0120_2000, "other feature bits untouched");
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn default_policy_keeps_them_and_sets_the_apic_id() {
        let out = filter_entries(&sample(), CpuidPolicy::default(), 3);
        assert_eq!(out.len(), 5);
        let leaf1 = out.iter().find(|e| e.function == 1).expect("leaf 1 kept");
        assert_ne!(leaf1.ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_eq!(leaf1.ebx >> 24, 3);
        assert_eq!(leaf1.ebx & 0x00ff_ffff, 0x02_0800);
    }

    #[test]
    fn default_policy_sets_the_hypervisor_bit_kvm_leaves_clear() {
        let mut supported = sample();
        supported[1].ecx &= !LEAF1_ECX_HYPERVISOR;
        let out = filter_entries(&supported, CpuidPolicy::default(), 0);
        let leaf1 = out.iter().find(|e| e.function == 1).expect("leaf 1 kept");
        assert_eq!(leaf1.ecx, 0x8120_2000);
    }

    #[test]
    fn filter_builds_a_kvm_list() {
        let supported = CpuId::from_entries(&sample()).expect("sample fits");
        let out = filter(&supported, CpuidPolicy::hidden(), 1).expect("filtered fits");
        assert_eq!(out.as_slice().len(), 3);
    }
}
