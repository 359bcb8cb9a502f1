//! Foreground `run`/`exec` with a terminal: runvm is the console socket itself; once it has
//! the pty master (`process::console::receive_master`) it copies between it and its own stdio, with the
//! host terminal in raw mode and its window size passed on.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use anyhow::Result;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

/// Puts stdin's terminal in raw mode until dropped.
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    pub fn enable() -> Self {
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None }; // not a terminal: nothing to do
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// Copies stdin's window size to the pty (at start and on SIGWINCH).
pub fn copy_window_size(master: &std::fs::File) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize we own; TIOCSWINSZ reads it. Failures are harmless.
    unsafe {
        if libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// stdin's terminal size as a runtime-spec consoleSize, if stdin is a terminal.
pub fn stdin_window_size() -> Option<oci_spec::runtime::Box> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize we own.
    if unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) } != 0 {
        return None;
    }
    oci_spec::runtime::BoxBuilder::default()
        .height(u64::from(ws.ws_row))
        .width(u64::from(ws.ws_col))
        .build()
        .ok()
}

/// What one round of the copy loop saw.
pub enum Event {
    Signal,
    Closed,
    Continue,
}

/// One poll round over the signal fd, stdin and the pty master. Output is copied as it comes;
/// stdin is dropped from the set at EOF.
pub fn pump(
    signals: BorrowedFd,
    master: &mut std::fs::File,
    stdin_open: &mut bool,
) -> Result<Event> {
    let stdin = std::io::stdin();
    let mut fds = vec![
        PollFd::new(signals, PollFlags::POLLIN),
        PollFd::new(master.as_fd(), PollFlags::POLLIN),
    ];
    if *stdin_open {
        fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
    }
    match poll(&mut fds, PollTimeout::NONE) {
        Err(nix::errno::Errno::EINTR) => return Ok(Event::Continue),
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
    let signal = ready(&fds[0]);
    let master_ready = ready(&fds[1]);
    let stdin_ready = fds.get(2).is_some_and(ready);
    drop(fds);
    let mut buf = [0u8; 8192];
    if master_ready {
        match master.read(&mut buf) {
            // EIO: every slave end is closed, the container's terminal is gone.
            Ok(0) | Err(_) => return Ok(Event::Closed),
            Ok(n) => {
                let mut out = std::io::stdout().lock();
                out.write_all(&buf[..n])?;
                out.flush()?;
            }
        }
    }
    if stdin_ready {
        match stdin.lock().read(&mut buf) {
            Ok(0) | Err(_) => *stdin_open = false,
            Ok(n) => master.write_all(&buf[..n])?,
        }
    }
    Ok(if signal {
        Event::Signal
    } else {
        Event::Continue
    })
}

/// Copies what the container wrote before it exited but runvm has not read yet.
pub fn drain(master: &mut std::fs::File) {
    let _ = nix::fcntl::fcntl(
        master.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let mut buf = [0u8; 8192];
    let mut out = std::io::stdout().lock();
    while let Ok(n @ 1..) = master.read(&mut buf) {
        let _ = out.write_all(&buf[..n]);
    }
    let _ = out.flush();
}
