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
