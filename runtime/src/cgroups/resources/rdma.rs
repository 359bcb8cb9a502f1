//! linux.resources.rdma → rdma.max (same format on v1 and v2).

use std::collections::HashMap;

use oci_spec::runtime::LinuxRdma;

use super::Target;
use crate::cgroups::error::CgroupError;
use crate::cgroups::fsio;

pub(super) fn apply(t: &Target, rdma: &HashMap<String, LinuxRdma>) -> Result<(), CgroupError> {
    let mut devices: Vec<_> = rdma.iter().collect();
    devices.sort_by(|a, b| a.0.cmp(b.0));
    for (device, limits) in devices {
        let field = format!("linux.resources.rdma.{device}");
        if device.is_empty() || device.contains(char::is_whitespace) {
            return Err(CgroupError::invalid(
                field,
                device,
                "not an RDMA device name",
            ));
        }
        let mut line = device.clone();
        if let Some(handles) = limits.hca_handles() {
            line.push_str(&format!(" hca_handle={handles}"));
        }
        if let Some(objects) = limits.hca_objects() {
            line.push_str(&format!(" hca_object={objects}"));
        }
        if line.len() > device.len() {
            fsio::write(&t.dir, "rdma.max", &line, &field)?;
        }
    }
    Ok(())
}
