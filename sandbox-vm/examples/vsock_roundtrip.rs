//! Host side of the vsock round-trip test: talks to a guest through the Unix socket that
//! runvm's virtio-vsock device listens on (`CONNECT <port>\n`, answered `OK <port>\n`).
//!
//! ```text
//! vsock_roundtrip UDS_PATH PORT [LINES] [--timeout-secs N]
//! ```
//! Retries until the guest listens (or the timeout passes), sends LINES numbered lines
//! (default 3), checks each comes back unchanged, prints the round-trip time of each and
//! exits 0; any mismatch or timeout exits 1.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn main() {
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("vsock_roundtrip: FAIL: {e}");
            std::process::exit(1);
        }
    }
}

struct Args {
    uds: String,
    port: u32,
    lines: u32,
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let usage = "usage: vsock_roundtrip UDS_PATH PORT [LINES] [--timeout-secs N]";
    let mut positional = Vec::new();
    let mut timeout = Duration::from_secs(60);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if arg == "--timeout-secs" {
            let v = it.next().ok_or(usage)?;
            timeout = Duration::from_secs(v.parse().map_err(|e| format!("--timeout-secs: {e}"))?);
        } else {
            positional.push(arg);
        }
    }
    let number = |i: usize, what: &str, default: Option<u32>| -> Result<u32, String> {
        match (positional.get(i), default) {
            (Some(v), _) => v.parse().map_err(|e| format!("{what} {v:?}: {e}")),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(usage.to_string()),
        }
    };
    Ok(Args {
        uds: positional.first().ok_or(usage)?.clone(),
        port: number(1, "PORT", None)?,
        lines: number(2, "LINES", Some(3))?,
        timeout,
    })
}

/// Connects through the device's socket to guest `port`; None while the guest is not there yet.
fn try_connect(uds: &str, port: u32) -> Result<Option<(UnixStream, String)>, String> {
    let Ok(mut stream) = UnixStream::connect(uds) else {
        return Ok(None);
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    // The device closes clients it cannot serve yet (no guest driver, no listener): retry.
    if writeln!(stream, "CONNECT {port}").is_err() {
        return Ok(None);
    }
    let mut reply = String::new();
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    // A refused connection is closed by the device without a reply.
    if reader.read_line(&mut reply).is_err() || !reply.starts_with("OK ") {
        return Ok(None);
    }
    Ok(Some((stream, reply.trim_end().to_string())))
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let deadline = Instant::now() + args.timeout;
    let (mut stream, reply) = loop {
        if let Some(found) = try_connect(&args.uds, args.port)? {
            break found;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no guest listener on vsock port {} through {} within {:?}",
                args.port, args.uds, args.timeout
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("vsock_roundtrip: connected ({reply})");
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    for n in 1..=args.lines {
        let line = format!("runvm vsock line {n}");
        let sent = Instant::now();
        writeln!(stream, "{line}").map_err(|e| format!("send line {n}: {e}"))?;
        let mut back = String::new();
        reader
            .read_line(&mut back)
            .map_err(|e| format!("read line {n}: {e}"))?;
        if back.trim_end() != line {
            return Err(format!("line {n} came back as {back:?}"));
        }
        println!(
            "vsock_roundtrip: line {n} echoed in {} us",
            sent.elapsed().as_micros()
        );
    }
    println!("vsock_roundtrip: OK {} lines", args.lines);
    Ok(())
}
