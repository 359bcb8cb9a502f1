//! The hardware-reduced ACPI sleep control register: a Linux guest's `poweroff` writes the
//! S5 sleep type with SLP_EN here, and runvm ends the VM. Reads (the sleep status
//! register shares the port) return 0: never "woken".
//!
//! Hand-written: a one-register device no crate provides; the bit layout is the ACPI
//! spec's (6.5, 4.8.3.7 "Sleep Control and Status Registers").

use std::sync::Arc;

use crate::arch::x86_64::acpi::{S5_SLEEP_TYPE, SLEEP_ENABLE, SLEEP_TYPE_MASK, SLEEP_TYPE_SHIFT};
use crate::devices::bus::PioDevice;
use crate::exit::{ExitReason, ExitSignal};

pub struct AcpiSleep {
    signal: Arc<ExitSignal>,
}

impl AcpiSleep {
    pub fn new(signal: Arc<ExitSignal>) -> Self {
        AcpiSleep { signal }
    }
}

impl PioDevice for AcpiSleep {
    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u16, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        let sleep_type = (value & SLEEP_TYPE_MASK) >> SLEEP_TYPE_SHIFT;
        // Other sleep states (S1..S4) are not offered in the DSDT; ignore them.
        if value & SLEEP_ENABLE != 0 && sleep_type == S5_SLEEP_TYPE {
            self.signal.report(ExitReason::PowerOff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn only_s5_with_sleep_enable_powers_off() {
        let signal = Arc::new(ExitSignal::new(Instant::now()));
        let mut dev = AcpiSleep::new(Arc::clone(&signal));
        dev.write(0, &[S5_SLEEP_TYPE << SLEEP_TYPE_SHIFT]);
        dev.write(0, &[(3 << SLEEP_TYPE_SHIFT) | SLEEP_ENABLE]);
        assert_eq!(signal.reason(), None);
        dev.write(0, &[(S5_SLEEP_TYPE << SLEEP_TYPE_SHIFT) | SLEEP_ENABLE]);
        assert_eq!(signal.reason(), Some(ExitReason::PowerOff));
    }
}
