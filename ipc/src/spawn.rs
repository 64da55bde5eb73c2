//! Start a child with its fds at fixed numbers and a clean environment (docs/processes.md
//! "Descriptor layout": the master starts control with fd 3; the spawner starts each
//! tester with fds 3, 4 and 5).

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

/// A child started by [`spawn_child`]: its pid, and its exit once reaped (so a reaped
/// pid, which the kernel may reuse, is never signalled).
#[derive(Debug)]
pub struct SpawnedChild {
    pid: nix::unistd::Pid,
    exited: Option<ExitStatus>,
}

/// The wait(2) status word of an exit or a death by signal (for [`ExitStatus`], whose
/// `Display` says "exit status: 0" or "signal: 9 (SIGKILL)").
fn raw_status(st: WaitStatus) -> Option<i32> {
    match st {
        WaitStatus::Exited(_, code) => Some((code & 0xff) << 8),
        WaitStatus::Signaled(_, sig, core) => Some(sig as i32 | if core { 0x80 } else { 0 }),
        _ => None,
    }
}

impl SpawnedChild {
    pub fn id(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// SIGKILL, unless it was already reaped.
    pub fn kill(&mut self) -> io::Result<()> {
        if self.exited.is_some() {
            return Ok(());
        }
        nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL).map_err(io::Error::from)
    }

    /// Reaps it if it has exited; `None` while it runs.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.wait_with(Some(WaitPidFlag::WNOHANG))
    }

    /// Waits for it to exit and reaps it.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(st) = self.wait_with(None)? {
                return Ok(st);
            }
        }
    }

    fn wait_with(&mut self, flags: Option<WaitPidFlag>) -> io::Result<Option<ExitStatus>> {
        if let Some(st) = self.exited {
            return Ok(Some(st));
        }
        match waitpid(self.pid, flags) {
            Ok(st) => {
                // Stopped/continued (not asked for) or still alive: not an exit.
                self.exited = raw_status(st).map(ExitStatus::from_raw);
                Ok(self.exited)
            }
            Err(nix::errno::Errno::EINTR) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The fd numbers a child's fds pass through on their way to their targets: above every
/// target and none of them a source, so that placing one fd can never clobber another
/// still to be placed (and they stay small, far below any RLIMIT_NOFILE).
fn staging_fds(plan: &[(RawFd, RawFd)]) -> Vec<RawFd> {
    let mut next = plan.iter().map(|&(_, t)| t).max().unwrap_or(2) + 1;
    let mut out = Vec::with_capacity(plan.len());
    while out.len() < plan.len() {
        if !plan.iter().any(|&(s, _)| s == next) {
            out.push(next);
        }
        next += 1;
    }
    out
}

/// Starts `path` with `argv[0] = argv0`, `args`, exactly the environment `env`, and each
/// `(fd, target)` of `fds` at fd number `target` (close-on-exec cleared there). Every
/// other fd of ours is close-on-exec (Rust opens everything that way), so the child
/// inherits only stdio and the targets. The parent's copies of `fds` are closed when
/// this returns.
///
/// It uses `posix_spawn(3)`, which glibc runs as `clone(CLONE_VM | CLONE_VFORK)`: the
/// parent's page tables are not copied and torn down again at exec, which was most of
/// a fork's cost in a large, multi-threaded parent (control at 1,000 sessions), and no
/// code of ours runs between the clone and the exec. The fds are placed by spawn file
/// actions (`dup2` to a staging number, `dup2` to the target, `close` the staging
/// copy); the child starts with every signal at its default action and none blocked
/// (the master blocks the ones it reads from a signalfd).
pub fn spawn_child(
    path: &Path,
    argv0: &str,
    args: &[OsString],
    env: &[(OsString, OsString)],
    fds: Vec<(OwnedFd, RawFd)>,
) -> io::Result<SpawnedChild> {
    use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn};
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let plan: Vec<(RawFd, RawFd)> = fds.iter().map(|(f, t)| (f.as_raw_fd(), *t)).collect();
    if plan.iter().any(|&(_, t)| t <= 2) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "spawn_child: target fds must be above stdio (>= 3)",
        ));
    }
    let cstr = |b: &[u8]| {
        CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in argument"))
    };
    let path_c = cstr(path.as_os_str().as_bytes())?;
    let mut argv = vec![cstr(argv0.as_bytes())?];
    for a in args {
        argv.push(cstr(a.as_bytes())?);
    }
    let mut envp = Vec::with_capacity(env.len());
    for (k, v) in env {
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        envp.push(cstr(&kv)?);
    }
    let mut actions = PosixSpawnFileActions::init()?;
    let staging = staging_fds(&plan);
    for (&(src, _), &stage) in plan.iter().zip(&staging) {
        actions.add_dup2(src, stage)?;
    }
    for (&(_, target), &stage) in plan.iter().zip(&staging) {
        // dup2 clears close-on-exec on the target: it survives the exec.
        actions.add_dup2(stage, target)?;
        actions.add_close(stage)?;
    }
    let mut attr = PosixSpawnAttr::init()?;
    attr.set_sigmask(&nix::sys::signal::SigSet::empty())?;
    attr.set_sigdefault(&nix::sys::signal::SigSet::all())?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
    )?;
    let pid = posix_spawn(path_c.as_c_str(), &actions, &attr, &argv, &envp)?;
    // The child holds its own copies now.
    drop(fds);
    Ok(SpawnedChild { pid, exited: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_and_deaths_read_as_std_statuses() {
        let pid = nix::unistd::Pid::from_raw(1);
        let st = |w| ExitStatus::from_raw(raw_status(w).expect("an exit"));
        assert_eq!(st(WaitStatus::Exited(pid, 3)).code(), Some(3));
        assert_eq!(st(WaitStatus::Exited(pid, 0)).to_string(), "exit status: 0");
        let killed = st(WaitStatus::Signaled(pid, nix::sys::signal::SIGKILL, false));
        assert_eq!(killed.signal(), Some(9));
        assert!(!killed.core_dumped());
        let dumped = st(WaitStatus::Signaled(pid, nix::sys::signal::SIGSEGV, true));
        assert!(dumped.core_dumped());
        assert_eq!(raw_status(WaitStatus::StillAlive), None);
    }

    #[test]
    fn staging_numbers_avoid_targets_and_sources() {
        // Sources 6 and 8 sit where staging would start.
        let plan = [(6, 3), (8, 4), (7, 5)];
        let s = staging_fds(&plan);
        assert_eq!(s, [9, 10, 11]);
        let plan = [(20, 3), (21, 4)];
        assert_eq!(staging_fds(&plan), [5, 6]);
    }
}
