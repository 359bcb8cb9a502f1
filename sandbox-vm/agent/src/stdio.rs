//! A container process's stdio as the agent holds it: the parent ends of its pipes, or its pty
//! master, with the stdin bytes not yet written.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use runvm_agent_protocol::{Fd, Stdio};

/// The descriptors to hand to `lifecycle::create`/`exec`, kept open until it returns.
pub struct ChildEnds {
    /// stdin, stdout, stderr of the process (pipes mode).
    pub files: Option<[OwnedFd; 3]>,
    /// The console socket end the process sends its pty master to (tty mode).
    pub console: Option<Arc<UnixStream>>,
}

impl ChildEnds {
    pub fn raw(&self) -> Option<[RawFd; 3]> {
        self.files
            .as_ref()
            .map(|[i, o, e]| [i.as_raw_fd(), o.as_raw_fd(), e.as_raw_fd()])
    }
}

/// Our side, before the process exists; [`Prepared::finish`] turns it into [`ProcessIo`].
pub enum Prepared {
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Tty {
        console: UnixStream,
        rows: u16,
        cols: u16,
    },
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// Makes the descriptors for `stdio`.
pub fn prepare(stdio: Stdio) -> Result<(Prepared, ChildEnds), String> {
    match stdio {
        Stdio::Pipes { stdin } => {
            let (child_in, our_in) = if stdin {
                let (r, w) = pipe()?;
                (r, Some(w))
            } else {
                let null =
                    std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
                (OwnedFd::from(null), None)
            };
            let (stdout, child_out) = pipe()?;
            let (stderr, child_err) = pipe()?;
            Ok((
                Prepared::Pipes {
                    stdin: our_in,
                    stdout,
                    stderr,
                },
                ChildEnds {
                    files: Some([child_in, child_out, child_err]),
                    console: None,
                },
            ))
        }
        Stdio::Tty { rows, cols } => {
            let (ours, theirs) =
                UnixStream::pair().map_err(|e| format!("console socketpair: {e}"))?;
            Ok((
                Prepared::Tty {
                    console: ours,
                    rows,
                    cols,
                },
                ChildEnds {
                    files: None,
                    console: Some(Arc::new(theirs)),
                },
            ))
        }
    }
}

impl Prepared {
    /// Called once the process exists (and has sent its pty master, in tty mode).
    pub fn finish(self) -> Result<ProcessIo, String> {
        match self {
            Prepared::Pipes {
                stdin,
                stdout,
                stderr,
            } => {
                let stdin = stdin
                    .map(|fd| {
                        set_nonblocking(&fd)?;
                        Ok::<_, String>(Stdin::new(fd, false))
                    })
                    .transpose()?;
                set_nonblocking(&stdout)?;
                set_nonblocking(&stderr)?;
                Ok(ProcessIo {
                    outputs: vec![(Fd::Stdout, stdout), (Fd::Stderr, stderr)],
                    stdin,
                    tty: None,
                })
            }
            Prepared::Tty {
                console,
                rows,
                cols,
            } => {
                let master = runvm_runtime::process::console::receive_master(&console)
                    .map_err(|e| format!("tty: {e}"))?;
                set_nonblocking(&master)?;
                resize(&master, rows, cols)?;
                let dup = |fd: &OwnedFd| {
                    fd.try_clone()
                        .map_err(|e| format!("dup of the pty master: {e}"))
                };
                Ok(ProcessIo {
                    outputs: vec![(Fd::Stdout, dup(&master)?)],
                    stdin: Some(Stdin::new(dup(&master)?, true)),
                    tty: Some(master),
                })
            }
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), String> {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)
        .map_err(|e| format!("F_GETFL: {e}"))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags))
        .map(|_| ())
        .map_err(|e| format!("F_SETFL: {e}"))
}

/// TIOCSWINSZ on a pty master: the process sees the new size (and gets SIGWINCH).
pub fn resize(master: &OwnedFd, rows: u16, cols: u16) -> Result<(), String> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(format!("TIOCSWINSZ: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The running process's stdio, from the agent's side.
pub struct ProcessIo {
    /// Output descriptors not yet at EOF.
    pub outputs: Vec<(Fd, OwnedFd)>,
    pub stdin: Option<Stdin>,
    /// The pty master, for resizes.
    pub tty: Option<OwnedFd>,
}

/// What one non-blocking read of an output gave.
pub enum Output {
    Data(Vec<u8>),
    Eof,
    /// Nothing there after all (spurious wake-up).
    Nothing,
}

/// Reads what is there, up to `max` bytes. A pty master reports the last slave closing as EIO.
pub fn read_output(fd: &OwnedFd, max: usize) -> Output {
    let mut buf = vec![0u8; max];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(Errno::EIO) => return Output::Eof,
            Ok(n) => {
                buf.truncate(n);
                return Output::Data(buf);
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Output::Nothing,
            // Any other failure ends this output as if at EOF, so its Exited is not held back.
            Err(_) => return Output::Eof,
        }
    }
}

/// stdin bytes from the host that the process has not read yet.
pub struct Stdin {
    fd: OwnedFd,
    pending: Vec<u8>,
    /// The host sent EOF: close once `pending` is written.
    eof: bool,
    is_tty: bool,
}

/// End-of-file on a terminal is the VEOF character (^D), read as EOF at the start of a line.
const TTY_EOF: u8 = 0x04;

impl Stdin {
    fn new(fd: OwnedFd, is_tty: bool) -> Self {
        Stdin {
            fd,
            pending: Vec::new(),
            eof: false,
            is_tty,
        }
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn backlog(&self) -> usize {
        self.pending.len()
    }

    /// Queues host data (empty = EOF).
    pub fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            if self.is_tty {
                self.pending.push(TTY_EOF);
            } else {
                self.eof = true;
            }
        } else {
            self.pending.extend_from_slice(data);
        }
    }

    /// Writes as much as the process takes now. Returns false when stdin is finished (EOF
    /// written, or the process closed its end) and should be dropped.
    pub fn flush(&mut self) -> bool {
        while !self.pending.is_empty() {
            match nix::unistd::write(&self.fd, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return true,
                // EPIPE: the process closed its stdin; what is left can never be read.
                Err(_) => return false,
            }
        }
        !self.eof
    }
}
