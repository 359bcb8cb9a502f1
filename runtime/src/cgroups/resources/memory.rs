//! linux.resources.memory → memory.* files.

use oci_spec::runtime::LinuxMemory;

use super::{Target, Version};
use crate::cgroups::error::CgroupError;
use crate::cgroups::fsio;

const FIELD: &str = "linux.resources.memory";

fn field(name: &str) -> String {
    format!("{FIELD}.{name}")
}

/// -1 (and any negative) means "no limit".
fn limit_text(value: i64, version: Version) -> String {
    match (value < 0, version) {
        (true, Version::V1) => "-1".to_string(),
        (true, Version::V2) => "max".to_string(),
        (false, _) => value.to_string(),
    }
}

/// A byte count of 0 means "not set", as runc reads these fields: clients send 0 for limits the
/// user never gave, and writing it would ask for a zero-byte limit.
fn zero_as_unset(m: &LinuxMemory) -> LinuxMemory {
    let set = |v: Option<i64>| v.filter(|v| *v != 0);
    let mut m = *m;
    m.set_limit(set(m.limit()));
    m.set_swap(set(m.swap()));
    m.set_reservation(set(m.reservation()));
    m.set_kernel(set(m.kernel()));
    m.set_kernel_tcp(set(m.kernel_tcp()));
    m
}

pub(super) fn apply(t: &Target, m: &LinuxMemory) -> Result<(), CgroupError> {
    let m = &zero_as_unset(m);
    if m.check_before_update() == Some(true) {
        check_usage_below(t, m.limit())?;
    }
    match t.version {
        Version::V1 => apply_v1(t, m),
        Version::V2 => apply_v2(t, m),
    }
}

/// checkBeforeUpdate: refuse a limit below what the cgroup already uses.
fn check_usage_below(t: &Target, limit: Option<i64>) -> Result<(), CgroupError> {
    let Some(limit) = limit.filter(|l| *l >= 0) else {
        return Ok(());
    };
    let usage_file = match t.version {
        Version::V1 => "memory.usage_in_bytes",
        Version::V2 => "memory.current",
    };
    let name = field("checkBeforeUpdate");
    if let Some(usage) = fsio::read_u64_optional(&t.dir, usage_file, &name)? {
        if usage > limit as u64 {
            return Err(CgroupError::invalid(
                field("limit"),
                limit,
                format!("below the current usage of {usage} bytes (checkBeforeUpdate is set)"),
            ));
        }
    }
    Ok(())
}

fn apply_v1(t: &Target, m: &LinuxMemory) -> Result<(), CgroupError> {
    let dir = &t.dir;
    let limit = m.limit().map(|l| limit_text(l, Version::V1));
    let swap = m.swap().map(|s| limit_text(s, Version::V1));
    match (limit, swap) {
        (Some(limit), Some(swap)) => {
            // The kernel keeps memsw >= memory limit at every step, so when raising the limits
            // memsw must grow first, and when lowering them the memory limit must shrink first.
            let current = fsio::read_u64_optional(dir, "memory.limit_in_bytes", &field("limit"))?
                .unwrap_or(u64::MAX);
            let raising = m.swap().is_some_and(|s| s < 0 || s as u64 >= current);
            if raising {
                fsio::write(dir, "memory.memsw.limit_in_bytes", &swap, &field("swap"))?;
                fsio::write(dir, "memory.limit_in_bytes", &limit, &field("limit"))?;
            } else {
                fsio::write(dir, "memory.limit_in_bytes", &limit, &field("limit"))?;
                fsio::write(dir, "memory.memsw.limit_in_bytes", &swap, &field("swap"))?;
            }
        }
        (Some(limit), None) => fsio::write(dir, "memory.limit_in_bytes", &limit, &field("limit"))?,
        (None, Some(swap)) => {
            fsio::write(dir, "memory.memsw.limit_in_bytes", &swap, &field("swap"))?
        }
        (None, None) => {}
    }
    if let Some(reservation) = m.reservation() {
        let value = limit_text(reservation, Version::V1);
        fsio::write(
            dir,
            "memory.soft_limit_in_bytes",
            &value,
            &field("reservation"),
        )?;
    }
    if let Some(kernel) = m.kernel() {
        write_kernel_memory(t, "memory.kmem.limit_in_bytes", kernel, "kernel")?;
    }
    if let Some(kernel_tcp) = m.kernel_tcp() {
        write_kernel_memory(t, "memory.kmem.tcp.limit_in_bytes", kernel_tcp, "kernelTCP")?;
    }
    if let Some(swappiness) = m.swappiness() {
        if swappiness > 100 {
            return Err(CgroupError::invalid(
                field("swappiness"),
                swappiness,
                "must be 0..=100",
            ));
        }
        fsio::write(
            dir,
            "memory.swappiness",
            &swappiness.to_string(),
            &field("swappiness"),
        )?;
    }
    if let Some(disable) = m.disable_oom_killer() {
        let value = if disable { "1" } else { "0" };
        fsio::write(dir, "memory.oom_control", value, &field("disableOOMKiller"))?;
    }
    if let Some(use_hierarchy) = m.use_hierarchy() {
        let name = field("useHierarchy");
        let wanted = if use_hierarchy { "1" } else { "0" };
        // Kernels since 5.x fix use_hierarchy at 1 and refuse any write; only write on change.
        let current = fsio::read(dir, "memory.use_hierarchy", &name)?;
        if current.trim() != wanted {
            fsio::write(dir, "memory.use_hierarchy", wanted, &name)?;
        }
    }
    Ok(())
}

