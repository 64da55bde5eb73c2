//! `owamp-server.limits` (older name `owampd.limits`): the limit-class tree and the rules
//! that put a connection into a class (protocol.md §7.9, class selection §7.5).
//!
//! ```text
//! limit <class> with <key>=<value>[,<key>=<value>]*
//! assign default <class>
//! assign net <addr>[/<masklen>] <class>
//! assign user <identity> <class>
//! ```
//!
//! Lines are read like `owamp-server.conf` (comments, blank lines, `\` continuation).
//! The first `limit` line is the root and has no parent; every later one names a parent
//! defined earlier and inherits every key it does not set. Keys, `with`, `limit`,
//! `assign` and the assign kinds are case-insensitive; class names and identities are
//! not. A missing or empty file means one unlimited root class named `default`.
//!
//! Stricter than the reference (refusing files whose meaning would be surprising):
//! text after the value of a key, or after the last field of an `assign` line, is
//! refused unless it is a `#comment` (the reference ignored it); `disk=`, `disk=k` are
//! refused (the reference read them as 0); class names may not contain `/` or be `.` or
//! `..`, because they become directory names under `datadir/hierarchy`; a second
//! `assign net` for the same prefix or `assign user` for the same identity is refused;
//! `limit` and `assign` must be whole words (the reference compared only their first 5
//! and 6 characters, so `limitfoo with` defined class `foo`); `assign net` takes plain
//! numeric addresses without a `%scope` suffix. Every refusal names the problem (the
//! reference often failed with only a line number).

use crate::pfs::{MAX_IDENTITY_LEN, Pfs};
use crate::text::{ReadError, is_c_space, logical_lines, read_first, tokens};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// File names tried in the configuration directory, newest first.
pub const LIMITS_FILE_NAMES: [&str; 2] = ["owamp-server.limits", "owampd.limits"];

/// Longest class name (`OWPDMAXCLASSLEN`).
pub const MAX_CLASS_LEN: usize = 80;

/// Name of the root class when there is no limits file.
pub const DEFAULT_ROOT_NAME: &str = "default";

/// Index of a class in [`Limits`]; the root is `ClassId(0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClassId(pub usize);

/// One limit class with its inherited values resolved. `0` means unlimited for
/// `bandwidth`, `disk` and `test_sessions` (checks walk up the [`Limits::chain`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitClass {
    pub name: String,
    pub parent: Option<ClassId>,
    /// Bits per second, for the whole subtree.
    pub bandwidth: u64,
    /// Bytes (soft limit; the hard limit is `disk × diskfudge`).
    pub disk: u64,
    pub delete_on_fetch: bool,
    pub allow_open_mode: bool,
    /// Request-Sessions accepted per control connection.
    pub test_sessions: u32,
}

impl LimitClass {
    /// A class that limits nothing (the reference's class with no keys set).
    pub fn unlimited(name: &str, parent: Option<ClassId>) -> LimitClass {
        LimitClass {
            name: name.to_string(),
            parent,
            bandwidth: 0,
            disk: 0,
            delete_on_fetch: false,
            allow_open_mode: true,
            test_sessions: 0,
        }
    }
}

/// An `assign net` rule: `addr/masklen` with no host bits set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRule {
    pub addr: IpAddr,
    pub masklen: u8,
    pub class: ClassId,
}

impl NetRule {
    fn matches(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => prefix_eq(&net.octets(), &a.octets(), self.masklen),
            (IpAddr::V6(net), IpAddr::V6(a)) => prefix_eq(&net.octets(), &a.octets(), self.masklen),
            _ => false,
        }
    }
}

/// Whether the first `bits` bits of `a` and `b` agree.
fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let mut left = usize::from(bits);
    for (x, y) in a.iter().zip(b) {
        if left == 0 {
            return true;
        }
        let take = left.min(8);
        let mask = 0xffu8 << (8 - take);
        if (x ^ y) & mask != 0 {
            return false;
        }
        left -= take;
    }
    true
}

/// Whether any bit after the first `bits` is set.
fn host_bits_set(a: &[u8], bits: u8) -> bool {
    let mut skip = usize::from(bits);
    for x in a {
        let keep = skip.min(8);
        // Bits of this byte beyond the mask.
        let host = if keep == 8 { 0 } else { 0xffu8 >> keep };
        if x & host != 0 {
            return true;
        }
        skip -= keep;
    }
    false
}

/// The parsed limits file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawLimits", into = "RawLimits")]
pub struct Limits {
    classes: Vec<LimitClass>,
    default: Option<ClassId>,
    nets: Vec<NetRule>,
    users: BTreeMap<String, ClassId>,
}

impl Default for Limits {
    /// No file: one unlimited root class named `default`.
    fn default() -> Self {
        Limits {
            classes: vec![LimitClass::unlimited(DEFAULT_ROOT_NAME, None)],
            default: None,
            nets: Vec::new(),
            users: BTreeMap::new(),
        }
    }
}

