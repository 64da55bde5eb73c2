//! `owamp-server.pfs` (older name `owampd.pfs`): pass-phrases per identity (protocol.md §7.10).
//!
//! One `identity<whitespace>hexpassphrase` per line, as written by `pfstore`. The key
//! used for PBKDF2 (protocol.md §1.4) is the hex-*decoded* bytes. Syntax follows I2util's
//! `I2ParsePFFile`: lines whose first non-blank character is `#` and blank lines are
//! skipped; a data line must start in column 1 (no leading whitespace); the hex must be
//! non-empty, of even length and the last thing on the line (trailing whitespace only);
//! there is no line continuation. Identities are at most 80 characters (the KeyID field
//! of Set-Up-Response, protocol.md §1.2).
//!
//! The server refuses a file that names an identity twice. Clients (`owping -k`) look an
//! identity up with [`pfs_lookup_client`], which keeps the reference's prefix-match quirk.

use crate::text::{ReadError, is_c_space, read_first};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// File names tried in the configuration directory, newest first.
pub const PFS_FILE_NAMES: [&str; 2] = ["owamp-server.pfs", "owampd.pfs"];

/// Longest identity in bytes (`I2MAXIDENTITYLEN`; the KeyID field is 80 octets).
pub const MAX_IDENTITY_LEN: usize = 80;

/// What is wrong with one line of a `.pfs` file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PfsProblem {
    #[error("leading whitespace is not allowed before the identity")]
    LeadingSpace,
    #[error("identity {identity:?} has no pass-phrase (expected \"identity hexpassphrase\")")]
    MissingPassphrase { identity: String },
    #[error("identity {identity:?} is too long ({len} bytes, at most 80)")]
    IdentityTooLong { identity: String, len: usize },
    #[error("pass-phrase for {identity:?} has an odd number of hex digits")]
    OddHex { identity: String },
    #[error("pass-phrase for {identity:?} is not hex")]
    NotHex { identity: String },
    #[error("unexpected {extra:?} after the pass-phrase for {identity:?}")]
    TrailingText { identity: String, extra: String },
    #[error("identity {identity:?} duplicated")]
    Duplicate { identity: String },
}

