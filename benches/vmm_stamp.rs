//! Runs one VMM inside the nested test host's L1 and measures it the same way whatever the
//! VMM is (benches/nested-vmm.sh builds this file with plain rustc, std only, static):
//! - time to /init: wall time from just before the fork+exec of the VMM to the moment
//!   `--mark` (a line the L2's /init prints first) arrives on the VMM's stdout, the guest's
//!   serial console;
//! - memory: when `--sample-at` arrives (the L2 then pauses before powering off), the VMM's
//!   VmHWM and VmRSS from /proc/PID/status, and the resident part of its guest RAM: the
//!   mappings in /proc/PID/smaps at least half the guest's size (nothing else a VMM maps is
//!   that big here).
//!
//! ```text
//! vmm_stamp --label NAME --run N --mark TEXT --sample-at TEXT --guest-mib N --console FILE
//!           -- PROGRAM ARGS...
//! ```
//! Prints one line: `vmm-result label=.. run=.. init_ms=.. exit_ms=.. status=.. hwm_kib=..
//! rss_kib=.. guest_kib=.. guest_vmas=..` (`-1` for what was never seen). The console and
//! the VMM's stderr go to FILE.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Args {
    label: String,
    run: String,
    mark: Vec<u8>,
    sample_at: Vec<u8>,
    guest_kib: u64,
    console: String,
    command: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        label: "vmm".into(),
        run: "0".into(),
        mark: Vec::new(),
        sample_at: Vec::new(),
        guest_kib: 0,
        console: "/dev/null".into(),
        command: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--" {
            args.command = it.collect();
            break;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--label" => args.label = value,
            "--run" => args.run = value,
            "--mark" => args.mark = value.into_bytes(),
            "--sample-at" => args.sample_at = value.into_bytes(),
            "--guest-mib" => {
                let mib: u64 = value
                    .parse()
                    .map_err(|e| format!("--guest-mib {value:?}: {e}"))?;
                args.guest_kib = mib * 1024;
            }
            "--console" => args.console = value,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.command.is_empty() || args.mark.is_empty() || args.guest_kib == 0 {
        return Err("need --mark, --guest-mib and -- PROGRAM".into());
    }
    Ok(args)
}

/// Finds a byte string in a stream read in chunks, across chunk boundaries.
struct Watch {
    needle: Vec<u8>,
    tail: Vec<u8>,
    seen: bool,
}

impl Watch {
    fn new(needle: &[u8]) -> Self {
        Watch {
            needle: needle.to_vec(),
            tail: Vec::new(),
            seen: needle.is_empty(),
        }
    }

    /// True the first time the needle is complete.
    fn feed(&mut self, chunk: &[u8]) -> bool {
        if self.seen {
            return false;
        }
        self.tail.extend_from_slice(chunk);
        if self
            .tail
            .windows(self.needle.len())
            .any(|w| w == self.needle)
        {
            self.seen = true;
            return true;
        }
        let keep = self.needle.len() - 1;
        let cut = self.tail.len().saturating_sub(keep);
        self.tail.drain(..cut);
        false
    }
}

/// A `Name:   123 kB` field of /proc/PID/status.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Resident KiB and count of the mappings at least `min_kib` large, from /proc/PID/smaps.
fn big_mappings_rss(smaps: &str, min_kib: u64) -> (u64, u32) {
    let (mut rss, mut count, mut current_big) = (0, 0, false);
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        // A mapping header starts with `start-end` in hex; its fields follow it.
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(s), Ok(e)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16)) {
                current_big = (e - s) / 1024 >= min_kib;
                count += u32::from(current_big);
                continue;
            }
        }
        if current_big && line.starts_with("Rss:") {
            rss += status_kib(line, "Rss:").unwrap_or(0);
        }
    }
    (rss, count)
}

struct Memory {
    hwm_kib: i64,
    rss_kib: i64,
    guest_kib: i64,
    guest_vmas: i64,
}

fn sample(pid: u32, guest_kib: u64) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let (guest, vmas) = big_mappings_rss(&smaps, guest_kib / 2);
    let field = |name| status_kib(&status, name).map_or(-1, |v| v as i64);
    Memory {
        hwm_kib: field("VmHWM:"),
        rss_kib: field("VmRSS:"),
        guest_kib: if smaps.is_empty() { -1 } else { guest as i64 },
        guest_vmas: i64::from(vmas),
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-1".into(), |d| format!("{:.1}", d.as_secs_f64() * 1000.0))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vmm_stamp: {e}");
            std::process::exit(2);
        }
    };
    let open = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.console);
    let mut console = match open {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vmm_stamp: --console {}: {e}", args.console);
            std::process::exit(2);
        }
    };
    let stderr = console
        .try_clone()
        .map(Stdio::from)
        .unwrap_or(Stdio::null());
    let started = Instant::now();
    let spawned = Command::new(&args.command[0])
        .args(&args.command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vmm_stamp: cannot run {}: {e}", args.command[0]);
            std::process::exit(2);
        }
    };
    let pid = child.id();
    let mut out: File = match child.stdout.take() {
        Some(s) => File::from(std::os::fd::OwnedFd::from(s)),
        None => std::process::exit(2),
    };
    let (mut mark, mut sample_at) = (Watch::new(&args.mark), Watch::new(&args.sample_at));
    let (mut init, mut memory) = (None, None);
    let mut buf = [0u8; 4096];
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if mark.feed(&buf[..n]) {
            init = Some(started.elapsed());
        }
        if !args.sample_at.is_empty() && sample_at.feed(&buf[..n]) {
            memory = Some(sample(pid, args.guest_kib));
        }
        let _ = console.write_all(&buf[..n]);
    }
    let status = child.wait().ok().and_then(|s| s.code()).unwrap_or(-1);
    let exit = started.elapsed();
    let m = memory.unwrap_or(Memory {
        hwm_kib: -1,
        rss_kib: -1,
        guest_kib: -1,
        guest_vmas: -1,
    });
    println!(
        "vmm-result label={} run={} init_ms={} exit_ms={} status={status} hwm_kib={} rss_kib={} \
         guest_kib={} guest_vmas={}",
        args.label,
        args.run,
        ms(init),
        ms(Some(exit)),
        m.hwm_kib,
        m.rss_kib,
        m.guest_kib,
        m.guest_vmas
    );
}
