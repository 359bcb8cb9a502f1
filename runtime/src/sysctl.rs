//! Which `linux.sysctl` keys a container may set.
//!
//! A sysctl is written by init into whatever namespace it lives in. Most sysctls are global, and
//! the namespaced ones belong to the ipc, network or uts namespace: written from a container that
//! shares such a namespace with the host, they change the host. So a key is allowed only when the
//! container has its own namespace of the kind that owns it: a new one, or one joined by path that
//! is neither the host's (PID 1's) nor the runtime's own. Everything else is refused at `create`,
//! before anything exists, with the key named (runc and crun refuse the same configs).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// The namespace that owns a sysctl key, or why no container may set it.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    Namespace(LinuxNamespaceType),
    /// The key is global or has a dedicated config field; the text says which.
    Refused(&'static str),
}

/// IPC-namespaced keys (ipc/ipc_sysctl.c and ipc/mq_sysctl.c): `kernel.msg*`, `kernel.sem*`
/// (`sem`, `sem_next_id`), `kernel.shm*` and `fs.mqueue.*`.
const IPC_PREFIXES: [&str; 4] = ["kernel.msg", "kernel.sem", "kernel.shm", "fs.mqueue."];

fn owner_of(key: &str) -> Owner {
    if IPC_PREFIXES.iter().any(|p| key.starts_with(p)) {
        Owner::Namespace(LinuxNamespaceType::Ipc)
    } else if key.starts_with("net.") {
        Owner::Namespace(LinuxNamespaceType::Network)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Owner::Refused("set the uts namespace's names with `hostname` and `domainname` instead")
    } else {
        Owner::Refused("it is not namespaced: writing it would change the host")
    }
}

/// The dotted form of a key: `net/ipv4/ip_forward` and `net.ipv4.ip_forward` name the same
/// file, so the rule must see both the same way.
fn normalise(key: &str) -> Result<String, String> {
    let dotted = key.replace('/', ".");
    if dotted.split('.').any(|part| part.is_empty()) {
        return Err(format!("linux.sysctl.{key}: not a valid sysctl name"));
    }
    Ok(dotted)
}

/// Checks every `linux.sysctl` key of a config against the namespaces it lists.
pub fn check(spec: &Spec) -> Result<(), String> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let Some(sysctls) = linux.sysctl().as_ref().filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    for key in sysctls.keys() {
        let typ = match owner_of(&normalise(key)?) {
            Owner::Namespace(typ) => typ,
            Owner::Refused(why) => return Err(format!("linux.sysctl.{key}: refused: {why}")),
        };
        let entry = namespaces.iter().find(|ns| ns.typ() == typ);
        let own = match entry.and_then(|ns| ns.path().as_deref()) {
            None => entry.is_some(),
            Some(path) => !is_hosts_or_runtimes(typ, path)?,
        };
        if !own {
            return Err(format!(
                "linux.sysctl.{key}: refused: the container has no {typ} namespace of its own, \
                 so this would change the host's"
            ));
        }
    }
    Ok(())
}

/// Whether the namespace at `path` is the host's (PID 1's) or the runtime's own. PID 1's may be
/// unreadable (a PID 1 runvm may not trace); the runtime's own is then the host's as runvm sees it.
fn is_hosts_or_runtimes(typ: LinuxNamespaceType, path: &Path) -> Result<bool, String> {
    let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let joined =
        id(path).map_err(|e| format!("linux.namespaces ({typ}): {}: {e}", path.display()))?;
    let name = proc_ns_name(typ);
    Ok(["/proc/1/ns", "/proc/self/ns"]
        .iter()
        .any(|dir| id(&Path::new(dir).join(name)).is_ok_and(|other| other == joined)))
}

fn proc_ns_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(namespaces: &str, sysctl: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","linux":{{"namespaces":{namespaces},"sysctl":{sysctl}}}}}"#
        ))
        .expect("spec")
    }

    #[test]
    fn keys_map_to_their_owning_namespace() {
        use LinuxNamespaceType::*;
        for (key, typ) in [
            ("kernel.msgmax", Ipc),
            ("kernel.sem", Ipc),
            ("kernel.shm_rmid_forced", Ipc),
            ("fs.mqueue.queues_max", Ipc),
            ("net.ipv4.ip_forward", Network),
        ] {
            assert_eq!(owner_of(key), Owner::Namespace(typ), "{key}");
        }
        for key in [
            "kernel.hostname",
            "kernel.domainname",
            "vm.swappiness",
            "kernel.pid_max",
        ] {
            assert!(matches!(owner_of(key), Owner::Refused(_)), "{key}");
        }
    }

    #[test]
    fn slashes_and_dots_are_the_same_key() {
        let e = check(&spec(r#"[]"#, r#"{"fs/mqueue/queues_max":"77"}"#)).unwrap_err();
        assert!(e.contains("ipc namespace"), "{e}");
        assert!(normalise("net..ipv4").is_err());
        assert!(normalise(".net").is_err());
    }

    #[test]
    fn a_new_namespace_of_the_owning_kind_allows_the_key() {
        let s = spec(
            r#"[{"type":"ipc"},{"type":"network"}]"#,
            r#"{"kernel.shmmax":"1","net.ipv4.ip_forward":"1"}"#,
        );
        assert_eq!(check(&s), Ok(()));
    }

    #[test]
    fn a_missing_namespace_refuses_the_key_by_name() {
        let e = check(&spec(
            r#"[{"type":"ipc"}]"#,
            r#"{"net.core.somaxconn":"1"}"#,
        ))
        .unwrap_err();
        assert!(e.starts_with("linux.sysctl.net.core.somaxconn:"), "{e}");
        assert!(e.contains("net namespace"), "{e}");
    }

    #[test]
    fn joining_the_hosts_namespace_by_path_is_not_its_own() {
        let e = check(&spec(
            r#"[{"type":"ipc","path":"/proc/self/ns/ipc"}]"#,
            r#"{"kernel.msgmax":"1"}"#,
        ))
        .unwrap_err();
        assert!(e.contains("ipc namespace"), "{e}");
        let e = check(&spec(
            r#"[{"type":"network","path":"/proc/self/ns/net"}]"#,
            r#"{"net.ipv4.ip_forward":"1"}"#,
        ))
        .unwrap_err();
        assert!(e.contains("net namespace"), "{e}");
    }

    #[test]
    fn a_missing_namespace_path_is_named() {
        let e = check(&spec(
            r#"[{"type":"ipc","path":"/no/such/ns"}]"#,
            r#"{"kernel.msgmax":"1"}"#,
        ))
        .unwrap_err();
        assert!(e.contains("/no/such/ns"), "{e}");
    }
}
