//! Guest side of the vsock round-trip test (runs inside a Linux guest, built static).
//!
//! ```text
//! guest_vsock_echo PORT
//! ```
//! Listens on vsock PORT, answers every line of the first connection with the same line, and
//! exits 0 when that connection closes. It prints `guest_vsock_echo: listening` once the
//! socket is listening, so the host side knows when to connect.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd};

use nix::sys::socket::{
    accept, bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, VsockAddr,
};

/// VMADDR_CID_ANY: accept connections addressed to any of this guest's CIDs.
const ANY_CID: u32 = u32::MAX;

fn main() {
    if let Err(e) = run() {
        eprintln!("guest_vsock_echo: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let port: u32 = std::env::args()
        .nth(1)
        .ok_or("usage: guest_vsock_echo PORT")?
        .parse()
        .map_err(|e| format!("PORT: {e}"))?;
    let listener = socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("vsock socket (is the vsock transport loaded?): {e}"))?;
    bind(listener.as_raw_fd(), &VsockAddr::new(ANY_CID, port))
        .map_err(|e| format!("bind vsock port {port}: {e}"))?;
    listen(&listener, Backlog::new(1).map_err(|e| e.to_string())?)
        .map_err(|e| format!("listen: {e}"))?;
    println!("guest_vsock_echo: listening on port {port}");
    let conn = accept(listener.as_raw_fd()).map_err(|e| format!("accept: {e}"))?;
    // SAFETY: `accept` just returned this descriptor and nothing else owns it. A File reads
    // and writes a connected stream socket with read(2)/write(2), which is all this needs.
    let stream = unsafe { File::from_raw_fd(conn) };
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut lines = 0u32;
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(|e| format!("read: {e}"))?;
        writeln!(writer, "{line}").map_err(|e| format!("write: {e}"))?;
        lines += 1;
    }
    println!("guest_vsock_echo: echoed {lines} lines");
    Ok(())
}
