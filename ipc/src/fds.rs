//! The fixed fd layout of owampd's children (docs/processes.md "IPC": fixed fd numbers are named
//! constants; a child checks them at start and refuses to run when started by hand).
//!
//! - control: fd 3 = channel to the master, fd 4 = channel to its spawner.
//! - the spawner (forked from control): fd 3 = channel to control.
//! - tester: fd 3 = channel to control, fd 4 = bound UDP test socket, fd 5 = session data
//!   file (receivers only).

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::error::IpcError;

/// The channel to the parent (master for control, control for a tester).
pub const IPC_FD: RawFd = 3;
/// Control's channel to its spawner (`crate::spawner`).
pub const SPAWNER_FD: RawFd = 4;
/// The tester's bound UDP test socket.
pub const TEST_SOCKET_FD: RawFd = 4;
/// The receiving tester's session data file.
pub const DATA_FILE_FD: RawFd = 5;

/// Take ownership of an fd the parent left at a fixed number, after checking it is open
/// (`fcntl(F_GETFD)`); it is made close-on-exec so it does not leak further.
///
/// Call it once per fd, at start, before anything else opens fds.
pub fn take_inherited(fd: RawFd) -> Result<OwnedFd, IpcError> {
    // SAFETY: F_GETFD only reads the descriptor flags of `fd`; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(IpcError::MissingFd { fd });
    }
    // SAFETY: F_SETFD only sets the descriptor flags of the open fd `fd`.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    if rc < 0 {
        return Err(IpcError::Sys {
            op: "fcntl(F_SETFD, FD_CLOEXEC)",
            source: nix::errno::Errno::last(),
        });
    }
    // SAFETY: `fd` is open (checked above) and by the fd-layout contract it was put there
    // by our parent for us alone: nothing else in this freshly exec'd process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The one line a child prints when started by hand, e.g.
/// `owampd-tester: must be started by owampd-control (fd 3 missing)`.
pub fn started_by_hand_line(me: &str, parent: &str, fd: RawFd) -> String {
    format!("{me}: must be started by {parent} (fd {fd} missing)")
}
