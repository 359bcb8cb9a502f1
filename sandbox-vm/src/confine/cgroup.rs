//! The monitor's own cgroup: `path` (relative, given by the caller) created in every cgroup
//! hierarchy this process is in (v1 controllers, named v1 hierarchies, the v2 tree: pure v1,
//! pure v2 and hybrid hosts alike). The monitor moves its whole process there; dropping the
//! membership moves it back and removes only the directories this membership created.
//!
//! Everything needed to leave is opened while joining, so leaving works from inside a jail
//! and under the main thread's seccomp filter (write + unlinkat on open directory fds).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use nix::unistd::{unlinkat, UnlinkatFlags};

use super::ConfineError;

/// One hierarchy the process belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    /// Where it is mounted, e.g. /sys/fs/cgroup/cpu,cpuacct or /sys/fs/cgroup/unified.
    mount: PathBuf,
    /// The process's cgroup in it, relative to `mount`.
    current: PathBuf,
    /// cgroup v1 cpuset: a new cgroup has no CPUs or memory nodes until given some.
    is_v1_cpuset: bool,
}

/// A created directory, removable through its parent's fd.
struct Created {
    parent: File,
    name: PathBuf,
    path: PathBuf,
}

/// The process's membership in its own cgroup; dropping it leaves and cleans up.
pub struct CgroupMembership {
    /// Per hierarchy: the original cgroup's cgroup.procs (to go back to).
    return_to: Vec<(PathBuf, File)>,
    /// Deepest last, in creation order.
    created: Vec<Created>,
}

impl CgroupMembership {
    /// Creates `path` in every hierarchy of this process and moves the process there.
    pub fn join(path: &Path) -> Result<CgroupMembership, ConfineError> {
        check_relative(path)?;
        let mountinfo = read("/proc/self/mountinfo")?;
        let membership = read("/proc/self/cgroup")?;
        let hierarchies = hierarchies(&mountinfo, &membership);
        if hierarchies.is_empty() {
            return Err(ConfineError::Cgroup {
                path: PathBuf::from("/proc/self/cgroup"),
                detail: "this process is in no mounted cgroup hierarchy".into(),
            });
        }
        let mut joined = CgroupMembership {
            return_to: Vec::new(),
            created: Vec::new(),
        };
        // On an error `joined` drops: the process goes back and created dirs are removed.
        for hierarchy in &hierarchies {
            let original = hierarchy
                .mount
                .join(&hierarchy.current)
                .join("cgroup.procs");
            let back = open_for_write(&original)?;
            joined.return_to.push((original, back));
            let target = joined.create_levels(hierarchy, path)?;
            move_process(&target.join("cgroup.procs"))?;
        }
        Ok(joined)
    }

    /// Creates each missing level of `mount/path`; returns the leaf.
    fn create_levels(
        &mut self,
        hierarchy: &Hierarchy,
        path: &Path,
    ) -> Result<PathBuf, ConfineError> {
        let mut dir = hierarchy.mount.clone();
        for part in path.components() {
            let parent = dir.clone();
            dir.push(part);
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(cgroup_io(&dir, e)),
            }
            let parent_fd = File::open(&parent).map_err(|e| cgroup_io(&parent, e))?;
            self.created.push(Created {
                parent: parent_fd,
                name: PathBuf::from(part.as_os_str()),
                path: dir.clone(),
            });
            if hierarchy.is_v1_cpuset {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = read(parent.join(file))?;
                    write_file(&dir.join(file), value.trim().as_bytes())?;
                }
            }
        }
        Ok(dir)
    }

    /// The directories this membership created (for tests and logs).
    pub fn created_dirs(&self) -> impl Iterator<Item = &Path> {
        self.created.iter().map(|c| c.path.as_path())
    }
}

impl Drop for CgroupMembership {
    fn drop(&mut self) {
        let pid = std::process::id().to_string();
        for (_, procs) in &mut self.return_to {
            // Best effort: a failed move back leaves the rmdir below failing (EBUSY), and
            // the directory then stays for the caller to remove.
            let _ = procs.write_all(pid.as_bytes());
        }
        for created in self.created.iter().rev() {
            let _ = unlinkat(&created.parent, &created.name, UnlinkatFlags::RemoveDir);
        }
    }
}

