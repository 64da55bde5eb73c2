//! The control process's notion of now (SID generation, Stop-Sessions stop time).

use owamp::Num64;
use std::time::{SystemTime, UNIX_EPOCH};

/// CLOCK_REALTIME as an NTP timestamp, shifted by `OWAMP_DEBUG_TIMEOFFSET` seconds.
pub fn now_ntp(debug_offset: f64) -> Num64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let t = Num64::from_unix(d.as_secs(), d.subsec_nanos());
    let off = Num64::from_secs_f64(debug_offset.abs());
    if debug_offset >= 0.0 {
        t.wrapping_add(off)
    } else {
        t.wrapping_sub(off)
    }
}
