//! Connection set-up messages: Server-Greeting, Set-Up-Response and Server-Start
//! (RFC 4656 §3.1, protocol.md §1.1–1.3). None of them carries an HMAC block.

use super::{WireError, array16, be_num64, be_u32};
use crate::types::{ModeSet, Num64};

/// Server-Greeting, 64 octets, server→client, never encrypted (protocol.md §1.1).
///
/// Segments: one 64-byte clear message, no HMAC.
/// Decoding ignores Unused (0..12) and MBZ (52..64), as the reference client does.
/// `modes` is kept raw (including non-OWAMP bits); a zero Modes means the server will
/// close, and a too-small `count` is the client's policy decision (protocol.md §1.1, "Ours").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerGreeting {
    pub modes: ModeSet,
    pub challenge: [u8; 16],
    pub salt: [u8; 16],
    pub count: u32,
}

impl ServerGreeting {
    pub const LEN: usize = 64;

    pub fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[12..16].copy_from_slice(&self.modes.0.to_be_bytes());
        b[16..32].copy_from_slice(&self.challenge);
        b[32..48].copy_from_slice(&self.salt);
        b[48..52].copy_from_slice(&self.count.to_be_bytes());
        b
    }

    /// Never fails today: every 64-byte string is a greeting the reference client would
    /// accept. The `Result` keeps room for stricter checks without an API change.
    pub fn decode(b: &[u8; 64]) -> Result<ServerGreeting, WireError> {
        Ok(ServerGreeting {
            modes: ModeSet(be_u32(b, 12)),
            challenge: array16(b, 16),
            salt: array16(b, 32),
            count: be_u32(b, 48),
        })
    }
}

/// Set-Up-Response, 164 octets, client→server, in clear apart from the Token which the
/// client encrypted with the PBKDF2 key (protocol.md §1.2).
///
/// Segments: one 164-byte clear message, no HMAC. `mode` is raw: the server checks that
/// it is exactly 1, 2 or 4 (`Mode::from_bit`) and closes otherwise (protocol.md §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupResponse {
    pub mode: u32,
    pub key_id: [u8; 80],
    pub token: [u8; 64],
    pub client_iv: [u8; 16],
}

impl SetupResponse {
    pub const LEN: usize = 164;

    pub fn encode(&self) -> [u8; 164] {
        let mut b = [0u8; 164];
        b[0..4].copy_from_slice(&self.mode.to_be_bytes());
        b[4..84].copy_from_slice(&self.key_id);
        b[84..148].copy_from_slice(&self.token);
        b[148..164].copy_from_slice(&self.client_iv);
        b
    }

    /// Never fails: all fields are opaque here (the Mode is validated by the caller).
    pub fn decode(b: &[u8; 164]) -> Result<SetupResponse, WireError> {
        let mut key_id = [0u8; 80];
        key_id.copy_from_slice(&b[4..84]);
        let mut token = [0u8; 64];
        token.copy_from_slice(&b[84..148]);
        Ok(SetupResponse {
            mode: be_u32(b, 0),
            key_id,
            token,
            client_iv: array16(b, 148),
        })
    }

    /// The KeyID field for a user name: NUL-padded to 80 bytes, no terminator when the
    /// name is exactly 80 bytes (the reference's `strncpy`, protocol.md §1.2). A name longer
    /// than 80 bytes or containing NUL cannot be represented and is refused.
    pub fn key_id_from_str(name: &str) -> Result<[u8; 80], WireError> {
        let bytes = name.as_bytes();
        if bytes.len() > 80 {
            return Err(WireError::BadKeyId {
                reason: "is longer than 80 bytes",
            });
        }
        if bytes.contains(&0) {
            return Err(WireError::BadKeyId {
                reason: "contains a NUL byte",
            });
        }
        let mut out = [0u8; 80];
        out[..bytes.len()].copy_from_slice(bytes);
        Ok(out)
    }

    /// The KeyID as text: bytes up to the first NUL (or all 80), invalid UTF-8 replaced.
    pub fn key_id_str(&self) -> String {
        let end = self.key_id.iter().position(|&c| c == 0).unwrap_or(80);
        String::from_utf8_lossy(self.key_id.get(..end).unwrap_or(&[])).into_owned()
    }
}

/// Server-Start, 48 octets, server→client (protocol.md §1.3).
///
/// Segments: bytes 0..32 are always clear ([`ServerStart::encode_clear`]); bytes 32..48
/// ([`ServerStart::encode_tail`]) are the first block of the server→client CBC stream in
/// authenticated/encrypted modes when Accept=0, fed to the send-HMAC but followed by **no**
/// HMAC block (it is covered by the next server message's HMAC). With Accept≠0 the tail
/// is sent in clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerStart {
    /// Raw Accept value; `decode` guarantees it is 0..=5.
    pub accept: u8,
    pub server_iv: [u8; 16],
    pub start_time: Num64,
}

impl ServerStart {
    pub const LEN: usize = 48;

    /// Bytes 0..32: 15 MBZ, Accept, Server-IV.
    pub fn encode_clear(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[15] = self.accept;
        b[16..32].copy_from_slice(&self.server_iv);
        b
    }

    /// Bytes 32..48: Start-Time and 8 MBZ.
    pub fn encode_tail(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.start_time.to_be_bytes());
        b
    }

    /// MBZ bytes are ignored (the reference client does not check them); an Accept
    /// above 5 is a protocol error (protocol.md §1.3).
    pub fn decode(clear: &[u8; 32], tail: &[u8; 16]) -> Result<ServerStart, WireError> {
        let accept = clear[15];
        super::accept_from("Server-Start", accept)?;
        Ok(ServerStart {
            accept,
            server_iv: array16(clear, 16),
            start_time: be_num64(tail, 0),
        })
    }

    /// The Accept field as a typed code (always `Some` after `decode`).
    pub fn accept_code(&self) -> Option<crate::types::AcceptCode> {
        crate::types::AcceptCode::from_u8(self.accept)
    }
}
