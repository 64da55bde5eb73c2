//! Request-Session as the server reads it from a client (protocol.md §2.1): the 96-byte
//! preamble, the slot blocks, then the semantic checks of protocol.md §9 (`validate`,
//! `into_request`, in every mode).
//!
//! Invariants: nothing panics; a request the checks accept re-encodes to a preamble and
//! slots that decode and check to the very same request, and passes the client-side
//! `RequestSession::validate` for the same mode. The schedule an accepted request drives
//! (RFC 4656 §5, the tester's send loop) is walked too: no panic for any slot values,
//! and random access (`send_time`, also backwards) agrees with the sequential walk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owamp::Mode;
use owamp::schedule::{Schedule, packets_per_second};
use owamp::wire::{RawSlot, RequestPreamble, RequestSession};
use owampd_fuzz::take_array;

fuzz_target!(|data: &[u8]| {
    let (mut pre, rest) = take_array::<96>(data);
    // Command byte 1 most of the time, so the fuzzer does not spend its effort there;
    // an odd low bit of the first byte keeps the wrong-command path covered.
    if data.first().is_some_and(|b| b & 1 == 0) {
        pre[0] = 1;
    }
    let preamble = match RequestSession::decode_preamble(&pre) {
        Ok(p) => p,
        Err(_) => {
            assert_ne!(pre[0], 1, "a preamble with command 1 was refused");
            return;
        }
    };
    // The slot bytes as sent: the declared count is honoured only when the input has
    // that many blocks, as the server would read exactly `slots_len()` bytes.
    let slots = match RequestSession::decode_slots(rest) {
        Ok(s) => s,
        Err(_) => {
            assert_ne!(rest.len() % 16, 0, "whole slot blocks were refused");
            let whole = rest.len() - rest.len() % 16;
            RequestSession::decode_slots(&rest[..whole]).expect("whole blocks decode")
        }
    };
    assert_eq!(slots.len() * 16, rest.len() - rest.len() % 16);

    for mode in [
        None,
        Some(Mode::Open),
        Some(Mode::Authenticated),
        Some(Mode::Encrypted),
    ] {
        let checked = preamble.validate_in_mode(mode);
        if let Ok(req) = preamble.into_request_in_mode(&slots, mode) {
            assert!(
                checked.is_ok(),
                "into_request accepted what validate refused"
            );
            round_trip(&preamble, &slots, &req, mode);
            if mode.is_none() {
                schedule(&req);
            }
        }
    }
});

fn round_trip(pre: &RequestPreamble, slots: &[RawSlot], req: &RequestSession, mode: Option<Mode>) {
    assert_eq!(req.slots.len(), slots.len());
    assert_eq!(
        req.validate_in_mode(mode),
        Ok(()),
        "server-accepted request fails client checks"
    );
    let enc = req.encode_preamble();
    let pre2 = RequestSession::decode_preamble(&enc).expect("own preamble decodes");
    let slots2 = RequestSession::decode_slots(&req.encode_slots()).expect("own slots decode");
    let req2 = pre2
        .into_request_in_mode(&slots2, mode)
        .expect("own encoding passes the checks");
    assert_eq!(&req2, req, "Request-Session round trip");
    // Fields that survive exactly (flags are normalised to 0/1, IPv4 addresses keep
    // their 4 bytes, slot MBZ bytes are dropped).
    assert_eq!(pre2.num_slots, pre.num_slots);
    assert_eq!(pre2.num_packets, pre.num_packets);
    assert_eq!(pre2.sid, pre.sid);
    assert_eq!(pre2.type_p, pre.type_p);
    assert_eq!(pre2.padding, pre.padding);
    assert_eq!(pre2.ipvn, pre.ipvn);
    // The stored form (.owp header, Fetch response) parses back to the same thing.
    let stored = req.encode_stored();
    let back = RequestSession::decode_stored(&stored).expect("own stored form decodes");
    assert_eq!(back.len, stored.len());
    assert_eq!(back.preamble, pre2);
    assert_eq!(back.slots, slots2);
}

/// The sender's schedule for an accepted request: the first packets in order, then
/// random access back over them.
fn schedule(req: &RequestSession) {
    let mut s = Schedule::new(req.sid, req.start_time, &req.slots, req.num_packets);
    let n = req.num_packets.min(64);
    let walk: Vec<_> = (0..n)
        .map(|_| s.next_send_time().expect("a send time below num_packets"))
        .collect();
    if req.num_packets == n {
        assert_eq!(s.next_send_time(), None, "a send time past num_packets");
    }
    for i in (0..n).rev().step_by(7) {
        assert_eq!(
            s.send_time(i),
            walk.get(i as usize).copied(),
            "send_time({i})"
        );
    }
    assert_eq!(s.send_time(req.num_packets), None);
    let rate = packets_per_second(&req.slots);
    assert!(rate > 0.0 || rate.is_nan(), "rate {rate}");
}
