//! The protocol between runvm's host side (the supervisor process next to QEMU or the built-in
//! monitor) and the **agent**, the guest's PID 1 that runs containers inside a VM.
//!
//! # Channel
//!
//! One byte stream per VM: a virtio-serial port (isolation class `emulated`, host end a Unix
//! socket QEMU connects to) or a virtio-vsock connection (class `vm`). Both directions carry
//! frames; nothing else is ever written to the channel.
//!
//! # Frames
//!
//! ```text
//! +----------------+------+---------------------------------------------+
//! | N: u32 BE      | kind | payload (N - 1 bytes)                       |
//! +----------------+------+---------------------------------------------+
//!                   kind 1 = Message: payload is one JSON message
//!                   kind 2 = Data:    stream u32 BE | fd u8 | data bytes
//! ```
//!
//! - `1 <= N <=` [`MAX_FRAME_LEN`] (1 MiB + 64). A length outside that range is refused as soon
//!   as its four bytes are read, before anything is allocated for the frame; the channel cannot
//!   be resynchronised after it, so the reader gives up on the channel.
//! - A Data frame's `fd` is 0 (stdin, host to agent), 1 (stdout) or 2 (stderr, agent to host).
//!   Empty data is the end of that fd: to the agent it closes the process's stdin, from the agent
//!   it says the process's stdout or stderr reached EOF. At most [`MAX_DATA_LEN`] bytes per frame.
//! - An unknown kind, a Data frame shorter than its 5-byte header, a bad fd or JSON that is not a
//!   message are errors for that frame only (the length was valid, so the next frame is found).
//!
//! # Messages
//!
//! Host to agent: [`Request`] `{ id, body }`; the agent answers every request with exactly one
//! [`Reply`] `{ id, result }` carrying the same id, in request order. Agent to host, as
//! [`AgentMessage`]: replies, and [`AgentMessage::Exited`] when a container process ended.
//!
//! | request body | reply body on success |
//! |---|---|
//! | `Hello { version }`: must be the first request; another version than [`PROTOCOL_VERSION`] is refused with an error naming both | `Hello { version, agent_version, kernel_release, boot_id }` |
//! | `SetClock { unix_secs, nanos }`: the guest's CLOCK_REALTIME | `Done` |
//! | `CreateContainer { container_id, config, stream, stdio }`: `config` is the whole config.json, `root.path` absolute in the guest; `stream` names init's stdio from now on | `Created { pid }` |
//! | `StartContainer { container_id }` | `Started { pid }` |
//! | `Exec { container_id, process, stream, stdio }`: `process` is an OCI process object | `Started { pid }` |
//! | `Signal { container_id, stream, signal, all }`: `stream` None = init; `all` = every process of the container | `Done` |
//! | `ResizeTty { stream, rows, cols }` | `Done` |
//! | `Processes { container_id }` | `Processes { pids }` |
//! | `DeleteContainer { container_id }`: kills what is left and removes it, like `delete --force` | `Done` |
//! | `Shutdown`: the agent kills every container and powers the VM off | `Done` |
//!
//! [`Stdio`] is `Pipes { stdin }` (stdout and stderr are separate fds; without `stdin` the
//! process reads /dev/null) or `Tty { rows, cols }` (one pty: its output is fd 1, input fd 0).
//!
//! `Exited { stream, status }` uses the shell's convention for `status` (the exit code, or 128 +
//! the signal that killed it) and is sent only after every stdout/stderr Data frame of that
//! stream, including the EOF ones: a host that prints what it receives and exits with `status`
//! when it sees `Exited` has printed everything.
//!
//! Errors are strings in `Reply::result` (`{"Err": "..."}`, serde's form of a `Result`); the
//! JSON of every other type follows its serde derive with snake_case names, e.g.
//! `{"id":1,"body":{"hello":{"version":1}}}` and `{"reply":{"id":1,"result":{"Ok":"done"}}}`.
//!
//! # Crate
//!
//! [`FrameDecoder`] is sans-IO (push bytes, pop frames; bounded buffer) for event loops;
//! [`encode_message`] and [`encode_data`] build frames; [`Connection`] is a small blocking host
//! end for tests and simple callers.

mod connection;
mod error;
mod frame;
mod message;

pub use connection::Connection;
pub use error::ProtocolError;
pub use frame::{
    encode_data, encode_message, Fd, Frame, FrameDecoder, KIND_DATA, KIND_MESSAGE, MAX_DATA_LEN,
    MAX_FRAME_LEN,
};
pub use message::{
    check_version, AgentMessage, Reply, ReplyBody, Request, RequestBody, Stdio, PROTOCOL_VERSION,
};
