//! Throw-away OCI bundles whose rootfs is Debian's static busybox.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::ids::unique_id;
use crate::leftovers::cgroup_dirs;

const BUSYBOX: &str = "/bin/busybox";

/// A bundle directory (`config.json` + `rootfs/`) removed on drop, with a
/// container id and cgroups path that are unique to this bundle.
pub struct BusyboxBundle {
    dir: TempDir,
    config: Value,
    id: String,
    cgroups_path: String,
}

impl BusyboxBundle {
    /// A bundle whose id is prefixed with the test binary's name, for readable logs.
    pub fn new() -> Self {
        Self::with_prefix(&test_binary_name())
    }

    pub fn with_prefix(prefix: &str) -> Self {
        let id = unique_id(prefix);
        let cgroups_path = format!("/runvm-test/{id}");
        let dir = tempfile::Builder::new()
            .prefix("runvm-bundle-")
            .tempdir()
            .expect("create bundle tempdir");
        // A mapped (user-namespace) root must be able to walk into the bundle.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod bundle dir");
        build_rootfs(&dir.path().join("rootfs"));
        let bundle = Self {
            config: default_config(&cgroups_path),
            dir,
            id,
            cgroups_path,
        };
        bundle.write_config();
        bundle
    }

    /// The container id tests should use with this bundle.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_str(&self) -> &str {
        self.dir.path().to_str().expect("tempdir paths are UTF-8")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn cgroups_path(&self) -> &str {
        &self.cgroups_path
    }

    pub fn config(&self) -> &Value {
        &self.config
    }

    /// Edit the config in memory; call [`write_config`](Self::write_config) after.
    pub fn config_mut(&mut self) -> &mut Value {
        &mut self.config
    }

    pub fn write_config(&self) {
        let text = serde_json::to_string_pretty(&self.config).expect("serialize config");
        std::fs::write(self.path().join("config.json"), text).expect("write config.json");
    }

    /// Sets `process.args` and writes the config.
    pub fn set_args(&mut self, args: &[&str]) {
        self.config["process"]["args"] = json!(args);
        self.write_config();
    }

    /// Runs `sh -c script` as the container process (config written).
    pub fn set_script(&mut self, script: &str) {
        self.set_args(&["sh", "-c", script]);
    }
}

impl Default for BusyboxBundle {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for BusyboxBundle {
    fn drop(&mut self) {
        // Only our own unique leaf cgroups: rmdir fails harmlessly if still in use.
        for dir in cgroup_dirs(&self.cgroups_path) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn test_binary_name() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_ref()
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "t".into());
    // cargo names test binaries `<file>-<hash>`.
    stem.split('-').next().unwrap_or("t").to_string()
}

fn busybox_applets() -> &'static [String] {
    static APPLETS: OnceLock<Vec<String>> = OnceLock::new();
    APPLETS.get_or_init(|| {
        let out = Command::new(BUSYBOX)
            .arg("--list")
            .output()
            .expect("run busybox --list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "busybox")
            .map(String::from)
            .collect()
    })
}

fn build_rootfs(rootfs: &Path) {
    for dir in [
        "bin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "home/test",
        "mnt",
    ] {
        std::fs::create_dir_all(rootfs.join(dir)).expect("create rootfs dir");
    }
    std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod rootfs/tmp");
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in busybox_applets() {
        symlink("busybox", rootfs.join("bin").join(applet)).expect("busybox applet symlink");
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\ntest:x:1000:1000:test:/home/test:/bin/sh\n",
    )
    .expect("write passwd");
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\ntest:x:1000:\nextra:x:2000:\n",
    )
    .expect("write group");
}

/// Capabilities `runc spec` grants; tests compare against their bitmask.
pub const DEFAULT_CAPS: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/// A config close to `runc spec`'s, but with a writable root and no
/// terminal so tests can capture output and write scratch files.
pub fn default_config(cgroups_path: &str) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {
                "bounding": DEFAULT_CAPS,
                "effective": DEFAULT_CAPS,
                "permitted": DEFAULT_CAPS,
                "ambient": DEFAULT_CAPS
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "runvm-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}
