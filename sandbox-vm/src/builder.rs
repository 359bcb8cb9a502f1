//! Assembles a runnable microVM from a [`VmConfig`] and a [`GuestImage`], runs its vCPU
//! threads, and ends it with a status.
//!
//! The hot path, in order: open KVM and create the VM (+ irqchip/PIT), map and register
//! guest RAM, load the guest code (+ GDT/page tables for long mode), put the devices on the
//! port and MMIO buses (virtio devices behind the PCI root), create and configure the vCPUs,
//! start one thread per vCPU.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use serde::Serialize;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use crate::arch::x86_64::acpi::{self, ACPI_SLEEP_PORT};
pub use crate::arch::x86_64::cpuid::CpuidPolicy;
use crate::arch::x86_64::layout::{
    CODE_END, CODE_START, PCI_CONFIG_PORT, PCI_CONFIG_PORT_LEN, PCI_MMIO_SIZE, PCI_MMIO_START,
};
use crate::arch::x86_64::{mptable, regs};
use crate::confine::{self, ConfinedMonitor, Confinement};
use crate::devices::acpi_sleep::AcpiSleep;
use crate::devices::legacy::debug_exit::DebugExit;
use crate::devices::legacy::i8042::I8042;
use crate::devices::legacy::serial::SerialConsole;
use crate::devices::legacy::{
    DEBUG_EXIT_PORT, I8042_PORT, I8042_PORT_LEN, SERIAL_IRQ, SERIAL_PORT, SERIAL_PORT_LEN,
};
use crate::devices::pci::{PciConfigPorts, PciRoot};
use crate::devices::virtio::pci::VirtioPciDevice;
use crate::devices::virtio::rng::Rng;
use crate::devices::virtio::VirtioDevice;
use crate::devices::{Buses, MmioBus, PioBus};
use crate::error::VmError;
use crate::exit::{BuildStep, ExitReason, ExitSignal, VmOutcome};
use crate::linux;
use crate::vstate::irq::GsiRouter;
use crate::vstate::kick;
use crate::vstate::memory;
use crate::vstate::vcpu::{BootState, Vcpu};
pub use crate::vstate::vm::IrqchipMode;
use crate::vstate::vm::KvmVm;

/// Real mode keeps its stack at the top of the 64 KiB code segment: code must stay below.
const REAL_MODE_MAX_CODE: usize = 0xf000;

/// The mode the boot vCPU starts the guest code in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuMode {
    RealMode,
    LongMode,
}

/// What the VM runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestImage {
    /// Flat guest code, loaded at [`CODE_START`] and entered there in `mode`.
    Code { mode: CpuMode, code: Vec<u8> },
    /// A Linux kernel booted through its PVH entry: `kernel` is the vmlinux ELF (the
    /// decompressed payload of a bzImage, built with CONFIG_PVH), `initrd` an optional
    /// initramfs, `cmdline` the kernel command line (e.g. `console=ttyS0`). The guest sees
    /// ACPI tables (its CPUs, the IO-APIC, COM1) and an MP table; `poweroff` ends the VM
    /// through ACPI S5, and with `reboot=k` a reboot ends it through the i8042 reset.
    Linux {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        cmdline: String,
    },
}

/// What the VM looks like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VmConfig {
    /// Guest RAM in bytes (page multiple, 1 MiB .. 3 GiB).
    pub mem_size: usize,
    /// Number of vCPUs; more than one needs the in-kernel irqchip (the others wait for a
    /// startup IPI there).
    pub vcpus: u8,
    pub irqchip: IrqchipMode,
    pub cpuid: CpuidPolicy,
    /// How the monitor confines itself when the VM starts (see `crate::confine`).
    pub confinement: Option<Confinement>,
    /// virtio devices the monitor builds itself, on PCI bus 0 from device 1 on, in order.
    /// Devices built by the caller go to [`Vm::build_with_devices`].
    pub devices: Vec<DeviceConfig>,
}

/// A virtio device the monitor can build from configuration alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceConfig {
    /// virtio-rng fed by the host's getrandom(2).
    Rng,
}

impl DeviceConfig {
    fn build(self) -> Box<dyn VirtioDevice> {
        match self {
            DeviceConfig::Rng => Box::new(Rng::new()),
        }
    }
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            mem_size: 16 << 20,
            vcpus: 1,
            irqchip: IrqchipMode::Auto,
            cpuid: CpuidPolicy::default(),
            confinement: None,
            devices: Vec::new(),
        }
    }
}

