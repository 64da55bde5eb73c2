//! Step 8: seccomp-bpf, one allow-list policy per role (`control.rs`, `spawner.rs`,
//! `tester.rs`) and a lenient deny-list for the master (`master.rs`), compiled with
//! seccompiler.
//!
//! Filters stack and are inherited across fork and exec (seccomp(2)): control and the
//! spawner run under the master's filter and their own, and a tester under the master's,
//! the spawner's and its own. So the spawner's policy also allows what a freshly exec'd
//! tester does before its own filter (dynamic loading, its own sandbox steps) and
//! everything the tester's own policy allows.

mod control;
mod master;
mod rules;
mod spawner;
mod tester;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use crate::{Role, SandboxError, SeccompMode};

pub use rules::Policy;

const STEP: &str = "seccomp";

/// The policy (syscall rules) of `role`.
pub fn policy(role: Role) -> Result<Policy, SandboxError> {
    match role {
        Role::Master => master::policy(),
        Role::Control => control::policy(),
        Role::Spawner => spawner::policy(),
        Role::Tester => tester::policy(),
    }
    .map_err(|e| SandboxError::other(STEP, e))
}

/// Compiles the filter of `role` for the running architecture.
pub fn compile(role: Role, mode: SeccompMode) -> Result<BpfProgram, SandboxError> {
    let arch =
        TargetArch::try_from(std::env::consts::ARCH).map_err(|e| SandboxError::other(STEP, e))?;
    let policy = policy(role)?;
    // The master's is a deny-list: matching rules are the forbidden calls.
    let (mismatch, matched) = match (role, mode) {
        (Role::Master, SeccompMode::Enforce) => (SeccompAction::Allow, SeccompAction::KillProcess),
        (Role::Master, SeccompMode::Log) => (SeccompAction::Allow, SeccompAction::Log),
        (_, SeccompMode::Enforce) => (SeccompAction::KillProcess, SeccompAction::Allow),
        (_, SeccompMode::Log) => (SeccompAction::Log, SeccompAction::Allow),
    };
    let filter = SeccompFilter::new(policy.into_map(), mismatch, matched, arch)
        .map_err(|e| SandboxError::other(STEP, e))?;
    BpfProgram::try_from(filter).map_err(|e| SandboxError::other(STEP, e))
}

/// Installs the filter of `role` on the calling thread and checks that the kernel
/// reports filter mode (PR_GET_SECCOMP = 2; every policy allows that prctl).
pub(crate) fn install(role: Role, mode: SeccompMode) -> Result<(), SandboxError> {
    let prog = compile(role, mode)?;
    if role == Role::Master {
        // seccompiler::apply_filter also sets no_new_privs, which the master must not
        // have (see `Role::Master`); the root master loads it with CAP_SYS_ADMIN instead.
        load_without_nnp(&prog)?;
    } else {
        seccompiler::apply_filter(&prog).map_err(|e| SandboxError::other(STEP, e))?;
    }
    // SAFETY: PR_GET_SECCOMP takes no pointer; it returns the mode.
    let mode_now = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if mode_now != 2 {
        return Err(SandboxError::verify(
            STEP,
            format!("PR_GET_SECCOMP says {mode_now}, wanted 2 (filter)"),
        ));
    }
    Ok(())
}

