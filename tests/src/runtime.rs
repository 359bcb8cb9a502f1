//! Driving the runtime binary with a private `--root`, and cleaning up after.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::binary::runtime_bin;
use crate::bundle::BusyboxBundle;
use crate::leftovers::assert_no_leftovers;
use crate::output::assert_success;

/// How long any single runtime command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The runtime binary with its own state root; force-deletes every tracked
/// container on drop so a failing test does not leak containers.
pub struct Runtime {
    root: TempDir,
    bin: PathBuf,
    tracked: Mutex<Vec<String>>,
}

impl Runtime {
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("runvm-root-")
            .tempdir()
            .expect("create runtime root");
        Self {
            root,
            bin: runtime_bin(),
            tracked: Mutex::new(Vec::new()),
        }
    }

    /// The `--root` state directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn root_str(&self) -> &str {
        self.root.path().to_str().expect("tempdir paths are UTF-8")
    }

    /// Remember `id` so drop force-deletes it.
    pub fn track(&self, id: &str) {
        let mut tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        if !tracked.iter().any(|t| t == id) {
            tracked.push(id.to_string());
        }
    }

    /// `runtime --root ROOT ARGS...`, stdin null, output captured.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_timeout(args, COMMAND_TIMEOUT)
    }

    /// Like [`run`](Self::run) but with a caller-chosen timeout (panics on expiry).
    ///
    /// stdout/stderr go to unnamed files, not pipes: after `create` or
    /// `run --detach` the container inherits them and would keep a pipe open.
    pub fn run_with_timeout(&self, args: &[&str], timeout: Duration) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(self.root.path()).args(args);
        self.run_command(cmd, args, timeout)
    }

    /// Runs a command prepared by the caller (extra global flags, env...).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(self.root.path());
        cmd
    }

    pub fn run_command(&self, mut cmd: Command, what: &[&str], timeout: Duration) -> Output {
        let mut out_file = tempfile::tempfile().expect("stdout capture file");
        let mut err_file = tempfile::tempfile().expect("stderr capture file");
        cmd.stdin(Stdio::null())
            .stdout(out_file.try_clone().expect("dup capture file"))
            .stderr(err_file.try_clone().expect("dup capture file"));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for runtime") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("runtime {what:?} did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Output {
            status,
            stdout: read_all(&mut out_file),
            stderr: read_all(&mut err_file),
        }
    }

    /// `create --bundle B ID` (tracked), with extra flags before the id.
    pub fn create(&self, bundle: &BusyboxBundle, extra: &[&str]) -> Output {
        self.track(bundle.id());
        let mut args = vec!["create", "--bundle", bundle.path_str()];
        args.extend_from_slice(extra);
        args.push(bundle.id());
        self.run(&args)
    }

    /// `create` that must succeed.
    pub fn create_ok(&self, bundle: &BusyboxBundle) {
        let out = self.create(bundle, &[]);
        assert_success(&out, "create");
    }

    pub fn start(&self, id: &str) -> Output {
        self.run(&["start", id])
    }

    pub fn kill(&self, id: &str, signal: &str) -> Output {
        self.run(&["kill", id, signal])
    }

    pub fn delete(&self, id: &str) -> Output {
        self.run(&["delete", id])
    }

    pub fn delete_force(&self, id: &str) -> Output {
        self.run(&["delete", "--force", id])
    }

    /// Foreground `run --bundle B ID` of the bundle as configured (tracked).
    pub fn run_bundle(&self, bundle: &BusyboxBundle) -> Output {
        self.track(bundle.id());
        self.run(&["run", "--bundle", bundle.path_str(), bundle.id()])
    }

    /// Runs `sh -c script` in the bundle in the foreground and returns its output.
    pub fn run_script(&self, bundle: &mut BusyboxBundle, script: &str) -> Output {
        bundle.set_script(script);
        self.run_bundle(bundle)
    }

    /// `state ID` parsed; panics when the command fails.
    pub fn state(&self, id: &str) -> Value {
        let out = self.run(&["state", id]);
        assert_success(&out, &format!("state {id}"));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "state {id}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `state ID` when it succeeds, None otherwise.
    pub fn try_state(&self, id: &str) -> Option<Value> {
        let out = self.run(&["state", id]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Polls `state` until its status is `want`; panics after `timeout`.
    pub fn wait_for_status(&self, id: &str, want: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.state(id);
            if state["status"] == want {
                return state;
            }
            if Instant::now() > deadline {
                panic!("{id} did not reach status {want} within {timeout:?}: {state}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (10 s at most) until the bundle's container has stopped, deletes it and asserts
    /// that nothing of it is left: the common end of a lifecycle test.
    pub fn delete_once_stopped(&self, bundle: &BusyboxBundle) {
        self.wait_for_status(bundle.id(), "stopped", Duration::from_secs(10));
        assert_success(&self.delete(bundle.id()), "delete once stopped");
        self.assert_no_leftovers(bundle);
    }

    /// [`assert_no_leftovers`] for a bundle's id, cgroup and path under this root.
    pub fn assert_no_leftovers(&self, bundle: &BusyboxBundle) {
        assert_no_leftovers(
            self.root(),
            bundle.id(),
            bundle.cgroups_path(),
            bundle.path(),
        );
    }

    /// Asserts the state root holds no entries at all (e.g. after a refused id).
    pub fn assert_root_empty(&self) {
        let entries: Vec<_> = std::fs::read_dir(self.root())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(entries.is_empty(), "state root not empty: {entries:?}");
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let tracked = std::mem::take(self.tracked.get_mut().unwrap_or_else(|e| e.into_inner()));
        for id in tracked {
            let mut cmd = Command::new(&self.bin);
            cmd.arg("--root")
                .arg(self.root.path())
                .args(["delete", "--force", &id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // Never panic here (drop may run while unwinding): bounded wait, then kill.
            if let Ok(mut child) = cmd.spawn() {
                let deadline = Instant::now() + Duration::from_secs(30);
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn read_all(file: &mut File) -> Vec<u8> {
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(0)).is_ok() {
        let _ = file.read_to_end(&mut buf);
    }
    buf
}
