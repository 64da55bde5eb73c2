//! The master is the only process that writes logs (docs/processes.md): its own lines
//! and those control sends as `Log` messages, to syslog (ident `owampd`) and with `-Z`
//! also to stderr, unless stderr is the systemd journal, which already gets the syslog
//! lines (a `Type=notify` unit runs `owampd -Z`: each line would show twice).

use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;

use config::LogLevel;
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

/// Env var naming another Unix datagram socket than /dev/log (for tests, ARCHITECTURE.md
/// "Conventions").
pub const SYSLOG_SOCKET_ENV: &str = "OWAMPD_SYSLOG_SOCKET";

pub struct Log {
    syslog: Option<Logger<LoggerBackend, Formatter3164>>,
    stderr: bool,
    threshold: LogLevel,
}

/// loglevel filtering (protocol.md §7.11): `none` shows nothing, `all` everything; otherwise a
/// line shows when it is at least as severe as the threshold.
pub fn shown(level: LogLevel, threshold: LogLevel) -> bool {
    threshold.reports(level)
}

impl Log {
    /// Connect to the syslog socket. When it is missing, say so once on stderr (this runs
    /// before daemonizing, so the terminal still sees it) and carry on.
    pub fn open(facility: Facility, stderr: bool, threshold: LogLevel) -> Log {
        let path = std::env::var_os(SYSLOG_SOCKET_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/dev/log"));
        let formatter = Formatter3164 {
            facility,
            hostname: None,
            process: "owampd".into(),
            pid: std::process::id(),
        };
        let syslog = match syslog::unix_custom(formatter, &path) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!(
                    "owampd: no syslog at {} ({e}); logging {}",
                    path.display(),
                    if stderr { "to stderr only" } else { "nowhere" }
                );
                None
            }
        };
        let stderr = stderr && !(syslog.is_some() && stderr_is_journal());
        Log {
            syslog,
            stderr,
            threshold,
        }
    }

    /// After daemonizing: our pid has changed, and stderr is /dev/null unless `-Z`.
    pub fn set_pid(&mut self, pid: u32) {
        if let Some(s) = &mut self.syslog {
            s.formatter.pid = pid;
        }
    }

    /// Write one line that already carries its role tag (`[master] ...`, `[control] ...`).
    /// A failing syslog write is dropped: logging must not stop the daemon.
    pub fn write(&mut self, level: LogLevel, message: &str) {
        if !shown(level, self.threshold) {
            return;
        }
        // One line per record, whatever a less-trusted peer put in it.
        let message = message.replace(['\n', '\r'], " ");
        if let Some(s) = &mut self.syslog {
            let _ = match level {
                LogLevel::Fatal => s.err(&message),
                LogLevel::Warning => s.warning(&message),
                LogLevel::Info => s.info(&message),
                LogLevel::Debug | LogLevel::All => s.debug(&message),
                LogLevel::None => Ok(()),
            };
        }
        if self.stderr {
            eprintln!("owampd: {message}");
        }
    }

    /// The syslog socket, which the sandbox's fd sweep must keep.
    pub fn raw_fd(&self) -> Option<RawFd> {
        match &self.syslog.as_ref()?.backend {
            LoggerBackend::Unix(s) => Some(s.as_raw_fd()),
            LoggerBackend::UnixStream(s) => Some(s.get_ref().as_raw_fd()),
            LoggerBackend::Udp(s, _) => Some(s.as_raw_fd()),
            LoggerBackend::Tcp(s) => Some(s.get_ref().as_raw_fd()),
        }
    }

    pub fn master(&mut self, level: LogLevel, message: impl std::fmt::Display) {
        self.write(level, &format!("[master] {message}"));
    }
}

/// Whether stderr is the journal stream systemd connected us to: `JOURNAL_STREAM` holds
/// its `device:inode` (systemd.exec(5)), compared with stderr's own, so that a stderr
/// redirected elsewhere by the service keeps its copy.
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    journal_stream_matches(&value.to_string_lossy(), st.st_dev, st.st_ino)
}

/// `JOURNAL_STREAM=<dev>:<ino>` (decimal) names the descriptor `(dev, ino)`.
fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_names_one_descriptor() {
        assert!(journal_stream_matches("8:1234", 8, 1234));
        assert!(!journal_stream_matches("8:1234", 8, 1235));
        assert!(!journal_stream_matches("8:1234", 9, 1234));
        for bad in ["", "8", "8:", ":1234", "x:1", "8:1234:5"] {
            assert!(!journal_stream_matches(bad, 8, 1234), "{bad:?}");
        }
    }

    #[test]
    fn level_filter() {
        assert!(shown(LogLevel::Fatal, LogLevel::Warning));
        assert!(shown(LogLevel::Warning, LogLevel::Warning));
        assert!(!shown(LogLevel::Info, LogLevel::Warning));
        assert!(shown(LogLevel::Debug, LogLevel::All));
        assert!(!shown(LogLevel::Fatal, LogLevel::None));
        assert!(shown(LogLevel::Info, LogLevel::Info));
        assert!(!shown(LogLevel::Debug, LogLevel::Info));
    }
}