/// A built VM, not yet running.
pub struct Vm {
    // Field order is drop order: vCPU fds, then the VM fd, then the memory KVM maps.
    vcpus: Vec<Vcpu>,
    steps: Vec<BuildStep>,
    buses: Arc<Buses>,
    signal: Arc<ExitSignal>,
    confinement: Option<Confinement>,
    kvm_vm: KvmVm,
    memory: GuestMemoryMmap,
}

impl Vm {
    /// Builds the VM; the guest's serial output goes to `serial_out`.
    pub fn build(
        config: &VmConfig,
        image: &GuestImage,
        serial_out: Box<dyn Write + Send>,
    ) -> Result<Vm, VmError> {
        Self::build_with_devices(config, image, serial_out, Vec::new())
    }

    /// Builds the VM with `devices` (already built by the caller) on PCI after those of
    /// `config.devices`; each becomes a virtio-pci function the guest finds on bus 0.
    pub fn build_with_devices(
        config: &VmConfig,
        image: &GuestImage,
        serial_out: Box<dyn Write + Send>,
        devices: Vec<Box<dyn VirtioDevice>>,
    ) -> Result<Vm, VmError> {
        let created = Instant::now();
        let mut steps = StepClock::new(created);
        kick::install_handler()?;
        let kvm_vm = KvmVm::create(config.irqchip)?;
        check_vcpu_count(config.vcpus, &kvm_vm)?;
        steps.mark("kvm-vm-and-irqchip");

        let memory = memory::create_guest_memory(config.mem_size)?;
        memory::register_with_kvm(&kvm_vm.fd, &memory)?;
        let boot = load_image(&memory, image, config, &kvm_vm)?;
        steps.mark("guest-memory-and-image");
        let is_linux = matches!(image, GuestImage::Linux { .. });

        let signal = Arc::new(ExitSignal::new(created));
        let pio = build_pio_bus(&kvm_vm, &signal, serial_out)?;
        let virtio: Vec<Box<dyn VirtioDevice>> = config
            .devices
            .iter()
            .map(|d| d.build())
            .chain(devices)
            .collect();
        let buses = Arc::new(attach_pci(pio, &kvm_vm, &memory, virtio)?);
        steps.mark("devices");

        let supported = kvm_vm
            .kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(VmError::kvm("KVM_GET_SUPPORTED_CPUID"))?;
        let mut vcpus = Vec::with_capacity(usize::from(config.vcpus));
        for index in 0..config.vcpus {
            let vcpu = Vcpu::new(&kvm_vm.fd, index)?;
            vcpu.set_cpuid(&supported, config.cpuid)?;
            if is_linux {
                vcpu.set_boot_msrs()?;
                vcpu.set_lapic_virtual_wire()?;
            }
            if index == 0 {
                vcpu.set_boot_state(boot)?;
                if kvm_vm.irqchip {
                    vcpu.set_runnable()?;
                }
            }
            vcpus.push(vcpu);
        }
        steps.mark("vcpus");
        Ok(Vm {
            steps: steps.into_steps(),
            vcpus,
            buses,
            signal,
            confinement: config.confinement.clone(),
            kvm_vm,
            memory,
        })
    }

    /// When each build step finished, measured from the start of the build.
    pub fn build_steps(&self) -> &[BuildStep] {
        &self.steps
    }

    /// Whether the in-kernel irqchip and PIT are in use.
    pub fn has_irqchip(&self) -> bool {
        self.kvm_vm.irqchip
    }

    /// Why the irqchip is missing, when it is.
    pub fn irqchip_note(&self) -> Option<&str> {
        self.kvm_vm.irqchip_note.as_deref()
    }

    /// Starts one thread per vCPU.
    pub fn start(mut self) -> Result<RunningVm, VmError> {
        let confined = self.confinement.as_ref().map(ConfinedMonitor::enter);
        let confined = confined.transpose()?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut running = RunningVm {
            threads: Vec::new(),
            stop: Arc::clone(&stop),
            signal: Arc::clone(&self.signal),
            steps: std::mem::take(&mut self.steps),
            _buses: Some(Arc::clone(&self.buses)),
            _kvm_vm: None,
            memory: None,
            _confined: None,
        };
        for vcpu in self.vcpus.drain(..) {
            let index = vcpu.index();
            let (buses, signal, stop) = (
                Arc::clone(&self.buses),
                Arc::clone(&self.signal),
                Arc::clone(&stop),
            );
            let filter = confined.as_ref().and_then(ConfinedMonitor::vcpu_filter);
            let thread = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || {
                    if confine::enter_vcpu_thread(filter.as_ref(), index, &signal) {
                        vcpu.run(buses, signal, stop)
                    }
                })
                .map_err(|source| VmError::VcpuThread { index, source });
            match thread {
                Ok(handle) => running.threads.push(handle),
                // `running` drops here and stops the threads already started.
                Err(e) => return Err(e),
            }
        }
        running.steps.push(BuildStep {
            step: "vcpu-threads-started",
            after: self.signal.created().elapsed(),
        });
        running._kvm_vm = Some(self.kvm_vm);
        running.memory = Some(self.memory);
        if let Some(confined) = &confined {
            confined.filter_starting_thread()?;
        }
        running._confined = confined;
        Ok(running)
    }

    /// Starts the VM and waits for it to end, at most `timeout` (then it is stopped).
    pub fn run(self, timeout: Option<Duration>) -> Result<VmOutcome, VmError> {
        Ok(self.start()?.wait(timeout))
    }
}

