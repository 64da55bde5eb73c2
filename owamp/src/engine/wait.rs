//! Waiting without burning CPU: sleeps until an absolute time on the session's clock,
//! and when to ask the [`SessionControl`] whether to stop.
//!
//! A control that exposes a descriptor ([`SessionControl::wait_fd`]) is asked only when
//! that descriptor becomes readable, so an idle session wakes only for its packets or its
//! stop message. A control without one is asked at every wake-up of a loop and at least
//! every [`FALLBACK_SLICE`].
//!
//! The sender waits for each send time with one system call (a `ppoll` on the control's
//! descriptor with the time left as its timeout, or an absolute `clock_nanosleep` without
//! a descriptor) and sends when it wakes; it never spins. Each test packet carries the
//! time it was actually sent (RFC 4656 §4.1.2: the timestamp is taken immediately before
//! sending), so a late wake-up shifts when a packet leaves but biases no delay a user
//! sees, while a spin would spend CPU on every packet of every session for a figure no
//! result shows. The kernel's timer slack (`max(slack, 0.1 % of the wait)` for `ppoll`,
//! where `slack` is the thread's, 50 µs by default) lets it serve the timers of many
//! sessions with one interrupt; [`timer_slack`] is the slack a test endpoint asks for.

use super::SessionControl;
use crate::time::{Clock, num64_to_duration, timespec_from_timestamp};
use crate::types::{Num64, Timestamp};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::time::TimeSpec;
use nix::time::{ClockId, ClockNanosleepFlags, clock_nanosleep};
use std::os::fd::BorrowedFd;

/// The timer slack (prctl(2) `PR_SET_TIMERSLACK`) for a test endpoint sending or
/// receiving `pps` packets per second: 1 % of the mean interval, at least the kernel's
/// default of 50 µs and at most 1 ms. A wake-up then ends up to that much late, which
/// moves when a packet leaves (it carries the time it actually left) and when a batch
/// is read (receive times are the kernel's), but lets the kernel end the sleeps of many
/// sessions with one timer interrupt; at 10 packets/s per session and a few hundred
/// sessions that is a few interrupts per millisecond instead of one per packet.
pub fn timer_slack(pps: f64) -> std::time::Duration {
    const MIN: f64 = 50e-6;
    const MAX: f64 = 1e-3;
    let secs = if pps.is_finite() && pps > 0.0 {
        (0.01 / pps).clamp(MIN, MAX)
    } else {
        MIN
    };
    std::time::Duration::from_secs_f64(secs)
}

/// The longest a loop sleeps without asking a control that has no descriptor.
pub(crate) const FALLBACK_SLICE: Num64 = Num64(858_993_459); // 200 ms in 2^-32 s

/// After a readable descriptor that did not mean "stop", the descriptor is left out of
/// the waits this long: a descriptor stuck readable (say, a message the control does not
/// consume) then costs at most 100 wake-ups/s instead of a busy loop.
pub(crate) const BACKOFF_SLICE: Num64 = Num64(42_949_673); // 10 ms

/// Decides when a loop must call [`SessionControl::poll_stop`].
#[derive(Debug)]
pub(crate) struct StopPoller {
    /// Both the control and (for the receiver) the socket can be waited on.
    use_fd: bool,
    /// Ask at the next opportunity (at the start, and after the descriptor was readable).
    due: bool,
    /// `due` was set by the descriptor (not by the start).
    signalled: bool,
    /// Leave the descriptor out of waits until then (see [`BACKOFF_SLICE`]).
    ignore_fd_until: Timestamp,
    /// Ask again at this time even if nothing signalled (fallback and backoff).
    recheck_at: Option<Timestamp>,
}

impl StopPoller {
    /// `use_fd`: the control's descriptor is usable (the receiver also needs its socket's).
    pub(crate) fn new(use_fd: bool) -> StopPoller {
        StopPoller {
            use_fd,
            due: true,
            signalled: false,
            ignore_fd_until: Num64::ZERO,
            recheck_at: None,
        }
    }

