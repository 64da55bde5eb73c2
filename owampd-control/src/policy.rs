//! The limits tree and its global accounting (protocol.md §7.4, §7.5, §7.9).
//!
//! The reference keeps this in its master process (the "resource broker"); here the
//! control process owns it, since it is the only process that accepts sessions.
//! Everything is reserved through RAII guards so that a connection that errors out
//! in any way gives back what it held: the guard's `Drop` releases it.
//!
//! A limit of 0 means "unlimited at this level"; every check walks the class chain
//! up to the root (protocol.md §7.4).

use config::Limits;
use config::limits::ClassId;
use owamp::{Slot, SlotKind};
use std::sync::{Arc, Mutex, MutexGuard};
use thiserror::Error;

/// Index of a class in a [`ClassTree`] (the same order as `config::Limits`).
pub type ClassIdx = usize;

/// One `limit` line of `owamp-server.limits`, with inheritance applied: the type the
/// configuration parser builds, so a new key is added in one place.
pub use config::limits::LimitClass;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("limits: class {index} ({name:?}) has parent {parent}, which is not defined before it")]
    BadParent {
        index: usize,
        name: String,
        parent: usize,
    },
    #[error("limits: no classes")]
    Empty,
    #[error("limits: class index {0} out of range")]
    NoSuchClass(ClassIdx),
    #[error("bandwidth limit of class {class:?} exceeded: {used} + {requested} > {limit} bit/s")]
    Bandwidth {
        class: String,
        used: u64,
        requested: u64,
        limit: u64,
    },
    #[error("disk limit of class {class:?} exceeded: {used} + {requested} > {limit} bytes")]
    Disk {
        class: String,
        used: u64,
        requested: u64,
        limit: u64,
    },
    #[error("test_sessions limit of class {class:?} reached ({limit} per connection)")]
    TestSessions { class: String, limit: u32 },
    #[error("{limit} concurrent test sessions on this connection already")]
    SessionsPerConnection { limit: u32 },
    #[error("{limit} concurrent test sessions on the server already")]
    SessionsTotal { limit: u32 },
}

/// The class tree, root first, with the server-wide caps on concurrent test sessions.
/// Fixed for the life of the process: [`Policy`] shares it without a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassTree {
    classes: Vec<LimitClass>,
    /// Test sessions one connection may hold at once (one test period's); 0 = unlimited.
    pub sessions_per_connection: u32,
    /// Test sessions all connections may hold at once; 0 = unlimited.
    pub sessions_total: u32,
}

/// The built-in limits, for a server with no limits file (README "Limits when there is
/// no limits file"): safe on the open Internet, and ample for owping and powstream.
pub const BUILTIN_BANDWIDTH: u64 = 20_000_000;
pub const BUILTIN_DISK: u64 = 10_000_000_000;
pub const BUILTIN_SESSIONS_PER_CONNECTION: u32 = 16;
pub const BUILTIN_SESSIONS_TOTAL: u32 = 128;

impl ClassTree {
    pub fn new(classes: Vec<LimitClass>) -> Result<ClassTree, PolicyError> {
        if classes.is_empty() {
            return Err(PolicyError::Empty);
        }
        for (index, c) in classes.iter().enumerate() {
            if let Some(ClassId(parent)) = c.parent
                && parent >= index
            {
                return Err(PolicyError::BadParent {
                    index,
                    name: c.name.clone(),
                    parent,
                });
            }
        }
        Ok(ClassTree {
            classes,
            sessions_per_connection: 0,
            sessions_total: 0,
        })
    }

    /// The tree of a parsed limits file, in its own order (so `ClassId(i)` is class index
    /// `i`). No limits file (or one with only comments) gives [`ClassTree::builtin`],
    /// not the reference's unlimited class (README "Limits when there is no limits file").
    pub fn from_limits(limits: &Limits) -> Result<ClassTree, PolicyError> {
        if *limits == Limits::default() {
            return Ok(ClassTree::builtin());
        }
        ClassTree::new(limits.classes().map(|(_, c)| c.clone()).collect())
    }

