//! Stats from cgroup v1 controller files.

use std::collections::BTreeMap;
use std::path::Path;

use super::{
    hugetlb_sizes, BlkioEntry, BlkioStats, CpuStats, CpuUsage, HugetlbStats, MemoryEntry,
    MemoryStats, PidsStats,
};
use crate::cgroups::error::CgroupError;
use crate::cgroups::fsio;

const FIELD: &str = "stats";

fn number(dir: &Path, file: &str) -> Result<u64, CgroupError> {
    Ok(fsio::read_u64_optional(dir, file, FIELD)?.unwrap_or(0))
}

pub(super) fn cpu(dir: &Path, cpu: &mut CpuStats) -> Result<(), CgroupError> {
    if let Some(text) = fsio::read_optional(dir, "cpu.stat", FIELD)? {
        for (key, value) in fsio::key_values(&text) {
            match key {
                "nr_periods" => cpu.throttling.periods = value,
                "nr_throttled" => cpu.throttling.throttled_periods = value,
                "throttled_time" => cpu.throttling.throttled_time = value,
                _ => {}
            }
        }
    }
    Ok(())
}

/// cpuacct.stat counts in USER_HZ ticks, which Linux fixes at 100 per second for userspace.
const NANOS_PER_USER_HZ_TICK: u64 = 10_000_000;

pub(super) fn cpuacct(dir: &Path, usage: &mut CpuUsage) -> Result<(), CgroupError> {
    usage.total = number(dir, "cpuacct.usage")?;
    if let Some(text) = fsio::read_optional(dir, "cpuacct.usage_percpu", FIELD)? {
        usage.percpu = text
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
    }
    // Nanosecond files exist on newer kernels; fall back to the tick counts.
    let user = fsio::read_u64_optional(dir, "cpuacct.usage_user", FIELD)?;
    let sys = fsio::read_u64_optional(dir, "cpuacct.usage_sys", FIELD)?;
    if let (Some(user), Some(sys)) = (user, sys) {
        usage.user = user;
        usage.kernel = sys;
    } else if let Some(text) = fsio::read_optional(dir, "cpuacct.stat", FIELD)? {
        for (key, ticks) in fsio::key_values(&text) {
            match key {
                "user" => usage.user = ticks * NANOS_PER_USER_HZ_TICK,
                "system" => usage.kernel = ticks * NANOS_PER_USER_HZ_TICK,
                _ => {}
            }
        }
    }
    Ok(())
}

fn memory_entry(dir: &Path, prefix: &str) -> Result<MemoryEntry, CgroupError> {
    Ok(MemoryEntry {
        limit: number(dir, &format!("{prefix}.limit_in_bytes"))?,
        usage: number(dir, &format!("{prefix}.usage_in_bytes"))?,
        max: number(dir, &format!("{prefix}.max_usage_in_bytes"))?,
        failcnt: number(dir, &format!("{prefix}.failcnt"))?,
    })
}

pub(super) fn memory(dir: &Path, memory: &mut MemoryStats) -> Result<(), CgroupError> {
    memory.usage = memory_entry(dir, "memory")?;
    memory.swap = memory_entry(dir, "memory.memsw")?;
    memory.kernel = memory_entry(dir, "memory.kmem")?;
    memory.kernel_tcp = memory_entry(dir, "memory.kmem.tcp")?;
    if let Some(text) = fsio::read_optional(dir, "memory.stat", FIELD)? {
        memory.raw = fsio::key_values(&text)
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    }
    memory.cache = memory
        .raw
        .get("total_cache")
        .or_else(|| memory.raw.get("cache"))
        .copied()
        .unwrap_or(0);
    Ok(())
}

pub(super) fn pids(dir: &Path, pids: &mut PidsStats) -> Result<(), CgroupError> {
    pids.current = number(dir, "pids.current")?;
    pids.limit = match number(dir, "pids.max")? {
        u64::MAX => 0,
        limit => limit,
    };
    Ok(())
}

/// Parses "major:minor Op value" lines, skipping the "Total value" line.
pub(super) fn blkio_entries(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (major, minor) = parts.next()?.split_once(':')?;
            let op = parts.next()?;
            let value = parts.next()?.parse().ok()?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_string(),
                value,
            })
        })
        .collect()
}

pub(super) fn blkio(dir: &Path, blkio: &mut BlkioStats) -> Result<(), CgroupError> {
    // The throttle files count every I/O; the CFQ/BFQ ones only what that scheduler saw.
    let first = |files: &[&str]| -> Result<Vec<BlkioEntry>, CgroupError> {
        for file in files {
            if let Some(text) = fsio::read_optional(dir, file, FIELD)? {
                return Ok(blkio_entries(&text));
            }
        }
        Ok(Vec::new())
    };
    blkio.io_service_bytes_recursive = first(&[
        "blkio.throttle.io_service_bytes_recursive",
        "blkio.io_service_bytes_recursive",
        "blkio.bfq.io_service_bytes_recursive",
    ])?;
    blkio.io_serviced_recursive = first(&[
        "blkio.throttle.io_serviced_recursive",
        "blkio.io_serviced_recursive",
        "blkio.bfq.io_serviced_recursive",
    ])?;
    Ok(())
}

pub(super) fn hugetlb(
    dir: &Path,
    out: &mut BTreeMap<String, HugetlbStats>,
) -> Result<(), CgroupError> {
    for size in hugetlb_sizes(dir, "usage_in_bytes") {
        let stats = HugetlbStats {
            usage: number(dir, &format!("hugetlb.{size}.usage_in_bytes"))?,
            max: number(dir, &format!("hugetlb.{size}.max_usage_in_bytes"))?,
            failcnt: number(dir, &format!("hugetlb.{size}.failcnt"))?,
        };
        out.insert(size, stats);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_lines_skip_total() {
        let entries = blkio_entries("254:0 Read 4096\n254:0 Write 8192\nTotal 12288\n");
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[1],
            BlkioEntry {
                major: 254,
                minor: 0,
                op: "Write".into(),
                value: 8192
            }
        );
    }
}
