//! How big a sandbox's VM is, and what the host cgroup of its host processes allows.
//!
//! Guest RAM is the container's memory limit (so the workload sees its limit as its RAM), else
//! `[vm] memory_mib`, else [`DEFAULT_MEMORY_MIB`]. vCPUs follow the CPU quota (rounded up) or
//! the cpuset, else `[vm] cpus`, else one. The host cgroup gets the guest RAM plus the VMM's
//! stated overhead as its memory limit, the container's CPU limits, no pids limit (the guest enforces the container's), and no device rules: the
//! VMM must open /dev/kvm and friends, and the config's device rules apply in the guest.

use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResources, LinuxResourcesBuilder, Spec};

use crate::isolation::VmSettings;

pub const DEFAULT_MEMORY_MIB: u64 = 256;
/// Below this the guest kernel, agent and busybox do not fit comfortably.
pub const MIN_MEMORY_MIB: u64 = 64;
/// What the host processes of a sandbox may use beyond guest RAM: QEMU's own heap and its TCG
/// translation cache (capped at 64 MiB by `tb-size`), virtiofsd and the supervisor.
pub const HOST_OVERHEAD_MIB: u64 = 192;
/// The most vCPUs a sandbox gets from its limits.
const MAX_CPUS: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmSize {
    pub memory_mib: u64,
    pub cpus: u32,
}

fn resources(spec: &Spec) -> Option<&LinuxResources> {
    spec.linux().as_ref()?.resources().as_ref()
}

pub fn vm_size(spec: &Spec, settings: &VmSettings) -> VmSize {
    let limit_mib = resources(spec)
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|l| *l > 0)
        .map(|l| (l as u64).div_ceil(1 << 20));
    let memory_mib = limit_mib
        .or(settings.memory_mib)
        .unwrap_or(DEFAULT_MEMORY_MIB)
        .max(MIN_MEMORY_MIB);
    let cpu = resources(spec).and_then(|r| r.cpu().as_ref());
    let from_quota = cpu.and_then(|c| {
        let quota = c.quota().filter(|q| *q > 0)? as u64;
        let period = c.period().filter(|p| *p > 0).unwrap_or(100_000);
        Some(quota.div_ceil(period) as u32)
    });
    let from_cpuset = cpu.and_then(|c| c.cpus().as_deref()).and_then(count_cpus);
    let cpus = from_quota
        .or(from_cpuset)
        .or(settings.cpus)
        .unwrap_or(1)
        .clamp(1, MAX_CPUS);
    VmSize { memory_mib, cpus }
}

/// The number of CPUs in a cpuset list such as "0-2,5".
fn count_cpus(list: &str) -> Option<u32> {
    let mut n = 0u32;
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<u32>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => part.parse::<u32>().map(|_| 1).ok()?,
        };
    }
    (n > 0).then_some(n)
}

pub fn host_resources(spec: &Spec, settings: &VmSettings) -> LinuxResources {
    let size = vm_size(spec, settings);
    let mut host = LinuxResourcesBuilder::default();
    let explicit_limit = resources(spec)
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .is_some_and(|l| l > 0);
    if explicit_limit {
        let bytes = ((size.memory_mib + HOST_OVERHEAD_MIB) << 20) as i64;
        if let Ok(memory) = LinuxMemoryBuilder::default().limit(bytes).build() {
            host = host.memory(memory);
        }
    }
    if let Some(cpu) = resources(spec).and_then(|r| r.cpu().clone()) {
        host = host.cpu(cpu);
    }
    host.build().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(resources: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","linux":{{"resources":{resources}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn memory_limit_becomes_guest_ram() {
        let s = spec(r#"{"memory":{"limit":536870912}}"#);
        assert_eq!(vm_size(&s, &VmSettings::default()).memory_mib, 512);
        let host = host_resources(&s, &VmSettings::default());
        let limit = host.memory().as_ref().and_then(|m| m.limit());
        assert_eq!(limit, Some(((512 + HOST_OVERHEAD_MIB) << 20) as i64));
        assert!(host.devices().is_none(), "no device rules on the host");
    }

    #[test]
    fn defaults_apply_without_limits() {
        let s = spec("{}");
        let size = vm_size(&s, &VmSettings::default());
        assert_eq!(
            size,
            VmSize {
                memory_mib: DEFAULT_MEMORY_MIB,
                cpus: 1
            }
        );
        let settings = VmSettings {
            memory_mib: Some(32),
            cpus: Some(3),
            ..Default::default()
        };
        assert_eq!(
            vm_size(&s, &settings),
            VmSize {
                memory_mib: MIN_MEMORY_MIB,
                cpus: 3
            }
        );
        assert!(host_resources(&s, &settings).memory().is_none());
    }

    #[test]
    fn cpu_quota_and_cpuset_give_vcpus() {
        let s = spec(r#"{"cpu":{"quota":150000,"period":100000}}"#);
        assert_eq!(vm_size(&s, &VmSettings::default()).cpus, 2);
        let s = spec(r#"{"cpu":{"cpus":"0-2,5"}}"#);
        assert_eq!(vm_size(&s, &VmSettings::default()).cpus, 4);
        assert_eq!(count_cpus("3-1"), None);
    }
}
