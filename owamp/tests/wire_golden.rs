//! Golden bytes for every OWAMP-Control message, written by hand from the tables of
//! protocol.md §1.1–1.3 and §2 (not produced by the encoder under test).

use std::net::IpAddr;

use owamp::wire::*;
use owamp::{
    AcceptCode, ErrorEstimate, ModeSet, Num64, PacketRecord, Sid, SkipRange, Slot, SlotKind,
};

/// Hex to bytes, ignoring spaces and `|` used to mark field boundaries.
fn h(s: &str) -> Vec<u8> {
    let d: Vec<u8> = s
        .bytes()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| (c as char).to_digit(16).unwrap() as u8)
        .collect();
    assert_eq!(d.len() % 2, 0, "odd hex in test vector");
    d.chunks(2).map(|p| p[0] * 16 + p[1]).collect()
}

fn arr<const N: usize>(v: &[u8]) -> [u8; N] {
    v.try_into().unwrap()
}

const Z4: &str = "00000000";
const Z8: &str = "00000000 00000000";
const Z12: &str = "00000000 00000000 00000000";

fn sid() -> Sid {
    Sid::from_hex("7f000001dd12e59ff0d341db48dee1c4").unwrap()
}

#[test]
fn server_greeting() {
    let g = ServerGreeting {
        modes: ModeSet::ALL,
        challenge: arr(&h("000102030405060708090a0b0c0d0e0f")),
        salt: arr(&h("101112131415161718191a1b1c1d1e1f")),
        count: 2048,
    };
    let want = h(&format!(
        "{Z12}|00000007|000102030405060708090a0b0c0d0e0f|101112131415161718191a1b1c1d1e1f|00000800|{Z12}"
    ));
    assert_eq!(g.encode().to_vec(), want);
    assert_eq!(ServerGreeting::decode(&arr(&want)).unwrap(), g);
    // Unused and MBZ are ignored, as by the reference client (protocol.md §1.1).
    let mut noisy = want.clone();
    noisy[0] = 0xff;
    noisy[63] = 0xff;
    assert_eq!(ServerGreeting::decode(&arr(&noisy)).unwrap(), g);
}

#[test]
fn setup_response() {
    let r = SetupResponse {
        mode: 2,
        key_id: SetupResponse::key_id_from_str("alice").unwrap(),
        token: [0xaa; 64],
        client_iv: [0x55; 16],
    };
    let want = h(&format!(
        "00000002|616c696365{}|{}|{}",
        "00".repeat(75),
        "aa".repeat(64),
        "55".repeat(16)
    ));
    assert_eq!(r.encode().to_vec(), want);
    let back = SetupResponse::decode(&arr(&want)).unwrap();
    assert_eq!(back, r);
    assert_eq!(back.key_id_str(), "alice");
}

#[test]
fn key_id_limits() {
    let n80 = "x".repeat(80);
    let k = SetupResponse::key_id_from_str(&n80).unwrap();
    assert_eq!(k, [b'x'; 80]);
    let r = SetupResponse {
        mode: 4,
        key_id: k,
        token: [0; 64],
        client_iv: [0; 16],
    };
    assert_eq!(r.key_id_str(), n80);
    assert!(matches!(
        SetupResponse::key_id_from_str(&"x".repeat(81)),
        Err(WireError::BadKeyId { .. })
    ));
    assert!(SetupResponse::key_id_from_str("a\0b").is_err());
    let mut lossy = r;
    lossy.key_id = [0; 80];
    lossy.key_id[0] = 0xff;
    assert_eq!(lossy.key_id_str(), "\u{fffd}");
}

#[test]
fn server_start() {
    let s = ServerStart {
        accept: 0,
        server_iv: [0x11; 16],
        start_time: Num64(0xdd12_e59f_0000_0000),
    };
    let clear = h(&format!("{Z12}000000|00|{}", "11".repeat(16)));
    let tail = h(&format!("dd12e59f00000000|{Z8}"));
    assert_eq!(s.encode_clear().to_vec(), clear);
    assert_eq!(s.encode_tail().to_vec(), tail);
    assert_eq!(ServerStart::decode(&arr(&clear), &arr(&tail)).unwrap(), s);
    assert_eq!(s.accept_code(), Some(AcceptCode::Ok));

    let mut bad = clear.clone();
    bad[15] = 9;
    let e = ServerStart::decode(&arr(&bad), &arr(&tail)).unwrap_err();
    assert_eq!(e.to_string(), "Server-Start: Accept value 9 is not in 0..5");
    bad[15] = 5;
    assert_eq!(
        ServerStart::decode(&arr(&bad), &arr(&tail)).unwrap().accept,
        5
    );
}

