//! The floor under the engines' pacing: what one absolute `clock_nanosleep` on
//! `CLOCK_REALTIME` costs this machine in CPU and how late it wakes, with the same 1 ns
//! timer slack the engines set (prctl PR_SET_TIMERSLACK). The sender sleeps once per
//! packet, so these bound its CPU per packet and its send accuracy.
//!
//! With `spin` > 0, the hybrid the sender uses (owamp::engine::wait, "Hybrid pacing") at a
//! fixed margin: sleep to `deadline − spin`, then read the clock with `spin_loop` and a
//! `sched_yield` per turn until the deadline. The lateness is then that of the end of the
//! wait, and the CPU includes the spin: the two sides of the trade-off at that margin.

use crate::summary::{Summary, diff_ns};
use nix::sys::time::TimeSpec;
use nix::time::{ClockId, ClockNanosleepFlags, clock_gettime, clock_nanosleep};
use owamp::time::{realtime_raw, timespec_from_timestamp};
use serde_json::{Value, json};
use std::time::Duration;

/// Sleeps `count` times to deadlines `interval` apart (each sleep ending `spin` early and
/// spinning the rest); CPU per sleep and lateness.
pub fn measure(interval: Duration, spin: Duration, count: u32) -> Result<Value, nix::errno::Errno> {
    let _ = nix::sys::prctl::set_timerslack(1);
    let step = owamp::time::duration_to_num64(interval);
    let margin = owamp::time::duration_to_num64(spin);
    let mut woke_late = Vec::with_capacity(count as usize);
    let cpu0 = Duration::from(clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)?);
    let mut deadline = realtime_raw();
    let mut late = Vec::with_capacity(count as usize);
    for _ in 0..count {
        deadline = deadline.wrapping_add(step);
        let target = deadline.saturating_sub(margin);
        let ts: TimeSpec = timespec_from_timestamp(target);
        match clock_nanosleep(
            ClockId::CLOCK_REALTIME,
            ClockNanosleepFlags::TIMER_ABSTIME,
            &ts,
        ) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
        let mut now = realtime_raw();
        woke_late.push(diff_ns(now, target));
        while now < deadline {
            std::hint::spin_loop();
            std::thread::yield_now();
            now = realtime_raw();
        }
        late.push(diff_ns(now, deadline));
    }
    let cpu = Duration::from(clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)?).saturating_sub(cpu0);
    let l = Summary::of(&mut late);
    let w = Summary::of(&mut woke_late);
    Ok(json!({
        "interval_us": interval.as_nanos() as f64 / 1000.0,
        "spin_us": spin.as_nanos() as f64 / 1000.0,
        "timer_late": w.to_json(),
        "count": count,
        "cpu_us_per_sleep": cpu.as_nanos() as f64 / 1000.0 / f64::from(count.max(1)),
        "late": l.to_json(),
    }))
}
