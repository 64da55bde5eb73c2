//! Line handling shared by `owamp-server.conf` and `.limits` (protocol.md §7.9, §7.11), and
//! file reading shared by all three formats.
//!
//! The reference reads both files with I2util's `I2GetConfLine`: leading whitespace and
//! blank lines are dropped, a line whose first non-blank character is `#` is a comment,
//! and a backslash immediately before the newline joins the next physical line. A
//! backslash anywhere else is an error there, and here too, so that a file the
//! reference refuses is not silently read differently.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// C `isspace` in the "C" locale: space, \t, \n, \v, \f, \r. The reference splits tokens
/// with it, so a CRLF file or a vertical tab behaves the same here.
pub(crate) fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0b}' | '\u{0c}' | '\r')
}

/// Splits on runs of C whitespace, dropping empty pieces (like `strtok`).
pub(crate) fn tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_c_space).filter(|t| !t.is_empty())
}

/// One logical line: continuations joined, comment and blank lines removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogicalLine {
    /// 1-based number of the physical line on which this logical line starts.
    pub line: usize,
    pub text: String,
}

/// The only way splitting into logical lines can fail: a backslash not followed by a
/// newline. Carries the physical line number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadBackslash {
    pub line: usize,
}

/// Splits `text` into logical lines the way `I2GetConfLine` does.
pub(crate) fn logical_lines(text: &str) -> Result<Vec<LogicalLine>, BadBackslash> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut phys = 1usize;
    let mut cur = String::new();
    let mut start = 1usize;
    while let Some(c) = chars.next() {
        if c == '\n' {
            phys += 1;
            if !cur.is_empty() {
                out.push(LogicalLine {
                    line: start,
                    text: std::mem::take(&mut cur),
                });
            }
            continue;
        }
        if cur.is_empty() && c == '#' {
            // A comment line: swallow to the end of the physical line.
            for c2 in chars.by_ref() {
                if c2 == '\n' {
                    phys += 1;
                    break;
                }
            }
            continue;
        }
        if cur.is_empty() && is_c_space(c) {
            continue;
        }
        if c == '\\' {
            // Continuation: backslash-newline (a CR before the newline is tolerated so
            // that CRLF files work; the reference would refuse them).
            if chars.peek() == Some(&'\r') {
                chars.next();
            }
            if chars.next() == Some('\n') {
                phys += 1;
                continue;
            }
            return Err(BadBackslash { line: phys });
        }
        if cur.is_empty() {
            start = phys;
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(LogicalLine {
            line: start,
            text: cur,
        });
    }
    Ok(out)
}

/// Why a configuration file could not be read (not why it could not be parsed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("{}: not valid UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{}: file too large (more than {max} bytes)", path.display())]
    TooLarge { path: PathBuf, max: u64 },
}

/// Configuration files are small; refuse anything absurd rather than read it whole.
pub(crate) const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Reads the first of `names` that exists in `dir`. `Ok(None)` when none exists; any
/// other I/O error (permissions, a directory in the way) is reported.
pub(crate) fn read_first(
    dir: &Path,
    names: &[&str],
) -> Result<Option<(PathBuf, String)>, ReadError> {
    for name in names {
        let path = dir.join(name);
        match fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(ReadError::Io {
                    path,
                    message: e.to_string(),
                });
            }
            Ok(m) if m.len() > MAX_FILE_BYTES => {
                return Err(ReadError::TooLarge {
                    path,
                    max: MAX_FILE_BYTES,
                });
            }
            Ok(_) => {}
        }
        let bytes = fs::read(&path).map_err(|e| ReadError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let text =
            String::from_utf8(bytes).map_err(|_| ReadError::NotUtf8 { path: path.clone() })?;
        return Ok(Some((path, text)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(t: &str) -> Vec<(usize, String)> {
        logical_lines(t)
            .unwrap_or_default()
            .into_iter()
            .map(|l| (l.line, l.text))
            .collect()
    }

    #[test]
    fn comments_blanks_and_leading_space_are_dropped() {
        let t = "# c\n\n   key value # tail\n\t#indented comment\nother\n";
        assert_eq!(
            lines(t),
            vec![
                (3, "key value # tail".to_string()),
                (5, "other".to_string())
            ]
        );
    }

    #[test]
    fn continuation_joins_lines_and_keeps_start_line() {
        let t = "\nlimit a with \\\n  disk=1,\\\r\nbandwidth=2\nx";
        assert_eq!(
            lines(t),
            vec![
                (2, "limit a with   disk=1,bandwidth=2".to_string()),
                (5, "x".to_string())
            ]
        );
    }

    #[test]
    fn stray_backslash_is_an_error_with_its_line() {
        assert_eq!(logical_lines("a\nb\\c\n"), Err(BadBackslash { line: 2 }));
        assert_eq!(logical_lines("a\\"), Err(BadBackslash { line: 1 }));
    }

    #[test]
    fn backslash_inside_comment_is_fine() {
        assert_eq!(lines("# a\\b\nk"), vec![(2, "k".to_string())]);
    }

    #[test]
    fn read_first_prefers_the_new_name_and_reports_none() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        assert_eq!(read_first(dir.path(), &["a", "b"]), Ok(None));
        std::fs::write(dir.path().join("b"), "old").unwrap_or_else(|e| panic!("{e}"));
        let got = read_first(dir.path(), &["a", "b"]);
        assert_eq!(got, Ok(Some((dir.path().join("b"), "old".to_string()))));
        std::fs::write(dir.path().join("a"), "new").unwrap_or_else(|e| panic!("{e}"));
        let got = read_first(dir.path(), &["a", "b"]);
        assert_eq!(got, Ok(Some((dir.path().join("a"), "new".to_string()))));
        std::fs::write(dir.path().join("a"), [0xffu8, 0xfe]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            read_first(dir.path(), &["a"]),
            Err(ReadError::NotUtf8 {
                path: dir.path().join("a")
            })
        );
    }
}
