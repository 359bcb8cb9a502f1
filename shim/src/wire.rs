//! Messages between the shim and its worker: one JSON document per SOCK_SEQPACKET datagram
//! (the socket keeps message boundaries), with descriptors riding along as SCM_RIGHTS.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest message accepted; an exec request carries a whole OCI process (args, env, caps).
const MAX_MESSAGE: usize = 1 << 20;
/// At most this many descriptors travel with one message (stdin, stdout, stderr).
const MAX_FDS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("shim/worker socket: {0}")]
    Io(#[from] nix::Error),
    #[error("shim/worker message does not parse: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "shim/worker message was cut short (over {MAX_MESSAGE} bytes or too many descriptors)"
    )]
    Truncated,
}

/// A connected pair of close-on-exec SOCK_SEQPACKET sockets.
pub fn pair() -> Result<(OwnedFd, OwnedFd), WireError> {
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

pub fn send<T: Serialize>(sock: BorrowedFd, msg: &T, fds: &[RawFd]) -> Result<(), WireError> {
    let bytes = serde_json::to_vec(msg)?;
    let iov = [IoSlice::new(&bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => return other.map(|_| ()).map_err(Into::into),
        }
    }
}

/// The next message and its descriptors (close-on-exec), or `None` when the peer is gone.
pub fn recv<T: DeserializeOwned>(sock: BorrowedFd) -> Result<Option<(T, Vec<OwnedFd>)>, WireError> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, truncated, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => other?,
        };
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                // SAFETY: SCM_RIGHTS just installed these descriptors in our table; we own them.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let truncated = msg
            .flags
            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
        break (msg.bytes, truncated, fds);
    };
    if truncated {
        return Err(WireError::Truncated);
    }
    if len == 0 {
        return Ok(None);
    }
    Ok(Some((serde_json::from_slice(&buf[..len])?, fds)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn message_and_descriptor_arrive_together() {
        let (a, b) = pair().unwrap();
        let (mut reader, mut writer) = std::io::pipe().unwrap();
        send(a.as_fd(), &("hello", 7), &[writer.as_raw_fd()]).unwrap();
        let (msg, fds): ((String, i32), _) = recv(b.as_fd()).unwrap().unwrap();
        assert_eq!(msg, ("hello".to_string(), 7));
        assert_eq!(fds.len(), 1);
        writer.write_all(b"x").unwrap();
        drop(writer);
        let mut received = std::fs::File::from(fds.into_iter().next().unwrap());
        received.write_all(b"y").unwrap();
        drop(received);
        let mut out = String::new();
        reader.read_to_string(&mut out).unwrap();
        assert_eq!(out, "xy");
    }

    #[test]
    fn closed_peer_is_none() {
        let (a, b) = pair().unwrap();
        drop(a);
        assert!(recv::<String>(b.as_fd()).unwrap().is_none());
    }
}
