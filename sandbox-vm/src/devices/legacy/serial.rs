//! COM1: a 16550 UART from vm-superio, its output going to any writer.

use std::io::Write;
use std::sync::{Arc, Mutex};

use vm_superio::serial::SerialEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::devices::bus::PioDevice;
use crate::exit::ExitSignal;

/// A `Write` sink whose bytes can be read back while the VM runs or after it ends.
#[derive(Debug, Clone, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Everything written so far, lossily as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.contents()).into_owned()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The UART's interrupt line: an eventfd the builder wires to IRQ 4 with KVM_IRQFD when
/// the in-kernel irqchip exists (otherwise nothing listens and the guest must poll).
pub struct IrqEvent(pub EventFd);

impl Trigger for IrqEvent {
    type E = std::io::Error;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.write(1)
    }
}

/// Notes the first byte the guest sends, for boot-time measurements.
pub struct FirstByteClock(Arc<ExitSignal>);

impl SerialEvents for FirstByteClock {
    fn buffer_read(&self) {}
    fn out_byte(&self) {
        self.0.note_output();
    }
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {}
}

pub type SerialWriter = Box<dyn Write + Send>;

pub struct SerialConsole {
    uart: Serial<IrqEvent, FirstByteClock, SerialWriter>,
}

impl SerialConsole {
    pub fn new(irq: EventFd, signal: Arc<ExitSignal>, out: SerialWriter) -> Self {
        SerialConsole {
            uart: Serial::with_events(IrqEvent(irq), FirstByteClock(signal), out),
        }
    }
}

impl PioDevice for SerialConsole {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let value = u8::try_from(offset).map_or(0xff, |off| self.uart.read(off));
        data.fill(value);
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        if let (Ok(off), Some(value)) = (u8::try_from(offset), data.first()) {
            // A failing output writer loses the byte (vm-superio counts it as lost); the
            // guest must not be able to stop the monitor through its console.
            let _ = self.uart.write(off, *value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn bytes_reach_the_writer_and_start_the_clock() {
        let signal = Arc::new(ExitSignal::new(Instant::now()));
        let out = SharedBuffer::new();
        let irq = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
        let mut uart = SerialConsole::new(irq, Arc::clone(&signal), Box::new(out.clone()));
        assert!(signal.first_output_after().is_none());
        for b in b"ok" {
            uart.write(0, &[*b]);
        }
        assert_eq!(out.text(), "ok");
        assert!(signal.first_output_after().is_some());
        // Line status register (offset 5): transmitter empty, so a polling guest proceeds.
        let mut lsr = [0u8];
        uart.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0);
    }

    #[test]
    fn enabling_the_tx_interrupt_raises_the_irq_event() {
        let signal = Arc::new(ExitSignal::new(Instant::now()));
        let irq = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
        let probe = irq.try_clone().expect("clone");
        let mut uart = SerialConsole::new(irq, signal, Box::new(SharedBuffer::new()));
        assert!(probe.read().is_err(), "no interrupt yet");
        uart.write(1, &[0x02]); // IER: THR empty interrupt
        assert_eq!(probe.read().expect("interrupt raised"), 1);
    }
}
