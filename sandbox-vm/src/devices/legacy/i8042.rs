//! The i8042 keyboard controller, only for its CPU-reset command, which runvm treats as
//! the guest powering off (Linux reboots through it; a microVM has nothing to reboot to).

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

impl PioDevice for I8042 {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let value = u8::try_from(offset).map_or(0xff, |off| self.inner.read(off));
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
}
