//! The cli <-> init channel: a SOCK_SEQPACKET socketpair, so each message arrives whole.
//!
//! The order is fixed: cli `Go(pid)` -> init `Hooks` -> cli `HooksDone` -> init `Ready` (or `Error`
//! at any point). The cli checks that each message is the one it expects next.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// cli -> init: cgroups joined and id maps written; go on. Carries init's pid as the host
    /// sees it (init may be pid 1 of its own namespace), for the state hooks read.
    Go(i32),
    /// init -> cli: rootfs is mounted; run prestart and createRuntime hooks now.
    Hooks,
    /// cli -> init: those hooks succeeded.
    HooksDone,
    /// init -> cli: everything up to `start` is done.
    Ready,
    /// init -> cli: setup failed with this message.
    Error(String),
}

const MAX_MSG: usize = 4096;

impl Msg {
    fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Go(pid) => {
                let mut v = vec![1];
                v.extend_from_slice(&pid.to_le_bytes());
                v
            }
            Msg::Hooks => vec![2],
            Msg::HooksDone => vec![3],
            Msg::Ready => vec![4],
            Msg::Error(text) => {
                let mut v = vec![5];
                v.extend_from_slice(text.as_bytes());
                v.truncate(MAX_MSG);
                v
            }
        }
    }

    fn decode(buf: &[u8]) -> Option<Msg> {
        match buf.split_first()? {
            (1, pid) => Some(Msg::Go(i32::from_le_bytes(pid.try_into().ok()?))),
            (2, []) => Some(Msg::Hooks),
            (3, []) => Some(Msg::HooksDone),
            (4, []) => Some(Msg::Ready),
            (5, text) => Some(Msg::Error(String::from_utf8_lossy(text).into_owned())),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// A connected pair: (cli end, init end). Both are close-on-exec.
pub fn pair() -> std::io::Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> std::io::Result<()> {
        send(self.fd.as_raw_fd(), &msg.encode(), MsgFlags::MSG_NOSIGNAL)?;
        Ok(())
    }

    /// The next message; `None` when the peer has closed its end (exited).
    pub fn recv(&self) -> std::io::Result<Option<Msg>> {
        let mut buf = [0u8; MAX_MSG];
        loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    return Msg::decode(&buf[..n]).map(Some).ok_or_else(|| {
                        std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed message")
                    })
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_eof_is_none() {
        let (a, b) = pair().unwrap();
        for msg in [
            Msg::Go(77),
            Msg::Hooks,
            Msg::HooksDone,
            Msg::Ready,
            Msg::Error("boom".into()),
        ] {
            a.send(&msg).unwrap();
            assert_eq!(b.recv().unwrap(), Some(msg));
        }
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }
}