    /// The limits with no limits file: one class "default" for everyone, with
    /// [`BUILTIN_BANDWIDTH`] and [`BUILTIN_DISK`] for all its sessions together, and the
    /// built-in caps on concurrent sessions. (The reference has no limit at all then.)
    pub fn builtin() -> ClassTree {
        ClassTree {
            classes: vec![LimitClass {
                bandwidth: BUILTIN_BANDWIDTH,
                disk: BUILTIN_DISK,
                ..LimitClass::unlimited(config::limits::DEFAULT_ROOT_NAME, None)
            }],
            sessions_per_connection: BUILTIN_SESSIONS_PER_CONNECTION,
            sessions_total: BUILTIN_SESSIONS_TOTAL,
        }
    }

    /// The tree the reference uses with no limits file: one unlimited root "default".
    pub fn unlimited() -> ClassTree {
        ClassTree {
            classes: vec![LimitClass::unlimited(
                config::limits::DEFAULT_ROOT_NAME,
                None,
            )],
            sessions_per_connection: 0,
            sessions_total: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    pub fn get(&self, idx: ClassIdx) -> Option<&LimitClass> {
        self.classes.get(idx)
    }

    pub fn by_name(&self, name: &str) -> Option<ClassIdx> {
        self.classes.iter().position(|c| c.name == name)
    }

    /// Children of `parent` (None = the roots).
    pub fn children(&self, parent: Option<ClassIdx>) -> impl Iterator<Item = ClassIdx> + '_ {
        self.classes
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.parent.map(|p| p.0) == parent)
            .map(|(i, _)| i)
    }

    /// The chain from the root down to `idx` (the data store's directory path).
    pub fn chain(&self, idx: ClassIdx) -> Result<Vec<ClassIdx>, PolicyError> {
        let mut out = Vec::new();
        let mut cur = Some(idx);
        while let Some(i) = cur {
            let c = self.classes.get(i).ok_or(PolicyError::NoSuchClass(i))?;
            out.push(i);
            // INVARIANT: parents have lower indices (checked in new), so this ends.
            cur = c.parent.map(|p| p.0);
        }
        out.reverse();
        Ok(out)
    }

    pub fn chain_names(&self, idx: ClassIdx) -> Result<Vec<String>, PolicyError> {
        Ok(self
            .chain(idx)?
            .into_iter()
            .filter_map(|i| self.classes.get(i).map(|c| c.name.clone()))
            .collect())
    }
}

/// Bandwidth of a session in bits per second, as the reference computes it (protocol.md §7.4):
/// `rate × full IP packet size × 8` with `rate = nslots / Σ slot parameters`, and the
/// packet size = IP + UDP header + OWAMP-Test payload + padding (protocol.md §3.2).
pub fn session_bandwidth_bps(slots: &[Slot], padding: u32, ipv6: bool, secure: bool) -> u64 {
    let ip_udp: u64 = if ipv6 { 40 + 8 } else { 20 + 8 };
    let payload: u64 = if secure { 48 } else { 14 };
    let size = ip_udp + payload + u64::from(padding);
    let sum: f64 = slots
        .iter()
        .map(|s| match s.kind {
            SlotKind::Exponential | SlotKind::Fixed => s.param.as_secs_f64(),
        })
        .sum();
    if slots.is_empty() {
        return 0;
    }
    if sum <= 0.0 {
        // Back-to-back packets: an unbounded rate, only an unlimited class allows it.
        return u64::MAX;
    }
    let rate = slots.len() as f64 / sum;
    let bps = rate * size as f64 * 8.0;
    if bps >= u64::MAX as f64 {
        u64::MAX
    } else {
        bps as u64
    }
}

/// The reference's disk estimate for a receive session (protocol.md §7.4; it counts 16 bytes
/// more than the real header, protocol.md §10).
pub fn session_disk_estimate(nslots: u32, npackets: u32) -> u64 {
    56 + 112 + 16 * (u64::from(nslots) + 1) + 25 * u64::from(npackets)
}

#[derive(Debug)]
struct State {
    diskfudge: f64,
    test_sessions: u32,
    bandwidth_used: Vec<u64>,
    disk_used: Vec<u64>,
}

/// The shared accounting; cheap to clone (one per connection task).
#[derive(Clone, Debug)]
pub struct Policy {
    tree: Arc<ClassTree>,
    state: Arc<Mutex<State>>,
}

