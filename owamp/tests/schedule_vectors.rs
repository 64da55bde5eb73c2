//! RFC 4656 Appendix B / protocol.md §5.4 vectors for the generator, the deviate and schedules.

use owamp::schedule::{Schedule, UniformGenerator, exp_deviate};
use owamp::{Num64, Sid, Slot, SlotKind};

fn key(hex: &str) -> [u8; 16] {
    Sid::from_hex(hex).unwrap().0
}

/// (seed, EXP[1], EXP[10], EXP[100], EXP[1000], EXP[100000], EXP[1000000], SUM)
const VECTORS: [(&str, [u64; 6], u64); 4] = [
    (
        "2872979303ab47eeac028dab3829dab2",
        [
            0x6d27e540,
            0x4f9d85ec8,
            0x21fc133c5,
            0x24fe2d8a8,
            0x690ee416,
            0x20703fd40,
        ],
        0x000f4479bd317381,
    ),
    (
        "0102030405060708090a0b0c0d0e0f00",
        [
            0xc2127448,
            0x2f0d21360,
            0x129f07b2c,
            0x774f9b18,
            0x16408f83,
            0xf6051f0c,
        ],
        0x000f433686466a62,
    ),
    (
        "deadbeefdeadbeefdeadbeefdeadbeef",
        [
            0x17ef33648,
            0x5dfa6001,
            0x10f09fc5b,
            0x88050c02,
            0x3393898a0,
            0x28e4a908e,
        ],
        0x000f416c8884d2d3,
    ),
    (
        "feed0feed1feed2feed3feed4feed5ab",
        [
            0x300d1c98,
            0x114b480e,
            0x10af12935,
            0xee8e03f4,
            0x1e4466ca,
            0x33933bac,
        ],
        0x000f3f0b4b416ec8,
    ),
];

#[test]
fn appendix_b_sums_and_spot_values() {
    let spots = [1usize, 10, 100, 1000, 100_000, 1_000_000];
    for (seed, exp, sum) in VECTORS {
        let mut g = UniformGenerator::new(&key(seed));
        let mut total = Num64::ZERO;
        let mut seen = Vec::new();
        for i in 1..=1_000_000usize {
            let d = exp_deviate(&mut g);
            total = total.wrapping_add(d);
            if spots.contains(&i) {
                seen.push(d.0);
            }
        }
        assert_eq!(seen, exp, "spot values for seed {seed}");
        assert_eq!(total, Num64(sum), "sum for seed {seed}");
    }
}

#[test]
fn generator_reset_restarts_the_stream() {
    let mut g = UniformGenerator::new(&key("0102030405060708090a0b0c0d0e0f00"));
    let a: Vec<u32> = (0..9).map(|_| g.next_u32()).collect();
    g.reset();
    let b: Vec<u32> = (0..9).map(|_| g.next_u32()).collect();
    assert_eq!(a, b);
    assert_ne!(a[0], a[1]);
}

fn sample() -> Schedule {
    let sid = Sid::from_hex("7f000001dd12e59ff0d341db48dee1c4").unwrap();
    let slots = [Slot {
        kind: SlotKind::Exponential,
        param: Num64(0x199999a0),
    }];
    Schedule::new(sid, Num64(0xdd12e5a10573197d), &slots, 100)
}

const SAMPLE_TIMES: [u64; 6] = [
    0xdd12e5a11128d92c,
    0xdd12e5a173a51093,
    0xdd12e5a18de4493c,
    0xdd12e5a1a5e1f119,
    0xdd12e5a1be4b3bfc,
    0xdd12e5a1ea2ed37a,
];

#[test]
fn sample_owp_schedule() {
    let mut s = sample();
    let got: Vec<u64> = (0..6).map(|_| s.next_send_time().unwrap().0).collect();
    assert_eq!(got, SAMPLE_TIMES);
    // Random access, backwards and forwards.
    assert_eq!(s.send_time(2), Some(Num64(SAMPLE_TIMES[2])));
    assert_eq!(s.send_time(5), Some(Num64(SAMPLE_TIMES[5])));
    assert_eq!(s.send_time(0), Some(Num64(SAMPLE_TIMES[0])));
    assert_eq!(s.send_time(4), Some(Num64(SAMPLE_TIMES[4])));
    assert_eq!(s.send_time(4), Some(Num64(SAMPLE_TIMES[4])));
    assert_eq!(s.send_time(100), None);
    s.reset();
    assert_eq!(s.next_send_time(), Some(Num64(SAMPLE_TIMES[0])));
}

