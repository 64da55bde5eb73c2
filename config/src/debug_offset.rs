//! `OWAMP_DEBUG_TIMEOFFSET`: seconds added to every clock reading, for testing with
//! clocks that disagree (protocol.md §4.3). Every program reads it here, so the server's
//! processes and the clients agree on what a value means.
//!
//! The value is a decimal or exponent number of seconds, possibly negative, with
//! surrounding white space ignored. Unset or empty means no offset: the reference
//! refuses an empty value, but `VAR=` is the usual way to switch a variable off for one
//! command, and nothing else can be meant by it.

/// The environment variable's name, as the reference spells it.
pub const DEBUG_TIME_OFFSET_ENV: &str = "OWAMP_DEBUG_TIMEOFFSET";

/// A value that is not a finite number of seconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid OWAMP_DEBUG_TIMEOFFSET value {text:?}: expected a number of seconds such as 0.5 or -1e-3"
)]
pub struct DebugOffsetError {
    pub text: String,
}

/// Parses a value of `OWAMP_DEBUG_TIMEOFFSET`; empty (or only white space) means 0.
pub fn parse_debug_time_offset(text: &str) -> Result<f64, DebugOffsetError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(0.0);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(DebugOffsetError {
            text: text.to_string(),
        }),
    }
}

/// The offset this process was started with: 0 when the variable is unset. A value
/// that is not UTF-8 is as invalid as any other non-number; the error shows it lossily.
pub fn debug_time_offset() -> Result<f64, DebugOffsetError> {
    let text = std::env::var_os(DEBUG_TIME_OFFSET_ENV)
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_debug_time_offset(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_refusals() {
        assert_eq!(parse_debug_time_offset(""), Ok(0.0));
        assert_eq!(parse_debug_time_offset("  "), Ok(0.0));
        assert_eq!(parse_debug_time_offset(" -1.5 "), Ok(-1.5));
        assert_eq!(parse_debug_time_offset("2e-3"), Ok(0.002));
        let e = parse_debug_time_offset("soon").unwrap_err();
        assert!(e.to_string().contains("OWAMP_DEBUG_TIMEOFFSET"), "{e}");
        assert!(e.to_string().contains("\"soon\""), "{e}");
        for bad in ["inf", "-inf", "NaN", "1e400", "0.5s"] {
            assert!(parse_debug_time_offset(bad).is_err(), "{bad}");
        }
    }
}