/// What is wrong with one line of a limits file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsProblem {
    #[error(
        "invalid use of '\\' (only a line continuation, '\\' at the end of a line, is allowed)"
    )]
    BadBackslash,
    #[error("unknown directive {0:?} (expected \"limit\" or \"assign\")")]
    UnknownDirective(String),
    #[error("expected \"limit <class> with <key>=<value>,...\"")]
    LimitSyntax,
    #[error("classname {name:?} too long ({len} bytes, at most 80)")]
    ClassTooLong { name: String, len: usize },
    #[error("classname {0:?} is not usable as a directory name")]
    ClassNotADirName(String),
    #[error("classname {0:?} duplicated")]
    DuplicateClass(String),
    #[error("\"parent\" specified for the root class {0:?} (the first limit line)")]
    ParentOnRoot(String),
    #[error("\"parent\" must be specified for non-root class {0:?}")]
    MissingParent(String),
    #[error("multiple parents specified")]
    MultipleParents,
    #[error("parent {0:?} undefined (a parent must be defined on an earlier line)")]
    UnknownParent(String),
    #[error("unknown limit name {0:?}")]
    UnknownKey(String),
    #[error("multiple {0} values specified")]
    DuplicateKey(String),
    #[error("empty entry in the key=value list")]
    EmptyEntry,
    #[error("invalid value {value:?} for {key:?}: {why}")]
    BadValue {
        key: String,
        value: String,
        why: &'static str,
    },
    #[error("unexpected {0:?} at the end of the line")]
    TrailingText(String),
    #[error("{0:?} before any limit line: a class must be defined first")]
    AssignBeforeLimit(String),
    #[error("unknown \"assign\" kind {0:?} (expected default, net or user)")]
    UnknownAssign(String),
    #[error("expected \"assign default <class>\"")]
    AssignDefaultSyntax,
    #[error("expected \"assign net <addr>[/<masklen>] <class>\"")]
    AssignNetSyntax,
    #[error("expected \"assign user <identity> <class>\"")]
    AssignUserSyntax,
    #[error("invalid multiple \"assign default\" lines")]
    DuplicateDefault,
    #[error("invalid address {0:?} (a numeric IPv4 or IPv6 address is required)")]
    BadAddress(String),
    #[error("invalid address mask {mask:?} (expected 1 to {max})")]
    BadMask { mask: String, max: u8 },
    #[error("invalid address/mask combination {0:?}: host bits beyond the mask are set")]
    HostBits(String),
    #[error("duplicate \"assign net {0}\"")]
    DuplicateNet(String),
    #[error("invalid user {0:?}: not in the pass-phrase file")]
    UnknownUser(String),
    #[error("duplicate \"assign user {0}\"")]
    DuplicateUser(String),
    #[error("unknown limitclass name {0:?}")]
    UnknownClass(String),
}

/// Why a limits file could not be loaded. Displays as `owamp-server.limits:4: ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("{}:{line}: {problem}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        problem: LimitsProblem,
    },
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// An integer with an optional SI suffix k/m/g/t/p/e/z (powers of 10, case-insensitive),
/// as the reference's `I2StrToNum`. Overflowing 64 bits is an error (so any non-zero
/// value with `z` is).
fn parse_si(value: &str) -> Result<u64, &'static str> {
    let digits_end = value
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, suffix) = value.split_at(digits_end);
    if digits.is_empty() {
        return Err("expected a whole number, optionally followed by k, m, g, t, p, e or z");
    }
    let mult: u128 = match suffix.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 10u128.pow(3),
        "m" => 10u128.pow(6),
        "g" => 10u128.pow(9),
        "t" => 10u128.pow(12),
        "p" => 10u128.pow(15),
        "e" => 10u128.pow(18),
        "z" => 10u128.pow(21),
        _ => return Err("expected a whole number, optionally followed by k, m, g, t, p, e or z"),
    };
    let n: u128 = digits.parse::<u64>().map_err(|_| "too large")?.into();
    // 64-bit digits times 10^21 can exceed even 128 bits: check both steps.
    n.checked_mul(mult)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or("too large")
}

fn parse_bool(value: &str) -> Result<bool, &'static str> {
    if value.eq_ignore_ascii_case("on") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("off") {
        Ok(false)
    } else {
        Err("expected on or off")
    }
}

/// Splits off a trailing `#comment` token: the reference only knows whole-line comments,
/// but a `#` that starts a token cannot be meant as part of a name or value.
fn strip_comment(line: &str) -> &str {
    let b = line.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'#' && (i == 0 || b.get(i - 1).is_some_and(|p| is_c_space(char::from(*p)))) {
            return line.get(..i).unwrap_or(line);
        }
    }
    line
}

/// Case-insensitive keyword match.
fn is_word(tok: &str, word: &str) -> bool {
    tok.eq_ignore_ascii_case(word)
}

/// The limit keys other than `parent`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Bandwidth,
    Disk,
    DeleteOnFetch,
    AllowOpenMode,
    TestSessions,
}

impl Key {
    fn parse(name: &str) -> Option<Key> {
        [
            ("bandwidth", Key::Bandwidth),
            ("disk", Key::Disk),
            ("delete_on_fetch", Key::DeleteOnFetch),
            ("allow_open_mode", Key::AllowOpenMode),
            ("test_sessions", Key::TestSessions),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, k)| k)
    }
}

