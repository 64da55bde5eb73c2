//! `--name value` options of the driver (no positional arguments besides the subcommand).

use crate::session::SessionSpec;
use owamp::types::Mode;
use std::collections::BTreeMap;
use std::time::Duration;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error("argument {0:?} is not an --option")]
    NotAnOption(String),
    #[error("option --{0} needs a value")]
    MissingValue(String),
    #[error("option --{name}: {value:?} is not {expected}")]
    BadValue {
        name: String,
        value: String,
        expected: &'static str,
    },
    #[error("unknown option(s): {0}")]
    Unknown(String),
}

/// The options, consumed as they are read so leftovers can be refused.
pub struct Args(BTreeMap<String, String>);

impl Args {
    pub fn parse(argv: &[String]) -> Result<Args, ArgsError> {
        let mut m = BTreeMap::new();
        let mut it = argv.iter();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                return Err(ArgsError::NotAnOption(a.clone()));
            };
            let v = it
                .next()
                .ok_or_else(|| ArgsError::MissingValue(name.to_string()))?;
            m.insert(name.to_string(), v.clone());
        }
        Ok(Args(m))
    }

    fn take<T: std::str::FromStr>(
        &mut self,
        name: &str,
        expected: &'static str,
    ) -> Result<Option<T>, ArgsError> {
        match self.0.remove(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| ArgsError::BadValue {
                name: name.to_string(),
                value: v,
                expected,
            }),
        }
    }

    pub fn f64_or(&mut self, name: &str, default: f64) -> Result<f64, ArgsError> {
        let v = self.take(name, "a number")?.unwrap_or(default);
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(ArgsError::BadValue {
                name: name.to_string(),
                value: v.to_string(),
                expected: "a finite non-negative number",
            })
        }
    }

    pub fn u32_or(&mut self, name: &str, default: u32) -> Result<u32, ArgsError> {
        Ok(self.take(name, "an unsigned integer")?.unwrap_or(default))
    }

    /// `--mode --count --rate|--interval-us --timeout --padding --stall-ms`.
    pub fn session_spec(&mut self, default_count: u32) -> Result<SessionSpec, ArgsError> {
        let mode = self.mode()?;
        let count = self.u32_or("count", default_count)?;
        let interval = match (
            self.0.contains_key("rate"),
            self.0.contains_key("interval-us"),
        ) {
            (true, _) => {
                let pps = self.f64_or("rate", 1000.0)?;
                if pps > 0.0 {
                    Duration::from_secs_f64(1.0 / pps)
                } else {
                    Duration::ZERO
                }
            }
            (false, true) => Duration::from_secs_f64(self.f64_or("interval-us", 1000.0)? / 1e6),
            (false, false) => Duration::from_millis(1),
        };
        let timeout = Duration::from_secs_f64(self.f64_or("timeout", 2.0)?);
        let padding = self.u32_or("padding", 0)?;
        let stall = Duration::from_secs_f64(self.f64_or("stall-ms", 0.0)? / 1e3);
        Ok(SessionSpec {
            stall,
            mode,
            count,
            interval,
            timeout,
            padding,
        })
    }

    /// `--mode open|authenticated|encrypted` (open by default).
    pub fn mode(&mut self) -> Result<Mode, ArgsError> {
        match self.0.remove("mode").as_deref() {
            None | Some("open") => Ok(Mode::Open),
            Some("authenticated" | "auth") => Ok(Mode::Authenticated),
            Some("encrypted" | "enc") => Ok(Mode::Encrypted),
            Some(other) => Err(ArgsError::BadValue {
                name: "mode".into(),
                value: other.into(),
                expected: "open, authenticated or encrypted",
            }),
        }
    }

    /// A required string option.
    #[cfg_attr(not(feature = "setup"), allow(dead_code))] // only `setup` takes strings
    pub fn string(&mut self, name: &str) -> Result<String, ArgsError> {
        self.0
            .remove(name)
            .ok_or_else(|| ArgsError::MissingValue(name.to_string()))
    }

    #[cfg_attr(not(feature = "setup"), allow(dead_code))]
    pub fn opt_string(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    /// Refuses any option nobody asked for.
    pub fn finish(self) -> Result<(), ArgsError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            let names: Vec<String> = self.0.keys().map(|k| format!("--{k}")).collect();
            Err(ArgsError::Unknown(names.join(" ")))
        }
    }
}
