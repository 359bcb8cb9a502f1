//! PID-1 mode: the agent as a VM's init. It mounts the guest's filesystems, loads modules,
//! opens the channel named on the kernel command line, serves the host, and powers the VM off
//! at the end. It never exits or panics (either would panic the kernel): whatever ends it,
//! it says why on the kernel log, kills every container process and powers off.

mod cmdline;
mod modules;
mod mounts;
mod net;
mod port;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::say;
use crate::serve::{Agent, End};

/// Where the agent keeps its state in the guest (on the /run tmpfs).
const STATE_DIR: &str = "/run/runvm/agent";
/// Where the virtio-fs share with the rootfs and bind-mount sources is mounted.
pub const SHARE_DIR: &str = "/run/runvm/share";

pub fn run() -> ! {
    std::panic::set_hook(Box::new(|info| {
        say::error(&format!("panic: {info}"));
        power_off();
    }));
    let why = match boot() {
        Ok(mut agent) => {
            let end = agent.run();
            agent.remove_all();
            match end {
                End::Shutdown => "shutdown requested by the host".to_string(),
                End::ChannelClosed(why) => why,
                End::Protocol(why) => why,
            }
        }
        Err(e) => format!("guest setup failed: {e:#}"),
    };
    say::error(&format!("{why}; powering off"));
    power_off()
}

fn boot() -> Result<Agent> {
    mounts::proc()?;
    // Before anything else is set up, because it re-executes the agent (still PID 1).
    runvm_runtime::selfexe::ensure_sealed().context("re-executing from a read-only copy")?;
    mounts::dev()?;
    say::use_kmsg();
    mounts::rest()?;
    mounts::enable_cgroup_controllers();
    modules::load_listed(Path::new(modules::LOAD_ORDER));
    if let Err(e) = net::loopback_up() {
        say::warn(&format!("lo: {e}"));
    }
    let text = std::fs::read_to_string("/proc/cmdline").context("/proc/cmdline")?;
    let cmdline = cmdline::parse(&text).map_err(anyhow::Error::msg)?;
    if let Some(tag) = &cmdline.share {
        mounts::share(tag, Path::new(SHARE_DIR))?;
    }
    let channel = port::open(&cmdline.channel).map_err(anyhow::Error::msg)?;
    say::info(&format!("serving the host on {}", cmdline.channel));
    Agent::new(channel, STATE_DIR.into(), true)
}

/// Kills whatever is left, syncs and powers the VM off; never returns.
pub fn power_off() -> ! {
    // SAFETY: kill(-1) as PID 1 signals every other process; no memory is involved.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    nix::unistd::sync();
    // SAFETY: reboot(2) with the power-off command takes no pointer arguments.
    unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF) };
    say::error(&format!(
        "reboot(POWER_OFF): {}; halting here",
        std::io::Error::last_os_error()
    ));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