impl Limits {
    /// Parses a limits text. `pfs` is the server's pass-phrase table: `assign user`
    /// requires the identity to be in it (with `None`, every `assign user` is refused,
    /// as in the reference without a `.pfs` file). `path` is used only in messages.
    pub fn parse(text: &str, path: &Path, pfs: Option<&Pfs>) -> Result<Limits, LimitsError> {
        let err = |line: usize, problem: LimitsProblem| LimitsError::Line {
            path: path.to_path_buf(),
            line,
            problem,
        };
        let lines = logical_lines(text).map_err(|b| err(b.line, LimitsProblem::BadBackslash))?;
        let mut limits = Limits {
            classes: Vec::new(),
            default: None,
            nets: Vec::new(),
            users: BTreeMap::new(),
        };
        for l in lines {
            limits
                .apply_line(strip_comment(&l.text), pfs)
                .map_err(|p| err(l.line, p))?;
        }
        if limits.classes.is_empty() {
            // Only comments (or nothing): same as no file.
            return Ok(Limits::default());
        }
        Ok(limits)
    }

    /// Loads `owamp-server.limits`, else `owampd.limits`, from `confdir`; neither →
    /// [`Limits::default`].
    pub fn load(confdir: &Path, pfs: Option<&Pfs>) -> Result<Limits, LimitsError> {
        match read_first(confdir, &LIMITS_FILE_NAMES)? {
            Some((path, text)) => Limits::parse(&text, &path, pfs),
            None => Ok(Limits::default()),
        }
    }

    fn apply_line(&mut self, line: &str, pfs: Option<&Pfs>) -> Result<(), LimitsProblem> {
        let line = line.trim_start_matches(is_c_space);
        let (word, rest) = match line.find(is_c_space) {
            Some(i) => line.split_at(i),
            None => (line, ""),
        };
        if word.is_empty() {
            return Ok(());
        }
        if is_word(word, "limit") {
            self.apply_limit(rest)
        } else if is_word(word, "assign") {
            self.apply_assign(rest, pfs)
        } else {
            Err(LimitsProblem::UnknownDirective(word.to_string()))
        }
    }

