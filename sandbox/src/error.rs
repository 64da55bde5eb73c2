//! The crate's error type: every failure names the step of [`crate::enter`] (or the
//! helper) that failed.

use std::io;

/// A sandbox step failed. The process must not continue (docs/processes.md "Sandbox").
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A system call of a step failed.
    #[error("sandbox step {step} failed: {source}")]
    Step {
        /// The step, e.g. "setresuid", "landlock", "seccomp".
        step: &'static str,
        /// What the kernel (or library) said.
        #[source]
        source: io::Error,
    },
    /// A step's call succeeded but checking its effect found something else.
    #[error("sandbox step {step} not in effect: {detail}")]
    Verify {
        /// The step whose effect was checked.
        step: &'static str,
        /// What was found instead.
        detail: String,
    },
    /// `lookup_user` / `lookup_group`: the name or number does not exist.
    #[error("unknown {kind} {name:?}")]
    Unknown {
        /// "user" or "group".
        kind: &'static str,
        /// The name or number as given.
        name: String,
    },
}

impl SandboxError {
    pub(crate) fn step(step: &'static str, source: impl Into<io::Error>) -> Self {
        SandboxError::Step {
            step,
            source: source.into(),
        }
    }

    pub(crate) fn other(step: &'static str, source: impl std::fmt::Display) -> Self {
        SandboxError::Step {
            step,
            source: io::Error::other(source.to_string()),
        }
    }

    pub(crate) fn verify(step: &'static str, detail: impl Into<String>) -> Self {
        SandboxError::Verify {
            step,
            detail: detail.into(),
        }
    }
}
