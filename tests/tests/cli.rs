//! Global flags and the commands that do not run containers: spec, features, --log.

use std::time::Duration;

use runvm_tests::*;
use serde_json::Value;

fn spec_in(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let rt = Runtime::new();
    let mut args = vec!["spec", "--bundle", dir.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    rt.run_with_timeout(&args, Duration::from_secs(30))
}

fn namespace_types(config: &Value) -> Vec<String> {
    config["linux"]["namespaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["type"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn spec_writes_a_usable_default_config() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    assert_success(&spec_in(dir.path(), &[]), "spec");
    let text = std::fs::read_to_string(dir.path().join("config.json")).expect("config.json");
    let config: Value = serde_json::from_str(&text).expect("spec output is JSON");
    assert!(config["ociVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("1.")));
    assert_eq!(config["root"]["path"], "rootfs");
    assert!(config["process"]["args"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    let ns = namespace_types(&config);
    for kind in ["pid", "mount"] {
        assert!(ns.iter().any(|n| n == kind), "{kind} missing from {ns:?}");
    }
    assert!(
        !ns.iter().any(|n| n == "user"),
        "default spec is not rootless: {ns:?}"
    );
}

#[test]
fn spec_rootless_adds_user_namespace_and_mappings() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    assert_success(&spec_in(dir.path(), &["--rootless"]), "spec --rootless");
    let text = std::fs::read_to_string(dir.path().join("config.json")).expect("config.json");
    let config: Value = serde_json::from_str(&text).expect("JSON");
    assert!(namespace_types(&config).iter().any(|n| n == "user"));
    assert!(config["linux"]["uidMappings"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    assert!(config["linux"]["gidMappings"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
}

#[test]
fn spec_does_not_overwrite_existing_config() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.json"), "keep me").expect("write");
    assert_failure(
        &spec_in(dir.path(), &[]),
        "spec over an existing config.json",
    );
    let text = std::fs::read_to_string(dir.path().join("config.json")).expect("read");
    assert_eq!(text, "keep me");
}

#[test]
fn features_describes_the_runtime() {
    if !require_root() {
        return;
    }
    if !is_runvm() {
        println!("SKIP: `features` is checked for runvm only");
        return;
    }
    let rt = Runtime::new();
    let out = rt.run(&["features"]);
    assert_success(&out, "features");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("features is JSON");
    assert!(
        doc["ociVersionMin"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{doc}"
    );
    assert!(
        doc["ociVersionMax"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{doc}"
    );
    let hooks: Vec<&str> = doc["hooks"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for kind in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.contains(&kind), "hooks lacks {kind}: {doc}");
    }
    let ns: Vec<&str> = doc["linux"]["namespaces"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for kind in ["pid", "network", "ipc", "uts", "mount", "user", "cgroup"] {
        assert!(ns.contains(&kind), "linux.namespaces lacks {kind}: {doc}");
    }
    assert!(doc["linux"]["seccomp"]["enabled"] == true, "{doc}");
}

#[test]
fn json_log_records_the_failure() {
    if !require_root() {
        return;
    }
    let bundle = BusyboxBundle::new();
    std::fs::write(bundle.path().join("config.json"), "not json").expect("write");
    let log = bundle.path().join("runtime.log");
    let rt = Runtime::new();
    let mut cmd = rt.command();
    cmd.arg("--log").arg(&log).args([
        "--log-format",
        "json",
        "create",
        "--bundle",
        bundle.path_str(),
        bundle.id(),
    ]);
    let out = rt.run_command(cmd, &["--log", "create"], Duration::from_secs(30));
    assert_failure(&out, "create with broken config");
    let text = std::fs::read_to_string(&log).expect("log file written");
    let entries: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line not JSON ({e}): {l}")))
        .collect();
    let error = entries
        .iter()
        .find(|e| e["level"] == "error")
        .unwrap_or_else(|| panic!("no error entry in log:\n{text}"));
    assert!(
        error["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{error}"
    );
    if is_runvm() {
        assert!(
            error["msg"].as_str().unwrap_or("").contains("config.json"),
            "{error}"
        );
    }
    rt.assert_no_leftovers(&bundle);
}

/// `runvm check` tells the truth about KVM: it calls KVM hardware-backed only when the CPU
/// advertises vmx/svm, and never claims Linux guests where it found KVM emulated.
#[test]
fn check_reports_kvm_consistently_with_the_cpu() {
    if !is_runvm() {
        return;
    }
    let out = std::process::Command::new(runtime_bin())
        .args(["check", "--format", "json", "--no-calibrate"])
        .output()
        .expect("run check");
    assert_success(&out, "check");
    let report: serde_json::Value = serde_json::from_str(&stdout_of(&out)).expect("check json");
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let virt = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    let mode = report["kvm"]["mode"].as_str().expect("kvm.mode");
    if mode == "hardware" {
        assert!(
            virt,
            "hardware KVM claimed without vmx/svm in /proc/cpuinfo"
        );
    }
    if mode == "emulated-pvm" {
        assert_eq!(report["kvm"]["can_boot_linux"], false);
        assert!(std::path::Path::new("/sys/module/kvm_pvm").exists());
    }
    if !std::path::Path::new("/dev/kvm").exists() {
        assert_eq!(mode, "absent");
    }
    assert_eq!(
        report["vm"]["available"], false,
        "VM sandboxes are not built yet"
    );
    let features: serde_json::Value = serde_json::from_str(&stdout_of(
        &std::process::Command::new(runtime_bin())
            .arg("features")
            .output()
            .expect("features"),
    ))
    .expect("features json");
    assert_eq!(features["annotations"]["org.runvm.kvm.mode"], mode);
}

/// checkpoint/restore are not supported: a clear error and a failing `--help` (podman decides
/// from `checkpoint --help` whether checkpointing is available).
#[test]
fn checkpoint_and_restore_say_they_are_not_supported() {
    if !is_runvm() {
        return;
    }
    for args in [vec!["checkpoint", "--help"], vec!["restore", "c1"]] {
        let out = std::process::Command::new(runtime_bin())
            .args(&args)
            .output()
            .expect("run runvm");
        assert_failure(&out, &format!("{args:?}"));
        assert!(
            stderr_of(&out).contains("not supported"),
            "{}",
            stderr_of(&out)
        );
    }
}
