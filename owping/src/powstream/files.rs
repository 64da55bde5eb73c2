//! powstream's files (powstream(1) "FILES"): `<start>_<end>.owp` and `.sum` in the `-d`
//! directory, the two timestamps as 20-digit NTP Num64 integers; each written under
//! `<name>.i` and renamed into place when complete, so a reader that sees a name never
//! sees a partial file; and the `.powlock` that keeps two powstreams out of one
//! directory (the reference's: an `fcntl` write lock and our pid, 4 octets).

use owamp::Timestamp;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The lock file's name in the output directory.
pub const LOCK_NAME: &str = ".powlock";
/// The suffix of a file being written.
pub const INCOMPLETE_SUFFIX: &str = ".i";

#[derive(Debug, Error)]
pub enum FileError {
    #[error("cannot open the lock file {path}: {source}")]
    LockOpen {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("another powstream writes to this directory: {path} is locked{holder}")]
    Locked { path: String, holder: String },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: String,
        #[source]
        source: nix::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl FileError {
    /// A shortage that may pass (disk or quota full, out of descriptors or memory): the
    /// reference skips that file and goes on; anything else (permissions, a directory
    /// gone) means nothing more can be saved.
    pub fn is_temporary(&self) -> bool {
        let FileError::Write { source, .. } = self else {
            return false;
        };
        matches!(
            source.raw_os_error(),
            Some(libc::ENOSPC | libc::EDQUOT | libc::EMFILE | libc::ENFILE | libc::ENOMEM)
        )
    }
}

/// `<start>_<end><ext>` with both times as `%020llu` (OWP_TSTAMPFMT).
pub fn file_name(start: Timestamp, end: Timestamp, ext: &str) -> String {
    format!("{:020}_{:020}{ext}", start.0, end.0)
}

/// The output directory, `-d` or the working directory.
#[derive(Clone, Debug)]
pub struct OutputDir {
    dir: Option<PathBuf>,
}

impl OutputDir {
    pub fn new(dir: Option<PathBuf>) -> OutputDir {
        OutputDir { dir }
    }

    /// The path of `name`, spelt as the reference prints it: `-d` value, `/`, name.
    pub fn path(&self, name: &str) -> PathBuf {
        match &self.dir {
            Some(d) => {
                let mut s = d.clone().into_os_string();
                s.push("/");
                s.push(name);
                PathBuf::from(s)
            }
            None => PathBuf::from(name),
        }
    }

    /// Takes the directory's `.powlock`; held until the returned file is dropped.
    pub fn lock(&self) -> Result<File, FileError> {
        let path = self.path(LOCK_NAME);
        let shown = path.display().to_string();
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(|e| FileError::LockOpen {
                path: shown.clone(),
                source: e,
            })?;
        // A POSIX record lock, as the reference takes, so ours and its exclude each
        // other in a shared directory (flock would not).
        let whole = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        match nix::fcntl::fcntl(f.as_fd(), nix::fcntl::FcntlArg::F_SETLK(&whole)) {
            Ok(_) => {}
            Err(nix::Error::EAGAIN | nix::Error::EACCES) => {
                let mut pid = [0u8; 4];
                let holder = match std::io::Read::read_exact(&mut f, &mut pid) {
                    Ok(()) => format!(" (possibly by pid {})", i32::from_ne_bytes(pid)),
                    Err(_) => String::new(),
                };
                return Err(FileError::Locked {
                    path: shown,
                    holder,
                });
            }
            Err(e) => {
                return Err(FileError::Lock {
                    path: shown,
                    source: e,
                });
            }
        }
        let pid = std::process::id() as i32;
        std::os::unix::fs::FileExt::write_all_at(&f, &pid.to_ne_bytes(), 0).map_err(|e| {
            FileError::Write {
                path: shown,
                source: e,
            }
        })?;
        Ok(f)
    }

    /// Writes `contents` to `name` atomically: into `name.i`, then renamed. Returns the
    /// final path. A failed write leaves neither name behind.
    pub fn write_atomically(&self, name: &str, contents: &[u8]) -> Result<PathBuf, FileError> {
        let path = self.path(name);
        let temp = self.path(&format!("{name}{INCOMPLETE_SUFFIX}"));
        let werr = |p: &Path, e| FileError::Write {
            path: p.display().to_string(),
            source: e,
        };
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&temp)?;
            f.write_all(contents)?;
            f.flush()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&temp);
            return Err(werr(&temp, e));
        }
        if let Err(e) = std::fs::rename(&temp, &path) {
            let _ = std::fs::remove_file(&temp);
            return Err(werr(&path, e));
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use owamp::Num64;

    #[test]
    fn names_and_paths() {
        assert_eq!(
            file_name(Num64(17_202_903_136_407_947_428), Num64(5), ".owp"),
            "17202903136407947428_00000000000000000005.owp"
        );
        let d = OutputDir::new(Some(PathBuf::from("out/")));
        assert_eq!(d.path("a.sum"), PathBuf::from("out//a.sum"));
        assert_eq!(OutputDir::new(None).path("a.sum"), PathBuf::from("a.sum"));
    }

    #[test]
    fn atomic_write_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let d = OutputDir::new(Some(dir.path().to_path_buf()));
        let p = d.write_atomically("x.sum", b"hello").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        assert!(!dir.path().join("x.sum.i").exists());
        // A directory that is gone: a clear, non-temporary error.
        let gone = OutputDir::new(Some(dir.path().join("nope")));
        let e = gone.write_atomically("y.sum", b"x").unwrap_err();
        assert!(!e.is_temporary(), "{e}");
    }

    #[test]
    fn the_lock_excludes_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let d = OutputDir::new(Some(dir.path().to_path_buf()));
        let held = d.lock().unwrap();
        // POSIX locks are per process: a second open in this process would succeed, so
        // the exclusion itself is tested across processes (tests/powstream_*.rs).
        let pid = std::fs::read(dir.path().join(LOCK_NAME)).unwrap();
        assert_eq!(pid, (std::process::id() as i32).to_ne_bytes());
        drop(held);
    }
}
