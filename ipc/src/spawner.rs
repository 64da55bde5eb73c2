//! Starting testers from a small process of their own (docs/processes.md, "The
//! spawner").
//!
//! `owampd-control` forks this process once, before it reads any client byte, and asks
//! it to start every `owampd-tester`. posix_spawn copies the caller's whole descriptor
//! table into the child and closes it again at exec; control holds a descriptor for
//! every connection and every tester, so at 1,000 sessions each spawn copied and closed
//! thousands of them, on control's one event-loop thread. The spawner holds a handful,
//! runs beside control (on another core when there is one), and lets control's own
//! seccomp filter forbid fork and exec altogether.
//!
//! Protocol on its channel: [`Request::Spawn`] per tester, its descriptors riding along
//! (SCM_RIGHTS) in the order of `targets`, answered by one [`SpawnReply`] each, in the
//! same order, `Spawned` carrying a pidfd of the child. [`Request::Kill`] carries such a
//! pidfd back and is not answered: the spawner sends SIGKILL through it. Killing goes
//! through the spawner because Landlock's signal scope (ABI 6) lets a process signal
//! only its own domain and those nested in it, and a tester's domain is nested in the
//! spawner's, not in control's. The spawner never waits for its children: it ignores
//! SIGCHLD with SA_NOCLDWAIT, so the kernel reaps them at once. Control learns that a
//! tester ended from the tester's own channel; a pidfd never names a reused pid.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::channel::{Channel, MAX_FDS};
use crate::error::IpcError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Start `program` (the spawner's one program) with `argv[0] = argv0`, exactly the
    /// environment `env`, and the descriptors that came with this message at the fd
    /// numbers `targets` (each ≥ 3). Answered by a [`SpawnReply`].
    Spawn {
        argv0: String,
        env: Vec<(String, String)>,
        targets: Vec<RawFd>,
    },
    /// SIGKILL to the process whose pidfd came with this message. Not answered.
    Kill,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpawnReply {
    /// Started; its pidfd rides with this message.
    Spawned { pid: u32 },
    /// Not started, and why.
    Failed { reason: String },
}

/// Forks the spawner. In the child, its end of a new channel is moved to fd `child_fd`
/// (replacing whatever the child had there), then `run` is called with it and the
/// child exits with the status it returns, without unwinding or running destructors.
/// In the parent, its end is moved to `parent_fd` (likewise), so that both keep it
/// below the descriptors their sandboxes close; returns it and the child's pid.
///
/// Refuses to fork a process with more than one thread: the child would hold copies of
/// locks other threads were in. Call it before starting any runtime.
pub fn fork_spawner(
    child_fd: RawFd,
    parent_fd: RawFd,
    run: impl FnOnce(Channel) -> i32,
) -> Result<(Channel, u32), IpcError> {
    let sys = |op| move |source| IpcError::Sys { op, source };
    let threads = crate::daemon::thread_count().map_err(|e| IpcError::Sys {
        op: "count threads",
        source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
    })?;
    if threads != 1 {
        return Err(IpcError::Sys {
            op: "fork the spawner (more than one thread)",
            source: nix::errno::Errno::EBUSY,
        });
    }
    let (ours, theirs) = Channel::pair()?;
    // SAFETY: the process is single-threaded (checked above), so the child is a whole
    // copy holding no lock of a vanished thread. The child runs `run` and leaves with
    // _exit; it never returns into the caller's frames.
    let pid = match unsafe { nix::unistd::fork() }.map_err(sys("fork"))? {
        nix::unistd::ForkResult::Parent { child } => child,
        nix::unistd::ForkResult::Child => {
            drop(ours);
            let code = match move_fd(theirs.into_owned(), child_fd) {
                Ok(fd) => run(Channel::from_owned(fd)),
                Err(e) => {
                    eprintln!("owampd-spawner: {e}");
                    1
                }
            };
            // No destructor of the parent's state (which this copy shares on disk: pid
            // files, sockets) may run here.
            crate::daemon::exit_now(code)
        }
    };
    drop(theirs);
    let ours = Channel::from_owned(move_fd(ours.into_owned(), parent_fd)?);
    Ok((ours, pid.as_raw().unsigned_abs()))
}

/// Moves `fd` to the number `at` (close-on-exec), closing the original.
fn move_fd(fd: OwnedFd, at: RawFd) -> Result<OwnedFd, IpcError> {
    if fd.as_raw_fd() == at {
        return Ok(fd);
    }
    // SAFETY: dup3 takes two descriptor numbers and no memory. Whatever was at `at` is
    // replaced, as this function's callers ask: nothing else in the child uses it.
    let rc = unsafe { libc::dup3(fd.as_raw_fd(), at, libc::O_CLOEXEC) };
    if rc < 0 {
        return Err(IpcError::Sys {
            op: "dup3",
            source: nix::errno::Errno::last(),
        });
    }
    drop(fd);
    // SAFETY: `at` was just made a copy of our own open descriptor; no other owner
    // exists in this process.
    Ok(unsafe { OwnedFd::from_raw_fd(at) })
}

/// The spawner's loop: answers requests on `chan` by starting `program`, until control
/// closes its end (then `Ok`). A request it cannot carry out gets `Failed` and the loop
/// goes on; only a broken channel ends it with an error.
pub fn serve(chan: &Channel, program: &Path) -> Result<(), IpcError> {
    ignore_children().map_err(|e| IpcError::Sys {
        op: "sigaction(SIGCHLD, SA_NOCLDWAIT)",
        source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
    })?;
    loop {
        let r = match chan.recv::<Request>() {
            Ok(r) => r,
            Err(IpcError::Closed) => return Ok(()),
            // A message we cannot read is still a request to answer, in order.
            Err(e @ (IpcError::Decode { .. } | IpcError::Truncated { .. })) => {
                chan.send(
                    &SpawnReply::Failed {
                        reason: e.to_string(),
                    },
                    &[],
                )?;
                continue;
            }
            Err(e) => return Err(e),
        };
        match r.msg {
            Request::Spawn {
                argv0,
                env,
                targets,
            } => match spawn_one(program, &argv0, &env, &targets, r.fds) {
                Ok((pid, pidfd)) => {
                    use std::os::fd::AsFd;
                    chan.send(&SpawnReply::Spawned { pid }, &[pidfd.as_fd()])?
                }
                Err(reason) => chan.send(&SpawnReply::Failed { reason }, &[])?,
            },
            Request::Kill => {
                use std::os::fd::AsFd;
                // Best effort: a process already gone needs no killing, and there is
                // nobody to tell of a failure.
                for pidfd in &r.fds {
                    let _ = pidfd_kill(pidfd.as_fd());
                }
            }
        }
    }
}

fn spawn_one(
    program: &Path,
    argv0: &str,
    env: &[(String, String)],
    targets: &[RawFd],
    fds: Vec<OwnedFd>,
) -> Result<(u32, OwnedFd), String> {
    if fds.len() != targets.len() || fds.len() > MAX_FDS {
        return Err(format!(
            "{} descriptors for {} targets",
            fds.len(),
            targets.len()
        ));
    }
    let env: Vec<(std::ffi::OsString, std::ffi::OsString)> =
        env.iter().map(|(k, v)| (k.into(), v.into())).collect();
    let placed = fds.into_iter().zip(targets.iter().copied()).collect();
    let child = crate::spawn::spawn_child(program, argv0, &[], &env, placed)
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let pid = child.id();
    let pidfd = pidfd_open(pid).map_err(|e| format!("pidfd_open({pid}): {e}"))?;
    Ok((pid, pidfd))
}

/// SIGCHLD ignored with SA_NOCLDWAIT: children are reaped by the kernel as they exit
/// (sigaction(2)), so none is ever left a zombie.
fn ignore_children() -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid "default" value; we set the handler to
    // SIG_IGN and the flags, and pass pointers to locals that live across the call.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_IGN;
        sa.sa_flags = libc::SA_NOCLDWAIT;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGCHLD, &sa, std::ptr::null_mut())
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A pidfd for `pid` (pidfd_open(2), close-on-exec by definition).
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and flags, no memory.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this new descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// SIGKILL to the process behind `pidfd` (pidfd_send_signal(2)). A process that has
/// already exited is not an error. Under Landlock's signal scope only a process whose
/// domain encloses the target's may do this: for a tester, its spawner.
pub fn pidfd_kill(pidfd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: pidfd_send_signal with a null siginfo and no flags reads no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}
