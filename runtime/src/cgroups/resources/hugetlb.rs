//! linux.resources.hugepageLimits → hugetlb.<size>.limit_in_bytes (v1) / hugetlb.<size>.max (v2).

use oci_spec::runtime::LinuxHugepageLimit;

use super::{Target, Version};
use crate::cgroups::error::CgroupError;
use crate::cgroups::fsio;

pub(super) fn apply(t: &Target, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    for (index, limit) in limits.iter().enumerate() {
        let field = format!("linux.resources.hugepageLimits[{index}]");
        let size = limit.page_size();
        if !is_page_size(size) {
            return Err(CgroupError::invalid(
                format!("{field}.pageSize"),
                size,
                "expected a size such as 2MB or 1GB",
            ));
        }
        let (file, value) = match t.version {
            Version::V1 => (
                format!("hugetlb.{size}.limit_in_bytes"),
                limit.limit().to_string(),
            ),
            Version::V2 if limit.limit() < 0 => (format!("hugetlb.{size}.max"), "max".to_string()),
            Version::V2 => (format!("hugetlb.{size}.max"), limit.limit().to_string()),
        };
        if !fsio::exists(&t.dir, &file) {
            return Err(CgroupError::unsupported(
                format!("{field}.pageSize"),
                format!(
                    "this host has no {size} huge pages ({} is missing)",
                    t.dir.join(&file).display()
                ),
            ));
        }
        fsio::write(&t.dir, &file, &value, &format!("{field}.limit"))?;
    }
    Ok(())
}

/// "<digits><KB|MB|GB>": the only form the kernel uses in hugetlb file names.
fn is_page_size(size: &str) -> bool {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && ["KB", "MB", "GB"].contains(&unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_syntax() {
        assert!(is_page_size("2MB"));
        assert!(is_page_size("1GB"));
        assert!(!is_page_size("2mb"));
        assert!(!is_page_size("../2MB"));
        assert!(!is_page_size("MB"));
    }
}
