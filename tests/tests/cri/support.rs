//! CRI calls through tests/clients/cri/cri.py (DIR/bin/cri), pods that clean up after a
//! failing test, and the checks that a removed pod left nothing on the host.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::Client;
use runvm_tests::stderr_of;

/// The busybox image setup.sh imported into the CRI plugin's namespace.
pub use crate::harness::IMAGE;
/// containerd's namespace for everything the CRI plugin creates.
pub const K8S_NAMESPACE: &str = "k8s.io";
/// Cgroup parent of the tests' pods (teardown.sh removes what is left under it).
pub const CGROUP_PARENT: &str = "runvm-clients-cri";
/// The handler that runs runvm through containerd's runc shim (`BinaryName`).
pub const HANDLER_RUNC_SHIM: &str = "runvm";
/// The handler that runs runvm's own shim, `io.containerd.runvm.v2`.
pub const HANDLER_RUNVM_SHIM: &str = "runvm-shim";
const SHIM_BINARY: &str = "containerd-shim-runvm-v2";
/// runvm's shim keeps runvm state in `<this>/<containerd namespace>/<id>`.
const RUNVM_SHIM_STATE: &str = "/run/containerd/runvm";

/// The CRI plugin of the harness's second containerd (tests/clients/setup.sh `setup_cri`).
pub struct Cri {
    pub client: Client,
    pub dir: PathBuf,
}

impl Cri {
    /// The CRI endpoint when setup.sh made it ready for `handler`; otherwise prints `SKIP`.
    pub fn ready(handler: &str) -> Option<Self> {
        let client = Client::ready("cri")?;
        let dir = PathBuf::from(std::env::var_os("RUNVM_CLIENTS_DIR")?);
        if handler == HANDLER_RUNVM_SHIM && !dir.join("shims").join(SHIM_BINARY).is_file() {
            println!(
                "SKIP: {} missing: build it (cargo build -p runvm-shim) before tests/clients/setup.sh",
                dir.join("shims").join(SHIM_BINARY).display()
            );
            return None;
        }
        Some(Self { client, dir })
    }

    /// One CRI call; Err holds cri.py's "grpc error: CODE: DETAILS".
    pub fn call(&self, method: &str, request: &Value) -> Result<Value, String> {
        let body = request.to_string();
        let out = self.client.run("cri", &[method, &body]);
        if !out.status.success() {
            return Err(stderr_of(&out).trim().to_string());
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{method}: reply is not JSON ({e}): {:?}", out.stdout))
    }

    /// Like [`call`](Self::call) but the test fails when the call does.
    pub fn must(&self, method: &str, request: Value) -> Value {
        self.call(method, &request)
            .unwrap_or_else(|e| panic!("CRI {method} {request} failed: {e}"))
    }

    /// The directory the CRI containerd's runc shim passes to runvm as `--root`.
    pub fn runc_root(&self) -> PathBuf {
        self.dir.join("cri/runc").join(K8S_NAMESPACE)
    }

    /// Where runvm keeps container `id`'s state under `handler`: the runc shim's `--root`, or
    /// runvm's shim's per-namespace directory.
    pub fn runvm_state_dir(&self, handler: &str, id: &str) -> PathBuf {
        if handler == HANDLER_RUNVM_SHIM {
            Path::new(RUNVM_SHIM_STATE).join(K8S_NAMESPACE).join(id)
        } else {
            self.runc_root().join(id)
        }
    }

    /// The socket the CRI containerd listens on (its shims name it in their argv).
    pub fn socket(&self) -> String {
        self.dir.join("cri/sock").to_string_lossy().into_owned()
    }

    /// A host-network pod sandbox config named `name`, logging under DIR/cri-pods/`name`.
    pub fn pod_config(&self, name: &str) -> Value {
        let logs = self.dir.join("cri-pods").join(name);
        std::fs::create_dir_all(&logs).expect("pod log directory");
        json!({
            "metadata": {"name": name, "uid": format!("uid-{name}"), "namespace": "runvm-tests"},
            "log_directory": logs.to_string_lossy(),
            "linux": {
                "cgroup_parent": format!("/{CGROUP_PARENT}/{name}"),
                // Host network: containerd sets up no network namespace and calls no CNI plugin.
                "security_context": {"namespace_options": {"network": "NODE"}},
            },
        })
    }
}

/// A pod sandbox that is stopped and removed on drop (with any containers left in it).
pub struct Pod<'a> {
    pub cri: &'a Cri,
    pub id: String,
    pub name: String,
    pub config: Value,
}

