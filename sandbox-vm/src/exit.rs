//! How a VM ended, and the one place every thread reports that to.
//!
//! The first reason reported wins: devices (debug-exit port, i8042 reset), vCPU threads
//! (halt, triple fault, KVM errors) and the controlling thread (timeout, stop) all race to
//! end the VM, and the monitor then stops every vCPU.

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Why a VM stopped running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum ExitReason {
    /// The guest wrote `status` to the debug-exit port (like QEMU's isa-debug-exit).
    DebugExit { status: u8 },
    /// The guest asked the i8042 controller to reset the CPU: runvm treats it as power-off.
    I8042Reset,
    /// The guest entered ACPI S5 (soft-off) through the sleep control register: `poweroff`.
    PowerOff,
    /// A vCPU executed `hlt` with nothing to wake it (no in-kernel irqchip).
    Halted { vcpu: u8 },
    /// A vCPU hit a triple fault or KVM asked for a shutdown/reset.
    GuestShutdown { vcpu: u8, detail: String },
    /// The run went past its time limit and the monitor stopped it.
    TimedOut { after: Duration },
    /// Someone called [`crate::VmStopper::stop`].
    Stopped,
    /// KVM failed to run a vCPU (entry failure, emulation failure, unexpected exit).
    VcpuError { vcpu: u8, detail: String },
}

impl ExitReason {
    /// A process-style exit status: the debug-exit byte, 0 for an orderly power-off, and
    /// distinct non-zero values for everything that is not the guest's own choice.
    pub fn status(&self) -> i32 {
        match self {
            ExitReason::DebugExit { status } => i32::from(*status),
            ExitReason::I8042Reset | ExitReason::PowerOff | ExitReason::Halted { .. } => 0,
            ExitReason::GuestShutdown { .. } => 128 + 6,
            ExitReason::TimedOut { .. } => 124,
            ExitReason::Stopped => 128 + 9,
            ExitReason::VcpuError { .. } => 125,
        }
    }
}

/// One step of building a VM and when it finished, measured from VM creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildStep {
    pub step: &'static str,
    pub after: Duration,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct VmOutcome {
    pub reason: ExitReason,
    /// From VM creation (the builder starting KVM work) to the first serial byte.
    pub first_output_after: Option<Duration>,
    /// From VM creation to the moment the exit reason was reported.
    pub exit_after: Duration,
    /// From VM creation to all vCPU threads joined.
    pub total: Duration,
    /// Guest RAM that was resident (touched) when the VM ended, in bytes.
    pub guest_resident_bytes: u64,
    /// When each step of building and starting the VM finished.
    pub build_steps: Vec<BuildStep>,
}

/// Shared between all threads of one VM: records the exit reason and wakes the waiter.
#[derive(Debug)]
pub struct ExitSignal {
    created: Instant,
    reason: Mutex<Option<(ExitReason, Instant)>>,
    changed: Condvar,
    first_output: OnceLock<Instant>,
}

impl ExitSignal {
    pub fn new(created: Instant) -> Self {
        ExitSignal {
            created,
            reason: Mutex::new(None),
            changed: Condvar::new(),
            first_output: OnceLock::new(),
        }
    }

    /// When the VM was created; timings are measured from here.
    pub fn created(&self) -> Instant {
        self.created
    }

    fn lock(&self) -> MutexGuard<'_, Option<(ExitReason, Instant)>> {
        // A panicking reporter cannot leave the Option half-written: keep using it.
        self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `reason` unless another one came first. Returns whether this one won.
    pub fn report(&self, reason: ExitReason) -> bool {
        let mut slot = self.lock();
        if slot.is_some() {
            return false;
        }
        *slot = Some((reason, Instant::now()));
        self.changed.notify_all();
        true
    }

    /// The reason reported so far, if any.
    pub fn reason(&self) -> Option<ExitReason> {
        self.lock().as_ref().map(|(r, _)| r.clone())
    }

    /// Waits until a reason is reported or `deadline` passes; returns the reason and when it
    /// was reported, or None on timeout.
    pub fn wait_until(&self, deadline: Option<Instant>) -> Option<(ExitReason, Instant)> {
        let mut slot = self.lock();
        loop {
            if let Some(found) = slot.as_ref() {
                return Some(found.clone());
            }
            match deadline {
                None => slot = self.changed.wait(slot).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    slot = self
                        .changed
                        .wait_timeout(slot, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// Waits for the VM to end, at most `timeout` (then reports `TimedOut`); returns the
    /// reason and when it was reported. Someone reporting first in the meantime wins.
    pub fn wait_or_time_out(&self, timeout: Option<Duration>) -> (ExitReason, Instant) {
        let deadline = timeout.map(|t| Instant::now() + t);
        if let Some(found) = self.wait_until(deadline) {
            return found;
        }
        let after = timeout.unwrap_or_default();
        self.report(ExitReason::TimedOut { after });
        self.wait_until(None)
            .unwrap_or((ExitReason::TimedOut { after }, Instant::now()))
    }

    /// Notes the first byte the guest sent to the serial port.
    pub fn note_output(&self) {
        let _ = self.first_output.set(Instant::now());
    }

    /// Time from creation to the first serial byte.
    pub fn first_output_after(&self) -> Option<Duration> {
        self.first_output
            .get()
            .map(|t| t.saturating_duration_since(self.created))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn first_reason_wins() {
        let signal = ExitSignal::new(Instant::now());
        assert!(signal.report(ExitReason::DebugExit { status: 3 }));
        assert!(!signal.report(ExitReason::Stopped));
        assert_eq!(signal.reason(), Some(ExitReason::DebugExit { status: 3 }));
    }

    #[test]
    fn wait_times_out_without_a_reason_and_wakes_on_one() {
        let signal = Arc::new(ExitSignal::new(Instant::now()));
        let short = Instant::now() + Duration::from_millis(20);
        assert!(signal.wait_until(Some(short)).is_none());

        let reporter = Arc::clone(&signal);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            reporter.report(ExitReason::I8042Reset)
        });
        let got = signal.wait_until(Some(Instant::now() + Duration::from_secs(10)));
        assert_eq!(got.map(|(r, _)| r), Some(ExitReason::I8042Reset));
        assert!(thread.join().unwrap_or(false));
    }

    #[test]
    fn statuses_distinguish_guest_choice_from_monitor_action() {
        assert_eq!(ExitReason::DebugExit { status: 42 }.status(), 42);
        assert_eq!(ExitReason::I8042Reset.status(), 0);
        assert_ne!(
            ExitReason::TimedOut {
                after: Duration::ZERO
            }
            .status(),
            0
        );
        assert_ne!(ExitReason::Stopped.status(), 0);
    }
}
