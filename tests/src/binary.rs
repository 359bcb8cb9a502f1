//! Which runtime binary the suite drives, and whether the host can run it.

use std::path::PathBuf;

/// The runtime under test: `RUNVM_BIN` if set, else the workspace's newest
/// `target/{debug,release}/runvm` (debug wins a tie or when it is newer).
pub fn runtime_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("RUNVM_BIN") {
        return PathBuf::from(bin);
    }
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    let debug = target.join("debug/runvm");
    let release = target.join("release/runvm");
    let mtime = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (mtime(&debug), mtime(&release)) {
        (Some(d), Some(r)) if r > d => release,
        (None, Some(_)) => release,
        _ => debug,
    }
}

/// True when the binary under test is runvm (not runc or another peer), so
/// runvm-only contracts (error wording, `features`, extra flags) are checked.
pub fn is_runvm() -> bool {
    runtime_bin()
        .file_name()
        .map(|n| n.to_string_lossy().starts_with("runvm"))
        .unwrap_or(false)
}

/// Every test needs root (namespaces, mounts, cgroups) and the binary.
/// Prints `SKIP: <reason>` and returns false when either is missing.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        println!("SKIP: needs root (euid is {euid})");
        return false;
    }
    let bin = runtime_bin();
    if !bin.is_file() {
        println!("SKIP: runtime binary {} not built", bin.display());
        return false;
    }
    if !std::path::Path::new("/bin/busybox").is_file() {
        println!("SKIP: /bin/busybox (busybox-static) not installed");
        return false;
    }
    true
}