impl<'a> Pod<'a> {
    pub fn run(cri: &'a Cri, name: &str, handler: &str) -> Pod<'a> {
        let config = cri.pod_config(name);
        let reply = cri.must(
            "RunPodSandbox",
            json!({"config": config, "runtime_handler": handler}),
        );
        let id = string_at(&reply, "/pod_sandbox_id");
        Pod {
            cri,
            id,
            name: name.to_string(),
            config,
        }
    }

    /// Creates (not starts) a busybox container running `script` in this pod.
    pub fn create_container(&self, name: &str, script: &str) -> String {
        let reply = self.cri.must(
            "CreateContainer",
            json!({
                "pod_sandbox_id": self.id,
                "config": {
                    "metadata": {"name": name},
                    "image": {"image": IMAGE},
                    "command": ["sh", "-c", script],
                    "log_path": format!("{name}.log"),
                    "linux": {"security_context": {"namespace_options": {"network": "NODE"}}},
                },
                "sandbox_config": self.config,
            }),
        );
        string_at(&reply, "/container_id")
    }

    /// The CRI log file of container `name` (what kubectl logs reads).
    pub fn log_of(&self, name: &str) -> String {
        let path = self
            .cri
            .dir
            .join("cri-pods")
            .join(&self.name)
            .join(format!("{name}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        let req = json!({"pod_sandbox_id": self.id});
        let _ = self.cri.call("StopPodSandbox", &req);
        let _ = self.cri.call("RemovePodSandbox", &req);
    }
}

/// The string at JSON pointer `pointer`; panics naming the reply when it is absent.
pub fn string_at(reply: &Value, pointer: &str) -> String {
    reply
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {reply}"))
        .to_string()
}

/// The process id containerd reports in a verbose status reply's `info.info` JSON.
pub fn pid_in_verbose_info(reply: &Value) -> i32 {
    let info = string_at(reply, "/info/info");
    let info: Value = serde_json::from_str(&info)
        .unwrap_or_else(|e| panic!("verbose info is not JSON ({e}): {info}"));
    info.get("pid")
        .and_then(Value::as_i64)
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or_else(|| panic!("no pid in verbose info {info}"))
}

/// The namespace `kind` (net, pid, ...) of process `pid`, as the kernel names it.
pub fn namespace_of(pid: i32, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{kind}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// This test process's namespace `kind` (/proc/1 may be out of reach for root here).
pub fn own_namespace(kind: &str) -> String {
    namespace_of(std::process::id() as i32, kind)
}

/// Waits up to 10 s for process `pid` to be gone.
pub fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "process {pid} still runs 10 s after its pod was removed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Command lines of shims serving `ids` for the CRI containerd.
pub fn shims_for(cri: &Cri, ids: &[&str]) -> Vec<String> {
    let address = cri.socket();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| {
            raw.split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
        })
        .filter(|args| args.first().is_some_and(|a| a.contains("containerd-shim")))
        .filter(|args| {
            args.windows(2)
                .any(|w| w[0] == "-address" && w[1] == address)
        })
        .filter(|args| {
            args.windows(2)
                .any(|w| w[0] == "-id" && ids.contains(&w[1].as_str()))
        })
        .map(|args| args.join(" "))
        .collect()
}

/// Panics when anything of the removed pod `pod` (name `name`) or its containers `ids` is
/// left: a shim, runvm state (either shim's), a cgroup, a mount.
pub fn assert_nothing_left(cri: &Cri, name: &str, ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shims = shims_for(cri, ids);
        if shims.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shims still run 10 s after RemovePodSandbox: {shims:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in ids {
        let handlers = [HANDLER_RUNC_SHIM, HANDLER_RUNVM_SHIM];
        for state in handlers.map(|h| cri.runvm_state_dir(h, id)) {
            assert!(
                !state.exists(),
                "runvm state {} left behind",
                state.display()
            );
        }
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .expect("/sys/fs/cgroup")
        .flatten()
    {
        let pod_cgroup = hierarchy.path().join(CGROUP_PARENT).join(name);
        for id in ids {
            let cgroup = pod_cgroup.join(id);
            assert!(!cgroup.exists(), "cgroup {} left behind", cgroup.display());
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let left: Vec<&str> = mounts
        .lines()
        .filter(|l| ids.iter().any(|id| l.contains(id)))
        .collect();
    assert!(left.is_empty(), "mounts left behind: {left:?}");
}
