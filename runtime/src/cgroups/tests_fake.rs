//! CgroupManager against fake hierarchies in a tempdir: which file gets which value for V1, V2
//! and Hybrid. A helper stands in for the kernel by creating the control files of a new cgroup.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::{CgroupManager, Layout};

const V1_DIRS: &[&str] = &[
    "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd",
];

fn files_for(hierarchy: &str) -> &'static [(&'static str, &'static str)] {
    match hierarchy {
        "memory" => &[
            ("memory.limit_in_bytes", "9223372036854771712"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712"),
            ("memory.soft_limit_in_bytes", ""),
            ("memory.swappiness", "60"),
            ("memory.oom_control", ""),
            ("memory.use_hierarchy", "1"),
            ("memory.usage_in_bytes", "4096"),
            ("memory.max_usage_in_bytes", "8192"),
            ("memory.failcnt", "3"),
            ("memory.stat", "cache 100\nrss 200\ntotal_cache 150\n"),
            // No memory.kmem.* files: like a 6.x kernel without kernel-memory accounting.
        ],
        "cpu" => &[
            ("cpu.shares", "1024"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "-1"),
            ("cpu.cfs_burst_us", "0"),
            ("cpu.rt_period_us", "1000000"),
            ("cpu.rt_runtime_us", "0"),
            ("cpu.idle", "0"),
            (
                "cpu.stat",
                "nr_periods 10\nnr_throttled 2\nthrottled_time 5000\n",
            ),
        ],
        "cpuacct" => &[
            ("cpuacct.usage", "123456"),
            ("cpuacct.usage_percpu", "100000 23456 \n"),
            ("cpuacct.stat", "user 3\nsystem 4\n"),
        ],
        "cpuset" => &[("cpuset.cpus", ""), ("cpuset.mems", "")],
        "pids" => &[("pids.max", "max"), ("pids.current", "2")],
        "blkio" => &[
            ("blkio.bfq.weight", "100"),
            ("blkio.bfq.weight_device", ""),
            ("blkio.throttle.read_bps_device", ""),
            ("blkio.throttle.write_bps_device", ""),
            ("blkio.throttle.read_iops_device", ""),
            ("blkio.throttle.write_iops_device", ""),
            (
                "blkio.throttle.io_service_bytes_recursive",
                "254:0 Read 4096\n254:0 Write 512\nTotal 4608\n",
            ),
        ],
        "devices" => &[("devices.allow", ""), ("devices.deny", "")],
        "freezer" => &[("freezer.state", "THAWED\n")],
        "unified-hybrid" => &[
            ("cgroup.subtree_control", ""),
            ("cgroup.freeze", "0"),
            ("cgroup.events", "populated 0\nfrozen 0\n"),
            ("hugetlb.2MB.max", "max"),
            ("hugetlb.1GB.max", "max"),
            ("hugetlb.2MB.current", "0"),
        ],
        "unified-v2" => &[
            ("cgroup.subtree_control", ""),
            ("cgroup.freeze", "0"),
            ("cgroup.events", "populated 0\nfrozen 0\n"),
            ("memory.max", "max"),
            ("memory.swap.max", "max"),
            ("memory.low", "0"),
            ("memory.current", "8192"),
            ("memory.events", "low 0\nhigh 0\nmax 7\noom 0\n"),
            ("cpu.weight", "100"),
            ("cpu.max", "max 100000"),
            ("cpu.max.burst", "0"),
            ("cpu.idle", "0"),
            (
                "cpu.stat",
                "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 0\n",
            ),
            ("cpuset.cpus", ""),
            ("cpuset.mems", ""),
            ("pids.max", "max"),
            ("pids.current", "1"),
            ("io.weight", "default 100"),
            ("io.max", ""),
            (
                "io.stat",
                "254:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
            ),
            ("hugetlb.2MB.max", "max"),
        ],
        _ => &[],
    }
}

/// A fake /sys/fs/cgroup for `layout`.
fn fake_root(layout: Layout) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let mut dirs: Vec<&str> = Vec::new();
    match layout {
        Layout::V2 => {
            fs::write(
                root.path().join("cgroup.controllers"),
                "cpuset cpu io memory hugetlb pids rdma\n",
            )
            .unwrap();
            fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
            fs::write(root.path().join("cgroup.procs"), "").unwrap();
        }
        Layout::Hybrid | Layout::V1 => {
            dirs.extend(V1_DIRS);
            if layout == Layout::Hybrid {
                dirs.push("unified");
            }
        }
    }
    for d in dirs {
        let dir = root.path().join(d);
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("cgroup.procs"), "").unwrap();
        if d == "cpuset" {
            fs::write(dir.join("cpuset.cpus"), "0-1\n").unwrap();
            fs::write(dir.join("cpuset.mems"), "0\n").unwrap();
        }
        if d == "unified" {
            fs::write(dir.join("cgroup.controllers"), "hugetlb\n").unwrap();
            fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
        }
    }
    root
}

