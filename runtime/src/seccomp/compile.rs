//! Groups -> the stack of BPF programs (see the module comment in `mod.rs` for the design).

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompFilterFlag};
use seccompiler::{BpfProgram, SeccompFilter, TargetArch};

use super::action::RuleAction;
use super::groups::{group_rules, merge, Group, SyscallMatches};
use super::install_order::seccomp_denier_last;
use super::x32_guard::x32_guard;
use super::{CompiledSeccomp, SeccompError};

pub fn compile(profile: &LinuxSeccomp) -> Result<CompiledSeccomp, SeccompError> {
    if let Some(path) = profile.listener_path() {
        return Err(SeccompError::ListenerUnsupported {
            path: path.display().to_string(),
        });
    }
    let default = RuleAction::from_oci(
        profile.default_action(),
        profile.default_errno_ret(),
        "linux.seccomp.defaultAction",
        "linux.seccomp.defaultErrnoRet",
    )?;
    let plan = seccomp_denier_last(plan_filters(default, group_rules(profile)?))?;
    let mut filters = Vec::with_capacity(plan.len() + 1);
    if !plan.is_empty() {
        // First, so it never blocks the install of the others (it allows every x86_64 call).
        filters.push(x32_guard());
    }
    for planned in plan {
        filters.push(build(planned)?);
    }
    check_total_size(&filters)?;
    Ok(CompiledSeccomp {
        filters,
        flags: filter_flags(profile.flags().as_deref().unwrap_or_default()),
    })
}

/// The kernel refuses a filter that would bring the process's filters above MAX_INSNS_PER_PATH
/// (32768 instructions, each filter counting its length plus 4). Checked here so such a profile
/// fails `create` with its reason instead of init failing at install time.
const MAX_TOTAL_INSTRUCTIONS: usize = 32768;
const PER_FILTER_OVERHEAD: usize = 4;

fn check_total_size(filters: &[BpfProgram]) -> Result<(), SeccompError> {
    let instructions: usize = filters.iter().map(|f| f.len() + PER_FILTER_OVERHEAD).sum();
    if instructions > MAX_TOTAL_INSTRUCTIONS {
        return Err(SeccompError::TooLarge {
            instructions,
            limit: MAX_TOTAL_INSTRUCTIONS,
        });
    }
    Ok(())
}

/// One seccompiler filter: `syscalls` -> `on_match`, everything else -> `otherwise`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFilter {
    pub on_match: RuleAction,
    pub otherwise: RuleAction,
    pub syscalls: SyscallMatches,
}

/// The filters in install order: the final filter, then the groups in reverse profile order
/// (the kernel runs the newest first, but order only breaks ties between equal actions with
/// different data). `seccomp_denier_last` may still move one filter to the end.
pub fn plan_filters(default: RuleAction, mut groups: Vec<Group>) -> Vec<PlannedFilter> {
    drop_syscalls_equal_to_default(default, &mut groups);

    let mut plan = Vec::new();
    if default != RuleAction::Allow {
        // The final filter: any rule matching -> ALLOW (the group filters decide), else default.
        let mut all_rules = SyscallMatches::new();
        for group in &groups {
            for (nr, arg_match) in &group.syscalls {
                merge(&mut all_rules, *nr, arg_match.clone());
            }
        }
        plan.push(PlannedFilter {
            on_match: RuleAction::Allow,
            otherwise: default,
            syscalls: all_rules,
        });
    }
    // Reverse profile order: the first-listed group is installed last, so it wins ties.
    for group in groups.into_iter().rev() {
        if group.action != RuleAction::Allow && !group.syscalls.is_empty() {
            plan.push(PlannedFilter {
                on_match: group.action,
                otherwise: RuleAction::Allow,
                syscalls: group.syscalls,
            });
        }
    }
    plan
}

