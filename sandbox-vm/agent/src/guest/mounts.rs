//! The guest's filesystems: what a container engine expects of a Linux host.

use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};

use crate::say;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn mount_fs(fstype: &str, target: &str, flags: MsFlags, data: Option<&str>) -> Result<()> {
    std::fs::create_dir_all(target).with_context(|| format!("mkdir {target}"))?;
    mount(Some(fstype), target, Some(fstype), flags, data)
        .with_context(|| format!("mount -t {fstype} {target}"))
}

fn nosuid_nodev_noexec() -> MsFlags {
    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
}

/// /proc, unless already there (after the agent re-executed itself from a sealed copy).
pub fn proc() -> Result<()> {
    if Path::new("/proc/self").exists() {
        return Ok(());
    }
    mount_fs("proc", "/proc", nosuid_nodev_noexec(), None)
}

/// /dev with the kernel's device nodes; then stdio on /dev/console if the kernel found none
/// to give init (no /dev/console in the initramfs), so descriptors 0-2 are never reused for
/// the channel or a pipe.
pub fn dev() -> Result<()> {
    mount_fs("devtmpfs", "/dev", MsFlags::MS_NOSUID, Some("mode=0755"))?;
    let console = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
        .or_else(|_| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
        })
        .context("/dev/console")?;
    for fd in 0..=2 {
        // SAFETY: F_GETFD only asks whether `fd` is open.
        let closed = unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0;
        if closed && console.as_raw_fd() != fd {
            // SAFETY: dup2 of a descriptor we own onto a free stdio number.
            unsafe { libc::dup2(console.as_raw_fd(), fd) };
        }
    }
    // The console file may itself have landed on 0-2: keep it open then.
    if console.as_raw_fd() <= 2 {
        std::mem::forget(console);
    }
    Ok(())
}

/// devpts (a private instance, /dev/ptmx pointing into it), tmpfs mounts, sysfs, cgroup2.
pub fn rest() -> Result<()> {
    mount_fs(
        "devpts",
        "/dev/pts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    // devtmpfs's /dev/ptmx opens the initial devpts instance; bind this instance's over it.
    if !Path::new("/dev/ptmx").exists() {
        std::fs::File::create("/dev/ptmx").context("creating /dev/ptmx")?;
    }
    mount(
        Some("/dev/pts/ptmx"),
        "/dev/ptmx",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .context("bind /dev/pts/ptmx on /dev/ptmx")?;
    mount_fs(
        "tmpfs",
        "/dev/shm",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;
    mount_fs("sysfs", "/sys", nosuid_nodev_noexec(), None)?;
    mount_fs("cgroup2", CGROUP_ROOT, nosuid_nodev_noexec(), None)?;
    mount_fs(
        "tmpfs",
        "/run",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )?;
    mount_fs(
        "tmpfs",
        "/tmp",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;
    Ok(())
}

/// Delegates every available controller to the root's children, so the engine's cgroup v2
/// code can limit containers (it sees a pure v2 layout at /sys/fs/cgroup). A controller the
/// kernel refuses is reported and skipped.
pub fn enable_cgroup_controllers() {
    let root = Path::new(CGROUP_ROOT);
    let controllers = match std::fs::read_to_string(root.join("cgroup.controllers")) {
        Ok(text) => text,
        Err(e) => {
            say::warn(&format!("{CGROUP_ROOT}/cgroup.controllers: {e}"));
            return;
        }
    };
    for controller in controllers.split_whitespace() {
        // One write per controller: a single refused one must not block the rest.
        if let Err(e) = std::fs::write(
            root.join("cgroup.subtree_control"),
            format!("+{controller}"),
        ) {
            say::warn(&format!("enabling cgroup controller {controller}: {e}"));
        }
    }
}

/// The virtio-fs share holding the rootfs and bind-mount sources.
pub fn share(tag: &str, target: &Path) -> Result<()> {
    std::fs::create_dir_all(target).with_context(|| format!("mkdir {}", target.display()))?;
    mount(
        Some(tag),
        target,
        Some("virtiofs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mount -t virtiofs {tag} {}", target.display()))
}
