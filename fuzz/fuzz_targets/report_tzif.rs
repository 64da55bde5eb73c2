//! A local time zone as owping/owstats read it from `TZ` or `/etc/localtime` (TZif
//! data, RFC 8536, parsed by jiff, footer rule included), and the "first:"/"last:"
//! time printed in it by `owamp::report::local_time_with_ms`: any bytes, any instant.
//!
//! Invariants: no panic; every NTP time (1900 to 2036) prints as
//! `YYYY-MM-DDTHH:MM:SS.mmm` in any zone the data describes, or with `.1000` when its
//! fraction is 999.5 ms or more (perfSONAR's owstats rounds the milliseconds with
//! `%03.0f` and no carry, and ours prints the same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use owamp::Num64;
use owamp::report::{TimeZone, local_time_with_ms};

fuzz_target!(|data: &[u8]| {
    let Ok(zone) = TimeZone::tzif("Fuzz/Zone", data) else {
        return;
    };
    // The instants the data names (its own bytes read as NTP times), and the ends of
    // the NTP era.
    let mut probes = vec![0u64, u64::MAX, 0xdd12_e59f_f0d3_41db];
    probes.extend(
        data.chunks_exact(8)
            .take(16)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes"))),
    );
    for t in probes {
        let s = local_time_with_ms(Num64(t), &zone);
        let b = s.as_bytes();
        let fraction_ok = b.len() == 23 || (b.len() == 24 && s.ends_with(".1000"));
        assert!(
            fraction_ok && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[19] == b'.',
            "{t:#x} printed as {s:?}"
        );
    }
});
