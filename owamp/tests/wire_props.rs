//! Property tests: every decoder is total on arbitrary bytes (no panic), and
//! decode(encode(x)) == x for every message.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use owamp::wire::*;
use owamp::{
    AcceptCode, ErrorEstimate, Mode, ModeSet, Num64, PacketRecord, Sid, SkipRange, Slot, SlotKind,
};
use proptest::prelude::*;

fn bytes_n<const N: usize>() -> impl Strategy<Value = [u8; N]> {
    prop::collection::vec(any::<u8>(), N).prop_map(|v| v.try_into().unwrap())
}

fn arb_sid() -> impl Strategy<Value = Sid> {
    any::<[u8; 16]>().prop_map(Sid)
}

fn arb_num64() -> impl Strategy<Value = Num64> {
    any::<u64>().prop_map(Num64)
}

fn arb_accept() -> impl Strategy<Value = AcceptCode> {
    (0u8..=5).prop_map(|v| AcceptCode::from_u8(v).unwrap())
}

fn arb_addr_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<[u8; 4]>())
            .prop_map(|(a, b)| (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(b)))),
        (any::<[u8; 16]>(), any::<[u8; 16]>())
            .prop_map(|(a, b)| (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))),
    ]
}

fn arb_slot() -> impl Strategy<Value = Slot> {
    (any::<bool>(), arb_num64()).prop_map(|(fixed, param)| Slot {
        kind: if fixed {
            SlotKind::Fixed
        } else {
            SlotKind::Exponential
        },
        param,
    })
}

/// Any same-family request, valid or not.
fn arb_request() -> impl Strategy<Value = RequestSession> {
    (
        (
            any::<bool>(),
            any::<bool>(),
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
        ),
        arb_addr_pair(),
        (
            arb_sid(),
            any::<u32>(),
            arb_num64(),
            arb_num64(),
            any::<u32>(),
        ),
        prop::collection::vec(arb_slot(), 0..6),
    )
        .prop_map(
            |((cs, cr, np, sp, rp), (sa, ra), (sid, pad, st, to, tp), slots)| RequestSession {
                conf_sender: cs,
                conf_receiver: cr,
                num_packets: np,
                sender_port: sp,
                receiver_port: rp,
                sender_addr: sa,
                receiver_addr: ra,
                sid,
                padding: pad,
                start_time: st,
                timeout: to,
                type_p: tp,
                slots,
            },
        )
}

/// A request a server accepts.
fn arb_valid_request() -> impl Strategy<Value = RequestSession> {
    (
        arb_request(),
        any::<bool>(),
        1u32..,
        0u8..64,
        0u32..=65_000,
        prop::collection::vec(arb_slot(), 1..6),
    )
        .prop_map(|(mut r, sender, np, dscp, pad, slots)| {
            r.conf_sender = sender;
            r.conf_receiver = !sender;
            r.num_packets = np;
            r.type_p = (dscp as u32) << 24;
            r.padding = pad;
            r.slots = slots;
            r
        })
}

fn arb_skips(max: usize) -> impl Strategy<Value = Vec<SkipRange>> {
    prop::collection::vec(
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| SkipRange {
            first: a.min(b),
            last: a.max(b),
        }),
        0..max,
    )
}

fn arb_stop() -> impl Strategy<Value = StopSessions> {
    (
        arb_accept(),
        prop::collection::vec(
            (arb_sid(), any::<u32>(), arb_skips(7)).prop_map(|(sid, next_seqno, skips)| {
                SessionStop {
                    sid,
                    next_seqno,
                    skips,
                }
            }),
            0..4,
        ),
    )
        .prop_map(|(accept, sessions)| StopSessions { accept, sessions })
}

fn arb_err() -> impl Strategy<Value = ErrorEstimate> {
    any::<[u8; 2]>().prop_map(ErrorEstimate::from_bytes)
}

fn arb_record() -> impl Strategy<Value = PacketRecord> {
    (
        any::<u32>(),
        arb_err(),
        arb_err(),
        arb_num64(),
        arb_num64(),
        any::<u8>(),
    )
        .prop_map(
            |(seq, send_err, recv_err, send_ts, recv_ts, ttl)| PacketRecord {
                seq,
                send_err,
                recv_err,
                send_ts,
                recv_ts,
                ttl,
            },
        )
}

