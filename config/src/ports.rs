//! `testports` / `-P`: the UDP port range for test endpoints (protocol.md §7.6, §7.11).
//!
//! `0` means ephemeral (bind port 0, the reference's code default), `N` means N..N, and
//! `low-high` a range with 1 <= low <= high <= 65535.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A test port range; `low == high == 0` is "ephemeral".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

/// Why a `testports` / `-P` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortRangeError {
    #[error("invalid port range {text:?}: {part:?} is not a port number (0 to 65535)")]
    NotAPort { text: String, part: String },
    #[error("invalid port range {text:?}: low port {low} is above high port {high}")]
    Reversed { text: String, low: u16, high: u16 },
    #[error("invalid port range {text:?}: port 0 is allowed only alone, meaning ephemeral")]
    ZeroInRange { text: String },
}

fn port(text: &str, part: &str) -> Result<u16, PortRangeError> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortRangeError::NotAPort {
            text: text.to_string(),
            part: part.to_string(),
        });
    }
    part.parse::<u16>().map_err(|_| PortRangeError::NotAPort {
        text: text.to_string(),
        part: part.to_string(),
    })
}

impl PortRange {
    /// Bind port 0 and let the kernel choose.
    pub const EPHEMERAL: PortRange = PortRange { low: 0, high: 0 };

    pub fn is_ephemeral(self) -> bool {
        self.low == 0
    }

    /// Number of ports in the range (0 for ephemeral).
    pub fn len(self) -> u32 {
        if self.is_ephemeral() {
            0
        } else {
            u32::from(self.high) - u32::from(self.low) + 1
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Parses a `testports` value (also used for `owampd -P`).
    pub fn parse(text: &str) -> Result<PortRange, PortRangeError> {
        let (low, high) = match text.split_once('-') {
            Some((l, h)) => (port(text, l)?, port(text, h)?),
            None => {
                let p = port(text, text)?;
                (p, p)
            }
        };
        if low == 0 && high == 0 {
            return Ok(PortRange::EPHEMERAL);
        }
        if low == 0 || high == 0 {
            return Err(PortRangeError::ZeroInRange {
                text: text.to_string(),
            });
        }
        if low > high {
            return Err(PortRangeError::Reversed {
                text: text.to_string(),
                low,
                high,
            });
        }
        Ok(PortRange { low, high })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ephemeral() {
            write!(f, "0")
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        assert_eq!(PortRange::parse("0"), Ok(PortRange::EPHEMERAL));
        assert_eq!(PortRange::parse("0-0"), Ok(PortRange::EPHEMERAL));
        assert_eq!(
            PortRange::parse("8760-9960"),
            Ok(PortRange {
                low: 8760,
                high: 9960
            })
        );
        assert_eq!(
            PortRange::parse("5000"),
            Ok(PortRange {
                low: 5000,
                high: 5000
            })
        );
        assert_eq!(PortRange::parse("1-65535").map(PortRange::len), Ok(65535));
        assert_eq!(PortRange::EPHEMERAL.len(), 0);
    }

    #[test]
    fn refused_forms_with_messages() {
        let cases = [
            (
                "",
                "invalid port range \"\": \"\" is not a port number (0 to 65535)",
            ),
            (
                "9960-8760",
                "invalid port range \"9960-8760\": low port 9960 is above high port 8760",
            ),
            (
                "0-10",
                "invalid port range \"0-10\": port 0 is allowed only alone, meaning ephemeral",
            ),
            (
                "10-65536",
                "invalid port range \"10-65536\": \"65536\" is not a port number (0 to 65535)",
            ),
            (
                "1-2-3",
                "invalid port range \"1-2-3\": \"2-3\" is not a port number (0 to 65535)",
            ),
            (
                "-5",
                "invalid port range \"-5\": \"\" is not a port number (0 to 65535)",
            ),
            (
                " 5",
                "invalid port range \" 5\": \" 5\" is not a port number (0 to 65535)",
            ),
        ];
        for (text, msg) in cases {
            match PortRange::parse(text) {
                Err(e) => assert_eq!(e.to_string(), msg, "{text:?}"),
                Ok(v) => panic!("{text:?} accepted as {v:?}"),
            }
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["0", "1-1", "8760-9960"] {
            let v = PortRange::parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(v.to_string(), text);
        }
    }
}
