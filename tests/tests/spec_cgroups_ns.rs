//! Cgroup and namespace rules the OCI runtime-tools validation programs check from the
//! host. Like the suite, cgroup files are found through the container's /proc/PID/cgroup
//! line for each v1 controller, under /sys/fs/cgroup/<controller>; absolute cgroupsPath
//! values must appear verbatim there, relative ones as a suffix.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runvm_tests::*;
use serde_json::{json, Value};

const V1_ROOT: &str = "/sys/fs/cgroup";
const NAMESPACES: [&str; 7] = ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"];

/// True when `controller` is a v1 hierarchy here; prints SKIP otherwise.
fn have_v1(controller: &str) -> bool {
    let ok = Path::new(V1_ROOT)
        .join(controller)
        .join("cgroup.procs")
        .exists();
    if !ok {
        println!("SKIP: no cgroup v1 {controller} hierarchy");
    }
    ok
}

/// The cgroup of `pid` in the v1 hierarchy holding `controller` (from /proc/PID/cgroup).
fn v1_path(pid: i64, controller: &str) -> String {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/PID/cgroup");
    text.lines()
        .find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("{controller} not in /proc/{pid}/cgroup:\n{text}"))
}

/// Reads `file` of `controller` in the container's cgroup, checking where that cgroup is.
fn cgroup_file(pid: i64, controller: &str, cgroups_path: &str, file: &str) -> String {
    let path = v1_path(pid, controller);
    if cgroups_path.starts_with('/') {
        assert_eq!(
            path, cgroups_path,
            "{controller}: absolute path not taken as is"
        );
    } else {
        assert!(
            path.ends_with(cgroups_path),
            "{controller}: {path} does not end in {cgroups_path}"
        );
    }
    let full = Path::new(V1_ROOT)
        .join(controller)
        .join(path.trim_start_matches('/'))
        .join(file);
    std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("{}: {e}", full.display()))
        .trim()
        .to_string()
}

/// An absolute and a relative cgroupsPath unique to this bundle, shaped like the suite's
/// `/cgrouptest` and `testdir/cgrouptest/container`.
fn suite_like_paths(bundle: &BusyboxBundle) -> [String; 2] {
    [
        format!("/spec-{}", bundle.id()),
        format!("spec-{}-rel/cgrouptest/container", bundle.id()),
    ]
}

/// Asserts no hierarchy still holds the top directory of `cgroups_path`.
fn assert_cgroup_gone(cgroups_path: &str) {
    let top = cgroups_path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<PathBuf> = cgroup_dirs(top)
            .into_iter()
            .filter(|d| d.exists())
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "cgroup dirs left: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn create_with(
    rt: &Runtime,
    bundle: &mut BusyboxBundle,
    cgroups_path: &str,
    resources: Value,
) -> i64 {
    bundle.config_mut()["linux"]["cgroupsPath"] = json!(cgroups_path);
    for (key, value) in resources.as_object().expect("resources object") {
        bundle.config_mut()["linux"]["resources"][key] = value.clone();
    }
    bundle.write_config();
    rt.create_ok(bundle);
    rt.state(bundle.id())["pid"].as_i64().expect("pid")
}

#[test]
fn pids_limit_at_absolute_and_relative_paths() {
    if !require_root() || !have_v1("pids") {
        return;
    }
    let rt = Runtime::new();
    for index in 0..2 {
        let mut bundle = BusyboxBundle::new();
        let path = suite_like_paths(&bundle)[index].clone();
        let pid = create_with(&rt, &mut bundle, &path, json!({"pids": {"limit": 1000}}));
        assert_eq!(cgroup_file(pid, "pids", &path, "pids.max"), "1000");
        assert_success(&rt.delete_force(bundle.id()), "delete --force");
        assert_cgroup_gone(&path);
    }
}

fn all_cpus() -> String {
    std::fs::read_to_string(Path::new(V1_ROOT).join("cpuset/cpuset.cpus"))
        .expect("root cpuset.cpus")
        .trim()
        .to_string()
}

