//! The floor under the engines' pacing: what one absolute `clock_nanosleep` on
//! `CLOCK_REALTIME` costs this machine in CPU and how late it wakes, with the same 1 ns
//! timer slack the engines set (prctl PR_SET_TIMERSLACK). The sender sleeps once per
//! packet (design.md: never busy-wait), so these bound its CPU per packet and its send
//! accuracy.

use crate::summary::{Summary, diff_ns};
use nix::sys::time::TimeSpec;
use nix::time::{ClockId, ClockNanosleepFlags, clock_gettime, clock_nanosleep};
use owamp::time::{realtime_raw, timespec_from_timestamp};
use serde_json::{Value, json};
use std::time::Duration;

/// Sleeps `count` times to deadlines `interval` apart; CPU per sleep and lateness.
pub fn measure(interval: Duration, count: u32) -> Result<Value, nix::errno::Errno> {
    let _ = nix::sys::prctl::set_timerslack(1);
    let step = owamp::time::duration_to_num64(interval);
    let cpu0 = Duration::from(clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)?);
    let mut deadline = realtime_raw();
    let mut late = Vec::with_capacity(count as usize);
    for _ in 0..count {
        deadline = deadline.wrapping_add(step);
        let ts: TimeSpec = timespec_from_timestamp(deadline);
        match clock_nanosleep(
            ClockId::CLOCK_REALTIME,
            ClockNanosleepFlags::TIMER_ABSTIME,
            &ts,
        ) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
        late.push(diff_ns(realtime_raw(), deadline));
    }
    let cpu = Duration::from(clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)?).saturating_sub(cpu0);
    let l = Summary::of(&mut late);
    Ok(json!({
        "interval_us": interval.as_nanos() as f64 / 1000.0,
        "count": count,
        "cpu_us_per_sleep": cpu.as_nanos() as f64 / 1000.0 / f64::from(count.max(1)),
        "late": l.to_json(),
    }))
}
