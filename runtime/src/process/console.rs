//! process.terminal: init opens a pty inside the container's devpts, makes it its controlling
//! terminal and stdio, binds it to /dev/console, and sends the master to the console socket.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, RawFd};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::Box as ConsoleSize;

/// The console socket a container process sends its pty master to: an already connected
/// stream (foreground run/exec, the shim) or a path to connect to (--console-socket).
pub fn endpoint(
    stream: Option<&std::os::unix::net::UnixStream>,
    path: Option<&std::path::Path>,
) -> Result<Option<std::os::unix::net::UnixStream>, String> {
    match (stream, path) {
        (Some(stream), _) => stream
            .try_clone()
            .map(Some)
            .map_err(|e| format!("console stream: {e}")),
        (None, Some(p)) => std::os::unix::net::UnixStream::connect(p)
            .map(Some)
            .map_err(|e| format!("--console-socket {}: {e}", p.display())),
        (None, None) => Ok(None),
    }
}

/// Receives the pty master a container process sent over its console socket. The master is
/// queued before `create` or `exec` returns, so this never waits: a missing one is an error.
pub fn receive_master(
    sock: &std::os::unix::net::UnixStream,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    use std::io::IoSliceMut;
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut buf = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(|e| std::io::Error::other(format!("receiving the pty master: {e}")))?;
    for cmsg in msg
        .cmsgs()
        .map_err(|e| std::io::Error::other(format!("pty master message: {e}")))?
    {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(fd) = fds.first() {
                // SAFETY: SCM_RIGHTS just installed this descriptor in our table; we own it.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(std::io::Error::other(
        "the container process sent no pty master",
    ))
}

pub fn setup(console_socket: RawFd, size: Option<ConsoleSize>) -> Result<(), String> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| format!("process.terminal: open /dev/ptmx: {e}"))?;
    grantpt(&master).map_err(|e| format!("process.terminal: grantpt: {e}"))?;
    unlockpt(&master).map_err(|e| format!("process.terminal: unlockpt: {e}"))?;
    let slave_path = ptsname_r(&master).map_err(|e| format!("process.terminal: ptsname: {e}"))?;
    let slave = nix::fcntl::open(
        slave_path.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("process.terminal: open {slave_path}: {e}"))?;
    if let Some(size) = size {
        let ws = libc::winsize {
            ws_row: size.height() as u16,
            ws_col: size.width() as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the call.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    // /dev/console is a placeholder file made by rootfs setup; bind the pty slave over it.
    let _ = nix::mount::mount(
        Some(slave_path.as_str()),
        "/dev/console",
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    );
    nix::unistd::setsid().map_err(|e| format!("process.terminal: setsid: {e}"))?;
    // SAFETY: TIOCSCTTY on a tty we opened, in a session we lead, with no pointer argument.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(format!(
            "process.terminal: TIOCSCTTY: {}",
            std::io::Error::last_os_error()
        ));
    }
    for target in 0..=2 {
        // SAFETY: dup2 onto stdio numbers; `slave` stays open until the end of this function.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(format!(
                "process.terminal: dup2: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(b"/dev/ptmx")];
    sendmsg::<()>(console_socket, &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| format!("--console-socket: sending the pty master: {e}"))?;
    Ok(())
}
