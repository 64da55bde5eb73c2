//! The messages between `owampd-control` and one `owampd-tester` (docs/processes.md).
//!
//! They carry the protocol's own types (`RequestSession`, `Sid`, `Slot`, `SkipRange`,
//! `Mode`, `SessionKeys`): control decodes a Request-Session once, and the tester gets
//! it as control accepted it. This crate sits beside the two processes that speak it, so
//! the master, which links only `ipc`, never links `owamp`.
//!
//! The tester is started with fd 3 (this channel), fd 4 (its bound UDP test socket) and,
//! for a receiver, fd 5 (the session data file). The first message each way is
//! `Hello { version }`; a mismatch ends the tester.
//!
//! ```text
//! control → Hello, Setup, Slots…   tester → Hello, Ready                 Accept-Session
//! control → Start                                                         Start-Sessions
//!                                  tester → ReceiveDone                   a receiver's time is over
//! control → Stop                   tester → SenderSkips…, Finished        a sender, Stop-Sessions
//!                                  tester → SenderSkips…, Finished        a sender done on its own
//! control → Stop, Skips…, Finalize tester → Finished                      a receiver, Stop-Sessions
//! control → Abort                                                         the session failed
//! ```
//! `Log` may come from the tester at any time after `Hello`.
//!
//! Every message fits the channel's 64 KiB bound whatever the session: lists that grow
//! with the request (schedule slots, skip ranges) travel in chunks of at most
//! [`MAX_SLOTS_PER_MESSAGE`] or [`MAX_SKIPS_PER_MESSAGE`], after a message that announces
//! their total, and [`Gather`] reassembles them, refusing more than was announced.
//! Variants are append-only; golden-byte tests pin the encoding.
#![forbid(unsafe_code)]

use owamp::crypto::SessionKeys;
use owamp::wire::RequestSession;
use owamp::{Mode, Num64, SkipRange, Slot};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// Bumped whenever a message below changes shape.
pub const PROTOCOL_VERSION: u32 = 3;

/// Slots per message: an encoded slot is at most 10 bytes, so a chunk is at most 20 KiB.
pub const MAX_SLOTS_PER_MESSAGE: usize = 2048;

/// Skip ranges per message: an encoded range is at most 10 bytes, so at most 40 KiB.
pub const MAX_SKIPS_PER_MESSAGE: usize = 4096;

/// What the tester is in the test session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Sender,
    Receiver,
}

/// Everything a tester needs to run one session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    pub role: Role,
    /// The session as accepted, with the SID and the server's own port filled in.
    /// `request.slots` holds the first [`MAX_SLOTS_PER_MESSAGE`] slots; the rest follow
    /// in [`ControlToTester::Slots`] messages, `num_slots` in all.
    pub request: RequestSession,
    pub num_slots: u32,
    /// The control connection's mode.
    pub mode: Mode,
    /// The control connection's session keys (RFC 4656 §3.1), from which the tester
    /// derives the test-session keys (§4.1.2): `Some` exactly in authenticated and
    /// encrypted modes. Debug output never shows them.
    pub keys: Option<SessionKeys>,
    /// The other end of the test: where a sender sends to, and the only source a
    /// receiver accepts (RFC 4656 §4.2).
    pub peer: SocketAddr,
    /// How long a sender waits after its last packet's Timeout (the `enddelay` setting).
    pub end_delay: Duration,
    /// `OWAMP_DEBUG_TIMEOFFSET` as the daemon was started with, in seconds.
    pub debug_time_offset: f64,
}

/// How a session ends (RFC 4656 §3.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    /// When control read the Stop-Sessions header: a receiver keeps only the records
    /// sent at least Timeout before it (RFC 4656 §3.8).
    pub stop_time: Num64,
    /// For a receiver, the peer sender's record of the session: `Some` → its
    /// `num_skips` skip ranges follow in [`ControlToTester::Skips`], then `Finalize`
    /// finalises the file as complete; `None` → the peer sent none (it vanished), and
    /// `Finalize` keeps the data as incomplete. A sender ignores it and stops.
    pub peer: Option<PeerRecord>,
}

/// The peer's Stop-Sessions record for a session we receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Already resolved: 0xFFFFFFFF ("all of them") arrives as Number of Packets.
    pub next_seqno: u32,
    pub num_skips: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ControlToTester {
    Hello {
        version: u32,
    },
    Setup(Box<Setup>),
    /// More of the request's schedule, after `Setup`.
    Slots(Vec<Slot>),
    Start,
    Stop(Stop),
    /// More of the peer's skip ranges, after `Stop`.
    Skips(Vec<SkipRange>),
    /// A receiver may write its file's final header now.
    Finalize,
    /// The session failed (Accept≠0, or the client left before Start-Sessions): stop at
    /// once, report nothing; control deletes any data.
    Abort,
}