impl Policy {
    pub fn new(tree: ClassTree, diskfudge: f64) -> Policy {
        let n = tree.len();
        Policy {
            tree: Arc::new(tree),
            state: Arc::new(Mutex::new(State {
                diskfudge: if diskfudge.is_finite() && diskfudge >= 1.0 {
                    diskfudge
                } else {
                    1.0
                },
                test_sessions: 0,
                bandwidth_used: vec![0; n],
                disk_used: vec![0; n],
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock cannot happen with panic=abort; recover the data regardless.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn tree(&self) -> &ClassTree {
        &self.tree
    }

    /// Test sessions held now, on all connections.
    pub fn test_sessions(&self) -> u32 {
        self.lock().test_sessions
    }

    /// One more concurrent test session, for a connection that holds `on_connection`
    /// already: refused past the tree's per-connection or server-wide cap.
    pub fn open_test_session(&self, on_connection: usize) -> Result<TestSessionGuard, PolicyError> {
        let mut st = self.lock();
        let per = self.tree.sessions_per_connection;
        if per != 0 && on_connection >= per as usize {
            return Err(PolicyError::SessionsPerConnection { limit: per });
        }
        let total = self.tree.sessions_total;
        if total != 0 && st.test_sessions >= total {
            return Err(PolicyError::SessionsTotal { limit: total });
        }
        st.test_sessions += 1;
        Ok(TestSessionGuard {
            policy: self.clone(),
        })
    }

    /// Reserve `bps` for a session of `class` in every class of its chain.
    pub fn reserve_bandwidth(
        &self,
        class: ClassIdx,
        bps: u64,
    ) -> Result<BandwidthGuard, PolicyError> {
        let mut st = self.lock();
        let chain = self.tree.chain(class)?;
        for &i in &chain {
            let limit = self.tree.get(i).map(|c| c.bandwidth).unwrap_or(0);
            let used = st.bandwidth_used.get(i).copied().unwrap_or(0);
            if limit != 0 && used.saturating_add(bps) > limit {
                return Err(PolicyError::Bandwidth {
                    class: self.tree.get(i).map(|c| c.name.clone()).unwrap_or_default(),
                    used,
                    requested: bps,
                    limit,
                });
            }
        }
        for &i in &chain {
            if let Some(u) = st.bandwidth_used.get_mut(i) {
                *u = u.saturating_add(bps);
            }
        }
        Ok(BandwidthGuard {
            policy: self.clone(),
            chain,
            bps,
        })
    }

    pub fn bandwidth_used(&self, class: ClassIdx) -> u64 {
        self.lock().bandwidth_used.get(class).copied().unwrap_or(0)
    }

    pub fn disk_used(&self, class: ClassIdx) -> u64 {
        self.lock().disk_used.get(class).copied().unwrap_or(0)
    }

    /// Reserve the estimate for a receive session against the soft limit.
    pub fn reserve_disk(&self, class: ClassIdx, bytes: u64) -> Result<DiskGuard, PolicyError> {
        let mut st = self.lock();
        let chain = self.tree.chain(class)?;
        check_disk(&self.tree, &st, &chain, bytes, 1.0)?;
        add_disk(&mut st, &chain, bytes);
        Ok(DiskGuard {
            policy: self.clone(),
            chain,
            bytes,
            committed: false,
        })
    }

    /// Files found at start-up (protocol.md §7.7: per-class usage initialised from file sizes).
    /// Never refused: the data is already there.
    pub fn add_existing_disk(&self, class: ClassIdx, bytes: u64) -> Result<(), PolicyError> {
        let chain = self.tree.chain(class)?;
        let mut st = self.lock();
        add_disk(&mut st, &chain, bytes);
        Ok(())
    }

    /// A stored file was deleted (fetch with delete_on_fetch, or a failed session).
    pub fn release_disk(&self, class: ClassIdx, bytes: u64) -> Result<(), PolicyError> {
        let chain = self.tree.chain(class)?;
        let mut st = self.lock();
        sub_disk(&mut st, &chain, bytes);
        Ok(())
    }
}

fn check_disk(
    tree: &ClassTree,
    st: &State,
    chain: &[ClassIdx],
    bytes: u64,
    fudge: f64,
) -> Result<(), PolicyError> {
    for &i in chain {
        let soft = tree.get(i).map(|c| c.disk).unwrap_or(0);
        if soft == 0 {
            continue;
        }
        let limit = if fudge > 1.0 {
            let l = soft as f64 * fudge;
            if l >= u64::MAX as f64 {
                u64::MAX
            } else {
                l as u64
            }
        } else {
            soft
        };
        let used = st.disk_used.get(i).copied().unwrap_or(0);
        if used.saturating_add(bytes) > limit {
            return Err(PolicyError::Disk {
                class: tree.get(i).map(|c| c.name.clone()).unwrap_or_default(),
                used,
                requested: bytes,
                limit,
            });
        }
    }
    Ok(())
}

fn add_disk(st: &mut State, chain: &[ClassIdx], bytes: u64) {
    for &i in chain {
        if let Some(u) = st.disk_used.get_mut(i) {
            *u = u.saturating_add(bytes);
        }
    }
}

fn sub_disk(st: &mut State, chain: &[ClassIdx], bytes: u64) {
    for &i in chain {
        if let Some(u) = st.disk_used.get_mut(i) {
            *u = u.saturating_sub(bytes);
        }
    }
}

/// One concurrent test session, released when the session ends (dropped).
#[derive(Debug)]
pub struct TestSessionGuard {
    policy: Policy,
}

impl Drop for TestSessionGuard {
    fn drop(&mut self) {
        let mut st = self.policy.lock();
        st.test_sessions = st.test_sessions.saturating_sub(1);
    }
}

/// A session's bandwidth, released when the session ends (dropped).
#[derive(Debug)]
pub struct BandwidthGuard {
    policy: Policy,
    chain: Vec<ClassIdx>,
    bps: u64,
}

impl Drop for BandwidthGuard {
    fn drop(&mut self) {
        let mut st = self.policy.lock();
        for &i in &self.chain {
            if let Some(u) = st.bandwidth_used.get_mut(i) {
                *u = u.saturating_sub(self.bps);
            }
        }
    }
}

/// What [`DiskGuard::commit`] did.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Commit {
    /// The file fits the class's allowance (`disk × diskfudge` along its chain).
    Within,
    /// The file does not fit, and is charged in full anyway: what a session measured is
    /// kept, and the class, now over its allowance, takes no new receive session until
    /// stored data goes (fetched with `delete_on_fetch`, or removed). The refusal says
    /// by how much, for the log.
    Over(PolicyError),
}

/// A receive session's disk reservation. Dropped without [`DiskGuard::commit`] (the
/// session failed and its file is deleted) it gives the whole estimate back.
#[derive(Debug)]
pub struct DiskGuard {
    policy: Policy,
    chain: Vec<ClassIdx>,
    bytes: u64,
    committed: bool,
}

impl DiskGuard {
    pub fn reserved(&self) -> u64 {
        self.bytes
    }

    /// The file is closed at `actual` bytes: true the reservation up (protocol.md §7.4). A
    /// surplus is given back; a shortfall is claimed against `disk × diskfudge`. A claim
    /// that does not fit is charged all the same ([`Commit::Over`]): the file holds a
    /// finished measurement, and the reference's answer (delete it) loses the packets
    /// a session did measure because duplicates or skip ranges, which the estimate does
    /// not count, made the file larger. The overshoot is bounded by the tester's file
    /// size limit. The usage stays accounted until [`Policy::release_disk`].
    pub fn commit(mut self, actual: u64) -> Commit {
        let policy = self.policy.clone();
        let mut st = policy.lock();
        self.committed = true;
        if actual <= self.bytes {
            sub_disk(&mut st, &self.chain, self.bytes - actual);
            return Commit::Within;
        }
        let extra = actual - self.bytes;
        let fudge = st.diskfudge;
        let fits = check_disk(&policy.tree, &st, &self.chain, extra, fudge);
        add_disk(&mut st, &self.chain, extra);
        match fits {
            Ok(()) => Commit::Within,
            Err(e) => Commit::Over(e),
        }
    }
}

impl Drop for DiskGuard {
    fn drop(&mut self) {
        if !self.committed {
            let mut st = self.policy.lock();
            sub_disk(&mut st, &self.chain, self.bytes);
        }
    }
}

/// Request-Sessions accepted on one control connection (protocol.md §7.4 "test_sessions": never
/// released, a per-connection maximum).
#[derive(Debug, Default)]
pub struct TestSessionCount {
    accepted: u32,
}

impl TestSessionCount {
    /// Count one more session for `class`, refusing when any class in its chain has a
    /// non-zero test_sessions limit that is already reached.
    pub fn take(&mut self, tree: &ClassTree, class: ClassIdx) -> Result<(), PolicyError> {
        for i in tree.chain(class)? {
            if let Some(c) = tree.get(i)
                && c.test_sessions != 0
                && self.accepted >= c.test_sessions
            {
                return Err(PolicyError::TestSessions {
                    class: c.name.clone(),
                    limit: c.test_sessions,
                });
            }
        }
        // Refused requests count too, so a client can send ~2^32 of them: saturate
        // rather than overflow.
        self.accepted = self.accepted.saturating_add(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use owamp::Num64;

    fn class(name: &str, parent: Option<usize>, bw: u64, disk: u64, ts: u32) -> LimitClass {
        LimitClass {
            name: name.into(),
            parent: parent.map(ClassId),
            bandwidth: bw,
            disk,
            delete_on_fetch: false,
            allow_open_mode: true,
            test_sessions: ts,
        }
    }

    fn tree() -> ClassTree {
        // root (unlimited) → regular (bw 1000, disk 1000) → small (bw 600, ts 2)
        ClassTree::new(vec![
            class("root", None, 0, 0, 0),
            class("regular", Some(0), 1000, 1000, 0),
            class("small", Some(1), 600, 0, 2),
        ])
        .unwrap()
    }

    #[test]
    fn parent_must_come_first() {
        let e = ClassTree::new(vec![
            class("a", Some(1), 0, 0, 0),
            class("b", None, 0, 0, 0),
        ]);
        assert!(matches!(e, Err(PolicyError::BadParent { index: 0, .. })));
        assert_eq!(ClassTree::new(vec![]), Err(PolicyError::Empty));
    }

    #[test]
    fn chain_is_root_first() {
        let t = tree();
        assert_eq!(t.chain(2).unwrap(), vec![0, 1, 2]);
        assert_eq!(t.chain_names(1).unwrap(), vec!["root", "regular"]);
        assert_eq!(t.chain(7), Err(PolicyError::NoSuchClass(7)));
    }

    #[test]
    fn bandwidth_walks_the_chain_and_is_released() {
        let p = Policy::new(tree(), 1.0);
        let a = p.reserve_bandwidth(2, 500).unwrap();
        // small has 100 left
        assert!(matches!(
            p.reserve_bandwidth(2, 200),
            Err(PolicyError::Bandwidth { ref class, .. }) if class == "small"
        ));
        // regular has 500 left: another regular session of 600 is refused at regular
        assert!(matches!(
            p.reserve_bandwidth(1, 600),
            Err(PolicyError::Bandwidth { ref class, .. }) if class == "regular"
        ));
        let b = p.reserve_bandwidth(1, 500).unwrap();
        assert_eq!(p.bandwidth_used(1), 1000);
        assert_eq!(p.bandwidth_used(0), 1000);
        drop(a);
        assert_eq!(p.bandwidth_used(1), 500);
        assert_eq!(p.bandwidth_used(2), 0);
        drop(b);
        assert_eq!(p.bandwidth_used(0), 0);
    }

    #[test]
    fn disk_soft_limit_then_true_up_with_fudge() {
        let p = Policy::new(tree(), 1.5);
        let g = p.reserve_disk(1, 800).unwrap();
        assert!(p.reserve_disk(1, 300).is_err(), "soft limit 1000");
        // Actual file larger: 800 → 1400 claims 600 more against 1000 × 1.5.
        assert_eq!(g.commit(1400), Commit::Within);
        assert_eq!(p.disk_used(1), 1400);
        assert_eq!(p.disk_used(0), 1400);
        // Over the soft limit now: new reservations are refused.
        assert!(p.reserve_disk(2, 0).is_err());
        p.release_disk(1, 1400).unwrap();
        assert_eq!(p.disk_used(1), 0);
        // A claim beyond the hard limit is refused, and the file charged in full all the
        // same: the class is then over its allowance and takes nothing new.
        let g2 = p.reserve_disk(2, 900).unwrap();
        assert!(matches!(
            g2.commit(1600),
            Commit::Over(PolicyError::Disk { .. })
        ));
        assert_eq!(p.disk_used(1), 1600);
        assert_eq!(p.disk_used(0), 1600);
        assert!(p.reserve_disk(2, 0).is_err());
        p.release_disk(2, 1600).unwrap();
        assert_eq!(p.disk_used(0), 0);
    }

    #[test]
    fn disk_surplus_is_released_and_drop_releases_all() {
        let p = Policy::new(tree(), 1.0);
        let g = p.reserve_disk(1, 800).unwrap();
        assert_eq!(g.commit(300), Commit::Within);
        assert_eq!(p.disk_used(1), 300);
        let g = p.reserve_disk(1, 700).unwrap();
        assert_eq!(p.disk_used(1), 1000);
        drop(g);
        assert_eq!(p.disk_used(1), 300);
        p.add_existing_disk(2, 50).unwrap();
        assert_eq!(p.disk_used(1), 350);
    }

    #[test]
    fn test_sessions_per_connection() {
        let t = tree();
        let mut conn = TestSessionCount::default();
        conn.take(&t, 2).unwrap();
        conn.take(&t, 2).unwrap();
        assert!(matches!(
            conn.take(&t, 2),
            Err(PolicyError::TestSessions { limit: 2, .. })
        ));
        // A fresh connection starts over; an unlimited class never refuses.
        let mut other = TestSessionCount::default();
        for _ in 0..10 {
            other.take(&t, 1).unwrap();
        }
    }

    #[test]
    fn concurrent_test_sessions_are_capped_per_connection_and_in_total() {
        let mut t = ClassTree::builtin();
        t.sessions_per_connection = 2;
        t.sessions_total = 3;
        let p = Policy::new(t, 1.0);
        let a = p.open_test_session(0).unwrap();
        let b = p.open_test_session(1).unwrap();
        assert_eq!(
            p.open_test_session(2).unwrap_err(),
            PolicyError::SessionsPerConnection { limit: 2 }
        );
        let c = p.open_test_session(0).unwrap();
        assert_eq!(
            p.open_test_session(0).unwrap_err(),
            PolicyError::SessionsTotal { limit: 3 }
        );
        drop(b);
        let d = p.open_test_session(1).unwrap();
        drop((a, c, d));
        let unlimited = Policy::new(ClassTree::unlimited(), 1.0);
        let many: Vec<_> = (0..1000)
            .map(|i| unlimited.open_test_session(i).unwrap())
            .collect();
        assert_eq!(many.len(), 1000);
    }

    #[test]
    fn bandwidth_formula() {
        // owping default: one exponential slot mean 0.1 s → 10 pkt/s, IPv4 open, no padding:
        // (20 + 8 + 14) × 8 × 10 = 3360 bit/s (0x199999A0 is a hair above 0.1).
        let slots = [Slot {
            kind: SlotKind::Exponential,
            param: Num64(0x1999_99A0),
        }];
        let bps = session_bandwidth_bps(&slots, 0, false, false);
        assert!((3359..=3360).contains(&bps), "{bps}");
        // IPv6, secure, padding 100, two fixed slots of 0.5 s → 2 pkt/s.
        let slots = [Slot {
            kind: SlotKind::Fixed,
            param: Num64::from_secs_f64(0.5),
        }; 2];
        assert_eq!(
            session_bandwidth_bps(&slots, 100, true, true),
            (48 + 48 + 100) * 8 * 2
        );
        let zero = [Slot {
            kind: SlotKind::Fixed,
            param: Num64(0),
        }];
        assert_eq!(session_bandwidth_bps(&zero, 0, false, false), u64::MAX);
    }

    #[test]
    fn disk_estimate() {
        assert_eq!(session_disk_estimate(1, 100), 56 + 112 + 32 + 2500);
    }
}
