//! A container process's stdio from the FIFO paths containerd passes.
//!
//! Without a terminal the FIFOs themselves become the process's descriptors (no copying in the
//! shim). Opening a FIFO blocks until the other side is open, and containerd's client opens its
//! ends asynchronously, so the shim first opens a placeholder end that makes its real open
//! return at once, and holds it while the process runs:
//! - stdout/stderr: a read end, so writes before the client's reader arrives are buffered
//!   instead of failing with EPIPE. A reader never delays EOF for the client.
//! - stdin: a write end, so the process does not read EOF before the client's writer is there;
//!   dropped at init's start, or at CloseIO for an exec (see `service`), after which the
//!   client's close is the process's EOF.
//!
//! With a terminal, init sends the pty master to the shim and the shim copies between it and
//! the FIFOs in two threads.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// The FIFO paths containerd gave for one process (empty = not wanted).
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// What the shim keeps of a process's stdio while it runs.
#[derive(Debug, Default)]
pub struct Held {
    /// Placeholder write end of the stdin FIFO (dropped at start or CloseIO).
    pub stdin_writer: Option<File>,
    /// Placeholder read ends of the stdout/stderr FIFOs.
    pub readers: Vec<File>,
    /// The pty master (`process.terminal`), for ResizePty.
    pub console: Option<Arc<File>>,
}

/// Descriptors to hand to the container process.
pub enum Prepared {
    Files {
        fds: [OwnedFd; 3],
        held: Held,
    },
    Console {
        /// Goes to the worker; init sends the pty master through it.
        worker_end: UnixStream,
        /// The shim receives the master here after create/exec.
        shim_end: UnixStream,
    },
}

fn open(path: &str, read: bool, write: bool, nonblock: bool) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(read).write(write);
    if nonblock {
        opts.custom_flags(libc::O_NONBLOCK);
    }
    opts.open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{path}: {e}")))
}

fn dev_null() -> std::io::Result<OwnedFd> {
    Ok(open("/dev/null", true, true, false)?.into())
}

fn clear_nonblock(file: &File) -> std::io::Result<()> {
    let flags = fcntl(file, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
    fcntl(file, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}

/// An output FIFO opened for the process, with the placeholder reader kept in `held`.
fn output(path: &str, held: &mut Held) -> std::io::Result<OwnedFd> {
    if path.is_empty() {
        return dev_null();
    }
    held.readers.push(open(path, true, false, true)?);
    // A reader exists (ours), so this open does not block.
    Ok(open(path, false, true, false)?.into())
}

pub fn prepare(paths: &StdioPaths) -> std::io::Result<Prepared> {
    if paths.terminal {
        let (worker_end, shim_end) = UnixStream::pair()?;
        return Ok(Prepared::Console {
            worker_end,
            shim_end,
        });
    }
    let mut held = Held::default();
    let stdin = if paths.stdin.is_empty() {
        dev_null()?
    } else {
        let reader = open(&paths.stdin, true, false, true)?;
        held.stdin_writer = Some(open(&paths.stdin, false, true, true)?);
        // The process must block on an empty FIFO, not get EAGAIN.
        clear_nonblock(&reader)?;
        reader.into()
    };
    let stdout = output(&paths.stdout, &mut held)?;
    let stderr = output(&paths.stderr, &mut held)?;
    Ok(Prepared::Files {
        fds: [stdin, stdout, stderr],
        held,
    })
}

impl Prepared {
    /// The descriptors that go to the worker with the request.
    pub fn raw_fds(&self) -> Vec<RawFd> {
        match self {
            Prepared::Files { fds, .. } => fds.iter().map(|fd| fd.as_raw_fd()).collect(),
            Prepared::Console { worker_end, .. } => vec![worker_end.as_raw_fd()],
        }
    }

    pub fn mode(&self) -> crate::worker::Stdio {
        match self {
            Prepared::Files { .. } => crate::worker::Stdio::Files,
            Prepared::Console { .. } => crate::worker::Stdio::Console,
        }
    }

    /// After the process exists: what the shim keeps. For a terminal this receives the pty
    /// master and starts copying between it and the FIFOs.
    pub fn finish(self, paths: &StdioPaths) -> std::io::Result<Held> {
        match self {
            Prepared::Files { held, .. } => Ok(held),
            Prepared::Console {
                worker_end,
                shim_end,
            } => {
                drop(worker_end);
                let master = runvm_runtime::process::console::receive_master(&shim_end)?;
                let master = Arc::new(File::from(master));
                spawn_console_copy(&master, paths)?;
                Ok(Held {
                    console: Some(master),
                    ..Held::default()
                })
            }
        }
    }
}

/// stdin FIFO -> master and master -> stdout FIFO, each in its own thread. The output copy
/// ends with EIO once every slave descriptor is closed (the process and its children exited),
/// and then closes the stdout FIFO, which is the client's EOF.
fn spawn_console_copy(master: &Arc<File>, paths: &StdioPaths) -> std::io::Result<()> {
    if !paths.stdin.is_empty() {
        let master = Arc::clone(master);
        let path = paths.stdin.clone();
        std::thread::spawn(move || {
            // Blocks until the client opens its writer; a thread may wait.
            if let Ok(mut fifo) = open(&path, true, false, false) {
                let _ = std::io::copy(&mut fifo, &mut master.as_ref());
            }
        });
    }
    if !paths.stdout.is_empty() {
        let master = Arc::clone(master);
        let path = paths.stdout.clone();
        std::thread::spawn(move || {
            let Ok(mut fifo) = open(&path, false, true, false) else {
                return;
            };
            let mut buf = [0u8; 8192];
            loop {
                match master.as_ref().read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if fifo.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        });
    }
    Ok(())
}

/// TIOCSWINSZ on the pty master.
pub fn resize(master: &File, width: u32, height: u32) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: height.min(u16::MAX as u32) as u16,
        ws_col: width.min(u16::MAX as u32) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize that lives for the call, on a descriptor we own.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
