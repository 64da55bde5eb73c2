//! `owpfstore`: creates and edits `owamp-server.pfs` files with perfSONAR `pfstore`'s
//! command line (`-f pfsfile [-n | -d] identity`). The pass-phrase is typed on the
//! terminal with echo off, or read as one line from standard input when there is no
//! terminal, and stored hex-encoded after the identity, one `identity<TAB>hex` line per
//! identity. Comments, blank lines and the order of the other lines are kept.
//!
//! Unlike `pfstore`, it refuses what owampd would then refuse to load (an identity that
//! is empty, longer than 80 bytes or holds whitespace; an empty pass-phrase; a file that
//! does not parse), and it replaces the file atomically, keeping its mode and owner.
//! Every result is parsed back with owampd's own parser before it is written.

use std::path::{Path, PathBuf};

use config::Pfs;
use config::pfs::MAX_IDENTITY_LEN;
use owping::getopt::{Opt, getopt};
use owping::passphrase::PassError;

use crate::replace::{ReplaceError, Target, replace_file};

/// The usage text (`-h`, and after a command-line error).
pub const USAGE: &str = "\
usage: owpfstore [-n | -d] -f pfsfile identity

   -f pfsfile     the pass-phrase file to edit (required)
   -n             create pfsfile first (it must not exist)
   -d             delete identity from pfsfile
   -h             print this message and exit
";

