//! Absolute sleeps on `CLOCK_REALTIME`, in slices short enough to keep polling the
//! session control.

use super::SessionControl;
use crate::time::{Clock, timespec_from_timestamp};
use crate::types::{Num64, Timestamp};
use nix::errno::Errno;
use nix::time::{ClockId, ClockNanosleepFlags, clock_nanosleep};

/// The longest a loop sleeps without asking its [`SessionControl`] (spec: ≥ every 10 ms).
pub(crate) const POLL_SLICE: Num64 = Num64(42_949_673); // 10 ms in 2^-32 s

/// Lowers this thread's timer slack to 1 ns, so absolute sleeps end on time rather than
/// up to the default 50 µs late (prctl(2) PR_SET_TIMERSLACK). Best effort.
pub(crate) fn tighten_timer_slack() {
    let _ = nix::sys::prctl::set_timerslack(1);
}

/// Sleeps until `deadline` on `clock`'s time scale. Returns `true` if the control asked to
/// stop (then possibly before the deadline).
pub(crate) fn sleep_until(
    clock: &Clock,
    deadline: Timestamp,
    ctl: &mut dyn SessionControl,
) -> bool {
    loop {
        if ctl.poll_stop() {
            return true;
        }
        let (now, _) = clock.now();
        if now >= deadline {
            return false;
        }
        let slice_end = if deadline.0 - now.0 > POLL_SLICE.0 {
            now.wrapping_add(POLL_SLICE)
        } else {
            deadline
        };
        let ts = timespec_from_timestamp(clock.to_realtime(slice_end));
        match clock_nanosleep(
            ClockId::CLOCK_REALTIME,
            ClockNanosleepFlags::TIMER_ABSTIME,
            &ts,
        ) {
            Ok(_) | Err(Errno::EINTR) => {}
            // Cannot happen with a valid timespec; fall back to a relative sleep so a
            // broken clock never turns into a busy loop.
            Err(_) => std::thread::sleep(crate::time::num64_to_duration(
                slice_end.saturating_sub(now),
            )),
        }
    }
}
