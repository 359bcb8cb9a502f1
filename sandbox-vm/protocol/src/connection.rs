//! A small blocking host end of the channel, for tests and simple callers.

use std::collections::VecDeque;
use std::io::{Read, Write};

use crate::frame::{encode_data, encode_message, Fd, Frame, FrameDecoder};
use crate::{AgentMessage, ProtocolError, Reply, ReplyBody, Request, RequestBody};

const READ_CHUNK: usize = 64 * 1024;

/// Sends requests and data, reads the agent's frames. Request ids are assigned here, counting
/// from 1. Frames that arrive while [`call`](Self::call) waits for its reply are kept and
/// returned by later [`read_frame`](Self::read_frame) calls, in order.
pub struct Connection<S> {
    stream: S,
    decoder: FrameDecoder<AgentMessage>,
    pending: VecDeque<Frame<AgentMessage>>,
    next_id: u64,
}

impl<S: Read + Write> Connection<S> {
    pub fn new(stream: S) -> Self {
        Connection {
            stream,
            decoder: FrameDecoder::new(),
            pending: VecDeque::new(),
            next_id: 1,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Sends a request and returns its id.
    pub fn send_request(&mut self, body: RequestBody) -> Result<u64, ProtocolError> {
        let id = self.next_id;
        self.next_id += 1;
        self.write_frame(&encode_message(&Request { id, body })?)?;
        Ok(id)
    }

    /// Sends stdin data to a stream; empty `data` closes that process's stdin.
    pub fn send_stdin(&mut self, stream: u32, data: &[u8]) -> Result<(), ProtocolError> {
        self.write_frame(&encode_data(stream, Fd::Stdin, data)?)
    }

    /// Writes bytes as they are: for tests that send malformed frames.
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        self.write_frame(bytes)
    }

    fn write_frame(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        self.stream.write_all(bytes)?;
        self.stream.flush()?;
        Ok(())
    }

    /// The next frame from the agent; `Ok(None)` when the agent closed the channel between
    /// frames.
    pub fn read_frame(&mut self) -> Result<Option<Frame<AgentMessage>>, ProtocolError> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(Some(frame));
        }
        self.read_from_stream()
    }

    fn read_from_stream(&mut self) -> Result<Option<Frame<AgentMessage>>, ProtocolError> {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            let want = READ_CHUNK.min(self.decoder.room());
            let n = match self.stream.read(&mut buf[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                self.decoder.finish()?;
                return Ok(None);
            }
            self.decoder.push(&buf[..n])?;
        }
    }

    /// Sends a request and waits for its reply, keeping other frames for `read_frame`.
    pub fn call(&mut self, body: RequestBody) -> Result<Result<ReplyBody, String>, ProtocolError> {
        let id = self.send_request(body)?;
        self.wait_reply(id)
    }

    /// Waits for the reply to request `id`, keeping other frames for `read_frame`.
    pub fn wait_reply(&mut self, id: u64) -> Result<Result<ReplyBody, String>, ProtocolError> {
        loop {
            match self.read_from_stream()? {
                None => {
                    return Err(ProtocolError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the agent closed the channel before replying to request {id}"),
                    )))
                }
                Some(Frame::Message(AgentMessage::Reply(Reply { id: got, result })))
                    if got == id =>
                {
                    return Ok(result)
                }
                Some(other) => self.pending.push_back(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Reads from a script of agent bytes, records what is written.
    struct Scripted {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            // One byte at a time: the worst split a channel can produce.
            let n = buf.len().min(1);
            self.input.read(&mut buf[..n])
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn call_keeps_frames_that_arrive_before_its_reply() {
        let mut agent = encode_data(4, Fd::Stdout, b"hi").unwrap();
        agent.extend(
            encode_message(&AgentMessage::Exited {
                stream: 4,
                status: 0,
            })
            .unwrap(),
        );
        agent.extend(
            encode_message(&AgentMessage::Reply(Reply {
                id: 1,
                result: Err("no".into()),
            }))
            .unwrap(),
        );
        let mut conn = Connection::new(Scripted {
            input: Cursor::new(agent),
            output: Vec::new(),
        });
        let result = conn.call(RequestBody::Hello { version: 1 }).unwrap();
        assert_eq!(result, Err("no".to_string()));
        assert_eq!(
            conn.read_frame().unwrap(),
            Some(Frame::Data {
                stream: 4,
                fd: Fd::Stdout,
                data: b"hi".to_vec()
            })
        );
        assert_eq!(
            conn.read_frame().unwrap(),
            Some(Frame::Message(AgentMessage::Exited {
                stream: 4,
                status: 0
            }))
        );
        assert_eq!(conn.read_frame().unwrap(), None);
        // What went out is one well-formed request with id 1.
        let mut dec = FrameDecoder::<Request>::new();
        dec.push(&conn.get_ref().output).unwrap();
        assert_eq!(
            dec.next_frame().unwrap(),
            Some(Frame::Message(Request {
                id: 1,
                body: RequestBody::Hello { version: 1 }
            }))
        );
    }

    #[test]
    fn eof_mid_frame_is_an_error_not_a_clean_close() {
        let frame = encode_message(&AgentMessage::Exited {
            stream: 1,
            status: 3,
        })
        .unwrap();
        let mut conn = Connection::new(Scripted {
            input: Cursor::new(frame[..frame.len() - 2].to_vec()),
            output: Vec::new(),
        });
        assert!(matches!(
            conn.read_frame(),
            Err(ProtocolError::TruncatedFrame { .. })
        ));
    }
}
