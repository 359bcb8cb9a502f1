//! Waiting in the foreground for a container process (`run`, `exec`): signals are forwarded
//! to it through its pidfd, its terminal (if runvm holds the pty master) is proxied, and its exit
//! status becomes runvm's exit code (128+N when killed by signal N).

use std::fs::File;
use std::os::fd::AsFd;

use anyhow::Result;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use runvm_runtime::process::launch::{send_signal, Launched};

use crate::console_proxy::{self, Event, RawMode};

/// Signals a foreground runvm passes on to the container instead of dying from them.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// The signals to block before the child exists, so none is lost before the wait loop.
pub fn block_signals() -> Result<SigSet> {
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    mask.thread_block()?;
    Ok(mask)
}

/// Forwards signals (and the terminal, if any) until init exits; returns its exit code.
pub fn wait_for_exit(init: &Launched, mask: &SigSet, mut master: Option<File>) -> Result<u8> {
    let signals = SignalFd::with_flags(mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
    let _raw = master.as_ref().map(|m| {
        console_proxy::copy_window_size(m);
        RawMode::enable()
    });
    let mut stdin_open = true;
    loop {
        match master.as_mut() {
            Some(m) => match console_proxy::pump(signals.as_fd(), m, &mut stdin_open)? {
                Event::Closed => master = None,
                Event::Continue => continue,
                Event::Signal => {}
            },
            None => wait_readable(&signals)?,
        }
        while let Some(info) = signals.read_signal()? {
            let signo = info.ssi_signo as i32;
            if signo == Signal::SIGCHLD as i32 {
                let code = match waitpid(Pid::from_raw(init.pid), Some(WaitPidFlag::WNOHANG))? {
                    WaitStatus::Exited(_, code) => code as u8,
                    WaitStatus::Signaled(_, sig, _) => 128u8.wrapping_add(sig as u8),
                    _ => continue,
                };
                if let Some(m) = master.as_mut() {
                    console_proxy::drain(m);
                }
                return Ok(code);
            }
            if signo == Signal::SIGWINCH as i32 {
                if let Some(m) = &master {
                    console_proxy::copy_window_size(m);
                    continue;
                }
            }
            let _ = send_signal(&init.pidfd, signo);
        }
    }
}

fn wait_readable(signals: &SignalFd) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::NONE) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
