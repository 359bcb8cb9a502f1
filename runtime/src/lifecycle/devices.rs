//! Device cgroup rules the runtime adds to the config's own: the spec's default devices and
//! every `linux.devices` entry must be usable even when the config denies all devices.

use oci_spec::runtime::{
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResources, Spec,
};

/// (type, major, minor, access): /dev/null, zero, full, random, urandom, tty, ptmx and the
/// pty slaves (devpts major 136), as runc allows them.
const DEFAULT_ALLOWED: [(LinuxDeviceType, i64, Option<i64>, &str); 8] = [
    (LinuxDeviceType::C, 1, Some(3), "rwm"),
    (LinuxDeviceType::C, 1, Some(5), "rwm"),
    (LinuxDeviceType::C, 1, Some(7), "rwm"),
    (LinuxDeviceType::C, 1, Some(8), "rwm"),
    (LinuxDeviceType::C, 1, Some(9), "rwm"),
    (LinuxDeviceType::C, 5, Some(0), "rwm"),
    (LinuxDeviceType::C, 5, Some(2), "rwm"),
    (LinuxDeviceType::C, 136, None, "rwm"),
];

fn allow(
    typ: LinuxDeviceType,
    major: i64,
    minor: Option<i64>,
    access: &str,
) -> Option<LinuxDeviceCgroup> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(typ)
        .major(major)
        .access(access.to_string());
    if let Some(minor) = minor {
        b = b.minor(minor);
    }
    b.build().ok()
}

/// The config's resources with the runtime's allow rules appended (later rules win).
pub fn with_default_devices(spec: &Spec, resources: Option<&LinuxResources>) -> LinuxResources {
    let mut resources = resources.cloned().unwrap_or_default();
    let mut rules = resources.devices().clone().unwrap_or_default();
    rules.extend(
        DEFAULT_ALLOWED
            .iter()
            .filter_map(|(t, maj, min, acc)| allow(*t, *maj, *min, acc)),
    );
    let configured = spec.linux().as_ref().and_then(|l| l.devices().as_ref());
    for dev in configured.into_iter().flatten() {
        let typ = match dev.typ() {
            LinuxDeviceType::U => LinuxDeviceType::C,
            other => other,
        };
        if typ != LinuxDeviceType::P {
            rules.extend(allow(typ, dev.major(), Some(dev.minor()), "rwm"));
        }
    }
    resources.set_devices(Some(rules));
    resources
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_defaults_and_configured_devices_after_the_config_rules() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.0","linux":{"devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229}],
               "resources":{"devices":[{"allow":false,"access":"rwm"}]}}}"#,
        )
        .unwrap();
        let r = with_default_devices(&spec, spec.linux().as_ref().unwrap().resources().as_ref());
        let rules = r.devices().as_ref().unwrap();
        assert!(!rules[0].allow(), "config's deny-all stays first");
        assert_eq!(rules.len(), 1 + DEFAULT_ALLOWED.len() + 1);
        let fuse = rules.last().unwrap();
        assert!(fuse.allow() && fuse.major() == Some(10) && fuse.minor() == Some(229));
    }
}