/// Why a `.pfs` file could not be loaded. Displays as `owamp-server.pfs:3: ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PfsError {
    #[error("{}:{line}: {problem}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        problem: PfsProblem,
    },
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// The server's pass-phrase table: identity → decoded pass-phrase bytes.
///
/// `Debug` prints the identities only, never a pass-phrase.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pfs {
    entries: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for Pfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pfs")
            .field("identities", &self.entries.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One validated line: (1-based line number, identity, decoded pass-phrase).
type Entry = (usize, String, Vec<u8>);

/// Validates every line of a `.pfs` text (no duplicate check: the client allows them).
fn parse_lines(text: &str) -> Result<Vec<Entry>, (usize, PfsProblem)> {
    let mut out = Vec::new();
    for (idx, raw) in text.split('\n').enumerate() {
        let n = idx + 1;
        let trimmed = raw.trim_start_matches(is_c_space);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if trimmed.len() != raw.len() {
            return Err((n, PfsProblem::LeadingSpace));
        }
        let (identity, rest) = match raw.find(is_c_space) {
            Some(i) => raw.split_at(i),
            None => (raw, ""),
        };
        let id_len = identity.len();
        if id_len > MAX_IDENTITY_LEN {
            return Err((
                n,
                PfsProblem::IdentityTooLong {
                    identity: identity.to_string(),
                    len: id_len,
                },
            ));
        }
        let rest = rest.trim_start_matches(is_c_space);
        let (hex, tail) = match rest.find(is_c_space) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if hex.is_empty() {
            return Err((
                n,
                PfsProblem::MissingPassphrase {
                    identity: identity.to_string(),
                },
            ));
        }
        let extra = tail.trim_matches(is_c_space);
        if !extra.is_empty() {
            return Err((
                n,
                PfsProblem::TrailingText {
                    identity: identity.to_string(),
                    extra: extra.to_string(),
                },
            ));
        }
        if hex.len() % 2 != 0 {
            return Err((
                n,
                PfsProblem::OddHex {
                    identity: identity.to_string(),
                },
            ));
        }
        let mut bytes = Vec::with_capacity(hex.len() / 2);
        for pair in hex.as_bytes().chunks(2) {
            let (Some(&hi), Some(&lo)) = (pair.first(), pair.get(1)) else {
                return Err((
                    n,
                    PfsProblem::OddHex {
                        identity: identity.to_string(),
                    },
                ));
            };
            match (hex_value(hi), hex_value(lo)) {
                (Some(h), Some(l)) => bytes.push(h << 4 | l),
                _ => {
                    return Err((
                        n,
                        PfsProblem::NotHex {
                            identity: identity.to_string(),
                        },
                    ));
                }
            }
        }
        out.push((n, identity.to_string(), bytes));
    }
    Ok(out)
}

impl Pfs {
    /// Parses a `.pfs` text with server semantics (duplicates refused); `path` is used
    /// only in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Pfs, PfsError> {
        let line_err = |line: usize, problem: PfsProblem| PfsError::Line {
            path: path.to_path_buf(),
            line,
            problem,
        };
        let mut entries = BTreeMap::new();
        for (n, identity, bytes) in parse_lines(text).map_err(|(n, p)| line_err(n, p))? {
            if entries.contains_key(&identity) {
                return Err(line_err(n, PfsProblem::Duplicate { identity }));
            }
            entries.insert(identity, bytes);
        }
        Ok(Pfs { entries })
    }

    /// Loads `owamp-server.pfs`, else `owampd.pfs`, from `confdir`; neither → empty.
    pub fn load(confdir: &Path) -> Result<Pfs, PfsError> {
        match read_first(confdir, &PFS_FILE_NAMES)? {
            Some((path, text)) => Pfs::parse(&text, &path),
            None => Ok(Pfs::default()),
        }
    }

    /// The decoded pass-phrase for exactly this identity.
    pub fn get(&self, identity: &str) -> Option<&[u8]> {
        self.entries.get(identity).map(Vec::as_slice)
    }

    pub fn contains(&self, identity: &str) -> bool {
        self.entries.contains_key(identity)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Identities in sorted order.
    pub fn identities(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

/// Client-side lookup of `identity` in a `.pfs` text (`owping -k file`, protocol.md §7.10).
///
/// The whole file is validated first (duplicates are allowed, as in the reference
/// client). Then an exact match wins. Failing that, the reference's quirk applies:
/// `I2ParsePFFile` compares `strncmp(line_id, query, min(len(line_id), len(query)))`,
/// so the first line whose identity is a prefix of the query, or which the query is a
/// prefix of, is used. An empty query matches nothing (as in the reference).
pub fn pfs_lookup_client(
    text: &str,
    path: &Path,
    identity: &str,
) -> Result<Option<Vec<u8>>, PfsError> {
    let entries = parse_lines(text).map_err(|(line, problem)| PfsError::Line {
        path: path.to_path_buf(),
        line,
        problem,
    })?;
    if identity.is_empty() {
        return Ok(None);
    }
    if let Some((_, _, b)) = entries.iter().find(|(_, id, _)| id == identity) {
        return Ok(Some(b.clone()));
    }
    Ok(entries
        .into_iter()
        .find(|(_, id, _)| id.starts_with(identity) || identity.starts_with(id.as_str()))
        .map(|(_, _, b)| b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Pfs, PfsError> {
        Pfs::parse(text, Path::new("owamp-server.pfs"))
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Err(e) => e.to_string(),
            Ok(p) => panic!("{text:?} accepted: {p:?}"),
        }
    }

    #[test]
    fn valid_file_decodes_hex() {
        let text =
            "# made by pfstore\n\nalice\t736563726574\nbob   00FFab\r\n   # indented comment\n";
        let p = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.get("alice"), Some(&b"secret"[..]));
        assert_eq!(p.get("bob"), Some(&[0x00, 0xff, 0xab][..]));
        assert_eq!(p.get("carol"), None);
        assert_eq!(p.get("alic"), None, "server lookups are exact");
        assert_eq!(p.len(), 2);
        assert_eq!(p.identities().collect::<Vec<_>>(), ["alice", "bob"]);
    }

    #[test]
    fn debug_never_shows_passphrases() {
        let p = parse("alice 736563726574\n").unwrap_or_else(|e| panic!("{e}"));
        let d = format!("{p:?}");
        assert!(d.contains("alice"), "{d}");
        assert!(!d.contains("736563726574") && !d.contains("115"), "{d}");
    }

    #[test]
    fn identity_length_counts_bytes_like_the_keyid_field() {
        // 27 three-byte characters = 81 bytes: cannot fit the 80-octet KeyID.
        let id = "\u{20ac}".repeat(27);
        assert_eq!(
            err(&format!("{id} 00")),
            format!("owamp-server.pfs:1: identity \"{id}\" is too long (81 bytes, at most 80)")
        );
    }

    #[test]
    fn identity_of_exactly_80_is_fine() {
        let id = "x".repeat(80);
        let p = parse(&format!("{id} 00\n")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.get(&id), Some(&[0u8][..]));
    }

    #[test]
    fn exact_error_messages() {
        let long = "y".repeat(81);
        let cases = [
            (
                " alice 00".to_string(),
                "owamp-server.pfs:1: leading whitespace is not allowed before the identity",
            ),
            (
                "# c\nalice\n".to_string(),
                "owamp-server.pfs:2: identity \"alice\" has no pass-phrase (expected \"identity hexpassphrase\")",
            ),
            (
                "alice   \n".to_string(),
                "owamp-server.pfs:1: identity \"alice\" has no pass-phrase (expected \"identity hexpassphrase\")",
            ),
            (
                format!("{long} 00"),
                "owamp-server.pfs:1: identity \"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\" is too long (81 bytes, at most 80)",
            ),
            (
                "alice 123".to_string(),
                "owamp-server.pfs:1: pass-phrase for \"alice\" has an odd number of hex digits",
            ),
            (
                "alice 12zz".to_string(),
                "owamp-server.pfs:1: pass-phrase for \"alice\" is not hex",
            ),
            (
                "alice 1234 # comment".to_string(),
                "owamp-server.pfs:1: unexpected \"# comment\" after the pass-phrase for \"alice\"",
            ),
            (
                "alice 00\nbob 01\nalice 02\n".to_string(),
                "owamp-server.pfs:3: identity \"alice\" duplicated",
            ),
        ];
        for (text, msg) in cases {
            assert_eq!(err(&text), msg, "{text:?}");
        }
    }

    #[test]
    fn client_lookup_prefers_exact_then_prefix_quirk() {
        let text = "al 01\nalice 02\nbob 03\nbob 04\n";
        let p = Path::new("k.pfs");
        let get = |id: &str| pfs_lookup_client(text, p, id).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            get("alice"),
            Some(vec![2]),
            "exact match beats the earlier prefix"
        );
        assert_eq!(get("al"), Some(vec![1]));
        // Quirk: "alex" starts with "al", so the reference's client uses al's key.
        assert_eq!(get("alex"), Some(vec![1]));
        // Quirk the other way: "a" is a prefix of "al".
        assert_eq!(get("a"), Some(vec![1]));
        // Duplicates are allowed client-side; the first wins.
        assert_eq!(get("bob"), Some(vec![3]));
        assert_eq!(get("carol"), None);
        assert_eq!(get(""), None);
    }

    #[test]
    fn client_lookup_reports_malformed_files() {
        assert_eq!(
            pfs_lookup_client("alice 0\n", Path::new("k.pfs"), "alice").map_err(|e| e.to_string()),
            Err("k.pfs:1: pass-phrase for \"alice\" has an odd number of hex digits".to_string())
        );
    }

    #[test]
    fn load_tries_new_then_old_name_and_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Pfs::load(dir.path()), Ok(Pfs::default()));
        std::fs::write(dir.path().join("owampd.pfs"), "old 01\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(Pfs::load(dir.path()).is_ok_and(|p| p.contains("old")));
        std::fs::write(dir.path().join("owamp-server.pfs"), "new 02\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let p = Pfs::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.get("new"), Some(&[2u8][..]));
        assert!(!p.contains("old"));
    }
}
