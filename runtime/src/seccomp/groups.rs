//! Profile rules -> groups of (syscall -> argument match) that share one action.

use std::collections::BTreeMap;

use oci_spec::runtime::LinuxSeccomp;

use super::action::RuleAction;
use super::args::{compile_args, ArgMatch};
use super::names::{resolve, Resolved};
use super::SeccompError;

/// Syscall number -> when it matches.
pub type SyscallMatches = BTreeMap<i64, ArgMatch>;

/// All rules of one action, in the order the action first appears in the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub action: RuleAction,
    pub syscalls: SyscallMatches,
}

/// Validates every rule and groups them by action. Groups keep profile order.
pub fn group_rules(profile: &LinuxSeccomp) -> Result<Vec<Group>, SeccompError> {
    let mut groups: Vec<Group> = Vec::new();
    for (i, rule) in profile.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let action = RuleAction::from_oci(
            rule.action(),
            rule.errno_ret(),
            &format!("{field}.action"),
            &format!("{field}.errnoRet"),
        )?;
        let arg_match = compile_args(
            rule.args().as_deref().unwrap_or_default(),
            &format!("{field}.args"),
        )?;
        let mut numbers = Vec::with_capacity(rule.names().len());
        for (j, name) in rule.names().iter().enumerate() {
            match resolve(name) {
                Resolved::Native(nr) => numbers.push(nr),
                Resolved::OtherArchOnly => {}
                Resolved::Unknown => {
                    return Err(SeccompError::UnknownSyscall {
                        field: format!("{field}.names[{j}]"),
                        name: name.clone(),
                    })
                }
            }
        }
        let index = match groups.iter().position(|g| g.action == action) {
            Some(index) => index,
            None => {
                groups.push(Group {
                    action,
                    syscalls: SyscallMatches::new(),
                });
                groups.len() - 1
            }
        };
        for nr in numbers {
            merge(&mut groups[index].syscalls, nr, arg_match.clone());
        }
    }
    Ok(groups)
}

/// Adds `arg_match` for syscall `nr`, ORed with what is already there.
pub fn merge(syscalls: &mut SyscallMatches, nr: i64, arg_match: ArgMatch) {
    let merged = match syscalls.remove(&nr) {
        Some(existing) => existing.or(arg_match),
        None => arg_match,
    };
    syscalls.insert(nr, merged);
}
