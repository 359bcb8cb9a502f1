//! OCI hooks: programs run at fixed points of the lifecycle with the container state on stdin.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::Hook;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("hooks.{kind}[{index}] ({path}): {message}")]
    Failed {
        kind: &'static str,
        index: usize,
        path: String,
        message: String,
    },
}

/// The state a hook reads on stdin (runtime-spec "State").
pub fn state_json(
    spec: &oci_spec::runtime::Spec,
    id: &str,
    status: &str,
    pid: i32,
    bundle: &std::path::Path,
) -> Vec<u8> {
    serde_json::json!({
        "ociVersion": spec.version(),
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": spec.annotations().clone().unwrap_or_default(),
    })
    .to_string()
    .into_bytes()
}

/// The state of a recorded container, for hooks that run after `create`.
pub fn state_json_of(state: &runvm_oci::ContainerState, status: runvm_oci::Status) -> Vec<u8> {
    state.to_oci(status).to_string().into_bytes()
}

/// Runs the hooks of one kind in order; the first failure stops the rest.
pub fn run_hooks(kind: &'static str, hooks: &[Hook], state: &[u8]) -> Result<(), HookError> {
    for (index, hook) in hooks.iter().enumerate() {
        run_hook(hook, state).map_err(|message| HookError::Failed {
            kind,
            index,
            path: hook.path().display().to_string(),
            message,
        })?;
    }
    Ok(())
}

/// Runs every hook of one kind in order, even after a failure, and returns each failure.
/// The spec wants this for poststart and poststop: a failing hook only earns a warning and
/// "the remaining hooks and lifecycle continue as if the hook had succeeded".
pub fn run_all_hooks(kind: &'static str, hooks: &[Hook], state: &[u8]) -> Vec<HookError> {
    hooks
        .iter()
        .enumerate()
        .filter_map(|(index, hook)| {
            run_hook(hook, state)
                .err()
                .map(|message| HookError::Failed {
                    kind,
                    index,
                    path: hook.path().display().to_string(),
                    message,
                })
        })
        .collect()
}

fn run_hook(hook: &Hook, state: &[u8]) -> Result<(), String> {
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        // args[0] is argv[0] as in execv; the path is what runs.
        if let Some((argv0, rest)) = args.split_first() {
            cmd.arg0(argv0).args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading its stdin; that is not an error.
        let _ = stdin.write_all(state);
    }
    if let Some(secs) = hook.timeout() {
        if !wait_for_exit(child.id(), secs) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {secs} s"));
        }
    }
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    if !status.success() {
        return Err(format!("exited with {status}"));
    }
    Ok(())
}

/// Waits up to `secs` seconds for process `pid` to exit, without reaping it. Returns false on
/// timeout.
fn wait_for_exit(pid: u32, secs: i64) -> bool {
    let Some(pidfd) = pidfd_open(pid as i32) else {
        return true; // Already gone: wait() will collect it.
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs.max(0) as u64);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(
            // SAFETY: `pidfd` is an open descriptor owned by this frame for the whole loop.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(pidfd.as_raw_fd()) },
            PollFlags::POLLIN,
        )];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) if !left.is_zero() => continue,
            Err(_) => return true,
        }
    }
}

/// Whether the process behind a pidfd has exited (a pidfd polls readable then).
pub fn has_exited(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// pidfd_open(2): std and nix have no stable wrapper for it.
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn hook_reads_state_on_stdin_and_sees_only_its_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c","cat > {0}; echo \"$FOO-$HOME\" >> {0}"],"env":["FOO=bar"]}}"#,
            out.display()
        ));
        run_hooks("prestart", &[h], br#"{"id":"x"}"#).unwrap();
        assert_eq!(
            std::fs::read_to_string(out).unwrap(),
            "{\"id\":\"x\"}bar-\n"
        );
    }

    #[test]
    fn failing_hook_names_kind_and_index() {
        let ok = hook(r#"{"path":"/bin/true"}"#);
        let bad = hook(r#"{"path":"/bin/false"}"#);
        let err = run_hooks("createRuntime", &[ok, bad], b"{}")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("hooks.createRuntime[1] (/bin/false)"),
            "{err}"
        );
    }

    #[test]
    fn run_all_hooks_keeps_going_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let bad = hook(r#"{"path":"/bin/false"}"#);
        let good = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c","echo ran > {}"]}}"#,
            out.display()
        ));
        let errors = run_all_hooks("poststop", &[bad.clone(), good, bad], b"{}");
        let indexes: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 2, "{indexes:?}");
        assert!(indexes[0].starts_with("hooks.poststop[0]"), "{indexes:?}");
        assert!(indexes[1].starts_with("hooks.poststop[2]"), "{indexes:?}");
        assert_eq!(std::fs::read_to_string(out).unwrap(), "ran\n");
    }

    #[test]
    fn slow_hook_times_out() {
        let slow = hook(r#"{"path":"/bin/sleep","args":["sleep","5"],"timeout":1}"#);
        let started = std::time::Instant::now();
        let err = run_hooks("poststart", &[slow], b"{}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("timed out"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(4));
    }
}
