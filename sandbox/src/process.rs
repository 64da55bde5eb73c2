//! Per-process switches: no_new_privs and the process name.

use crate::SandboxError;

/// Refuses to start confining a multi-threaded process: seccomp and Landlock apply to the
/// calling thread only, so another thread would stay unconfined. Counted from
/// /proc/self/task; without /proc the caller's word is all we have.
pub(crate) fn ensure_single_threaded() -> Result<(), SandboxError> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Ok(());
    };
    let n = tasks.count();
    if n > 1 {
        return Err(SandboxError::verify(
            "single_thread",
            format!("{n} threads; enter the sandbox before starting any"),
        ));
    }
    Ok(())
}

/// Sets `PR_SET_NO_NEW_PRIVS` (prctl(2)): execve can no longer grant privileges (set-id
/// bits, file capabilities). Required by Landlock and unprivileged seccomp.
pub(crate) fn set_no_new_privs() -> Result<(), SandboxError> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| SandboxError::step("no_new_privs", e))?;
    let on =
        nix::sys::prctl::get_no_new_privs().map_err(|e| SandboxError::step("no_new_privs", e))?;
    if !on {
        return Err(SandboxError::verify(
            "no_new_privs",
            "still off after prctl",
        ));
    }
    Ok(())
}

/// Sets the thread name shown by `ps -L`/`top` (prctl(2) `PR_SET_NAME`; the kernel keeps
/// at most 15 bytes, so longer names are cut at a character boundary). Names say the role
/// (ARCHITECTURE.md "Conventions"): `owampd-tester`, `owampd-control`.
pub fn set_process_name(name: &str) -> Result<(), SandboxError> {
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let short = name.get(..end).unwrap_or_default();
    let c =
        std::ffi::CString::new(short).map_err(|e| SandboxError::other("set_process_name", e))?;
    nix::sys::prctl::set_name(&c).map_err(|e| SandboxError::step("set_process_name", e))
}

/// Sets this thread's timer slack (prctl(2) `PR_SET_TIMERSLACK`): how late the kernel may
/// end its sleeps and timeouts so that it can serve several timers with one wake-up.
pub fn set_timer_slack(slack: std::time::Duration) -> Result<(), SandboxError> {
    let ns = u64::try_from(slack.as_nanos()).unwrap_or(u64::MAX).max(1);
    nix::sys::prctl::set_timerslack(ns).map_err(|e| SandboxError::step("set_timer_slack", e))
}
