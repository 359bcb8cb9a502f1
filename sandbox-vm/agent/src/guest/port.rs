//! Opening the channel the kernel command line names: a virtio-serial port by name, or a vsock
//! port the host connects to.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    accept, bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, VsockAddr,
};

use super::cmdline::ChannelSpec;
use crate::channel::Channel;

const VIRTIO_PORTS: &str = "/sys/class/virtio-ports";
/// A port's device appears when the virtio-serial driver probes it, possibly after /init runs.
const PORT_WAIT: Duration = Duration::from_secs(5);

pub fn open(spec: &ChannelSpec) -> Result<Channel, String> {
    match spec {
        ChannelSpec::Port(name) => {
            let dev = wait_for_port(Path::new(VIRTIO_PORTS), name, PORT_WAIT)?;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&dev)
                .map_err(|e| format!("{}: {e}", dev.display()))?;
            Ok(Channel::new(OwnedFd::from(file)))
        }
        ChannelSpec::Vsock(port) => accept_vsock(*port),
    }
}

/// `/dev/vportXpY` of the port whose sysfs `name` is `name`.
pub fn find_port(class_dir: &Path, name: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(class_dir).ok()?;
    for entry in entries.flatten() {
        let named = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if named.trim() == name {
            return Some(Path::new("/dev").join(entry.file_name()));
        }
    }
    None
}

fn wait_for_port(class_dir: &Path, name: &str, wait: Duration) -> Result<PathBuf, String> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(dev) = find_port(class_dir, name) {
            // The sysfs entry can come a moment before devtmpfs has the node.
            if dev.exists() {
                return Ok(dev);
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no virtio-serial port named {name:?} under {} after {}s",
                class_dir.display(),
                wait.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn accept_vsock(port: u32) -> Result<Channel, String> {
    let err = |what: &str, e: nix::Error| format!("vsock port {port}: {what}: {e}");
    let listener = socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| err("socket", e))?;
    let addr = VsockAddr::new(libc::VMADDR_CID_ANY, port);
    bind(std::os::fd::AsRawFd::as_raw_fd(&listener), &addr).map_err(|e| err("bind", e))?;
    listen(&listener, Backlog::new(1).map_err(|e| err("listen", e))?)
        .map_err(|e| err("listen", e))?;
    let conn = accept(std::os::fd::AsRawFd::as_raw_fd(&listener)).map_err(|e| err("accept", e))?;
    // SAFETY: accept just returned this descriptor; nothing else owns it.
    let conn = unsafe { OwnedFd::from_raw_fd(conn) };
    nix::fcntl::fcntl(
        &conn,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| err("F_SETFD", e))?;
    Ok(Channel::new(conn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_port_by_its_sysfs_name() {
        let dir = tempfile::tempdir().unwrap();
        for (port, name) in [
            ("vport0p1", "org.qemu.guest_agent.0"),
            ("vport1p1", "runvm.agent"),
        ] {
            std::fs::create_dir(dir.path().join(port)).unwrap();
            std::fs::write(dir.path().join(port).join("name"), format!("{name}\n")).unwrap();
        }
        assert_eq!(
            find_port(dir.path(), "runvm.agent"),
            Some(PathBuf::from("/dev/vport1p1"))
        );
        assert_eq!(find_port(dir.path(), "other"), None);
        let err = wait_for_port(dir.path(), "other", Duration::from_millis(100)).unwrap_err();
        assert!(err.contains("\"other\""), "{err}");
    }
}
