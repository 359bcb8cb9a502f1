//! VM sandboxes (classes `vm` and `emulated`): the container runs in a guest kernel of its own.
//!
//! Processes on the host, all in the sandbox's cgroup: the **supervisor** (a fork of the cli;
//! its pid is the container's pid for clients), which owns the VM and speaks to the guest
//! **agent**; the VMM (QEMU for `emulated`); `virtiofsd`, which serves the rootfs and the bind
//! mount sources to the guest. The agent (the guest's PID 1) creates the container in the guest
//! with runvm's own container engine. See docs/ARCHITECTURE.md, "VM sandboxes".
//!
//! The supervisor keeps init's contract with the other commands, so they need no VM code:
//! it waits on `exec.fifo` for `start` (and writes `init.err` when the guest fails to start
//! the program), forwards every signal it gets into the guest, and exits with the container's
//! status (128+N for signal N). SIGKILL of the supervisor ends the VM too (its helpers die
//! with it), which is how `delete --force` and `kill KILL` stop a VM.

mod agent_link;
mod guest_config;
mod image;
mod qemu;
mod share;
mod sizing;
mod supervisor;
mod tools;

use oci_spec::runtime::{LinuxResources, Spec};
use runvm_oci::IsolationClass;

use crate::engine::Engine;
use crate::isolation::VmSettings;
use crate::process::launch::{LaunchRequest, Launched};

pub use tools::{in_path, unavailable_reason};

/// Where the guest sees the share: the rootfs at `rootfs/`, bind sources at `mounts/N`.
pub const GUEST_SHARE: &str = "/run/runvm/share";
/// The virtio-fs tag of the share, named on the guest's command line.
pub const SHARE_TAG: &str = "runvm-share";
/// The name of the virtio-serial port of the agent channel.
pub const AGENT_PORT: &str = "runvm.agent";

pub struct VmEngine {
    class: IsolationClass,
    settings: VmSettings,
}

impl VmEngine {
    pub fn new(class: IsolationClass, settings: VmSettings) -> Self {
        VmEngine { class, settings }
    }
}

impl Engine for VmEngine {
    fn validate(&self, spec: &Spec) -> Result<(), String> {
        if let Some(why) = unavailable_reason(self.class, &self.settings) {
            return Err(format!("isolation class {}: {why}", self.class));
        }
        // Settings the guest's engine cannot honour either (AppArmor, ...). The sysctl rule
        // is the guest engine's business: the guest kernel is the sandbox's own.
        crate::host::check(spec)?;
        guest_config::check(spec)
    }

    fn host_resources(&self, spec: &Spec) -> LinuxResources {
        sizing::host_resources(spec, &self.settings)
    }

    fn mounts_on_host(&self, _spec: &Spec) -> bool {
        false
    }

    fn launch(&self, req: &LaunchRequest) -> Result<Launched, String> {
        supervisor::launch(self.class, &self.settings, req)
    }

    fn exec_unsupported(&self) -> Option<String> {
        Some(format!(
            "exec into a {} sandbox is not supported yet",
            self.class
        ))
    }
}
