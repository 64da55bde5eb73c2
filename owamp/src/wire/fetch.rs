//! The Fetch-Session response stream after a Fetch-Ack with Accept=0 (protocol.md §2.8):
//! the stored Request-Session (see `request`), then the skip ranges, then the data
//! records. Skip ranges and records are each one segment (followed by one HMAC block,
//! possibly over empty input when there are none).
//!
//! Chunking: 16 records are exactly 400 bytes (25 blocks) with no padding, so a large
//! record segment can be produced and consumed in chunks of 16 records (the reference
//! streams 400-byte chunks) by calling these functions per chunk; only the last chunk
//! carries padding. Skip ranges likewise chunk by 2.
//!
//! Decoding is lenient on the zero padding at the end of each segment and on skip range
//! order: the reference client stores what it is sent.

use super::{BLOCK, WireError, be_u32, padded_len};
use crate::types::{PacketRecord, SkipRange};

const SKIP_LEN: usize = 8;

/// Padded byte length of `n` skip ranges (8 bytes each, rounded up to a block).
pub fn skip_ranges_len(n: u32) -> usize {
    usize::try_from(n as u64 * SKIP_LEN as u64)
        .map(padded_len)
        .unwrap_or(usize::MAX)
}

/// Padded byte length of `n` 25-byte records.
pub fn records_len(n: u32) -> usize {
    usize::try_from(n as u64 * PacketRecord::WIRE_LEN as u64)
        .map(padded_len)
        .unwrap_or(usize::MAX)
}

/// Skip ranges, 8 bytes each (First ‖ Last), zero-padded to a block; empty for none.
pub fn encode_skip_ranges(skips: &[SkipRange]) -> Vec<u8> {
    let mut out = Vec::with_capacity(padded_len(skips.len() * SKIP_LEN));
    for s in skips {
        out.extend_from_slice(&s.first.to_be_bytes());
        out.extend_from_slice(&s.last.to_be_bytes());
    }
    out.resize(padded_len(out.len()), 0);
    out
}

/// `n` skip ranges from exactly `skip_ranges_len(n)` bytes.
pub fn decode_skip_ranges(bytes: &[u8], n: u32) -> Result<Vec<SkipRange>, WireError> {
    let expected = skip_ranges_len(n);
    if bytes.len() != expected {
        return Err(WireError::BadLength {
            message: "Fetch skip ranges",
            field: "skip range blocks",
            found: bytes.len(),
            expected,
        });
    }
    Ok(bytes
        .chunks_exact(SKIP_LEN)
        .take(n as usize)
        .map(|c| SkipRange {
            first: be_u32(c, 0),
            last: be_u32(c, 4),
        })
        .collect())
}

/// Records, 25 bytes each, concatenated and zero-padded to a block; empty for none.
pub fn encode_records(records: &[PacketRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(padded_len(records.len() * PacketRecord::WIRE_LEN));
    for r in records {
        out.extend_from_slice(&r.to_bytes());
    }
    out.resize(padded_len(out.len()), 0);
    debug_assert_eq!(out.len() % BLOCK, 0);
    out
}

/// `n` records from exactly `records_len(n)` bytes.
pub fn decode_records(bytes: &[u8], n: u32) -> Result<Vec<PacketRecord>, WireError> {
    let expected = records_len(n);
    if bytes.len() != expected {
        return Err(WireError::BadLength {
            message: "Fetch data records",
            field: "record blocks",
            found: bytes.len(),
            expected,
        });
    }
    let mut out = Vec::with_capacity(n as usize);
    for c in bytes.chunks_exact(PacketRecord::WIRE_LEN).take(n as usize) {
        let mut a = [0u8; PacketRecord::WIRE_LEN];
        a.copy_from_slice(c);
        out.push(PacketRecord::from_bytes(&a));
    }
    Ok(out)
}
