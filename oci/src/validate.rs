//! Checks on a parsed config that the JSON schema alone does not express. Host-dependent checks
//! (AppArmor present? cgroup controller mounted?) belong to the runtime, not here.

use std::collections::HashSet;
use std::path::Path;

use oci_spec::runtime::{Hook, LinuxNamespaceType, Spec};

use crate::OciError;

/// The runtime-spec major version runvm implements.
pub const SUPPORTED_OCI_MAJOR: u64 = 1;

/// Validates a parsed config: version, process, namespaces and their companions, hooks, mounts.
pub fn validate_spec(spec: &Spec) -> Result<(), OciError> {
    validate_version(spec.version())?;
    validate_process(spec)?;
    validate_namespaces(spec)?;
    validate_hooks(spec)?;
    validate_mounts(spec)?;
    Ok(())
}

fn validate_version(version: &str) -> Result<(), OciError> {
    let major = version
        .split('.')
        .next()
        .filter(|m| !m.is_empty())
        .and_then(|m| m.parse::<u64>().ok())
        .ok_or_else(|| {
            OciError::invalid(
                "ociVersion",
                format!("{version:?} is not a semantic version"),
            )
        })?;
    if major != SUPPORTED_OCI_MAJOR {
        return Err(OciError::invalid(
            "ociVersion",
            format!("{version:?} is not supported: runvm implements runtime-spec 1.x"),
        ));
    }
    Ok(())
}

fn validate_process(spec: &Spec) -> Result<(), OciError> {
    let Some(process) = spec.process() else {
        return Ok(());
    };
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(OciError::invalid(
            "process.args",
            "must name a program to run",
        ));
    }
    if !process.cwd().is_absolute() {
        return Err(OciError::invalid(
            "process.cwd",
            format!("{} must be an absolute path", process.cwd().display()),
        ));
    }
    if let Some(rlimits) = process.rlimits() {
        for (i, rlimit) in rlimits.iter().enumerate() {
            if rlimits[..i].iter().any(|r| r.typ() == rlimit.typ()) {
                return Err(OciError::invalid(
                    format!("process.rlimits[{i}]"),
                    format!("{:?} is given twice", rlimit.typ()),
                ));
            }
            if rlimit.soft() > rlimit.hard() {
                return Err(OciError::invalid(
                    format!("process.rlimits[{i}]"),
                    "soft limit is above the hard limit",
                ));
            }
        }
    }
    if let Some(env) = process.env() {
        if let Some(i) = env.iter().position(|e| !e.contains('=')) {
            return Err(OciError::invalid(
                format!("process.env[{i}]"),
                "must have the form NAME=VALUE",
            ));
        }
    }
    Ok(())
}

fn validate_namespaces(spec: &Spec) -> Result<(), OciError> {
    let linux = spec.linux().as_ref();
    let namespaces = linux.and_then(|l| l.namespaces().as_ref());
    let mut seen = HashSet::new();
    for (i, ns) in namespaces.into_iter().flatten().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(OciError::invalid(
                format!("linux.namespaces[{i}]"),
                format!("namespace type {} is listed twice", ns.typ()),
            ));
        }
        if let Some(path) = ns.path() {
            if !path.is_absolute() {
                return Err(OciError::invalid(
                    format!("linux.namespaces[{i}].path"),
                    format!("{} must be an absolute path", path.display()),
                ));
            }
        }
    }
    let has = |t: LinuxNamespaceType| seen.contains(&t);
    let new_userns = namespaces
        .into_iter()
        .flatten()
        .any(|ns| ns.typ() == LinuxNamespaceType::User && ns.path().is_none());
    let has_maps = linux.is_some_and(|l| {
        l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || l.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
    });
    if new_userns && !has_maps {
        return Err(OciError::invalid(
            "linux.uidMappings",
            "a new user namespace needs uidMappings and gidMappings",
        ));
    }
    if has_maps && !new_userns {
        return Err(OciError::invalid(
            "linux.uidMappings",
            "mappings are only allowed with a new user namespace",
        ));
    }
    if let Some(l) = linux {
        for (field, maps) in [
            ("uidMappings", l.uid_mappings()),
            ("gidMappings", l.gid_mappings()),
        ] {
            for (i, m) in maps.iter().flatten().enumerate() {
                if m.size() == 0 {
                    return Err(OciError::invalid(
                        format!("linux.{field}[{i}].size"),
                        "must be greater than 0",
                    ));
                }
            }
        }
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(OciError::invalid(
            "hostname",
            "setting a hostname needs a uts namespace",
        ));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(OciError::invalid(
            "domainname",
            "setting a domainname needs a uts namespace",
        ));
    }
    if linux.is_some_and(|l| l.time_offsets().as_ref().is_some_and(|t| !t.is_empty()))
        && !has(LinuxNamespaceType::Time)
    {
        return Err(OciError::invalid(
            "linux.timeOffsets",
            "time offsets need a time namespace",
        ));
    }
    if let Some(offsets) = linux.and_then(|l| l.time_offsets().as_ref()) {
        for clock in offsets.keys() {
            if clock != "monotonic" && clock != "boottime" {
                return Err(OciError::invalid(
                    format!("linux.timeOffsets.{clock}"),
                    "only \"monotonic\" and \"boottime\" can be offset",
                ));
            }
        }
    }
    if let Some(prop) = linux.and_then(|l| l.rootfs_propagation().as_ref()) {
        const KNOWN: [&str; 8] = [
            "private",
            "rprivate",
            "slave",
            "rslave",
            "shared",
            "rshared",
            "unbindable",
            "runbindable",
        ];
        if !prop.is_empty() && !KNOWN.contains(&prop.as_str()) {
            return Err(OciError::invalid(
                "linux.rootfsPropagation",
                format!("{prop:?} is not one of {}", KNOWN.join(", ")),
            ));
        }
    }
    Ok(())
}

