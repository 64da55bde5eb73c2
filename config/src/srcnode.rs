//! `srcnode` / `-S`: the address and port the server listens on (protocol.md §7.11).
//!
//! Accepted forms: `node:port`, `[v6addr]:port`, `[v6addr]`, `:port`, `node`, and a bare
//! IPv6 address without brackets (more than one `:`), which is taken as a host with the
//! default port, as the reference's address parser does. The host is not resolved here;
//! the master resolves it when it binds.

use serde::{Deserialize, Serialize};
use std::fmt;

/// IANA `owamp-control` port (RFC 4656 §3.1, RFC 8545), the reference's default.
pub const OWAMP_CONTROL_PORT: u16 = 861;

/// Where to listen. `host: None` means the wildcard address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrcNode {
    pub host: Option<String>,
    pub port: u16,
}

impl Default for SrcNode {
    fn default() -> Self {
        SrcNode {
            host: None,
            port: OWAMP_CONTROL_PORT,
        }
    }
}

/// Why a `srcnode` / `-S` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrcNodeError {
    #[error("empty node name")]
    Empty,
    #[error("invalid node {text:?}: missing ']' after an IPv6 address")]
    UnclosedBracket { text: String },
    #[error("invalid node {text:?}: empty address between '[' and ']'")]
    EmptyBracket { text: String },
    #[error("invalid node {text:?}: only \":port\" may follow ']'")]
    AfterBracket { text: String },
    #[error("invalid port {port:?} in {text:?}: expected a number from 1 to 65535")]
    BadPort { text: String, port: String },
    #[error("invalid node {text:?}: whitespace is not allowed")]
    Whitespace { text: String },
    #[error("invalid node {text:?}: misplaced '[' or ']'")]
    StrayBracket { text: String },
}

fn parse_port(text: &str, port: &str) -> Result<u16, SrcNodeError> {
    // Decimal digits only: `u16::from_str` would also take a leading '+'.
    let bad = || SrcNodeError::BadPort {
        text: text.to_string(),
        port: port.to_string(),
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(bad()),
    }
}

impl SrcNode {
    /// Parses a `srcnode` value (also used for `owampd -S`).
    pub fn parse(text: &str) -> Result<SrcNode, SrcNodeError> {
        if text.is_empty() {
            return Err(SrcNodeError::Empty);
        }
        if text.chars().any(crate::text::is_c_space) {
            return Err(SrcNodeError::Whitespace {
                text: text.to_string(),
            });
        }
        if let Some(rest) = text.strip_prefix('[') {
            let Some((host, after)) = rest.split_once(']') else {
                return Err(SrcNodeError::UnclosedBracket {
                    text: text.to_string(),
                });
            };
            if host.contains(['[', ']']) {
                return Err(SrcNodeError::StrayBracket {
                    text: text.to_string(),
                });
            }
            if host.is_empty() {
                return Err(SrcNodeError::EmptyBracket {
                    text: text.to_string(),
                });
            }
            let port = if after.is_empty() {
                OWAMP_CONTROL_PORT
            } else if let Some(p) = after.strip_prefix(':') {
                parse_port(text, p)?
            } else {
                return Err(SrcNodeError::AfterBracket {
                    text: text.to_string(),
                });
            };
            return Ok(SrcNode {
                host: Some(host.to_string()),
                port,
            });
        }
        if text.contains(['[', ']']) {
            return Err(SrcNodeError::StrayBracket {
                text: text.to_string(),
            });
        }
        if text.matches(':').count() > 1 {
            // A bare IPv6 address: no port can be given without brackets.
            return Ok(SrcNode {
                host: Some(text.to_string()),
                port: OWAMP_CONTROL_PORT,
            });
        }
        match text.split_once(':') {
            Some((host, port)) => Ok(SrcNode {
                host: (!host.is_empty()).then(|| host.to_string()),
                port: parse_port(text, port)?,
            }),
            None => Ok(SrcNode {
                host: Some(text.to_string()),
                port: OWAMP_CONTROL_PORT,
            }),
        }
    }
}

impl fmt::Display for SrcNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            None => write!(f, ":{}", self.port),
            Some(h) if h.contains(':') => write!(f, "[{h}]:{}", self.port),
            Some(h) => write!(f, "{h}:{}", self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str, host: Option<&str>, port: u16) {
        assert_eq!(
            SrcNode::parse(text),
            Ok(SrcNode {
                host: host.map(str::to_string),
                port
            }),
            "{text}"
        );
    }

    #[test]
    fn accepted_forms() {
        ok("host.example:8861", Some("host.example"), 8861);
        ok("10.1.2.3:862", Some("10.1.2.3"), 862);
        ok("[::1]:8861", Some("::1"), 8861);
        ok("[fe80::1%eth0]", Some("fe80::1%eth0"), 861);
        ok(":8861", None, 8861);
        ok("host.example", Some("host.example"), 861);
        ok("2001:db8::1", Some("2001:db8::1"), 861);
        ok("::", Some("::"), 861);
    }

    #[test]
    fn refused_forms_with_messages() {
        let cases = [
            ("", "empty node name"),
            (
                "[::1",
                "invalid node \"[::1\": missing ']' after an IPv6 address",
            ),
            (
                "[]:5",
                "invalid node \"[]:5\": empty address between '[' and ']'",
            ),
            (
                "[::1]x",
                "invalid node \"[::1]x\": only \":port\" may follow ']'",
            ),
            (
                "host:0",
                "invalid port \"0\" in \"host:0\": expected a number from 1 to 65535",
            ),
            (
                "host:",
                "invalid port \"\" in \"host:\": expected a number from 1 to 65535",
            ),
            (
                "host:65536",
                "invalid port \"65536\" in \"host:65536\": expected a number from 1 to 65535",
            ),
            (
                "host:+5",
                "invalid port \"+5\" in \"host:+5\": expected a number from 1 to 65535",
            ),
            (
                "[::1]:owamp",
                "invalid port \"owamp\" in \"[::1]:owamp\": expected a number from 1 to 65535",
            ),
            ("a b", "invalid node \"a b\": whitespace is not allowed"),
            ("]::", "invalid node \"]::\": misplaced '[' or ']'"),
            ("[[::1]]", "invalid node \"[[::1]]\": misplaced '[' or ']'"),
            ("h[1]:5", "invalid node \"h[1]:5\": misplaced '[' or ']'"),
        ];
        for (text, msg) in cases {
            match SrcNode::parse(text) {
                Err(e) => assert_eq!(e.to_string(), msg, "{text}"),
                Ok(v) => panic!("{text:?} accepted as {v:?}"),
            }
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["h:1", "[::1]:861", ":9000"] {
            let v = SrcNode::parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(v.to_string(), text);
            assert_eq!(SrcNode::parse(&v.to_string()), Ok(v));
        }
    }
}
