//! Task API calls `ctr` 1.6 cannot make (Update) or does not show in full (State, Stats,
//! Connect), sent straight to a running shim over ttrpc, as containerd would. The generated
//! client calls the task v3 name (containerd 2.x); ctr in tests/tests/shim.rs uses v2 (1.6).
//!
//! Needs root and tests/clients/setup.sh DIR with RUNVM_CLIENTS_DIR=DIR (see
//! tests/clients/README.md); SKIPs otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use containerd_shim::protos::api::{ConnectRequest, StateRequest, StatsRequest, UpdateTaskRequest};
use containerd_shim::protos::cgroups::metrics::Metrics;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::ttrpc::context::Context;
use containerd_shim::protos::ttrpc::Client;
use containerd_shim::protos::types::task::Status;
use containerd_shim::protos::TaskClient;

const IMAGE: &str = "localhost/runvm-busybox:latest";

fn ctr(dir: &Path, args: &[&str]) -> Output {
    Command::new(dir.join("bin/ctr"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ctr")
}

/// The harness directory when containerd and the shim are set up; prints SKIP otherwise.
fn ready() -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP: needs root");
        return None;
    }
    let Some(dir) = std::env::var_os("RUNVM_CLIENTS_DIR").map(PathBuf::from) else {
        println!("SKIP: RUNVM_CLIENTS_DIR is not set (tests/clients/setup.sh DIR first)");
        return None;
    };
    if !dir.join("containerd.ready").is_file() {
        println!("SKIP: containerd is not set up in {}", dir.display());
        return None;
    }
    if !dir.join("shims/containerd-shim-runvm-v2").is_file() {
        println!("SKIP: the shim is not linked into {}/shims", dir.display());
        return None;
    }
    Some(dir)
}

/// The `-socket` of the shim server for task `id`.
fn socket_of(id: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args
                .first()
                .is_some_and(|a| a.ends_with("containerd-shim-runvm-v2"))
                && args.windows(2).any(|w| w[0] == "-id" && w[1] == id)
            {
                if let Some(w) = args.windows(2).find(|w| w[0] == "-socket") {
                    return Some(w[1].clone());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

struct Cleanup<'a>(&'a Path, String);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = ctr(self.0, &["task", "kill", "-s", "SIGKILL", &self.1]);
        std::thread::sleep(Duration::from_millis(200));
        let _ = ctr(self.0, &["task", "delete", "--force", &self.1]);
        let _ = ctr(self.0, &["container", "delete", &self.1]);
    }
}

#[test]
fn shim_update_state_stats_connect_over_ttrpc() {
    let Some(dir) = ready() else { return };
    let id = format!("shim-ttrpc-{}", std::process::id());
    let _cleanup = Cleanup(&dir, id.clone());
    let out = ctr(
        &dir,
        &[
            "run",
            "-d",
            "--runtime",
            "io.containerd.runvm.v2",
            IMAGE,
            &id,
            "sleep",
            "1000",
        ],
    );
    assert!(
        out.status.success(),
        "ctr run -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let socket = socket_of(&id).expect("shim socket");
    let client = TaskClient::new(Client::connect(&socket).expect("connect to the shim"));
    let ctx = || Context::default();

    let connected = client
        .connect(
            ctx(),
            &ConnectRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .expect("Connect");
    assert!(
        connected.shim_pid > 0 && connected.task_pid > 0,
        "{connected:?}"
    );

    let state = client
        .state(
            ctx(),
            &StateRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .expect("State");
    assert_eq!(state.status.enum_value(), Ok(Status::RUNNING));
    assert_eq!(state.pid, connected.task_pid);

    // Resources travel as JSON, the way containerd's typeurl packs specs.LinuxResources.
    let limit: u64 = 48 << 20;
    let update = UpdateTaskRequest {
        id: id.clone(),
        resources: Some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
            value: format!(r#"{{"memory":{{"limit":{limit}}},"pids":{{"limit":77}}}}"#)
                .into_bytes(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    client.update(ctx(), &update).expect("Update");
    let cgroup = |ctl: &str, file: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{ctl}/runvm-clients/{id}/{file}"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert_eq!(cgroup("memory", "memory.limit_in_bytes"), limit.to_string());
    assert_eq!(cgroup("pids", "pids.max"), "77");

    let stats = client
        .stats(
            ctx(),
            &StatsRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .expect("Stats");
    assert_eq!(stats.stats.type_url, "io.containerd.cgroups.v1.Metrics");
    let metrics = Metrics::parse_from_bytes(&stats.stats.value).expect("Metrics decodes");
    assert_eq!(metrics.memory.usage.limit, limit);
    assert_eq!(metrics.pids.limit, 77);
    assert!(metrics.pids.current >= 1);

    // A malformed resources document is the caller's error, named as such.
    let mut bad = update.clone();
    bad.resources.as_mut().expect("resources").value = b"{not json".to_vec();
    let err = client.update(ctx(), &bad).expect_err("bad resources JSON");
    assert!(format!("{err:?}").contains("INVALID_ARGUMENT"), "{err:?}");
}
