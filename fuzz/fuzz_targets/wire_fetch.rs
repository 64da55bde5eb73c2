//! The Fetch-Session response stream as the client reads it (protocol.md §2.8): the skip range
//! segment and the data record segment, each sized by counts from the Fetch-Ack.
//!
//! Invariants: no panic and no allocation driven by a count the bytes do not back (a
//! count must match the byte length exactly, or it is a length error); what decodes
//! re-encodes to the input with the block padding zeroed, and decodes back to itself;
//! chunked decoding (16 records = 400 bytes, 2 ranges = 16 bytes, protocol.md §2.8) agrees
//! with decoding in one go.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use owamp::wire::{
    decode_records, decode_skip_ranges, encode_records, encode_skip_ranges, records_len,
    skip_ranges_len,
};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(which) = u.arbitrary::<u8>() else {
        return;
    };
    let Ok(raw_count) = u.arbitrary::<u32>() else {
        return;
    };
    let bytes = u.take_rest();

    if which & 1 == 0 {
        // The count as the peer claims it, or (mostly) one the bytes can back.
        let n = if which & 2 == 0 {
            raw_count
        } else {
            // An odd count pads its last block: try both counts a length can hold.
            ((bytes.len() / 8) as u32).saturating_sub(u32::from(which >> 2 & 1))
        };
        skips(bytes, n);
    } else {
        let n = if which & 2 == 0 {
            raw_count
        } else {
            (bytes.len() / 25) as u32
        };
        records(bytes, n);
    }
});

fn skips(bytes: &[u8], n: u32) {
    let Ok(ranges) = decode_skip_ranges(bytes, n) else {
        assert_ne!(
            bytes.len(),
            skip_ranges_len(n),
            "right-length skip ranges refused"
        );
        return;
    };
    assert_eq!(ranges.len() as u64, u64::from(n));
    let enc = encode_skip_ranges(&ranges);
    assert_eq!(enc.len(), bytes.len());
    let used = ranges.len() * 8;
    assert_eq!(enc[..used], bytes[..used], "skip range bytes changed");
    assert!(
        enc[used..].iter().all(|&b| b == 0),
        "skip range padding not zero"
    );
    assert_eq!(decode_skip_ranges(&enc, n).as_ref(), Ok(&ranges));
    // In chunks of 2 ranges (one block each).
    let mut chunked = Vec::new();
    for (i, c) in enc.chunks(16).enumerate() {
        let k = (ranges.len() - 2 * i).min(2) as u32;
        chunked.extend(decode_skip_ranges(c, k).expect("a 2-range chunk decodes"));
    }
    assert_eq!(chunked, ranges, "chunked skip ranges");
}

fn records(bytes: &[u8], n: u32) {
    let Ok(recs) = decode_records(bytes, n) else {
        assert_ne!(bytes.len(), records_len(n), "right-length records refused");
        return;
    };
    assert_eq!(recs.len() as u64, u64::from(n));
    let enc = encode_records(&recs);
    assert_eq!(enc.len(), bytes.len());
    let used = recs.len() * 25;
    assert_eq!(enc[..used], bytes[..used], "record bytes changed");
    assert!(
        enc[used..].iter().all(|&b| b == 0),
        "record padding not zero"
    );
    assert_eq!(decode_records(&enc, n).as_ref(), Ok(&recs));
    // In chunks of 16 records (400 bytes, 25 blocks, no padding but in the last).
    let mut chunked = Vec::new();
    for (i, c) in enc.chunks(400).enumerate() {
        let k = (recs.len() - 16 * i).min(16) as u32;
        chunked.extend(decode_records(c, k).expect("a 16-record chunk decodes"));
    }
    assert_eq!(chunked, recs, "chunked records");
}
