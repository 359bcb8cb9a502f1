//! Serving one request: the container operations on runvm's engine (`runvm_runtime`).

use std::path::{Path, PathBuf};

use runvm_agent_protocol::{check_version, ReplyBody, RequestBody, Stdio, PROTOCOL_VERSION};
use runvm_runtime::container::StoreError;
use runvm_runtime::lifecycle::{self, CreateOptions, ExecOptions};
use serde_json::{json, Value};

use crate::serve::{Agent, Stream};
use crate::stdio;

impl Agent {
    pub fn handle(&mut self, body: RequestBody) -> Result<ReplyBody, String> {
        if !self.greeted && !matches!(body, RequestBody::Hello { .. }) {
            return Err("Hello must be the first request".into());
        }
        match body {
            RequestBody::Hello { version } => {
                check_version(version)?;
                self.greeted = true;
                Ok(hello())
            }
            RequestBody::SetClock { unix_secs, nanos } => self.set_clock(unix_secs, nanos),
            RequestBody::CreateContainer {
                container_id,
                config,
                stream,
                stdio,
            } => self.create(container_id, config, stream, stdio),
            RequestBody::StartContainer { container_id } => self.start(&container_id),
            RequestBody::Exec {
                container_id,
                process,
                stream,
                stdio,
            } => self.exec(container_id, process, stream, stdio),
            RequestBody::Signal {
                container_id,
                stream,
                signal,
                all,
            } => self.signal(&container_id, stream, signal, all),
            RequestBody::ResizeTty { stream, rows, cols } => {
                let stream = self
                    .streams
                    .get(&stream)
                    .ok_or_else(|| format!("ResizeTty: no live stream {stream}"))?;
                let master = stream
                    .io
                    .tty
                    .as_ref()
                    .ok_or("ResizeTty: that stream has no tty (it was started with pipes)")?;
                stdio::resize(master, rows, cols)?;
                Ok(ReplyBody::Done)
            }
            RequestBody::Processes { container_id } => {
                self.known(&container_id)?;
                let (_, state) = self.open(&container_id)?;
                let pids = lifecycle::pids(&state).map_err(|e| e.to_string())?;
                Ok(ReplyBody::Processes { pids })
            }
            RequestBody::DeleteContainer { container_id } => {
                self.delete_container(&container_id)?;
                Ok(ReplyBody::Done)
            }
            RequestBody::Shutdown => Ok(ReplyBody::Done),
        }
    }

