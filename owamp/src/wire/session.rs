//! Fixed-size session messages: Accept-Session, Start-Sessions, Start-Ack,
//! Fetch-Session and Fetch-Ack (protocol.md §2.2–2.4, §2.6, §2.7). Each is one segment
//! followed by one HMAC block. MBZ fields are written as zero and ignored on decode.

use super::{WireError, accept_from, array16, be_u16, be_u32};
use crate::types::{AcceptCode, Sid};

/// Accept-Session, server→client (protocol.md §2.2). Segments: one 32-byte segment + HMAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptSession {
    pub accept: AcceptCode,
    /// The server's test port (0 on rejection).
    pub port: u16,
    /// The session's SID (zeros on rejection).
    pub sid: Sid,
}

impl AcceptSession {
    pub const LEN: usize = 32;

    pub fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0] = self.accept.as_u8();
        b[2..4].copy_from_slice(&self.port.to_be_bytes());
        b[4..20].copy_from_slice(&self.sid.0);
        b
    }

    pub fn decode(b: &[u8; 32]) -> Result<AcceptSession, WireError> {
        Ok(AcceptSession {
            accept: accept_from("Accept-Session", b[0])?,
            port: be_u16(b, 2),
            sid: Sid(array16(b, 4)),
        })
    }
}

/// Start-Sessions (command 2), client→server (protocol.md §2.3). Segments: one 16-byte
/// segment + HMAC. Bytes 1..16 are MBZ and unchecked by the reference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartSessions;

impl StartSessions {
    pub const LEN: usize = 16;

    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = 2;
        b
    }

    pub fn decode(b: &[u8; 16]) -> Result<StartSessions, WireError> {
        if b[0] != 2 {
            return Err(WireError::WrongCommand {
                message: "Start-Sessions",
                found: b[0],
                expected: 2,
            });
        }
        Ok(StartSessions)
    }
}

/// Start-Ack, server→client (protocol.md §2.4). Segments: one 16-byte segment + HMAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartAck {
    pub accept: AcceptCode,
}

impl StartAck {
    pub const LEN: usize = 16;

    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.accept.as_u8();
        b
    }

    pub fn decode(b: &[u8; 16]) -> Result<StartAck, WireError> {
        Ok(StartAck {
            accept: accept_from("Start-Ack", b[0])?,
        })
    }
}

/// Fetch-Session (command 4), client→server (protocol.md §2.6). Segments: one 32-byte
/// segment + HMAC. `begin = 0, end = u32::MAX` asks for the complete session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchSession {
    pub begin: u32,
    /// Inclusive.
    pub end: u32,
    pub sid: Sid,
}

impl FetchSession {
    pub const LEN: usize = 32;

    pub fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0] = 4;
        b[8..12].copy_from_slice(&self.begin.to_be_bytes());
        b[12..16].copy_from_slice(&self.end.to_be_bytes());
        b[16..32].copy_from_slice(&self.sid.0);
        b
    }

    pub fn decode(b: &[u8; 32]) -> Result<FetchSession, WireError> {
        if b[0] != 4 {
            return Err(WireError::WrongCommand {
                message: "Fetch-Session",
                found: b[0],
                expected: 4,
            });
        }
        Ok(FetchSession {
            begin: be_u32(b, 8),
            end: be_u32(b, 12),
            sid: Sid(array16(b, 16)),
        })
    }

    /// Whether this asks for the whole session (protocol.md §2.6).
    pub fn is_full_session(&self) -> bool {
        self.begin == 0 && self.end == u32::MAX
    }
}

/// Fetch-Ack, server→client (protocol.md §2.7). Segments: one 16-byte segment + HMAC.
/// The reference sends Finished 1 (normal) or 2 (incomplete); other values are kept raw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchAck {
    pub accept: AcceptCode,
    pub finished: u8,
    pub next_seqno: u32,
    pub num_skips: u32,
    pub num_records: u32,
}

impl FetchAck {
    pub const LEN: usize = 16;

    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.accept.as_u8();
        b[1] = self.finished;
        b[4..8].copy_from_slice(&self.next_seqno.to_be_bytes());
        b[8..12].copy_from_slice(&self.num_skips.to_be_bytes());
        b[12..16].copy_from_slice(&self.num_records.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8; 16]) -> Result<FetchAck, WireError> {
        Ok(FetchAck {
            accept: accept_from("Fetch-Ack", b[0])?,
            finished: b[1],
            next_seqno: be_u32(b, 4),
            num_skips: be_u32(b, 8),
            num_records: be_u32(b, 12),
        })
    }

    /// The reply to a refused fetch: every field but Accept is zero (protocol.md §2.7).
    pub fn reject(accept: AcceptCode) -> FetchAck {
        FetchAck {
            accept,
            finished: 0,
            next_seqno: 0,
            num_skips: 0,
            num_records: 0,
        }
    }
}
