//! The stored Request-Session (protocol.md §7.7, §2.8) as a client reads it from a Fetch-Session
//! response and as `.owp` readers find it in a file header: arbitrary bytes, possibly
//! followed by other data, possibly declaring far more slots than are present.
//!
//! Invariants: no panic and no allocation beyond the input (a huge slot count must be a
//! length error); on success `len` is 112 + 16 × slots + 16 and within the input, and a
//! request that passes the checks re-encodes to the same stored bytes up to the fields
//! the decoder ignores.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owamp::wire::{RequestSession, STORED_PREAMBLE_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(stored) = RequestSession::decode_stored(data) else {
        return;
    };
    assert!(stored.len <= data.len(), "claimed more bytes than given");
    assert_eq!(
        stored.len,
        STORED_PREAMBLE_LEN + 16 * stored.slots.len() + 16
    );
    assert_eq!(
        stored.slots.len() as u64,
        u64::from(stored.preamble.num_slots)
    );
    if let Ok(req) = stored.preamble.into_request(&stored.slots) {
        let enc = req.encode_stored();
        assert_eq!(enc.len(), stored.len);
        let again = RequestSession::decode_stored(&enc).expect("own stored form decodes");
        assert_eq!(
            again.preamble.into_request(&again.slots).as_ref(),
            Ok(&req),
            "stored Request-Session round trip"
        );
    }
});
