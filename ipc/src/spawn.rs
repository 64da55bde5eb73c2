//! Start a child with its fds at fixed numbers and a clean environment (design.md
//! "Processes": the master starts control with fd 3; control starts each tester with
//! fds 3, 4 and 5).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};

/// fork+exec `path` with `argv[0] = argv0`, `args`, exactly the environment `env`, and
/// each `(fd, target)` of `fds` at fd number `target` (close-on-exec cleared there).
/// Every other fd of ours is close-on-exec (Rust opens everything that way), so the
/// child inherits only stdio and the targets.
///
/// The parent's copies of `fds` are closed when this returns.
pub fn spawn_child(
    path: &Path,
    argv0: &str,
    args: &[OsString],
    env: &[(OsString, OsString)],
    fds: Vec<(OwnedFd, RawFd)>,
) -> io::Result<Child> {
    let plan: Vec<(RawFd, RawFd)> = fds.iter().map(|(f, t)| (f.as_raw_fd(), *t)).collect();
    if plan.iter().any(|&(_, t)| t <= 2) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "spawn_child: target fds must be above stdio (>= 3)",
        ));
    }
    // Above every source and target, so the first step below never lands on a target.
    let high = plan.iter().map(|&(s, t)| s.max(t)).max().unwrap_or(2) + 1;
    let mut cmd = Command::new(path);
    cmd.arg0(argv0).args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut staged: Vec<RawFd> = vec![-1; plan.len()];
    // SAFETY: the closure runs in the forked child before exec and calls only fcntl,
    // dup2 and close, which are async-signal-safe (signal-safety(7)); it does not
    // allocate (`staged` was allocated before fork and is only written in place).
    unsafe {
        cmd.pre_exec(move || {
            // Step 1: copy every source above all targets, so that moving one source
            // onto its target cannot clobber another source still to be moved.
            for (slot, &(src, _)) in staged.iter_mut().zip(plan.iter()) {
                let d = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, high);
                if d < 0 {
                    return Err(io::Error::last_os_error());
                }
                *slot = d;
            }
            // Step 2: dup2 onto each target; dup2's new fd has close-on-exec clear.
            for (&d, &(_, target)) in staged.iter().zip(plan.iter()) {
                if libc::dup2(d, target) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(d);
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(fds);
    child
}

/// A child started by [`spawn_child_vfork`]: its pid, and whether it was reaped (so a
/// reaped pid, which the kernel may reuse, is never signalled).
#[derive(Debug)]
pub struct SpawnedChild {
    pid: nix::unistd::Pid,
    exited: Option<nix::sys::wait::WaitStatus>,
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
    pub fn try_wait(&mut self) -> io::Result<Option<nix::sys::wait::WaitStatus>> {
        self.wait_with(Some(nix::sys::wait::WaitPidFlag::WNOHANG))
    }

    /// Waits for it to exit and reaps it.
    pub fn wait(&mut self) -> io::Result<nix::sys::wait::WaitStatus> {
        loop {
            if let Some(st) = self.wait_with(None)? {
                return Ok(st);
            }
        }
    }

    fn wait_with(
        &mut self,
        flags: Option<nix::sys::wait::WaitPidFlag>,
    ) -> io::Result<Option<nix::sys::wait::WaitStatus>> {
        use nix::sys::wait::{WaitStatus, waitpid};
        if let Some(st) = self.exited {
            return Ok(Some(st));
        }
        match waitpid(self.pid, flags) {
            Ok(WaitStatus::StillAlive) => Ok(None),
            Ok(st @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                self.exited = Some(st);
                Ok(Some(st))
            }
            // Stopped/continued (not asked for) or interrupted: not an exit.
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(None),
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

/// Like [`spawn_child`], with `posix_spawn(3)`: glibc starts the child with
/// `clone(CLONE_VM | CLONE_VFORK)`, so the parent's page tables are not copied and not
/// torn down again at exec, which is most of a fork's cost in a large, multi-threaded
/// parent (control at 1,000 sessions). The fds are placed by spawn file actions
/// (`dup2` to a staging number, `dup2` to the target, `close` the staging copy); the
/// child starts with every signal at its default action and none blocked.
pub fn spawn_child_vfork(
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
            "spawn_child_vfork: target fds must be above stdio (>= 3)",
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
    drop(fds);
    Ok(SpawnedChild { pid, exited: None })
}

#[cfg(test)]
mod tests {
    use super::staging_fds;

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
