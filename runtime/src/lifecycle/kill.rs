//! `kill`: signal init through a pidfd (never a recycled pid), or every process with `--all`.

use std::str::FromStr;

use nix::sys::signal::Signal;
use runvm_oci::{ContainerState, Status};

use super::Error;
use crate::container::{live_status, proc_start_time, ContainerDir};
use crate::hooks::pidfd_open;
use crate::process::launch::send_signal;

/// Accepts `KILL`, `SIGKILL`, `kill` or `9`.
pub fn parse_signal(text: &str) -> Result<i32, Error> {
    if let Ok(n) = text.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Error::Setup(format!("signal {n} is out of range 1..64")));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name)
        .map(|s| s as i32)
        .map_err(|_| Error::Setup(format!("unknown signal {text:?}")))
}

/// Signals `pid` only if it is still the process that started at `start_time`.
pub(crate) fn signal_pid(pid: i32, start_time: u64, signal: i32) -> std::io::Result<()> {
    let pidfd = pidfd_open(pid).ok_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    // Checked after opening the pidfd: from now on the pid cannot be reused under us.
    match proc_start_time(pid) {
        Some((start, _)) if start == start_time || start_time == 0 => send_signal(&pidfd, signal),
        _ => Err(std::io::Error::from_raw_os_error(libc::ESRCH)),
    }
}

pub fn kill(
    dir: &ContainerDir,
    state: &ContainerState,
    signal: i32,
    all: bool,
) -> Result<(), Error> {
    let cgroup = super::cgroup_of(state)?;
    let status = live_status(state, dir, || cgroup.is_frozen().unwrap_or(false));
    if status == Status::Stopped && !all {
        return Err(Error::WrongStatus {
            id: state.id.clone(),
            status,
            action: "kill",
            needed: "created, running or paused",
        });
    }
    if all {
        for pid in cgroup.pids()? {
            // A process may exit between listing and signalling; that is fine.
            let _ = signal_pid(pid, 0, signal);
        }
        return Ok(());
    }
    signal_pid(state.pid, state.pid_start_time, signal)
        .map_err(|e| Error::Setup(format!("kill {} (pid {}): {e}", state.id, state.pid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("hup").unwrap(), 1);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("SIGNOPE").is_err());
    }
}
