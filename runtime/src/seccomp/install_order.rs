//! Putting the filter that denies seccomp(2) last.
//!
//! Each filter is installed with its own seccomp(2) call, and every filter already installed
//! judges that call. A filter that denies seccomp(2) (a default-deny final filter without
//! `seccomp` in its rules, or a group listing `seccomp`) must therefore be installed last, or
//! the filters after it could not be installed. Two such filters cannot both be last, so that
//! profile is refused at compile time.

use super::action::RuleAction;
use super::args::ArgMatch;
use super::compile::PlannedFilter;
use super::SeccompError;

/// Moves the one filter that may deny seccomp(2) to the end, keeping the others' order.
pub fn seccomp_denier_last(
    mut plan: Vec<PlannedFilter>,
) -> Result<Vec<PlannedFilter>, SeccompError> {
    let deniers: Vec<usize> = (0..plan.len())
        .filter(|&i| may_deny_seccomp(&plan[i]))
        .collect();
    match deniers.as_slice() {
        [] => Ok(plan),
        [index] => {
            let denier = plan.remove(*index);
            plan.push(denier);
            Ok(plan)
        }
        _ => Err(SeccompError::SeccompDeniedTwice {
            actions: deniers
                .iter()
                .map(|&i| describe(&plan[i]))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Whether the filter can return anything but ALLOW or LOG for some seccomp(2) call. Argument
/// conditions count as "may", since the install call's pointer argument is not known here.
fn may_deny_seccomp(filter: &PlannedFilter) -> bool {
    let lets_through = |action: RuleAction| matches!(action, RuleAction::Allow | RuleAction::Log);
    match filter.syscalls.get(&libc::SYS_seccomp) {
        None => !lets_through(filter.otherwise),
        Some(ArgMatch::Always) => !lets_through(filter.on_match),
        Some(ArgMatch::AnyOf(_)) => {
            !lets_through(filter.on_match) || !lets_through(filter.otherwise)
        }
    }
}

fn describe(filter: &PlannedFilter) -> String {
    if filter.otherwise == RuleAction::Allow {
        format!("the rules with {:?}", filter.on_match)
    } else {
        format!("the default action {:?}", filter.otherwise)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::groups::SyscallMatches;

    fn filter(on_match: RuleAction, otherwise: RuleAction, nrs: &[i64]) -> PlannedFilter {
        let syscalls: SyscallMatches = nrs.iter().map(|&nr| (nr, ArgMatch::Always)).collect();
        PlannedFilter {
            on_match,
            otherwise,
            syscalls,
        }
    }

    #[test]
    fn a_default_deny_without_seccomp_goes_last() {
        let final_filter = filter(RuleAction::Allow, RuleAction::Errno(1), &[libc::SYS_read]);
        let group = filter(RuleAction::Errno(38), RuleAction::Allow, &[libc::SYS_mkdir]);
        let ordered = seccomp_denier_last(vec![final_filter.clone(), group.clone()]).unwrap();
        assert_eq!(ordered, vec![group, final_filter]);
    }

    #[test]
    fn filters_that_let_seccomp_through_keep_their_order() {
        let final_filter = filter(
            RuleAction::Allow,
            RuleAction::Errno(1),
            &[libc::SYS_seccomp],
        );
        let group = filter(RuleAction::Log, RuleAction::Allow, &[libc::SYS_seccomp]);
        let plan = vec![final_filter, group];
        assert_eq!(seccomp_denier_last(plan.clone()).unwrap(), plan);
    }

    #[test]
    fn two_filters_denying_seccomp_are_refused() {
        let a = filter(
            RuleAction::Errno(1),
            RuleAction::Allow,
            &[libc::SYS_seccomp],
        );
        let b = filter(
            RuleAction::KillProcess,
            RuleAction::Allow,
            &[libc::SYS_seccomp],
        );
        let err = seccomp_denier_last(vec![a, b]).unwrap_err().to_string();
        assert!(
            err.contains("Errno(1)") && err.contains("KillProcess"),
            "{err}"
        );
    }
}
