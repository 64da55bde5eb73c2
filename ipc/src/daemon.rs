//! Detach from the terminal (the classic double fork), for `owampd` without `-Z`.
//!
//! It lives here rather than in the master because `fork` needs `unsafe`, which only
//! `ipc` and `sandbox` may contain (ARCHITECTURE.md "Crates").

use std::io::{self, Read, Write};

/// The number of threads of this process, from `/proc/self/status`.
pub(crate) fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads: line in /proc/self/status"))
}

/// The daemon's end of the start-up pipe: the process that ran `owampd` waits on it,
/// so that it exits only once the daemon is ready (0), or has failed (1, with the
/// daemon's one-line reason on its stderr). Init scripts and `owampd && owping ...`
/// then never race the daemon's start.
#[derive(Debug)]
pub struct Readiness {
    pipe: std::fs::File,
}

/// First byte on the pipe: ready; anything after a [`FAILED`] byte is the reason.
const READY: u8 = 0;
const FAILED: u8 = 1;

impl Readiness {
    /// The pipe's descriptor, for a sweep of inherited descriptors to keep.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.pipe)
    }

    /// Start-up is complete: the launcher exits 0.
    pub fn ready(self) {
        // A launcher killed meanwhile has nobody to tell: nothing to do about it.
        let _ = (&self.pipe).write_all(&[READY]);
    }

    /// Start-up failed: the launcher prints `reason` on its stderr and exits 1.
    pub fn failed(self, reason: &str) {
        let mut msg = Vec::with_capacity(reason.len() + 1);
        msg.push(FAILED);
        msg.extend_from_slice(reason.as_bytes());
        let _ = (&self.pipe).write_all(&msg);
    }
}

/// In the launcher: wait for the daemon's word, print a failure, and exit. A daemon
/// that dies without a word (killed, or failed before it could say) is a failure too.
fn wait_for_daemon(pipe: std::fs::File, program: &str) -> ! {
    let mut word = Vec::new();
    let _ = (&pipe).read_to_end(&mut word);
    let code = match word.split_first() {
        Some((&READY, _)) => 0,
        Some((_, reason)) => {
            eprintln!("{program}: {}", String::from_utf8_lossy(reason).trim_end());
            1
        }
        None => {
            eprintln!("{program}: the daemon exited during start-up (see the system log)");
            1
        }
    };
    exit_now(code)
}

/// `_exit(2)`: ends the process at once, without atexit handlers or destructors that
/// would flush or remove state (the pid file, sockets) now owned by the other copy
/// after a fork. nix has no wrapper for it (std's `exit` runs the handlers).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes an integer and never returns; it touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// fork: the parent (the launcher) waits on a pipe until the daemon reports through the
/// returned [`Readiness`], then exits; setsid; fork again, the session leader exits 0
/// (so the daemon can never reacquire a controlling terminal); chdir("/"); stdin,
/// stdout and stderr onto /dev/null. Returns in the daemon (a new pid: reopen the
/// syslog after). `program` prefixes the launcher's failure message.
///
/// Relative paths stop working: make them absolute first. Refuses to run when the
/// process has more than one thread, as fork would copy only the caller.
pub fn daemonize(program: &str) -> io::Result<Readiness> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "daemonize: {threads} threads running, fork needs exactly one"
        )));
    }
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (read_end, write_end) = (
        std::fs::File::from(read_end),
        std::fs::File::from(write_end),
    );
    for step in 0..2 {
        // SAFETY: the process is single-threaded (checked above), so the child is a full
        // copy with no lock held by a vanished thread; the parent either calls _exit or
        // (the launcher) only reads the pipe, prints and calls _exit.
        if let nix::unistd::ForkResult::Parent { .. } = unsafe { nix::unistd::fork() }? {
            if step == 0 {
                // Our copy of the write end must go, or the read never sees EOF.
                drop(write_end);
                wait_for_daemon(read_end, program);
            }
            exit_now(0);
        }
        if step == 0 {
            nix::unistd::setsid()?;
        }
    }
    drop(read_end);
    std::env::set_current_dir("/")?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    nix::unistd::dup2_stderr(&null)?;
    Ok(Readiness { pipe: write_end })
}
