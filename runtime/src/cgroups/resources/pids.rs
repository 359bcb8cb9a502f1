//! linux.resources.pids → pids.max (same file on v1 and v2).

use oci_spec::runtime::LinuxPids;

use super::Target;
use crate::cgroups::error::CgroupError;
use crate::cgroups::fsio;

pub(super) fn apply(t: &Target, pids: &LinuxPids) -> Result<(), CgroupError> {
    // 0 and negative limits mean "unlimited" (runc treats 0 that way too).
    let value = match pids.limit() {
        limit if limit > 0 => limit.to_string(),
        _ => "max".to_string(),
    };
    fsio::write(&t.dir, "pids.max", &value, "linux.resources.pids.limit")
}
