//! One vCPU: its setup, and the KVM_RUN loop its thread runs until the VM ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kvm_bindings::{kvm_mp_state, CpuId, KVM_MP_STATE_RUNNABLE};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};

use super::kick::KickTarget;
use crate::arch::x86_64::cpuid::{self, CpuidPolicy};
use crate::arch::x86_64::{lapic, msrs, regs};
use crate::devices::Buses;
use crate::error::VmError;
use crate::exit::{ExitReason, ExitSignal};

/// How the boot vCPU starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootState {
    /// 16-bit real mode with CS=DS=SS based at `entry` (16-byte aligned, below 1 MiB).
    RealMode { entry: u64 },
    /// 64-bit long mode, paging on with the page tables at `cr3`, starting at `entry`.
    LongMode { entry: u64, cr3: u64 },
    /// The PVH entry of a Linux kernel: 32-bit protected mode, paging off, %ebx pointing
    /// at the `hvm_start_info`.
    Pvh { entry: u64, start_info: u64 },
}

pub struct Vcpu {
    index: u8,
    fd: VcpuFd,
}

impl Vcpu {
    pub fn new(vm: &VmFd, index: u8) -> Result<Vcpu, VmError> {
        let fd = vm
            .create_vcpu(u64::from(index))
            .map_err(VmError::kvm("KVM_CREATE_VCPU"))?;
        Ok(Vcpu { index, fd })
    }

    pub fn index(&self) -> u8 {
        self.index
    }

    /// Sets this vCPU's CPUID from KVM's supported list under runvm's policy.
    pub fn set_cpuid(&self, supported: &CpuId, policy: CpuidPolicy) -> Result<(), VmError> {
        let filtered = cpuid::filter(supported, policy, self.index).map_err(VmError::Config)?;
        self.fd
            .set_cpuid2(&filtered)
            .map_err(VmError::kvm("KVM_SET_CPUID2"))
    }

    /// Puts the boot vCPU in `state`. Other vCPUs keep their reset state (waiting for a
    /// startup IPI when the in-kernel irqchip exists).
    pub fn set_boot_state(&self, state: BootState) -> Result<(), VmError> {
        let reset = self.fd.get_sregs().map_err(VmError::kvm("KVM_GET_SREGS"))?;
        let (sregs, regs) = match state {
            BootState::RealMode { entry } => (
                regs::real_mode_sregs(reset, entry),
                regs::entry_regs(0, false),
            ),
            BootState::LongMode { entry, cr3 } => (
                regs::long_mode_sregs(reset, cr3),
                regs::entry_regs(entry, true),
            ),
            BootState::Pvh { entry, start_info } => (
                regs::protected_mode_sregs(reset),
                regs::pvh_entry_regs(entry, start_info),
            ),
        };
        self.fd
            .set_sregs(&sregs)
            .map_err(VmError::kvm("KVM_SET_SREGS"))?;
        self.fd
            .set_regs(&regs)
            .map_err(VmError::kvm("KVM_SET_REGS"))?;
        self.fd
            .set_fpu(&regs::boot_fpu())
            .map_err(VmError::kvm("KVM_SET_FPU"))?;
        Ok(())
    }

    /// Sets the MSRs a Linux guest expects from firmware (every vCPU, before it runs).
    pub fn set_boot_msrs(&self) -> Result<(), VmError> {
        let msrs = msrs::boot_msrs().map_err(VmError::Config)?;
        let written = self
            .fd
            .set_msrs(&msrs)
            .map_err(VmError::kvm("KVM_SET_MSRS"))?;
        match msrs.as_slice().get(written) {
            // KVM stops at the first MSR it refuses and returns how many it set.
            Some(refused) => Err(VmError::Config(format!(
                "KVM refused boot MSR {:#x} (set {written} of {})",
                refused.index,
                msrs.as_slice().len()
            ))),
            None => Ok(()),
        }
    }

    /// Wires this vCPU's local APIC like firmware does: PIC on LINT0, NMI on LINT1. Needs
    /// the in-kernel irqchip.
    pub fn set_lapic_virtual_wire(&self) -> Result<(), VmError> {
        let mut state = self.fd.get_lapic().map_err(VmError::kvm("KVM_GET_LAPIC"))?;
        lapic::set_virtual_wire(&mut state);
        self.fd
            .set_lapic(&state)
            .map_err(VmError::kvm("KVM_SET_LAPIC"))
    }

