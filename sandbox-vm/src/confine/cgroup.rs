//! The monitor's own cgroup: `path` (relative, given by the caller) created in every cgroup
//! hierarchy this process is in, or in the ones the caller names (v1 controllers, named v1
//! hierarchies, the v2 tree: pure v1, pure v2 and hybrid hosts alike). The monitor moves its
//! whole process there; dropping the membership moves it back and removes only the
//! directories this membership created.
//!
//! Leaving is done by a small helper process forked while joining: it stays in the original
//! cgroups with the original privileges, outside any jail, and once the monitor closes its
//! end of a pipe (on drop, or when the monitor dies, even killed by its seccomp filter) it
//! moves the monitor back (if still alive) and removes the directories. The monitor could
//! do neither itself: without CAP_DAC_OVERRIDE a directory right under a read-only
//! hierarchy root cannot be removed, and without CAP_SYS_NICE moving a process that still
//! has a privileged thread into another cpuset is refused.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult, Pid};
use serde::Serialize;

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
    /// As in /proc/self/cgroup: `cpu,cpuacct`, `name=systemd`, empty for v2.
    controllers: String,
}

/// Where the monitor's cgroup goes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CgroupPlacement {
    /// Relative to each hierarchy's root, e.g. `runvm/vm-1`.
    pub path: PathBuf,
    /// The hierarchies to use, by any controller they carry (`cpu`, `pids`), a v1 name
    /// (`name=systemd`) or `cgroup2` for the v2 tree; empty: every hierarchy of the process.
    pub hierarchies: Vec<String>,
}

/// The process's membership in its own cgroup; dropping it leaves and cleans up.
pub struct CgroupMembership {
    /// Per hierarchy: the original cgroup's cgroup.procs (to go back to).
    return_to: Vec<PathBuf>,
    /// Deepest last, in creation order.
    created: Vec<PathBuf>,
    /// Closing it tells the remover to remove `created`.
    remover: Option<(Pid, OwnedFd)>,
}

