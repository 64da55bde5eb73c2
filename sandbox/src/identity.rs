//! Step 4: become the run-as user, and prove there is no way back to root.

use nix::unistd::{Gid, Group, Uid, User};

use crate::SandboxError;

/// The user and group a confined process runs as (owampd's `-U user` / `-G group`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// Target uid (real, effective, saved and filesystem).
    pub uid: u32,
    /// Target gid (real, effective, saved and filesystem); supplementary groups are cleared.
    pub gid: u32,
}

/// True when the effective uid is 0.
pub fn is_root() -> bool {
    Uid::effective().is_root()
}

/// Resolves `-U`/`user`: a user name, or `-N` for uid N (the reference's syntax, spec
/// §7.1 options table; a bare number is accepted too). The gid is the user's primary
/// group; override it with [`lookup_group`] for `-G`. A uid without a passwd entry is
/// refused rather than run with a guessed group.
pub fn lookup_user(name_or_uid: &str) -> Result<RunAs, SandboxError> {
    let unknown = || SandboxError::Unknown {
        kind: "user",
        name: name_or_uid.to_owned(),
    };
    let user = match numeric(name_or_uid) {
        Some(uid) => User::from_uid(Uid::from_raw(uid)),
        None => User::from_name(name_or_uid),
    }
    .map_err(|e| SandboxError::step("lookup_user", e))?
    .ok_or_else(unknown)?;
    Ok(RunAs {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    })
}

/// Resolves `-G`/`group`: a group name, or `-N` (or a bare number) for gid N.
pub fn lookup_group(name_or_gid: &str) -> Result<u32, SandboxError> {
    let unknown = || SandboxError::Unknown {
        kind: "group",
        name: name_or_gid.to_owned(),
    };
    if let Some(gid) = numeric(name_or_gid) {
        // A numeric gid needs no group entry: setresgid takes any number.
        return Ok(gid);
    }
    let group = Group::from_name(name_or_gid)
        .map_err(|e| SandboxError::step("lookup_group", e))?
        .ok_or_else(unknown)?;
    Ok(group.gid.as_raw())
}

/// `-N` or `N` → N. Names never start with '-' and are not all digits (useradd(8)).
fn numeric(s: &str) -> Option<u32> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// setgroups([]), setresgid, setresuid (groups first: once the uid is gone we could no
/// longer change them), then checks the result as OpenSSH's `permanently_set_uid` does.
pub(crate) fn become_user(target: RunAs) -> Result<(), SandboxError> {
    let uid = Uid::from_raw(target.uid);
    let gid = Gid::from_raw(target.gid);
    nix::unistd::setgroups(&[]).map_err(|e| SandboxError::step("setgroups", e))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| SandboxError::step("setresgid", e))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| SandboxError::step("setresuid", e))?;
    prove_dropped(target)
}

/// Verifies all four uids and gids (real, effective, saved, filesystem) are the target,
/// no supplementary group is left, and root cannot be regained.
fn prove_dropped(target: RunAs) -> Result<(), SandboxError> {
    const STEP: &str = "drop_uid";
    let r = nix::unistd::getresuid().map_err(|e| SandboxError::step(STEP, e))?;
    let g = nix::unistd::getresgid().map_err(|e| SandboxError::step(STEP, e))?;
    // setfs[ug]id with an invalid id (-1) changes nothing and returns the current one.
    let fsuid = nix::unistd::setfsuid(Uid::from_raw(u32::MAX)).as_raw();
    let fsgid = nix::unistd::setfsgid(Gid::from_raw(u32::MAX)).as_raw();
    let uids = [
        r.real.as_raw(),
        r.effective.as_raw(),
        r.saved.as_raw(),
        fsuid,
    ];
    let gids = [
        g.real.as_raw(),
        g.effective.as_raw(),
        g.saved.as_raw(),
        fsgid,
    ];
    if uids.iter().any(|&u| u != target.uid) || gids.iter().any(|&x| x != target.gid) {
        return Err(SandboxError::verify(
            STEP,
            format!(
                "uids {uids:?} gids {gids:?}, wanted {}/{}",
                target.uid, target.gid
            ),
        ));
    }
    let groups = nix::unistd::getgroups().map_err(|e| SandboxError::step(STEP, e))?;
    if groups.iter().any(|g| g.as_raw() != target.gid) {
        return Err(SandboxError::verify(
            STEP,
            format!("supplementary groups left: {groups:?}"),
        ));
    }
    // The proof that matters: a dropped process cannot become root again.
    if target.uid != 0 && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(SandboxError::verify(STEP, "setuid(0) succeeded"));
    }
    if target.gid != 0 && nix::unistd::setgid(Gid::from_raw(0)).is_ok() {
        return Err(SandboxError::verify(STEP, "setgid(0) succeeded"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_forms() {
        assert_eq!(numeric("-65534"), Some(65534));
        assert_eq!(numeric("0"), Some(0));
        assert_eq!(numeric("nobody"), None);
        assert_eq!(numeric("-"), None);
        assert_eq!(numeric(""), None);
        assert_eq!(numeric("-12a"), None);
        assert_eq!(numeric("+5"), None);
        assert_eq!(numeric("-99999999999"), None);
    }

    #[test]
    fn root_resolves_by_name_and_number() {
        let by_name = lookup_user("root").expect("root exists");
        assert_eq!(by_name, RunAs { uid: 0, gid: 0 });
        assert_eq!(lookup_user("-0").expect("uid 0"), by_name);
        assert_eq!(lookup_group("-0").expect("gid 0"), 0);
        assert_eq!(lookup_group("root").expect("group root"), 0);
    }

    #[test]
    fn unknown_names_are_typed_errors() {
        assert!(matches!(
            lookup_user("no-such-user-owampd"),
            Err(SandboxError::Unknown { kind: "user", .. })
        ));
        assert!(matches!(
            lookup_group("no-such-group-owampd"),
            Err(SandboxError::Unknown { kind: "group", .. })
        ));
    }
}
