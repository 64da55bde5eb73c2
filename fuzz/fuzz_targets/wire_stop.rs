//! Stop-Sessions (protocol.md §2.5) through the incremental `StopSessionsDecoder`, as the server
//! reads it from a client (and the client from a server): header, then the session
//! records fed in arbitrary chunks, under arbitrary `StopLimits`.
//!
//! Invariants:
//! - no panic, whatever the counts say (N and K are bounded only by the limits);
//! - chunking does not matter: feeding the same blocks in any chunks gives the same
//!   result, error included, as `StopSessions::decode` of the same bytes in one go;
//! - a reader that follows `blocks_needed()` never reads past the message and ends
//!   exactly when `is_complete()`;
//! - a decoded message re-encodes to the input bytes (header MBZ zeroed) and decodes
//!   back to itself.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use owamp::wire::{StopLimits, StopSessions, StopSessionsDecoder, WireError};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(limits) = limits(&mut u) else { return };
    let Ok(header) = u.arbitrary::<[u8; 16]>() else {
        return;
    };
    let Ok(chunks) = u.arbitrary::<[u8; 8]>() else {
        return;
    };
    let body = u.take_rest();
    let body = &body[..body.len() - body.len() % 16];

    // A reader that asks the decoder how much to read, as the control process does.
    let driven = follow_blocks_needed(&header, body, limits);
    // The same bytes in arbitrary chunks (possibly more than asked for).
    let (fed, chunked) = arbitrary_chunks(&header, body, limits, &chunks);

    let mut whole = header.to_vec();
    whole.extend_from_slice(&body[..fed]);
    let one_go = StopSessions::decode(&whole, limits);
    assert_eq!(chunked, one_go, "chunked and one-shot decoding disagree");

    if let Some((used, result)) = driven {
        let mut msg = header.to_vec();
        msg.extend_from_slice(&body[..used]);
        assert_eq!(
            result,
            StopSessions::decode(&msg, limits),
            "driven vs one-shot"
        );
        if let Ok(stop) = result {
            let enc = stop.encode();
            let mut expect = msg.clone();
            expect[2] = 0;
            expect[3] = 0;
            expect[8..16].fill(0);
            assert_eq!(enc, expect, "Stop-Sessions re-encoding");
            assert_eq!(StopSessions::decode(&enc, limits), Ok(stop), "round trip");
        }
    }
});

fn limits(u: &mut Unstructured<'_>) -> arbitrary::Result<StopLimits> {
    // Mostly small limits, so that messages within them are reachable; sometimes any
    // u32, so that huge declared counts are tried against the preallocation caps.
    let small = u.arbitrary::<bool>()?;
    let (s, k) = if small {
        (
            u32::from(u.arbitrary::<u8>()? % 8),
            u32::from(u.arbitrary::<u8>()? % 16),
        )
    } else {
        (u.arbitrary()?, u.arbitrary()?)
    };
    Ok(StopLimits {
        max_sessions: s,
        max_skips: k,
    })
}

/// Reads exactly `blocks_needed()` blocks at a time. `None` if the header is refused;
/// else the bytes of `body` consumed and the result.
fn follow_blocks_needed(
    header: &[u8; 16],
    body: &[u8],
    limits: StopLimits,
) -> Option<(usize, Result<StopSessions, WireError>)> {
    let mut d = StopSessionsDecoder::new(header, limits).ok()?;
    let mut used = 0;
    loop {
        let need = d.blocks_needed();
        assert_eq!(need == 0, d.is_complete(), "blocks_needed vs is_complete");
        if need == 0 {
            return Some((used, d.finish()));
        }
        let Some(next) = body.get(used..used + need * 16) else {
            // The peer hung up mid-message.
            return Some((used, d.finish()));
        };
        used += next.len();
        if let Err(e) = d.feed(next) {
            return Some((used, Err(e)));
        }
    }
}

/// Feeds `body` in chunks of sizes taken from `sizes` (in blocks, 0 allowed) until it
/// runs out or the decoder reports an error. Returns the bytes fed and the result.
fn arbitrary_chunks(
    header: &[u8; 16],
    body: &[u8],
    limits: StopLimits,
    sizes: &[u8; 8],
) -> (usize, Result<StopSessions, WireError>) {
    let mut d = match StopSessionsDecoder::new(header, limits) {
        Ok(d) => d,
        Err(e) => return (0, Err(e)),
    };
    let mut fed = 0;
    let mut i = 0;
    while fed < body.len() {
        // Empty feeds are allowed and tried, but every round of 8 chunks moves on by
        // at least one block so that the loop is bounded by the body length.
        let slot = i % sizes.len();
        let blocks = usize::from(sizes[slot] % 8).max(usize::from(slot == sizes.len() - 1));
        i += 1;
        let end = (fed + blocks * 16).min(body.len());
        let chunk = &body[fed..end];
        fed = end;
        if let Err(e) = d.feed(chunk) {
            return (fed, Err(e));
        }
    }
    (fed, d.finish())
}