    /// Makes the boot vCPU runnable even with an in-kernel LAPIC (KVM treats vCPU 0 as the
    /// bootstrap processor, but say so rather than rely on it).
    pub fn set_runnable(&self) -> Result<(), VmError> {
        self.fd
            .set_mp_state(kvm_mp_state {
                mp_state: KVM_MP_STATE_RUNNABLE,
            })
            .map_err(VmError::kvm("KVM_SET_MP_STATE"))
    }

    /// The vCPU thread body: runs the guest until `stop` is set or the VM ends, routing
    /// port I/O and MMIO to `buses` and reporting how the guest ended to `signal`.
    pub fn run(mut self, buses: Arc<Buses>, signal: Arc<ExitSignal>, stop: Arc<AtomicBool>) {
        let _kick = KickTarget::arm(self.fd.get_kvm_run());
        while !stop.load(Ordering::Acquire) {
            let ended = match self.fd.run() {
                Ok(VcpuExit::InternalError) => Some(ExitReason::VcpuError {
                    vcpu: self.index,
                    detail: internal_error_detail(self.fd.get_kvm_run()),
                }),
                Ok(exit) => handle_exit(self.index, exit, &buses),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    // A kick (or another signal): clear the flag, then re-check `stop`.
                    self.fd.set_kvm_immediate_exit(0);
                    None
                }
                Err(e) => Some(ExitReason::VcpuError {
                    vcpu: self.index,
                    detail: format!("KVM_RUN failed: {e}"),
                }),
            };
            if let Some(reason) = ended {
                signal.report(reason);
                break;
            }
            if signal.reason().is_some() {
                // A device on this vCPU ended the VM: no need to wait for the kick.
                break;
            }
        }
    }
}

/// Explains KVM_EXIT_INTERNAL_ERROR from the `internal` part of `kvm_run`.
fn internal_error_detail(run: &kvm_bindings::kvm_run) -> String {
    // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, for which KVM fills `internal`;
    // the union is plain integers, so any bit pattern is a valid value.
    let internal = unsafe { run.__bindgen_anon_1.internal };
    let what = match internal.suberror {
        kvm_bindings::KVM_INTERNAL_ERROR_EMULATION => {
            "instruction emulation failed (an emulating KVM such as PVM cannot run this \
             instruction)"
        }
        kvm_bindings::KVM_INTERNAL_ERROR_SIMUL_EX => "exception while delivering an exception",
        kvm_bindings::KVM_INTERNAL_ERROR_DELIVERY_EV => "event delivery failed",
        _ => "unclassified",
    };
    let count = (internal.ndata as usize).min(internal.data.len());
    format!(
        "KVM internal error {}: {what}; data {:x?}",
        internal.suberror,
        &internal.data[..count]
    )
}

/// Handles one KVM exit; returns why the VM ends, if it does.
fn handle_exit(index: u8, exit: VcpuExit<'_>, buses: &Buses) -> Option<ExitReason> {
    match exit {
        VcpuExit::IoOut(port, data) => {
            // Unclaimed ports are ignored, as on a PC without that device.
            buses.pio.write(port, data);
            None
        }
        VcpuExit::IoIn(port, data) => {
            buses.pio.read(port, data);
            None
        }
        // Unclaimed addresses: reads float high, writes vanish.
        VcpuExit::MmioRead(addr, data) => {
            buses.mmio.read(addr, data);
            None
        }
        VcpuExit::MmioWrite(addr, data) => {
            buses.mmio.write(addr, data);
            None
        }
        VcpuExit::Hlt => Some(ExitReason::Halted { vcpu: index }),
        VcpuExit::Shutdown => Some(ExitReason::GuestShutdown {
            vcpu: index,
            detail: "triple fault (KVM_EXIT_SHUTDOWN)".to_string(),
        }),
        VcpuExit::SystemEvent(kind, _) => Some(ExitReason::GuestShutdown {
            vcpu: index,
            detail: format!("KVM system event {kind}"),
        }),
        VcpuExit::FailEntry(reason, cpu) => Some(ExitReason::VcpuError {
            vcpu: index,
            detail: format!("VM entry failed on host cpu {cpu}: hardware reason {reason:#x}"),
        }),
        VcpuExit::Intr | VcpuExit::IrqWindowOpen => None,
        other => Some(ExitReason::VcpuError {
            vcpu: index,
            detail: format!("unexpected KVM exit {other:?}"),
        }),
    }
}