const BIG: StopLimits = StopLimits {
    max_sessions: 16,
    max_skips: 64,
};

proptest! {
    // ---- decoders never panic on arbitrary input ----

    #[test]
    fn fixed_decoders_total(
        b16 in bytes_n::<16>(), b32 in bytes_n::<32>(), b64 in bytes_n::<64>(),
        b96 in bytes_n::<96>(), b164 in bytes_n::<164>(),
    ) {
        let _ = ServerGreeting::decode(&b64);
        let _ = SetupResponse::decode(&b164).map(|s| s.key_id_str());
        let _ = ServerStart::decode(&b32, &b16);
        let _ = CommandKind::from_block(&b16);
        let _ = AcceptSession::decode(&b32);
        let _ = StartSessions::decode(&b16);
        let _ = StartAck::decode(&b16);
        let _ = FetchSession::decode(&b32);
        let _ = FetchAck::decode(&b16);
        if let Ok(p) = RequestSession::decode_preamble(&b96) {
            let _ = p.validate();
            let _ = p.validate_in_mode(Some(Mode::Open));
            let _ = p.sender_addr();
            let _ = p.dscp();
            let _ = p.slots_len();
        }
    }

    #[test]
    fn variable_decoders_total(bytes in prop::collection::vec(any::<u8>(), 0..600), n in any::<u32>()) {
        if let Ok(raw) = RequestSession::decode_slots(&bytes) {
            prop_assert_eq!(raw.len() * 16, bytes.len());
        }
        if let Ok(st) = RequestSession::decode_stored(&bytes) {
            prop_assert!(st.len <= bytes.len());
            let _ = st.preamble.into_request(&st.slots);
        }
        let _ = decode_skip_ranges(&bytes, n);
        let _ = decode_skip_ranges(&bytes, n % 80);
        let _ = decode_records(&bytes, n);
        let _ = decode_records(&bytes, n % 30);
        let _ = StopSessions::decode(&bytes, BIG);
    }

    // ---- round trips ----

    #[test]
    fn setup_round_trips(
        modes in any::<u32>(), challenge in any::<[u8; 16]>(), salt in any::<[u8; 16]>(),
        count in any::<u32>(), mode in any::<u32>(), key in bytes_n::<80>(),
        token in bytes_n::<64>(), iv in any::<[u8; 16]>(), accept in 0u8..=5, st in arb_num64(),
    ) {
        let g = ServerGreeting { modes: ModeSet(modes), challenge, salt, count };
        prop_assert_eq!(ServerGreeting::decode(&g.encode()).unwrap(), g);
        let r = SetupResponse { mode, key_id: key, token, client_iv: iv };
        prop_assert_eq!(SetupResponse::decode(&r.encode()).unwrap(), r);
        let s = ServerStart { accept, server_iv: iv, start_time: st };
        prop_assert_eq!(ServerStart::decode(&s.encode_clear(), &s.encode_tail()).unwrap(), s);
    }

    #[test]
    fn key_id_round_trip(name in "[^\u{0}]{0,20}") {
        prop_assume!(name.len() <= 80);
        let k = SetupResponse::key_id_from_str(&name).unwrap();
        let r = SetupResponse { mode: 2, key_id: k, token: [0; 64], client_iv: [0; 16] };
        prop_assert_eq!(r.key_id_str(), name);
    }

    #[test]
    fn session_messages_round_trip(
        accept in arb_accept(), port in any::<u16>(), sid in arb_sid(),
        begin in any::<u32>(), end in any::<u32>(), finished in any::<u8>(),
        a in any::<u32>(), b in any::<u32>(), c in any::<u32>(),
    ) {
        let m = AcceptSession { accept, port, sid };
        prop_assert_eq!(AcceptSession::decode(&m.encode()).unwrap(), m);
        prop_assert_eq!(StartSessions::decode(&StartSessions.encode()).unwrap(), StartSessions);
        let m = StartAck { accept };
        prop_assert_eq!(StartAck::decode(&m.encode()).unwrap(), m);
        let m = FetchSession { begin, end, sid };
        prop_assert_eq!(FetchSession::decode(&m.encode()).unwrap(), m);
        let m = FetchAck { accept, finished, next_seqno: a, num_skips: b, num_records: c };
        prop_assert_eq!(FetchAck::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn valid_request_round_trips(r in arb_valid_request()) {
        prop_assert_eq!(r.validate(), Ok(()));
        let p = RequestSession::decode_preamble(&r.encode_preamble()).unwrap();
        let slots = RequestSession::decode_slots(&r.encode_slots()).unwrap();
        prop_assert_eq!(p.slots_len() as usize, r.encode_slots().len());
        prop_assert_eq!(p.into_request(&slots).unwrap(), r.clone());
        let st = RequestSession::decode_stored(&r.encode_stored()).unwrap();
        prop_assert_eq!(st.len, 112 + 16 * (r.slots.len() + 1));
        prop_assert_eq!(st.preamble.into_request(&st.slots).unwrap(), r);
    }

    /// Invalid requests still encode/decode field for field (the server must be able
    /// to read them whole and answer Accept=3).
    #[test]
    fn any_request_preserves_fields(r in arb_request()) {
        let p = RequestSession::decode_preamble(&r.encode_preamble()).unwrap();
        prop_assert_eq!(p.ipvn, r.ipvn());
        prop_assert_eq!(p.conf_sender, r.conf_sender);
        prop_assert_eq!(p.conf_receiver, r.conf_receiver);
        prop_assert_eq!(p.num_slots as usize, r.slots.len());
        prop_assert_eq!(p.num_packets, r.num_packets);
        prop_assert_eq!((p.sender_port, p.receiver_port), (r.sender_port, r.receiver_port));
        prop_assert_eq!(p.sender_addr(), Some(r.sender_addr));
        prop_assert_eq!(p.receiver_addr(), Some(r.receiver_addr));
        prop_assert_eq!(p.sid, r.sid);
        prop_assert_eq!(p.padding, r.padding);
        prop_assert_eq!((p.start_time, p.timeout), (r.start_time, r.timeout));
        prop_assert_eq!(p.type_p, r.type_p);
        prop_assert_eq!(p.dscp(), r.dscp());
        let raw = RequestSession::decode_slots(&r.encode_slots()).unwrap();
        let typed: Vec<Slot> = raw.iter().map(|s| s.to_slot().unwrap()).collect();
        prop_assert_eq!(typed, r.slots.clone());
        // Server-side and client-side verdicts agree.
        prop_assert_eq!(p.validate(), r.validate());
    }

    #[test]
    fn stop_round_trip(s in arb_stop()) {
        let enc = s.encode();
        prop_assert_eq!(enc.len() % 16, 0);
        // Size rule: header + per session SID block + ceil((8 + 8K) / 16) blocks.
        let want: usize = 16 + s.sessions.iter().map(|x| 16 + (8 + 8 * x.skips.len()).div_ceil(16) * 16).sum::<usize>();
        prop_assert_eq!(enc.len(), want);
        prop_assert_eq!(StopSessions::decode(&enc, BIG).unwrap(), s);
    }

    /// Reading exactly `blocks_needed` at a time never over-reads and yields the message.
    #[test]
    fn stop_decoder_blocks_needed_is_exact(s in arb_stop(), extra in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut stream = s.encode();
        stream.extend(&extra); // whatever follows (the HMAC block, the next message)
        let mut d = StopSessionsDecoder::new(stream[..16].try_into().unwrap(), BIG).unwrap();
        let mut off = 16;
        while d.blocks_needed() > 0 {
            let n = d.blocks_needed() * 16;
            d.feed(&stream[off..off + n]).unwrap();
            off += n;
        }
        prop_assert_eq!(off, s.encode().len());
        prop_assert_eq!(d.finish().unwrap(), s);
    }

    /// Fuzz: a random header and a random stream of blocks, fed in random chunk sizes.
    /// The decoder never panics, asks for at least one block until complete, and never
    /// holds more than the limits allow.
    #[test]
    fn stop_decoder_fuzz(
        mut header in any::<[u8; 16]>(),
        force_cmd in any::<bool>(),
        n in 0u32..6,
        blocks in prop::collection::vec(any::<[u8; 16]>(), 0..40),
        chunks in prop::collection::vec(1usize..5, 0..40),
        max_skips in 0u32..8,
    ) {
        if force_cmd {
            header[0] = 3;
            header[1] %= 6;
            header[4..8].copy_from_slice(&n.to_be_bytes());
        }
        let limits = StopLimits { max_sessions: 4, max_skips };
        let Ok(mut d) = StopSessionsDecoder::new(&header, limits) else { return Ok(()) };
        prop_assert!(d.num_sessions() <= 4);
        let flat: Vec<u8> = blocks.concat();
        let mut off = 0;
        for c in chunks {
            if d.is_complete() {
                prop_assert_eq!(d.blocks_needed(), 0);
                break;
            }
            prop_assert!(d.blocks_needed() >= 1);
            let end = (off + 16 * c).min(flat.len());
            if off == end { break; }
            if d.feed(&flat[off..end]).is_err() {
                return Ok(());
            }
            off = end;
        }
        if let Ok(s) = d.finish() {
            prop_assert!(s.sessions.len() <= 4);
            for x in &s.sessions {
                prop_assert!(x.skips.len() <= max_skips as usize);
                prop_assert!(x.skips.iter().all(|r| r.first <= r.last));
            }
            // What it decoded re-encodes to the bytes it consumed.
            let enc = s.encode();
            prop_assert_eq!(&enc[16..], &flat[..enc.len() - 16]);
        }
    }

    #[test]
    fn fetch_stream_round_trips(skips in arb_skips(20), recs in prop::collection::vec(arb_record(), 0..40)) {
        let e = encode_skip_ranges(&skips);
        prop_assert_eq!(e.len(), skip_ranges_len(skips.len() as u32));
        prop_assert_eq!(e.len(), blocks_for(8 * skips.len()) * 16);
        prop_assert_eq!(decode_skip_ranges(&e, skips.len() as u32).unwrap(), skips);
        let e = encode_records(&recs);
        prop_assert_eq!(e.len(), records_len(recs.len() as u32));
        prop_assert_eq!(decode_records(&e, recs.len() as u32).unwrap(), recs);
    }
}

proptest! {
    /// For any preamble a server accepts, re-encoding the decoded request reproduces the
    /// input except exactly the fields the decoder is documented to ignore or normalise
    /// (IPVN high nibble, Conf bytes → 0/1, IPv4 address MBZ, trailing MBZ): every
    /// field is read from the right offset.
    #[test]
    fn accepted_preamble_reencodes_canonically(
        mut b in bytes_n::<96>(), v6 in any::<bool>(), sender in any::<bool>(),
        dscp in 0u8..64, pad in 0u32..60_000, slot in arb_slot(),
    ) {
        b[0] = 1;
        b[1] = (b[1] & 0xF0) | if v6 { 6 } else { 4 };
        b[2] = if sender { b[2] | 1 } else { 0 };
        b[3] = if sender { 0 } else { b[3] | 1 };
        b[4..8].copy_from_slice(&1u32.to_be_bytes());
        b[8] |= 1;
        b[64..68].copy_from_slice(&pad.to_be_bytes());
        b[84..88].copy_from_slice(&((dscp as u32) << 24).to_be_bytes());
        let p = RequestSession::decode_preamble(&b).unwrap();
        let r = p.into_request(&[RawSlot {
            slot_type: match slot.kind { SlotKind::Exponential => 0, SlotKind::Fixed => 1 },
            param: slot.param,
        }]).unwrap();
        let mut want = b;
        want[1] &= 0x0F;
        want[2] = u8::from(sender);
        want[3] = u8::from(!sender);
        if !v6 {
            want[20..32].fill(0);
            want[36..48].fill(0);
        }
        want[88..96].fill(0);
        prop_assert_eq!(r.encode_preamble(), want);
    }
}
