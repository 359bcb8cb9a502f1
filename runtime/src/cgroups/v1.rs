//! cgroup v1 specifics: creating cpuset cgroups that can hold tasks, and the freezer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::CgroupError;
use super::fsio;
use super::tree;

const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates `mount/rel`. In the cpuset hierarchy a new cgroup starts with empty cpuset.cpus and
/// cpuset.mems, which makes adding tasks fail with ENOSPC, so the leaf inherits its parent's
/// values, and a parent found empty (a concurrent create made it, e.g. `runvm-clients/`, and
/// has not filled it yet) is filled first from its own parent.
pub(crate) fn create(
    mount: &Path,
    rel: &Path,
    is_cpuset: bool,
) -> Result<Vec<PathBuf>, CgroupError> {
    let created = tree::create_levels(mount, rel)?;
    if is_cpuset {
        if let Err(e) = fill_empty_cpusets(mount, rel) {
            for dir in created.iter().rev() {
                let _ = tree::remove_dir(dir);
            }
            return Err(e);
        }
    }
    Ok(created)
}

/// Makes `mount/rel` able to hold tasks: see [`inherit_cpuset`].
fn fill_empty_cpusets(mount: &Path, rel: &Path) -> Result<(), CgroupError> {
    inherit_cpuset(&mount.join(rel), mount)
}

/// Copies cpuset.cpus / cpuset.mems from `dir`'s parent into `dir` where `dir`'s are empty,
/// filling the parent the same way first when its values are empty too (up to `mount`, whose
/// values are the machine's). A filled leaf costs two reads; only the race reads further up.
fn inherit_cpuset(dir: &Path, mount: &Path) -> Result<(), CgroupError> {
    let parent = dir
        .parent()
        .filter(|p| p.starts_with(mount))
        .unwrap_or(mount);
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let field = "cgroup creation (cpuset inheritance)";
        // No file: nothing that could block adding tasks.
        let Some(own) = fsio::read_optional(dir, file, field)? else {
            continue;
        };
        if !own.trim().is_empty() {
            continue;
        }
        let mut inherited = fsio::read(parent, file, field)?;
        if inherited.trim().is_empty() && parent != mount {
            inherit_cpuset(parent, mount)?;
            inherited = fsio::read(parent, file, field)?;
        }
        fsio::write(dir, file, inherited.trim(), field)?;
    }
    Ok(())
}

/// Freezes every task of the freezer cgroup `dir` and waits until the kernel reports FROZEN.
pub(crate) fn freeze(dir: &Path) -> Result<(), CgroupError> {
    set_freezer_state(dir, "FROZEN")
}

/// Thaws the freezer cgroup `dir`.
pub(crate) fn thaw(dir: &Path) -> Result<(), CgroupError> {
    set_freezer_state(dir, "THAWED")
}

pub(crate) fn is_frozen(dir: &Path) -> Result<bool, CgroupError> {
    Ok(fsio::read(dir, "freezer.state", "freezer.state")?.trim() == "FROZEN")
}

fn set_freezer_state(dir: &Path, state: &str) -> Result<(), CgroupError> {
    let field = "freezer.state";
    // Writing FROZEN again nudges tasks that were forking while the freeze started (the state
    // stays FREEZING until every task has stopped).
    let reached = tree::wait_until(FREEZE_TIMEOUT, || {
        fsio::write(dir, field, state, field)?;
        Ok(fsio::read(dir, field, field)?.trim() == state)
    })?;
    if reached {
        return Ok(());
    }
    if state == "FROZEN" {
        // Leave the container running rather than half frozen.
        let _ = fsio::write(dir, field, "THAWED", field);
    }
    Err(CgroupError::Timeout {
        what: format!("setting {field} to {state}"),
        path: dir.join(field),
        millis: FREEZE_TIMEOUT.as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_cpuset_files_inherit_from_parent_and_set_ones_stay() {
        let root = tempfile::tempdir().unwrap();
        let child = root.path().join("c");
        std::fs::create_dir(&child).unwrap();
        std::fs::write(root.path().join("cpuset.cpus"), "0-1\n").unwrap();
        std::fs::write(root.path().join("cpuset.mems"), "0\n").unwrap();
        std::fs::write(child.join("cpuset.cpus"), "\n").unwrap();
        std::fs::write(child.join("cpuset.mems"), "1\n").unwrap();
        inherit_cpuset(&child, root.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(child.join("cpuset.cpus")).unwrap(),
            "0-1"
        );
        assert_eq!(
            std::fs::read_to_string(child.join("cpuset.mems")).unwrap(),
            "1\n"
        );
    }

    #[test]
    fn a_parent_made_by_someone_else_and_still_empty_is_filled_before_the_leaf() {
        // What a concurrent create leaves for a moment: the shared parent exists, unfilled.
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cpuset.cpus"), "0-1\n").unwrap();
        std::fs::write(root.path().join("cpuset.mems"), "0\n").unwrap();
        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::write(shared.join("cpuset.cpus"), "\n").unwrap();
        std::fs::write(shared.join("cpuset.mems"), "\n").unwrap();
        // A plain directory gets no cpuset files from mkdir; give the leaf empty ones as the
        // kernel would, by creating it first through create() and writing them afterwards.
        let created = create(root.path(), Path::new("shared/leaf"), false).unwrap();
        assert_eq!(created, [shared.join("leaf")]);
        let leaf = shared.join("leaf");
        std::fs::write(leaf.join("cpuset.cpus"), "\n").unwrap();
        std::fs::write(leaf.join("cpuset.mems"), "\n").unwrap();
        fill_empty_cpusets(root.path(), Path::new("shared/leaf")).unwrap();
        for dir in [&shared, &leaf] {
            assert_eq!(
                std::fs::read_to_string(dir.join("cpuset.cpus")).unwrap(),
                "0-1"
            );
            assert_eq!(
                std::fs::read_to_string(dir.join("cpuset.mems")).unwrap(),
                "0"
            );
        }
    }

    #[test]
    fn freezer_state_round_trip_on_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("freezer.state"), "THAWED\n").unwrap();
        freeze(dir.path()).unwrap();
        assert!(is_frozen(dir.path()).unwrap());
        thaw(dir.path()).unwrap();
        assert!(!is_frozen(dir.path()).unwrap());
    }
}