/// Plays the kernel: gives every new cgroup directory the control files of its hierarchy.
fn populate(root: &Path, layout: Layout, dirs: &[PathBuf]) {
    for dir in dirs {
        let rel = dir.strip_prefix(root).unwrap();
        let hierarchy = match layout {
            Layout::V2 => "unified-v2".to_string(),
            _ => {
                let first = rel
                    .components()
                    .next()
                    .unwrap()
                    .as_os_str()
                    .to_string_lossy()
                    .to_string();
                if first == "unified" {
                    "unified-hybrid".to_string()
                } else {
                    first
                }
            }
        };
        fs::write(dir.join("cgroup.procs"), "").unwrap();
        for (file, content) in files_for(&hierarchy) {
            fs::write(dir.join(file), content).unwrap();
        }
    }
}

/// Undoes `populate` so that rmdir works on a plain filesystem (cgroupfs needs no such step).
fn depopulate(dirs: &[PathBuf]) {
    for dir in dirs {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_file() {
                fs::remove_file(entry.path()).unwrap();
            }
        }
    }
}

fn created_manager(layout: Layout) -> (tempfile::TempDir, CgroupManager) {
    let root = fake_root(layout);
    let m = CgroupManager::with_root(root.path(), layout, None, "c1").unwrap();
    m.create().unwrap();
    populate(root.path(), layout, &m.created_dirs());
    (root, m)
}

fn read(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

const FULL: &str = r#"{
    "memory": {"limit": 1048576, "reservation": 524288, "swap": 2097152, "swappiness": 10,
               "kernel": 1000000, "disableOOMKiller": true},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000, "cpus": "0", "mems": "0"},
    "pids": {"limit": 64},
    "blockIO": {"weight": 300, "weightDevice": [{"major": 254, "minor": 0, "weight": 200}],
                "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}]},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]
}"#;

