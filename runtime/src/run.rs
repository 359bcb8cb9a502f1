//! `run`: create + start, then (unless --detach) wait for the container, forwarding signals,
//! and delete it (unless --keep). Exits with the container's exit code, 128+N for signal N.
//! With `process.terminal` and no --console-socket, runvm proxies the container's pty itself.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use anyhow::Result;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use runvm_runtime::container::Store;
use runvm_runtime::lifecycle::{self, CreateOptions, Created};
use runvm_runtime::process::launch::{send_signal, Launched};

use crate::console_proxy::{self, Event, RawMode};

/// Signals a foreground `run` passes on to the container instead of dying from them.
const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Whether the bundle asks for a terminal (read before create, to set up the proxy).
fn wants_terminal(opts: &CreateOptions) -> bool {
    std::fs::read(opts.bundle.join(runvm_oci::CONFIG_FILE))
        .ok()
        .and_then(|text| serde_json::from_slice::<serde_json::Value>(&text).ok())
        .is_some_and(|config| config["process"]["terminal"] == true)
}

pub fn run(store: &Store, opts: &CreateOptions, detach: bool, keep: bool) -> Result<u8> {
    // Blocked before init exists so no signal or SIGCHLD is lost before the wait loop; init
    // clears its own mask first thing.
    let mut mask = SigSet::empty();
    if !detach {
        for s in FORWARDED {
            mask.add(s);
        }
        mask.add(Signal::SIGCHLD);
        mask.thread_block()?;
    }
    let mut opts = opts.clone();
    let proxy = if !detach && opts.console_socket.is_none() && wants_terminal(&opts) {
        let (ours, theirs) = UnixStream::pair()?;
        opts.console_stream = Some(Arc::new(theirs));
        Some(ours)
    } else {
        None
    };
    let Created {
        dir,
        mut state,
        init,
    } = lifecycle::create(store, &opts)?;
    opts.console_stream = None;
    let master = match &proxy {
        Some(sock) => Some(File::from(console_proxy::receive_master(sock)?)),
        None => None,
    };
    if let Err(e) = lifecycle::start(&dir, &mut state) {
        init.kill_and_reap();
        lifecycle::delete(dir, &state, true)?;
        return Err(e.into());
    }
    if detach {
        return Ok(0);
    }
    // Other commands (kill, state, exec) must be able to reach the container while it runs.
    drop(dir);
    let code = wait_for_exit(&init, &mask, master)?;
    if !keep {
        if let Ok(dir) = store.open(&state.id) {
            lifecycle::delete(dir, &state, true)?;
        }
    }
    Ok(code)
}

/// Forwards signals (and the terminal, if any) until init exits; returns its exit code.
fn wait_for_exit(init: &Launched, mask: &SigSet, mut master: Option<File>) -> Result<u8> {
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
