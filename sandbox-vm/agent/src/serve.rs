//! The agent's single-threaded event loop: the channel, a SIGCHLD signalfd, and every
//! container process's outputs and stdin, in one poll.
//!
//! Why no threads: `lifecycle::create` and `exec` clone3 children that keep running Rust code
//! until they exec; a child of a multi-threaded process could inherit a lock another thread
//! held (malloc, stdio) and deadlock (see shim/src/worker.rs). So everything happens here, one
//! step at a time: a request is served to completion before the next poll.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use runvm_agent_protocol::{
    AgentMessage, Fd, Frame, FrameDecoder, ProtocolError, Reply, Request, RequestBody, MAX_DATA_LEN,
};
use runvm_runtime::container::Store;

use crate::channel::{Channel, Gone};
use crate::say;
use crate::stdio::{read_output, Output, ProcessIo};

/// Bytes read from one output per wake-up.
const READ_CHUNK: usize = if MAX_DATA_LEN < 64 * 1024 {
    MAX_DATA_LEN
} else {
    64 * 1024
};
/// While some process has this much unread stdin queued, the agent stops reading the channel:
/// the host is told to slow down by the channel filling up, and the agent's memory stays bounded.
const STDIN_BACKLOG_LIMIT: usize = 1024 * 1024;

/// Why the loop ended.
#[derive(Debug)]
pub enum End {
    /// The host asked for it.
    Shutdown,
    /// The host closed the channel, or it failed.
    ChannelClosed(String),
    /// The host broke the framing; nothing after it can be trusted.
    Protocol(String),
}

/// One container process and its stdio.
pub struct Stream {
    pub container: String,
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub io: ProcessIo,
    /// Set when reaped; `Exited` goes out once every output is at EOF.
    pub status: Option<i32>,
}

pub struct Agent {
    pub channel: Channel,
    decoder: FrameDecoder<Request>,
    sigchld: SignalFd,
    pub store: Store,
    pub bundles: PathBuf,
    /// PID-1 mode: guest-only requests (SetClock) are honoured.
    pub guest: bool,
    pub greeted: bool,
    pub streams: HashMap<u32, Stream>,
    /// Containers created through this agent.
    pub containers: BTreeSet<String>,
}

#[derive(Clone, Copy)]
enum Token {
    Channel,
    Sigchld,
    Output(u32, Fd),
    Stdin(u32),
}