#[test]
fn cpu_values_land_even_in_a_reused_cgroup() {
    if !require_root() || !have_v1("cpu") || !have_v1("cpuset") {
        return;
    }
    let rt = Runtime::new();
    let all = all_cpus();
    let first = BusyboxBundle::new();
    let [absolute, relative] = suite_like_paths(&first);
    let cases = [
        (&absolute, 1024, 100_000, 50_000, "0"),
        (&absolute, 2048, 500_000, 200_000, all.as_str()),
        (&absolute, 1024, 500_000, 50_000, all.as_str()),
        (&absolute, 2048, 100_000, 200_000, "0"),
        (&relative, 2048, 500_000, 50_000, all.as_str()),
    ];
    let mut ids = Vec::new();
    for (path, shares, period, quota, cpus) in cases {
        let mut bundle = BusyboxBundle::new();
        let cpu =
            json!({"shares": shares, "period": period, "quota": quota, "cpus": cpus, "mems": "0"});
        let pid = create_with(&rt, &mut bundle, path, json!({"cpu": cpu}));
        assert_eq!(
            cgroup_file(pid, "cpu", path, "cpu.shares"),
            shares.to_string()
        );
        assert_eq!(
            cgroup_file(pid, "cpu", path, "cpu.cfs_period_us"),
            period.to_string()
        );
        assert_eq!(
            cgroup_file(pid, "cpu", path, "cpu.cfs_quota_us"),
            quota.to_string()
        );
        assert_eq!(cgroup_file(pid, "cpuset", path, "cpuset.cpus"), cpus);
        assert_eq!(cgroup_file(pid, "cpuset", path, "cpuset.mems"), "0");
        // Older suites clean up with a plain `delete`, which leaves a created container
        // behind: the next case must still get its own values into the same cgroup.
        assert_failure(
            &rt.delete(bundle.id()),
            "plain delete of a created container",
        );
        ids.push((bundle, path.clone()));
    }
    for (bundle, _) in &ids {
        assert_success(&rt.delete_force(bundle.id()), "delete --force");
    }
    assert_cgroup_gone(&absolute);
    assert_cgroup_gone(&relative);
}

#[test]
fn empty_cpu_object_keeps_the_kernel_defaults() {
    if !require_root() || !have_v1("cpu") || !have_v1("cpuset") {
        return;
    }
    let rt = Runtime::new();
    let mut bundle = BusyboxBundle::new();
    let path = suite_like_paths(&bundle)[0].clone();
    let pid = create_with(&rt, &mut bundle, &path, json!({"cpu": {}}));
    assert_eq!(cgroup_file(pid, "cpu", &path, "cpu.shares"), "1024");
    assert_eq!(cgroup_file(pid, "cpu", &path, "cpu.cfs_quota_us"), "-1");
    assert_eq!(
        cgroup_file(pid, "cpu", &path, "cpu.cfs_period_us"),
        "100000"
    );
    assert_eq!(cgroup_file(pid, "cpuset", &path, "cpuset.cpus"), all_cpus());
    let root_mems = std::fs::read_to_string(Path::new(V1_ROOT).join("cpuset/cpuset.mems"))
        .expect("root cpuset.mems");
    assert_eq!(
        cgroup_file(pid, "cpuset", &path, "cpuset.mems"),
        root_mems.trim()
    );
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
    assert_cgroup_gone(&path);
}

#[test]
fn device_rules_come_first_in_config_order() {
    if !require_root() || !have_v1("devices") {
        return;
    }
    let rt = Runtime::new();
    for index in 0..2 {
        let mut bundle = BusyboxBundle::new();
        let path = suite_like_paths(&bundle)[index].clone();
        let devices = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
            {"allow": true, "type": "b", "major": 8, "minor": 20, "access": "rw"},
            {"allow": true, "type": "b", "major": 10, "minor": 200, "access": "r"}
        ]);
        let pid = create_with(&rt, &mut bundle, &path, json!({"devices": devices}));
        let list = cgroup_file(pid, "devices", &path, "devices.list");
        let first: Vec<&str> = list.lines().take(3).collect();
        assert_eq!(first, ["c 10:229 rwm", "b 8:20 rw", "b 10:200 r"], "{list}");
        assert_success(&rt.delete_force(bundle.id()), "delete --force");
        assert_cgroup_gone(&path);
    }
}