    fn apply_limit(&mut self, rest: &str) -> Result<(), LimitsProblem> {
        let rest = rest.trim_start_matches(is_c_space);
        let (name, rest) = rest
            .split_once(is_c_space)
            .ok_or(LimitsProblem::LimitSyntax)?;
        let rest = rest.trim_start_matches(is_c_space);
        let (with, kvs) = match rest.split_once(is_c_space) {
            Some((w, kv)) => (w, kv),
            None => (rest, ""),
        };
        if !is_word(with, "with") {
            return Err(LimitsProblem::LimitSyntax);
        }
        let len = name.len();
        if len > MAX_CLASS_LEN {
            return Err(LimitsProblem::ClassTooLong {
                name: name.to_string(),
                len,
            });
        }
        if name.contains('/') || name == "." || name == ".." || name.contains('\0') {
            return Err(LimitsProblem::ClassNotADirName(name.to_string()));
        }
        if self.by_name(name).is_some() {
            return Err(LimitsProblem::DuplicateClass(name.to_string()));
        }
        let is_root = self.classes.is_empty();

        let mut parent: Option<ClassId> = None;
        let mut set: Vec<(Key, &str, &str)> = Vec::new();
        for entry in kvs.split(',') {
            let entry = entry.trim_matches(is_c_space);
            if entry.is_empty() {
                // "a=1,,b=2" and a trailing comma: strtok skips empty fields.
                continue;
            }
            let (k, v) = entry.split_once('=').ok_or(LimitsProblem::BadValue {
                key: entry.to_string(),
                value: String::new(),
                why: "expected key=value",
            })?;
            let (k, v) = (k.trim_matches(is_c_space), v.trim_matches(is_c_space));
            if k.is_empty() {
                return Err(LimitsProblem::EmptyEntry);
            }
            if let Some(extra) = tokens(v).nth(1) {
                return Err(LimitsProblem::TrailingText(extra.to_string()));
            }
            if is_word(k, "parent") {
                if is_root {
                    return Err(LimitsProblem::ParentOnRoot(name.to_string()));
                }
                if parent.is_some() {
                    return Err(LimitsProblem::MultipleParents);
                }
                parent = Some(
                    self.by_name(v)
                        .ok_or_else(|| LimitsProblem::UnknownParent(v.to_string()))?,
                );
                continue;
            }
            let key = Key::parse(k).ok_or_else(|| LimitsProblem::UnknownKey(k.to_string()))?;
            if set.iter().any(|(sk, _, _)| *sk == key) {
                return Err(LimitsProblem::DuplicateKey(k.to_string()));
            }
            set.push((key, k, v));
        }
        if !is_root && parent.is_none() {
            return Err(LimitsProblem::MissingParent(name.to_string()));
        }

        // Inherit everything from the parent, then apply this line's keys.
        let mut class = match parent.and_then(|p| self.classes.get(p.0)) {
            Some(p) => LimitClass {
                name: name.to_string(),
                parent,
                ..p.clone()
            },
            None => LimitClass::unlimited(name, None),
        };
        for (key, k, v) in set {
            let bad = |why: &'static str| LimitsProblem::BadValue {
                key: k.to_string(),
                value: v.to_string(),
                why,
            };
            match key {
                Key::Bandwidth => class.bandwidth = parse_si(v).map_err(bad)?,
                Key::Disk => class.disk = parse_si(v).map_err(bad)?,
                Key::TestSessions => {
                    class.test_sessions = u32::try_from(parse_si(v).map_err(bad)?)
                        .map_err(|_| bad("too large (at most 4294967295)"))?
                }
                Key::DeleteOnFetch => class.delete_on_fetch = parse_bool(v).map_err(bad)?,
                Key::AllowOpenMode => class.allow_open_mode = parse_bool(v).map_err(bad)?,
            }
        }
        self.classes.push(class);
        Ok(())
    }

    fn class_named(&self, name: &str) -> Result<ClassId, LimitsProblem> {
        self.by_name(name)
            .ok_or_else(|| LimitsProblem::UnknownClass(name.to_string()))
    }

    fn apply_assign(&mut self, rest: &str, pfs: Option<&Pfs>) -> Result<(), LimitsProblem> {
        let toks: Vec<&str> = tokens(rest).collect();
        let Some(kind) = toks.first() else {
            return Err(LimitsProblem::UnknownAssign(String::new()));
        };
        if self.classes.is_empty() {
            return Err(LimitsProblem::AssignBeforeLimit(format!("assign {kind}")));
        }
        let trailing = |n: usize| match toks.get(n) {
            Some(t) => Err(LimitsProblem::TrailingText((*t).to_string())),
            None => Ok(()),
        };
        if is_word(kind, "default") {
            let class = toks.get(1).ok_or(LimitsProblem::AssignDefaultSyntax)?;
            trailing(2)?;
            if self.default.is_some() {
                return Err(LimitsProblem::DuplicateDefault);
            }
            self.default = Some(self.class_named(class)?);
        } else if is_word(kind, "net") {
            let (Some(spec), Some(class)) = (toks.get(1), toks.get(2)) else {
                return Err(LimitsProblem::AssignNetSyntax);
            };
            trailing(3)?;
            let rule = parse_net(spec, self.class_named(class)?)?;
            if self
                .nets
                .iter()
                .any(|r| r.addr == rule.addr && r.masklen == rule.masklen)
            {
                return Err(LimitsProblem::DuplicateNet((*spec).to_string()));
            }
            self.nets.push(rule);
        } else if is_word(kind, "user") {
            let (Some(user), Some(class)) = (toks.get(1), toks.get(2)) else {
                return Err(LimitsProblem::AssignUserSyntax);
            };
            trailing(3)?;
            if user.len() > MAX_IDENTITY_LEN || !pfs.is_some_and(|p| p.contains(user)) {
                return Err(LimitsProblem::UnknownUser((*user).to_string()));
            }
            let id = self.class_named(class)?;
            if self.users.contains_key(*user) {
                return Err(LimitsProblem::DuplicateUser((*user).to_string()));
            }
            self.users.insert((*user).to_string(), id);
        } else {
            return Err(LimitsProblem::UnknownAssign((*kind).to_string()));
        }
        Ok(())
    }

    /// The root class (the first `limit` line, or `default` without a file).
    pub fn root(&self) -> ClassId {
        ClassId(0)
    }

    /// The class `id`. Ids come from this `Limits`; an id from elsewhere that is out of
    /// range gives the root rather than a panic.
    pub fn class(&self, id: ClassId) -> &LimitClass {
        self.classes
            .get(id.0)
            .or_else(|| self.classes.first())
            .unwrap_or(&FALLBACK_CLASS)
    }

    /// Every class, root first, in file order (so a parent precedes its children).
    pub fn classes(&self) -> impl Iterator<Item = (ClassId, &LimitClass)> {
        self.classes
            .iter()
            .enumerate()
            .map(|(i, c)| (ClassId(i), c))
    }

    pub fn by_name(&self, name: &str) -> Option<ClassId> {
        self.classes
            .iter()
            .position(|c| c.name == name)
            .map(ClassId)
    }

    /// The path from the root to `id`, root first: the directory chain under
    /// `datadir/hierarchy` (protocol.md §7.7) and the order to walk limits in (§7.4).
    pub fn chain(&self, id: ClassId) -> Vec<ClassId> {
        let mut out = Vec::new();
        let mut cur = Some(if id.0 < self.classes.len() {
            id
        } else {
            self.root()
        });
        // A parent always has a smaller index, so this terminates; the bound is
        // belt and braces against a hand-built (deserialised) tree.
        while let Some(c) = cur {
            if out.len() > self.classes.len() {
                break;
            }
            out.push(c);
            cur = self.classes.get(c.0).and_then(|cl| cl.parent);
        }
        out.reverse();
        out
    }

    /// The class for a connection in open mode (protocol.md §7.5): longest-prefix match over
    /// `assign net` (an IPv4-mapped IPv6 address matches as IPv4), else `assign
    /// default`, else the root.
    pub fn class_for_address(&self, addr: IpAddr) -> ClassId {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.nets
            .iter()
            .filter(|r| r.matches(addr))
            .max_by_key(|r| r.masklen)
            .map(|r| r.class)
            .or(self.default)
            .unwrap_or(self.root())
    }

    /// The class for an authenticated identity (protocol.md §7.5): a class *named* like the
    /// user wins (the reference's quirk: it overrides `assign user`), then `assign
    /// user`, then the address rules.
    pub fn class_for_user(&self, user: &str, addr: IpAddr) -> ClassId {
        self.by_name(user)
            .or_else(|| self.users.get(user).copied())
            .unwrap_or_else(|| self.class_for_address(addr))
    }

    /// The `assign default` class, if any.
    pub fn default_class(&self) -> Option<ClassId> {
        self.default
    }

    /// The `assign net` rules in file order.
    pub fn net_rules(&self) -> &[NetRule] {
        &self.nets
    }

    /// The `assign user` rules.
    pub fn user_rules(&self) -> impl Iterator<Item = (&str, ClassId)> {
        self.users.iter().map(|(u, c)| (u.as_str(), *c))
    }
}

