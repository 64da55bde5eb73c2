//! Local time for "first:"/"last:" from TZif data (RFC 8536), without libc.

use owamp::report::TimeZone;
use proptest::prelude::*;

fn header(version: u8, counts: [u32; 6]) -> Vec<u8> {
    let mut h = b"TZif".to_vec();
    h.push(version);
    h.extend_from_slice(&[0u8; 15]);
    for c in counts {
        h.extend_from_slice(&c.to_be_bytes());
    }
    h
}

fn ttinfo(off: i32, dst: u8) -> Vec<u8> {
    let mut v = off.to_be_bytes().to_vec();
    v.extend_from_slice(&[dst, 0]);
    v
}

/// Two transitions: at 1000 to +2 h (type 1), at 2000 back to +1 h (type 0).
fn v1_file() -> Vec<u8> {
    let mut f = header(0, [0, 0, 0, 2, 2, 4]);
    f.extend_from_slice(&1000i32.to_be_bytes());
    f.extend_from_slice(&2000i32.to_be_bytes());
    f.extend_from_slice(&[1, 0]);
    f.extend(ttinfo(3600, 0));
    f.extend(ttinfo(7200, 1));
    f.extend_from_slice(b"AB\0\0");
    f
}

fn v2_file() -> Vec<u8> {
    // A v1 block with one type and no transitions, then the 64-bit block.
    let mut f = header(b'2', [0, 0, 0, 0, 1, 1]);
    f.extend(ttinfo(0, 0));
    f.push(0);
    f.extend(header(b'2', [0, 0, 0, 2, 2, 4]));
    f.extend_from_slice(&(-5_000_000_000i64).to_be_bytes());
    f.extend_from_slice(&5_000_000_000i64.to_be_bytes());
    f.extend_from_slice(&[1, 0]);
    f.extend(ttinfo(-18000, 0));
    f.extend(ttinfo(-14400, 1));
    f.extend_from_slice(b"EST\0");
    f.extend_from_slice(b"\nEST5EDT\n");
    f
}

#[test]
fn v1_transitions() {
    let z = TimeZone::from_tzif(&v1_file()).unwrap();
    assert_eq!(z.offset_at(0), 3600); // before the first: type 0
    assert_eq!(z.offset_at(1000), 7200);
    assert_eq!(z.offset_at(1999), 7200);
    assert_eq!(z.offset_at(2000), 3600);
    assert_eq!(z.offset_at(i64::MAX), 3600);
}

#[test]
fn v2_uses_the_64_bit_block() {
    let z = TimeZone::from_tzif(&v2_file()).unwrap();
    assert_eq!(z.offset_at(-6_000_000_000), -18000);
    assert_eq!(z.offset_at(0), -14400);
    assert_eq!(z.offset_at(5_000_000_000), -18000);
}

#[test]
fn truncated_or_bad_files_are_refused() {
    let f = v1_file();
    for cut in [0, 3, 20, 44, 50, f.len() - 1] {
        assert_eq!(TimeZone::from_tzif(&f[..cut]), None, "cut at {cut}");
    }
    let mut bad = v1_file();
    bad[44 + 8] = 9; // type index out of range
    assert_eq!(TimeZone::from_tzif(&bad), None);
    assert_eq!(TimeZone::Fixed(-3600).offset_at(12345), -3600);
    assert_eq!(TimeZone::Utc.offset_at(12345), 0);
}

#[test]
fn system_berlin_zone_if_installed() {
    // Cross-check with the real tzdata when the machine has it.
    let Ok(bytes) = std::fs::read("/usr/share/zoneinfo/Europe/Berlin") else {
        return;
    };
    let z = TimeZone::from_tzif(&bytes).unwrap();
    assert_eq!(z.offset_at(1_549_107_584), 3600); // 2019-02-02, CET
    assert_eq!(z.offset_at(1_561_939_200), 7200); // 2019-07-01, CEST
}

proptest! {
    #[test]
    fn arbitrary_tzif_never_panics(mut b in proptest::collection::vec(any::<u8>(), 0..300), v in any::<u8>(), t in any::<i64>()) {
        if b.len() >= 5 {
            b[..4].copy_from_slice(b"TZif");
            b[4] = v;
        }
        if let Some(z) = TimeZone::from_tzif(&b) {
            let _ = z.offset_at(t);
        }
    }
}
