//! Stop-Sessions (command 3, either direction; RFC 4656 §3.8, spec §2.5).
//!
//! Segments: the header block and every session-description block form one segment,
//! followed by one HMAC block.
//!
//! Layout: header (3, Accept, MBZ, N, MBZ), then per session a SID block and a body of
//! `8 + 8K` bytes (Next Seqno, K, K skip ranges) padded with 8 zero bytes when K is even.
//! Because N and each K are learned while reading, decoding is the incremental
//! [`StopSessionsDecoder`], bounded by caller-supplied [`StopLimits`].

use serde::{Deserialize, Serialize};

use super::{BLOCK, WireError, accept_from, array16, be_u32};
use crate::types::{AcceptCode, Sid, SkipRange};

const MSG: &str = "Stop-Sessions";
/// Preallocate at most this many elements, whatever the (limited) counts say.
const PREALLOC_CAP: usize = 1024;

/// One session description: the sender's view of a session it sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStop {
    pub sid: Sid,
    pub next_seqno: u32,
    pub skips: Vec<SkipRange>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopSessions {
    pub accept: AcceptCode,
    pub sessions: Vec<SessionStop>,
}

impl StopSessions {
    /// Header block and all session records (without the HMAC block).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BLOCK * (1 + 2 * self.sessions.len()));
        let mut hdr = [0u8; BLOCK];
        hdr[0] = 3;
        hdr[1] = self.accept.as_u8();
        let n = u32::try_from(self.sessions.len()).unwrap_or(u32::MAX);
        hdr[4..8].copy_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&hdr);
        for s in &self.sessions {
            out.extend_from_slice(&s.sid.0);
            out.extend_from_slice(&s.next_seqno.to_be_bytes());
            let k = u32::try_from(s.skips.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&k.to_be_bytes());
            for r in &s.skips {
                out.extend_from_slice(&r.first.to_be_bytes());
                out.extend_from_slice(&r.last.to_be_bytes());
            }
            if s.skips.len() % 2 == 0 {
                out.extend_from_slice(&[0u8; 8]);
            }
        }
        out
    }

    /// Convenience: decode a complete message (header + records, no HMAC) in one go.
    pub fn decode(bytes: &[u8], limits: StopLimits) -> Result<StopSessions, WireError> {
        let header = bytes
            .get(..BLOCK)
            .and_then(|h| <&[u8; BLOCK]>::try_from(h).ok())
            .ok_or(WireError::BadLength {
                message: MSG,
                field: "header block",
                found: bytes.len(),
                expected: BLOCK,
            })?;
        let mut d = StopSessionsDecoder::new(header, limits)?;
        d.feed(bytes.get(BLOCK..).unwrap_or(&[]))?;
        d.finish()
    }
}

/// Bounds on what a peer may make us hold. The control process knows the sessions of
/// the connection: `max_sessions` = number of its receive sessions (the reference
/// requires N to equal it exactly), `max_skips` = the largest Number of Packets among
/// them (a skip range holds at least one packet, so K ≤ npackets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopLimits {
    pub max_sessions: u32,
    pub max_skips: u32,
}

#[derive(Clone, Debug)]
enum State {
    /// Next block is a SID.
    Sid,
    /// Next block starts a body: Next Seqno, K, first range or pad.
    BodyHead {
        sid: Sid,
    },
    /// Reading skip ranges (8 bytes each) then the pad unit if K is even.
    Skips {
        session: SessionStop,
        k: u32,
        /// Whether the zero pad unit has still to come.
        pad_pending: bool,
    },
    Done,
}

/// Incremental Stop-Sessions decoder. Read the header block, call [`new`], then
/// repeatedly read [`blocks_needed`] blocks and [`feed`] them until it returns 0, then
/// [`finish`]. Feeding fewer blocks than asked is allowed; feeding more than the
/// message has is an error. After any error the decoder is spent: drop it.
///
/// [`new`]: StopSessionsDecoder::new
/// [`blocks_needed`]: StopSessionsDecoder::blocks_needed
/// [`feed`]: StopSessionsDecoder::feed
/// [`finish`]: StopSessionsDecoder::finish
#[derive(Clone, Debug)]
pub struct StopSessionsDecoder {
    accept: AcceptCode,
    n: u32,
    limits: StopLimits,
    sessions: Vec<SessionStop>,
    state: State,
}

impl StopSessionsDecoder {
    /// Checks the header: command 3, Accept ≤ 5, N ≤ `limits.max_sessions`.
    /// The MBZ bytes are ignored.
    pub fn new(header: &[u8; 16], limits: StopLimits) -> Result<StopSessionsDecoder, WireError> {
        if header[0] != 3 {
            return Err(WireError::WrongCommand {
                message: MSG,
                found: header[0],
                expected: 3,
            });
        }
        let accept = accept_from(MSG, header[1])?;
        let n = be_u32(header, 4);
        if n > limits.max_sessions {
            return Err(WireError::TooMany {
                message: MSG,
                field: "Number of Sessions",
                found: n as u64,
                limit: limits.max_sessions as u64,
            });
        }
        let state = if n == 0 { State::Done } else { State::Sid };
        Ok(StopSessionsDecoder {
            accept,
            n,
            limits,
            sessions: Vec::with_capacity((n as usize).min(PREALLOC_CAP)),
            state,
        })
    }

