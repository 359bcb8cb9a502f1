//! Stats from cgroup v2 files.

use std::collections::BTreeMap;
use std::path::Path;

use super::{
    hugetlb_sizes, BlkioEntry, BlkioStats, CpuStats, HugetlbStats, MemoryEntry, MemoryStats,
};
use crate::cgroups::error::CgroupError;
use crate::cgroups::fsio;

const FIELD: &str = "stats";

fn number(dir: &Path, file: &str) -> Result<u64, CgroupError> {
    Ok(fsio::read_u64_optional(dir, file, FIELD)?.unwrap_or(0))
}

/// The value of `key` in a flat-keyed file such as memory.events.
fn keyed(dir: &Path, file: &str, key: &str) -> Result<u64, CgroupError> {
    let text = fsio::read_optional(dir, file, FIELD)?.unwrap_or_default();
    let value = fsio::key_values(&text)
        .find(|(k, _)| *k == key)
        .map_or(0, |(_, v)| v);
    Ok(value)
}

pub(super) fn cpu(dir: &Path, cpu: &mut CpuStats) -> Result<(), CgroupError> {
    let text = fsio::read_optional(dir, "cpu.stat", FIELD)?.unwrap_or_default();
    for (key, value) in fsio::key_values(&text) {
        match key {
            "usage_usec" => cpu.usage.total = value * 1000,
            "user_usec" => cpu.usage.user = value * 1000,
            "system_usec" => cpu.usage.kernel = value * 1000,
            "nr_periods" => cpu.throttling.periods = value,
            "nr_throttled" => cpu.throttling.throttled_periods = value,
            "throttled_usec" => cpu.throttling.throttled_time = value * 1000,
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn memory(dir: &Path, memory: &mut MemoryStats) -> Result<(), CgroupError> {
    memory.usage = MemoryEntry {
        limit: number(dir, "memory.max")?,
        usage: number(dir, "memory.current")?,
        max: number(dir, "memory.peak")?,
        failcnt: keyed(dir, "memory.events", "max")?,
    };
    memory.swap = MemoryEntry {
        limit: number(dir, "memory.swap.max")?,
        usage: number(dir, "memory.swap.current")?,
        max: number(dir, "memory.swap.peak")?,
        failcnt: keyed(dir, "memory.swap.events", "max")?,
    };
    if let Some(text) = fsio::read_optional(dir, "memory.stat", FIELD)? {
        memory.raw = fsio::key_values(&text)
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    }
    memory.cache = memory.raw.get("file").copied().unwrap_or(0);
    Ok(())
}

/// Parses io.stat lines ("maj:min rbytes=… wbytes=… rios=… wios=…").
pub(super) fn io(dir: &Path, blkio: &mut BlkioStats) -> Result<(), CgroupError> {
    let text = fsio::read_optional(dir, "io.stat", FIELD)?.unwrap_or_default();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let Some((major, minor)) = parts.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for pair in parts {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse() else { continue };
            let (list, op) = match key {
                "rbytes" => (&mut blkio.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut blkio.io_service_bytes_recursive, "Write"),
                "rios" => (&mut blkio.io_serviced_recursive, "Read"),
                "wios" => (&mut blkio.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    Ok(())
}

pub(super) fn hugetlb(
    dir: &Path,
    out: &mut BTreeMap<String, HugetlbStats>,
) -> Result<(), CgroupError> {
    for size in hugetlb_sizes(dir, "current") {
        let stats = HugetlbStats {
            usage: number(dir, &format!("hugetlb.{size}.current"))?,
            max: number(dir, &format!("hugetlb.{size}.max"))?,
            failcnt: keyed(dir, &format!("hugetlb.{size}.events"), "max")?,
        };
        out.insert(size, stats);
    }
    Ok(())
}
