//! Namespaces: created fresh, shared when not asked for, joined by path,
//! user namespace id mappings, time namespace offsets, UTS names.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runvm_tests::*;
use serde_json::json;

/// /proc/self/ns entries and the config type that creates each.
const KINDS: [(&str, &str); 6] = [
    ("pid", "pid"),
    ("net", "network"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("mnt", "mount"),
    ("cgroup", "cgroup"),
];

fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap_or_else(|e| panic!("readlink /proc/self/ns/{kind}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// Runs the bundle printing `kind link` per namespace, parsed into a map.
fn container_ns(rt: &Runtime, bundle: &mut BusyboxBundle) -> HashMap<String, String> {
    let script: String = KINDS
        .iter()
        .map(|(k, _)| format!("echo {k} $(readlink /proc/self/ns/{k}); "))
        .collect();
    let out = rt.run_script(bundle, &script);
    assert_success(&out, "readlink namespaces");
    stdout_of(&out)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_requested_namespace_is_new() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    let rt = Runtime::new();
    let inside = container_ns(&rt, &mut bundle);
    for (kind, _) in KINDS {
        let link = inside
            .get(kind)
            .unwrap_or_else(|| panic!("no {kind} in {inside:?}"));
        assert!(link.starts_with(&format!("{kind}:[")), "{kind}: {link}");
        assert_ne!(*link, host_ns(kind), "{kind} namespace is the host's");
    }
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn unrequested_namespaces_are_shared_with_host() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    // Keep only pid + mount: net, ipc, uts, cgroup must be the runtime's own.
    bundle.config_mut()["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}]);
    // Without a private netns, sysfs cannot be mounted afresh: bind the host's.
    let mounts = bundle.config_mut()["mounts"]
        .as_array_mut()
        .expect("mounts");
    for m in mounts.iter_mut() {
        if m["destination"] == "/sys" {
            *m = json!({"destination": "/sys", "type": "bind", "source": "/sys",
                        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
        }
    }
    bundle.config_mut()["hostname"] = json!(null);
    let rt = Runtime::new();
    let inside = container_ns(&rt, &mut bundle);
    for kind in ["net", "ipc", "uts", "cgroup"] {
        assert_eq!(
            inside.get(kind),
            Some(&host_ns(kind)),
            "{kind} should be shared"
        );
    }
    for kind in ["pid", "mnt"] {
        assert_ne!(
            inside.get(kind),
            Some(&host_ns(kind)),
            "{kind} should be new"
        );
    }
    rt.assert_no_leftovers(&bundle);
}

/// No namespace listed at all: the container shares every namespace of the runtime, its
/// mounts are made below its rootfs in the host's mount namespace, and `delete` takes them away.
#[test]
fn no_namespaces_share_everything_and_delete_unmounts() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["linux"]["namespaces"] = json!([]);
    bundle.config_mut()["hostname"] = json!(null);
    bundle.set_args(&["sleep", "1000"]);
    let rt = Runtime::new();
    rt.create_ok(&bundle);
    assert_success(&rt.start(bundle.id()), "start");
    let pid = rt.state(bundle.id())["pid"].as_i64().expect("pid");
    for kind in ["net", "ipc", "uts", "cgroup", "pid", "mnt", "user", "time"] {
        let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).expect("ns link");
        assert_eq!(
            link.to_string_lossy(),
            host_ns(kind),
            "{kind} should be shared"
        );
    }
    let rootfs = bundle.rootfs().to_string_lossy().into_owned();
    let mounted = |mountinfo: &str| mountinfo.lines().filter(|l| l.contains(&rootfs)).count();
    let before = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        mounted(&before) > 1,
        "the container's mounts are visible on the host while it runs"
    );
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
    let after = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert_eq!(mounted(&after), 0, "delete left mounts below {rootfs}");
    rt.assert_no_leftovers(&bundle);
}

/// A sleeping process in its own network namespace; killed on drop.
struct NetnsHolder(Child);

impl NetnsHolder {
    fn spawn() -> Self {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "1000"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare --net sleep");
        let holder = Self(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while holder.link() == host_ns("net") {
            assert!(
                Instant::now() < deadline,
                "unshare never entered a new netns"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        holder
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }

    fn link(&self) -> String {
        std::fs::read_link(self.path())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

impl Drop for NetnsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn joins_network_namespace_by_path() {
    if !require_root() {
        return;
    }
    let holder = NetnsHolder::spawn();
    let mut bundle = BusyboxBundle::new();
    let namespaces = bundle.config_mut()["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    for ns in namespaces.iter_mut() {
        if ns["type"] == "network" {
            ns["path"] = json!(holder.path());
        }
    }
    let rt = Runtime::new();
    let inside = container_ns(&rt, &mut bundle);
    assert_eq!(inside.get("net"), Some(&holder.link()));
    assert_ne!(inside.get("pid"), Some(&host_ns("pid")));
    rt.assert_no_leftovers(&bundle);
}

fn add_user_namespace(bundle: &mut BusyboxBundle) {
    let linux = &mut bundle.config_mut()["linux"];
    linux["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "user"}));
    linux["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    linux["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    bundle.write_config();
}

fn squash_spaces(text: &str) -> String {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn user_namespace_maps_ids() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    add_user_namespace(&mut bundle);
    let rt = Runtime::new();
    let out = rt.run_script(
        &mut bundle,
        "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; readlink /proc/self/ns/user",
    );
    assert_success(&out, "run in user namespace");
    let text = squash_spaces(&stdout_of(&out));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        &lines[..4],
        ["0", "0", "0 100000 65536", "0 200000 65536"],
        "{text}"
    );
    assert_ne!(lines.get(4).copied(), Some(host_ns("user").as_str()));
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn user_namespace_process_has_host_ids_from_mapping() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    add_user_namespace(&mut bundle);
    bundle.set_args(&["sleep", "1000"]);
    let rt = Runtime::new();
    rt.create_ok(&bundle);
    let pid = rt.state(bundle.id())["pid"].as_i64().expect("pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(squash_spaces)
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), "Uid: 100000 100000 100000 100000");
    assert_eq!(field("Gid:"), "Gid: 200000 200000 200000 200000");
    assert_success(&rt.delete_force(bundle.id()), "delete --force");
    rt.assert_no_leftovers(&bundle);
}

fn uptime_secs(text: &str) -> f64 {
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad /proc/uptime: {text:?}"))
}

#[test]
fn time_namespace_shifts_boottime_and_monotonic() {
    if !require_root() {
        return;
    }
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        println!("SKIP: kernel has no time namespaces");
        return;
    }
    const SHIFT: i64 = 10 * 86400;
    let mut bundle = BusyboxBundle::new();
    let linux = &mut bundle.config_mut()["linux"];
    linux["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "time"}));
    linux["timeOffsets"] = json!({
        "boottime": {"secs": SHIFT, "nanosecs": 0},
        "monotonic": {"secs": SHIFT, "nanosecs": 0}
    });
    let rt = Runtime::new();
    let before = uptime_secs(&std::fs::read_to_string("/proc/uptime").expect("uptime"));
    let out = rt.run_script(&mut bundle, "cat /proc/uptime; readlink /proc/self/ns/time");
    let after = uptime_secs(&std::fs::read_to_string("/proc/uptime").expect("uptime"));
    assert_success(&out, "run with time namespace");
    let text = stdout_of(&out);
    let inside = uptime_secs(&text);
    let shift = SHIFT as f64;
    assert!(
        inside >= before + shift && inside <= after + shift,
        "uptime inside {inside} not host [{before}, {after}] + {shift}"
    );
    assert_ne!(text.lines().nth(1), Some(host_ns("time").as_str()));
    rt.assert_no_leftovers(&bundle);
}

#[test]
fn hostname_and_domainname_are_set() {
    if !require_root() {
        return;
    }
    let mut bundle = BusyboxBundle::new();
    bundle.config_mut()["hostname"] = json!("box-one");
    bundle.config_mut()["domainname"] = json!("example.test");
    let host_before = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let rt = Runtime::new();
    let out = rt.run_script(&mut bundle, "hostname; cat /proc/sys/kernel/domainname");
    assert_success(&out, "run");
    assert_eq!(stdout_of(&out), "box-one\nexample.test\n");
    let host_after = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(host_before, host_after, "host hostname changed");
    rt.assert_no_leftovers(&bundle);
}