#[test]
fn hybrid_writes_each_resource_to_the_hierarchy_owning_it() {
    let (root, m) = created_manager(Layout::Hybrid);
    let r = root.path();
    m.apply(&resources(FULL)).unwrap();
    let c = |h: &str, f: &str| read(r.join(h).join("runvm/c1").join(f));
    assert_eq!(c("memory", "memory.limit_in_bytes"), "1048576");
    assert_eq!(c("memory", "memory.memsw.limit_in_bytes"), "2097152");
    assert_eq!(c("memory", "memory.soft_limit_in_bytes"), "524288");
    assert_eq!(c("memory", "memory.swappiness"), "10");
    assert_eq!(c("memory", "memory.oom_control"), "1");
    assert!(!r
        .join("memory/runvm/c1/memory.kmem.limit_in_bytes")
        .exists());
    assert_eq!(c("cpu", "cpu.shares"), "512");
    assert_eq!(c("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(c("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(c("cpu", "cpu.cfs_burst_us"), "1000");
    assert_eq!(c("cpuset", "cpuset.cpus"), "0");
    assert_eq!(c("pids", "pids.max"), "64");
    // No blkio.weight on this kernel: the BFQ file takes the weight.
    assert_eq!(c("blkio", "blkio.bfq.weight"), "300");
    assert_eq!(c("blkio", "blkio.bfq.weight_device"), "254:0 200");
    assert_eq!(
        c("blkio", "blkio.throttle.read_bps_device"),
        "254:0 1048576"
    );
    // hugetlb exists only in the cgroup2 hierarchy: delegated down to the container and set there.
    assert_eq!(c("unified", "hugetlb.2MB.max"), "4194304");
    assert_eq!(read(r.join("unified/cgroup.subtree_control")), "+hugetlb");
    assert_eq!(
        read(r.join("unified/runvm/cgroup.subtree_control")),
        "+hugetlb"
    );
}

#[test]
fn v1_without_hugetlb_or_unified_reports_the_field() {
    let (_root, m) = created_manager(Layout::V1);
    let err = m
        .apply(&resources(
            r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}"#,
        ))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("linux.resources.hugepageLimits: no cgroup hierarchy"),
        "{err}"
    );
    let err = m
        .apply(&resources(r#"{"unified": {"memory.high": "1"}}"#))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("linux.resources.unified: this host has no cgroup v2"),
        "{err}"
    );
    let err = m
        .apply(&resources(r#"{"network": {"classID": 7}}"#))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("linux.resources.network.classID:"),
        "{err}"
    );
}

#[test]
fn v2_maps_v1_style_values() {
    let (root, m) = created_manager(Layout::V2);
    // FULL without swappiness and disableOOMKiller, which v2 lacks.
    let mut r = resources(FULL);
    let mut memory = r.memory().unwrap();
    memory.set_swappiness(None);
    memory.set_disable_oom_killer(None);
    r.set_memory(Some(memory));
    m.apply(&r).unwrap();
    let c = |f: &str| read(root.path().join("runvm/c1").join(f));
    assert_eq!(c("memory.max"), "1048576");
    // OCI swap is memory+swap; v2 wants swap alone.
    assert_eq!(c("memory.swap.max"), "1048576");
    assert_eq!(c("memory.low"), "524288");
    assert_eq!(c("cpu.weight"), (1 + (510 * 9999) / 262_142).to_string());
    assert_eq!(c("cpu.max"), "50000 100000");
    assert_eq!(c("cpu.max.burst"), "1000");
    assert_eq!(c("pids.max"), "64");
    assert_eq!(c("io.weight"), "254:0 1920"); // the later per-device line: 1 + (200-10)*9999/990
    assert_eq!(c("io.max"), "254:0 rbps=1048576");
    assert_eq!(c("hugetlb.2MB.max"), "4194304");
    assert_eq!(c("cpuset.mems"), "0");
}

#[test]
fn v2_swappiness_and_unified_key_checks() {
    let (root, m) = created_manager(Layout::V2);
    let err = m
        .apply(&resources(r#"{"memory": {"swappiness": 10}}"#))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("linux.resources.memory.swappiness: cgroup v2"),
        "{err}"
    );
    for bad in ["../cgroup.procs", "memory.max/x", ".hidden"] {
        let json = format!(r#"{{"unified": {{"{bad}": "1"}}}}"#);
        let err = m.apply(&resources(&json)).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("linux.resources.unified.{bad}: invalid value")),
            "{err}"
        );
    }
    m.apply(&resources(
        r#"{"unified": {"memory.max": "4096", "cpu.weight": "7"}}"#,
    ))
    .unwrap();
    assert_eq!(read(root.path().join("runvm/c1/memory.max")), "4096");
    assert_eq!(read(root.path().join("runvm/c1/cpu.weight")), "7");
    // The quota alone keeps the period already set.
    m.apply(&resources(r#"{"cpu": {"quota": 20000}}"#)).unwrap();
    assert_eq!(read(root.path().join("runvm/c1/cpu.max")), "20000 100000");
}

#[test]
fn missing_file_error_names_field_value_and_file() {
    let (root, m) = created_manager(Layout::Hybrid);
    fs::remove_file(root.path().join("memory/runvm/c1/memory.limit_in_bytes")).unwrap();
    let err = m
        .apply(&resources(r#"{"memory": {"limit": 1048576}}"#))
        .unwrap_err()
        .to_string();
    let file = root.path().join("memory/runvm/c1/memory.limit_in_bytes");
    assert_eq!(
        err,
        format!(
            "linux.resources.memory.limit: writing 1048576 to {}: No such file or directory",
            file.display()
        )
    );
}

#[test]
fn v1_device_rules_start_from_deny_all_and_keep_order() {
    let (root, m) = created_manager(Layout::V1);
    let rules = r#"{"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
        {"allow": true, "type": "c", "major": 136, "access": "rwm"},
        {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}
    ]}"#;
    m.apply(&resources(rules)).unwrap();
    let dir = root.path().join("devices/runvm/c1");
    // The fake files concatenate the separate writes the kernel would see one by one.
    assert_eq!(read(dir.join("devices.deny")), "aa *:* rwmc 1:3 w");
    assert_eq!(read(dir.join("devices.allow")), "c 1:3 rwc 136:* rwm");
}

#[test]
fn add_task_freeze_pids_and_stats_on_a_fake_tree() {
    let (root, m) = created_manager(Layout::Hybrid);
    m.add_task(4242).unwrap();
    for dir in m.hierarchy_paths() {
        assert_eq!(read(dir.join("cgroup.procs")), "4242", "{}", dir.display());
    }
    assert_eq!(m.pids().unwrap(), [4242]);
    m.freeze().unwrap();
    assert!(m.is_frozen().unwrap());
    m.thaw().unwrap();
    assert!(!m.is_frozen().unwrap());
    let stats = m.stats().unwrap();
    assert_eq!(stats.cpu.usage.total, 123456);
    assert_eq!(stats.cpu.usage.percpu, [100000, 23456]);
    assert_eq!(stats.cpu.usage.user, 3 * 10_000_000);
    assert_eq!(stats.cpu.throttling.throttled_periods, 2);
    assert_eq!(stats.memory.usage.usage, 4096);
    assert_eq!(stats.memory.usage.failcnt, 3);
    assert_eq!(stats.memory.cache, 150);
    assert_eq!(stats.pids.current, 2);
    assert_eq!(stats.pids.limit, 0);
    assert_eq!(stats.blkio.io_service_bytes_recursive.len(), 2);
    assert_eq!(stats.hugetlb["2MB"].max, u64::MAX);
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["cpu"]["throttling"]["throttledPeriods"], 2);
    assert_eq!(json["memory"]["kernelTCP"]["limit"], 0);
    let _ = root;
}

#[test]
fn v2_stats_read_unified_files() {
    let (_root, m) = created_manager(Layout::V2);
    let stats = m.stats().unwrap();
    assert_eq!(stats.cpu.usage.total, 10_000);
    assert_eq!(stats.cpu.usage.kernel, 4_000);
    assert_eq!(stats.memory.usage.usage, 8192);
    assert_eq!(stats.memory.usage.limit, u64::MAX);
    assert_eq!(stats.memory.usage.failcnt, 7);
    assert_eq!(stats.blkio.io_service_bytes_recursive[0].value, 4096);
    assert_eq!(stats.blkio.io_serviced_recursive[0].value, 1);
    assert_eq!(stats.pids.current, 1);
}

#[test]
fn remove_deletes_only_what_create_made() {
    let root = fake_root(Layout::Hybrid);
    // Someone else's parent in the memory hierarchy, with a sibling of ours.
    fs::create_dir_all(root.path().join("memory/runvm/other")).unwrap();
    let m = CgroupManager::with_root(root.path(), Layout::Hybrid, None, "c1").unwrap();
    m.create().unwrap();
    let created = m.created_dirs();
    assert!(created.contains(&root.path().join("cpu/runvm")));
    assert!(!created.contains(&root.path().join("memory/runvm")));
    populate(root.path(), Layout::Hybrid, &created);
    depopulate(&created);
    // A later process restores the record from the container's state.
    let later = CgroupManager::with_root(root.path(), Layout::Hybrid, None, "c1")
        .unwrap()
        .with_created_dirs(created);
    later.remove().unwrap();
    for dir in m.hierarchy_paths() {
        assert!(!dir.exists(), "{}", dir.display());
    }
    assert!(!root.path().join("cpu/runvm").exists());
    assert!(root.path().join("memory/runvm/other").exists());
    // Removing again is fine.
    later.remove().unwrap();
}

#[test]
fn mount_sources_and_paths_cover_every_hierarchy() {
    let root = fake_root(Layout::Hybrid);
    let m = CgroupManager::with_root(
        root.path(),
        Layout::Hybrid,
        Some(Path::new("/pods/x")),
        "c1",
    )
    .unwrap();
    let sources = m.mount_sources();
    assert_eq!(sources.len(), V1_DIRS.len() + 1);
    let unified = sources.iter().find(|s| s.name == "unified").unwrap();
    assert_eq!(
        (unified.fstype.as_str(), unified.options.as_str()),
        ("cgroup2", "")
    );
    assert_eq!(unified.host_path, root.path().join("unified/pods/x"));
    let systemd = sources.iter().find(|s| s.name == "systemd").unwrap();
    assert_eq!(
        (systemd.fstype.as_str(), systemd.options.as_str()),
        ("cgroup", "name=systemd")
    );
    let memory = sources.iter().find(|s| s.name == "memory").unwrap();
    assert_eq!(memory.options, "memory");
    assert!(m.hierarchy_paths().iter().all(|p| p.ends_with("pods/x")));
}

#[test]
fn relative_path_lands_under_the_runtimes_own_cgroup() {
    let root = fake_root(Layout::Hybrid);
    let m = CgroupManager::with_root(root.path(), Layout::Hybrid, Some(Path::new("sub/c1")), "c1")
        .unwrap();
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let memory_own = own
        .lines()
        .find_map(|l| {
            l.split(':')
                .nth(1)
                .filter(|c| *c == "memory")
                .map(|_| l.splitn(3, ':').nth(2).unwrap())
        })
        .unwrap_or("/")
        .trim_start_matches('/');
    let expected = root.path().join("memory").join(memory_own).join("sub/c1");
    assert!(
        m.hierarchy_paths().contains(&expected),
        "{:?}",
        m.hierarchy_paths()
    );
}

#[test]
fn systemd_style_path_is_refused_clearly() {
    let root = fake_root(Layout::Hybrid);
    let err = CgroupManager::with_root(
        root.path(),
        Layout::Hybrid,
        Some(Path::new("system.slice:runvm:c1")),
        "c1",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("linux.cgroupsPath \"system.slice:runvm:c1\": looks like a systemd"),
        "{err}"
    );
}
