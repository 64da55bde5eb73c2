//! Log lines from the control process. Only the master writes to syslog and stderr
//! (docs/processes.md), so control hands every line to a [`LogSink`]; in the real
//! process that sink sends `ControlToMaster::Log` over fd 3.
//!
//! Lines carry the role and, where there is one, the peer and the SID (ARCHITECTURE.md
//! "Conventions"): callers format them with [`Logger::peer`] / [`Logger::sid`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub use config::LogLevel;

/// Where lines go once they pass the threshold.
pub trait LogSink: Send + Sync {
    fn log(&self, level: LogLevel, message: String);
}

/// Cheap to clone; one per connection task.
#[derive(Clone)]
pub struct Logger {
    sink: Arc<dyn LogSink>,
    /// The `loglevel` setting: a quieter line is dropped here, before it is formatted or
    /// crosses the socket to the master.
    threshold: LogLevel,
    prefix: String,
}

impl Logger {
    pub fn new(sink: Arc<dyn LogSink>, threshold: LogLevel) -> Logger {
        Logger {
            sink,
            threshold,
            prefix: "[control]".into(),
        }
    }

    /// A logger whose lines name the control connection's peer.
    pub fn peer(&self, peer: SocketAddr) -> Logger {
        Logger {
            sink: self.sink.clone(),
            threshold: self.threshold,
            prefix: format!("{} {peer}", self.prefix),
        }
    }

    /// A logger whose lines also name a test session.
    pub fn sid(&self, sid_hex: &str) -> Logger {
        Logger {
            sink: self.sink.clone(),
            threshold: self.threshold,
            prefix: format!("{} sid={sid_hex}", self.prefix),
        }
    }

    pub fn log(&self, level: LogLevel, message: impl std::fmt::Display) {
        if self.threshold.reports(level) {
            self.sink.log(level, format!("{}: {message}", self.prefix));
        }
    }

    /// A failure (the reference's FATAL level, syslog `err`).
    pub fn error(&self, m: impl std::fmt::Display) {
        self.log(LogLevel::Fatal, m)
    }
    pub fn warn(&self, m: impl std::fmt::Display) {
        self.log(LogLevel::Warning, m)
    }
    pub fn info(&self, m: impl std::fmt::Display) {
        self.log(LogLevel::Info, m)
    }
    pub fn debug(&self, m: impl std::fmt::Display) {
        self.log(LogLevel::Debug, m)
    }
}

/// Keeps lines in memory (tests).
#[derive(Default)]
pub struct MemorySink {
    pub lines: Mutex<Vec<(LogLevel, String)>>,
}

impl MemorySink {
    pub fn take(&self) -> Vec<(LogLevel, String)> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl LogSink for MemorySink {
    fn log(&self, level: LogLevel, message: String) {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((level, message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_name_role_peer_and_sid() {
        let sink = Arc::new(MemorySink::default());
        let log = Logger::new(sink.clone(), LogLevel::All);
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        log.peer(peer).sid("ab").info("accepted");
        log.warn("x");
        assert_eq!(
            sink.take(),
            vec![
                (
                    LogLevel::Info,
                    "[control] 127.0.0.1:5000 sid=ab: accepted".to_string()
                ),
                (LogLevel::Warning, "[control]: x".to_string()),
            ]
        );
    }

    #[test]
    fn lines_quieter_than_the_threshold_never_reach_the_sink() {
        let sink = Arc::new(MemorySink::default());
        let log = Logger::new(sink.clone(), LogLevel::Warning).sid("ab");
        log.debug("d");
        log.info("i");
        log.warn("w");
        log.error("e");
        assert_eq!(
            sink.take(),
            vec![
                (LogLevel::Warning, "[control] sid=ab: w".to_string()),
                (LogLevel::Fatal, "[control] sid=ab: e".to_string()),
            ]
        );
        let none = Logger::new(sink.clone(), LogLevel::None);
        none.error("e");
        assert!(sink.take().is_empty());
    }
}
