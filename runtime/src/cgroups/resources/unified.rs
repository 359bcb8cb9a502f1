//! linux.resources.unified: raw cgroup v2 "file name → value" pairs.

use std::collections::HashMap;

use super::Controllers;
use crate::cgroups::error::CgroupError;
use crate::cgroups::fsio;

pub(super) fn apply(c: &dyn Controllers, map: &HashMap<String, String>) -> Result<(), CgroupError> {
    if map.is_empty() {
        return Ok(());
    }
    let Some(dir) = c.unified_dir() else {
        return Err(CgroupError::unsupported(
            "linux.resources.unified",
            "this host has no cgroup v2 hierarchy (cgroup v1 only)",
        ));
    };
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort();
    for (key, value) in entries {
        let field = format!("linux.resources.unified.{key}");
        // Keys name files in the container's own cgroup: never a path elsewhere.
        if key.is_empty() || key.contains('/') || key.contains("..") || key.starts_with('.') {
            return Err(CgroupError::invalid(
                field,
                key,
                "must be a plain cgroup file name",
            ));
        }
        let controller = key.split('.').next().unwrap_or_default();
        if controller != "cgroup" {
            c.enable_unified(controller).map_err(|e| match e {
                CgroupError::Unsupported { reason, .. } => CgroupError::Unsupported {
                    field: field.clone(),
                    reason,
                },
                other => other,
            })?;
        }
        fsio::write(&dir, key, value, &field)?;
    }
    Ok(())
}
