//! Privilege dropping and confinement for each owampd role (docs/processes.md "Sandbox").
//!
//! One call per binary, [`enter`], before the process reads any untrusted input. The
//! steps run in the order of docs/processes.md "Sandbox" and each one is verified before the next:
//!
//! 1. close stray file descriptors (`close_range`),
//! 2. resource limits (`RLIMIT_CORE` 0 for all; tester: no processes, few fds, file size),
//! 3. the capability bounding set is emptied *while we still hold `CAP_SETPCAP`* (after the
//!    uid change the kernel has already cleared our effective set, so it could no longer be
//!    dropped; see capabilities(7) "Capability bounding set"),
//! 4. as root with a run-as user: `setgroups([])`, `setresgid`, `setresuid`, then prove that
//!    root cannot be regained (`setuid(0)` fails, all uids/gids are the target),
//! 5. clear the remaining capability sets (effective, permitted, inheritable, ambient),
//! 6. `no_new_privs` (not for the master: see [`Role::Master`]),
//! 7. Landlock (control: data dir rw; spawner: tester binary and libraries rx; tester:
//!    nothing),
//! 8. seccomp (one policy per role, `src/seccomp/*.rs`).
//!
//! `unsafe` is allowed here (and in `ipc`) only; every block carries a `SAFETY:` comment.
#![deny(unsafe_op_in_unsafe_fn)]

mod caps_step;
mod clock;
mod error;
mod fds;
mod identity;
mod landlock_step;
mod process;
mod rlimits;
pub mod seccomp;

use std::os::fd::RawFd;
use std::path::PathBuf;

pub use clock::{KernelClock, clock_warning, kernel_clock};
pub use error::SandboxError;
pub use fds::close_fds_above;
pub use identity::{RunAs, is_root, lookup_group, lookup_user};
pub use process::{set_process_name, set_timer_slack};

/// The owampd processes (docs/processes.md); each gets its own confinement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `owampd`, the tiny privileged listener. It keeps its uid, and when root at most
    /// `CAP_SETUID`, `CAP_SETGID`, `CAP_KILL` and `CAP_NET_BIND_SERVICE`.
    /// `no_new_privs` is NOT set (docs/processes.md "Sandbox"): control is exec'd as root and must get
    /// `CAP_SETUID`/`CAP_SETGID` from that exec to switch to the run-as user. Under
    /// no_new_privs an exec may grant nothing beyond the caller's old permitted set and
    /// set-id bits and file capabilities are ignored (prctl(2) `PR_SET_NO_NEW_PRIVS`,
    /// security/commoncap.c). That would still work while the master keeps those two
    /// capabilities, but it silently ties control's privileges to the master's and breaks a
    /// packaged setup that gives the control binary file capabilities instead. What limits
    /// control is the bounding set, emptied down to the four capabilities above.
    Master,
    /// `owampd-control`: run-as user, no capabilities, Landlock (data dir rw, nothing
    /// executable), seccomp without exec or fork.
    Control,
    /// The spawner control forks before its own sandbox to start testers: run-as user,
    /// no capabilities, Landlock (the tester binary and its libraries rx, nothing
    /// else), seccomp covering what a tester does from its exec on.
    Spawner,
    /// `owampd-tester`: run-as user, no capabilities, no file access, strict seccomp.
    Tester,
}

impl Role {
    /// Short name used in error messages and logs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Control => "control",
            Role::Spawner => "spawner",
            Role::Tester => "tester",
        }
    }
}

/// What a seccomp violation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SeccompMode {
    /// Kill the whole process (`SECCOMP_RET_KILL_PROCESS`, it dies by SIGSYS). The default.
    #[default]
    Enforce,
    /// Debug switch: allow the call and log it to the kernel log (`SECCOMP_RET_LOG`),
    /// to discover a missing syscall with `dmesg`. Never the default (docs/processes.md "Sandbox").
    Log,
}

/// Options for [`enter`]. Fields that do not apply to a role are ignored for it.
/// The default keeps stdin, stdout and stderr (`keep_fds: 2`) and nothing else.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    /// The user and group to become. Only used when the process is root; ignored for
    /// the master (which keeps its uid).
    pub run_as: Option<RunAs>,
    /// Control: the data directory, readable and writable under Landlock.
    pub data_dir: Option<PathBuf>,
    /// Spawner: files (or directories) that may be read and executed: the tester binary.
    /// The shared libraries the current process was loaded with are added automatically,
    /// because an exec'd dynamically linked tester needs its loader and libc (see
    /// `landlock_step`).
    pub exec_paths: Vec<PathBuf>,
    /// Every fd above this one is closed first (`close_range`). The tester keeps 0..=5.
    pub keep_fds: RawFd,
    /// Tester: `RLIMIT_FSIZE`, the largest session data file it may write.
    pub max_file_size: Option<u64>,
    /// Kill on violation (default) or only log.
    pub seccomp: SeccompMode,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            run_as: None,
            data_dir: None,
            exec_paths: Vec::new(),
            // Not 0: closing stdout/stderr by default would hide the error that follows.
            keep_fds: 2,
            max_file_size: None,
            seccomp: SeccompMode::Enforce,
        }
    }
}

/// Confines the calling process for `role`. Call it once, early, while the process is
/// still single-threaded (the seccomp filter and the uid change apply to the calling
/// thread; threads created afterwards inherit them).
///
/// A multi-threaded caller is refused (step `single_thread`).
/// Every step is verified; the error names the step that failed. A failure must be
/// fatal for the caller: the process is then in an unknown, partly confined state.
pub fn enter(role: Role, opts: &SandboxOptions) -> Result<(), SandboxError> {
    let was_root = is_root();

    process::ensure_single_threaded()?;
    fds::close_fds_above(opts.keep_fds)?;
    rlimits::apply(role, opts)?;

    if role == Role::Master {
        return enter_master(was_root, opts);
    }

    // Bounding set first: after setresuid the effective set is empty and CAP_SETPCAP,
    // needed by PR_CAPBSET_DROP, would be gone.
    caps_step::drop_bounding_set(&[])?;
    if was_root && let Some(target) = opts.run_as {
        identity::become_user(target)?;
    }
    caps_step::clear_all()?;
    process::set_no_new_privs()?;
    match role {
        Role::Control => landlock_step::restrict_control(opts)?,
        Role::Spawner => landlock_step::restrict_spawner(opts)?,
        Role::Tester => landlock_step::restrict_tester()?,
        Role::Master => {}
    }
    seccomp::install(role, opts.seccomp)?;
    Ok(())
}

/// The master: keep the uid, keep only the capabilities it needs, no no_new_privs (see
/// [`Role::Master`]). Its seccomp policy is a lenient deny-list (`seccomp::master`),
/// installed while the master still holds `CAP_SYS_ADMIN` (seccomp(2) requires that or
/// no_new_privs). A non-root master has nothing to hand down to control, so it gets
/// no_new_privs and then the same filter.
fn enter_master(was_root: bool, opts: &SandboxOptions) -> Result<(), SandboxError> {
    if was_root {
        seccomp::install(Role::Master, opts.seccomp)?;
        caps_step::drop_bounding_set(caps_step::MASTER_BOUNDING)?;
        caps_step::keep_only(caps_step::MASTER_KEEP)?;
    } else {
        caps_step::drop_bounding_set(&[])?;
        caps_step::clear_all()?;
        process::set_no_new_privs()?;
        seccomp::install(Role::Master, opts.seccomp)?;
    }
    Ok(())
}
