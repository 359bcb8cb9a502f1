//! Shared by the monitor's integration tests: whether KVM can be used here, and running one
//! test again in a child process of the same test binary (confinement cannot be undone in
//! the test process, and a child shows how a confined monitor ended).

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Set in a child run to the name of the test it runs.
const CHILD_ENV: &str = "RUNVM_TEST_CHILD";

/// Whether /dev/kvm opens read-write; prints the SKIP reason when it does not.
pub fn kvm_usable() -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIP: /dev/kvm not usable: {e}");
            false
        }
    }
}

/// Whether this process is the child run of test `name`.
pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(name)
}

/// Runs test `name` alone in a new process of this test binary, as its child part, with
/// `env` added; prints what the child printed and returns its output.
pub fn run_child(name: &str, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("test binary path");
    let output = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .envs(env.iter().copied())
        .output()
        .expect("test binary runs again");
    eprintln!(
        "child {name}: {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
