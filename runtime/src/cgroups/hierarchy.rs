//! Finding the hierarchies of a layout: which directories under the cgroup root are mounts, and
//! which controllers each one carries.
//!
//! Only a readdir of the root and a stat per entry: managers are built on the `start` hot path,
//! so /proc/self/mountinfo (large on busy hosts) is not parsed.

use std::path::{Path, PathBuf};

use super::error::CgroupError;
use super::layout::Layout;

/// Controllers a v1 hierarchy directory can be named after. A directory whose name has none of
/// them (e.g. "systemd") is a named hierarchy ("name=systemd").
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// What a hierarchy is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum HierarchyKind {
    /// A v1 hierarchy with these controllers (e.g. ["cpu", "cpuacct"]).
    V1 { controllers: Vec<String> },
    /// A v1 hierarchy without controllers, identified by name (e.g. "systemd").
    Named(String),
    /// The cgroup2 hierarchy (the whole root on V2, /sys/fs/cgroup/unified on Hybrid).
    Unified,
}

/// One mounted hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Hierarchy {
    pub kind: HierarchyKind,
    /// Directory name under the cgroup root ("" for the V2 root itself).
    pub name: String,
    /// Where the hierarchy is mounted.
    pub mount: PathBuf,
}

impl Hierarchy {
    pub fn has_controller(&self, controller: &str) -> bool {
        matches!(&self.kind, HierarchyKind::V1 { controllers } if controllers.iter().any(|c| c == controller))
    }

    pub fn is_unified(&self) -> bool {
        self.kind == HierarchyKind::Unified
    }

    /// Mount options for a cgroupfs of this hierarchy ("cpu,cpuacct", "name=systemd", "").
    pub fn mount_options(&self) -> String {
        match &self.kind {
            HierarchyKind::V1 { controllers } => controllers.join(","),
            HierarchyKind::Named(name) => format!("name={name}"),
            HierarchyKind::Unified => String::new(),
        }
    }

    /// How /proc/<pid>/cgroup names this hierarchy in its second column.
    fn proc_cgroup_key(&self) -> String {
        self.mount_options()
    }
}

/// Lists the hierarchies of `layout` under `root`.
pub(crate) fn discover(root: &Path, layout: Layout) -> Result<Vec<Hierarchy>, CgroupError> {
    if layout == Layout::V2 {
        return Ok(vec![Hierarchy {
            kind: HierarchyKind::Unified,
            name: String::new(),
            mount: root.to_path_buf(),
        }]);
    }
    let entries = std::fs::read_dir(root).map_err(|e| CgroupError::Layout {
        path: root.to_path_buf(),
        reason: format!("listing hierarchies: {e}"),
    })?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        // Symlinks such as cpu -> cpu,cpuacct alias a hierarchy already listed under its real name.
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if !file_type.is_dir() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let mount = entry.path();
        // An unmounted directory has no cgroup.procs.
        if !mount.join("cgroup.procs").exists() {
            continue;
        }
        let kind = if name == "unified" {
            if layout != Layout::Hybrid {
                continue;
            }
            HierarchyKind::Unified
        } else {
            let controllers: Vec<String> = name
                .split(',')
                .filter(|c| V1_CONTROLLERS.contains(c))
                .map(str::to_string)
                .collect();
            if controllers.is_empty() {
                HierarchyKind::Named(name.clone())
            } else {
                HierarchyKind::V1 { controllers }
            }
        };
        found.push(Hierarchy { kind, name, mount });
    }
    // Stable order: v1 hierarchies by name, the unified one last (it is joined last, like runc).
    found.sort_by(|a, b| (a.is_unified(), &a.name).cmp(&(b.is_unified(), &b.name)));
    if found.is_empty() {
        return Err(CgroupError::Layout {
            path: root.to_path_buf(),
            reason: "no cgroup hierarchies mounted".to_string(),
        });
    }
    Ok(found)
}

/// The cgroup of the process described by `proc_cgroup` (the text of /proc/<pid>/cgroup) in
/// hierarchy `h`, as a path relative to the hierarchy root.
pub(crate) fn own_cgroup(proc_cgroup: &str, h: &Hierarchy) -> Option<PathBuf> {
    let key = h.proc_cgroup_key();
    let wanted: Vec<&str> = sorted_parts(&key);
    proc_cgroup.lines().find_map(|line| {
        let mut cols = line.splitn(3, ':');
        let _id = cols.next()?;
        let controllers = cols.next()?;
        let path = cols.next()?;
        let matches = if h.is_unified() {
            controllers.is_empty()
        } else {
            !controllers.is_empty() && sorted_parts(controllers) == wanted
        };
        matches.then(|| PathBuf::from(path.trim_start_matches('/')))
    })
}

fn sorted_parts(list: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = list.split(',').filter(|p| !p.is_empty()).collect();
    parts.sort_unstable();
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root(dirs: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for d in dirs {
            let dir = root.path().join(d);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cgroup.procs"), "").unwrap();
        }
        root
    }

    #[test]
    fn hybrid_discovery_finds_v1_named_and_unified() {
        let root = fake_root(&["cpu,cpuacct", "memory", "systemd", "unified"]);
        std::fs::create_dir(root.path().join("not-mounted")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", root.path().join("cpu")).unwrap();
        let found = discover(root.path(), Layout::Hybrid).unwrap();
        let names: Vec<&str> = found.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["cpu,cpuacct", "memory", "systemd", "unified"]);
        assert!(found[0].has_controller("cpuacct"));
        assert_eq!(found[2].kind, HierarchyKind::Named("systemd".into()));
        assert_eq!(found[2].mount_options(), "name=systemd");
        assert!(found[3].is_unified());
        // On plain V1 a directory called "unified" is not treated as cgroup2.
        let v1 = discover(root.path(), Layout::V1).unwrap();
        assert!(v1.iter().all(|h| !h.is_unified()));
    }

    #[test]
    fn own_cgroup_matches_controller_sets_in_any_order() {
        let proc_cgroup = "9:name=systemd:/sys\n4:cpuacct,cpu:/a/b\n3:memory:/m\n0::/u\n";
        let cpu = Hierarchy {
            kind: HierarchyKind::V1 {
                controllers: vec!["cpu".into(), "cpuacct".into()],
            },
            name: "cpu,cpuacct".into(),
            mount: "/x".into(),
        };
        assert_eq!(own_cgroup(proc_cgroup, &cpu), Some(PathBuf::from("a/b")));
        let unified = Hierarchy {
            kind: HierarchyKind::Unified,
            name: "unified".into(),
            mount: "/x".into(),
        };
        assert_eq!(own_cgroup(proc_cgroup, &unified), Some(PathBuf::from("u")));
        let named = Hierarchy {
            kind: HierarchyKind::Named("systemd".into()),
            name: "systemd".into(),
            mount: "/x".into(),
        };
        assert_eq!(own_cgroup(proc_cgroup, &named), Some(PathBuf::from("sys")));
    }
}
