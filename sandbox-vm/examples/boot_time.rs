//! Measures runvm's monitor on this host: time from VM creation to the guest's first serial
//! byte and to its exit, and the monitor's own memory (RSS minus guest RAM it touched).
//!
//! `cargo run --release -p runvm-sandbox-vm --example boot_time [RUNS]`

use std::time::{Duration, Instant};

use runvm_sandbox_vm::{guest, host, GuestImage, SharedBuffer, Vm, VmConfig};

/// (VmRSS, VmHWM) of this process in KiB, from /proc/self/status.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Sample {
    first_byte: Duration,
    exit: Duration,
    total: Duration,
    monitor_kib: i64,
    guest_kib: u64,
    steps: Vec<(&'static str, Duration)>,
}

fn one_run(image: &GuestImage, expected: &[u8]) -> Result<Sample, String> {
    let (baseline, _) = rss_kib();
    let out = SharedBuffer::new();
    let vm = Vm::build(&VmConfig::default(), image, Box::new(out.clone()))
        .map_err(|e| format!("build: {e}"))?;
    let running = vm.start().map_err(|e| format!("start: {e}"))?;
    // Sample RSS while the VM still exists: after the guest printed everything.
    let until = Instant::now() + Duration::from_secs(10);
    while out.contents() != expected && Instant::now() < until {
        std::thread::yield_now();
    }
    let (during, _) = rss_kib();
    let outcome = running.wait(Some(Duration::from_secs(10)));
    if out.contents() != expected {
        return Err(format!(
            "guest printed {:?}, ended {:?}",
            out.text(),
            outcome.reason
        ));
    }
    let guest_kib = outcome.guest_resident_bytes / 1024;
    Ok(Sample {
        first_byte: outcome.first_output_after.unwrap_or_default(),
        exit: outcome.exit_after,
        total: outcome.total,
        monitor_kib: during as i64 - baseline as i64 - guest_kib as i64,
        guest_kib,
        steps: outcome
            .build_steps
            .iter()
            .map(|s| (s.step, s.after))
            .collect(),
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let report = host::probe(Some(20_000));
    println!("host: {:?}: {}", report.mode, report.explanation);
    if let Some(cal) = &report.calibration {
        println!("calibration: {}", cal.note);
    }
    if report.calibration.is_none() {
        println!("SKIP: KVM not usable");
        return;
    }
    let (rss_start, _) = rss_kib();
    let guests = [
        (
            "real-mode hello",
            guest::real_mode_hello(b"hello", 0),
            b"hello".to_vec(),
        ),
        (
            "long-mode hello",
            guest::long_mode_hello(b"hello"),
            b"helloL1".to_vec(),
        ),
    ];
    for (name, image, expected) in &guests {
        let mut samples = Vec::new();
        for _ in 0..runs {
            match one_run(image, expected) {
                Ok(s) => samples.push(s),
                Err(e) => {
                    println!("{name}: run failed: {e}");
                    return;
                }
            }
        }
        if let Some(last) = samples.last() {
            println!(
                "{name}: build steps of the last run (time since creation): {:?}",
                last.steps
            );
        }
        let max_monitor = samples.iter().map(|s| s.monitor_kib).max().unwrap_or(0);
        let guest_kib = samples.iter().map(|s| s.guest_kib).max().unwrap_or(0);
        println!(
            "{name} ({runs} runs, median): first serial byte {:?}, guest exit {:?}, \
             all vCPUs joined {:?}; monitor RSS growth during a run <= {max_monitor} KiB \
             (guest RAM touched {guest_kib} KiB, excluded)",
            median(samples.iter().map(|s| s.first_byte).collect()),
            median(samples.iter().map(|s| s.exit).collect()),
            median(samples.iter().map(|s| s.total).collect()),
        );
    }
    let (rss_end, hwm) = rss_kib();
    println!("process VmRSS {rss_start} KiB before the runs, {rss_end} KiB after; VmHWM {hwm} KiB");
}
