//! TZif data (RFC 8536) as `owamp::report::TimeZone::from_tzif` reads it from `TZ` or
//! `/etc/localtime` for owstats/owping local times: any bytes, any counts.
//!
//! Invariants: no panic, no allocation beyond what the data backs (every count is
//! checked against the length); `offset_at` answers for any instant with an offset the
//! zone actually has.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owamp::report::TimeZone;

fuzz_target!(|data: &[u8]| {
    let Some(zone) = TimeZone::from_tzif(data) else {
        return;
    };
    let TimeZone::Table {
        transitions,
        initial,
    } = &zone
    else {
        panic!("from_tzif gave a non-table zone: {zone:?}");
    };
    assert!(
        transitions.len() <= data.len(),
        "more transitions than bytes"
    );
    let mut probes = vec![i64::MIN, -1, 0, 1, i64::MAX];
    for (t, _) in transitions.iter().take(16) {
        probes.extend([t.saturating_sub(1), *t, t.saturating_add(1)]);
    }
    for t in probes {
        let o = zone.offset_at(t);
        assert!(
            o == *initial || transitions.iter().any(|(_, x)| *x == o),
            "offset {o} at {t} is not one of the zone's"
        );
    }
});
