//! Pass-phrases for authenticated and encrypted modes (protocol.md §1.4): from a `-k` pfs
//! file (hex, as the server's `.pfs`; protocol.md §7.10), else typed on the terminal with echo
//! off, else read as one line from standard input when there is no terminal.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PassError {
    #[error("Unable to open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Pfs(#[from] config::PfsError),
    #[error("Unable to find pass-phrase for id=\"{identity}\" from pffile=\"{path}\"")]
    NotFound { identity: String, path: String },
    #[error("reading the pass-phrase: {0}")]
    Read(io::Error),
    #[error("no pass-phrase typed for identity '{0}'")]
    Empty(String),
}

/// Looks `identity` up in the pfs file at `path`.
pub fn from_pffile(path: &Path, identity: &str) -> Result<Vec<u8>, PassError> {
    let text = std::fs::read_to_string(path).map_err(|e| PassError::Open {
        path: path.display().to_string(),
        source: e,
    })?;
    config::pfs_lookup_client(&text, path, identity)?.ok_or_else(|| PassError::NotFound {
        identity: identity.to_string(),
        path: path.display().to_string(),
    })
}

/// Reads one line (without its line end) from `r`: the typed pass-phrase bytes.
pub fn read_line(r: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    // Bounded: a pass-phrase is short; anything past 64 KiB is not one.
    BufReader::new(r.take(65_536)).read_until(b'\n', &mut line)?;
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(line)
}

/// Restores the terminal's settings when dropped, even on an early return.
struct EchoGuard<'a> {
    tty: &'a File,
    saved: nix::sys::termios::Termios,
}

impl Drop for EchoGuard<'_> {
    fn drop(&mut self) {
        let _ =
            nix::sys::termios::tcsetattr(self.tty, nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

/// Prompts `Enter passphrase for identity '<id>': ` on the controlling terminal with
/// echo off (the reference's `I2ReadPassPhrase`); without a terminal, reads a line from
/// standard input.
pub fn prompt(identity: &str) -> Result<Vec<u8>, PassError> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let pf = match OpenOptions::new().read(true).write(true).open("/dev/tty") {
        Ok(mut tty) => {
            let saved = tcgetattr(&tty).map_err(|e| PassError::Read(e.into()))?;
            let mut quiet = saved.clone();
            quiet.local_flags.remove(LocalFlags::ECHO);
            tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).map_err(|e| PassError::Read(e.into()))?;
            let guard = EchoGuard { tty: &tty, saved };
            let mut w = guard.tty;
            write!(w, "Enter passphrase for identity '{identity}': ")
                .and_then(|_| w.flush())
                .map_err(PassError::Read)?;
            let mut r = guard.tty;
            let line = read_line(&mut r).map_err(PassError::Read)?;
            drop(guard);
            let _ = writeln!(tty);
            line
        }
        Err(_) => read_line(&mut io::stdin().lock()).map_err(PassError::Read)?,
    };
    if pf.is_empty() {
        return Err(PassError::Empty(identity.to_string()));
    }
    Ok(pf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(read_line(&mut &b"secret\r\nrest"[..]).unwrap(), b"secret");
        assert_eq!(read_line(&mut &b"no newline"[..]).unwrap(), b"no newline");
        assert_eq!(read_line(&mut &b""[..]).unwrap(), b"");
    }

    #[test]
    fn pffile_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.pfs");
        std::fs::write(&p, "alice 736563726574\n").unwrap();
        assert_eq!(from_pffile(&p, "alice").unwrap(), b"secret");
        let e = from_pffile(&p, "bob").unwrap_err().to_string();
        assert!(
            e.starts_with("Unable to find pass-phrase for id=\"bob\""),
            "{e}"
        );
        assert!(from_pffile(&dir.path().join("none"), "alice").is_err());
    }
}
