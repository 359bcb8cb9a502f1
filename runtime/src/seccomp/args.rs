//! A rule's `args[]` -> the argument test seccompiler evaluates for one syscall.
//!
//! Conditions of one rule are ANDed. If two or more conditions test the same argument index,
//! the rule is instead split into one rule per condition (all ORed), exactly as runc does:
//! old libseccomp rejected repeated indices, and profiles written for runc rely on the split
//! (e.g. `arg0 == A, arg0 == B` meaning "A or B").

use oci_spec::runtime::{LinuxSeccompArg, LinuxSeccompOperator};
use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

use super::SeccompError;

/// Syscalls take at most 6 arguments.
const ARG_COUNT: usize = 6;

/// When a syscall matches a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgMatch {
    /// Whatever the arguments are.
    Always,
    /// When any of these rules (each an AND of conditions) holds; never empty.
    AnyOf(Vec<SeccompRule>),
}

impl ArgMatch {
    /// The match of two rules for the same syscall and action: either one suffices.
    pub fn or(self, other: ArgMatch) -> ArgMatch {
        match (self, other) {
            (ArgMatch::AnyOf(mut left), ArgMatch::AnyOf(right)) => {
                for rule in right {
                    if !left.contains(&rule) {
                        left.push(rule);
                    }
                }
                ArgMatch::AnyOf(left)
            }
            _ => ArgMatch::Always,
        }
    }

    /// seccompiler's encoding: an empty rule list matches on the syscall number alone.
    pub fn into_rules(self) -> Vec<SeccompRule> {
        match self {
            ArgMatch::Always => Vec::new(),
            ArgMatch::AnyOf(rules) => rules,
        }
    }
}

/// `field` is the config path of the args list, e.g. `linux.seccomp.syscalls[3].args`.
pub fn compile_args(args: &[LinuxSeccompArg], field: &str) -> Result<ArgMatch, SeccompError> {
    if args.is_empty() {
        return Ok(ArgMatch::Always);
    }
    let mut per_index = [0usize; ARG_COUNT];
    let mut conditions = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        let arg_field = format!("{field}[{i}]");
        conditions.push(condition(arg, &arg_field)?);
        per_index[arg.index()] += 1;
    }
    let rules = if per_index.iter().any(|&count| count > 1) {
        conditions
            .into_iter()
            .map(|condition| new_rule(vec![condition]))
            .collect()
    } else {
        vec![new_rule(conditions)]
    };
    Ok(ArgMatch::AnyOf(rules))
}

fn new_rule(conditions: Vec<SeccompCondition>) -> SeccompRule {
    // seccompiler only rejects an empty condition list, which callers never pass.
    SeccompRule::new(conditions).unwrap_or_else(|_| unreachable!("rule has conditions"))
}

fn condition(arg: &LinuxSeccompArg, field: &str) -> Result<SeccompCondition, SeccompError> {
    let index = arg.index();
    let arg_index = u8::try_from(index)
        .ok()
        .filter(|&i| usize::from(i) < ARG_COUNT)
        .ok_or_else(|| SeccompError::ArgIndexOutOfRange {
            field: field.to_owned(),
            index,
        })?;
    let value_two = arg.value_two().unwrap_or(0);
    let (op, compared) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            // seccompiler computes (arg & mask) == (valueTwo & mask); OCI/libseccomp compare
            // with valueTwo itself. They agree only when valueTwo lies inside the mask, and a
            // valueTwo outside it could never match, so reject that instead of altering it.
            let mask = arg.value();
            if value_two & !mask != 0 {
                return Err(SeccompError::MaskedEqNeverMatches {
                    field: field.to_owned(),
                    mask,
                    value_two,
                });
            }
            (SeccompCmpOp::MaskedEq(mask), value_two)
        }
        other => {
            // Docker's profiles write `"valueTwo": 0` everywhere; only a non-zero one is a
            // misunderstanding worth reporting.
            if value_two != 0 {
                return Err(SeccompError::ValueTwoWithoutMaskedEq {
                    field: field.to_owned(),
                    op: other.to_string(),
                });
            }
            (plain_op(other), arg.value())
        }
    };
    // x86_64 passes every argument in a 64-bit register; compare all of it like libseccomp.
    SeccompCondition::new(arg_index, SeccompCmpArgLen::Qword, op, compared).map_err(|_| {
        SeccompError::ArgIndexOutOfRange {
            field: field.to_owned(),
            index,
        }
    })
}

