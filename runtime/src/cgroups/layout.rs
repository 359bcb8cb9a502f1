//! Which cgroup layout the host uses, told apart by filesystem magic numbers.

use std::path::Path;

use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC};

use super::error::CgroupError;

/// Where the host mounts its cgroup hierarchies.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The three ways a host can lay out cgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One v1 hierarchy per controller (or controller group) under a tmpfs at /sys/fs/cgroup.
    V1,
    /// A single cgroup2 hierarchy mounted at /sys/fs/cgroup.
    V2,
    /// v1 hierarchies plus a cgroup2 mount at /sys/fs/cgroup/unified owning the controllers no v1
    /// hierarchy has (on this host: hugetlb).
    Hybrid,
}

/// Detects the layout of the host's /sys/fs/cgroup.
pub fn detect_layout() -> Result<Layout, CgroupError> {
    detect_layout_at(Path::new(CGROUP_ROOT))
}

/// Detects the layout of the cgroup mounts under `root`.
pub fn detect_layout_at(root: &Path) -> Result<Layout, CgroupError> {
    let layout_err = |reason: String| CgroupError::Layout {
        path: root.to_path_buf(),
        reason,
    };
    let fs = statfs(root).map_err(|e| layout_err(format!("statfs: {}", e.desc())))?;
    let magic = fs.filesystem_type();
    if magic == CGROUP2_SUPER_MAGIC {
        return Ok(Layout::V2);
    }
    if magic != TMPFS_MAGIC {
        return Err(layout_err(format!(
            "neither a cgroup2 mount nor a tmpfs holding v1 hierarchies (fs magic {:#x})",
            magic.0
        )));
    }
    let unified = root.join("unified");
    match statfs(&unified) {
        Ok(fs) if fs.filesystem_type() == CGROUP2_SUPER_MAGIC => Ok(Layout::Hybrid),
        _ => Ok(Layout::V1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_directory_is_not_a_cgroup_root() {
        let dir = tempfile::tempdir().unwrap();
        // A tempdir lives on tmpfs or a disk fs: on tmpfs it reads as V1 with no unified mount,
        // elsewhere it must be rejected; both results are checked against statfs itself.
        let is_tmpfs = statfs(dir.path()).unwrap().filesystem_type() == TMPFS_MAGIC;
        let result = detect_layout_at(dir.path());
        if is_tmpfs {
            assert_eq!(result.unwrap(), Layout::V1);
        } else {
            let msg = result.unwrap_err().to_string();
            assert!(msg.contains("neither a cgroup2 mount"), "{msg}");
        }
    }

    #[test]
    fn host_layout_matches_its_mounts() {
        let root = Path::new(CGROUP_ROOT);
        if !root.join("memory").exists() && !root.join("cgroup.controllers").exists() {
            println!("SKIP: no cgroup mounts at {CGROUP_ROOT}");
            return;
        }
        let expected = if root.join("cgroup.controllers").exists() {
            Layout::V2
        } else if root.join("unified/cgroup.controllers").exists() {
            Layout::Hybrid
        } else {
            Layout::V1
        };
        assert_eq!(detect_layout().unwrap(), expected);
    }
}