/// Every memory value the suite reads back, except `kernel`: kernels since 6.1 accept
/// writes to memory.kmem.limit_in_bytes and ignore them, so no runtime can pass that check.
#[test]
fn memory_values_land_at_absolute_and_relative_paths() {
    if !require_root() || !have_v1("memory") {
        return;
    }
    let rt = Runtime::new();
    let limit = 50_593_792_i64;
    for index in 0..2 {
        let mut bundle = BusyboxBundle::new();
        let path = suite_like_paths(&bundle)[index].clone();
        let memory = json!({
            "limit": limit, "reservation": limit, "swap": limit, "kernel": limit,
            "kernelTCP": limit, "swappiness": 50, "disableOOMKiller": true
        });
        let pid = create_with(&rt, &mut bundle, &path, json!({"memory": memory}));
        let read = |file: &str| cgroup_file(pid, "memory", &path, file);
        assert_eq!(read("memory.limit_in_bytes"), limit.to_string());
        assert_eq!(read("memory.soft_limit_in_bytes"), limit.to_string());
        assert_eq!(read("memory.kmem.tcp.limit_in_bytes"), limit.to_string());
        assert_eq!(read("memory.swappiness"), "50");
        assert!(read("memory.oom_control").starts_with("oom_kill_disable 1"));
        let memsw = Path::new(V1_ROOT).join("memory/memory.memsw.limit_in_bytes");
        if memsw.exists() {
            assert_eq!(read("memory.memsw.limit_in_bytes"), limit.to_string());
        }
        assert_success(&rt.delete_force(bundle.id()), "delete --force");
        assert_cgroup_gone(&path);
    }
}

fn ns_link(pid: impl std::fmt::Display, name: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{name}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// The config with exactly these namespaces (no cgroupfs mount, which a new user namespace
/// could not make).
fn set_namespaces(bundle: &mut BusyboxBundle, namespaces: Value) {
    let config = bundle.config_mut();
    config["linux"]["namespaces"] = namespaces;
    if let Some(mounts) = config["mounts"].as_array_mut() {
        mounts.retain(|m| m["type"] != "cgroup");
    }
}

fn all_new_namespaces_with_user(bundle: &mut BusyboxBundle) {
    let types = ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"];
    set_namespaces(bundle, types.iter().map(|t| json!({"type": t})).collect());
    let map = json!([{"containerID": 0, "hostID": 1000, "size": 1000}]);
    bundle.config_mut()["linux"]["uidMappings"] = map.clone();
    bundle.config_mut()["linux"]["gidMappings"] = map;
    bundle.write_config();
}

#[test]
fn namespaces_without_path_are_all_new() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    all_new_namespaces_with_user(&mut bundle);
    let rt = Runtime::new();
    rt.create_ok(&bundle);
    let pid = rt.state(bundle.id())["pid"].as_i64().expect("pid");
    for name in NAMESPACES {
        assert_ne!(
            ns_link(pid, name),
            ns_link("self", name),
            "{name} namespace is the host's"
        );
    }
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
    rt.assert_no_leftovers(&bundle);
}