fn plain_op(op: LinuxSeccompOperator) -> SeccompCmpOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => SeccompCmpOp::Ne,
        LinuxSeccompOperator::ScmpCmpLt => SeccompCmpOp::Lt,
        LinuxSeccompOperator::ScmpCmpLe => SeccompCmpOp::Le,
        LinuxSeccompOperator::ScmpCmpEq => SeccompCmpOp::Eq,
        LinuxSeccompOperator::ScmpCmpGe => SeccompCmpOp::Ge,
        LinuxSeccompOperator::ScmpCmpGt => SeccompCmpOp::Gt,
        LinuxSeccompOperator::ScmpCmpMaskedEq => unreachable!("handled by the caller"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxSeccompArgBuilder;

    fn arg(index: usize, op: LinuxSeccompOperator, value: u64, value_two: u64) -> LinuxSeccompArg {
        LinuxSeccompArgBuilder::default()
            .index(index)
            .op(op)
            .value(value)
            .value_two(value_two)
            .build()
            .unwrap()
    }

    fn eq(index: usize, value: u64) -> LinuxSeccompArg {
        arg(index, LinuxSeccompOperator::ScmpCmpEq, value, 0)
    }

    fn rule_count(m: &ArgMatch) -> usize {
        match m {
            ArgMatch::Always => 0,
            ArgMatch::AnyOf(rules) => rules.len(),
        }
    }

    #[test]
    fn distinct_indices_are_anded_into_one_rule() {
        let m = compile_args(&[eq(0, 1), eq(2, 3)], "a").unwrap();
        assert_eq!(rule_count(&m), 1);
    }

    #[test]
    fn repeated_index_splits_every_condition_into_its_own_rule() {
        let m = compile_args(&[eq(0, 1), eq(0, 2), eq(1, 5)], "a").unwrap();
        assert_eq!(rule_count(&m), 3);
    }

    #[test]
    fn no_args_matches_always_and_always_absorbs_conditions() {
        assert_eq!(compile_args(&[], "a").unwrap(), ArgMatch::Always);
        let conditional = compile_args(&[eq(0, 1)], "a").unwrap();
        assert_eq!(conditional.clone().or(ArgMatch::Always), ArgMatch::Always);
        let merged = conditional
            .clone()
            .or(compile_args(&[eq(0, 2)], "a").unwrap());
        assert_eq!(rule_count(&merged), 2);
        assert_eq!(
            rule_count(&merged.or(conditional)),
            2,
            "duplicates are not repeated"
        );
    }

    #[test]
    fn bad_index_and_op_combinations_name_the_field() {
        let err = compile_args(&[eq(0, 1), eq(6, 1)], "x.args").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.args[1].index: 6 is out of range (syscall arguments are numbered 0 to 5)"
        );
        let err =
            compile_args(&[arg(0, LinuxSeccompOperator::ScmpCmpEq, 1, 2)], "x.args").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("x.args[0].valueTwo: only SCMP_CMP_MASKED_EQ"),
            "{err}"
        );
        let err = compile_args(
            &[arg(0, LinuxSeccompOperator::ScmpCmpMaskedEq, 0x0f, 0x10)],
            "x.args",
        )
        .unwrap_err();
        assert!(err.to_string().contains("can never match"), "{err}");
    }

    #[test]
    fn masked_eq_and_docker_style_zero_value_two_are_accepted() {
        assert!(compile_args(
            &[arg(0, LinuxSeccompOperator::ScmpCmpMaskedEq, 0xff, 0x10)],
            "a"
        )
        .is_ok());
        assert!(compile_args(&[arg(0, LinuxSeccompOperator::ScmpCmpNe, 9, 0)], "a").is_ok());
    }
}
