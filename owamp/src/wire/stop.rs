//! Stop-Sessions (command 3, either direction; RFC 4656 §3.8, protocol.md §2.5).
//!
//! Segments: the header block and every session-description block form one segment,
//! followed by one HMAC block.
//!
//! Layout: header (3, Accept, MBZ, N, MBZ), then per session a SID block and a body of
//! `8 + 8K` bytes (Next Seqno, K, K skip ranges) padded with 8 zero bytes when K is even.
//! Because N and each K are learned while reading, decoding is the incremental
//! [`StopSessionsDecoder`], bounded by caller-supplied [`StopLimits`]. K is bounded only
//! by the session's Number of Packets (up to 2^32−1), so a server does not keep the
//! ranges: its [`StopSessionsDecoder::streaming`] decoder hands them out as
//! [`StopPiece`]s, one read at a time.

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

/// What a streaming decoder has read since it was last asked ([`StopSessionsDecoder::take_pieces`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopPiece {
    /// A session record begins.
    Record {
        sid: Sid,
        next_seqno: u32,
        num_skips: u32,
    },
    /// Skip ranges of the record last begun, in their order.
    Skips(Vec<SkipRange>),
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
        /// Skip ranges read so far (kept in `session.skips` unless streaming).
        read: u32,
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
    /// `Some` for a streaming decoder: what was read and not yet taken. The records it
    /// returns from [`StopSessionsDecoder::finish`] then have no skip ranges.
    pieces: Option<Vec<StopPiece>>,
}

impl StopSessionsDecoder {
    /// Like [`StopSessionsDecoder::new`], but the decoder keeps no skip range: call
    /// [`StopSessionsDecoder::take_pieces`] after each [`StopSessionsDecoder::feed`], so
    /// that what is held is bounded by what one feed carries, whatever K says.
    pub fn streaming(
        header: &[u8; 16],
        limits: StopLimits,
    ) -> Result<StopSessionsDecoder, WireError> {
        let mut d = StopSessionsDecoder::new(header, limits)?;
        d.pieces = Some(Vec::new());
        Ok(d)
    }

    /// A streaming decoder's records and skip ranges read since the last call, in order
    /// (always empty for a decoder from [`StopSessionsDecoder::new`]).
    pub fn take_pieces(&mut self) -> Vec<StopPiece> {
        self.pieces.as_mut().map(std::mem::take).unwrap_or_default()
    }

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
            pieces: None,
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
                k,
                read,
                pad_pending,
                ..
            } => {
                let units =
                    (*k as usize).saturating_sub(*read as usize) + usize::from(*pad_pending);
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
                let keep = match self.pieces.as_mut() {
                    Some(p) => {
                        p.push(StopPiece::Record {
                            sid,
                            next_seqno,
                            num_skips: k,
                        });
                        0
                    }
                    None => k as usize,
                };
                let mut st = State::Skips {
                    session: SessionStop {
                        sid,
                        next_seqno,
                        skips: Vec::with_capacity(keep.min(PREALLOC_CAP)),
                    },
                    k,
                    read: 0,
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
            read,
            pad_pending,
        } = st
        else {
            return Err(WireError::Sequence {
                message: MSG,
                reason: "skip range outside a session record",
            });
        };
        if *read < *k {
            let r = SkipRange {
                first: be_u32(u, 0),
                last: be_u32(u, 4),
            };
            if r.first > r.last {
                return Err(WireError::SkipRangeOrder {
                    message: MSG,
                    index: *read as usize,
                    first: r.first,
                    last: r.last,
                });
            }
            *read += 1;
            match self.pieces.as_mut() {
                Some(p) => match p.last_mut() {
                    Some(StopPiece::Skips(v)) => v.push(r),
                    _ => p.push(StopPiece::Skips(vec![r])),
                },
                None => session.skips.push(r),
            }
        } else if *pad_pending {
            if u.iter().any(|&b| b != 0) {
                return Err(WireError::NonZeroPadding {
                    message: MSG,
                    field: "session record padding",
                });
            }
            *pad_pending = false;
        }
        if *read == *k && !*pad_pending {
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

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: StopLimits = StopLimits {
        max_sessions: 4,
        max_skips: 100_000,
    };

    fn message() -> StopSessions {
        let skips = |n: u32, base: u32| -> Vec<SkipRange> {
            (0..n)
                .map(|i| SkipRange {
                    first: base + 2 * i,
                    last: base + 2 * i,
                })
                .collect()
        };
        StopSessions {
            accept: AcceptCode::Ok,
            sessions: vec![
                SessionStop {
                    sid: Sid([1; 16]),
                    next_seqno: 50_000,
                    skips: skips(9_001, 0),
                },
                SessionStop {
                    sid: Sid([2; 16]),
                    next_seqno: 7,
                    skips: vec![],
                },
                SessionStop {
                    sid: Sid([3; 16]),
                    next_seqno: 40_000,
                    skips: skips(20_000, 1),
                },
            ],
        }
    }

    /// A streaming decoder yields the same records and ranges as the whole-message one,
    /// in pieces no bigger than one feed, and keeps none of the ranges itself.
    #[test]
    fn streaming_yields_every_range_in_pieces_bounded_by_a_feed() {
        let msg = message();
        let bytes = msg.encode();
        let mut d =
            StopSessionsDecoder::streaming(bytes[..16].try_into().unwrap(), LIMITS).unwrap();
        let mut rebuilt: Vec<SessionStop> = Vec::new();
        let mut at = 16;
        while d.blocks_needed() > 0 {
            let n = d.blocks_needed().min(64);
            d.feed(&bytes[at..at + n * BLOCK]).unwrap();
            at += n * BLOCK;
            for p in d.take_pieces() {
                match p {
                    StopPiece::Record {
                        sid,
                        next_seqno,
                        num_skips,
                    } => {
                        rebuilt.push(SessionStop {
                            sid,
                            next_seqno,
                            skips: Vec::with_capacity(num_skips as usize),
                        });
                    }
                    StopPiece::Skips(v) => {
                        assert!(v.len() <= 64 * 2, "a piece of {} ranges", v.len());
                        rebuilt.last_mut().unwrap().skips.extend(v);
                    }
                }
            }
        }
        assert_eq!(at, bytes.len());
        let done = d.finish().unwrap();
        assert!(done.sessions.iter().all(|s| s.skips.is_empty()));
        assert_eq!(done.sessions.len(), 3);
        assert_eq!(rebuilt, msg.sessions);
    }

    #[test]
    fn whole_message_decoder_still_keeps_the_ranges() {
        let msg = message();
        assert_eq!(StopSessions::decode(&msg.encode(), LIMITS).unwrap(), msg);
    }
}
