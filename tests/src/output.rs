//! Readable assertions on a finished runtime command.

use std::process::Output;

pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Panics with both streams when `out` did not exit 0.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: expected success, got {:?}\nstdout: {}\nstderr: {}",
        out.status,
        stdout_of(out),
        stderr_of(out)
    );
}

/// Panics when `out` exited 0.
pub fn assert_failure(out: &Output, what: &str) {
    assert!(
        !out.status.success(),
        "{what}: expected failure, got success\nstdout: {}\nstderr: {}",
        stdout_of(out),
        stderr_of(out)
    );
}
