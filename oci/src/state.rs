//! `state.json`: what runvm remembers about a container between commands.
//!
//! It holds the OCI state fields plus what later commands need without the bundle (which may be
//! gone by `delete`): the init process's start time (to tell a live init from a reused pid), the
//! cgroup path and the hooks that run after `create`.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Hook;
use serde::{Deserialize, Serialize};

use crate::OciError;

/// The OCI container status, plus `paused` as runc reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// Hooks that run after `create` has returned, kept so `start` and `delete` need no bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookSet {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poststart: Vec<Hook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poststop: Vec<Hook>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub oci_version: String,
    pub id: String,
    /// The status recorded at the last transition; the live status is derived by the runtime.
    pub status: Status,
    pub pid: i32,
    /// Start time of `pid` in clock ticks since boot (/proc/PID/stat field 22).
    pub pid_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// RFC 3339 creation time.
    pub created: String,
    /// The owner's uid (the user who ran `create`).
    pub owner: u32,
    /// linux.cgroupsPath as configured ("" when unset).
    pub cgroup_path: PathBuf,
    /// The runtime's record of the cgroup it made (opaque to this crate).
    #[serde(default)]
    pub cgroup: serde_json::Value,
    #[serde(default)]
    pub hooks: HookSet,
    /// The container shares the host's mount namespace: its mounts live below a self-bind of
    /// the rootfs on the host, which `delete` must detach.
    #[serde(default)]
    pub rootfs_mounted_on_host: bool,
    /// The isolation class the sandbox runs in (states written before classes existed are
    /// container-mode ones).
    #[serde(default)]
    pub isolation: crate::IsolationClass,
}

impl ContainerState {
    /// Reads a state file; a damaged file is reported with the field that broke.
    pub fn load(path: &Path) -> Result<Self, OciError> {
        let text = fs::read(path).map_err(|source| OciError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_slice(&text, path)
    }

    /// Parses state file text; `file` only names the source in errors.
    pub fn from_slice(text: &[u8], file: &Path) -> Result<Self, OciError> {
        let mut de = serde_json::Deserializer::from_slice(text);
        serde_path_to_error::deserialize(&mut de).map_err(|err| OciError::Parse {
            file: file.to_path_buf(),
            field: err.path().to_string(),
            message: err.into_inner().to_string(),
        })
    }

    /// Writes the state atomically (temp file + rename), so a crash never leaves half a file.
    pub fn save(&self, path: &Path) -> Result<(), OciError> {
        let io = |source| OciError::Io {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("json.tmp");
        let data = serde_json::to_vec(self).map_err(|e| io(std::io::Error::other(e)))?;
        let mut file = fs::File::create(&tmp).map_err(io)?;
        file.write_all(&data).map_err(io)?;
        drop(file);
        fs::rename(&tmp, path).map_err(io)
    }

    /// The state as the OCI spec defines it (what `state` prints and hooks read on stdin),
    /// with runc's extra fields `rootfs`, `created` and `owner`, and runvm's `isolation` (the
    /// annotations stay the config's: hooks compare them).
    pub fn to_oci(&self, status: Status) -> serde_json::Value {
        serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": status,
            "pid": if status == Status::Stopped { 0 } else { self.pid },
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": owner_name(self.owner),
            "isolation": self.isolation,
            "annotations": self.annotations,
        })
    }
}

/// runc reports the owner as a user name; "" when it cannot be found.
fn owner_name(uid: u32) -> String {
    if uid == 0 {
        return "root".into();
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ContainerState {
        ContainerState {
            oci_version: "1.2.0".into(),
            id: "c1".into(),
            status: Status::Created,
            pid: 42,
            pid_start_time: 7,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            annotations: HashMap::from([("k".into(), "v".into())]),
            created: "2026-11-22T00:00:00Z".into(),
            owner: 0,
            cgroup_path: "/runvm/c1".into(),
            cgroup: serde_json::json!({"layout": "v2"}),
            hooks: HookSet::default(),
            rootfs_mounted_on_host: false,
            isolation: crate::IsolationClass::Container,
        }
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        sample().save(&path).unwrap();
        assert_eq!(ContainerState::load(&path).unwrap(), sample());
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn damaged_state_names_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, r#"{"ociVersion":"1","id":"c","status":"weird"}"#).unwrap();
        let err = ContainerState::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("state.json") && err.contains("status"),
            "{err}"
        );
    }

    #[test]
    fn oci_view_zeroes_pid_when_stopped() {
        let s = sample();
        assert_eq!(s.to_oci(Status::Running)["pid"], 42);
        assert_eq!(s.to_oci(Status::Stopped)["pid"], 0);
        assert_eq!(s.to_oci(Status::Running)["status"], "running");
    }
}