/// The level of a log line: the same type as the `loglevel` threshold, so control
/// compares and forwards a tester's line without mapping it.
pub use config::LogLevel;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// One reason a receiver dropped datagrams, and how many (none ends the session).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCount {
    pub reason: String,
    pub count: u64,
}

/// The session's result as the tester saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// What goes into the server's own Stop-Sessions record (RFC 4656 §3.8); the
    /// `num_skips` skip ranges came before, in [`TesterToControl::SenderSkips`].
    Sender { next_seqno: u32, num_skips: u32 },
    /// The data file on fd 5 is finalised and on disk: `finished` is the `.owp`
    /// finished word (1 complete, 2 incomplete).
    Receiver {
        finished: u32,
        records: u64,
        lost: u64,
    },
    /// The session could not run or could not be finalised; control deletes the data.
    Failed { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub outcome: Outcome,
    pub drops: Vec<DropCount>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TesterToControl {
    Hello {
        version: u32,
    },
    Ready,
    Log(LogLine),
    /// A receiver's session time is over (the last packet's send time + Timeout has
    /// passed): it waits for `Stop`. Control sends its own Stop-Sessions first once every
    /// local endpoint is done (RFC 4656 §3.8 lets either side go first).
    ReceiveDone,
    /// Some of a sender's skip ranges, before its `Finished`.
    SenderSkips(Vec<SkipRange>),
    Finished(Report),
}

/// Splits `items` into the chunks of at most `max` that travel one per message
/// (nothing for an empty list).
pub fn chunks<T: Clone>(items: &[T], max: usize) -> impl Iterator<Item = Vec<T>> + '_ {
    items.chunks(max.max(1)).map(<[T]>::to_vec)
}

/// A chunked list arrived with more elements than announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooMany {
    pub announced: usize,
}

impl std::fmt::Display for TooMany {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than the {} announced", self.announced)
    }
}

impl std::error::Error for TooMany {}

/// Reassembles a list announced by its length and sent in chunks.
#[derive(Clone, Debug)]
pub struct Gather<T> {
    want: usize,
    items: Vec<T>,
}

impl<T> Gather<T> {
    /// A list of `want` elements, of which `first` came with the announcement. Only
    /// what arrives is allocated, never what is announced.
    pub fn new(want: usize, first: Vec<T>) -> Result<Gather<T>, TooMany> {
        let mut g = Gather {
            want,
            items: Vec::new(),
        };
        g.push(first)?;
        Ok(g)
    }

    pub fn push(&mut self, chunk: Vec<T>) -> Result<(), TooMany> {
        if self.items.len().saturating_add(chunk.len()) > self.want {
            return Err(TooMany {
                announced: self.want,
            });
        }
        if self.items.is_empty() {
            self.items = chunk;
        } else {
            self.items.extend(chunk);
        }
        Ok(())
    }

    pub fn is_complete(&self) -> bool {
        self.items.len() == self.want
    }