/// A rule whose action equals the default changes nothing for a syscall that no other group
/// names: with or without it, that syscall always ends in the default action. Dropping those
/// syscalls keeps filters small and often removes a whole group (Docker-style profiles list
/// many ERRNO rules equal to their default).
fn drop_syscalls_equal_to_default(default: RuleAction, groups: &mut [Group]) {
    let Some(same) = groups.iter().position(|g| g.action == default) else {
        return;
    };
    let named_elsewhere = |nr: &i64, groups: &[Group]| {
        groups
            .iter()
            .enumerate()
            .any(|(i, g)| i != same && g.syscalls.contains_key(nr))
    };
    let keep: SyscallMatches = groups[same]
        .syscalls
        .iter()
        .filter(|(nr, _)| named_elsewhere(nr, groups))
        .map(|(nr, m)| (*nr, m.clone()))
        .collect();
    groups[same].syscalls = keep;
}

fn build(planned: PlannedFilter) -> Result<BpfProgram, SeccompError> {
    let name = format!("{:?} (others {:?})", planned.on_match, planned.otherwise);
    let rules = planned
        .syscalls
        .into_iter()
        .map(|(nr, arg_match)| (nr, arg_match.into_rules()))
        .collect();
    let filter = SeccompFilter::new(
        rules,
        planned.otherwise.to_seccompiler(),
        planned.on_match.to_seccompiler(),
        TargetArch::x86_64,
    )
    .and_then(BpfProgram::try_from)
    .map_err(|source| SeccompError::Backend {
        filter: name,
        source,
    })?;
    Ok(filter)
}

