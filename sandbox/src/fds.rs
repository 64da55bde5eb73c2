//! Step 1: close every inherited descriptor we did not ask for (docs/processes.md "IPC": fixed fd
//! numbers; a child closes everything above them).

use std::os::fd::RawFd;

use crate::SandboxError;

/// Closes every file descriptor greater than `keep` with `close_range(2)` (Linux 5.9),
/// then checks `/proc/self/fd` when it can be read that none is left.
pub fn close_fds_above(keep: RawFd) -> Result<(), SandboxError> {
    let first = u32::try_from(keep)
        .ok()
        .and_then(|k| k.checked_add(1))
        .ok_or_else(|| SandboxError::verify("close_range", format!("bad keep_fds {keep}")))?;
    // SAFETY: close_range only closes descriptors; the range starts above `keep`, so the
    // descriptors the caller relies on stay open. Any Rust object owning a closed fd above
    // `keep` would be a caller bug, and the binaries call this before creating any.
    let rc = unsafe { libc::close_range(first, u32::MAX, 0) };
    if rc != 0 {
        return Err(SandboxError::step(
            "close_range",
            std::io::Error::last_os_error(),
        ));
    }
    verify_closed(keep)
}

/// Reads `/proc/self/fd` (when /proc is mounted) and fails if an fd above `keep` remains,
/// apart from the directory handle used for the listing itself.
fn verify_closed(keep: RawFd) -> Result<(), SandboxError> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        // No /proc (a minimal container): close_range's return value is all we have.
        return Ok(());
    };
    let mut extra = Vec::new();
    for entry in dir.flatten() {
        if let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
            && fd > keep
        {
            extra.push(fd);
        }
    }
    // read_dir holds exactly one descriptor (the directory), which is above `keep`
    // since everything else there was closed.
    if extra.len() > 1 {
        return Err(SandboxError::verify(
            "close_range",
            format!("descriptors still open above {keep}: {extra:?}"),
        ));
    }
    Ok(())
}
