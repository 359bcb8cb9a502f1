//! OCI seccomp actions (plus their `errnoRet`) -> seccompiler actions.

use oci_spec::runtime::LinuxSeccompAction;
use seccompiler::SeccompAction;

use super::SeccompError;

/// errno used when SCMP_ACT_ERRNO / SCMP_ACT_TRACE come without errnoRet (runc does the same).
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;
/// The kernel clamps SECCOMP_RET_ERRNO data to MAX_ERRNO; larger values would silently change.
const MAX_ERRNO: u32 = 4095;
/// SECCOMP_RET_TRACE passes 16 bits of data to the tracer.
const MAX_TRACE_DATA: u32 = 0xffff;

/// One resolved action, data included; rules with equal `RuleAction`s share a BPF filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    KillThread,
    KillProcess,
    Trap,
    Errno(u32),
    Trace(u32),
    Log,
    Allow,
}

impl RuleAction {
    /// `field` is the action's config path (e.g. `linux.seccomp.syscalls[2].action`) and
    /// `errno_field` the path of the matching errnoRet.
    pub fn from_oci(
        action: LinuxSeccompAction,
        errno_ret: Option<u32>,
        field: &str,
        errno_field: &str,
    ) -> Result<Self, SeccompError> {
        let resolved = match action {
            LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
                RuleAction::KillThread
            }
            LinuxSeccompAction::ScmpActKillProcess => RuleAction::KillProcess,
            LinuxSeccompAction::ScmpActTrap => RuleAction::Trap,
            LinuxSeccompAction::ScmpActLog => RuleAction::Log,
            LinuxSeccompAction::ScmpActAllow => RuleAction::Allow,
            LinuxSeccompAction::ScmpActErrno => {
                let errno = checked_data(errno_ret, MAX_ERRNO, action, errno_field)?;
                return Ok(RuleAction::Errno(errno));
            }
            LinuxSeccompAction::ScmpActTrace => {
                let data = checked_data(errno_ret, MAX_TRACE_DATA, action, errno_field)?;
                return Ok(RuleAction::Trace(data));
            }
            LinuxSeccompAction::ScmpActNotify => {
                return Err(SeccompError::NotifyUnsupported {
                    field: field.to_owned(),
                });
            }
        };
        if errno_ret.is_some() {
            return Err(SeccompError::ErrnoRetWithoutErrnoAction {
                field: errno_field.to_owned(),
                action: action.to_string(),
            });
        }
        Ok(resolved)
    }

    pub fn to_seccompiler(self) -> SeccompAction {
        match self {
            RuleAction::KillThread => SeccompAction::KillThread,
            RuleAction::KillProcess => SeccompAction::KillProcess,
            RuleAction::Trap => SeccompAction::Trap,
            RuleAction::Errno(errno) => SeccompAction::Errno(errno),
            RuleAction::Trace(data) => SeccompAction::Trace(data),
            RuleAction::Log => SeccompAction::Log,
            RuleAction::Allow => SeccompAction::Allow,
        }
    }
}

fn checked_data(
    errno_ret: Option<u32>,
    max: u32,
    action: LinuxSeccompAction,
    errno_field: &str,
) -> Result<u32, SeccompError> {
    let value = errno_ret.unwrap_or(DEFAULT_ERRNO);
    if value > max {
        return Err(SeccompError::ErrnoRetOutOfRange {
            field: errno_field.to_owned(),
            value,
            action: action.to_string(),
            max,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(action: LinuxSeccompAction, errno: Option<u32>) -> Result<RuleAction, SeccompError> {
        RuleAction::from_oci(action, errno, "f.action", "f.errnoRet")
    }

    #[test]
    fn errno_defaults_to_eperm_and_keeps_explicit_values() {
        let eperm = libc::EPERM as u32;
        assert_eq!(
            resolve(LinuxSeccompAction::ScmpActErrno, None).unwrap(),
            RuleAction::Errno(eperm)
        );
        assert_eq!(
            resolve(LinuxSeccompAction::ScmpActErrno, Some(38)).unwrap(),
            RuleAction::Errno(38)
        );
        assert_eq!(
            resolve(LinuxSeccompAction::ScmpActTrace, Some(7)).unwrap(),
            RuleAction::Trace(7)
        );
        assert_eq!(
            resolve(LinuxSeccompAction::ScmpActKill, None).unwrap(),
            RuleAction::KillThread
        );
    }

    #[test]
    fn notify_and_misplaced_errno_are_rejected_with_the_field() {
        let err = resolve(LinuxSeccompAction::ScmpActNotify, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("f.action: SCMP_ACT_NOTIFY is not supported"),
            "{err}"
        );
        let err = resolve(LinuxSeccompAction::ScmpActAllow, Some(1)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("f.errnoRet: errnoRet is only valid"),
            "{err}"
        );
        let err = resolve(LinuxSeccompAction::ScmpActErrno, Some(70000)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("f.errnoRet: 70000 is too large"),
            "{err}"
        );
    }
}
