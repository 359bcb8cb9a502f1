//! The `emulated` class's host programs: QEMU's TCG (every guest instruction translated in
//! software; no KVM) and virtiofsd serving the share over vhost-user.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::image::GuestImage;
use super::sizing::VmSize;
use super::{AGENT_PORT, SHARE_TAG};

/// Socket names, relative to the supervisor's working directory (the container's state
/// directory): relative paths keep them under the 108-byte limit of socket addresses.
pub const VIRTIOFS_SOCKET: &str = "virtiofs.sock";
pub const AGENT_SOCKET: &str = "agent.sock";
pub const CONSOLE_LOG: &str = "console.log";

/// Spawns a helper that dies with the supervisor (PR_SET_PDEATHSIG), so killing the
/// supervisor, as `kill KILL` and `delete --force` do, ends the whole VM.
fn spawn(mut cmd: Command, what: &str, log: &File) -> Result<Child, String> {
    let out = log.try_clone().map_err(|e| format!("{what}: log: {e}"))?;
    let err = log.try_clone().map_err(|e| format!("{what}: log: {e}"))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: only async-signal-safe calls (prctl, sigprocmask, getppid, _exit) run between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            // The supervisor died before PR_SET_PDEATHSIG took effect.
            if libc::getppid() == 1 {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| format!("{what}: {e}"))
}

pub fn spawn_virtiofsd(bin: &Path, share: &Path, log: &File) -> Result<Child, String> {
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--socket-path={VIRTIOFS_SOCKET}"))
        .arg(format!("--shared-dir={}", share.display()))
        // The supervisor's private mount namespace already confines what is served; virtiofsd's
        // own namespace sandbox would need a user namespace per sandbox.
        .arg("--sandbox=none")
        .arg("--cache=auto")
        // Bind mounts under the share keep their own st_dev in the guest.
        .arg("--announce-submounts")
        .arg("--log-level=error");
    spawn(cmd, &format!("virtiofsd ({})", bin.display()), log)
}

/// Waits until virtiofsd listens (its socket exists), or fails if it exits first.
pub fn wait_for_virtiofsd(child: &mut Child, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !Path::new(VIRTIOFS_SOCKET).exists() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "virtiofsd exited at start ({status}); see {CONSOLE_LOG} in the state directory"
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!("virtiofsd did not listen within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The host's TSC rate in kHz: a TCG guest calibrating its TSC against the PIT on a busy host
/// fails and hangs, so it is told the rate (GUIDE §8).
fn host_tsc_khz() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u64)
}

/// The guest kernel's command line: the console, the agent's channel and the share's tag.
pub fn kernel_cmdline() -> String {
    let mut line = format!(
        "console=ttyS0 panic=-1 quiet runvm.channel=port:{AGENT_PORT} runvm.share={SHARE_TAG}"
    );
    if let Some(khz) = host_tsc_khz() {
        line.push_str(&format!(" tsc_early_khz={khz}"));
    }
    line
}

pub fn qemu_args(image: &GuestImage, size: VmSize) -> Vec<String> {
    let mem = size.memory_mib;
    [
        // microvm with a PCIe host bridge: no firmware, no legacy PC devices to emulate.
        "-M",
        "microvm,x-option-roms=off,rtc=on,pcie=on,memory-backend=mem",
        // vhost-user needs guest RAM in memory virtiofsd can map: a shared memfd.
        "-object",
        &format!("memory-backend-memfd,id=mem,size={mem}M,share=on"),
        // TCG's translation cache is capped so the VMM's own memory stays bounded.
        "-accel",
        "tcg,tb-size=64",
        "-cpu",
        "max",
        "-m",
        &format!("{mem}M"),
        "-smp",
        &size.cpus.to_string(),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        &format!("file:{CONSOLE_LOG}"),
        "-kernel",
        &image.kernel.display().to_string(),
        "-initrd",
        &image.initramfs.display().to_string(),
        "-append",
        &kernel_cmdline(),
        "-chardev",
        &format!("socket,id=vfs,path={VIRTIOFS_SOCKET}"),
        "-device",
        &format!("vhost-user-fs-pci,chardev=vfs,tag={SHARE_TAG}"),
        "-device",
        "virtio-serial-pci,id=vser",
        "-chardev",
        &format!("socket,id=agent,path={AGENT_SOCKET}"),
        "-device",
        &format!("virtserialport,bus=vser.0,chardev=agent,name={AGENT_PORT}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn spawn_qemu(bin: &Path, args: &[String], log: &File) -> Result<Child, String> {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    spawn(cmd, &format!("QEMU ({})", bin.display()), log)
}
