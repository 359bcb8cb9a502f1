//! The i8042 keyboard controller, only for its CPU-reset command, which runvm treats as
//! the guest powering off (Linux reboots through it; a microVM has nothing to reboot to).
//!
//! There is no keyboard behind it, and the guest is told so at once: the status register
//! reads "output buffer full, input buffer empty" forever and the data port floats, so
//! Linux's probe drains 16 bytes, reports "No controller found" and moves on. A controller
//! that answered the status but not the commands (vm-superio's alone) cost a Linux guest a
//! second of probe timeouts at every boot; input buffer empty keeps a reboot's wait for the
//! controller short.

use std::sync::Arc;

use vm_superio::{I8042Device, Trigger};

use crate::devices::bus::PioDevice;
use crate::exit::{ExitReason, ExitSignal};

/// Turns vm-superio's reset event into an exit reason.
pub struct ResetToExit(Arc<ExitSignal>);

impl Trigger for ResetToExit {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.report(ExitReason::I8042Reset);
        Ok(())
    }
}

pub struct I8042 {
    inner: I8042Device<ResetToExit>,
}

impl I8042 {
    pub fn new(signal: Arc<ExitSignal>) -> Self {
        I8042 {
            inner: I8042Device::new(ResetToExit(signal)),
        }
    }
}

/// Status: everything set but bit 1 (input buffer full).
const STATUS_NO_CONTROLLER: u8 = 0xfd;
/// The status/command port, relative to the data port.
const STATUS_OFFSET: u16 = 4;

impl PioDevice for I8042 {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let value = if offset == STATUS_OFFSET {
            STATUS_NO_CONTROLLER
        } else {
            0xff
        };
        data.fill(value);
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        if let (Ok(off), Some(value)) = (u8::try_from(offset), data.first()) {
            // The trigger is infallible.
            let _ = self.inner.write(off, *value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::legacy::I8042_RESET_COMMAND;
    use std::time::Instant;

    #[test]
    fn only_the_reset_command_on_the_command_port_ends_the_vm() {
        let signal = Arc::new(ExitSignal::new(Instant::now()));
        let mut dev = I8042::new(Arc::clone(&signal));
        dev.write(0, &[I8042_RESET_COMMAND]);
        dev.write(4, &[0xaa]);
        assert_eq!(signal.reason(), None);
        dev.write(4, &[I8042_RESET_COMMAND]);
        assert_eq!(signal.reason(), Some(ExitReason::I8042Reset));
    }

    #[test]
    fn reads_say_no_controller_with_the_input_buffer_empty() {
        let signal = Arc::new(ExitSignal::new(Instant::now()));
        let mut dev = I8042::new(signal);
        let mut status = [0u8];
        dev.read(4, &mut status);
        assert_eq!(
            status[0] & 0x01,
            0x01,
            "output buffer full: Linux drains and gives up"
        );
        assert_eq!(
            status[0] & 0x02,
            0,
            "input buffer empty: a reboot does not wait"
        );
        let mut data = [0u8];
        dev.write(4, &[0x20]); // read CTR: no answer comes
        dev.read(0, &mut data);
        assert_eq!(data[0], 0xff);
    }
}
