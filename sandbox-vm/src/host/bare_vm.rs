//! The smallest VM that runs a real-mode guest to its exit: KVM, guest RAM, one vCPU, the
//! legacy port devices. The calibration runs here rather than through `Vm::build` so that a
//! binary that only probes the host (the `runvm` CLI, for `check` and `features`) links none
//! of the device model: PCI, virtio, ACPI tables, confinement. That code is never run by such a
//! binary but still costs it about 280 KiB of peak RSS in start-up relocations.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};

use crate::arch::x86_64::layout::CODE_START;
use crate::builder::build_pio_bus;
use crate::devices::legacy::serial::SharedBuffer;
use crate::devices::mmio::MmioBus;
use crate::devices::Buses;
use crate::error::VmError;
use crate::exit::{ExitReason, ExitSignal};
use crate::vstate::vcpu::{BootState, Vcpu};
use crate::vstate::vm::{IrqchipMode, KvmVm};
use crate::vstate::{kick, memory};

/// Guest RAM of the bare VM: the code sits at CODE_START, far below this.
const MEMORY: usize = 2 << 20;

/// How a bare VM run ended, with times measured from the VM's creation.
pub(crate) struct BareOutcome {
    pub reason: ExitReason,
    pub first_output_after: Option<Duration>,
    pub exit_after: Duration,
}

/// Runs real-mode `code` (loaded at CODE_START) until it exits or `limit` passes; its serial
/// output goes to `out`.
pub(crate) fn run_real_mode(
    code: &[u8],
    out: SharedBuffer,
    limit: Duration,
) -> Result<BareOutcome, VmError> {
    let created = Instant::now();
    kick::install_handler()?;
    let kvm_vm = KvmVm::create(IrqchipMode::Off)?;
    let memory = memory::create_guest_memory(MEMORY)?;
    memory::register_with_kvm(&kvm_vm.fd, &memory)?;
    memory
        .write_slice(code, GuestAddress(CODE_START))
        .map_err(|e| VmError::GuestMemory(format!("guest code at {CODE_START:#x}: {e}")))?;
    let signal = Arc::new(ExitSignal::new(created));
    let buses = Arc::new(Buses {
        pio: build_pio_bus(&kvm_vm, &signal, Box::new(out))?,
        mmio: MmioBus::new(),
    });
    let vcpu = Vcpu::new(&kvm_vm.fd, 0)?;
    vcpu.set_boot_state(BootState::RealMode { entry: CODE_START })?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::Builder::new()
        .name("vcpu0".into())
        .spawn({
            let (signal, stop) = (Arc::clone(&signal), Arc::clone(&stop));
            move || vcpu.run(buses, signal, stop)
        })
        .map_err(|source| VmError::VcpuThread { index: 0, source })?;
    let (reason, at) = signal.wait_or_time_out(Some(limit));
    // Stop the vCPU and join it before the VM and its memory go.
    kick::stop_and_join(&stop, [thread]);
    Ok(BareOutcome {
        reason,
        first_output_after: signal.first_output_after(),
        exit_after: at.saturating_duration_since(created),
    })
}
