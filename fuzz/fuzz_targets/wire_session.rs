//! The fixed-size session messages (protocol.md §2.2–2.4, §2.6, §2.7) and command dispatch
//! (protocol.md §2.0): Accept-Session, Start-Ack and Fetch-Ack as the client reads them;
//! Start-Sessions and Fetch-Session as the server reads them.
//!
//! Invariants: no panic; errors only where the spec says (Accept > 5, wrong command);
//! decode(encode(decode(x))) == decode(x), and encode keeps every non-MBZ byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owamp::wire::{AcceptSession, CommandKind, FetchAck, FetchSession, StartAck, StartSessions};
use owampd_fuzz::take_array;

fuzz_target!(|data: &[u8]| {
    let (b32a, rest) = take_array::<32>(data);
    let (b16a, rest) = take_array::<16>(rest);
    let (b16b, rest) = take_array::<16>(rest);
    let (b32b, rest) = take_array::<32>(rest);
    let (b16c, _) = take_array::<16>(rest);

    match AcceptSession::decode(&b32a) {
        Ok(m) => {
            let enc = m.encode();
            assert_eq!(enc[0], b32a[0]);
            assert_eq!(enc[2..20], b32a[2..20]);
            assert_eq!(AcceptSession::decode(&enc), Ok(m));
        }
        Err(_) => assert!(b32a[0] > 5, "Accept-Session refused Accept {}", b32a[0]),
    }

    match StartSessions::decode(&b16a) {
        Ok(m) => assert_eq!(StartSessions::decode(&m.encode()), Ok(m)),
        Err(_) => assert_ne!(b16a[0], 2),
    }
    assert_eq!(
        CommandKind::from_block(&b16a).as_byte(),
        b16a[0],
        "command byte round trip"
    );
    assert_eq!(
        matches!(CommandKind::from_block(&b16a), CommandKind::StartSessions),
        b16a[0] == 2
    );

    match StartAck::decode(&b16b) {
        Ok(m) => {
            assert_eq!(m.encode()[0], b16b[0]);
            assert_eq!(StartAck::decode(&m.encode()), Ok(m));
        }
        Err(_) => assert!(b16b[0] > 5),
    }

    match FetchSession::decode(&b32b) {
        Ok(m) => {
            let enc = m.encode();
            assert_eq!(enc[8..32], b32b[8..32]);
            assert_eq!(FetchSession::decode(&enc), Ok(m));
            assert_eq!(
                m.is_full_session(),
                m.begin == 0 && m.end == u32::MAX,
                "full-session test"
            );
        }
        Err(_) => assert_ne!(b32b[0], 4),
    }

    match FetchAck::decode(&b16c) {
        Ok(m) => {
            let enc = m.encode();
            assert_eq!(enc[..2], b16c[..2]);
            assert_eq!(enc[4..], b16c[4..]);
            assert_eq!(FetchAck::decode(&enc), Ok(m));
        }
        Err(_) => assert!(b16c[0] > 5),
    }
});