/// Records when each step of the hot path ended.
struct StepClock {
    created: Instant,
    steps: Vec<BuildStep>,
}

impl StepClock {
    fn new(created: Instant) -> Self {
        StepClock {
            created,
            steps: Vec::new(),
        }
    }

    fn mark(&mut self, step: &'static str) {
        self.steps.push(BuildStep {
            step,
            after: self.created.elapsed(),
        });
    }

    fn into_steps(self) -> Vec<BuildStep> {
        self.steps
    }
}

fn check_vcpu_count(vcpus: u8, kvm_vm: &KvmVm) -> Result<(), VmError> {
    let max = kvm_vm.kvm.get_max_vcpus();
    if vcpus == 0 || usize::from(vcpus) > max {
        return Err(VmError::Config(format!(
            "vcpus {vcpus}: KVM allows 1..={max}"
        )));
    }
    if vcpus > 1 && !kvm_vm.irqchip {
        return Err(VmError::Config(format!(
            "vcpus {vcpus}: more than one vCPU needs the in-kernel irqchip to hold the others \
             until a startup IPI ({})",
            kvm_vm.irqchip_note.as_deref().unwrap_or("irqchip missing")
        )));
    }
    Ok(())
}

/// Puts the guest image (and what it needs to start) in guest memory; returns the state
/// the boot vCPU starts in.
fn load_image(
    mem: &GuestMemoryMmap,
    image: &GuestImage,
    config: &VmConfig,
    kvm_vm: &KvmVm,
) -> Result<BootState, VmError> {
    match image {
        GuestImage::Code { mode, code } => load_code(mem, *mode, code, config.mem_size),
        GuestImage::Linux {
            kernel,
            initrd,
            cmdline,
        } => {
            if !kvm_vm.irqchip {
                return Err(VmError::Config(format!(
                    "a Linux guest needs the in-kernel irqchip (interrupts, timers): {}",
                    kvm_vm.irqchip_note.as_deref().unwrap_or("irqchip missing")
                )));
            }
            // Both CPU tables: ACPI for kernels without MP-table support (Debian's cloud
            // kernels), the MP table for small kernels built without ACPI.
            mptable::write(mem, config.vcpus)?;
            let rsdp = acpi::write(mem, config.vcpus)?;
            linux::load(
                mem,
                kernel,
                initrd.as_deref(),
                cmdline,
                config.mem_size as u64,
                rsdp,
            )
        }
    }
}

/// Copies flat guest code to CODE_START (and the long-mode tables); returns the boot state.
fn load_code(
    mem: &GuestMemoryMmap,
    mode: CpuMode,
    code: &[u8],
    mem_size: usize,
) -> Result<BootState, VmError> {
    let len = code.len();
    let limit = match mode {
        CpuMode::RealMode => REAL_MODE_MAX_CODE,
        CpuMode::LongMode => (CODE_END - CODE_START) as usize,
    };
    if len == 0 || len > limit || CODE_START as usize + len > mem_size {
        return Err(VmError::Config(format!(
            "guest code of {len} bytes: must be 1..={limit} bytes and fit in mem_size {mem_size:#x}"
        )));
    }
    mem.write_slice(code, GuestAddress(CODE_START))
        .map_err(|e| VmError::GuestMemory(format!("guest code at {CODE_START:#x}: {e}")))?;
    Ok(match mode {
        CpuMode::RealMode => BootState::RealMode { entry: CODE_START },
        CpuMode::LongMode => BootState::LongMode {
            entry: CODE_START,
            cr3: regs::write_long_mode_tables(mem)?,
        },
    })
}

