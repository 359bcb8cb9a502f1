//! What can go wrong reading or writing frames.

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The length prefix is 0 or above the limit; the channel cannot be resynchronised.
    #[error("frame length {len} is outside 1..={max}")]
    BadLength { len: u32, max: usize },
    #[error("frame kind {0} is unknown (1 = message, 2 = data)")]
    UnknownKind(u8),
    #[error("data frame of {len} bytes is shorter than its 6-byte header")]
    ShortData { len: usize },
    #[error("data frame names fd {0}; only 0 (stdin), 1 (stdout) and 2 (stderr) exist")]
    BadFd(u8),
    /// A Message frame whose JSON is not a message; `id` is the request id if one was readable,
    /// so a reply can still name the request.
    #[error("bad message: {source}")]
    BadMessage {
        id: Option<u64>,
        source: serde_json::Error,
    },
    #[error("cannot encode message: {0}")]
    Encode(serde_json::Error),
    #[error("frame of {len} bytes would exceed the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("frame decoder buffer full ({buffered} bytes buffered, limit {limit}): pop frames before pushing more")]
    BufferFull { buffered: usize, limit: usize },
    #[error("channel closed in the middle of a frame ({buffered} bytes of it read)")]
    TruncatedFrame { buffered: usize },
    #[error("channel I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl ProtocolError {
    /// True when the byte stream is out of step and no later frame can be trusted.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ProtocolError::BadLength { .. }
                | ProtocolError::BufferFull { .. }
                | ProtocolError::TruncatedFrame { .. }
                | ProtocolError::Io(_)
        )
    }
}
