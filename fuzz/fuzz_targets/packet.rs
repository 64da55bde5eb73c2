//! OWAMP-Test packets as the receiver reads them off the network (RFC 4656 §4.1.2,
//! protocol.md §3.2): `PacketFormat::decode` in open, authenticated and encrypted mode, with
//! session keys, SID and padding from the input.
//!
//! Invariants: no panic on any datagram; shorter than `len()` is a length error and
//! longer is judged on its first `len()` octets; open mode accepts anything long
//! enough; a packet we build decodes to the same sequence number, timestamp and error
//! estimate; flipping a bit the HMAC covers (authenticated: block 1 and the tag;
//! encrypted: blocks 1–2 and the tag) is rejected.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use owamp::packet::{PacketError, PacketFormat, Padding, TestKeys};
use owamp::{ErrorEstimate, Mode, Num64, Sid};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(f) = Fixture::new(&mut u) else { return };
    let datagram = u.take_rest();
    let keys = TestKeys::derive(f.sid, &f.aes, &f.hmac);
    let keys_opt = f.mode.is_secure().then_some(&keys);
    let mut fmt = match PacketFormat::new(f.mode, keys_opt, f.padding) {
        Ok(p) => p.with_padding_fill(Padding::Zero),
        Err(e) => panic!("format for {:?} padding {} refused: {e}", f.mode, f.padding),
    };
    let len = fmt.len();

    // Whatever arrives from the network.
    match fmt.decode(datagram) {
        Ok(p) => {
            assert!(datagram.len() >= len);
            if f.mode == Mode::Open {
                assert_eq!(p.seq.to_be_bytes(), datagram[..4]);
            }
            // Only the first len() octets count.
            assert_eq!(
                fmt.decode(&datagram[..len]),
                Ok(p),
                "trailing octets changed the result"
            );
        }
        Err(PacketError::Short { len: got, need }) => {
            assert_eq!((got, need), (datagram.len(), len));
        }
        Err(PacketError::BadHmac { .. }) => assert!(f.mode.is_secure()),
        Err(e) => panic!("unexpected decode error: {e}"),
    }

    // A packet we build ourselves, then one bit of it flipped.
    let mut buf = vec![0u8; len];
    fmt.build(f.seq, f.ts, f.err, &mut buf)
        .expect("own packet builds");
    let p = fmt.decode(&buf).expect("own packet decodes");
    assert_eq!(
        (p.seq, p.send_ts, p.send_err),
        (f.seq, f.ts, f.err),
        "packet round trip"
    );
    // Octets the HMAC covers, as (start, end).
    let covered: &[(usize, usize)] = match f.mode {
        Mode::Open => &[],
        Mode::Authenticated => &[(0, 16), (32, 48)],
        Mode::Encrypted => &[(0, 48)],
    };
    let bits: usize = covered.iter().map(|(s, e)| (e - s) * 8).sum();
    if bits > 0 {
        let mut pick = usize::from(f.flip) % bits;
        for (start, end) in covered {
            let n = (end - start) * 8;
            if pick < n {
                let mut bad = buf.clone();
                bad[start + pick / 8] ^= 1 << (pick % 8);
                assert!(
                    matches!(fmt.decode(&bad), Err(PacketError::BadHmac { .. })),
                    "flipped bit {pick} of octets {start}..{end} accepted"
                );
                break;
            }
            pick -= n;
        }
    }
});

struct Fixture {
    mode: Mode,
    sid: Sid,
    aes: [u8; 16],
    hmac: [u8; 32],
    padding: u32,
    seq: u32,
    ts: Num64,
    err: ErrorEstimate,
    flip: u16,
}

impl Fixture {
    fn new(u: &mut Unstructured<'_>) -> arbitrary::Result<Fixture> {
        let mode = match u.arbitrary::<u8>()? % 3 {
            0 => Mode::Open,
            1 => Mode::Authenticated,
            _ => Mode::Encrypted,
        };
        Ok(Fixture {
            mode,
            sid: Sid(u.arbitrary()?),
            aes: u.arbitrary()?,
            hmac: u.arbitrary()?,
            // Small paddings keep datagrams in reach; the decoder never reads padding.
            padding: u32::from(u.arbitrary::<u8>()?),
            seq: u.arbitrary()?,
            ts: Num64(u.arbitrary()?),
            err: ErrorEstimate::from_bytes(u.arbitrary()?),
            flip: u.arbitrary()?,
        })
    }
}