#[test]
fn fixed_slots_consume_no_randomness_and_count_ends() {
    let sid = Sid::from_hex("7f000001dd12e59ff0d341db48dee1c4").unwrap();
    let mean = Num64(0x199999a0);
    let slots = [
        Slot {
            kind: SlotKind::Exponential,
            param: mean,
        },
        Slot {
            kind: SlotKind::Fixed,
            param: Num64::ZERO,
        },
    ];
    let mut s = Schedule::new(sid, Num64(0xdd12e5a10573197d), &slots, 6);
    let got: Vec<u64> = std::iter::from_fn(|| s.next_send_time())
        .map(|t| t.0)
        .collect();
    // `-i 1.0e,0f`: pairs; the exponential deltas are the sample's first three.
    assert_eq!(
        got,
        [
            SAMPLE_TIMES[0],
            SAMPLE_TIMES[0],
            SAMPLE_TIMES[1],
            SAMPLE_TIMES[1],
            SAMPLE_TIMES[2],
            SAMPLE_TIMES[2]
        ]
    );
    assert_eq!(s.next_send_time(), None);
}

#[test]
fn more_slots_than_packets_uses_the_first_ones() {
    let sid = Sid([0; 16]);
    let fixed = |s: u64| Slot {
        kind: SlotKind::Fixed,
        param: Num64(s << 32),
    };
    let mut s = Schedule::new(sid, Num64(10 << 32), &[fixed(1), fixed(2), fixed(4)], 2);
    assert_eq!(s.send_time(0), Some(Num64(11 << 32)));
    assert_eq!(s.send_time(1), Some(Num64(13 << 32)));
    assert_eq!(s.send_time(2), None);
    // nslots_eff = min(3, 5) = 3, cycles 1,2,4,1,2.
    let mut s = Schedule::new(sid, Num64(0), &[fixed(1), fixed(2), fixed(4)], 5);
    let got: Vec<u64> = std::iter::from_fn(|| s.next_send_time())
        .map(|t| t.0 >> 32)
        .collect();
    assert_eq!(got, [1, 3, 7, 8, 10]);
}

proptest::proptest! {
    /// Slots come from the network (Request-Session): any of them must give a schedule
    /// without panicking, and random access must agree with the sequential iterator.
    #[test]
    fn arbitrary_slots_never_panic(
        raw in proptest::collection::vec((proptest::bool::ANY, proptest::num::u64::ANY), 0..5),
        n in 0u32..40,
        start: u64,
        probe in 0u32..50,
    ) {
        let slots: Vec<Slot> = raw
            .iter()
            .map(|&(e, p)| Slot {
                kind: if e { SlotKind::Exponential } else { SlotKind::Fixed },
                param: Num64(p),
            })
            .collect();
        let mut s = Schedule::new(Sid([3; 16]), Num64(start), &slots, n);
        let seq: Vec<Num64> = std::iter::from_fn(|| s.next_send_time()).collect();
        proptest::prop_assert_eq!(seq.len(), n as usize);
        proptest::prop_assert_eq!(s.send_time(probe), seq.get(probe as usize).copied());
    }
}

#[test]
fn mean_rate_of_slots() {
    use owamp::schedule::packets_per_second;
    let slot = |kind, ms: u64| Slot {
        kind,
        param: Num64::from_micros(ms * 1000),
    };
    assert_eq!(packets_per_second(&[]), 0.0);
    let r = packets_per_second(&[slot(SlotKind::Exponential, 100)]);
    assert!((r - 10.0).abs() < 1e-6, "{r}");
    // -i 1.0e,0f: two packets per second.
    let r = packets_per_second(&[slot(SlotKind::Exponential, 1000), slot(SlotKind::Fixed, 0)]);
    assert!((r - 2.0).abs() < 1e-6, "{r}");
    assert!(packets_per_second(&[slot(SlotKind::Fixed, 0)]).is_infinite());
}
