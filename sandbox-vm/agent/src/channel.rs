//! The agent's end of the host channel: one descriptor (Unix socket, virtio-serial port or
//! vsock connection) carrying protocol frames both ways.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use runvm_agent_protocol::{encode_data, encode_message, AgentMessage, Fd};

pub struct Channel {
    fd: OwnedFd,
}

/// The host end is gone (or the channel failed): the agent stops.
#[derive(Debug)]
pub struct Gone(pub String);

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "channel: {}", self.0)
    }
}

impl Channel {
    pub fn new(fd: OwnedFd) -> Self {
        Channel { fd }
    }

    /// Connects to a listening Unix socket (host mode: the test or supervisor listens).
    pub fn connect_unix(path: &Path) -> Result<Self, String> {
        std::os::unix::net::UnixStream::connect(path)
            .map(|s| Channel::new(OwnedFd::from(s)))
            .map_err(|e| format!("--channel unix:{}: {e}", path.display()))
    }

    /// Takes over an inherited descriptor (made close-on-exec).
    pub fn inherit(fd: RawFd) -> Result<Self, String> {
        if fd <= 2 {
            return Err(format!(
                "--channel fd:{fd}: stdio descriptors cannot be the channel"
            ));
        }
        // SAFETY: F_GETFD only checks that the descriptor is open; it touches no memory.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(format!(
                "--channel fd:{fd}: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: the descriptor is open (checked above) and was handed to this process to own;
        // nothing else in the agent refers to it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        nix::fcntl::fcntl(
            &owned,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| format!("--channel fd:{fd}: F_SETFD: {e}"))?;
        Ok(Channel::new(owned))
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// One read of what is there: `Some(0)` is end of file, `None` nothing after all.
    pub fn read(&self, buf: &mut [u8]) -> Result<Option<usize>, Gone> {
        loop {
            match nix::unistd::read(&self.fd, buf) {
                Ok(n) => return Ok(Some(n)),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(None),
                Err(e) => return Err(Gone(format!("read: {e}"))),
            }
        }
    }

    pub fn send_message(&self, msg: &AgentMessage) -> Result<(), Gone> {
        let frame = encode_message(msg).map_err(|e| Gone(e.to_string()))?;
        self.write_all(&frame)
    }

    pub fn send_data(&self, stream: u32, fd: Fd, data: &[u8]) -> Result<(), Gone> {
        let frame = encode_data(stream, fd, data).map_err(|e| Gone(e.to_string()))?;
        self.write_all(&frame)
    }

    /// Writes a whole frame; waits for room if the descriptor is non-blocking.
    fn write_all(&self, mut bytes: &[u8]) -> Result<(), Gone> {
        while !bytes.is_empty() {
            match nix::unistd::write(&self.fd, bytes) {
                Ok(0) => return Err(Gone("write returned 0".into())),
                Ok(n) => bytes = &bytes[n..],
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLOUT)];
                    match poll(&mut fds, PollTimeout::NONE) {
                        Ok(_) | Err(Errno::EINTR) => {}
                        Err(e) => return Err(Gone(format!("poll: {e}"))),
                    }
                }
                Err(e) => return Err(Gone(format!("write: {e}"))),
            }
        }
        Ok(())
    }
}
