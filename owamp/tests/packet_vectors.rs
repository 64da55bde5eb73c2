//! protocol.md §6 test-key and packet vectors; round trips and refusals.

use owamp::packet::{DecodedPacket, PacketError, PacketFormat, Padding, TestKeys};
use owamp::{ErrorEstimate, Mode, Num64, Sid};
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '|')
        .collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn keys() -> TestKeys {
    let sid = Sid::from_hex("7f000001dd12e59ff0d341db48dee1c4").unwrap();
    let aes: [u8; 16] = core::array::from_fn(|i| 0x20 + i as u8);
    let hmac: [u8; 32] = core::array::from_fn(|i| 0x30 + i as u8);
    TestKeys::derive(sid, &aes, &hmac)
}

const TS: Num64 = Num64(0xdd12e5a1115e2e9a);
const ERR: [u8; 2] = [0x92, 0xd7];

#[test]
fn test_keys_vector() {
    let k = keys();
    assert_eq!(k.aes.to_vec(), hex("0d129a677362eeb630f494edb725ee18"));
    assert_eq!(
        k.hmac.to_vec(),
        hex("81e214b9151eb1563efa48e795f95f12d61589a082199f975dce14fd6c1aaf4f")
    );
}

fn build(mode: Mode) -> Vec<u8> {
    let k = keys();
    let mut f = PacketFormat::new(mode, Some(&k), 0).unwrap();
    let mut buf = vec![0u8; f.len()];
    f.prepare(0, &mut buf).unwrap();
    f.stamp(&mut buf, TS, ErrorEstimate::from_bytes(ERR))
        .unwrap();
    buf
}

#[test]
fn encrypted_packet_vector() {
    assert_eq!(
        build(Mode::Encrypted),
        hex(
            "8613188dbc86fb70c24280bd6513f5617f4d57f7700f01ef5647dcc50b0b98c4 | b1664e4f67d05ce2a719ae4295d21db2"
        )
    );
}

#[test]
fn authenticated_packet_vector() {
    assert_eq!(
        build(Mode::Authenticated),
        hex(
            "8613188dbc86fb70c24280bd6513f561 dd12e5a1115e2e9a92d7000000000000 | e9605eb4a64aa0a2435046aa4ad7a95e"
        )
    );
}

#[test]
fn open_packet_layout() {
    let mut f = PacketFormat::new(Mode::Open, None, 3)
        .unwrap()
        .with_padding_fill(Padding::Zero);
    assert_eq!(f.len(), 17);
    let mut buf = [0xAAu8; 17];
    f.build(7, TS, ErrorEstimate::from_bytes(ERR), &mut buf)
        .unwrap();
    assert_eq!(buf.to_vec(), hex("00000007 dd12e5a1115e2e9a 92d7 000000"));
    let d = f.decode(&buf).unwrap();
    assert_eq!(
        d,
        DecodedPacket {
            seq: 7,
            send_ts: TS,
            send_err: ErrorEstimate::from_bytes(ERR)
        }
    );
}

#[test]
fn decode_vectors_and_refusals() {
    let k = keys();
    for mode in [Mode::Authenticated, Mode::Encrypted] {
        let f = PacketFormat::new(mode, Some(&k), 0).unwrap();
        let mut p = build(mode);
        let d = f.decode(&p).unwrap();
        assert_eq!((d.seq, d.send_ts, d.send_err.to_bytes()), (0, TS, ERR));
        // Longer datagrams are accepted (truncated).
        p.extend_from_slice(&[1, 2, 3]);
        assert_eq!(f.decode(&p).unwrap().seq, 0);
        // Short ones are refused.
        assert_eq!(
            f.decode(&p[..47]),
            Err(PacketError::Short { len: 47, need: 48 })
        );
        // A flipped HMAC bit is refused.
        let mut bad = build(mode);
        bad[40] ^= 1;
        assert!(matches!(f.decode(&bad), Err(PacketError::BadHmac { .. })));
        // A flipped bit in block 1 is refused.
        let mut bad = build(mode);
        bad[3] ^= 0x80;
        assert!(matches!(f.decode(&bad), Err(PacketError::BadHmac { .. })));
    }
    // Encrypted mode authenticates the timestamp block; authenticated mode does not.
    let mut p = build(Mode::Encrypted);
    p[20] ^= 1;
    let f = PacketFormat::new(Mode::Encrypted, Some(&k), 0).unwrap();
    assert!(f.decode(&p).is_err());
    let mut p = build(Mode::Authenticated);
    p[20] ^= 1;
    let f = PacketFormat::new(Mode::Authenticated, Some(&k), 0).unwrap();
    assert_eq!(f.decode(&p).unwrap().send_ts, Num64(TS.0 ^ (1 << 24)));
    // Wrong keys.
    let other = TestKeys::derive(Sid([9; 16]), &[1; 16], &[2; 32]);
    let f = PacketFormat::new(Mode::Encrypted, Some(&other), 0).unwrap();
    assert!(f.decode(&build(Mode::Encrypted)).is_err());
}

#[test]
fn construction_refusals() {
    assert_eq!(
        PacketFormat::new(Mode::Encrypted, None, 0).unwrap_err(),
        PacketError::MissingKeys {
            mode: Mode::Encrypted
        }
    );
    assert!(matches!(
        PacketFormat::new(Mode::Open, None, 65_494),
        Err(PacketError::TooLarge { .. })
    ));
    assert_eq!(
        PacketFormat::new(Mode::Open, None, 65_493).unwrap().len(),
        65_507
    );
    let mut f = PacketFormat::new(Mode::Open, None, 10).unwrap();
    let mut small = [0u8; 23];
    assert_eq!(
        f.prepare(1, &mut small),
        Err(PacketError::BufferTooShort { len: 23, need: 24 })
    );
}

#[test]
fn random_padding_differs_between_packets() {
    let mut f = PacketFormat::new(Mode::Open, None, 64).unwrap();
    let mut a = [0u8; 78];
    let mut b = [0u8; 78];
    f.build(1, TS, ErrorEstimate::UNSYNC, &mut a).unwrap();
    f.build(1, TS, ErrorEstimate::UNSYNC, &mut b).unwrap();
    assert_eq!(a[..14], b[..14]);
    assert_ne!(a[14..], b[14..]);
}

proptest! {
    #[test]
    fn round_trip_every_mode(seq: u32, ts: u64, e0: u8, e1: u8, pad in 0u32..64) {
        let k = keys();
        for mode in [Mode::Open, Mode::Authenticated, Mode::Encrypted] {
            let mut f = PacketFormat::new(mode, Some(&k), pad).unwrap();
            let mut buf = vec![0u8; f.len()];
            let err = ErrorEstimate::from_bytes([e0, e1]);
            f.build(seq, Num64(ts), err, &mut buf).unwrap();
            let d = f.decode(&buf).unwrap();
            prop_assert_eq!(d, DecodedPacket { seq, send_ts: Num64(ts), send_err: err });
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..100)) {
        let k = keys();
        for mode in [Mode::Open, Mode::Authenticated, Mode::Encrypted] {
            let f = PacketFormat::new(mode, Some(&k), 0).unwrap();
            let _ = f.decode(&data);
        }
    }
}
