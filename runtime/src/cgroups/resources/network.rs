//! linux.resources.network → net_cls.classid and net_prio.ifpriomap (cgroup v1 only).

use oci_spec::runtime::LinuxNetwork;

use super::{Controllers, Version};
use crate::cgroups::error::CgroupError;
use crate::cgroups::fsio;

const FIELD: &str = "linux.resources.network";

pub(super) fn apply(c: &dyn Controllers, net: &LinuxNetwork) -> Result<(), CgroupError> {
    if let Some(class_id) = net.class_id() {
        let t = v1_target(c, "net_cls", "classID")?;
        fsio::write(
            &t,
            "net_cls.classid",
            &class_id.to_string(),
            &format!("{FIELD}.classID"),
        )?;
    }
    if let Some(priorities) = net.priorities().as_ref().filter(|p| !p.is_empty()) {
        let t = v1_target(c, "net_prio", "priorities")?;
        for (index, p) in priorities.iter().enumerate() {
            let line = format!("{} {}", p.name(), p.priority());
            fsio::write(
                &t,
                "net_prio.ifpriomap",
                &line,
                &format!("{FIELD}.priorities[{index}]"),
            )?;
        }
    }
    Ok(())
}

fn v1_target(
    c: &dyn Controllers,
    controller: &str,
    name: &str,
) -> Result<std::path::PathBuf, CgroupError> {
    match c.target(controller)? {
        Some(t) if t.version == Version::V1 => Ok(t.dir),
        _ => Err(CgroupError::unsupported(
            format!("{FIELD}.{name}"),
            format!("this host has no cgroup v1 {controller} hierarchy (cgroup v2 has no network controller)"),
        )),
    }
}