#[test]
fn command_kind() {
    let mut b = [0u8; 16];
    for (v, k) in [
        (1, CommandKind::RequestSession),
        (2, CommandKind::StartSessions),
        (3, CommandKind::StopSessions),
        (4, CommandKind::FetchSession),
        (5, CommandKind::Unknown(5)),
        (0, CommandKind::Unknown(0)),
    ] {
        b[0] = v;
        assert_eq!(CommandKind::from_block(&b), k);
        assert_eq!(k.as_byte(), v);
    }
}

fn v4_request() -> RequestSession {
    RequestSession {
        conf_sender: false,
        conf_receiver: true,
        num_packets: 100,
        sender_port: 8192,
        receiver_port: 0,
        sender_addr: "192.0.2.1".parse().unwrap(),
        receiver_addr: "192.0.2.2".parse().unwrap(),
        sid: Sid::default(),
        padding: 0,
        start_time: Num64(0xdd12_e5a0_8000_0000),
        timeout: Num64(2 << 32),
        type_p: 0,
        slots: vec![Slot {
            kind: SlotKind::Exponential,
            param: Num64(0x1999_99a0),
        }],
    }
}

const V4_PREAMBLE: &str = "01 04 00 01|00000001|00000064|2000 0000\
    |c0000201 00000000 00000000 00000000\
    |c0000202 00000000 00000000 00000000\
    |00000000 00000000 00000000 00000000\
    |00000000|dd12e5a0 80000000|00000002 00000000|00000000|00000000 00000000";

#[test]
fn request_session_ipv4() {
    let r = v4_request();
    let pre = h(V4_PREAMBLE);
    assert_eq!(pre.len(), 96);
    assert_eq!(r.encode_preamble().to_vec(), pre);
    let slots = h("00 00000000000000|00000000 199999a0");
    assert_eq!(r.encode_slots(), slots);

    let p = RequestSession::decode_preamble(&arr(&pre)).unwrap();
    assert_eq!(p.ipvn, 4);
    assert_eq!(p.num_slots, 1);
    assert_eq!(
        p.sender_addr(),
        Some("192.0.2.1".parse::<IpAddr>().unwrap())
    );
    assert_eq!(p.slots_len(), 16);
    assert_eq!(p.dscp(), Some(0));
    let raw = RequestSession::decode_slots(&slots).unwrap();
    assert_eq!(p.into_request(&raw).unwrap(), r);
    r.validate().unwrap();
}

#[test]
fn request_session_ipv6() {
    let r = RequestSession {
        conf_sender: true,
        conf_receiver: false,
        num_packets: 0x0102_0304,
        sender_port: 0,
        receiver_port: 0x1f90,
        sender_addr: "2001:db8::1".parse().unwrap(),
        receiver_addr: "2001:db8::2".parse().unwrap(),
        sid: sid(),
        padding: 1000,
        start_time: Num64(0xdd12_e5a0_0000_0001),
        timeout: Num64(0x0000_0001_8000_0000),
        type_p: 0x2e00_0000,
        slots: vec![
            Slot {
                kind: SlotKind::Fixed,
                param: Num64(1 << 32),
            },
            Slot {
                kind: SlotKind::Exponential,
                param: Num64(0x8000_0000),
            },
        ],
    };
    let pre = h("01 06 01 00|00000002|01020304|0000 1f90\
        |20010db8 00000000 00000000 00000001\
        |20010db8 00000000 00000000 00000002\
        |7f000001dd12e59ff0d341db48dee1c4\
        |000003e8|dd12e5a0 00000001|00000001 80000000|2e000000|00000000 00000000");
    assert_eq!(r.encode_preamble().to_vec(), pre);
    let slots = h("01 00000000000000|00000001 00000000|00 00000000000000|00000000 80000000");
    assert_eq!(r.encode_slots(), slots);
    assert_eq!(r.dscp(), Some(46));
    let p = RequestSession::decode_preamble(&arr(&pre)).unwrap();
    let raw = RequestSession::decode_slots(&slots).unwrap();
    assert_eq!(p.into_request(&raw).unwrap(), r);
}

