//! Resource usage of a container's cgroup, shaped like the `data` of runc's `events --stats`
//! (same JSON field names), so clients that parse runc's output can parse runvm's.

mod v1;
mod v2;

use std::collections::BTreeMap;

use serde::Serialize;

use super::error::CgroupError;
use super::resources::{Target, Version};

/// Everything `runvm events --stats` reports about a container's cgroup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub blkio: BlkioStats,
    /// Keyed by page size ("2MB", "1GB").
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub hugetlb: BTreeMap<String, HugetlbStats>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// CPU time in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CpuUsage {
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Throttling {
    pub periods: u64,
    #[serde(rename = "throttledPeriods")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(rename = "throttledTime")]
    pub throttled_time: u64,
}

/// Bytes. A limit of `u64::MAX` (v2 "max") or the v1 page-rounded i64::MAX means "no limit".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    pub cache: u64,
    pub usage: MemoryEntry,
    /// v1: memory+swap (memsw); v2: swap alone.
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as is.
    pub raw: BTreeMap<String, u64>,
}

/// `limit` 0 = unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PidsStats {
    pub current: u64,
    pub limit: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BlkioStats {
    #[serde(rename = "ioServiceBytesRecursive")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

/// One "major:minor op value" line ("Read", "Write", …).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HugetlbStats {
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

/// Reads the stats of every controller `find` locates (without enabling anything).
pub(crate) fn collect(find: &dyn Fn(&str) -> Option<Target>) -> Result<Stats, CgroupError> {
    let mut stats = Stats::default();
    let by_version = |controller: &str| find(controller).map(|t| (t.version, t.dir));
    match by_version("cpu") {
        Some((Version::V1, dir)) => v1::cpu(&dir, &mut stats.cpu)?,
        Some((Version::V2, dir)) => v2::cpu(&dir, &mut stats.cpu)?,
        None => {}
    }
    if let Some((Version::V1, dir)) = by_version("cpuacct") {
        v1::cpuacct(&dir, &mut stats.cpu.usage)?;
    }
    match by_version("memory") {
        Some((Version::V1, dir)) => v1::memory(&dir, &mut stats.memory)?,
        Some((Version::V2, dir)) => v2::memory(&dir, &mut stats.memory)?,
        None => {}
    }
    if let Some((_, dir)) = by_version("pids") {
        // Same files on both versions.
        v1::pids(&dir, &mut stats.pids)?;
    }
    match by_version("blkio").or_else(|| by_version("io")) {
        Some((Version::V1, dir)) => v1::blkio(&dir, &mut stats.blkio)?,
        Some((Version::V2, dir)) => v2::io(&dir, &mut stats.blkio)?,
        None => {}
    }
    match by_version("hugetlb") {
        Some((Version::V1, dir)) => v1::hugetlb(&dir, &mut stats.hugetlb)?,
        Some((Version::V2, dir)) => v2::hugetlb(&dir, &mut stats.hugetlb)?,
        None => {}
    }
    Ok(stats)
}

/// Page sizes with a file named `hugetlb.<size>.<suffix>` in `dir`.
fn hugetlb_sizes(dir: &std::path::Path, suffix: &str) -> Vec<String> {
    let mut sizes: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size = name
                .strip_prefix("hugetlb.")?
                .strip_suffix(suffix)?
                .strip_suffix('.')?;
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    sizes
}