/// The process's hierarchies: each `/proc/self/cgroup` line matched with its mount.
fn hierarchies(mountinfo: &str, membership: &str) -> Vec<Hierarchy> {
    let mounts: Vec<(PathBuf, String, bool)> = mountinfo
        .lines()
        .filter_map(|line| {
            // "id parent maj:min root mountpoint opts [optional...] - fstype source superopts"
            let (left, right) = line.split_once(" - ")?;
            let mut left = left.split(' ');
            let root = left.nth(3)?;
            let mountpoint = left.next()?;
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let superopts = right.nth(1).unwrap_or_default();
            // A mount of a sub-cgroup (root other than "/") cannot hold sibling paths.
            if root != "/" || !(fstype == "cgroup" || fstype == "cgroup2") {
                return None;
            }
            Some((
                PathBuf::from(mountpoint),
                superopts.to_string(),
                fstype == "cgroup2",
            ))
        })
        .collect();
    membership
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let current = PathBuf::from(path.trim_start_matches('/'));
            let (mount, _, _) = mounts.iter().find(|(_, opts, v2)| {
                if controllers.is_empty() {
                    *v2
                } else {
                    let opts: Vec<&str> = opts.split(',').collect();
                    !*v2 && controllers.split(',').all(|c| opts.contains(&c))
                }
            })?;
            Some(Hierarchy {
                mount: mount.clone(),
                current,
                is_v1_cpuset: controllers.split(',').any(|c| c == "cpuset"),
            })
        })
        .collect()
}

fn check_relative(path: &Path) -> Result<(), ConfineError> {
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain || path.as_os_str().is_empty() {
        return Err(ConfineError::Cgroup {
            path: path.to_path_buf(),
            detail: "the cgroup path must be relative, without '..' or '.'".into(),
        });
    }
    Ok(())
}

fn move_process(procs: &Path) -> Result<(), ConfineError> {
    write_file(procs, std::process::id().to_string().as_bytes())
}

fn open_for_write(path: &Path) -> Result<File, ConfineError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| cgroup_io(path, e))
}

fn write_file(path: &Path, value: &[u8]) -> Result<(), ConfineError> {
    open_for_write(path)?
        .write_all(value)
        .map_err(|e| cgroup_io(path, e))
}

fn read(path: impl AsRef<Path>) -> Result<String, ConfineError> {
    std::fs::read_to_string(path.as_ref()).map_err(|e| cgroup_io(path.as_ref(), e))
}

fn cgroup_io(path: &Path, e: std::io::Error) -> ConfineError {
    ConfineError::Cgroup {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct
28 25 0:25 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
29 25 0:26 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 /sub /mnt/elsewhere rw - cgroup cgroup rw,memory
";

    #[test]
    fn hybrid_hierarchies_match_their_mounts() {
        let membership = "4:cpu,cpuacct:/a\n3:cpuset:/\n2:name=systemd:/s\n1:memory:/m\n0::/u\n";
        let found = hierarchies(MOUNTINFO, membership);
        let pairs: Vec<(&str, &str, bool)> = found
            .iter()
            .map(|h| {
                (
                    h.mount.to_str().unwrap_or(""),
                    h.current.to_str().unwrap_or(""),
                    h.is_v1_cpuset,
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("/sys/fs/cgroup/cpu,cpuacct", "a", false),
                ("/sys/fs/cgroup/cpuset", "", true),
                ("/sys/fs/cgroup/systemd", "s", false),
                // memory is only mounted at a sub-cgroup: skipped.
                ("/sys/fs/cgroup/unified", "u", false),
            ]
        );
    }

    #[test]
    fn only_plain_relative_paths_are_accepted() {
        assert!(check_relative(Path::new("runvm/vm1")).is_ok());
        for bad in ["/abs", "a/../b", "./a", ""] {
            assert!(check_relative(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