fn validate_hooks(spec: &Spec) -> Result<(), OciError> {
    let Some(hooks) = spec.hooks() else {
        return Ok(());
    };
    #[allow(deprecated)]
    let kinds: [(&str, &Option<Vec<Hook>>); 6] = [
        ("prestart", hooks.prestart()),
        ("createRuntime", hooks.create_runtime()),
        ("createContainer", hooks.create_container()),
        ("startContainer", hooks.start_container()),
        ("poststart", hooks.poststart()),
        ("poststop", hooks.poststop()),
    ];
    for (kind, list) in kinds {
        for (i, hook) in list.iter().flatten().enumerate() {
            let field = format!("hooks.{kind}[{i}]");
            // startContainer paths resolve in the container, which does not exist yet: init
            // checks them after pivot_root.
            let in_runtime_namespace = kind != "startContainer";
            check_hook_path(&field, hook.path(), in_runtime_namespace)?;
            if hook.timeout().is_some_and(|t| t <= 0) {
                return Err(OciError::invalid(
                    format!("{field}.timeout"),
                    "must be greater than zero",
                ));
            }
        }
    }
    Ok(())
}

fn check_hook_path(field: &str, path: &Path, must_exist: bool) -> Result<(), OciError> {
    if !path.is_absolute() {
        return Err(OciError::invalid(
            format!("{field}.path"),
            format!("{} must be an absolute path", path.display()),
        ));
    }
    // Hook paths resolve in the runtime's namespace (also for createContainer and startContainer),
    // so a missing program is known now; failing later would leave a half-built container.
    if must_exist && !path.is_file() {
        return Err(OciError::invalid(
            format!("{field}.path"),
            format!("{} does not exist or is not a file", path.display()),
        ));
    }
    Ok(())
}

fn validate_mounts(spec: &Spec) -> Result<(), OciError> {
    for (i, mount) in spec.mounts().iter().flatten().enumerate() {
        if mount.destination().as_os_str().is_empty() {
            return Err(OciError::invalid(
                format!("mounts[{i}].destination"),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    fn err_of(json: &str) -> String {
        validate_spec(&spec(json)).unwrap_err().to_string()
    }

    #[test]
    fn version_major_must_be_one() {
        assert!(validate_spec(&spec(r#"{"ociVersion":"1.0.2-dev"}"#)).is_ok());
        assert!(err_of(r#"{"ociVersion":"2.0.0"}"#).contains("ociVersion"));
        assert!(err_of(r#"{"ociVersion":""}"#).contains("ociVersion"));
        assert!(err_of(r#"{"ociVersion":"x.1"}"#).contains("ociVersion"));
    }

    #[test]
    fn duplicate_namespaces_are_refused() {
        let e = err_of(
            r#"{"ociVersion":"1.0.0","linux":{"namespaces":[{"type":"pid"},{"type":"pid"}]}}"#,
        );
        assert!(e.contains("linux.namespaces[1]"), "{e}");
    }

    #[test]
    fn user_namespace_needs_mappings() {
        let e = err_of(r#"{"ociVersion":"1.0.0","linux":{"namespaces":[{"type":"user"}]}}"#);
        assert!(e.contains("uidMappings"), "{e}");
    }

    #[test]
    fn hostname_needs_uts_namespace() {
        let e = err_of(r#"{"ociVersion":"1.0.0","hostname":"h","linux":{"namespaces":[]}}"#);
        assert!(e.contains("hostname"), "{e}");
    }

    #[test]
    fn missing_hook_names_the_hook() {
        let e = err_of(
            r#"{"ociVersion":"1.0.0","hooks":{"poststop":[{"path":"/bin/true"}],
                "createRuntime":[{"path":"/does/not/exist"}]}}"#,
        );
        assert!(e.contains("hooks.createRuntime[0].path"), "{e}");
        let e = err_of(r#"{"ociVersion":"1.0.0","hooks":{"prestart":[{"path":"relative"}]}}"#);
        assert!(e.contains("hooks.prestart[0].path"), "{e}");
    }

    #[test]
    fn process_fields_are_checked() {
        let e = err_of(
            r#"{"ociVersion":"1.0.0","process":{"cwd":"/","args":[],"user":{"uid":0,"gid":0}}}"#,
        );
        assert!(e.contains("process.args"), "{e}");
        let e = err_of(
            r#"{"ociVersion":"1.0.0","process":{"cwd":"rel","args":["a"],"user":{"uid":0,"gid":0}}}"#,
        );
        assert!(e.contains("process.cwd"), "{e}");
        let e = err_of(
            r#"{"ociVersion":"1.0.0","process":{"cwd":"/","args":["a"],"user":{"uid":0,"gid":0},
            "rlimits":[{"type":"RLIMIT_NOFILE","soft":10,"hard":5}]}}"#,
        );
        assert!(e.contains("process.rlimits[0]"), "{e}");
    }

    #[test]
    fn time_offsets_need_time_namespace() {
        let e = err_of(
            r#"{"ociVersion":"1.0.0","linux":{"timeOffsets":{"monotonic":{"secs":1,"nanosecs":0}}}}"#,
        );
        assert!(e.contains("linux.timeOffsets"), "{e}");
    }
}
