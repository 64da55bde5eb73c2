//! powstream's messages: to syslog (`-e` facility, ident `powstream`) and to stderr
//! unless `-R`, filtered by `-g` as the reference's error handle filters them. One line
//! per message, whatever a server put in it; a failing syslog or stderr write is
//! dropped (a message must never stop the measurements).

use config::{Facility, LogLevel};
use std::io::Write;
use std::str::FromStr;
use std::sync::Mutex;
use syslog::{Formatter3164, Logger as Syslog, LoggerBackend};

pub struct Logger {
    syslog: Option<Mutex<Syslog<LoggerBackend, Formatter3164>>>,
    stderr: bool,
    threshold: LogLevel,
}

impl Logger {
    /// Connects to /dev/log when there is one (without, messages go to stderr only).
    pub fn open(facility: Facility, threshold: LogLevel, stderr: bool) -> Logger {
        let formatter = Formatter3164 {
            facility: syslog::Facility::from_str(facility.as_str())
                .unwrap_or(syslog::Facility::LOG_USER),
            hostname: None,
            process: "powstream".into(),
            pid: std::process::id(),
        };
        Logger {
            syslog: syslog::unix(formatter).ok().map(Mutex::new),
            stderr,
            threshold,
        }
    }

    pub fn write(&self, level: LogLevel, message: &str) {
        if !self.threshold.reports(level) {
            return;
        }
        let message = message.replace(['\n', '\r'], " ");
        if let Some(s) = &self.syslog {
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            let _ = match level {
                LogLevel::Fatal => s.err(&message),
                LogLevel::Warning => s.warning(&message),
                LogLevel::Info => s.info(&message),
                LogLevel::Debug | LogLevel::All => s.debug(&message),
                LogLevel::None => Ok(()),
            };
        }
        if self.stderr {
            let _ = writeln!(std::io::stderr(), "powstream: {message}");
        }
    }

    pub fn fatal(&self, m: impl AsRef<str>) {
        self.write(LogLevel::Fatal, m.as_ref());
    }

    pub fn warn(&self, m: impl AsRef<str>) {
        self.write(LogLevel::Warning, m.as_ref());
    }

    pub fn info(&self, m: impl AsRef<str>) {
        self.write(LogLevel::Info, m.as_ref());
    }

    pub fn debug(&self, m: impl AsRef<str>) {
        self.write(LogLevel::Debug, m.as_ref());
    }
}