impl CgroupMembership {
    /// Creates the placement's path in its hierarchies and moves the process there.
    pub fn join(placement: &CgroupPlacement) -> Result<CgroupMembership, ConfineError> {
        let path = placement.path.as_path();
        check_relative(path)?;
        let mountinfo = read("/proc/self/mountinfo")?;
        let membership = read("/proc/self/cgroup")?;
        let hierarchies: Vec<Hierarchy> = hierarchies(&mountinfo, &membership)
            .into_iter()
            .filter(|h| placement.hierarchies.is_empty() || h.is_named_in(&placement.hierarchies))
            .collect();
        if hierarchies.is_empty() {
            return Err(ConfineError::Cgroup {
                path: path.to_path_buf(),
                detail: format!(
                    "no mounted cgroup hierarchy of this process matches {:?}",
                    placement.hierarchies
                ),
            });
        }
        let mut joined = CgroupMembership {
            return_to: Vec::new(),
            created: Vec::new(),
            remover: None,
        };
        // On an error `joined` drops: the process goes back and created dirs are removed.
        let mut targets = Vec::with_capacity(hierarchies.len());
        for hierarchy in &hierarchies {
            let original = hierarchy
                .mount
                .join(&hierarchy.current)
                .join("cgroup.procs");
            joined.return_to.push(original);
            targets.push(joined.create_levels(hierarchy, path)?);
        }
        // Before moving: the remover must stay in the original cgroups.
        joined.remover = Some(spawn_remover(&joined.return_to, &joined.created)?);
        for target in targets {
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
            self.created.push(dir.clone());
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
        self.created.iter().map(PathBuf::as_path)
    }
}

impl Drop for CgroupMembership {
    fn drop(&mut self) {
        if let Some((helper, signal)) = self.remover.take() {
            drop(signal);
            let _ = waitpid(helper, None);
        } else {
            // Failed before the remover started: nothing moved yet, privileges intact.
            for dir in self.created.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// Forks the process that moves this one back to `return_to` (cgroup.procs files) and
/// removes `dirs` (deepest last) once the returned fd is closed.
/// Hand-written: no crate offers a cleanup-on-parent-exit helper.
fn spawn_remover(return_to: &[PathBuf], dirs: &[PathBuf]) -> Result<(Pid, OwnedFd), ConfineError> {
    let failed = |what: &'static str| move |errno| ConfineError::Syscall { what, errno };
    let c_paths = |paths: &mut dyn Iterator<Item = &PathBuf>| -> Vec<CString> {
        paths
            .filter_map(|p| CString::new(p.as_os_str().as_bytes()).ok())
            .collect()
    };
    // Everything the child needs is prepared here: after fork it must not allocate.
    let work = RemoverWork {
        monitor_pid: std::process::id().to_string().into_bytes(),
        return_to: c_paths(&mut return_to.iter()),
        dirs: c_paths(&mut dirs.iter().rev()),
    };
    let (read_end, write_end) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(failed("pipe2 for the cgroup remover"))?;
    // SAFETY: the child only calls async-signal-safe functions (close_range, read, open,
    // write, close, rmdir, nanosleep, _exit) on data prepared before the fork.
    match unsafe { fork() }.map_err(failed("fork of the cgroup remover"))? {
        ForkResult::Child => remover_main(read_end.as_raw_fd(), &work),
        ForkResult::Parent { child } => Ok((child, write_end)),
    }
}

/// What the remover does, prepared before the fork.
struct RemoverWork {
    monitor_pid: Vec<u8>,
    return_to: Vec<CString>,
    dirs: Vec<CString>,
}

/// The remover: drops every inherited fd but the pipe (the VM's fds must not outlive the
/// monitor), waits for EOF, moves the monitor back, removes the directories, retrying while
/// the monitor's last threads are still leaving them.
fn remover_main(pipe: RawFd, work: &RemoverWork) -> ! {
    let pipe = pipe as libc::c_uint;
    // SAFETY: plain syscalls on integers and on CStrings that live until _exit.
    unsafe {
        if pipe > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, pipe - 1, 0u32);
        }
        libc::syscall(libc::SYS_close_range, pipe + 1, u32::MAX, 0u32);
        let mut byte = 0u8;
        while libc::read(pipe as RawFd, (&mut byte as *mut u8).cast(), 1) != 0 {
            if *libc::__errno_location() != libc::EINTR {
                break;
            }
        }
        for procs in &work.return_to {
            // Fails with ESRCH when the monitor is already gone: then nothing to move.
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                let pid = &work.monitor_pid;
                libc::write(fd, pid.as_ptr().cast(), pid.len());
                libc::close(fd);
            }
        }
        for path in &work.dirs {
            for _ in 0..200 {
                if libc::rmdir(path.as_ptr()) == 0 || *libc::__errno_location() != libc::EBUSY {
                    break;
                }
                let pause = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 5_000_000,
                };
                libc::nanosleep(&pause, std::ptr::null_mut());
            }
        }
        libc::_exit(0)
    }
}

impl Hierarchy {
    /// Whether `names` lists one of this hierarchy's controllers, its v1 name, or
    /// `cgroup2` for the v2 tree.
    fn is_named_in(&self, names: &[String]) -> bool {
        names.iter().any(|n| {
            if n == "cgroup2" {
                self.controllers.is_empty()
            } else {
                self.controllers.split(',').any(|c| c == n)
            }
        })
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
                controllers: controllers.to_string(),
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
    fn hierarchies_are_selected_by_controller_name_or_cgroup2() {
        let membership = "4:cpu,cpuacct:/\n2:name=systemd:/\n0::/\n";
        let found = hierarchies(MOUNTINFO, membership);
        let picked = |names: &[&str]| -> Vec<String> {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            found
                .iter()
                .filter(|h| h.is_named_in(&names))
                .map(|h| h.controllers.clone())
                .collect()
        };
        assert_eq!(picked(&["cpuacct"]), ["cpu,cpuacct"]);
        assert_eq!(picked(&["cgroup2", "name=systemd"]), ["name=systemd", ""]);
        assert!(picked(&["memory"]).is_empty());
    }

    #[test]
    fn only_plain_relative_paths_are_accepted() {
        assert!(check_relative(Path::new("runvm/vm1")).is_ok());
        for bad in ["/abs", "a/../b", "./a", ""] {
            assert!(check_relative(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
