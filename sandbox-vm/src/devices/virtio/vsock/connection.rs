//! One stream connection between a guest port and a host Unix socket: its state, its two
//! bounded byte queues and the credit accounting (virtio 1.2 §5.10.6.3) on both sides.
//!
//! Credit in short: each side advertises `buf_alloc` (its receive buffer) and `fwd_cnt` (bytes it
//! has consumed so far); a sender may have at most `buf_alloc - (sent - fwd_cnt)` bytes in flight.
//! Here the device's receive buffer is `to_host` and "consumed" means written to the host socket;
//! the guest's credit caps how much the device reads from the host socket into `to_guest`.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use nix::sys::socket::{send, MsgFlags};

use super::packet::{op, shutdown, Header, HOST_CID, TYPE_STREAM};

/// The device's receive buffer per connection, advertised to the guest as `buf_alloc`.
pub const HOST_BUF_ALLOC: u32 = 256 * 1024;
/// Most bytes read from a host socket that may wait for rx buffers, whatever the guest's credit.
pub const TO_GUEST_CAP: usize = 64 * 1024;
/// Bytes read from a host socket in one go.
const READ_CHUNK: usize = 16 * 1024;
/// Tell the guest about freed receive space once this much was forwarded unreported; at most
/// `HOST_BUF_ALLOC` so a guest that used all its credit always hears back.
const CREDIT_UPDATE_THRESHOLD: u32 = HOST_BUF_ALLOC / 2;

/// Where the connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Host-initiated: REQUEST sent to the guest, waiting for its RESPONSE until the deadline.
    AwaitingResponse,
    Established,
    /// The device sent SHUTDOWN (host closed); waiting for the guest's RST until the deadline.
    Closing,
}

/// Control packets owed to the guest for this connection.
#[derive(Clone, Copy, Debug, Default)]
struct Owed {
    request: bool,
    response: bool,
    credit_update: bool,
}

/// What the device must do with a connection after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Drop the connection and tell the guest with an RST.
    Reset,
}

pub struct Connection {
    pub stream: UnixStream,
    /// The epoll token of `stream`.
    pub token: u64,
    /// The host-side port (the vsock address the guest sees for this connection).
    pub local_port: u32,
    pub peer_port: u32,
    pub guest_cid: u64,
    pub state: State,
    /// When `AwaitingResponse` or `Closing` gives up.
    pub deadline: Option<Instant>,
    /// The epoll events `stream` is registered for; `None` when not registered at all.
    pub interest: Option<u32>,
    /// Bytes the host socket has not taken yet: `preamble` device-made bytes (the `OK` line)
    /// then guest data (bounded by `HOST_BUF_ALLOC` through credit).
    to_host: VecDeque<u8>,
    preamble: usize,
    /// Host bytes waiting for rx buffers (bounded by the guest's credit and `TO_GUEST_CAP`).
    to_guest: VecDeque<u8>,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// Bytes handed to the guest so far.
    tx_cnt: u32,
    /// Bytes written to the host socket so far.
    fwd_cnt: u32,
    last_reported_fwd_cnt: u32,
    owed: Owed,
    /// The guest said it will not send (`SEND`) / receive (`RCV`) any more.
    peer_shutdown: u32,
    host_eof: bool,
    host_write_closed: bool,
    /// The host end hung up: a stream not read from would report it forever.
    pub host_hung_up: bool,
    /// A CREDIT_REQUEST was sent and not yet answered; ask only once per stall.
    credit_requested: bool,
}

impl Connection {
    /// A guest-initiated connection, accepted: the device owes the guest a RESPONSE.
    pub fn accepted(stream: UnixStream, token: u64, request: &Header) -> Self {
        let mut conn = Self::new(stream, token, request.dst_port, request.src_port, request);
        conn.state = State::Established;
        conn.owed.response = true;
        conn.update_peer_credit(request);
        conn
    }

    /// A host-initiated connection to guest port `peer_port`: the device owes a REQUEST.
    pub fn requested(
        stream: UnixStream,
        token: u64,
        local_port: u32,
        peer_port: u32,
        guest_cid: u64,
        deadline: Instant,
    ) -> Self {
        let template = Header {
            src_cid: guest_cid,
            ..Header::default()
        };
        let mut conn = Self::new(stream, token, local_port, peer_port, &template);
        conn.state = State::AwaitingResponse;
        conn.deadline = Some(deadline);
        conn.owed.request = true;
        conn
    }

