//! One engine per isolation class behind one interface. `create` asks the engine of the chosen
//! class what to refuse, which limits the host cgroup gets, and to launch the process that
//! stands for the container (its pid is the container's pid for clients); every later command
//! works from `state.json` and the class recorded there, and only asks the engine where the
//! classes really differ. Nothing outside this dispatch branches on the class.
//!
//! - `container`: init in the container's namespaces, execve'ing the user's program at `start`.
//! - `vm`, `emulated`: a supervisor on the host owning a VM whose guest agent runs the container
//!   in the guest (`crate::vm`).

use oci_spec::runtime::{LinuxResources, Spec};
use runvm_oci::IsolationClass;

use crate::isolation::RuntimeConfig;
use crate::process::launch::{LaunchRequest, Launched};

pub trait Engine {
    /// Refuses, before anything exists, what this engine cannot honour or what would harm the
    /// host; also whether this host can run the class at all (the reason `runvm check` gives).
    fn validate(&self, spec: &Spec) -> Result<(), String>;

    /// The limits the host cgroup of the sandbox's host processes gets.
    fn host_resources(&self, spec: &Spec) -> LinuxResources;

    /// Whether the sandbox's rootfs is mounted on in the host's mount namespace (then `delete`
    /// must detach it).
    fn mounts_on_host(&self, spec: &Spec) -> bool;

    /// Starts the process that stands for the container and returns once it waits for `start`.
    fn launch(&self, req: &LaunchRequest) -> Result<Launched, String>;

    /// Why `exec` cannot run in this class, if it cannot.
    fn exec_unsupported(&self) -> Option<String> {
        None
    }
}

/// The engine of a class, with runvm's settings.
pub fn for_class(class: IsolationClass, config: &RuntimeConfig) -> Box<dyn Engine> {
    match class {
        IsolationClass::Container => Box::new(ContainerEngine),
        IsolationClass::Vm | IsolationClass::Emulated => {
            Box::new(crate::vm::VmEngine::new(class, config.vm.clone()))
        }
    }
}

/// OS-level isolation: runvm's container engine on the host kernel.
pub struct ContainerEngine;

impl Engine for ContainerEngine {
    fn validate(&self, spec: &Spec) -> Result<(), String> {
        crate::host::check(spec)?;
        crate::sysctl::check(spec)
    }

    fn host_resources(&self, spec: &Spec) -> LinuxResources {
        crate::lifecycle::with_default_devices(
            spec,
            spec.linux().as_ref().and_then(|l| l.resources().as_ref()),
        )
    }

    fn mounts_on_host(&self, spec: &Spec) -> bool {
        crate::namespaces::config_shares_host_mounts(spec)
    }

    fn launch(&self, req: &LaunchRequest) -> Result<Launched, String> {
        crate::process::launch::launch(req)
    }
}
