//! Step 2: resource limits (setrlimit(2)). Lowering a limit never needs privileges.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::{Role, SandboxError, SandboxOptions};

/// The tester holds fds 0..=5 (stdio, IPC, UDP socket, data file) and opens nothing.
pub const TESTER_NOFILE: u64 = 16;
/// Control holds one TCP connection per client plus, per test session, an IPC channel
/// and a data file: a thousand bidirectional sessions need several thousand.
pub const CONTROL_NOFILE: u64 = 65536;

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
                // Past the limit a write must fail with EFBIG (the receiver then ends
                // its session and control keeps what was written), not kill the
                // process with SIGXFSZ.
                // SAFETY: installing SIG_IGN runs no handler code, and the tester is
                // still single-threaded here (enter() checked it).
                unsafe {
                    nix::sys::signal::signal(
                        nix::sys::signal::Signal::SIGXFSZ,
                        nix::sys::signal::SigHandler::SigIgn,
                    )
                }
                .map_err(|e| SandboxError::step("sigxfsz", e))?;
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
        // The spawner holds its channel and a request's descriptors; it must be able to
        // create a process per tester, so no NPROC limit (the tester sets its own).
        Role::Spawner | Role::Master => {}
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
