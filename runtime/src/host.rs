//! Config fields this host or this build cannot honour. Each is refused with a message that names
//! the field: silently skipping a security setting is worse than failing.

use std::path::Path;

use oci_spec::runtime::Spec;

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

pub fn check(spec: &Spec) -> Result<(), String> {
    if let Some(process) = spec.process() {
        if process
            .apparmor_profile()
            .as_ref()
            .is_some_and(|p| !p.is_empty())
        {
            return Err(if apparmor_enabled() {
                "process.apparmorProfile: runvm does not apply AppArmor profiles yet".into()
            } else {
                "process.apparmorProfile: AppArmor is not enabled on this host".into()
            });
        }
        if process
            .selinux_label()
            .as_ref()
            .is_some_and(|l| !l.is_empty())
        {
            return Err(selinux_error("process.selinuxLabel"));
        }
        if let Some(io) = process.io_priority() {
            if !(0..=7).contains(&io.priority()) {
                return Err(format!(
                    "process.ioPriority.priority: {} is outside 0..7",
                    io.priority()
                ));
            }
        }
        if process.scheduler().is_some() {
            return Err("process.scheduler: not supported by runvm yet".into());
        }
        if process.exec_cpu_affinity().is_some() {
            return Err("process.execCPUAffinity: not supported by runvm yet".into());
        }
    }
    if let Some(linux) = spec.linux() {
        if linux.mount_label().as_ref().is_some_and(|l| !l.is_empty()) {
            if selinux_enabled() {
                return Err(selinux_error("linux.mountLabel"));
            }
            // A mount label only tells SELinux how to label files; with SELinux off there is
            // no policy to confine anything and nothing is lost (unlike selinuxLabel, which
            // names the confinement of the process itself). runc ignores it the same way.
            crate::logging::warn("linux.mountLabel ignored: SELinux is not enabled on this host");
        }
        if linux.intel_rdt().is_some() {
            return Err("linux.intelRdt: Intel RDT (resctrl) is not supported by runvm".into());
        }
        if linux.memory_policy().is_some() {
            return Err("linux.memoryPolicy: not supported by runvm yet".into());
        }
        if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
            return Err("linux.netDevices: not supported by runvm yet".into());
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(format!(
                "mounts[{i}].uidMappings: id-mapped mounts are not supported by runvm yet"
            ));
        }
    }
    Ok(())
}

fn selinux_error(field: &str) -> String {
    if selinux_enabled() {
        format!("{field}: runvm does not apply SELinux labels yet")
    } else {
        format!("{field}: SELinux is not enabled on this host")
    }
}
