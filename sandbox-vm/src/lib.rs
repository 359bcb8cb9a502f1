//! runvm's KVM microVM monitor and guest side: not written yet.
//!
//! Planned on the rust-vmm crates (kvm-ioctls, vm-memory, linux-loader, vm-superio,
//! virtio-queue): a monitor that holds a sandbox in a VM, with every device reaching guest
//! memory through one DMA access layer so an IOMMU can confine it. See docs/ARCHITECTURE.md.
