//! Mounts of type "cgroup": the container's view of its cgroup hierarchies.

use super::error::{step, Failure};
use super::options::{MountOptions, REMOUNT_FLAGS};
use super::remount::{remount_bind, Keep};
use super::resolve::{ensure_in_root, fd_path, open_host_dir, Kind};
use super::{mounts::reopen, CgroupMountSource, Ctx};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::unistd::symlinkat;
use std::path::Path;

/// Flags every cgroup mount gets, whatever the config says.
const BASE: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Mounts the hierarchies at `dest`: cgroup2 directly on a v2-only host, otherwise a tmpfs with
/// one directory per hierarchy (plus cpu -> cpu,cpuacct style links).
pub fn mount_cgroup(ctx: &Ctx, dest: &Path, opts: &MountOptions) -> Result<(), Failure> {
    let sources = ctx.cgroup_sources;
    let flags = (opts.flags & REMOUNT_FLAGS) | BASE;
    match sources {
        [] => Err(Failure::Invalid(
            "no cgroup hierarchies were found for this container".into(),
        )),
        [only] if only.fstype == "cgroup2" => mount_hierarchy(ctx, dest, only, flags),
        _ => {
            let target = ensure_in_root(&ctx.root, dest, Kind::Dir)?;
            mount(
                Some("tmpfs"),
                &fd_path(&target),
                Some("tmpfs"),
                BASE,
                Some("mode=755"),
            )
            .map_err(step("mount tmpfs for the cgroup hierarchies"))?;
            let top = reopen(ctx, dest)?;
            for source in sources {
                check_name(&source.name)?;
                mount_hierarchy(ctx, &dest.join(&source.name), source, flags)?;
                // Co-mounted controllers ("cpu,cpuacct") are also reachable by each name.
                if source.name.contains(',') {
                    for part in source.name.split(',') {
                        match symlinkat(source.name.as_str(), &top, part) {
                            Ok(()) | Err(Errno::EEXIST) => {}
                            Err(e) => return Err(Failure::sys(format!("symlink {part}"), e)),
                        }
                    }
                }
            }
            if flags.contains(MsFlags::MS_RDONLY) {
                remount_bind(reopen(ctx, dest)?, MsFlags::MS_RDONLY, Keep::Existing)?;
            }
            Ok(())
        }
    }
}

fn check_name(name: &str) -> Result<(), Failure> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(Failure::Invalid(format!(
            "cgroup hierarchy name {name:?} is not a plain directory name"
        )));
    }
    Ok(())
}

/// One hierarchy: a fresh cgroup mount inside a cgroup namespace (it shows the namespace's root),
/// otherwise a bind of the container's own cgroup directory on the host.
fn mount_hierarchy(
    ctx: &Ctx,
    dest: &Path,
    source: &CgroupMountSource,
    flags: MsFlags,
) -> Result<(), Failure> {
    let target = ensure_in_root(&ctx.root, dest, Kind::Dir)?;
    if ctx.cgroup_ns {
        let data = (!source.options.is_empty()).then_some(source.options.as_str());
        mount(
            Some("cgroup"),
            &fd_path(&target),
            Some(source.fstype.as_str()),
            flags,
            data,
        )
        .map_err(step(format!("mount {} ({})", source.fstype, source.name)))
    } else {
        let host = open_host_dir(&source.host_path)
            .map_err(step(format!("open {}", source.host_path.display())))?;
        mount::<_, _, str, str>(
            Some(&fd_path(&host)),
            &fd_path(&target),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(step(format!("bind {}", source.host_path.display())))?;
        remount_bind(reopen(ctx, dest)?, flags, Keep::RequestedOnly)
    }
}
