//! runvm's cgroup stats as containerd's cgroups v1 `Metrics` (what `ctr task metrics` and the
//! CRI decode for a v1 host). Fields runvm does not collect (rdma, network, OOM control) stay
//! empty; memory.stat keys fill the fields of the same name.

use containerd_shim::protos::cgroups::metrics::{
    BlkIOEntry, BlkIOStat, CPUStat, CPUUsage, HugetlbStat, MemoryEntry, MemoryStat, Metrics,
    PidsStat, Throttle,
};
use runvm_runtime::cgroups::Stats;

fn memory_entry(e: &runvm_runtime::cgroups::MemoryEntry) -> MemoryEntry {
    MemoryEntry {
        limit: e.limit,
        usage: e.usage,
        max: e.max,
        failcnt: e.failcnt,
        ..Default::default()
    }
}

fn memory(stats: &runvm_runtime::cgroups::MemoryStats) -> MemoryStat {
    let raw = |key: &str| stats.raw.get(key).copied().unwrap_or(0);
    MemoryStat {
        cache: stats.cache,
        rss: raw("rss"),
        rss_huge: raw("rss_huge"),
        mapped_file: raw("mapped_file"),
        dirty: raw("dirty"),
        writeback: raw("writeback"),
        pg_pg_in: raw("pgpgin"),
        pg_pg_out: raw("pgpgout"),
        pg_fault: raw("pgfault"),
        pg_maj_fault: raw("pgmajfault"),
        inactive_anon: raw("inactive_anon"),
        active_anon: raw("active_anon"),
        inactive_file: raw("inactive_file"),
        active_file: raw("active_file"),
        unevictable: raw("unevictable"),
        hierarchical_memory_limit: raw("hierarchical_memory_limit"),
        hierarchical_swap_limit: raw("hierarchical_memsw_limit"),
        total_cache: raw("total_cache"),
        total_rss: raw("total_rss"),
        total_rss_huge: raw("total_rss_huge"),
        total_mapped_file: raw("total_mapped_file"),
        total_dirty: raw("total_dirty"),
        total_writeback: raw("total_writeback"),
        total_pg_pg_in: raw("total_pgpgin"),
        total_pg_pg_out: raw("total_pgpgout"),
        total_pg_fault: raw("total_pgfault"),
        total_pg_maj_fault: raw("total_pgmajfault"),
        total_inactive_anon: raw("total_inactive_anon"),
        total_active_anon: raw("total_active_anon"),
        total_inactive_file: raw("total_inactive_file"),
        total_active_file: raw("total_active_file"),
        total_unevictable: raw("total_unevictable"),
        usage: Some(memory_entry(&stats.usage)).into(),
        swap: Some(memory_entry(&stats.swap)).into(),
        kernel: Some(memory_entry(&stats.kernel)).into(),
        kernel_tcp: Some(memory_entry(&stats.kernel_tcp)).into(),
        ..Default::default()
    }
}

fn blkio_entries(entries: &[runvm_runtime::cgroups::BlkioEntry]) -> Vec<BlkIOEntry> {
    entries
        .iter()
        .map(|e| BlkIOEntry {
            op: e.op.clone(),
            major: e.major,
            minor: e.minor,
            value: e.value,
            ..Default::default()
        })
        .collect()
}

pub fn to_metrics(stats: &Stats) -> Metrics {
    let cpu = CPUStat {
        usage: Some(CPUUsage {
            total: stats.cpu.usage.total,
            kernel: stats.cpu.usage.kernel,
            user: stats.cpu.usage.user,
            per_cpu: stats.cpu.usage.percpu.clone(),
            ..Default::default()
        })
        .into(),
        throttling: Some(Throttle {
            periods: stats.cpu.throttling.periods,
            throttled_periods: stats.cpu.throttling.throttled_periods,
            throttled_time: stats.cpu.throttling.throttled_time,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    Metrics {
        hugetlb: stats
            .hugetlb
            .iter()
            .map(|(pagesize, h)| HugetlbStat {
                usage: h.usage,
                max: h.max,
                failcnt: h.failcnt,
                pagesize: pagesize.clone(),
                ..Default::default()
            })
            .collect(),
        pids: Some(PidsStat {
            current: stats.pids.current,
            limit: stats.pids.limit,
            ..Default::default()
        })
        .into(),
        cpu: Some(cpu).into(),
        memory: Some(memory(&stats.memory)).into(),
        blkio: Some(BlkIOStat {
            io_service_bytes_recursive: blkio_entries(&stats.blkio.io_service_bytes_recursive),
            io_serviced_recursive: blkio_entries(&stats.blkio.io_serviced_recursive),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_map_by_meaning() {
        let mut stats = Stats::default();
        stats.cpu.usage.total = 5;
        stats.cpu.usage.percpu = vec![2, 3];
        stats.memory.usage.usage = 4096;
        stats.memory.raw.insert("total_rss".into(), 77);
        stats.memory.raw.insert("pgfault".into(), 9);
        stats.pids.current = 3;
        let m = to_metrics(&stats);
        assert_eq!(m.cpu.usage.total, 5);
        assert_eq!(m.cpu.usage.per_cpu, vec![2, 3]);
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.memory.total_rss, 77);
        assert_eq!(m.memory.pg_fault, 9);
        assert_eq!(m.pids.current, 3);
    }
}
