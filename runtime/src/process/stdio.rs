//! Giving a container process stdio other than the cli's own (a shim passes containerd's FIFOs).

use std::os::fd::RawFd;

/// Makes `fds` the calling process's descriptors 0, 1 and 2. A descriptor below 3 must already
/// be in its own place: moving one stdio number onto another could overwrite a source before it
/// is used.
pub fn install(fds: [RawFd; 3]) -> Result<(), String> {
    for (target, fd) in fds.into_iter().enumerate() {
        if fd < 3 && fd != target as RawFd {
            return Err(format!("stdio: descriptor {fd} cannot become {target}"));
        }
    }
    for (target, fd) in fds.into_iter().enumerate() {
        if fd == target as RawFd {
            continue;
        }
        // SAFETY: dup2 onto a stdio number; `fd` is a descriptor the cli handed to this process.
        if unsafe { libc::dup2(fd, target as RawFd) } < 0 {
            return Err(format!(
                "stdio: dup2({fd}, {target}): {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    #[test]
    fn refuses_shuffling_stdio_numbers() {
        assert!(install([1, 0, 2]).is_err());
    }

    #[test]
    fn child_writes_to_the_given_stdout() {
        let (mut reader, writer) = std::io::pipe().expect("pipe");
        // SAFETY: the child only calls dup2, write and _exit (no allocation) before exiting.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let fd = writer.as_raw_fd();
                let code = match install([0, fd, 2]) {
                    // SAFETY: writes a static buffer to fd 1, then leaves without unwinding.
                    Ok(()) => unsafe { libc::write(1, b"via fd 1".as_ptr().cast(), 8) as i32 },
                    Err(_) => -1,
                };
                // SAFETY: ends the forked child without running the test harness's code.
                unsafe { libc::_exit(if code == 8 { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(writer);
                let mut out = String::new();
                reader.read_to_string(&mut out).expect("read");
                let status = nix::sys::wait::waitpid(child, None).expect("wait");
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
                assert_eq!(out, "via fd 1");
            }
        }
    }
}
