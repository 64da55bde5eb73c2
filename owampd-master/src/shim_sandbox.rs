//! SHIM, to delete at merge: the part of the `sandbox` crate's API the master uses.
//! `enter` here only sets the process title; the real one confines the master.

use nix::unistd::{Gid, Group, Uid, User};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("unknown user \"{0}\"")]
    NoUser(String),
    #[error("unknown group \"{0}\"")]
    NoGroup(String),
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        source: nix::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
}

#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    pub seccomp_log_only: bool,
}

pub fn is_root() -> bool {
    Uid::effective().is_root()
}

/// A user name, or `-uid` (owampd(8)).
pub fn lookup_user(name: &str) -> Result<RunAs, SandboxError> {
    let user = match name.strip_prefix('-').map(str::parse::<u32>) {
        Some(Ok(uid)) => User::from_uid(Uid::from_raw(uid)),
        Some(Err(_)) => return Err(SandboxError::NoUser(name.to_string())),
        None => User::from_name(name),
    }
    .map_err(|source| SandboxError::Sys {
        op: "getpwnam",
        source,
    })?
    .ok_or_else(|| SandboxError::NoUser(name.to_string()))?;
    Ok(RunAs {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    })
}

/// A group name, or `-gid` (owampd(8)).
pub fn lookup_group(name: &str) -> Result<u32, SandboxError> {
    let group = match name.strip_prefix('-').map(str::parse::<u32>) {
        Some(Ok(gid)) => Group::from_gid(Gid::from_raw(gid)),
        Some(Err(_)) => return Err(SandboxError::NoGroup(name.to_string())),
        None => Group::from_name(name),
    }
    .map_err(|source| SandboxError::Sys {
        op: "getgrnam",
        source,
    })?
    .ok_or_else(|| SandboxError::NoGroup(name.to_string()))?;
    Ok(group.gid.as_raw())
}

/// The kernel's comm name (15 bytes at most), shown by ps and top.
pub fn set_process_name(name: &str) -> Result<(), SandboxError> {
    let c = std::ffi::CString::new(name).map_err(|_| SandboxError::Sys {
        op: "prctl(PR_SET_NAME)",
        source: nix::Error::EINVAL,
    })?;
    nix::sys::prctl::set_name(&c).map_err(|source| SandboxError::Sys {
        op: "prctl(PR_SET_NAME)",
        source,
    })
}

pub fn enter(_role: Role, opts: &SandboxOptions) -> Result<(), SandboxError> {
    let SandboxOptions { seccomp_log_only } = opts;
    let _ = seccomp_log_only;
    Ok(())
}
