//! Detach from the terminal (the classic double fork), for `owampd` without `-Z`.
//!
//! It lives here rather than in the master because `fork` needs `unsafe`, which only
//! `ipc` and `sandbox` may contain (design.md "Workspace layout").

use std::io;

/// The number of threads of this process, from `/proc/self/status`.
fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads: line in /proc/self/status"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// fork, the parent exits 0; setsid; fork again, the session leader exits 0 (so the
/// daemon can never reacquire a controlling terminal); chdir("/"); stdin, stdout and
/// stderr onto /dev/null. Returns in the daemon (a new pid: reopen the syslog after).
///
/// Relative paths stop working: make them absolute first. Refuses to run when the
/// process has more than one thread, as fork would copy only the caller.
pub fn daemonize() -> io::Result<()> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "daemonize: {threads} threads running, fork needs exactly one"
        )));
    }
    for step in 0..2 {
        // SAFETY: the process is single-threaded (checked above), so the child is a full
        // copy with no lock held by a vanished thread; the parent only calls _exit.
        let pid = check(unsafe { libc::fork() })?;
        if pid > 0 {
            // SAFETY: _exit ends the process at once, without running atexit handlers or
            // destructors that would flush or remove state now owned by the child.
            unsafe { libc::_exit(0) };
        }
        if step == 0 {
            // SAFETY: setsid takes no pointers; it only detaches this (child) process.
            check(unsafe { libc::setsid() })?;
        }
    }
    std::env::set_current_dir("/")?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for target in 0..=2 {
        // SAFETY: dup2 of our own open /dev/null onto the stdio numbers, which std
        // treats as always open and never owns as OwnedFd.
        check(unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), target) })?;
    }
    Ok(())
}
