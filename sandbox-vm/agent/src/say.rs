//! Messages from the agent: stderr on a host; the kernel log in a guest, where the agent is
//! PID 1 and the kernel log is what reaches the VM's console. Never panics: a PID 1 that
//! panics panics the kernel.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static TO_KMSG: AtomicBool = AtomicBool::new(false);

/// Sends later messages to /dev/kmsg (guest mode, once /dev is mounted).
pub fn use_kmsg() {
    TO_KMSG.store(true, Ordering::Relaxed);
}

fn emit(level: u8, msg: &str) {
    if TO_KMSG.load(Ordering::Relaxed) {
        if let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
            // One write per record: kmsg takes each write as one log line.
            if kmsg
                .write_all(format!("<{level}>runvm-agent: {msg}\n").as_bytes())
                .is_ok()
            {
                return;
            }
        }
    }
    let _ = writeln!(std::io::stderr(), "runvm-agent: {msg}");
}

/// Kernel log level 6 (info).
pub fn info(msg: &str) {
    emit(6, msg);
}

/// Kernel log level 4 (warning).
pub fn warn(msg: &str) {
    emit(4, msg);
}

/// Kernel log level 3 (error): shown on the console even with `quiet`.
pub fn error(msg: &str) {
    emit(3, msg);
}
