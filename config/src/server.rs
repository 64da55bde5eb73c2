//! `owamp-server.conf` (older name `owampd.conf`), protocol.md §7.11.
//!
//! Format (I2util `I2ReadConfVar`): one `key [value] [#comment]` per logical line,
//! whitespace-separated, keywords case-insensitive. A value is a single token (no
//! quoting, so no spaces in paths). An unknown keyword is fatal.
//!
//! Files in the wild were written for the reference, so what it accepts is accepted and
//! read as it reads it, each surprise reported as a [`ConfWarning`] (`file:line: …`) for
//! the log:
//! - a flag keyword (`rootfolly`, `loglocation`, `verbose`) given a value is on, whatever
//!   the value: the reference ignores it, so `verbose off` and `rootfolly no` turn the
//!   flag *on*;
//! - numbers are read as C's `strtoul`/`strtod` read them (module `cnum`): the leading
//!   number counts and the rest is ignored (`controltimeout 30s` is 30, `dieby 0x10` is
//!   0), a negative whole number wraps around and one above 2^32−1 keeps its low 32 bits.
//!
//! Where this parser stays stricter than the reference (each refuses a file whose
//! meaning would otherwise be surprising or unusable):
//! - a keyword that needs a value and has none is refused (the reference stored "");
//! - `enddelay inf` is refused (the reference's senders would wait forever);
//! - `pbkdf2_count` is honoured (see [`ServerConf::pbkdf2_count`]).
//!
//! Like the reference, a later line for the same keyword overrides an earlier one, and
//! `maxcontrolsessions` is matched as a prefix: the reference compares only the first
//! 18 characters, so `maxcontrolsessions`, `MaxControlSessions` and e.g.
//! `maxcontrolsessions_total` are all the same key. `testtimeout` belongs to twampd and
//! is an unknown keyword here, with a message that says so.

use crate::cnum::{CNumError, strtod, strtoul_u32};
use crate::ports::{PortRange, PortRangeError};
use crate::srcnode::{SrcNode, SrcNodeError};
use crate::text::{ReadError, logical_lines, read_first, tokens};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// File names tried in the configuration directory, newest first.
pub const CONF_FILE_NAMES: [&str; 2] = ["owamp-server.conf", "owampd.conf"];

/// The reference's PBKDF2 count (`_OWP_DEFAULT_PBKDF2_COUNT`, protocol.md §1.1).
pub const DEFAULT_PBKDF2_COUNT: u32 = 2048;
/// RFC 4656 §3.1 requires the server's Count to be at least 1024.
pub const MIN_PBKDF2_COUNT: u32 = 1024;
/// A cap so a typo cannot make every login cost seconds of CPU on both ends: the most
/// our clients accept from a server (owping's `MAX_COUNT`), so a valid file never makes
/// the server unusable to them.
pub const MAX_PBKDF2_COUNT: u32 = 1 << 20;

/// Modes mask bits (RFC 4656 §3.1); the same values as `owamp::types::ModeSet`, kept
/// as a plain mask because the master (the only user of this crate at start) must not
/// link the protocol crate.
pub const MODE_OPEN: u32 = 1;
pub const MODE_AUTHENTICATED: u32 = 2;
pub const MODE_ENCRYPTED: u32 = 4;

/// Reporting threshold for log messages (the reference's `OWPReportLevelByName`).
/// Ordered from quietest to loudest, so a message of level `m` is reported under
/// threshold `t` when [`LogLevel::reports`] says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LogLevel {
    /// Report nothing.
    None,
    Fatal,
    Warning,
    Info,
    Debug,
    /// Report everything.
    All,
}

