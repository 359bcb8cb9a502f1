//! The KVM side of a VM: guest memory, the VM file descriptor, vCPUs and how to stop them.

pub mod irq;
pub mod kick;
pub mod memory;
pub mod vcpu;
pub mod vm;
