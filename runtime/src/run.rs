//! `run`: create + start, then (unless --detach) wait for the container, forwarding signals,
//! and delete it (unless --keep). Exits with the container's exit code, 128+N for signal N.

use anyhow::Result;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use runvm_runtime::container::Store;
use runvm_runtime::lifecycle::{self, CreateOptions, Created};
use runvm_runtime::process::launch::send_signal;

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
    let Created {
        dir,
        mut state,
        init,
    } = lifecycle::create(store, opts)?;
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
    let signals = SignalFd::new(&mask)?;
    let code = loop {
        let Some(info) = signals.read_signal()? else {
            continue;
        };
        if info.ssi_signo == Signal::SIGCHLD as u32 {
            match waitpid(Pid::from_raw(init.pid), Some(WaitPidFlag::WNOHANG))? {
                WaitStatus::Exited(_, code) => break code as u8,
                WaitStatus::Signaled(_, sig, _) => break 128u8.wrapping_add(sig as u8),
                _ => continue,
            }
        }
        let _ = send_signal(&init.pidfd, info.ssi_signo as i32);
    };
    if !keep {
        if let Ok(dir) = store.open(&state.id) {
            lifecycle::delete(dir, &state, true)?;
        }
    }
    Ok(code)
}