    /// Asks the control if it is time to; true when the session must stop.
    pub(crate) fn should_stop(&mut self, ctl: &mut dyn SessionControl, now: Timestamp) -> bool {
        let ask = !self.use_fd || self.due || self.recheck_at.is_some_and(|t| now >= t);
        if !ask {
            return false;
        }
        let signalled = self.signalled;
        self.due = false;
        self.signalled = false;
        if ctl.poll_stop() {
            return true;
        }
        self.recheck_at = if !self.use_fd {
            Some(now.wrapping_add(FALLBACK_SLICE))
        } else if signalled {
            self.ignore_fd_until = now.wrapping_add(BACKOFF_SLICE);
            Some(self.ignore_fd_until)
        } else {
            None
        };
        false
    }

    /// The control's descriptor, when the next wait should include it.
    pub(crate) fn fd<'a>(
        &self,
        ctl: &'a dyn SessionControl,
        now: Timestamp,
    ) -> Option<BorrowedFd<'a>> {
        if self.use_fd && now >= self.ignore_fd_until {
            ctl.wait_fd()
        } else {
            None
        }
    }

    /// The descriptor was readable: ask at the next opportunity.
    pub(crate) fn signal(&mut self) {
        self.due = true;
        self.signalled = true;
    }

    /// When the loop must wake to ask even if nothing happens.
    pub(crate) fn recheck_at(&self) -> Option<Timestamp> {
        self.recheck_at
    }
}

/// True when `poll` reported something on the descriptor (data, hang-up, error: every
/// one of them is news the control must look at).
pub(crate) fn is_ready(fd: &PollFd<'_>) -> bool {
    fd.revents().is_some_and(|r| !r.is_empty())
}

/// Sleeps until `deadline` on `clock`'s time scale. Returns `true` if the control asked to
/// stop (then possibly before the deadline).
///
/// With a control descriptor: `ppoll` on it, with the time left as its timeout. Without:
/// `clock_nanosleep(TIMER_ABSTIME)` in slices of at most [`FALLBACK_SLICE`], asking the
/// control between them.
pub(crate) fn sleep_until(
    clock: &Clock,
    deadline: Timestamp,
    ctl: &mut dyn SessionControl,
    poller: &mut StopPoller,
) -> bool {
    loop {
        let (now, _) = clock.now();
        if poller.should_stop(ctl, now) {
            return true;
        }
        if now >= deadline {
            return false;
        }
        let mut until = deadline;
        if let Some(t) = poller.recheck_at() {
            until = until.min(t.max(now));
        }
        match poller.fd(&*ctl, now) {
            Some(fd) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
                let left = TimeSpec::from_duration(num64_to_duration(until.saturating_sub(now)));
                match ppoll(&mut fds, Some(left), None) {
                    Ok(_) if fds.iter().any(is_ready) => poller.signal(),
                    Ok(_) | Err(Errno::EINTR) => {}
                    // Cannot happen with a valid descriptor; ask the control instead of
                    // spinning on a broken one.
                    Err(_) => poller.signal(),
                }
            }
            None => sleep_abs(clock, now, until),
        }
    }
}

/// One `clock_nanosleep(TIMER_ABSTIME)` until `until` (or an interruption).
fn sleep_abs(clock: &Clock, now: Timestamp, until: Timestamp) {
    let ts = timespec_from_timestamp(clock.to_realtime(until));
    match clock_nanosleep(
        ClockId::CLOCK_REALTIME,
        ClockNanosleepFlags::TIMER_ABSTIME,
        &ts,
    ) {
        Ok(_) | Err(Errno::EINTR) => {}
        // Cannot happen with a valid timespec; fall back to a relative sleep so a
        // broken clock never turns into a busy loop.
        Err(_) => std::thread::sleep(num64_to_duration(until.saturating_sub(now))),
    }
}

#[cfg(test)]
mod slack_tests {
    use super::timer_slack;
    use std::time::Duration;

