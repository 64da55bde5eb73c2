//! `owamp-server.pid` (locked for the daemon's life) and `owamp-server.info` in vardir
//! (protocol.md §7.1).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
pub enum PidError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is locked: another owampd is running with this vardir")]
    Running { path: PathBuf },
    #[error("{path}: lock: {source}")]
    Lock { path: PathBuf, source: Errno },
}

/// The locked pid file. The lock is an flock(2) on the open file, so it is taken before
/// daemonizing (the error reaches the terminal) and survives the fork; it is released
/// when the daemon exits. Dropped without [`PidFile::remove`] (a start-up that failed
/// after taking the lock), the file is removed too: no stale pid is left for scripts to
/// signal. The launcher and the intermediate fork leave by `_exit`, never dropping it.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    file: Flock<File>,
    removed: bool,
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if !self.removed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl PidFile {
    pub fn lock(vardir: &Path) -> Result<PidFile, PidError> {
        let path = vardir.join("owamp-server.pid");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(|source| PidError::Io {
                path: path.clone(),
                source,
            })?;
        let file = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            if e == Errno::EWOULDBLOCK {
                PidError::Running { path: path.clone() }
            } else {
                PidError::Lock {
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        Ok(PidFile {
            path,
            file,
            removed: false,
        })
    }

    /// Write our pid (after daemonizing: the pid has changed).
    pub fn write_pid(&mut self, pid: u32) -> Result<(), PidError> {
        let io = |source| PidError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.set_len(0).map_err(io)?;
        (&*self.file)
            .write_all(format!("{pid}\n").as_bytes())
            .map_err(io)?;
        Ok(())
    }

    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Remove the file, then release the lock (by dropping it).
    pub fn remove(mut self) -> Result<(), PidError> {
        self.removed = true;
        std::fs::remove_file(&self.path).map_err(|source| PidError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// `START=<%020 NTP timestamp>\nPID=<pid>\n`, as the reference writes it.
pub fn info_text(start_ntp: u64, pid: u32) -> String {
    format!("START={start_ntp:020}\nPID={pid}\n")
}

pub fn write_info(vardir: &Path, start_ntp: u64, pid: u32) -> Result<(), PidError> {
    let path = vardir.join("owamp-server.info");
    std::fs::write(&path, info_text(start_ntp, pid)).map_err(|source| PidError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_pid_file_is_removed_and_unlocked() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = PidFile::lock(dir.path()).unwrap();
        p.write_pid(42).unwrap();
        assert!(matches!(
            PidFile::lock(dir.path()),
            Err(PidError::Running { .. })
        ));
        drop(p);
        assert!(!dir.path().join("owamp-server.pid").exists());
        // And the next daemon can take it.
        PidFile::lock(dir.path()).unwrap().remove().unwrap();
    }

    #[test]
    fn info_format() {
        assert_eq!(
            info_text(0xEA1C_0000_8000_0000, 42),
            "START=16869358306370519040\nPID=42\n"
        );
        assert_eq!(info_text(5, 7), "START=00000000000000000005\nPID=7\n");
    }
}