fn filter_flags(flags: &[LinuxSeccompFilterFlag]) -> libc::c_ulong {
    flags.iter().fold(0, |acc, flag| {
        acc | match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            // Only meaningful with a notify listener (which runvm refuses); the kernel rejects
            // it without SECCOMP_FILTER_FLAG_NEW_LISTENER, so it is dropped.
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::args::ArgMatch;
    use oci_spec::runtime::{
        LinuxSeccompAction as Action, LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall,
        LinuxSyscallBuilder,
    };

    fn rule(names: &[&str], action: Action, errno: Option<u32>) -> LinuxSyscall {
        let mut builder = LinuxSyscallBuilder::default()
            .names(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .action(action);
        if let Some(errno) = errno {
            builder = builder.errno_ret(errno);
        }
        builder.build().unwrap()
    }

    fn with_arg0_eq(mut rule: LinuxSyscall, value: u64) -> LinuxSyscall {
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .op(LinuxSeccompOperator::ScmpCmpEq)
            .value(value)
            .build()
            .unwrap();
        rule.set_args(Some(vec![arg]));
        rule
    }

    fn profile(default: Action, errno: Option<u32>, rules: Vec<LinuxSyscall>) -> LinuxSeccomp {
        let mut profile = LinuxSeccomp::default();
        profile.set_default_action(default);
        profile.set_default_errno_ret(errno);
        profile.set_syscalls(Some(rules));
        profile
    }

    fn plan(profile: &LinuxSeccomp) -> Vec<PlannedFilter> {
        let default = RuleAction::from_oci(
            profile.default_action(),
            profile.default_errno_ret(),
            "d",
            "e",
        )
        .unwrap();
        plan_filters(default, group_rules(profile).unwrap())
    }

    fn numbers(filter: &PlannedFilter) -> Vec<i64> {
        filter.syscalls.keys().copied().collect()
    }

    /// Twelve errno groups of 300 two-argument rules compile to about 43,000 instructions: the
    /// kernel would refuse to install them, so compile must refuse them first.
    #[test]
    fn profiles_beyond_the_kernels_instruction_limit_are_refused() {
        let mut rules = Vec::new();
        for errno in 1..=12u32 {
            for value in 0..300u64 {
                let mut r = with_arg0_eq(
                    rule(&["personality"], Action::ScmpActErrno, Some(errno)),
                    value,
                );
                let second = LinuxSeccompArgBuilder::default()
                    .index(1usize)
                    .op(LinuxSeccompOperator::ScmpCmpEq)
                    .value(value + u64::from(errno) * 1000)
                    .build()
                    .unwrap();
                if let Some(args) = r.args().clone() {
                    r.set_args(Some(args.into_iter().chain([second]).collect()));
                }
                rules.push(r);
            }
        }
        let err = compile(&profile(Action::ScmpActAllow, None, rules)).unwrap_err();
        assert!(matches!(err, SeccompError::TooLarge { .. }), "{err}");
        assert!(err.to_string().starts_with("linux.seccomp"), "{err}");
    }

    #[test]
    fn groups_by_action_and_data_with_a_final_allow_filter() {
        let profile = profile(
            Action::ScmpActErrno,
            Some(1),
            vec![
                rule(&["read", "write"], Action::ScmpActAllow, None),
                rule(&["mkdir"], Action::ScmpActErrno, Some(38)),
                rule(&["kill"], Action::ScmpActKillProcess, None),
                rule(&["getcwd"], Action::ScmpActErrno, Some(38)),
                // Same as the default and named nowhere else: dropped entirely.
                rule(&["mount"], Action::ScmpActErrno, None),
                // Same as the default but personality is also conditionally allowed: kept.
                rule(&["personality"], Action::ScmpActErrno, Some(1)),
                with_arg0_eq(rule(&["personality"], Action::ScmpActAllow, None), 0),
            ],
        );
        let plan = plan(&profile);
        let final_filter = &plan[0];
        assert_eq!(final_filter.on_match, RuleAction::Allow);
        assert_eq!(final_filter.otherwise, RuleAction::Errno(1));
        let mut expected = vec![
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_mkdir,
            libc::SYS_kill,
            libc::SYS_getcwd,
            libc::SYS_personality,
        ];
        expected.sort_unstable();
        assert_eq!(numbers(final_filter), expected);
        // Personality is unconditional in the ERRNO rule, so the final filter allows it always.
        assert_eq!(
            final_filter.syscalls[&libc::SYS_personality],
            ArgMatch::Always
        );

        // Group filters follow in reverse profile order; the ALLOW group has none.
        let groups: Vec<(RuleAction, RuleAction, Vec<i64>)> = plan[1..]
            .iter()
            .map(|f| (f.on_match, f.otherwise, numbers(f)))
            .collect();
        assert_eq!(
            groups,
            vec![
                (
                    RuleAction::Errno(1),
                    RuleAction::Allow,
                    vec![libc::SYS_personality]
                ),
                (
                    RuleAction::KillProcess,
                    RuleAction::Allow,
                    vec![libc::SYS_kill]
                ),
                (
                    RuleAction::Errno(38),
                    RuleAction::Allow,
                    vec![libc::SYS_getcwd, libc::SYS_mkdir]
                ),
            ]
        );
    }

    #[test]
    fn allow_default_needs_no_final_filter_and_allow_rules_need_none() {
        let only_allow = profile(
            Action::ScmpActAllow,
            None,
            vec![rule(&["read"], Action::ScmpActAllow, None)],
        );
        assert!(plan(&only_allow).is_empty());
        assert!(compile(&only_allow).unwrap().filters().is_empty());

        let deny_one = profile(
            Action::ScmpActAllow,
            None,
            vec![
                rule(&["read"], Action::ScmpActAllow, None),
                rule(&["unshare"], Action::ScmpActErrno, None),
            ],
        );
        let plan = plan(&deny_one);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].on_match, RuleAction::Errno(libc::EPERM as u32));
        assert_eq!(numbers(&plan[0]), vec![libc::SYS_unshare]);
        // Plus the x32 guard.
        assert_eq!(compile(&deny_one).unwrap().filters().len(), 2);
    }

    #[test]
    fn conditional_and_unconditional_rules_of_one_group_merge() {
        let profile = profile(
            Action::ScmpActAllow,
            None,
            vec![
                with_arg0_eq(rule(&["umask"], Action::ScmpActLog, None), 1),
                with_arg0_eq(rule(&["umask"], Action::ScmpActLog, None), 2),
                rule(&["getpid"], Action::ScmpActLog, None),
                with_arg0_eq(rule(&["getpid"], Action::ScmpActLog, None), 3),
            ],
        );
        let plan = plan(&profile);
        assert_eq!(plan.len(), 1);
        match &plan[0].syscalls[&libc::SYS_umask] {
            ArgMatch::AnyOf(rules) => assert_eq!(rules.len(), 2),
            ArgMatch::Always => panic!("umask rules are conditional"),
        }
        assert_eq!(plan[0].syscalls[&libc::SYS_getpid], ArgMatch::Always);
    }

    #[test]
    fn unknown_names_are_reported_with_their_position() {
        let profile = profile(
            Action::ScmpActErrno,
            None,
            vec![
                rule(&["read"], Action::ScmpActAllow, None),
                rule(&["write"], Action::ScmpActAllow, None),
                rule(&["close"], Action::ScmpActAllow, None),
                rule(&["foo", "read"], Action::ScmpActAllow, None),
            ],
        );
        let err = compile(&profile).unwrap_err();
        assert_eq!(
            err.to_string(),
            "linux.seccomp.syscalls[3].names[0]: unknown syscall \"foo\""
        );
    }

    #[test]
    fn names_of_other_architectures_are_skipped() {
        let profile = profile(
            Action::ScmpActErrno,
            None,
            vec![rule(
                &["_llseek", "socketcall", "read"],
                Action::ScmpActAllow,
                None,
            )],
        );
        let plan = plan(&profile);
        assert_eq!(numbers(&plan[0]), vec![libc::SYS_read]);
    }

    #[test]
    fn notify_and_listeners_are_refused() {
        let in_rule = profile(
            Action::ScmpActAllow,
            None,
            vec![
                rule(&["read"], Action::ScmpActAllow, None),
                rule(&["mkdir"], Action::ScmpActNotify, None),
            ],
        );
        assert_eq!(
            compile(&in_rule).unwrap_err().to_string(),
            "linux.seccomp.syscalls[1].action: SCMP_ACT_NOTIFY is not supported (runvm has no \
             seccomp notify listener)"
        );
        let as_default = profile(Action::ScmpActNotify, None, vec![]);
        let err = compile(&as_default).unwrap_err().to_string();
        assert!(
            err.starts_with("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY"),
            "{err}"
        );

        let mut with_listener = profile(Action::ScmpActAllow, None, vec![]);
        with_listener.set_listener_path(Some("/run/agent.sock".into()));
        let err = compile(&with_listener).unwrap_err().to_string();
        assert!(err.starts_with("linux.seccomp.listenerPath:"), "{err}");
    }

    #[test]
    fn default_errno_is_validated_against_the_default_action() {
        let bad = profile(Action::ScmpActKillProcess, Some(1), vec![]);
        let err = compile(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with("linux.seccomp.defaultErrnoRet: errnoRet is only valid"),
            "{err}"
        );
    }

    #[test]
    fn flags_map_to_kernel_bits() {
        let mut profile = profile(Action::ScmpActErrno, None, vec![]);
        profile.set_flags(Some(vec![
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
        ]));
        let compiled = compile(&profile).unwrap();
        assert_eq!(
            compiled.flags(),
            libc::SECCOMP_FILTER_FLAG_TSYNC | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
        );
    }

    #[test]
    fn default_profile_needs_three_filters() {
        // Final allowlist filter, the clone3 ENOSYS group, and the x32 guard.
        let compiled = compile(&crate::seccomp::default_profile()).unwrap();
        assert_eq!(compiled.filters().len(), 3, "{compiled:?}");
    }
}