    #[test]
    fn slack_is_one_percent_of_the_interval_within_bounds() {
        assert_eq!(timer_slack(10.0), Duration::from_millis(1));
        assert_eq!(timer_slack(20.0), Duration::from_micros(500));
        assert_eq!(timer_slack(100.0), Duration::from_micros(100));
        assert_eq!(timer_slack(1000.0), Duration::from_micros(50));
        assert_eq!(timer_slack(0.1), Duration::from_millis(1));
        for odd in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            assert_eq!(timer_slack(odd), Duration::from_micros(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts its asks; stops at the `stop_at`-th. Has a descriptor (a pipe's read end).
    struct Counting {
        asks: u32,
        stop_at: u32,
        fd: std::io::PipeReader,
    }

    impl SessionControl for Counting {
        fn poll_stop(&mut self) -> bool {
            self.asks += 1;
            self.asks >= self.stop_at
        }
        fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
            use std::os::fd::AsFd;
            Some(self.fd.as_fd())
        }
    }

    fn counting(stop_at: u32) -> Counting {
        let (fd, _) = std::io::pipe().unwrap();
        Counting {
            asks: 0,
            stop_at,
            fd,
        }
    }

    #[test]
    fn with_a_descriptor_only_the_start_and_signals_ask() {
        let mut ctl = counting(3);
        let mut p = StopPoller::new(true);
        let t = Num64(1 << 40);
        assert!(p.fd(&ctl, t).is_some());
        assert!(!p.should_stop(&mut ctl, t));
        for i in 0..100 {
            assert!(!p.should_stop(&mut ctl, t.wrapping_add(Num64(i << 32))));
        }
        assert_eq!(ctl.asks, 1);
        // A readable descriptor that was not a stop: asked once, then backed off.
        p.signal();
        assert!(!p.should_stop(&mut ctl, t));
        assert_eq!(ctl.asks, 2);
        assert!(
            p.fd(&ctl, t).is_none(),
            "descriptor left out while backing off"
        );
        assert_eq!(p.recheck_at(), Some(t.wrapping_add(BACKOFF_SLICE)));
        assert!(!p.should_stop(&mut ctl, t.wrapping_add(Num64(1))));
        assert_eq!(ctl.asks, 2);
        assert!(p.fd(&ctl, t.wrapping_add(BACKOFF_SLICE)).is_some());
        assert!(p.should_stop(&mut ctl, t.wrapping_add(BACKOFF_SLICE)));
        assert_eq!(ctl.asks, 3);
    }

    #[test]
    fn without_a_descriptor_every_wakeup_asks() {
        let mut ctl = counting(u32::MAX);
        let mut p = StopPoller::new(false);
        let t = Num64(1 << 40);
        assert!(p.fd(&ctl, t).is_none(), "not usable: the fallback");
        for _ in 0..5 {
            assert!(!p.should_stop(&mut ctl, t));
        }
        assert_eq!(ctl.asks, 5);
        assert_eq!(p.recheck_at(), Some(t.wrapping_add(FALLBACK_SLICE)));
    }

    #[test]
    fn sleeps_to_the_deadline_on_an_offset_clock() {
        // The debugging offset moves the deadline and the readings alike; the wrong time
        // scale would either return early or sleep for hours.
        let clock = Clock::new(None, -12_345.5);
        for use_fd in [false, true] {
            let mut ctl = counting(u32::MAX);
            let mut p = StopPoller::new(use_fd);
            let mut deadline = clock.now().0;
            for _ in 0..5 {
                deadline = deadline.wrapping_add(Num64::from_micros(3_000));
                assert!(!sleep_until(&clock, deadline, &mut ctl, &mut p));
                assert!(clock.now().0 >= deadline);
            }
            // Past deadlines return at once.
            let past = clock.now().0.saturating_sub(Num64::from_secs_f64(1.0));
            assert!(!sleep_until(&clock, past, &mut ctl, &mut p));
        }
    }

    #[test]
    fn a_stop_before_the_wait_ends_it() {
        let clock = Clock::new(None, 0.0);
        let mut ctl = counting(1);
        let mut p = StopPoller::new(true);
        let far = clock.now().0.wrapping_add(Num64::from_secs_f64(3600.0));
        assert!(sleep_until(&clock, far, &mut ctl, &mut p));
        assert_eq!(ctl.asks, 1);
    }

    #[test]
    fn with_a_descriptor_the_control_ends_the_wait_at_once() {
        let clock = Clock::new(None, 0.0);
        let (fd, mut w) = std::io::pipe().unwrap();
        let mut ctl = Counting {
            asks: 0,
            stop_at: 2,
            fd,
        };
        let mut p = StopPoller::new(true);
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::io::Write::write_all(&mut w, b"x").unwrap();
        });
        // An hour away: only the descriptor can end this wait (else the test hangs).
        let far = clock.now().0.wrapping_add(Num64::from_secs_f64(3600.0));
        assert!(sleep_until(&clock, far, &mut ctl, &mut p));
        assert_eq!(
            ctl.asks, 2,
            "asked at the start, then when the descriptor spoke"
        );
        writer.join().unwrap();
    }
}