/// A new file is readable by its owner only: it holds secrets in the clear.
pub const NEW_FILE_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum PfstoreError {
    #[error("{0}")]
    Usage(String),
    #[error("identity {identity:?}: {reason}")]
    Identity {
        identity: String,
        reason: &'static str,
    },
    #[error("{}: {source} (-n creates it)", path.display())]
    Missing {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} (owampd would refuse this file: fix that line first)")]
    Invalid(config::PfsError),
    #[error("identity {identity:?} not found in {}", path.display())]
    NotFound { identity: String, path: PathBuf },
    #[error("{0}")]
    Pass(#[from] PassError),
    #[error("{0}")]
    Write(#[from] ReplaceError),
    #[error("{}: the edited text does not read back ({detail})", path.display())]
    ReadBack { path: PathBuf, detail: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Add the identity, or replace its pass-phrase.
    Set,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    pub help: bool,
    pub file: PathBuf,
    pub create: bool,
    pub action: Action,
    pub identity: String,
}

/// Parses the arguments (without argv\[0\]) with getopt(3) syntax, as pfstore does.
pub fn parse_args(args: &[String]) -> Result<Args, PfstoreError> {
    let usage = |m: String| PfstoreError::Usage(m);
    let parsed = getopt(args, "f:ndh", &[]).map_err(|e| usage(e.to_string()))?;
    let mut file = None;
    let (mut create, mut delete, mut help) = (false, false, false);
    for o in parsed.opts {
        match o {
            Opt::Short('f', v) => file = v.map(PathBuf::from),
            Opt::Short('n', _) => create = true,
            Opt::Short('d', _) => delete = true,
            _ => help = true,
        }
    }
    if help {
        return Ok(Args {
            help,
            file: PathBuf::new(),
            create,
            action: Action::Set,
            identity: String::new(),
        });
    }
    let file = file.ok_or_else(|| usage("-f pfsfile is required".into()))?;
    if create && delete {
        return Err(usage("-n and -d cannot be used together".into()));
    }
    let [identity] = parsed.operands.as_slice() else {
        return Err(usage(format!(
            "expected exactly one identity, got {}",
            parsed.operands.len()
        )));
    };
    check_identity(identity)?;
    Ok(Args {
        help,
        file,
        create,
        action: if delete { Action::Delete } else { Action::Set },
        identity: identity.clone(),
    })
}

/// The whitespace of C's isspace(3), which separates the fields of a `.pfs` line.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// An identity owampd can load and a client can send as its KeyID (RFC 4656 §3.1:
/// 80 octets).
pub fn check_identity(identity: &str) -> Result<(), PfstoreError> {
    let bad = |reason| {
        Err(PfstoreError::Identity {
            identity: identity.to_string(),
            reason,
        })
    };
    if identity.is_empty() {
        return bad("empty");
    }
    if identity.len() > MAX_IDENTITY_LEN {
        return bad("longer than 80 bytes");
    }
    if identity.contains(is_c_space) {
        return bad("contains whitespace");
    }
    if identity.starts_with('#') {
        return bad("starts with '#', which makes a comment line");
    }
    Ok(())
}

/// The identity of a data line (neither blank nor a comment).
fn line_identity(line: &str) -> Option<&str> {
    let t = line.trim_start_matches(is_c_space);
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    t.split(is_c_space).next()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `text` with `identity`'s line holding `passphrase`: in place of its old line, or
/// appended at the end.
pub fn set_entry(text: &str, identity: &str, passphrase: &[u8]) -> String {
    let entry = format!("{identity}\t{}", hex(passphrase));
    let mut lines: Vec<&str> = text.split_terminator('\n').collect();
    match lines
        .iter()
        .position(|l| line_identity(l) == Some(identity))
    {
        Some(i) => lines[i] = &entry,
        None => lines.push(&entry),
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// `text` without `identity`'s line; `None` when it has none.
pub fn delete_entry(text: &str, identity: &str) -> Option<String> {
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    let i = lines
        .iter()
        .position(|l| line_identity(l) == Some(identity))?;
    Some(
        lines
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, l)| format!("{l}\n"))
            .collect(),
    )
}

/// Carries out `args` (not `-h`); `read_passphrase` is asked for the pass-phrase of
/// the identity being set, after the file has been checked.
pub fn run(
    args: &Args,
    read_passphrase: impl FnOnce(&str) -> Result<Vec<u8>, PassError>,
) -> Result<(), PfstoreError> {
    let path = &args.file;
    let text = if args.create {
        if path.symlink_metadata().is_ok() {
            return Err(ReplaceError::Exists { path: path.clone() }.into());
        }
        String::new()
    } else {
        std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                PfstoreError::Missing {
                    path: path.clone(),
                    source,
                }
            } else {
                PfstoreError::Read {
                    path: path.clone(),
                    source,
                }
            }
        })?
    };
    Pfs::parse(&text, path).map_err(PfstoreError::Invalid)?;
    let (new_text, passphrase) = match args.action {
        Action::Delete => (
            delete_entry(&text, &args.identity).ok_or_else(|| PfstoreError::NotFound {
                identity: args.identity.clone(),
                path: path.clone(),
            })?,
            None,
        ),
        Action::Set => {
            let pass = read_passphrase(&args.identity)?;
            if pass.is_empty() {
                return Err(PassError::Empty(args.identity.clone()).into());
            }
            (set_entry(&text, &args.identity, &pass), Some(pass))
        }
    };
    check_read_back(path, &new_text, &args.identity, passphrase.as_deref())?;
    let target = if args.create {
        Target::New {
            mode: NEW_FILE_MODE,
        }
    } else {
        Target::Existing
    };
    replace_file(path, new_text.as_bytes(), target)?;
    Ok(())
}

/// What is about to be written must load in owampd and hold exactly the change.
fn check_read_back(
    path: &Path,
    text: &str,
    identity: &str,
    passphrase: Option<&[u8]>,
) -> Result<(), PfstoreError> {
    let pfs = Pfs::parse(text, path).map_err(|e| PfstoreError::ReadBack {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    if pfs.get(identity) != passphrase {
        return Err(PfstoreError::ReadBack {
            path: path.to_path_buf(),
            detail: format!("identity {identity:?} does not hold the new pass-phrase"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn args(v: &[&str]) -> Result<Args, PfstoreError> {
        parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn command_lines() {
        let a = args(&["-f", "x.pfs", "-n", "alice"]).unwrap();
        assert_eq!(
            (a.file.to_str(), a.create, a.action, a.identity.as_str()),
            (Some("x.pfs"), true, Action::Set, "alice")
        );
        let a = args(&["-dfx.pfs", "bob"]).unwrap();
        assert_eq!((a.create, a.action), (false, Action::Delete));
        assert!(args(&["-h"]).unwrap().help);
        for (bad, needle) in [
            (&["alice"][..], "-f pfsfile is required"),
            (&["-f", "x"][..], "exactly one identity"),
            (&["-f", "x", "a", "b"][..], "exactly one identity"),
            (&["-f", "x", "-n", "-d", "a"][..], "together"),
            (&["-x", "-f", "x", "a"][..], "invalid option"),
            (&["-f"][..], "requires an argument"),
            (&["-f", "x", ""][..], "empty"),
            (&["-f", "x", "a b"][..], "whitespace"),
            (&["-f", "x", "#a"][..], "comment"),
        ] {
            let e = args(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
        assert!(args(&["-f", "x", &"i".repeat(80)]).is_ok());
        let e = args(&["-f", "x", &"i".repeat(81)]).unwrap_err().to_string();
        assert!(e.contains("80 bytes"), "{e}");
    }

    #[test]
    fn set_replaces_in_place_and_keeps_comments() {
        let text = "# users\nalice\t6161\n\n# more\nbob 6262\n";
        assert_eq!(
            set_entry(text, "bob", b"pw"),
            "# users\nalice\t6161\n\n# more\nbob\t7077\n"
        );
        assert_eq!(
            set_entry(text, "carol", b"pw"),
            "# users\nalice\t6161\n\n# more\nbob 6262\ncarol\t7077\n"
        );
        // A last line without its newline gets one before the new entry.
        assert_eq!(set_entry("a 00", "b", b"\x01"), "a 00\nb\t01\n");
        assert_eq!(set_entry("", "b", b"\xff"), "b\tff\n");
        // A comment naming the identity is not its entry.
        assert_eq!(set_entry("#bob 00\n", "bob", b"\x01"), "#bob 00\nbob\t01\n");
        // Nor is a longer identity it is a prefix of.
        assert_eq!(
            set_entry("bobby 00\n", "bob", b"\x01"),
            "bobby 00\nbob\t01\n"
        );
    }

    #[test]
    fn delete_removes_one_line() {
        let text = "# users\nalice\t6161\nbob 6262\n";
        assert_eq!(
            delete_entry(text, "alice").as_deref(),
            Some("# users\nbob 6262\n")
        );
        assert_eq!(delete_entry(text, "carol"), None);
        assert_eq!(delete_entry(text, "users"), None);
    }

    proptest! {
        /// Whatever identities and pass-phrases are set, owampd's parser reads back
        /// exactly the last pass-phrase set for each.
        #[test]
        fn round_trips_through_the_server_parser(
            entries in proptest::collection::vec(
                ("[!-~&&[^#]][!-~]{0,79}", proptest::collection::vec(any::<u8>(), 1..64)),
                1..12,
            )
        ) {
            let mut text = String::from("# written by the test\n");
            let mut want = std::collections::BTreeMap::new();
            for (id, pass) in &entries {
                text = set_entry(&text, id, pass);
                want.insert(id.clone(), pass.clone());
            }
            let pfs = Pfs::parse(&text, Path::new("t.pfs")).unwrap();
            for (id, pass) in &want {
                prop_assert_eq!(pfs.get(id), Some(pass.as_slice()));
            }
            let (first, _) = &entries[0];
            let deleted = delete_entry(&text, first).unwrap();
            let pfs = Pfs::parse(&deleted, Path::new("t.pfs")).unwrap();
            prop_assert_eq!(pfs.get(first), None);
            prop_assert!(deleted.starts_with("# written by the test\n"));
        }
    }

    #[test]
    fn run_creates_edits_and_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owamp-server.pfs");
        let set = |id: &str, create: bool| Args {
            help: false,
            file: path.clone(),
            create,
            action: Action::Set,
            identity: id.into(),
        };
        let e = run(&set("alice", false), |_| Ok(b"x".to_vec())).unwrap_err();
        assert!(matches!(e, PfstoreError::Missing { .. }), "{e}");
        run(&set("alice", true), |id| {
            assert_eq!(id, "alice");
            Ok(b"secret".to_vec())
        })
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "alice\t736563726574\n"
        );
        let e = run(&set("bob", true), |_| Ok(b"x".to_vec())).unwrap_err();
        assert!(e.to_string().contains("exists already"), "{e}");
        run(&set("bob", false), |_| Ok(b"other".to_vec())).unwrap();
        let e = run(&set("carol", false), |_| Ok(Vec::new())).unwrap_err();
        assert!(matches!(e, PfstoreError::Pass(PassError::Empty(_))), "{e}");
        let mut del = set("alice", false);
        del.action = Action::Delete;
        run(&del, |_| panic!("no pass-phrase is asked to delete")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "bob\t6f74686572\n");
        let e = run(&del, |_| Ok(Vec::new())).unwrap_err();
        assert!(matches!(e, PfstoreError::NotFound { .. }), "{e}");

        // A file owampd would refuse is not edited, and the line is named.
        std::fs::write(&path, "bob 6f74\n  indented 00\n").unwrap();
        let e = run(&set("bob", false), |_| panic!("not asked")).unwrap_err();
        assert!(e.to_string().contains(":2: leading whitespace"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "bob 6f74\n  indented 00\n"
        );
    }
}