impl LogLevel {
    /// The exact words the reference accepts, compared case-insensitively.
    pub const NAMES: [(&'static str, LogLevel); 6] = [
        ("fatal", LogLevel::Fatal),
        ("warning", LogLevel::Warning),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
        ("all", LogLevel::All),
        ("none", LogLevel::None),
    ];

    pub fn parse(text: &str) -> Option<LogLevel> {
        Self::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(text))
            .map(|(_, l)| *l)
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, l)| *l == self)
            .map_or("none", |(n, _)| n)
    }

    /// Whether a message of level `message` is reported under this threshold.
    pub fn reports(self, message: LogLevel) -> bool {
        message != LogLevel::None && message <= self
    }

    /// The intended word for common near misses (the shipped sample says `WARN`).
    fn suggestion(text: &str) -> Option<&'static str> {
        let t = text.to_ascii_lowercase();
        match t.as_str() {
            "warn" | "warnings" => Some("warning"),
            "err" | "error" | "errors" | "crit" | "critical" => Some("fatal"),
            "notice" | "information" => Some("info"),
            _ => None,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A syslog facility, by the names of `<syslog.h>`'s `facilitynames` (which the
/// reference's `I2ErrLogSyslogFacility` searches), without the internal `mark`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Facility {
    Kern,
    User,
    Mail,
    Daemon,
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    AuthPriv,
    Ftp,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    const NAMES: [(&'static str, Facility); 21] = [
        ("kern", Facility::Kern),
        ("user", Facility::User),
        ("mail", Facility::Mail),
        ("daemon", Facility::Daemon),
        ("auth", Facility::Auth),
        ("security", Facility::Auth), // deprecated alias, as in <syslog.h>
        ("syslog", Facility::Syslog),
        ("lpr", Facility::Lpr),
        ("news", Facility::News),
        ("uucp", Facility::Uucp),
        ("cron", Facility::Cron),
        ("authpriv", Facility::AuthPriv),
        ("ftp", Facility::Ftp),
        ("local0", Facility::Local0),
        ("local1", Facility::Local1),
        ("local2", Facility::Local2),
        ("local3", Facility::Local3),
        ("local4", Facility::Local4),
        ("local5", Facility::Local5),
        ("local6", Facility::Local6),
        ("local7", Facility::Local7),
    ];

    /// Case-insensitive facility name (also used for `owampd -e`).
    pub fn parse(text: &str) -> Option<Facility> {
        Self::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(text))
            .map(|(_, f)| *f)
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("daemon", |(n, _)| n)
    }

    /// The `LOG_*` facility value (already shifted left by 3, as in `<syslog.h>`).
    pub fn code(self) -> i32 {
        let n = match self {
            Facility::Kern => 0,
            Facility::User => 1,
            Facility::Mail => 2,
            Facility::Daemon => 3,
            Facility::Auth => 4,
            Facility::Syslog => 5,
            Facility::Lpr => 6,
            Facility::News => 7,
            Facility::Uucp => 8,
            Facility::Cron => 9,
            Facility::AuthPriv => 10,
            Facility::Ftp => 11,
            Facility::Local0 => 16,
            Facility::Local1 => 17,
            Facility::Local2 => 18,
            Facility::Local3 => 19,
            Facility::Local4 => 20,
            Facility::Local5 => 21,
            Facility::Local6 => 22,
            Facility::Local7 => 23,
        };
        n << 3
    }
}

impl fmt::Display for Facility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `user` / `group` (`-U` / `-G`): a name, or `-N` for a numeric uid/gid (the reference's
/// convention). The name is looked up by the master, not here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunAs {
    Name(String),
    Id(u32),
}

/// Why a `user`/`group` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid user/group {text:?}: expected a name or -<number>")]
pub struct RunAsError {
    pub text: String,
}

impl RunAs {
    pub fn parse(text: &str) -> Result<RunAs, RunAsError> {
        let err = || RunAsError {
            text: text.to_string(),
        };
        if text.is_empty() || text.chars().any(crate::text::is_c_space) {
            return Err(err());
        }
        match text.strip_prefix('-') {
            Some(num) => {
                if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                num.parse::<u32>().map(RunAs::Id).map_err(|_| err())
            }
            None => Ok(RunAs::Name(text.to_string())),
        }
    }
}

/// Parses mode letters (`authmode` / `-a`): any of O, A, E, any order and case, at least
/// one. Returns the mask 1|2|4.
pub fn parse_authmode(text: &str) -> Result<u32, ConfProblem> {
    let mut mask = 0u32;
    for c in text.chars() {
        mask |= match c.to_ascii_uppercase() {
            'O' => MODE_OPEN,
            'A' => MODE_AUTHENTICATED,
            'E' => MODE_ENCRYPTED,
            _ => {
                return Err(ConfProblem::AuthMode {
                    text: text.to_string(),
                });
            }
        };
    }
    if mask == 0 {
        return Err(ConfProblem::AuthMode {
            text: text.to_string(),
        });
    }
    Ok(mask)
}

/// What [`ServerConf::load`] found: the settings, and the warnings for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConf {
    pub conf: ServerConf,
    /// The file read (`owamp-server.conf`, else the older `owampd.conf`), for messages
    /// about its values; `None` when neither exists.
    pub path: Option<PathBuf>,
    pub warnings: Vec<ConfWarning>,
}

