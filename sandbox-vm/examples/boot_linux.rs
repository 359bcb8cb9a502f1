//! Boots a Linux kernel (vmlinux with a PVH entry) and an optional initramfs in runvm's
//! monitor, copies the guest console to stdout, and exits with the VM's status (0 when the
//! guest powered off (ACPI S5) or rebooted with `reboot=k` (i8042 reset), 124 on timeout, ...).
//!
//! ```text
//! boot_linux --kernel VMLINUX [--initrd CPIO] [--cmdline TEXT] [--mem-mib N] [--vcpus N]
//!            [--timeout-secs N] [--mark TEXT] [--rng] [--blk IMAGE[:ro]]...
//!            [--vsock-uds PATH [--vsock-cid N]]
//!            [--no-confine] [--seccomp-report] [--cgroup PATH] [--jail DIR]
//! ```
//! Devices go on PCI bus 0 from 00:01.0 in this order: `--rng` (virtio-rng), each `--blk`
//! (virtio-blk on a raw image, `:ro` read-only), `--vsock-uds` (virtio-vsock whose host end
//! listens on PATH, guest CID 3 unless `--vsock-cid`). With any device the default command
//! line leaves PCI on (no `pci=off`).
//! `--mark` reports on stderr when TEXT first appeared on the console (e.g. a line the
//! guest's /init prints), measured from the start of the VM build.
//! The monitor confines itself by default (per-thread seccomp filters that kill it on a
//! call off the list, no capabilities): `--no-confine` turns that off, `--seccomp-report`
//! names refused calls on stderr instead of killing (to find missing ones). As root,
//! `--cgroup PATH` puts the monitor in its own cgroup and `--jail DIR` in new mount, IPC,
//! UTS and network namespaces with DIR as its root.
//! Static build for a minimal host: RUSTFLAGS="-C target-feature=+crt-static" cargo build
//! --example boot_linux --target x86_64-unknown-linux-gnu

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use runvm_sandbox_vm::devices::virtio::block::Block;
use runvm_sandbox_vm::devices::virtio::vsock::Vsock;
use runvm_sandbox_vm::devices::virtio::VirtioDevice;
use runvm_sandbox_vm::{
    host, CgroupPlacement, Confinement, DeviceConfig, GuestImage, Isolation, Namespace,
    SeccompMode, Vm, VmConfig,
};

/// `pci=off`: without devices the PCI bus holds only the host bridge, and probing it costs
/// boot time.
const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k pci=off";
const DEFAULT_CMDLINE_WITH_PCI: &str = "console=ttyS0 reboot=k";

struct Args {
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    cmdline: String,
    mem_mib: usize,
    vcpus: u8,
    timeout: Duration,
    mark: Option<String>,
    confinement: Option<Confinement>,
    devices: Vec<DeviceConfig>,
    disks: Vec<(PathBuf, bool)>,
    vsock: Option<(PathBuf, u64)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        kernel: PathBuf::new(),
        initrd: None,
        cmdline: String::new(),
        mem_mib: 256,
        vcpus: 1,
        timeout: Duration::from_secs(60),
        mark: None,
        // Cheap and needs nothing from the host; this process only waits for the VM, so
        // its main thread is filtered too.
        confinement: Some(Confinement {
            filter_starting_thread: true,
            ..Confinement::standard()
        }),
        devices: Vec::new(),
        disks: Vec::new(),
        vsock: None,
    };
    let mut vsock_cid = 3;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag} {v:?}: {e}"));
        match flag.as_str() {
            "--kernel" => args.kernel = PathBuf::from(value()?),
            "--initrd" => args.initrd = Some(PathBuf::from(value()?)),
            "--cmdline" => args.cmdline = value()?,
            "--mem-mib" => args.mem_mib = number(value()?)? as usize,
            "--vcpus" => {
                let v = number(value()?)?;
                args.vcpus = u8::try_from(v).map_err(|_| format!("--vcpus {v}: at most 255"))?;
            }
            "--timeout-secs" => args.timeout = Duration::from_secs(number(value()?)?),
            "--mark" => args.mark = Some(value()?),
            "--no-confine" => args.confinement = None,
            "--seccomp-report" => confinement(&mut args)?.seccomp = Some(SeccompMode::Report),
            "--cgroup" => {
                let path = PathBuf::from(value()?);
                isolation(&mut args)?.cgroup = Some(CgroupPlacement {
                    path,
                    hierarchies: Vec::new(),
                });
            }
            "--jail" => {
                let jail = PathBuf::from(value()?);
                let isolation = isolation(&mut args)?;
                isolation.jail = Some(jail);
                isolation.namespaces = vec![
                    Namespace::Mount,
                    Namespace::Ipc,
                    Namespace::Uts,
                    Namespace::Net,
                ];
            }
            "--rng" => args.devices.push(DeviceConfig::Rng),
            "--blk" => {
                let spec = value()?;
                let (path, read_only) = match spec.strip_suffix(":ro") {
                    Some(path) => (path.to_string(), true),
                    None => (spec, false),
                };
                args.disks.push((PathBuf::from(path), read_only));
            }
            "--vsock-uds" => args.vsock = Some((PathBuf::from(value()?), 0)),
            "--vsock-cid" => vsock_cid = number(value()?)?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.kernel.as_os_str().is_empty() {
        return Err("--kernel VMLINUX is required".into());
    }
    if let Some((_, cid)) = args.vsock.as_mut() {
        *cid = vsock_cid;
    }
    if args.cmdline.is_empty() {
        let no_devices = args.devices.is_empty() && args.disks.is_empty() && args.vsock.is_none();
        args.cmdline = if no_devices {
            DEFAULT_CMDLINE
        } else {
            DEFAULT_CMDLINE_WITH_PCI
        }
        .to_string();
    }
    Ok(args)
}

