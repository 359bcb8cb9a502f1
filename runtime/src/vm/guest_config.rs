//! The config.json the guest's engine runs, derived from the bundle's.
//!
//! - `root.path` becomes the share's `rootfs/`; each bind mount's source becomes the share's
//!   `mounts/N` (N = the mount's index in `mounts`). Other mounts (proc, tmpfs, ...) are the
//!   guest kernel's own.
//! - Namespaces joined by path are host namespaces the guest cannot enter: they are dropped
//!   (the VM's host processes are the ones that join them, e.g. the network namespace). New
//!   namespaces are kept: the guest engine creates them inside the VM too (defence in depth).
//! - Hooks run on the host at the spec's times, except `startContainer`, which runs in the
//!   container and so in the guest.
//! - The guest cgroup is `/runvm/<id>` of the guest's cgroup2 tree; limits stay as configured.

use oci_spec::runtime::Spec;
use serde_json::Value;

use super::GUEST_SHARE;

/// Whether a runtime-spec mount is a bind mount (by type or by option).
pub fn is_bind(mount: &oci_spec::runtime::Mount) -> bool {
    mount.typ().as_deref() == Some("bind")
        || mount
            .options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// Refuses what a guest cannot be given.
pub fn check(spec: &Spec) -> Result<(), String> {
    if spec.root().is_none() {
        return Err("root: a VM sandbox needs a rootfs to share with the guest".into());
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !is_bind(m) {
            continue;
        }
        let Some(source) = m.source() else {
            return Err(format!("mounts[{i}].source: a bind mount needs a source"));
        };
        let meta = std::fs::metadata(source)
            .map_err(|e| format!("mounts[{i}].source: {}: {e}", source.display()))?;
        let kind = meta.file_type();
        if !kind.is_dir() && !kind.is_file() {
            // virtio-fs shares files and directories; a device node or socket on the host
            // means nothing to the guest's kernel.
            return Err(format!(
                "mounts[{i}].source: {} is neither a file nor a directory: a VM sandbox can only share those with its guest",
                source.display()
            ));
        }
    }
    Ok(())
}

/// The guest's config.json for container `id`.
pub fn guest_config(spec: &Spec, id: &str) -> Result<Value, String> {
    let mut config =
        serde_json::to_value(spec).map_err(|e| format!("config.json for the guest: {e}"))?;
    config["root"]["path"] = Value::from(format!("{GUEST_SHARE}/rootfs"));
    if let Some(mounts) = config.get_mut("mounts").and_then(Value::as_array_mut) {
        for (i, (mount, parsed)) in mounts
            .iter_mut()
            .zip(spec.mounts().iter().flatten())
            .enumerate()
        {
            if is_bind(parsed) {
                mount["source"] = Value::from(format!("{GUEST_SHARE}/mounts/{i}"));
            }
        }
    }
    if let Some(hooks) = config.get_mut("hooks").and_then(Value::as_object_mut) {
        hooks.retain(|kind, _| kind == "startContainer");
    }
    if let Some(linux) = config.get_mut("linux").and_then(Value::as_object_mut) {
        if let Some(namespaces) = linux.get_mut("namespaces").and_then(Value::as_array_mut) {
            namespaces.retain(|ns| ns.get("path").is_none_or(Value::is_null));
        }
        linux.insert("cgroupsPath".into(), Value::from(format!("/runvm/{id}")));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn paths_namespaces_and_hooks_are_rewritten_for_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().display().to_string();
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "/host/bundle/rootfs", "readonly": true},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": src, "options": ["rbind"]},
                {"destination": "/etc/hosts", "source": src, "options": ["bind", "ro"]}
            ],
            "hooks": {"prestart": [{"path": "/bin/true"}], "startContainer": [{"path": "/bin/hook"}]},
            "linux": {
                "cgroupsPath": "/machine/abc",
                "namespaces": [{"type": "pid"}, {"type": "network", "path": "/run/netns/x"}, {"type": "mount"}]
            }
        }));
        check(&s).unwrap();
        let g = guest_config(&s, "c1").unwrap();
        assert_eq!(g["root"]["path"], "/run/runvm/share/rootfs");
        assert_eq!(g["root"]["readonly"], true);
        assert_eq!(g["mounts"][0]["source"], "proc");
        assert_eq!(g["mounts"][1]["source"], "/run/runvm/share/mounts/1");
        assert_eq!(g["mounts"][2]["source"], "/run/runvm/share/mounts/2");
        assert!(g["hooks"].get("prestart").is_none());
        assert_eq!(g["hooks"]["startContainer"][0]["path"], "/bin/hook");
        let types: Vec<_> = g["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(types, ["pid", "mount"]);
        assert_eq!(g["linux"]["cgroupsPath"], "/runvm/c1");
    }

    #[test]
    fn unshareable_bind_sources_are_refused_by_index() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/dev/null2", "type": "bind", "source": "/dev/null"}]
        }));
        let e = check(&s).unwrap_err();
        assert!(e.starts_with("mounts[0].source"), "{e}");
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/x", "type": "bind", "source": "/no/such/dir"}]
        }));
        assert!(check(&s).unwrap_err().contains("/no/such/dir"));
    }
}
