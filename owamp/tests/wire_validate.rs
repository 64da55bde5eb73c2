//! Every `RequestProblem` (protocol.md §9: parseable but unsupported → Accept=3), found both on
//! a decoded preamble (server side) and on a request about to be sent (client side).

use owamp::wire::*;
use owamp::{AcceptCode, Mode, Num64, Sid, Slot, SlotKind};

fn good() -> RequestSession {
    RequestSession {
        conf_sender: false,
        conf_receiver: true,
        num_packets: 10,
        sender_port: 5000,
        receiver_port: 0,
        sender_addr: "127.0.0.1".parse().unwrap(),
        receiver_addr: "127.0.0.1".parse().unwrap(),
        sid: Sid::default(),
        padding: 0,
        start_time: Num64(1 << 40),
        timeout: Num64(2 << 32),
        type_p: 0,
        slots: vec![Slot {
            kind: SlotKind::Exponential,
            param: Num64(0x1999_99a0),
        }],
    }
}

/// Encodes, decodes and returns the server-side verdict.
fn server_verdict(r: &RequestSession) -> Result<RequestSession, RequestProblem> {
    let p = RequestSession::decode_preamble(&r.encode_preamble()).expect("preamble decodes");
    let slots = RequestSession::decode_slots(&r.encode_slots()).expect("slots decode");
    p.into_request(&slots)
}

fn preamble_with(f: impl FnOnce(&mut [u8; 96])) -> RequestPreamble {
    let mut b = good().encode_preamble();
    f(&mut b);
    RequestSession::decode_preamble(&b).expect("still parseable")
}

#[test]
fn good_request_passes() {
    good().validate().unwrap();
    assert_eq!(server_verdict(&good()).unwrap(), good());
}

#[test]
fn unknown_ip_version() {
    let p = preamble_with(|b| b[1] = 5);
    assert_eq!(p.validate(), Err(RequestProblem::UnknownIpVersion(5)));
    assert_eq!(p.sender_addr(), None);
    let p = preamble_with(|b| b[1] = 0);
    assert_eq!(p.validate(), Err(RequestProblem::UnknownIpVersion(0)));
}

#[test]
fn mixed_address_families() {
    let mut r = good();
    r.receiver_addr = "::1".parse().unwrap();
    assert_eq!(r.validate(), Err(RequestProblem::MixedAddressFamilies));
    // Encoded anyway as IPVN 6 with the IPv4 address v4-mapped.
    let p = RequestSession::decode_preamble(&r.encode_preamble()).unwrap();
    assert_eq!(p.ipvn, 6);
    assert_eq!(p.sender_addr(), Some("::ffff:127.0.0.1".parse().unwrap()));
}

#[test]
fn no_local_endpoint() {
    let mut r = good();
    r.conf_receiver = false;
    assert_eq!(r.validate(), Err(RequestProblem::NoLocalEndpoint));
    assert_eq!(server_verdict(&r), Err(RequestProblem::NoLocalEndpoint));
}

#[test]
fn both_endpoints() {
    let mut r = good();
    r.conf_sender = true;
    assert_eq!(r.validate(), Err(RequestProblem::BothEndpoints));
    assert_eq!(server_verdict(&r), Err(RequestProblem::BothEndpoints));
    // Any non-zero Conf byte counts (protocol.md §2.1).
    let p = preamble_with(|b| b[2] = 0x80);
    assert_eq!(p.validate(), Err(RequestProblem::BothEndpoints));
}

#[test]
fn no_slots() {
    let mut r = good();
    r.slots.clear();
    assert_eq!(r.validate(), Err(RequestProblem::NoSlots));
    assert_eq!(server_verdict(&r), Err(RequestProblem::NoSlots));
}

#[test]
fn no_packets() {
    let mut r = good();
    r.num_packets = 0;
    assert_eq!(r.validate(), Err(RequestProblem::NoPackets));
    assert_eq!(server_verdict(&r), Err(RequestProblem::NoPackets));
}

#[test]
fn type_p_not_dscp() {
    for bad in [0x4000_0000u32, 0x8000_0000, 0x0000_0001, 0x3F00_0100] {
        let mut r = good();
        r.type_p = bad;
        assert_eq!(r.validate(), Err(RequestProblem::TypePNotDscp(bad)));
        assert_eq!(server_verdict(&r), Err(RequestProblem::TypePNotDscp(bad)));
        assert_eq!(r.dscp(), None);
    }
    let mut r = good();
    r.type_p = 0x3F00_0000;
    r.validate().unwrap();
    assert_eq!(r.dscp(), Some(63));
}

#[test]
fn padding_too_large() {
    let mut r = good();
    // IPv4: 65507 − 48 for the secure header (mode unknown: the conservative limit).
    r.padding = 65_459;
    r.validate().unwrap();
    r.padding = 65_460;
    assert_eq!(
        r.validate(),
        Err(RequestProblem::PaddingTooLarge {
            padding: 65_460,
            max: 65_459
        })
    );
    assert!(server_verdict(&r).is_err());
    // Open mode has a 14-byte header.
    r.validate_in_mode(Some(Mode::Open)).unwrap();
    r.padding = 65_494;
    assert!(r.validate_in_mode(Some(Mode::Open)).is_err());
    // IPv6 payload limit is 65527.
    r.sender_addr = "::1".parse().unwrap();
    r.receiver_addr = "::1".parse().unwrap();
    r.padding = 65_479;
    r.validate().unwrap();
    r.padding = 65_480;
    assert!(r.validate().is_err());
    r.padding = u32::MAX;
    let p = RequestSession::decode_preamble(&r.encode_preamble()).unwrap();
    assert!(matches!(
        p.validate_in_mode(Some(Mode::Encrypted)),
        Err(RequestProblem::PaddingTooLarge { .. })
    ));
    assert_eq!(max_padding(false, Some(Mode::Open)), 65_493);
    assert_eq!(max_padding(true, None), 65_479);
}

#[test]
fn unknown_slot_type() {
    let r = good();
    let mut slots = r.encode_slots();
    slots[0] = 2;
    let p = RequestSession::decode_preamble(&r.encode_preamble()).unwrap();
    p.validate().unwrap(); // the preamble alone is fine
    let raw = RequestSession::decode_slots(&slots).unwrap();
    assert_eq!(raw[0].to_slot(), None);
    assert_eq!(
        p.into_request(&raw),
        Err(RequestProblem::UnknownSlotType {
            index: 0,
            slot_type: 2
        })
    );
}

#[test]
fn slot_count_mismatch() {
    let r = good();
    let p = RequestSession::decode_preamble(&r.encode_preamble()).unwrap();
    assert_eq!(
        p.into_request(&[]),
        Err(RequestProblem::SlotCountMismatch {
            declared: 1,
            found: 0
        })
    );
}

#[test]
fn every_problem_is_accept_3() {
    let all = [
        RequestProblem::UnknownIpVersion(5),
        RequestProblem::MixedAddressFamilies,
        RequestProblem::NoLocalEndpoint,
        RequestProblem::BothEndpoints,
        RequestProblem::NoSlots,
        RequestProblem::NoPackets,
        RequestProblem::TypePNotDscp(1),
        RequestProblem::PaddingTooLarge { padding: 1, max: 0 },
        RequestProblem::UnknownSlotType {
            index: 0,
            slot_type: 9,
        },
        RequestProblem::SlotCountMismatch {
            declared: 1,
            found: 0,
        },
    ];
    for p in all {
        assert_eq!(p.accept_code(), AcceptCode::NotSupported, "{p}");
        assert!(p.to_string().starts_with("Request-Session: "));
    }
}
