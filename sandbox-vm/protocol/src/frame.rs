//! Frames: encoding, and a sans-IO decoder with a bounded buffer.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ProtocolError;

/// The largest frame length N (kind byte included): room for 1 MiB of data plus headers.
pub const MAX_FRAME_LEN: usize = 1024 * 1024 + 64;
/// The most data one Data frame carries.
pub const MAX_DATA_LEN: usize = MAX_FRAME_LEN - DATA_HEADER;
pub const KIND_MESSAGE: u8 = 1;
pub const KIND_DATA: u8 = 2;

const LEN_PREFIX: usize = 4;
/// kind + stream id + fd.
const DATA_HEADER: usize = 6;
/// What the decoder may hold: one whole largest frame plus as much again not yet popped.
const BUFFER_LIMIT: usize = 2 * (LEN_PREFIX + MAX_FRAME_LEN);

/// Which of a process's standard descriptors a Data frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fd {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
}

impl Fd {
    fn from_byte(b: u8) -> Result<Fd, ProtocolError> {
        match b {
            0 => Ok(Fd::Stdin),
            1 => Ok(Fd::Stdout),
            2 => Ok(Fd::Stderr),
            other => Err(ProtocolError::BadFd(other)),
        }
    }
}

/// One decoded frame carrying messages of type `M`.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame<M> {
    Message(M),
    /// Empty `data` is the end of that fd.
    Data {
        stream: u32,
        fd: Fd,
        data: Vec<u8>,
    },
}

/// Encodes one Message frame.
pub fn encode_message<M: Serialize>(msg: &M) -> Result<Vec<u8>, ProtocolError> {
    let mut out = vec![0, 0, 0, 0, KIND_MESSAGE];
    serde_json::to_writer(&mut out, msg).map_err(ProtocolError::Encode)?;
    finish_frame(out)
}

