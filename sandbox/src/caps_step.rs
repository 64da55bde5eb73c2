//! Steps 3 and 5: capabilities (capabilities(7)).

use caps::{CapSet, Capability, CapsHashSet};

use crate::SandboxError;

/// What the master keeps when root: switching control to the run-as user happens in
/// control after exec, which needs SETUID/SETGID in the bounding set; KILL to stop a
/// control process running as another user; NET_BIND_SERVICE to rebind port 861.
pub(crate) const MASTER_KEEP: &[Capability] = &[
    Capability::CAP_SETUID,
    Capability::CAP_SETGID,
    Capability::CAP_KILL,
    Capability::CAP_NET_BIND_SERVICE,
];

/// The master's bounding set: what it keeps, plus CAP_SETPCAP. The master itself does
/// not hold CAP_SETPCAP (it is not in [`MASTER_KEEP`], so not in its permitted or
/// effective sets); it stays in the bounding set only so that a control process the
/// master (re)starts as root gets it at exec and can empty *its own* bounding set
/// before changing uid. Without it a restarted control would keep the master's four
/// capabilities in its bounding set (harmless under no_new_privs, but not empty).
pub(crate) const MASTER_BOUNDING: &[Capability] = &[
    Capability::CAP_SETUID,
    Capability::CAP_SETGID,
    Capability::CAP_KILL,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SETPCAP,
];

/// Highest capability number we try; the kernel answers EINVAL past its last one.
const CAP_PROBE_MAX: u32 = 63;

/// Drops every capability not in `keep` from the bounding set (PR_CAPBSET_DROP). Needs
/// CAP_SETPCAP; without it (an unprivileged start) the bounding set cannot be changed, and
/// it does not need to be: with no permitted capabilities and no_new_privs, an exec
/// cannot gain any. In that case the step only checks that we really hold nothing.
pub(crate) fn drop_bounding_set(keep: &[Capability]) -> Result<(), SandboxError> {
    const STEP: &str = "capbset_drop";
    let can_drop = caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)
        .map_err(|e| SandboxError::other(STEP, e))?;
    if !can_drop {
        let permitted =
            caps::read(None, CapSet::Permitted).map_err(|e| SandboxError::other(STEP, e))?;
        if permitted.iter().any(|c| !keep.contains(c)) {
            return Err(SandboxError::verify(
                STEP,
                format!("holds {permitted:?} but not CAP_SETPCAP to drop them"),
            ));
        }
        return Ok(());
    }
    let keep_bits: Vec<u32> = keep.iter().map(|c| u32::from(c.index())).collect();
    for cap in 0..=CAP_PROBE_MAX {
        if keep_bits.contains(&cap) {
            continue;
        }
        match capbset_drop(cap) {
            Ok(()) => {}
            Err(nix::errno::Errno::EINVAL) => break, // past the kernel's last capability
            Err(e) => return Err(SandboxError::step(STEP, e)),
        }
    }
    for cap in 0..=CAP_PROBE_MAX {
        match capbset_read(cap) {
            Ok(true) if !keep_bits.contains(&cap) => {
                return Err(SandboxError::verify(
                    STEP,
                    format!("capability {cap} still in the bounding set"),
                ));
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINVAL) => break,
            Err(e) => return Err(SandboxError::step(STEP, e)),
        }
    }
    Ok(())
}

/// PR_CAPBSET_DROP for one capability number. By number, not through `caps::drop`:
/// `caps` names only the capabilities its release knows, and a newer kernel's extra
/// ones must leave the bounding set too (the loop above stops at the kernel's EINVAL).
fn capbset_drop(cap: u32) -> Result<(), nix::errno::Errno> {
    // SAFETY: PR_CAPBSET_DROP takes an integer and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
    if rc < 0 {
        Err(nix::errno::Errno::last())
    } else {
        Ok(())
    }
}

/// PR_CAPBSET_READ for one capability number.
fn capbset_read(cap: u32) -> Result<bool, nix::errno::Errno> {
    // SAFETY: PR_CAPBSET_READ takes an integer and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
    if rc < 0 {
        Err(nix::errno::Errno::last())
    } else {
        Ok(rc == 1)
    }
}

/// True when the effective and permitted sets hold nothing beyond `keep` and the
/// inheritable set is empty (three `capget` calls). The ambient set is then empty too:
/// the kernel keeps it a subset of permitted ∩ inheritable (capabilities(7), "Ambient
/// capability set"), so there is nothing to clear and nothing left to verify. This is
/// every tester's case (its spawner cleared all sets before the exec), and it spares the
/// tester the ~80 prctl calls of reading the ambient set back one capability at a time,
/// each through the stacked seccomp filters, at every session start.
fn holds_nothing_beyond(keep: &[Capability]) -> Result<bool, SandboxError> {
    const STEP: &str = "capabilities";
    let read = |set| caps::read(None, set).map_err(|e| SandboxError::other(STEP, e));
    if !read(CapSet::Inheritable)?.is_empty() {
        return Ok(false);
    }
    for set in [CapSet::Effective, CapSet::Permitted] {
        if read(set)?.iter().any(|c| !keep.contains(c)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Clears the ambient, inheritable, effective and permitted sets and reads them back.
pub(crate) fn clear_all() -> Result<(), SandboxError> {
    keep_only(&[])
}

/// Reduces effective and permitted to `keep` (intersected with what we hold), clears
/// inheritable and ambient, and verifies.
pub(crate) fn keep_only(keep: &[Capability]) -> Result<(), SandboxError> {
    const STEP: &str = "capabilities";
    if holds_nothing_beyond(keep)? {
        return Ok(());
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| SandboxError::other(STEP, e))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| SandboxError::other(STEP, e))?;
    // Effective must stay a subset of permitted: shrink effective first.
    for set in [CapSet::Effective, CapSet::Permitted] {
        let held = caps::read(None, set).map_err(|e| SandboxError::other(STEP, e))?;
        let wanted: CapsHashSet = held.into_iter().filter(|c| keep.contains(c)).collect();
        caps::set(None, set, &wanted).map_err(|e| SandboxError::other(STEP, e))?;
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        let held = caps::read(None, set).map_err(|e| SandboxError::other(STEP, e))?;
        if let Some(extra) = held.iter().find(|c| !keep.contains(c)) {
            return Err(SandboxError::verify(
                STEP,
                format!("{extra} still in the {set:?} set"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path's test against this process's own sets (root in CI: full
    /// effective and permitted sets; any user: whatever it holds).
    #[test]
    fn holding_nothing_beyond_keep_is_read_from_the_sets() {
        let read = |set| caps::read(None, set).expect("capget");
        let permitted: Vec<Capability> = read(CapSet::Permitted).into_iter().collect();
        let expected = read(CapSet::Inheritable).is_empty()
            && read(CapSet::Effective)
                .iter()
                .all(|c| permitted.contains(c));
        assert_eq!(holds_nothing_beyond(&permitted).expect("read"), expected);
        if !permitted.is_empty() {
            assert!(!holds_nothing_beyond(&[]).expect("read"));
        }
    }
}