/// Everything `owamp-server.conf` can set. Command-line options override these values
/// in the master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerConf {
    /// Modes offered: mask of [`MODE_OPEN`], [`MODE_AUTHENTICATED`], [`MODE_ENCRYPTED`].
    pub authmode: u32,
    /// `None`: the current directory at start (the reference's default).
    pub datadir: Option<PathBuf>,
    /// Where `owamp-server.pid` and `.info` go; `None`: the current directory.
    pub vardir: Option<PathBuf>,
    pub srcnode: SrcNode,
    pub testports: PortRange,
    pub user: Option<RunAs>,
    pub group: Option<RunAs>,
    /// Allow running as root without `user`.
    pub rootfolly: bool,
    pub facility: Facility,
    pub loglevel: LogLevel,
    /// Add file:line to log messages.
    pub loglocation: bool,
    pub verbose: bool,
    /// Hard disk limit = `disk × diskfudge` (protocol.md §7.4), 1.0..=10.0.
    pub diskfudge: f64,
    /// Seconds to wait for children after SIGTERM before SIGKILL (reference code: 5).
    pub dieby: u32,
    /// Idle seconds before a control connection is closed.
    pub controltimeout: u32,
    /// PBKDF2 Count sent in Server-Greeting, and with which control derives a user's key.
    /// DECISION: honoured, unlike the reference (where the key is read after the
    /// library has cached its default, so 2048 is always sent, protocol.md §1.1).
    /// Clients use whatever Count the greeting carries, so honouring it does not affect
    /// interop. Each login (and each attempt with an unknown user) costs control this
    /// many HMAC-SHA1 rounds on its single thread. `0` means the default 2048, as in the reference; other values must
    /// be within [`MIN_PBKDF2_COUNT`]..=[`MAX_PBKDF2_COUNT`].
    pub pbkdf2_count: u32,
    /// Seconds a sender waits after its last packet before Stop-Sessions, >= 0.
    pub enddelay: f64,
    /// Maximum concurrent control connections; 0 = unlimited.
    pub maxcontrolsessions: u32,
}

impl Default for ServerConf {
    fn default() -> Self {
        ServerConf {
            authmode: MODE_OPEN | MODE_AUTHENTICATED | MODE_ENCRYPTED,
            datadir: None,
            vardir: None,
            srcnode: SrcNode::default(),
            testports: PortRange::EPHEMERAL,
            user: None,
            group: None,
            rootfolly: false,
            facility: Facility::Daemon,
            loglevel: LogLevel::Info,
            loglocation: false,
            verbose: false,
            diskfudge: 1.0,
            dieby: 5,
            controltimeout: 1800,
            pbkdf2_count: DEFAULT_PBKDF2_COUNT,
            enddelay: 1.0,
            maxcontrolsessions: 0,
        }
    }
}

/// What is wrong with one line of `owamp-server.conf`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfProblem {
    #[error(
        "invalid use of '\\' (only a line continuation, '\\' at the end of a line, is allowed)"
    )]
    BadBackslash,
    #[error("unknown keyword {0:?}")]
    UnknownKeyword(String),
    #[error("unknown keyword {0:?} (testtimeout is a twampd setting; owampd has no test timeout)")]
    TwampOnly(String),
    #[error("keyword {0:?} needs a value")]
    MissingValue(String),
    #[error("unexpected {extra:?} after the value of {keyword:?} (only a #comment may follow)")]
    TrailingText { keyword: String, extra: String },
    #[error(
        "invalid authmode {text:?}: use one or more of A (authenticated), E (encrypted), O (open)"
    )]
    AuthMode { text: String },
    #[error("unknown syslog facility {0:?}")]
    Facility(String),
    #[error(
        "invalid loglevel {text:?}{}: use one of fatal, warning, info, debug, all, none",
        suggestion.map(|s| format!(" (did you mean \"{s}\"?)")).unwrap_or_default()
    )]
    LogLevel {
        text: String,
        suggestion: Option<&'static str>,
    },
    #[error("invalid {keyword} {text:?}: expected a whole number from 0 to 4294967295")]
    Number { keyword: String, text: String },
    #[error(
        "invalid {keyword} {text:?}: out of range (more than 20 digits, or beyond what a double holds)"
    )]
    OutOfRange { keyword: String, text: String },
    #[error("invalid diskfudge {text:?}: expected a number from 1.0 to 10.0")]
    DiskFudge { text: String },
    #[error("invalid enddelay {text:?}: expected a number of seconds >= 0")]
    EndDelay { text: String },
    #[error(
        "invalid pbkdf2_count {text:?}: expected 0 (default 2048) or a count from 1024 to 1048576"
    )]
    Pbkdf2Count { text: String },
    #[error("{0}")]
    SrcNode(#[from] SrcNodeError),
    #[error("{0}")]
    TestPorts(#[from] PortRangeError),
    #[error("{0}")]
    RunAs(#[from] RunAsError),
}

/// Why the configuration could not be loaded. Displays as
/// `owamp-server.conf:12: unknown keyword "foo"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfError {
    #[error("{}:{line}: {problem}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        problem: ConfProblem,
    },
    #[error("no {} or {} in {}", CONF_FILE_NAMES[0], CONF_FILE_NAMES[1], dir.display())]
    Missing { dir: PathBuf },
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// A value the reference reads differently from how it is written, or in part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfNote {
    #[error(
        "{keyword:?} is a flag and takes no value: {value:?} ignored, {keyword} is on (as the reference reads it)"
    )]
    FlagValueIgnored { keyword: String, value: String },
    #[error("{keyword} {text:?} read as {value}{}{}", wrapped_note(*.wrapped), ignored_note(.ignored))]
    NumberReadAs {
        keyword: String,
        text: String,
        value: String,
        /// The text after the number, which C's strtoul/strtod stop before.
        ignored: String,
        /// A negative number wrapped around, or one above 2^32−1 cut to 32 bits.
        wrapped: bool,
    },
}

