//! The supervisor's end of the agent channel: frames in and out over one stream, requests
//! answered in order. Everything the guest sends is untrusted: bad frames end the channel with
//! an error, never a panic, and every wait is bounded by a deadline or by the VM's exit.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use runvm_agent_protocol::{
    encode_data, encode_message, AgentMessage, Fd, Frame, FrameDecoder, Reply, ReplyBody, Request,
    RequestBody,
};

pub type AgentFrame = Frame<AgentMessage>;

pub struct AgentLink {
    stream: UnixStream,
    decoder: FrameDecoder<AgentMessage>,
    next_id: u64,
    /// Frames that arrived while a request waited for its reply, in order.
    pending: VecDeque<AgentFrame>,
}

impl AgentLink {
    pub fn new(stream: UnixStream) -> Self {
        AgentLink {
            stream,
            decoder: FrameDecoder::new(),
            next_id: 1,
            pending: VecDeque::new(),
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    fn write(&mut self, frame: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(frame)
            .map_err(|e| format!("agent channel: {e}"))
    }

    pub fn send(&mut self, body: RequestBody) -> Result<u64, String> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = encode_message(&Request { id, body }).map_err(|e| e.to_string())?;
        self.write(&frame)?;
        Ok(id)
    }

    pub fn send_stdin(&mut self, stream: u32, data: &[u8]) -> Result<(), String> {
        let frame = encode_data(stream, Fd::Stdin, data).map_err(|e| e.to_string())?;
        self.write(&frame)
    }

    /// Reads what the channel has (one read) and returns the complete frames; `Ok(None)` when
    /// the agent closed the channel.
    pub fn read_frames(&mut self) -> Result<Option<Vec<AgentFrame>>, String> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = match self.stream.read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(format!("agent channel: {e}")),
        };
        self.decoder
            .push(&buf[..n])
            .map_err(|e| format!("agent channel: {e}"))?;
        let mut frames = Vec::new();
        while let Some(frame) = self
            .decoder
            .next_frame()
            .map_err(|e| format!("agent sent a bad frame: {e}"))?
        {
            frames.push(frame);
        }
        Ok(Some(frames))
    }

    /// Frames queued while a request waited; the event loop handles them first.
    pub fn take_pending(&mut self) -> Vec<AgentFrame> {
        self.pending.drain(..).collect()
    }

    /// Sends a request and waits for its reply until `deadline`, or until `vm` (the VMM's
    /// pidfd) says the VM ended. Other frames that arrive meanwhile are kept for later.
    pub fn call(
        &mut self,
        body: RequestBody,
        deadline: Instant,
        vm: BorrowedFd<'_>,
        what: &str,
    ) -> Result<ReplyBody, String> {
        let id = self.send(body)?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "the guest agent did not answer {what} within the time allowed"
                ));
            }
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [
                PollFd::new(self.stream.as_fd(), PollFlags::POLLIN),
                PollFd::new(vm, PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(format!("agent channel: poll: {e}")),
            }
            let readable = |f: &PollFd| {
                f.revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP))
            };
            let vm_ended = readable(&fds[1]);
            if readable(&fds[0]) {
                let Some(frames) = self.read_frames()? else {
                    return Err(format!(
                        "the guest agent closed its channel before answering {what}"
                    ));
                };
                let mut reply = None;
                for frame in frames {
                    if reply.is_some() {
                        // Frames after the reply stay queued, in order.
                        self.pending.push_back(frame);
                        continue;
                    }
                    match frame {
                        Frame::Message(AgentMessage::Reply(Reply { id: got, result }))
                            if got == id =>
                        {
                            reply = Some(result)
                        }
                        Frame::Message(AgentMessage::Reply(Reply { id: got, .. })) => {
                            return Err(format!(
                                "the guest agent answered request {got}, expected {id}"
                            ));
                        }
                        other => self.pending.push_back(other),
                    }
                }
                if let Some(result) = reply {
                    return result.map_err(|e| format!("guest agent: {what}: {e}"));
                }
            } else if vm_ended {
                return Err(format!(
                    "the VM ended before the guest agent answered {what}"
                ));
            }
        }
    }
}
