//! runvm's built-in KVM microVM monitor, on the rust-vmm crates.
//!
//! Layout mirrors the machine (after Firecracker): `arch` builds the x86_64 boot state
//! (memory layout, GDT, page tables, CPUID), `vstate` holds the KVM objects (VM, vCPU run
//! loop, guest memory, interrupt routes), `devices` the port-I/O and MMIO buses, the legacy
//! devices (16550 serial, i8042, debug-exit port), PCI and virtio, `builder` assembles a [`Vm`] from a [`VmConfig`] and a guest
//! image. `host` tells whether this machine can run guests in hardware at all, and
//! `guest` assembles the tiny guests the tests and the calibration run use. `confine` is
//! how the monitor confines itself when the VM starts (per-thread seccomp filters, no
//! capabilities, optionally its own cgroup, namespaces and jail root).
//!
//! The monitor runs tiny guests (real mode or 64-bit long mode) and Linux kernels (PVH
//! entry, initramfs, ACPI and MP tables, serial console, ACPI S5 or i8042 power-off) to an
//! exit status; `linux` lays out a Linux boot. virtio devices sit on a PCI root bus
//! (`devices::pci`, the virtio-pci transport in `devices::virtio::pci`) with MSI-X interrupts:
//! rng, blk, console and vsock, each reaching guest memory only through `dma`.

pub mod arch;
pub mod builder;
pub mod confine;
pub mod devices;
pub mod dma;
pub mod error;
pub mod exit;
pub mod guest;
pub mod host;
pub mod linux;
pub mod vstate;

pub use builder::{
    CpuMode, DeviceConfig, GuestImage, IrqchipMode, RunningVm, Vm, VmConfig, VmStopper,
};
pub use confine::{CgroupPlacement, Confinement, Isolation, Namespace, SeccompMode, ThreadKind};
pub use devices::legacy::serial::SharedBuffer;
pub use devices::virtio::VirtioDevice;
pub use error::VmError;
pub use exit::{BuildStep, ExitReason, VmOutcome};
