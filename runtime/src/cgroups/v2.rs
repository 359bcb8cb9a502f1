//! cgroup v2 specifics: delegating controllers down the tree and the cgroup.freeze freezer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::CgroupError;
use super::fsio;
use super::tree;

const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);
const SUBTREE_CONTROL: &str = "cgroup.subtree_control";

/// Creates `mount/rel`. With `delegate_all` (a pure v2 host) every controller the root offers is
/// enabled down to the new cgroup, best effort: a level holding processes refuses delegation
/// (the "no internal processes" rule) and later writes then report the missing files.
pub(crate) fn create(
    mount: &Path,
    rel: &Path,
    delegate_all: bool,
) -> Result<Vec<PathBuf>, CgroupError> {
    let created = tree::create_levels(mount, rel)?;
    if delegate_all {
        let available = fsio::read_optional(mount, "cgroup.controllers", "cgroup.controllers")?
            .unwrap_or_default();
        let controllers: Vec<&str> = available.split_whitespace().collect();
        for controller in controllers {
            let _ = enable_controller(mount, rel, controller);
        }
    }
    Ok(created)
}

/// Enables `controller` in cgroup.subtree_control of every ancestor of `mount/rel`, so that the
/// controller's files appear in the container's cgroup.
pub(crate) fn enable_controller(
    mount: &Path,
    rel: &Path,
    controller: &str,
) -> Result<(), CgroupError> {
    let mut dir = mount.to_path_buf();
    let levels: Vec<_> = rel.components().collect();
    for (index, part) in levels.iter().enumerate() {
        let enabled = fsio::read(&dir, SUBTREE_CONTROL, SUBTREE_CONTROL)?;
        if !enabled.split_whitespace().any(|c| c == controller) {
            fsio::append(
                &dir,
                SUBTREE_CONTROL,
                &format!("+{controller}"),
                SUBTREE_CONTROL,
            )?;
        }
        if index + 1 < levels.len() {
            dir.push(part);
        }
    }
    Ok(())
}

/// True when the cgroup2 hierarchy at `mount` offers `controller` at its root.
pub(crate) fn offers_controller(mount: &Path, controller: &str) -> Result<bool, CgroupError> {
    let available =
        fsio::read_optional(mount, "cgroup.controllers", "cgroup.controllers")?.unwrap_or_default();
    Ok(available.split_whitespace().any(|c| c == controller))
}

pub(crate) fn freeze(dir: &Path) -> Result<(), CgroupError> {
    set_frozen(dir, true)
}

pub(crate) fn thaw(dir: &Path) -> Result<(), CgroupError> {
    set_frozen(dir, false)
}

/// Reads the "frozen" key of cgroup.events (what the kernel has done, not what was asked).
pub(crate) fn is_frozen(dir: &Path) -> Result<bool, CgroupError> {
    let events = fsio::read(dir, "cgroup.events", "cgroup.events")?;
    let frozen = fsio::key_values(&events).any(|(k, v)| k == "frozen" && v == 1);
    Ok(frozen)
}

fn set_frozen(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    let value = if frozen { "1" } else { "0" };
    fsio::write(dir, "cgroup.freeze", value, "cgroup.freeze")?;
    if tree::wait_until(FREEZE_TIMEOUT, || Ok(is_frozen(dir)? == frozen))? {
        return Ok(());
    }
    if frozen {
        // Leave the container running rather than half frozen.
        let _ = fsio::write(dir, "cgroup.freeze", "0", "cgroup.freeze");
    }
    Err(CgroupError::Timeout {
        what: format!("writing {value} to cgroup.freeze"),
        path: dir.join("cgroup.events"),
        millis: FREEZE_TIMEOUT.as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enable_controller_touches_ancestors_only() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("a/b")).unwrap();
        std::fs::write(root.path().join(SUBTREE_CONTROL), "cpu hugetlb\n").unwrap();
        std::fs::write(root.path().join("a").join(SUBTREE_CONTROL), "cpu\n").unwrap();
        enable_controller(root.path(), Path::new("a/b"), "hugetlb").unwrap();
        // Already enabled at the root: left as is; missing one level down: added.
        let top = std::fs::read_to_string(root.path().join(SUBTREE_CONTROL)).unwrap();
        assert_eq!(top, "cpu hugetlb\n");
        let mid = std::fs::read_to_string(root.path().join("a").join(SUBTREE_CONTROL)).unwrap();
        assert_eq!(mid, "cpu\n+hugetlb");
        // The container's own cgroup does not delegate (it holds the processes).
        assert!(!root.path().join("a/b").join(SUBTREE_CONTROL).exists());
    }

    #[test]
    fn frozen_is_read_from_cgroup_events() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.freeze"), "0").unwrap();
        std::fs::write(dir.path().join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        freeze(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cgroup.freeze")).unwrap(),
            "1"
        );
        assert!(is_frozen(dir.path()).unwrap());
    }
}
