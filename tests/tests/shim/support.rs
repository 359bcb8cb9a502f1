//! Helpers for the shim tests: finding the shim, watching containerd's events, and checking
//! that a task left nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::Client;

pub const RUNTIME: &str = "io.containerd.runvm.v2";
/// ctr's namespace in tests/clients/setup.sh, which is also the shim's state sub-directory.
pub const NAMESPACE: &str = "runvm-clients";
const SHIM: &str = "containerd-shim-runvm-v2";

/// The harness directory, when the shim is linked where setup.sh puts it on containerd's PATH.
pub fn shim_ready() -> Option<(Client, PathBuf)> {
    let client = Client::ready("containerd")?;
    let dir = PathBuf::from(std::env::var_os("RUNVM_CLIENTS_DIR")?);
    let shim = dir.join("shims").join(SHIM);
    if !shim.is_file() {
        println!(
            "SKIP: {} missing: build it (cargo build -p runvm-shim) before tests/clients/setup.sh",
            shim.display()
        );
        return None;
    }
    Some((client, dir))
}

/// `ctr run` arguments selecting runvm's shim.
pub fn run_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "--runtime", RUNTIME];
    args.extend_from_slice(extra);
    args
}

/// Removes a task and container through ctr on drop, so a failing test leaks nothing.
pub struct Cleanup<'a> {
    pub client: &'a Client,
    pub id: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let id = self.id.as_str();
        let _ = self
            .client
            .run("ctr", &["task", "kill", "-s", "SIGKILL", id]);
        let _ = self.client.run("ctr", &["task", "delete", "--force", id]);
        let _ = self.client.run("ctr", &["container", "delete", id]);
    }
}

/// The status column of `ctr task ls` for `id`.
pub fn task_status(client: &Client, id: &str) -> Option<String> {
    let out = client.run("ctr", &["task", "ls"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.first() == Some(&id))
        .and_then(|cols| cols.get(2).map(|s| s.to_string()))
}

pub fn wait_status(client: &Client, id: &str, want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let status = task_status(client, id);
        if status.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} did not become {want} within {timeout:?} (last: {status:?})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ctr events` running in the background, its output going to a file.
pub struct EventLog {
    child: Child,
    path: PathBuf,
}

impl EventLog {
    pub fn start(dir: &Path, name: &str) -> EventLog {
        let path = dir.join("scratch").join(format!("{name}.events"));
        std::fs::create_dir_all(path.parent().unwrap()).expect("scratch dir");
        let file = std::fs::File::create(&path).expect("events file");
        let child = Command::new(dir.join("bin/ctr"))
            .arg("events")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ctr events");
        // ctr subscribes asynchronously: give it a moment before the first event.
        std::thread::sleep(Duration::from_millis(300));
        EventLog { child, path }
    }

    /// The task topics published for container `id`, in order ("/tasks/start", ...).
    pub fn topics_for(&self, id: &str) -> Vec<String> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let needle = format!("\"container_id\":\"{id}\"");
        text.lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/")))
            .map(String::from)
            .collect()
    }

    /// The event lines with `topic` for container `id`.
    pub fn lines(&self, id: &str, topic: &str) -> Vec<String> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let needle = format!("\"container_id\":\"{id}\"");
        text.lines()
            .filter(|l| l.contains(&needle) && l.split_whitespace().any(|w| w == topic))
            .map(String::from)
            .collect()
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The running shim serving task `id`: its pid and socket path (from its command line).
pub fn shim_of(id: &str) -> Option<(i32, String)> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_ours = args.first().is_some_and(|a| a.ends_with(SHIM))
            && args.windows(2).any(|w| w[0] == "-id" && w[1] == id)
            && args
                .windows(2)
                .any(|w| w[0] == "-namespace" && w[1] == NAMESPACE);
        if !is_ours {
            continue;
        }
        let socket = args
            .windows(2)
            .find(|w| w[0] == "-socket")
            .map(|w| w[1].trim_start_matches("unix://").to_string())?;
        // The worker is a fork with the same command line: report the parent (the server).
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid: i32 = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let parent_is_shim = std::fs::read(format!("/proc/{ppid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(SHIM))
            .unwrap_or(false);
        if !parent_is_shim {
            return Some((pid, socket));
        }
    }
    None
}

/// Waits (bounded) until no process of the shim for `id` exists, then checks that its socket
/// (when known), runvm state, cgroups and rootfs mount are gone.
pub fn assert_nothing_left(id: &str, socket: Option<&str>, bundle_rootfs_suffix: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while shim_of(id).is_some() || any_shim_process(id) {
        assert!(
            Instant::now() < deadline,
            "shim for {id} still runs 10 s after delete"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(socket) = socket {
        assert!(
            !Path::new(socket).exists(),
            "shim socket {socket} left behind"
        );
    }
    let state = Path::new("/run/containerd/runvm").join(NAMESPACE).join(id);
    assert!(
        !state.exists(),
        "runvm state {} left behind",
        state.display()
    );
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .expect("/sys/fs/cgroup")
        .flatten()
    {
        let cgroup = hierarchy.path().join(NAMESPACE).join(id);
        assert!(!cgroup.exists(), "cgroup {} left behind", cgroup.display());
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    assert!(
        !mounts.lines().any(|l| l.contains(bundle_rootfs_suffix)),
        "rootfs of {id} still mounted"
    );
}

/// Any process (server or worker) whose command line names this task's shim.
fn any_shim_process(id: &str) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .any(|c| c.contains(SHIM) && c.contains(&format!(" -id {id} ")))
}

/// Runs `DIR/bin/ctr ARGS` with `input` on its stdin (a file, so ctr reads it to EOF and then
/// closes the task's stdin); kills it and panics after 60 s.
pub fn ctr_with_stdin(dir: &Path, args: &[&str], input: &str) -> std::process::Output {
    let input_path = dir.join("scratch").join(format!(
        "stdin-{}-{}",
        std::process::id(),
        args.join("_").len()
    ));
    std::fs::create_dir_all(input_path.parent().unwrap()).expect("scratch dir");
    std::fs::write(&input_path, input).expect("stdin file");
    let out_path = input_path.with_extension("out");
    let mut child = Command::new(dir.join("bin/ctr"))
        .args(args)
        .stdin(std::fs::File::open(&input_path).expect("stdin file"))
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ctr");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for ctr") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ctr {args:?} with stdin did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&input_path);
    let _ = std::fs::remove_file(&out_path);
    std::process::Output {
        status,
        stdout,
        stderr: Vec::new(),
    }
}