/// seccomp(SECCOMP_SET_MODE_FILTER, 0, prog) without touching no_new_privs. The kernel
/// accepts it only from a caller with CAP_SYS_ADMIN or no_new_privs (seccomp(2)).
fn load_without_nnp(prog: &BpfProgram) -> Result<(), SandboxError> {
    let mut insns: Vec<libc::sock_filter> = prog
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let len = u16::try_from(insns.len())
        .map_err(|_| SandboxError::verify(STEP, "filter longer than 65535 instructions"))?;
    let fprog = libc::sock_fprog {
        len,
        filter: insns.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `insns`, which outlives the call; the kernel copies the
    // program (copy_from_user) and keeps no pointer to our memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0u32,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EACCES) {
            // The one way a root master gets here: started without CAP_SYS_ADMIN, e.g.
            // under a service manager's capability bounding set. Say what is missing.
            return Err(SandboxError::step(
                STEP,
                std::io::Error::new(
                    e.kind(),
                    "permission denied: the master loads its filter without \
                     no_new_privs, which needs CAP_SYS_ADMIN (missing from the capability \
                     bounding set?)",
                ),
            ));
        }
        return Err(SandboxError::step(STEP, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_compiles_in_both_modes() {
        for role in [Role::Master, Role::Control, Role::Spawner, Role::Tester] {
            for mode in [SeccompMode::Enforce, SeccompMode::Log] {
                let prog = compile(role, mode).unwrap_or_else(|e| panic!("{role:?}: {e}"));
                assert!(!prog.is_empty());
            }
        }
    }

    #[test]
    fn tester_forbids_what_design_md_says() {
        let p = policy(Role::Tester).unwrap();
        for nr in [
            libc::SYS_openat,
            libc::SYS_socket,
            libc::SYS_bind,
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_listen,
            libc::SYS_accept4,
            libc::SYS_ptrace,
        ] {
            assert!(!p.mentions(nr), "tester allows syscall {nr}");
        }
        #[cfg(target_arch = "x86_64")]
        for nr in [
            libc::SYS_open,
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_accept,
        ] {
            assert!(!p.mentions(nr), "tester allows syscall {nr}");
        }
    }

    /// The tester may connect its test socket and nothing else: the rule is pinned to an
    /// argument (fd 4), never unconditional.
    #[test]
    fn tester_connects_only_its_test_socket() {
        let map = policy(Role::Tester).unwrap().into_map();
        let rules = map
            .get(&libc::SYS_connect)
            .expect("tester may connect fd 4");
        assert_eq!(rules.len(), 1, "{rules:?}");
    }

    #[test]
    fn control_does_not_accept_or_listen() {
        let p = policy(Role::Control).unwrap();
        for nr in [
            libc::SYS_accept4,
            libc::SYS_listen,
            libc::SYS_ptrace,
            libc::SYS_connect,
        ] {
            assert!(!p.mentions(nr), "control allows syscall {nr}");
        }
    }

    /// A tester runs under the spawner's filter and its own (they stack): whatever the
    /// tester's allows, the spawner's must too, or the tester dies of a syscall its own
    /// policy permits. For each syscall the tester pins by argument, the spawner's rule
    /// must be the same or looser: checked by the same alternatives being present or the
    /// spawner allowing any arguments.
    #[test]
    fn the_spawner_allows_everything_the_tester_does() {
        let tester = policy(Role::Tester).unwrap().into_map();
        let spawner = policy(Role::Spawner).unwrap().into_map();
        for (nr, rules) in &tester {
            let Some(theirs) = spawner.get(nr) else {
                panic!("the tester allows syscall {nr}, the spawner does not");
            };
            if theirs.is_empty() {
                continue;
            }
            assert!(
                !rules.is_empty(),
                "syscall {nr}: any arguments for the tester, pinned for the spawner"
            );
            for r in rules {
                assert!(
                    theirs.contains(r),
                    "syscall {nr}: the tester's rule {r:?} is not the spawner's"
                );
            }
        }
    }

    #[test]
    fn control_can_neither_exec_nor_fork() {
        let p = policy(Role::Control).unwrap();
        for nr in [libc::SYS_execve, libc::SYS_execveat, libc::SYS_wait4] {
            assert!(!p.mentions(nr), "control allows syscall {nr}");
        }
        #[cfg(target_arch = "x86_64")]
        for nr in [libc::SYS_fork, libc::SYS_vfork] {
            assert!(!p.mentions(nr), "control allows syscall {nr}");
        }
    }

    #[test]
    fn master_denies_the_dangerous_ones() {
        let p = policy(Role::Master).unwrap();
        for nr in [
            libc::SYS_ptrace,
            libc::SYS_mount,
            libc::SYS_bpf,
            libc::SYS_init_module,
        ] {
            assert!(p.mentions(nr), "master does not deny syscall {nr}");
        }
    }
}
