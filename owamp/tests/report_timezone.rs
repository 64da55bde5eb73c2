//! Local time for "first:"/"last:": the zone comes from jiff (TZif data, RFC 8536, or a
//! POSIX TZ rule), the digits from `report::local_time_with_ms`.

use jiff::tz::TimeZone;
use owamp::Num64;
use owamp::report::local_time_with_ms;
use proptest::prelude::*;

/// The NTP timestamp of Unix time `unix` plus `ms` milliseconds.
fn ntp(unix: i64, ms: u32) -> Num64 {
    Num64::from_unix(unix as u64, ms * 1_000_000)
}

fn header(version: u8, counts: [u32; 6]) -> Vec<u8> {
    let mut h = b"TZif".to_vec();
    h.push(version);
    h.extend_from_slice(&[0u8; 15]);
    for c in counts {
        h.extend_from_slice(&c.to_be_bytes());
    }
    h
}

fn ttinfo(off: i32, dst: u8, abbr_index: u8) -> Vec<u8> {
    let mut v = off.to_be_bytes().to_vec();
    v.extend_from_slice(&[dst, abbr_index]);
    v
}

/// A version 2 file: +1 h (CET) until 1000, +2 h (CEST) from 1000, +1 h again from
/// 2000, its last transition; after that the footer's rule (Central European summer
/// time from the last Sunday of March to the last Sunday of October).
fn v2_file() -> Vec<u8> {
    // The v1 block: one type, no transitions.
    let mut f = header(b'2', [0, 0, 0, 0, 1, 4]);
    f.extend(ttinfo(3600, 0, 0));
    f.extend_from_slice(b"CET\0");
    f.extend(header(b'2', [0, 0, 0, 2, 2, 9]));
    f.extend_from_slice(&1000i64.to_be_bytes());
    f.extend_from_slice(&2000i64.to_be_bytes());
    f.extend_from_slice(&[1, 0]);
    f.extend(ttinfo(3600, 0, 0));
    f.extend(ttinfo(7200, 1, 4));
    f.extend_from_slice(b"CET\0CEST\0");
    f.extend_from_slice(b"\nCET-1CEST,M3.5.0,M10.5.0/3\n");
    f
}

#[test]
fn tzif_transitions_and_footer() {
    let z = TimeZone::tzif("Test/Zone", &v2_file()).unwrap();
    assert_eq!(local_time_with_ms(ntp(0, 0), &z), "1970-01-01T01:00:00.000");
    assert_eq!(
        local_time_with_ms(ntp(1000, 5), &z),
        "1970-01-01T02:16:40.005"
    );
    assert_eq!(
        local_time_with_ms(ntp(2000, 0), &z),
        "1970-01-01T01:33:20.000"
    );
    // Past the last transition the footer's rule holds: summer time on 1970-07-01 (the
    // hand-written reader this replaced kept the last offset, +1 h).
    assert_eq!(
        local_time_with_ms(ntp(15_638_400, 0), &z),
        "1970-07-01T02:00:00.000"
    );
}

#[test]
fn posix_rules_switch_at_their_dates() {
    // Central Europe: CEST from the last Sunday of March, 01:00 UTC.
    let z = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
    let before = 1_774_745_999; // 2026-03-29T00:59:59Z
    assert_eq!(
        local_time_with_ms(ntp(before, 0), &z),
        "2026-03-29T01:59:59.000"
    );
    assert_eq!(
        local_time_with_ms(ntp(before + 1, 0), &z),
        "2026-03-29T03:00:00.000"
    );
    let ist = TimeZone::posix("<+0530>-5:30").unwrap();
    assert_eq!(
        local_time_with_ms(ntp(0, 999), &ist),
        "1970-01-01T05:30:00.999"
    );
}

#[test]
fn utc_and_times_before_1970() {
    // NTP time 0 is 1900-01-01, before the Unix epoch.
    assert_eq!(
        local_time_with_ms(Num64(0), &TimeZone::UTC),
        "1900-01-01T00:00:00.000"
    );
    assert_eq!(
        local_time_with_ms(ntp(1_561_939_200, 250), &TimeZone::UTC),
        "2019-07-01T00:00:00.250"
    );
}

#[test]
fn system_berlin_zone_if_installed() {
    // Cross-check with the real tzdata when the machine has it.
    let Ok(bytes) = std::fs::read("/usr/share/zoneinfo/Europe/Berlin") else {
        return;
    };
    let z = TimeZone::tzif("Europe/Berlin", &bytes).unwrap();
    assert_eq!(
        local_time_with_ms(ntp(1_549_107_584, 0), &z),
        "2019-02-02T12:39:44.000"
    );
    assert_eq!(
        local_time_with_ms(ntp(1_561_939_200, 0), &z),
        "2019-07-01T02:00:00.000"
    );
}

/// perfSONAR's owstats prints "first:"/"last:" milliseconds with `%03.0f` of the
/// nanoseconds as a float divided by a million, so 999.5 ms and more print as "1000"
/// (no carry into the seconds). Byte-identical output keeps that.
#[test]
fn milliseconds_round_up_to_1000_as_the_reference_prints_them() {
    let z = TimeZone::fixed(jiff::tz::Offset::UTC);
    // 0.99950 s past 1900-01-01T00:00:00.
    assert_eq!(
        local_time_with_ms(Num64(4_292_819_813), &z),
        "1900-01-01T00:00:00.1000"
    );
    // Just below 999.5 ms: rounds to 999.
    assert_eq!(
        local_time_with_ms(Num64(4_290_000_000), &z),
        "1900-01-01T00:00:00.999"
    );
}

proptest! {
    #[test]
    fn any_time_in_any_fixed_zone_prints_in_the_same_shape(
        sec in 0u64..=u64::from(u32::MAX),
        frac in any::<u32>(),
        offset in -93_599i32..=93_599,
    ) {
        let z = TimeZone::fixed(jiff::tz::Offset::from_seconds(offset).unwrap());
        let s = local_time_with_ms(Num64((sec << 32) | u64::from(frac)), &z);
        // Milliseconds are the reference's `%03.0f` of a float: from 999.5 ms up they
        // print as "1000", one digit longer (see the test below).
        let shape = "1900-01-01T00:00:00.000".len();
        prop_assert!(s.len() == shape || (s.len() == shape + 1 && s.ends_with(".1000")), "{}", s);
        let b = s.as_bytes();
        prop_assert!(b[4] == b'-' && b[10] == b'T' && b[19] == b'.', "{}", s);
    }
}
