//! Step 2: resource limits (setrlimit(2)). Lowering a limit never needs privileges.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::{Role, SandboxError, SandboxOptions};

/// The tester holds fds 0..=5 (stdio, IPC, UDP socket, data file) and opens nothing.
pub const TESTER_NOFILE: u64 = 16;
/// Control holds one TCP connection per client plus a few files per session.
pub const CONTROL_NOFILE: u64 = 4096;

/// Applies the limits for `role` and reads each one back.
pub fn apply(role: Role, opts: &SandboxOptions) -> Result<(), SandboxError> {
    // No core dumps: a core of control or the tester would hold session keys.
    set(Resource::RLIMIT_CORE, 0, "rlimit_core")?;
    match role {
        Role::Tester => {
            // The tester never forks (seccomp forbids it too: two locks).
            set(Resource::RLIMIT_NPROC, 0, "rlimit_nproc")?;
            set(Resource::RLIMIT_NOFILE, TESTER_NOFILE, "rlimit_nofile")?;
            if let Some(max) = opts.max_file_size {
                set(Resource::RLIMIT_FSIZE, max, "rlimit_fsize")?;
            }
        }
        Role::Control => {
            // Enough for many connections, but bounded even if the hard limit is not.
            let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)
                .map_err(|e| SandboxError::step("rlimit_nofile", e))?;
            set(
                Resource::RLIMIT_NOFILE,
                hard.min(CONTROL_NOFILE),
                "rlimit_nofile",
            )?;
        }
        Role::Master => {}
    }
    Ok(())
}

/// Sets soft and hard limit to `value` and verifies both.
fn set(resource: Resource, value: u64, step: &'static str) -> Result<(), SandboxError> {
    setrlimit(resource, value, value).map_err(|e| SandboxError::step(step, e))?;
    let (soft, hard) = getrlimit(resource).map_err(|e| SandboxError::step(step, e))?;
    if soft != value || hard != value {
        return Err(SandboxError::verify(
            step,
            format!("limit is {soft}/{hard}, wanted {value}"),
        ));
    }
    Ok(())
}