/// Returned by [`Limits::class`] only if the class list were empty, which `parse`,
/// `default` and `Deserialize` (through [`RawLimits`]) all rule out.
static FALLBACK_CLASS: LimitClass = LimitClass {
    name: String::new(),
    parent: None,
    bandwidth: 0,
    disk: 0,
    delete_on_fetch: false,
    allow_open_mode: true,
    test_sessions: 0,
};

/// The serialised form of [`Limits`]; deserialising checks the tree's invariants (a
/// non-empty class list, the root first and alone without a parent, every parent
/// earlier than its child, every rule naming an existing class) so that a value read
/// from IPC is as good as a parsed one.
#[derive(Clone, Serialize, Deserialize)]
struct RawLimits {
    classes: Vec<LimitClass>,
    default: Option<ClassId>,
    nets: Vec<NetRule>,
    users: BTreeMap<String, ClassId>,
}

/// Why a deserialised [`Limits`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid limits tree: {0}")]
pub struct InvalidTree(&'static str);

impl TryFrom<RawLimits> for Limits {
    type Error = InvalidTree;
    fn try_from(r: RawLimits) -> Result<Limits, InvalidTree> {
        let n = r.classes.len();
        if n == 0 {
            return Err(InvalidTree("no classes"));
        }
        for (i, c) in r.classes.iter().enumerate() {
            match (i, c.parent) {
                (0, None) => {}
                (0, Some(_)) => return Err(InvalidTree("root has a parent")),
                (_, None) => return Err(InvalidTree("non-root class without a parent")),
                (_, Some(p)) if p.0 >= i => return Err(InvalidTree("parent after child")),
                _ => {}
            }
        }
        let ok = |c: &ClassId| c.0 < n;
        if !r.default.iter().all(ok)
            || !r.nets.iter().all(|x| ok(&x.class))
            || !r.users.values().all(ok)
        {
            return Err(InvalidTree("rule names a missing class"));
        }
        Ok(Limits {
            classes: r.classes,
            default: r.default,
            nets: r.nets,
            users: r.users,
        })
    }
}

impl From<Limits> for RawLimits {
    fn from(l: Limits) -> RawLimits {
        RawLimits {
            classes: l.classes,
            default: l.default,
            nets: l.nets,
            users: l.users,
        }
    }
}

fn parse_net(spec: &str, class: ClassId) -> Result<NetRule, LimitsProblem> {
    let (addr_text, mask_text) = match spec.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (spec, None),
    };
    let addr: IpAddr = if let Ok(v4) = addr_text.parse::<Ipv4Addr>() {
        IpAddr::V4(v4)
    } else if let Ok(v6) = addr_text.parse::<Ipv6Addr>() {
        IpAddr::V6(v6)
    } else {
        return Err(LimitsProblem::BadAddress(addr_text.to_string()));
    };
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let masklen = match mask_text {
        None => max,
        Some(m) => {
            let bad = || LimitsProblem::BadMask {
                mask: m.to_string(),
                max,
            };
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            match m.parse::<u8>() {
                Ok(n) if (1..=max).contains(&n) => n,
                _ => return Err(bad()),
            }
        }
    };
    let host_set = match addr {
        IpAddr::V4(a) => host_bits_set(&a.octets(), masklen),
        IpAddr::V6(a) => host_bits_set(&a.octets(), masklen),
    };
    if host_set {
        return Err(LimitsProblem::HostBits(spec.to_string()));
    }
    Ok(NetRule {
        addr,
        masklen,
        class,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = "\
# The example shipped with owamp (owamp-server.limits)
limit root with disk=0,\\
                bandwidth=0,\\
                delete_on_fetch=on

limit regular with parent=root,\\
                   disk=10G,\\
                   bandwidth=20M

assign default regular
";

    fn pfs() -> Pfs {
        Pfs::parse("alice 00\nbob 01\nstaff 02\n", Path::new("p")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse(text: &str) -> Result<Limits, LimitsError> {
        let p = pfs();
        Limits::parse(text, Path::new("owamp-server.limits"), Some(&p))
    }

    fn ok(text: &str) -> Limits {
        parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Err(e) => e.to_string(),
            Ok(l) => panic!("{text:?} accepted: {l:?}"),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn shipped_example() {
        let l = ok(SHIPPED);
        let root = l.class(l.root());
        assert_eq!(
            root,
            &LimitClass {
                name: "root".into(),
                parent: None,
                bandwidth: 0,
                disk: 0,
                delete_on_fetch: true,
                allow_open_mode: true,
                test_sessions: 0,
            }
        );
        let reg = l.by_name("regular").unwrap_or_else(|| panic!("no regular"));
        assert_eq!(
            l.class(reg),
            &LimitClass {
                name: "regular".into(),
                parent: Some(ClassId(0)),
                bandwidth: 20_000_000,
                disk: 10_000_000_000,
                delete_on_fetch: true, // inherited from root
                allow_open_mode: true,
                test_sessions: 0,
            }
        );
        assert_eq!(l.default_class(), Some(reg));
        assert_eq!(l.class_for_address(ip("192.0.2.1")), reg);
        assert_eq!(l.chain(reg), vec![ClassId(0), reg]);
    }

    #[test]
    fn older_owampd_limits_sample() {
        // Shaped like the owampd.limits example of older releases.
        let l = ok("\
limit root with disk=0,bandwidth=0
# limit box with parent=root,disk=1,bandwidth=1,allow_open_mode=off
limit box with parent=root,bandwidth=1k
limit sand with parent=box,disk=10M,bandwidth=1k,delete_on_fetch=on

assign default sand
assign net ::/127 root
");
        let sand = l.by_name("sand").unwrap_or_else(|| panic!("no sand"));
        assert_eq!(l.class_for_address(ip("::1")), l.root());
        assert_eq!(l.class_for_address(ip("::")), l.root());
        assert_eq!(l.class_for_address(ip("::2")), sand);
        assert_eq!(l.class_for_address(ip("127.0.0.1")), sand);
        assert_eq!(l.chain(sand).len(), 3);
        assert_eq!(l.class(sand).disk, 10_000_000);
    }

    #[test]
    fn missing_or_comment_only_file_is_one_unlimited_default_root() {
        let want = Limits::default();
        assert_eq!(ok(""), want);
        assert_eq!(ok("# only a comment\n\n"), want);
        let c = want.class(want.root());
        assert_eq!(c.name, "default");
        assert_eq!((c.bandwidth, c.disk, c.test_sessions), (0, 0, 0));
        assert!(c.allow_open_mode && !c.delete_on_fetch);
        assert_eq!(want.class_for_address(ip("::1")), want.root());
        assert_eq!(want.class_for_user("alice", ip("::1")), want.root());
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Limits::load(dir.path(), None), Ok(Limits::default()));
    }

    #[test]
    fn inheritance_through_three_levels() {
        let l = ok("\
limit a with bandwidth=1k,disk=2m,test_sessions=3,allow_open_mode=off
limit b with parent=a,disk=5
limit c with DISK=7 , Parent=b, delete_on_fetch=ON, bandwidth=0
");
        let (a, b, c) = (ClassId(0), ClassId(1), ClassId(2));
        assert_eq!(l.class(b).bandwidth, 1000);
        assert_eq!(l.class(b).disk, 5);
        assert_eq!(l.class(b).test_sessions, 3);
        assert!(!l.class(b).allow_open_mode);
        assert_eq!(l.class(c).bandwidth, 0, "explicit 0 overrides the parent");
        assert_eq!(l.class(c).disk, 7);
        assert_eq!(l.class(c).test_sessions, 3);
        assert!(l.class(c).delete_on_fetch && !l.class(c).allow_open_mode);
        assert_eq!(l.chain(c), vec![a, b, c]);
        assert_eq!(l.chain(a), vec![a]);
        assert_eq!(l.class(ClassId(99)).name, "a", "out of range → root");
    }

    #[test]
    fn suffixes_are_powers_of_ten_and_overflow_is_an_error() {
        let l = ok("limit r with bandwidth=18e,disk=1T,test_sessions=4K");
        let r = l.class(l.root());
        assert_eq!(r.bandwidth, 18_000_000_000_000_000_000);
        assert_eq!(r.disk, 1_000_000_000_000);
        assert_eq!(r.test_sessions, 4000);
        assert_eq!(
            ok("limit r with disk=3p").class(ClassId(0)).disk,
            3 * 10u64.pow(15)
        );
        assert_eq!(ok("limit r with disk=0z").class(ClassId(0)).disk, 0);
        assert_eq!(
            err("limit r with disk=1z"),
            "owamp-server.limits:1: invalid value \"1z\" for \"disk\": too large"
        );
        assert_eq!(
            err("limit r with disk=18446744073709551615z"),
            "owamp-server.limits:1: invalid value \"18446744073709551615z\" for \"disk\": too large"
        );
        assert_eq!(
            err("limit r with disk=18446744073709551616"),
            "owamp-server.limits:1: invalid value \"18446744073709551616\" for \"disk\": too large"
        );
        assert_eq!(
            ok("limit r with disk=18446744073709551615")
                .class(ClassId(0))
                .disk,
            u64::MAX
        );
        assert_eq!(
            err("limit r with bandwidth=19e"),
            "owamp-server.limits:1: invalid value \"19e\" for \"bandwidth\": too large"
        );
        assert_eq!(
            err("limit r with test_sessions=5g"),
            "owamp-server.limits:1: invalid value \"5g\" for \"test_sessions\": too large (at most 4294967295)"
        );
    }

    #[test]
    fn longest_prefix_v4_v6_and_v4_mapped() {
        let l = ok("\
limit root with bandwidth=0
limit wide with parent=root
limit narrow with parent=root
limit host with parent=root
limit six with parent=root
limit sixhost with parent=root
limit dflt with parent=root
assign net 10.0.0.0/8 wide
assign net 10.1.0.0/16 narrow
assign net 10.1.2.3 host
assign net 2001:db8::/32 six
assign net 2001:db8::1/128 sixhost
");
        let id = |n: &str| l.by_name(n).unwrap_or_else(|| panic!("{n}"));
        assert_eq!(l.class_for_address(ip("10.9.9.9")), id("wide"));
        assert_eq!(l.class_for_address(ip("10.1.9.9")), id("narrow"));
        assert_eq!(l.class_for_address(ip("10.1.2.3")), id("host"));
        assert_eq!(l.class_for_address(ip("::ffff:10.1.2.3")), id("host"));
        assert_eq!(l.class_for_address(ip("::ffff:10.200.0.1")), id("wide"));
        assert_eq!(l.class_for_address(ip("2001:db8:5::9")), id("six"));
        assert_eq!(l.class_for_address(ip("2001:db8::1")), id("sixhost"));
        // No default: the root.
        assert_eq!(l.class_for_address(ip("192.0.2.1")), l.root());
        assert_eq!(l.class_for_address(ip("2001:db9::1")), l.root());

        let with_default = ok("\
limit root with bandwidth=0
limit dflt with parent=root
limit lan with parent=root
assign net 192.168.0.0/23 lan
assign default dflt
");
        assert_eq!(
            with_default.class_for_address(ip("192.168.1.255")),
            ClassId(2)
        );
        assert_eq!(
            with_default.class_for_address(ip("192.168.2.0")),
            ClassId(1)
        );
        assert_eq!(with_default.class_for_address(ip("::1")), ClassId(1));
    }

    #[test]
    fn class_for_user_order_with_the_name_quirk() {
        let l = ok("\
limit root with bandwidth=0
limit users with parent=root
limit alice with parent=root
limit lan with parent=root
assign user alice users
assign user bob users
assign net 10.0.0.0/8 lan
");
        let id = |n: &str| l.by_name(n).unwrap_or_else(|| panic!("{n}"));
        // Quirk: the class named "alice" overrides "assign user alice users".
        assert_eq!(l.class_for_user("alice", ip("10.0.0.1")), id("alice"));
        assert_eq!(l.class_for_user("bob", ip("10.0.0.1")), id("users"));
        // Unknown user: address rules.
        assert_eq!(l.class_for_user("carol", ip("10.0.0.1")), id("lan"));
        assert_eq!(l.class_for_user("carol", ip("192.0.2.1")), l.root());
    }

    #[test]
    fn assign_user_needs_the_pfs() {
        let text = "limit r with disk=0\nassign user alice r\n";
        assert!(parse(text).is_ok());
        assert_eq!(
            Limits::parse(text, Path::new("owamp-server.limits"), None).map_err(|e| e.to_string()),
            Err(
                "owamp-server.limits:2: invalid user \"alice\": not in the pass-phrase file".into()
            )
        );
    }

    #[test]
    fn trailing_comments_are_allowed() {
        let l = ok("limit r with disk=1k # one kB\nassign default r # all\n");
        assert_eq!(l.class(l.root()).disk, 1000);
        assert_eq!(l.default_class(), Some(ClassId(0)));
    }

    #[test]
    fn exact_error_messages() {
        let long = "c".repeat(81);
        let r = "limit r with disk=0\n";
        let cases: Vec<(String, String)> = vec![
            ("foo bar".into(), "owamp-server.limits:1: unknown directive \"foo\" (expected \"limit\" or \"assign\")".into()),
            ("limitr with disk=0".into(), "owamp-server.limits:1: unknown directive \"limitr\" (expected \"limit\" or \"assign\")".into()),
            (format!("{r}assign net fe80::/10%eth0 r"), "owamp-server.limits:2: invalid address mask \"10%eth0\" (expected 1 to 128)".into()),
            (format!("{r}assign net fe80::%eth0 r"), "owamp-server.limits:2: invalid address \"fe80::%eth0\" (a numeric IPv4 or IPv6 address is required)".into()),
            ("limit r disk=0".into(), "owamp-server.limits:1: expected \"limit <class> with <key>=<value>,...\"".into()),
            ("limit r".into(), "owamp-server.limits:1: expected \"limit <class> with <key>=<value>,...\"".into()),
            (format!("limit {long} with disk=0"), format!("owamp-server.limits:1: classname \"{long}\" too long (81 bytes, at most 80)")),
            ("limit ../x with disk=0".into(), "owamp-server.limits:1: classname \"../x\" is not usable as a directory name".into()),
            ("limit .. with disk=0".into(), "owamp-server.limits:1: classname \"..\" is not usable as a directory name".into()),
            (format!("{r}limit r with parent=r"), "owamp-server.limits:2: classname \"r\" duplicated".into()),
            ("limit r with parent=x".into(), "owamp-server.limits:1: \"parent\" specified for the root class \"r\" (the first limit line)".into()),
            (format!("{r}limit s with disk=1"), "owamp-server.limits:2: \"parent\" must be specified for non-root class \"s\"".into()),
            (format!("{r}limit s with parent=r,parent=r"), "owamp-server.limits:2: multiple parents specified".into()),
            (format!("{r}limit s with parent=t"), "owamp-server.limits:2: parent \"t\" undefined (a parent must be defined on an earlier line)".into()),
            ("limit r with speed=1".into(), "owamp-server.limits:1: unknown limit name \"speed\"".into()),
            ("limit r with disk=1,DISK=2".into(), "owamp-server.limits:1: multiple DISK values specified".into()),
            ("limit r with =1".into(), "owamp-server.limits:1: empty entry in the key=value list".into()),
            ("limit r with disk".into(), "owamp-server.limits:1: invalid value \"\" for \"disk\": expected key=value".into()),
            ("limit r with disk=".into(), "owamp-server.limits:1: invalid value \"\" for \"disk\": expected a whole number, optionally followed by k, m, g, t, p, e or z".into()),
            ("limit r with disk=k".into(), "owamp-server.limits:1: invalid value \"k\" for \"disk\": expected a whole number, optionally followed by k, m, g, t, p, e or z".into()),
            ("limit r with disk=10GB".into(), "owamp-server.limits:1: invalid value \"10GB\" for \"disk\": expected a whole number, optionally followed by k, m, g, t, p, e or z".into()),
            ("limit r with disk=-1".into(), "owamp-server.limits:1: invalid value \"-1\" for \"disk\": expected a whole number, optionally followed by k, m, g, t, p, e or z".into()),
            ("limit r with disk=1 2".into(), "owamp-server.limits:1: unexpected \"2\" at the end of the line".into()),
            ("limit r with delete_on_fetch=yes".into(), "owamp-server.limits:1: invalid value \"yes\" for \"delete_on_fetch\": expected on or off".into()),
            ("assign default r".into(), "owamp-server.limits:1: \"assign default\" before any limit line: a class must be defined first".into()),
            (format!("{r}assign group x r"), "owamp-server.limits:2: unknown \"assign\" kind \"group\" (expected default, net or user)".into()),
            (format!("{r}assign default"), "owamp-server.limits:2: expected \"assign default <class>\"".into()),
            (format!("{r}assign default r extra"), "owamp-server.limits:2: unexpected \"extra\" at the end of the line".into()),
            (format!("{r}assign default r\nassign default r"), "owamp-server.limits:3: invalid multiple \"assign default\" lines".into()),
            (format!("{r}assign default s"), "owamp-server.limits:2: unknown limitclass name \"s\"".into()),
            (format!("{r}assign net 10.0.0.0/8"), "owamp-server.limits:2: expected \"assign net <addr>[/<masklen>] <class>\"".into()),
            (format!("{r}assign net host.example r"), "owamp-server.limits:2: invalid address \"host.example\" (a numeric IPv4 or IPv6 address is required)".into()),
            (format!("{r}assign net 10.0.0.0/ r"), "owamp-server.limits:2: invalid address mask \"\" (expected 1 to 32)".into()),
            (format!("{r}assign net 10.0.0.0/0 r"), "owamp-server.limits:2: invalid address mask \"0\" (expected 1 to 32)".into()),
            (format!("{r}assign net 10.0.0.0/33 r"), "owamp-server.limits:2: invalid address mask \"33\" (expected 1 to 32)".into()),
            (format!("{r}assign net ::/129 r"), "owamp-server.limits:2: invalid address mask \"129\" (expected 1 to 128)".into()),
            (format!("{r}assign net 10.0.0.1/8 r"), "owamp-server.limits:2: invalid address/mask combination \"10.0.0.1/8\": host bits beyond the mask are set".into()),
            (format!("{r}assign net 10.128.0.0/9 r\nassign net 10.64.0.0/9 r"), "owamp-server.limits:3: invalid address/mask combination \"10.64.0.0/9\": host bits beyond the mask are set".into()),
            (format!("{r}assign net 2001:db8::1/64 r"), "owamp-server.limits:2: invalid address/mask combination \"2001:db8::1/64\": host bits beyond the mask are set".into()),
            (format!("{r}assign net 10.0.0.0/8 r\nassign net 10.0.0.0/8 r"), "owamp-server.limits:3: duplicate \"assign net 10.0.0.0/8\"".into()),
            (format!("{r}assign user mallory r"), "owamp-server.limits:2: invalid user \"mallory\": not in the pass-phrase file".into()),
            (format!("{r}assign user alice r\nassign user alice r"), "owamp-server.limits:3: duplicate \"assign user alice\"".into()),
            (format!("{r}assign user alice"), "owamp-server.limits:2: expected \"assign user <identity> <class>\"".into()),
            ("limit r with disk=1\\x".into(), "owamp-server.limits:1: invalid use of '\\' (only a line continuation, '\\' at the end of a line, is allowed)".into()),
        ];
        for (text, msg) in cases {
            assert_eq!(err(&text), msg, "{text:?}");
        }
    }

    #[test]
    fn host_bits_and_prefix_helpers() {
        assert!(!host_bits_set(&[10, 128, 0, 0], 9));
        assert!(host_bits_set(&[10, 64, 0, 0], 9));
        assert!(!host_bits_set(&[255, 255, 255, 255], 32));
        assert!(prefix_eq(&[10, 1, 2, 3], &[10, 1, 200, 3], 16));
        assert!(!prefix_eq(&[10, 1, 2, 3], &[10, 1, 200, 3], 17));
        assert!(prefix_eq(&[0b1010_0000], &[0b1011_1111], 3));
        assert!(!prefix_eq(&[0b1010_0000], &[0b1011_1111], 4));
    }

    #[test]
    fn load_tries_new_then_old_name() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("owampd.limits"), "limit old with disk=1\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let l = Limits::load(dir.path(), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.class(l.root()).name, "old");
        std::fs::write(dir.path().join("owamp-server.limits"), SHIPPED)
            .unwrap_or_else(|e| panic!("{e}"));
        let l = Limits::load(dir.path(), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.class(l.root()).name, "root");
    }

    #[test]
    fn serde_round_trip_through_bincode() {
        let l = ok(SHIPPED);
        let cfg = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&l, cfg).unwrap_or_else(|e| panic!("{e}"));
        let (back, _): (Limits, usize) =
            bincode::serde::decode_from_slice(&bytes, cfg).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, l);
    }
}
