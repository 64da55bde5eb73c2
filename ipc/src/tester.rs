//! Messages between `owampd-control` and one `owampd-tester` (design.md "IPC").
//!
//! The tester is exec'd with fd 3 (this channel), fd 4 (its bound UDP test socket) and,
//! for a receiver, fd 5 (the session data file). The first message each way is
//! `Hello { version }`; a mismatch ends the tester.
//!
//! Exchange (control's view):
//! ```text
//! control → Hello, Setup        tester → Hello, Ready      (session accepted)
//! control → Start               (Start-Sessions, RFC 4656 §3.7)
//! control → Stop(..)            tester → Finished(report)  (Stop-Sessions, §3.8)
//!                               tester → Finished(report)  (sender done on its own)
//!                               tester → ReceiveDone       (receiver's time is over)
//! ```
//! `Log` may come from the tester at any time after `Hello`.
//!
//! This crate is linked by the master, which must not link `owamp`: so the protocol
//! values travel as raw bytes and plain integers here, and the tester decodes them with
//! `owamp::wire`. Variants are append-only: golden-byte tests below pin the encoding.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Bumped whenever a message below changes shape.
pub const PROTOCOL_VERSION: u32 = 1;

/// What the tester is in the test session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TesterRole {
    Sender,
    Receiver,
}

/// The control connection's session keys (RFC 4656 §3.1, spec §1.4), from which the
/// tester derives the test-session keys (spec §3.1). Only in authenticated and
/// encrypted modes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionKeyBytes {
    pub aes: [u8; 16],
    pub hmac: [u8; 32],
}

impl std::fmt::Debug for SessionKeyBytes {
    // Key bytes never go into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeyBytes { .. }")
    }
}

/// Everything a tester needs to run one session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TesterSetup {
    pub role: TesterRole,
    /// The Request-Session as stored in `.owp` headers (spec §7.7): the 112-byte
    /// preamble with a zero HMAC field, then 16 bytes per slot. The SID and the
    /// server's own port are already filled in.
    pub request: Vec<u8>,
    /// The control connection's mode bit: 1 open, 2 authenticated, 4 encrypted.
    pub mode: u32,
    /// `Some` exactly when `mode` is 2 or 4.
    pub keys: Option<SessionKeyBytes>,
    /// The other end of the test: where a sender sends to, and the only source a
    /// receiver accepts (spec §3.4 step 3).
    pub peer: SocketAddr,
    /// Seconds a sender waits after its last packet's Timeout (spec §3.3).
    pub end_delay_s: f64,
    /// `OWAMP_DEBUG_TIMEOFFSET` as the daemon was started with.
    pub debug_time_offset: f64,
    /// Seccomp logs instead of killing (debug only, never the default).
    pub seccomp_log_only: bool,
}

/// A skip range (inclusive), RFC 4656 §3.8; `owamp::SkipRange` on either side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcSkipRange {
    pub first: u32,
    pub last: u32,
}

