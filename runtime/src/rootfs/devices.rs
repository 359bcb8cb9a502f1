//! /dev inside the container: the default devices, linux.devices, the standard symlinks,
//! /dev/pts and /dev/shm when the config mounts none, and the /dev/console placeholder.

use super::error::{step, Failure, RootfsError};
use super::resolve::{clean_absolute, ensure_in_root, fd_path, open_host_path, Kind};
use super::Ctx;
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fchmodat, fstatat, makedev, mknodat, umask, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Spec};
use std::path::{Path, PathBuf};

/// A device node to create.
struct Node {
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// Devices the runtime spec requires in every container: (name, major, minor), all char 0666.
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Symlinks the runtime spec requires in /dev: (name, target).
const DEFAULT_LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// Sets up /dev, unless the config bind-mounts a host directory there (it then has its devices).
pub fn setup_dev(ctx: &Ctx, spec: &Spec) -> Result<(), RootfsError> {
    let mounts = spec.mounts().as_deref().unwrap_or(&[]);
    let mounted_at = |path: &str| {
        mounts
            .iter()
            .find(|m| clean_absolute(m.destination()) == Path::new(path))
    };
    if let Some(dev) = mounted_at("/dev") {
        let options = dev.options().as_deref().unwrap_or(&[]);
        let is_bind = dev.typ().as_deref() == Some("bind")
            || options.iter().any(|o| o == "bind" || o == "rbind");
        if is_bind {
            return Ok(());
        }
    }
    let devices = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    let configured: Vec<PathBuf> = devices.iter().map(|d| clean_absolute(d.path())).collect();

    for (name, major, minor) in DEFAULT_DEVICES {
        let path = PathBuf::from(format!("/dev/{name}"));
        if configured.contains(&path) {
            continue;
        }
        let node = Node {
            kind: SFlag::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            uid: None,
            gid: None,
        };
        create_node(ctx, &path, &node).map_err(|failure| dev_error(&path, failure))?;
    }
    for (index, device) in devices.iter().enumerate() {
        configured_device(ctx, device).map_err(|failure| RootfsError::Device {
            index,
            path: device.path().display().to_string(),
            failure,
        })?;
    }

    if mounted_at("/dev/pts").is_none() {
        mount_fs(
            ctx,
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620",
        )?;
    }
    if mounted_at("/dev/shm").is_none() {
        mount_fs(
            ctx,
            "/dev/shm",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            "mode=1777,size=65536k",
        )?;
    }
    let own_ptmx = configured.contains(&PathBuf::from("/dev/ptmx"));
    links(ctx, own_ptmx)?;

    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal {
        // The console pty is bind-mounted here later, when the process is set up.
        ensure_in_root(&ctx.root, Path::new("/dev/console"), Kind::File)
            .map_err(|failure| dev_error(Path::new("/dev/console"), failure))?;
    }
    Ok(())
}

fn dev_error(path: &Path, failure: Failure) -> RootfsError {
    RootfsError::Dev {
        path: path.display().to_string(),
        failure,
    }
}

fn configured_device(ctx: &Ctx, device: &LinuxDevice) -> Result<(), Failure> {
    let kind = match device.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Failure::Invalid(
                "type \"a\" is only valid in cgroup device rules".into(),
            ))
        }
    };
    let number = |n: i64, field: &str| {
        u64::try_from(n).map_err(|_| Failure::Invalid(format!("{field} {n} is negative")))
    };
    let node = Node {
        kind,
        major: number(device.major(), "major")?,
        minor: number(device.minor(), "minor")?,
        mode: device.file_mode().unwrap_or(0o666),
        uid: device.uid(),
        gid: device.gid(),
    };
    create_node(ctx, device.path(), &node)
}

/// Creates one device node inside the rootfs. In a user namespace mknod is not allowed, so the
/// host's node at the same path is bind-mounted instead.
fn create_node(ctx: &Ctx, path: &Path, node: &Node) -> Result<(), Failure> {
    let path = clean_absolute(path);
    let (Some(parent_path), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Failure::Invalid("not a path to a file".into()));
    };
    if ctx.in_new_userns {
        let host = open_host_path(&path).map_err(step(format!("open host {}", path.display())))?;
        let target = ensure_in_root(&ctx.root, &path, Kind::File)?;
        return mount::<_, _, str, str>(
            Some(&fd_path(&host)),
            &fd_path(&target),
            None,
            MsFlags::MS_BIND,
            None,
        )
        .map_err(step(format!("bind host {}", path.display())));
    }
    let parent = ensure_in_root(&ctx.root, parent_path, Kind::Dir)?;
    let mode = Mode::from_bits_truncate(node.mode & 0o7777);
    // The mode is the config's exactly, so the umask must not trim it.
    let old_umask = umask(Mode::empty());
    let made = mknodat(
        &parent,
        name,
        node.kind,
        mode,
        makedev(node.major, node.minor),
    );
    umask(old_umask);
    match made {
        Ok(()) => {}
        Err(Errno::EEXIST) => {
            // The spec: an existing file that is not the requested device is an error.
            let st = fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(step("stat the existing file"))?;
            let same_type = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == node.kind;
            let same_number =
                node.kind == SFlag::S_IFIFO || st.st_rdev == makedev(node.major, node.minor);
            if !(same_type && same_number) {
                return Err(Failure::Invalid(
                    "a file that is not the requested device already exists there".into(),
                ));
            }
            fchmodat(&parent, name, mode, FchmodatFlags::FollowSymlink)
                .map_err(step("chmod the existing device"))?;
        }
        Err(e) => return Err(Failure::sys("mknod", e)),
    }
    if node.uid.is_some() || node.gid.is_some() {
        fchownat(
            &parent,
            name,
            node.uid.map(Uid::from_raw),
            node.gid.map(Gid::from_raw),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(step("chown"))?;
    }
    Ok(())
}

fn links(ctx: &Ctx, own_ptmx: bool) -> Result<(), RootfsError> {
    let dev = ensure_in_root(&ctx.root, Path::new("/dev"), Kind::Dir)
        .map_err(|failure| dev_error(Path::new("/dev"), failure))?;
    for (name, target) in DEFAULT_LINKS {
        match symlinkat(target, &dev, name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => {
                let path = PathBuf::from(format!("/dev/{name}"));
                return Err(dev_error(&path, Failure::sys("symlink", e)));
            }
        }
    }
    if !own_ptmx {
        // /dev/ptmx must be the ptmx of this container's devpts instance.
        let path = Path::new("/dev/ptmx");
        match unlinkat(&dev, "ptmx", UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(dev_error(path, Failure::sys("remove the old ptmx", e))),
        }
        symlinkat("pts/ptmx", &dev, "ptmx")
            .map_err(|e| dev_error(path, Failure::sys("symlink", e)))?;
    }
    Ok(())
}

fn mount_fs(
    ctx: &Ctx,
    path: &str,
    fstype: &str,
    flags: MsFlags,
    data: &str,
) -> Result<(), RootfsError> {
    let path = Path::new(path);
    let target = ensure_in_root(&ctx.root, path, Kind::Dir).map_err(|f| dev_error(path, f))?;
    mount(
        Some(fstype),
        &fd_path(&target),
        Some(fstype),
        flags,
        Some(data),
    )
    .map_err(|e| dev_error(path, Failure::sys(format!("mount {fstype}"), e)))
}