fn wrapped_note(wrapped: bool) -> &'static str {
    if wrapped {
        " (wrapped around to 32 bits, as the reference stores it)"
    } else {
        ""
    }
}

fn ignored_note(ignored: &str) -> String {
    if ignored.is_empty() {
        String::new()
    } else {
        format!(
            ": {ignored:?} ignored (the number is read as C's strtoul/strtod read it, as the reference does)"
        )
    }
}

/// A line the reference accepts and that we read the same way, with what was ignored or
/// changed. Displays as `owamp-server.conf:12: …`, for one warning in the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {note}", path.display())]
pub struct ConfWarning {
    pub path: PathBuf,
    pub line: usize,
    pub note: ConfNote,
}

/// A number of `owamp-server.conf` as the reference reads it (`strtoul` into a
/// `uint32_t`); a note when the text says something else.
fn number(keyword: &str, text: &str, notes: &mut Vec<ConfNote>) -> Result<u32, ConfProblem> {
    let n = strtoul_u32(text).map_err(|e| match e {
        CNumError::NoNumber => ConfProblem::Number {
            keyword: keyword.to_string(),
            text: text.to_string(),
        },
        CNumError::OutOfRange => ConfProblem::OutOfRange {
            keyword: keyword.to_string(),
            text: text.to_string(),
        },
    })?;
    note_number(keyword, text, n.value.to_string(), n.used, n.wrapped, notes);
    Ok(n.value)
}

fn note_number(
    keyword: &str,
    text: &str,
    value: String,
    used: usize,
    wrapped: bool,
    notes: &mut Vec<ConfNote>,
) {
    let ignored = text.get(used..).unwrap_or("");
    if wrapped || !ignored.is_empty() {
        notes.push(ConfNote::NumberReadAs {
            keyword: keyword.to_string(),
            text: text.to_string(),
            value,
            ignored: ignored.to_string(),
            wrapped,
        });
    }
}

/// A float as the reference reads it (`strtod`); `None` when it has no number at all or
/// is out of a double's range (the reference refuses both). Range checks are the
/// caller's.
fn float(keyword: &str, text: &str, notes: &mut Vec<ConfNote>) -> Option<f64> {
    let n = strtod(text).ok()?;
    note_number(keyword, text, n.value.to_string(), n.used, false, notes);
    Some(n.value)
}

/// Keywords taking no value.
const FLAGS: [&str; 3] = ["rootfolly", "loglocation", "verbose"];

impl ServerConf {
    /// Parses the text of a configuration file; `path` is used only in messages.
    pub fn parse(text: &str, path: &Path) -> Result<ServerConf, ConfError> {
        Self::parse_with_warnings(text, path).map(|(c, _)| c)
    }

    /// [`ServerConf::parse`], with a warning for each line read differently from how it
    /// is written (see the module's documentation), in file order.
    pub fn parse_with_warnings(
        text: &str,
        path: &Path,
    ) -> Result<(ServerConf, Vec<ConfWarning>), ConfError> {
        let mut conf = ServerConf::default();
        let mut warnings = Vec::new();
        let lines = logical_lines(text).map_err(|b| ConfError::Line {
            path: path.to_path_buf(),
            line: b.line,
            problem: ConfProblem::BadBackslash,
        })?;
        for l in lines {
            let mut notes = Vec::new();
            conf.apply_line(&l.text, &mut notes)
                .map_err(|problem| ConfError::Line {
                    path: path.to_path_buf(),
                    line: l.line,
                    problem,
                })?;
            warnings.extend(notes.into_iter().map(|note| ConfWarning {
                path: path.to_path_buf(),
                line: l.line,
                note,
            }));
        }
        Ok((conf, warnings))
    }