/// How a session ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopInfo {
    /// Stop-Sessions was exchanged (or the client vanished after Start-Sessions).
    /// `stop_time_ntp` is when control read the Stop-Sessions header (spec §7.8
    /// "stoptime"). For a receiver, `next_seqno` and `skips` come from the peer's
    /// session record: `Some` → finalise normally; `None` → the peer never sent one,
    /// finalise as incomplete. A sender ignores them.
    Stop {
        stop_time_ntp: u64,
        next_seqno: Option<u32>,
        skips: Vec<IpcSkipRange>,
    },
    /// The session failed (Accept≠0, or the client left before Start-Sessions):
    /// stop at once; control deletes any data file.
    Abort,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ControlToTester {
    Hello { version: u32 },
    Setup(Box<TesterSetup>),
    Start,
    Stop(StopInfo),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TesterLogLevel {
    Error,
    Warning,
    Info,
    Debug,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TesterLog {
    pub level: TesterLogLevel,
    pub message: String,
}

/// One reason a receiver dropped datagrams, and how many (spec §3.4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCount {
    pub reason: String,
    pub count: u64,
}

/// The session's result as the tester saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TesterOutcome {
    /// What goes into the server's own Stop-Sessions record (RFC 4656 §3.8).
    Sender {
        next_seqno: u32,
        skips: Vec<IpcSkipRange>,
    },
    /// The data file on fd 5 is finalised and fsynced: `finished` is the `.owp`
    /// finished word (1 normal, 2 incomplete; spec §7.7), `file_len` its size (for the
    /// disk true-up of spec §7.4).
    Receiver {
        finished: u32,
        records: u64,
        lost: u64,
        file_len: u64,
    },
    /// The session could not run or could not be finalised; control deletes the data.
    Failed { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TesterReport {
    pub outcome: TesterOutcome,
    pub drops: Vec<DropCount>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TesterToControl {
    Hello {
        version: u32,
    },
    Ready,
    Log(TesterLog),
    Finished(TesterReport),
    /// A receiver's session time is over (the last packet's send time + Timeout has
    /// passed, spec §3.4): it waits for `Stop` to finalise. Control sends its own
    /// Stop-Sessions first once every local endpoint is done (spec §2.5).
    ReceiveDone,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    // The same configuration the ipc channel codec uses (bincode 2 standard: varint
    // integers, enum tags as varint u32, little-endian fixed-width floats).
    fn enc<T: Serialize>(v: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
    }
    fn dec<T: serde::de::DeserializeOwned>(b: &[u8]) -> T {
        let (v, n): (T, usize) =
            bincode::serde::decode_from_slice(b, bincode::config::standard()).unwrap();
        assert_eq!(n, b.len(), "trailing bytes");
        v
    }
    fn golden<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        v: T,
        bytes: &[u8],
    ) {
        assert_eq!(enc(&v), bytes, "encoding of {v:?}");
        assert_eq!(dec::<T>(bytes), v);
    }

    #[test]
    fn control_to_tester_hello() {
        golden(ControlToTester::Hello { version: 1 }, &[0, 1]);
    }

    #[test]
    fn control_to_tester_setup() {
        let setup = TesterSetup {
            role: TesterRole::Receiver,
            request: vec![1, 4],
            mode: 2,
            keys: Some(SessionKeyBytes {
                aes: [0xAA; 16],
                hmac: [0xBB; 32],
            }),
            peer: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 300),
            end_delay_s: 1.0,
            debug_time_offset: 0.0,
            seccomp_log_only: false,
        };
        let mut want = vec![
            1, /*role*/ 1, /*len*/ 2, 1, 4, /*mode*/ 2, /*Some*/ 1,
        ];
        want.extend_from_slice(&[0xAA; 16]);
        want.extend_from_slice(&[0xBB; 32]);
        // SocketAddr::V4 (tag 0), 4 octets as a tuple, port 300 as a varint (251 = u16 follows, LE).
        want.extend_from_slice(&[0, 127, 0, 0, 1, 251, 0x2C, 0x01]);
        want.extend_from_slice(&1.0f64.to_le_bytes());
        want.extend_from_slice(&0.0f64.to_le_bytes());
        want.push(0);
        golden(ControlToTester::Setup(Box::new(setup)), &want);
    }

    #[test]
    fn control_to_tester_start() {
        golden(ControlToTester::Start, &[2]);
    }

    #[test]
    fn control_to_tester_stop() {
        golden(
            ControlToTester::Stop(StopInfo::Stop {
                stop_time_ntp: 5,
                next_seqno: Some(100),
                skips: vec![IpcSkipRange { first: 3, last: 4 }],
            }),
            &[3, 0, 5, 1, 100, 1, 3, 4],
        );
        golden(ControlToTester::Stop(StopInfo::Abort), &[3, 1]);
    }

    #[test]
    fn tester_to_control_variants() {
        golden(TesterToControl::Hello { version: 1 }, &[0, 1]);
        golden(TesterToControl::Ready, &[1]);
        golden(
            TesterToControl::Log(TesterLog {
                level: TesterLogLevel::Warning,
                message: "hi".into(),
            }),
            &[2, 1, 2, b'h', b'i'],
        );
        golden(
            TesterToControl::Finished(TesterReport {
                outcome: TesterOutcome::Sender {
                    next_seqno: 10,
                    skips: vec![],
                },
                drops: vec![DropCount {
                    reason: "x".into(),
                    count: 2,
                }],
            }),
            &[3, 0, 10, 0, 1, 1, b'x', 2],
        );
        golden(
            TesterToControl::Finished(TesterReport {
                outcome: TesterOutcome::Receiver {
                    finished: 1,
                    records: 2,
                    lost: 0,
                    file_len: 300,
                },
                drops: vec![],
            }),
            &[3, 1, 1, 2, 0, 251, 0x2C, 0x01, 0],
        );
        golden(
            TesterToControl::Finished(TesterReport {
                outcome: TesterOutcome::Failed { reason: "".into() },
                drops: vec![],
            }),
            &[3, 2, 0, 0],
        );
        golden(TesterToControl::ReceiveDone, &[4]);
    }

    #[test]
    fn key_bytes_are_not_in_debug_output() {
        let k = SessionKeyBytes {
            aes: [0x5A; 16],
            hmac: [0x5A; 32],
        };
        let text = format!("{k:?}");
        assert!(!text.contains("90"), "{text}");
    }
}
