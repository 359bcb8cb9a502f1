//! A write-only port that ends the VM with the written byte as its status, like QEMU's
//! isa-debug-exit: tiny test guests use it to report pass/fail.
//!
//! Hand-written: it is runvm's own test device (no crate has one).

use std::sync::Arc;

use crate::devices::bus::PioDevice;
use crate::exit::{ExitReason, ExitSignal};

pub struct DebugExit {
    signal: Arc<ExitSignal>,
}

impl DebugExit {
    pub fn new(signal: Arc<ExitSignal>) -> Self {
        DebugExit { signal }
    }
}

impl PioDevice for DebugExit {
    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u16, data: &[u8]) {
        // A wider `out` (ax/eax) reports its low byte.
        if let Some(status) = data.first() {
            self.signal
                .report(ExitReason::DebugExit { status: *status });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_write_reports_its_byte() {
        let signal = Arc::new(ExitSignal::new(Instant::now()));
        let mut dev = DebugExit::new(Arc::clone(&signal));
        dev.write(0, &[]);
        assert_eq!(signal.reason(), None);
        dev.write(0, &[0x2a, 0]);
        assert_eq!(signal.reason(), Some(ExitReason::DebugExit { status: 42 }));
    }
}
