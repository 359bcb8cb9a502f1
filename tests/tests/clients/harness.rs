//! The environment tests/clients/setup.sh prepared: client wrappers, the image, the argv log.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use runvm_tests::{require_root, stderr_of, stdout_of};

/// The image setup.sh builds and loads into every client.
pub const IMAGE: &str = "localhost/runvm-busybox:latest";

/// How long one client command may take before the test fails.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// One client ("podman", "containerd", "docker" or "cri") set up by setup.sh.
pub struct Client {
    dir: PathBuf,
}

/// What each client needs installed, to name in the SKIP line.
fn installed_binary(client: &str) -> &'static str {
    match client {
        "podman" => "/usr/bin/podman",
        "containerd" => "/usr/bin/ctr",
        "cri" => "/usr/bin/containerd",
        _ => "/usr/sbin/dockerd",
    }
}

impl Client {
    /// The client when the harness has it ready; otherwise prints `SKIP: <reason>`.
    pub fn ready(client: &str) -> Option<Self> {
        if !require_root() {
            return None;
        }
        let binary = installed_binary(client);
        if !Path::new(binary).is_file() {
            println!("SKIP: {client} is not installed ({binary} missing; tests/clients/setup.sh installs it)");
            return None;
        }
        let Some(dir) = std::env::var_os("RUNVM_CLIENTS_DIR").map(PathBuf::from) else {
            println!(
                "SKIP: RUNVM_CLIENTS_DIR is not set: run tests/clients/run.sh, or \
                 tests/clients/setup.sh DIR and RUNVM_CLIENTS_DIR=DIR"
            );
            return None;
        };
        if let Ok(reason) = std::fs::read_to_string(dir.join(format!("{client}.skip"))) {
            println!("SKIP: {client}: {}", reason.trim());
            return None;
        }
        if !dir.join(format!("{client}.ready")).is_file() {
            println!(
                "SKIP: {client} is not set up in {} (no {client}.ready)",
                dir.display()
            );
            return None;
        }
        Some(Self { dir })
    }

    /// The argv-logging runtime wrapper the clients were configured with.
    pub fn runtime(&self) -> PathBuf {
        self.dir.join("bin/runvm")
    }

    pub fn runtime_str(&self) -> String {
        self.runtime().to_string_lossy().into_owned()
    }

    /// A scratch file path for this test (cidfiles), removed with the harness directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.dir.join("scratch");
        std::fs::create_dir_all(&dir).expect("create harness scratch dir");
        dir.join(name)
    }

    /// Runs `DIR/bin/<tool> ARGS` (podman, ctr or docker with the private flags baked in).
    pub fn run(&self, tool: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(self.dir.join("bin").join(tool));
        cmd.args(args);
        run_timed(cmd, &format!("{tool} {}", args.join(" ")), CLIENT_TIMEOUT)
    }

    /// Like [`run`](Self::run) but under `script`, so the client sees a terminal on stdin
    /// (`ctr run -t` insists on one).
    pub fn run_in_terminal(&self, tool: &str, args: &[&str]) -> Output {
        let line = std::iter::once(
            self.dir
                .join("bin")
                .join(tool)
                .to_string_lossy()
                .into_owned(),
        )
        .chain(args.iter().map(|a| shell_quote(a)))
        .collect::<Vec<_>>()
        .join(" ");
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]);
        run_timed(cmd, &line, CLIENT_TIMEOUT)
    }

    /// Starts recording runtime calls for this test; see [`ArgvLog`].
    pub fn argv_log(&self) -> ArgvLog {
        ArgvLog::from_now(self.dir.join("logs/argv.log"))
    }
}

/// Quotes `s` for `sh -c` (script(1) runs its command through the shell).
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `cmd` with stdin null and output captured in files (a pipe would be held open by
/// containers that inherit it); kills it and panics after `timeout`.
pub fn run_timed(mut cmd: Command, what: &str, timeout: Duration) -> Output {
    let mut out_file = tempfile::tempfile().expect("stdout capture file");
    let mut err_file = tempfile::tempfile().expect("stderr capture file");
    cmd.stdin(Stdio::null())
        .stdout(out_file.try_clone().expect("dup capture file"))
        .stderr(err_file.try_clone().expect("dup capture file"));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for client") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: read_all(&mut out_file),
        stderr: read_all(&mut err_file),
    }
}

fn read_all(file: &mut File) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_end(&mut buf);
    buf
}

/// Panics with the command's streams when it did not exit with `code`.
pub fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}, got {:?}\nstdout: {}\nstderr: {}",
        out.status,
        stdout_of(out),
        stderr_of(out)
    );
}

/// The runtime calls made since a test started (DIR/logs/argv.log is shared by every test,
/// so callers filter by container id). When the test panics, the calls are printed: that
/// argv is what a runvm fix starts from.
pub struct ArgvLog {
    path: PathBuf,
    start: u64,
}

impl ArgvLog {
    fn from_now(path: PathBuf) -> Self {
        let start = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Self { path, start }
    }

    /// Every line logged since this test started.
    pub fn lines(&self) -> Vec<String> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(_) => return Vec::new(),
        };
        let mut text = String::new();
        let _ = file.seek(SeekFrom::Start(self.start));
        let _ = file.read_to_string(&mut text);
        text.lines().map(String::from).collect()
    }

    /// The runtime subcommands (first word after the global flags) called for `id`, in order.
    pub fn commands_for(&self, id: &str) -> Vec<String> {
        let quoted_id = format!("'{id}'");
        self.lines()
            .iter()
            .filter(|line| line.contains(" ->") && line.contains(&quoted_id))
            .filter_map(|line| subcommand(line))
            .collect()
    }

    /// Panics unless the runtime was called with `command` for `id`.
    pub fn assert_called(&self, id: &str, command: &str) {
        let seen = self.commands_for(id);
        assert!(
            seen.iter().any(|c| c == command),
            "runtime never ran `{command}` for {id}; calls for it: {seen:?}"
        );
    }
}

impl Drop for ArgvLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            println!(
                "--- runtime calls during this test ({}):",
                self.path.display()
            );
            for line in self.lines() {
                println!("{line}");
            }
        }
    }
}

/// The subcommand in a logged call: the first argument that is not a global flag or a value.
fn subcommand(line: &str) -> Option<String> {
    let (_, argv) = line.split_once(" ->")?;
    let args: Vec<&str> = argv
        .split("' '")
        .map(|a| a.trim().trim_matches('\''))
        .collect();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i];
        if matches!(arg, "--root" | "--log" | "--log-format" | "--criu") {
            i += 2;
        } else if arg.starts_with("--") {
            i += 1;
        } else {
            return Some(arg.to_string());
        }
    }
    None
}

#[test]
fn subcommand_skips_global_flags_with_and_without_values() {
    let line = "00:00:00.000 [1] containerd-shim -> '--root' '/r' '--log' '/l' '--log-format' \
                'json' 'create' '--bundle' '/b' 'c1'";
    assert_eq!(subcommand(line).as_deref(), Some("create"));
    let line = "00:00:00.000 [1] conmon -> '--log-format=json' '--log' '/l' 'exec' 'c1'";
    assert_eq!(subcommand(line).as_deref(), Some("exec"));
    assert_eq!(subcommand("00:00:00.000 [1] rc=0"), None);
}
