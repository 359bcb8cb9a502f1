//! Checks that a container left nothing behind on the host.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Where `cgroups_path` would live in every hierarchy mounted under
/// /sys/fs/cgroup (v1 controllers, named hierarchies, the unified one), plus
/// /sys/fs/cgroup itself when that is a pure cgroup2 mount.
pub fn cgroup_dirs(cgroups_path: &str) -> Vec<PathBuf> {
    let rel = cgroups_path.trim_start_matches('/');
    if rel.is_empty() {
        return Vec::new();
    }
    let root = Path::new(CGROUP_ROOT);
    let mut dirs = Vec::new();
    if root.join("cgroup.controllers").exists() {
        dirs.push(root.join(rel));
    }
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let hierarchy = entry.path();
            // Skip symlinked aliases such as cpu,cpuacct -> cpu.
            let is_real_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_real_dir && hierarchy.join("cgroup.procs").exists() {
                dirs.push(hierarchy.join(rel));
            }
        }
    }
    dirs
}

/// Pids whose /proc/PID/cgroup places them in `cgroups_path` or below it.
pub fn proc_in_cgroup(cgroups_path: &str) -> Vec<i32> {
    let nested = format!("{cgroups_path}/");
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(entry.path().join("cgroup")) else {
            continue;
        };
        let inside = text.lines().any(|line| {
            // hierarchy-id:controllers:path
            let path = line.splitn(3, ':').nth(2).unwrap_or("");
            path == cgroups_path || path.starts_with(&nested)
        });
        if inside {
            pids.push(pid);
        }
    }
    pids
}

fn mountinfo_lines_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

/// Everything the runtime might leave behind, described; empty when clean.
fn leftovers(root: &Path, id: &str, cgroups_path: &str, bundle: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let state_dir = root.join(id);
    if state_dir.exists() {
        found.push(format!("state dir {} exists", state_dir.display()));
    }
    for dir in cgroup_dirs(cgroups_path) {
        if dir.exists() {
            found.push(format!("cgroup dir {} exists", dir.display()));
        }
    }
    for line in mountinfo_lines_mentioning(&bundle.to_string_lossy()) {
        found.push(format!("mount left: {line}"));
    }
    for pid in proc_in_cgroup(cgroups_path) {
        let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        found.push(format!(
            "process {pid} ({}) in cgroup",
            cmd.replace('\0', " ")
        ));
    }
    found
}

/// Asserts no state dir under `root`, no cgroup dir in any hierarchy, no
/// mount of the bundle and no process in the cgroup. Retries for a few
/// seconds because dying processes and cgroup removal are asynchronous.
pub fn assert_no_leftovers(root: &Path, id: &str, cgroups_path: &str, bundle: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = leftovers(root, id, cgroups_path, bundle);
        if found.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "container {id} left things behind:\n  {}",
                found.join("\n  ")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
