//! `runvm features`: what this build supports, as the runtime-spec features document. Every
//! list here is what the code really handles; nothing is claimed that is not implemented.

use serde_json::{json, Value};

const NAMESPACES: &[&str] = &[
    "cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts",
];

fn kvm_mode() -> String {
    let report = runvm_sandbox_vm::host::probe(None);
    serde_json::to_value(report.mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", report.mode))
}

pub fn features() -> Value {
    let capabilities: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.1",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": crate::rootfs::options::KNOWN_OPTIONS,
        "linux": {
            "namespaces": NAMESPACES,
            "capabilities": capabilities,
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false },
            "seccomp": crate::seccomp::features(),
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } },
        },
        "annotations": {
            "org.opencontainers.runtime-spec.features.version": env!("CARGO_PKG_VERSION"),
            // What `runvm check` says about VM sandboxes on this host (no guest is run here).
            "org.runvm.kvm.mode": kvm_mode(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxNamespace, LinuxSeccomp};

    fn strings(v: &Value) -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s.as_str().expect("string").to_string())
            .collect()
    }

    #[test]
    fn document_has_the_schema_shape() {
        let f = features();
        assert!(f["ociVersionMin"].is_string() && f["ociVersionMax"].is_string());
        for key in ["hooks", "mountOptions"] {
            assert!(!strings(&f[key]).is_empty(), "{key}");
        }
        let linux = &f["linux"];
        for key in ["namespaces", "capabilities"] {
            assert!(!strings(&linux[key]).is_empty(), "linux.{key}");
        }
        for key in ["v1", "v2", "systemd", "systemdUser", "rdma"] {
            assert!(linux["cgroup"][key].is_boolean(), "linux.cgroup.{key}");
        }
        for key in ["apparmor", "selinux", "intelRdt"] {
            assert!(linux[key]["enabled"].is_boolean(), "linux.{key}.enabled");
        }
        assert!(f["annotations"].is_object());
    }

    #[test]
    fn every_listed_namespace_and_capability_parses() {
        let f = features();
        for ns in strings(&f["linux"]["namespaces"]) {
            let parsed: Result<Vec<LinuxNamespace>, _> =
                serde_json::from_str(&format!(r#"[{{"type":"{ns}"}}]"#));
            assert!(parsed.is_ok(), "namespace {ns}");
        }
        for cap in strings(&f["linux"]["capabilities"]) {
            assert!(cap.parse::<caps::Capability>().is_ok(), "{cap}");
            // The features schema's pattern for capability names: ^CAP_[A-Z_]+$.
            let rest = cap.strip_prefix("CAP_").unwrap_or("");
            assert!(
                !rest.is_empty() && rest.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{cap} does not match ^CAP_[A-Z_]+$"
            );
        }
    }

    #[test]
    fn every_listed_seccomp_action_operator_and_flag_compiles() {
        let sc = &features()["linux"]["seccomp"];
        assert_eq!(sc["enabled"], true);
        let compile = |json: String| {
            let profile: LinuxSeccomp = serde_json::from_str(&json).expect("profile json");
            crate::seccomp::compile(&profile)
        };
        for action in strings(&sc["actions"]) {
            let r = compile(format!(
                r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{"names":["getpid"],"action":"{action}"}}]}}"#
            ));
            assert!(r.is_ok(), "{action}: {r:?}");
        }
        for op in strings(&sc["operators"]) {
            let r = compile(format!(
                r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{"names":["personality"],"action":"SCMP_ACT_ERRNO","args":[{{"index":0,"value":8,"valueTwo":0,"op":"{op}"}}]}}]}}"#
            ));
            assert!(r.is_ok(), "{op}: {r:?}");
        }
        for flag in strings(&sc["supportedFlags"]) {
            let r = compile(format!(
                r#"{{"defaultAction":"SCMP_ACT_ALLOW","flags":["{flag}"]}}"#
            ));
            assert!(r.is_ok(), "{flag}: {r:?}");
        }
        let known = strings(&sc["knownFlags"]);
        assert!(strings(&sc["supportedFlags"])
            .iter()
            .all(|f| known.contains(f)));
        assert!(!strings(&sc["actions"]).contains(&"SCMP_ACT_NOTIFY".to_string()));
    }
}
