//! linux.resources.cpu → cpu.* (bandwidth, weight) and cpuset.* (placement) files.

use oci_spec::runtime::LinuxCpu;

use super::{require, Controllers, Target, Version};
use crate::cgroups::error::CgroupError;
use crate::cgroups::fsio;

fn field(name: &str) -> String {
    format!("linux.resources.cpu.{name}")
}

/// cgroup v1 cpu.shares (2..=262144) mapped onto v2 cpu.weight (1..=10000) linearly, so the
/// v1 minimum lands on the v2 minimum and the v1 maximum on the v2 maximum.
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

pub(super) fn apply(c: &dyn Controllers, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    let wants_bandwidth = cpu.shares().is_some()
        || cpu.quota().is_some()
        || cpu.period().is_some()
        || cpu.burst().is_some()
        || cpu.realtime_runtime().is_some()
        || cpu.realtime_period().is_some()
        || cpu.idle().is_some();
    if wants_bandwidth {
        let target = require(c, "cpu", "linux.resources.cpu")?;
        match target.version {
            Version::V1 => apply_v1(&target, cpu)?,
            Version::V2 => apply_v2(&target, cpu)?,
        }
    }
    if cpu.cpus().is_some() || cpu.mems().is_some() {
        let target = require(c, "cpuset", "linux.resources.cpu.cpus/mems")?;
        if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
            fsio::write(&target.dir, "cpuset.cpus", cpus, &field("cpus"))?;
        }
        if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
            fsio::write(&target.dir, "cpuset.mems", mems, &field("mems"))?;
        }
    }
    Ok(())
}

fn apply_v1(t: &Target, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    let dir = &t.dir;
    if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
        fsio::write(dir, "cpu.shares", &shares.to_string(), &field("shares"))?;
    }
    // The period bounds the quota, so set it first.
    if let Some(period) = cpu.period().filter(|p| *p != 0) {
        fsio::write(
            dir,
            "cpu.cfs_period_us",
            &period.to_string(),
            &field("period"),
        )?;
    }
    if let Some(quota) = cpu.quota().filter(|q| *q != 0) {
        let value = if quota < 0 {
            "-1".to_string()
        } else {
            quota.to_string()
        };
        fsio::write(dir, "cpu.cfs_quota_us", &value, &field("quota"))?;
    }
    if let Some(burst) = cpu.burst() {
        fsio::write(dir, "cpu.cfs_burst_us", &burst.to_string(), &field("burst"))?;
    }
    // Same for the realtime period and its runtime.
    if let Some(period) = cpu.realtime_period().filter(|p| *p != 0) {
        fsio::write(
            dir,
            "cpu.rt_period_us",
            &period.to_string(),
            &field("realtimePeriod"),
        )?;
    }
    if let Some(runtime) = cpu.realtime_runtime().filter(|r| *r != 0) {
        fsio::write(
            dir,
            "cpu.rt_runtime_us",
            &runtime.to_string(),
            &field("realtimeRuntime"),
        )?;
    }
    if let Some(idle) = cpu.idle() {
        fsio::write(dir, "cpu.idle", &idle.to_string(), &field("idle"))?;
    }
    Ok(())
}

fn apply_v2(t: &Target, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    let dir = &t.dir;
    if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
        let weight = shares_to_weight(shares).to_string();
        fsio::write(dir, "cpu.weight", &weight, &field("shares"))?;
    }
    if cpu.quota().is_some() || cpu.period().is_some() {
        let name = if cpu.quota().is_some() {
            field("quota")
        } else {
            field("period")
        };
        // cpu.max holds "quota period"; keep the half the config does not set.
        let current = fsio::read(dir, "cpu.max", &name)?;
        let mut parts = current.split_whitespace();
        let current_quota = parts.next().unwrap_or("max").to_string();
        let current_period = parts.next().unwrap_or("100000").to_string();
        let quota = match cpu.quota() {
            Some(q) if q > 0 => q.to_string(),
            Some(_) => "max".to_string(),
            None => current_quota,
        };
        let period = match cpu.period().filter(|p| *p != 0) {
            Some(p) => p.to_string(),
            None => current_period,
        };
        fsio::write(dir, "cpu.max", &format!("{quota} {period}"), &name)?;
    }
    if let Some(burst) = cpu.burst() {
        fsio::write(dir, "cpu.max.burst", &burst.to_string(), &field("burst"))?;
    }
    if let Some(idle) = cpu.idle() {
        fsio::write(dir, "cpu.idle", &idle.to_string(), &field("idle"))?;
    }
    for (name, value) in [
        ("realtimeRuntime", cpu.realtime_runtime().unwrap_or(0)),
        ("realtimePeriod", cpu.realtime_period().unwrap_or(0) as i64),
    ] {
        if value != 0 {
            return Err(CgroupError::unsupported(
                field(name),
                "cgroup v2 has no realtime CPU bandwidth control",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_map_onto_weight_range_ends_and_default() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        // The v1 default of 1024 lands near (not on) the v2 default of 100, as in runc.
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(1), 1);
    }
}