/// Puts the PCI root on both buses (conf1 ports, the MMIO window) with a virtio-pci function
/// per device. MSI-X vectors become KVM routes only with the in-kernel irqchip; without it the
/// devices work but cannot interrupt (tiny guests poll).
fn attach_pci(
    mut pio: PioBus,
    kvm_vm: &KvmVm,
    memory: &GuestMemoryMmap,
    devices: Vec<Box<dyn VirtioDevice>>,
) -> Result<Buses, VmError> {
    let router = kvm_vm
        .irqchip
        .then(|| Arc::new(GsiRouter::new(Arc::clone(&kvm_vm.fd))));
    let mut root = PciRoot::new(PCI_MMIO_START, PCI_MMIO_SIZE);
    for device in devices {
        let function = VirtioPciDevice::new(device, memory.clone(), router.clone())?;
        root.add(Box::new(function))?;
    }
    let root = Arc::new(root);
    pio.insert(
        PCI_CONFIG_PORT,
        PCI_CONFIG_PORT_LEN,
        Box::new(PciConfigPorts::new(Arc::clone(&root))),
    )?;
    let mut mmio = MmioBus::new();
    mmio.insert(PCI_MMIO_START, PCI_MMIO_SIZE, root)?;
    Ok(Buses { pio, mmio })
}

pub(crate) fn build_pio_bus(
    kvm_vm: &KvmVm,
    signal: &Arc<ExitSignal>,
    serial_out: Box<dyn Write + Send>,
) -> Result<PioBus, VmError> {
    let serial_irq = EventFd::new(libc::EFD_NONBLOCK)
        .map_err(|e| VmError::Config(format!("serial interrupt eventfd: {e}")))?;
    if kvm_vm.irqchip {
        kvm_vm
            .fd
            .register_irqfd(&serial_irq, SERIAL_IRQ)
            .map_err(VmError::kvm("KVM_IRQFD (serial)"))?;
    }
    let mut bus = PioBus::new();
    bus.insert(
        SERIAL_PORT,
        SERIAL_PORT_LEN,
        Box::new(SerialConsole::new(
            serial_irq,
            Arc::clone(signal),
            serial_out,
        )),
    )?;
    bus.insert(
        I8042_PORT,
        I8042_PORT_LEN,
        Box::new(I8042::new(Arc::clone(signal))),
    )?;
    bus.insert(
        ACPI_SLEEP_PORT,
        1,
        Box::new(AcpiSleep::new(Arc::clone(signal))),
    )?;
    bus.insert(
        DEBUG_EXIT_PORT,
        1,
        Box::new(DebugExit::new(Arc::clone(signal))),
    )?;
    Ok(bus)
}

/// Ends a running VM from any thread.
#[derive(Debug, Clone)]
pub struct VmStopper {
    signal: Arc<ExitSignal>,
}

impl VmStopper {
    /// Asks the VM to stop; the waiter then stops every vCPU. No effect if it already ended.
    pub fn stop(&self) {
        self.signal.report(ExitReason::Stopped);
    }
}

/// A VM whose vCPU threads are running.
pub struct RunningVm {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    signal: Arc<ExitSignal>,
    steps: Vec<BuildStep>,
    // Kept alive until the threads are joined (see Drop). The buses too: the devices then
    // drop on this thread, never on the last vCPU thread to exit, whose seccomp filter does
    // not allow their cleanup (vsock removes its socket file).
    _buses: Option<Arc<Buses>>,
    _kvm_vm: Option<KvmVm>,
    memory: Option<GuestMemoryMmap>,
    // Leaves and removes the monitor's cgroup once the threads are joined.
    _confined: Option<ConfinedMonitor>,
}

impl RunningVm {
    pub fn stopper(&self) -> VmStopper {
        VmStopper {
            signal: Arc::clone(&self.signal),
        }
    }

    /// Waits for the guest to end, or for `timeout` (then stops it), and joins every vCPU.
    pub fn wait(mut self, timeout: Option<Duration>) -> VmOutcome {
        let (reason, reported_at) = self.signal.wait_or_time_out(timeout);
        self.stop_vcpus();
        let created = self.signal.created();
        VmOutcome {
            reason,
            first_output_after: self.signal.first_output_after(),
            exit_after: reported_at.saturating_duration_since(created),
            total: created.elapsed(),
            guest_resident_bytes: self.memory.as_ref().map_or(0, memory::resident_bytes),
            build_steps: std::mem::take(&mut self.steps),
        }
    }

    /// Sets the stop flag, kicks every vCPU out of KVM_RUN and joins the threads.
    fn stop_vcpus(&mut self) {
        kick::stop_and_join(&self.stop, self.threads.drain(..));
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        self.stop_vcpus();
    }
}