/// Kernel-memory limits no longer exist on 6.x kernels: skip them with a warning when the file
/// is gone, rather than failing every container whose config still sets them.
fn write_kernel_memory(t: &Target, file: &str, value: i64, name: &str) -> Result<(), CgroupError> {
    let text = limit_text(value, Version::V1);
    match fsio::write(&t.dir, file, &text, &field(name)) {
        Err(e) if e.is_not_found() => {
            eprintln!(
                "runvm: warning: {}: ignored, this kernel has no kernel-memory accounting ({file})",
                field(name)
            );
            Ok(())
        }
        other => other,
    }
}

fn apply_v2(t: &Target, m: &LinuxMemory) -> Result<(), CgroupError> {
    let dir = &t.dir;
    if let Some(swap) = m.swap() {
        // v2 limits swap alone; OCI's value is memory+swap.
        let value = match m.limit() {
            _ if swap < 0 => "max".to_string(),
            Some(limit) if limit >= 0 => {
                if swap < limit {
                    return Err(CgroupError::invalid(
                        field("swap"),
                        swap,
                        format!("memory+swap must not be below memory.limit ({limit})"),
                    ));
                }
                (swap - limit).to_string()
            }
            _ => {
                return Err(CgroupError::invalid(
                    field("swap"),
                    swap,
                    "on cgroup v2 a swap limit needs a memory limit too (v2 limits swap alone)",
                ))
            }
        };
        fsio::write(dir, "memory.swap.max", &value, &field("swap"))?;
    }
    if let Some(limit) = m.limit() {
        fsio::write(
            dir,
            "memory.max",
            &limit_text(limit, Version::V2),
            &field("limit"),
        )?;
    }
    if let Some(reservation) = m.reservation() {
        let value = limit_text(reservation, Version::V2);
        fsio::write(dir, "memory.low", &value, &field("reservation"))?;
    }
    for (name, value) in [("kernel", m.kernel()), ("kernelTCP", m.kernel_tcp())] {
        if value.is_some() {
            eprintln!(
                "runvm: warning: {}: ignored, cgroup v2 accounts kernel memory in memory.max",
                field(name)
            );
        }
    }
    if m.swappiness().is_some() {
        return Err(CgroupError::unsupported(
            field("swappiness"),
            "cgroup v2 has no per-cgroup swappiness",
        ));
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(CgroupError::unsupported(
            field("disableOOMKiller"),
            "cgroup v2 cannot disable the OOM killer",
        ));
    }
    if m.use_hierarchy() == Some(false) {
        return Err(CgroupError::unsupported(
            field("useHierarchy"),
            "cgroup v2 memory accounting is always hierarchical",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_byte_counts_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // No memory files at all: any write would fail with "No such file or directory".
        let m: LinuxMemory =
            serde_json::from_str(r#"{"limit": 0, "swap": 0, "reservation": 0}"#).unwrap();
        let t = Target {
            dir: dir.path().to_path_buf(),
            version: Version::V1,
        };
        apply(&t, &m).unwrap();
        let m: LinuxMemory = serde_json::from_str(r#"{"limit": 4096}"#).unwrap();
        assert!(apply(&t, &m).unwrap_err().is_not_found());
    }
}
