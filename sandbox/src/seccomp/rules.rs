//! A small builder over seccompiler's rule map, so each policy file reads as one line per
//! syscall and a syscall listed twice is an error instead of a silent overwrite.

use std::collections::BTreeMap;

use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

/// Syscall number → rules (an empty list: allowed with any arguments; otherwise allowed
/// when any one rule matches, all conditions of a rule being required).
#[derive(Debug, Default)]
pub struct Policy {
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    duplicate: Option<i64>,
}

/// Error from building a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// seccompiler rejected a condition or rule.
    #[error("seccomp rule for syscall {nr}: {source}")]
    Rule {
        /// The syscall number.
        nr: i64,
        /// seccompiler's error.
        #[source]
        source: seccompiler::Error,
    },
    /// A policy lists a syscall twice (a bug in the policy file).
    #[error("syscall {nr} is listed twice")]
    Duplicate {
        /// The syscall number.
        nr: i64,
    },
}

/// One argument condition: `(arg_index, op, value)`, compared as 32 bits (every pinned
/// argument is an int: fd, flag, option, level, domain).
pub type Cond = (u8, SeccompCmpOp, u64);

impl Policy {
    /// Allows `nr` with any arguments.
    pub fn allow(&mut self, nr: i64) -> &mut Self {
        self.insert(nr, Vec::new());
        self
    }

    /// Lists `nr` in a deny-list policy (the master's): the same entry as [`Policy::allow`],
    /// the filter's match and mismatch actions are what differ.
    pub fn deny(&mut self, nr: i64) -> &mut Self {
        self.allow(nr)
    }

    /// Allows `nr` when any of `alternatives` holds (each a list of ANDed conditions).
    pub fn allow_if(
        &mut self,
        nr: i64,
        alternatives: &[&[Cond]],
    ) -> Result<&mut Self, PolicyError> {
        let mut rules = Vec::with_capacity(alternatives.len());
        for conds in alternatives {
            let mut cs = Vec::with_capacity(conds.len());
            for (arg, op, value) in conds.iter() {
                cs.push(
                    SeccompCondition::new(*arg, SeccompCmpArgLen::Dword, op.clone(), *value)
                        .map_err(|source| PolicyError::Rule {
                            nr,
                            source: source.into(),
                        })?,
                );
            }
            rules.push(SeccompRule::new(cs).map_err(|source| PolicyError::Rule {
                nr,
                source: source.into(),
            })?);
        }
        self.insert(nr, rules);
        Ok(self)
    }

    /// Whether the policy has an entry for `nr`.
    pub fn mentions(&self, nr: i64) -> bool {
        self.rules.contains_key(&nr)
    }

    /// Number of syscalls listed.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when no syscall is listed.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Checks the policy was built without duplicates.
    pub fn finish(self) -> Result<Self, PolicyError> {
        match self.duplicate {
            Some(nr) => Err(PolicyError::Duplicate { nr }),
            None => Ok(self),
        }
    }

    pub(crate) fn into_map(self) -> BTreeMap<i64, Vec<SeccompRule>> {
        self.rules
    }

    fn insert(&mut self, nr: i64, rules: Vec<SeccompRule>) {
        if self.rules.insert(nr, rules).is_some() && self.duplicate.is_none() {
            self.duplicate = Some(nr);
        }
    }
}

/// `arg == value`.
pub fn eq(arg: u8, value: u64) -> Cond {
    (arg, SeccompCmpOp::Eq, value)
}

/// `arg & mask == 0`: none of the bits in `mask` set (e.g. no PROT_EXEC).
pub fn none_of(arg: u8, mask: u64) -> Cond {
    (arg, SeccompCmpOp::MaskedEq(mask), 0)
}

/// `arg & mask == mask`: all bits of `mask` set.
pub fn all_of(arg: u8, mask: u64) -> Cond {
    (arg, SeccompCmpOp::MaskedEq(mask), mask)
}

/// `arg <= value` (unsigned 32-bit): e.g. an fd that is not AT_FDCWD (-100).
pub fn le(arg: u8, value: u64) -> Cond {
    (arg, SeccompCmpOp::Le, value)
}

/// Helper: u64 from a libc int constant (all the constants used are non-negative).
pub fn c(v: libc::c_int) -> u64 {
    u64::from(v.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syscall_listed_twice_is_an_error() {
        let mut p = Policy::default();
        p.allow(libc::SYS_read);
        p.allow(libc::SYS_write);
        p.allow(libc::SYS_read);
        assert!(matches!(
            p.finish(),
            Err(PolicyError::Duplicate { nr }) if nr == libc::SYS_read
        ));
    }

    #[test]
    fn conditional_rules_are_kept_per_syscall() {
        let mut p = Policy::default();
        p.allow_if(libc::SYS_socket, &[&[eq(0, 2)], &[eq(0, 10)]])
            .expect("valid rule");
        let p = p.finish().expect("no duplicates");
        assert_eq!(p.len(), 1);
        let map = p.into_map();
        assert_eq!(map.get(&libc::SYS_socket).map(Vec::len), Some(2));
    }

    #[test]
    fn an_argument_index_past_five_is_refused() {
        let mut p = Policy::default();
        assert!(p.allow_if(libc::SYS_socket, &[&[eq(6, 0)]]).is_err());
    }
}