impl Agent {
    /// Blocks SIGCHLD (read from a signalfd instead) and prepares `<state>/runtime` (the
    /// engine's store) and `<state>/bundles`.
    pub fn new(channel: Channel, state_dir: PathBuf, guest: bool) -> Result<Agent> {
        // Without this the engine prints its debug notes, and its container-side processes
        // would print them into the container's stderr.
        runvm_runtime::logging::init(None, runvm_runtime::cli::LogFormat::Text, false);
        let mut chld = SigSet::empty();
        chld.add(Signal::SIGCHLD);
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), None)
            .context("blocking SIGCHLD")?;
        let sigchld = SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .context("signalfd")?;
        let runtime = state_dir.join("runtime");
        let bundles = state_dir.join("bundles");
        for dir in [&runtime, &bundles] {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        }
        Ok(Agent {
            channel,
            decoder: FrameDecoder::new(),
            sigchld,
            store: Store::new(&runtime),
            bundles,
            guest,
            greeted: false,
            streams: HashMap::new(),
            containers: BTreeSet::new(),
        })
    }

    /// Serves until the host shuts the agent down or goes away.
    pub fn run(&mut self) -> End {
        match self.serve() {
            Ok(end) => end,
            Err(Gone(why)) => End::ChannelClosed(why),
        }
    }

    fn serve(&mut self) -> Result<End, Gone> {
        loop {
            self.report_exits()?;
            let ready = match self.wait() {
                Ok(ready) => ready,
                Err(e) => return Ok(End::ChannelClosed(format!("poll: {e}"))),
            };
            for (token, _) in &ready {
                match *token {
                    Token::Sigchld => self.reap(),
                    Token::Output(stream, fd) => self.forward_output(stream, fd)?,
                    Token::Stdin(stream) => self.flush_stdin(stream),
                    Token::Channel => {}
                }
            }
            if ready.iter().any(|(t, _)| matches!(t, Token::Channel)) {
                if let Some(end) = self.read_channel()? {
                    return Ok(end);
                }
            }
        }
    }

    /// Polls everything once; returns what is ready.
    fn wait(&self) -> nix::Result<Vec<(Token, PollFlags)>> {
        let mut fds = Vec::new();
        let mut tokens = Vec::new();
        let backlogged = self.streams.values().any(|s| {
            s.io.stdin
                .as_ref()
                .is_some_and(|i| i.backlog() >= STDIN_BACKLOG_LIMIT)
        });
        if !backlogged {
            fds.push(PollFd::new(self.channel.fd(), PollFlags::POLLIN));
            tokens.push(Token::Channel);
        }
        fds.push(PollFd::new(self.sigchld.as_fd(), PollFlags::POLLIN));
        tokens.push(Token::Sigchld);
        for (&id, stream) in &self.streams {
            for (which, fd) in &stream.io.outputs {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                tokens.push(Token::Output(id, *which));
            }
            if let Some(stdin) = stream.io.stdin.as_ref().filter(|i| i.backlog() > 0) {
                fds.push(PollFd::new(stdin.fd(), PollFlags::POLLOUT));
                tokens.push(Token::Stdin(id));
            }
        }
        loop {
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(fds
            .iter()
            .zip(tokens)
            .filter_map(|(fd, token)| fd.revents().filter(|r| !r.is_empty()).map(|r| (token, r)))
            .collect())
    }

    /// Reaps every child that ended; a container process's status is kept for `Exited`.
    /// Others (orphans re-parented to the agent, which is init or a subreaper) are just reaped.
    fn reap(&mut self) {
        while let Ok(Some(_)) = self.sigchld.read_signal() {}
        loop {
            let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid.as_raw(), 128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    say::warn(&format!("waitpid: {e}"));
                    return;
                }
            };
            if let Some(stream) = self
                .streams
                .values_mut()
                .find(|s| s.pid == pid && s.status.is_none())
            {
                stream.status = Some(status);
            }
        }
    }

    /// Sends `Exited` for every reaped stream whose outputs all reached EOF, and forgets it.
    fn report_exits(&mut self) -> Result<(), Gone> {
        let done: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| s.status.is_some() && s.io.outputs.is_empty())
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            if let Some(stream) = self.streams.remove(&id) {
                let status = stream.status.unwrap_or_default();
                self.channel
                    .send_message(&AgentMessage::Exited { stream: id, status })?;
            }
        }
        Ok(())
    }

    fn forward_output(&mut self, id: u32, fd: Fd) -> Result<(), Gone> {
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        let Some(index) = stream.io.outputs.iter().position(|(which, _)| *which == fd) else {
            return Ok(());
        };
        match read_output(&stream.io.outputs[index].1, READ_CHUNK) {
            Output::Data(data) => self.channel.send_data(id, fd, &data),
            Output::Nothing => Ok(()),
            Output::Eof => {
                stream.io.outputs.remove(index);
                self.channel.send_data(id, fd, &[])
            }
        }
    }

    fn flush_stdin(&mut self, id: u32) {
        if let Some(stream) = self.streams.get_mut(&id) {
            if let Some(stdin) = stream.io.stdin.as_mut() {
                if !stdin.flush() {
                    stream.io.stdin = None;
                }
            }
        }
    }

    /// Reads what the host sent and serves every whole frame. `Some(end)` stops the agent.
    fn read_channel(&mut self) -> Result<Option<End>, Gone> {
        let mut buf = vec![0u8; READ_CHUNK.min(self.decoder.room())];
        let n = match self.channel.read(&mut buf)? {
            None => return Ok(None),
            Some(0) => {
                let why = match self.decoder.finish() {
                    Ok(()) => "the host closed the channel".to_string(),
                    Err(e) => e.to_string(),
                };
                return Ok(Some(End::ChannelClosed(why)));
            }
            Some(n) => n,
        };
        if let Err(e) = self.decoder.push(&buf[..n]) {
            return self.protocol_error(e);
        }
        loop {
            match self.decoder.next_frame() {
                Ok(None) => return Ok(None),
                Ok(Some(Frame::Message(req))) => {
                    if let Some(end) = self.serve_request(req)? {
                        return Ok(Some(end));
                    }
                }
                Ok(Some(Frame::Data { stream, fd, data })) => self.stdin_data(stream, fd, &data),
                Err(e) => {
                    if let Some(end) = self.protocol_error(e)? {
                        return Ok(Some(end));
                    }
                }
            }
        }
    }

    /// Answers a bad frame with an error reply (to its request id when one was readable, else
    /// id 0); a framing error also ends the agent.
    fn protocol_error(&mut self, e: ProtocolError) -> Result<Option<End>, Gone> {
        let id = match &e {
            ProtocolError::BadMessage { id, .. } => id.unwrap_or(0),
            _ => 0,
        };
        let text = format!("bad frame from the host: {e}");
        say::warn(&text);
        self.channel.send_message(&AgentMessage::Reply(Reply {
            id,
            result: Err(text.clone()),
        }))?;
        Ok(e.is_fatal().then_some(End::Protocol(text)))
    }

    fn serve_request(&mut self, req: Request) -> Result<Option<End>, Gone> {
        let shutdown = matches!(req.body, RequestBody::Shutdown) && self.greeted;
        let result = self.handle(req.body);
        self.channel
            .send_message(&AgentMessage::Reply(Reply { id: req.id, result }))?;
        Ok(shutdown.then_some(End::Shutdown))
    }

    fn stdin_data(&mut self, id: u32, fd: Fd, data: &[u8]) {
        if fd != Fd::Stdin {
            say::warn(&format!(
                "stream {id}: the host sent {fd:?} data; only stdin goes to the agent"
            ));
            return;
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            // The process may have just ended; its stdin is gone with it.
            return;
        };
        let Some(stdin) = stream.io.stdin.as_mut() else {
            return;
        };
        stdin.push(data);
        if !stdin.flush() {
            stream.io.stdin = None;
        }
    }

    /// Kills and removes every container (shutdown, or the host went away).
    pub fn remove_all(&mut self) {
        let mut ids: Vec<String> = self.containers.iter().cloned().collect();
        ids.extend(self.store.ids().unwrap_or_default());
        ids.sort();
        ids.dedup();
        for id in ids {
            if let Err(e) = self.delete_container(&id) {
                say::warn(&format!("removing container {id}: {e}"));
            }
        }
        self.reap();
    }
}