#[test]
fn request_session_decode_leniency() {
    let mut pre = h(V4_PREAMBLE);
    pre[1] = 0xf4; // MBZ high nibble ignored
    pre[3] = 0x7f; // any non-zero Conf byte is 1
    pre[20] = 0xee; // IPv4 address MBZ ignored
    let p = RequestSession::decode_preamble(&arr(&pre)).unwrap();
    assert_eq!(p.ipvn, 4);
    assert!(p.conf_receiver);
    // Slot MBZ ignored.
    let raw = RequestSession::decode_slots(&h("00 ffffffffffffff|00000000 199999a0")).unwrap();
    assert_eq!(p.into_request(&raw).unwrap(), v4_request());

    pre[0] = 2;
    assert!(matches!(
        RequestSession::decode_preamble(&arr(&pre)),
        Err(WireError::WrongCommand {
            found: 2,
            expected: 1,
            ..
        })
    ));
    assert!(matches!(
        RequestSession::decode_slots(&[0u8; 17]),
        Err(WireError::NotBlocks { found: 17, .. })
    ));
}

#[test]
fn request_session_stored_form() {
    let r = v4_request();
    let mut want = h(V4_PREAMBLE);
    want.extend(h(Z8));
    want.extend(h(Z8)); // zero HMAC field
    want.extend(h("00 00000000000000|00000000 199999a0"));
    want.extend([0u8; 16]); // zero block where the slots' HMAC would be
    assert_eq!(r.encode_stored_preamble().to_vec(), want[..112].to_vec());
    assert_eq!(r.encode_stored(), want);
    let mut file = want.clone();
    file.extend([0xab; 25]); // records follow in a file
    let st = RequestSession::decode_stored(&file).unwrap();
    assert_eq!(st.len, 144);
    assert_eq!(st.preamble.into_request(&st.slots).unwrap(), r);
    // Truncated anywhere: a typed error.
    for cut in [0, 50, 111, 112, 127, 143] {
        assert!(matches!(
            RequestSession::decode_stored(&want[..cut]),
            Err(WireError::BadLength { .. })
        ));
    }
    // A huge slot count in a short file does not allocate or panic.
    let mut huge = want.clone();
    huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(RequestSession::decode_stored(&huge).is_err());
}

#[test]
fn accept_session() {
    let a = AcceptSession {
        accept: AcceptCode::Ok,
        port: 8080,
        sid: sid(),
    };
    let want = h(&format!(
        "00 00 1f90|7f000001dd12e59ff0d341db48dee1c4|{Z12}"
    ));
    assert_eq!(a.encode().to_vec(), want);
    assert_eq!(AcceptSession::decode(&arr(&want)).unwrap(), a);
    let rej = AcceptSession {
        accept: AcceptCode::NotSupported,
        port: 0,
        sid: Sid::default(),
    };
    let mut want = [0u8; 32];
    want[0] = 3;
    assert_eq!(rej.encode(), want);
    want[0] = 6;
    assert!(matches!(
        AcceptSession::decode(&want),
        Err(WireError::BadAccept { value: 6, .. })
    ));
}

#[test]
fn start_sessions_and_ack() {
    let want = h(&format!("02 000000|{Z12}"));
    assert_eq!(StartSessions.encode().to_vec(), want);
    assert_eq!(StartSessions::decode(&arr(&want)).unwrap(), StartSessions);
    assert!(StartSessions::decode(&[1u8; 16]).is_err());
    // MBZ unchecked by the reference.
    let mut noisy = [0xffu8; 16];
    noisy[0] = 2;
    assert!(StartSessions::decode(&noisy).is_ok());

    let ack = StartAck {
        accept: AcceptCode::InternalError,
    };
    let want = h(&format!("02 000000|{Z12}"));
    assert_eq!(ack.encode().to_vec(), want);
    assert_eq!(StartAck::decode(&arr(&want)).unwrap(), ack);
    assert_eq!(
        StartAck {
            accept: AcceptCode::Ok
        }
        .encode(),
        [0u8; 16]
    );
    let mut bad = [0u8; 16];
    bad[0] = 200;
    assert!(StartAck::decode(&bad).is_err());
}