fn confinement(args: &mut Args) -> Result<&mut Confinement, String> {
    args.confinement
        .as_mut()
        .ok_or_else(|| "confinement options conflict with --no-confine".to_string())
}

fn isolation(args: &mut Args) -> Result<&mut Isolation, String> {
    Ok(confinement(args)?
        .isolation
        .get_or_insert_with(Isolation::default))
}

/// Copies console bytes to stdout and notes when `mark` first shows up.
struct Console {
    started: Instant,
    mark: Vec<u8>,
    window: Vec<u8>,
    seen: Arc<OnceLock<Duration>>,
}

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().write_all(buf)?;
        if !self.mark.is_empty() && self.seen.get().is_none() {
            self.window.extend_from_slice(buf);
            if self.window.windows(self.mark.len()).any(|w| w == self.mark) {
                let _ = self.seen.set(self.started.elapsed());
            }
            // Keep only what could still be the start of the mark.
            let keep = self.mark.len().saturating_sub(1);
            let cut = self.window.len().saturating_sub(keep);
            self.window.drain(..cut);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// The block and vsock devices, opened here so that a bad path fails before the VM exists.
fn caller_built_devices(args: &Args) -> Result<Vec<Box<dyn VirtioDevice>>, String> {
    let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
    for (path, read_only) in &args.disks {
        let disk =
            Block::open(path, *read_only).map_err(|e| format!("--blk {}: {e}", path.display()))?;
        devices.push(Box::new(disk));
    }
    if let Some((uds, cid)) = &args.vsock {
        let vsock = Vsock::new(*cid, uds.clone())
            .map_err(|e| format!("--vsock-uds {}: {e}", uds.display()))?;
        devices.push(Box::new(vsock));
    }
    Ok(devices)
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("boot_linux: {e}");
            std::process::exit(2);
        }
    };
    // Boot anyway (the facts can be wrong), but say why it would crawl or fail.
    let report = host::probe(None);
    if !report.can_boot_linux {
        eprintln!(
            "boot_linux: warning: this KVM ({:?}) cannot boot Linux: {}",
            report.mode, report.explanation
        );
    }
    let devices = match caller_built_devices(&args) {
        Ok(devices) => devices,
        Err(e) => {
            eprintln!("boot_linux: {e}");
            std::process::exit(3);
        }
    };
    let config = VmConfig {
        mem_size: args.mem_mib << 20,
        vcpus: args.vcpus,
        confinement: args.confinement.clone(),
        devices: args.devices.clone(),
        ..VmConfig::default()
    };
    let image = GuestImage::Linux {
        kernel: args.kernel,
        initrd: args.initrd,
        cmdline: args.cmdline,
    };
    let started = Instant::now();
    let seen = Arc::new(OnceLock::new());
    let console = Console {
        started,
        mark: args.mark.clone().unwrap_or_default().into_bytes(),
        window: Vec::new(),
        seen: Arc::clone(&seen),
    };
    let outcome = Vm::build_with_devices(&config, &image, Box::new(console), devices)
        .and_then(|vm| vm.run(Some(args.timeout)));
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("boot_linux: {e}");
            std::process::exit(3);
        }
    };
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let _ = std::io::stdout().flush();
    eprintln!("boot_linux: ended: {:?}", outcome.reason);
    if let Some(built) = outcome.build_steps.last() {
        eprintln!("boot_linux: vCPUs running after {}", ms(built.after));
    }
    let steps: Vec<String> = (outcome.build_steps.iter())
        .map(|s| format!("{} {}", s.step, ms(s.after)))
        .collect();
    eprintln!("boot_linux: build steps done after: {}", steps.join(", "));
    if let Some(first) = outcome.first_output_after {
        eprintln!("boot_linux: first console byte after {}", ms(first));
    }
    match (args.mark, seen.get()) {
        (Some(mark), Some(at)) => eprintln!("boot_linux: {mark:?} seen after {}", ms(*at)),
        (Some(mark), None) => eprintln!("boot_linux: {mark:?} never seen"),
        _ => {}
    }
    // Lets a benchmark split the process's RSS into guest RAM and the monitor's own.
    eprintln!(
        "boot_linux: guest RAM resident at the end: {} KiB",
        outcome.guest_resident_bytes / 1024
    );
    eprintln!(
        "boot_linux: guest ended after {}, monitor done after {}; status {}",
        ms(outcome.exit_after),
        ms(outcome.total),
        outcome.reason.status()
    );
    std::process::exit(outcome.reason.status());
}
