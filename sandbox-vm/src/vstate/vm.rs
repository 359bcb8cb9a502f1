//! The KVM VM object: /dev/kvm, the VM fd, and the in-kernel interrupt controllers.

use std::sync::Arc;

use kvm_bindings::{kvm_pit_config, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use serde::Serialize;

use crate::arch::x86_64::layout::KVM_TSS_ADDRESS;
use crate::error::VmError;

/// Whether to put the PIC/IOAPIC/LAPIC and the PIT in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IrqchipMode {
    /// Use them if KVM can create them; run without if not (single vCPU only).
    #[default]
    Auto,
    /// Never: `hlt` then exits to the monitor, and only one vCPU is allowed.
    Off,
    /// Fail the build if KVM cannot create them.
    Required,
}

/// A created VM with its interrupt controllers in place.
pub struct KvmVm {
    pub kvm: Kvm,
    /// Shared with the interrupt router, which sets routes while the VM runs.
    pub fd: Arc<VmFd>,
    /// True when the in-kernel irqchip and PIT exist.
    pub irqchip: bool,
    /// Why there is no irqchip, when `Auto` had to do without.
    pub irqchip_note: Option<String>,
}

impl KvmVm {
    pub fn create(mode: IrqchipMode) -> Result<KvmVm, VmError> {
        let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
        let fd = kvm.create_vm().map_err(VmError::kvm("KVM_CREATE_VM"))?;
        // Intel VMX needs a TSS region for real mode; harmless elsewhere.
        fd.set_tss_address(KVM_TSS_ADDRESS)
            .map_err(VmError::kvm("KVM_SET_TSS_ADDR"))?;
        let (irqchip, irqchip_note) = match mode {
            IrqchipMode::Off => (false, Some("irqchip turned off by config".to_string())),
            IrqchipMode::Auto | IrqchipMode::Required => match create_irqchip(&fd) {
                Ok(()) => (true, None),
                Err(e) if mode == IrqchipMode::Auto => (false, Some(e.to_string())),
                Err(e) => return Err(e),
            },
        };
        Ok(KvmVm {
            kvm,
            fd: Arc::new(fd),
            irqchip,
            irqchip_note,
        })
    }
}

fn create_irqchip(fd: &VmFd) -> Result<(), VmError> {
    fd.create_irq_chip()
        .map_err(VmError::kvm("KVM_CREATE_IRQCHIP"))?;
    // The dummy speaker port lets Linux's PIT calibration read port 0x61 in-kernel.
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    fd.create_pit2(pit).map_err(VmError::kvm("KVM_CREATE_PIT2"))
}
