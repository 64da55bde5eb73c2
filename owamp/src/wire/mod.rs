//! Plaintext codecs for every OWAMP-Control message (RFC 4656 §3, protocol.md §1.1–1.3 and §2).
//!
//! The codecs never see crypto: every encoder returns the message's plaintext *without*
//! its HMAC block(s), and every decoder takes plaintext with the HMAC blocks already
//! removed. `crypto::ControlCipher::seal(&[segment, ...])` appends one 16-byte HMAC block
//! after each segment; each message documents its segments ("Segments:") so the caller
//! knows how to split it.
//!
//! Leniency (protocol.md §1.1, §2): fields the reference ignores (Unused, most MBZ fields, the
//! IPVN high nibble, slot MBZ) are ignored here too; checks the reference makes (Accept
//! range, Stop-Sessions pad bytes, skip range order) are made here. Problems that are
//! "parseable but unsupported" in a Request-Session are not decode errors: see
//! [`RequestProblem`] and protocol.md §9.

use crate::types::AcceptCode;

mod command;
mod fetch;
mod request;
mod session;
mod setup;
mod stop;

pub use command::CommandKind;
pub use fetch::{
    decode_records, decode_skip_ranges, encode_records, encode_skip_ranges, records_len,
    skip_ranges_len,
};
pub use request::{
    IPV4_UDP_MAX_PAYLOAD, IPV6_UDP_MAX_PAYLOAD, RawSlot, RequestPreamble, RequestProblem,
    RequestSession, STORED_PREAMBLE_LEN, StoredRequest, max_padding,
};
pub use session::{AcceptSession, FetchAck, FetchSession, StartAck, StartSessions};
pub use setup::{ServerGreeting, ServerStart, SetupResponse};
pub use stop::{SessionStop, StopLimits, StopPiece, StopSessions, StopSessionsDecoder};

/// One AES block: every control message after Server-Start is a whole number of these
/// (protocol.md §0).
pub const BLOCK: usize = 16;

/// Everything that can be wrong with the bytes of a control message. Each variant names
/// the message (and field) so that a log line says what the peer got wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// An Accept field outside 0..=5 (protocol.md §1.7: a protocol error, the connection closes).
    #[error("{message}: Accept value {value} is not in 0..5")]
    BadAccept { message: &'static str, value: u8 },
    /// The command byte does not match the message being decoded.
    #[error("{message}: command byte is {found}, expected {expected}")]
    WrongCommand {
        message: &'static str,
        found: u8,
        expected: u8,
    },
    /// A byte run has the wrong length for the message or field.
    #[error("{message}: {field} is {found} bytes, expected {expected}")]
    BadLength {
        message: &'static str,
        field: &'static str,
        found: usize,
        expected: usize,
    },
    /// A byte run is not a whole number of 16-byte blocks.
    #[error("{message}: {found} bytes is not a whole number of 16-byte blocks")]
    NotBlocks { message: &'static str, found: usize },
    /// A count from the wire exceeds what the caller is prepared to hold.
    #[error("{message}: {field} {found} exceeds the limit {limit}")]
    TooMany {
        message: &'static str,
        field: &'static str,
        found: u64,
        limit: u64,
    },
    /// A skip range whose first sequence number is after its last (protocol.md §2.5).
    #[error("{message}: skip range {index} has first {first} > last {last}")]
    SkipRangeOrder {
        message: &'static str,
        index: usize,
        first: u32,
        last: u32,
    },
    /// Padding that must be zero is not (Stop-Sessions record pad, protocol.md §2.5).
    #[error("{message}: {field} must be zero")]
    NonZeroPadding {
        message: &'static str,
        field: &'static str,
    },
    /// A KeyID longer than the 80-byte field or containing NUL (protocol.md §1.2).
    #[error("Set-Up-Response: KeyID {reason}")]
    BadKeyId { reason: &'static str },
    /// More data fed to, or less data taken from, an incremental decoder than the message has.
    #[error("{message}: {reason}")]
    Sequence {
        message: &'static str,
        reason: &'static str,
    },
}

/// Number of whole 16-byte blocks needed to hold `n_bytes` (rounding up).
pub const fn blocks_for(n_bytes: usize) -> usize {
    n_bytes.div_ceil(BLOCK)
}

/// `n_bytes` rounded up to a whole number of blocks.
pub const fn padded_len(n_bytes: usize) -> usize {
    blocks_for(n_bytes) * BLOCK
}

/// Accept byte to [`AcceptCode`], or the protocol.md §1.7 protocol error naming `message`.
pub(crate) fn accept_from(message: &'static str, value: u8) -> Result<AcceptCode, WireError> {
    AcceptCode::from_u8(value).ok_or(WireError::BadAccept { message, value })
}

// Big-endian field readers over fixed arrays/slices whose length the caller has already
// checked; they return zeros rather than panic if a caller ever gets an offset wrong.
pub(crate) fn be_u16(b: &[u8], off: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(off..off + 2) {
        a.copy_from_slice(s);
    }
    u16::from_be_bytes(a)
}

pub(crate) fn be_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

pub(crate) fn be_num64(b: &[u8], off: usize) -> crate::types::Num64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        a.copy_from_slice(s);
    }
    crate::types::Num64::from_be_bytes(a)
}

pub(crate) fn array16(b: &[u8], off: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    if let Some(s) = b.get(off..off + 16) {
        a.copy_from_slice(s);
    }
    a
}
