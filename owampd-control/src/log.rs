//! Log lines from the control process. Only the master writes to syslog and stderr
//! (docs/processes.md), so control hands every line to a [`LogSink`]; in the real
//! process that sink sends `ControlToMaster::Log` over fd 3.
//!
//! Lines carry the role and, where there is one, the peer and the SID (ARCHITECTURE.md
//! "Conventions"): callers format them with [`Logger::peer`] / [`Logger::sid`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
    Info,
    Debug,
}

pub trait LogSink: Send + Sync {
    fn log(&self, level: Level, message: String);
}

/// Cheap to clone; one per connection task.
#[derive(Clone)]
pub struct Logger {
    sink: Arc<dyn LogSink>,
    prefix: String,
}

impl Logger {
    pub fn new(sink: Arc<dyn LogSink>) -> Logger {
        Logger {
            sink,
            prefix: "[control]".into(),
        }
    }

    /// A logger whose lines name the control connection's peer.
    pub fn peer(&self, peer: SocketAddr) -> Logger {
        Logger {
            sink: self.sink.clone(),
            prefix: format!("{} {peer}", self.prefix),
        }
    }

    /// A logger whose lines also name a test session.
    pub fn sid(&self, sid_hex: &str) -> Logger {
        Logger {
            sink: self.sink.clone(),
            prefix: format!("{} sid={sid_hex}", self.prefix),
        }
    }

    pub fn log(&self, level: Level, message: impl std::fmt::Display) {
        self.sink.log(level, format!("{}: {message}", self.prefix));
    }

    pub fn error(&self, m: impl std::fmt::Display) {
        self.log(Level::Error, m)
    }
    pub fn warn(&self, m: impl std::fmt::Display) {
        self.log(Level::Warning, m)
    }
    pub fn info(&self, m: impl std::fmt::Display) {
        self.log(Level::Info, m)
    }
    pub fn debug(&self, m: impl std::fmt::Display) {
        self.log(Level::Debug, m)
    }
}

/// Keeps lines in memory (tests).
#[derive(Default)]
pub struct MemorySink {
    pub lines: Mutex<Vec<(Level, String)>>,
}

impl MemorySink {
    pub fn take(&self) -> Vec<(Level, String)> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl LogSink for MemorySink {
    fn log(&self, level: Level, message: String) {
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
        let log = Logger::new(sink.clone());
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        log.peer(peer).sid("ab").info("accepted");
        log.warn("x");
        assert_eq!(
            sink.take(),
            vec![
                (
                    Level::Info,
                    "[control] 127.0.0.1:5000 sid=ab: accepted".to_string()
                ),
                (Level::Warning, "[control]: x".to_string()),
            ]
        );
    }
}
