//! CgroupManager on this host's real hierarchies (root only). Every test works in cgroups named
//! runvm-test-<random> that it creates, and a Drop guard removes them even when an assert fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use oci_spec::runtime::LinuxResources;

use super::{detect_layout, CgroupManager, Layout, CGROUP_ROOT};

fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".to_string());
    }
    if !Path::new(CGROUP_ROOT).join("memory/cgroup.procs").exists() {
        return Some(format!(
            "no cgroup v1 memory hierarchy at {CGROUP_ROOT}/memory"
        ));
    }
    None
}

fn unique_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("runvm-test-{tag}-{}-{nanos:x}", std::process::id())
}

/// Thaws, kills our child, removes the cgroups; runs even when the test panics.
struct Cleanup {
    manager: CgroupManager,
    child: Option<Child>,
    /// cgroup.subtree_control files we added "+hugetlb" to and must restore.
    delegated: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.manager.thaw();
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.manager.remove().is_err() {
            for dir in self.manager.hierarchy_paths().iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
        }
        for file in &self.delegated {
            let _ = std::fs::write(file, "-hugetlb");
        }
    }
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
        .trim()
        .to_string()
}

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

/// Runs `sh -c 'echo $$ > PROCS; exec CMD'` (so only CMD runs inside the cgroup) and reports
/// whether it succeeded.
fn succeeds_inside(procs: &Path, cmd: &str) -> bool {
    let script = format!("echo $$ > {} && exec {cmd}", procs.display());
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn lifecycle_on_the_host() {
    if let Some(reason) = skip_reason() {
        println!("SKIP: {reason}");
        return;
    }
    let layout = detect_layout().unwrap();
    let name = unique_name("life");
    let path = PathBuf::from("/").join(&name);
    let manager = CgroupManager::new(layout, Some(&path), &name).unwrap();
    let mut guard = Cleanup {
        manager: manager.clone(),
        child: None,
        delegated: Vec::new(),
    };
    manager.create().unwrap();
    for dir in manager.hierarchy_paths() {
        assert!(dir.is_dir(), "{}", dir.display());
    }
    let unified_root = Path::new(CGROUP_ROOT).join("unified");
    let hugetlb_was_delegated =
        std::fs::read_to_string(unified_root.join("cgroup.subtree_control"))
            .map(|s| s.split_whitespace().any(|c| c == "hugetlb"))
            .unwrap_or(true);
    if layout == Layout::Hybrid && !hugetlb_was_delegated {
        guard
            .delegated
            .push(unified_root.join("cgroup.subtree_control"));
    }

    let mut json = String::from(
        r#"{"memory": {"limit": 67108864, "swap": 134217728},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
            "pids": {"limit": 32},
            "blockIO": {"weight": 300, "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}]}"#,
    );
    let hugetlb =
        layout == Layout::Hybrid && Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists();
    if hugetlb {
        json.push_str(r#", "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]"#);
    }
    json.push('}');
    manager.apply(&resources(&json)).unwrap();
    let root = Path::new(CGROUP_ROOT);
    assert_eq!(
        read(
            root.join("memory")
                .join(&name)
                .join("memory.limit_in_bytes")
        ),
        "67108864"
    );
    assert_eq!(
        read(
            root.join("memory")
                .join(&name)
                .join("memory.memsw.limit_in_bytes")
        ),
        "134217728"
    );
    assert_eq!(read(root.join("pids").join(&name).join("pids.max")), "32");
    assert_eq!(read(root.join("cpu").join(&name).join("cpu.shares")), "512");
    assert_eq!(
        read(root.join("cpu").join(&name).join("cpu.cfs_quota_us")),
        "50000"
    );
    let blkio = root.join("blkio").join(&name);
    let weight_file = ["blkio.weight", "blkio.bfq.weight"]
        .into_iter()
        .find(|f| blkio.join(f).exists())
        .unwrap();
    assert_eq!(read(blkio.join(weight_file)), "300");
    if Path::new("/sys/dev/block/254:0").exists() {
        assert_eq!(
            read(blkio.join("blkio.throttle.read_bps_device")),
            "254:0 1048576"
        );
    }
    if !root.join("net_cls").exists() {
        let err = manager
            .apply(&resources(r#"{"network": {"classID": 1}}"#))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("linux.resources.network.classID: "),
            "{err}"
        );
    }
    if hugetlb {
        assert_eq!(
            read(root.join("unified").join(&name).join("hugetlb.2MB.max")),
            "4194304"
        );
    }

    // The child waits for a line on stdin so that its work is charged to the new cgroup: CPU
    // time and memory used before joining stay with the old one.
    let script = "read go; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 30";
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    guard.child = Some(child);
    manager.add_task(pid).unwrap();
    assert_eq!(manager.pids().unwrap(), [pid]);
    {
        use std::io::Write;
        let stdin = guard.child.as_mut().and_then(|c| c.stdin.as_mut()).unwrap();
        stdin.write_all(b"go\n").unwrap();
    }
    // Wait until the loop is done and sleep runs.
    let exe = format!("/proc/{pid}/exe");
    let start = std::time::Instant::now();
    while std::fs::read_link(&exe)
        .map(|p| !p.ends_with("sleep"))
        .unwrap_or(true)
    {
        assert!(start.elapsed().as_secs() < 20, "child never reached sleep");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let proc_cgroup = read(format!("/proc/{pid}/cgroup"));
    assert!(
        proc_cgroup.contains(&format!(":memory:/{name}")),
        "{proc_cgroup}"
    );
    if layout == Layout::Hybrid {
        assert!(
            proc_cgroup.contains(&format!("0::/{name}")),
            "{proc_cgroup}"
        );
    }

    manager.freeze().unwrap();
    assert!(manager.is_frozen().unwrap());
    manager.thaw().unwrap();
    assert!(!manager.is_frozen().unwrap());

    let stats = manager.stats().unwrap();
    assert_eq!(stats.pids.current, 1);
    assert_eq!(stats.pids.limit, 32);
    assert_eq!(stats.memory.usage.limit, 67108864);
    assert!(
        stats.memory.usage.usage > 0 && stats.memory.usage.usage < 67108864,
        "{stats:?}"
    );
    assert!(stats.cpu.usage.total > 0, "{stats:?}");
    if hugetlb {
        assert_eq!(stats.hugetlb["2MB"].max, 4194304);
    }

    let mut child = guard.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    manager.remove().unwrap();
    for dir in manager.hierarchy_paths() {
        assert!(!dir.exists(), "{} still exists", dir.display());
    }
}

#[test]
fn v1_device_rules_deny_and_allow_dev_null() {
    if let Some(reason) = skip_reason() {
        println!("SKIP: {reason}");
        return;
    }
    let layout = detect_layout().unwrap();
    if layout == Layout::V2 {
        println!("SKIP: no cgroup v1 devices hierarchy");
        return;
    }
    let name = unique_name("dev");
    let manager = CgroupManager::new(layout, Some(&PathBuf::from("/").join(&name)), &name).unwrap();
    let _guard = Cleanup {
        manager: manager.clone(),
        child: None,
        delegated: Vec::new(),
    };
    manager.create().unwrap();
    let procs = Path::new(CGROUP_ROOT)
        .join("devices")
        .join(&name)
        .join("cgroup.procs");
    manager
        .apply(&resources(
            r#"{"devices": [{"allow": false, "access": "rwm"}]}"#,
        ))
        .unwrap();
    assert!(!succeeds_inside(&procs, "cat /dev/null"));
    manager
        .apply(&resources(r#"{"devices": [{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]}"#))
        .unwrap();
    assert!(succeeds_inside(&procs, "cat /dev/null"));
    assert!(!succeeds_inside(&procs, "head -c1 /dev/zero"));
}

/// Drives the cgroup2 hierarchy at /sys/fs/cgroup/unified as if it were a pure v2 host: device
/// rules through the eBPF filter, and the cgroup.freeze freezer.
#[test]
fn v2_ebpf_device_filter_and_freezer() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP: needs root");
        return;
    }
    let unified = Path::new(CGROUP_ROOT).join("unified");
    let v2_root = if unified.join("cgroup.controllers").exists() {
        unified
    } else if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        PathBuf::from(CGROUP_ROOT)
    } else {
        println!("SKIP: no cgroup2 hierarchy");
        return;
    };
    let name = unique_name("bpf");
    let manager = CgroupManager::with_root(
        &v2_root,
        Layout::V2,
        Some(&PathBuf::from("/").join(&name)),
        &name,
    )
    .unwrap();
    // On a pure v2 host create() delegates every controller; undo that for hugetlb on this host.
    let subtree = v2_root.join("cgroup.subtree_control");
    let hugetlb_was_delegated = std::fs::read_to_string(&subtree)
        .map(|s| s.split_whitespace().any(|c| c == "hugetlb"))
        .unwrap_or(true);
    let mut guard = Cleanup {
        manager: manager.clone(),
        child: None,
        delegated: if hugetlb_was_delegated {
            Vec::new()
        } else {
            vec![subtree]
        },
    };
    manager.create().unwrap();
    let procs = v2_root.join(&name).join("cgroup.procs");
    let devices = |json: &str| manager.apply(&resources(&format!(r#"{{"devices": {json}}}"#)));

    devices(r#"[{"allow": false, "access": "rwm"}]"#).unwrap();
    assert!(
        !succeeds_inside(&procs, "cat /dev/null"),
        "deny-all let /dev/null open"
    );

    // Attaching again replaces the filter.
    devices(r#"[{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]"#).unwrap();
    assert!(succeeds_inside(&procs, "cat /dev/null"));
    assert!(
        !succeeds_inside(&procs, "head -c1 /dev/zero"),
        "/dev/zero was not in the allow list"
    );

    // A later deny narrows an earlier allow, per access bit.
    devices(r#"[{"allow": true, "access": "rwm"}, {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}]"#)
        .unwrap();
    assert!(succeeds_inside(&procs, "cat /dev/null"));
    assert!(!succeeds_inside(&procs, "sh -c 'echo x > /dev/null'"));
    assert!(succeeds_inside(&procs, "head -c1 /dev/zero"));

    let child = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let pid = child.id() as i32;
    guard.child = Some(child);
    manager.add_task(pid).unwrap();
    assert_eq!(manager.pids().unwrap(), [pid]);
    manager.freeze().unwrap();
    assert!(manager.is_frozen().unwrap());
    manager.thaw().unwrap();
    assert!(!manager.is_frozen().unwrap());
    let mut child = guard.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    manager.remove().unwrap();
    assert!(!v2_root.join(&name).exists());
}
