//! One entry of the config's `mounts`: bind mounts, fresh filesystems, then propagation and
//! recursive attributes.

use super::error::{step, Failure};
use super::options::{MountOptions, REMOUNT_FLAGS};
use super::remount::{remount_bind, set_recursive, Keep};
use super::resolve::{ensure_in_root, fd_path, open_host_path, open_in_root, Kind};
use super::Ctx;
use super::{cgroup, copyup};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, SFlag};
use oci_spec::runtime::Mount;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Mounts one config entry whose options were parsed into `opts`.
pub fn mount_entry(ctx: &Ctx, m: &Mount, opts: &MountOptions) -> Result<(), Failure> {
    if m.uid_mappings().is_some() || m.gid_mappings().is_some() || opts.idmap {
        return Err(Failure::Invalid(
            "ID-mapped mounts (uidMappings/gidMappings, idmap) are not supported".into(),
        ));
    }
    let typ = m.typ().as_deref().unwrap_or("");
    let dest = m.destination();
    if opts.tmpcopyup {
        if typ != "tmpfs" || opts.bind {
            return Err(Failure::Invalid(
                "the tmpcopyup option needs a tmpfs mount".into(),
            ));
        }
        tmpfs_copyup(ctx, m, opts)?;
    } else if opts.bind || typ == "bind" {
        bind(ctx, m, opts)?;
    } else if typ == "cgroup" {
        cgroup::mount_cgroup(ctx, dest, opts)?;
    } else {
        fresh(ctx, m, typ, opts)?;
    }
    after_mount(ctx, dest, opts)
}

/// Reopens a destination after something was mounted on it: the fd used as mount target still
/// points below the new mount, a fresh resolution lands on top of it.
pub fn reopen(ctx: &Ctx, dest: &Path) -> Result<OwnedFd, Failure> {
    open_in_root(&ctx.root, dest).map_err(step("reopen the destination after mounting"))
}

fn bind(ctx: &Ctx, m: &Mount, opts: &MountOptions) -> Result<(), Failure> {
    let dest = m.destination();
    let source = m
        .source()
        .as_ref()
        .ok_or_else(|| Failure::Invalid("bind mount without a source".into()))?;
    // The spec makes relative bind sources relative to the bundle.
    let source = if source.is_relative() {
        ctx.bundle.join(source)
    } else {
        source.clone()
    };
    let src = open_host_path(&source).map_err(step(format!("open source {}", source.display())))?;
    let st = fstat(&src).map_err(step(format!("stat source {}", source.display())))?;
    let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    let kind = if is_dir { Kind::Dir } else { Kind::File };
    let target = ensure_in_root(&ctx.root, dest, kind)?;
    let mut flags = MsFlags::MS_BIND;
    if opts.recursive {
        flags |= MsFlags::MS_REC;
    }
    mount::<_, _, str, str>(Some(&fd_path(&src)), &fd_path(&target), None, flags, None)
        .map_err(step(format!("bind {}", source.display())))?;
    // A bind mount ignores per-mount flags; they take a second, remount call.
    let wanted = opts.flags & REMOUNT_FLAGS;
    if !wanted.is_empty() {
        remount_bind(reopen(ctx, dest)?, wanted, Keep::RequestedOnly)?;
    }
    Ok(())
}

fn fresh(ctx: &Ctx, m: &Mount, typ: &str, opts: &MountOptions) -> Result<(), Failure> {
    if typ.is_empty() {
        return Err(Failure::Invalid(
            "no type given and not a bind mount".into(),
        ));
    }
    let dest = m.destination();
    let target = ensure_in_root(&ctx.root, dest, Kind::Dir)?;
    let source = m.source().as_deref().unwrap_or_else(|| Path::new(typ));
    let data = opts.data_string();
    let flags = opts.flags & !MsFlags::MS_REMOUNT;
    let result = mount(
        Some(source),
        &fd_path(&target),
        Some(typ),
        flags,
        data.as_deref(),
    );
    match result {
        // A user namespace may not mount sysfs for a network namespace it does not own (no new
        // network namespace): show the host's /sys read-only instead, as runc and crun do.
        Err(Errno::EPERM) if typ == "sysfs" && ctx.in_new_userns => {
            let host = open_host_path(Path::new("/sys")).map_err(step("open host /sys"))?;
            mount::<_, _, str, str>(
                Some(&fd_path(&host)),
                &fd_path(&target),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(step(
                "mount sysfs failed with EPERM; bind host /sys instead",
            ))?;
            let wanted = (flags & REMOUNT_FLAGS) | MsFlags::MS_RDONLY;
            remount_bind(reopen(ctx, dest)?, wanted, Keep::RequestedOnly)
        }
        other => other.map_err(step(format!("mount {typ}"))),
    }
}

/// A tmpfs holding a copy of what it hides. Mounted writable for the copy, then made
/// read-only if asked.
fn tmpfs_copyup(ctx: &Ctx, m: &Mount, opts: &MountOptions) -> Result<(), Failure> {
    let dest = m.destination();
    let hidden = ensure_in_root(&ctx.root, dest, Kind::Dir)?;
    let mut writable = opts.clone();
    writable.flags.remove(MsFlags::MS_RDONLY);
    fresh(ctx, m, "tmpfs", &writable)?;
    let mounted = reopen(ctx, dest)?;
    copyup::copy_tree(&hidden, &mounted)?;
    if opts.flags.contains(MsFlags::MS_RDONLY) {
        remount_bind(mounted, MsFlags::MS_RDONLY, Keep::Existing)?;
    }
    Ok(())
}

/// Propagation changes and recursive attributes, on the freshly mounted destination.
fn after_mount(ctx: &Ctx, dest: &Path, opts: &MountOptions) -> Result<(), Failure> {
    if opts.propagation.is_empty() && opts.recursive_attrs.is_empty() {
        return Ok(());
    }
    let mounted = reopen(ctx, dest)?;
    for flags in &opts.propagation {
        mount::<str, _, str, str>(None, &fd_path(&mounted), None, *flags, None)
            .map_err(step(format!("set propagation {flags:?}")))?;
    }
    if !opts.recursive_attrs.is_empty() {
        set_recursive(&mounted, &opts.recursive_attrs)?;
    }
    Ok(())
}
