//! linux.resources.devices → devices.deny/devices.allow (v1) or an eBPF device filter (v2).

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::{devices_bpf, Controllers, Version};
use crate::cgroups::error::CgroupError;
use crate::cgroups::fsio;

/// One validated device rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeviceRule {
    pub allow: bool,
    /// 'a' (any), 'b' or 'c'.
    pub kind: char,
    /// `None` = any.
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Bit set of ACCESS_* flags.
    pub access: u32,
}

pub(crate) const ACCESS_MKNOD: u32 = 1;
pub(crate) const ACCESS_READ: u32 = 2;
pub(crate) const ACCESS_WRITE: u32 = 4;

impl DeviceRule {
    /// The v1 devices.allow/devices.deny line, e.g. "c 1:3 rwm".
    pub fn v1_line(&self) -> String {
        let number = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let mut access = String::new();
        for (bit, c) in [(ACCESS_READ, 'r'), (ACCESS_WRITE, 'w'), (ACCESS_MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(c);
            }
        }
        format!(
            "{} {}:{} {access}",
            self.kind,
            number(self.major),
            number(self.minor)
        )
    }
}

/// Validates `rule` (index `index` in linux.resources.devices).
pub(crate) fn parse_rule(
    index: usize,
    rule: &LinuxDeviceCgroup,
) -> Result<Option<DeviceRule>, CgroupError> {
    let field = |name: &str| format!("linux.resources.devices[{index}].{name}");
    let kind = match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => 'a',
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        // The device cgroup only ever sees block and char devices: a FIFO rule matches nothing.
        LinuxDeviceType::P => return Ok(None),
    };
    let number = |value: Option<i64>, name: &str| -> Result<Option<u32>, CgroupError> {
        match value {
            None => Ok(None),
            Some(n) if n < 0 => Ok(None), // -1 is the conventional wildcard
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| CgroupError::invalid(field(name), n, "out of range")),
        }
    };
    let major = number(rule.major(), "major")?;
    let minor = number(rule.minor(), "minor")?;
    let access_text = rule.access().as_deref().unwrap_or("rwm");
    let mut access = 0;
    for c in access_text.chars() {
        access |= match c {
            'r' => ACCESS_READ,
            'w' => ACCESS_WRITE,
            'm' => ACCESS_MKNOD,
            _ => {
                return Err(CgroupError::invalid(
                    field("access"),
                    access_text,
                    "only r, w and m are allowed",
                ))
            }
        };
    }
    if access == 0 {
        access = ACCESS_READ | ACCESS_WRITE | ACCESS_MKNOD;
    }
    Ok(Some(DeviceRule {
        allow: rule.allow(),
        kind,
        major,
        minor,
        access,
    }))
}

pub(super) fn apply(c: &dyn Controllers, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let mut parsed = Vec::with_capacity(rules.len());
    for (index, rule) in rules.iter().enumerate() {
        if let Some(rule) = parse_rule(index, rule)? {
            parsed.push((index, rule));
        }
    }
    let target = c.target("devices")?;
    match target {
        Some(t) if t.version == Version::V1 => {
            // Start from nothing, then replay the rules in order (later rules refine earlier).
            fsio::append(&t.dir, "devices.deny", "a", "linux.resources.devices")?;
            for (index, rule) in parsed {
                let file = if rule.allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                let field = format!("linux.resources.devices[{index}]");
                fsio::append(&t.dir, file, &rule.v1_line(), &field)?;
            }
            Ok(())
        }
        _ => {
            // cgroup v2 has no device files; the kernel asks an attached eBPF program instead.
            let Some(dir) = c.unified_dir() else {
                return Err(CgroupError::unsupported(
                    "linux.resources.devices",
                    "no devices cgroup hierarchy and no cgroup2 hierarchy on this host",
                ));
            };
            let rules: Vec<DeviceRule> = parsed.into_iter().map(|(_, r)| r).collect();
            devices_bpf::attach_device_filter(&dir, &rules)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> LinuxDeviceCgroup {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn rules_become_v1_lines() {
        let r = parse_rule(
            0,
            &rule(r#"{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}"#),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.v1_line(), "c 1:3 rwm");
        let r = parse_rule(0, &rule(r#"{"allow":false,"access":"rw"}"#))
            .unwrap()
            .unwrap();
        assert_eq!(r.v1_line(), "a *:* rw");
        let r = parse_rule(
            0,
            &rule(r#"{"allow":true,"type":"b","major":8,"minor":-1,"access":"m"}"#),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.v1_line(), "b 8:* m");
    }

    #[test]
    fn bad_access_names_the_rule() {
        let msg = parse_rule(4, &rule(r#"{"allow":true,"access":"rwx"}"#))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("linux.resources.devices[4].access"),
            "{msg}"
        );
    }
}
