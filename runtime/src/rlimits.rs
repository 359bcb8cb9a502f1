//! process.rlimits: set in init before credentials drop, since raising a hard limit needs
//! CAP_SYS_RESOURCE.

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

/// The libc resource number of an OCI rlimit type.
pub fn resource_of(typ: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match typ {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Applies every rlimit; the error names the entry and explains the usual EPERM cause.
pub fn apply(rlimits: &[PosixRlimit]) -> Result<(), String> {
    for (i, r) in rlimits.iter().enumerate() {
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit reads the struct we pass by reference and nothing else.
        let rc = unsafe { libc::setrlimit(resource_of(r.typ()), &lim) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            let hint = if err.raw_os_error() == Some(libc::EPERM) {
                let mut cur = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: getrlimit writes into the struct we own.
                unsafe { libc::getrlimit(resource_of(r.typ()), &mut cur) };
                format!(
                    " (the hard limit {} is above the runtime's own hard limit {}, and raising it needs CAP_SYS_RESOURCE)",
                    r.hard(),
                    cur.rlim_max
                )
            } else {
                String::new()
            };
            return Err(format!("process.rlimits[{i}] ({:?}): {err}{hint}", r.typ()));
        }
    }
    Ok(())
}
