//! Directory work shared by v1 and v2 hierarchies: creating the levels of a cgroup path,
//! removing only the levels we created, and listing the pids of a subtree.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::CgroupError;
use super::fsio;

/// Creates every missing level of `mount/rel`; returns the directories it created, top first.
/// A shared parent (e.g. `runvm/`) can vanish between our mkdirs when the container that made it
/// is deleted at that moment; the walk then starts again from the top.
pub(crate) fn create_levels(mount: &Path, rel: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    const ATTEMPTS: u32 = 5;
    let mut created = Vec::new();
    'walk: for attempt in 1..=ATTEMPTS {
        let mut dir = mount.to_path_buf();
        for part in rel.components() {
            dir.push(part);
            match std::fs::create_dir(&dir) {
                Ok(()) => created.push(dir.clone()),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == ErrorKind::NotFound && attempt < ATTEMPTS => continue 'walk,
                Err(source) => return Err(CgroupError::Create { path: dir, source }),
            }
        }
        break;
    }
    Ok(created)
}

/// Removes a parent cgroup directory that other containers may share: one attempt, no waiting.
/// EBUSY or ENOTEMPTY means it still holds someone's cgroup, which is theirs to clean.
pub(crate) fn remove_shared_parent(dir: &Path) {
    let _ = std::fs::remove_dir(dir);
}

/// Removes a cgroup directory. A missing directory is fine. The kernel answers EBUSY for a
/// moment after the last task exits, so that is retried briefly.
pub(crate) fn remove_dir(dir: &Path) -> Result<(), CgroupError> {
    const ATTEMPTS: u32 = 10;
    let mut delay = Duration::from_millis(5);
    for attempt in 1..=ATTEMPTS {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < ATTEMPTS => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Every pid in `dir` and its descendant cgroups. A cgroup vanishing mid-walk is skipped.
pub(crate) fn pids_recursive(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let mut pids = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let text =
            fsio::read_optional(&current, "cgroup.procs", "cgroup.procs")?.unwrap_or_default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let pid = line.trim().parse().map_err(|_| CgroupError::Parse {
                field: "cgroup.procs".to_string(),
                path: current.join("cgroup.procs"),
                content: line.to_string(),
            })?;
            pids.push(pid);
        }
        if let Ok(entries) = std::fs::read_dir(&current) {
            for entry in entries.flatten() {
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    pending.push(entry.path());
                }
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// Polls `check` every few milliseconds until it returns true or `timeout` passes.
pub(crate) fn wait_until(
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool, CgroupError>,
) -> Result<bool, CgroupError> {
    let start = std::time::Instant::now();
    let mut delay = Duration::from_micros(200);
    loop {
        if check()? {
            return Ok(true);
        }
        if start.elapsed() >= timeout {
            return Ok(false);
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_levels_reports_only_new_dirs_and_remove_tolerates_missing() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("a")).unwrap();
        let created = create_levels(root.path(), Path::new("a/b/c")).unwrap();
        assert_eq!(
            created,
            [root.path().join("a/b"), root.path().join("a/b/c")]
        );
        assert!(create_levels(root.path(), Path::new("a/b/c"))
            .unwrap()
            .is_empty());
        remove_dir(&root.path().join("a/b/c")).unwrap();
        remove_dir(&root.path().join("a/b/c")).unwrap();
        assert!(!root.path().join("a/b/c").exists());
    }

    #[test]
    fn pids_recursive_walks_children() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("sub/deeper")).unwrap();
        std::fs::write(root.path().join("cgroup.procs"), "10\n11\n").unwrap();
        std::fs::write(root.path().join("sub/deeper/cgroup.procs"), "7\n").unwrap();
        assert_eq!(pids_recursive(root.path()).unwrap(), [7, 10, 11]);
    }
}