#[test]
fn fetch_session_and_ack() {
    let f = FetchSession {
        begin: 0,
        end: u32::MAX,
        sid: sid(),
    };
    let want = h("04 000000 00000000|00000000|ffffffff|7f000001dd12e59ff0d341db48dee1c4");
    assert_eq!(f.encode().to_vec(), want);
    assert_eq!(FetchSession::decode(&arr(&want)).unwrap(), f);
    assert!(f.is_full_session());
    let mut bad = want.clone();
    bad[0] = 1;
    assert!(matches!(
        FetchSession::decode(&arr(&bad)),
        Err(WireError::WrongCommand {
            found: 1,
            expected: 4,
            ..
        })
    ));

    let a = FetchAck {
        accept: AcceptCode::Ok,
        finished: 1,
        next_seqno: 100,
        num_skips: 1,
        num_records: 99,
    };
    let want = h("00 01 0000|00000064|00000001|00000063");
    assert_eq!(a.encode().to_vec(), want);
    assert_eq!(FetchAck::decode(&arr(&want)).unwrap(), a);
    let mut rej = [0u8; 16];
    rej[0] = 1;
    assert_eq!(FetchAck::reject(AcceptCode::Failure).encode(), rej);
    rej[0] = 7;
    assert!(FetchAck::decode(&rej).is_err());
}

const LIMITS: StopLimits = StopLimits {
    max_sessions: 4,
    max_skips: 100,
};

fn stop(skips: &[(u32, u32)]) -> StopSessions {
    StopSessions {
        accept: AcceptCode::Ok,
        sessions: vec![SessionStop {
            sid: sid(),
            next_seqno: 100,
            skips: skips
                .iter()
                .map(|&(first, last)| SkipRange { first, last })
                .collect(),
        }],
    }
}

const STOP_HDR1: &str = "03 00 0000|00000001|00000000 00000000|7f000001dd12e59ff0d341db48dee1c4";

#[test]
fn stop_sessions_padding_rule() {
    // K=0: body is 8 bytes + 8 zero pad.
    let k0 = h(&format!("{STOP_HDR1}|00000064|00000000|{Z8}"));
    // K=1: 8 + 8 = 16 bytes, no pad.
    let k1 = h(&format!("{STOP_HDR1}|00000064|00000001|00000005 00000007"));
    // K=2: 8 + 16 = 24 bytes + 8 zero pad.
    let k2 = h(&format!(
        "{STOP_HDR1}|00000064|00000002|00000005 00000007|0000000a 0000000a|{Z8}"
    ));
    for (msg, want) in [
        (stop(&[]), k0),
        (stop(&[(5, 7)]), k1),
        (stop(&[(5, 7), (10, 10)]), k2),
    ] {
        assert_eq!(msg.encode(), want);
        assert_eq!(StopSessions::decode(&want, LIMITS).unwrap(), msg);
    }
    assert_eq!(h(&format!("{STOP_HDR1}|00000064|00000000|{Z8}")).len(), 48);
}

#[test]
fn stop_sessions_empty_and_two() {
    let empty = StopSessions {
        accept: AcceptCode::Failure,
        sessions: vec![],
    };
    let want = h(&format!("03 01 0000|{Z4}|{Z8}"));
    assert_eq!(empty.encode(), want);
    let d = StopSessionsDecoder::new(&arr(&want), LIMITS).unwrap();
    assert_eq!(d.blocks_needed(), 0);
    assert_eq!(d.finish().unwrap(), empty);

    let mut two = stop(&[(1, 2), (3, 4), (5, 6)]);
    two.sessions.push(SessionStop {
        sid: Sid([9; 16]),
        next_seqno: 7,
        skips: vec![],
    });
    let want = h(&format!(
        "03 00 0000|00000002|{Z8}|7f000001dd12e59ff0d341db48dee1c4\
         |00000064|00000003|00000001 00000002|00000003 00000004|00000005 00000006\
         |{}|00000007|00000000|{Z8}",
        "09".repeat(16)
    ));
    assert_eq!(two.encode(), want);
    // Block-by-block, honouring blocks_needed.
    let mut d = StopSessionsDecoder::new(&arr(&want[..16]), LIMITS).unwrap();
    assert_eq!(d.num_sessions(), 2);
    let mut off = 16;
    let mut asked = vec![];
    while d.blocks_needed() > 0 {
        let n = d.blocks_needed();
        asked.push(n);
        d.feed(&want[off..off + 16 * n]).unwrap();
        off += 16 * n;
    }
    assert_eq!(off, want.len());
    // SID, body head, remaining 1 block of skips, SID, body head.
    assert_eq!(asked, vec![1, 1, 1, 1, 1]);
    assert_eq!(d.finish().unwrap(), two);
}