    pub fn into_inner(self) -> Vec<T> {
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use owamp::{Sid, SlotKind};
    use std::net::{IpAddr, Ipv4Addr};

    // The configuration of the ipc channel's codec (bincode 2 standard: varint integers,
    // enum tags as varint u32, little-endian fixed-width floats).
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

    fn request(slots: usize) -> RequestSession {
        RequestSession {
            conf_sender: false,
            conf_receiver: true,
            num_packets: 100,
            sender_port: 9000,
            receiver_port: 9001,
            sender_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            receiver_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sid: Sid([0xAB; 16]),
            padding: 0,
            start_time: Num64(u64::MAX),
            timeout: Num64(u64::MAX),
            type_p: 0,
            slots: vec![
                Slot {
                    kind: SlotKind::Exponential,
                    param: Num64(u64::MAX),
                };
                slots
            ],
        }
    }

    #[test]
    fn small_messages_have_fixed_bytes() {
        golden(ControlToTester::Hello { version: 2 }, &[0, 2]);
        golden(ControlToTester::Start, &[3]);
        golden(ControlToTester::Finalize, &[6]);
        golden(ControlToTester::Abort, &[7]);
        golden(
            ControlToTester::Stop(Stop {
                stop_time: Num64(5),
                peer: Some(PeerRecord {
                    next_seqno: 100,
                    num_skips: 1,
                }),
            }),
            &[4, 5, 1, 100, 1],
        );
        golden(
            ControlToTester::Skips(vec![SkipRange { first: 3, last: 4 }]),
            &[5, 1, 3, 4],
        );
        golden(TesterToControl::Hello { version: 2 }, &[0, 2]);
        golden(TesterToControl::Ready, &[1]);
        golden(
            TesterToControl::Log(LogLine {
                level: LogLevel::Warning,
                message: "hi".into(),
            }),
            &[2, 2, 2, b'h', b'i'],
        );
        golden(TesterToControl::ReceiveDone, &[3]);
        golden(
            TesterToControl::Finished(Report {
                outcome: Outcome::Sender {
                    next_seqno: 10,
                    num_skips: 0,
                },
                drops: vec![DropCount {
                    reason: "x".into(),
                    count: 2,
                }],
            }),
            &[5, 0, 10, 0, 1, 1, b'x', 2],
        );
        golden(
            TesterToControl::Finished(Report {
                outcome: Outcome::Receiver {
                    finished: 1,
                    records: 2,
                    lost: 0,
                },
                drops: vec![],
            }),
            &[5, 1, 1, 2, 0, 0],
        );
    }

    /// The largest chunks stay within the channel's 64 KiB bound, with every varint at
    /// its longest (the widest slot parameter, the highest seqnos).
    #[test]
    fn the_largest_chunks_fit_a_message() {
        let setup = Setup {
            role: Role::Receiver,
            request: request(MAX_SLOTS_PER_MESSAGE),
            num_slots: u32::MAX,
            mode: Mode::Encrypted,
            keys: Some(SessionKeys {
                aes: [0xAA; 16],
                hmac: [0xBB; 32],
            }),
            peer: "[ffff::ffff]:65535".parse().unwrap(),
            end_delay: Duration::new(u64::MAX, 999_999_999),
            debug_time_offset: f64::MAX,
        };
        let n = enc(&ControlToTester::Setup(Box::new(setup.clone()))).len();
        assert!(n < 64 * 1024, "Setup is {n} bytes");
        let slots = request(MAX_SLOTS_PER_MESSAGE).slots;
        let n = enc(&ControlToTester::Slots(slots)).len();
        assert!(n < 64 * 1024, "Slots is {n} bytes");
        let skips = vec![
            SkipRange {
                first: u32::MAX,
                last: u32::MAX
            };
            MAX_SKIPS_PER_MESSAGE
        ];
        let n = enc(&ControlToTester::Skips(skips.clone())).len();
        assert!(n < 64 * 1024, "Skips is {n} bytes");
        let n = enc(&TesterToControl::SenderSkips(skips)).len();
        assert!(n < 64 * 1024, "SenderSkips is {n} bytes");
        // And the setup round-trips, keys and all.
        let back: ControlToTester = dec(&enc(&ControlToTester::Setup(Box::new(setup.clone()))));
        assert_eq!(back, ControlToTester::Setup(Box::new(setup)));
    }

    #[test]
    fn keys_are_not_in_debug_output() {
        let s = Setup {
            role: Role::Sender,
            request: request(1),
            num_slots: 1,
            mode: Mode::Authenticated,
            keys: Some(SessionKeys {
                aes: [0x5A; 16],
                hmac: [0x5A; 32],
            }),
            peer: "127.0.0.1:1".parse().unwrap(),
            end_delay: Duration::ZERO,
            debug_time_offset: 0.0,
        };
        let text = format!("{s:?}");
        assert!(text.contains("<redacted>"), "{text}");
        assert!(
            !text.contains("aes: [") && !text.contains("hmac: ["),
            "{text}"
        );
    }

    #[test]
    fn chunks_reassemble_and_more_than_announced_is_refused() {
        let items: Vec<u32> = (0..10_000).collect();
        let parts: Vec<Vec<u32>> = chunks(&items, 4096).collect();
        assert_eq!(
            parts.iter().map(Vec::len).collect::<Vec<_>>(),
            [4096, 4096, 1808]
        );
        let mut parts = parts.into_iter();
        let mut g = Gather::new(10_000, parts.next().unwrap()).unwrap();
        assert!(!g.is_complete());
        for p in parts {
            g.push(p).unwrap();
        }
        assert!(g.is_complete());
        assert_eq!(g.clone().into_inner(), items);
        assert_eq!(g.push(vec![1]), Err(TooMany { announced: 10_000 }));
        assert_eq!(chunks::<u32>(&[], 10).count(), 0);
        assert!(Gather::new(1, vec![1, 2]).is_err());
    }
}
