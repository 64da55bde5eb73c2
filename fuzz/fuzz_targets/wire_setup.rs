//! Connection set-up messages (protocol.md §1.1–1.3): Server-Greeting (client reads it from the
//! server), Set-Up-Response (server reads it from the client), Server-Start (client).
//!
//! Invariants: decoding never panics; what decodes re-encodes to the input with only the
//! ignored Unused/MBZ bytes zeroed, and decodes again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owamp::wire::{ServerGreeting, ServerStart, SetupResponse};
use owampd_fuzz::take_array;

fuzz_target!(|data: &[u8]| {
    let (g, rest) = take_array::<64>(data);
    let (s, rest) = take_array::<164>(rest);
    let (clear, rest) = take_array::<32>(rest);
    let (tail, _) = take_array::<16>(rest);

    // Server-Greeting: bytes 0..12 Unused and 52..64 MBZ are ignored.
    if let Ok(greeting) = ServerGreeting::decode(&g) {
        let enc = greeting.encode();
        assert_eq!(enc[12..52], g[12..52], "greeting fields changed");
        assert!(enc[..12].iter().chain(&enc[52..]).all(|&b| b == 0));
        assert_eq!(ServerGreeting::decode(&enc).ok(), Some(greeting));
    }

    // Set-Up-Response: every byte is a field.
    if let Ok(resp) = SetupResponse::decode(&s) {
        assert_eq!(resp.encode(), s, "Set-Up-Response round trip");
        // KeyID as text, then back: exact when it is UTF-8 without NUL inside.
        let name = resp.key_id_str();
        if let Ok(field) = SetupResponse::key_id_from_str(&name) {
            let end = resp.key_id.iter().position(|&c| c == 0).unwrap_or(80);
            if std::str::from_utf8(&resp.key_id[..end]).is_ok() {
                assert_eq!(field[..end], resp.key_id[..end], "KeyID text round trip");
            }
        }
    }

    // Server-Start: an Accept above 5 is the only error; MBZ bytes are ignored.
    match ServerStart::decode(&clear, &tail) {
        Ok(start) => {
            assert!(clear[15] <= 5);
            assert!(start.accept_code().is_some());
            let (c2, t2) = (start.encode_clear(), start.encode_tail());
            assert_eq!(c2[15..], clear[15..]);
            assert_eq!(t2[..8], tail[..8]);
            assert_eq!(ServerStart::decode(&c2, &t2).ok(), Some(start));
        }
        Err(_) => assert!(clear[15] > 5, "Server-Start refused a valid Accept"),
    }
});