    /// The peer's Accept from the header (known before the records are read).
    pub fn accept(&self) -> AcceptCode {
        self.accept
    }

    /// Number of Sessions from the header.
    pub fn num_sessions(&self) -> u32 {
        self.n
    }

    /// How many blocks can certainly be read next without reading past the message;
    /// 0 once the message is complete.
    pub fn blocks_needed(&self) -> usize {
        match &self.state {
            State::Sid | State::BodyHead { .. } => 1,
            State::Skips {
                session,
                k,
                pad_pending,
            } => {
                let units =
                    (*k as usize).saturating_sub(session.skips.len()) + usize::from(*pad_pending);
                units.div_ceil(2)
            }
            State::Done => 0,
        }
    }

    /// Consumes whole blocks.
    pub fn feed(&mut self, blocks: &[u8]) -> Result<(), WireError> {
        if !blocks.len().is_multiple_of(BLOCK) {
            return Err(WireError::NotBlocks {
                message: MSG,
                found: blocks.len(),
            });
        }
        for blk in blocks.chunks_exact(BLOCK) {
            self.block(blk)?;
        }
        Ok(())
    }

    fn block(&mut self, blk: &[u8]) -> Result<(), WireError> {
        let state = std::mem::replace(&mut self.state, State::Done);
        self.state = match state {
            State::Done => {
                return Err(WireError::Sequence {
                    message: MSG,
                    reason: "more blocks fed than the message has",
                });
            }
            State::Sid => State::BodyHead {
                sid: Sid(array16(blk, 0)),
            },
            State::BodyHead { sid } => {
                let next_seqno = be_u32(blk, 0);
                let k = be_u32(blk, 4);
                if k > self.limits.max_skips {
                    return Err(WireError::TooMany {
                        message: MSG,
                        field: "Number of Skip Ranges",
                        found: k as u64,
                        limit: self.limits.max_skips as u64,
                    });
                }
                let mut st = State::Skips {
                    session: SessionStop {
                        sid,
                        next_seqno,
                        skips: Vec::with_capacity((k as usize).min(PREALLOC_CAP)),
                    },
                    k,
                    pad_pending: k.is_multiple_of(2),
                };
                self.unit(&mut st, blk.get(8..16).unwrap_or(&[]))?;
                st
            }
            mut st @ State::Skips { .. } => {
                self.unit(&mut st, blk.get(0..8).unwrap_or(&[]))?;
                self.unit(&mut st, blk.get(8..16).unwrap_or(&[]))?;
                st
            }
        };
        Ok(())
    }

    /// One 8-byte unit of a session body after its head: a skip range or the pad.
    /// Moves to the next session (or Done) once the body is complete.
    fn unit(&mut self, st: &mut State, u: &[u8]) -> Result<(), WireError> {
        let State::Skips {
            session,
            k,
            pad_pending,
        } = st
        else {
            return Err(WireError::Sequence {
                message: MSG,
                reason: "skip range outside a session record",
            });
        };
        if (session.skips.len() as u64) < *k as u64 {
            let r = SkipRange {
                first: be_u32(u, 0),
                last: be_u32(u, 4),
            };
            if r.first > r.last {
                return Err(WireError::SkipRangeOrder {
                    message: MSG,
                    index: session.skips.len(),
                    first: r.first,
                    last: r.last,
                });
            }
            session.skips.push(r);
        } else if *pad_pending {
            if u.iter().any(|&b| b != 0) {
                return Err(WireError::NonZeroPadding {
                    message: MSG,
                    field: "session record padding",
                });
            }
            *pad_pending = false;
        }
        if session.skips.len() as u64 == *k as u64 && !*pad_pending {
            let done = std::mem::replace(
                session,
                SessionStop {
                    sid: Sid::default(),
                    next_seqno: 0,
                    skips: Vec::new(),
                },
            );
            self.sessions.push(done);
            *st = if self.sessions.len() as u64 >= self.n as u64 {
                State::Done
            } else {
                State::Sid
            };
        }
        Ok(())
    }

    /// Whether every record has been read.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Done)
    }

    pub fn finish(self) -> Result<StopSessions, WireError> {
        if !self.is_complete() {
            return Err(WireError::Sequence {
                message: MSG,
                reason: "message incomplete",
            });
        }
        Ok(StopSessions {
            accept: self.accept,
            sessions: self.sessions,
        })
    }
}
