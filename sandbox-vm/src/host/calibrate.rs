//! Measures how fast guest code runs: a tiny real-mode guest prints a byte, runs a
//! two-instruction loop N times, then exits; the time between the byte and the exit is
//! the loop. About 1 ns per iteration with hardware virtualization, about 1 µs when KVM
//! emulates every instruction (PVM).

use std::time::Duration;

use serde::Serialize;

use super::bare_vm;
use crate::builder::GuestImage;
use crate::devices::legacy::serial::SharedBuffer;
use crate::exit::ExitReason;
use crate::guest;

/// Above this many nanoseconds per loop iteration the guest is being emulated.
pub const EMULATED_NS_PER_ITERATION: f64 = 100.0;
/// Status the calibration guest exits with.
const DONE: u8 = 0x5a;

#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub iterations: u32,
    /// Nanoseconds for the whole loop, or None if the run failed.
    pub loop_ns: Option<u64>,
    pub ns_per_iteration: Option<f64>,
    /// True when the loop ran at hardware speed.
    pub hardware_speed: Option<bool>,
    /// What happened, in plain words.
    pub note: String,
}

/// Runs the calibration guest with `iterations` loop turns (give it ~10 s at most).
pub fn calibrate(iterations: u32) -> Calibration {
    let failed = |note: String| Calibration {
        iterations,
        loop_ns: None,
        ns_per_iteration: None,
        hardware_speed: None,
        note,
    };
    let out = SharedBuffer::new();
    let GuestImage::Code { code, .. } = guest::real_mode_count_down(iterations, DONE) else {
        return failed("the calibration guest is not flat code".to_string());
    };
    let outcome = match bare_vm::run_real_mode(&code, out.clone(), Duration::from_secs(30)) {
        Ok(o) => o,
        Err(e) => return failed(format!("could not run the calibration VM: {e}")),
    };
    if outcome.reason != (ExitReason::DebugExit { status: DONE }) || out.contents() != b"SE" {
        return failed(format!(
            "calibration guest ended with {:?} after printing {:?}",
            outcome.reason,
            out.text()
        ));
    }
    let Some(started) = outcome.first_output_after else {
        return failed("calibration guest printed nothing".to_string());
    };
    let loop_time = outcome.exit_after.saturating_sub(started);
    let per = loop_time.as_nanos() as f64 / f64::from(iterations.max(1));
    let hardware = per < EMULATED_NS_PER_ITERATION;
    Calibration {
        iterations,
        loop_ns: Some(loop_time.as_nanos() as u64),
        ns_per_iteration: Some(per),
        hardware_speed: Some(hardware),
        note: if hardware {
            format!("guest loop ran at {per:.1} ns per iteration: hardware speed")
        } else {
            format!(
                "guest loop ran at {per:.0} ns per iteration: instructions are emulated, \
                 about {:.1} million guest instructions per second",
                2000.0 / per
            )
        },
    }
}