#[test]
fn stop_sessions_errors() {
    let k2 = h(&format!(
        "{STOP_HDR1}|00000064|00000002|00000005 00000007|0000000a 0000000a|{Z8}"
    ));
    // Non-zero pad.
    let mut bad = k2.clone();
    bad[63] = 1;
    assert!(matches!(
        StopSessions::decode(&bad, LIMITS),
        Err(WireError::NonZeroPadding { .. })
    ));
    // first > last.
    let mut bad = k2.clone();
    bad[48..56].copy_from_slice(&h("0000000b 0000000a"));
    assert_eq!(
        StopSessions::decode(&bad, LIMITS).unwrap_err(),
        WireError::SkipRangeOrder {
            message: "Stop-Sessions",
            index: 1,
            first: 11,
            last: 10
        }
    );
    // Accept > 5, wrong command.
    let mut bad = k2.clone();
    bad[1] = 6;
    assert!(matches!(
        StopSessions::decode(&bad, LIMITS),
        Err(WireError::BadAccept { value: 6, .. })
    ));
    let mut bad = k2.clone();
    bad[0] = 4;
    assert!(StopSessions::decode(&bad, LIMITS).is_err());
    // Limits.
    let tight = StopLimits {
        max_sessions: 0,
        max_skips: 100,
    };
    assert!(matches!(
        StopSessions::decode(&k2, tight),
        Err(WireError::TooMany {
            found: 1,
            limit: 0,
            ..
        })
    ));
    let tight = StopLimits {
        max_sessions: 1,
        max_skips: 1,
    };
    assert!(matches!(
        StopSessions::decode(&k2, tight),
        Err(WireError::TooMany {
            found: 2,
            limit: 1,
            ..
        })
    ));
    // Truncated and over-long.
    assert!(matches!(
        StopSessions::decode(&k2[..48], LIMITS),
        Err(WireError::Sequence { .. })
    ));
    let mut long = k2.clone();
    long.extend([0u8; 16]);
    assert!(matches!(
        StopSessions::decode(&long, LIMITS),
        Err(WireError::Sequence { .. })
    ));
    assert!(matches!(
        StopSessions::decode(&k2[..60], LIMITS),
        Err(WireError::NotBlocks { .. })
    ));
    assert!(StopSessions::decode(&k2[..3], LIMITS).is_err());
}

#[test]
fn fetch_stream_pieces() {
    assert_eq!(blocks_for(0), 0);
    assert_eq!(blocks_for(1), 1);
    assert_eq!(blocks_for(16), 1);
    assert_eq!(blocks_for(25), 2);
    assert_eq!(padded_len(400), 400);
    assert_eq!(skip_ranges_len(0), 0);
    assert_eq!(skip_ranges_len(3), 32);
    assert_eq!(records_len(16), 400);
    assert_eq!(records_len(1), 32);

    assert!(encode_skip_ranges(&[]).is_empty());
    let skips = [SkipRange { first: 5, last: 7 }];
    let want = h(&format!("00000005 00000007|{Z8}"));
    assert_eq!(encode_skip_ranges(&skips), want);
    assert_eq!(decode_skip_ranges(&want, 1).unwrap(), skips);
    assert!(decode_skip_ranges(&want, 3).is_err());
    assert!(decode_skip_ranges(&[], 0).unwrap().is_empty());

    let rec = PacketRecord {
        seq: 7,
        send_err: ErrorEstimate::UNSYNC,
        recv_err: ErrorEstimate::from_bytes([0x85, 0x87]),
        send_ts: Num64(0xdd12_e5a1_1128_d92c),
        recv_ts: Num64(0xdd12_e5a1_1128_d92d),
        ttl: 64,
    };
    let want = h("00000007|0001|8587|dd12e5a11128d92c|dd12e5a11128d92d|40|00000000000000");
    assert_eq!(encode_records(&[rec]), want);
    assert_eq!(decode_records(&want, 1).unwrap(), vec![rec]);
    assert!(encode_records(&[]).is_empty());
    assert!(matches!(
        decode_records(&want[..25], 1),
        Err(WireError::BadLength { .. })
    ));
    assert!(decode_records(&want, u32::MAX).is_err());
}