    fn set_clock(&self, unix_secs: i64, nanos: u32) -> Result<ReplyBody, String> {
        if nanos >= 1_000_000_000 {
            return Err(format!("SetClock: nanos {nanos} is not below 1000000000"));
        }
        if !self.guest {
            return Err("SetClock: only the guest's clock is set (this agent runs on a host, not as a VM's PID 1)".into());
        }
        let ts = nix::sys::time::TimeSpec::new(unix_secs, nanos.into());
        nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts)
            .map_err(|e| format!("SetClock: clock_settime: {e}"))?;
        Ok(ReplyBody::Done)
    }

    fn known(&self, id: &str) -> Result<(), String> {
        if self.containers.contains(id) {
            Ok(())
        } else {
            Err(format!("no container {id:?} in this agent"))
        }
    }

    fn open(
        &self,
        id: &str,
    ) -> Result<
        (
            runvm_runtime::container::ContainerDir,
            runvm_oci::ContainerState,
        ),
        String,
    > {
        let dir = self.store.open(id).map_err(|e| e.to_string())?;
        let state = dir.load().map_err(|e| e.to_string())?;
        Ok((dir, state))
    }

    fn free_stream(&self, stream: u32) -> Result<(), String> {
        if self.streams.contains_key(&stream) {
            return Err(format!("stream {stream} is in use by a running process"));
        }
        Ok(())
    }

    fn bundle_dir(&self, id: &str) -> PathBuf {
        self.bundles.join(id)
    }

    fn create(
        &mut self,
        id: String,
        mut config: Value,
        stream: u32,
        stdio: Stdio,
    ) -> Result<ReplyBody, String> {
        runvm_oci::validate_id(&id).map_err(|e| format!("CreateContainer: {e}"))?;
        if self.containers.contains(&id) {
            return Err(format!("container {id:?} already exists"));
        }
        self.free_stream(stream)?;
        check_root(&config)?;
        let process = config
            .get_mut("process")
            .ok_or("config: process is missing (create needs a process to run)")?;
        set_terminal(process, stdio)?;
        let bundle = self.bundle_dir(&id);
        write_config(&bundle, &config)?;
        let launched = (|| {
            let (prepared, child) = stdio::prepare(stdio)?;
            let opts = CreateOptions {
                id: id.clone(),
                bundle: bundle.clone(),
                console_stream: child.console.clone(),
                stdio: child.raw(),
                // As the guest's PID 1 the root is the initramfs, which pivot_root cannot
                // leave (EINVAL): the engine moves the rootfs onto / and chroots instead.
                no_pivot: std::process::id() == 1,
                ..Default::default()
            };
            let created = lifecycle::create(&self.store, &opts).map_err(|e| e.to_string())?;
            // Our copies of the child's ends go, so its outputs reach EOF when it exits.
            drop(child);
            // Dropping the dir releases the state lock for start and the others.
            let init = created.init;
            drop(created.dir);
            Ok::<_, String>((init, prepared))
        })();
        let (init, prepared) = match launched {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&bundle);
                return Err(e);
            }
        };
        let io = match prepared.finish() {
            Ok(io) => io,
            Err(e) => {
                let _ = self.force_delete(&id);
                let _ = std::fs::remove_dir_all(&bundle);
                return Err(e);
            }
        };
        let pid = init.pid;
        self.streams.insert(
            stream,
            Stream {
                container: id.clone(),
                pid,
                pidfd: init.pidfd,
                io,
                status: None,
            },
        );
        self.containers.insert(id);
        Ok(ReplyBody::Created { pid })
    }

    fn start(&mut self, id: &str) -> Result<ReplyBody, String> {
        self.known(id)?;
        let (dir, mut state) = self.open(id)?;
        lifecycle::start(&dir, &mut state).map_err(|e| e.to_string())?;
        Ok(ReplyBody::Started { pid: state.pid })
    }

    fn exec(
        &mut self,
        id: String,
        mut process: Value,
        stream: u32,
        stdio: Stdio,
    ) -> Result<ReplyBody, String> {
        self.known(&id)?;
        self.free_stream(stream)?;
        set_terminal(&mut process, stdio)?;
        let text = serde_json::to_vec(&process).map_err(|e| format!("Exec: process: {e}"))?;
        let process = runvm_oci::parse_process(&text, Path::new("Exec.process"))
            .map_err(|e| e.to_string())?;
        let (dir, state) = self.open(&id)?;
        let (prepared, child) = stdio::prepare(stdio)?;
        let opts = ExecOptions {
            process,
            console_socket: None,
            console_stream: child.console.clone(),
            pid_file: None,
            preserve_fds: 0,
            stdio: child.raw(),
        };
        let launched = lifecycle::exec(&dir, &state, &opts).map_err(|e| e.to_string())?;
        drop(opts);
        drop(child);
        drop(dir);
        let io = match prepared.finish() {
            Ok(io) => io,
            Err(e) => {
                launched.kill_and_reap();
                return Err(e);
            }
        };
        let pid = launched.pid;
        self.streams.insert(
            stream,
            Stream {
                container: id,
                pid,
                pidfd: launched.pidfd,
                io,
                status: None,
            },
        );
        Ok(ReplyBody::Started { pid })
    }

    fn signal(
        &mut self,
        id: &str,
        stream: Option<u32>,
        signal: i32,
        all: bool,
    ) -> Result<ReplyBody, String> {
        self.known(id)?;
        if !(1..=64).contains(&signal) {
            return Err(format!("Signal: signal {signal} is out of range 1..64"));
        }
        match stream {
            Some(n) if !all => {
                let stream = self
                    .streams
                    .get(&n)
                    .filter(|s| s.container == id && s.status.is_none())
                    .ok_or_else(|| format!("Signal: no live stream {n} in container {id:?}"))?;
                runvm_runtime::process::launch::send_signal(&stream.pidfd, signal)
                    .map_err(|e| format!("Signal: stream {n} (pid {}): {e}", stream.pid))?;
            }
            _ => {
                let (dir, state) = self.open(id)?;
                lifecycle::kill(&dir, &state, signal, all).map_err(|e| e.to_string())?;
            }
        }
        Ok(ReplyBody::Done)
    }

    /// Like `delete --force`: kills what is left, removes cgroup, state and bundle. A container
    /// that is already gone is not an error.
    pub fn delete_container(&mut self, id: &str) -> Result<(), String> {
        runvm_oci::validate_id(id).map_err(|e| format!("DeleteContainer: {e}"))?;
        let result = self.force_delete(id);
        if result.is_ok() {
            self.containers.remove(id);
            let bundle = self.bundle_dir(id);
            if bundle.exists() {
                std::fs::remove_dir_all(&bundle)
                    .map_err(|e| format!("{}: {e}", bundle.display()))?;
            }
        }
        result
    }

    fn force_delete(&self, id: &str) -> Result<(), String> {
        let dir = match self.store.open(id) {
            Ok(dir) => dir,
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        match dir.load() {
            Ok(state) => lifecycle::delete(dir, &state, true).map_err(|e| e.to_string()),
            // A create cut short before it wrote state.json: nothing else of it exists.
            Err(_) => dir.remove().map_err(|e| e.to_string()),
        }
    }
}

