//! Step 7: Landlock (Documentation/userspace-api/landlock.rst). Control may read and
//! write its data directory and execute nothing; the spawner may read and execute the
//! tester binary and its libraries and nothing else; the tester may touch no file at all.
//! None may bind or connect TCP sockets (ABI 4) and, from ABI 6, signal or reach abstract
//! UNIX sockets outside its own domain.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};

use crate::{SandboxError, SandboxOptions};

const STEP: &str = "landlock";

/// The newest ABI whose access rights this code was written and tested against. A newer
/// kernel is used at this level (its extra rights stay unhandled, i.e. allowed).
const VETTED_ABI: i32 = 7;

/// Asks the kernel for its Landlock ABI version (landlock_create_ruleset(2) with
/// `LANDLOCK_CREATE_RULESET_VERSION`), capped at [`VETTED_ABI`]. Landlock missing or
/// disabled is an error: docs/processes.md "Sandbox" makes every step mandatory.
fn best_abi() -> Result<ABI, SandboxError> {
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag the call only
    // returns the ABI number (or -1); it reads and writes no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    if v < 1 {
        return Err(SandboxError::step(STEP, std::io::Error::last_os_error()));
    }
    let v = i32::try_from(v).unwrap_or(VETTED_ABI).min(VETTED_ABI);
    Ok(ABI::from(v))
}

/// A ruleset handling every filesystem right, TCP bind/connect and the scopes that `abi`
/// knows. HardRequirement: anything the kernel cannot enforce is an error, not a shrug.
fn base_ruleset(abi: ABI) -> Result<RulesetCreated, SandboxError> {
    let err = |e| SandboxError::other(STEP, e);
    let mut rs = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?;
    if abi >= ABI::V4 {
        rs = rs.handle_access(AccessNet::from_all(abi)).map_err(err)?;
    }
    if abi >= ABI::V6 {
        rs = rs.scope(Scope::from_all(abi)).map_err(err)?;
    }
    rs.create().map_err(err)
}

/// Restricts the tester: no filesystem access, no TCP, no signals out of its domain.
pub(crate) fn restrict_tester() -> Result<(), SandboxError> {
    let abi = best_abi()?;
    enforce(base_ruleset(abi)?)
}

/// Restricts control: `data_dir` read/write (no execute), nothing else.
pub(crate) fn restrict_control(opts: &SandboxOptions) -> Result<(), SandboxError> {
    let abi = best_abi()?;
    let mut rs = base_ruleset(abi)?;
    if let Some(dir) = &opts.data_dir {
        rs = add(rs, abi, dir, AccessFs::from_all(abi) & !AccessFs::Execute)?;
    }
    enforce(rs)
}

/// Restricts the spawner: `exec_paths` read+execute, plus what an exec'd dynamically
/// linked tester needs (its loader and libraries, taken from this process's own
/// executable mappings, and /etc/ld.so.cache read-only) and /dev/null.
pub(crate) fn restrict_spawner(opts: &SandboxOptions) -> Result<(), SandboxError> {
    let abi = best_abi()?;
    let mut rs = base_ruleset(abi)?;
    let rx = AccessFs::Execute | AccessFs::ReadFile | AccessFs::ReadDir;
    for path in &opts.exec_paths {
        rs = add(rs, abi, path, rx)?;
    }
    // A library replaced since we were loaded shows as "(deleted)": skip what is gone.
    for lib in mapped_libraries().into_iter().filter(|p| p.exists()) {
        rs = add(rs, abi, &lib, AccessFs::Execute | AccessFs::ReadFile)?;
    }
    for (path, access) in [
        ("/etc/ld.so.cache", BitFlags::from(AccessFs::ReadFile)),
        ("/dev/null", AccessFs::ReadFile | AccessFs::WriteFile),
    ] {
        if Path::new(path).exists() {
            rs = add(rs, abi, Path::new(path), access)?;
        }
    }
    enforce(rs)
}

/// Adds one path rule; a path that cannot be opened is an error naming it (a missing data
/// dir should fail at start, not at the first test).
fn add(
    rs: RulesetCreated,
    abi: ABI,
    path: &Path,
    access: BitFlags<AccessFs>,
) -> Result<RulesetCreated, SandboxError> {
    let is_file = std::fs::metadata(path)
        .map_err(|e| SandboxError::step(STEP, annotate(path, e)))?
        .is_file();
    // Directory-only rights on a file are rejected by the kernel.
    let access = if is_file {
        access & AccessFs::from_file(abi)
    } else {
        access
    };
    let fd = PathFd::new(path).map_err(|e| SandboxError::other(STEP, format!("{path:?}: {e}")))?;
    rs.add_rule(PathBeneath::new(fd, access))
        .map_err(|e| SandboxError::other(STEP, format!("{path:?}: {e}")))
}

fn annotate(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Applies the ruleset and checks that the kernel enforces all of it.
fn enforce(rs: RulesetCreated) -> Result<(), SandboxError> {
    let status = rs
        .restrict_self()
        .map_err(|e| SandboxError::other(STEP, e))?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(SandboxError::verify(
            STEP,
            format!("ruleset {:?}", status.ruleset),
        ));
    }
    Ok(())
}

/// The shared objects this process has executable mappings of (from /proc/self/maps),
/// excluding the main executable. The tester is built by the same toolchain and links the
/// same loader and libraries.
fn mapped_libraries() -> Vec<PathBuf> {
    let exe = std::fs::read_link("/proc/self/exe").ok();
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let mut libs = parse_exec_mappings(&maps);
    libs.retain(|p| Some(p) != exe.as_ref());
    libs
}

/// Parses /proc/<pid>/maps lines (`addr perms offset dev inode path`) and returns the
/// distinct absolute paths of mappings with `x` permission.
fn parse_exec_mappings(maps: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let perms = fields.nth(1).unwrap_or("");
        let path = fields.nth(3).unwrap_or("");
        if perms.contains('x') && path.starts_with('/') {
            let p = PathBuf::from(path);
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_mappings_are_found_once() {
        let maps = "\
55d0 r--p 00000000 08:01 1 /usr/bin/x
55d1 r-xp 00001000 08:01 1 /usr/bin/x
7f00 r-xp 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6
7f01 r-xp 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6
7f02 rw-p 00000000 00:00 0 [heap]
7f03 r-xp 00000000 00:00 0 [vdso]
7f04 r--p 00000000 08:01 3 /usr/lib/locale/C.utf8
";
        assert_eq!(
            parse_exec_mappings(maps),
            vec![
                PathBuf::from("/usr/bin/x"),
                PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6")
            ]
        );
    }

    #[test]
    fn garbage_maps_yield_nothing() {
        assert!(parse_exec_mappings("x\n\n r-xp\n").is_empty());
    }
}