/// linux_ns_nopath runs its user namespace (root mapped to uid 1000) on a bundle that is a
/// 0700 root-owned temporary directory, which the mapped root cannot enter. runvm builds the
/// rootfs self-bind with the host ids init was cloned with and resolves everything after it
/// through a descriptor, so such a bundle works (runc 1.1.5 fails here with EACCES).
#[test]
fn mapped_root_works_on_a_private_bundle_dir() {
    if !require_root() || !is_runvm() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    all_new_namespaces_with_user(&mut bundle);
    bundle.set_args(&["sh", "-c", "cat /proc/self/uid_map; ls /bin/busybox"]);
    std::fs::set_permissions(bundle.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod 0700 bundle");
    let rt = Runtime::new();
    let out = rt.run_bundle(&bundle);
    assert_success(&out, "run on a 0700 bundle with a user namespace");
    let text = stdout_of(&out);
    assert!(text.contains("/bin/busybox"), "{text}");
    assert!(
        text.split_whitespace()
            .collect::<Vec<_>>()
            .starts_with(&["0", "1000"]),
        "uid_map: {text}"
    );
    rt.assert_no_leftovers(&bundle);
}

/// `unshare --<flag> --fork sleep`, in its own process group; killed on drop.
struct Unshared {
    child: Child,
}

impl Unshared {
    /// Starts it and waits until its namespace `name` (pid: the one for its children)
    /// differs from ours; returns the path the container should join.
    fn start(flag: &str, name: &str) -> (Self, String) {
        let child = Command::new("unshare")
            .args([flag, "--fork", "sleep", "10000"])
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .expect("run unshare (util-linux)");
        let suffix = if name == "pid" { "_for_children" } else { "" };
        let path = format!("/proc/{}/ns/{name}{suffix}", child.id());
        let unshared = Self { child };
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let theirs = std::fs::read_link(&path).ok();
            if theirs.is_some_and(|t| t.to_string_lossy() != ns_link("self", name)) {
                return (unshared, path);
            }
            assert!(
                Instant::now() < deadline,
                "unshare {flag} never switched {name}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Unshared {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child's process group; no memory is involved.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

#[test]
fn namespaces_are_joined_by_path() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new();
    let cases = [
        ("--ipc", "ipc", "ipc"),
        ("--mount", "mnt", "mount"),
        ("--net", "net", "network"),
        ("--pid", "pid", "pid"),
        ("--uts", "uts", "uts"),
    ];
    for (flag, name, spec_type) in cases {
        let (unshared, path) = Unshared::start(flag, name);
        let want = std::fs::read_link(&path).expect("namespace link");
        let mut bundle = BusyboxBundle::new();
        let mut namespaces: Vec<Value> = bundle.config()["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .filter(|n| n["type"] != spec_type)
            .cloned()
            .collect();
        namespaces.push(json!({"type": spec_type, "path": path}));
        set_namespaces(&mut bundle, Value::Array(namespaces));
        bundle.write_config();
        rt.create_ok(&bundle);
        let pid = rt.state(bundle.id())["pid"].as_i64().expect("pid");
        assert_eq!(
            ns_link(pid, name),
            want.to_string_lossy(),
            "{name} not joined"
        );
        assert_success(&rt.delete_force(bundle.id()), "delete --force");
        rt.assert_no_leftovers(&bundle);
        drop(unshared);
    }
}

#[test]
fn namespace_path_of_the_wrong_type_is_refused() {
    if !require_root() {
        return;
    }
    let rt = Runtime::new();
    let cases = [
        ("cgroup", "ipc"),
        ("ipc", "mnt"),
        ("mount", "net"),
        ("network", "pid"),
        ("pid", "user"),
        ("user", "uts"),
        ("uts", "cgroup"),
    ];
    for (spec_type, wrong) in cases {
        let mut bundle = BusyboxBundle::new();
        let mut namespaces: Vec<Value> = bundle.config()["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .filter(|n| n["type"] != spec_type)
            .cloned()
            .collect();
        namespaces.push(json!({"type": spec_type, "path": format!("/proc/self/ns/{wrong}")}));
        set_namespaces(&mut bundle, Value::Array(namespaces));
        bundle.write_config();
        let out = rt.create(&bundle, &[]);
        assert_failure(&out, &format!("{spec_type} namespace given a {wrong} path"));
        rt.assert_no_leftovers(&bundle);
    }
}

/// linux_ns_itype: with no namespaces listed the container shares all of the runtime's.
/// runvm refuses any config without a mount namespace (process/launch.rs).
#[test]

fn no_namespaces_listed_shares_every_host_namespace() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    set_namespaces(&mut bundle, json!([]));
    bundle
        .config_mut()
        .as_object_mut()
        .expect("config object")
        .remove("hostname");
    bundle.write_config();
    let rt = Runtime::new();
    rt.create_ok(&bundle);
    let pid = rt.state(bundle.id())["pid"].as_i64().expect("pid");
    for name in NAMESPACES {
        assert_eq!(
            ns_link(pid, name),
            ns_link("self", name),
            "{name} namespace is not the host's"
        );
    }
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
    rt.assert_no_leftovers(&bundle);
}