fn hello() -> ReplyBody {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    ReplyBody::Hello {
        version: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel_release: read("/proc/sys/kernel/osrelease"),
        boot_id: read("/proc/sys/kernel/random/boot_id"),
    }
}

/// The host resolves the rootfs to its place in the guest; a relative path would resolve
/// against the agent's bundle directory, which holds no rootfs.
fn check_root(config: &Value) -> Result<(), String> {
    match config.pointer("/root/path").and_then(Value::as_str) {
        Some(path) if Path::new(path).is_absolute() => Ok(()),
        Some(path) => Err(format!(
            "config: root.path {path:?} must be absolute (the rootfs's path in the guest)"
        )),
        None => Err("config: root.path is missing".into()),
    }
}

/// `process.terminal` follows the requested stdio, and a tty starts at the requested size.
fn set_terminal(process: &mut Value, stdio: Stdio) -> Result<(), String> {
    let obj = process
        .as_object_mut()
        .ok_or("process: must be a JSON object")?;
    match stdio {
        Stdio::Pipes { .. } => {
            obj.insert("terminal".into(), json!(false));
            obj.remove("consoleSize");
        }
        Stdio::Tty { rows, cols } => {
            obj.insert("terminal".into(), json!(true));
            obj.insert("consoleSize".into(), json!({"height": rows, "width": cols}));
        }
    }
    Ok(())
}

fn write_config(bundle: &Path, config: &Value) -> Result<(), String> {
    std::fs::create_dir_all(bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
    let path = bundle.join(runvm_oci::CONFIG_FILE);
    let text = serde_json::to_vec_pretty(config).map_err(|e| format!("config: {e}"))?;
    std::fs::write(&path, text).map_err(|e| {
        let _ = std::fs::remove_dir_all(bundle);
        format!("{}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_path_must_be_absolute() {
        assert!(check_root(&json!({"root": {"path": "/run/runvm/share/c1"}})).is_ok());
        let err = check_root(&json!({"root": {"path": "rootfs"}})).unwrap_err();
        assert!(
            err.contains("root.path") && err.contains("absolute"),
            "{err}"
        );
        assert!(check_root(&json!({})).unwrap_err().contains("missing"));
    }

    #[test]
    fn terminal_follows_stdio() {
        let mut p =
            json!({"args": ["sh"], "terminal": true, "consoleSize": {"height": 1, "width": 1}});
        set_terminal(&mut p, Stdio::Pipes { stdin: true }).unwrap();
        assert_eq!(p["terminal"], json!(false));
        assert!(p.get("consoleSize").is_none());
        set_terminal(
            &mut p,
            Stdio::Tty {
                rows: 30,
                cols: 100,
            },
        )
        .unwrap();
        assert_eq!(p["consoleSize"], json!({"height": 30, "width": 100}));
        assert!(set_terminal(&mut json!(["sh"]), Stdio::Pipes { stdin: false }).is_err());
    }
}