    fn new(stream: UnixStream, token: u64, local_port: u32, peer_port: u32, from: &Header) -> Self {
        Connection {
            stream,
            token,
            local_port,
            peer_port,
            guest_cid: from.src_cid,
            state: State::Established,
            deadline: None,
            interest: None,
            to_host: VecDeque::new(),
            preamble: 0,
            to_guest: VecDeque::new(),
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            tx_cnt: 0,
            fwd_cnt: 0,
            last_reported_fwd_cnt: 0,
            owed: Owed::default(),
            peer_shutdown: 0,
            host_eof: false,
            host_write_closed: false,
            host_hung_up: false,
            credit_requested: false,
        }
    }

    /// Every guest packet carries its current receive window.
    pub fn update_peer_credit(&mut self, header: &Header) {
        self.peer_buf_alloc = header.buf_alloc;
        self.peer_fwd_cnt = header.fwd_cnt;
        if self.peer_credit() > 0 {
            self.credit_requested = false;
        }
    }

    /// Bytes the guest can still take beyond what it has been sent.
    fn peer_credit(&self) -> usize {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight) as usize
    }

    /// Bytes the device may read from the host socket now without buffering beyond the guest's
    /// credit or `TO_GUEST_CAP`.
    fn read_room(&self) -> usize {
        let limit = self.peer_credit().min(TO_GUEST_CAP);
        limit.saturating_sub(self.to_guest.len())
    }

    pub fn wants_read(&self) -> bool {
        self.state == State::Established
            && !self.host_eof
            && self.peer_shutdown & shutdown::RCV == 0
            && self.read_room() > 0
    }

    pub fn wants_write(&self) -> bool {
        !self.to_host.is_empty()
    }

    /// The guest sent RESPONSE to the device's REQUEST: tell the host client which port it got.
    pub fn established_by_guest(&mut self, response: &Header) -> Verdict {
        self.state = State::Established;
        self.deadline = None;
        self.update_peer_credit(response);
        let line = format!("OK {}\n", self.local_port);
        // The line is not guest data: it counts neither against the guest's credit nor in the
        // forwarded count the guest's credit is computed from.
        self.to_host.extend(line.as_bytes());
        self.preamble += line.len();
        self.flush_to_host()
    }

    /// The host socket is readable: move what the guest has credit for into `to_guest`.
    pub fn read_from_host(&mut self) -> Verdict {
        let room = self.read_room().min(READ_CHUNK);
        if room == 0 || self.host_eof {
            return Verdict::Keep;
        }
        let mut chunk = vec![0u8; room];
        match (&self.stream).read(&mut chunk) {
            Ok(0) => {
                self.host_eof = true;
                Verdict::Keep
            }
            Ok(read) => {
                self.to_guest.extend(&chunk[..read]);
                Verdict::Keep
            }
            Err(err) if is_transient(&err) => Verdict::Keep,
            Err(_) => Verdict::Reset,
        }
    }

    /// Payload of a guest RW packet: straight to the host socket, the rest buffered.
    pub fn write_from_guest(&mut self, payload: &[u8]) -> Verdict {
        if self.state == State::Closing {
            // In flight when the device shut its side: the host end is gone, drop it.
            return Verdict::Keep;
        }
        if self.state != State::Established || self.peer_shutdown & shutdown::SEND != 0 {
            return Verdict::Reset;
        }
        let guest_bytes = self.to_host.len() - self.preamble;
        let room = (HOST_BUF_ALLOC as usize).saturating_sub(guest_bytes);
        if payload.len() > room {
            // The guest sent beyond the credit it was given.
            return Verdict::Reset;
        }
        self.to_host.extend(payload);
        self.flush_to_host()
    }

    /// Writes as much of `to_host` as the host socket takes.
    pub fn flush_to_host(&mut self) -> Verdict {
        while !self.to_host.is_empty() {
            let (front, _) = self.to_host.as_slices();
            // MSG_NOSIGNAL: a host peer that went away must not kill the monitor with SIGPIPE.
            match send(self.stream.as_raw_fd(), front, MsgFlags::MSG_NOSIGNAL) {
                Ok(written) => {
                    self.to_host.drain(..written);
                    let preamble_written = written.min(self.preamble);
                    self.preamble -= preamble_written;
                    let forwarded = (written - preamble_written) as u32;
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(forwarded);
                }
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => break,
                Err(_) => return Verdict::Reset,
            }
        }
        if self.fwd_cnt.wrapping_sub(self.last_reported_fwd_cnt) >= CREDIT_UPDATE_THRESHOLD {
            self.owed.credit_update = true;
        }
        if self.to_host.is_empty() && self.peer_shutdown & shutdown::SEND != 0 {
            self.close_host_write();
        }
        Verdict::Keep
    }

    fn close_host_write(&mut self) {
        if !self.host_write_closed {
            self.host_write_closed = true;
            // The host end may already be gone; nothing to do about it then.
            let _ = self.stream.shutdown(Shutdown::Write);
        }
    }

    /// The guest's SHUTDOWN. Returns `Reset` when the connection is over (both directions shut,
    /// or the device had already shut its side): the device answers with RST.
    pub fn shutdown_by_guest(&mut self, flags: u32) -> Verdict {
        self.peer_shutdown |= flags & shutdown::BOTH;
        if self.peer_shutdown == shutdown::BOTH || self.state == State::Closing {
            // Best effort: hand the host what it can still take before closing.
            let _ = self.flush_to_host();
            return Verdict::Reset;
        }
        if self.to_host.is_empty() && self.peer_shutdown & shutdown::SEND != 0 {
            self.close_host_write();
        }
        Verdict::Keep
    }

    pub fn credit_requested_by_guest(&mut self) {
        self.owed.credit_update = true;
    }

    /// Whether the device has something to put on the rx queue for this connection.
    pub fn has_rx_work(&self) -> bool {
        let owed = self.owed;
        owed.request
            || owed.response
            || owed.credit_update
            || (self.state == State::Established && !self.to_guest.is_empty())
            || self.wants_credit_request()
            || self.wants_shutdown()
    }

    /// Host data waits but the guest's window is shut: ask it once for an update.
    fn wants_credit_request(&self) -> bool {
        self.state == State::Established
            && !self.credit_requested
            && self.peer_credit() == 0
            && (!self.to_guest.is_empty() || !self.host_eof)
    }

    /// The host closed and everything it sent reached the guest: time to say so.
    fn wants_shutdown(&self) -> bool {
        self.state == State::Established && self.host_eof && self.to_guest.is_empty()
    }

    /// The next packet for the guest that fits `room` payload bytes, or `None`.
    pub fn next_rx_packet(&mut self, room: usize, closing_deadline: Instant) -> Option<RxPacket> {
        let owed = &mut self.owed;
        let op_now = if std::mem::take(&mut owed.request) {
            op::REQUEST
        } else if std::mem::take(&mut owed.response) {
            op::RESPONSE
        } else if self.state == State::Established && !self.to_guest.is_empty() {
            let take = room.min(self.peer_credit()).min(self.to_guest.len());
            if take > 0 {
                let payload: Vec<u8> = self.to_guest.drain(..take).collect();
                self.tx_cnt = self.tx_cnt.wrapping_add(take as u32);
                self.owed.credit_update = false;
                return Some(self.packet(op::RW, 0, payload));
            }
            return self.control_packet(closing_deadline);
        } else {
            return self.control_packet(closing_deadline);
        };
        Some(self.packet(op_now, 0, Vec::new()))
    }

    fn control_packet(&mut self, closing_deadline: Instant) -> Option<RxPacket> {
        if std::mem::take(&mut self.owed.credit_update) {
            return Some(self.packet(op::CREDIT_UPDATE, 0, Vec::new()));
        }
        if self.wants_credit_request() {
            self.credit_requested = true;
            return Some(self.packet(op::CREDIT_REQUEST, 0, Vec::new()));
        }
        if self.wants_shutdown() {
            self.state = State::Closing;
            self.deadline = Some(closing_deadline);
            return Some(self.packet(op::SHUTDOWN, shutdown::BOTH, Vec::new()));
        }
        None
    }

    fn packet(&mut self, op_code: u16, flags: u32, payload: Vec<u8>) -> RxPacket {
        // Every packet tells the guest how much room the device has.
        self.last_reported_fwd_cnt = self.fwd_cnt;
        RxPacket {
            header: Header {
                src_cid: HOST_CID,
                dst_cid: self.guest_cid,
                src_port: self.local_port,
                dst_port: self.peer_port,
                len: 0,
                type_: TYPE_STREAM,
                op: op_code,
                flags,
                buf_alloc: HOST_BUF_ALLOC,
                fwd_cnt: self.fwd_cnt,
            },
            payload,
        }
    }

    /// Bytes read from the host and not yet handed to the guest (for tests of the credit bound).
    #[cfg(test)]
    pub fn buffered_for_guest(&self) -> usize {
        self.to_guest.len()
    }
}

/// A packet ready for an rx buffer.
#[derive(Debug)]
pub struct RxPacket {
    pub header: Header,
    pub payload: Vec<u8>,
}

fn is_transient(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// An RST from the host end of `(local_port, peer_port)` to the guest.
pub fn rst_header(guest_cid: u64, local_port: u32, peer_port: u32) -> Header {
    Header {
        src_cid: HOST_CID,
        dst_cid: guest_cid,
        src_port: local_port,
        dst_port: peer_port,
        type_: TYPE_STREAM,
        op: op::RST,
        ..Header::default()
    }
}