/// Encodes one Data frame; `data` must be at most [`MAX_DATA_LEN`] bytes (empty = EOF).
pub fn encode_data(stream: u32, fd: Fd, data: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    if data.len() > MAX_DATA_LEN {
        return Err(ProtocolError::TooLarge {
            len: data.len() + DATA_HEADER,
            max: MAX_FRAME_LEN,
        });
    }
    let mut out = Vec::with_capacity(LEN_PREFIX + DATA_HEADER + data.len());
    out.extend_from_slice(&[0, 0, 0, 0, KIND_DATA]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.push(fd as u8);
    out.extend_from_slice(data);
    finish_frame(out)
}

/// Fills in the length prefix of a frame built after four placeholder bytes.
fn finish_frame(mut out: Vec<u8>) -> Result<Vec<u8>, ProtocolError> {
    let len = out.len() - LEN_PREFIX;
    if len > MAX_FRAME_LEN {
        return Err(ProtocolError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    out[..LEN_PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Push bytes as they arrive, pop whole frames. Holds at most two largest frames' worth of
/// bytes: pop every ready frame after each push of up to [`MAX_FRAME_LEN`] bytes and a push
/// never fails for lack of room. A bad length prefix poisons the decoder (the stream is out of
/// step); a bad frame with a valid length is consumed, reported once, and decoding goes on.
pub struct FrameDecoder<M> {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    bad_length: Option<u32>,
    _msg: PhantomData<fn() -> M>,
}

impl<M> Default for FrameDecoder<M> {
    fn default() -> Self {
        FrameDecoder {
            buf: Vec::new(),
            pos: 0,
            bad_length: None,
            _msg: PhantomData,
        }
    }
}

impl<M: DeserializeOwned> FrameDecoder<M> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// How many bytes [`push`](Self::push) accepts now.
    pub fn room(&self) -> usize {
        BUFFER_LIMIT - self.buffered()
    }

    /// Appends bytes read from the channel. Fails if they do not fit, or if the next frame's
    /// length prefix is invalid (checked here, before any of that frame is kept).
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        if bytes.len() > self.room() {
            return Err(ProtocolError::BufferFull {
                buffered: self.buffered(),
                limit: BUFFER_LIMIT,
            });
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
        self.head_length().map(|_| ())
    }

    /// The length prefix at the head, if all four bytes are there; validated.
    fn head_length(&mut self) -> Result<Option<usize>, ProtocolError> {
        if let Some(len) = self.bad_length {
            return Err(ProtocolError::BadLength {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        let Some(prefix) = self.buf.get(self.pos..self.pos + LEN_PREFIX) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if len == 0 || len as usize > MAX_FRAME_LEN {
            self.bad_length = Some(len);
            return Err(ProtocolError::BadLength {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        Ok(Some(len as usize))
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame<M>>, ProtocolError> {
        let Some(len) = self.head_length()? else {
            return Ok(None);
        };
        let start = self.pos + LEN_PREFIX;
        if self.buf.len() < start + len {
            return Ok(None);
        }
        // Consumed before parsing: a bad frame is dropped and the next one is found.
        self.pos = start + len;
        parse(&self.buf[start..start + len])
    }

    /// Call at end of input: an error if it cut a frame short.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(ProtocolError::TruncatedFrame { buffered }),
        }
    }
}

fn parse<M: DeserializeOwned>(frame: &[u8]) -> Result<Option<Frame<M>>, ProtocolError> {
    match frame[0] {
        KIND_MESSAGE => match serde_json::from_slice::<M>(&frame[1..]) {
            Ok(msg) => Ok(Some(Frame::Message(msg))),
            Err(source) => Err(ProtocolError::BadMessage {
                id: readable_id(&frame[1..]),
                source,
            }),
        },
        KIND_DATA => {
            if frame.len() < DATA_HEADER {
                return Err(ProtocolError::ShortData { len: frame.len() });
            }
            let stream = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]);
            let fd = Fd::from_byte(frame[5])?;
            Ok(Some(Frame::Data {
                stream,
                fd,
                data: frame[DATA_HEADER..].to_vec(),
            }))
        }
        kind => Err(ProtocolError::UnknownKind(kind)),
    }
}

/// The `id` of a JSON object that is not a valid message, so its sender can still get a reply.
fn readable_id(json: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(json)
        .ok()?
        .get("id")?
        .as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Request, RequestBody, Stdio};

    fn sample() -> Request {
        Request {
            id: 42,
            body: RequestBody::Exec {
                container_id: "c1".into(),
                process: serde_json::json!({"args": ["sh"], "cwd": "/"}),
                stream: 3,
                stdio: Stdio::Tty { rows: 24, cols: 80 },
            },
        }
    }

    fn decode_all(bytes: &[u8], chunk: usize) -> Vec<Frame<Request>> {
        let mut dec = FrameDecoder::<Request>::new();
        let mut frames = Vec::new();
        for piece in bytes.chunks(chunk) {
            dec.push(piece).unwrap();
            while let Some(f) = dec.next_frame().unwrap() {
                frames.push(f);
            }
        }
        dec.finish().unwrap();
        frames
    }

    #[test]
    fn round_trips_messages_and_data() {
        let mut bytes = encode_message(&sample()).unwrap();
        bytes.extend(encode_data(7, Fd::Stdin, b"hello").unwrap());
        bytes.extend(encode_data(7, Fd::Stdin, b"").unwrap());
        let frames = decode_all(&bytes, bytes.len());
        assert_eq!(
            frames,
            vec![
                Frame::Message(sample()),
                Frame::Data {
                    stream: 7,
                    fd: Fd::Stdin,
                    data: b"hello".to_vec()
                },
                Frame::Data {
                    stream: 7,
                    fd: Fd::Stdin,
                    data: Vec::new()
                },
            ]
        );
    }

    #[test]
    fn split_and_merged_reads_give_the_same_frames() {
        let mut bytes = Vec::new();
        for i in 0..5 {
            bytes.extend(encode_message(&sample()).unwrap());
            bytes.extend(encode_data(i, Fd::Stderr, &vec![i as u8; 1000]).unwrap());
        }
        let whole = decode_all(&bytes, bytes.len());
        assert_eq!(whole.len(), 10);
        for chunk in [1, 3, 4, 5, 7, 999] {
            assert_eq!(decode_all(&bytes, chunk), whole, "chunk {chunk}");
        }
    }

    #[test]
    fn largest_data_frame_fits_and_one_more_byte_does_not() {
        let big = vec![0xab; MAX_DATA_LEN];
        let bytes = encode_data(1, Fd::Stdout, &big).unwrap();
        assert_eq!(bytes.len(), LEN_PREFIX + MAX_FRAME_LEN);
        let frames = decode_all(&bytes, 65536);
        assert!(matches!(&frames[..], [Frame::Data { data, .. }] if data.len() == MAX_DATA_LEN));
        let err = encode_data(1, Fd::Stdout, &vec![0; MAX_DATA_LEN + 1]).unwrap_err();
        assert!(matches!(err, ProtocolError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn oversized_length_is_refused_from_its_prefix_alone() {
        let mut dec = FrameDecoder::<Request>::new();
        let len = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
        let err = dec.push(&len).unwrap_err();
        assert!(matches!(err, ProtocolError::BadLength { .. }), "{err}");
        assert!(err.is_fatal());
        // Poisoned: the stream is out of step for good.
        assert!(dec.next_frame().is_err());
        let mut zero = FrameDecoder::<Request>::new();
        assert!(zero.push(&[0, 0, 0, 0]).is_err());
    }

    #[test]
    fn garbage_with_a_valid_length_is_one_error_then_decoding_goes_on() {
        let mut bytes = vec![0, 0, 0, 3, 9, 1, 2]; // unknown kind 9
        bytes.extend([0, 0, 0, 3, KIND_DATA, 0, 0]); // data header cut short
        bytes.extend([0, 0, 0, 7, KIND_DATA, 0, 0, 0, 1, 5, b'x']); // fd 5
        let bad_json = br#"{"id":5,"body":{"nope":1}}"#;
        bytes.extend((bad_json.len() as u32 + 1).to_be_bytes());
        bytes.push(KIND_MESSAGE);
        bytes.extend(bad_json);
        bytes.extend(encode_message(&sample()).unwrap());
        let mut dec = FrameDecoder::<Request>::new();
        dec.push(&bytes).unwrap();
        assert!(matches!(
            dec.next_frame(),
            Err(ProtocolError::UnknownKind(9))
        ));
        assert!(matches!(
            dec.next_frame(),
            Err(ProtocolError::ShortData { len: 3 })
        ));
        assert!(matches!(dec.next_frame(), Err(ProtocolError::BadFd(5))));
        match dec.next_frame() {
            Err(e @ ProtocolError::BadMessage { id: Some(5), .. }) => assert!(!e.is_fatal()),
            other => panic!("expected a bad message with id 5, got {other:?}"),
        }
        assert_eq!(dec.next_frame().unwrap(), Some(Frame::Message(sample())));
        assert_eq!(dec.next_frame().unwrap(), None);
    }

    #[test]
    fn eof_mid_frame_is_an_error() {
        let bytes = encode_message(&sample()).unwrap();
        let mut dec = FrameDecoder::<Request>::new();
        dec.push(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(dec.next_frame().unwrap(), None);
        assert!(matches!(
            dec.finish(),
            Err(ProtocolError::TruncatedFrame { buffered }) if buffered == bytes.len() - 1
        ));
        let mut prefix_only = FrameDecoder::<Request>::new();
        prefix_only.push(&bytes[..2]).unwrap();
        assert!(prefix_only.finish().is_err());
    }

    #[test]
    fn buffer_is_bounded() {
        let mut dec = FrameDecoder::<Request>::new();
        // A valid but incomplete largest frame, then more than the rest of the room.
        let mut head = (MAX_FRAME_LEN as u32).to_be_bytes().to_vec();
        head.push(KIND_DATA);
        dec.push(&head).unwrap();
        let room = dec.room();
        assert!(matches!(
            dec.push(&vec![0; room + 1]),
            Err(ProtocolError::BufferFull { .. })
        ));
        dec.push(&vec![0; room]).unwrap();
        assert_eq!(dec.room(), 0);
    }
}
