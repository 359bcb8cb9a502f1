//! Which namespaces a container gets: created at clone time, created later by init, or joined
//! by path.
//!
//! - New user, pid, net, ipc, uts and mount namespaces are created by the clone of init.
//! - The cgroup namespace is created by init *after* the cli has moved it into its cgroup, so
//!   that the namespace's root is the container's cgroup.
//! - The time namespace is created by init with unshare(2): its offsets can only be written
//!   before a process enters it, and init enters it at execve.
//! - A pid namespace given by path is joined by the cli itself (setns of a pid namespace only
//!   affects children), all other paths by init.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::sched::{setns, CloneFlags};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

#[derive(Debug, Clone)]
pub struct NamespacePlan {
    /// Flags for clone3 (namespaces init is born in).
    pub clone_flags: CloneFlags,
    pub new_cgroup: bool,
    pub new_time: bool,
    pub new_user: bool,
    pub new_pid: bool,
    pub new_net: bool,
    pub new_mount: bool,
    /// Namespaces init joins, user first.
    pub joins: Vec<(LinuxNamespaceType, PathBuf)>,
    /// A pid namespace the cli joins before cloning.
    pub pid_join: Option<PathBuf>,
}

pub fn flag_of(typ: LinuxNamespaceType) -> CloneFlags {
    match typ {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME (0x80); nix does not name it.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(0x80),
    }
}

impl NamespacePlan {
    pub fn from_spec(namespaces: &[LinuxNamespace]) -> Result<Self, String> {
        let mut plan = NamespacePlan {
            clone_flags: CloneFlags::empty(),
            new_cgroup: false,
            new_time: false,
            new_user: false,
            new_pid: false,
            new_net: false,
            new_mount: false,
            joins: Vec::new(),
            pid_join: None,
        };
        for ns in namespaces {
            let typ = ns.typ();
            match ns.path() {
                Some(path) if typ == LinuxNamespaceType::Pid => plan.pid_join = Some(path.clone()),
                Some(path) => plan.joins.push((typ, path.clone())),
                None => match typ {
                    LinuxNamespaceType::Cgroup => plan.new_cgroup = true,
                    LinuxNamespaceType::Time => plan.new_time = true,
                    _ => plan.clone_flags |= flag_of(typ),
                },
            }
        }
        plan.new_user = plan.clone_flags.contains(CloneFlags::CLONE_NEWUSER);
        plan.new_pid = plan.clone_flags.contains(CloneFlags::CLONE_NEWPID);
        plan.new_net = plan.clone_flags.contains(CloneFlags::CLONE_NEWNET);
        plan.new_mount = plan.clone_flags.contains(CloneFlags::CLONE_NEWNS);
        // A user namespace path must be joined before any other, so the others are entered with
        // that namespace's privileges.
        plan.joins
            .sort_by_key(|(typ, _)| *typ != LinuxNamespaceType::User);
        if plan.new_user && !plan.joins.is_empty() {
            // Joining namespaces owned by the host's user namespace from inside a new one fails
            // for lack of privilege there; say so instead of failing obscurely in init.
            let (typ, path) = &plan.joins[0];
            return Err(format!(
                "linux.namespaces: joining the {typ} namespace {} together with a new user namespace is not supported yet",
                path.display()
            ));
        }
        Ok(plan)
    }

    /// Whether init lives in the same mount namespace as the cli (no new or joined one).
    pub fn shares_host_mounts(&self) -> bool {
        !self.new_mount
            && !self
                .joins
                .iter()
                .any(|(t, _)| *t == LinuxNamespaceType::Mount)
    }
}

/// Whether a config leaves init in the host's mount namespace (no mount namespace listed).
pub fn config_shares_host_mounts(spec: &oci_spec::runtime::Spec) -> bool {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    !namespaces
        .into_iter()
        .flatten()
        .any(|ns| ns.typ() == LinuxNamespaceType::Mount)
}

/// Opens and joins one namespace by path; the error names the type and path.
pub fn join(typ: LinuxNamespaceType, path: &PathBuf) -> Result<(), String> {
    let file = File::open(path)
        .map_err(|e| format!("linux.namespaces ({typ}): {}: {e}", path.display()))?;
    setns(file.as_fd(), flag_of(typ))
        .map_err(|e| format!("linux.namespaces ({typ}): setns {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(json: &str) -> Vec<LinuxNamespace> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn splits_new_joined_and_deferred_namespaces() {
        let plan = NamespacePlan::from_spec(&ns(
            r#"[{"type":"pid"},{"type":"mount"},{"type":"cgroup"},{"type":"time"},
                {"type":"network","path":"/proc/1/ns/net"}]"#,
        ))
        .unwrap();
        assert_eq!(
            plan.clone_flags,
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS
        );
        assert!(plan.new_cgroup && plan.new_time && plan.new_pid && !plan.new_net);
        assert_eq!(plan.joins.len(), 1);
        assert!(!plan.shares_host_mounts());
    }

    #[test]
    fn pid_path_is_joined_by_the_cli_and_user_path_first() {
        let plan = NamespacePlan::from_spec(&ns(
            r#"[{"type":"ipc","path":"/a"},{"type":"user","path":"/u"},{"type":"pid","path":"/p"}]"#,
        ))
        .unwrap();
        assert_eq!(plan.pid_join, Some(PathBuf::from("/p")));
        assert_eq!(plan.joins[0].0, LinuxNamespaceType::User);
    }

    #[test]
    fn new_user_with_joins_is_refused_clearly() {
        let err =
            NamespacePlan::from_spec(&ns(r#"[{"type":"user"},{"type":"network","path":"/n"}]"#))
                .unwrap_err();
        assert!(err.starts_with("linux.namespaces"), "{err}");
    }
}
