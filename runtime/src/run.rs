//! `run`: create + start, then (unless --detach) wait for the container, forwarding signals,
//! and delete it (unless --keep). Exits with the container's exit code, 128+N for signal N.
//! With `process.terminal` and no --console-socket, runvm proxies the container's pty itself.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use anyhow::Result;
use nix::sys::signal::SigSet;
use runvm_runtime::container::Store;
use runvm_runtime::lifecycle::{self, CreateOptions, Created};

use crate::console_proxy;
use crate::foreground;

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
    let mask = if detach {
        SigSet::empty()
    } else {
        foreground::block_signals()?
    };
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
        Some(sock) => {
            let master = File::from(runvm_runtime::process::console::receive_master(sock)?);
            // Before start: the program may ask for its window size as soon as it runs.
            console_proxy::copy_window_size(&master);
            Some(master)
        }
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
    let code = foreground::wait_for_exit(&init, &mask, master)?;
    if !keep {
        if let Ok(dir) = store.open(&state.id) {
            lifecycle::delete(dir, &state, true)?;
        }
    }
    Ok(code)
}