    /// Loads `owamp-server.conf`, else `owampd.conf`, from `confdir`. When neither exists
    /// the defaults are returned, unless `required` (the reference requires the file
    /// when `-c` was given).
    pub fn load(confdir: &Path, required: bool) -> Result<LoadedConf, ConfError> {
        match read_first(confdir, &CONF_FILE_NAMES)? {
            Some((path, text)) => {
                let (conf, warnings) = ServerConf::parse_with_warnings(&text, &path)?;
                Ok(LoadedConf {
                    conf,
                    path: Some(path),
                    warnings,
                })
            }
            None if required => Err(ConfError::Missing {
                dir: confdir.to_path_buf(),
            }),
            None => Ok(LoadedConf {
                conf: ServerConf::default(),
                path: None,
                warnings: Vec::new(),
            }),
        }
    }

    fn apply_line(&mut self, line: &str, notes: &mut Vec<ConfNote>) -> Result<(), ConfProblem> {
        let mut toks = tokens(line);
        let Some(key) = toks.next() else {
            return Ok(());
        };
        let value = match toks.next() {
            Some(v) if v.starts_with('#') => None,
            Some(v) => {
                if let Some(extra) = toks.next().filter(|t| !t.starts_with('#')) {
                    return Err(ConfProblem::TrailingText {
                        keyword: key.to_string(),
                        extra: extra.to_string(),
                    });
                }
                Some(v)
            }
            None => None,
        };
        let lower = key.to_ascii_lowercase();

        if FLAGS.contains(&lower.as_str()) {
            if let Some(v) = value {
                notes.push(ConfNote::FlagValueIgnored {
                    keyword: lower.clone(),
                    value: v.to_string(),
                });
            }
            match lower.as_str() {
                "rootfolly" => self.rootfolly = true,
                "loglocation" => self.loglocation = true,
                _ => self.verbose = true,
            }
            return Ok(());
        }

        // Classify the keyword before looking at the value, so that an unknown keyword
        // is reported as such even without a value.
        let canonical: &str = match lower.as_str() {
            "authmode" | "datadir" | "vardir" | "srcnode" | "testports" | "user" | "group"
            | "facility" | "loglevel" | "diskfudge" | "dieby" | "controltimeout"
            | "pbkdf2_count" | "enddelay" => lower.as_str(),
            // The reference compares only strlen("maxcontrolsessions") characters.
            k if k.starts_with("maxcontrolsessions") => "maxcontrolsessions",
            "testtimeout" => return Err(ConfProblem::TwampOnly(key.to_string())),
            _ => return Err(ConfProblem::UnknownKeyword(key.to_string())),
        };
        let Some(v) = value else {
            return Err(ConfProblem::MissingValue(key.to_string()));
        };

        match canonical {
            "authmode" => self.authmode = parse_authmode(v)?,
            "datadir" => self.datadir = Some(PathBuf::from(v)),
            "vardir" => self.vardir = Some(PathBuf::from(v)),
            "srcnode" => self.srcnode = SrcNode::parse(v)?,
            "testports" => self.testports = PortRange::parse(v)?,
            "user" => self.user = Some(RunAs::parse(v)?),
            "group" => self.group = Some(RunAs::parse(v)?),
            "facility" => {
                self.facility =
                    Facility::parse(v).ok_or_else(|| ConfProblem::Facility(v.to_string()))?
            }
            "loglevel" => {
                self.loglevel = LogLevel::parse(v).ok_or_else(|| ConfProblem::LogLevel {
                    text: v.to_string(),
                    suggestion: LogLevel::suggestion(v),
                })?
            }
            "diskfudge" => {
                self.diskfudge = float("diskfudge", v, notes)
                    .filter(|d| (1.0..=10.0).contains(d))
                    .ok_or_else(|| ConfProblem::DiskFudge {
                        text: v.to_string(),
                    })?
            }
            "enddelay" => {
                // Finite: the reference takes "inf", and its senders then never stop.
                self.enddelay = float("enddelay", v, notes)
                    .filter(|d| *d >= 0.0 && d.is_finite())
                    .ok_or_else(|| ConfProblem::EndDelay {
                        text: v.to_string(),
                    })?
            }
            "dieby" => self.dieby = number("dieby", v, notes)?,
            "controltimeout" => self.controltimeout = number("controltimeout", v, notes)?,
            "maxcontrolsessions" => {
                self.maxcontrolsessions = number("maxcontrolsessions", v, notes)?
            }
            _ => {
                // pbkdf2_count
                let bad = || ConfProblem::Pbkdf2Count {
                    text: v.to_string(),
                };
                let n = number("pbkdf2_count", v, notes).map_err(|_| bad())?;
                self.pbkdf2_count = match n {
                    0 => DEFAULT_PBKDF2_COUNT,
                    n if (MIN_PBKDF2_COUNT..=MAX_PBKDF2_COUNT).contains(&n) => n,
                    _ => return Err(bad()),
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerConf, ConfError> {
        ServerConf::parse(text, Path::new("owamp-server.conf"))
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("{text:?} accepted: {c:?}"),
        }
    }

    #[test]
    fn empty_file_gives_reference_defaults() {
        let c = parse("# nothing\n\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c, ServerConf::default());
        assert_eq!(c.authmode, 7);
        assert_eq!(c.dieby, 5);
        assert_eq!(c.controltimeout, 1800);
        assert_eq!(c.pbkdf2_count, 2048);
        assert_eq!(c.enddelay, 1.0);
        assert_eq!(c.diskfudge, 1.0);
        assert_eq!(c.loglevel, LogLevel::Info);
        assert_eq!(c.facility, Facility::Daemon);
        assert_eq!(
            c.srcnode,
            SrcNode {
                host: None,
                port: 861
            }
        );
        assert!(c.testports.is_ephemeral());
    }

    #[test]
    fn every_key_is_parsed() {
        let text = "\
AuthMode AE   # no open mode
datadir /var/lib/owamp
vardir /var/run
srcnode [::1]:8861
testports 8760-9960
user owamp
group -108
rootfolly
facility LOCAL5
loglevel Debug
loglocation
verbose # loud
diskfudge 2.5
dieby 30
controltimeout 900
pbkdf2_count 4096
enddelay 0
maxcontrolsessions 50
";
        let c = parse(text).unwrap_or_else(|e| panic!("{e}"));
        let want = ServerConf {
            authmode: 6,
            datadir: Some(PathBuf::from("/var/lib/owamp")),
            vardir: Some(PathBuf::from("/var/run")),
            srcnode: SrcNode {
                host: Some("::1".into()),
                port: 8861,
            },
            testports: PortRange {
                low: 8760,
                high: 9960,
            },
            user: Some(RunAs::Name("owamp".into())),
            group: Some(RunAs::Id(108)),
            rootfolly: true,
            facility: Facility::Local5,
            loglevel: LogLevel::Debug,
            loglocation: true,
            verbose: true,
            diskfudge: 2.5,
            dieby: 30,
            controltimeout: 900,
            pbkdf2_count: 4096,
            enddelay: 0.0,
            maxcontrolsessions: 50,
        };
        assert_eq!(c, want);
    }

    #[test]
    fn shipped_sample_with_warn_is_rejected_like_the_reference() {
        // The perfSONAR sample conf's settings, including its "loglevel WARN".
        let text = "\
# owamp-server.conf sample
user\t\towamp
group\t\towamp
verbose
facility\tlocal5
loglevel WARN
loglocation
#vardir\t\t/var/run
datadir /var/lib/owamp
testports 8760-9960
diskfudge\t3.0
dieby 5
# pbkdf_count 2048
";
        assert_eq!(
            err(text),
            "owamp-server.conf:6: invalid loglevel \"WARN\" (did you mean \"warning\"?): \
             use one of fatal, warning, info, debug, all, none"
        );
        let fixed = text.replace("WARN", "warning");
        let c = parse(&fixed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.loglevel, LogLevel::Warning);
        assert_eq!(c.diskfudge, 3.0);
        assert_eq!(c.user, Some(RunAs::Name("owamp".into())));
        assert_eq!(c.facility, Facility::Local5);
        assert!(c.verbose && c.loglocation && !c.rootfolly);
        assert_eq!(c.vardir, None);
        assert_eq!(c.dieby, 5);
    }

    #[test]
    fn maxcontrolsessions_is_prefix_matched_like_the_reference() {
        for key in [
            "maxcontrolsessions",
            "MAXCONTROLSESSIONS",
            "maxcontrolsessionsX",
        ] {
            let c = parse(&format!("{key} 7")).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.maxcontrolsessions, 7, "{key}");
        }
        assert_eq!(
            err("maxcontrolsession\t7"),
            "owamp-server.conf:1: unknown keyword \"maxcontrolsession\""
        );
    }

    #[test]
    fn later_lines_override_earlier_ones() {
        let c = parse("dieby 1\ndieby 2\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.dieby, 2);
    }

    #[test]
    fn continuation_lines_are_joined() {
        let c = parse("datadir \\\n/srv/owamp\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.datadir, Some(PathBuf::from("/srv/owamp")));
    }

    #[test]
    fn pbkdf2_count_zero_means_default() {
        let c = parse("pbkdf2_count 0").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.pbkdf2_count, 2048);
    }

    #[test]
    fn exact_error_messages() {
        let cases = [
            (
                "\n\nfoo bar\n",
                "owamp-server.conf:3: unknown keyword \"foo\"",
            ),
            ("foo\n", "owamp-server.conf:1: unknown keyword \"foo\""),
            (
                "testtimeout 10",
                "owamp-server.conf:1: unknown keyword \"testtimeout\" (testtimeout is a twampd setting; owampd has no test timeout)",
            ),
            (
                "datadir",
                "owamp-server.conf:1: keyword \"datadir\" needs a value",
            ),
            (
                "datadir # comment",
                "owamp-server.conf:1: keyword \"datadir\" needs a value",
            ),
            (
                "datadir /a /b",
                "owamp-server.conf:1: unexpected \"/b\" after the value of \"datadir\" (only a #comment may follow)",
            ),
            (
                "datadir /a\\b",
                "owamp-server.conf:1: invalid use of '\\' (only a line continuation, '\\' at the end of a line, is allowed)",
            ),
            (
                "authmode OX",
                "owamp-server.conf:1: invalid authmode \"OX\": use one or more of A (authenticated), E (encrypted), O (open)",
            ),
            (
                "facility local8",
                "owamp-server.conf:1: unknown syslog facility \"local8\"",
            ),
            (
                "facility mark",
                "owamp-server.conf:1: unknown syslog facility \"mark\"",
            ),
            (
                "loglevel verbose",
                "owamp-server.conf:1: invalid loglevel \"verbose\": use one of fatal, warning, info, debug, all, none",
            ),
            (
                "dieby x30",
                "owamp-server.conf:1: invalid dieby \"x30\": expected a whole number from 0 to 4294967295",
            ),
            (
                "controltimeout 18446744073709551616",
                "owamp-server.conf:1: invalid controltimeout \"18446744073709551616\": out of range (more than 20 digits, or beyond what a double holds)",
            ),
            (
                "maxcontrolsessions -",
                "owamp-server.conf:1: invalid maxcontrolsessions \"-\": expected a whole number from 0 to 4294967295",
            ),
            (
                "diskfudge x2",
                "owamp-server.conf:1: invalid diskfudge \"x2\": expected a number from 1.0 to 10.0",
            ),
            (
                "enddelay 1e400",
                "owamp-server.conf:1: invalid enddelay \"1e400\": expected a number of seconds >= 0",
            ),
            (
                "verbose on off",
                "owamp-server.conf:1: unexpected \"off\" after the value of \"verbose\" (only a #comment may follow)",
            ),
            (
                "diskfudge 0.5",
                "owamp-server.conf:1: invalid diskfudge \"0.5\": expected a number from 1.0 to 10.0",
            ),
            (
                "diskfudge NaN",
                "owamp-server.conf:1: invalid diskfudge \"NaN\": expected a number from 1.0 to 10.0",
            ),
            (
                "enddelay -0.1",
                "owamp-server.conf:1: invalid enddelay \"-0.1\": expected a number of seconds >= 0",
            ),
            (
                "enddelay inf",
                "owamp-server.conf:1: invalid enddelay \"inf\": expected a number of seconds >= 0",
            ),
            (
                "pbkdf2_count 1000",
                "owamp-server.conf:1: invalid pbkdf2_count \"1000\": expected 0 (default 2048) or a count from 1024 to 1048576",
            ),
            (
                "pbkdf2_count 1048577",
                "owamp-server.conf:1: invalid pbkdf2_count \"1048577\": expected 0 (default 2048) or a count from 1024 to 1048576",
            ),
            (
                "srcnode host:0",
                "owamp-server.conf:1: invalid port \"0\" in \"host:0\": expected a number from 1 to 65535",
            ),
            (
                "testports 9-8",
                "owamp-server.conf:1: invalid port range \"9-8\": low port 9 is above high port 8",
            ),
            (
                "user -abc",
                "owamp-server.conf:1: invalid user/group \"-abc\": expected a name or -<number>",
            ),
        ];
        for (text, msg) in cases {
            assert_eq!(err(text), msg, "{text:?}");
        }
    }

    /// Lines the reference accepts (each was run through its owampd) are read as it
    /// reads them, with one warning naming the file, the line and what was ignored.
    #[test]
    fn reference_forms_are_read_as_the_reference_reads_them() {
        let text = "\
# comment
verbose off
loglocation on
rootfolly no
dieby 0x10
controltimeout 30s
maxcontrolsessions -1
pbkdf2_count 4096x
diskfudge 2.5x
enddelay 0x1p1
dieby +7
";
        let (c, warnings) = ServerConf::parse_with_warnings(text, Path::new("/etc/o.conf"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(c.verbose && c.loglocation && c.rootfolly);
        // dieby: the later, plain "+7" wins (and is read without a warning).
        assert_eq!(c.dieby, 7);
        assert_eq!(c.controltimeout, 30);
        assert_eq!(c.maxcontrolsessions, u32::MAX);
        assert_eq!(c.pbkdf2_count, 4096);
        assert_eq!(c.diskfudge, 2.5);
        assert_eq!(c.enddelay, 2.0);
        let lines: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        let ign = ": {} ignored (the number is read as C's strtoul/strtod read it, as the reference does)";
        let want = [
            "/etc/o.conf:2: \"verbose\" is a flag and takes no value: \"off\" ignored, verbose is on (as the reference reads it)".to_string(),
            "/etc/o.conf:3: \"loglocation\" is a flag and takes no value: \"on\" ignored, loglocation is on (as the reference reads it)".to_string(),
            "/etc/o.conf:4: \"rootfolly\" is a flag and takes no value: \"no\" ignored, rootfolly is on (as the reference reads it)".to_string(),
            format!("/etc/o.conf:5: dieby \"0x10\" read as 0{}", ign.replace("{}", "\"x10\"")),
            format!("/etc/o.conf:6: controltimeout \"30s\" read as 30{}", ign.replace("{}", "\"s\"")),
            "/etc/o.conf:7: maxcontrolsessions \"-1\" read as 4294967295 (wrapped around to 32 bits, as the reference stores it)".to_string(),
            format!("/etc/o.conf:8: pbkdf2_count \"4096x\" read as 4096{}", ign.replace("{}", "\"x\"")),
            format!("/etc/o.conf:9: diskfudge \"2.5x\" read as 2.5{}", ign.replace("{}", "\"x\"")),
        ];
        assert_eq!(lines, want);
        // A plain value, or a flag alone, says nothing.
        let (_, none) = ServerConf::parse_with_warnings("verbose\ndieby 5 # x\n", Path::new("c"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(none.is_empty(), "{none:?}");
        // Only the low 32 bits of a larger number are kept, as in the reference.
        let c = parse("controltimeout 4294967301").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.controltimeout, 5);
    }

    #[test]
    fn load_tries_new_then_old_name() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ServerConf::load(dir.path(), false).map(|l| l.conf),
            Ok(ServerConf::default())
        );
        assert_eq!(
            ServerConf::load(dir.path(), true).map_err(|e| e.to_string()),
            Err(format!(
                "no owamp-server.conf or owampd.conf in {}",
                dir.path().display()
            ))
        );
        std::fs::write(dir.path().join("owampd.conf"), "dieby 9\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ServerConf::load(dir.path(), true).map(|l| (l.conf.dieby, l.path)),
            Ok((9, Some(dir.path().join("owampd.conf"))))
        );
        std::fs::write(dir.path().join("owamp-server.conf"), "dieby 3\nbad\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("owamp-server.conf");
        assert_eq!(
            ServerConf::load(dir.path(), true).map_err(|e| e.to_string()),
            Err(format!("{}:2: unknown keyword \"bad\"", path.display()))
        );
    }

    #[test]
    fn loglevel_words_and_thresholds() {
        assert_eq!(LogLevel::parse("WARNING"), Some(LogLevel::Warning));
        assert_eq!(LogLevel::parse("warn"), None);
        assert_eq!(LogLevel::parse("Info").map(LogLevel::as_str), Some("info"));
        assert!(LogLevel::Info.reports(LogLevel::Warning));
        assert!(!LogLevel::Info.reports(LogLevel::Debug));
        assert!(LogLevel::All.reports(LogLevel::Debug));
        assert!(!LogLevel::None.reports(LogLevel::Fatal));
        assert!(!LogLevel::All.reports(LogLevel::None));
    }

    #[test]
    fn facility_codes_match_syslog_h() {
        assert_eq!(Facility::Daemon.code(), 3 << 3);
        assert_eq!(Facility::Local7.code(), 23 << 3);
        assert_eq!(Facility::parse("security"), Some(Facility::Auth));
        assert_eq!(
            Facility::parse("AuthPriv").map(Facility::code),
            Some(10 << 3)
        );
    }

    #[test]
    fn serde_round_trip_through_bincode() {
        let c = parse("authmode E\nsrcnode :9000\nuser -5\nenddelay 2.5\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let cfg = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&c, cfg).unwrap_or_else(|e| panic!("{e}"));
        let (back, _): (ServerConf, usize) =
            bincode::serde::decode_from_slice(&bytes, cfg).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, c);
    }
}
