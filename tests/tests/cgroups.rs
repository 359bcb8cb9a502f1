//! Cgroup resources: values written where the kernel reads them, and enforced.

use std::path::{Path, PathBuf};

use runvm_tests::*;
use serde_json::json;

/// True on a pure cgroup2 host (controllers live in /sys/fs/cgroup itself).
fn unified_only() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The container's file for `controller`: v1 `<ctrl>/<path>/<v1>`, or `<path>/<v2>`.
fn cgroup_file(controller: &str, cgroups_path: &str, v1: &str, v2: &str) -> PathBuf {
    let rel = cgroups_path.trim_start_matches('/');
    if unified_only() {
        Path::new("/sys/fs/cgroup").join(rel).join(v2)
    } else {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(rel)
            .join(v1)
    }
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Creates the container with `resources`, returns it for reading files.
fn created_with(resources: serde_json::Value) -> (BusyboxBundle, Runtime) {
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["linux"]["resources"] = resources;
    bundle.set_args(&["sleep", "1000"]);
    let rt = Runtime::new();
    rt.create_ok(&bundle);
    (bundle, rt)
}

fn finish(bundle: &BusyboxBundle, rt: &Runtime) {
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
    rt.assert_no_leftovers(bundle);
}

#[test]
fn memory_limit_is_written() {
    if !require_root() {
        return;
    }
    let limit: i64 = 64 << 20;
    let (bundle, rt) = created_with(json!({"memory": {"limit": limit}}));
    let cg = bundle.cgroups_path();
    let file = cgroup_file("memory", cg, "memory.limit_in_bytes", "memory.max");
    assert_eq!(read_trimmed(&file), limit.to_string());
    finish(&bundle, &rt);
}

#[test]
fn pids_limit_is_written() {
    if !require_root() {
        return;
    }
    let (bundle, rt) = created_with(json!({"pids": {"limit": 20}}));
    let file = cgroup_file("pids", bundle.cgroups_path(), "pids.max", "pids.max");
    assert_eq!(read_trimmed(&file), "20");
    finish(&bundle, &rt);
}

#[test]
fn cpu_shares_quota_and_period_are_written() {
    if !require_root() {
        return;
    }
    let (bundle, rt) =
        created_with(json!({"cpu": {"shares": 512, "quota": 50000, "period": 100000}}));
    let cg = bundle.cgroups_path();
    if unified_only() {
        let max = cgroup_file("cpu", cg, "", "cpu.max");
        assert_eq!(read_trimmed(&max), "50000 100000");
        // runc's documented shares -> weight conversion: 1 + (shares-2)*9999/262142.
        let weight = cgroup_file("cpu", cg, "", "cpu.weight");
        assert_eq!(
            read_trimmed(&weight),
            (1 + (512 - 2) * 9999 / 262142).to_string()
        );
    } else {
        let read = |f: &str| read_trimmed(&cgroup_file("cpu", cg, f, ""));
        assert_eq!(read("cpu.shares"), "512");
        assert_eq!(read("cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu.cfs_period_us"), "100000");
    }
    finish(&bundle, &rt);
}

#[test]
fn container_process_is_in_its_cgroup_everywhere() {
    if !require_root() {
        return;
    }
    let (bundle, rt) = created_with(json!({}));
    let pid = rt.state(bundle.id())["pid"].as_i64().expect("pid") as i32;
    assert!(proc_in_cgroup(bundle.cgroups_path()).contains(&pid));
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    for line in text.lines() {
        // Every hierarchy this host mounts must place the process in its cgroupsPath.
        let controllers = line.split(':').nth(1).unwrap_or("");
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        let mounted = controllers.is_empty()
            || controllers.split(',').any(|c| {
                Path::new("/sys/fs/cgroup")
                    .join(c.trim_start_matches("name="))
                    .exists()
            });
        if mounted {
            assert_eq!(path, bundle.cgroups_path(), "hierarchy line {line}");
        }
    }
    finish(&bundle, &rt);
}

#[test]
fn pids_limit_is_enforced() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["linux"]["resources"] = json!({"pids": {"limit": 5}});
    let rt = Runtime::new();
    // The shell (1 pid) tries to start 10 sleepers: at most 4 may exist.
    let out = rt.run_script(
        &mut bundle,
        "i=0; while [ $i -lt 10 ]; do sleep 2 & i=$((i+1)); done 2>&1; \
         echo procs=$(ls -d /proc/[0-9]* | wc -l)",
    );
    let all = format!("{}{}", stdout_of(&out), stderr_of(&out));
    assert!(
        all.contains("can't fork") || all.contains("Resource temporarily unavailable"),
        "{all}"
    );
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn memory_limit_is_enforced() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let limit: i64 = 32 << 20;
    // swap = limit too, so the allocation cannot escape to swap where it exists.
    let has_memsw =
        !unified_only() && Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    let memory = if has_memsw || unified_only() {
        json!({"limit": limit, "swap": limit})
    } else {
        json!({"limit": limit})
    };
    bundle.config_mut()["linux"]["resources"] = json!({"memory": memory});
    let rt = Runtime::new();
    // dd allocates one 128 MiB buffer and fills it: the OOM killer must stop it.
    let out = rt.run_script(
        &mut bundle,
        "dd if=/dev/zero of=/dev/null bs=128M count=1 2>/dev/null; echo dd=$?",
    );
    assert_success(&out, "run");
    assert_eq!(stdout_of(&out), format!("dd={}\n", 128 + libc::SIGKILL));
    rt.assert_no_leftovers(&bundle);
}
